"""The per-column marginal map (config.video.marginals = "normal") and a run that uses it."""

import numpy as np
import pytest
from scipy import special

from stdiff_jax import conditional, generate, marginals, train, trained
from test_conditional import COLUMNS, TRAIN_ROWS, series, tiny_config, write_csv


def heavy_tailed_windows(n=400, length=24, seed=0):
    """(n, L, 3) windows in [-1, 1]: a uniform column, a log-normal one, one with ties."""
    rng = np.random.default_rng(seed)
    uniform = rng.uniform(-1, 1, (n, length))
    spikes = np.exp(rng.normal(0, 1.2, (n, length)))
    spikes = 2 * (spikes - spikes.min()) / (spikes.max() - spikes.min()) - 1
    ties = np.round(rng.uniform(-1, 1, (n, length)), 1)  # 21 distinct values
    return np.stack([uniform, spikes, ties], axis=-1).astype(np.float32)


def test_the_map_inverts_exactly_and_makes_every_column_normal():
    windows = heavy_tailed_windows()
    m = marginals.MarginalMap.fit(windows)
    scores = np.asarray(m.forward(windows))
    assert np.all(np.diff(m.knots, axis=0) > 0)  # strictly increasing, ties included
    np.testing.assert_allclose(np.asarray(m.inverse(scores)), windows, atol=2e-5)
    spikes = windows[..., 1].ravel()
    assert abs(np.mean((spikes - spikes.mean()) ** 3) / spikes.std() ** 3) > 2  # skewed before
    for k in (0, 1):  # continuous columns come out standard normal
        z = scores[..., k].ravel()
        assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.03
        ks = np.abs(np.arange(1, z.size + 1) / z.size - special.ndtr(np.sort(z))).max()
        assert ks < 0.01  # the empirical distribution of the scores is Phi's
    outside = np.array([[-3.0, -1.5, 1.2], [2.0, 4.0, -7.0]], np.float32)  # beyond the knots
    np.testing.assert_allclose(np.asarray(m.inverse(m.forward(outside))), outside, atol=1e-4)
    grid = np.linspace(-2, 2, 101, dtype=np.float32)[:, None].repeat(3, 1)
    assert np.all(np.diff(np.asarray(m.forward(grid)), axis=0) > 0)  # monotone everywhere
    restored = marginals.MarginalMap.from_dict(m.to_dict())
    np.testing.assert_array_equal(restored.knots, m.knots)
    assert marginals.fit_marginals("none", windows) is None
    assert marginals.to_model_space(None, windows) is windows
    with pytest.raises(ValueError, match="'none' or 'normal'"):
        marginals.fit_marginals("gauss", windows)


@pytest.fixture(scope="module")
def normal_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("marginals")
    write_csv(out / "train.csv", series(TRAIN_ROWS))
    config = tiny_config(out / "train.csv")
    config.video.marginals = "normal"
    train.train_and_evaluate(config, out / "workdir")
    return config, out / "workdir", trained.load(config, out / "workdir")


def test_a_run_with_normal_marginals_keeps_the_map_and_samples_through_it(normal_run):
    config, workdir, tm = normal_run
    assert tm.host.marginals is not None and tm.host.marginals.knots.shape == (
        marginals.NUM_KNOTS, len(COLUMNS))
    windows = series(TRAIN_ROWS)[:48].reshape(2, 24, len(COLUMNS))
    unit = 2 * tm.host.scaler.transform(windows) - 1
    round_trip = tm.decode(tm.to_video(unit.astype(np.float32)))
    np.testing.assert_allclose(np.asarray(round_trip), unit, atol=1e-4)
    with config.unlocked():
        config.sample.update(num_samples=16, num_steps=4)
    fake = generate.sample_to_workdir(config, workdir)  # (16, L, K) in [0, 1], unclipped
    assert fake.shape == (16, 24, len(COLUMNS)) and np.all(np.isfinite(fake))
    gaps = np.where(np.random.default_rng(0).random(windows.shape) < 0.5, np.nan, windows)
    samples = conditional.impute(tm, gaps, progress=None)
    observed = np.isfinite(gaps)
    np.testing.assert_array_equal(samples.transpose(1, 0, 2, 3)[:, observed],
                                  np.broadcast_to(gaps[observed], (6, observed.sum())))
    assert np.all(np.isfinite(samples))
    with config.unlocked():
        config.video.marginals = "none"
    with pytest.raises(ValueError, match="marginals: recorded normal, this run None"):
        train.train_and_evaluate(config, workdir)  # a resume must not drop the map silently
