"""Tests of the benchmark metrics on small synthetic window sets.

All training metrics share one window count and iteration count so that each jitted trainer
compiles once per repeat count for the whole file. Run as a script (`python test_metrics.py
repeats`), the file prints the scores of `short_repeats` as JSON, for the child process that
checks them on several devices.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stdiff_jax import metrics
from stdiff_jax.metrics import correlational, fid, scan_train, ts2vec

L, K, N = 24, 4, 256
FID_ITERS, DISC_ITERS, PRED_ITERS = 25, 300, 1000
SHORT = {"context_fid": {"iterations": FID_ITERS}, "discriminative": {"iterations": DISC_ITERS},
         "predictive": {"iterations": PRED_ITERS}}
REPEATS = 3
REPO = pathlib.Path(__file__).resolve().parents[1]


def waves(n, seed):
    """Noisy phase-shifted sines: channels strongly correlated, last one predictable."""
    rng = np.random.default_rng(seed)
    t = np.arange(L)
    freq = rng.uniform(0.1, 0.3, (n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    x = 0.9 * (np.sin(freq * t[None, :, None] + phase + 0.5 * np.arange(K)) + 1) / 2 + 0.05
    return x + rng.uniform(-0.03, 0.03, x.shape)  # (n, L, K) in [0.02, 0.98]


@pytest.fixture(scope="module")
def sets():
    real = waves(N, 1)
    rng = np.random.default_rng(2)
    shifted = real.copy()
    shifted[..., -1] = np.clip(shifted[..., -1] + 0.3, 0, 1)
    return {
        "real": real,
        "same": waves(N, 3),  # an independent draw of the same distribution
        "noise": rng.uniform(size=real.shape),
        "shifted": shifted,
        # every channel shuffled across windows on its own: same marginals, no cross-correlation
        "decorrelated": np.stack([real[rng.permutation(N), :, k] for k in range(K)], axis=-1),
    }


# ---- input validation ----------------------------------------------------------------------

@pytest.mark.parametrize("metric", sorted(metrics.METRICS))
@pytest.mark.parametrize("fake, message", [
    (np.full((8, L), 0.5), "shape"),
    (np.full((8, L, K + 1), 0.5), "channel count"),
    (np.full((8, L + 1, K), 0.5), "length"),
    (np.where(np.arange(L)[None, :, None] == 3, np.nan, np.full((8, L, K), 0.5)), "NaN"),
    (np.full((8, L, K), 1.5), "outside"),
    (np.full((8, L, K), -0.5), "outside"),
])
def test_bad_inputs_raise_clear_errors(metric, fake, message):
    with pytest.raises(ValueError, match=message):
        metrics.METRICS[metric](np.full((8, L, K), 0.5), fake, 0)


def test_evaluate_rejects_unknown_metric(sets):
    with pytest.raises(ValueError, match="unknown metrics"):
        metrics.evaluate(sets["real"], sets["same"], metrics=("fid",))


# ---- correlational score -------------------------------------------------------------------

def test_correlational_is_exactly_zero_for_identical_sets(sets):
    assert correlational.correlational_score(sets["real"], sets["real"], resample=False) == 0.0


def test_cross_correlation_matches_its_definition():
    x = waves(64, 5)
    z = (x - x.mean(axis=(0, 1))) / x.std(axis=(0, 1), ddof=1)
    expected = [np.mean(z[..., i] * z[..., j]) for i in range(K) for j in range(i + 1)]
    np.testing.assert_allclose(correlational.cross_correlation(x), expected, rtol=1e-12)


def test_correlational_detects_decorrelation_and_noise(sets):
    same = metrics.correlational_score(sets["real"], sets["same"], 0)
    assert same < 0.05
    for name in ("decorrelated", "noise"):
        assert metrics.correlational_score(sets["real"], sets[name], 0) > 5 * same + 0.1, name


# ---- Context-FID ---------------------------------------------------------------------------

def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    sigma1 = a @ a.T + np.eye(5)
    sigma2 = 4.0 * sigma1  # commuting: sqrt(sigma1 sigma2) = 2 sigma1
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 4.0 * sigma1)
    assert fid.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)
    d1, d2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)  # diagonal: sum (sqrt d1 - sqrt d2)^2
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert fid.frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(expected)


def test_cropped_encoder_equals_encoder_on_the_crop():
    """The fixed-size crop buffers give the outputs PyTorch gives on the variable-length crop.

    A narrower, shallower encoder keeps the compile short; its dilations (up to 32) still reach
    past both the crop (11) and the window (24), so every code path of the full one is covered.
    """
    model = ts2vec.TSEncoder(hidden=16, output=32, depth=5)
    x = jax.random.uniform(jax.random.key(0), (2, L, K))
    params = ts2vec.init_params(np.random.default_rng(0), K, model)
    start, stop = 5, 16
    valid = ((jnp.arange(L) >= start) & (jnp.arange(L) < stop)).astype(x.dtype)
    apply = jax.jit(model.apply)
    buffered = apply(params, x, jnp.broadcast_to(valid[None, :, None], (2, L, 1)))
    direct = apply(params, x[:, start:stop])
    np.testing.assert_allclose(buffered[:, start:stop], direct, rtol=1e-5, atol=1e-5)


def test_padded_hierarchical_loss_equals_loss_on_the_valid_part():
    z1, z2 = jax.random.normal(jax.random.key(1), (2, 4, L, 8))
    loss = jax.jit(ts2vec.hierarchical_contrastive_loss)
    for length in (3, 13):
        padded = loss(z1, z2, jnp.int32(length))
        exact = loss(z1[:, :length], z2[:, :length], length)
        assert float(padded) == pytest.approx(float(exact), rel=1e-5), length


def test_levels_longer_than_the_padded_size_score_as_padded_levels_do():
    """A window longer than `PADDED_LEVELS` scores its larger levels each at its own size: the
    loss is that of every level padded to the window, and of the valid part alone."""
    t = 3 * ts2vec.PADDED_LEVELS - 5  # levels of 91 and 45 at their own sizes, 22 to 1 padded
    z1, z2 = jax.random.normal(jax.random.key(2), (2, 4, t, 8))
    loss = jax.jit(ts2vec.hierarchical_contrastive_loss)

    @jax.jit
    def all_padded(length):
        p1, p2 = ts2vec._pyramid(z1), ts2vec._pyramid(z2)
        level_sum, levels = ts2vec._levels_loss(p1, p2, length >> jnp.arange(len(p1)),
                                                ts2vec.ALPHA)
        return level_sum / levels

    for length in (3, 40, t):
        sized = float(loss(z1, z2, jnp.int32(length)))
        assert sized == pytest.approx(float(all_padded(jnp.int32(length))), rel=1e-5), length
    exact = loss(z1[:, :40], z2[:, :40], 40)  # levels of 40 at its own size, 20 to 1 padded
    assert float(loss(z1, z2, jnp.int32(40))) == pytest.approx(float(exact), rel=1e-5)


@pytest.mark.slow
def test_context_fid_separates_same_distribution_from_noise_and_is_deterministic(sets):
    same = metrics.context_fid(sets["real"], sets["same"], 0, iterations=FID_ITERS)
    assert same == metrics.context_fid(sets["real"], sets["same"], 0, iterations=FID_ITERS)
    noise = metrics.context_fid(sets["real"], sets["noise"], 0, iterations=FID_ITERS)
    decorrelated = metrics.context_fid(sets["real"], sets["decorrelated"], 0,
                                       iterations=FID_ITERS)
    assert same < 0.1
    assert noise > 10 * same and decorrelated > 10 * same


def test_ts2vec_iterations_follow_the_data_size_rule():
    assert ts2vec.default_iterations(100_000) == 200
    assert ts2vec.default_iterations(100_001) == 600
    assert ts2vec.default_iterations(17_397 * 24 * 7) == 600  # ETTh at L = 24


def test_ts2vec_loss_decreases():
    _, losses = ts2vec.fit(waves(N, 1), seed=0, iterations=FID_ITERS)
    losses = np.asarray(losses)
    assert np.all(np.isfinite(losses)) and losses[-10:].mean() < 0.8 * losses[:5].mean()


# ---- discriminative and predictive scores --------------------------------------------------

@pytest.mark.slow
def test_discriminative_separates_same_distribution_from_fakes(sets):
    def score(name):
        return metrics.discriminative_score(sets["real"], sets[name], 0, iterations=DISC_ITERS)
    same = score("same")
    assert same == score("same")
    assert same < 0.15
    for name in ("noise", "shifted", "decorrelated"):
        assert score(name) > 0.25, name


@pytest.mark.slow
def test_predictive_is_low_for_same_distribution_and_high_for_shifted_fakes(sets):
    def score(name):
        return metrics.predictive_score(sets["real"], sets[name], 0, iterations=PRED_ITERS)
    same = score("same")
    assert same == score("same")
    trained_on_real = score("real")
    assert same < 1.5 * trained_on_real + 0.01
    for name in ("noise", "shifted"):
        assert score(name) > 3 * same, name


def test_gru_host_init_matches_the_module_parameters():
    from stdiff_jax.metrics import gru
    for per_step, features in ((False, K), (True, K - 1)):
        module = gru.PostHocGRU(2, per_step)
        expected = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, L, features)))
        drawn = gru.init_params(np.random.default_rng(0), features, 2)
        assert jax.tree.map(lambda e: (e.shape, e.dtype), expected) == jax.tree.map(
            lambda d: (d.shape, d.dtype), drawn)


# ---- training loop and evaluate ------------------------------------------------------------

def test_scan_train_average_is_the_mean_of_all_iterates():
    """SGD on |w - target|^2 / 2: iterates are known, the average includes the initial one."""
    target = jnp.array([1.0, -2.0])
    params, averaged, losses = scan_train.scan_train(
        lambda w, _: 0.5 * jnp.sum((w["w"] - target) ** 2), {"w": jnp.zeros(2)},
        optax.sgd(0.5), jnp.zeros(3), average=True)
    iterates = [target * (1 - 0.5 ** k) for k in range(4)]  # w_k = target (1 - 0.5^k)
    np.testing.assert_allclose(params["w"], iterates[-1], rtol=1e-6)
    np.testing.assert_allclose(averaged["w"], np.mean(iterates, axis=0), rtol=1e-6)
    assert losses.shape == (3,)


def test_epoch_batches_are_shuffled_epochs_without_the_ragged_tail():
    idx = scan_train.epoch_batches(np.random.default_rng(0), 10, 3, 7)  # 3 batches per epoch
    assert idx.shape == (7, 3)
    for epoch in (idx[0:3], idx[3:6]):
        assert len(set(epoch.ravel())) == 9  # no repeats inside an epoch, one row left out


def test_evaluate_reports_mean_and_t_interval_as_json(sets):
    seen = []
    result = metrics.evaluate(
        sets["real"], sets["same"], repeats=3, seed=0,
        metrics=("correlational", "discriminative"),
        options={"discriminative": {"iterations": DISC_ITERS}},
        progress=lambda name, r, value: seen.append((name, r)))
    json.dumps(result)
    assert seen == [("correlational", r) for r in range(3)] + [("discriminative", r)
                                                                for r in range(3)]
    values = [metrics.correlational_score(sets["real"], sets["same"], r) for r in range(3)]
    corr = result["correlational"]
    assert corr["values"] == values
    assert corr["mean"] == pytest.approx(np.mean(values))
    # t.ppf(0.975, 2) = 4.302653; sem uses the unbiased std.
    assert corr["ci95"] == pytest.approx(4.302653 * np.std(values, ddof=1) / np.sqrt(3), rel=1e-6)


# ---- all repeats at once --------------------------------------------------------------------

def slow_for(name):
    """Context-FID's trainer takes tens of seconds to compile; the others a second or two."""
    return pytest.param(name, marks=pytest.mark.slow) if name == "context_fid" else name


@pytest.mark.parametrize("metric", [slow_for(m) for m in sorted(metrics.METRICS)])
def test_repeats_at_once_score_what_each_seed_scores_alone(sets, metric):
    seeds = list(range(REPEATS))
    together = metrics.REPEATED[metric](sets["real"], sets["same"], seeds, **SHORT.get(metric, {}))
    alone = [metrics.METRICS[metric](sets["real"], sets["same"], s, **SHORT.get(metric, {}))
             for s in seeds]
    # vmap batches the networks' matmuls, which may round differently from one network's, and
    # a thousand training steps carry such differences into the fifth digit.
    assert together == pytest.approx(alone, rel=1e-4, abs=1e-7)


def test_ts2vec_repeats_train_on_their_own_draws():
    data, seeds = waves(N, 1), [3, 4, 5]  # as many as REPEATS: the other tests' program
    params, losses = ts2vec.fit_repeats(data, seeds, iterations=FID_ITERS)
    _, alone = ts2vec.fit(data, 5, iterations=FID_ITERS)
    assert jax.tree.leaves(params)[0].shape[0] == 3 and losses.shape == (3, FID_ITERS)
    np.testing.assert_allclose(losses[2], alone, rtol=1e-5)
    assert not np.allclose(losses[1], losses[2])


@pytest.mark.parametrize("metric", [slow_for(m) for m in sorted(metrics.METRICS)])
def test_second_evaluate_of_the_same_shapes_compiles_nothing(sets, metric):
    """Another data set of the same shapes (fake with fewer windows than real) reuses every
    program: no tracing, lowering or compilation events from JAX during the second call."""
    def run(real, fake):
        metrics.evaluate(real, fake, repeats=REPEATS, metrics=(metric,), options=SHORT)

    run(sets["real"], sets["same"][:200])
    events = []
    listener = lambda event, duration, **kwargs: events.append(event)  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        run(sets["same"], sets["noise"][:200])
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert [e for e in events if e.startswith("/jax/core/compile")] == []


def short_repeats():
    """`REPEATED` scores of every metric on two fixed wave sets, short trainings."""
    real, fake = waves(N, 1), waves(N, 3)
    return {m: metrics.REPEATED[m](real, fake, list(range(REPEATS)), **SHORT.get(m, {}))
            for m in sorted(metrics.METRICS)}


@pytest.mark.slow
def test_repeats_score_the_same_on_several_devices():
    """A child process with 3 CPU devices scores what this one (1 device) scores.

    The child compiles everything anew (the persistent cache's keys include the device count).
    """
    assert jax.device_count() != 3
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
               XLA_FLAGS="--xla_force_host_platform_device_count=3")
    proc = subprocess.run([sys.executable, __file__, "repeats"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    child = json.loads(proc.stdout.splitlines()[-1])
    assert child.pop("devices") == 3
    here = short_repeats()
    for metric, values in here.items():
        assert child[metric] == pytest.approx(values, rel=1e-6, abs=1e-9), metric


# ---- plots ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_save_plots_writes_pngs(sets, tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    from stdiff_jax.metrics import plots
    paths = plots.save_plots(sets["real"][:50], sets["noise"][:50], tmp_path,
                             names=["a", "b", "c", "d"])
    assert sorted(p.split("/")[-1] for p in paths) == ["acf.png", "kde.png", "psd.png", "tsne.png", "windows.png"]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_autocorrelation_and_psd_of_a_pure_tone():
    t = np.arange(L)
    x = (np.cos(2 * np.pi * 3 * t / L)[None, :, None] + 1) / 2  # 3 cycles per window
    from stdiff_jax.metrics import plots
    psd = plots.mean_psd(x)[0]
    assert np.argmax(psd) == 3 and psd[3] > 1e3 * np.delete(psd, 3).max()
    acf = plots.autocorrelation(x)[0]
    assert acf[0] == pytest.approx(1.0) and acf[4] < -0.5  # half a period later: anticorrelated


if __name__ == "__main__" and sys.argv[1:] == ["repeats"]:
    print(json.dumps({"devices": jax.device_count(), **short_repeats()}))
