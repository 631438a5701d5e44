"""What the Gaussian prior (`model.prior_rank`, stdiff_jax/prior.py) adds to a training run's process
CPU, and the coefficients of `stdiff_jax/budget.py`'s PRIOR fitted to it:

    python benchmarks/prior_cost.py                            # the default cells
    python benchmarks/prior_cost.py --cells=7x24,7x256 --windows=17000 --steps=5
    python benchmarks/prior_cost.py --cells=5x24,7x256 --components=30,7 --batch=64,16  # mixtures

Per cell KxL (with the cell's --components and --batch, or the one value given for all), on
random windows (the fit's cost depends on the shapes, not on the values):
- the fit: process CPU of `prior.fit` on --windows windows at full rank (min(1024, L K));
- a training step: the median process CPU of --steps steps of the `cpu` network with the prior
  and without it (benchmarks/train_step.py's `measure_cell`, the same compiled program
  otherwise); the difference is the prior's (cells where it is under 5% of the step, inside
  the noise of the medians, are left out of the step's fit).
Prints a row per cell, with budget.py's current prediction beside each measurement, and the
coefficients fitted to the cells (non-negative least squares on relative error): PRIOR["fit"]
per multiply-add of `budget.prior_fit_work`, PRIOR["fit_pixel"] per video value a pass
(`budget.prior_passes`), and the step's: with one Gaussian PRIOR["step"] per multiply-add of
`budget.prior_step_work`; with a mixture MIXTURE["step"] per multiply-add, MIXTURE["basis"] per
number of its basis and rotations read and MIXTURE["velocity"] per number of its intermediates
(`budget.mixture_step_features`); and PRIOR_EVAL_RATIO, a validation
batch's prior part over a training step's (`budget.eval_batch_seconds`). The fit's seconds are
the machine it runs on: run it where `train_step.py --sweep` ran (budget.py says which). The
step's are the prior's measured share of the step times the cost model's network step
(`reference_extra`): the sweep machine's seconds, wherever it runs.
"""

import dataclasses
import json
import pathlib
import time

import numpy as np
from absl import app, flags

import train_step  # benchmarks/train_step.py: the sweep's cells and fit
from stdiff_jax import budget, saved_model, video
from stdiff_jax import workdir as workdir_lib
from stdiff_jax import prior as prior_lib

flags.DEFINE_list("cells", ["7x24", "28x24", "7x128", "7x256"], "KxL cells.")
flags.DEFINE_integer("windows", 8000, "Random windows the prior is fitted on.")
flags.DEFINE_list("batch", ["64"], "Training batch of each cell's timed steps (one: all).")
flags.DEFINE_string("rows_out", "", "JSON file this run's rows are added to; the coefficients are "
                    "then fitted to every run's rows there (all one Gaussian or all mixtures).")
flags.DEFINE_list("components", ["1"], "model.prior_components of each cell (one: all); either "
                  "all 1 or all above 1.")
FLAGS = flags.FLAGS
RANK = 1024  # configs/base.py's model.prior_rank: min(RANK, L K) directions
# Random windows of a mixture's timed steps: enough that k-means leaves no Gaussian with fewer than
# prior.MIN_CLUSTER of them (30 Gaussians on 600 uniform windows did).
MIXTURE_WINDOWS = 4000
NOISE_SHARE = 0.05  # of a step: a prior's cost below it is not fitted (module docstring)


def fit_seconds(config, shape, num_windows):
    """Process CPU seconds of fit_prior on random windows of `shape` (L, K)."""
    windows = np.random.default_rng(0).uniform(-1, 1, (num_windows, *shape)).astype(np.float32)
    normalizer, _ = video.fit_video_statistics(
        windows[:train_step.STATS_WINDOWS], config.video.n_fft, config.video.hop,
        config.video.ema_alpha, config.video.window)
    to_video = saved_model.video_transform(config.video, normalizer)
    start = time.process_time()
    prior_lib.fit(windows, to_video, prior_lib.rank_for(config.model, shape),
                  prior_lib.components_of(config.model))
    return time.process_time() - start


def measure(k, length, components, batch):
    config = train_step.sweep_config("cpu", length, prior_rank=RANK, prior_components=components)
    shape = budget.StepShape.of(config, (length, k))
    windows = MIXTURE_WINDOWS if components > 1 else train_step.SWEEP_WINDOWS
    cells = {rank: train_step.measure_cell("cpu", k, length, FLAGS.steps, prior_rank=rank,
                                           batch=batch, prior_components=components,
                                           num_windows=windows) for rank in (0, RANK)}
    return {"K": k, "L": length, "batch": batch, "shape": shape, "windows": FLAGS.windows,
            "fit_s": fit_seconds(config, (length, k), FLAGS.windows),
            "plain_step_s": cells[0]["step_s"], "prior_step_s": cells[RANK]["step_s"],
            "plain_eval_s": cells[0]["eval_s"], "prior_eval_s": cells[RANK]["eval_s"]}


def prior_step_features(row):
    """The prior's step features of a row: one Gaussian's budget.prior_step_work, a mixture's
    budget.mixture_step_features."""
    s, batch = row["shape"], row["batch"]
    if s.prior_components > 1:
        return list(budget.mixture_step_features(s, batch))
    return [budget.prior_step_work(s, batch)]


def reference_extra(row):
    """The prior's part of a row's step in the sweep machine's seconds: its share of the step
    measured here times the cost model's network step. Machines differ in speed (2-core VMs of
    this project's ran the same network steps 15% apart on different days), and a share, the
    two steps timed side by side, carries over between them where seconds do not."""
    network = budget.sweep_step_seconds(row["shape"], row["batch"])  # without the prior's part
    return (row["prior_step_s"] / row["plain_step_s"] - 1) * network


def fit(rows):
    """(PRIOR's fit coefficients, the step's: PRIOR's or MIXTURE's) fitted to the rows."""
    fit_features = [[budget.prior_fit_work(r["shape"], r["windows"]),
                     budget.prior_passes(r["shape"]) * r["windows"] * r["shape"].pixels]
                    for r in rows]
    fit_coef = train_step.nnls_relative(fit_features, [r["fit_s"] for r in rows])
    # Cells where the prior adds less than NOISE_SHARE of a step are inside the medians' noise:
    # their relative error would pull every coefficient to ~0.
    timed = [r for r in rows
             if r["prior_step_s"] - r["plain_step_s"] > NOISE_SHARE * r["plain_step_s"]]
    extra = [reference_extra(r) for r in timed]
    features = [prior_step_features(r) for r in timed]
    step_coef = ([float(c) for c in train_step.nnls_relative(features, extra)] if timed
                 else [0.0] * len(prior_step_features(rows[0])))
    names = budget.MIXTURE_FEATURES if rows[0]["shape"].prior_components > 1 else ("step",)
    step = dict(zip(names, step_coef))
    # A validation batch's prior part over a training step's (no update of its constants there).
    eval_ratio = (float(np.median([(r["prior_eval_s"] - r["plain_eval_s"])
                                   / (r["prior_step_s"] - r["plain_step_s"]) for r in timed]))
                  if timed else 0.0)
    return dict(fit=float(fit_coef[0]), fit_pixel=float(fit_coef[1])), step, eval_ratio


def pooled(rows):
    """rows and every earlier run's in --rows_out (written back with them, atomically)."""
    if not FLAGS.rows_out:
        return rows
    path = pathlib.Path(FLAGS.rows_out)
    saved = json.loads(path.read_text()) if path.exists() else []
    saved += [dict(r, shape=dataclasses.asdict(r["shape"])) for r in rows]
    workdir_lib.write_json(path, saved)
    return [dict(r, shape=budget.StepShape(**r["shape"])) for r in saved]


def main(argv):
    del argv
    n = len(FLAGS.cells)
    components, batches = ([int(v) for v in (values * n if len(values) == 1 else values)]
                           for values in (FLAGS.components, FLAGS.batch))
    if len(components) != n or len(batches) != n or len({c > 1 for c in components}) > 1:
        raise app.UsageError("Give one --components and --batch for all cells or one per cell, "
                             "and either all 1 (one Gaussian) or all above 1 (mixtures).")
    rows = [measure(*map(int, cell.split("x")), c, b)
            for cell, c, b in zip(FLAGS.cells, components, batches)]
    print(f"| K | L | D | r | C | batch | fit CPU s ({FLAGS.windows} windows) | budget.py | "
          f"step without | with the prior | prior's share | budget.py's step share | "
          f"validation batch without | with |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        s, b = r["shape"], r["batch"]
        predicted_fit = budget.prior_fit_seconds(s, FLAGS.windows) / budget.REFERENCE_FACTOR
        share = r["prior_step_s"] / r["plain_step_s"] - 1
        predicted_share = budget.mixture_share(s, b)
        print(f"| {r['K']} | {r['L']} | {s.video_numbers} | {s.prior_rank} | "
              f"{s.prior_components} | {b} | {r['fit_s']:.1f} | {predicted_fit:.1f} | "
              f"{r['plain_step_s']:.3f} | {r['prior_step_s']:.3f} | {share:+.1%} | "
              f"{predicted_share:+.1%} | {r['plain_eval_s']:.3f} | {r['prior_eval_s']:.3f} |")
    all_rows = pooled(rows)
    fitted, step, eval_ratio = fit(all_rows)
    name = "MIXTURE" if components[0] > 1 else "PRIOR"
    print(f"PRIOR fit = {fitted}, {name} step = {step}, PRIOR_EVAL_RATIO = {eval_ratio:.3f}"
          f"  # {len(all_rows)} rows: {len(rows)} of benchmarks/prior_cost.py "
          f"--cells={','.join(FLAGS.cells)} --components={','.join(map(str, components))} "
          f"--batch={','.join(map(str, batches))} --windows={FLAGS.windows} --steps={FLAGS.steps}")


if __name__ == "__main__":
    app.run(main)
