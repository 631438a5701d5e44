"""Per-column monotone maps of series values to normal scores and back (`config.video.marginals`).

A column with a heavy tail (stocks' volume: median window maximum 0.14, 1% of windows above 0.96)
puts its rare spikes far out in the normalised video, where a small network under-draws them. With
`marginals = "normal"` every column first goes through its own increasing piecewise-linear map
`g` from its training values to standard-normal scores (the value at quantile p goes to
Phi^-1(p)); the network models videos of g(x), and samples come back through g^-1. The map is
elementwise, so conditional sampling stays exact: observations are mapped by g, the affine video
transform is honoured in g-space, and the result goes back through g^-1. Beyond the outermost
knots both directions extend linearly with the end slopes, so g is a bijection of the real line.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

NUM_KNOTS = 129
MIN_KNOT_GAP = 1e-6  # Tied quantiles (a column's repeated value) are spread by this much.


def _interp(x, xp, fp):
    """Piecewise-linear interpolation per column, extended linearly beyond the ends.

    x (..., K); xp, fp (Q, K), increasing along Q."""
    inside = jax.vmap(jnp.interp, in_axes=(-1, 1, 1), out_axes=-1)(x, xp, fp)
    below = fp[0] + (x - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0])
    above = fp[-1] + (x - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    return jnp.where(x < xp[0], below, jnp.where(x > xp[-1], above, inside))


@dataclasses.dataclass(frozen=True)
class MarginalMap:
    """g: values (knots, (Q, K)) -> normal scores (scores, (Q, K)), per column."""

    knots: np.ndarray
    scores: np.ndarray

    @classmethod
    def fit(cls, windows, num_knots=NUM_KNOTS):
        """The map of (N, L, K) training windows' values, column by column."""
        values = np.asarray(windows, np.float64).reshape(-1, windows.shape[-1])  # (N L, K)
        n = values.shape[0]
        probs = np.linspace(0.0, 1.0, num_knots)
        knots = np.quantile(values, probs, axis=0)  # (Q, K), min and max at the ends
        ramp = MIN_KNOT_GAP * np.arange(num_knots)[:, None]
        knots = np.maximum.accumulate(knots - ramp, axis=0) + ramp  # ties spread, rest unchanged
        scores = special.ndtri(np.clip(probs, 0.5 / n, 1 - 0.5 / n))  # (Q,)
        scores = np.broadcast_to(scores[:, None], knots.shape)
        return cls(knots=knots.astype(np.float32), scores=np.ascontiguousarray(scores, np.float32))

    def forward(self, x):
        """(..., K) values -> normal scores."""
        return _interp(x, self.knots, self.scores)

    def inverse(self, z):
        """(..., K) normal scores -> values: g^-1."""
        return _interp(z, self.scores, self.knots)

    def to_dict(self):
        return {"knots": np.asarray(self.knots), "scores": np.asarray(self.scores)}

    @classmethod
    def from_dict(cls, d):
        return cls(knots=np.asarray(d["knots"], np.float32),
                   scores=np.asarray(d["scores"], np.float32))


def fit_marginals(kind, windows):
    """The `MarginalMap` of config.video.marginals ("normal") for training windows, or None
    ("none": the network sees the min-max scaled values themselves)."""
    if kind == "none":
        return None
    if kind == "normal":
        return MarginalMap.fit(windows)
    raise ValueError(f"config.video.marginals must be 'none' or 'normal', got {kind!r}.")


def to_model_space(marginal_map, x):
    """(..., K) series in [-1, 1] -> what the videos are made of: the map's scores (x itself
    without a map)."""
    return x if marginal_map is None else marginal_map.forward(x)


def from_model_space(marginal_map, x):
    """The inverse of `to_model_space`."""
    return x if marginal_map is None else marginal_map.inverse(x)
