"""Samplers for the VDM cosine schedule, and chunked generation of many samples.

Every sampler walks a grid of log-SNRs from logsnr_min (pure noise) up to logsnr_max (clean) with one
`jax.lax.scan`, calling `denoise_fn(z, logsnr) -> v` (z: (B, ...), logsnr: (B,); v: the network's
velocity output, which `diffusion.predictions` turns into x0_hat and eps_hat) once a step:
- `ddim_sample`: DDIM (Song et al. 2021), deterministic at eta = 0, the paper's sampler (200 steps);
- `ancestral_sample`: the DDPM posterior q(z_t | z_s, x = x0_hat) in continuous time (VDM);
- `dpmpp_2m_sample`: DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), a second-order multistep
  solver of the probability-flow ODE in data-prediction form, with lambda = logsnr / 2; the first
  step is first order (it has no previous prediction), so it needs only one call a step.

Noise is drawn per sample from `fold_in(key, index)`, index counted over the whole run, so a sample
depends only on the key and its index: not on the batch or chunk size nor on the device layout.
Samples are not clipped (videos are normalised, not bounded) unless `clip_x0` is given.
The grid ends at logsnr_max, where sigma = sqrt(sigmoid(-logsnr_max)) (5.5e-4 at 15) is the noise
left in the output; it is far below the data scale of normalised videos.

A `Guide` steers any of the three samplers with per-step hooks, the one mechanism of conditional
generation (`stdiff_jax.conditional`) and of projections of the clean prediction: `x0_fn` edits
every clean prediction before the update reads it (eps_hat is recomputed to match), `z_fn` edits
the noisy state before every network call, and `jumps` > 1 repeats each step after sending its
result back along the forward process (RePaint's resampling).
"""

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from stdiff_jax.diffusion import predictions, standard_normal
from stdiff_jax.errors import UserError
from stdiff_jax.progress import Meter
from stdiff_jax.schedule import alpha_sigma

METHODS = ("ddim", "ancestral", "dpmpp_2m")
# config.sample.method "auto": ancestral sampling for a model with classes, where guidance drifts
# the deterministic solver and fresh noise each step corrects it (class_sines 95-96% of samples in
# their class's band at w = 2 against 90-92%; JapaneseVowels CAS 0.886 / 0.876 against 0.856 /
# 0.862; docs/results.md, "Generation per class"), DPM-Solver++(2M) without.
AUTO = "auto"
# A sampler's steps when config.sample.num_steps is 0: DPM-Solver++(2M) at 20 scored as well as
# DDIM at the paper's 200 (docs/results.md, "Samplers"); ancestral at the labelled sets' 100.
DEFAULT_STEPS = {"ddim": 200, "ancestral": 100, "dpmpp_2m": 20}
GRIDS = ("logsnr", "time")
GUIDE_STREAM = 2 ** 31 - 1  # Root of a guide's noise streams: far above every step's stream i + 1.


def resolve(method, num_steps, has_classes):
    """(method, num_steps) that a config's sampler setting means for a model with or without
    classes: AUTO is "ancestral" with classes and "dpmpp_2m" without; num_steps 0 the method's
    DEFAULT_STEPS."""
    if method == AUTO:
        method = "ancestral" if has_classes else "dpmpp_2m"
    if method not in METHODS:
        raise UserError(f"Unknown sampler {method!r} (config.sample.method); use one of "
                        f"{(AUTO, *METHODS)}.")
    return method, num_steps or DEFAULT_STEPS[method]


def logsnr_grid(schedule, num_steps, grid):
    """(num_steps + 1,) log-SNRs from logsnr_min up to logsnr_max, uniform in log-SNR or in time t."""
    if num_steps < 1:
        raise UserError(f"The sampler needs num_steps >= 1 (config.sample.num_steps), got "
                        f"{num_steps}.")
    if grid == "logsnr":
        return jnp.linspace(schedule.logsnr_min, schedule.logsnr_max, num_steps + 1)
    if grid == "time":
        return schedule.logsnr(jnp.linspace(1.0, 0.0, num_steps + 1))
    raise UserError(f"Unknown sampling grid {grid!r} (config.sample.grid); use one of {GRIDS}.")


def per_sample_keys(key, batch_size, first_index=0):
    """(B,) keys, fold_in(key, first_index + b): sample b's randomness, whatever the batching."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(first_index + jnp.arange(batch_size))


def _normal(keys, shape, *streams):
    """(B, *shape) standard normals, row b from keys[b] folded with each of `streams` in turn.

    (0,) is the prior draw, (i + 1,) the fresh noise of step i ((i + 1, j) for its attempt j when
    a guide jumps), and (GUIDE_STREAM, i, j, use) the guide's draws at attempt j of step i.
    """

    def draw(key):
        for stream in streams:
            key = jax.random.fold_in(key, stream)
        return standard_normal(key, shape)

    return jax.vmap(draw)(keys)


class Guide(NamedTuple):
    """Per-step hooks that steer a sampler (conditioning, projections); every field is optional.

    x0_fn(x0_hat, logsnr) -> x0_hat: applied to each clean prediction (after clip_x0, before the
      update); eps_hat is recomputed from it, so the update sees a consistent pair. logsnr: scalar.
    z_fn(z, logsnr, noise) -> z: applied to the noisy state before each network call; noise is a
      fresh (B, ...) standard normal of each sample's own stream (e.g. for a forward-process draw of
      the known part, as RePaint does).
    jumps: network calls per grid step. After each attempt but the last, the state goes back from
      logsnr_t to logsnr_s by the forward process q(z_s | z_t) and the step is taken again
      (RePaint's resampling with jump length one step).
    """

    x0_fn: Callable | None = None
    z_fn: Callable | None = None
    jumps: int = 1


def _predict(denoise_fn, z, logsnr, clip_x0, x0_fn=None):
    """(x0_hat, eps_hat) at a scalar log-SNR; clipping or x0_fn edit x0_hat, and eps_hat matches."""

    def edit(x0_hat):
        if clip_x0 is not None:
            x0_hat = jnp.clip(x0_hat, -clip_x0, clip_x0)
        return x0_hat if x0_fn is None else x0_fn(x0_hat, logsnr)

    v = denoise_fn(z, jnp.full((z.shape[0],), logsnr, jnp.float32)).astype(z.dtype)
    pred = predictions(z, v, logsnr, None if clip_x0 is None and x0_fn is None else edit)
    return pred.x0, pred.eps


def _steps(logsnrs):
    """Scan inputs: (step index, log-SNR now, log-SNR next) for every step."""
    return jnp.arange(logsnrs.shape[0] - 1), logsnrs[:-1], logsnrs[1:]


def _run(denoise_fn, transition, z, logsnrs, keys, *, clip_x0, guide, memory=None, extra=()):
    """Scans a sampler's `transition` over the grid, with the guide's hooks and jumps.

    transition(z_s, x0_hat, eps_hat, memory, inputs, noise, attempt) -> (z_t, memory): one step
    from logsnr_s to logsnr_t given the (guided) prediction at z_s; inputs = (i, logsnr_s,
    logsnr_t, *extra[i]); noise() draws the step's fresh (B, ...) standard normal; memory is what
    a multistep solver carries to the next step (every attempt sees the previous grid step's, and
    the last attempt's is kept); attempt: 0, or j > 0 for a state sent back by a jump, whose
    trajectory that memory does not belong to.
    """
    guide = Guide() if guide is None else guide
    if guide.jumps < 1:
        raise ValueError(f"A guide's jumps (network calls per step) must be >= 1, got "
                         f"{guide.jumps}.")
    if (guide.z_fn is not None or guide.jumps > 1) and keys is None:
        raise ValueError("A guide with z_fn or jumps > 1 draws noise: pass keys (one per sample).")
    shape = z.shape[1:]

    def step(carry, inputs):
        z, memory = carry
        i, logsnr_s, logsnr_t = inputs[:3]

        def attempt(j, z_s):
            if guide.z_fn is not None:
                z_s = guide.z_fn(z_s, logsnr_s, _normal(keys, shape, GUIDE_STREAM, i, j, 0))
            x0_hat, eps_hat = _predict(denoise_fn, z_s, logsnr_s, clip_x0, guide.x0_fn)
            streams = (i + 1,) if guide.jumps == 1 else (i + 1, j)
            return transition(z_s, x0_hat, eps_hat, memory, inputs,
                              lambda: _normal(keys, shape, *streams), j)

        if guide.jumps == 1:
            return attempt(0, z), None
        alpha_s, sigma_s = alpha_sigma(logsnr_s)
        alpha_t, _ = alpha_sigma(logsnr_t)
        back_std = sigma_s * jnp.sqrt(-jnp.expm1(logsnr_s - logsnr_t))  # of q(z_s | z_t)

        def again(j, carry):  # Attempt 0 starts from z; attempt j > 0 from z_t sent back to s.
            z_t, _ = carry
            back_noise = _normal(keys, shape, GUIDE_STREAM, i, j, 1)
            z_back = alpha_s / alpha_t * z_t + back_std * back_noise
            return attempt(j, jnp.where(j == 0, z, z_back))

        return jax.lax.fori_loop(0, guide.jumps, again, (z, memory)), None

    (z, _), _ = jax.lax.scan(step, (z, memory), (*_steps(logsnrs), *extra))
    return z


def ddim_sample(denoise_fn, z, logsnrs, keys=None, *, eta=0.0, clip_x0=None, guide=None):
    """DDIM from z (B, ...) at logsnrs[0] through the grid `logsnrs`; eta in [0, 1] (1: DDPM).

    With eta > 0 each step adds fresh noise of variance eta^2 sigma_t^2 (1 - SNR_s / SNR_t), the
    DDPM posterior variance scaled by eta^2, drawn from the per-sample `keys` (B,).
    """
    if not 0.0 <= eta <= 1.0:
        raise UserError(f"DDIM eta (config.sample.eta) must lie in [0, 1] (0: deterministic, "
                        f"1: DDPM), got {eta}.")
    if eta and keys is None:
        raise ValueError("DDIM with eta > 0 draws noise: pass keys (one key per sample).")

    def transition(z, x0_hat, eps_hat, memory, inputs, noise, attempt):
        _, logsnr_s, logsnr_t = inputs
        alpha_t, sigma_t = alpha_sigma(logsnr_t)
        var_eta = eta ** 2 * sigma_t ** 2 * -jnp.expm1(logsnr_s - logsnr_t)
        z = alpha_t * x0_hat + jnp.sqrt(sigma_t ** 2 - var_eta) * eps_hat
        if eta:
            z = z + jnp.sqrt(var_eta) * noise()
        return z, memory

    return _run(denoise_fn, transition, z, logsnrs, keys, clip_x0=clip_x0, guide=guide)


def ancestral_sample(denoise_fn, z, logsnrs, keys, *, clip_x0=None, guide=None):
    """Ancestral sampling: z_t ~ q(z_t | z_s, x = x0_hat) at every step (VDM's sampler).

    With c = 1 - SNR_s / SNR_t the posterior is N(alpha_t / alpha_s (z_s - c sigma_s eps_hat),
    c sigma_t^2): the same process as DDIM at eta = 1, written as the continuous-time DDPM step.
    """

    def transition(z, x0_hat, eps_hat, memory, inputs, noise, attempt):
        _, logsnr_s, logsnr_t = inputs
        alpha_s, sigma_s = alpha_sigma(logsnr_s)
        alpha_t, sigma_t = alpha_sigma(logsnr_t)
        c = -jnp.expm1(logsnr_s - logsnr_t)
        mean = alpha_t / alpha_s * (z - c * sigma_s * eps_hat)
        return mean + jnp.sqrt(c) * sigma_t * noise(), memory

    return _run(denoise_fn, transition, z, logsnrs, keys, clip_x0=clip_x0, guide=guide)


def dpmpp_2m_sample(denoise_fn, z, logsnrs, keys=None, *, clip_x0=None, guide=None):
    """DPM-Solver++(2M): the probability-flow ODE, second order in lambda = logsnr / 2.

    With h_i = lambda_i - lambda_{i-1} and r_i = h_{i-1} / h_i, each step is
        z_i = (sigma_i / sigma_{i-1}) z_{i-1} + alpha_i (1 - e^{-h_i}) D_i,
        D_i = x0_{i-1} + (x0_{i-1} - x0_{i-2}) / (2 r_i),
    the exact solution for a data prediction linear in lambda through the last two; the first step
    takes D_1 = x0_0 (first order), as does every repeat of a step with a guide's jumps.
    Deterministic: keys only for a guide that draws noise.
    """
    lam = logsnrs / 2
    h = jnp.diff(lam)  # (num_steps,)
    r = jnp.concatenate([jnp.ones((1,)), h[:-1] / h[1:]])
    history = jnp.where(jnp.arange(h.shape[0]) == 0, 0.0, 1.0 / (2.0 * r))  # Weight of x0 change.

    def transition(z, x0_hat, eps_hat, x0_prev, inputs, noise, attempt):
        _, logsnr_s, logsnr_t, h_i, history_i = inputs
        # A state sent back by a guide's jump left x0_prev's trajectory: first order from it.
        d = x0_hat + jnp.where(attempt == 0, history_i, 0.0) * (x0_hat - x0_prev)
        _, sigma_s = alpha_sigma(logsnr_s)
        alpha_t, sigma_t = alpha_sigma(logsnr_t)
        return sigma_t / sigma_s * z - alpha_t * jnp.expm1(-h_i) * d, x0_hat

    return _run(denoise_fn, transition, z, logsnrs, keys, clip_x0=clip_x0, guide=guide,
                memory=jnp.zeros_like(z), extra=(h, history))


def sample(denoise_fn, shape, key, *, method, num_steps, eta, schedule, grid, clip_x0,
           first_index=0, guide=None):
    """Draw shape[0] samples of shape[1:] (e.g. videos (B, T, F, K, 3)) with the chosen sampler.

    denoise_fn(z, logsnr) -> v, z (B, ...) and logsnr (B,). The settings are config.sample's:
    method (one of METHODS), num_steps, eta (DDIM's), schedule (a `Schedule`), grid (one of GRIDS)
    and clip_x0 (None: no clipping). Sample b is the one with index
    first_index + b of the run seeded by `key` (first_index may be traced, so chunks share one
    compilation). jit with everything but key and first_index static. guide: a `Guide` (its hooks
    may close over traced per-sample arrays, e.g. a chunk's observations), or None.
    """
    if method not in METHODS:
        raise UserError(f"Unknown sampler {method!r} (config.sample.method); use one of {METHODS}.")
    keys = per_sample_keys(key, shape[0], first_index)  # (B,)
    z = _normal(keys, tuple(shape[1:]), 0)  # (B, ...) ~ N(0, I) at logsnr_min
    logsnrs = logsnr_grid(schedule, num_steps, grid)
    if method == "ddim":
        return ddim_sample(denoise_fn, z, logsnrs, keys, eta=eta, clip_x0=clip_x0, guide=guide)
    if method == "ancestral":
        return ancestral_sample(denoise_fn, z, logsnrs, keys, clip_x0=clip_x0, guide=guide)
    return dpmpp_2m_sample(denoise_fn, z, logsnrs, keys, clip_x0=clip_x0, guide=guide)


def log_progress(p):
    """The default `progress` callback of generation: a log line after every chunk."""
    logging.info("generated %d/%d samples  %s", p.done, p.total, p.describe("samples"))


def run_chunks(run_chunk, num_samples, chunk_size, *, fetch=np.asarray, progress=log_progress):
    """The host loop of chunked generation: (num_samples, ...) numpy outputs, chunk by chunk.

    run_chunk(first_index) returns the chunk_size outputs first_index, first_index + 1, ... (a
    compiled sampler, dispatched asynchronously); fetch brings one to the host as numpy (decoding it
    on the way, if needed). The next chunk is dispatched before the current one is fetched, so the
    host never idles the devices; the last chunk is a full one, trimmed, so nothing recompiles.
    progress: called with a `progress.Progress` after every chunk (None: silent).
    """
    if num_samples < 1 or chunk_size < 1:
        raise UserError(f"Generation needs num_samples >= 1 and chunk_size >= 1, got {num_samples} "
                        f"and {chunk_size}.")
    starts = range(0, num_samples, chunk_size)
    outputs, meter = [], Meter(num_samples)
    pending = run_chunk(starts[0])
    for i, first in enumerate(starts):
        current = pending
        if i + 1 < len(starts):
            pending = run_chunk(starts[i + 1])
        keep = min(chunk_size, num_samples - first)
        outputs.append(np.asarray(fetch(current))[:keep])
        if progress is not None:
            progress(meter.report(first + keep))
    return np.concatenate(outputs)


def generate(denoise_fn, num_samples, sample_shape, key, chunk_size, *, method, num_steps, eta,
             schedule, grid, clip_x0, decode=None, progress=log_progress, jit_fn=jax.jit):
    """num_samples samples of sample_shape in chunks of chunk_size, as one numpy array; the
    sampler settings are `sample`'s.

    The sampler is compiled once, for (chunk_size, *sample_shape), and sample n is the same whatever
    chunk_size (see `sample`). denoise_fn's closed-over parameters become constants of the compiled
    sampler: right for tests and small models; for a trained network compile a sampler that takes
    the parameters as an argument and hand it to `run_chunks`.

    decode: maps a chunk of videos (chunk_size, *sample_shape) to outputs with the same leading axis
      (e.g. denormalise, video_to_series, unscale), run on full chunks so a jitted decode compiles
      once; None keeps the videos.
    progress: called with a `progress.Progress` after every chunk (None: silent).
    jit_fn: compiles the chunk sampler `fn(key, first_index)`; e.g. functools.partial(jax.jit,
      out_shardings=...) places chunks on a device mesh.
    """
    run_chunk = jit_fn(functools.partial(
        sample, denoise_fn, (chunk_size, *sample_shape), method=method, num_steps=num_steps,
        eta=eta, schedule=schedule, grid=grid, clip_x0=clip_x0))
    return run_chunks(lambda first: run_chunk(key, first_index=first), num_samples, chunk_size,
                      fetch=np.asarray if decode is None else decode, progress=progress)
