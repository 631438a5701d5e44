"""Exact linear relations among columns (`data/relations.py`) on constructed data."""

import json

import numpy as np

from stdiff_jax import checkpoint
from stdiff_jax.data.relations import ExactRelations
from stdiff_jax.data.scaling import MinMaxScaler

NAMES = ("a", "b", "a_copy", "d", "c")


def raw_rows(rows=4000, seed=0):
    """(rows, 5): a, b, c independent; a_copy = a; d = 2 b - 3 c + 7."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(0, 50, rows), rng.normal(20, 5, rows), rng.normal(0, 1, rows)
    return np.stack([a, b, a, 2 * b - 3 * c + 7, c], 1)


def model_windows(raw, scaler, length=20):
    """float32 windows in the model's [-1, 1], as the loaders make them."""
    windows = 2 * scaler.transform(raw) - 1
    return windows[: len(raw) // length * length].reshape(-1, length, raw.shape[1]).astype(
        np.float32)


def test_fit_finds_a_copy_and_a_linear_combination_in_float32_windows():
    raw = raw_rows()
    scaler = MinMaxScaler.fit(raw)
    relations = ExactRelations.fit(model_windows(raw, scaler))
    assert len(relations) == 2
    assert sorted(relations.describe(NAMES, scaler)) == ["a_copy = 1 a",
                                                         "c = 0.6667 b -0.3333 d +2.333"]


def test_independent_or_rounded_columns_hold_no_relation():
    raw = raw_rows()
    independent = raw[:, [0, 1, 4]]
    assert len(ExactRelations.fit(model_windows(independent,
                                                MinMaxScaler.fit(independent)))) == 0
    rounded = np.round(raw, 2)  # d to two decimals: d's relation is off by 1e-4 of its range
    relations = ExactRelations.fit(model_windows(rounded, MinMaxScaler.fit(rounded)))
    assert relations.describe(NAMES, MinMaxScaler.fit(rounded)) == ["a_copy = 1 a"]


def test_project_is_the_least_change_onto_the_relations():
    raw = raw_rows()
    scaler = MinMaxScaler.fit(raw)
    relations = ExactRelations.fit(model_windows(raw, scaler))
    noisy = model_windows(raw, scaler) + 0.05 * np.random.default_rng(1).normal(
        size=(200, 20, 5))
    held = relations.project(noisy)
    np.testing.assert_allclose((held - relations.mean) @ relations.null, 0, atol=1e-12)
    # The copy and its column meet halfway: the least change that makes them equal.
    np.testing.assert_allclose(held[..., 0], held[..., 2], atol=1e-12)
    np.testing.assert_allclose(held[..., 0], (noisy[..., 0] + noisy[..., 2]) / 2, atol=1e-6)
    np.testing.assert_allclose(relations.project(held), held, atol=1e-12)  # a projection
    change = held - noisy  # orthogonal to the relations' subspace: inside the null's span
    np.testing.assert_allclose(change, (change @ relations.null) @ relations.null.T, atol=1e-12)


def test_project_with_a_mask_keeps_observed_values_and_fills_from_them():
    raw = raw_rows()
    scaler = MinMaxScaler.fit(raw)
    relations = ExactRelations.fit(model_windows(raw, scaler))
    truth = model_windows(raw, scaler)[:50].astype(np.float64)
    rng = np.random.default_rng(2)
    observed = rng.random(truth.shape) < 0.5
    guess = np.where(observed, truth, truth + 0.1 * rng.normal(size=truth.shape))
    held = relations.project(guess, observed)
    np.testing.assert_array_equal(held[observed], guess[observed])
    copy_missing = observed[..., 0] & ~observed[..., 2]
    np.testing.assert_allclose(held[..., 2][copy_missing], truth[..., 0][copy_missing], atol=1e-6)
    # Observed values satisfy the relations (the truth's), so every row can be held to them.
    np.testing.assert_allclose((held - relations.mean) @ relations.null, 0, atol=1e-6)
    errors = np.abs(held - truth)[~observed]
    assert errors.mean() < np.abs(guess - truth)[~observed].mean()


def test_relations_survive_the_checkpoint_json_with_none_too():
    raw = raw_rows()
    scaler = MinMaxScaler.fit(raw)
    for relations in (ExactRelations.fit(model_windows(raw, scaler)),
                      ExactRelations.fit(model_windows(raw[:, :2], MinMaxScaler.fit(raw[:, :2])))):
        stored = json.loads(json.dumps(checkpoint.to_json(relations.to_dict())))
        back = ExactRelations.from_dict(stored)
        assert back.null.shape == relations.null.shape
        np.testing.assert_array_equal(back.null, relations.null)
        np.testing.assert_array_equal(back.mean, relations.mean)
