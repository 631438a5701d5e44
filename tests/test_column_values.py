"""White and few-valued columns (stdiff_jax/column_values.py): which are found, the maps, and a
run that keeps them through training, generation, a checkpoint and conditional sampling."""

import jax
import numpy as np
import pytest
from scipy import stats

from configs import sines
from stdiff_jax import column_values, conditional, generate, observation, saved_model, train
from stdiff_jax import mesh as mesh_lib
from stdiff_jax.data import dataset_of

ROWS, LEVELS = 3000, np.array([0.0, 10.0, 20.0, 70.0])  # 10 / 70: inexact in float32


def table(rows=ROWS, seed=0):
    """(rows, 4): a daily season with noise, a random walk, uniform white noise, and a count
    with 4 values (mostly 0) that follows the season."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    season = np.sin(2 * np.pi * t / 24)
    count = LEVELS[np.clip(np.round(1.5 * season + rng.normal(0, 0.5, rows)), 0, 3).astype(int)]
    return np.stack([season + 0.1 * rng.normal(size=rows), np.cumsum(rng.normal(size=rows)),
                     rng.uniform(-3, 5, rows), count], axis=1)


def windows_of(values, length=24):
    """Sliding windows (N, L, K) of a table scaled column by column to [-1, 1]."""
    lo, hi = values.min(0), values.max(0)
    scaled = (2 * (values - lo) / (hi - lo) - 1).astype(np.float32)
    return np.lib.stride_tricks.sliding_window_view(scaled, length, axis=0).transpose(0, 2, 1).copy()


def test_finds_the_white_and_the_few_valued_columns_only():
    windows = windows_of(table())
    found = column_values.fit(windows, white_below=0.1, max_levels=20)
    assert found.white == (2,) and found.snapped == (3,)
    np.testing.assert_array_equal(found.levels[0], np.unique(windows[..., 3]))
    assert len(found.levels[0]) == 4
    assert column_values.fit(windows[..., :2], 0.1, 20) is None  # smooth columns: nothing
    assert column_values.fit(windows, 0.0, 0) is None  # both switched off
    off = column_values.fit(windows, 0.1, 0)
    assert off.white == (2,) and off.snapped == ()  # the count is not white: it follows the day
    assert column_values.lag1_autocorrelation(np.ones((5, 24, 1)))[0] == 1.0  # constant: not white


def test_a_rare_level_outside_the_screened_windows_still_counts():
    windows = windows_of(table())
    screened = np.linspace(0, len(windows) - 1, column_values.SCREEN_WINDOWS).astype(int)
    unscreened = np.setdiff1d(np.arange(len(windows)), screened)[0]
    windows[unscreened, 5, 3] = 0.123  # one value, in a window the screen does not read
    found = column_values.fit(windows, 0.1, 20)
    assert 0.123 in found.levels[0].astype(np.float32) and len(found.levels[0]) == 5


def test_the_white_map_gives_normal_scores_inverts_and_leaves_other_columns_as_they_are():
    windows = windows_of(table())
    found = column_values.fit(windows, 0.1, 20)
    mapped = np.asarray(found.to_model_space(windows))
    np.testing.assert_array_equal(mapped[..., [0, 1, 3]], windows[..., [0, 1, 3]])  # same floats
    white = mapped[..., 2].ravel()
    assert white.min() == pytest.approx(-1, abs=1e-3) and white.max() == pytest.approx(1, abs=1e-3)
    assert abs(stats.kurtosis(white)) < 0.1  # a uniform's is -1.2: now Gaussian
    assert abs(stats.kurtosis(windows[..., 2].ravel()) + 1.2) < 0.1
    back = np.asarray(found.from_model_space(mapped))
    np.testing.assert_allclose(back[..., 2], windows[..., 2], atol=1e-4)
    np.testing.assert_array_equal(back[..., :2], windows[..., :2])
    # Gaussian draws in model space come back with the training values' (uniform) distribution.
    draws = np.clip(np.random.default_rng(1).normal(0, np.std(white), (20000, 4)), -1, 1)
    uniform = np.asarray(found.from_model_space(draws.astype(np.float32)))[:, 2]
    assert stats.kstest((uniform + 1) / 2, "uniform").statistic < 0.02
    beyond = np.asarray(found.from_model_space(np.full((1, 4), 1.5, np.float32)))
    assert np.isfinite(beyond).all() and beyond[0, 2] > 1  # extended past the ends, increasing


def test_few_valued_columns_are_snapped_to_the_nearest_level():
    windows = windows_of(table())
    found = column_values.fit(windows, 0.1, 20)
    levels = found.levels[0]
    x = np.zeros((7, 4), np.float32)
    x[:, 3] = [-2.0, levels[0] + 0.01, levels[1] - 0.01, (levels[1] + levels[2]) / 2 + 0.01,
               levels[3], 0.3, 2.0]
    snapped = np.asarray(found.from_model_space(x))[:, 3]
    nearest = levels[np.abs(x[:, 3, None] - levels).argmin(1)]
    np.testing.assert_array_equal(snapped, nearest)
    assert snapped[0] == levels[0] and snapped[-1] == levels[-1]


def test_host_state_keeps_the_column_values():
    found = column_values.fit(windows_of(table()), 0.1, 20)
    again = column_values.ColumnValues.from_dict(found.to_dict())
    assert again.white == found.white and again.snapped == found.snapped
    np.testing.assert_array_equal(again.knots, found.knots)
    np.testing.assert_array_equal(again.levels[0], found.levels[0])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("column_values")
    np.save(out / "table.npy", table())
    config = sines.get_config("smoke")
    config.data.name = f"npy:{out / 'table.npy'}"
    config.train.update(num_steps=6, eval_every=3, checkpoint_every=3, log_every=3)
    config.condition.update(num_samples=4, num_steps=4, chunk_size=8)
    train.train_and_evaluate(config, out / "workdir")
    return config, saved_model.load(config, out / "workdir")


@pytest.mark.slow
def test_a_run_stores_its_column_values_and_its_samples_keep_them(trained_run):
    config, tm = trained_run
    found = tm.host.column_values
    assert found.white == (2,) and found.snapped == (3,)
    sampler = generate.compile_sampler(config, mesh_lib.make_mesh(), tm.model, tm.host, 8)
    series = np.asarray(generate.generate_series(sampler, tm.params, 16, 8,
                                                 jax.random.PRNGKey(0), progress=None))
    assert np.isfinite(series).all()
    assert np.isin(series[..., 3], found.levels[0]).all()
    assert len(np.unique(series[..., 0])) > 100  # the other columns are not snapped


@pytest.mark.slow
def test_conditional_samples_keep_the_observations_and_the_levels(trained_run):
    _, tm = trained_run
    raw = table()[:3 * 24].reshape(3, 24, 4)
    gaps = np.where(np.random.default_rng(2).random(raw.shape) < 0.5, np.nan, raw)
    samples = conditional.impute(tm, gaps, progress=None)
    observed = np.isfinite(gaps)
    np.testing.assert_array_equal(samples.transpose(1, 0, 2, 3)[:, observed],
                                  np.broadcast_to(gaps[observed], (4, observed.sum())))
    assert np.isin(samples[..., 3], LEVELS).all()  # in original units: the table's levels exactly


@pytest.mark.slow
def test_the_regression_prior_is_that_of_what_the_videos_are_made_of(trained_run):
    """At no signal the regression's covariance is that of the model-space windows: the white
    column as normal scores, seen through the affine video transform."""
    _, tm = trained_run
    windows = dataset_of(tm.config.data).windows
    prior = conditional.prior_of(tm, 1e-3, windows)
    mapped = np.asarray(tm.host.column_values.to_model_space(windows))
    np.testing.assert_allclose(prior.covariance(-30.0),
                               observation.series_covariance(mapped, 1e-3), rtol=1e-3, atol=1e-5)
