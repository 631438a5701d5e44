"""Quality versus cost of the samplers on a trained workdir (issue 7's curve).

    python benchmarks/sampling.py --config=configs/etth.py:cpu --workdir=workdirs/etth_L24_cpu

For DDIM at --ddim_steps and DPM-Solver++(2M) at --dpm_steps, generates the data set's number of
series (or --num_samples) with the workdir's trained model, sharded over all devices, and prints the
wall time (compilation excluded and shown apart), series per second, and the discriminative and
Context-FID scores (mean +- 95% t-interval over --repeats) of every setting, as a markdown table.
"""

import pathlib
import sys
import time

import jax
import numpy as np
from absl import app, flags, logging

# configs/ is a folder of this repository, not an installed package: its config files import
# `configs.base`, so the repository root goes on the path of this script.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from configs import base  # noqa: E402
from stdiff_jax import checkpoint, generate, metrics, saved_model
from stdiff_jax import mesh as mesh_lib
from stdiff_jax.data import dataset_of

flags.DEFINE_string("config", None, "Config spec of the trained run, e.g. configs/etth.py:cpu.")
flags.DEFINE_string("workdir", None, "Workdir of the trained run (default workdirs/<name>).")
flags.DEFINE_list("ddim_steps", ["200", "100", "50", "20"], "DDIM step counts.")
flags.DEFINE_list("dpm_steps", ["50", "20", "10"], "DPM-Solver++(2M) step counts.")
flags.DEFINE_integer("num_samples", 0, "Series per setting (0: as many as the data has windows).")
flags.DEFINE_integer("repeats", 5, "Metric repeats.")
flags.DEFINE_integer("seed", 0, "Sampling and metric seed.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def time_setting(config, method, steps, mesh, model, params, host, num_samples, chunk_size):
    """(series in [0, 1], compile seconds, generation seconds) of one sampler setting."""
    with config.unlocked():
        config.sample.method, config.sample.num_steps = method, steps
    sampler = generate.compile_sampler(config, mesh, model, host, chunk_size)
    key = jax.random.PRNGKey(FLAGS.seed)
    start = time.perf_counter()
    compiled = sampler.lower(params, key, 0).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    series = generate.generate_series(compiled, params, num_samples, chunk_size, key,
                                      progress=None)
    return np.clip((series + 1) / 2, 0, 1), compile_s, time.perf_counter() - start


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(checkpoint.QuietOrbax())
    config = base.from_spec(FLAGS.config)
    workdir = FLAGS.workdir or f"workdirs/{config.name}"
    mesh = mesh_lib.make_mesh()
    tm = saved_model.load(config, workdir, mesh)
    model, params, host, step = tm.model, tm.params, tm.host, tm.step
    real = dataset_of(config.data).unit_windows
    num_samples = FLAGS.num_samples or host.num_windows
    chunk_size = config.sample.chunk_size or generate.auto_chunk_size(mesh, model, params,
                                                                      tm.video_shape, num_samples)
    settings = [("ddim", int(s)) for s in FLAGS.ddim_steps] + [
        ("dpmpp_2m", int(s)) for s in FLAGS.dpm_steps]
    rows = []
    for method, steps in settings:
        fake, compile_s, gen_s = time_setting(config, method, steps, mesh, model, params, host,
                                              num_samples, chunk_size)
        scores = metrics.evaluate(real, fake, repeats=FLAGS.repeats, seed=FLAGS.seed,
                                  metrics=("discriminative", "context_fid"))
        rows.append((method, steps, compile_s, gen_s, num_samples / gen_s, scores))
        logging.info("%s %d steps: %.1f s, %s", method, steps, gen_s,
                     {k: round(v["mean"], 4) for k, v in scores.items()})
    print(f"\n{config.name}, step {step}, {num_samples} series, chunks of {chunk_size} on "
          f"{mesh.size} {jax.devices()[0].platform} device(s), metrics over {FLAGS.repeats} repeats")
    print("| sampler | steps | compile (s) | wall time (s) | series/s | discriminative | "
          "Context-FID |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method, steps, compile_s, gen_s, rate, scores in rows:
        d, c = scores["discriminative"], scores["context_fid"]
        print(f"| {method} | {steps} | {compile_s:.1f} | {gen_s:.1f} | {rate:.1f} | "
              f"{d['mean']:.3f}±{d['ci95'] or 0:.3f} | {c['mean']:.3f}±{c['ci95'] or 0:.3f} |")


if __name__ == "__main__":
    app.run(main)
