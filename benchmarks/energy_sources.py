"""Where a trained model's samples gain or lose energy and tails: its EMA parameters, its raw ones,
and the Gaussian prior alone (the network's output zeroed), sampled alike:

    python benchmarks/energy_sources.py --workdir=workdirs/etth_L64_cpu --samples=1024

Per variant, against the workdir's real windows in the metrics' [0, 1] units
(`sample_statistics.py`'s measures, as `samples_look.py` prints them): the power of the window-mean-removed series, generated / real,
summed over the frequency bins per column and averaged over the lower and the upper half of the
bins; the spread across windows of the within-window std, generated / real; the excess kurtosis
of the first differences (the real one beside it) and their 99.9% quantile, generated / real.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from sample_statistics import power, tail_statistics, window_statistics
from stdiff_jax import generate, saved_model
from stdiff_jax.data import dataset_of

VARIANTS = ("ema", "raw", "prior")
flags.DEFINE_string("workdir", None, "A trained run's workdir.")
flags.DEFINE_integer("samples", 1024, "Series generated per variant.")
flags.DEFINE_list("variants", list(VARIANTS), "Of: ema, raw, prior (the EMA parameters with the "
                  "final layer zeroed: the prior's exact denoiser alone).")
flags.DEFINE_integer("seed", 7, "Sampling seed, the same for every variant.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def without_network(params):
    """params with the final layer zeroed: the network's output is then 0 and the model is the
    prior's denoiser (models/stdiff.py: the output passes through final_layer's last Dense)."""
    def zero(path, x):
        names = [getattr(p, "key", "") for p in path]
        return jnp.zeros_like(x) if "final_layer" in names else x
    return jax.tree_util.tree_map_with_path(zero, params)


def measures(fake, real):
    """One line of the module docstring's measures."""
    fp, rp = power(fake)[1:], power(real)[1:]  # (F - 1, K): the mean removed, bin 0 is ~0
    ratio, half = fp / rp, fp.shape[0] // 2
    spread = window_statistics(fake)["within std"].std(0) / window_statistics(real)[
        "within std"].std(0)
    ft, rt = tail_statistics(fake), tail_statistics(real)
    return (f"energy {np.round(fp.sum(0) / rp.sum(0), 2)} mean {(fp.sum(0) / rp.sum(0)).mean():.3f};"
            f" lower bins {ratio[:half].mean():.3f} upper {ratio[half:].mean():.3f}; within-std "
            f"spread {spread.mean():.3f}; step kurtosis {ft['step kurtosis'].mean():.2f} (real "
            f"{rt['step kurtosis'].mean():.2f}); |step| q99.9 "
            f"{(ft['|step| q99.9'] / rt['|step| q99.9']).mean():.3f}")


def main(argv):
    del argv
    unknown = set(FLAGS.variants) - set(VARIANTS)
    if unknown:
        raise app.UsageError(f"Unknown variants {sorted(unknown)}; use {VARIANTS}.")
    workdir = pathlib.Path(FLAGS.workdir)
    config = saved_model.load_config(workdir)
    real = dataset_of(config.data).unit_windows
    for variant in FLAGS.variants:
        c = config.copy_and_resolve_references()
        with c.unlocked():
            c.sample.use_ema = variant != "raw"
        tm = saved_model.load(c, workdir)
        if variant == "prior":
            tm.params = without_network(tm.params)
        fake, _ = generate.sample_series(tm, num_samples=FLAGS.samples, seed=FLAGS.seed)
        print(f"{variant:>5}: {measures(fake, real)}", flush=True)


if __name__ == "__main__":
    app.run(main)
