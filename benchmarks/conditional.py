"""Imputation and forecasting with a trained workdir, against simple baselines (issue 12).

    python -m stdiff_jax.main --config=configs/etth.py:cpu --mode=train \
        --config.data.test_fraction=0.1 --workdir=workdirs/etth_heldout
    python benchmarks/conditional.py --config=configs/etth.py:cpu \
        --config.data.test_fraction=0.1 --workdir=workdirs/etth_heldout

Windows: a fixed random subset (--num_windows, --seed) of the held-out block's windows
(config.data.test_fraction of the rows, kept out of training and of the scaler fit; the last rows,
or where config.data.test_position puts them), so no scored value was ever seen in training: a
random validation window would share all but one step with its trained neighbours.
Tasks: imputation with each --rates share of the values missing, point-wise at random (a fixed
seed), and forecasting the last --horizons share of every window from the rest. Each model row
is a --settings entry, method:num_steps:jumps[:renoise[:correction[:ridge]]], drawing
--num_samples samples per window (renoise 0: only the clean prediction is corrected, the noisy
state is left as sampled; correction: projection or regression, config.condition.correction;
ridge: the regression's, config.condition.ridge).

Scores, over the held-out values, in the [0, 1] units of the metrics (the data scaler's): MSE and
MAE of the per-value sample median, CRPS of the S samples (E|X - y| - E|X - X'| / 2) and the
share of held-out values inside the central 90% interval (the 5% and 95% quantiles of the S
samples at plotting positions q (S + 1), `conditional.sample_quantiles`: 90% of new draws of a
calibrated sampler fall inside, whatever S). The
baselines are point forecasts, so their CRPS is their MAE and they have no interval:
- linear interpolation (imputation) per window and column between the observed values, constant
  beyond the first and last; a column with nothing observed takes its training mean;
- last value (forecasting): the last observed row, repeated;
- seasonal naive (forecasting): x[t] = x[t - m k], the latest value a whole number of periods
  back in the observed part; the period m in 2..L - H is the one with the lowest MSE on 2,000
  training windows.
Costs: wall and process CPU seconds per window (S samples) on this machine, compilation
excluded and shown apart.
Prints a markdown table (--per_column adds each column's coverage and spread ratio, where a
band too wide or too narrow shows which column it is); --json writes every number.
"""

import json
import pathlib
import sys
import time

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from stdiff_jax import checkpoint, conditional, fingerprint, generate, saved_model
from stdiff_jax import mesh as mesh_lib
from stdiff_jax.errors import UserError

# configs/ is a folder of this repository, not an installed package: its config files import
# `configs.base`, so the repository root goes on the path of this script.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
config_flags.DEFINE_config_file("config", None, "Config file of the trained run, e.g. "
                                "configs/etth.py:cpu, with its test_fraction.", lock_config=True)
flags.DEFINE_string("workdir", None, "Workdir of the trained run (default workdirs/<name>).")
flags.DEFINE_integer("num_windows", 200, "Held-out windows evaluated (fewer if there are fewer).")
flags.DEFINE_integer("num_samples", 50, "Samples per window (S).")
flags.DEFINE_list("rates", ["0.5", "0.7", "0.9"], "Missing rates of the imputation tasks.")
flags.DEFINE_list("horizons", ["0.25", "0.5"], "Forecast horizons, as shares of the window.")
flags.DEFINE_list("settings", [], "Sampler settings method:num_steps:jumps[:renoise 0/1"
                  "[:correction[:ridge]]] (default: the config's condition section).")
flags.DEFINE_integer("seed", 0, "Seed of the window subset, the masks and the samplers.")
flags.DEFINE_bool("per_column", False, "Also print each model row's coverage and spread per "
                  "column: where a band is too wide or too narrow.")
flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS
SEASON_FIT_WINDOWS = 2000


# ------------------------------------------------------------------------------------------------
# Tasks and scores.
# ------------------------------------------------------------------------------------------------
def tasks(shape, rates, horizons, seed):
    """[(name, mask (N, L, K) True = observed)]: random point-wise imputation, then forecasts."""
    rng = np.random.default_rng([seed, 12])
    out = [(f"impute {100 * r:g}%", rng.random(shape) >= r) for r in rates]
    length = shape[1]
    for h in horizons:
        steps = round(h * length)
        mask = np.ones(shape, bool)
        mask[:, length - steps:] = False
        out.append((f"forecast {100 * h:g}% ({steps} steps)", mask))
    return out


def crps(samples, truth):
    """Mean CRPS of samples (N, S, ...) for truth (N, ...): E|X - y| - E|X - X'| / 2 per value,
    the pair term from the sorted samples, sum_i (2 i - S - 1) x_(i) * 2 / S^2."""
    s = samples.shape[1]
    spread = np.sort(samples, axis=1)
    weights = (2 * np.arange(1, s + 1) - s - 1).reshape(1, s, *[1] * (samples.ndim - 2))
    pairs = 2 * np.sum(weights * spread, axis=1) / s ** 2
    return np.mean(np.abs(samples - truth[:, None]), axis=1) - pairs / 2


def scores(truth, held_out, median, samples=None):
    """MSE, MAE, CRPS and 90% coverage over the held-out values (point forecasts: no samples)."""
    err = (median - truth)[held_out]
    row = {"mse": float(np.mean(err ** 2)), "mae": float(np.mean(np.abs(err)))}
    if samples is None:
        return row | {"crps": row["mae"], "coverage90": None}
    low, high = conditional.sample_quantiles(samples, [0.05, 0.95], axis=1)
    inside = (truth >= low) & (truth <= high)
    return row | {"crps": float(np.mean(crps(samples, truth)[held_out])),
                  "coverage90": float(np.mean(inside[held_out]))}


def column_scores(truth, held_out, samples):
    """Per column k: 90% coverage, and the robust spread of the samples (their interquartile
    range / 1.349, the sd of a normal) over 1.2533 x the MAE of their median (the same sd for
    normal errors): 1 for calibrated samples, above 1 too wide, below too narrow."""
    low, high = conditional.sample_quantiles(samples, [0.05, 0.95], axis=1)
    q1, q3 = np.quantile(samples, [0.25, 0.75], axis=1)
    error = np.abs(np.median(samples, axis=1) - truth)
    out = []
    for k in range(truth.shape[-1]):
        held = held_out[..., k]
        inside = (truth[..., k] >= low[..., k]) & (truth[..., k] <= high[..., k])
        spread = np.mean((q3 - q1)[..., k][held]) / 1.349
        out.append({"coverage90": float(np.mean(inside[held])),
                    "spread_ratio": float(spread / (1.2533 * np.mean(error[..., k][held])))})
    return out


# ------------------------------------------------------------------------------------------------
# Baselines.
# ------------------------------------------------------------------------------------------------
def linear_interpolation(windows, mask, column_means):
    """Per window and column, np.interp between the observed values (constant beyond them)."""
    out = np.empty_like(windows)
    steps = np.arange(windows.shape[1])
    for n in range(windows.shape[0]):
        for k in range(windows.shape[2]):
            seen = mask[n, :, k]
            out[n, :, k] = (np.interp(steps, steps[seen], windows[n, seen, k]) if seen.any()
                            else column_means[k])
    return out


def seasonal_naive(windows, context, period):
    """x[t] = x[t - m k] with k the smallest whole number of periods back into the context."""
    out = windows.copy()
    for t in range(context, windows.shape[1]):
        out[:, t] = windows[:, t - period * ((t - context) // period + 1)]
    return out


def best_period(train_windows, context):
    """The period in 2..context with the lowest seasonal-naive MSE on the training windows."""
    periods = range(2, context + 1)
    mses = [np.mean((seasonal_naive(train_windows, context, m) - train_windows)[:, context:] ** 2)
            for m in periods]
    return periods[int(np.argmin(mses))]


# ------------------------------------------------------------------------------------------------
# The run.
# ------------------------------------------------------------------------------------------------
def parse_setting(spec):
    method, steps, jumps, *rest = spec.split(":")
    return {"method": method, "num_steps": int(steps), "jumps": int(jumps),
            "renoise": bool(int(rest[0])) if rest else True,
            "correction": rest[1] if len(rest) > 1 else "projection",
            **({"ridge": float(rest[2])} if len(rest) > 2 else {})}


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(checkpoint.QuietOrbax())
    config = FLAGS.config
    workdir = FLAGS.workdir or f"workdirs/{config.name}"
    dataset = fingerprint.checked_dataset(config, workdir)
    if dataset.test_windows is None:
        raise UserError("Nothing is held out: train and score with --config.data.test_fraction="
                        "0.1 (the last 10% of the rows, never trained on).")
    mesh = mesh_lib.make_mesh()
    tm = saved_model.load(config, workdir, mesh)
    rng = np.random.default_rng(FLAGS.seed)
    test = dataset.test_windows
    pick = np.sort(rng.choice(len(test), min(FLAGS.num_windows, len(test)), replace=False))
    truth = (test[pick].astype(np.float64) + 1) / 2  # (N, L, K), [0, 1] in the training scale
    train_unit = dataset.unit_windows.astype(np.float64)
    fit = train_unit[rng.choice(len(train_unit), min(SEASON_FIT_WINDOWS, len(train_unit)),
                                replace=False)]
    column_means = train_unit.mean(axis=(0, 1))
    task_list = tasks(truth.shape, [float(r) for r in FLAGS.rates],
                      [float(h) for h in FLAGS.horizons], FLAGS.seed)
    settings_list = [parse_setting(s) for s in FLAGS.settings] or [{}]

    rows = []  # (task, method, scores, seconds per window or None)
    for name, mask in task_list:
        held_out = ~mask
        if name.startswith("impute"):
            rows.append((name, "linear interpolation",
                         scores(truth, held_out, linear_interpolation(truth, mask, column_means)),
                         None))
        else:
            context = int(mask[0, :, 0].sum())
            last = seasonal_naive(truth, context, 1)
            rows.append((name, "last value", scores(truth, held_out, last), None))
            period = best_period(fit, context)
            rows.append((name, f"seasonal naive (m = {period})",
                         scores(truth, held_out, seasonal_naive(truth, context, period)), None))

    compile_s = {}
    for overrides in settings_list:
        settings = conditional.condition_settings(config, num_samples=FLAGS.num_samples,
                                                  seed=FLAGS.seed, **overrides)
        regression = settings.correction == "regression"
        label = (f"ST-Diff {settings.method} {settings.num_steps} steps, {settings.jumps} "
                 f"jump(s){'' if settings.renoise else ', no renoise'}"
                 f"{f', regression (ridge {settings.ridge:g})' if regression else ''}")
        num_rows = truth.shape[0] * settings.num_samples
        with settings.unlocked():
            settings.chunk_size = settings.chunk_size or generate.auto_chunk_size(
                mesh, tm.model, tm.params, tm.video_shape, num_rows)
        sampler = conditional.compile_conditional_sampler(tm, settings, mesh, settings.chunk_size,
                                                          windows=dataset.windows)
        start = time.perf_counter()
        observed = np.zeros((settings.chunk_size, *truth.shape[1:]), np.float32)
        sampler = sampler.lower(tm.params, jax.random.PRNGKey(0), 0, observed,
                                observed.astype(bool)).compile()
        compile_s[label] = time.perf_counter() - start
        for name, mask in task_list:
            observed = np.where(mask, 2 * truth - 1, 0.0).astype(np.float32)
            start, cpu = time.perf_counter(), time.process_time()
            series = conditional.sample_windows(tm, observed, mask, settings, mesh,
                                                progress=None, sampler=sampler)
            seconds = ((time.perf_counter() - start) / truth.shape[0],
                       (time.process_time() - cpu) / truth.shape[0])
            samples = (series.astype(np.float64) + 1) / 2  # (N, S, L, K) in [0, 1]
            row = scores(truth, ~mask, np.median(samples, axis=1), samples)
            if FLAGS.per_column:
                row["columns"] = column_scores(truth, ~mask, samples)
            rows.append((name, label, row, seconds))
            logging.info("%s, %s: %s, %.3f s (%.3f CPU s) per window", name, label, row,
                         *seconds)

    print(f"\n{config.name}, step {tm.step}: {truth.shape[0]} held-out windows, "
          f"{FLAGS.num_samples} samples each, on {mesh.size} {jax.devices()[0].platform} "
          f"device(s); compile {', '.join(f'{v:.0f} s' for v in compile_s.values())}")
    print("| task | method | MSE | MAE | CRPS | 90% coverage | s / window (wall, CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    task_names = [n for n, _ in task_list]
    rows.sort(key=lambda r: task_names.index(r[0]))  # stable: baselines, then the settings
    for name, method, s, seconds in rows:
        coverage = "–" if s["coverage90"] is None else f"{s['coverage90']:.3f}"
        cost = "–" if seconds is None else f"{seconds[0]:.3f}, {seconds[1]:.3f}"
        print(f"| {name} | {method} | {s['mse']:.3g} | {s['mae']:.3g} | {s['crps']:.3g} | "
              f"{coverage} | {cost} |")
    if FLAGS.per_column:
        print_columns(rows, dataset.column_names)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"config": config.name, "step": tm.step, "num_windows": truth.shape[0],
                       "num_samples": FLAGS.num_samples, "compile_s": compile_s,
                       "rows": [{"task": n, "method": m, **s, "seconds_per_window": c and c[0],
                                 "cpu_seconds_per_window": c and c[1]}
                                for n, m, s, c in rows]}, f, indent=2)


def print_columns(rows, column_names):
    """The per-column table of the model rows: coverage / spread ratio in each column."""
    print("\nPer column: 90% coverage / spread ratio (IQR / 1.349 over 1.2533 MAE; 1 calibrated)")
    print(f"| task | method | {' | '.join(column_names)} |")
    print(f"| --- | --- |{' --- |' * len(column_names)}")
    for name, method, s, _ in rows:
        if "columns" in s:
            cells = " | ".join(f"{c['coverage90']:.3f} / {c['spread_ratio']:.2f}"
                               for c in s["columns"])
            print(f"| {name} | {method} | {cells} |")


if __name__ == "__main__":
    app.run(main)
