"""The memorisation check of trained workdirs' samples, alone: no metric is scored, nothing is written.

    python benchmarks/memorisation.py --workdirs=W1,W2,...

For each workdir, reads its config.json and samples_unit.npy (written by `--mode=sample`) and its
data set, and prints the line `--mode=evaluate` prints (`stdiff_jax.metrics.memorisation`)
against today's held-out reference (`stdiff_jax.data.held_out`): for re-checking samples after
the reference changed, in seconds instead of the metrics' minutes.
"""

import pathlib

import numpy as np
from absl import app, flags

from stdiff_jax import modes, saved_model
from stdiff_jax.data import dataset_of
from stdiff_jax.data.held_out import held_out_windows
from stdiff_jax.metrics.memorisation import describe, reference_check

flags.DEFINE_list("workdirs", None, "Workdirs with samples_unit.npy.")
flags.DEFINE_integer("seed", 0, "Picks the scored subsets (the evaluation's eval.seed: 0).")
flags.mark_flags_as_required(["workdirs"])
FLAGS = flags.FLAGS


def check(workdir, seed):
    """The memorisation check's dict for a workdir's samples, with the reference's source."""
    workdir = pathlib.Path(workdir)
    config = saved_model.load_config(workdir)
    dataset = dataset_of(config.data)
    fake = np.clip(np.load(workdir / modes.SAMPLES_UNIT), 0.0, 1.0)
    held_out, source = held_out_windows(dataset)
    return reference_check(dataset.unit_windows, fake, held_out, source, seed=seed)


def main(argv):
    del argv
    for workdir in FLAGS.workdirs:
        print(f"{workdir}: {describe(check(workdir, FLAGS.seed))}")


if __name__ == "__main__":
    app.run(main)
