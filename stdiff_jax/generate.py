"""Generation across all devices: the samples of a trained model, chunk by chunk.

The generation batch is split along the same `data` mesh axis as training. The sampler, with the
decoding back to series, is compiled once for a fixed chunk size (a multiple of the device count)
by `compile_chunk_sampler`, which conditional sampling (`conditional.py`) compiles with too; the
last chunk is padded to full size and trimmed, so nothing recompiles. Sample n depends only on
the key and n (`sampling.sample` draws its noise from fold_in(key, n)), so the samples are the
same on 1 or 8 devices and for any chunk size. Parameters are an argument of the compiled sampler,
not constants folded into it.

Decoding: normalised video -> denormalise -> `video_to_series` -> series in model space [-1, 1],
kept unclipped; `sample_series` returns them as (x + 1) / 2 in [0, 1], still unclipped. The
samplers clip their clean-video predictions at config.sample.clip_x0 normaliser stds; with the
network's velocity output x0_hat stays bounded and the clip rarely engages (on the trained `cpu`
models at 50 DDIM steps it moved the [0, 1] samples by 1e-5 to 2e-4 on average, at most
0.04-0.21). `modes.sample_to_workdir` writes the samples to a workdir.
"""

import functools
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from stdiff_jax import labels as labels_lib, sampling, saved_model
from stdiff_jax import mesh as mesh_lib
from stdiff_jax.errors import UserError
from stdiff_jax.schedule import Schedule

PROBE_PER_DEVICE = 8  # Batch per device at which the network's memory is measured.
MEMORY_FRACTION = 0.25  # Share of the free memory a chunk may fill (the rest: headroom, others).
MAX_PER_DEVICE = 1024  # Larger chunks gain little speed but report progress less often.
SAMPLER_BUFFERS = 4  # Video-sized arrays the samplers carry besides the network (z, x0, eps, noise).


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


def sampler_of(config, model):
    """(method, num_steps) of config.sample for `model` (`sampling.resolve`: "auto" follows whether
    the model has classes; num_steps 0 the method's default)."""
    return sampling.resolve(config.sample.method, config.sample.num_steps, model.num_classes > 0)


def compile_sampler(config, mesh, model, host, chunk_size):
    """The `compile_chunk_sampler` of generation: fn(params, key, first_index) -> the chunk's
    chunk_size series (L, K) in [-1, 1], decoded from the videos of config.sample's sampler (host:
    the checkpoint's `saved_model.HostState`: shape, video normaliser, column values); a model
    with classes also takes the chunk's labels (guided at config.sample.guidance)."""
    shape = (chunk_size, *saved_model.video_shape_of(config.video, host.series_shape))
    decode = saved_model.run_decoder(config.video, host)
    settings = sampler_settings(config, *sampler_of(config, model))

    def sample_fn(denoise, key, first_index):
        return decode(sampling.sample(denoise, shape, key, first_index=first_index, **settings))

    return compile_chunk_sampler(sample_fn, mesh, chunk_size,
                                 apply_fn=saved_model.apply_fn_of(model),
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
    compiled = jax.jit(saved_model.apply_fn_of(model)).lower(
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
# The samples of a trained model.
# ------------------------------------------------------------------------------------------------
def requested_samples(labels, sample_config, host):
    """(labels (N,) int32 or None, N): the samples asked of a checkpoint's model
    (`saved_model.HostState`): its classes' labels (`labels.labels_for`), else
    sample_config.num_samples (0: as many as the data set has windows)."""
    labels = labels_lib.labels_for(labels, sample_config, host)
    if labels is not None:
        return labels, len(labels)
    return None, sample_config.num_samples or host.num_windows


def sample_series(tm, labels=None, *, mesh=None, progress=sampling.log_progress, **overrides):
    """Series in [0, 1] generated by a `saved_model.TrainedModel` -> (samples (N, L, K) float32,
    their class indices (N,) or None).

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
    sampler = compile_sampler(config, mesh, model, host, chunk_size)
    logging.info("Generating %d series with %s, %d steps, in chunks of %d on %d devices%s.",
                 num_samples, *sampler_of(config, model), chunk_size, mesh.size,
                 "" if labels is None else f", guidance {config.sample.guidance}")
    start = time.perf_counter()
    series = generate_series(sampler, params, num_samples, chunk_size,
                             jax.random.PRNGKey(config.sample.seed), progress, labels)
    elapsed = time.perf_counter() - start
    logging.info("Generated %d series in %.1f s (%.1f series/s).", num_samples, elapsed,
                 num_samples / elapsed)
    return ((series + 1.0) / 2.0).astype(np.float32), labels


