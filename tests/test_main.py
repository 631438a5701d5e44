"""The command line, run as a user runs it: `python -m stdiff_jax.main ...` in a subprocess."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_main(*args, cwd=REPO, timeout=600):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
               XLA_FLAGS="--xla_backend_optimization_level=0")  # halves compile time
    return subprocess.run([sys.executable, "-m", "stdiff_jax.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_config_typo_fails_naming_the_field(tmp_path):
    proc = run_main(f"--config={REPO}/configs/sines.py:smoke", f"--workdir={tmp_path}",
                    "--config.train.num_stepz=3")
    assert proc.returncode != 0
    assert "num_stepz" in proc.stderr and 'Did you mean "num_steps"' in proc.stderr
    assert not (tmp_path / "config.json").exists()  # failed before doing anything


def test_default_workdir_and_a_clear_error_without_samples(tmp_path):
    proc = run_main(f"--config={REPO}/configs/sines.py:smoke", "--mode=evaluate", cwd=tmp_path)
    assert proc.returncode != 0
    workdir = tmp_path / "workdirs" / "sines_L24_smoke"
    assert f"workdir: {workdir}" in proc.stderr
    assert f"No samples at {workdir / 'samples_unit.npy'}" in proc.stderr


@pytest.mark.slow
def test_smoke_run_trains_checkpoints_samples_and_scores(tmp_path):
    proc = run_main("--config=configs/sines.py:smoke", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-5000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [10, 20, 30]
    assert all(np.isfinite(r["loss"]) and r["samples_per_sec"] > 0 for r in train_rows)
    assert [r["step"] for r in rows if "val_loss" in r] == [10, 20, 30]
    assert "ETA" in proc.stderr and "series/s" in proc.stderr
    assert (tmp_path / "checkpoints" / "30").is_dir()
    assert json.loads((tmp_path / "config.json").read_text())["train"]["num_steps"] == 30

    unit, raw = np.load(tmp_path / "samples_unit.npy"), np.load(tmp_path / "samples.npy")
    assert unit.shape == raw.shape == (64, 24, 5) and np.all(np.isfinite(unit))
    np.testing.assert_allclose(raw, unit, rtol=1e-6)  # the sines' scaler is the identity

    scores = json.loads((tmp_path / "metrics.json").read_text())
    assert list(scores) == ["correlational"] and len(scores["correlational"]["values"]) == 2
    assert np.isfinite(scores["correlational"]["mean"])
    assert proc.stdout.startswith("correlational  ")
