"""Benchmark table in the layout of the paper's Table 1: our scores beside the paper's.

    python benchmarks/table1.py --configs=configs/sines.py:cpu,configs/stocks.py:cpu,configs/etth.py:cpu

Each config is trained (or resumed) in WORKDIR_ROOT/<config name>, then as many series as the data
set has windows are generated and scored with the four metrics (5 repeats, mean +- 95% t-interval),
exactly as `python -m stdiff_jax.main` does. Finished stages are reused: a workdir with samples is
not resampled and one with metrics.json is not rescored unless --rescore. Prints the table and the
wall and process CPU seconds of each stage (the training's CPU seconds as its checkpoints recorded
them, summed over resumed runs); --from_workdirs only reads existing workdirs.
"""

import json
import pathlib
import platform
import sys
import time

import jax
from absl import app, flags, logging

# configs/ is a folder of this repository, not an installed package: its config files import
# `configs.base`, so the repository root goes on the path of this script.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from configs import base  # noqa: E402
from stdiff_jax import checkpoint, modes, train

flags.DEFINE_list("configs", ["configs/sines.py:cpu", "configs/stocks.py:cpu",
                              "configs/etth.py:cpu"], "Config specs, comma-separated.")
flags.DEFINE_string("workdir_root", "workdirs", "Parent of the runs' workdirs.")
flags.DEFINE_bool("from_workdirs", False, "Only read existing workdirs' metrics.json.")
flags.DEFINE_bool("rescore", False, "Score again even when metrics.json exists.")
FLAGS = flags.FLAGS

METRICS = ("context_fid", "correlational", "discriminative", "predictive")
TITLES = {"context_fid": "Context-FID", "correlational": "Correlational",
          "discriminative": "Discriminative", "predictive": "Predictive"}
# The paper's Table 1 (L = 24) and Table 2 (ETTh, L = 64/128/256): (mean, 95% interval).
PAPER = {
    "ST-Diff": {
        "sines_L24": dict(context_fid=(.004, .001), correlational=(.015, .005),
                          discriminative=(.004, .005), predictive=(.186, .004)),
        "stocks_L24": dict(context_fid=(.040, .008), correlational=(.003, .003),
                           discriminative=(.015, .021), predictive=(.033, .000)),
        "etth_L24": dict(context_fid=(.050, .008), correlational=(.047, .006),
                         discriminative=(.005, .005), predictive=(.119, .002)),
        "mujoco_L24": dict(context_fid=(.010, .001), correlational=(.199, .017),
                           discriminative=(.007, .005), predictive=(.007, .000)),
        "energy_L24": dict(context_fid=(.025, .002), correlational=(.592, .013),
                           discriminative=(.009, .013), predictive=(.211, .000)),
        "fmri_L24": dict(context_fid=(.099, .007), correlational=(1.661, .059),
                         discriminative=(.021, .014), predictive=(.077, .000)),
        "etth_L64": dict(context_fid=(.031, .010), correlational=(.055, .015),
                         discriminative=(.030, .020), predictive=(.071, .000)),
        "etth_L128": dict(context_fid=(.471, .003), correlational=(.036, .009),
                          discriminative=(.032, .021), predictive=(.065, .000)),
        "etth_L256": dict(context_fid=(.341, .045), correlational=(.044, .019),
                          discriminative=(.029, .042), predictive=(.074, .001)),
    },
    "Diffusion-TS": {
        "sines_L24": dict(context_fid=(.006, .000), correlational=(.015, .004),
                          discriminative=(.006, .007), predictive=(.093, .000)),
        "stocks_L24": dict(context_fid=(.147, .025), correlational=(.004, .001),
                           discriminative=(.067, .015), predictive=(.036, .000)),
        "etth_L24": dict(context_fid=(.116, .010), correlational=(.049, .008),
                         discriminative=(.061, .009), predictive=(.119, .002)),
        "mujoco_L24": dict(context_fid=(.013, .001), correlational=(.193, .027),
                           discriminative=(.008, .002), predictive=(.007, .000)),
        "energy_L24": dict(context_fid=(.089, .024), correlational=(.856, .147),
                           discriminative=(.122, .003), predictive=(.250, .000)),
        "fmri_L24": dict(context_fid=(.105, .006), correlational=(1.411, .042),
                         discriminative=(.167, .023), predictive=(.099, .000)),
        "etth_L64": dict(context_fid=(.631, .058), correlational=(.082, .005),
                         discriminative=(.106, .048), predictive=(.116, .000)),
        "etth_L128": dict(context_fid=(.787, .062), correlational=(.088, .005),
                          discriminative=(.144, .060), predictive=(.110, .003)),
        "etth_L256": dict(context_fid=(.423, .038), correlational=(.064, .007),
                          discriminative=(.060, .030), predictive=(.341, .045)),
    },
}


def timed(times, stage, fn, *args):
    """Runs fn(*args), recording its (wall, process CPU) seconds as times[stage]."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    times[stage] = (time.perf_counter() - wall, time.process_time() - cpu)
    return out


def run(config, workdir, rescore):
    """Trains, samples and scores one config -> (metrics dict, {stage: (wall s, CPU s)}).

    The training's CPU seconds are those its checkpoints recorded, summed over every run that
    resumed it; its wall seconds are this call's.
    """
    times = {}
    outcome = timed(times, "train", train.train_and_evaluate, config, workdir)
    times["train"] = (times["train"][0], outcome["train_cpu_s"])
    if not (workdir / modes.SAMPLES_UNIT).exists():
        timed(times, "sample", modes.sample_to_workdir, config, workdir)
    if rescore or not (workdir / modes.METRICS).exists():
        timed(times, "evaluate", modes.evaluate_workdir, config, workdir)
    return json.loads((workdir / modes.METRICS).read_text()), times


def format_times(stage_times):
    return ", ".join(f"{stage} {wall:.0f} s ({cpu:.0f} CPU s)"
                     for stage, (wall, cpu) in stage_times.items())


def cell(value):
    mean, ci = value
    return f"{mean:.3f}" if ci is None else f"{mean:.3f}±{ci:.3f}"


def memorisation_cell(scores):
    """'ratio / share' of a run's memorisation check; 'n/a' without a held-out reference, '-' for
    a metrics.json older than the check."""
    check = scores.get("memorisation")
    if check is None:
        return "-"
    if not check["available"]:
        return "n/a"
    ratio = "-" if check["median_ratio"] is None else f"{check['median_ratio']:.2f}"
    return f"{ratio} / {100 * check['share_closer']:.1f}%"


def table(results):
    """Markdown table: one row per (metric, method), one column per run, and our memorisation
    check (median nearest-training distance, generated / held-out, and the share of generated
    windows closer than the held-out 1st percentile)."""
    names = list(results)
    keys = ["_".join(name.split("_")[:2]) for name in names]  # etth_L24_cpu -> etth_L24
    lines = ["| metric | method | " + " | ".join(names) + " |",
             "| --- | --- |" + " --- |" * len(names)]
    for metric in METRICS:
        ours = [cell((results[n][metric]["mean"], results[n][metric]["ci95"]))
                if metric in results[n] else "-" for n in names]
        lines.append(f"| {TITLES[metric]} | stdiff_jax (ours) | " + " | ".join(ours) + " |")
        for method, numbers in PAPER.items():
            paper = [cell(numbers[k][metric]) if k in numbers else "-" for k in keys]
            lines.append(f"| | {method} (paper) | " + " | ".join(paper) + " |")
    lines.append("| Memorisation (ratio / share) | stdiff_jax (ours) | "
                 + " | ".join(memorisation_cell(results[n]) for n in names) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(checkpoint.QuietOrbax())
    root = pathlib.Path(FLAGS.workdir_root)
    results, times = {}, {}
    for spec in FLAGS.configs:
        config = base.from_spec(spec)
        workdir = root / config.name
        if FLAGS.from_workdirs:
            results[config.name] = json.loads((workdir / modes.METRICS).read_text())
            continue
        results[config.name], times[config.name] = run(config, workdir, FLAGS.rescore)
        print(f"{config.name}: {format_times(times[config.name])}", flush=True)
    print(f"\nMachine: {platform.processor() or platform.machine()}, {jax.device_count()} "
          f"{jax.devices()[0].platform} device(s), jax {jax.__version__}.")
    for name, stage_times in times.items():
        print(f"{name}: {format_times(stage_times)}")
    print()
    print(table(results))


if __name__ == "__main__":
    app.run(main)
