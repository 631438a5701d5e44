"""Covariate patches against one covariate a token, at equal CPU (issue 24, item 6).

    python benchmarks/cov_patch_ab.py --dry_run  # every arm's plan: steps, batch, predicted CPU
    python benchmarks/cov_patch_ab.py            # trains, samples and scores every arm

Arms: each config of --configs (default MuJoCo, K = 14, and the energy stand-in, K = 28, both
`cpu`) x each model.patch_cov of --patch_cov x each train.seed of --seeds. Equal CPU means the
same budget (the variant's `train.budget_seconds`, 900 process CPU s for `cpu`): budget.plan
prices each network with the cost model and gives the cheaper one more training samples, as
more steps or, by its batch rule, a larger batch (--batch_size=N fixes the batch of every arm,
so that the arms differ in their steps only). An arm is what

    python -m stdiff_jax.main --config=SPEC --config.model.patch_cov=P --config.train.seed=S \\
        --workdir=WORKDIR_ROOT/<config name>_pc<P>_seed<S>

does (train, sample as many series as the data has windows, score with 5 repeats), run here
in-process with table1.py's `run`, whose flags this script shares (--configs, --workdir_root,
--rescore, --from_workdirs): finished stages are reused, so an interrupted A/B resumes.
--dry_run loads each data set and prints the line the training would log first
(`budget.Plan.describe`), without training. With the defaults the A/B is 12 trainings of ~900
CPU s plus sampling and scoring. Prints one row per arm: the plan, the training's CPU seconds
(as its checkpoints recorded them) and each metric as the mean over seeds with every seed's value.
"""

import json
import pathlib
import sys

import numpy as np
from absl import app, flags, logging

import table1  # the script's folder is on the path; table1 puts the repository root there too
from configs import base  # noqa: E402
from stdiff_jax import budget, checkpoint, modes, saved_model  # noqa: E402
from stdiff_jax.data import dataset_of  # noqa: E402

flags.DEFINE_list("patch_cov", ["1", "2", "4"], "model.patch_cov of the arms (1: the baseline).")
flags.DEFINE_list("seeds", ["0", "1"], "train.seed of the arms.")
flags.DEFINE_integer("batch_size", 0, "Batch of every arm (0: the budget's rule chooses).")
flags.DEFINE_bool("dry_run", False, "Print every arm's plan without training.")
FLAGS = flags.FLAGS
FLAGS.set_default("configs", ["configs/mujoco.py:cpu", "configs/energy_standin.py:cpu"])
FLAGS.set_default("workdir_root", "workdirs/cov_patch_ab")


def arm_config(spec, patch_cov, seed):
    """The config of one arm: `spec` with model.patch_cov, train.seed and --batch_size set."""
    config = base.from_spec(spec)
    config.model.patch_cov = patch_cov
    config.train.seed = seed
    if FLAGS.batch_size:
        config.train.batch_size = FLAGS.batch_size
    return config


def arm_name(config):
    return f"{config.name}_pc{config.model.patch_cov}_seed{config.train.seed}"


def print_plans(specs, patch_covs):
    """Each (config, patch_cov)'s plan: the training's first log line (the seed changes nothing)."""
    for spec in specs:
        dataset = dataset_of(base.from_spec(spec).data)
        for patch_cov in patch_covs:
            config = arm_config(spec, patch_cov, 0)
            plan = budget.plan(config, dataset.windows.shape[1:], len(dataset.windows))
            print(f"{config.name} patch_cov={patch_cov}: {plan.describe()}", flush=True)


def arm_result(config, workdir):
    """(metrics dict, train CPU s or None, steps x batch) of one arm."""
    if FLAGS.from_workdirs:
        metrics, train_cpu = json.loads((workdir / modes.METRICS).read_text()), None
    else:
        metrics, times = table1.run(config, workdir, FLAGS.rescore)
        train_cpu = times["train"][1]
        print(f"{arm_name(config)}: {table1.format_times(times)}", flush=True)
    tc = saved_model.load_config(workdir).train
    return metrics, train_cpu, f"{tc.num_steps:,} x {tc.batch_size}"


def seeds_cell(values):
    """'mean (seed values)' of a metric over the seeds."""
    return f"{np.mean(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})"


def ab_table(results):
    """Markdown: one row per (config, patch_cov), metrics as the mean over seeds (each seed's)."""
    lines = ["| data | patch_cov | steps x batch | train CPU s | "
             + " | ".join(table1.TITLES[m] for m in table1.METRICS) + " | memorisation |",
             "| --- | --- | --- | --- |" + " --- |" * (len(table1.METRICS) + 1)]
    for (name, patch_cov), arms in results.items():
        scores, cpu, plans = zip(*arms)
        cpu = [c for c in cpu if c is not None]
        cells = [", ".join(sorted(set(plans))), f"{np.mean(cpu):,.0f}" if cpu else "-"]
        cells += [seeds_cell([s[metric]["mean"] for s in scores])
                  if all(metric in s for s in scores) else "-" for metric in table1.METRICS]
        cells.append(", ".join(table1.memorisation_cell(s) for s in scores))
        lines.append(f"| {name} | {patch_cov} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(checkpoint.QuietOrbax())
    patch_covs, seeds = [int(p) for p in FLAGS.patch_cov], [int(s) for s in FLAGS.seeds]
    if FLAGS.dry_run:
        print_plans(FLAGS.configs, patch_covs)
        return
    root, results = pathlib.Path(FLAGS.workdir_root), {}
    for spec in FLAGS.configs:
        for patch_cov in patch_covs:
            for seed in seeds:
                config = arm_config(spec, patch_cov, seed)
                results.setdefault((config.name, patch_cov), []).append(
                    arm_result(config, root / arm_name(config)))
    print(f"\nA/B of model.patch_cov, seeds {seeds} ({sys.argv[0]}):\n")
    print(ab_table(results))


if __name__ == "__main__":
    app.run(main)
