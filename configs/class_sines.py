"""class_sines: labelled sines whose frequency band is the class (stdiff_jax/data/labelled.py),
3 classes of 1,500 / 900 / 600 windows, 2 channels; variants: seq_len=N, cpu, cpu_long, smoke
(see configs/base.py). A labelled set with an exact answer: benchmarks/labels.py measures the
share of generated frequencies in the requested class's band and the unconditional mixture."""

from configs import base


def get_config(arg=None):
    config = base.make_config("class_sines", arg)
    with config.unlocked():
        config.video.normalizer = "frame"  # as sines (configs/sines.py)
        if config.variant == "cpu":
            # Two channels make a step cheap (45 ms of process CPU at batch 64): 12,000 steps
            # fit ~10 CPU minutes. At 3,000 steps the unconditional model, trained on the 10%
            # of windows whose label is dropped, still put 79% of its samples outside every band.
            config.train.update(batch_size=64, num_steps=12_000, eval_every=500,
                                checkpoint_every=2000)
    return config
