"""Every config value checked before any work (stdiff_jax/config_checks.py), and main's use."""

import os
import pathlib
import subprocess
import sys
import types

import pytest

from configs import base
from stdiff_jax import config_checks, errors, main, train

REPO = pathlib.Path(__file__).resolve().parents[1]
DATASETS = ("sines", "stocks", "etth", "energy", "fmri", "mujoco")


def smoke(**overrides):
    """The sines smoke config with `overrides` ({"section.field": value}) applied."""
    config = base.make_config("sines", "smoke")
    for path, value in overrides.items():
        section, field = path.split(".")
        config[section][field] = value
    return config


def problems_of(config, mode="all"):
    with pytest.raises(errors.UserError) as error:
        config_checks.check_config(config, mode)
    return str(error.value)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("variant", [None, "cpu", "cpu_long", "smoke", "seq_len=64", "seq_len=256"])
def test_every_shipped_config_passes(dataset, variant):
    for mode in ("all", "impute"):
        config_checks.check_config(base.make_config(dataset, variant), mode)


@pytest.mark.parametrize("path,value,message", [
    ("train.batch_size", 0, "config.train.batch_size=0 must be >= 1"),
    ("train.num_steps", 0, "config.train.num_steps=0 must be >= 1"),
    ("train.learning_rate", -1e-3, "config.train.learning_rate=-0.001 must be > 0 and finite"),
    ("train.learning_rate", float("inf"), "config.train.learning_rate=inf must be > 0"),
    ("train.min_learning_rate", 1.0, "min_learning_rate=1.0 must not exceed config.train."
                                     "learning_rate=0.0002"),
    ("train.warmup_steps", 30, "warmup_steps=30 must lie in [0, num_steps=30)"),
    ("train.ema_decay", 1.0, "config.train.ema_decay=1.0 must be in [0, 1)"),
    ("train.grad_clip", 0.0, "config.train.grad_clip=0.0 must be > 0"),
    ("train.eval_every", 0, "config.train.eval_every=0 must be >= 1"),
    ("train.log_every", 0, "config.train.log_every=0 must be >= 1"),
    ("train.checkpoint_every", 0, "config.train.checkpoint_every=0 must be >= 1"),
    ("train.keep_checkpoints", 0, "config.train.keep_checkpoints=0 must be >= 1"),
    ("train.patience", -1, "config.train.patience=-1 must be >= 0"),
    ("data.seq_len", 1, "config.data.seq_len=1 must be >= 2"),
    ("data.seq_len", 5, "Sequence length 5 is too short for an STFT window of n_fft=11"),
    ("data.val_fraction", 1.0, "config.data.val_fraction=1.0 must be in [0, 1)"),
    ("data.test_position", 1.5, "config.data.test_position=1.5 must be in [0, 1]"),
    ("video.hop", 12, "STFT hop=12 exceeds n_fft=11"),
    ("video.ema_alpha", 0.0, "config.video.ema_alpha=0.0 must be in (0, 1]"),
    ("video.normalizer", "frames", "config.video.normalizer='frames' is not one of"),
    ("model.depth", 0, "config.model.depth=0 must be >= 1"),
    ("model.dtype", "float16", "config.model.dtype='float16' is not one of"),
    ("model.prior_rank", -1, "config.model.prior_rank=-1 must be >= 0"),
    ("model.prior_components", 0, "config.model.prior_components=0 must be >= 1"),
    ("diffusion.logsnr_min", 20.0, "finite logsnr_min < logsnr_max, got [20.0, 15.0]"),
    ("diffusion.loss_weighting", "x0", "config.diffusion.loss_weighting='x0' is not one of"),
    ("sample.method", "dpm", "config.sample.method='dpm' is not one of ('auto', 'ddim', "),
    ("sample.num_steps", -1, "config.sample.num_steps=-1 must be >= 0"),
    ("sample.num_samples", -5, "config.sample.num_samples=-5 must be >= 0"),
    ("sample.chunk_size", -1, "config.sample.chunk_size=-1 must be >= 0"),
    ("sample.eta", 2.0, "config.sample.eta=2.0 must be in [0, 1]"),
    ("eval.repeats", 0, "config.eval.repeats=0 must be >= 1"),
    ("eval.metrics", ("corelational",), "unknown metric 'corelational' (did you mean "
                                        "'correlational'?)"),
    ("eval.metrics", (), "config.eval.metrics is empty"),
    ("condition.quantiles", (0.05, 1.0), "config.condition.quantiles must lie in (0, 1)"),
    ("condition.num_samples", 0, "config.condition.num_samples must be >= 1"),
    ("condition.correction", "kalman", "Unknown config.condition.correction='kalman'"),
    ("condition.chunk_size", -2, "config.condition.chunk_size=-2 must be >= 0"),
    ("condition.horizon", -1, "config.condition.horizon=-1 must be >= 0"),
])
def test_each_bad_value_is_named_before_any_work(path, value, message):
    text = problems_of(smoke(**{path: value}))
    assert text.endswith(". Nothing was run: fix it with --config.SECTION.FIELD=VALUE.")
    assert message in text and not text.startswith("The config has"), text  # one problem


def test_all_problems_in_one_paragraph():
    text = problems_of(smoke(**{"train.batch_size": 0, "sample.num_samples": -5,
                                "eval.metrics": ("corelational", "fid")}))
    assert text.startswith("The config has 4 bad values: ") and "\n" not in text
    assert "unknown metric 'fid'; the metrics are context_fid, correlational" in text  # no hint


def test_modes_check_what_they_use():
    typo = smoke(**{"eval.metrics": ("corelational",)})
    config_checks.check_config(typo, "train")  # the metrics are read by the evaluate stage only
    assert "unknown metric" in problems_of(typo, "evaluate")


def test_batch_and_chunk_sizes_split_over_the_devices(monkeypatch):
    monkeypatch.setattr(config_checks.mesh_lib, "make_mesh", lambda: types.SimpleNamespace(size=8))
    text = problems_of(smoke(**{"train.batch_size": 12, "sample.chunk_size": 4,
                                "condition.chunk_size": 16}))
    assert "config.train.batch_size=12 does not split evenly over the 8 devices" in text
    assert "config.sample.chunk_size=4 does not split evenly" in text
    assert "condition.chunk_size" not in text and text.startswith("The config has 2 bad values")


def test_sample_memory_says_what_fits():
    per_series = 24 * 5 * 4 * config_checks.SAMPLE_COPIES  # bytes
    available = 2 ** 30
    fits = int(config_checks.MEMORY_SHARE * available // per_series)
    assert config_checks.sample_memory_problems(fits, 24, 5, available) == []
    [text] = config_checks.sample_memory_problems(fits + 1, 24, 5, available)
    assert f"at most {fits:,} fit here" in text and "of the 1 GiB available" in text
    assert config_checks.known_num_columns("sines") == 5
    assert config_checks.known_num_columns("etth") == 7
    assert config_checks.known_num_columns("csv:mine.csv") == 1  # unknown: a lower bound


def test_a_billion_samples_are_refused_with_what_fits():
    text = problems_of(smoke(**{"sample.num_samples": 10 ** 9}))
    assert ("config.sample.num_samples=1000000000 series of 24 x 5 values need at least 3,576 GiB"
            in text)
    assert "fit here" in text
    config_checks.check_config(smoke(**{"sample.num_samples": 10 ** 9}), "train")  # no sampling


@pytest.fixture
def main_with_flags(monkeypatch):
    """run(*flags): main.main after parsing `flags` as the command line does; training, sampling
    and scoring are replaced by failures, so a check that comes too late shows."""

    def too_late(*args, **kwargs):
        raise AssertionError("work started before the config was checked")

    for module, name in ((train, "train_and_evaluate"), (main.modes, "sample_to_workdir"),
                         (main.modes, "evaluate_workdir")):
        monkeypatch.setattr(module, name, too_late)

    def run(*flags):
        argv = ["main", f"--config={REPO}/configs/sines.py:smoke", *flags]
        monkeypatch.setattr(sys, "argv", argv)  # where ml_collections finds --config.X overrides
        try:
            main.FLAGS(argv)
            return main.main(["main"])
        finally:
            main.FLAGS.unparse_flags()
            for name in [n for n in main.FLAGS if n.startswith("config.")]:
                delattr(main.FLAGS, name)  # each parse defines its override flags anew

    return run


@pytest.mark.parametrize("override,message", [
    ("--config.train.batch_size=0", "config.train.batch_size=0 must be >= 1"),
    ("--config.eval.metrics=('corelational',)", "did you mean 'correlational'?"),
    ("--config.sample.num_samples=-5", "config.sample.num_samples=-5 must be >= 0"),
    ("--config.sample.num_samples=1000000000", "at least 3,576 GiB of host memory"),
])
def test_main_refuses_before_training(main_with_flags, tmp_path, override, message):
    with pytest.raises(errors.UserError, match=message.replace("(", r"\(").replace("?", r"\?")):
        main_with_flags(override, f"--workdir={tmp_path / 'run'}", "--mode=all")
    assert not (tmp_path / "run").exists()


def test_cli_exits_2_with_one_paragraph(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "stdiff_jax.main", f"--config={REPO}/configs/sines.py:smoke",
         "--config.train.batch_size=0", f"--workdir={tmp_path / 'run'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors_printed = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert errors_printed == ["Error: config.train.batch_size=0 must be >= 1. Nothing was run: "
                              "fix it with --config.SECTION.FIELD=VALUE."]
    assert not (tmp_path / "run").exists()
