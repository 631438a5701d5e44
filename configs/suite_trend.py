"""The generalisation suite's trend set (stdiff_jax/data/suite.py); variants: seq_len=N, cpu,
cpu_long, smoke (see configs/base.py)."""

from configs import base


def get_config(arg=None):
    return base.make_config("suite_trend", arg)
