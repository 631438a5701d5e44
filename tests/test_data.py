"""Data sets: protocol window counts, exact scaling, verified downloads, and clear errors.

stocks and etth use the real files of the data directory ($STDIFF_DATA_DIR, else ../shared/data);
energy and fMRI are parsed from small files these tests write in the same formats, and the
downloader is replaced so that no test touches the network.
"""

import io
import os
import pathlib
import tarfile
import urllib.error

import numpy as np
import pytest
import scipy.io

from stdiff_jax.data import Dataset, MinMaxScaler, download, load_dataset, mujoco, synthetic, tables
from stdiff_jax import errors
from stdiff_jax.data.sources import SOURCES

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA_DIR = os.environ.get("STDIFF_DATA_DIR", str(REPO.parent / "shared" / "data"))

ENERGY_COLUMNS = (["Appliances", "lights"]
                  + [name for i in range(1, 10) for name in (f"T{i}", f"RH_{i}")]
                  + ["T_out", "Press_mm_hg", "RH_out", "Windspeed", "Visibility", "Tdewpoint",
                     "rv1", "rv2"])


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download attempt fails as it would offline; tests that download replace this again."""

    def offline(url, dest):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(download, "_download", offline)


def write_energy_csv(path, rows, seed=0):
    """The UCI file's layout: a quoted header and quoted dates, then 28 numbers Appliances..rv2."""
    values = np.random.default_rng(seed).integers(0, 100, size=(rows, 28))
    dates = np.datetime64("2016-01-11T17:00") + np.arange(rows) * np.timedelta64(10, "m")
    with open(path, "w") as f:
        f.write(",".join(f'"{name}"' for name in ["date"] + ENERGY_COLUMNS) + "\n")
        for d, row in zip(dates, values):
            f.write(f'"{str(d).replace("T", " ")}:00",' + ",".join(map(str, row)) + "\n")
    return values.astype(np.float64)


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


# --- Real files: protocol window counts, ranges and exact scaling. ---

@pytest.mark.parametrize("name,seq_len,count,columns", [
    ("stocks", 24, 3662, 6),
    ("etth", 24, 17397, 7),
    ("etth", 64, 17357, 7),
    ("etth", 128, 17293, 7),
    ("etth", 256, 17165, 7),
])
def test_real_window_counts_and_range(name, seq_len, count, columns):
    ds = load_dataset(name, seq_len, DATA_DIR)
    assert isinstance(ds, Dataset)
    assert ds.windows.shape == (count, seq_len, columns)
    assert ds.windows.dtype == np.float32
    # Every row lies in some window, so each column reaches both ends of [-1, 1].
    np.testing.assert_array_equal(ds.windows.min(axis=(0, 1)), -1.0)
    np.testing.assert_array_equal(ds.windows.max(axis=(0, 1)), 1.0)


def test_real_scaling_is_exact_and_windows_are_stride_one():
    raw, names = tables.read_csv(pathlib.Path(DATA_DIR) / "ETTh1.csv")
    assert raw.shape == (17420, 7) and names[0] == "HUFL" and names[-1] == "OT"  # date dropped
    ds = load_dataset("etth", 24, DATA_DIR)
    assert ds.column_names == tuple(names)
    np.testing.assert_allclose(ds.scaler.min, raw.min(axis=0))
    np.testing.assert_allclose(ds.scaler.max, raw.max(axis=0))
    np.testing.assert_allclose(ds.scaler.inverse(ds.scaler.transform(raw)), raw, rtol=1e-12, atol=1e-12)
    for start in (0, 1, 5000, len(ds) - 1):  # window i is rows i..i+L-1
        expected = 2 * ds.scaler.transform(raw[start:start + 24]) - 1
        np.testing.assert_allclose(ds.windows[start], expected, atol=1e-6)
        np.testing.assert_allclose(ds.to_raw(ds.windows[start]), raw[start:start + 24],
                                   rtol=1e-5, atol=1e-4 * np.ptp(raw, axis=0).max())
    np.testing.assert_allclose(ds.unit_windows, (ds.windows + 1) / 2)
    restored = MinMaxScaler.from_dict({k: list(v) for k, v in ds.scaler.to_dict().items()})
    np.testing.assert_array_equal(restored.min, ds.scaler.min)
    np.testing.assert_array_equal(restored.max, ds.scaler.max)


def test_a_few_valued_column_comes_back_as_its_levels_exactly():
    rng = np.random.default_rng(0)
    levels = np.array([0.0, 0.1, 10.0, 70.0])  # none of 0.1 / 70, 10 / 70 is a float32
    raw = np.stack([rng.normal(size=5000), rng.choice(levels, 5000)], axis=1)
    scaler = MinMaxScaler.fit(raw)
    assert scaler.levels[0] is None
    np.testing.assert_array_equal(scaler.levels[1], levels)
    unit = scaler.transform(raw).astype(np.float32)  # what the models see
    affine = unit.astype(np.float64) * (scaler.max - scaler.min) + scaler.min
    assert not np.isin(affine[:, 1], levels).all()  # float32 rounding moved some
    back = scaler.inverse(unit)
    np.testing.assert_array_equal(back[:, 1], raw[:, 1])
    np.testing.assert_array_equal(back[:, 0], affine[:, 0])  # a continuous column: affine
    between = scaler.inverse(np.array([[0.5, 0.5 * (0.1 + 10.0) / 70.0]]))
    assert 0.1 < between[0, 1] < 10.0  # a value between levels is not moved
    again = MinMaxScaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(again.inverse(unit), back)
    old = MinMaxScaler.from_dict({"min": scaler.min, "max": scaler.max})  # older checkpoints
    assert old.levels is None
    np.testing.assert_array_equal(old.inverse(unit), affine)
    assert MinMaxScaler.fit(rng.normal(size=(5000, 2))).levels is None


def test_stocks_rows_are_in_file_order():
    raw, names = tables.read_csv(pathlib.Path(DATA_DIR) / "stock_data.csv")
    assert names == ["Open", "High", "Low", "Close", "Adj_Close", "Volume"]
    ds = load_dataset("stocks", 24, DATA_DIR)
    # The first window starts at the 2004 IPO prices (~49.7), not at the end of the file.
    np.testing.assert_allclose(ds.to_raw(ds.windows[0])[0, 0], 49.676899, rtol=1e-5)


# --- Sines: the exact Diffusion-TS random order. ---

def reference_sines(num, seq_len, dim, seed):
    """Diffusion-TS's loop: global seed, then per sample, per channel, freq then phase."""
    state = np.random.get_state()
    np.random.seed(seed)
    data = []
    for _ in range(num):
        temp = []
        for _ in range(dim):
            freq = np.random.uniform(0, 0.1)
            phase = np.random.uniform(0, 0.1)
            temp.append([np.sin(freq * j + phase) for j in range(seq_len)])
        data.append((np.transpose(np.asarray(temp)) + 1) * 0.5)
    np.random.set_state(state)
    return np.array(data)


def test_sines_match_reference_loop():
    np.testing.assert_array_equal(synthetic.sine_windows(num=7, seq_len=24),
                                  reference_sines(7, 24, 5, 123))


def test_sines_dataset():
    ds = load_dataset("sines", 24)
    assert ds.windows.shape == (10000, 24, 5) and ds.windows.dtype == np.float32
    assert ds.windows.min() >= -1 and ds.windows.max() <= 1
    np.testing.assert_allclose(ds.unit_windows[:3], reference_sines(3, 24, 5, 123), atol=1e-6)
    u = ds.unit_windows[:2]
    np.testing.assert_array_equal(ds.scaler.inverse(u), u)  # sines skip min-max: identity scaler


# --- Energy and fMRI: their formats, written small. ---

def test_energy_csv_drops_date(tmp_path):
    values = write_energy_csv(tmp_path / "energydata_complete.csv", rows=40)
    ds = load_dataset("energy", 24, tmp_path)
    assert ds.windows.shape == (40 - 24 + 1, 24, 28)
    assert ds.column_names[0] == "Appliances" and ds.column_names[-1] == "rv2"
    np.testing.assert_allclose(ds.to_raw(ds.windows[-1]), values[-24:], rtol=1e-5, atol=1e-4)


def test_fmri_mat(tmp_path):
    ts = np.random.default_rng(0).normal(size=(60, 5))
    scipy.io.savemat(tmp_path / "sim4.mat", {"ts": ts, "Nnodes": 5})
    ds = load_dataset("fmri", 24, tmp_path)
    assert ds.windows.shape == (37, 24, 5)
    np.testing.assert_allclose(ds.scaler.inverse(ds.scaler.transform(ts)), ts, rtol=1e-12, atol=1e-12)


def test_mat_without_ts_key(tmp_path):
    scipy.io.savemat(tmp_path / "sim4.mat", {"data": np.ones((30, 2))})
    with pytest.raises(ValueError, match="no variable 'ts'.*data"):
        load_dataset("fmri", 24, tmp_path)


# --- Downloads: atomic, verified, recorded; offline errors say what to do. ---

def fake_download(content):
    def fetch(url, dest):
        pathlib.Path(dest).write_bytes(content)
    return fetch


def test_energy_download_checks_shape_and_records_sha256(tmp_path, monkeypatch):
    small = tmp_path / "small.csv"
    write_energy_csv(small, rows=30)
    monkeypatch.setattr(download, "_download", fake_download(small.read_bytes()))
    data_dir = tmp_path / "data"
    with pytest.raises(ValueError, match=r"shape \(30, 28\), expected \(19735, 28\)"):
        load_dataset("energy", 24, data_dir)
    assert list(data_dir.iterdir()) == []  # no partial file is left behind

    full = tmp_path / "full.csv"
    write_energy_csv(full, rows=19735)
    monkeypatch.setattr(download, "_download", fake_download(full.read_bytes()))
    ds = load_dataset("energy", 24, data_dir)
    assert ds.windows.shape == (19712, 24, 28)
    saved = data_dir / "energydata_complete.csv"
    assert saved.read_bytes() == full.read_bytes()
    assert (data_dir / "energydata_complete.csv.sha256").read_text().split()[0] == download.sha256_of(full)

    content = bytearray(saved.read_bytes())
    content[-2] = ord("0") + (content[-2] - ord("0") + 1) % 10  # corrupt the last digit
    saved.write_bytes(bytes(content))
    with pytest.raises(download.ChecksumError, match="energydata_complete.csv"):
        load_dataset("energy", 24, data_dir)


def test_fmri_download_extracts_member(tmp_path, monkeypatch):
    ts = np.random.default_rng(1).integers(0, 50, size=(10000, 50)).astype(np.float64)
    mat = io.BytesIO()
    scipy.io.savemat(mat, {"ts": ts})
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz", compresslevel=1) as tar:
        for name, payload in [("sims/sim3.mat", b"other"), ("sims/sim4.mat", mat.getvalue())]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    monkeypatch.setattr(download, "_download", fake_download(archive.getvalue()))
    ds = load_dataset("fmri", 24, tmp_path)
    assert ds.windows.shape == (9977, 24, 50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim4.mat", "sim4.mat.sha256"]


@pytest.mark.parametrize("name", ["etth", "stocks", "energy", "fmri"])
def test_offline_error_names_file_url_and_place(tmp_path, name):
    source = SOURCES[name]
    with pytest.raises(download.DataUnavailableError) as err:
        load_dataset(name, 24, tmp_path)
    message = str(err.value)
    assert source.filename in message and source.url in message
    assert str(tmp_path / source.filename) in message
    assert list(tmp_path.iterdir()) == []


def test_read_only_data_dir_is_left_untouched(tmp_path, monkeypatch):
    made = np.zeros((3, 24, 14))
    monkeypatch.setattr(mujoco, "hopper_trajectories", lambda num, seq_len, seed: made)
    tmp_path.chmod(0o555)  # no write bits: read-only even for root
    try:
        with pytest.raises(download.DataUnavailableError, match="read-only.*ETTh1.csv"):
            load_dataset("etth", 24, tmp_path)
        with pytest.warns(UserWarning, match="Could not cache"):
            assert mujoco.cached_hopper_trajectories(tmp_path, 24, num=3) is made
        assert list(tmp_path.iterdir()) == []
    finally:
        tmp_path.chmod(0o755)


def test_known_checksum_mismatch(tmp_path):
    write_csv(tmp_path / "ETTh1.csv", ["date", "HUFL"], [["2016-07-01 00:00:00", 1.0]] * 30)
    with pytest.raises(download.ChecksumError, match="sha256.*ETTh1.csv|ETTh1.csv.*sha256"):
        load_dataset("etth", 24, tmp_path)


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("STDIFF_DATA_DIR", str(tmp_path / "env"))
    assert download.resolve_data_dir(tmp_path / "root") == tmp_path / "root"
    assert download.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("STDIFF_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert download.resolve_data_dir() == tmp_path / "cache" / "stdiff_jax"


# --- Custom data and bad data. ---

def test_custom_csv_and_npy(tmp_path):
    rows = np.arange(60, dtype=np.float64).reshape(30, 2) ** 1.5
    csv_path = write_csv(tmp_path / "mine.csv", ["a", "b"], rows.tolist())
    ds = load_dataset(f"csv:{csv_path}", 24)
    assert ds.windows.shape == (7, 24, 2) and ds.column_names == ("a", "b")
    np.save(tmp_path / "series.npy", rows)
    from_npy = load_dataset(f"npy:{tmp_path / 'series.npy'}", 24)
    np.testing.assert_array_equal(from_npy.windows, ds.windows)
    windows = np.stack([rows[i:i + 24] for i in range(7)])  # (7, 24, 2) already windowed
    np.save(tmp_path / "windows.npy", windows)
    pre = load_dataset(f"npy:{tmp_path / 'windows.npy'}", 24)
    np.testing.assert_allclose(pre.windows, ds.windows, atol=1e-7)
    with pytest.raises(ValueError, match="windows of length 24, but seq_len=12"):
        load_dataset(f"npy:{tmp_path / 'windows.npy'}", 12)


def test_test_fraction_holds_out_the_tail_from_windows_and_scaler(tmp_path):
    rows = np.cumsum(np.random.default_rng(0).normal(size=(100, 2)), axis=0)  # a drifting series
    csv_path = write_csv(tmp_path / "mine.csv", ["a", "b"], rows.tolist())
    ds = load_dataset(f"csv:{csv_path}", 24, test_fraction=0.3)
    assert ds.windows.shape == (70 - 23, 24, 2) and ds.test_windows.shape == (30 - 23, 24, 2)
    head_only = load_dataset(f"csv:{csv_path}", 24)
    assert head_only.test_windows is None
    np.testing.assert_array_equal(ds.scaler.min, rows[:70].min(0))  # fitted on the head only
    np.testing.assert_allclose(ds.to_raw(ds.windows[-1]), rows[46:70], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.to_raw(ds.test_windows[0]), rows[70:94], rtol=1e-5, atol=1e-5)
    sines = load_dataset("sines", 24, test_fraction=0.1)  # a window set: the last windows
    np.testing.assert_array_equal(sines.test_windows, load_dataset("sines", 24).windows[-1000:])
    assert len(sines) == 9000
    with pytest.raises(errors.UserError, match="test_fraction=0.1 holds out 10 of 100 rows"):
        load_dataset(f"csv:{csv_path}", 24, test_fraction=0.1)
    with pytest.raises(errors.UserError, match=r"must lie in \[0, 1\)"):
        load_dataset(f"csv:{csv_path}", 24, test_fraction=1.0)


def test_test_position_holds_out_a_middle_block_no_window_straddles(tmp_path):
    rows = np.cumsum(np.random.default_rng(1).normal(size=(200, 2)), axis=0)
    rows[100] = [1e3, -1e3]  # inside the block: the scaler must not see it
    csv_path = write_csv(tmp_path / "mine.csv", ["a", "b"], rows.tolist())
    ds = load_dataset(f"csv:{csv_path}", 24, test_fraction=0.25, test_position=0.5)
    # 50 rows held out from row 75; 75 rows on either side give 52 windows each.
    assert ds.windows.shape == (2 * (75 - 23), 24, 2) and ds.test_windows.shape == (50 - 23, 24, 2)
    rest = np.concatenate([rows[:75], rows[125:]])
    np.testing.assert_array_equal(ds.scaler.min, rest.min(0))
    np.testing.assert_array_equal(ds.scaler.max, rest.max(0))
    expected = [rows[i:i + 24] for i in [*range(52), *range(125, 177)]]  # none crosses the block
    np.testing.assert_allclose(ds.to_raw(ds.windows), np.stack(expected), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ds.to_raw(ds.test_windows[0]), rows[75:99], rtol=1e-5, atol=1e-4)
    tail = load_dataset(f"csv:{csv_path}", 24, test_fraction=0.25)  # the default: the last rows
    np.testing.assert_array_equal(tail.windows, load_dataset(
        f"csv:{csv_path}", 24, test_fraction=0.25, test_position=1.0).windows)
    first = load_dataset("sines", 24, test_fraction=0.1, test_position=0.0)  # a window set
    np.testing.assert_array_equal(first.test_windows, load_dataset("sines", 24).windows[:1000])
    with pytest.raises(errors.UserError, match="test_position=0.05 leaves 8 rows on one side"):
        load_dataset(f"csv:{csv_path}", 24, test_fraction=0.25, test_position=0.05)
    with pytest.raises(errors.UserError, match=r"test_position must lie in \[0, 1\]"):
        load_dataset(f"csv:{csv_path}", 24, test_fraction=0.25, test_position=1.5)


def test_windows_csv_reads_back_exactly(tmp_path):
    windows = (np.random.default_rng(0).standard_normal((3, 4, 2)) * 1e3).astype(np.float32)
    tables.write_windows_csv(tmp_path / "samples.csv", windows, ["HUFL", "load, total"])
    table, names = tables.read_csv(tmp_path / "samples.csv")
    assert names == ["window", "t", "HUFL", "load, total"]
    np.testing.assert_array_equal(table[:, 0], np.repeat(np.arange(3), 4))
    np.testing.assert_array_equal(table[:, 1], np.tile(np.arange(4), 3))
    np.testing.assert_array_equal(table[:, 2:].astype(np.float32).reshape(3, 4, 2), windows)


def test_data_errors_are_user_errors(tmp_path):
    with pytest.raises(errors.MissingFileError, match="No data file at"):
        load_dataset(f"csv:{tmp_path / 'nope.csv'}", 24)
    with pytest.raises(errors.UserError, match="Unknown data set 'etth2'"):
        load_dataset("etth2", 24)


@pytest.mark.parametrize("value,match", [
    ("nan", r"column 'b' has a NaN, inf or missing value at data row 7"),
    ("inf", r"column 'b' has a NaN, inf or missing value at data row 7"),
    ("", r"column 'b' has a NaN, inf or missing value at data row 7"),
    ("oops", r"non-numeric columns: 'b' \(data row 7, file line 9: 'oops'\)"),
])
def test_bad_values_are_located(tmp_path, value, match):
    rows = [[i, i * 2, i % 3] for i in range(30)]
    rows[7][1] = value
    path = write_csv(tmp_path / "bad.csv", ["a", "b", "c"], rows)
    with pytest.raises(ValueError, match=match):
        load_dataset(f"csv:{path}", 24)


def test_non_numeric_columns_are_named(tmp_path):
    rows = [[i, "x", "2016-07-01", i] for i in range(30)]
    path = write_csv(tmp_path / "text.csv", ["a", "label", "when", "d"], rows)
    with pytest.raises(ValueError, match="'label'.*'when'"):  # only a FIRST date column is dropped
        load_dataset(f"csv:{path}", 24)


def test_too_few_rows(tmp_path):
    path = write_csv(tmp_path / "short.csv", ["a", "b"], [[i, -i] for i in range(10)])
    with pytest.raises(ValueError, match="10 rows, fewer than seq_len=24"):
        load_dataset(f"csv:{path}", 24)


def test_constant_column(tmp_path):
    path = write_csv(tmp_path / "flat.csv", ["a", "flat"], [[i, 3.0] for i in range(30)])
    with pytest.raises(ValueError, match=r"\['flat'\] are constant.*Drop them"):
        load_dataset(f"csv:{path}", 24)


def test_missing_custom_file_and_unknown_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_dataset(f"csv:{tmp_path / 'nope.csv'}", 24)
    with pytest.raises(ValueError, match="Unknown data set 'ettm'.*etth"):
        load_dataset("ettm", 24)


# --- Strict CSV: structure, encoding, separators, outliers and the impute input. ---

def ett_like(path, lines):
    """A date column and three numeric columns, then `lines` (already separated) appended."""
    rows = [f"2016-07-01 {h:02d}:00:00,{h * 1.5},{30 + h},{h % 4}" for h in range(30)]
    path.write_text("\n".join(["date,HUFL,load,OT", *rows, *lines]) + "\n")
    return path


def test_extra_field_names_line_shows_row_and_the_thousands_separator(tmp_path):
    path = ett_like(tmp_path / "x.csv", ["2016-07-02 06:00:00,30,531.0,40,2"])
    with pytest.raises(errors.UserError) as error:
        tables.read_csv(path)
    message = str(error.value)
    assert f"{path}, line 32: 5 fields, but the header has 4 ('date, HUFL, load, OT')" in message
    assert "The row: '2016-07-02 06:00:00,30,531.0,40,2'" in message
    assert "`30,531.0` looks like a number written with a thousands separator" in message
    assert "(30531.0)" in message
    quoted = ett_like(tmp_path / "q.csv", ['2016-07-02 06:00:00,"30,531.0",40,2'])
    with pytest.raises(errors.UserError, match="'HUFL' .*'30,531.0'.*hold thousands separators"):
        tables.read_csv(quoted)  # quoted, it is one field: then a non-numeric value


def test_fewer_fields_are_refused(tmp_path):
    path = ett_like(tmp_path / "x.csv", ["2016-07-02 06:00:00,1.0,2.0"])
    with pytest.raises(errors.UserError, match=r"line 32: 3 fields, but the header has 4.*"
                                               r"a value or its separator is missing"):
        tables.read_csv(path)


@pytest.mark.parametrize("first_line,kind", [
    ("0.5,1.5,2.5", "holds numbers, not column names"),
    ("2016-07-01 00:00:00,0.5,1.5", "holds numbers and a date, not column names"),
    ("1e3,2,-3", "holds numbers, not column names"),
])
def test_a_missing_or_numeric_header_is_refused(tmp_path, first_line, kind):
    rest = [first_line.replace("0.5", f"{i}.5") for i in range(30)]
    path = tmp_path / "x.csv"
    path.write_text("\n".join([first_line, *rest]) + "\n")
    with pytest.raises(errors.UserError, match=f"has no header row: its first row .*{kind}.*"
                                               f"Add a header row"):
        tables.read_csv(path)


def test_pandas_default_integer_names_are_a_header(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["0", "1"], [[i, i * i] for i in range(30)])
    raw, names = tables.read_csv(path)
    assert names == ["0", "1"] and raw.shape == (30, 2)


def test_repeated_and_empty_column_names_are_refused(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["HUFL", "OT", "HUFL"], [[i, i, i] for i in range(30)])
    with pytest.raises(errors.UserError, match=r"repeated column names: 'HUFL' at columns \[1, 3"):
        tables.read_csv(path)
    path = write_csv(tmp_path / "y.csv", ["", "a", "b"], [[i, i, i] for i in range(30)])
    with pytest.raises(errors.UserError, match=r"column\(s\) \[1\] .*have no name \(pandas writes"):
        tables.read_csv(path)


def test_a_non_utf8_byte_names_its_offset_and_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,temp \u00b0C\n1,2\n".encode("latin-1"))  # the degree sign is 0xb0
    with pytest.raises(errors.UserError) as error:
        tables.read_csv(path)
    assert "byte 0xb0 at byte offset 7 (line 1: 'a,temp \ufffdC')" in str(error.value)
    assert "re-save it as UTF-8" in str(error.value)
    utf8 = tmp_path / "utf8.csv"  # the same with Excel's byte-order mark: read as it is
    utf8.write_bytes("\ufeffa,temp \u00b0C\n1,2\n3,5\n".encode("utf-8"))
    raw, names = tables.read_csv(utf8)
    assert names == ["a", "temp \u00b0C"] and raw.tolist() == [[1, 2], [3, 5]]


@pytest.mark.parametrize("separator,name", [(";", "semicolon"), ("\t", "tab")])
def test_semicolon_and_tab_files_are_read_and_said(tmp_path, caplog, separator, name):
    comma = ett_like(tmp_path / "comma.csv", [])
    other = tmp_path / "other.csv"
    other.write_text(comma.read_text().replace(",", separator))
    with caplog.at_level("INFO", logger="absl"):  # absl.app in earlier tests sets its level
        raw, names, dates = tables.read_csv(other, keep_dates=True)
    expected, expected_names, expected_dates = tables.read_csv(comma, keep_dates=True)
    np.testing.assert_array_equal(raw, expected)
    assert names == expected_names == ["HUFL", "load", "OT"] and dates == expected_dates
    assert f"as {name}-separated ({separator!r})" in caplog.text
    decimal_commas = tmp_path / "decimal.csv"  # a European spreadsheet: refused, not guessed
    decimal_commas.write_text("a;b\n" + "".join(f"{i},5;{i}\n" for i in range(30)))
    with pytest.raises(errors.UserError, match="'a' .*'0,5'.*use a decimal comma"):
        tables.read_csv(decimal_commas)


def test_blank_lines_empty_cells_and_an_empty_first_cell(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n\n  \n,4\n5,\n")
    raw, names = tables.read_csv(path)  # an empty first cell is missing, not a date column
    assert names == ["a", "b"]
    np.testing.assert_array_equal(raw, [[1, 2], [np.nan, 4], [5, np.nan]])


def test_far_outlier_is_reported_with_row_column_and_value_unless_allowed(tmp_path):
    rows = [[i, np.sin(i), i % 5] for i in range(40)]
    rows[17][1] = 1e30
    path = write_csv(tmp_path / "x.csv", ["a", "b", "c"], rows)
    with pytest.raises(errors.UserError, match=r"column 'b' holds 1e\+30 at data row 17 .*"
                                               r"allow_outliers=True"):
        load_dataset(f"csv:{path}", 24)
    ds = load_dataset(f"csv:{path}", 24, allow_outliers=True)
    assert ds.scaler.max[1] == 1e30
    rows[17][1] = 1e5  # 7e4 x the IQR (~1.4): kept
    assert len(load_dataset(f"csv:{write_csv(path, ['a', 'b', 'c'], rows)}", 24)) == 17


def test_outlier_rule_works_where_the_iqr_is_zero():
    flat = np.zeros((100, 2))
    flat[::10, 0] = 1.0  # a mostly-zero indicator: IQR 0, the ones are no outliers
    flat[::7, 1] = np.arange(15) + 1.0
    far, spread, _ = loaders_far_outliers(flat)
    assert not far.any() and spread[0] == 1.0
    flat[3, 0] = 1e30
    far, _, _ = loaders_far_outliers(flat)
    assert np.argwhere(far).tolist() == [[3, 0]]


def loaders_far_outliers(flat):
    from stdiff_jax.data import loaders

    return loaders.far_outliers(flat)


def test_impute_input_with_a_window_of_nothing_observed_says_so(tmp_path):
    from configs import sines
    from stdiff_jax import conditional, modes, saved_model

    table = np.arange(120, dtype=np.float64).reshape(60, 2)
    table[10:50] = np.nan  # 40 empty rows: some window of 24 sees none observed
    path = tmp_path / "gaps.csv"
    path.write_text("a,b\n" + "\n".join(",".join("" if np.isnan(v) else str(v) for v in row)
                                         for row in table) + "\n")
    raw, _ = modes.read_input_csv(path, ["a", "b"])
    host = type("Host", (), {"series_shape": (24, 2)})()  # impute stops before any network use
    tm = saved_model.TrainedModel(config=sines.get_config("smoke"), model=None, params=None,
                              host=host, step=0, video_shape=None)
    with pytest.raises(errors.UserError, match=r"Nothing is observed in data rows 12-35 .* "
                                               r"unconditional samples, not imputed"):
        conditional.impute_table(tm, raw)
    windows = np.stack([table[:24], table[24:48]])  # the second window is all missing
    with pytest.raises(errors.UserError, match=r"Nothing is observed in window 1 \(1 of the 2"):
        conditional.impute(tm, windows)


# --- MuJoCo: generation order of Diffusion-TS, cache, and the optional extra. ---

def test_mujoco_generation_order():
    pytest.importorskip("dm_control")
    data = mujoco.hopper_trajectories(num=4, seq_len=24, seed=123)
    assert data.shape == (4, 24, 14) and np.isfinite(data).all()
    rng = np.random.RandomState(123)
    for i in range(4):  # step 0 records exactly the state set in reset_context
        draws = np.concatenate([rng.uniform(0, 0.5, 2), rng.uniform(-2, 2, 5), rng.uniform(-5, 5, 7)])
        np.testing.assert_array_equal(data[i, 0], draws)
    assert not np.array_equal(data[:, 1], data[:, 0])  # the physics stepped


def test_mujoco_cache(tmp_path, monkeypatch):
    made = np.random.default_rng(0).normal(size=(3, 24, 14))
    monkeypatch.setattr(mujoco, "hopper_trajectories", lambda num, seq_len, seed: made)
    first = mujoco.cached_hopper_trajectories(tmp_path, 24, num=3)
    monkeypatch.setattr(mujoco, "hopper_trajectories", None)  # a second call must not generate
    np.testing.assert_array_equal(mujoco.cached_hopper_trajectories(tmp_path, 24, num=3), first)
    assert [p.name for p in tmp_path.iterdir()] == ["mujoco_hopper_n3_L24_seed123.npy"]


def test_mujoco_missing_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "dm_control", None)
    with pytest.raises(ImportError, match=r"\[mujoco\]"):
        mujoco.hopper_trajectories(num=1)
