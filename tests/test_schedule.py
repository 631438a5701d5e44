"""The shifted cosine log-SNR schedule: identities, endpoints, monotonicity, inverse."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stdiff_jax import schedule as schedule_lib

ENDPOINTS = [(-15.0, 15.0), (-10.0, 8.0), (-20.0, 20.0)]


def test_alpha_sigma_is_variance_preserving():
    logsnr = jnp.linspace(-20.0, 20.0, 401)
    alpha, sigma = schedule_lib.alpha_sigma(logsnr)
    np.testing.assert_allclose(alpha ** 2 + sigma ** 2, 1.0, atol=1e-6)
    np.testing.assert_allclose(jnp.log(alpha ** 2 / sigma ** 2), logsnr, atol=1e-3)


@pytest.mark.parametrize("lo,hi", ENDPOINTS)
def test_endpoints_as_configured(lo, hi):
    s = schedule_lib.Schedule(lo, hi)
    np.testing.assert_allclose(s.logsnr(0.0), hi, atol=1e-3)
    np.testing.assert_allclose(s.logsnr(1.0), lo, atol=1e-3)


@pytest.mark.parametrize("lo,hi", ENDPOINTS)
def test_monotone_decreasing_with_negative_derivative(lo, hi):
    s = schedule_lib.Schedule(lo, hi)
    t = jnp.linspace(0.0, 1.0, 1001)
    logsnr = s.logsnr(t)
    assert jnp.all(jnp.isfinite(logsnr))
    assert jnp.all(jnp.diff(logsnr) < 0)
    slope = jax.jit(jax.vmap(jax.grad(s.logsnr)))(t)
    assert jnp.all(slope < 0)
    # The same derivative through jvp, and against the closed form.
    _, tangent = jax.jit(lambda t: jax.jvp(s.logsnr, (t,), (jnp.ones_like(t),)))(t)
    np.testing.assert_allclose(tangent, slope, rtol=1e-5)
    # d/dt [-2 log tan(a t + b)] = -4 a / sin(2 (a t + b)), in float64.
    a, b = schedule_lib._angles(lo, hi)
    exact = -4.0 * a / np.sin(2.0 * (a * np.asarray(t, np.float64) + b))
    np.testing.assert_allclose(slope, exact, rtol=1e-3)


@pytest.mark.parametrize("lo,hi", ENDPOINTS)
def test_inverse_round_trip(lo, hi):
    s = schedule_lib.Schedule(lo, hi)
    t = jnp.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(s.t(s.logsnr(t)), t, atol=1e-5)
    logsnr = jnp.linspace(lo, hi, 101)
    np.testing.assert_allclose(s.logsnr(s.t(logsnr)), logsnr, atol=2e-3)


def test_is_the_cosine_schedule_in_the_interior():
    """With wide endpoints the shift vanishes: alpha^2 = cos^2(pi t / 2)."""
    t = jnp.linspace(0.05, 0.95, 19)
    alpha, _ = schedule_lib.alpha_sigma(schedule_lib.logsnr_cosine(t, -40.0, 40.0))
    np.testing.assert_allclose(alpha ** 2, jnp.cos(jnp.pi * t / 2) ** 2, atol=1e-5)


def test_from_config_and_bad_endpoints():
    config = ml_collections.ConfigDict({"logsnr_min": -12, "logsnr_max": 10, "cov_loss_weight": 0.0})
    s = schedule_lib.Schedule.from_config(config)
    assert s == schedule_lib.Schedule(-12.0, 10.0) and hash(s) == hash(schedule_lib.Schedule(-12.0, 10.0))
    with pytest.raises(ValueError, match="logsnr_min < logsnr_max"):
        schedule_lib.Schedule(5.0, -5.0)
    with pytest.raises(ValueError, match="finite"):
        schedule_lib.Schedule(-float("inf"), 5.0)
