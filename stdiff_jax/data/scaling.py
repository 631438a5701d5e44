"""Per-column min-max scaling between raw units and [0, 1].

The protocol fits the scaler on the whole raw series (every row, every window), so generated
samples are mapped back to raw units with the same statistics. The scaler is two float64 arrays,
kept as plain arrays so it can be stored in a checkpoint beside the model.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class MinMaxScaler:
    """`transform`: raw -> [0, 1]; `inverse`: [0, 1] -> raw. Acts on the last (column) axis.

    Attributes:
        min: (K,) float64 per-column minimum of the raw data.
        max: (K,) float64 per-column maximum of the raw data.
    """

    min: np.ndarray
    max: np.ndarray

    @classmethod
    def fit(cls, raw):
        """Fits on `raw` (..., K): statistics over every axis but the last."""
        raw = np.asarray(raw, np.float64)
        flat = raw.reshape(-1, raw.shape[-1])  # (rows, K)
        return cls(min=flat.min(axis=0), max=flat.max(axis=0))

    @classmethod
    def identity(cls, num_columns):
        """The scaler of data already in [0, 1] (the sines): transform and inverse return the input."""
        return cls(min=np.zeros(num_columns), max=np.ones(num_columns))

    def transform(self, raw):
        """(..., K) raw units -> [0, 1] (float64)."""
        return (np.asarray(raw, np.float64) - self.min) / (self.max - self.min)

    def inverse(self, unit):
        """(..., K) values in [0, 1] -> raw units (float64)."""
        return np.asarray(unit, np.float64) * (self.max - self.min) + self.min

    def to_dict(self):
        """Plain arrays for a checkpoint."""
        return {"min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, d):
        return cls(min=np.asarray(d["min"], np.float64), max=np.asarray(d["max"], np.float64))
