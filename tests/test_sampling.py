"""Samplers against a Gaussian data distribution, whose exact denoiser and flow are known.

For data x0 ~ N(mu, s^2) per dimension and z = alpha x0 + sigma eps, V = alpha^2 s^2 + sigma^2, the
exact predictions are E[eps | z] = sigma (z - alpha mu) / V and E[x0 | z] = mu + alpha s^2 (z - alpha
mu) / V, so the exact velocity, what a network outputs, is v = alpha sigma (1 - s^2) (z - alpha mu)
/ V - sigma mu; the probability-flow ODE maps the prior draw z1 affinely:
x = alpha_0 mu + sqrt(V_0 / V_1) (z1 - alpha_1 mu).
Deterministic samplers are affine in z1 too, so running them on z1 = 0 and z1 = 1 gives their exact
output mean and scale, free of Monte Carlo error.
"""

import functools
import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from stdiff_jax import sampling
from stdiff_jax.schedule import Schedule, alpha_sigma

SCHEDULE = Schedule()
# The settings config.sample gives the samplers, where a test does not choose them.
OPTIONS = dict(eta=0.0, schedule=SCHEDULE, grid="logsnr", clip_x0=None)
DIMS = (2, 2, 2, 3)  # (T, F, K, 3): 24 independent dimensions.
_rng = np.random.default_rng(0)
MU = jnp.asarray(_rng.uniform(-2.0, 2.0, DIMS), jnp.float32)
S = jnp.asarray(_rng.uniform(0.2, 2.0, DIMS), jnp.float32)


def gaussian_denoiser(z, logsnr):
    """The exact velocity E[v | z] of the Gaussian data."""
    alpha, sigma = (a.reshape(-1, 1, 1, 1, 1) for a in alpha_sigma(logsnr))
    return alpha * sigma * (1 - S ** 2) * (z - alpha * MU) / (alpha ** 2 * S ** 2 + sigma ** 2) - sigma * MU


@functools.partial(jax.jit, static_argnums=(0, 1))
def _flow_errors(solver, num_steps):
    """(max |mean error|, max |scale / exact scale - 1|) of a deterministic sampler, exactly."""
    logsnrs = sampling.logsnr_grid(SCHEDULE, num_steps, "logsnr")
    out = solver(gaussian_denoiser, jnp.stack([jnp.zeros(DIMS), jnp.ones(DIMS)]), logsnrs)
    alpha_1, sigma_1 = alpha_sigma(logsnrs[0])
    alpha_0, sigma_0 = alpha_sigma(logsnrs[-1])
    scale = jnp.sqrt((alpha_0 ** 2 * S ** 2 + sigma_0 ** 2) / (alpha_1 ** 2 * S ** 2 + sigma_1 ** 2))
    offset = alpha_0 * MU - scale * alpha_1 * MU
    return jnp.max(jnp.abs(out[0] - offset)), jnp.max(jnp.abs((out[1] - out[0]) / scale - 1))


def test_logsnr_grids():
    for grid in sampling.GRIDS:
        logsnrs = np.asarray(sampling.logsnr_grid(SCHEDULE, 7, grid))
        assert logsnrs.shape == (8,) and np.all(np.diff(logsnrs) > 0)
        np.testing.assert_allclose(logsnrs[[0, -1]], [-15.0, 15.0], atol=1e-3)
    np.testing.assert_allclose(np.diff(sampling.logsnr_grid(SCHEDULE, 10, "logsnr")), 3.0,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="Unknown sampling grid"):
        sampling.logsnr_grid(SCHEDULE, 10, "karras")


def test_dpmpp_2m_follows_the_exact_flow_in_far_fewer_steps_than_ddim():
    ddim_mean_10, ddim_scale_10 = _flow_errors(sampling.ddim_sample, 10)
    ddim_mean_200, ddim_scale_200 = _flow_errors(sampling.ddim_sample, 200)
    dpm_mean_10, dpm_scale_10 = _flow_errors(sampling.dpmpp_2m_sample, 10)
    dpm_mean_20, dpm_scale_20 = _flow_errors(sampling.dpmpp_2m_sample, 20)
    # Means are exact for every sampler (a point mass is followed exactly); scales carry the
    # discretisation error. Measured: DDIM -31% at 10 steps, -1.9% at 200 (first order);
    # DPM-Solver++(2M) +4.5% at 10, +2.8% at 20.
    assert max(ddim_mean_10, ddim_mean_200, dpm_mean_10, dpm_mean_20) < 2e-3
    assert ddim_scale_200 < 0.025
    assert dpm_scale_10 < 0.05 and dpm_scale_20 < 0.035
    assert dpm_scale_10 < ddim_scale_10 / 5


@pytest.mark.parametrize("method,num_steps,bias", [
    ("ddim", 200, 0.025), ("ancestral", 200, 0.05), ("dpmpp_2m", 20, 0.035)])
def test_samples_reproduce_mean_and_variance(method, num_steps, bias):
    """Tolerances: the scale bias of the discretisation (measured above; ancestral -3.8% at 200
    steps) plus 5 Monte Carlo standard errors over 4,096 samples."""
    n = 4096
    x = jax.jit(lambda key: sampling.sample(gaussian_denoiser, (n, *DIMS), key, method=method,
                                            num_steps=num_steps, **OPTIONS))(jax.random.key(1))
    assert x.shape == (n, *DIMS) and jnp.all(jnp.isfinite(x))
    assert jnp.max(jnp.abs(x.mean(0) - MU) / S) < 5 / np.sqrt(n)
    assert jnp.max(jnp.abs(x.std(0) / S - 1)) < bias + 5 / np.sqrt(2 * n)


def test_ancestral_is_ddim_at_eta_one_and_keys_decide_the_noise():
    z = jnp.asarray(_rng.standard_normal((8, *DIMS)), jnp.float32)
    logsnrs = sampling.logsnr_grid(SCHEDULE, 4, "logsnr")

    @jax.jit
    def run(key, other_key):
        keys = sampling.per_sample_keys(key, 8)
        other = sampling.per_sample_keys(other_key, 8)
        return (sampling.ancestral_sample(gaussian_denoiser, z, logsnrs, keys),
                sampling.ddim_sample(gaussian_denoiser, z, logsnrs, keys, eta=1.0),
                sampling.ancestral_sample(gaussian_denoiser, z, logsnrs, other))

    ancestral, ddim, other = run(jax.random.key(2), jax.random.key(3))
    np.testing.assert_allclose(ancestral, ddim, rtol=1e-4, atol=1e-4)
    assert jnp.min(jnp.abs(other - ancestral)) > 0


def test_bad_options_fail_clearly():
    with pytest.raises(ValueError, match="Unknown sampler"):
        sampling.sample(gaussian_denoiser, (2, *DIMS), jax.random.key(0), method="euler",
                        num_steps=2, **OPTIONS)
    with pytest.raises(ValueError, match=r"eta \(config.sample.eta\) must lie"):
        sampling.ddim_sample(gaussian_denoiser, jnp.zeros((2, *DIMS)), jnp.zeros(3), eta=2.0)
    with pytest.raises(ValueError, match="pass keys"):
        sampling.ddim_sample(gaussian_denoiser, jnp.zeros((2, *DIMS)), jnp.zeros(3), eta=0.5)
    with pytest.raises(ValueError, match="chunk_size >= 1"):
        sampling.generate(gaussian_denoiser, 10, DIMS, jax.random.key(0), 0, method="ddim",
                          num_steps=2, **OPTIONS)


def test_auto_follows_the_classes_and_zero_steps_the_method():
    assert sampling.resolve("auto", 0, has_classes=True) == ("ancestral", 100)
    assert sampling.resolve("auto", 0, has_classes=False) == ("dpmpp_2m", 20)
    assert sampling.resolve("ddim", 0, has_classes=False) == ("ddim", 200)
    # What a config sets wins.
    assert sampling.resolve("dpmpp_2m", 7, has_classes=True) == ("dpmpp_2m", 7)
    assert sampling.resolve("auto", 5, has_classes=True) == ("ancestral", 5)
    with pytest.raises(ValueError, match=r"Unknown sampler 'euler' \(config.sample.method\); "
                                         r"use one of \('auto', 'ddim'"):
        sampling.resolve("euler", 0, has_classes=False)


def test_clip_x0_bounds_the_samples():
    options = dict(OPTIONS, clip_x0=0.5)
    x = jax.jit(lambda key: sampling.sample(gaussian_denoiser, (16, *DIMS), key, method="ddim",
                                            num_steps=3, **options))(jax.random.key(4))
    assert jnp.max(jnp.abs(x)) < 0.51
    assert jnp.max(jnp.abs(x)) > 0.45  # MU reaches beyond 0.5: clipping was active.


def test_generate_pads_the_last_chunk_compiles_once_and_does_not_depend_on_chunking():
    decode = jax.jit(lambda v: v.sum(axis=(2, 3, 4)))  # (chunk, T): a stand-in for video_to_series.
    reports = []

    def jit_once(fn):
        return jax.jit(chex.assert_max_traces(lambda key, first_index: fn(key, first_index=first_index),
                                              n=1))

    key = jax.random.key(5)
    out = sampling.generate(gaussian_denoiser, 10, DIMS, key, 4, method="ancestral", num_steps=4,
                            **OPTIONS, decode=decode, progress=reports.append, jit_fn=jit_once)
    assert isinstance(out, np.ndarray) and out.shape == (10, DIMS[0])
    assert [(p.done, p.total) for p in reports] == [(4, 10), (8, 10), (10, 10)]
    assert reports[-1].eta_s == 0 and reports[-1].rate > 0
    # Sample n depends only on (key, n): one chunk of 10 gives the same samples.
    whole = sampling.generate(gaussian_denoiser, 10, DIMS, key, 10, method="ancestral",
                              num_steps=4, **OPTIONS, decode=decode, progress=None)
    np.testing.assert_allclose(out, whole, rtol=1e-5, atol=1e-5)


def test_run_chunks_dispatches_ahead_trims_and_keeps_order():
    events = []

    def run_chunk(first):
        events.append(("run", first))
        return np.arange(first, first + 4)

    def fetch(chunk):
        events.append(("fetch", int(chunk[0])))
        return chunk

    out = sampling.run_chunks(run_chunk, 10, 4, fetch=fetch, progress=None)
    np.testing.assert_array_equal(out, np.arange(10))
    assert events == [("run", 0), ("run", 4), ("fetch", 0), ("run", 8), ("fetch", 4), ("fetch", 8)]


def test_the_config_is_the_only_place_of_the_sampler_settings():
    """Every config.sample setting `sample` and `generate` take is required: no second default."""
    settings = set(base.base_config().sample) | {"schedule"}
    for fn in (sampling.sample, sampling.generate):
        taken = settings & set(inspect.signature(fn).parameters)
        assert taken >= {"method", "num_steps", "eta", "grid", "clip_x0", "schedule"}, fn
        with_default = [name for name in taken if inspect.signature(fn).parameters[name].default
                        is not inspect.Parameter.empty]
        assert not with_default, (fn.__name__, with_default)


def tanh_network(z, logsnr):
    """A nonlinear stand-in network (its output is a velocity)."""
    weights = jnp.linspace(-1.5, 1.5, np.prod(DIMS)).reshape(DIMS)
    return jnp.tanh(z * weights + logsnr[:, None, None, None, None] / 10.0)


def released_first_step(method, z, x0_prev, inputs, clip_x0):
    """One step of DDIM (eta 0) or DPM-Solver++(2M) as the released models were sampled (commit
    ebe980a), written out: the model wrapper's eps_hat, the sampler's x0_hat (clipped, eps_hat
    recomputed), the update. Scanned as the samplers scan it: inputs (logsnr_s, logsnr_t, h,
    history), x0_prev the carried previous prediction."""
    logsnr_s, logsnr_t, h, history = inputs
    logsnrs = jnp.full((z.shape[0],), logsnr_s, jnp.float32)
    alpha_b, sigma_b = (a[:, None, None, None, None] for a in alpha_sigma(logsnrs))
    eps_hat = sigma_b * z + alpha_b * tanh_network(z, logsnrs)
    alpha, sigma = alpha_sigma(logsnr_s)
    x0_hat = (z - sigma * eps_hat) / alpha
    if clip_x0 is not None:
        x0_hat = jnp.clip(x0_hat, -clip_x0, clip_x0)
        eps_hat = (z - alpha * x0_hat) / sigma
    if method == "ddim":
        alpha_t, sigma_t = alpha_sigma(logsnr_t)
        var_eta = 0.0 ** 2 * sigma_t ** 2 * -jnp.expm1(logsnr_s - logsnr_t)
        return alpha_t * x0_hat + jnp.sqrt(sigma_t ** 2 - var_eta) * eps_hat, x0_prev
    d = x0_hat + history * (x0_hat - x0_prev)
    _, sigma_s = alpha_sigma(logsnr_s)
    alpha_t, sigma_t = alpha_sigma(logsnr_t)
    return sigma_t / sigma_s * z - alpha_t * jnp.expm1(-h) * d, x0_hat


@pytest.mark.parametrize("clip_x0", [None, 0.5])
@pytest.mark.parametrize("method", ["ddim", "dpmpp_2m"])
def test_a_step_is_bit_identical_to_the_released_formulas(method, clip_x0):
    """The published scores were sampled with these roundings: the refactor keeps every bit."""
    z = jnp.asarray(_rng.standard_normal((8, *DIMS)), jnp.float32)
    solver = {"ddim": sampling.ddim_sample, "dpmpp_2m": sampling.dpmpp_2m_sample}[method]

    def reference(z, logsnrs):
        inputs = (logsnrs[:1], logsnrs[1:], jnp.diff(logsnrs / 2), jnp.zeros(1))
        step = lambda carry, xs: (released_first_step(method, *carry, xs, clip_x0), None)
        return jax.lax.scan(step, (z, jnp.zeros_like(z)), inputs)[0][0]

    for logsnr_s in (-14.0, -2.5, 0.5, 7.0):
        logsnrs = jnp.asarray([logsnr_s, logsnr_s + 1.5], jnp.float32)
        step = jax.jit(lambda z, logsnrs: solver(tanh_network, z, logsnrs, clip_x0=clip_x0))(
            z, logsnrs)
        assert not np.array_equal(step, z)  # a real step was taken
        np.testing.assert_array_equal(step, jax.jit(reference)(z, logsnrs),
                                      err_msg=f"logsnr_s={logsnr_s}")
