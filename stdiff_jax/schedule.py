"""The continuous-time VDM cosine noise schedule, as a log-SNR function of t in [0, 1].

Everything downstream (the loss, the samplers) speaks log-SNR: for the variance-preserving process
`z_t = alpha_t x + sigma_t eps`,

    alpha_t^2 = sigmoid(logsnr(t)),   sigma_t^2 = sigmoid(-logsnr(t)).

The cosine schedule of Nichol & Dhariwal, alpha_t^2 = cos^2(pi t / 2), is logsnr(t) = -2 log tan(pi t / 2),
infinite at both ends. Shrinking the angle range to [b, a + b] puts the ends at configured finite
values (logsnr(0) = logsnr_max, logsnr(1) = logsnr_min) and leaves the cosine shape in between, so no
quantity of the loss or the samplers is ever infinite.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

from stdiff_jax.errors import UserError


def _angles(logsnr_min, logsnr_max):
    """(a, b) with logsnr(t) = -2 log tan(a t + b); in float64 so the endpoints land exactly."""
    b = math.atan(math.exp(-0.5 * logsnr_max))
    a = math.atan(math.exp(-0.5 * logsnr_min)) - b
    return a, b


def logsnr_cosine(t, logsnr_min=-15.0, logsnr_max=15.0):
    """log-SNR of the shifted cosine schedule at t in [0, 1]: logsnr_max at t = 0, logsnr_min at 1.

    Near t = 1 the angle a t + b approaches pi/2, where float32 cannot resolve its distance to pi/2;
    there the equal form 2 log tan(c + a (1 - t)), c = pi/2 - a - b, keeps the endpoint exact.
    """
    a, b = _angles(logsnr_min, logsnr_max)
    c = math.atan(math.exp(0.5 * logsnr_min))
    t = jnp.asarray(t, jnp.float32)
    return jnp.where(t < 0.5, -2.0 * jnp.log(jnp.tan(a * t + b)),
                     2.0 * jnp.log(jnp.tan(c + a * (1.0 - t))))


def t_of_logsnr(logsnr, logsnr_min=-15.0, logsnr_max=15.0):
    """The inverse of `logsnr_cosine`: the time t in [0, 1] at which the schedule reaches `logsnr`.

    Negative log-SNRs go through the complementary angle for the same float32 reason.
    """
    a, b = _angles(logsnr_min, logsnr_max)
    c = math.atan(math.exp(0.5 * logsnr_min))
    logsnr = jnp.asarray(logsnr, jnp.float32)
    return jnp.where(logsnr > 0, (jnp.arctan(jnp.exp(-0.5 * logsnr)) - b) / a,
                     1.0 - (jnp.arctan(jnp.exp(0.5 * logsnr)) - c) / a)


def alpha_sigma(logsnr):
    """Signal and noise scales of a log-SNR: alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr)."""
    return jnp.sqrt(jax.nn.sigmoid(logsnr)), jnp.sqrt(jax.nn.sigmoid(-logsnr))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The shifted cosine schedule with its endpoints; frozen and hashable, so `jit` can close over it."""

    logsnr_min: float = -15.0
    logsnr_max: float = 15.0

    def __post_init__(self):
        if not (math.isfinite(self.logsnr_min) and math.isfinite(self.logsnr_max)
                and self.logsnr_min < self.logsnr_max):
            raise UserError(f"The schedule needs finite logsnr_min < logsnr_max, got "
                            f"[{self.logsnr_min}, {self.logsnr_max}]; set config.diffusion."
                            f"logsnr_min/logsnr_max (defaults -15, 15).")

    @classmethod
    def from_config(cls, config):
        """From `config.diffusion` (fields logsnr_min, logsnr_max)."""
        return cls(logsnr_min=float(config.logsnr_min), logsnr_max=float(config.logsnr_max))

    def logsnr(self, t):
        return logsnr_cosine(t, self.logsnr_min, self.logsnr_max)

    def t(self, logsnr):
        return t_of_logsnr(logsnr, self.logsnr_min, self.logsnr_max)
