"""Training throughput on the visible devices, checkpoint save and restore times, smoke-run time,
and the cost table that `stdiff_jax/budget.py`'s cost model is fitted to.

Runs the real `train.train_step` (video transform, loss with the cross-covariance term, AdamW, EMA)
jitted over a mesh of every visible device, on batches of the config's data set:

    python benchmarks/train_step.py --config=configs/sines.py:cpu
    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python benchmarks/train_step.py --config=configs/sines.py:cpu
    python benchmarks/train_step.py --config=configs/sines.py:cpu --smoke  # + the smoke run

Reports the budget's plan for the config (steps, batch, predicted CPU), compile time, steps/s and
samples/s (median over timed blocks of steps), the process CPU time per step (which other
processes on a shared machine do not inflate), the checkpoint save time (blocking part, and until
written) and restore time (medians of --repeats), and with --smoke the wall time of
`python -m stdiff_jax.main --config=configs/sines.py:smoke`.

    python benchmarks/train_step.py --sweep --sweep_out=/tmp/sweep.json

measures process CPU per training step, per validation batch, of compilation and of the data
statistics on random windows of every K in --sweep_k x L in --sweep_l, for the `cpu` network and
the Table-4 sizes (--sweep_sizes), with each model.patch_cov of --sweep_patch_cov. Each cell takes
the largest batch (`cpu`: 64, 32 or 16; Table-4 sizes: 16 down to 1) that the current cost model
says costs at most --cell_seconds a step, or --sweep_batch (rows kept beside the others: a
small batch costs more a sample), and reports the median of --sweep_steps timed steps (fewer
for Table-4 sizes): other processes may share the machine, and a median resists their bursts.
It prints the cost table (markdown: CPU per step and per training sample, the token count), the
fitted growth in K and L, and the coefficients for `stdiff_jax/budget.py`. Cells already in --sweep_out are not measured
again (an interrupted sweep resumes); --sweep_steps=0 only refits and prints the rows there.
Cells with model.patch_cov > 1 get their own table, beside the patch_cov 1 cell of the same
network, K and L, with budget.py's current cost model against each (docs/costs.md):

    python benchmarks/train_step.py --sweep --sweep_sizes=cpu --sweep_l=24 --sweep_k=14,28,50 \
        --sweep_patch_cov=1,2,4 --sweep_steps=3 --sweep_out=docs/costs_patch_cov.json
"""

import dataclasses
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import scipy.optimize
from absl import app, flags
from jax.sharding import NamedSharding, PartitionSpec as P
from ml_collections import config_flags

REPO = pathlib.Path(__file__).resolve().parents[1]
# configs/ is a folder of this repository, not an installed package: its config files import
# `configs.base`, so REPO goes on the path of this script, before the imports that need it.
sys.path.insert(0, str(REPO))
from configs import base  # noqa: E402
from stdiff_jax import budget, checkpoint, saved_model, train, video  # noqa: E402
from stdiff_jax import workdir as workdir_lib  # noqa: E402
from stdiff_jax import prior as prior_lib  # noqa: E402
from stdiff_jax import mesh as mesh_lib  # noqa: E402
from stdiff_jax.data import BatchIterator, dataset_of  # noqa: E402
from stdiff_jax.errors import UserError  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/sines.py:cpu.")
flags.DEFINE_integer("steps", 20, "Steps per timed block.")
flags.DEFINE_integer("blocks", 3, "Timed blocks (the median is reported).")
flags.DEFINE_integer("repeats", 3, "Checkpoint saves and restores timed.")
flags.DEFINE_bool("smoke", False, "Also time the whole smoke run of the command line.")
flags.DEFINE_bool("sweep", False, "Measure the cost table instead of one config.")
flags.DEFINE_list("sweep_k", ["5", "7", "14", "28", "50"], "Covariate counts of the sweep.")
flags.DEFINE_list("sweep_l", ["24", "64", "128", "256"], "Sequence lengths of the sweep.")
flags.DEFINE_list("sweep_sizes", ["cpu", "table4"], "Networks of the sweep: cpu, table4.")
flags.DEFINE_list("sweep_patch_cov", ["1"], "Covariates a token (model.patch_cov) of the sweep.")
flags.DEFINE_integer("sweep_steps", 5, "Timed steps per cpu cell (Table-4 cells: 3).")
flags.DEFINE_integer("sweep_batch", 0, "Batch of every cell (0: the largest the cost model puts "
                     "at <= --cell_seconds a step); such rows are kept beside the others.")
flags.DEFINE_float("cell_seconds", 3.0, "Largest predicted process CPU s of one timed step.")
flags.DEFINE_string("sweep_out", "", "JSON file of the sweep's rows (read back to resume).")
flags.DEFINE_bool("plan_table", False, "Print budget.plan's steps x batch for a CSV of 17,000 "
                  "windows at every K and L of the sweep (docs/costs.md), and exit.")
FLAGS = flags.FLAGS
STATS_WINDOWS = 4096  # Windows the normaliser is fitted on: enough for its shape and scale.
SWEEP_WINDOWS = 512  # Random windows of a sweep cell.


# ------------------------------------------------------------------------------------------------
# One training setup, timed in process CPU seconds.
# ------------------------------------------------------------------------------------------------
def setup_training(config, mesh, windows):
    """(compiled step, compiled eval step, state, abstract, next batch,
    {stats_s, prior_s, compile_s}); prior_s: the Gaussian prior's fit (0 with model.prior_rank 0)."""
    tc = config.train
    mesh_lib.check_divisible(tc.batch_size, mesh)
    cpu = time.process_time()
    normalizer, stats = video.fit_video_statistics(
        windows[:STATS_WINDOWS], config.video.n_fft, config.video.hop, config.video.ema_alpha,
        config.video.window)
    costs = {"stats_s": time.process_time() - cpu}
    cpu = time.process_time()
    rank = prior_lib.rank_for(config.model, windows.shape[1:])
    prior = (prior_lib.fit(windows, saved_model.video_transform(config.video, normalizer), rank,
                           prior_lib.components_of(config.model), seed=tc.seed) if rank else None)
    costs["prior_s"] = time.process_time() - cpu
    cpu = time.process_time()
    model, video_shape = saved_model.build_model(config, windows.shape[1:], stats, prior=prior)
    tx, learning_rate = train.make_optimizer(tc, prior=prior is not None)
    abstract, init_fn = train.state_shardings(mesh, model, tx, video_shape, tc.seed)
    state = train.create_sharded_state(mesh, abstract, init_fn, tc.seed)
    update = train.compile_train_step(config, mesh, abstract, model=model, tx=tx,
                                      learning_rate=learning_rate, normalizer=normalizer)
    evaluate = train.compile_eval_step(config, mesh, abstract, model=model, normalizer=normalizer)
    batches = BatchIterator(len(windows), tc.batch_size, tc.seed)
    sharding = NamedSharding(mesh, P(mesh_lib.DATA_AXIS))

    def batch():
        return mesh_lib.shard_batch(batches.next_batch(windows), sharding)

    key = jax.random.PRNGKey(0)
    compiled = update.lower(state, batch()).compile()
    compiled_eval = evaluate.lower(state.params, batch(), key).compile()
    costs["compile_s"] = time.process_time() - cpu  # with the model's and the state's set-up
    return compiled, compiled_eval, state, abstract, batch, costs


def time_training(config, mesh, windows):
    """(compile seconds, steps/s, process CPU seconds per step, state, abstract state, set-up
    CPU seconds: setup_training's)."""
    start = time.perf_counter()
    compiled, _, state, abstract, batch, costs = setup_training(config, mesh, windows)
    compile_s = time.perf_counter() - start
    state, metrics = compiled(state, batch())  # warm-up
    jax.block_until_ready(metrics)
    rates, cpu = [], []
    for _ in range(FLAGS.blocks):
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(FLAGS.steps):
            state, metrics = compiled(state, batch())
        jax.block_until_ready((state, metrics))
        rates.append(FLAGS.steps / (time.perf_counter() - start))
        cpu.append((time.process_time() - cpu_start) / FLAGS.steps)
    return compile_s, float(np.median(rates)), float(np.median(cpu)), state, abstract, costs


def time_checkpoints(state, abstract, directory):
    """Median (blocking save s, save-until-written s, restore s) of a state."""
    manager = checkpoint.create_manager(directory, keep=FLAGS.repeats + 1)
    blocking, written, restore = [], [], []
    for step in range(1, FLAGS.repeats + 1):
        start = time.perf_counter()
        checkpoint.save(manager, step, state, {"step": step})
        blocking.append(time.perf_counter() - start)
        manager.wait_until_finished()
        written.append(time.perf_counter() - start)
        start = time.perf_counter()
        jax.block_until_ready(checkpoint.restore_state(manager, step, abstract))
        restore.append(time.perf_counter() - start)
    manager.close()
    return tuple(float(np.median(t)) for t in (blocking, written, restore))


def time_smoke_run(workdir):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "stdiff_jax.main", "--config=configs/sines.py:smoke",
                    f"--workdir={workdir}"], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def benchmark_config(config):
    mesh = mesh_lib.make_mesh()
    dataset = dataset_of(config.data)
    config, plan = budget.resolve(config, dataset.windows.shape[1:], len(dataset.windows))
    print(plan.describe())
    compile_s, steps_s, cpu_s, state, abstract, costs = time_training(config, mesh,
                                                                      dataset.windows)
    num_params = sum(x.size for path, x in jax.tree_util.tree_leaves_with_path(state.params)
                     if not prior_lib.is_prior_leaf(path))  # the prior's are constants
    state_mib = sum(x.nbytes for x in jax.tree.leaves(state)) / 2 ** 20
    with tempfile.TemporaryDirectory() as tmp:
        save_s, written_s, restore_s = time_checkpoints(state, abstract, pathlib.Path(tmp) / "ckpt")
        smoke_s = time_smoke_run(pathlib.Path(tmp) / "smoke") if FLAGS.smoke else None
    rows = [
        ("config", config.name),
        ("devices", f"{mesh.size} x {jax.devices()[0].device_kind}"),
        ("global batch", config.train.batch_size),
        ("parameters", f"{num_params / 1e6:.3f} M"),
        ("compile", f"{compile_s:.1f} s (wall, with the set-up)"),
        ("prior fit", f"{costs['prior_s']:.1f} CPU s (model.prior_rank "
                      f"{prior_lib.rank_for(config.model, dataset.windows.shape[1:])})"),
        ("train steps/s", f"{steps_s:.2f}"),
        ("train samples/s", f"{steps_s * config.train.batch_size:.0f}"),
        ("process CPU / step", f"{cpu_s * 1e3:.0f} ms (all threads; wall time is load-dependent)"),
        ("checkpoint size", f"{state_mib:.2f} MiB (params, EMA, AdamW moments)"),
        ("save, blocking", f"{save_s * 1e3:.0f} ms"),
        ("save, until written", f"{written_s * 1e3:.0f} ms"),
        ("restore", f"{restore_s * 1e3:.0f} ms"),
    ]
    if smoke_s is not None:
        rows.append(("smoke run, wall", f"{smoke_s:.1f} s"))
    for name, value in rows:
        print(f"{name:<20} {value}")


# ------------------------------------------------------------------------------------------------
# The sweep: cost per step over K x L x network, and the cost model's fit.
# ------------------------------------------------------------------------------------------------
def sweep_config(size, seq_len, patch_cov=1, prior_rank=0, prior_components=1):
    """The config of a sweep cell: the `cpu` network or the Table-4 row of seq_len; without the
    Gaussian prior unless prior_rank > 0 (budget.COST is the network's, budget.PRIOR the prior's,
    fitted by benchmarks/prior_cost.py)."""
    config = base.make_config("sweep", f"seq_len={seq_len}" + (",cpu" if size == "cpu" else ""))
    config.model.update(patch_cov=patch_cov, prior_rank=prior_rank,
                        prior_components=prior_components)
    return config


def patch_cov_of(row):
    """A sweep row's model.patch_cov (rows measured before it existed: 1)."""
    return row["shape"].get("patch_cov", 1)


def cell_batch(size, shape):
    """The largest batch predicted to cost <= cell_seconds a step: `cpu` halving from 64 to at
    least 16 (the batches budget.plan chooses from), Table-4 sizes from 16 to 1."""
    batch, smallest = (64, 16) if size == "cpu" else (16, 1)
    while batch > smallest and budget.sweep_step_seconds(shape, batch) > FLAGS.cell_seconds:
        batch //= 2
    return batch


def measure_cell(size, num_covariates, seq_len, steps, patch_cov=1, prior_rank=0, batch=None,
                 prior_components=1, num_windows=SWEEP_WINDOWS):
    """One row of the cost table: medians of `steps` timed training steps and validation batches
    (batch: cell_batch's unless given) on `num_windows` random windows (a mixture prior needs
    prior.MIN_CLUSTER a Gaussian)."""
    config = sweep_config(size, seq_len, patch_cov, prior_rank, prior_components)
    shape = budget.StepShape.of(config, (seq_len, num_covariates))
    batch = batch or cell_batch(size, shape)
    config.train.update(batch_size=batch, num_steps=1000, warmup_steps=10)
    rng = np.random.default_rng(0)
    windows = rng.uniform(-1, 1, (max(num_windows, 2 * batch), seq_len, num_covariates))
    compiled, compiled_eval, state, _, batch_of, costs = setup_training(
        config, mesh_lib.make_mesh(), windows.astype(np.float32))
    state, metrics = compiled(state, batch_of())  # warm-up: the first call's one-off costs
    jax.block_until_ready(metrics)
    step_s, eval_s = [], []
    for i in range(steps):
        start = time.process_time()
        state, metrics = compiled(state, batch_of())
        jax.block_until_ready((state, metrics))
        step_s.append(time.process_time() - start)
        start = time.process_time()
        jax.block_until_ready(compiled_eval(state.params, batch_of(), jax.random.PRNGKey(i)))
        eval_s.append(time.process_time() - start)
    return {"size": size, "K": num_covariates, "L": seq_len, "batch": batch,
            "shape": dataclasses.asdict(shape), "tokens": shape.tokens,
            "windows": len(windows), **costs, "step_s": float(np.median(step_s)),
            "eval_s": float(np.median(eval_s)), "steps_timed": step_s}


def nnls_relative(features, targets):
    """Non-negative coefficients minimising the relative error of features @ coef ~ targets."""
    a = np.asarray(features, np.float64) / np.asarray(targets)[:, None]
    scale = np.maximum(np.abs(a).max(0), 1e-300)  # columns of similar size for the solver
    coef, _ = scipy.optimize.nnls(a / scale, np.ones(len(targets)))
    return coef / scale


def fit(rows):
    """The cost model's coefficients fitted to sweep rows (all on the sweep machine)."""
    shapes = [budget.StepShape(**r["shape"]) for r in rows]
    step = nnls_relative([budget.step_features(s, r["batch"]) for s, r in zip(shapes, rows)],
                         [r["step_s"] for r in rows])
    cost = dict(zip(budget.FEATURES, step))
    compile_ = nnls_relative([[1.0, s.depth] for s in shapes], [r["compile_s"] for r in rows])
    stats = nnls_relative([[1.0, r["windows"] * s.pixels] for s, r in zip(shapes, rows)],
                          [r["stats_s"] for r in rows])
    anchor = budget.StepShape.of(sweep_config("cpu", 24), (24, 5))
    reference = [seconds / float(np.dot(step, budget.step_features(
        dataclasses.replace(anchor, covariates=k), b))) for k, b, seconds in budget.REFERENCE_STEPS]
    return {"COST": cost, "EVAL_RATIO": float(np.median([r["eval_s"] / r["step_s"] for r in rows])),
            "COMPILE": dict(base=compile_[0], per_block=compile_[1]),
            "STATS": dict(base=stats[0], per_pixel=stats[1]),
            "REFERENCE_FACTOR": float(np.median(reference))}


def growth(rows, key, other):
    """{(size, other value): log-log slope of CPU per sample against `key`} over the rows of
    patch_cov 1 at the batch cell_batch chose."""
    rows = [r for r in rows if patch_cov_of(r) == 1 and not r.get("batch_set")]
    slopes = {}
    for size in sorted({r["size"] for r in rows}):
        for value in sorted({r[other] for r in rows if r["size"] == size}):
            cells = sorted((r[key], r["step_s"] / r["batch"]) for r in rows
                           if r["size"] == size and r[other] == value)
            if len(cells) > 1:
                x, y = np.log(np.array(cells)).T
                slopes[size, value] = float(np.polyfit(x, y, 1)[0])
    return slopes


def print_sweep(rows, fitted):
    """The cost table (markdown), the growth in K and L, and the coefficients for budget.py."""
    cost = [fitted["COST"][f] for f in budget.FEATURES]
    print("| network | L | K | tokens (T x F' x K) | batch | CPU / step | CPU / sample | "
          "validation batch | compile | model / measured |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted((r for r in rows if patch_cov_of(r) == 1),
                    key=lambda r: (r["size"], r["L"], r["K"], -r["batch"])):
        s = budget.StepShape(**r["shape"])
        model = float(np.dot(cost, budget.step_features(s, r["batch"])))
        print(f"| {r['size']} | {r['L']} | {r['K']} | {s.tokens} ({s.frames} x {s.freq_patches} x "
              f"{s.covariates}) | {r['batch']} | {r['step_s'] * 1e3:,.0f} ms | "
              f"{r['step_s'] / r['batch'] * 1e3:,.1f} ms | {r['eval_s'] * 1e3:,.0f} ms | "
              f"{r['compile_s']:.1f} s | {model / r['step_s']:.2f} |")
    for key, other in (("K", "L"), ("L", "K")):
        slopes = growth(rows, key, other)
        if slopes:
            print(f"CPU per sample grows as {key}^a: " + ", ".join(
                f"{size} {other}={value}: a={a:.2f}" for (size, value), a in slopes.items()))
    errors = [abs(float(np.dot(cost, budget.step_features(budget.StepShape(**r["shape"]),
                                                          r["batch"]))) / r["step_s"] - 1)
              for r in rows]
    print(f"model error per step: median {np.median(errors):.1%}, max {np.max(errors):.1%}")
    print_patch_cov(rows)
    timed = sum(sum(r["steps_timed"]) for r in rows)
    print(f"total process CPU of the measured steps: {timed:.0f} s")
    print("\n# For stdiff_jax/budget.py:")
    print("COST = dict(" + ", ".join(f"{f}={fitted['COST'][f]:.4g}" for f in budget.FEATURES)
          + ")")
    for name in ("EVAL_RATIO", "COMPILE", "STATS", "REFERENCE_FACTOR"):
        value = fitted[name]
        text = (f"dict({', '.join(f'{k}={v:.4g}' for k, v in value.items())})"
                if isinstance(value, dict) else f"{value:.4g}")
        print(f"{name} = {text}")


def print_patch_cov(rows):
    """The cells measured with covariate patches (patch_cov > 1) beside the patch_cov 1 cell of the
    same network, K and L: CPU per step and per sample, and budget.py's cost model against each."""
    groups = {(r["size"], r["L"], r["K"]) for r in rows if patch_cov_of(r) > 1}
    if not groups:
        return
    print("\n| network | L | K | patch_cov | tokens (T x F' x K') | batch | CPU / step | "
          "CPU / sample | / patch_cov 1 | budget model / measured |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted((r for r in rows if (r["size"], r["L"], r["K"]) in groups),
                    key=lambda r: (r["size"], r["L"], r["K"], patch_cov_of(r))):
        s = budget.StepShape(**r["shape"])
        one = [o for o in rows if (o["size"], o["L"], o["K"], patch_cov_of(o)) == (
            r["size"], r["L"], r["K"], 1)]
        per_sample = r["step_s"] / r["batch"]
        ratio = (f"{per_sample / (one[0]['step_s'] / one[0]['batch']):.2f}" if one else "n/a")
        model = budget.sweep_step_seconds(s, r["batch"])
        print(f"| {r['size']} | {r['L']} | {r['K']} | {s.patch_cov} | {s.tokens} ({s.frames} x "
              f"{s.freq_patches} x {s.cov_patches}) | {r['batch']} | {r['step_s'] * 1e3:,.0f} ms | "
              f"{per_sample * 1e3:,.1f} ms | {ratio} | {model / r['step_s']:.2f} |")


def sweep():
    path = pathlib.Path(FLAGS.sweep_out) if FLAGS.sweep_out else None
    rows = json.loads(path.read_text()) if path and path.exists() else []
    done = {(r["size"], r["K"], r["L"], patch_cov_of(r), r.get("batch_set", False))
            for r in rows}
    for size in FLAGS.sweep_sizes:
        steps = FLAGS.sweep_steps if size == "cpu" else min(FLAGS.sweep_steps, 3)
        for seq_len in map(int, FLAGS.sweep_l):
            for k in map(int, FLAGS.sweep_k):
                for patch_cov in map(int, FLAGS.sweep_patch_cov):
                    key = (size, k, seq_len, patch_cov, bool(FLAGS.sweep_batch))
                    if key in done or steps == 0:
                        continue
                    rows.append(dict(measure_cell(size, k, seq_len, steps, patch_cov,
                                                  batch=FLAGS.sweep_batch or None),
                                     batch_set=bool(FLAGS.sweep_batch)))
                    r = rows[-1]
                    print(f"{size} L={seq_len} K={k} patch_cov={patch_cov} batch {r['batch']}: "
                          f"{r['step_s']:.3f} s a step, compile {r['compile_s']:.1f} s",
                          flush=True)
                    if path:
                        workdir_lib.write_json(path, rows)
    print_sweep(rows, fit(rows))


def plan_table(num_windows=17_000):
    """What `cpu` and `cpu_long` buy on a user's CSV of num_windows windows: budget.plan's steps x
    batch (predicted CPU s; windows the prior is fitted on) at every --sweep_l x --sweep_k."""
    ks = [int(k) for k in FLAGS.sweep_k]
    print("| variant, L \\ K | " + " | ".join(map(str, ks)) + " |")
    print("| --- |" + " --- |" * len(ks))
    for variant in ("cpu", "cpu_long"):
        for seq_len in map(int, FLAGS.sweep_l):
            config = base.make_config("etth", f"seq_len={seq_len},{variant}")
            config.data.name = "csv:my_data.csv"
            cells = []
            for k in ks:
                try:
                    p = budget.plan(config, (seq_len, k), num_windows)
                    cells.append(f"{p.num_steps:,} x {p.batch_size} ({p.predicted_s:,.0f} s; "
                                 f"prior {p.prior_windows:,})")
                except UserError:
                    cells.append("error: too few steps")
            print(f"| {variant}, L={seq_len} | " + " | ".join(cells) + " |")


def main(argv):
    del argv
    if FLAGS.plan_table:
        plan_table()
    elif FLAGS.sweep:
        sweep()
    elif FLAGS.config is None:
        raise app.UsageError("Give --config=FILE[:VARIANTS] or --sweep.")
    else:
        benchmark_config(FLAGS.config)


if __name__ == "__main__":
    app.run(main)
