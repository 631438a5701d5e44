"""Real windows a model never trained on: the reference of the memorisation check.

`held_out_windows(dataset)` takes, in this order:
1. the data set's held-out windows (`Dataset.test_windows`: the block of
   `config.data.test_fraction`, or a UCR test set): a window set's all (each a series of its
   own), a series' block less its first and last L windows (a stride-1 block's edge windows
   start or end within L rows of a training row, and a slowly moving series makes such
   neighbours closer than new data would be);
2. for a generated data set (sines, MuJoCo, the stand-ins, the suite), fresh draws: the generator
   run with another seed (sines and MuJoCo 124 where the data set is 123; the others 1 where it
   is 0), scaled by the training scaler;
3. otherwise nothing: a real series trained on whole (the protocol's test_fraction 0) has no
   window the model did not see, and the check is reported as not available, with the fix.
The windows are clipped to [0, 1] like the generated ones they are compared with.
"""

import numpy as np

from stdiff_jax.data import mujoco, synthetic
from stdiff_jax.data.loaders import GENERATED, make_dataset

FRESH_SEED = 1  # of the generators in loaders.GENERATED, whose data set is their seed 0


def _fresh_windows(dataset):
    """(N, L, K) [0, 1] windows of the generator of `dataset.name` with another seed, or None."""
    if dataset.name == "sines":
        return synthetic.sine_windows(seq_len=dataset.seq_len, seed=synthetic.SEED + 1)
    if dataset.name == "mujoco":  # not cached: ~20 s for 10,000, once an evaluation
        raw = mujoco.hopper_trajectories(len(dataset.windows), dataset.seq_len, mujoco.SEED + 1)
        return make_dataset(dataset.name, raw, dataset.column_names, dataset.seq_len,
                            dataset.scaler).unit_windows
    if dataset.name in GENERATED:
        raw, names = GENERATED[dataset.name](seed=FRESH_SEED)
        return make_dataset(dataset.name, raw, names, dataset.seq_len, dataset.scaler).unit_windows
    return None


def kept_test_windows(dataset):
    """The slice of `dataset.test_windows` that `held_out_windows` keeps (the module docstring)."""
    if dataset.window_starts is None:
        return slice(None)
    return slice(dataset.seq_len, max(dataset.seq_len, len(dataset.test_windows) - dataset.seq_len))


def held_out_windows(dataset):
    """(windows, source): (H, L, K) float32 [0, 1] windows the model never trained on and what
    they are, or (None, why there are none and what to do); the module docstring has the rules.
    Labelled data sets' classes of these windows: `dataset.test_labels[kept_test_windows(...)]`."""
    length = dataset.seq_len
    if dataset.test_windows is not None:
        inner = dataset.test_windows[kept_test_windows(dataset)]
        if not len(inner):
            return None, (f"the held-out block of {dataset.name} has {len(dataset.test_windows)} "
                          f"windows, none once the {length} at each end (within a window of the "
                          f"training rows) are left out; raise config.data.test_fraction.")
        windows = (inner + 1) / 2
        source = (f"{len(inner)} windows of the held-out block, at least {length} rows from any "
                  f"training row" if dataset.window_starts is not None else
                  f"the {len(inner)} held-out windows, each a series of its own")
    else:
        windows = _fresh_windows(dataset)
        if windows is None:
            return None, (f"{dataset.name} has no held-out block and no generator to draw fresh "
                          f"windows from, so every real window was trained on; hold out a block "
                          f"with --config.data.test_fraction=0.1 (the model then trains on the "
                          f"rest) to measure it.")
        source = f"{len(windows)} fresh draws of the {dataset.name} generator (another seed)"
    return np.clip(windows, 0.0, 1.0).astype(np.float32), source
