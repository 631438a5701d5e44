"""The energy data set (docs/protocol.md); variants: seq_len=N, cpu, cpu_long, smoke
(see configs/base.py)."""

from configs import base


def get_config(arg=None):
    return base.make_config("energy", arg)
