"""Per-column min-max scaling between raw units and [0, 1].

The protocol fits the scaler on the whole raw series (every row, every window), so generated
samples are mapped back to raw units with the same statistics. The scaler is two float64 arrays,
kept as plain arrays so it can be stored in a checkpoint beside the model, and the distinct raw
values of each few-valued column: the models see float32, in which a level such as 10 comes back
from [0, 1] as 9.9999990, so `inverse` returns a value within float32 rounding of a level's image
as the level itself: the samples that `column_values` snapped to a level come back as the file's
values, and no other value moves by more than 2^-22 of its column's range, under the resolution
of the float32 [-1, 1] values the model produces.
"""

import dataclasses

import numpy as np

MAX_LEVELS = 256  # A column with at most this many distinct raw values keeps them (`levels`).
SCREEN_ROWS = 4096  # Rows whose distinct values are counted first, to skip continuous columns.
# Within this distance in [0, 1] of a level's image a value is that level: 4x the float32
# rounding of the [-1, 1] -> [0, 1] path (2^-24).
LEVEL_TOLERANCE = 2.0 ** -22


@dataclasses.dataclass(frozen=True, eq=False)
class MinMaxScaler:
    """`transform`: raw -> [0, 1]; `inverse`: [0, 1] -> raw. Acts on the last (column) axis.

    Attributes:
        min: (K,) float64 per-column minimum of the raw data.
        max: (K,) float64 per-column maximum of the raw data.
        levels: per column, its sorted distinct raw values (float64) when it has at most
            MAX_LEVELS, else None; None when no column has so few (and in older checkpoints).
    """

    min: np.ndarray
    max: np.ndarray
    levels: tuple | None = None

    @classmethod
    def fit(cls, raw):
        """Fits on `raw` (..., K): statistics over every axis but the last."""
        raw = np.asarray(raw, np.float64)
        flat = raw.reshape(-1, raw.shape[-1])  # (rows, K)
        levels = tuple(few_levels(flat[:, k], MAX_LEVELS, flat[:SCREEN_ROWS, k])
                       for k in range(flat.shape[1]))
        return cls(min=flat.min(axis=0), max=flat.max(axis=0),
                   levels=levels if any(v is not None for v in levels) else None)

    @classmethod
    def identity(cls, num_columns):
        """The scaler of data already in [0, 1] (the sines): transform and inverse return the input."""
        return cls(min=np.zeros(num_columns), max=np.ones(num_columns))

    def transform(self, raw):
        """(..., K) raw units -> [0, 1] (float64)."""
        return (np.asarray(raw, np.float64) - self.min) / (self.max - self.min)

    def inverse(self, unit):
        """(..., K) values in [0, 1] -> raw units (float64); a few-valued column's values within
        LEVEL_TOLERANCE of a level's image are that level exactly."""
        raw = np.asarray(unit, np.float64) * (self.max - self.min) + self.min
        for k, levels in enumerate(self.levels or ()):
            if levels is not None:
                x = raw[..., k]
                i = np.searchsorted(levels, x)  # levels[i - 1] < x <= levels[i]
                below, above = levels[np.maximum(i - 1, 0)], levels[np.minimum(i, len(levels) - 1)]
                nearest = np.where(x - below <= above - x, below, above)
                close = np.abs(x - nearest) <= LEVEL_TOLERANCE * (self.max[k] - self.min[k])
                raw[..., k] = np.where(close, nearest, x)
        return raw

    def to_dict(self):
        """Plain arrays (and, for the levels, lists) for a checkpoint."""
        d = {"min": self.min, "max": self.max}
        if self.levels is not None:
            d["levels"] = [None if v is None else v.tolist() for v in self.levels]
        return d

    @classmethod
    def from_dict(cls, d):
        levels = d.get("levels")
        return cls(min=np.asarray(d["min"], np.float64), max=np.asarray(d["max"], np.float64),
                   levels=None if levels is None else tuple(
                       None if v is None else np.asarray(v, np.float64) for v in levels))


def few_levels(values, most, screen):
    """The sorted distinct `values` if there are at most `most`, else None; `screen`, a part of
    them, is counted first, so that a continuous column costs no sort of all its values."""
    if len(np.unique(screen)) > most:
        return None
    levels = np.unique(values)
    return levels if len(levels) <= most else None
