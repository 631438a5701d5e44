"""The table of the validation-split A/B (benchmarks/valsplit_ab.sh) from its workdirs and logs.

    python benchmarks/valsplit_ab.py /work/runs

For each run OUT_DIR/valsplit_{old,new}_s{0,1}: the four scores of metrics.json (mean +- the 95%
interval over the repeats), the step whose parameters were sampled (the log's "Loaded the ...
parameters of step N") against the last step trained, the validation loss at its first, lowest
and last evaluation and the training's process CPU seconds (metrics.jsonl), and the CPU seconds
(user + sys) and wall seconds of the whole command, sampling and scoring included
(/usr/bin/time's last line of the log).
"""

import json
import pathlib
import re
import sys

METRICS = ("context_fid", "correlational", "discriminative", "predictive")
RUNS = [f"valsplit_{side}_s{seed}" for seed in (0, 1) for side in ("old", "new")]


def training_log(workdir):
    """([(step, val_loss)] of the run's evaluations, its last step, its training CPU s)."""
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    curve = [(row["step"], row["val_loss"]) for row in rows if "val_loss" in row]
    cpu = max(row["train_cpu_s"] for row in rows if "train_cpu_s" in row)
    return curve, max(row["step"] for row in rows), cpu


def describe_curve(curve):
    (first_step, first), (last_step, last) = curve[0], curve[-1]
    best_step, best = min(curve, key=lambda point: point[1])
    rises = sum(b > a for (_, a), (_, b) in zip(curve, curve[1:]))
    return (f"{first:.4f}@{first_step} -> min {best:.4f}@{best_step} -> {last:.4f}@{last_step} "
            f"(last {100 * (last / best - 1):+.1f}% over min; {rises} of {len(curve) - 1} "
            f"evaluations rose)")


def row(out, run):
    workdir = out / run
    scores = json.loads((workdir / "metrics.json").read_text())
    log = (out / f"{run}.log").read_text()
    loaded = re.search(r"Loaded the (\w+) parameters of step (\d+)", log)
    user, sys_s, wall = map(float, re.findall(r"user ([\d.]+) sys ([\d.]+) wall ([\d.]+)",
                                              log)[-1])
    curve, last_step, train_cpu = training_log(workdir)
    cells = [f"{scores[m]['mean']:.3f} ± {scores[m]['ci95']:.3f}" for m in METRICS]
    return "| " + " | ".join([run, *cells, f"{loaded.group(2)} of {last_step}",
                              describe_curve(curve), f"{train_cpu:.0f}",
                              f"{user + sys_s:.0f}", f"{wall:.0f}"]) + " |"


def main(out):
    print("| run | " + " | ".join(METRICS) + " | sampled step | validation loss | "
          "training CPU s | command CPU s | command wall s |")
    print("|" + " --- |" * (len(METRICS) + 6))
    for run in RUNS:
        if (out / run / "metrics.json").exists():
            print(row(out, run))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
