"""Labelled data sets: windows with one class label each (`LabelledDataset`).

Sources (`load_labelled`, reached through `loaders.dataset_of`):
- `csv:PATH` with `config.data.label_column=NAME`: one label per row (integers or names; an
  empty cell is an error naming its row). A window's label is its rows' label; a window whose
  rows cross a label change is dropped, and the run logs how many were.
- `npy:PATH` with `config.data.labels=LABELS.npy`: one label per row of a (rows, K) series
  (windowed as a CSV's), or one per window of (N, L, K) windows.
- `class_sines`: sines whose frequency band is the class (`CLASS_BANDS`), an exact answer to
  check generated samples against (`estimate_frequencies`); a second draw of the same size is
  its test set.
- `ucr:NAME`: a UCR/UEA classification set in the `.ts` format (`parse_ts`), NAME_TRAIN.ts
  trains and NAME_TEST.ts is the test set (`Dataset.test_windows` and `test_labels`). The files
  are read from the data directory (or its `ucr/` folder); missing ones are taken from the wheel
  of the `aeon` package, which ships ItalyPowerDemand, BasicMotions, JapaneseVowels, GunPoint and
  a few more: `pip download aeon==AEON_VERSION --no-deps` fetches the wheel (no install: aeon's
  numba pins numpy below ours), its sha256 is checked, and the wheel and the extracted files are
  cached in the data directory. Length rule: every series is resampled to seq_len points by
  linear interpolation over its own duration (a series of seq_len points is kept exactly), so
  variable-length sets (JapaneseVowels, 7-29 steps) give one window per series.

Class names are strings, indices their sorted order (`labels.encode_labels`).
"""

import dataclasses
import hashlib
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from absl import logging

from stdiff_jax import labels as labels_lib
from stdiff_jax.data import download, loaders, tables
from stdiff_jax.data.scaling import MinMaxScaler
from stdiff_jax.errors import MissingFileError, UserError

CLASS_SINES = "class_sines"
UCR_PREFIX = "ucr:"
AEON_VERSION = "1.6.0"
AEON_WHEEL = f"aeon-{AEON_VERSION}-py3-none-any.whl"
AEON_WHEEL_SHA256 = "d05227086706f80111ac5fee8de4d5d3115bb3bcfd1c786c8629393055816409"
AEON_DATA = "aeon/datasets/data"
PIP_TIMEOUT_S = 300

# class_sines: angular frequency (radians per step) of each class, disjoint bands; every channel
# of a window is sin(freq * t + phase) with freq uniform in its class's band, phase in [0, 2 pi).
CLASS_BANDS = ((0.2, 0.4), (0.6, 0.8), (1.0, 1.2))
CLASS_SINES_COUNTS = (1500, 900, 600)  # unequal on purpose: the w = 0 mixture must match them
CLASS_SINES_CHANNELS = 2
CLASS_SINES_SEED, CLASS_SINES_TEST_SEED = 7, 8


@dataclasses.dataclass(frozen=True, eq=False)
class LabelledDataset(loaders.Dataset):
    """A `Dataset` with one class per window.

    Attributes (beyond Dataset's):
        labels: (N,) int32 class indices of `windows`.
        class_names: C names; index i is class_names[i].
        test_labels: (M,) int32 of `test_windows`, or None.
    """

    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    test_labels: np.ndarray | None = None


def is_labelled_name(name):
    """Whether a data set name is one of the labelled sets of their own (class_sines, ucr:NAME)."""
    return name == CLASS_SINES or name.startswith(UCR_PREFIX)


def wants_labels(data_config):
    """Whether a config's data section names a labelled data set."""
    return bool(data_config.get("label_column") or data_config.get("labels")
                or is_labelled_name(data_config.name))


def dataset_of(data_config):
    """The `LabelledDataset` of a config's data section (`wants_labels` must hold)."""
    return load_labelled(data_config.name, data_config.seq_len, data_config.root,
                         data_config.get("test_fraction", 0.0),
                         data_config.get("test_position", 1.0),
                         data_config.get("allow_outliers", False),
                         label_column=data_config.get("label_column", ""),
                         labels_path=data_config.get("labels", ""))


def load_labelled(name, seq_len, data_dir=None, test_fraction=0.0, test_position=1.0,
                  allow_outliers=False, *, label_column="", labels_path=""):
    """A `LabelledDataset` of `csv:PATH` + label_column, `npy:PATH` + labels_path, `class_sines`
    or `ucr:NAME` (module docstring), windows in [-1, 1] as `loaders.load_dataset`'s (whose
    arguments these are)."""
    if name.startswith("csv:"):
        if not label_column or labels_path:
            raise UserError(f"{name}: a CSV's labels come from one of its columns: set "
                            f"config.data.label_column=NAME (and not config.data.labels).")
        path = loaders._custom_path(name[4:])
        values = read_label_column(path, label_column)
        raw, names = tables.read_csv(path, drop=(label_column,))
        return labelled_dataset(name, raw, names, values, seq_len, test_fraction, test_position,
                                allow_outliers=allow_outliers)
    if label_column:
        raise UserError(f"config.data.label_column={label_column!r} names a column of a CSV, "
                        f"but the data set is {name!r}: use csv:PATH data.")
    if name.startswith("npy:"):
        if not labels_path:
            raise UserError(f"{name}: set config.data.labels=LABELS.npy, one label per row of a "
                            f"series or per window.")
        raw, names = tables.read_npy(loaders._custom_path(name[4:]))
        values = read_labels_npy(loaders._custom_path(labels_path))
        return labelled_dataset(name, raw, names, values, seq_len, test_fraction, test_position,
                                allow_outliers=allow_outliers)
    if labels_path:
        raise UserError(f"config.data.labels={labels_path!r} labels an npy:PATH data set, but "
                        f"the data set is {name!r}.")
    if name == CLASS_SINES:
        return class_sines_dataset(seq_len, test_fraction)
    if name.startswith(UCR_PREFIX):
        return ucr_dataset(name, seq_len, data_dir, test_fraction, allow_outliers)
    raise UserError(f"{name!r} has no labels: use csv:PATH with config.data.label_column, "
                    f"npy:PATH with config.data.labels, {CLASS_SINES} or ucr:NAME.")


# ------------------------------------------------------------------------------------------------
# Labels of rows and windows.
# ------------------------------------------------------------------------------------------------
def read_label_column(path, column):
    """The labels (rows,) of a CSV's column `column` (`tables.read_text_column`); a UserError
    for a missing column or an empty cell (a gap), naming its row."""
    try:
        values, lines = tables.read_text_column(path, column)
    except UserError as e:
        raise UserError(f"{e} (config.data.label_column)") from None
    gaps = np.flatnonzero(values == "")
    if gaps.size:
        raise UserError(f"{path}: the label column {column!r} is empty at data row {gaps[0]} "
                        f"(0-based, header excluded; file line {lines[gaps[0]]}), the first of "
                        f"{gaps.size} gaps. Every row needs a label: fill them, or drop those "
                        f"rows.")
    return values


def read_labels_npy(path):
    """A 1-D .npy of labels (integers or strings) -> (rows,) array; a UserError otherwise."""
    values = np.load(path, allow_pickle=False)
    if values.ndim != 1:
        raise UserError(f"{path} holds labels of shape {values.shape}; expected one label per "
                        f"row or window, shape (N,).")
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise UserError(f"{path}: float labels must be whole numbers without NaN (a gap); "
                            f"store integers or strings.")
        values = values.astype(np.int64)
    if values.dtype.kind not in "iuUb":
        raise UserError(f"{path} holds labels of dtype {values.dtype}: store integers or strings.")
    return values


def _window_labels(piece, seq_len):
    """(labels (N,), keep (N,) bool) of the windows of one piece of row labels (rows,): a
    window keeps its rows' label when all agree."""
    view = np.lib.stride_tricks.sliding_window_view(piece, seq_len)  # (N, L)
    return view[:, 0], np.all(view == view[:, :1], axis=1)


def labelled_dataset(name, raw, names, values, seq_len, test_fraction=0.0, test_position=1.0,
                     scaler=None, allow_outliers=False):
    """`loaders.make_dataset` with labels: `values` (rows,) of a series raw (rows, K), each
    window taking its rows' common label (windows across a change are dropped), or (N,) of
    windows raw (N, L, K)."""
    if len(values) != raw.shape[0]:
        unit = "rows" if raw.ndim == 2 else "windows"
        raise UserError(f"{name}: {len(values)} labels for {raw.shape[0]} {unit}; give one "
                        f"label per {unit[:-1]}.")
    base = loaders.make_dataset(name, raw, names, seq_len, scaler, test_fraction, test_position,
                                allow_outliers)
    indices, class_names = labels_lib.encode_labels(values)
    shaped = indices.reshape(raw.shape[0], *(1,) * (raw.ndim - 1))  # split like raw
    pieces, block = loaders.split_held_out(shaped, test_fraction, test_position, seq_len, name)

    def of(parts):
        if raw.ndim == 3:
            flat = np.concatenate([p.ravel() for p in parts])
            return flat, np.ones(len(flat), bool)
        window_labels, keep = zip(*(_window_labels(p.ravel(), seq_len) for p in parts))
        return np.concatenate(window_labels), np.concatenate(keep)

    labels, keep = of(pieces)
    if not keep.all():
        logging.info("%s: dropped %d of %d windows whose rows cross a label change; %d remain.",
                     name, (~keep).sum(), len(keep), keep.sum())
    test_windows = test_labels = None
    if block is not None:
        test_labels, test_keep = of([block])
        test_windows, test_labels = base.test_windows[test_keep], test_labels[test_keep]
    starts = None if base.window_starts is None else base.window_starts[keep]
    return LabelledDataset(name=name, windows=base.windows[keep], scaler=base.scaler,
                           column_names=base.column_names, test_windows=test_windows,
                           window_starts=starts, labels=labels[keep].astype(np.int32),
                           class_names=class_names, test_labels=test_labels)


# ------------------------------------------------------------------------------------------------
# class_sines: an exact answer.
# ------------------------------------------------------------------------------------------------
def class_sine_windows(counts=CLASS_SINES_COUNTS, seq_len=24, channels=CLASS_SINES_CHANNELS,
                       seed=CLASS_SINES_SEED):
    """(windows (N, L, K) float64 in [0, 1], labels (N,) int32): counts[c] windows of class c,
    each channel (sin(freq t + phase) + 1) / 2 with freq uniform in CLASS_BANDS[c]."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    bands = np.asarray(CLASS_BANDS)[labels]  # (N, 2)
    freq = rng.uniform(bands[:, :1], bands[:, 1:], size=(len(labels), channels))  # (N, K)
    phase = rng.uniform(0, 2 * np.pi, size=(len(labels), channels))
    t = np.arange(seq_len, dtype=np.float64)
    x = np.sin(freq[:, None, :] * t[None, :, None] + phase[:, None, :])  # (N, L, K)
    return (x + 1) / 2, labels


def class_sines_dataset(seq_len, test_fraction=0.0):
    """`class_sine_windows` as a `LabelledDataset` (identity scaler, as sines), with a second
    draw of the same size as its test set."""
    if test_fraction:
        raise UserError(f"{CLASS_SINES} has its own test set (a second draw): leave "
                        f"config.data.test_fraction at 0.")
    names = [f"sine_{k}" for k in range(CLASS_SINES_CHANNELS)]
    unit, labels = class_sine_windows(seq_len=seq_len)
    test_unit, test_labels = class_sine_windows(seq_len=seq_len, seed=CLASS_SINES_TEST_SEED)
    scaler = MinMaxScaler.identity(CLASS_SINES_CHANNELS)
    base = loaders.make_dataset(CLASS_SINES, unit, names, seq_len, scaler)
    class_names = tuple(str(c) for c in range(len(CLASS_BANDS)))
    return LabelledDataset(name=CLASS_SINES, windows=base.windows, scaler=scaler,
                           column_names=base.column_names,
                           test_windows=(2 * test_unit - 1).astype(np.float32), labels=labels,
                           class_names=class_names, test_labels=test_labels)


def estimate_frequencies(unit_windows, grid_step=0.002):
    """(N, K) angular frequency (radians per step) of each channel of windows (N, L, K): the
    frequency in (0, pi) whose least-squares fit a + b cos(w t) + c sin(w t) leaves the smallest
    residual, on a grid of `grid_step`."""
    x = np.asarray(unit_windows, np.float64)
    n, length, k = x.shape
    grid = np.arange(grid_step, np.pi, grid_step)  # (G,)
    t = np.arange(length)
    design = np.stack([np.ones((len(grid), length)), np.cos(grid[:, None] * t),
                       np.sin(grid[:, None] * t)], axis=-1)  # (G, L, 3)
    basis, _ = np.linalg.qr(design)  # (G, L, 3), orthonormal columns
    series = x.transpose(0, 2, 1).reshape(n * k, length)  # (N K, L)
    explained = np.zeros((len(grid), n * k))
    for c in range(3):  # the fitted energy ||Q^T x||^2, one basis column at a time
        explained += (basis[:, :, c] @ series.T) ** 2
    return grid[np.argmax(explained, axis=0)].reshape(n, k)


def band_of(frequencies):
    """(N, K) frequencies -> (N,) the class whose band holds every channel's, -1 if none does."""
    classes = np.full(frequencies.shape[0], -1)
    for c, (lo, hi) in enumerate(CLASS_BANDS):
        classes[np.all((frequencies >= lo) & (frequencies <= hi), axis=1)] = c
    return classes


def nearest_band(frequencies):
    """(N, K) frequencies -> (N,) the class whose band's centre is nearest to the channels'
    mean frequency: every window gets a class, for the class mixture of unconditional samples."""
    centres = np.asarray(CLASS_BANDS).mean(axis=1)  # (C,)
    return np.argmin(np.abs(frequencies.mean(axis=1)[:, None] - centres), axis=1)


# ------------------------------------------------------------------------------------------------
# ucr:NAME, from .ts files.
# ------------------------------------------------------------------------------------------------
TS_TAGS = ("problemname", "timestamps", "missing", "univariate", "dimensions", "equallength",
           "serieslength", "classlabel")


def _ts_bool(value, tag, where):
    if value.lower() not in ("true", "false"):
        raise UserError(f"{where}: @{tag} must be true or false, got {value!r}.")
    return value.lower() == "true"


def parse_ts(text, where):
    """A classification .ts file -> (series: list of (L_i, K) float64 arrays, labels: list of
    str, class names from @classLabel in their order).

    Exact: '#' lines are comments; the header holds only the tags of TS_TAGS; @classLabel must
    be true; timestamps and missing values ('?', NaN) are refused; every case has @dimensions
    dimensions of equal length and a label from @classLabel; @equalLength true and
    @seriesLength are checked. Anything else is a UserError naming its line.
    """
    header, cases, in_data = {}, [], False
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            tag, _, value = line.partition(" ")
            tag = tag.lower()
            if tag == "@data":
                in_data = True
            elif tag.startswith("@") and tag[1:] in TS_TAGS:
                header[tag[1:]] = value.strip()
            else:
                raise UserError(f"{where}, line {number}: {line[:60]!r} is no .ts header tag "
                                f"(@{', @'.join(TS_TAGS)} or @data).")
            continue
        cases.append((number, line))
    label_spec = header.get("classlabel", "false").split()
    if not in_data or not label_spec or not _ts_bool(label_spec[0], "classLabel", where):
        raise UserError(f"{where}: not a classification .ts file (it needs '@classLabel true "
                        f"<labels>' and '@data').")
    if _ts_bool(header.get("timestamps", "false"), "timeStamps", where):
        raise UserError(f"{where}: time-stamped .ts files are not supported.")
    class_names = tuple(label_spec[1:])
    univariate = _ts_bool(header.get("univariate", "true"), "univariate", where)
    dims = 1 if univariate else int(header.get("dimensions", "0") or 0)
    if dims < 1:
        raise UserError(f"{where}: a multivariate .ts file needs @dimensions N.")
    series, labels = [], []
    for number, line in cases:
        fields = line.split(":")
        if len(fields) != dims + 1:
            raise UserError(f"{where}, line {number}: {len(fields) - 1} dimension(s) and a label "
                            f"expected {dims} and a label.")
        *dimensions, label = (f.strip() for f in fields)
        if label not in class_names:
            raise UserError(f"{where}, line {number}: label {label!r} is not among @classLabel "
                            f"{list(class_names)}.")
        try:
            values = [np.asarray([float(v) for v in d.split(",")]) for d in dimensions]
        except ValueError as e:
            raise UserError(f"{where}, line {number}: a value does not parse as a number "
                            f"({e}); missing values ('?') are not supported.") from None
        if len({len(v) for v in values}) != 1 or not all(np.all(np.isfinite(v)) for v in values):
            raise UserError(f"{where}, line {number}: the dimensions differ in length or hold "
                            f"NaN or inf; missing values are not supported.")
        series.append(np.stack(values, axis=1))  # (L_i, K)
        labels.append(label)
    if not series:
        raise UserError(f"{where}: no data lines after @data.")
    lengths = {len(s) for s in series}
    if _ts_bool(header.get("equallength", "true"), "equalLength", where) and len(lengths) > 1:
        raise UserError(f"{where}: @equalLength true, but the series have lengths "
                        f"{sorted(lengths)}.")
    if "serieslength" in header and lengths != {int(header["serieslength"])}:
        raise UserError(f"{where}: @seriesLength {header['serieslength']}, but the series have "
                        f"lengths {sorted(lengths)}.")
    return series, labels, class_names


def resample(series, seq_len):
    """(L_i, K) -> (seq_len, K) by linear interpolation over the series' duration; a series of
    seq_len points is returned as it is."""
    length = len(series)
    if length == seq_len:
        return series
    if length < 2:
        raise UserError(f"A series of {length} point cannot be resampled to {seq_len}.")
    at = np.linspace(0, length - 1, seq_len)
    return np.stack([np.interp(at, np.arange(length), column) for column in series.T], axis=1)


def ucr_dataset(name, seq_len, data_dir=None, test_fraction=0.0, allow_outliers=False):
    """The `LabelledDataset` of `ucr:NAME`: NAME_TRAIN.ts trains, NAME_TEST.ts is the test set
    (scaled by the training scaler), every series resampled to seq_len (module docstring)."""
    if test_fraction:
        raise UserError(f"{name} holds out its archive's TEST file: leave "
                        f"config.data.test_fraction at 0.")
    problem = name[len(UCR_PREFIX):]
    parts = {}
    for split in ("TRAIN", "TEST"):
        path = ucr_file(problem, split, data_dir)
        series, labels, _ = parse_ts(path.read_text(), path)
        parts[split] = np.stack([resample(s, seq_len) for s in series]), labels
    (train, train_labels), (test, test_labels) = parts["TRAIN"], parts["TEST"]
    indices, class_names = labels_lib.encode_labels(list(train_labels) + list(test_labels))
    names = [f"dim_{k}" for k in range(train.shape[-1])]
    base = loaders.make_dataset(name, train, names, seq_len, allow_outliers=allow_outliers)
    test_windows = (2 * base.scaler.transform(test) - 1).astype(np.float32)
    return LabelledDataset(name=name, windows=base.windows, scaler=base.scaler,
                           column_names=base.column_names, test_windows=test_windows,
                           labels=indices[:len(train)], class_names=class_names,
                           test_labels=indices[len(train):])


def ucr_file(problem, split, data_dir=None):
    """Path of PROBLEM_SPLIT.ts in the data directory (or its ucr/ folder), extracted from the
    aeon wheel into ucr/ when missing (`aeon_wheel`)."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", problem):
        raise UserError(f"ucr:{problem}: a UCR/UEA problem name is letters, digits and _.")
    directory = download.resolve_data_dir(data_dir)
    filename = f"{problem}_{split}.ts"
    for path in (directory / filename, directory / "ucr" / filename):
        if path.exists():
            return path
    wheel = aeon_wheel(directory)
    member = f"{AEON_DATA}/{problem}/{filename}"
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            shipped = sorted({m.split("/")[-2] for m in archive.namelist()
                              if m.startswith(AEON_DATA) and m.endswith("_TRAIN.ts")})
            raise MissingFileError(f"{filename} is neither in {directory} nor in the aeon "
                                   f"{AEON_VERSION} wheel, which ships {shipped}. Put the UCR/UEA "
                                   f"files {problem}_TRAIN.ts and _TEST.ts in {directory}.")
        data = archive.read(member)
    path = directory / "ucr" / filename
    _write_atomic(path, data)
    return path


def _write_atomic(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".part-", delete=False) as f:
        f.write(data)
    pathlib.Path(f.name).chmod(download.FILE_MODE)
    pathlib.Path(f.name).replace(path)


def _pip_download(requirement, directory):
    """`pip download REQUIREMENT --no-deps` into `directory` (tests replace this function)."""
    subprocess.run([sys.executable, "-m", "pip", "download", requirement, "--no-deps",
                    "--only-binary=:all:", "--dest", str(directory)], check=True,
                   capture_output=True, text=True, timeout=PIP_TIMEOUT_S)


def aeon_wheel(directory):
    """The aeon wheel in `directory`, fetched with pip when missing; its sha256 is checked."""
    path = directory / AEON_WHEEL
    if not path.exists():
        if not download.is_writable(directory):
            raise download.DataUnavailableError(
                f"The UCR/UEA files are not in {directory}, which is read-only, so the aeon wheel "
                f"that ships them cannot be fetched there. Run `pip download aeon=={AEON_VERSION} "
                f"--no-deps` and put {AEON_WHEEL} (or the NAME_TRAIN.ts and NAME_TEST.ts files) "
                f"in a writable data directory (config.data.root).")
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".part-") as tmp:
            try:
                _pip_download(f"aeon=={AEON_VERSION}", tmp)
            except (OSError, subprocess.SubprocessError) as e:
                detail = getattr(e, "stderr", "") or e
                raise download.DataUnavailableError(
                    f"Could not fetch the aeon {AEON_VERSION} wheel (which ships the UCR/UEA "
                    f"files) with pip: {str(detail).strip()[-300:]}. Put {AEON_WHEEL}, or the "
                    f"NAME_TRAIN.ts and NAME_TEST.ts files, in {directory}.") from e
            fetched = pathlib.Path(tmp) / AEON_WHEEL
            _check_sha256(fetched, f"The wheel pip fetched ({fetched.name})")
            shutil.move(fetched, path)
    _check_sha256(path, str(path))
    return path


def _check_sha256(path, what):
    digest = hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
    if digest != AEON_WHEEL_SHA256:
        raise download.ChecksumError(f"{what} has sha256 {digest}, expected "
                                     f"{AEON_WHEEL_SHA256} (aeon {AEON_VERSION}); delete it to "
                                     f"fetch it again.")
