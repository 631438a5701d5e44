"""The memorisation check: exact nearest neighbours, its two numbers on constructed cases, its
reference windows (a held-out block clear of the training rows, fresh draws) and its place in
every evaluation."""

import json

import numpy as np
import pytest

from stdiff_jax import metrics
from stdiff_jax.data import load_dataset, mujoco, synthetic
from stdiff_jax.data.loaders import make_dataset
from stdiff_jax.data import held_out as held_out_mod
from stdiff_jax.data.held_out import held_out_windows
from stdiff_jax.metrics import memorisation


def sines(num, seed):
    return synthetic.sine_windows(num=num, seed=seed).astype(np.float32)  # (num, 24, 5)


def test_nearest_distances_are_exact_in_any_chunking():
    rng = np.random.default_rng(0)
    queries, reference = rng.random((50, 6, 3)), rng.random((70, 6, 3))
    brute = np.linalg.norm(queries.reshape(50, 1, -1) - reference.reshape(1, 70, -1), axis=-1)
    for chunk_bytes in (1, 4 * 70 * 7, memorisation.CHUNK_BYTES):  # 1 query, 7, all at once
        got = memorisation.nearest_distances(queries, reference, chunk_bytes=chunk_bytes)
        np.testing.assert_allclose(got, brute.min(1), rtol=1e-6)
    # A copy reads exactly 0, not the float32 expansion's rounding.
    assert np.all(memorisation.nearest_distances(reference[:10] + 100, reference + 100) == 0)


def test_copies_read_near_zero_and_fresh_draws_near_one():
    train, held_out = sines(3000, 1), sines(1000, 2)
    copies = train[np.random.default_rng(0).permutation(3000)[:1000]]
    copied = memorisation.memorisation_check(train, copies, held_out)
    assert copied["median_ratio"] == 0 and copied["share_closer"] == 1
    fresh = memorisation.memorisation_check(train, sines(1000, 3), held_out)
    assert fresh["median_ratio"] == pytest.approx(1, abs=0.05)
    assert fresh["share_closer"] == pytest.approx(0.01, abs=0.01)
    assert fresh["held_out_p1"] < fresh["held_out_median"]
    # Half copies, half fresh: the share counts the copies.
    half = memorisation.memorisation_check(train, np.concatenate([copies[:500], sines(500, 3)]),
                                           held_out)
    assert half["share_closer"] == pytest.approx(0.5, abs=0.02)
    assert (fresh["num_train"], fresh["num_generated"], fresh["num_held_out"]) == (3000, 1000, 1000)


def test_large_sets_are_scored_on_a_seeded_subset():
    train, fake, held_out = sines(500, 1), sines(400, 2), sines(300, 3)
    a = memorisation.memorisation_check(train, fake, held_out, max_queries=200, seed=5)
    b = memorisation.memorisation_check(train, fake, held_out, max_queries=200, seed=5)
    assert (a["num_generated"], a["num_held_out"]) == (200, 200)
    assert a["median_ratio"] == b["median_ratio"] and a["share_closer"] == b["share_closer"]


def test_too_few_held_out_windows_or_mismatched_shapes():
    train = sines(200, 1)
    few = memorisation.memorisation_check(train, train, train[:memorisation.MIN_HELD_OUT - 1])
    assert not few["available"] and "fewer than the 10 a median needs" in few["reason"]
    with pytest.raises(ValueError, match="one \\(L, K\\)"):
        memorisation.memorisation_check(train, train[:, :12], train)


def test_a_small_held_out_set_compares_with_its_nearest():
    """40 held-out windows (a UCR test set): the threshold is the nearest held-out distance, which a
    fresh window undercuts with probability 1 / 41."""
    train, held_out = sines(2000, 1), sines(40, 2)
    fresh = memorisation.memorisation_check(train, sines(4000, 3), held_out)
    held_d = memorisation.nearest_distances(held_out, train)
    assert fresh["held_out_p1"] == pytest.approx(held_d.min())
    assert fresh["reference_share"] == pytest.approx(1 / 41)
    assert fresh["share_closer"] < 0.1 and fresh["median_ratio"] == pytest.approx(1, abs=0.15)
    copied = memorisation.memorisation_check(train, train[:500], held_out)
    assert copied["median_ratio"] == 0 and copied["share_closer"] == 1
    assert "held-out nearest" in memorisation.describe(fresh)
    assert "1st percentile" in memorisation.describe(
        memorisation.memorisation_check(train, sines(200, 3), sines(100, 2)))


def test_per_class_check_tells_a_copying_class_from_a_fresh_one():
    """Class 0's samples copy training windows, class 1's are fresh draws: the whole set's ratio
    falls between, the classes' read 0 and ~1."""
    train, held_out = sines(3000, 1), sines(400, 2)
    fake = np.concatenate([train[:300], sines(300, 3)])
    fake_labels, held_labels = np.repeat([0, 1], 300), np.repeat([0, 1], 200)
    per_class = memorisation.per_class_memorisation(train, fake, fake_labels, held_out,
                                                    held_labels, ("copies", "fresh", "unasked"))
    assert list(per_class) == ["copies", "fresh"]  # no windows asked for "unasked"
    assert per_class["copies"]["median_ratio"] == 0 and per_class["copies"]["share_closer"] == 1
    assert per_class["fresh"]["median_ratio"] == pytest.approx(1, abs=0.1)
    assert per_class["fresh"]["num_generated"] == 300 and per_class["fresh"]["num_held_out"] == 200
    line = memorisation.describe(dict(memorisation.memorisation_check(train, fake, held_out),
                                      per_class=per_class))
    assert line.splitlines()[1].startswith("memorisation  per class") and "copies 0.000" in line


def test_evaluate_reports_the_check_or_why_it_is_missing():
    real, fake = sines(400, 1), sines(200, 2)
    scores = metrics.evaluate(real, fake, repeats=2, metrics=("correlational",),
                              held_out=sines(200, 3), held_out_source="fresh draws")
    check = scores[metrics.MEMORISATION]
    json.dumps(scores)
    assert list(scores) == ["correlational", metrics.MEMORISATION]
    assert check.pop("held_out") == "fresh draws"
    alone = memorisation.memorisation_check(real, fake, sines(200, 3), seed=0)
    assert {**check, "seconds": 0} == {**alone, "seconds": 0}
    assert "fresh draws" in memorisation.describe(dict(check, held_out="fresh draws"))
    missing = metrics.evaluate(real, fake, repeats=2, metrics=("correlational",),
                               held_out_source="no block")[metrics.MEMORISATION]
    assert missing == {"available": False, "reason": "no block"}
    # Asked for neither, evaluate returns the metrics alone (callers that list them keep working).
    assert list(metrics.evaluate(real, fake, repeats=2, metrics=("correlational",))) == [
        "correlational"]
    assert memorisation.describe(missing) == "memorisation  not available: no block"


def test_held_out_block_keeps_a_window_clear_of_every_training_row(tmp_path):
    """Column 0 is the row number, so each window says which rows it holds."""
    rows, length = 600, 24
    series = np.stack([np.arange(rows), np.sin(np.arange(rows))], 1)
    np.save(tmp_path / "rows.npy", series)
    dataset = load_dataset(f"npy:{tmp_path / 'rows.npy'}", length, test_fraction=0.3,
                           test_position=0.5)
    windows, source = held_out_windows(dataset)
    row_of = dataset.scaler.inverse  # [0, 1] -> raw
    train_rows = np.unique(np.rint(row_of(dataset.unit_windows)[..., 0]))
    held_rows = np.unique(np.rint(row_of(windows)[..., 0]))
    assert len(windows) == len(dataset.test_windows) - 2 * length and "held-out block" in source
    assert np.min(np.abs(held_rows[:, None] - train_rows[None])) == length + 1


def test_a_window_sets_held_out_windows_are_kept_whole(tmp_path):
    """Held-out windows that are series of their own (an (N, L, K) set's block, class_sines' and
    UCR's test sets) share no row with training: none is dropped, and their labels line up."""
    windows = np.random.default_rng(0).random((100, 24, 2))
    np.save(tmp_path / "set.npy", windows)
    dataset = load_dataset(f"npy:{tmp_path / 'set.npy'}", 24, test_fraction=0.2)
    held_out, source = held_out_windows(dataset)
    assert len(held_out) == len(dataset.test_windows) == 20 and "series of its own" in source
    class_sines = load_dataset("class_sines", 24)
    held_out, _ = held_out_windows(class_sines)
    np.testing.assert_allclose(held_out, np.clip((class_sines.test_windows + 1) / 2, 0, 1))
    kept = class_sines.test_labels[held_out_mod.kept_test_windows(class_sines)]
    assert len(kept) == len(held_out)


def test_per_class_check_on_class_sines():
    """Fresh class-0 draws and copies of class-2 training windows against class_sines' test set."""
    from stdiff_jax.data import labelled
    from stdiff_jax.metrics import classes
    dataset = load_dataset("class_sines", 24)
    fresh, _ = labelled.class_sine_windows(counts=(300, 0, 0), seed=9)
    copies = dataset.unit_windows[dataset.labels == 2][:100]
    fake = np.concatenate([fresh, copies])
    held_out, source = held_out_windows(dataset)
    check = classes.with_per_class(
        memorisation.reference_check(dataset.unit_windows, fake, held_out, source), dataset,
        fake, np.repeat([0, 2], [300, 100]), held_out)
    assert "series of its own" in check["held_out"] and list(check["per_class"]) == ["0", "2"]
    assert check["per_class"]["0"]["median_ratio"] == pytest.approx(1, abs=0.1)
    assert check["per_class"]["2"]["median_ratio"] == 0
    assert check["per_class"]["2"]["num_held_out"] == np.sum(dataset.test_labels == 2)


def test_fresh_draws_for_generated_sets_and_none_for_a_whole_real_series():
    dataset = load_dataset("sines", 24)
    windows, source = held_out_windows(dataset)
    assert windows.shape == dataset.windows.shape and "fresh draws" in source
    assert not np.any(np.all(windows == dataset.unit_windows, axis=(1, 2)))
    regimes = load_dataset("suite_regimes", 24)
    fresh, _ = held_out_windows(regimes)
    assert fresh.shape == regimes.windows.shape and fresh.min() >= 0 and fresh.max() <= 1
    assert not np.array_equal(fresh, regimes.unit_windows)
    windows, reason = held_out_windows(load_dataset("etth", 24))
    assert windows is None and "--config.data.test_fraction=0.1" in reason


def test_fresh_mujoco_draws_come_from_another_seed():
    pytest.importorskip("dm_control")
    hopper = make_dataset("mujoco", mujoco.hopper_trajectories(num=40, seq_len=24),
                          [f"c{k}" for k in range(14)], 24)
    fresh, source = held_out_windows(hopper)
    assert fresh.shape == hopper.windows.shape and "fresh draws of the mujoco" in source
    assert not np.any(np.all(np.isclose(fresh, hopper.unit_windows), axis=(1, 2)))
