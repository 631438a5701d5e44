"""The generated stand-in for the fmri data set (stdiff_jax/data/standins.py); variants:
seq_len=N, cpu, cpu_long, smoke (see configs/base.py)."""

from configs import base


def get_config(arg=None):
    return base.make_config("fmri_standin", arg)
