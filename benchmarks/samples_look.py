"""What a score hides: a workdir's generated series against the real windows, per column, in numbers.

    python benchmarks/samples_look.py --workdir=workdirs/etth_L24_cpu

Reads the workdir's config.json and samples_unit.npy (written by `--mode=sample`) and the config's
data set, all in the metrics' [0, 1] units, and prints per column:
- the power spectrum of the window-mean-removed series, generated / real, per frequency bin
  (mean periodogram over the windows): above 1, too much power at that frequency;
- the mean and the spread across windows of the window mean, the within-window std and the std
  of the first differences, real / generated: the level, the size and the roughness of windows,
  and whether the generated windows vary among themselves as much as the real ones;
- the tails: the excess kurtosis of all values and of the first differences (0 for a Gaussian)
  and the 99.9% quantile of the absolute first difference, real / generated; the four metrics
  hardly see the rare large moves these describe;
- the correlation matrix of all values, generated - real.
"""

import pathlib

import numpy as np
from absl import app, flags

from sample_statistics import power, tail_statistics, window_statistics
from stdiff_jax import modes, saved_model
from stdiff_jax.data import dataset_of

flags.DEFINE_string("workdir", None, "A workdir with samples_unit.npy.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def row(label, values):
    return f"{label:>16} " + " ".join(f"{v:>11}" for v in values)


def main(argv):
    del argv
    workdir = pathlib.Path(FLAGS.workdir)
    config = saved_model.load_config(workdir)
    dataset = dataset_of(config.data)
    real = dataset.unit_windows
    fake = np.load(workdir / modes.SAMPLES_UNIT)
    names = list(dataset.column_names)
    print(f"{config.name}: {len(fake)} generated, {len(real)} real windows of {real.shape[1:]}\n")
    ratio = power(fake) / power(real)
    print(row("power gen/real", names))
    for b in range(1, ratio.shape[0]):
        print(row(f"bin {b}", [f"{r:.2f}" for r in ratio[b]]))
    real_stats, fake_stats = window_statistics(real), window_statistics(fake)
    print("\nreal / generated")
    print(row("", names))
    for name in real_stats:
        r, f = real_stats[name], fake_stats[name]
        print(row(f"{name}", [f"{a:.3f}/{b:.3f}" for a, b in zip(r.mean(0), f.mean(0))]))
        print(row("  across windows", [f"{a:.3f}/{b:.3f}" for a, b in zip(r.std(0), f.std(0))]))
    real_tails, fake_tails = tail_statistics(real), tail_statistics(fake)
    print("\ntails, real / generated")
    print(row("", names))
    for name in real_tails:
        print(row(name, [f"{a:.3g}/{b:.3g}" for a, b in zip(real_tails[name], fake_tails[name])]))
    k = real.shape[2]
    difference = (np.corrcoef(fake.reshape(-1, k).T) - np.corrcoef(real.reshape(-1, k).T))
    print("\ncorrelation of all values, generated - real")
    print(row("", names))
    for name, values in zip(names, np.atleast_2d(difference)):
        print(row(name, [f"{v:+.2f}" for v in values]))


if __name__ == "__main__":
    app.run(main)
