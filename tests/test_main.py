"""The command line, run as a user runs it: `python -m stdiff_jax.main ...` in a subprocess. The
whole smoke run (train, sample, score, plot) is tests/test_workdir.py's `smoke_run`."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_main(*args, cwd=REPO, timeout=600, **env_vars):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
               XLA_FLAGS="--xla_backend_optimization_level=0")  # halves compile time
    env.update(env_vars)
    return subprocess.run([sys.executable, "-m", "stdiff_jax.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_config_typo_fails_naming_the_field(tmp_path):
    proc = run_main(f"--config={REPO}/configs/sines.py:smoke", f"--workdir={tmp_path}",
                    "--config.train.num_stepz=3")
    assert proc.returncode == 2
    assert proc.stderr == ("Error: Unknown config field 'num_stepz' in --config.train.num_stepz=3. "
                           'Did you mean "num_steps" instead of "num_stepz"?\n')
    assert not (tmp_path / "config.json").exists()  # failed before doing anything


def test_default_workdir_and_a_clear_error_without_samples(tmp_path):
    # JAX probes every backend (TPU too) when JAX_PLATFORMS is unset, as on a user's machine.
    proc = run_main(f"--config={REPO}/configs/sines.py:smoke", "--mode=evaluate", cwd=tmp_path,
                    JAX_PLATFORMS="")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    workdir = tmp_path / "workdirs" / "sines_L24_smoke"
    assert f"workdir: {workdir}" in proc.stderr
    assert f"Error: No samples at {workdir / 'samples_unit.npy'}" in proc.stderr
    assert "libtpu" not in proc.stderr


def test_default_workdir_is_named_after_the_data_and_a_failed_run_writes_nothing(tmp_path):
    proc = run_main(f"--config={REPO}/configs/etth.py:smoke", "--config.data.name=csv:ETTh2.csv",
                    cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"workdir: {tmp_path / 'workdirs' / 'ETTh2_L24_smoke'}" in proc.stderr
    assert "Error: No data file at ETTh2.csv" in proc.stderr
    assert not (tmp_path / "workdirs").exists()


def test_sampling_without_checkpoints_creates_nothing(tmp_path):
    proc = run_main(f"--config={REPO}/configs/sines.py:smoke", f"--workdir={tmp_path / 'run'}",
                    "--mode=sample")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"Error: No checkpoint in {tmp_path / 'run' / 'checkpoints'}: train first" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_indivisible_batch_is_a_user_error(tmp_path):
    proc = run_main(f"--config={REPO}/configs/sines.py:smoke", f"--workdir={tmp_path / 'run'}",
                    "--config.train.batch_size=12", "--mode=train",
                    XLA_FLAGS="--xla_force_host_platform_device_count=8")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Error: config.train.batch_size=12 does not split evenly over the 8 devices" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override,message", [
    ("--config.sample.method=dpm", "config.sample.method='dpm' is not one of ('auto', 'ddim', "),
    ("--config.diffusion.loss_weighting=x0", "config.diffusion.loss_weighting='x0' is not one of"),
    ("--config.model.heads=3", "model.hidden (32) must split into model.heads (3) heads"),
    ("--config.video.hop=12", "STFT hop=12 exceeds n_fft=11"),
])
def test_bad_config_values_are_user_errors_before_any_training(tmp_path, override, message):
    proc = run_main(f"--config={REPO}/configs/sines.py:smoke", f"--workdir={tmp_path / 'run'}",
                    override)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert message in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_user_errors_exit_with_status_2_and_bugs_keep_their_traceback(capsys):
    from stdiff_jax import errors

    def user_error(argv):
        raise errors.MissingFileError("No data file at x.csv.")

    def bug(argv):
        raise KeyError("a bug")

    with pytest.raises(SystemExit) as exit_:
        errors.reporting_user_errors(user_error)([])
    assert exit_.value.code == 2 and capsys.readouterr().err == "Error: No data file at x.csv.\n"
    with pytest.raises(KeyError, match="a bug"):
        errors.reporting_user_errors(bug)([])
