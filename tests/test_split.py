"""The validation split shares no time step with training: on a series, a block of the last
windows with the L - 1 windows before it left out; on window sets, a seeded random draw; with
val_fraction 0, every window trains. Constructed series carry their row index as values, so a
window's rows are read off its values."""

import os
import pathlib

import numpy as np
import pytest

from configs import base
from stdiff_jax import labels as labels_lib
from stdiff_jax import train
from stdiff_jax.data import labelled, load_dataset
from stdiff_jax.data.loaders import make_dataset
from stdiff_jax.data.synthetic import sine_windows
from stdiff_jax.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA_DIR = os.environ.get("STDIFF_DATA_DIR", str(REPO.parent / "shared" / "data"))
L = 6


def row_series(rows):
    """(rows, 2) float64: column 0 the row index, column 1 its square (any non-constant)."""
    index = np.arange(rows, dtype=np.float64)
    return np.stack([index, index ** 2], axis=1)


def window_rows(dataset, windows):
    """(N, L) int: the data rows of each window, read back from column 0's values."""
    return np.rint(dataset.to_raw(windows)[..., 0]).astype(int)


def test_series_windows_know_their_first_rows_around_a_held_out_block():
    ds = make_dataset("rows", row_series(200), ["i", "i2"], L, test_fraction=0.2,
                      test_position=0.5)
    # Rows 80..119 are held out: 75 windows start at 0..74 and 75 at 120..194.
    np.testing.assert_array_equal(ds.window_starts, np.r_[0:75, 120:195])
    np.testing.assert_array_equal(window_rows(ds, ds.windows),
                                  ds.window_starts[:, None] + np.arange(L))
    assert make_dataset("w", sine_windows(num=50, seq_len=L), ["a"] * 5, L).window_starts is None


def test_real_and_labelled_series_keep_their_starts(tmp_path):
    stocks = load_dataset("stocks", 24, DATA_DIR)
    np.testing.assert_array_equal(stocks.window_starts, np.arange(len(stocks)))
    values = ["a"] * 20 + ["b"] * 20
    ds = labelled.labelled_dataset("lab", row_series(40), ["i", "i2"], values, L)
    # The 5 windows starting at rows 15..19 cross the change at row 20 and are dropped.
    np.testing.assert_array_equal(ds.window_starts, np.r_[0:15, 20:35])
    np.testing.assert_array_equal(window_rows(ds, ds.windows)[:, 0], ds.window_starts)


@pytest.mark.parametrize("test_position", [0.0, 0.5, 1.0])
def test_no_validation_row_is_in_any_training_window(test_position):
    ds = make_dataset("rows", row_series(500), ["i", "i2"], L, test_fraction=0.2,
                      test_position=test_position)
    train_w, val_w = train.split_windows(ds.windows, 0.1, 8, seed=0,
                                         window_starts=ds.window_starts)
    train_rows, val_rows = window_rows(ds, train_w), window_rows(ds, val_w)
    assert len(val_w) == 40  # round(0.1 * 390 or 395 / 8) = 5 batches of 8
    assert not set(train_rows.ravel()) & set(val_rows.ravel())
    # The block is the latest windows; the gap is the L - 1 windows that share rows with it.
    assert val_rows.min() > train_rows.max() and val_rows.max() == ds.window_starts.max() + L - 1
    assert len(ds) - len(train_w) - len(val_w) == L - 1
    assert train_rows.max() == val_rows.min() - 1  # no more is left out than must be


def test_labels_follow_their_windows_and_a_lost_class_is_a_clear_error():
    values = ["a"] * 150 + ["b"] * 30
    ds = labelled.labelled_dataset("lab", row_series(180), ["i", "i2"], values, L)
    (train_w, train_y), (val_w, val_y) = train.split_windows(
        labels_lib.training_arrays(ds), 0.1, 8, seed=0, window_starts=ds.window_starts)
    np.testing.assert_array_equal(train_y, np.where(window_rows(ds, train_w)[:, 0] < 150, 0, 1))
    assert set(val_y) == {1}
    train.check_classes_train((train_w, train_y), ds.class_names)  # b keeps 4 windows
    short = labelled.labelled_dataset("lab", row_series(180), ["i", "i2"],
                                      ["a"] * 160 + ["b"] * 20, L)
    lost, _ = train.split_windows(labels_lib.training_arrays(short), 0.1, 8, seed=0,
                                  window_starts=short.window_starts)
    with pytest.raises(UserError, match=r"no training window of the class\(es\) \['b'\].*"
                                        r"val_fraction=0"):
        train.check_classes_train(lost, short.class_names)


def test_a_class_lost_to_the_split_stops_training_before_any_work(tmp_path):
    path = tmp_path / "data.csv"
    y = ["a"] * 400 + ["b"] * 40
    path.write_text("x,y,state\n" + "".join(f"{np.sin(i)},{np.cos(i / 3)},{y[i]}\n"
                                            for i in range(len(y))))
    config = base.make_config(f"csv:{path}", "smoke")
    with config.unlocked():
        config.data.label_column = "state"
        config.data.val_fraction = 0.05  # asked for: a series' default is none
        config.train.batch_size = 8
    # 17 windows of b: the last 16 validate, the 17th shares rows with them.
    with pytest.raises(UserError, match=r"class\(es\) \['b'\]"):
        train.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_too_little_data_for_the_gap_names_val_fraction_zero():
    ds = make_dataset("rows", row_series(45), ["i", "i2"], 10)  # 36 windows of 10 rows
    train.split_windows(ds.windows, 0.3, 16, seed=0)  # random: 20 train, fine
    with pytest.raises(UserError, match=r"last 16 windows .* the 9 before them .* leaves 11 to "
                                        r"train, fewer than one batch of 16\. Set "
                                        r"config\.data\.val_fraction=0"):
        train.split_windows(ds.windows, 0.3, 16, seed=0, window_starts=ds.window_starts)


def test_window_sets_keep_a_seeded_random_split():
    windows = np.arange(1000, dtype=np.float32)[:, None, None]  # window i holds i
    train_w, val_w = train.split_windows(windows, 0.05, 16, seed=0)
    val = val_w.ravel().astype(int)
    assert len(val) == 48 and not set(val) & set(train_w.ravel().astype(int))
    assert val.max() - val.min() > 500  # spread over the set, not a block
    other, _ = train.split_windows(windows, 0.05, 16, seed=1)
    assert not np.array_equal(other, train_w)


def test_val_fraction_zero_trains_on_every_window_of_a_series_too():
    ds = make_dataset("rows", row_series(300), ["i", "i2"], L)
    all_w, subset = train.split_windows(ds.windows, 0.0, 16, seed=0,
                                        window_starts=ds.window_starts)
    assert all_w is ds.windows
    _, random_subset = train.split_windows(ds.windows, 0.0, 16, seed=0)
    np.testing.assert_array_equal(subset, random_subset)
