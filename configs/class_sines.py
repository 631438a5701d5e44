"""class_sines: labelled sines whose frequency band is the class (stdiff_jax/data/labelled.py),
3 classes of 1,500 / 900 / 600 windows, 2 channels; variants: seq_len=N, cpu, cpu_long, smoke
(see configs/base.py). A labelled set with an exact answer: benchmarks/labels.py measures the
share of generated frequencies in the requested class's band and the unconditional mixture."""

from configs import base


def get_config(arg=None):
    config = base.make_config("class_sines", arg)
    with config.unlocked():
        config.video.normalizer = "frame"  # as sines (configs/sines.py)
    return config
