"""Kinds of column values the videos cannot show, read from the training windows and kept.

Two kinds of column come out wrong from the network and its prior alone (docs/ablations.md, "What
the discriminator reads on the energy stand-in"):

- **White** columns, serially independent (|lag-1 autocorrelation inside windows| under
  `config.video.white_below`): the STFT of white noise is Gaussian whatever its values'
  distribution, so samples of a uniform column (energy's `rv1`, `rv2`) come out Gaussian. The
  network models such a column as normal scores instead: its values go through their own
  increasing piecewise-linear map g (the value at quantile p goes to Phi^-1(p), scaled so that
  the extreme training values land on -1 and 1, like every column's) before the video, and
  samples come back through g^-1.
- **Few-valued** columns, with at most `config.video.max_levels` distinct training values (a
  count or a category: energy's `lights`, 7 levels): samples come out continuous, so each
  generated value is moved to the nearest level seen in training. A column both white and
  few-valued is only snapped: g of a few values is a few steps.

Every other column passes through untouched (not through an identity map: the same floats), and
a data set without such columns gets no `ColumnValues` at all (None), so its runs are what they
were. g is elementwise, so conditional sampling stays exact: observations go through g, the video
constraint is affine in g-space, and the result comes back through g^-1.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from stdiff_jax.data.scaling import few_levels

NUM_KNOTS = 129
SCREEN_WINDOWS = 2048  # Windows (evenly spaced) whose values screen the columns.


def lag1_autocorrelation(windows):
    """(N, L, K) -> (K,) each column's lag-1 autocorrelation inside windows (each window less its
    own mean, pooled); 1 for a constant column."""
    x = np.asarray(windows, np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    num = np.einsum("nlk,nlk->k", x[:, 1:], x[:, :-1])
    den = np.einsum("nlk,nlk->k", x, x)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)


def _interp(x, xp, fp):
    """Piecewise-linear interpolation per column, extended linearly beyond the ends.

    x (..., J); xp, fp (Q, J), increasing along Q."""
    inside = jax.vmap(jnp.interp, in_axes=(-1, 1, 1), out_axes=-1)(x, xp, fp)
    below = fp[0] + (x - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0])
    above = fp[-1] + (x - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    return jnp.where(x < xp[0], below, jnp.where(x > xp[-1], above, inside))


@dataclasses.dataclass(frozen=True)
class ColumnValues:
    """g of the white columns, and the levels of the few-valued ones.

    white: indices of the white columns (W,); knots (Q, W): their values at Q quantiles; scores
    (Q,): where g sends them. snapped: indices of the few-valued columns; levels: one sorted
    array of levels for each."""

    white: tuple
    knots: np.ndarray
    scores: np.ndarray
    snapped: tuple
    levels: tuple

    def _map_white(self, x, inverse):
        """g (or g^-1) of the white columns of x (..., K); the others as they are."""
        x = jnp.asarray(x)
        if not self.white:
            return x
        cols = jnp.asarray(self.white)
        knots = jnp.asarray(self.knots)
        scores = jnp.broadcast_to(jnp.asarray(self.scores)[:, None], knots.shape)
        xp, fp = (scores, knots) if inverse else (knots, scores)
        return x.at[..., cols].set(_interp(x[..., cols], xp, fp))

    def to_model_space(self, x):
        """(..., K) series in [-1, 1] -> what the videos are made of: g of the white columns."""
        return self._map_white(x, inverse=False)

    def from_model_space(self, x):
        """The inverse of `to_model_space`, then each few-valued column at its nearest level."""
        x = self._map_white(x, inverse=True)
        for col, levels in zip(self.snapped, self.levels):
            levels = jnp.asarray(levels, x.dtype)
            nearest = jnp.argmin(jnp.abs(x[..., col, None] - levels), axis=-1)
            x = x.at[..., col].set(levels[nearest])
        return x

    def describe(self, column_names):
        """One line for the log: which columns are which, and what is done with them."""
        parts = []
        if self.white:
            parts.append(f"{', '.join(column_names[k] for k in self.white)} serially independent:"
                         " modelled as normal scores")
        if self.snapped:
            parts.append("; ".join(f"{column_names[k]} has {len(v)} values"
                                   for k, v in zip(self.snapped, self.levels))
                         + ": samples snapped to them")
        return "Column values: " + "; ".join(parts) + " (config.video.white_below, max_levels)."

    def to_dict(self):
        return {"white": list(self.white), "knots": np.asarray(self.knots).tolist(),
                "scores": np.asarray(self.scores).tolist(), "snapped": list(self.snapped),
                "levels": [np.asarray(v).tolist() for v in self.levels]}

    @classmethod
    def from_dict(cls, d):
        return cls(white=tuple(d["white"]), knots=np.asarray(d["knots"], np.float32),
                   scores=np.asarray(d["scores"], np.float32), snapped=tuple(d["snapped"]),
                   levels=tuple(np.asarray(v, np.float32) for v in d["levels"]))


def normal_score_knots(values, num_knots=NUM_KNOTS):
    """(knots (Q, W), scores (Q,)) of g for values (M, W). Each distinct value's normal score is
    Phi^-1 of its mid-rank share (ties, such as the copies overlapping windows hold, share one),
    scaled so that the smallest and largest are -1 and 1; g is drawn through Q scores evenly
    spaced from -1 to 1, so the tails are as finely drawn as the middle."""
    from scipy import special  # Imported here: 0.3 s of every start; only white columns need it.

    scores = np.linspace(-1.0, 1.0, num_knots)
    knots = np.empty((num_knots, values.shape[1]))
    for j in range(values.shape[1]):
        distinct, counts = np.unique(values[:, j], return_counts=True)
        normal = special.ndtri((np.cumsum(counts) - counts / 2) / len(values))
        scaled = 2 * (normal - normal[0]) / (normal[-1] - normal[0]) - 1
        knots[:, j] = np.interp(scores, scaled, distinct)  # strictly increasing
    return knots.astype(np.float32), scores.astype(np.float32)


def fit(windows, white_below, max_levels):
    """The `ColumnValues` of (N, L, K) training windows in [-1, 1], or None when no column is
    white (|lag-1 autocorrelation| < white_below; 0: none is) or few-valued (<= max_levels
    distinct values; 0: none is)."""
    windows = np.asarray(windows, np.float32)
    screen = windows[np.unique(np.linspace(0, len(windows) - 1, SCREEN_WINDOWS).astype(int))]
    levels = {}  # column -> its levels, for the few-valued columns
    for k in range(windows.shape[-1]):
        # Few-valued on the screen, then counted on every window: a rare level is still one.
        found = few_levels(windows[..., k], max_levels, screen[..., k]) if max_levels else None
        if found is not None:
            levels[k] = found
    snapped = tuple(levels)
    ac = lag1_autocorrelation(screen)
    white = tuple(k for k in range(windows.shape[-1]) if abs(ac[k]) < white_below
                  and k not in levels)
    if not (white or snapped):
        return None
    values = windows[..., list(white)].reshape(-1, len(white))
    knots, scores = normal_score_knots(values) if white else (
        np.zeros((NUM_KNOTS, 0), np.float32), np.zeros((NUM_KNOTS,), np.float32))
    return ColumnValues(white=white, knots=knots, scores=scores, snapped=snapped,
                        levels=tuple(levels.values()))


def to_model_space(column_values, x):
    """(..., K) series in [-1, 1] -> what the videos are made of (x itself without a map)."""
    return x if column_values is None else column_values.to_model_space(x)


def from_model_space(column_values, x):
    """The inverse of `to_model_space`, few-valued columns snapped to their levels."""
    return x if column_values is None else column_values.from_model_space(x)
