"""Conditional generation: against a Gaussian whose conditionals are known, and end to end.

The Gaussian: series x ~ N(mu, Sigma) (L = 24, K = 1, an Ornstein-Uhlenbeck covariance), encoded
by the real video transform (n_fft 11, hop 3, a non-trivial normaliser). The encoder maps 24
numbers to a 144-dimensional video, so the videos of series span a 24-dimensional subspace and
their covariance is singular; the test distribution adds isotropic video noise of std TAU:

    v = encode(x) + TAU n,   n ~ N(0, I_144),

a Gaussian N(m_v, C_v) with C_v = A Sigma A^T + TAU^2 I (A: the encoder's linear part), whose
exact noise prediction is E[eps | z] = sigma (alpha^2 C_v + sigma^2 I)^{-1} (z - alpha m_v). Its
decoded series decode(v) = x + TAU D n (D: the decoder's linear part) are Gaussian with
covariance S = Sigma + TAU^2 D D^T, so the conditional of the unobserved values given the observed
ones is closed form: S_uo S_oo^{-1} and the Schur complement.
"""

import csv
import functools
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import sines
from stdiff_jax import conditional, modes, observation, sampling, saved_model, train, video
from stdiff_jax.schedule import Schedule, alpha_sigma

L, K, N_FFT, HOP, TAU = 24, 1, 11, 3, 0.1
STEPS = np.arange(L)
MU = 0.3 * np.sin(2 * np.pi * STEPS / 12)
SIGMA = 0.25 * np.exp(-np.abs(STEPS[:, None] - STEPS[None]) / 4.0)
_rng = np.random.default_rng(0)


def _raw_video(x):
    return video.series_to_video(x, N_FFT, HOP)


def _linear_map(fn, dim):
    """(out, dim) matrix of the linear part of an affine fn of flat vectors, in one program (run
    op by op, the maps below compiled some 180 programs at import, ~9 CPU s in every worker)."""
    basis = jnp.eye(dim, dtype=jnp.float32)
    return np.asarray(jax.jit(lambda b: jax.vmap(fn)(b) - fn(jnp.zeros(dim)))(basis), np.float64).T


VIDEO_SHAPE = jax.eval_shape(_raw_video, jnp.zeros((1, L, K))).shape[1:]  # (8, 6, 1, 3)
_raw_map = _linear_map(lambda x: _raw_video(x.reshape(1, L, K)).reshape(-1), L)
_raw_std = np.sqrt(np.diag(_raw_map @ SIGMA @ _raw_map.T)).reshape(VIDEO_SHAPE)
NORMALIZER = video.VideoNormalizer(
    mean=_rng.normal(0.0, 0.3, VIDEO_SHAPE[1:]).astype(np.float32),
    std=np.where(_raw_std.mean(0) > 1e-3, _raw_std.mean(0), 1.0).astype(np.float32))


@jax.jit
def encode(x):  # (B, L, K) -> (B, T, F, K, 3)
    return NORMALIZER.normalize(_raw_video(x))


@jax.jit
def decode(v):  # (B, T, F, K, 3) -> (B, L, K)
    return video.video_to_series(NORMALIZER.denormalize(v), N_FFT, HOP, L)


A = _linear_map(lambda x: encode(x.reshape(1, L, K)).reshape(-1), L)  # (144, 24)
D = _linear_map(lambda v: decode(v.reshape(1, *VIDEO_SHAPE)).reshape(-1), A.shape[0])  # (24, 144)
VIDEO_MEAN = np.asarray(encode(jnp.asarray(MU.reshape(1, L, K), jnp.float32)),
                        np.float64).reshape(-1)
_eigenvalues, _eigenvectors = np.linalg.eigh(A @ SIGMA @ A.T + TAU ** 2 * np.eye(A.shape[0]))
SERIES_COV = SIGMA + TAU ** 2 * D @ D.T


def gaussian_denoiser(z, logsnr):
    """The exact velocity of the video distribution, what a network outputs, through C_v's
    eigenbasis: alpha E[eps | z] - sigma E[x0 | z] = alpha sigma (I - C_v) (alpha^2 C_v +
    sigma^2 I)^{-1} (z - alpha m_v) - sigma m_v."""
    alpha, sigma = (a[:, None] for a in alpha_sigma(logsnr))
    u, lam = jnp.asarray(_eigenvectors, jnp.float32), jnp.asarray(_eigenvalues, jnp.float32)
    mean = jnp.asarray(VIDEO_MEAN, jnp.float32)
    gain = alpha * sigma * (1.0 - lam) / (alpha ** 2 * lam + sigma ** 2)
    v = (((z.reshape(z.shape[0], -1) - alpha * mean) @ u) * gain) @ u.T - sigma * mean
    return v.reshape(z.shape)


def analytic_conditional(mask, values):
    """(mean, covariance) of the unobserved decoded values given the observed ones."""
    o, u = mask, ~mask
    gain = SERIES_COV[np.ix_(u, o)] @ np.linalg.inv(SERIES_COV[np.ix_(o, o)])
    return (MU[u] + gain @ (values[o] - MU[o]),
            SERIES_COV[np.ix_(u, u)] - gain @ SERIES_COV[np.ix_(o, u)])


SERIES_PRIOR = observation.series_prior(SERIES_COV, encode, (L, K))
SAMPLER_OPTIONS = dict(eta=0.0, schedule=Schedule(), grid="logsnr", clip_x0=None)
MASK = np.zeros(L, bool)
MASK[_rng.choice(L, L // 2, replace=False)] = True  # half the steps observed
TRUTH = _rng.multivariate_normal(MU, SERIES_COV)


@functools.partial(jax.jit, static_argnames=("n", "method", "num_steps", "jumps", "renoise",
                                             "regression"))
def gaussian_conditional_samples(key, mask, n, method, num_steps, jumps, renoise=True,
                                 regression=False):
    given = jnp.asarray(np.where(MASK, TRUTH, 0.0), jnp.float32)  # (L,)
    observed = jnp.broadcast_to(given[None, :, None], (n, L, K))
    return observation.conditional_sample(
        gaussian_denoiser, encode, decode, observed,
        jnp.broadcast_to(mask[None, :, None], (n, L, K)), VIDEO_SHAPE, key, jumps=jumps,
        renoise=renoise, prior=SERIES_PRIOR if regression else None, method=method,
        num_steps=num_steps, **SAMPLER_OPTIONS)


def conditional_errors(samples, mask=MASK):
    """(max |mean error| / sd, relative Frobenius error of the covariance), unobserved part."""
    mean, cov = analytic_conditional(mask, TRUTH)
    unobserved = np.asarray(samples, np.float64)[:, ~mask, 0]
    mean_error = np.max(np.abs(unobserved.mean(0) - mean) / np.sqrt(np.diag(cov)))
    cov_error = np.linalg.norm(np.cov(unobserved.T) - cov) / np.linalg.norm(cov)
    return mean_error, cov_error


# ------------------------------------------------------------------------------------------------
# Against the Gaussian.
# ------------------------------------------------------------------------------------------------
NUM_SAMPLES = 2048  # Monte Carlo: 0.02 sd on a mean, ~0.05 on the covariance's Frobenius norm


def test_default_conditional_samples_approach_the_analytic_conditional():
    """The default: DPM-Solver++(2M), 20 steps, one network call a step, the regression on the
    Gaussian's covariance. Measured: mean error 0.05 sd and covariance error 8% (two jumps:
    0.04 sd and 17%, narrower samples), against the projection's 0.36 sd and 23% at one jump
    (0.31 sd and 13% at two)."""
    samples = gaussian_conditional_samples(jax.random.key(0), jnp.asarray(MASK), NUM_SAMPLES,
                                           "dpmpp_2m", 20, 1, regression=True)
    mean_error, cov_error = conditional_errors(samples)
    assert mean_error < 0.12 and cov_error < 0.12
    mean, cov = analytic_conditional(MASK, TRUTH)
    prior_mean_error = np.max(np.abs(MU[~MASK] - mean) / np.sqrt(np.diag(cov)))
    assert prior_mean_error > 4 * mean_error  # the observations moved the samples
    _, projection_cov_error = conditional_errors(gaussian_conditional_samples(
        jax.random.key(0), jnp.asarray(MASK), NUM_SAMPLES, "dpmpp_2m", 20, 1))
    assert cov_error < 0.5 * projection_cov_error


def test_resampling_jumps_shrink_the_error():
    """The projection, DPM-Solver++(2M), 20 steps, 1 / 2 / 4 network calls a step: mean error
    0.36 / 0.31 / 0.24 sd, covariance error 23% / 13% / 19% (4 jumps under-disperse: the sample
    variances 0.8x the analytic ones, where one jump gives 1.15x)."""
    errors = [conditional_errors(gaussian_conditional_samples(
        jax.random.key(0), jnp.asarray(MASK), NUM_SAMPLES, "dpmpp_2m", 20, jumps))
        for jumps in (1, 2, 4)]
    (mean_1, cov_1), (mean_2, cov_2), (mean_4, _) = errors
    assert mean_4 < mean_2 < mean_1 and cov_2 < 0.7 * cov_1


@pytest.mark.parametrize("method,num_steps,renoise", [
    ("ddim", 50, True), ("ancestral", 50, True), ("dpmpp_2m", 20, True), ("dpmpp_2m", 20, False)])
def test_every_sampler_returns_the_observations_exactly(method, num_steps, renoise):
    samples = np.asarray(gaussian_conditional_samples(jax.random.key(1), jnp.asarray(MASK), 64,
                                                      method, num_steps, 1, renoise))
    observed = np.float32(TRUTH[MASK])
    assert np.array_equal(samples[:, MASK, 0], np.broadcast_to(observed, (64, MASK.sum())))
    assert np.all(np.isfinite(samples)) and samples[:, ~MASK].std(0).min() > 0


def test_a_fully_observed_window_comes_back_as_given():
    full = np.ones(L, bool)
    samples = np.asarray(gaussian_conditional_samples(jax.random.key(2), jnp.asarray(full), 4,
                                                      "dpmpp_2m", 20, 1))
    given = np.float32(np.where(MASK, TRUTH, 0.0))  # what the observed array holds everywhere
    assert np.array_equal(samples[:, :, 0], np.broadcast_to(given, (4, L)))


@pytest.mark.parametrize("num_samples", [20, 50, 100])
def test_sample_quantile_intervals_cover_new_draws_at_their_level(num_samples):
    """90% of new draws of the samples' own distribution fall inside their 5%-95% interval (numpy's
    default positions cover 0.9 (S - 1) / (S + 1) of them: 81% at S = 20)."""
    draws = np.random.default_rng(0).standard_normal((20_000, num_samples + 1))
    low, high = conditional.sample_quantiles(draws[:, :-1], [0.05, 0.95], axis=1)
    coverage = np.mean((draws[:, -1] >= low) & (draws[:, -1] <= high))
    assert abs(coverage - 0.9) < 0.01  # binomial sd 0.002
    low, high = np.quantile(draws[:, :-1], [0.05, 0.95], axis=1)  # numpy's default positions
    assert np.mean((draws[:, -1] >= low) & (draws[:, -1] <= high)) < 0.9 - 1.0 / (num_samples + 1)


def test_guide_projection_is_orthogonal_and_exact():
    """x0_fn's edit decodes to the observations and is the smallest such edit: orthogonal to every
    video direction that leaves the observed values alone."""
    n = 3
    observed = jnp.asarray(_rng.normal(size=(n, L, K)), jnp.float32)
    mask = jnp.asarray(_rng.random((n, L, K)) < 0.4)
    v = jnp.asarray(_rng.normal(size=(n, *VIDEO_SHAPE)), jnp.float32)
    other = jnp.asarray(_rng.normal(size=(n, *VIDEO_SHAPE)), jnp.float32)

    @jax.jit  # one program: the guide's set-up run eagerly costs seconds in dispatch
    def project(observed, mask, v, other):
        x0_fn = observation.observation_guide(encode, decode, observed, mask, jumps=1,
                                               renoise=True).x0_fn
        projected = x0_fn(v, 0.0)
        free = x0_fn(other, 0.0) - x0_fn(jnp.zeros_like(other), 0.0)  # observes nothing
        return projected, x0_fn(projected, 0.0), decode(projected), free

    projected, twice, decoded, free = project(observed, mask, v, other)
    np.testing.assert_allclose(np.where(mask, decoded, 0.0), np.where(mask, observed, 0.0),
                               atol=2e-4)
    np.testing.assert_allclose(twice, projected, atol=2e-4)  # idempotent
    inner = jnp.sum((projected - v) * free, axis=(1, 2, 3, 4))
    np.testing.assert_allclose(inner, 0.0, atol=1e-3 * float(jnp.abs(projected - v).sum()))


def test_regression_correction_is_exact_and_moves_the_prior_mean_to_the_conditional_mean():
    """At a log-SNR where the video tells nothing (Sigma_t = Sigma), the regression moves the
    video of the prior mean to the Gaussian's conditional mean: exact on the observed values, the
    Gaussian regression elsewhere; exact on the observed values at the clean end too."""
    mask = jnp.asarray(MASK[None, :, None])
    correct = observation.regression_correction(encode, decode, mask, SERIES_PRIOR)
    prior = encode(jnp.asarray(MU.reshape(1, L, K), jnp.float32))
    target = jnp.asarray(TRUTH.reshape(1, L, K), jnp.float32)
    run = jax.jit(lambda v, logsnr: decode(correct(v, target, logsnr)))
    decoded = np.asarray(run(prior, -30.0), np.float64)[0, :, 0]
    np.testing.assert_allclose(decoded[MASK], TRUTH[MASK], atol=2e-4)
    mean, cov = analytic_conditional(MASK, TRUTH)
    np.testing.assert_allclose(decoded[~MASK], mean, atol=0.02 * np.sqrt(np.diag(cov)).min())
    clean = np.asarray(run(prior, 15.0), np.float64)[0, :, 0]  # Sigma_t ~ (snr G)^{-1}
    np.testing.assert_allclose(clean[MASK], TRUTH[MASK], atol=2e-4)


def test_series_prior_is_the_covariance_at_no_signal_and_shrinks_with_it():
    np.testing.assert_allclose(SERIES_PRIOR.covariance(-30.0), SERIES_COV, rtol=1e-4, atol=1e-6)
    g = A.T @ A  # what a video at SNR 1 tells of the series
    np.testing.assert_allclose(SERIES_PRIOR.covariance(0.0),
                               np.linalg.inv(np.linalg.inv(SERIES_COV) + g), rtol=1e-3, atol=1e-5)


def test_series_covariance_adds_its_ridge_to_the_sample_covariance():
    windows = np.random.default_rng(3).normal(size=(500, 4, 2))
    cov = observation.series_covariance(windows, ridge=0.1)
    sample = np.cov(windows.reshape(500, 8), rowvar=False)
    np.testing.assert_allclose(cov, sample + 0.1 * np.mean(np.diag(sample)) * np.eye(8))


# ------------------------------------------------------------------------------------------------
# A tiny trained model: the Python API and the command line.
# ------------------------------------------------------------------------------------------------
REPO = pathlib.Path(__file__).resolve().parents[1]
COLUMNS = ("load", "temp")
TRAIN_ROWS, GAP_ROWS = 320, 50


def write_csv(path, values, start=0):
    """A table under a date column and COLUMNS, NaN written as an empty cell."""
    lines = ["date," + ",".join(COLUMNS)]
    for r, row in enumerate(values, start=start):
        cells = ["" if np.isnan(v) else repr(float(v)) for v in row]
        lines.append(f"2020-01-{1 + r // 24:02d} {r % 24:02d}:00:00," + ",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def series(rows, seed=0):
    """(rows, 2) daily-periodic load and a slower temperature, in original units."""
    t = np.arange(rows)
    noise = np.random.default_rng(seed).normal(size=(rows, 2))
    return np.stack([50 + 20 * np.sin(2 * np.pi * t / 24) + 2 * noise[:, 0],
                     10 + 5 * np.sin(2 * np.pi * t / 150) + 0.5 * noise[:, 1]], axis=1)


def tiny_config(data_csv):
    """The smoke network, 6 steps on the CSV; conditional sampling: 6 samples, 4 DPM steps."""
    c = sines.get_config("smoke")
    c.data.name = f"csv:{data_csv}"
    c.train.update(num_steps=6, eval_every=3, checkpoint_every=3, log_every=3)
    c.condition.update(num_samples=6, num_steps=4, chunk_size=12)
    return c


CLI_OVERRIDES = ["--config.train.num_steps=6", "--config.condition.num_samples=6",
                 "--config.condition.num_steps=4", "--config.condition.chunk_size=12"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("conditional")
    write_csv(out / "train.csv", series(TRAIN_ROWS))
    config = tiny_config(out / "train.csv")
    train.train_and_evaluate(config, out / "workdir")
    return out, config, saved_model.load(config, out / "workdir")


def gappy_windows(tm, num=3, rate=0.5, seed=1):
    """num windows of the training series with `rate` of their values set to NaN."""
    length = tm.series_shape[0]
    values = series(TRAIN_ROWS)[:num * length].reshape(num, length, len(COLUMNS))
    gaps = np.where(np.random.default_rng(seed).random(values.shape) < rate, np.nan, values)
    return values, gaps


def test_impute_keeps_observations_and_does_not_depend_on_chunking(trained_run):
    _, _, tm = trained_run
    values, gaps = gappy_windows(tm)
    gaps[1] = values[1]  # a window with nothing missing
    samples = conditional.impute(tm, gaps, progress=None)
    assert samples.shape == (3, 6, *tm.series_shape) and np.all(np.isfinite(samples))
    observed = np.isfinite(gaps)
    np.testing.assert_array_equal(samples.transpose(1, 0, 2, 3)[:, observed],
                                  np.broadcast_to(gaps[observed], (6, observed.sum())))
    np.testing.assert_array_equal(samples[1], np.broadcast_to(values[1], samples[1].shape))
    assert np.std(samples[0][:, ~observed[0]], axis=0).min() > 0  # samples differ
    rechunked = conditional.impute(tm, gaps, progress=None, chunk_size=4)
    np.testing.assert_allclose(rechunked, samples, rtol=1e-5, atol=1e-5)
    again = conditional.impute(tm, gaps, progress=None)
    np.testing.assert_array_equal(again, samples)
    other_seed = conditional.impute(tm, gaps, progress=None, seed=1)
    assert np.abs(other_seed - samples)[:, :, ~observed[0]].max() > 0


def test_both_corrections_keep_observations_on_a_trained_model(trained_run):
    """The regression reads the training data's covariance (the tiny run's CSV)."""
    _, _, tm = trained_run
    _, gaps = gappy_windows(tm)
    samples = conditional.impute(tm, gaps, progress=None, correction="projection", jumps=2)
    observed = np.isfinite(gaps)
    assert samples.shape == (3, 6, *tm.series_shape) and np.all(np.isfinite(samples))
    np.testing.assert_array_equal(samples.transpose(1, 0, 2, 3)[:, observed],
                                  np.broadcast_to(gaps[observed], (6, observed.sum())))
    regression = conditional.impute(tm, gaps, progress=None, correction="regression")
    assert np.abs(samples - regression)[:, :, ~observed[0]].max() > 0


def test_prior_of_given_windows_equals_the_loaded_one(trained_run):
    _, _, tm = trained_run
    loaded = conditional.prior_of(tm, 1e-3)
    given = conditional.prior_of(tm, 1e-3, conditional.dataset_of(tm.config.data).windows)
    np.testing.assert_array_equal(given.basis, loaded.basis)
    np.testing.assert_array_equal(given.eigenvalues, loaded.eigenvalues)
    other_ridge = conditional.prior_of(tm, 1e-2)
    assert np.abs(other_ridge.covariance(-30.0) - loaded.covariance(-30.0)).max() > 0


def test_forecast_continues_the_history(trained_run):
    _, _, tm = trained_run
    history = series(TRAIN_ROWS)[-40:]
    paths = conditional.forecast(tm, history, 6, progress=None)
    assert paths.shape == (6, 6, len(COLUMNS)) and np.all(np.isfinite(paths))
    short = conditional.forecast(tm, history[-5:][None], 6, progress=None)  # padded in front
    assert short.shape == (1, 6, 6, len(COLUMNS)) and np.all(np.isfinite(short))


def test_nothing_to_generate_and_bad_inputs_fail_clearly(trained_run):
    _, _, tm = trained_run
    values, gaps = gappy_windows(tm)
    with pytest.raises(ValueError, match="Nothing to impute"):
        conditional.impute(tm, values)
    with pytest.raises(ValueError, match=r"shape \(N, 24, 2\)"):
        conditional.impute(tm, gaps[:, :20])
    with pytest.raises(ValueError, match="NaN or inf values where the mask"):
        conditional.impute(tm, gaps, np.ones(gaps.shape, bool))
    with pytest.raises(ValueError, match="horizon < L = 24"):
        conditional.forecast(tm, values[0], 24)
    with pytest.raises(ValueError, match="Unknown conditional-sampling setting"):
        conditional.impute(tm, gaps, num_sample=3)
    with pytest.raises(ValueError, match="correction='least_squares'; use one of"):
        conditional.impute(tm, gaps, correction="least_squares")
    with pytest.raises(ValueError, match="ridge must lie in"):
        conditional.impute(tm, gaps, ridge=0.0)
    with pytest.raises(ValueError, match="Nothing to impute"):
        conditional.impute_table(tm, values[0])


def test_covering_windows_reach_every_row_from_the_most_central_window():
    starts, owner = conditional.covering_windows(50, 24, 12)
    np.testing.assert_array_equal(starts, [0, 12, 24, 26])
    rows = np.arange(50)
    assert np.all((rows >= starts[owner]) & (rows < starts[owner] + 24))
    distance = np.abs(rows - (starts[owner] + 11.5))
    assert np.all(distance <= np.abs(rows[:, None] - (starts[None] + 11.5)).min(1))
    starts, owner = conditional.covering_windows(10, 24, 12)  # shorter than a window
    np.testing.assert_array_equal(starts, [0])
    np.testing.assert_array_equal(owner, np.zeros(10))


def run_main(*args, devices=1):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
                         "--xla_backend_optimization_level=0")  # halves compile time
    return subprocess.run([sys.executable, "-m", "stdiff_jax.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def read_table(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.mark.slow
def test_command_line_imputes_and_forecasts_a_csv_on_one_and_three_devices(trained_run):
    out, config, _ = trained_run
    values = series(GAP_ROWS, seed=3)
    gaps = np.where(np.random.default_rng(4).random(values.shape) < 0.3, np.nan, values)
    write_csv(out / "gaps.csv", gaps)
    common = [f"--config={REPO}/configs/sines.py:smoke", f"--config.data.name={config.data.name}",
              f"--workdir={out / 'workdir'}", *CLI_OVERRIDES]
    results = {}
    for devices in (1, 3):
        target = out / f"on_{devices}"
        proc = run_main(*common, "--mode=impute", f"--config.condition.input={out / 'gaps.csv'}",
                        f"--config.condition.output_dir={target}", devices=devices)
        assert proc.returncode == 0, proc.stderr[-5000:]
        results[devices] = read_table(target / modes.IMPUTED)
    header, rows = results[1]
    given_header, given_rows = read_table(out / "gaps.csv")
    assert header == given_header == ["date", *COLUMNS] and len(rows) == GAP_ROWS
    for row, given in zip(rows, given_rows):
        assert row[0] == given[0]  # the date column is kept
        for cell, given_cell in zip(row[1:], given[1:]):
            assert cell == given_cell if given_cell else np.isfinite(float(cell))
    filled = np.array([[float(c) for c in row[1:]] for row in rows])
    on_three = np.array([[float(c) for c in row[1:]] for row in results[3][1]])
    np.testing.assert_allclose(on_three, filled, rtol=1e-4, atol=1e-4)
    header, rows = read_table(out / "on_1" / modes.IMPUTED_QUANTILES)
    assert header == ["date", "load_q5", "temp_q5", "load_q50", "temp_q50", "load_q95", "temp_q95"]
    q = np.array([[float(c) for c in row[1:]] for row in rows])
    assert np.all(q[:, :2] <= q[:, 2:4]) and np.all(q[:, 2:4] <= q[:, 4:])

    proc = run_main(*common, "--mode=forecast", "--config.condition.horizon=6",
                    f"--config.condition.output_dir={out / 'forecast'}")
    assert proc.returncode == 0, proc.stderr[-5000:]
    header, rows = read_table(out / "forecast" / modes.FORECAST)
    assert header == ["step", *COLUMNS] and [r[0] for r in rows] == [str(h) for h in range(1, 7)]
    header, rows = read_table(out / "forecast" / modes.FORECAST_QUANTILES)
    assert len(header) == 1 + 3 * len(COLUMNS) and len(rows) == 6


@pytest.mark.slow
def test_command_line_errors_name_the_problem(trained_run, tmp_path):
    out, config, _ = trained_run
    common = [f"--config={REPO}/configs/sines.py:smoke", f"--config.data.name={config.data.name}",
              f"--workdir={out / 'workdir'}", *CLI_OVERRIDES]
    (tmp_path / "other.csv").write_text("date,load,humidity\n2020-01-01,1.0,\n2020-01-02,,3.0\n")
    proc = run_main(*common, "--mode=impute", f"--config.condition.input={tmp_path / 'other.csv'}")
    assert proc.returncode != 0
    assert ("columns ['load', 'humidity'], but the model was trained on ['load', 'temp']"
            in proc.stderr)
    proc = run_main(*common, "--mode=forecast", "--config.condition.horizon=24")
    assert proc.returncode != 0 and "1 <= config.condition.horizon < seq_len = 24" in proc.stderr


def test_an_identity_guide_leaves_the_samplers_unchanged():
    identity = sampling.Guide(x0_fn=lambda x0, logsnr: x0, z_fn=lambda z, logsnr, noise: z)
    for method in sampling.METHODS:
        run = jax.jit(lambda key, guide: sampling.sample(gaussian_denoiser, (8, *VIDEO_SHAPE), key,
                                                         method=method, num_steps=5, guide=guide,
                                                         **SAMPLER_OPTIONS),
                      static_argnums=1)
        np.testing.assert_allclose(run(jax.random.key(3), identity), run(jax.random.key(3), None),
                                   rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="pass keys"):
        sampling.ddim_sample(gaussian_denoiser, jnp.zeros((2, *VIDEO_SHAPE)), jnp.zeros(3),
                             guide=identity)
