"""Training, checkpoints and sharded sampling: exact resume, 1 vs 8 devices, cross-topology restore.

The runs happen in two child processes (this file run as a script), because the device count is
fixed when JAX starts: `one` on 1 CPU device, then `eight` with
XLA_FLAGS=--xla_force_host_platform_device_count=8. They share a persistent compilation cache, so a
program compiled once (the same step in a resumed run) is not compiled again, and compile with
XLA's backend optimisations off, which halves compile time here. The children write
checkpoints, samples and a results.json; the tests below check them, restoring checkpoints in this
pytest process (1 device) as well.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from configs import sines
from stdiff_jax import checkpoint, generate, mesh as mesh_lib, train, trained, video
from stdiff_jax.data import Dataset, load_dataset
from stdiff_jax.data.synthetic import sine_windows

NUM_STEPS, STOP_AT, CHUNK, NUM_SAMPLES = 6, 4, 16, 24
REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(npy_path):
    """The smoke network on 256 sine windows: 6 steps of 16, evaluated and saved every 3."""
    c = sines.get_config("smoke")
    c.data.name = f"npy:{npy_path}"
    c.data.val_fraction = 0.1  # -> 2 validation batches of 16
    c.train.update(batch_size=16, num_steps=NUM_STEPS, warmup_steps=1, log_every=1, eval_every=3,
                   checkpoint_every=3)
    c.sample.update(num_steps=3, num_samples=NUM_SAMPLES, chunk_size=CHUNK)
    return c


def losses(workdir):
    """Per-step training metrics and validation losses from metrics.jsonl, timing left out."""
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.endswith("per_sec")} for row in rows]


def flat_state(state):
    return {jax.tree_util.keystr(path): np.asarray(x)
            for path, x in jax.tree_util.tree_leaves_with_path(state)}


def restore_latest(config, workdir):
    manager = checkpoint.create_manager(trained.checkpoint_dir(workdir), 3, async_saves=False)
    step = manager.latest_step()
    manager.close()
    return train.restore_train_state(config, workdir, mesh_lib.make_mesh(), step)[0]


# ------------------------------------------------------------------------------------------------
# The child processes.
# ------------------------------------------------------------------------------------------------
def guarded(module, name, results, key):
    """Replaces module.name by a chex.assert_max_traces(n=1) wrapper; records a retrace in results."""
    original = getattr(module, name)
    setattr(module, name, chex.assert_max_traces(original, n=1))
    results[key] = "traced once"
    return original


def sample_from(config, workdir, out_path, results, key):
    mesh = mesh_lib.make_mesh()
    tm = trained.load(config, workdir, mesh)
    model, params, host = tm.model, tm.params, tm.host
    original = guarded(generate, "sample_chunk", results, key)
    try:
        sampler = generate.compile_sampler(config, mesh, model, host.normalizer,
                                           host.series_shape, CHUNK)
        np.save(out_path, generate.generate_series(sampler, params, NUM_SAMPLES, CHUNK,
                                                   jax.random.PRNGKey(0), progress=None))
    except AssertionError as e:
        results[key] = str(e)
    finally:
        generate.sample_chunk = original


def child_one(out):
    config, results = tiny_config(out / "tiny.npy"), {}
    original = guarded(train, "train_step", results, "train_step")
    try:
        train.train_and_evaluate(config, out / "one")
    except AssertionError as e:
        results["train_step"] = str(e)
    finally:
        train.train_step = original
    train.train_and_evaluate(config, out / "resumed", stop_at_step=STOP_AT)
    shutil.copytree(out / "resumed", out / "nan")
    train.train_and_evaluate(config, out / "resumed")
    data = load_dataset(config.data.name, config.data.seq_len)
    nan_data = Dataset("nan", np.full_like(data.windows, np.nan), data.scaler, data.column_names)
    try:
        train.train_and_evaluate(config, out / "nan", dataset=nan_data)
    except FloatingPointError as e:
        results["nan_error"] = str(e)
    sample_from(config, out / "one", out / "samples_one.npy", results, "sampler_one")
    (out / "results_one.json").write_text(json.dumps(results))


def child_eight(out):
    config, results = tiny_config(out / "tiny.npy"), {"devices": jax.device_count()}
    bad = tiny_config(out / "tiny.npy")
    bad.train.batch_size = 12
    try:
        train.train_and_evaluate(bad, out / "bad")
    except ValueError as e:
        results["batch_error"] = str(e)
    original = guarded(train, "train_step", results, "train_step")
    try:
        train.train_and_evaluate(config, out / "eight")
    except AssertionError as e:
        results["train_step"] = str(e)
    finally:
        train.train_step = original
    for name in ("one", "eight"):
        np.savez(out / f"{name}_restored_on_eight.npz", **flat_state(restore_latest(config, out / name)))
    sample_from(config, out / "one", out / "samples_eight.npy", results, "sampler_eight")
    (out / "results_eight.json").write_text(json.dumps(results))


def run_child(name, out, devices):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               PYTHONPATH=str(REPO))
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(out / "jax_cache"))  # conftest sets one
    env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={devices} "
                        "--xla_backend_optimization_level=0")  # halves compile time
    proc = subprocess.run([sys.executable, __file__, name, str(out)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise RuntimeError(f"child {name} failed:\n{proc.stderr[-6000:]}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_runs")
    np.save(out / "tiny.npy", sine_windows(num=256))
    run_child("one", out, 1)
    run_child("eight", out, 8)
    return out


# ------------------------------------------------------------------------------------------------
# What the runs show.
# ------------------------------------------------------------------------------------------------
def results(runs, name):
    return json.loads((runs / f"results_{name}.json").read_text())


def test_resumed_run_repeats_the_uninterrupted_losses_exactly(runs):
    uninterrupted, resumed = losses(runs / "one"), losses(runs / "resumed")
    assert [r["step"] for r in uninterrupted if "loss" in r] == list(range(1, NUM_STEPS + 1))
    assert [r["step"] for r in uninterrupted if "val_loss" in r] == [3, 6]
    assert resumed == uninterrupted


def test_train_step_and_sampler_are_traced_once(runs):
    for name in ("one", "eight"):
        r = results(runs, name)
        assert r["train_step"] == "traced once"
        assert r[f"sampler_{name}"] == "traced once"


def test_eight_devices_train_like_one(runs):
    assert results(runs, "eight")["devices"] == 8
    one, eight = losses(runs / "one"), losses(runs / "eight")
    assert [r["step"] for r in one] == [r["step"] for r in eight]
    for a, b in zip(one, eight):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=key)
    config = tiny_config(runs / "tiny.npy")
    state_one, state_eight = restore_latest(config, runs / "one"), restore_latest(config,
                                                                                  runs / "eight")
    assert int(state_one.step) == int(state_eight.step) == NUM_STEPS
    chex.assert_trees_all_close(state_one.params, state_eight.params, rtol=1e-3, atol=1e-5)


def test_checkpoints_restore_across_topologies_exactly(runs):
    config = tiny_config(runs / "tiny.npy")
    for name in ("one", "eight"):  # written on 1 and on 8 devices
        on_eight = np.load(runs / f"{name}_restored_on_eight.npz")
        on_one = flat_state(restore_latest(config, runs / name))
        assert set(on_one) == set(on_eight.files)
        for key, value in on_one.items():
            np.testing.assert_array_equal(value, on_eight[key], err_msg=key)


def test_samples_match_on_one_and_eight_devices(runs):
    one, eight = np.load(runs / "samples_one.npy"), np.load(runs / "samples_eight.npy")
    assert one.shape == (NUM_SAMPLES, 24, 5) and np.all(np.isfinite(one))
    np.testing.assert_allclose(one, eight, rtol=1e-4, atol=1e-4)


def test_non_finite_loss_stops_with_the_step_named(runs):
    message = results(runs, "one")["nan_error"]
    assert f"step {STOP_AT + 1}" in message and "non-finite" in message
    manager = checkpoint.create_manager(trained.checkpoint_dir(runs / "nan"), 3, async_saves=False)
    assert manager.latest_step() == STOP_AT  # the diverged state was never saved
    manager.close()


def test_indivisible_batch_is_a_clear_error(runs):
    message = results(runs, "eight")["batch_error"]
    assert "batch_size=12" in message and "8 devices" in message and "multiple of 8" in message


def test_unfinished_save_is_ignored_on_resume(runs, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(runs / "one", workdir)
    partial = trained.checkpoint_dir(workdir) / f"{NUM_STEPS + 3}.orbax-checkpoint-tmp-1234"
    (partial / "state").mkdir(parents=True)
    manager = checkpoint.create_manager(trained.checkpoint_dir(workdir), 3, async_saves=False)
    assert manager.latest_step() == NUM_STEPS
    manager.close()


# ------------------------------------------------------------------------------------------------
# Pieces, in this process.
# ------------------------------------------------------------------------------------------------
def test_manager_keeps_the_latest_and_the_best(tmp_path):
    manager = checkpoint.create_manager(tmp_path / "ckpt", keep=2, async_saves=False)
    val_losses = {1: 3.0, 2: 1.0, 3: None, 4: 2.0, 5: 4.0, 6: None}
    for step, val in val_losses.items():
        checkpoint.save(manager, step, {"x": jax.numpy.full((2,), step)}, {"step": step}, val)
    manager.wait_until_finished()
    assert sorted(manager.all_steps()) == [2, 5, 6]
    assert checkpoint.best_or_latest_step(manager) == 2
    manager.close()


def test_split_holds_out_whole_batches_disjointly():
    windows = np.arange(1000, dtype=np.float32)[:, None, None]
    train_w, val_w = train.split_windows(windows, 0.05, 16, seed=0)
    assert len(val_w) == 48 and len(train_w) == 952
    assert not set(val_w.ravel()) & set(train_w.ravel())
    again, _ = train.split_windows(windows, 0.05, 16, seed=0)
    np.testing.assert_array_equal(train_w, again)
    all_w, subset = train.split_windows(windows, 0.0, 16, seed=0)
    assert len(all_w) == 1000 and len(subset) == 48 and set(subset.ravel()) <= set(all_w.ravel())
    with pytest.raises(ValueError, match="val_fraction"):
        train.split_windows(windows[:30], 0.5, 16, seed=0)


def test_learning_rate_warms_up_then_decays_to_the_minimum():
    config = sines.get_config("smoke")
    _, lr = train.make_optimizer(config.train)
    tc = config.train
    assert float(lr(0)) == 0.0
    np.testing.assert_allclose(float(lr(tc.warmup_steps)), tc.learning_rate, rtol=1e-6)
    np.testing.assert_allclose(float(lr(tc.num_steps)), tc.min_learning_rate, rtol=1e-5)
    assert float(lr(tc.warmup_steps + 1)) < tc.learning_rate


def test_early_stopping_counts_evaluations_without_improvement():
    host = trained.HostState(iterator={}, best_val_loss=None, evals_since_best=0, num_windows=1,
                           series_shape=(24, 5), scaler=None, normalizer=None, stats=None)
    outcomes = [host.record_evaluation(v, patience=2) for v in (1.0, 0.9, 0.95, 0.9, 0.8, 0.85,
                                                                 0.81)]
    assert outcomes == [(True, False), (True, False), (False, False), (False, True),
                        (True, False), (False, False), (False, True)]
    assert host.best_val_loss == 0.8
    assert host.record_evaluation(5.0, patience=0) == (False, False)


def test_sample_decoder_inverts_the_training_video_transform():
    config = sines.get_config("smoke")
    windows = (2 * sine_windows(num=64) - 1).astype(np.float32)  # (N, L, K) in [-1, 1]
    normalizer, _ = video.fit_video_statistics(windows, config.video.n_fft, config.video.hop)
    videos = trained.video_transform(config.video, normalizer)(windows)
    decoded = trained.series_decoder(config.video, normalizer, windows.shape[1])(videos)
    np.testing.assert_allclose(decoded, windows, atol=1e-5)


def test_chunk_size_fills_memory_in_multiples_of_the_devices():
    fraction, cap = generate.MEMORY_FRACTION, generate.MAX_PER_DEVICE
    per_series, num_devices = 1000, 8
    assert generate.chunk_size_for(per_series, 40 * per_series / fraction, num_devices, 10**6) == 320
    assert generate.chunk_size_for(per_series, 1e15, num_devices, 10**6) == cap * num_devices
    assert generate.chunk_size_for(per_series, 1e15, num_devices, 100) == 104  # 13 per device
    assert generate.chunk_size_for(per_series, 10, num_devices, 100) == num_devices  # at least 1


def test_metric_log_drops_rows_an_interrupted_run_logged_after_its_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3, 4)))
    train.MetricWriter(tmp_path, resume_step=2).write(3, loss=0.5)
    assert [json.loads(r) for r in path.read_text().splitlines()] == [
        {"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}, {"step": 3, "loss": 0.5}]
    train.MetricWriter(tmp_path, resume_step=None)  # a fresh start: nothing was saved
    assert path.read_text() == ""


def test_weight_decay_only_on_kernels():
    params = {"blocks": {"mlp": {"kernel": np.ones((2, 3, 3)), "bias": np.ones((2, 3))}},
              "cov_bias": np.ones((3, 3)), "final_layer": {"linear": {"kernel": np.ones((3, 2))}}}
    mask = train._decay_mask(params)
    assert mask == {"blocks": {"mlp": {"kernel": True, "bias": False}}, "cov_bias": False,
                    "final_layer": {"linear": {"kernel": True}}}


if __name__ == "__main__":
    {"one": child_one, "eight": child_eight}[sys.argv[1]](pathlib.Path(sys.argv[2]))
