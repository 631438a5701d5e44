"""Generation across all devices, and the workdir side of the `sample` and `evaluate` modes.

The generation batch is split along the same `data` mesh axis as training. The sampler, with the
decoding back to series, is compiled once for a fixed chunk size (a multiple of the device count);
the last chunk is padded to full size and trimmed, so nothing recompiles. Sample n depends only on
the key and n (`sampling.sample` draws its noise from fold_in(key, n)), so the samples are the
same on 1 or 8 devices and for any chunk size. Parameters are an argument of the compiled sampler,
not constants folded into it.

Decoding: normalised video -> denormalise -> `video_to_series` -> series in model space [-1, 1],
kept unclipped -> (x + 1) / 2 in [0, 1] (`samples_unit.npy`) -> the data scaler's inverse in
original units (`samples.npy`). Only scoring clips to [0, 1], as the protocol requires; the saved
samples keep whatever the model produced, so a drift out of range stays visible. (The samplers
clip their clean-video predictions at config.sample.clip_x0 normaliser stds, a guard from the time
the network predicted eps, whose error at logsnr_min was amplified by sigma / alpha ~ e^7.5. With
the velocity output x0_hat stays bounded and the guard rarely engages: on the trained `cpu` models
at 50 DDIM steps it moved the [0, 1] samples by 1e-5 to 2e-4 on average, at most 0.04-0.21.)
"""

import functools
import json
import os
import pathlib
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from stdiff_jax import checkpoint, fingerprint, labels as labels_lib, sampling, trained
from stdiff_jax import mesh as mesh_lib
from stdiff_jax import workdir as workdir_lib
from stdiff_jax.data.held_out import held_out_windows
from stdiff_jax.data.tables import write_windows_csv
from stdiff_jax.errors import MissingFileError, UserError
from stdiff_jax.schedule import Schedule

SAMPLES_UNIT, SAMPLES_RAW, METRICS = "samples_unit.npy", "samples.npy", "metrics.json"
SAMPLES_CSV = "samples.csv"
SAMPLES_LABELS = "samples_labels.npy"  # a labelled model's: the class index each sample asked
PROBE_PER_DEVICE = 8  # Batch per device at which the network's memory is measured.
MEMORY_FRACTION = 0.25  # Share of the free memory a chunk may fill (the rest: headroom, others).
MAX_PER_DEVICE = 1024  # Larger chunks gain little speed but report progress less often.
SAMPLER_BUFFERS = 4  # Video-sized arrays the samplers carry besides the network (z, x0, eps, noise).
CSV_BYTES_PER_VALUE = 16  # samples.csv writes "%.9g" and a comma: at most 16 characters a value


# ------------------------------------------------------------------------------------------------
# The sharded chunk sampler.
# ------------------------------------------------------------------------------------------------
def sampler_settings(config, method, num_steps):
    """`sampling.sample`'s settings: the sampler `method` with `num_steps` steps (config.sample's,
    or config.condition's for conditional sampling), config.sample's eta, grid and clip_x0 and
    config.diffusion's schedule."""
    return dict(method=method, num_steps=num_steps, eta=config.sample.eta,
                schedule=Schedule.from_config(config.diffusion), grid=config.sample.grid,
                clip_x0=config.sample.get("clip_x0") or None)


def sample_chunk(params, key, first_index, *rows, apply_fn, sample_fn, data_sharding,
                 num_classes, guidance):
    """sample_fn(denoise, key, first_index, *rows) for one chunk, where denoise is the network
    apply_fn(params, ...) with every batch it sees pinned to the `data` mesh axis, so the whole
    sampler runs split over it. A model with classes (num_classes > 0) takes the chunk's labels
    (B,) as the last of `rows` and denoises with classifier-free guidance at `guidance`
    (`labels.guided_denoiser`; the "no class" token is index num_classes)."""
    constrain = functools.partial(jax.lax.with_sharding_constraint, shardings=data_sharding)
    labels, rows = (rows[-1], rows[:-1]) if num_classes else (None, rows)

    def network(z, logsnr, labels=None):  # (B, T, F, K, 3), (B,), (B,)
        labels = None if labels is None else constrain(labels)
        return apply_fn(params, constrain(z), constrain(logsnr), labels)

    denoise = network if labels is None else labels_lib.guided_denoiser(
        network, labels, guidance, num_classes)
    return sample_fn(denoise, key, first_index, *rows)


def compile_chunk_sampler(sample_fn, mesh, chunk_size, *, apply_fn, num_classes, guidance,
                          num_rows, setting):
    """jit over `mesh` of fn(params, key, first_index, *rows[, labels]) -> `sample_chunk`: the
    one compiler of unconditional and conditional generation.

    params, key and first_index are replicated; the num_rows per-sample arrays `rows` (e.g. a
    conditional chunk's observations and mask), the labels of a model with classes and the
    output are split along the `data` axis. setting: the config field of chunk_size, named when
    it does not divide over the devices.
    """
    mesh_lib.check_divisible(chunk_size, mesh, setting)
    data, replicated = NamedSharding(mesh, P(mesh_lib.DATA_AXIS)), NamedSharding(mesh, P())
    fn = functools.partial(sample_chunk, apply_fn=apply_fn, sample_fn=sample_fn,
                           data_sharding=data, num_classes=num_classes, guidance=guidance)
    split = (data,) * (num_rows + bool(num_classes))
    return jax.jit(fn, in_shardings=(replicated,) * 3 + split, out_shardings=data)


def compile_sampler(config, mesh, model, normalizer, series_shape, chunk_size):
    """The `compile_chunk_sampler` of generation: fn(params, key, first_index) -> the chunk's
    chunk_size series (L, K) in model space, decoded from the videos of config.sample's sampler;
    a model with classes also takes the chunk's labels (guided at config.sample.guidance)."""
    shape = (chunk_size, *trained.video_shape_of(config.video, series_shape))
    decode = trained.series_decoder(config.video, normalizer, series_shape[0])
    settings = sampler_settings(config, config.sample.method, config.sample.num_steps)

    def sample_fn(denoise, key, first_index):
        return decode(sampling.sample(denoise, shape, key, first_index=first_index, **settings))

    return compile_chunk_sampler(sample_fn, mesh, chunk_size, apply_fn=trained.apply_fn_of(model),
                                 num_classes=model.num_classes,
                                 guidance=config.sample.get("guidance", 1.0), num_rows=0,
                                 setting="config.sample.chunk_size")


def host_available_bytes():
    """The host's available memory: /proc/meminfo's MemAvailable, else its free pages."""
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:  # MemAvailable counts reclaimable caches, unlike the free pages above.
        text = pathlib.Path("/proc/meminfo").read_text()
        available = int(next(l.split()[1] for l in text.splitlines()
                             if l.startswith("MemAvailable"))) * 1024
    except (OSError, StopIteration):
        pass
    return available


def available_bytes_per_device(device):
    """Free memory of an accelerator, or on CPU the host's available memory over its devices."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    return host_available_bytes() / jax.local_device_count()


def chunk_size_for(bytes_per_series, free_bytes_per_device, num_devices, num_samples):
    """The largest chunk filling at most MEMORY_FRACTION of each device's free memory: a multiple
    of the device count, at least one series and at most MAX_PER_DEVICE per device, and no larger
    than the samples wanted (rounded up to the devices)."""
    per_device = int(np.clip(MEMORY_FRACTION * free_bytes_per_device // bytes_per_series, 1,
                             MAX_PER_DEVICE))
    return min(per_device, -(-num_samples // num_devices)) * num_devices


def auto_chunk_size(mesh, model, params, video_shape, num_samples):
    """`chunk_size_for` with the bytes per series measured, and the free memory of this machine.

    Bytes per series come from XLA's memory analysis of the network compiled for a probe batch
    (temporaries and output per series), plus the sampler's video-sized buffers.
    """
    data = NamedSharding(mesh, P(mesh_lib.DATA_AXIS))
    probe = PROBE_PER_DEVICE * mesh.size
    compiled = jax.jit(trained.apply_fn_of(model)).lower(
        params, jax.ShapeDtypeStruct((probe, *video_shape), jnp.float32, sharding=data),
        jax.ShapeDtypeStruct((probe,), jnp.float32, sharding=data)).compile()
    analysis = compiled.memory_analysis()
    network = (analysis.temp_size_in_bytes + analysis.output_size_in_bytes) / PROBE_PER_DEVICE
    per_series = network + SAMPLER_BUFFERS * int(np.prod(video_shape)) * 4
    free = available_bytes_per_device(mesh.devices.flat[0])
    chunk_size = chunk_size_for(per_series, free, mesh.size, num_samples)
    logging.info("Chunk size %d (%d per device): %.1f KiB per series, %.1f GiB free per device.",
                 chunk_size, chunk_size // mesh.size, per_series / 1024, free / 2 ** 30)
    return chunk_size


def generate_series(sampler, params, num_samples, chunk_size, key, progress=sampling.log_progress,
                    labels=None):
    """(num_samples, L, K) series in model space from a `compile_sampler` sampler, chunk by chunk
    (`sampling.run_chunks`: the next chunk is dispatched before the current one is fetched).
    labels: (num_samples,) class indices, for the sampler of a model with classes."""
    if labels is None:
        return sampling.run_chunks(lambda first: sampler(params, key, first), num_samples,
                                   chunk_size, fetch=mesh_lib.to_host, progress=progress)
    padded = np.resize(np.asarray(labels, np.int32), -(-num_samples // chunk_size) * chunk_size)
    padded[num_samples:] = padded[num_samples - 1]  # the last chunk's padding, trimmed later
    return sampling.run_chunks(lambda first: sampler(params, key, first,
                                                     padded[first:first + chunk_size]),
                               num_samples, chunk_size, fetch=mesh_lib.to_host, progress=progress)


# ------------------------------------------------------------------------------------------------
# The sample and evaluate modes.
# ------------------------------------------------------------------------------------------------
def requested_samples(labels, sample_config, host):
    """(labels (N,) int32 or None, N): the samples asked of a checkpoint's model
    (`trained.HostState`): its classes' labels (`labels.labels_for`), else
    sample_config.num_samples (0: as many as the data set has windows)."""
    labels = labels_lib.labels_for(labels, sample_config, host)
    if labels is not None:
        return labels, len(labels)
    return None, sample_config.num_samples or host.num_windows


def sample_series(tm, labels=None, *, mesh=None, progress=sampling.log_progress, **overrides):
    """Series in [0, 1] generated by a `trained.TrainedModel` -> (samples (N, L, K) float32, their
    class indices (N,) or None).

    labels: a model with classes: the class of every sample, as names or indices (None:
      config.sample.classes, `labels.labels_for`); without classes: None.
    overrides: fields of config.sample for this call (num_samples, guidance, seed, method,
      num_steps, chunk_size, ...). N = len(labels) with classes, else num_samples (0: as many
      as the data set has windows).
    """
    config = tm.config.copy_and_resolve_references()
    unknown = sorted(set(overrides) - set(config.sample))
    if unknown:
        raise UserError(f"Unknown sampling setting(s) {unknown}; use the fields of "
                        f"config.sample ({', '.join(sorted(config.sample))}).")
    with config.unlocked():
        config.sample.update(overrides)
    mesh = mesh_lib.make_mesh() if mesh is None else mesh
    model, params, host = tm.model, tm.params, tm.host
    labels, num_samples = requested_samples(labels, config.sample, host)
    chunk_size = config.sample.chunk_size or auto_chunk_size(mesh, model, params, tm.video_shape,
                                                             num_samples)
    sampler = compile_sampler(config, mesh, model, host.normalizer, host.series_shape, chunk_size)
    logging.info("Generating %d series with %s, %d steps, in chunks of %d on %d devices%s.",
                 num_samples, config.sample.method, config.sample.num_steps, chunk_size, mesh.size,
                 "" if labels is None else f", guidance {config.sample.guidance}")
    start = time.perf_counter()
    series = generate_series(sampler, params, num_samples, chunk_size,
                             jax.random.PRNGKey(config.sample.seed), progress, labels)
    elapsed = time.perf_counter() - start
    logging.info("Generated %d series in %.1f s (%.1f series/s).", num_samples, elapsed,
                 num_samples / elapsed)
    return ((series + 1.0) / 2.0).astype(np.float32), labels


@workdir_lib.locking
def sample_to_workdir(config, workdir):
    """Generates config.sample.num_samples series (0: as many as the data set has windows; a
    labelled model: config.sample.classes) with the trained model of workdir and saves them as
    samples_unit.npy ([0, 1]), samples.npy (original units) and samples.csv (original units;
    columns window, t, label for a labelled model, and the data's column names,
    `tables.write_windows_csv`), and a labelled model's class indices as samples_labels.npy.
    Returns the [0, 1] samples.

    The workdir's disk is checked for their size before the generation. The files replace the
    workdir's earlier ones together, once every series is generated (`workdir.writing`): an
    error or a signal before leaves those as they were.
    """
    workdir = workdir_lib.as_path(workdir)
    mesh = mesh_lib.make_mesh()
    tm = trained.load(config, workdir, mesh)
    host = tm.host
    labels, num_samples = requested_samples(None, tm.config.sample, host)
    length, k = host.series_shape
    workdir_lib.check_free_space(  # two .npy files of float32 and the CSV, with its indices
        workdir, num_samples * length * (2 * 4 * k + CSV_BYTES_PER_VALUE * (k + 3)),
        f"{num_samples} samples (samples.npy, samples_unit.npy, samples.csv)",
        "lower config.sample.num_samples")
    unit, labels = sample_series(tm, labels, mesh=mesh)  # (N, L, K) in [0, 1]
    if jax.process_index() == 0:
        raw = host.scaler.inverse(unit).astype(np.float32)
        names = host.column_names or [f"c{k}" for k in range(raw.shape[-1])]  # older checkpoints
        records = [SAMPLES_UNIT, SAMPLES_RAW, SAMPLES_CSV] + ([] if labels is None
                                                              else [SAMPLES_LABELS])
        with workdir_lib.writing(*(workdir / name for name in records)) as files:
            np.save(files[0], unit)
            np.save(files[1], raw)
            write_windows_csv(files[2], raw, names,
                              None if labels is None else np.asarray(host.class_names)[labels])
            if labels is not None:
                np.save(files[3], labels)
    return unit


@workdir_lib.locking
def evaluate_workdir(config, workdir, real_unit=None, allow_workdir_mismatch=False):
    """Scores workdir/samples_unit.npy, clipped to [0, 1], against the real [0, 1] windows, and
    checks them for memorisation against `held_out_windows` of the data set; writes metrics.json
    (and plots into workdir/plots when config.eval.plots: the data's column names title them, and
    loss.png shows the training log). Returns the metrics dict.

    real_unit: the real windows; None loads config.data.name, checked against the data the
    workdir was trained on (`fingerprint.check`; allow_workdir_mismatch scores other data anyway).
    Given real windows leave the memorisation check without a reference (not available).
    """
    from stdiff_jax import metrics  # Only this mode needs the metrics' networks.

    workdir = workdir_lib.as_path(workdir)
    path = workdir / SAMPLES_UNIT
    if not path.exists():
        raise MissingFileError(f"No samples at {path}: run --mode=sample (or all) first.")
    fake = workdir_lib.load_npy(path)
    outside = np.mean((fake < 0) | (fake > 1))
    if outside:  # The protocol scores [0, 1] windows (Diffusion-TS clamps its samples too).
        logging.info("Clipping %.3f%% of the sample values into [0, 1] for scoring.", 100 * outside)
    fake = np.clip(fake, 0.0, 1.0)
    names = dataset = None  # of the columns, for the plots
    held_out, held_out_source = None, "the real windows were given without held-out ones."
    if real_unit is None:
        dataset = fingerprint.checked_dataset(config, workdir, allow_workdir_mismatch)
        real_unit, names = dataset.unit_windows, dataset.column_names
        held_out, held_out_source = held_out_windows(dataset)
    scores = metrics.evaluate(real_unit, fake, repeats=config.eval.repeats, seed=config.eval.seed,
                              metrics=tuple(config.eval.metrics), held_out=held_out,
                              held_out_source=held_out_source)
    if getattr(dataset, "labels", None) is not None and (workdir / SAMPLES_LABELS).exists():
        from stdiff_jax.metrics import classes
        scores.update(classes.evaluate_labelled(
            dataset, fake, workdir_lib.load_npy(workdir / SAMPLES_LABELS), config.eval))
    if jax.process_index() == 0:
        workdir_lib.write_json(workdir / METRICS, checkpoint.to_json(scores))
        if config.eval.plots:
            save_plots(real_unit, fake, workdir, names)
    return scores


def save_plots(real_unit, fake, workdir, names):
    """Draws the evaluation plots, and loss.png from the training log, into workdir/plots: drawn
    in a local temporary folder (matplotlib writes local files; the workdir may be a bucket), then
    each written whole."""
    from stdiff_jax.metrics import plots

    with tempfile.TemporaryDirectory() as local:
        try:
            drawn = plots.save_plots(real_unit, fake, local, names=names)
            if (workdir / trained.METRIC_LOG).exists():
                rows, _ = workdir_lib.read_jsonl(workdir / trained.METRIC_LOG)  # without a cut line
                log = pathlib.Path(local) / trained.METRIC_LOG
                log.write_text("".join(json.dumps(row) + "\n" for row in rows))
                drawn.append(plots.save_loss_curve(log, local))
        except ImportError as e:  # matplotlib and scikit-learn are an optional extra
            logging.warning("Skipping the plots: %s", e)
            return
        (workdir / "plots").mkdir(exist_ok=True)
        paths = [workdir / "plots" / os.path.basename(p) for p in drawn]
        for source, target in zip(drawn, paths):
            workdir_lib.write_bytes(target, pathlib.Path(source).read_bytes())
    logging.info("Plots: %s", ", ".join(map(str, paths)))
