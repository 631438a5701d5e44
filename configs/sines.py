"""The sines data set (docs/protocol.md); variants: seq_len=N, cpu, cpu_long, smoke
(see configs/base.py)."""

from configs import base


def get_config(arg=None):
    config = base.make_config("sines", arg)
    # Every sines window starts near 0.5, so its frames are far from stationary: per-frame video
    # statistics gave 4x lower Context-FID and discriminative scores at 3,000 steps (2 seeds;
    # docs/ablations.md, issue 11 ablations), where stocks, whose frames are near stationary, lost.
    with config.unlocked():
        config.video.normalizer = "frame"
        config.data.val_fraction = 0.05  # a random 5% of the windows: each its own series
        # One Gaussian: a mixture of ten raised Context-FID on both seeds (0.0033 / 0.0034
        # against 0.0027 / 0.0022; docs/ablations.md, "The number of mixture components").
        config.model.prior_components = 1
    return config
