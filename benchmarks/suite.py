"""The generalisation suite: every suite set trained, sampled and scored, beside its floor.

    python benchmarks/suite.py                 # the five suite sets at `cpu`
    python benchmarks/suite.py --floor_only    # only the floors (no training)
    python benchmarks/suite.py --configs=configs/suite_regimes.py:cpu,configs/etth.py:cpu

The sets are generated (stdiff_jax/data/suite.py says which structure each one tests; the
stand-ins and the tuned sets take --configs too). Each config goes through `table1.run`, the path
of benchmarks/table1.py and of the command line: trained (or resumed) in WORKDIR_ROOT/<config
name>, as many series generated as the set has windows, the four metrics scored with the config's
5 repeats, the memorisation check beside them; finished stages are reused (--rescore scores
again, --from_workdirs only reads metrics.json). The floor of a metric is its score for two
disjoint random halves of the real windows against each other (benchmarks/metrics.py's
`halves`), with the same repeats: what a perfect generator would get with this many windows. It
is kept in WORKDIR_ROOT/floors/<set>_L<L>.json and reused unless --rescore.

Prints one row per set: each metric's mean +- 95% interval, its floor, and the ratio of the two;
and the training's CPU seconds. Writes per set a PNG of the density of the window means (each
channel's mean over a window; up to 8 channels), the real windows against the generated ones, or
the real ones alone with --floor_only, into --plots_dir.
"""

import json
import pathlib

import numpy as np
import scipy.stats
from absl import app, flags, logging

import metrics as metrics_benchmark  # benchmarks/metrics.py
import table1  # its flags --configs, --workdir_root, --rescore and --from_workdirs apply here
from configs import base
from stdiff_jax import checkpoint, modes
from stdiff_jax.data import dataset_of, suite
from stdiff_jax.metrics import evaluate
from stdiff_jax.metrics import plots

flags.DEFINE_bool("floor_only", False, "Only compute the floors (and the real sets' plots).")
flags.DEFINE_string("plots_dir", None, "Where the PNGs go; default WORKDIR_ROOT/suite_plots.")
FLAGS = flags.FLAGS
FLAGS.set_default("configs", [f"configs/{name}.py:cpu" for name in suite.GENERATORS])

FLOOR_SEED = 0  # of the halves' split and of the metrics' repeats
MAX_CHANNELS = 8  # plotted per set
MAX_WINDOWS = 4000  # drawn per set for a density


def floor(config, root, rescore):
    """The metrics of two halves of the real windows, computed once per (set, L) and kept."""
    path = root / "floors" / f"{config.data.name}_L{config.data.seq_len}.json"
    if path.exists() and not rescore:
        return json.loads(path.read_text())
    real, fake = metrics_benchmark.halves(config.data.name, config.data.seq_len,
                                          config.data.root, FLOOR_SEED)
    scores = evaluate(real, fake, repeats=config.eval.repeats, seed=FLOOR_SEED,
                      metrics=table1.METRICS)
    scores = {name: scores[name] for name in table1.METRICS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(checkpoint.to_json(scores), indent=2) + "\n")
    return scores


def save_window_mean_density(path, real, fake, names):
    """A PNG of each channel's density of window means: real (and generated, when given)."""
    figure_cls = plots._require("matplotlib.figure").Figure
    rng = np.random.default_rng(0)
    channels = min(real.shape[-1], MAX_CHANNELS)
    sets = [(windows[rng.permutation(len(windows))[:MAX_WINDOWS]].mean(axis=1), style, line)
            for windows, style, line in ((real, plots.REAL_STYLE, "-"),
                                         (fake, plots.FAKE_STYLE, "--")) if windows is not None]
    fig, axes = plots._channel_grid(figure_cls, channels)
    for k, ax in enumerate(axes[:channels]):
        # Each channel's own range: min-max scaling squeezes a heavy-tailed one into a sliver.
        both = np.concatenate([means[:, k] for means, _, _ in sets])
        grid = np.linspace(both.min(), both.max(), 256)
        for means, style, line in sets:
            if np.ptp(means[:, k]) > 0:  # a constant channel has no density to estimate
                ax.plot(grid, scipy.stats.gaussian_kde(means[:, k])(grid), linestyle=line,
                        **style)
        ax.set_title(names[k])
        ax.set_xlabel("window mean")
    axes[0].legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def cell(score, floor_score=None):
    """'mean+-ci', with ' (floor F, xR)' when a floor is given; four decimals, as some floors
    are below 0.001."""
    ci = "" if score["ci95"] is None else f"±{score['ci95']:.4f}"
    if floor_score is None:
        return f"{score['mean']:.4f}{ci}"
    ratio = score["mean"] / floor_score["mean"] if floor_score["mean"] > 0 else float("inf")
    return f"{score['mean']:.4f}{ci} (floor {floor_score['mean']:.4f}, x{ratio:.1f})"


def suite_table(rows):
    """Markdown: per set the metrics (with floor and ratio), or the floors alone (said above the
    table)."""
    titles = [table1.TITLES[m] for m in table1.METRICS]
    has_model = any(row["scores"] for row in rows.values())
    extra = ["memorisation (ratio / share)", "training CPU s"] if has_model else []
    lines = [] if has_model else ["Floors: two halves of the real windows against each other.", ""]
    lines += ["| set | " + " | ".join(titles + extra) + " |",
             "| --- |" + " --- |" * (len(titles) + len(extra))]
    for name, row in rows.items():
        if row["scores"]:
            cells = [cell(row["scores"][m], row["floor"][m]) if m in row["scores"] else "-"
                     for m in table1.METRICS]
            cells += [table1.memorisation_cell(row["scores"]),
                      f"{row['train_cpu_s']:.0f}" if row["train_cpu_s"] is not None else "-"]
        else:
            cells = [cell(row["floor"][m]) for m in table1.METRICS] + ["-"] * len(extra)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(checkpoint.QuietOrbax())
    root = pathlib.Path(FLAGS.workdir_root)
    plots_dir = pathlib.Path(FLAGS.plots_dir or root / "suite_plots")
    rows = {}
    for spec in FLAGS.configs:
        config = base.from_spec(spec)
        workdir = root / config.name
        row = {"floor": floor(config, root, FLAGS.rescore), "scores": None, "train_cpu_s": None}
        fake = None
        if not FLAGS.floor_only:
            if FLAGS.from_workdirs:
                row["scores"] = json.loads((workdir / modes.METRICS).read_text())
            else:
                row["scores"], times = table1.run(config, workdir, FLAGS.rescore)
                row["train_cpu_s"] = times["train"][1]
                print(f"{config.name}: {table1.format_times(times)}", flush=True)
            fake = np.clip(np.load(workdir / modes.SAMPLES_UNIT), 0, 1)
        dataset = dataset_of(config.data)
        png = save_window_mean_density(plots_dir / f"{config.name}_window_means.png",
                                       dataset.unit_windows, fake, dataset.column_names)
        print(f"{config.name}: {png}", flush=True)
        rows[config.name] = row
    print()
    print(suite_table(rows))


if __name__ == "__main__":
    app.run(main)
