"""Sample quality at a fixed training budget: config variants A/B over data sets and seeds.

    python benchmarks/quality.py --datasets=stocks,etth --seeds=0,1 --repeats=3 \
        --variants pooled=cpu+video.normalizer=pooled frame=cpu+video.normalizer=frame \
        --out=/tmp/quality.json

A variant is NAME=VARIANTS[+key=value...]: the config variants of `configs/<dataset>.py`
(e.g. `cpu` or `seq_len=64,cpu`) and dotted overrides, as on the command line of stdiff_jax.main.
For every (variant, data set, seed) the config's training seed and data order are the seed's;
the run trains for config.train.num_steps steps (the budget is counted in steps and reported in
the training's process CPU seconds, which other processes on a shared machine do not inflate),
draws series with the sampler of --method / --steps (DPM-Solver++(2M), 20 steps, unless told
otherwise), and scores them with the four metrics, --repeats times each. Variants that differ only
in sampling settings share one training (workdirs are keyed by everything but config.sample
and config.eval), and a finished training is reused. The CPU seconds include
data loading, statistics and compilation (with JAX_COMPILATION_CACHE_DIR set, a warm cache's).

Prints one row per (variant, data set): training steps, training CPU seconds (mean over seeds),
and each metric's mean and 95% t-interval over all seeds x repeats, plus two looks at the samples
beside the real windows (mean of window means, mean within-window std). Writes rows and per-run
results as JSON (`--from_results DIR...` tabulates the finished runs of earlier invocations).
Each run is a child process (`--jobs` of them at once), so runs do not share memory.
"""

import argparse
import ast
import concurrent.futures
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
# configs/ is a folder of this repository, not an installed package: the parent, which keys
# workdirs by the configs its children (PYTHONPATH=REPO) train with, imports them from here too.
sys.path.insert(0, str(REPO))
METRICS = ("context_fid", "correlational", "discriminative", "predictive")
SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


# ------------------------------------------------------------------------------------------------
# Configs of a variant.
# ------------------------------------------------------------------------------------------------
def parse_variant(text):
    """'new=cpu+video.normalizer=frame' -> ('new', 'cpu', {'video.normalizer': 'frame'})."""
    name, eq, rest = text.partition("=")
    if not eq or not name:
        raise ValueError(f"A variant is NAME=VARIANTS[+key=value...], got {text!r}.")
    arg, *overrides = rest.split("+")
    return name, arg, dict(o.split("=", 1) for o in overrides)


def _value(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string such as frame or dpmpp_2m


def make_run_config(dataset, arg, overrides, seed, method, steps, repeats, num_samples):
    from configs import base

    config = base.from_spec(f"configs/{dataset}.py:{arg}")
    settings = {"train.seed": seed, "data.seed": seed, "sample.method": method,
                "sample.num_steps": steps, "sample.num_samples": num_samples,
                "eval.repeats": repeats, "eval.plots": False}
    for key, value in {**settings, **{k: _value(v) for k, v in overrides.items()}}.items():
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        current = node[leaf]
        node[leaf] = float(value) if isinstance(current, float) else value
    return config


def training_key(config):
    """A hash of every setting that changes the trained model (all but sample and eval)."""
    d = json.loads(config.to_json_best_effort(sort_keys=True))
    d.pop("sample"), d.pop("eval")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


# ------------------------------------------------------------------------------------------------
# One run (in a child process): train or reuse, sample, score.
# ------------------------------------------------------------------------------------------------
def sample_look(unit):
    """Mean of the window means and mean within-window std of (N, L, K) [0, 1] windows."""
    return {"window_mean": float(unit.mean(1).mean()), "within_std": float(unit.std(1).mean())}


def run_one(spec):
    from absl import logging

    from stdiff_jax import checkpoint, modes, train
    from stdiff_jax.data import dataset_of

    logging.get_absl_handler().addFilter(checkpoint.QuietOrbax())
    workdir = pathlib.Path(spec["workdir"])
    cpu_file = workdir / "train_cpu.json"
    configs = [make_run_config(spec["dataset"], v["arg"], v["overrides"], spec["seed"],
                               **spec["sampling"]) for v in spec["variants"]]
    if not cpu_file.exists():  # the training's CPU seconds add up over resumed runs
        wall = time.perf_counter()
        outcome = train.train_and_evaluate(configs[0], workdir)
        cpu_file.write_text(json.dumps({"cpu_s": outcome["train_cpu_s"],
                                        "wall_s": time.perf_counter() - wall, **outcome}))
    trained = json.loads(cpu_file.read_text())
    real = dataset_of(configs[0].data).unit_windows
    results = []
    for variant, config in zip(spec["variants"], configs):
        start = time.perf_counter()
        fake = modes.sample_to_workdir(config, workdir)
        sample_s = time.perf_counter() - start
        scores = modes.evaluate_workdir(config, workdir, real_unit=real)
        results.append({"variant": variant["name"], "dataset": spec["dataset"],
                        "seed": spec["seed"], "steps": trained["step"],
                        "train_cpu_s": trained["cpu_s"], "sample_s": sample_s,
                        "outside_unit": float(np.mean((fake < 0) | (fake > 1))),
                        "fake": sample_look(fake), "real": sample_look(real),
                        "scores": {m: s["values"] for m, s in scores.items() if m in METRICS}})
    return results


# ------------------------------------------------------------------------------------------------
# Scheduling and the table.
# ------------------------------------------------------------------------------------------------
def plan_jobs(args):
    """One job per (data set, training key, seed), with the variants that share that training."""
    jobs = {}
    sampling = dict(method=args.method, steps=args.steps, repeats=args.repeats,
                    num_samples=args.num_samples)
    for dataset in args.datasets.split(","):
        for text in args.variants:
            name, arg, overrides = parse_variant(text)
            for seed in map(int, args.seeds.split(",")):
                config = make_run_config(dataset, arg, overrides, seed, **sampling)
                key = (dataset, training_key(config), seed)
                job = jobs.setdefault(key, {
                    "dataset": dataset, "seed": seed, "sampling": sampling, "variants": [],
                    "workdir": str(pathlib.Path(args.workroot) / f"{dataset}_{key[1]}_s{seed}")})
                job["variants"].append({"name": name, "arg": arg, "overrides": overrides})
    return sorted(jobs.values(), key=lambda job: job["seed"])  # every variant's first seed first


def run_child(job, threads, log_dir):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if threads == 1:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {SINGLE_THREAD}".strip()
    name = pathlib.Path(job["workdir"]).name
    out = pathlib.Path(log_dir) / f"{name}.result.json"
    with open(pathlib.Path(log_dir) / f"{name}.log", "w") as log:
        subprocess.run([sys.executable, __file__, "--child", json.dumps(job), "--child_out",
                        str(out)], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                       check=True)
    return json.loads(out.read_text())


def summarize(values):
    import scipy.stats

    values = np.asarray(values, np.float64)
    ci = float(scipy.stats.sem(values) * scipy.stats.t.ppf(0.975, len(values) - 1))
    return {"mean": float(values.mean()), "ci95": ci, "n": len(values)}


def table_rows(results):
    rows = {}
    for r in results:
        rows.setdefault((r["variant"], r["dataset"]), []).append(r)
    out = []
    for (variant, dataset), runs in rows.items():
        row = {"variant": variant, "dataset": dataset, "seeds": [r["seed"] for r in runs],
               "steps": runs[0]["steps"],
               "train_cpu_s": float(np.mean([r["train_cpu_s"] for r in runs])),
               "window_mean": float(np.mean([r["fake"]["window_mean"] for r in runs])),
               "within_std": float(np.mean([r["fake"]["within_std"] for r in runs])),
               "real_window_mean": runs[0]["real"]["window_mean"],
               "real_within_std": runs[0]["real"]["within_std"]}
        for m in METRICS:
            values = [v for r in runs for v in r["scores"].get(m, [])]
            if values:
                row[m] = summarize(values)
        out.append(row)
    return out


def print_table(rows):
    head = (f"{'variant':<14}{'data':<8}{'steps':>7}{'CPU s':>8}"
            + "".join(f"{m:>18}" for m in METRICS) + f"{'mean':>13}{'std':>13}")
    print(head)
    for r in rows:
        scores = "".join(f"{r[m]['mean']:>10.3f}±{r[m]['ci95']:<7.3f}" if m in r else f"{'-':>18}"
                         for m in METRICS)
        print(f"{r['variant']:<14}{r['dataset']:<8}{r['steps']:>7}{r['train_cpu_s']:>8.0f}{scores}"
              f"{r['window_mean']:>6.3f}/{r['real_window_mean']:.3f}"
              f"{r['within_std']:>6.3f}/{r['real_within_std']:.3f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="stocks")
    parser.add_argument("--variants", nargs="+", default=["cpu=cpu"])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--method", default="dpmpp_2m")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="metric repeats per seed")
    parser.add_argument("--num_samples", type=int, default=0, help="0: as many as windows")
    parser.add_argument("--workroot", default="workdirs/quality")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (child processes)")
    parser.add_argument("--threads", type=int, default=0,
                        help="1: each child runs XLA single-threaded; 0: XLA's default")
    parser.add_argument("--out", default=None, help="JSON file for rows and per-run results")
    parser.add_argument("--from_results", nargs="+", metavar="DIR",
                        help="only tabulate the runs finished in these workroots")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child_out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        pathlib.Path(args.child_out).write_text(json.dumps(run_one(json.loads(args.child))))
        return
    if args.from_results:
        results = [r for d in args.from_results
                   for path in sorted(pathlib.Path(d).glob("*.result.json"))
                   for r in json.loads(path.read_text())]
        report(table_rows(results), results, args)
        return
    jobs = plan_jobs(args)
    pathlib.Path(args.workroot).mkdir(parents=True, exist_ok=True)
    print(f"{len(jobs)} trainings; logs in {args.workroot}", flush=True)
    results = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_child, job, args.threads, args.workroot) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            for r in future.result():
                results.append(r)
                print(f"done: {r['variant']} {r['dataset']} seed {r['seed']}: train "
                      f"{r['train_cpu_s']:.0f} CPU s, " + ", ".join(
                          f"{m} {np.mean(v):.3f}" for m, v in r["scores"].items()), flush=True)
    report(table_rows(results), results, args)


def report(rows, results, args):
    print_table(rows)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows,
                                                      "runs": results}, indent=1))


if __name__ == "__main__":
    main()
