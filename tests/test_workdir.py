"""The workdir kept safe (stdiff_jax/workdir.py and its users): records written whole, one writer,
damaged checkpoint parts, the workdir's identity, signals, disk errors and gs:// workdirs.

The command-line cases run `stdiff_jax.main` in a child process: this file run as a script with a
PATCH first (`child`), which stands for what a test cannot arrange for real (a signal at a chosen
step, a full or read-only disk as root, a bucket without a network), then main's own arguments.
The trained smoke workdir they start from is the module's one whole smoke run (`smoke_run`:
train, sample, score and plot, through a gs:// workdir), copied.
"""

import errno
import importlib.util
import io
import json
import logging
import os
import pathlib
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from stdiff_jax import checkpoint, errors, fingerprint, generate, mesh as mesh_lib, modes, train
from stdiff_jax import saved_model
from stdiff_jax import workdir as workdir_lib
from stdiff_jax.data import Dataset, load_dataset, tables

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = f"--config={REPO}/configs/sines.py:smoke"
PLOTS = bool(importlib.util.find_spec("matplotlib") and importlib.util.find_spec("sklearn"))
RECORDS = ("config.json", "fingerprint.json", "metrics.json", "samples.npy", "samples_unit.npy",
           "samples.csv")


def run_child(patch, *args, cwd=REPO, **popen):
    """Runs `stdiff_jax.main *args` in a child after `patch` (see `PATCHES`); a CompletedProcess,
    or the Popen with `popen` (e.g. stdout=PIPE) given."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
               XLA_FLAGS="--xla_backend_optimization_level=0")  # halves compile time
    command = [sys.executable, __file__, patch, *args]
    if popen:
        return subprocess.Popen(command, cwd=cwd, env=env, text=True, **popen)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def error_lines(proc):
    """The lines of stderr that are not absl's log lines."""
    return [line for line in proc.stderr.splitlines()
            if line.strip() and not re.match(r"[IWEF]\d{4} ", line)]


def files(directory):
    """{relative path: bytes} of every file below `directory`."""
    directory = pathlib.Path(directory)
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file()}


def flat_params(workdir, step):
    config = saved_model.load_config(workdir)
    state = train.restore_train_state(config, workdir, mesh_lib.make_mesh(), step)[0]
    return {jax.tree_util.keystr(p): np.asarray(x)
            for p, x in jax.tree_util.tree_leaves_with_path(state.params)}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """(folder, the finished process) of the smoke config's whole run (30 steps; checkpoints 10,
    20, 30; sampled, scored, plotted) in the workdir gs://bucket/run, started in folder/cwd. The
    bucket is the local folder folder/bucket_root/bucket behind epath (fsspec) and TensorStore
    (Orbax's arrays), `_gcs`: a write that bypassed the path type would make a local folder
    named gs:."""
    folder = tmp_path_factory.mktemp("smoke")
    (folder / "bucket_root" / "bucket").mkdir(parents=True)
    (folder / "cwd").mkdir()
    proc = run_child(f"gcs={folder / 'bucket_root'}", SMOKE, "--workdir=gs://bucket/run",
                     f"--config.eval.plots={PLOTS}", cwd=folder / "cwd")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, proc


@pytest.fixture(scope="module")
def trained_run(smoke_run):
    """The smoke run's workdir, as a local folder."""
    return smoke_run[0] / "bucket_root" / "bucket" / "run"


@pytest.fixture
def run(trained_run, tmp_path):
    """A copy of the trained workdir, for a test to change."""
    shutil.copytree(trained_run, tmp_path / "run")
    return tmp_path / "run"


# ------------------------------------------------------------------------------------------------
# Records.
# ------------------------------------------------------------------------------------------------
def test_records_are_replaced_together_or_not_at_all(tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.csv"
    workdir_lib.save_npy(a, np.zeros(3))
    b.write_text("old\n")
    with pytest.raises(RuntimeError, match="cut"):
        with workdir_lib.writing(a, b) as (file_a, file_b):
            np.save(file_a, np.ones(3))
            pathlib.Path(file_b).write_text("half a ro")
            raise RuntimeError("cut")  # as a failure between the writes does
    np.testing.assert_array_equal(np.load(a), np.zeros(3))
    assert b.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["a.npy", "b.csv"]
    with workdir_lib.writing(a, b) as (file_a, file_b):
        np.save(file_a, np.ones(3))
        pathlib.Path(file_b).write_text("new\n")
    np.testing.assert_array_equal(np.load(a), np.ones(3))
    assert b.read_text() == "new\n" and sorted(os.listdir(tmp_path)) == ["a.npy", "b.csv"]


def test_a_full_disk_while_writing_a_record_is_one_paragraph(tmp_path, monkeypatch):
    path = tmp_path / "samples.npy"
    workdir_lib.save_npy(path, np.zeros(3))

    def no_space(file, array):
        pathlib.Path(file).write_bytes(b"\x93NUMPY half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(file))

    monkeypatch.setattr(np, "save", no_space)
    with pytest.raises(workdir_lib.WorkdirError) as error:
        workdir_lib.save_npy(path, np.ones(3))
    message = str(error.value)
    assert message.startswith(f"Writing {path} failed: no space is left on the device (")
    assert "what the workdir held before is intact" in message and "\n" not in message
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(path), np.zeros(3))
    assert os.listdir(tmp_path) == ["samples.npy"]  # the cut temporary file is gone


def test_a_cut_log_line_is_left_out_and_a_resume_truncates_it(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "lo')
    assert workdir_lib.read_jsonl(path) == (rows, False)
    assert "left out 1 unreadable line(s) (4)" in caplog.text
    train.MetricWriter(tmp_path, resume_step=2).write(3, loss=0.5)
    assert path.read_text().splitlines() == [json.dumps(rows[0]), json.dumps(rows[1]),
                                             json.dumps({"step": 3, "loss": 0.5})]


def test_unreadable_json_records_say_why(tmp_path):
    path = tmp_path / "record.json"
    for data, reason in ((b" \n", "it is empty"), (b'{"a": 1', "it is not JSON: "),
                         (b"[1, 2]", "it holds a JSON list, not an object"),
                         (b"\xff\xfe", "it is not JSON: ")):
        path.write_bytes(data)
        with pytest.raises(workdir_lib.UnreadableRecord, match=f"^{re.escape(reason)}"):
            workdir_lib.read_json(path)


def test_samples_that_would_not_fit_on_the_disk_stop_before_the_generation(run, monkeypatch,
                                                                             caplog):
    before = files(run)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 1000))
    with pytest.raises(workdir_lib.WorkdirError) as error:
        modes.sample_to_workdir(saved_model.load_config(run), run)
    assert str(error.value).startswith(
        f"64 samples (samples.npy, samples_unit.npy, samples.csv) need about 0.2 MiB in {run}, "
        f"but its disk has 0.0 MiB free.")
    assert "Generating" not in caplog.text and files(run) == before


def test_mode_all_keeps_samples_of_the_same_checkpoint_and_settings(run, caplog):
    """A run stopped while scoring resumes (--mode=all) without generating its samples again;
    other settings, a missing file or no samples.json generate anew."""
    # absl's logger's own level, which an earlier in-process flag parse may have raised
    caplog.set_level(logging.INFO, logger="absl")
    config = saved_model.load_config(run)
    record = json.loads((run / modes.SAMPLES_RECORD).read_text())
    evaluations = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                   if "val_loss" in line]
    best_step = min(evaluations, key=lambda row: row["val_loss"])["step"]  # what sampling uses
    assert record["step"] == best_step and record["num_samples"] == 64
    assert record["sample"]["use_ema"]
    before = files(run)
    assert modes.sample_to_workdir(config, run, reuse=True) is None
    assert "Keeping the workdir's 64 samples" in caplog.text and files(run) == before
    assert modes.sample_to_workdir(config, run).shape == (64, 24, 5)  # --mode=sample: anew
    with config.unlocked():
        config.sample.seed = 1
    fresh = modes.sample_to_workdir(config, run, reuse=True)
    assert not np.array_equal(fresh, np.load(io.BytesIO(before["samples_unit.npy"])))
    assert json.loads((run / modes.SAMPLES_RECORD).read_text())["sample"]["seed"] == 1
    (run / modes.SAMPLES_CSV).unlink()
    assert modes.sample_to_workdir(config, run, reuse=True) is not None


def test_disk_errors_are_found_in_orbax_and_tensorstore_errors_and_kept_out_of_its_log():
    tensorstore = ValueError("RESOURCE_EXHAUSTED: Error writing local file \"x\": Failed to "
                             "write 8837 bytes to file 4: No space left on device "
                             "[os_error_code='28']")
    try:
        raise RuntimeError("Save Finalize thread failed") from tensorstore
    except RuntimeError as e:
        wrapped = e
    assert errors.disk_error(wrapped).errno == errno.ENOSPC
    assert errors.disk_error(ValueError("[os_error_code='2']")) is None  # not a disk problem
    assert errors.disk_error(OSError(errno.EROFS, "Read-only file system")).errno == errno.EROFS
    short_write = OSError("2400000 requested and 432096 written")  # np.save on a full disk
    assert errors.disk_error(short_write).errno == errno.ENOSPC
    orbax_file = "/site-packages/orbax/checkpoint/_src/futures/future.py"
    record = logging.LogRecord("absl", logging.ERROR, orbax_file, 1, "thread failed", None,
                               (ValueError, tensorstore, None))
    other = logging.LogRecord("absl", logging.ERROR, orbax_file, 1, "other", None, None)
    assert not checkpoint.QuietOrbax().filter(record) and checkpoint.QuietOrbax().filter(other)


# ------------------------------------------------------------------------------------------------
# One writer per workdir.
# ------------------------------------------------------------------------------------------------
HOLD = """
import sys, time
from stdiff_jax import workdir
with workdir.locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_lock(workdir):
    """A process holding workdir's lock (until killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, JAX_PLATFORMS="cpu",
                                                PYTHONPATH=str(REPO)))
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_second_writer_is_refused_and_a_dead_ones_lock_taken_over(tmp_path, caplog):
    workdir = tmp_path / "run"
    holder = hold_lock(workdir)
    try:
        with pytest.raises(workdir_lib.WorkdirError) as error:
            with workdir_lib.locked(workdir):
                pass
        message = str(error.value)
        assert message.startswith(f"The workdir {workdir} is in use by another run: process "
                                  f"{holder.pid} on {socket.gethostname()}, since ")
        assert f"delete {workdir / 'lock.json'}" in message and "\n" not in message
    finally:
        holder.kill()  # a kill -9: the lock stays behind
        holder.wait()
    assert json.loads((workdir / "lock.json").read_text())["pid"] == holder.pid
    with workdir_lib.locked(workdir):
        record = json.loads((workdir / "lock.json").read_text())
        assert record["pid"] == os.getpid() and "command" in record
    assert caplog.text.count("Taking over the workdir lock") == 1
    assert f"process {holder.pid} on" in caplog.text
    assert not (workdir / "lock.json").exists()  # released


def test_a_lock_whose_pid_now_names_a_younger_process_is_taken_over(tmp_path, caplog):
    """After a container's restart the dead run's pid may be this very process's."""
    (tmp_path / "lock.json").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "since": 1e9, "command": "old"}))
    with workdir_lib.locked(tmp_path):
        assert json.loads((tmp_path / "lock.json").read_text())["since"] > 1e9
    assert "Taking over the workdir lock" in caplog.text


def test_a_failed_run_leaves_no_folder_and_nested_modes_share_the_lock(tmp_path):
    workdir = tmp_path / "new" / "run"
    with pytest.raises(KeyError):
        with workdir_lib.locked(workdir):
            with workdir_lib.locked(workdir):  # `--mode=all` holds it around each stage's
                assert (workdir / "lock.json").exists()
            assert (workdir / "lock.json").exists()
            raise KeyError("a bug")
    assert os.listdir(tmp_path) == []


def test_the_command_line_refuses_a_workdir_in_use(tmp_path):
    holder = hold_lock(tmp_path)
    try:
        proc = run_child("none", SMOKE, f"--workdir={tmp_path}", "--mode=train")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (f"Error: The workdir {tmp_path} is in use by another run: process {holder.pid}"
            in proc.stderr)
    assert os.listdir(tmp_path) == ["lock.json"]  # the holder's: nothing else was written


# ------------------------------------------------------------------------------------------------
# Damaged checkpoint parts and the workdir's identity.
# ------------------------------------------------------------------------------------------------
DAMAGE = {  # part of a step -> (damage, the reason its report names)
    "state/_METADATA deleted": (lambda d: (d / "state" / "_METADATA").unlink(),
                                "state/_METADATA is missing"),
    "metrics empty": (lambda d: (d / "metrics" / "metrics").write_text(""),
                      "metrics/metrics: it is empty"),
    "metrics garbage": (lambda d: (d / "metrics" / "metrics").write_text("{ x"),
                        "metrics/metrics: it is not JSON"),
    "step metadata deleted": (lambda d: (d / "_CHECKPOINT_METADATA").unlink(),
                              "_CHECKPOINT_METADATA is missing"),
    "step metadata garbage": (lambda d: (d / "_CHECKPOINT_METADATA").write_bytes(b"\x00\xff"),
                              "_CHECKPOINT_METADATA: it is not JSON"),
    "host metadata deleted": (lambda d: (d / "host" / "metadata").unlink(), "FileNotFoundError"),
    "array metadata garbage": (lambda d: (d / "state" / "_METADATA").write_text("{x"),
                               "JSONDecodeError"),
}


@pytest.mark.parametrize("part", DAMAGE)
def test_every_unreadable_part_of_a_step_is_damage_not_another_network(run, part, caplog):
    config = saved_model.load_config(run)
    manager = checkpoint.create_manager(saved_model.checkpoint_dir(run), 3, async_saves=False)
    chosen = checkpoint.best_or_latest_step(manager)
    manager.close()
    damage, reason = DAMAGE[part]
    damage(run / "checkpoints" / str(chosen))
    tm = saved_model.load(config, run)
    assert tm.step != chosen and chosen not in saved_model.checkpoint_steps(run)
    report = next(r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage())
    assert report.startswith(f"Checkpoint step {chosen} at {run / 'checkpoints' / str(chosen)} "
                             f"cannot be read (") and reason in report and "\n" not in report
    assert [p.name.split("-")[0] for p in (run / checkpoint.DAMAGED_DIR).iterdir()] == [
        str(chosen)]


def other_data(workdir):
    """The workdir's data set with its first window changed: other data, the same network."""
    data = load_dataset("sines", 24)
    windows = data.windows.copy()
    windows[0] = windows[1]
    return Dataset("sines", windows, data.scaler, data.column_names)


@pytest.mark.parametrize("damage", ["deleted", "emptied", "garbage"])
def test_a_workdir_without_a_readable_fingerprint_refuses_until_told(run, damage, caplog):
    path = run / fingerprint.FILE
    {"deleted": path.unlink, "emptied": lambda: path.write_text(""),
     "garbage": lambda: path.write_text("{\"data\": ")}[damage]()
    before = files(run)
    config = saved_model.load_config(run)
    with pytest.raises(fingerprint.WorkdirMismatch) as error:
        train.train_and_evaluate(config, run, dataset=other_data(run))
    assert str(error.value).startswith(f"The workdir {run} has checkpoints, but its "
                                       f"fingerprint.json ")
    assert "--allow_workdir_mismatch" in str(error.value)
    assert files(run) == before  # nothing rewritten: not config.json, not fingerprint.json
    result = train.train_and_evaluate(config, run, allow_workdir_mismatch=True)
    assert result["step"] == 30 and "going on (--allow_workdir_mismatch)" in caplog.text
    recorded = json.loads(path.read_text())
    assert recorded["data"] == fingerprint.of_data(load_dataset("sines", 24))


def test_an_unreadable_config_json_is_rewritten_by_training_and_named_when_loaded(run, caplog):
    (run / "config.json").write_text("")
    with pytest.raises(errors.UserError, match=r"config.json cannot be read \(it is empty\)\. "
                                               r"Training writes it"):
        saved_model.load_config(run)
    from configs import sines
    train.train_and_evaluate(sines.get_config("smoke"), run)
    assert "config.json cannot be read (it is empty); writing this run's config" in caplog.text
    assert saved_model.load_config(run).train.num_steps == 30


def test_a_kill_at_any_record_write_leaves_a_resumable_workdir(run):
    """A kill while a record is written leaves the old record and a cut temporary file beside it
    (and a cut last line in the appended log): the next run ignores both, then removes them."""
    for name in RECORDS:
        stem, suffix = name.rsplit(".", 1)
        (run / f".{stem}{workdir_lib.PARTIAL}999.{suffix}").write_bytes(
            (run / name).read_bytes()[:10])
    log = run / "metrics.jsonl"
    complete = log.read_text()
    log.write_text(complete + '{"step": 31, "loss": 0.')
    before = {name: (run / name).read_bytes() for name in RECORDS}
    result = train.train_and_evaluate(saved_model.load_config(run), run)  # the run's own config
    assert result["step"] == 30
    assert {name: (run / name).read_bytes() for name in RECORDS} == before
    assert log.read_text() == complete  # the cut line truncated on resume
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []


# ------------------------------------------------------------------------------------------------
# Signals, disk and folder errors, from the command line.
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_saves_the_step_and_the_resumed_run_ends_with_the_same_parameters(
        trained_run, tmp_path):
    workdir = tmp_path / "run"
    proc = run_child("signal_at_batch=SIGTERM:13", SMOKE, f"--workdir={workdir}", "--mode=train")
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert error_lines(proc) == [
        f"Stopped by SIGTERM at step 13, saved in {workdir / 'checkpoints'}: run the same command "
        f"again to resume from it."]
    assert saved_model.checkpoint_steps(workdir) == [10, 13]
    proc = run_child("none", SMOKE, f"--workdir={workdir}", "--mode=train")
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed, uninterrupted = flat_params(workdir, 30), flat_params(trained_run, 30)
    assert resumed.keys() == uninterrupted.keys()
    for name, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("patch, signum", [("signal_in_sampling=SIGINT", signal.SIGINT),
                                           ("signal_in_samples_csv=SIGTERM", signal.SIGTERM)])
def test_a_signal_while_sampling_leaves_the_earlier_samples_whole(run, patch, signum):
    before = files(run)
    proc = run_child(patch, SMOKE, f"--workdir={run}", "--mode=sample")
    assert proc.returncode == 128 + signum, proc.stderr[-3000:]
    assert error_lines(proc) == [
        f"Stopped by {signal.Signals(signum).name}. Records are written whole or not at all, so no "
        f"partial output file was left; run the same command again to finish."]
    assert files(run) == before  # samples.npy, samples.csv ... as they were; no temporary file


@pytest.mark.slow
def test_a_full_disk_during_training_is_one_paragraph_and_resumable(tmp_path):
    workdir = tmp_path / "run"
    proc = run_child("no_space_at=checkpoints/20", SMOKE, f"--workdir={workdir}",
                     "--mode=train")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    [line] = error_lines(proc)
    assert line.startswith(f"Error: Writing the workdir {workdir} failed: no space is left on the "
                           f"device ({workdir / 'checkpoints' / '20.orbax-checkpoint-tmp'}")
    assert line.endswith(
        "). Records are written whole or not at all, so what the workdir held before is intact. "
        "Free space (or give write access, or use a --workdir on another disk) and run the same "
        "command again (training resumes from its last checkpoint).")
    steps = saved_model.checkpoint_steps(workdir)
    assert 10 in steps and 20 not in steps  # the unfinished save is no step


@pytest.mark.slow
def test_a_read_only_workdir_is_refused_before_sampling(run):
    proc = run_child("read_only", SMOKE, f"--workdir={run}", "--mode=sample")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (f"Error: The workdir {run} cannot be written: the file system is read-only"
            in proc.stderr)
    assert "Loaded the" not in proc.stderr and "Generating" not in proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(workdir_lib.WorkdirError, match="cannot be written: permission"):
            with workdir_lib.locked(tmp_path / "run"):
                pass
    finally:
        tmp_path.chmod(0o755)


@pytest.mark.parametrize("where, message", [
    ("file", "is a file, not a folder"),
    ("file/run", "cannot be written: a file stands where a folder of that path should be"),
])
def test_a_file_where_the_workdir_should_be_is_one_paragraph(tmp_path, where, message):
    (tmp_path / "file").write_text("x")
    proc = run_child("none", SMOKE, f"--workdir={tmp_path / where}", "--mode=train")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"Error: The workdir {tmp_path / where} {message}" in proc.stderr


@pytest.mark.slow
def test_a_smoke_run_through_a_gs_workdir_trains_checkpoints_samples_and_scores(smoke_run):
    folder, proc = smoke_run
    assert "workdir: gs://bucket/run (mode all" in proc.stderr
    assert os.listdir(folder / "cwd") == [] and not list(folder.rglob("gs:*"))
    run = folder / "bucket_root" / "bucket" / "run"
    assert {"checkpoints", "config.json", "fingerprint.json", "metrics.jsonl", "metrics.json",
            "samples.npy", "samples_unit.npy", "samples.csv"} <= set(os.listdir(run))
    assert "lock.json" not in os.listdir(run)
    assert sorted(os.listdir(run / "checkpoints")) == ["10", "20", "30"]
    assert json.loads((run / "config.json").read_text())["train"]["num_steps"] == 30
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [10, 20, 30]
    assert all(np.isfinite(r["loss"]) and r["samples_per_sec"] > 0 for r in train_rows)
    assert [r["step"] for r in rows if "val_loss" in r] == [10, 20, 30]
    assert "ETA" in proc.stderr and "series/s" in proc.stderr

    unit, raw = np.load(run / "samples_unit.npy"), np.load(run / "samples.npy")
    assert unit.shape == raw.shape == (64, 24, 5) and np.all(np.isfinite(unit))
    np.testing.assert_allclose(raw, unit, rtol=1e-6)  # the sines' scaler is the identity
    table, names = tables.read_csv(run / "samples.csv")  # the csv loader reads it back
    assert names == ["window", "t"] + [f"sine_{k}" for k in range(5)]
    np.testing.assert_array_equal(table[:, :2], np.stack(np.divmod(np.arange(64 * 24), 24), 1))
    np.testing.assert_array_equal(table[:, 2:].reshape(raw.shape).astype(np.float32), raw)

    scores = json.loads((run / "metrics.json").read_text())
    assert list(scores) == ["correlational", "memorisation"]
    assert len(scores["correlational"]["values"]) == 2
    assert np.isfinite(scores["correlational"]["mean"])
    check = scores["memorisation"]  # 64 samples against fresh sines draws
    assert check["available"] and check["num_generated"] == 64
    assert "fresh draws" in check["held_out"]
    assert proc.stdout.startswith("correlational  ")
    assert proc.stdout.splitlines()[1].startswith("memorisation  median distance")
    if PLOTS:
        assert sorted(p.name for p in (run / "plots").iterdir()) == [
            "acf.png", "kde.png", "loss.png", "psd.png", "tsne.png", "windows.png"]


# ------------------------------------------------------------------------------------------------
# The child: a patch, then the command line.
# ------------------------------------------------------------------------------------------------
def _signal_self(name):
    os.kill(os.getpid(), signal.Signals[name])


def _signal_at_batch(arg):
    """Sends the signal while the batch of update number N is drawn (mid-step)."""
    from stdiff_jax.data.iterator import BatchIterator
    name, _, batch = arg.partition(":")
    draw, calls = BatchIterator.__next__, []

    def next_indices(self):
        calls.append(1)
        if len(calls) == int(batch):
            _signal_self(name)
        return draw(self)

    BatchIterator.__next__ = next_indices


def _signal_in_sampling(name):
    """Sends the signal after the first chunk of samples."""
    series = generate.generate_series
    generate.generate_series = lambda *args, progress=None, labels=None: series(
        *args[:5], lambda p: _signal_self(name), labels)


def _signal_in_samples_csv(name):
    """Sends the signal while samples.csv is written, after samples.npy was."""
    write = modes.write_windows_csv

    def write_windows_csv(path, *args):
        _signal_self(name)
        time.sleep(0.2)  # the handler runs at the next bytecode; be sure it ran mid-write
        write(path, *args)

    modes.write_windows_csv = write_windows_csv


def _no_space_at(fragment):
    """Every epath write below a path containing `fragment` fails as a full disk does."""
    from etils.epath import gpath
    open_ = gpath._GPath.open

    def full(self, mode="r", **kwargs):
        if "r" not in mode and fragment in os.fspath(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(self))
        return open_(self, mode, **kwargs)

    gpath._GPath.open = full


def _read_only(_):
    """Every write through epath fails as on a read-only file system (root ignores chmod)."""
    from etils.epath import gpath
    open_ = gpath._GPath.open

    def read_only(self, mode="r", **kwargs):
        if "r" not in mode:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(self))
        return open_(self, mode, **kwargs)

    gpath._GPath.open = read_only


def _gcs(root):
    """gs://BUCKET/PATH is the local folder root/BUCKET/PATH: for epath an fsspec file system
    that, like GCS, cannot append to an object; for Orbax's arrays TensorStore's file driver."""
    import fsspec
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem
    from orbax.checkpoint._src.path import gcs_utils

    class FakeGcs(DirFileSystem):
        protocol = ("gs", "gcs")

        def __init__(self, *args, **kwargs):
            super().__init__(path=root, fs=LocalFileSystem())

        def open(self, path, mode="rb", *args, **kwargs):
            if "a" in mode:
                raise NotImplementedError("GCS objects cannot be appended to")
            return super().open(path, mode, *args, **kwargs)

    for name in FakeGcs.protocol:
        fsspec.register_implementation(name, FakeGcs, clobber=True)

    def kvstore(path):
        bucket, rest = gcs_utils.parse_gcs_path(path, add_trailing_slash=False)
        return {"driver": "file", "path": f"{root}/{bucket}/{rest}"}

    gcs_utils.get_kvstore_for_gcs = kvstore
    gcs_utils.is_hierarchical_namespace_enabled = lambda path: False  # asks the GCS API


PATCHES = {"none": lambda _: None, "signal_at_batch": _signal_at_batch,
           "signal_in_sampling": _signal_in_sampling,
           "signal_in_samples_csv": _signal_in_samples_csv, "no_space_at": _no_space_at,
           "read_only": _read_only, "gcs": _gcs}


if __name__ == "__main__":
    patch, _, arg = sys.argv[1].partition("=")
    PATCHES[patch](arg)
    sys.argv = ["stdiff_jax.main", *sys.argv[2:]]
    runpy.run_module("stdiff_jax.main", run_name="__main__")


class _SignalsInAFinalizer:
    """Its finalizer sends SIGTERM: the handler's exception raised there is printed and dropped
    by Python, as when a signal lands in one of JAX's garbage-collection callbacks."""

    def __del__(self):
        _signal_self("SIGTERM")
        for _ in range(1000):  # bytecode, for the handler to run inside this finalizer
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped one
def test_a_signal_whose_exception_was_dropped_still_stops_the_run():
    with pytest.raises(errors.Interrupted) as raised:
        with workdir_lib.raising_on_signals():
            _SignalsInAFinalizer()  # dropped at once: the finalizer runs here
            with workdir_lib.deferring_signals() as stop:
                assert stop.signum == signal.SIGTERM  # a training loop saves and stops at once
    assert raised.value.signum == signal.SIGTERM
    with workdir_lib.deferring_signals() as stop:  # the next run starts afresh
        assert stop.signum is None
