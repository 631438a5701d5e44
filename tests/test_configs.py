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


def test_cpu_budgets_set_the_training_of_their_data_sets_only():
    for (name, seq_len), variants in base.BUDGET_TRAINING.items():
        for variant, training in variants.items():
            tc = base.make_config(name, variant).train
            assert all(tc[key] == value for key, value in training.items())
            other_length = base.make_config(name, f"seq_len=64,{variant}").train
            default_steps = base.VARIANT_TRAINING[variant]["num_steps"]
            assert seq_len == 24 and other_length.num_steps == default_steps
            assert other_length.batch_size == base.base_config().train.batch_size
    assert base.make_config("energy", "cpu").train.num_steps == 3000
    for name, recipe in {"sines": (4100, 64), "stocks": (3800, 64), "etth": (3300, 64)}.items():
        tc = importlib.import_module(f"configs.{name}").get_config("cpu").train
        assert (tc.num_steps, tc.batch_size) == recipe


def test_typos_fail():
    c = base.make_config("etth", "smoke")
    with pytest.raises(AttributeError, match="num_steps"):
        c.train.num_step = 3
    with pytest.raises(ValueError, match="Unknown config variant"):
        base.make_config("etth", "seqlen=64")
    with pytest.raises(ValueError, match="not several"):
        base.make_config("etth", "cpu,smoke")
