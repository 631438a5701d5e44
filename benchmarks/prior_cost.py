"""What the Gaussian prior (`model.prior_rank`, stdiff_jax/prior.py) adds to a training run's process
CPU, and the coefficients of `stdiff_jax/budget.py`'s PRIOR fitted to it:

    python benchmarks/prior_cost.py                            # the default cells
    python benchmarks/prior_cost.py --cells=7x24,7x256 --windows=17000 --steps=5
    python benchmarks/prior_cost.py --cells=5x24 --components=10   # a mixture's cost

Per cell KxL, on random windows (the fit's cost depends on the shapes, not on the values):
- the fit: process CPU of `prior.fit_prior` on --windows windows at full rank (min(1024, L K));
- a training step: the median process CPU of --steps steps of the `cpu` network of batch --batch,
  with the prior and without it (benchmarks/train_step.py's `measure_cell`, the same compiled
  program otherwise); the difference is the prior's.
Prints a row per cell, with budget.py's current prediction beside each measurement, and the
coefficients fitted to the cells (non-negative least squares on relative error): PRIOR["fit"]
per multiply-add of `budget.prior_fit_work`, PRIOR["fit_pixel"] per video value a pass
(`budget.prior_passes`), PRIOR["step"] per multiply-add of `budget.prior_step_work`. CPU
seconds of the machine it runs on: run it where `train_step.py --sweep` ran (budget.py says which).
"""

import dataclasses
import time

import numpy as np
from absl import app, flags

import train_step  # benchmarks/train_step.py: the sweep's cells and fit
from stdiff_jax import budget, saved_model, video
from stdiff_jax import prior as prior_lib

flags.DEFINE_list("cells", ["7x24", "28x24", "7x128", "7x256"], "KxL cells.")
flags.DEFINE_integer("windows", 8000, "Random windows the prior is fitted on.")
flags.DEFINE_integer("batch", 64, "Training batch of the timed steps.")
flags.DEFINE_integer("components", 1, "model.prior_components of the prior timed.")
FLAGS = flags.FLAGS
RANK = 1024  # configs/base.py's model.prior_rank: min(RANK, L K) directions


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


def measure(k, length):
    config = train_step.sweep_config("cpu", length, prior_rank=RANK,
                                     prior_components=FLAGS.components)
    shape = budget.StepShape.of(config, (length, k))
    steps = {rank: train_step.measure_cell("cpu", k, length, FLAGS.steps, prior_rank=rank,
                                           batch=FLAGS.batch, prior_components=FLAGS.components
                                           )["step_s"] for rank in (0, RANK)}
    return {"K": k, "L": length, "shape": shape, "fit_s": fit_seconds(config, (length, k),
                                                                       FLAGS.windows),
            "plain_step_s": steps[0], "prior_step_s": steps[RANK]}


def fit(rows):
    """PRIOR's coefficients fitted to the rows."""
    fit_features = [[budget.prior_fit_work(r["shape"], FLAGS.windows),
                     budget.prior_passes(r["shape"]) * FLAGS.windows * r["shape"].pixels]
                    for r in rows]
    fit_coef = train_step.nnls_relative(fit_features, [r["fit_s"] for r in rows])
    extra = [max(r["prior_step_s"] - r["plain_step_s"], 1e-6) for r in rows]
    step_coef = train_step.nnls_relative(
        [[budget.prior_step_work(r["shape"], FLAGS.batch)] for r in rows], extra)
    return dict(fit=float(fit_coef[0]), fit_pixel=float(fit_coef[1]), step=float(step_coef[0]))


def main(argv):
    del argv
    rows = [measure(*map(int, cell.split("x"))) for cell in FLAGS.cells]
    print(f"| K | L | D | r | fit CPU s ({FLAGS.windows} windows) | budget.py | step without | "
          f"with the prior (batch {FLAGS.batch}) | prior's share | budget.py's step share |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        s = r["shape"]
        predicted_fit = budget.prior_fit_seconds(s, FLAGS.windows) / budget.REFERENCE_FACTOR
        share = r["prior_step_s"] / r["plain_step_s"] - 1
        predicted_share = (budget.step_seconds(s, FLAGS.batch) / budget.step_seconds(
            dataclasses.replace(s, prior_rank=0), FLAGS.batch) - 1)
        print(f"| {r['K']} | {r['L']} | {s.video_numbers} | {s.prior_rank} | {r['fit_s']:.1f} | "
              f"{predicted_fit:.1f} | {r['plain_step_s']:.3f} | {r['prior_step_s']:.3f} | "
              f"{share:+.1%} | {predicted_share:+.1%} |")
    print(f"PRIOR = {fit(rows)}  # benchmarks/prior_cost.py --cells={','.join(FLAGS.cells)} "
          f"--windows={FLAGS.windows} --batch={FLAGS.batch} --steps={FLAGS.steps}")


if __name__ == "__main__":
    app.run(main)
