"""Configs: Table-4 rows by variant, CPU sizes, and locked keys that reject typos."""

import importlib

import pytest

from configs import base

DATASETS = ["sines", "stocks", "etth", "energy", "mujoco", "fmri"]


@pytest.mark.parametrize("name", DATASETS)
def test_every_dataset_config_loads(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    assert config.data.name == name and config.data.seq_len == 24
    assert (config.video.n_fft, config.video.hop, config.model.patch_freq) == (11, 3, 2)
    assert (config.model.depth, config.model.hidden, config.model.heads) == (6, 192, 4)


@pytest.mark.parametrize("seq_len,row", [
    (64, (31, 11, 4, 8, 384, 6)), (128, (63, 15, 8, 8, 384, 6)), (256, (127, 32, 16, 8, 384, 6))])
def test_seq_len_selects_table4_row(seq_len, row):
    c = importlib.import_module("configs.etth").get_config(f"seq_len={seq_len}")
    got = (c.video.n_fft, c.video.hop, c.model.patch_freq, c.model.depth, c.model.hidden,
           c.model.heads)
    assert got == row and c.model.mlp_ratio == 4.0 and c.name == f"etth_L{seq_len}"


def test_cpu_variant_keeps_stft_and_shrinks_network():
    c = base.make_config("etth", "seq_len=64,cpu")
    assert (c.video.n_fft, c.video.hop) == (31, 11)
    assert c.model.hidden < 384 and c.name == "etth_L64_cpu"


@pytest.mark.parametrize("name", DATASETS)
def test_cpu_variants_leave_steps_and_batch_to_their_budget(name):
    """The steps, batch and intervals of cpu and cpu_long are 0 ('from the budget', worked out
    from the data in stdiff_jax/budget.py, tests/test_budget.py); the others set them."""
    for variant, seconds in (("cpu", 900), ("cpu_long", 10_800)):
        for arg in (variant, f"seq_len=64,{variant}"):
            tc = base.make_config(name, arg).train
            assert tc.budget_seconds == seconds
            assert (tc.num_steps, tc.batch_size, tc.eval_every, tc.checkpoint_every) == (0, 0, 0, 0)
    for arg, steps in (("", 30_000), ("smoke", 30)):
        tc = base.make_config(name, arg).train
        assert tc.budget_seconds == 0 and tc.num_steps == steps and tc.batch_size > 0


def test_budget_fields_are_overridable():
    c = base.make_config("etth", "cpu")
    c.train.update(num_steps=200, batch_size=32, budget_seconds=1800)
    assert (c.train.num_steps, c.train.batch_size, c.train.budget_seconds) == (200, 32, 1800.0)


def test_typos_fail():
    c = base.make_config("etth", "smoke")
    with pytest.raises(AttributeError, match="num_steps"):
        c.train.num_step = 3
    with pytest.raises(ValueError, match="Unknown config variant"):
        base.make_config("etth", "seqlen=64")
    with pytest.raises(ValueError, match="not several"):
        base.make_config("etth", "cpu,smoke")
