"""The mujoco data set (docs/protocol.md); variants: seq_len=N, cpu, cpu_long, smoke
(see configs/base.py)."""

from configs import base


def get_config(arg=None):
    config = base.make_config("mujoco", arg)
    with config.unlocked():
        config.data.val_fraction = 0.05  # a random 5% of the windows: each its own series
    return config
