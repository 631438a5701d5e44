"""Reading raw numeric tables from CSV, MATLAB and numpy files, with errors that name the problem.

Each reader returns `(raw, column_names)`: raw float64 `(rows, K)` (or `(N, L, K)` windows for an
.npy that holds them) and one name per column. Values are not checked for NaN/inf, constant
columns or outliers here: that is `loaders.validate_raw`, shared by every source.
`write_windows_csv` writes windows (generated series) as a CSV that `read_csv` reads back.

CSV files are read strictly, never guessed at: UTF-8 (a leading byte-order mark is dropped), a
header row of distinct, non-empty, non-numeric names, and in every row exactly as many fields as
the header. The separator is the comma; a file whose header splits only on `;` or on tabs is read
with that separator, and a log line says so. Anything else is a `UserError` naming the line,
showing it and saying what to change.
"""

import csv
import itertools
import re

import numpy as np
from absl import logging

from stdiff_jax.errors import UserError

DATE_HEADERS = ("date", "time", "datetime", "timestamp")
SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}  # the first that splits the header wins
SHOWN_CHARS = 200  # of a bad row, in an error message
# Numbers in a form read_csv does not convert (it never guesses), and what to do about them.
NUMBER_HINTS = (
    (r"-?\d{1,3}(,\d{3})+(\.\d*)?", " Values such as '30,531.0' hold thousands separators: "
                                      "re-save the file without them."),
    (r"-?\d+,\d+", " Values such as '1,5' use a decimal comma: re-save the file with decimal "
                   "points."),
)


def _parses_as_float(value):
    try:
        float(value)
        return True
    except ValueError:
        return False


def _is_date_like(header, values):
    if header.strip().lower() in DATE_HEADERS:
        return True
    value = values[0].strip()
    try:  # np.datetime64("") is NaT: an empty cell is no date
        return bool(value) and not np.isnat(np.datetime64(value.replace(" ", "T", 1)))
    except ValueError:
        return False


def _shown(text):
    """A line or list for a message: its repr, cut to SHOWN_CHARS."""
    text = text.rstrip("\r\n")
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")


# ------------------------------------------------------------------------------------------------
# Strict CSV reading.
# ------------------------------------------------------------------------------------------------
def read_csv(path, keep_dates=False, drop=()):
    """A CSV with a header row -> (raw (rows, K) float64, names), + dates if keep_dates.

    The file is checked first (module docstring: encoding, header, separator, field counts), in
    one streaming pass. A non-numeric first column that looks like a date (named date/time/... or
    holding ISO dates) is dropped, as the protocol drops ETTh's and energy's `date`; every other
    column must be numeric; an empty cell reads as NaN. numpy's C parser reads well-formed files;
    anything it rejects is re-read cell by cell to name the column, line and value that is wrong.
    keep_dates: also return the dropped column as (its name, its rows' strings), or None when
    there was none. drop: names of columns left out (a label column, `read_text_column`).
    """
    separator, header_line, header, first_column = _check_csv(path)
    first = first_column[0]
    drop_date = not _parses_as_float(first) and _is_date_like(header[0], [first])
    usecols = [j for j in range(1 if drop_date else 0, len(header)) if header[j] not in drop]
    try:
        raw = np.loadtxt(path, delimiter=separator, skiprows=header_line, usecols=usecols,
                         dtype=np.float64, ndmin=2, quotechar='"', comments=None,
                         encoding="utf-8-sig")
        names = [header[j] for j in usecols]
    except ValueError:  # empty cells, whitespace-only lines or text: the slow, exact way
        raw, names, drop_date = _read_csv_cells(path, separator, header, drop)
    dates = (header[0], first_column) if drop_date else None
    return (raw, names, dates) if keep_dates else (raw, names)


def _decoded_lines(path):
    """The lines of a file (line ends kept), decoded as strict UTF-8 without a leading byte-order
    mark; a byte that is not UTF-8 is a UserError naming its offset and line."""
    offset = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                shown = _shown(line.decode("utf-8", "replace"))
                raise UserError(
                    f"{path} is not UTF-8: byte 0x{line[e.start]:02x} at byte offset "
                    f"{offset + e.start} (line {number}: {shown}) is not valid UTF-8. The file was "
                    f"probably saved in another encoding (Latin-1 or Windows-1252, as Excel's "
                    f"plain 'CSV' does): re-save it as UTF-8 (Excel: 'CSV UTF-8'; or `iconv -f "
                    f"latin1 -t utf-8 {path} > fixed.csv`).") from None
            yield text.removeprefix("\ufeff") if number == 1 else text
            offset += len(line)


def _csv_rows(path):
    """(separator, iterator of (line number, fields) of the non-blank rows, the header first).

    The separator is the first of SEPARATORS that splits the first non-blank line (the header)."""
    lines, head = _decoded_lines(path), []
    for line in lines:
        head.append(line)
        if line.strip():
            break
    separator = next((s for s in SEPARATORS if head and len(
        next(csv.reader([head[-1]], delimiter=s), [])) > 1), ",")
    reader = csv.reader(itertools.chain(head, lines), delimiter=separator)
    rows = ((reader.line_num, row) for row in reader
            if len(row) > 1 or (row and row[0].strip()))
    return separator, rows


def _check_csv(path):
    """(separator, line number of the header, header names, first column of the data rows) of a
    CSV whose encoding, header and field counts are right; a UserError naming the first problem
    otherwise. Streams the file: only the first column is kept."""
    separator, rows = _csv_rows(path)
    header_line, header = next(rows, (0, []))
    header = [name.strip() for name in header]
    if separator != ",":
        logging.info("Reading %s as %s-separated (%r): its header splits on it, not on commas.",
                     path, SEPARATORS[separator], separator)
    if not header:
        raise UserError(f"{path} is empty: it needs a header row of column names and data rows.")
    _check_header(path, header)
    first_column = []
    for line, row in rows:
        if len(row) != len(header):
            raise UserError(_field_count_message(path, line, row, header, separator))
        first_column.append(row[0].strip())
    if not first_column:
        raise UserError(f"{path} has a header row but no data rows.")
    return separator, header_line, header, first_column


def _check_header(path, header):
    """A UserError for a header row with empty or repeated names, or that is missing (numbers
    where the names belong)."""
    empty = [k + 1 for k, name in enumerate(header) if not name]
    if empty:
        pandas = " (pandas writes its index so: save with index=False)" if empty[0] == 1 else ""
        raise UserError(f"{path}: header column(s) {empty} (1-based) have no name{pandas}. Name "
                        f"every column, or remove the unnamed ones (a separator at the end of "
                        f"every line makes an empty last column).")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        where = "; ".join(f"{name!r} at columns "
                          f"{[k + 1 for k, n in enumerate(header) if n == name]}"
                          for name in repeated)
        raise UserError(f"{path} has repeated column names: {where} (1-based). Each column needs "
                        f"its own name (the outputs are labelled by them): rename or drop the "
                        f"copies.")
    numeric = [_parses_as_float(name) for name in header]
    looks_like_data = all(numeric[1:]) and (numeric[0] or _is_date_like("", header))
    if looks_like_data and header != [str(k) for k in range(len(header))]:  # pandas' default
        example = ["date"] * (not numeric[0]) + [f"c{k}" for k in range(1, 3)]
        raise UserError(f"{path} has no header row: its first row {_shown(', '.join(header))} "
                        f"holds numbers{'' if numeric[0] else ' and a date'}, not column names. "
                        f"Add a header row of column names as the first line (e.g. "
                        f"{','.join(example)},...).")


def _field_count_message(path, line, row, header, separator):
    """The paragraph for a row whose field count is not the header's, with its likely cause."""
    if len(row) > len(header):
        split = next(((a, b) for a, b in zip(row, row[1:]) if re.fullmatch(r"\s*-?\d{1,3}", a)
                      and re.match(r"\d{3}(?!\d)", b)), None)
        cause = (f"`{split[0].strip()}{separator}{split[1]}` looks like a number written with "
                 f"a thousands separator, which splits it into two fields: write it without one "
                 f"({split[0].strip()}{split[1]}) or in double quotes" if split else
                 f"a value holds the separator {separator!r}: put it in double quotes")
    else:
        cause = "a value or its separator is missing, or the row was cut short"
    return (f"{path}, line {line}: {len(row)} fields, but the header has {len(header)} "
            f"({_shown(', '.join(header))}). The row: {_shown(separator.join(row))}. Likely "
            f"cause: {cause}. Every row needs one field per column (an empty field for a missing "
            f"value).")


def _read_csv_cells(path, separator, header, drop=()):
    """The cell-by-cell reading of `read_csv`, for a well-formed file numpy's parser rejects:
    (raw, names, whether a date-like first column was dropped). Empty cells become NaN
    (reported later with their row); non-numeric columns raise an error naming them."""
    lines, body = zip(*list(_csv_rows(path)[1])[1:])  # every row has len(header) fields
    table = np.char.strip(np.array(body, dtype=str))  # (rows, columns) strings
    table = np.where(table == "", "nan", table)  # np.where widens the dtype to fit "nan"
    columns, names, bad, dropped = [], [], [], False
    for j, name in enumerate(header):
        if name in drop:
            continue
        try:
            columns.append(table[:, j].astype(np.float64))
            names.append(name)
        except ValueError:
            if j == 0 and _is_date_like(name, table[:, 0]):
                dropped = True
                continue
            row = next(i for i, v in enumerate(table[:, j]) if not _parses_as_float(v))
            bad.append((name, row, str(table[row, j])))
    if bad:
        where = "; ".join(f"{name!r} (data row {row}, file line {lines[row]}: {value!r})"
                          for name, row, value in bad)
        hints = [hint for pattern, hint in NUMBER_HINTS
                 if any(re.fullmatch(pattern, value) for _, _, value in bad)]
        raise UserError(f"{path} has non-numeric columns: {where}. Only a date-like first column "
                        f"is dropped; remove or encode the others as numbers.{''.join(hints)}")
    if not columns:
        raise UserError(f"{path} has no numeric column.")
    return np.stack(columns, axis=1), names, dropped


def check_windows_observed(mask, starts=None, num_rows=None):
    """A UserError when a window to impute has no observed value: the sampler would draw it
    unconditionally, and the output would pass unconditional samples off as imputed.

    mask: (W, L, K) bool, True where observed. starts: (W,) first row of each window in the
    user's table (`conditional.impute_table`), and num_rows its length; None: the windows are
    the user's own (`conditional.impute`)."""
    empty = np.flatnonzero(~mask.any(axis=(1, 2)))
    if not empty.size:
        return
    length = mask.shape[1]
    if starts is None:
        where = f"window {empty[0]} ({empty.size} of the {len(mask)} windows)"
    else:
        first, last = starts[empty[0]], min(starts[empty[0]] + length, num_rows) - 1
        where = f"data rows {first}-{last} (0-based, header excluded)"
    raise UserError(f"Nothing is observed in {where}: the model sees L = {length} rows at a "
                    f"time, and a window with no observed value would be filled with "
                    f"unconditional samples, not imputed from the data. Give at least one value "
                    f"in every window of {length} rows, or drop the rows that are entirely "
                    f"missing.")

# ------------------------------------------------------------------------------------------------
# Other formats, and writing.
# ------------------------------------------------------------------------------------------------
def read_text_column(path, column):
    """The cells (rows,) of the column named `column` of a CSV that `read_csv` accepts, as
    stripped strings ('' for an empty cell), and the file line of each row; a UserError when
    the header has no such column."""
    separator, header_line, header, _ = _check_csv(path)
    header = [name.strip() for name in header]
    if column not in header:
        raise UserError(f"{path} has no column {column!r}; its columns are {header}.")
    j = header.index(column)
    lines, rows = zip(*list(_csv_rows(path)[1])[1:])
    return np.asarray([row[j].strip() for row in rows]), np.asarray(lines)


def write_windows_csv(path, windows, names, labels=None):
    """(N, L, K) windows -> a CSV with the header `window,t,<K names>` and one row per time step:
    the window's index, the time index within it, then the K values (float32 values written with
    9 significant digits, so they read back exactly). `read_csv` reads it as (N * L, 2 + K).
    labels: optional (N,) class names, written as a `label` column after `t` (read it back with
    `read_csv(path, drop=("label",))` and `read_text_column(path, "label")`)."""
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
