"""Reading raw numeric tables from CSV, MATLAB and numpy files, with errors that name the problem.

Each reader returns `(raw, column_names)`: raw float64 `(rows, K)` (or `(N, L, K)` windows for an
.npy that holds them) and one name per column. Values are not checked for NaN/inf or constant
columns here: that is `loaders.validate_raw`, shared by every source. `write_windows_csv` writes
windows (generated series) as a CSV that `read_csv` reads back.
"""

import csv

import numpy as np

from stdiff_jax.errors import UserError

DATE_HEADERS = ("date", "time", "datetime", "timestamp")


def _parses_as_float(value):
    try:
        float(value)
        return True
    except ValueError:
        return False


def _is_date_like(header, values):
    if header.strip().lower() in DATE_HEADERS:
        return True
    try:
        np.datetime64(values[0].strip().replace(" ", "T", 1))
        return True
    except ValueError:
        return False


def read_csv(path, keep_dates=False, drop=()):
    """A CSV with a header row -> (raw (rows, K) float64, names), + dates if keep_dates.

    A non-numeric first column that looks like a date (named date/time/... or holding ISO dates)
    is dropped, as the protocol drops ETTh's and energy's `date`; every other column must be
    numeric. numpy's C parser reads well-formed files; anything it rejects is re-read cell by cell
    to say exactly which column, row and value is wrong. keep_dates: also return the dropped
    column as (its name, its rows' strings), or None when there was none. drop: names of columns
    left out (a label column, `stdiff_jax.data.labelled`).
    """
    raw, names, dates = _read_csv(path, keep_dates, tuple(drop))
    return (raw, names, dates) if keep_dates else (raw, names)


def _read_csv(path, keep_dates, drop=()):
    with open(path, newline="") as f:
        rows = [row for _, row in zip(range(2), csv.reader(f))]
    if len(rows) < 2:
        raise UserError(f"{path} needs a header row and at least one data row; it has {len(rows)} rows.")
    header = [name.strip() for name in rows[0]]
    first = rows[1][0].strip() if rows[1] else ""
    drop_date = not _parses_as_float(first) and _is_date_like(header[0], [first])
    usecols = [j for j in range(1 if drop_date else 0, len(header)) if header[j] not in drop]
    try:
        raw = np.loadtxt(path, delimiter=",", skiprows=1, usecols=usecols, dtype=np.float64,
                         ndmin=2, quotechar='"')
    except ValueError:
        return _read_csv_diagnosing(path, drop)
    dates = None
    if drop_date and keep_dates:  # a second pass, for the one caller that writes them back
        dates = (header[0], [v.strip() for v in np.loadtxt(
            path, delimiter=",", skiprows=1, usecols=0, dtype=str, ndmin=1, quotechar='"')])
    return raw, [header[j] for j in usecols], dates


def write_windows_csv(path, windows, names, labels=None):
    """(N, L, K) windows -> a CSV with the header `window,t,<K names>` and one row per time step:
    the window's index, the time index within it, then the K values (float32 values written with
    9 significant digits, so they read back exactly). `read_csv` reads it as (N * L, 2 + K).
    labels: optional (N,) class names, written as a `label` column after `t` (read it back with
    `read_csv(path, drop=("label",))` and `labelled.read_label_column`)."""
    windows = np.asarray(windows, np.float32)
    n, length, k = windows.shape
    if len(names) != k:
        raise ValueError(f"got {len(names)} column names for {k} columns.")
    window, t = np.divmod(np.arange(n * length), length)
    table = np.column_stack([window, t, windows.reshape(n * length, k)])  # (N * L, 2 + K)
    fmt, header = ["%d", "%d"] + ["%.9g"] * k, ["window", "t", *names]
    if labels is not None:  # an object table: numbers and names, each written by its format
        cells = [_csv_cell(str(name)) for name in labels]
        table = np.column_stack([table[:, :2].astype(object), np.repeat(cells, length),
                                 table[:, 2:].astype(object)])
        fmt, header = fmt[:2] + ["%s"] + fmt[2:], header[:2] + ["label"] + header[2:]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerow(header)
        np.savetxt(f, table, fmt=fmt, delimiter=",")


def _csv_cell(text):
    """A text cell as the csv module quotes it (only when it holds a comma, quote or newline)."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _read_csv_diagnosing(path, drop=()):
    """The cell-by-cell reading of `read_csv`: empty cells become NaN (reported later with their
    row); ragged rows and non-numeric columns raise an error naming them."""
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    header, body = [name.strip() for name in rows[0]], rows[1:]
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise UserError(f"{path}, line {line}: {len(row)} fields, but the header has "
                            f"{len(header)} ({', '.join(header)}).")
    table = np.char.strip(np.array(body, dtype=str))  # (rows, columns) strings
    table = np.where(table == "", "nan", table)  # np.where widens the dtype to fit "nan"
    columns, names, bad, dates = [], [], [], None
    for j, name in enumerate(header):
        if name in drop:
            continue
        try:
            columns.append(table[:, j].astype(np.float64))
            names.append(name)
        except ValueError:
            if j == 0 and _is_date_like(name, table[:, 0]):
                dates = (name, list(table[:, 0]))
                continue
            row = next(i for i, v in enumerate(table[:, j]) if not _parses_as_float(v))
            bad.append(f"{name!r} (data row {row}, file line {row + 2}: {str(table[row, j])!r})")
    if bad:
        raise UserError(f"{path} has non-numeric columns: {'; '.join(bad)}. Only a date-like first "
                        f"column is dropped; remove or encode the others as numbers.")
    if not columns:
        raise UserError(f"{path} has no numeric column.")
    return np.stack(columns, axis=1), names, dates


def read_mat(path, key="ts"):
    """A MATLAB .mat file's 2-D array under `key` -> (raw (rows, K) float64, names node_0..)."""
    import scipy.io  # Imported here: it takes most of a second and only fMRI needs it.

    contents = scipy.io.loadmat(path)
    if key not in contents:
        keys = sorted(k for k in contents if not k.startswith("__"))
        raise UserError(f"{path} has no variable {key!r}; it holds {keys}.")
    raw = np.asarray(contents[key], np.float64)
    if raw.ndim != 2:
        raise UserError(f"{path}: {key!r} has shape {raw.shape}, expected (rows, columns).")
    return raw, [f"node_{k}" for k in range(raw.shape[1])]


def read_npy(path):
    """An .npy of a raw series (rows, K) or of windows (N, L, K) -> (raw float64, names c0..)."""
    raw = np.load(path, allow_pickle=False)
    if raw.ndim not in (2, 3):
        raise UserError(f"{path} holds an array of shape {raw.shape}: expected a series "
                        f"(rows, columns) or windows (N, L, columns).")
    if not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
        raise UserError(f"{path} holds dtype {raw.dtype}: expected numbers.")
    return raw.astype(np.float64), [f"c{k}" for k in range(raw.shape[-1])]
