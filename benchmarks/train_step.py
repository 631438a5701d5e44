"""Training throughput on the visible devices, checkpoint save and restore times, smoke-run time.

Runs the real `train.train_step` (video transform, loss with the cross-covariance term, AdamW, EMA)
jitted over a mesh of every visible device, on batches of the config's data set:

    python benchmarks/train_step.py --config=configs/sines.py:cpu
    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python benchmarks/train_step.py --config=configs/sines.py:cpu
    python benchmarks/train_step.py --config=configs/sines.py:cpu --smoke  # + the smoke run

Reports compile time, steps/s and samples/s (median over timed blocks of steps), the process CPU
time per step (which other processes on a shared machine do not inflate), the checkpoint
save time (blocking part, and until written) and restore time (medians of --repeats), and with
--smoke the wall time of `python -m stdiff_jax.main --config=configs/sines.py:smoke`.
"""

import pathlib
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from jax.sharding import NamedSharding, PartitionSpec as P
from ml_collections import config_flags

from stdiff_jax import checkpoint, train, trained, video
from stdiff_jax import mesh as mesh_lib
from stdiff_jax.data import BatchIterator, dataset_of

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/sines.py:cpu.")
flags.DEFINE_integer("steps", 20, "Steps per timed block.")
flags.DEFINE_integer("blocks", 3, "Timed blocks (the median is reported).")
flags.DEFINE_integer("repeats", 3, "Checkpoint saves and restores timed.")
flags.DEFINE_bool("smoke", False, "Also time the whole smoke run of the command line.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS
REPO = pathlib.Path(__file__).resolve().parents[1]
# configs/ is a folder of this repository, not an installed package: its config files import
# `configs.base`, so REPO goes on the path of this script.
sys.path.insert(0, str(REPO))
STATS_WINDOWS = 4096  # Windows the normaliser is fitted on: enough for its shape and scale.


def time_training(config, mesh, dataset):
    """(compile seconds, steps/s, process CPU seconds per step, state, abstract state)."""
    tc = config.train
    mesh_lib.check_divisible(tc.batch_size, mesh)
    normalizer, stats = video.fit_video_statistics(
        dataset.windows[:STATS_WINDOWS], config.video.n_fft, config.video.hop,
        config.video.ema_alpha, config.video.window)
    model, video_shape = trained.build_model(config, dataset.windows.shape[1:], stats)
    tx, learning_rate = train.make_optimizer(tc)
    abstract, init_fn = train.state_shardings(mesh, model, tx, video_shape, tc.seed)
    state = train.create_sharded_state(mesh, abstract, init_fn, tc.seed)
    update = train.compile_train_step(config, mesh, abstract, model=model, tx=tx,
                                      learning_rate=learning_rate, normalizer=normalizer)
    batches = BatchIterator(len(dataset.windows), tc.batch_size, tc.seed)
    sharding = NamedSharding(mesh, P(mesh_lib.DATA_AXIS))

    def batch():
        return mesh_lib.shard_batch(batches.next_batch(dataset.windows), sharding)

    start = time.perf_counter()
    compiled = update.lower(state, batch()).compile()
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
    return compile_s, float(np.median(rates)), float(np.median(cpu)), state, abstract


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


def main(argv):
    del argv
    config = FLAGS.config
    mesh = mesh_lib.make_mesh()
    dataset = dataset_of(config.data)
    compile_s, steps_s, cpu_s, state, abstract = time_training(config, mesh, dataset)
    num_params = sum(x.size for x in jax.tree.leaves(state.params))
    state_mib = sum(x.nbytes for x in jax.tree.leaves(state)) / 2 ** 20
    with tempfile.TemporaryDirectory() as tmp:
        save_s, written_s, restore_s = time_checkpoints(state, abstract, pathlib.Path(tmp) / "ckpt")
        smoke_s = time_smoke_run(pathlib.Path(tmp) / "smoke") if FLAGS.smoke else None
    rows = [
        ("config", config.name),
        ("devices", f"{mesh.size} x {jax.devices()[0].device_kind}"),
        ("global batch", config.train.batch_size),
        ("parameters", f"{num_params / 1e6:.3f} M"),
        ("compile", f"{compile_s:.1f} s"),
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


if __name__ == "__main__":
    app.run(main)
