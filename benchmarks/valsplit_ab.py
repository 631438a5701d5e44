"""The table of the validation-split A/B (benchmarks/valsplit_ab.sh) from its workdirs and logs.

    python benchmarks/valsplit_ab.py /work/runs

For each run OUT_DIR/valsplit_{old,new}_s{0,1}: the four scores of metrics.json (mean +- the 95%
interval over the repeats), the step whose parameters were sampled (the log's "Loaded the ...
parameters of step N") against the last step trained, the validation loss at its first, lowest
and last evaluation (metrics.jsonl), and the process CPU seconds (user + sys) and wall seconds
of the whole command (/usr/bin/time's last line of the log).
"""

import json
import pathlib
import re
import sys

METRICS = ("context_fid", "correlational", "discriminative", "predictive")
RUNS = [f"valsplit_{side}_s{seed}" for seed in (0, 1) for side in ("old", "new")]


def validation_curve(workdir):
    """[(step, val_loss)] of the run's evaluations, and its last training step."""
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    curve = [(row["step"], row["val_loss"]) for row in rows if "val_loss" in row]
    return curve, max(row["step"] for row in rows)


def describe_curve(curve):
    (first_step, first), (last_step, last) = curve[0], curve[-1]
    best_step, best = min(curve, key=lambda point: point[1])
    return (f"{first:.4f}@{first_step} -> min {best:.4f}@{best_step} -> {last:.4f}@{last_step} "
            f"(last {100 * (last / best - 1):+.1f}% over min)")


def row(out, run):
    workdir = out / run
    scores = json.loads((workdir / "metrics.json").read_text())
    log = (out / f"{run}.log").read_text()
    loaded = re.search(r"Loaded the (\w+) parameters of step (\d+)", log)
    user, sys_s, wall = map(float, re.findall(r"user ([\d.]+) sys ([\d.]+) wall ([\d.]+)",
                                              log)[-1])
    curve, last_step = validation_curve(workdir)
    cells = [f"{scores[m]['mean']:.3f} ± {scores[m]['ci95']:.3f}" for m in METRICS]
    return "| " + " | ".join([run, *cells, f"{loaded.group(2)} of {last_step}",
                              describe_curve(curve), f"{user + sys_s:.0f}",
                              f"{wall:.0f}"]) + " |"


def main(out):
    print("| run | " + " | ".join(METRICS) + " | sampled step | validation loss | CPU s | wall s |")
    print("|" + " --- |" * (len(METRICS) + 5))
    for run in RUNS:
        if (out / run / "metrics.json").exists():
            print(row(out, run))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
