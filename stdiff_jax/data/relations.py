"""Exact linear relations among a data set's columns, and generated series held to them.

Some columns are exact linear functions of others in every row: a duplicate (the energy file's
`rv1` and `rv2`), a sum, a unit conversion. A diffusion model learns such a relation only
approximately, and a classifier tells the samples apart by it alone (on the energy stand-in,
`rv2` drawn as `rv1` plus noise of 0.2 of the [0, 1] range is told apart 25-49% above chance,
docs/ablations.md). `ExactRelations.fit` finds them in the training windows' rows (the model's [-1, 1]): the
directions in which every row sits at the column means, to RELATIVE_TOLERANCE of the rows' spread
(a relation that the data's rounding breaks is not exact, and is left to the model).
`ExactRelations.project` moves generated rows onto them by the least change, and with a mask of
observed values (imputation, forecasting) changes only the values not observed.
"""

import dataclasses

import numpy as np

# A direction is a relation when the rows' spread along it is below this share of their largest
# spread: float32 data keeps its exact relations to ~1e-7; two decimals of rounding break them
# by ~1e-4 of a column's range.
RELATIVE_TOLERANCE = 1e-6
CHUNK_ROWS = 1 << 16


@dataclasses.dataclass(frozen=True, eq=False)
class ExactRelations:
    """The rows x (K,) of the data satisfy null^T (x - mean) = 0.

    Attributes:
        mean: (K,) float64 column means of the rows, in the model's [-1, 1].
        null: (K, m) float64 orthonormal directions, one a relation; m = 0: none.
    """

    mean: np.ndarray
    null: np.ndarray

    @classmethod
    def fit(cls, windows):
        """The relations of (..., K) values (every axis but the last are rows), from the rows'
        scatter matrix, summed in float64 a chunk of CHUNK_ROWS rows at a time."""
        rows = np.reshape(windows, (-1, np.shape(windows)[-1]))
        mean = rows.mean(0, dtype=np.float64)
        scatter = 0.0
        for start in range(0, len(rows), CHUNK_ROWS):
            centred = rows[start:start + CHUNK_ROWS].astype(np.float64) - mean
            scatter = scatter + centred.T @ centred
        values, directions = np.linalg.eigh(scatter)
        spreads = np.sqrt(np.maximum(values, 0.0))
        exact = spreads <= RELATIVE_TOLERANCE * spreads.max()
        return cls(mean=mean, null=directions[:, exact])

    def __len__(self):
        return self.null.shape[1]

    def project(self, values, observed=None):
        """(..., K) values in [-1, 1] moved onto the relations by the least change (Euclidean, in
        those units): all of them, or with `observed` ((..., K) bool) only those not observed,
        observed values kept as they are (where the observed values alone fix a relation's
        missing ones, those follow them; where they cannot, the least-squares fit)."""
        values = np.asarray(values, np.float64)
        if not len(self):
            return values
        violation = (values - self.mean) @ self.null  # (..., m)
        if observed is None:
            return values - violation @ self.null.T
        free = np.where(np.asarray(observed)[..., None], 0.0, self.null)  # (..., K, m)
        gram = np.swapaxes(free, -1, -2) @ free
        step = np.linalg.pinv(gram, hermitian=True) @ violation[..., None]  # (..., m, 1)
        return values - (free @ step)[..., 0]

    def describe(self, names, scaler):
        """One line a relation in the data's units, a column in terms of the others, e.g.
        "rv2 = 1 rv1"."""
        # Reduced row echelon form of the relations in raw units: each pivot column in terms of
        # the non-pivot ones, pivots chosen largest first
        # (the later column of a tie, which is more often the derived one).
        # w = 2 (x - min) / range - 1, so null^T (w - mean) = 0 reads rows @ x = -offsets.
        rows = (2.0 * self.null / (scaler.max - scaler.min)[:, None]).T.copy()  # (m, K)
        offsets = -(rows * scaler.min).sum(1) - self.null.sum(0) - self.null.T @ self.mean
        pivots = []
        for i in range(len(rows)):
            candidates = np.abs(rows[i:]).max(0)
            candidates[pivots] = 0.0
            column = int(np.flatnonzero(candidates >= (1 - RELATIVE_TOLERANCE)
                                        * candidates.max())[-1])  # of a tie, the later
            source = i + int(np.argmax(np.abs(rows[i:, column])))
            rows[[i, source]], offsets[[i, source]] = rows[[source, i]], offsets[[source, i]]
            offsets[i] /= rows[i, column]
            rows[i] /= rows[i, column]
            for j in range(len(rows)):
                if j != i:
                    offsets[j] -= rows[j, column] * offsets[i]
                    rows[j] -= rows[j, column] * rows[i]
            pivots.append(column)
        scale = np.abs(np.concatenate([scaler.min, scaler.max])).max()
        return [_equation(names, pivot, -row, -offset, pivots, scale)
                for pivot, row, offset in zip(pivots, rows, offsets)]

    def to_dict(self):
        """Plain arrays for a checkpoint: the relations as m rows of K."""
        return {"mean": self.mean, "relations": self.null.T}

    @classmethod
    def from_dict(cls, d):
        mean = np.asarray(d["mean"], np.float64)
        return cls(mean=mean, null=np.asarray(d["relations"], np.float64).reshape(-1, len(mean)).T)


def _equation(names, pivot, coefficients, offset, pivots, scale):
    """"name = c1 name1 + c2 name2 + c0", without the terms below the relations' precision."""
    tiny = RELATIVE_TOLERANCE * max(1.0, np.abs(coefficients).max())
    terms = [f"{c:+.4g} {names[k]}" for k, c in enumerate(coefficients)
             if k not in pivots and abs(c) > tiny]
    if abs(offset) > tiny * scale:
        terms.append(f"{offset:+.4g}")
    text = " ".join(terms).lstrip("+") or "0"
    return f"{names[pivot]} = {text}"
