"""Training, checkpoints and sharded sampling: exact resume, 1 vs 8 devices, 1 vs 2 processes,
cross-topology restore, damaged checkpoints and workdirs of other data.

The runs happen in child processes (this file run as a script), because the device count is
fixed when JAX starts: `one` on 1 CPU device, then `eight` with
XLA_FLAGS=--xla_force_host_platform_device_count=8, then `two`: two processes of 4 devices each,
joined over a loopback coordinator with the gloo CPU collectives as the hosts of a TPU pod are
over their network, training what `eight` trained. They share a persistent compilation cache, so
a program compiled once (the same step in a resumed run) is not compiled again, and compile with
XLA's backend optimisations off, which halves compile time here. The children write
checkpoints, samples and a results.json; the tests below check them, restoring checkpoints in this
pytest process (1 device) as well.
"""

import json
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import logging as absl_logging

from configs import sines
from stdiff_jax import checkpoint, fingerprint, generate, mesh as mesh_lib, modes, saved_model
from stdiff_jax import train, video
from stdiff_jax.data import Dataset, MinMaxScaler, load_dataset
from stdiff_jax.data.synthetic import sine_windows
from test_main import run_main

NUM_STEPS, STOP_AT, CHUNK, NUM_SAMPLES = 6, 4, 16, 24
REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(npy_path):
    """The smoke network on 256 sine windows: 6 steps of 16, evaluated and saved every 3; without
    the Gaussian prior, whose alpha / sigma gain at high log-SNR (1,800 at +15) multiplies the
    float32 rounding in which 1 and 8 devices differ beyond these tests' 1e-4 (test_prior.py
    tests the prior; tests/test_workdir.py's smoke runs train, sample and resume with it)."""
    c = sines.get_config("smoke")
    c.model.prior_rank = 0
    c.data.name = f"npy:{npy_path}"
    c.data.val_fraction = 0.1  # -> 2 validation batches of 16
    c.train.update(batch_size=16, num_steps=NUM_STEPS, warmup_steps=1, log_every=1, eval_every=3,
                   checkpoint_every=3)
    c.sample.update(num_steps=3, num_samples=NUM_SAMPLES, chunk_size=CHUNK)
    return c


def losses(workdir):
    """Per-step training metrics and validation losses from metrics.jsonl, timing left out."""
    return [{k: v for k, v in row.items() if not k.endswith(("per_sec", "cpu_s"))}
            for row in log_rows(workdir)]


def assert_losses_close(workdir, other, rtol):
    """The two workdirs logged the same steps, with metrics equal to `rtol`."""
    first, second = losses(workdir), losses(other)
    assert [r["step"] for r in first] == [r["step"] for r in second]
    for a, b in zip(first, second):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=1e-6, err_msg=key)


def log_rows(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def flat_state(state):
    return {jax.tree_util.keystr(path): np.asarray(x)
            for path, x in jax.tree_util.tree_leaves_with_path(state)}


def damage(step_dir, kind):
    """Damages a checkpoint step: "host" overwrites its host item; "array" truncates its largest
    array file to half, "arrays" every one (a sampler reads only some of them)."""
    step_dir = pathlib.Path(step_dir)  # saved_model.checkpoint_dir gives an epath, without rglob
    if kind == "host":
        (step_dir / "host" / "metadata").write_text("{ overwritten")
        return
    files = sorted((step_dir / "state").rglob("d/*"), key=lambda f: f.stat().st_size, reverse=True)
    for f in files[:1] if kind == "array" else files:
        os.truncate(f, f.stat().st_size // 2)


def snapshot(directory):
    """{relative path: (size, mtime)} of every file below `directory`."""
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


class Messages(logging.Handler):
    """Collects the messages of records at `level` or above (absl's and the standard loggers')
    while installed."""

    def __init__(self, level=logging.WARNING):
        super().__init__(level)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        logging.getLogger().addHandler(self)
        return self.messages

    def __exit__(self, *exc):
        logging.getLogger().removeHandler(self)


def restore_latest(config, workdir):
    manager = checkpoint.create_manager(saved_model.checkpoint_dir(workdir), 3, async_saves=False)
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
    tm = saved_model.load(config, workdir, mesh)
    model, params, host = tm.model, tm.params, tm.host
    original = guarded(generate, "sample_chunk", results, key)
    try:
        sampler = generate.compile_sampler(config, mesh, model, host, CHUNK)
        np.save(out_path, generate.generate_series(sampler, params, NUM_SAMPLES, CHUNK,
                                                   jax.random.PRNGKey(0), progress=None))
    except AssertionError as e:
        results[key] = str(e)
    finally:
        generate.sample_chunk = original


def child_one(out):
    config, results = tiny_config(out / "tiny.npy"), {}
    original = guarded(train, "train_step", results, "train_step")
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        with Messages(logging.INFO) as results["one_log"]:
            train.train_and_evaluate(config, out / "one")
    except AssertionError as e:
        results["train_step"] = str(e)
    finally:
        train.train_step = original
    train.train_and_evaluate(config, out / "resumed", stop_at_step=STOP_AT)
    shutil.copytree(out / "resumed", out / "nan")
    train.train_and_evaluate(config, out / "resumed")
    for kind in ("array", "host"):  # the newest checkpoint damaged: step 3 is resumed instead
        shutil.copytree(out / "one", out / f"damaged_{kind}")
        damage(saved_model.checkpoint_dir(out / f"damaged_{kind}") / str(NUM_STEPS), kind)
        with Messages() as results[f"damaged_{kind}_warnings"]:
            train.train_and_evaluate(config, out / f"damaged_{kind}")
    data = load_dataset(config.data.name, config.data.seq_len)
    nan_data = Dataset("nan", np.full_like(data.windows, np.nan), data.scaler, data.column_names)
    before = snapshot(out / "nan")
    try:
        train.train_and_evaluate(config, out / "nan", dataset=nan_data)
    except fingerprint.WorkdirMismatch as e:
        results["data_mismatch_error"] = str(e)
    results["mismatch_touched_nothing"] = snapshot(out / "nan") == before
    try:
        train.train_and_evaluate(config, out / "nan", dataset=nan_data, allow_workdir_mismatch=True)
    except FloatingPointError as e:
        results["nan_error"] = str(e)
    diverging = tiny_config(out / "tiny.npy")
    diverging.train.learning_rate = float("nan")
    try:  # fails at step 2, before its first checkpoint
        train.train_and_evaluate(diverging, out / "diverged")
    except FloatingPointError:
        results["failed_fresh_run_files"] = sorted(os.listdir(out / "diverged"))
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


def child_two(out, process_id, port):
    """Process `process_id` of `two`: `eight`'s run on 2 processes of 4 devices."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=int(process_id))
    config = tiny_config(out / "tiny.npy")
    train.train_and_evaluate(config, out / "two")
    state = restore_latest(config, out / "two")  # every process restores its shards
    if jax.process_index() == 0:  # the parameters are replicated: device 0's copy is all of them
        np.savez(out / "two_params.npz", **{jax.tree_util.keystr(path): leaf.addressable_data(0)
                                           for path, leaf in
                                           jax.tree_util.tree_leaves_with_path(state.params)})
    (out / f"results_two_{process_id}.json").write_text(json.dumps({
        "devices": jax.device_count(), "local_devices": jax.local_device_count(),
        "step": int(state.step)}))


def start_child(name, out, devices, *args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               PYTHONPATH=str(REPO))
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(out / "jax_cache"))  # conftest sets one
    env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={devices} "
                        "--xla_backend_optimization_level=0")  # halves compile time
    return subprocess.Popen([sys.executable, __file__, name, str(out), *map(str, args)], env=env,
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish_children(name, *procs):
    """Waits for procs; if one fails (or hangs), stops the rest and raises with its stderr."""
    try:
        for proc in procs:
            _, stderr = proc.communicate(timeout=600)
            if proc.returncode:
                raise RuntimeError(f"child {name} failed:\n{stderr[-6000:]}")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_runs")
    np.save(out / "tiny.npy", sine_windows(num=256))
    finish_children("one", start_child("one", out, 1))
    finish_children("eight", start_child("eight", out, 8))
    port = free_port()
    finish_children("two", *(start_child("two", out, 4, pid, port) for pid in range(2)))
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
    assert_losses_close(runs / "one", runs / "eight", rtol=1e-4)
    config = tiny_config(runs / "tiny.npy")
    state_one, state_eight = restore_latest(config, runs / "one"), restore_latest(config,
                                                                                  runs / "eight")
    assert int(state_one.step) == int(state_eight.step) == NUM_STEPS
    chex.assert_trees_all_close(state_one.params, state_eight.params, rtol=1e-3, atol=1e-5)


def test_two_processes_of_four_devices_train_like_one_of_eight(runs):
    for pid in range(2):
        assert results(runs, f"two_{pid}") == {"devices": 8, "local_devices": 4, "step": NUM_STEPS}
    assert_losses_close(runs / "two", runs / "eight", rtol=1e-5)
    want = flat_state(restore_latest(tiny_config(runs / "tiny.npy"), runs / "eight").params)
    got = np.load(runs / "two_params.npz")
    assert sorted(got.files) == sorted(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    # The runs trained: parameters moved away from the exact-zero adaLN-Zero initialisation.
    assert any(np.abs(want[n]).max() > 0 for n in want if "adaLN" in n)


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
    manager = checkpoint.create_manager(saved_model.checkpoint_dir(runs / "nan"), 3,
                                        async_saves=False)
    assert manager.latest_step() == STOP_AT  # the diverged state was never saved
    manager.close()


def test_indivisible_batch_is_a_clear_error(runs):
    message = results(runs, "eight")["batch_error"]
    assert "batch_size=12" in message and "8 devices" in message and "multiple of 8" in message


def test_unfinished_save_is_ignored_on_resume(runs, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(runs / "one", workdir)
    partial = saved_model.checkpoint_dir(workdir) / f"{NUM_STEPS + 3}.orbax-checkpoint-tmp-1234"
    (partial / "state").mkdir(parents=True)
    manager = checkpoint.create_manager(saved_model.checkpoint_dir(workdir), 3, async_saves=False)
    assert manager.latest_step() == NUM_STEPS
    manager.close()


@pytest.mark.parametrize("kind, reason", [("array", "OUT_OF_RANGE"), ("host", "JSONDecodeError")])
def test_damaged_newest_checkpoint_is_moved_aside_and_its_steps_redone(runs, kind, reason):
    workdir = runs / f"damaged_{kind}"
    step_dir = saved_model.checkpoint_dir(workdir) / str(NUM_STEPS)
    warnings = results(runs, "one")[f"damaged_{kind}_warnings"]
    report = next(w for w in warnings if "cannot be read" in w)
    assert report.startswith(f"Checkpoint step {NUM_STEPS} at {step_dir} cannot be read (")
    assert reason in report and "\n" not in report and report.endswith("trying step 3.")
    assert ("Resuming from step 3, the newest intact checkpoint: the 3 steps to step 6 will be "
            "redone.") in warnings
    moved = list((workdir / checkpoint.DAMAGED_DIR).iterdir())
    assert [p.name.split("-")[0] for p in moved] == [str(NUM_STEPS)]  # kept, not deleted
    assert losses(workdir) == losses(runs / "one")  # steps 4-6 redone exactly
    config = tiny_config(runs / "tiny.npy")
    redone, uninterrupted = flat_state(restore_latest(config, workdir)), flat_state(
        restore_latest(config, runs / "one"))
    for key, value in uninterrupted.items():
        np.testing.assert_array_equal(redone[key], value, err_msg=key)


@pytest.mark.parametrize("kind", ["arrays", "host"])
def test_sampling_loads_the_next_intact_checkpoint(runs, tmp_path, kind, caplog):
    workdir = tmp_path / "run"
    shutil.copytree(runs / "one", workdir)
    config = tiny_config(runs / "tiny.npy")
    manager = checkpoint.create_manager(saved_model.checkpoint_dir(workdir), 3, async_saves=False)
    chosen = checkpoint.best_or_latest_step(manager)
    manager.close()
    damage(saved_model.checkpoint_dir(workdir) / str(chosen), kind)
    tm = saved_model.load(config, workdir)
    other = ({3, NUM_STEPS} - {chosen}).pop()
    assert tm.step == other and saved_model.checkpoint_steps(workdir) == [other]
    assert f"Checkpoint step {chosen} at" in caplog.text and "cannot be read" in caplog.text
    assert [p.name.split("-")[0] for p in (workdir / checkpoint.DAMAGED_DIR).iterdir()] == [
        str(chosen)]


def test_no_intact_checkpoint_is_one_clear_error_from_the_command_line(runs, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(runs / "one", workdir)
    for step in (3, NUM_STEPS):
        damage(saved_model.checkpoint_dir(workdir) / str(step), "host")
    proc = run_main(f"--config={REPO}/configs/sines.py:smoke", f"--workdir={workdir}",
                    "--mode=sample")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("cannot be read") == 2
    assert (f"Error: No intact checkpoint in {saved_model.checkpoint_dir(workdir)}: step(s) 6, 3 "
            f"could not be read") in proc.stderr
    assert saved_model.checkpoint_steps(workdir) == []
    assert len(list((workdir / checkpoint.DAMAGED_DIR).iterdir())) == 2


def test_checkpoint_of_another_network_is_no_damage(runs, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(runs / "one", workdir)
    config = tiny_config(runs / "tiny.npy")
    config.model.hidden = 64
    with pytest.raises(checkpoint.CheckpointMismatch, match="holds another network"):
        saved_model.load(config, workdir)
    assert saved_model.checkpoint_steps(workdir) == [3, NUM_STEPS]
    assert not (workdir / checkpoint.DAMAGED_DIR).exists()


def test_workdir_of_other_data_stops_before_touching_it(runs):
    message = results(runs, "one")["data_mismatch_error"]
    assert f"The workdir {runs / 'nan'} was trained on other data" in message
    assert f"name: recorded npy:{runs / 'tiny.npy'}, this run nan" in message
    assert "another --workdir" in message and fingerprint.OVERRIDE in message
    assert results(runs, "one")["mismatch_touched_nothing"]


def test_workdir_of_another_network_stops_and_names_both_shapes(runs, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(runs / "one", workdir)
    before = snapshot(workdir)
    three_columns = load_dataset(f"npy:{runs / 'tiny.npy'}", 24)
    three_columns = Dataset("three", three_columns.windows[..., :3],
                            MinMaxScaler.identity(3), ("a", "b", "c"))
    with pytest.raises(fingerprint.WorkdirMismatch, match=r"series: recorded \[24, 5\], this run "
                       r"\[24, 3\]") as error:
        train.train_and_evaluate(tiny_config(runs / "tiny.npy"), workdir, dataset=three_columns,
                                 allow_workdir_mismatch=True)  # no override for another network
    assert "holds another network" in str(error.value) and "another --workdir" in str(error.value)
    assert snapshot(workdir) == before


def test_command_line_names_the_workdir_mismatch(runs, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(runs / "one", workdir)
    np.save(tmp_path / "other.npy", sine_windows(num=256, seed=1))
    proc = run_main(f"--config={REPO}/configs/sines.py:smoke", f"--workdir={workdir}",
                    f"--config.data.name=npy:{tmp_path / 'other.npy'}", "--mode=train",
                    "--config.model.prior_rank=0")  # tiny_config's network: only the data differ
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"Error: The workdir {workdir} was trained on other data" in proc.stderr
    assert "--allow_workdir_mismatch" in proc.stderr


def test_evaluation_against_other_data_stops(runs, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(runs / "one", workdir)
    np.save(workdir / modes.SAMPLES_UNIT, np.zeros((8, 24, 5), np.float32))
    np.save(tmp_path / "other.npy", sine_windows(num=256, seed=1))
    config = tiny_config(tmp_path / "other.npy")
    with pytest.raises(fingerprint.WorkdirMismatch, match="trained on other data"):
        modes.evaluate_workdir(config, workdir)
    assert not (workdir / modes.METRICS).exists()


def test_failed_first_run_leaves_no_empty_checkpoint_directory(runs):
    files = results(runs, "one")["failed_fresh_run_files"]
    assert "checkpoints" not in files and "config.json" in files


def test_host_items_without_column_names_or_cpu_seconds_still_load(runs):
    manager = checkpoint.create_manager(saved_model.checkpoint_dir(runs / "one"), 3,
                                        async_saves=False)
    item = checkpoint.restore_host(manager, NUM_STEPS)
    manager.close()
    host = saved_model.HostState.from_json(item)
    assert host.column_names == tuple(f"c{k}" for k in range(5)) and host.train_cpu_s > 0
    del item["column_names"], item["train_cpu_s"]  # as written before they were recorded
    host = saved_model.HostState.from_json(item)
    assert host.column_names is None and host.train_cpu_s == 0


def test_training_cpu_seconds_add_up_over_a_resume(runs):
    """The resumed run's CPU count goes on from its checkpoint's instead of restarting at 0."""
    rows = [r for r in log_rows(runs / "resumed") if "train_cpu_s" in r]
    before = [r["train_cpu_s"] for r in rows if r["step"] <= STOP_AT]
    after = [r["train_cpu_s"] for r in rows if r["step"] > STOP_AT]
    assert before and after and min(after) > max(before) > 0
    manager = checkpoint.create_manager(saved_model.checkpoint_dir(runs / "resumed"), 3,
                                        async_saves=False)
    final = saved_model.HostState.from_json(checkpoint.restore_host(manager, NUM_STEPS)).train_cpu_s
    manager.close()
    assert final >= after[-1]


def test_a_cpu_run_logs_its_pace_against_the_plan_once_and_its_tally_at_the_end(runs):
    log = results(runs, "one")["one_log"]
    paces = [m for m in log if m.startswith("Pace: ")]
    assert len(paces) == 1, paces  # after the first report, whose window holds the compilation
    assert "CPU s a training step on this machine against" in paces[0]
    assert "the reference machine's" in paces[0]
    # Steps 1-2: the first window without a validation or a checkpoint (every 3rd step).
    assert log.index(paces[0]) < next(i for i, m in enumerate(log) if "validation loss" in m)
    cpu_s = [r["train_cpu_s"] for r in log_rows(runs / "one") if "train_cpu_s" in r][-1]
    # The tally comes after the outcome (not necessarily last: a checkpoint's thread may log).
    tallies = [i for i, m in enumerate(log) if m.startswith("Trained in ")]
    done = next(i for i, m in enumerate(log) if m.startswith("Done at step"))
    assert len(tallies) == 1 and tallies[0] > done, log[done:]
    # Its figure is the CPU at the final save, which follows the last row's (and a validation).
    tally = log[tallies[0]]
    assert tally.startswith("Trained in ") and " CPU s against ~" in tally
    assert round(cpu_s) <= float(tally.split()[2].replace(",", "")) <= cpu_s + 5, (tally, cpu_s)


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
    host = saved_model.HostState(iterator={}, best_val_loss=None, evals_since_best=0, num_windows=1,
                           series_shape=(24, 5), scaler=None, normalizer=None, stats=None)
    outcomes = [host.record_evaluation(v, patience=2) for v in (1.0, 0.9, 0.95, 0.9, 0.8, 0.85,
                                                                 0.81)]
    assert outcomes == [(True, False), (True, False), (False, False), (False, True),
                        (True, False), (False, False), (False, True)]
    assert host.best_val_loss == 0.8
    assert host.record_evaluation(5.0, patience=0) == (False, False)


@pytest.mark.parametrize("kind", video.NORMALIZERS)
def test_sample_decoder_inverts_the_training_video_transform(kind):
    config = sines.get_config("smoke")
    windows = (2 * sine_windows(num=64) - 1).astype(np.float32)  # (N, L, K) in [-1, 1]
    normalizer, _ = video.fit_video_statistics(windows, config.video.n_fft, config.video.hop,
                                               normalizer=kind)
    videos = saved_model.video_transform(config.video, normalizer)(windows)
    decoded = saved_model.series_decoder(config.video, normalizer, windows.shape[1])(videos)
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


def test_evaluation_plots_use_the_column_names_and_draw_the_loss_curve(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    from stdiff_jax.metrics import plots
    data = tmp_path / "data.csv"
    walk = np.random.default_rng(0).standard_normal((40, 2)).cumsum(axis=0)
    data.write_text("HUFL,OT\n" + "".join(f"{a},{b}\n" for a, b in walk))
    config = sines.get_config("smoke")
    config.data.name = f"csv:{data}"
    config.eval.update(plots=True, repeats=1)
    workdir = tmp_path / "run"
    workdir.mkdir()
    np.save(workdir / modes.SAMPLES_UNIT, load_dataset(config.data.name, 24).unit_windows)
    (workdir / saved_model.METRIC_LOG).write_text("".join(
        json.dumps(row) + "\n" for row in ({"step": 10, "loss": 0.9}, {"step": 10, "val_loss": 0.8},
                                           {"step": 20, "loss": 0.5}, {"step": 20, "val_loss": 0.6})))
    titles = []
    save_plots = plots.save_plots
    monkeypatch.setattr(plots, "save_plots", lambda *args, names=None, **kwargs: (
        titles.append(names), save_plots(*args, names=names, **kwargs))[1])
    modes.evaluate_workdir(config, workdir)
    assert titles == [("HUFL", "OT")]
    drawn = sorted(p.name for p in (workdir / "plots").iterdir())
    assert drawn == ["acf.png", "kde.png", "loss.png", "psd.png", "tsne.png", "windows.png"]
    assert (workdir / "plots" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_host_runs_at_most_in_flight_steps_ahead_of_slow_steps(tmp_path, monkeypatch):
    """A signal's save waits for the steps already dispatched, so the loop keeps at most
    train.IN_FLIGHT of them unfinished, however slow a step is (here four 800 x 800 matrix
    products more; a host callback would not do: XLA:CPU runs a step with one synchronously)."""
    np.save(tmp_path / "tiny.npy", sine_windows(num=256))
    config = tiny_config(tmp_path / "tiny.npy")
    config.train.update(num_steps=10, log_every=10, eval_every=10, checkpoint_every=10)
    step, compile_step, issued, unfinished = train.train_step, train.compile_train_step, [], []

    def slow_step(state, batch, **kwargs):
        state, metrics = step(state, batch, **kwargs)
        m = jnp.full((800, 800), metrics["loss"] ** (1 / 16))
        for _ in range(4):
            m = m @ m / 800
        return state, dict(metrics, loss=m[0, 0])  # the loss, after 0.1-0.3 s

    def counting(*args, **kwargs):
        update = compile_step(*args, **kwargs)

        def run(state, batch):
            unfinished.append(sum(not loss.is_ready() for loss in issued))
            state, metrics = update(state, batch)
            issued.append(metrics["loss"])
            return state, metrics
        return run

    monkeypatch.setattr(train, "train_step", slow_step)
    monkeypatch.setattr(train, "compile_train_step", counting)
    train.train_and_evaluate(config, tmp_path / "run")
    assert len(unfinished) == 10 and max(unfinished) == train.IN_FLIGHT, unfinished


def test_weight_decay_only_on_kernels():
    params = {"blocks": {"mlp": {"kernel": np.ones((2, 3, 3)), "bias": np.ones((2, 3))}},
              "cov_bias": np.ones((3, 3)), "final_layer": {"linear": {"kernel": np.ones((3, 2))}}}
    mask = train._decay_mask(params)
    assert mask == {"blocks": {"mlp": {"kernel": True, "bias": False}}, "cov_bias": False,
                    "final_layer": {"linear": {"kernel": True}}}


if __name__ == "__main__":
    {"one": child_one, "eight": child_eight, "two": child_two}[sys.argv[1]](
        pathlib.Path(sys.argv[2]), *sys.argv[3:])
