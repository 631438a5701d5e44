"""BasicMotions (UEA): 6 channels (a wrist-worn watch's 3-axis accelerometer and gyroscope) of
4 activities (standing, walking, running, badminton), 40 training and 40 test recordings of 100
steps, each resampled linearly to seq_len (24) steps (`ucr:BasicMotions`,
stdiff_jax/data/labelled.py); variants: cpu, cpu_long, smoke (see configs/base.py)."""

from configs import base


def get_config(arg=None):
    return base.make_ucr_config("BasicMotions", arg, batch_size=10)  # 10 recordings a class
