"""Classifier-free guidance sweep: sample quality against class fidelity on a labelled workdir.

    python benchmarks/labels.py --config=configs/class_sines.py:cpu [--config.KEY=VALUE ...] \
        --workdir=DIR [--guidance=0,1,2,4] [--metrics=cas,class_fidelity,context_fid] [--repeats=2]

For every guidance scale w, generates the data set's class counts (config.sample.classes, the
protocol by default) with the workdir's trained model and prints one row: on class_sines the
share of samples whose every channel's frequency lies in the requested class's band
(`labelled.estimate_frequencies`, the exact answer), the share in no band, and the class
mixture by the nearest band (`labelled.nearest_band`) against the data's proportions; on every
labelled set the class-conditional scores of `stdiff_jax.metrics.classes` (CAS against TRTR,
class fidelity, the mean over classes of per-class Context-FID), tested on the data set's test
windows where it has them, and the memorisation check against those test windows, as a whole
and class by class (`classes.with_per_class`). --out writes every figure as JSON. Process
CPU seconds of each row are printed beside it.
"""

import json
import pathlib
import sys
import time

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from stdiff_jax import checkpoint, fingerprint, generate, saved_model
from stdiff_jax.data import labelled
from stdiff_jax.data.held_out import held_out_windows
from stdiff_jax.metrics import classes, memorisation

# `configs.base`, so the repository root goes on the path of this script.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
config_flags.DEFINE_config_file("config", None, "Config file of the trained run, e.g. "
                                "configs/class_sines.py:cpu, with the overrides it was trained "
                                "with (--config.model.prior_per_class=True).", lock_config=True)
flags.DEFINE_string("workdir", None, "Workdir of the trained run (default workdirs/<name>).")
flags.DEFINE_list("guidance", ["0", "1", "2", "4"], "Guidance scales w.")
flags.DEFINE_list("metrics", ["cas", "class_fidelity", "context_fid"],
                  f"Class metrics, of {classes.CLASS_METRICS} (none: leave empty).")
flags.DEFINE_integer("repeats", 2, "Metric repeats.")
flags.DEFINE_integer("seed", 0, "Sampling and metric seed.")
flags.DEFINE_string("out", "", "Write the figures to this JSON file.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def band_figures(fake, fake_labels, num_classes):
    """class_sines: the share of samples whose every channel lies in the requested band (per
    class too), the share in no band, and the class mixture by the nearest band."""
    frequencies = labelled.estimate_frequencies(fake)  # (N, K)
    bands = labelled.band_of(frequencies)  # (N,), -1 outside every band
    nearest = labelled.nearest_band(frequencies)
    return {"in_band": float(np.mean(bands == fake_labels)),
            "in_band_per_class": [float(np.mean(bands[fake_labels == c] == c))
                                  for c in range(num_classes)],
            "mixture": [float(np.mean(nearest == c)) for c in range(num_classes)],
            "outside_bands": float(np.mean(bands < 0))}


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(checkpoint.QuietOrbax())
    config = FLAGS.config
    workdir = FLAGS.workdir or f"workdirs/{config.name}"
    dataset = fingerprint.checked_dataset(config, workdir)
    tm = saved_model.load(config, workdir)
    names = tm.host.class_names
    proportions = np.asarray(tm.host.class_counts) / np.sum(tm.host.class_counts)
    held_out, held_out_source = held_out_windows(dataset)
    rows = []
    for w in map(float, FLAGS.guidance):
        cpu = time.process_time()
        fake, fake_labels = generate.sample_series(tm, guidance=w, seed=FLAGS.seed, progress=None)
        fake = np.clip(fake, 0.0, 1.0)
        row = {"guidance": w, "samples": len(fake)}
        if config.data.name == labelled.CLASS_SINES:
            row.update(band_figures(fake, fake_labels, len(names)))
        if FLAGS.metrics:
            eval_config = dict(repeats=FLAGS.repeats, seed=FLAGS.seed,
                               class_metrics=tuple(FLAGS.metrics))
            row["scores"] = classes.evaluate_labelled(dataset, fake, fake_labels,
                                                      ml_collections.ConfigDict(eval_config))
        check = memorisation.reference_check(dataset.unit_windows, fake, held_out,
                                             held_out_source, seed=FLAGS.seed)
        row["memorisation"] = classes.with_per_class(check, dataset, fake, fake_labels, held_out,
                                                     seed=FLAGS.seed)
        row["cpu_s"] = time.process_time() - cpu
        rows.append(row)
        logging.info("w = %g: %s", w, row)
    print(f"\n{config.name}, step {tm.step}, classes {list(names)} in proportions "
          f"{np.round(proportions, 3).tolist()}, metrics over {FLAGS.repeats} repeats")
    for row in rows:
        figures = [f"w={row['guidance']:g}"]
        if "in_band" in row:
            figures.append(f"in band {row['in_band']:.3f} (per class "
                           f"{np.round(row['in_band_per_class'], 3).tolist()}), mixture "
                           f"{np.round(row['mixture'], 3).tolist()}, outside "
                           f"{row['outside_bands']:.3f}")
        for name, s in sorted(row.get("scores", {}).items()):
            figures.append(f"{name} {s['mean']:.3f}")
        fids = [s["mean"] for name, s in row.get("scores", {}).items()
                if name.startswith("context_fid/")]
        if fids:
            figures.append(f"mean per-class Context-FID {np.mean(fids):.3f}")
        print(" | ".join(figures + [f"{row['cpu_s']:.0f} CPU s"]))
        print("    " + memorisation.describe(row["memorisation"]).replace("\n", "\n    "))
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    app.run(main)
