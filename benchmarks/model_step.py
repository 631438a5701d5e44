"""Speed and memory of the ST-Diff network, one row per configuration.

For each configuration: parameter count, compiled train-step time (an Adam step on the MSE to random
targets, the cost of a real epsilon-prediction step without the data pipeline), samples/s, the
step's process CPU time (and batch / CPU time, a load-robust lower bound on samples/s), achieved
GFLOP/s (XLA's flop count of the compiled step over its median time), time of one denoising step
(a forward pass) for 256 series, XLA's memory analysis of the train step (temporaries + arguments)
and the process's peak resident memory after the training steps (before sampling). Each row runs in
its own subprocess so the peak RSS is that row's alone. A row whose XLA estimate exceeds --max-gib
is compiled but not run (its times read nan), so a shared machine is not pushed out of memory.

    python benchmarks/model_step.py                   # every row (paper sizes are slow: use nice)
    python benchmarks/model_step.py --only cpu,smoke --steps 20
    python benchmarks/model_step.py --only fmri24_remat --steps 3

Table-4 rows use K = 7 (ETTh); `fmri24*` is the L = 24 paper-size model on K = 50 covariates,
whose memory with and without rematerialisation is the point of those two rows.
"""
import argparse
import json
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stdiff_jax import stft
from stdiff_jax.models import CPU_SIZES, create_model, stft_settings, table4_row

# name: (seq_len, covariates, size (None: the Table-4 row), batch, remat)
ROWS = {
    "L24": (24, 7, None, 64, False),
    "L64": (64, 7, None, 64, False),
    "L128": (128, 7, None, 64, False),
    "L256": (256, 7, None, 64, False),
    "fmri24_remat": (24, 50, None, 64, True),
    "fmri24": (24, 50, None, 64, False),
    "cpu": (24, 7, "cpu", 256, False),
    "smoke": (24, 7, "smoke", 256, False),
}
COLUMNS = ["row", "video", "batch", "remat", "params", "step_ms", "samples_s", "step_cpu_ms",
           "samples_s_idle_min", "gflop_s",
           "sample_batch", "sample_step_ms", "xla_temp_gib", "xla_args_gib", "train_rss_gib"]


def process_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def median_time(fn, steps):
    """Median wall and process-CPU seconds of `steps` calls of fn() (which blocks), after a warm-up.

    On a shared machine the wall time depends on the load; the CPU time much less. Since some
    thread of the process is busy throughout a step, the wall time on an idle machine is at most
    the CPU time, so batch / cpu time is a load-robust lower bound on the idle samples/s.
    """
    fn()
    walls, cpus = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), process_cpu_s()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(process_cpu_s() - start_cpu)
    return float(np.median(walls)), float(np.median(cpus))


def flops_of(lowered):
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def make_train_step(model, optimizer):
    """An Adam step on the MSE of the prediction to `target`: the work of a training step."""
    def train_step(params, opt_state, z, logsnr, target):
        def loss_fn(p):
            return jnp.mean((model.apply({"params": p}, z, logsnr) - target) ** 2)
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


def measure(name, steps, sample_batch, dtype, max_gib, batch=None):
    """Measures one row in this process; returns its dict of COLUMNS."""
    seq_len, k, size, row_batch, remat = ROWS[name]
    batch = batch or row_batch
    n_fft, hop = stft_settings(seq_len)
    cfg = {key: table4_row(seq_len)[key] for key in ("depth", "hidden", "heads", "mlp_ratio",
                                                      "patch_freq")}
    cfg.update(CPU_SIZES[size] if size else {}, remat=remat, dtype=dtype)
    t, f = stft.num_frames(seq_len, n_fft, hop), stft.num_freqs(n_fft)
    model = create_model(cfg, t, f, k)

    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(batch, t, f, k, 3)), jnp.float32)
    target = jnp.asarray(rng.normal(size=z.shape), jnp.float32)
    logsnr = jnp.asarray(rng.uniform(-15, 15, size=(batch,)), jnp.float32)
    params = jax.jit(model.init)(jax.random.key(0), z[:1], logsnr[:1])["params"]
    optimizer = optax.adam(1e-4)
    opt_state = optimizer.init(params)

    args = (params, opt_state, z, logsnr, target)
    step_fn = jax.jit(make_train_step(model, optimizer), donate_argnums=(0, 1))
    compiled = step_fn.lower(*args).compile()
    # XLA counts a scan's body once; the unrolled twin (same parameters) is counted in full. Only
    # lowered, never compiled or run.
    flops = flops_of(jax.jit(make_train_step(model.clone(unroll=True), optimizer)).lower(*args))
    memory = compiled.memory_analysis()
    gib = 2.0 ** 30
    row = dict(row=name, video=f"{t}x{f}x{k}", batch=batch, sample_batch=sample_batch, remat=remat,
               params=sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)),
               xla_temp_gib=memory.temp_size_in_bytes / gib,
               xla_args_gib=memory.argument_size_in_bytes / gib)
    if (memory.temp_size_in_bytes + memory.argument_size_in_bytes) / gib > max_gib:
        # Running it could push a shared machine into swapping or the OOM killer: report XLA's
        # estimate only.
        return dict(row, step_ms=float("nan"), samples_s=float("nan"), step_cpu_ms=float("nan"),
                    samples_s_idle_min=float("nan"), gflop_s=float("nan"),
                    sample_step_ms=float("nan"), train_rss_gib=float("nan"))
    state = [params, opt_state]

    def one_step():
        state[0], state[1], loss = compiled(state[0], state[1], z, logsnr, target)
        loss.block_until_ready()

    step_s, step_cpu_s = median_time(one_step, steps)
    # Peak resident memory of the process so far: training only, before sampling.
    train_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / gib

    zs = jnp.asarray(rng.normal(size=(sample_batch, t, f, k, 3)), jnp.float32)
    ls = jnp.zeros((sample_batch,), jnp.float32)
    denoise = jax.jit(lambda p, z, l: model.apply({"params": p}, z, l))
    sample_s, _ = median_time(lambda: denoise(state[0], zs, ls).block_until_ready(),
                           max(steps // 2, 2))

    return dict(row, step_ms=1e3 * step_s, samples_s=batch / step_s, step_cpu_ms=1e3 * step_cpu_s,
                samples_s_idle_min=batch / step_cpu_s, gflop_s=flops / step_s / 1e9,
                sample_step_ms=1e3 * sample_s, train_rss_gib=train_rss_gib)


def print_table(results):
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
    rows = [[fmt(r[c]) for c in COLUMNS] for r in results]
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(COLUMNS)]
    print("  ".join(c.rjust(w) for c, w in zip(COLUMNS, widths)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(ROWS),
                        help=f"comma-separated rows of {list(ROWS)}")
    parser.add_argument("--steps", type=int, default=10, help="timed train steps (median reported)")
    parser.add_argument("--batch", type=int, default=0, help="training batch of every row "
                        "(0: the row's own, 64 for paper sizes and 256 for CPU sizes)")
    parser.add_argument("--sample-batch", type=int, default=256, help="series per denoising step")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--max-gib", type=float, default=12.0,
                        help="skip running a row whose XLA temporaries + arguments exceed this")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: measure one row, print JSON
    args = parser.parse_args()

    if args.row:
        row = measure(args.row, args.steps, args.sample_batch, args.dtype, args.max_gib,
                      args.batch)
        print(json.dumps(row))
        return
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        sys.exit(f"unknown rows {unknown}; choose from {list(ROWS)}")
    results = []
    for name in names:
        cmd = [sys.executable, __file__, "--row", name, "--steps", str(args.steps),
               "--sample-batch", str(args.sample_batch), "--dtype", args.dtype,
               "--batch", str(args.batch),
               "--max-gib", str(args.max_gib)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print_table(results)


if __name__ == "__main__":
    main()
