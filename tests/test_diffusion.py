"""The training objective: antithetic times, the MSE and cross-covariance terms, validation loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stdiff_jax import diffusion, errors
from stdiff_jax.schedule import Schedule, alpha_sigma
from stdiff_jax.video import VideoNormalizer

SHAPE = (16, 3, 4, 3, 3)  # (B, T, F, K, 3)
SCHEDULE = Schedule()


def _videos(seed, shape=SHAPE):
    """Videos whose covariates and frequencies are correlated, so correlations are not trivial.

    Drawn with numpy: every new shape of jax.random.normal costs seconds of XLA compilation.
    """
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(shape[:3] + (1, shape[4]))
    return jnp.asarray(0.8 * shared + 0.6 * rng.standard_normal(shape), jnp.float32)


def _normalizer():
    f, k = SHAPE[2], SHAPE[3]
    mean = np.linspace(-0.5, 0.5, f * k * 3).reshape(f, k, 3).astype(np.float32)
    std = np.linspace(0.5, 2.0, f * k * 3).reshape(f, k, 3).astype(np.float32)
    return VideoNormalizer(mean=mean, std=std)


def oracle_apply(x0):
    """A denoiser that knows the clean batch, so it returns the true noise of any z."""

    def apply_fn(params, z, logsnr):
        del params
        alpha, sigma = alpha_sigma(logsnr)
        return (z - alpha[:, None, None, None, None] * x0) / sigma[:, None, None, None, None]

    return apply_fn


def linear_apply(params, z, logsnr):
    """A tiny stand-in network: a per-channel scale, shifted by the log-SNR."""
    return z * params["w"] + params["b"] * logsnr[:, None, None, None, None] / 15.0


def test_antithetic_times_cover_the_unit_interval_evenly():
    for seed in range(3):
        t = np.sort(np.asarray(diffusion.antithetic_times(jax.random.key(seed), 8)))
        assert np.all((t >= 0) & (t < 1))
        np.testing.assert_allclose(np.diff(t), 1 / 8, atol=1e-6)
    strata = np.asarray(diffusion.stratified_times(4))
    np.testing.assert_allclose(strata, [0.125, 0.375, 0.625, 0.875])


def test_oracle_denoiser_has_zero_loss_under_jit():
    x0 = _videos(0)
    loss_fn = jax.jit(lambda x0, rng: diffusion.diffusion_loss(
        None, oracle_apply(x0), x0, rng, SCHEDULE, normalizer=_normalizer(), cov_weight=1.0))
    loss, metrics = loss_fn(x0, jax.random.key(1))
    assert metrics["mse"] < 1e-5
    assert metrics["cov"] < 1e-6
    assert loss < 1e-5
    # Antithetic times over 16 samples: logsnr >= 2 holds for about the least noisy 22%.
    assert 0.1 < metrics["cov_fraction"] < 0.35


def test_v_weighting_is_the_velocity_mse():
    x0, eps = _videos(0), _videos(1)
    t = diffusion.stratified_times(SHAPE[0])
    params = {"w": jnp.float32(0.3), "b": jnp.float32(0.2)}
    _, metrics = diffusion.objective(params, linear_apply, x0, t, eps, SCHEDULE, weighting="v")
    logsnr = SCHEDULE.logsnr(t)
    alpha, sigma = (a[:, None, None, None, None] for a in alpha_sigma(logsnr))
    z = alpha * x0 + sigma * eps
    x0_hat = diffusion.predict_x0(z, linear_apply(params, z, logsnr), logsnr)
    v_hat = (alpha * z - x0_hat) / sigma  # v = alpha eps - sigma x0 = (alpha z - x0) / sigma
    v = alpha * eps - sigma * x0
    np.testing.assert_allclose(metrics["mse"], jnp.mean((v_hat - v) ** 2), rtol=1e-4)
    with pytest.raises(errors.UserError, match=r"weighting 'x0' \(config.diffusion.loss_weighting"):
        diffusion.objective(params, linear_apply, x0, t, eps, SCHEDULE, weighting="x0")


def test_zero_denoiser_mse_is_the_noise_power_and_cov_off_means_no_cov_term():
    x0 = _videos(0)
    eps = _videos(1) / np.sqrt(0.8 ** 2 + 0.6 ** 2)  # Unit variance.
    loss, metrics = diffusion.objective(None, lambda p, z, s: jnp.zeros_like(z), x0,
                                        diffusion.stratified_times(SHAPE[0]), eps, SCHEDULE)
    np.testing.assert_allclose(metrics["mse"], jnp.mean(eps ** 2), rtol=1e-6)
    assert set(metrics) == {"loss", "mse"} and loss == metrics["mse"]


def test_weighted_correlation_matches_numpy_and_masks_samples():
    x = np.asarray(_videos(3)[..., 0])  # (B, T, F, K)
    weights = np.zeros(SHAPE[0], np.float32)
    weights[:5] = 1.0
    correlation = jax.jit(diffusion.weighted_correlation, static_argnums=2)
    for axis in (2, 3):
        corr = correlation(jnp.asarray(x), jnp.asarray(weights), axis)
        rows = np.moveaxis(x[:5], axis, -1).reshape(-1, x.shape[axis])
        np.testing.assert_allclose(corr, np.corrcoef(rows, rowvar=False), atol=1e-5)
    empty = correlation(jnp.asarray(x), jnp.zeros(SHAPE[0]), 3)
    np.testing.assert_array_equal(empty, 0.0)


def test_covariance_loss_zero_iff_correlations_agree():
    normalizer = _normalizer()

    @jax.jit
    def losses(pred, clean, weights):  # covariate, frequency, both
        return jnp.stack([diffusion.covariance_loss(pred, clean, weights, normalizer, axes)
                          for axes in [("covariate",), ("frequency",), ("covariate", "frequency")]])

    x0 = _videos(4)
    weights = jnp.ones(SHAPE[0])
    assert jnp.all(losses(x0, x0, weights) < 1e-10)
    noisy = x0 + 0.5 * _videos(5)
    cov, freq, both = losses(noisy, x0, weights)
    assert cov > 1e-3 and freq > 1e-3
    np.testing.assert_allclose(both, cov + freq, rtol=1e-6)
    # Masked-out samples do not count: garbage there changes nothing.
    mask = jnp.arange(SHAPE[0]) < 8
    mixed = jnp.where(mask[:, None, None, None, None], x0, noisy)
    assert jnp.all(losses(mixed, x0, mask.astype(jnp.float32)) < 1e-10)
    with pytest.raises(ValueError, match="Unknown cross-covariance axes"):
        diffusion.covariance_loss(x0, x0, weights, normalizer, ("time",))


def test_magnitudes_use_true_scale():
    v = _videos(6)
    normalizer = _normalizer()
    true = normalizer.denormalize(v)
    np.testing.assert_allclose(diffusion.stft_magnitudes(v, normalizer),
                               np.hypot(true[..., 0], true[..., 1]), rtol=1e-5, atol=1e-4)


def test_loss_gradients_are_finite_under_jit():
    x0 = _videos(7)
    params = {"w": jnp.full((3,), 0.5), "b": jnp.zeros((3,))}
    t = diffusion.stratified_times(SHAPE[0])
    eps = _videos(8)
    normalizer = _normalizer()

    @jax.jit
    def loss_and_grad(params):
        fn = lambda p: diffusion.objective(p, linear_apply, x0, t, eps, SCHEDULE,
                                           normalizer=normalizer, cov_weight=0.5)
        return jax.value_and_grad(fn, has_aux=True)(params)

    (loss, metrics), grads = loss_and_grad(params)
    assert jnp.isfinite(loss) and metrics["cov"] > 0
    np.testing.assert_allclose(loss, metrics["mse"] + 0.5 * metrics["cov"], rtol=1e-6)
    assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))
    assert jnp.all(grads["w"] != 0)


def test_validation_loss_is_deterministic_at_stratified_times():
    x0 = _videos(9)
    params = {"w": jnp.full((3,), 0.5), "b": jnp.ones((3,))}
    key = jax.random.key(10)
    first, m1 = diffusion.validation_loss(params, linear_apply, x0, SCHEDULE, key)
    again, _ = diffusion.validation_loss(params, linear_apply, x0, SCHEDULE, key)
    assert first == again
    eps = diffusion.standard_normal(key, SHAPE)
    expected, _ = diffusion.objective(params, linear_apply, x0, diffusion.stratified_times(16), eps,
                                      SCHEDULE)
    np.testing.assert_allclose(first, expected, rtol=1e-6)
    better = {"w": jnp.zeros((3,)), "b": jnp.zeros((3,))}
    # Different parameters give a different score under the same fixed noise.
    assert diffusion.validation_loss(better, linear_apply, x0, SCHEDULE, key)[0] != first

