"""The network's output as (x0, eps, v), and the training objective: an MSE across noise levels
plus a cross-covariance loss on STFT magnitudes.

The network predicts the velocity v = alpha eps - sigma x0 of a noisy video z = alpha x0 + sigma eps
(Salimans & Ho, 2022), and `predictions` is the one place that turns its output into the clean
video and the noise, for the loss and for every sampler. Why v and not the paper's eps: a plain
eps-network must reproduce z to within alpha (5e-4 at log-SNR -15) for x0 = (z - sigma eps) / alpha
to stay bounded, and its small errors at low SNR sent every DDIM trajectory of a trained model to
videos 100x the data's scale; with v the noise at low SNR is sigma z by construction.

Weightings of the MSE across noise levels (`weighting`, config.diffusion.loss_weighting): "v" is
the MSE of the velocity, (1 + SNR) ||x0_hat - x0||^2 = (1 + 1 / SNR) x the eps-MSE per sample:
unit weight on the clean prediction at low SNR, the eps-MSE's at high SNR. "eps" is the paper's
epsilon MSE, SNR ||x0_hat - x0||^2: below logsnr 0 an error of the clean prediction barely costs
anything (1.8% of its square at logsnr -4), though that is where a window's level and the coupling
of its covariates' levels are decided.

Videos are `(B, T, F, K, 3)`, normalised per (F, K, channel); channels are (real, imag, trend).
A batch is noised at times drawn antithetically (one uniform shift of an evenly spaced grid, as in
VDM), which covers the noise levels evenly within every batch and lowers the loss variance.

The cross-covariance loss (paper, Section 5) compares normalised covariance (correlation) matrices of
STFT magnitudes |S| = sqrt(re^2 + im^2) between the predicted clean videos and the clean batch:
- The clean prediction x0_hat is, at high noise, the blurred posterior mean E[x0 | z], whose
  correlations are not those of data, so only samples with logsnr >= `cov_logsnr_min` (default 2:
  the posterior spread of unit-variance data is then below a third of its scale) contribute; the
  rest are masked out, and both matrices are computed over the same contributing samples.
- Magnitudes need true scale, so real and imaginary channels are denormalised first.
- Axes: "covariate" is the K x K correlation between covariates (the cross-covariate structure the
  correlational score measures), pooled over batch, frames and frequencies; "frequency" is the
  F x F correlation between frequency bins (bands that co-vary, such as harmonics), pooled over
  batch, frames and covariates. Both by default; the loss is the mean squared difference of the
  matrices' entries, summed over axes.
"""

import functools
import math

import jax
import jax.numpy as jnp

from stdiff_jax.errors import UserError
from stdiff_jax.schedule import alpha_sigma

COV_AXES = {"frequency": 2, "covariate": 3}  # Axes of the (B, T, F, K) magnitudes.
MAGNITUDE_EPS = 1e-8  # Inside the square root: keeps the gradient of |S| finite at S = 0.
CORRELATION_EPS = 1e-8  # Added to variances: a constant bin gets zero correlations, not NaN.
WEIGHTINGS = ("eps", "v")


def standard_normal(key, shape):
    """N(0, I) of `shape`, drawn flat: XLA:CPU compiles threefry for a 5-D shape 3-5x slower."""
    return jax.random.normal(key, (math.prod(shape),), jnp.float32).reshape(shape)


def antithetic_times(key, n):
    """n times in [0, 1): one uniform shift of the grid i / n, so every batch spans all noise levels."""
    u = jax.random.uniform(key, ())
    return jnp.mod(u + jnp.arange(n) / n, 1.0)  # (n,)


def stratified_times(n):
    """Midpoints of n equal strata of [0, 1): fixed times for a low-variance validation loss."""
    return (jnp.arange(n) + 0.5) / n  # (n,)


def _per_sample(x, ndim):
    """(B,) -> (B, 1, ..., 1) with `ndim` axes in all, to scale a batch of videos sample by sample;
    a scalar, which scales the whole batch, stays one."""
    return x.reshape(x.shape + (1,) * (ndim - 1)) if jnp.ndim(x) else x


def diffuse(x0, logsnr, eps):
    """z = alpha x0 + sigma eps for videos (B, ...) at per-sample log-SNRs (B,)."""
    alpha, sigma = alpha_sigma(logsnr)
    return _per_sample(alpha, x0.ndim) * x0 + _per_sample(sigma, x0.ndim) * eps


class Prediction:
    """What one network call says about noisy videos z (B, ...): the clean video `x0`, the noise
    `eps` and the velocity `v`, each like z. x0 is computed when first read: the loss reads it
    after its MSE, the order (and so, through XLA's fusion, the rounding) that the released models
    were trained with."""

    def __init__(self, eps, v, clean):
        self.eps, self.v, self._clean = eps, v, clean

    @functools.cached_property
    def x0(self):
        return self._clean()


def _scales(logsnr, ndim):
    """(alpha, sigma) of log-SNRs (B,) shaped to scale videos of `ndim` axes, or of a scalar."""
    return tuple(_per_sample(a, ndim) for a in alpha_sigma(logsnr))


def predictions(z, v, logsnr, edit_x0=None):
    """The `Prediction` of a network output v for noisy videos z (B, ...) at log-SNRs (B,), or at
    one scalar log-SNR for the whole batch (as the samplers call it).

    eps = sigma z + alpha v and x0 = (z - sigma eps) / alpha. edit_x0: None, or a function that
    changes x0 (clipping, a guide's correction); eps = (z - alpha x0) / sigma and v are then
    recomputed from the edited x0, so that the three stay consistent with z.
    eps takes its scales per sample, x0 at the log-SNR as given, and x0 goes through eps (alpha z
    - sigma v in exact arithmetic): the rounding every released model was trained and sampled
    with, so that their scores reproduce to the last digit (tests/test_diffusion.py and
    tests/test_sampling.py pin it).
    """
    alpha, sigma = _scales(jnp.broadcast_to(logsnr, z.shape[:1]), z.ndim)
    eps = sigma * z + alpha * v

    def clean():
        alpha, sigma = _scales(logsnr, z.ndim)
        return (z - sigma * eps) / alpha, alpha, sigma

    if edit_x0 is None:
        return Prediction(eps, v, lambda: clean()[0])
    x0, alpha, sigma = clean()
    x0 = edit_x0(x0)
    eps = (z - alpha * x0) / sigma
    return Prediction(eps, alpha * eps - sigma * x0, lambda: x0)


def stft_magnitudes(video, normalizer=None):
    """|S| of the real and imaginary channels, in true scale: (B, T, F, K, 3) -> (B, T, F, K)."""
    if normalizer is not None:
        video = normalizer.denormalize(video)
    return jnp.sqrt(video[..., 0] ** 2 + video[..., 1] ** 2 + MAGNITUDE_EPS)


def weighted_correlation(x, weights, axis):
    """Correlation matrix between the entries of `x` along `axis`, pooled over all other axes.

    x: (B, ...) with the correlated axis among the rest; weights: (B,) per-sample weights (zeros
    mask a sample out). Returns (n, n) with n = x.shape[axis]; all zeros if every weight is zero.
    """
    n = x.shape[axis]
    w = jnp.broadcast_to(_per_sample(weights, x.ndim), x.shape)
    rows = jnp.moveaxis(x, axis, -1).reshape(-1, n)  # (N, n)
    w = jnp.moveaxis(w, axis, -1).reshape(-1, n)[:, 0]  # (N,)
    total = jnp.maximum(w.sum(), 1e-12)
    centred = rows - (w @ rows) / total  # (N, n)
    cov = (centred * w[:, None]).T @ centred / total  # (n, n)
    scale = jnp.sqrt(jnp.diag(cov) + CORRELATION_EPS)
    return cov / (scale[:, None] * scale[None, :])


def covariance_loss(x0_hat, x0, weights, normalizer=None, axes=("covariate", "frequency")):
    """Sum over `axes` of the mean squared difference between the magnitudes' correlation matrices.

    x0_hat, x0: (B, T, F, K, 3) normalised videos; weights: (B,), which samples count.
    """
    unknown = set(axes) - set(COV_AXES)
    if unknown:
        raise UserError(f"Unknown cross-covariance axes {sorted(unknown)}; use {sorted(COV_AXES)}.")
    mag_hat = stft_magnitudes(x0_hat, normalizer)  # (B, T, F, K)
    mag = jax.lax.stop_gradient(stft_magnitudes(x0, normalizer))  # (B, T, F, K)
    loss = jnp.zeros((), jnp.float32)
    for name in axes:
        corr_hat = weighted_correlation(mag_hat, weights, COV_AXES[name])
        corr = weighted_correlation(mag, weights, COV_AXES[name])
        loss = loss + jnp.mean((corr_hat - corr) ** 2)
    return loss


def objective(params, apply_fn, x0, t, eps, schedule, normalizer, cov_weight, *, weighting,
              cov_logsnr_min=2.0, cov_axes=("covariate", "frequency")):
    """The loss at given times (B,) and noise (like x0); both losses below are this at random draws.

    apply_fn(params, z, logsnr) -> v: the network's output for z (B, T, F, K, 3) at logsnr (B,).
    `cov_weight` (config.diffusion.cov_loss_weight) must be a Python number: 0 leaves the
    cross-covariance term out of the graph. `weighting`: one of WEIGHTINGS
    (config.diffusion.loss_weighting), the MSE's weight across noise levels (module docstring).
    Returns (loss, metrics) with metrics "loss", "mse" and, when it is on, "cov" (unweighted) and
    "cov_fraction" (the share of the batch noisy little enough to enter it).
    """
    if weighting not in WEIGHTINGS:
        raise UserError(f"Unknown loss weighting {weighting!r} "
                        f"(config.diffusion.loss_weighting); use one of {WEIGHTINGS}.")
    x0 = x0.astype(jnp.float32)
    logsnr = schedule.logsnr(t)  # (B,)
    z = diffuse(x0, logsnr, eps)  # (B, T, F, K, 3)
    pred = predictions(z, apply_fn(params, z, logsnr).astype(jnp.float32), logsnr)
    per_sample = jnp.mean((pred.eps - eps) ** 2, axis=tuple(range(1, x0.ndim)))  # (B,)
    if weighting == "v":
        # ||v_hat - v||^2 = (1 + 1 / SNR) ||eps_hat - eps||^2 exactly; computed so because the
        # released models were trained with this rounding.
        per_sample = per_sample * (1.0 + jnp.exp(-logsnr))
    mse = jnp.mean(per_sample)
    metrics = {"mse": mse}
    loss = mse
    if cov_weight:
        mask = logsnr >= cov_logsnr_min  # (B,)
        # Masked samples take the clean video: their x0_hat (divided by a tiny alpha) never enters.
        x0_hat = jnp.where(_per_sample(mask, x0.ndim), pred.x0, x0)
        weights = mask.astype(jnp.float32)
        cov = covariance_loss(x0_hat, x0, weights, normalizer, cov_axes)
        loss = loss + cov_weight * cov
        metrics.update(cov=cov, cov_fraction=jnp.mean(weights))
    metrics["loss"] = loss
    return loss, metrics


def diffusion_loss(params, apply_fn, x0, rng, schedule, normalizer, cov_weight, **options):
    """Training loss of a batch of clean normalised videos x0 (B, T, F, K, 3) -> (loss, metrics),
    at antithetic times and fresh noise from `rng`; options: `objective`'s keywords."""
    t_key, eps_key = jax.random.split(rng)
    t = antithetic_times(t_key, x0.shape[0])  # (B,)
    eps = standard_normal(eps_key, x0.shape)
    return objective(params, apply_fn, x0, t, eps, schedule, normalizer, cov_weight, **options)


def validation_loss(params, apply_fn, x0, schedule, key, normalizer, cov_weight, **options):
    """The training loss at fixed stratified times and noise from `key`: pass the same key (per
    batch) at every evaluation, and successive scores differ only through the parameters."""
    t = stratified_times(x0.shape[0])  # (B,)
    eps = standard_normal(key, x0.shape)
    return objective(params, apply_fn, x0, t, eps, schedule, normalizer, cov_weight, **options)
