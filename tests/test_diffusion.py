"""The network's output as (x0, eps, v), and the training objective: antithetic times, the MSE
and cross-covariance terms, validation loss."""

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
    """A network that knows the clean batch, so it returns the true velocity of any z."""

    def apply_fn(params, z, logsnr):
        del params
        alpha, sigma = (a[:, None, None, None, None] for a in alpha_sigma(logsnr))
        return (alpha * z - x0) / sigma  # v = alpha eps - sigma x0 with eps = (z - alpha x0) / sigma

    return apply_fn


def linear_apply(params, z, logsnr):
    """A tiny stand-in network (its output is a velocity): a per-channel scale, shifted by the
    log-SNR."""
    return z * params["w"] + params["b"] * logsnr[:, None, None, None, None] / 15.0


def per_sample(a):
    return a[:, None, None, None, None]


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
        None, oracle_apply(x0), x0, rng, SCHEDULE, _normalizer(), 1.0, weighting="eps"))
    loss, metrics = loss_fn(x0, jax.random.key(1))
    assert metrics["mse"] < 1e-5
    assert metrics["cov"] < 1e-6
    assert loss < 1e-5
    # Antithetic times over 16 samples: logsnr >= 2 holds for about the least noisy 22%.
    assert 0.1 < metrics["cov_fraction"] < 0.35


def test_predictions_are_consistent_with_z_and_with_each_other():
    rng = np.random.default_rng(11)
    z, v = _videos(12), _videos(13)
    logsnr = jnp.asarray(rng.uniform(-10.0, 10.0, SHAPE[0]), jnp.float32)
    alpha, sigma = (per_sample(a) for a in alpha_sigma(logsnr))
    pred = diffusion.predictions(z, v, logsnr)
    assert pred.v is v
    np.testing.assert_allclose(pred.eps, sigma * z + alpha * v, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(alpha * pred.x0 + sigma * pred.eps, z, atol=1e-5)
    np.testing.assert_allclose(alpha * pred.eps - sigma * pred.x0, v, atol=1e-4)
    # One scalar log-SNR for the batch (the samplers') means the same as it per sample.
    scalar = diffusion.predictions(z, v, logsnr[3])
    per = diffusion.predictions(z, v, jnp.full(SHAPE[0], logsnr[3]))
    for name in ("x0", "eps", "v"):
        np.testing.assert_allclose(getattr(scalar, name), getattr(per, name), rtol=1e-6,
                                   atol=1e-6)
    # An edited x0 (clipping here) gets the eps and v that go with it.
    clipped = diffusion.predictions(z, v, logsnr, lambda x0: jnp.clip(x0, -0.5, 0.5))
    assert jnp.max(jnp.abs(clipped.x0)) <= 0.5 and jnp.max(jnp.abs(pred.x0)) > 1.0
    np.testing.assert_array_equal(clipped.x0, jnp.clip(pred.x0, -0.5, 0.5))
    np.testing.assert_allclose(alpha * clipped.x0 + sigma * clipped.eps, z, atol=1e-5)
    np.testing.assert_allclose(alpha * clipped.eps - sigma * clipped.x0, clipped.v, atol=1e-5)


def released_objective(params, x0, t, eps, normalizer, cov_weight, weighting):
    """The objective as the released models were trained with it (commit ebe980a), written out:
    the network's velocity turned into eps_hat by the model wrapper, then the loss's formulas."""
    logsnr = SCHEDULE.logsnr(t)
    alpha, sigma = alpha_sigma(logsnr)
    z = per_sample(alpha) * x0 + per_sample(sigma) * eps
    v_hat = linear_apply(params, z, logsnr)
    alpha, sigma = alpha_sigma(logsnr)
    eps_hat = (per_sample(sigma) * z + per_sample(alpha) * v_hat).astype(jnp.float32)
    per = jnp.mean((eps_hat - eps) ** 2, axis=(1, 2, 3, 4))
    if weighting == "v":
        per = per * (1.0 + jnp.exp(-logsnr))
    mse = jnp.mean(per)
    mask = logsnr >= 2.0
    alpha, sigma = alpha_sigma(logsnr)
    x0_hat = (z - per_sample(sigma) * eps_hat) / per_sample(alpha)
    x0_hat = jnp.where(per_sample(mask), x0_hat, x0)
    cov = diffusion.covariance_loss(x0_hat, x0, mask.astype(jnp.float32), normalizer,
                                    ("covariate", "frequency"))
    loss = mse + cov_weight * cov
    return loss, {"mse": mse, "cov": cov, "cov_fraction": jnp.mean(mask.astype(jnp.float32)),
                  "loss": loss}


@pytest.mark.parametrize("weighting", diffusion.WEIGHTINGS)
def test_loss_and_gradients_are_bit_identical_to_the_released_formulas(weighting):
    """The published scores were trained with these roundings: the refactor keeps every bit."""
    x0, eps = _videos(14), _videos(15)
    t = diffusion.stratified_times(SHAPE[0])
    params = {"w": jnp.linspace(0.2, 0.9, 3), "b": jnp.linspace(-0.3, 0.4, 3)}
    normalizer = _normalizer()
    grad = lambda fn: jax.jit(jax.value_and_grad(fn, has_aux=True))
    (loss, metrics), grads = grad(lambda p: diffusion.objective(
        p, linear_apply, x0, t, eps, SCHEDULE, normalizer, 0.1, weighting=weighting))(params)
    (loss_ref, metrics_ref), grads_ref = grad(lambda p: released_objective(
        p, x0, t, eps, normalizer, 0.1, weighting))(params)
    assert 0.0 < metrics["cov_fraction"] < 1.0  # both branches of the covariance mask are taken
    np.testing.assert_array_equal(loss, loss_ref)
    for name in metrics_ref:
        np.testing.assert_array_equal(metrics[name], metrics_ref[name], err_msg=name)
    for g, g_ref in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
        np.testing.assert_array_equal(g, g_ref)


def test_weightings_are_the_eps_and_the_velocity_mse():
    x0, eps = _videos(0), _videos(1)
    t = diffusion.stratified_times(SHAPE[0])
    params = {"w": jnp.float32(0.3), "b": jnp.float32(0.2)}
    logsnr = SCHEDULE.logsnr(t)
    alpha, sigma = (per_sample(a) for a in alpha_sigma(logsnr))
    z = alpha * x0 + sigma * eps
    v_hat = linear_apply(params, z, logsnr)
    for weighting, error in (("v", v_hat - (alpha * eps - sigma * x0)),
                             ("eps", sigma * z + alpha * v_hat - eps)):
        _, metrics = diffusion.objective(params, linear_apply, x0, t, eps, SCHEDULE, None, 0.0,
                                         weighting=weighting)
        np.testing.assert_allclose(metrics["mse"], jnp.mean(error ** 2), rtol=1e-4)
    with pytest.raises(errors.UserError, match=r"weighting 'x0' \(config.diffusion.loss_weighting"):
        diffusion.objective(params, linear_apply, x0, t, eps, SCHEDULE, None, 0.0, weighting="x0")
    with pytest.raises(TypeError, match="weighting"):  # no default: the config decides
        diffusion.objective(params, linear_apply, x0, t, eps, SCHEDULE, None, 0.0)


def test_zero_output_predicts_eps_sigma_z_and_cov_off_means_no_cov_term():
    x0 = _videos(0)
    eps = _videos(1) / np.sqrt(0.8 ** 2 + 0.6 ** 2)  # Unit variance.
    t = diffusion.stratified_times(SHAPE[0])
    loss, metrics = diffusion.objective(None, lambda p, z, s: jnp.zeros_like(z), x0, t, eps,
                                        SCHEDULE, None, 0.0, weighting="eps")
    alpha, sigma = (per_sample(a) for a in alpha_sigma(SCHEDULE.logsnr(t)))
    z = alpha * x0 + sigma * eps
    np.testing.assert_allclose(metrics["mse"], jnp.mean((sigma * z - eps) ** 2), rtol=1e-5)
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
        fn = lambda p: diffusion.objective(p, linear_apply, x0, t, eps, SCHEDULE, normalizer, 0.5,
                                           weighting="v")
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
    validation_loss = lambda p: diffusion.validation_loss(p, linear_apply, x0, SCHEDULE, key, None,
                                                          0.0, weighting="v")[0]
    first = validation_loss(params)
    assert first == validation_loss(params)
    eps = diffusion.standard_normal(key, SHAPE)
    expected, _ = diffusion.objective(params, linear_apply, x0, diffusion.stratified_times(16), eps,
                                      SCHEDULE, None, 0.0, weighting="v")
    np.testing.assert_allclose(first, expected, rtol=1e-6)
    better = {"w": jnp.zeros((3,)), "b": jnp.zeros((3,))}
    # Different parameters give a different score under the same fixed noise.
    assert validation_loss(better) != first

