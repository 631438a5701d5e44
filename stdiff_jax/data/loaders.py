"""`load_dataset`: every benchmark data set as stride-1 windows in [-1, 1], per docs/protocol.md.

The pipeline is the same for all: a raw float64 series (rows, K), or raw windows (N, L, K) for the
generated sets; a check for bad values; a per-column min-max scaler fitted on all of it; every
stride-1 window of length L (a zero-copy `sliding_window_view`); then `2u - 1`.

With a `test_fraction` a contiguous block of that share of the rows (of the windows, for window
sets) is held out before any of that, by default the last rows (`test_position` 1; 0 is the
first rows, 0.5 the middle). The scaler and the training windows come from the rest, no window
straddling the block, and the held-out block's windows (`Dataset.test_windows`, scaled by the
same scaler) share no value with a training window. A middle block of a trending series (stock
prices) stays inside the training range where its tail does not. The protocol trains on
everything (test_fraction 0); the conditional benchmark holds out.

The windows of a series keep the data row each starts at (`Dataset.window_starts`), so that the
training's validation split (`train.split_windows`) can hold out a block of rows that no training
window touches; window sets have none (each window is its own series).
"""

import dataclasses
import pathlib

import numpy as np

from stdiff_jax.data import mujoco, standins, suite, synthetic, tables
from stdiff_jax.data.download import ensure_file
from stdiff_jax.data.scaling import MinMaxScaler
from stdiff_jax.data.sources import SOURCES
from stdiff_jax.errors import MissingFileError, UserError

# Seeded generated series: name -> generator(seed) -> ((rows, K) float64, K names); seed 0 is the
# data set, other seeds fresh draws (`held_out`).
GENERATED = {**standins.GENERATORS, **suite.GENERATORS}
NAMES = ("sines", "stocks", "etth", "energy", "fmri", "mujoco", *GENERATED)
# A value this many times its column's spread from the median is refused (`far_outliers`): far
# beyond any real heavy tail, it squeezes the rest of its column to a constant when min-max
# scaled.
OUTLIER_SPREADS = 1e6


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Training windows and the scaler that maps them back to raw units.

    Attributes:
        name: the name given to `load_dataset`.
        windows: (N, L, K) float32 in [-1, 1], what the model trains on.
        scaler: the fitted per-column `MinMaxScaler` (raw <-> [0, 1]).
        column_names: K names, from the file's header where it has one.
        test_windows: (M, L, K) float32 windows of the held-out block (`load_dataset`'s
            test_fraction), in the training scaler's [-1, 1] (values may fall outside it);
            None when nothing is held out.
        window_starts: (N,) int64, the data row (0-based, of the whole raw series, the held-out
            block included) each window of a series starts at, in increasing order: window i
            covers rows window_starts[i] .. window_starts[i] + L - 1. None when every window is
            a series of its own (window sets: sines, mujoco, npy (N, L, K), UCR).
    """

    name: str
    windows: np.ndarray
    scaler: MinMaxScaler
    column_names: tuple[str, ...]
    test_windows: np.ndarray | None = None
    window_starts: np.ndarray | None = None

    @property
    def unit_windows(self):
        """(N, L, K) float32 in [0, 1]: the real reference set of every metric."""
        return (self.windows + 1) / 2

    @property
    def seq_len(self):
        return self.windows.shape[1]

    @property
    def num_columns(self):
        return self.windows.shape[2]

    def __len__(self):
        return self.windows.shape[0]

    def to_raw(self, x):
        """(..., K) samples in [-1, 1] (model space) -> raw units, float64."""
        return self.scaler.inverse((np.asarray(x, np.float64) + 1) / 2)


def validate_raw(raw, names, seq_len, where, allow_outliers=False):
    """Raises a UserError naming the problem and the fix for data that cannot be windowed and
    scaled, or that holds values far outside the rest of their column (`far_outliers`) unless
    `allow_outliers`.

    Args:
        raw: (rows, K) series or (N, L, K) windows, float64.
        names: K column names.
        seq_len: window length L.
        where: what the data is (a path or a data set name), for the messages.
        allow_outliers: accept values `far_outliers` flags (config.data.allow_outliers).
    """
    if not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise UserError(f"seq_len must be a positive integer, got {seq_len!r}.")
    bad = np.argwhere(~np.isfinite(raw))
    if bad.size:
        *pos, col = bad[0]
        raise UserError(f"{where}: column {names[col]!r} has a NaN, inf or missing value at "
                        f"{_position(raw, pos)} (first of {len(bad)} such values). Fill or drop "
                        f"those rows first.")
    if raw.ndim == 2 and raw.shape[0] < seq_len:
        raise UserError(f"{where} has {raw.shape[0]} rows, fewer than seq_len={seq_len}: a window "
                        f"needs at least seq_len rows. Use a shorter seq_len or more data.")
    if raw.ndim == 3 and raw.shape[1] != seq_len:
        raise UserError(f"{where} holds windows of length {raw.shape[1]}, but seq_len={seq_len}.")
    flat = raw.reshape(-1, raw.shape[-1])
    constant = [names[k] for k in np.flatnonzero(flat.min(axis=0) == flat.max(axis=0))]
    if constant:
        raise UserError(f"{where}: column(s) {constant} are constant (min == max), so they carry no "
                        f"information and cannot be min-max scaled. Drop them from the data.")
    if not allow_outliers:
        _check_outliers(raw, names, where)


def far_outliers(flat):
    """(rows, K) float64 of non-constant columns -> ((rows, K) bool: the values more than
    OUTLIER_SPREADS x their column's spread from its median, (K,) spread, (K,) median).

    The spread is the inter-quartile range; where that is 0 (over half the column one value, as in
    a mostly-zero indicator) it is the median distance from the median of the values that differ
    from it, so that a 1e30 among 0s and 1s is still caught."""
    median = np.median(flat, axis=0)
    q1, q3 = np.percentile(flat, [25, 75], axis=0)
    distance = np.abs(flat - median)  # (rows, K)
    differing = np.nanmedian(np.where(distance > 0, distance, np.nan), axis=0)
    spread = np.where(q3 > q1, q3 - q1, differing)
    return distance > OUTLIER_SPREADS * spread, spread, median


def _check_outliers(raw, names, where):
    flat = raw.reshape(-1, raw.shape[-1])
    far, spread, median = far_outliers(flat)
    if far.any():
        row, col = np.argwhere(far)[0]
        value = flat[row, col]
        position = _position(raw, np.unravel_index(row, raw.shape[:-1]))
        raise UserError(
            f"{where}: column {names[col]!r} holds {value:g} at {position}, "
            f"{abs(value - median[col]) / spread[col]:.2g} times the column's spread "
            f"({spread[col]:g}: its inter-quartile range, or the median deviation where that is "
            f"0) from its median ({median[col]:g}); "
            f"{far.sum()} value(s) lie more than {OUTLIER_SPREADS:g} times it away. Such a value "
            f"is usually a placeholder for a missing value, a unit error or a misread number, and "
            f"min-max scaling with it would squeeze the rest of the column to a constant. Fix or "
            f"drop it (leave a missing value empty), or accept it with "
            f"--config.data.allow_outliers=True (load_dataset(..., allow_outliers=True)).")


def _position(raw, index):
    """Where index (row,) of a series or (window, step) of windows is, for a message."""
    if raw.ndim == 2:
        return f"data row {index[0]} (0-based, header excluded)"
    return f"window {index[0]}, step {index[1]}"


def _windows(raw, scaler, seq_len):
    """(N, L, K) float32 in [-1, 1] of a (rows, K) series or of (N, L, K) windows.

    2u - 1 before windowing: each row is scaled once (in float64), and for a series the only
    (N, L, K) array allocated is the float32 result.
    """
    windows = (2 * scaler.transform(raw) - 1).astype(np.float32)  # (rows, K) or (N, L, K)
    if windows.ndim == 2:
        view = np.lib.stride_tricks.sliding_window_view(windows, seq_len, axis=0)  # (N, K, L), no copy
        windows = np.ascontiguousarray(view.transpose(0, 2, 1))  # (N, L, K)
    return windows


def split_held_out(raw, test_fraction, test_position, seq_len, where):
    """(pieces, block) of raw data along its first axis: `block` the held-out `test_fraction` of
    it, starting `test_position` of the way from the first rows (0) to the last (1); `pieces` the
    one or two non-empty parts around it. Nothing held out: ([raw], None).

    The block must hold a window (seq_len rows of a series, 1 of a window set), and so must every
    piece: a piece too short for a window would feed the scaler rows no window trains on."""
    if not 0.0 <= test_fraction < 1.0:
        raise UserError(f"config.data.test_fraction must lie in [0, 1), got {test_fraction}.")
    if not 0.0 <= test_position <= 1.0:
        raise UserError(f"config.data.test_position must lie in [0, 1] (0: the first rows, "
                        f"1: the last), got {test_position}.")
    if test_fraction == 0.0:
        return [raw], None
    size = round(test_fraction * raw.shape[0])
    start = round(test_position * (raw.shape[0] - size))
    pieces = [piece for piece in (raw[:start], raw[start + size:]) if len(piece)]
    least = seq_len if raw.ndim == 2 else 1
    unit = "rows" if raw.ndim == 2 else "windows"
    if size < least or raw.shape[0] - size < least:
        raise UserError(f"{where}: test_fraction={test_fraction} holds out {size} of "
                        f"{raw.shape[0]} {unit}; the held-out part and the rest each need at "
                        f"least {least}. Use another test_fraction or more data.")
    shortest = min(map(len, pieces))
    if shortest < least:
        raise UserError(f"{where}: test_position={test_position} leaves {shortest} "
                        f"{unit} on one side of the held-out block, fewer than a window "
                        f"({least}). Move the block (0 or 1 puts it at an end).")
    return pieces, raw[start:start + size]


def _window_starts(raw, test_fraction, test_position, seq_len, where):
    """(N,) int64 first rows of the windows `make_dataset` cuts from a (rows, K) series, in its
    order (the pieces around the held-out block, each in row order); None for (N, L, K) windows."""
    if raw.ndim != 2:
        return None
    rows = np.arange(raw.shape[0])[:, None]  # (rows, 1): split as the series is
    pieces, _ = split_held_out(rows, test_fraction, test_position, seq_len, where)
    return np.concatenate([piece[:len(piece) - seq_len + 1, 0] for piece in pieces])


def make_dataset(name, raw, names, seq_len, scaler=None, test_fraction=0.0, test_position=1.0,
                 allow_outliers=False):
    """Validates, scales and windows raw data. `raw` is (rows, K) or (N, L, K) float64.

    `scaler` defaults to a min-max scaler fitted on all of `raw` but the held-out block
    (`test_fraction`, `test_position`; module docstring). allow_outliers: as for `validate_raw`.
    """
    validate_raw(raw, names, seq_len, name, allow_outliers)
    pieces, block = split_held_out(raw, test_fraction, test_position, seq_len, name)
    if scaler is None:
        scaler = MinMaxScaler.fit(np.concatenate(pieces))
    windows = np.concatenate([_windows(piece, scaler, seq_len) for piece in pieces])
    return Dataset(name=name, windows=windows, scaler=scaler, column_names=tuple(names),
                   test_windows=None if block is None else _windows(block, scaler, seq_len),
                   window_starts=_window_starts(raw, test_fraction, test_position, seq_len, name))


def _check_download(source, read):
    """A `check(path)` for `ensure_file`: the fresh file parses to the expected shape and header."""

    def check(path):
        raw, names = read(path)
        if source.shape is not None and raw.shape != source.shape:
            raise UserError(f"The download of {source.url} parses to shape {raw.shape}, expected "
                            f"{source.shape}; nothing was written.")
        if source.header is not None and (names[0], names[-1]) != source.header:
            raise UserError(f"The download of {source.url} has columns {names[0]}..{names[-1]}, "
                            f"expected {source.header[0]}..{source.header[1]}; nothing was written.")

    return check


def custom_file(name):
    """The file of a `csv:PATH` or `npy:PATH` data set name (~ expanded); None for a named set."""
    kind, sep, path = name.partition(":")
    return pathlib.Path(path).expanduser() if sep and kind in ("csv", "npy") else None


def _custom_path(spec):
    path = pathlib.Path(spec).expanduser()
    if not path.is_file():
        raise MissingFileError(f"No data file at {path} (resolved from {spec!r}).")
    return path


def load_dataset(name, seq_len, data_dir=None, test_fraction=0.0, test_position=1.0,
                 allow_outliers=False):
    """Stride-1 windows of a data set, in [-1, 1], with the scaler back to raw units.

    Args:
        name: one of `NAMES`, or `csv:PATH` (header row; a date-like first column is dropped) or
            `npy:PATH` ((rows, K) series, windowed here, or (N, L, K) windows already).
        seq_len: window length L.
        data_dir: directory of the data files (the config's `data.root`); None means
            $STDIFF_DATA_DIR, else the user cache (see `download.resolve_data_dir`).
        test_fraction: the share of the rows (windows, for window sets) held out from the
            training windows and the scaler (module docstring); 0 holds out nothing.
        test_position: where the held-out block sits, from 0 (the first rows) to 1 (the last).
        allow_outliers: accept values far outside the rest of their column (`far_outliers`),
            which are otherwise refused before any work.

    Returns:
        A `Dataset`. Window counts at L = 24: sines 10,000; stocks 3,662; etth 17,397;
        energy 19,712; fmri 9,977; mujoco 10,000.
    """
    from stdiff_jax.data import labelled  # It builds on this module.

    if labelled.is_labelled_name(name):  # class_sines, ucr:NAME: a `labelled.LabelledDataset`
        return labelled.load_labelled(name, seq_len, data_dir, test_fraction, test_position,
                                      allow_outliers)
    if name.startswith("csv:"):
        raw, names = tables.read_csv(_custom_path(name[4:]))
    elif name.startswith("npy:"):
        raw, names = tables.read_npy(_custom_path(name[4:]))
    elif name == "sines":
        unit = synthetic.sine_windows(seq_len=seq_len)  # (N, L, 5), already in [0, 1]
        names = [f"sine_{k}" for k in range(unit.shape[-1])]
        return make_dataset(name, unit, names, seq_len, MinMaxScaler.identity(unit.shape[-1]),
                            test_fraction, test_position, allow_outliers)
    elif name == "mujoco":
        raw = mujoco.cached_hopper_trajectories(data_dir, seq_len)  # (N, L, 14)
        names = [f"qpos_{k}" for k in range(7)] + [f"qvel_{k}" for k in range(7)]
    elif name in GENERATED:
        raw, names = GENERATED[name](seed=0)
    elif name in SOURCES:
        source = SOURCES[name]
        read = tables.read_mat if name == "fmri" else tables.read_csv
        raw, names = read(ensure_file(source, data_dir, check=_check_download(source, read)))
    else:
        raise UserError(f"Unknown data set {name!r}: use one of {', '.join(NAMES)}, "
                        f"or csv:PATH / npy:PATH for your own data (labelled: class_sines, "
                        f"ucr:NAME).")
    return make_dataset(name, raw, names, seq_len, test_fraction=test_fraction,
                        test_position=test_position, allow_outliers=allow_outliers)


def dataset_of(data_config):
    """`load_dataset` of a config's data section (name, seq_len, root, the held-out block,
    allow_outliers), or a `labelled.LabelledDataset` when it gives labels
    (`labelled.wants_labels`)."""
    from stdiff_jax.data import labelled  # It builds on this module.

    if labelled.wants_labels(data_config):
        return labelled.dataset_of(data_config)
    return load_dataset(data_config.name, data_config.seq_len, data_config.root,
                        data_config.get("test_fraction", 0.0),
                        data_config.get("test_position", 1.0),
                        data_config.get("allow_outliers", False))
