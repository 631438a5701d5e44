"""The training objective: epsilon-prediction MSE plus a cross-covariance loss on STFT magnitudes.

Weightings of the MSE across noise levels (`weighting`): in terms of the clean video, the eps-MSE
is SNR ||x0_hat - x0||^2, so below logsnr 0 an error of the clean prediction barely costs
anything (1.8% of its square at logsnr -4), though that is where a window's level and the
coupling of its covariates' levels are decided. "v" is the MSE of the velocity
v = alpha eps - sigma x0, (1 + SNR) ||x0_hat - x0||^2 = (1 + 1 / SNR) x the eps-MSE per sample
(Salimans & Ho, 2022): unit weight on the clean prediction at low SNR, the eps-MSE's at high SNR.

Videos are `(B, T, F, K, 3)`, normalised per (F, K, channel); channels are (real, imag, trend).
A batch is noised at times drawn antithetically (one uniform shift of an evenly spaced grid, as in
VDM), which covers the noise levels evenly within every batch and lowers the loss variance.

The cross-covariance loss (paper, Section 5) compares normalised covariance (correlation) matrices of
STFT magnitudes |S| = sqrt(re^2 + im^2) between the predicted clean videos and the clean batch:
- The clean prediction is x0_hat = (z - sigma eps_hat) / alpha. At high noise it is the blurred
  posterior mean E[x0 | z], whose correlations are not those of data, so only samples with
  logsnr >= `cov_logsnr_min` (default 2: the posterior spread of unit-variance data is then below
  a third of its scale) contribute; the rest are masked out, and both matrices are computed over the
  same contributing samples.
- Magnitudes need true scale, so real and imaginary channels are denormalised first.
- Axes: "covariate" is the K x K correlation between covariates (the cross-covariate structure the
  correlational score measures), pooled over batch, frames and frequencies; "frequency" is the
  F x F correlation between frequency bins (bands that co-vary, such as harmonics), pooled over
  batch, frames and covariates. Both by default; the loss is the mean squared difference of the
  matrices' entries, summed over axes.
"""

import math

import jax
import jax.numpy as jnp

from stdiff_jax.errors import UserError
from stdiff_jax.schedule import alpha_sigma

COV_AXES = {"frequency": 2, "covariate": 3}  # Axes of the (B, T, F, K) magnitudes.
MAGNITUDE_EPS = 1e-8  # Inside the square root: keeps the gradient of |S| finite at S = 0.
CORRELATION_EPS = 1e-8  # Added to variances: a constant bin gets zero correlations, not NaN.
WEIGHTINGS = ("eps", "v")


def standard_normal(key, shape):
    """N(0, I) of `shape`, drawn flat: XLA:CPU compiles threefry for a 5-D shape 3-5x slower."""
    return jax.random.normal(key, (math.prod(shape),), jnp.float32).reshape(shape)


def antithetic_times(key, n):
    """n times in [0, 1): one uniform shift of the grid i / n, so every batch spans all noise levels."""
    u = jax.random.uniform(key, ())
    return jnp.mod(u + jnp.arange(n) / n, 1.0)  # (n,)


def stratified_times(n):
    """Midpoints of n equal strata of [0, 1): fixed times for a low-variance validation loss."""
    return (jnp.arange(n) + 0.5) / n  # (n,)


def _per_sample(x, ndim):
    """(B,) -> (B, 1, ..., 1) with `ndim` axes in all, to scale a batch of videos sample by sample."""
    return x.reshape(x.shape + (1,) * (ndim - 1))


def diffuse(x0, logsnr, eps):
    """z = alpha x0 + sigma eps for videos (B, ...) at per-sample log-SNRs (B,)."""
    alpha, sigma = alpha_sigma(logsnr)
    return _per_sample(alpha, x0.ndim) * x0 + _per_sample(sigma, x0.ndim) * eps


def eps_from_velocity(z, v_hat, logsnr):
    """The noise prediction of a network that outputs the velocity v = alpha eps - sigma x0.

    eps = sigma z + alpha v (Salimans & Ho, 2022). The loss stays the paper's epsilon MSE; only the
    network's output is parameterised so. Why: a plain eps-network must reproduce z to within alpha
    (5e-4 at log-SNR -15) for x0 = (z - sigma eps) / alpha to stay bounded, and its small errors at
    low SNR sent every DDIM trajectory of a trained model to videos 100x the data's scale. Here the
    noise at low SNR is sigma z by construction and x0 = alpha z - sigma v stays bounded.
    """
    alpha, sigma = alpha_sigma(logsnr)
    return _per_sample(sigma, z.ndim) * z + _per_sample(alpha, z.ndim) * v_hat


def predict_x0(z, eps_hat, logsnr):
    """The clean video implied by a noise prediction: (z - sigma eps_hat) / alpha."""
    alpha, sigma = alpha_sigma(logsnr)
    return (z - _per_sample(sigma, z.ndim) * eps_hat) / _per_sample(alpha, z.ndim)


def stft_magnitudes(video, normalizer=None):
    """|S| of the real and imaginary channels, in true scale: (B, T, F, K, 3) -> (B, T, F, K)."""
    if normalizer is not None:
        video = normalizer.denormalize(video)
    return jnp.sqrt(video[..., 0] ** 2 + video[..., 1] ** 2 + MAGNITUDE_EPS)


def weighted_correlation(x, weights, axis):
    """Correlation matrix between the entries of `x` along `axis`, pooled over all other axes.

    x: (B, ...) with the correlated axis among the rest; weights: (B,) per-sample weights (zeros
    mask a sample out). Returns (n, n) with n = x.shape[axis]; all zeros if every weight is zero.
    """
    n = x.shape[axis]
    w = jnp.broadcast_to(_per_sample(weights, x.ndim), x.shape)
    rows = jnp.moveaxis(x, axis, -1).reshape(-1, n)  # (N, n)
    w = jnp.moveaxis(w, axis, -1).reshape(-1, n)[:, 0]  # (N,)
    total = jnp.maximum(w.sum(), 1e-12)
    centred = rows - (w @ rows) / total  # (N, n)
    cov = (centred * w[:, None]).T @ centred / total  # (n, n)
    scale = jnp.sqrt(jnp.diag(cov) + CORRELATION_EPS)
    return cov / (scale[:, None] * scale[None, :])


def covariance_loss(x0_hat, x0, weights, normalizer=None, axes=("covariate", "frequency")):
    """Sum over `axes` of the mean squared difference between the magnitudes' correlation matrices.

    x0_hat, x0: (B, T, F, K, 3) normalised videos; weights: (B,), which samples count.
    """
    unknown = set(axes) - set(COV_AXES)
    if unknown:
        raise UserError(f"Unknown cross-covariance axes {sorted(unknown)}; use {sorted(COV_AXES)}.")
    mag_hat = stft_magnitudes(x0_hat, normalizer)  # (B, T, F, K)
    mag = jax.lax.stop_gradient(stft_magnitudes(x0, normalizer))  # (B, T, F, K)
    loss = jnp.zeros((), jnp.float32)
    for name in axes:
        corr_hat = weighted_correlation(mag_hat, weights, COV_AXES[name])
        corr = weighted_correlation(mag, weights, COV_AXES[name])
        loss = loss + jnp.mean((corr_hat - corr) ** 2)
    return loss


def objective(params, apply_fn, x0, t, eps, schedule, normalizer=None, cov_weight=0.0,
              cov_logsnr_min=2.0, cov_axes=("covariate", "frequency"), weighting="eps"):
    """The loss at given times (B,) and noise (like x0); both losses below are this at random draws.

    `cov_weight` must be a Python number: 0 leaves the cross-covariance term out of the graph.
    `weighting`: one of WEIGHTINGS, the MSE's weight across noise levels (module docstring).
    Returns (loss, metrics) with metrics "loss", "mse" and, when it is on, "cov" (unweighted) and
    "cov_fraction" (the share of the batch noisy little enough to enter it).
    """
    x0 = x0.astype(jnp.float32)
    logsnr = schedule.logsnr(t)  # (B,)
    z = diffuse(x0, logsnr, eps)  # (B, T, F, K, 3)
    eps_hat = apply_fn(params, z, logsnr).astype(jnp.float32)  # (B, T, F, K, 3)
    if weighting not in WEIGHTINGS:
        raise UserError(f"Unknown loss weighting {weighting!r} "
                        f"(config.diffusion.loss_weighting); use one of {WEIGHTINGS}.")
    per_sample = jnp.mean((eps_hat - eps) ** 2, axis=tuple(range(1, x0.ndim)))  # (B,)
    if weighting == "v":
        per_sample = per_sample * (1.0 + jnp.exp(-logsnr))  # ||v_hat - v||^2
    mse = jnp.mean(per_sample)
    metrics = {"mse": mse}
    loss = mse
    if cov_weight:
        mask = logsnr >= cov_logsnr_min  # (B,)
        # Masked samples take the clean video: their x0_hat (divided by a tiny alpha) never enters.
        x0_hat = jnp.where(_per_sample(mask, x0.ndim), predict_x0(z, eps_hat, logsnr), x0)
        weights = mask.astype(jnp.float32)
        cov = covariance_loss(x0_hat, x0, weights, normalizer, cov_axes)
        loss = loss + cov_weight * cov
        metrics.update(cov=cov, cov_fraction=jnp.mean(weights))
    metrics["loss"] = loss
    return loss, metrics


def diffusion_loss(params, apply_fn, x0, rng, schedule, normalizer=None, cov_weight=0.0,
                   cov_logsnr_min=2.0, cov_axes=("covariate", "frequency"), weighting="eps"):
    """Training loss of a batch of clean normalised videos x0 (B, T, F, K, 3) -> (loss, metrics).

    apply_fn(params, z, logsnr) -> eps_hat predicts the noise of z (B, T, F, K, 3) at logsnr (B,).
    """
    t_key, eps_key = jax.random.split(rng)
    t = antithetic_times(t_key, x0.shape[0])  # (B,)
    eps = standard_normal(eps_key, x0.shape)
    return objective(params, apply_fn, x0, t, eps, schedule, normalizer, cov_weight,
                     cov_logsnr_min, cov_axes, weighting)


def validation_loss(params, apply_fn, x0, schedule, key, normalizer=None, cov_weight=0.0,
                    cov_logsnr_min=2.0, cov_axes=("covariate", "frequency"), weighting="eps"):
    """The training loss at fixed stratified times and noise from `key`: pass the same key (per
    batch) at every evaluation, and successive scores differ only through the parameters."""
    t = stratified_times(x0.shape[0])  # (B,)
    eps = standard_normal(key, x0.shape)
    return objective(params, apply_fn, x0, t, eps, schedule, normalizer, cov_weight,
                     cov_logsnr_min, cov_axes, weighting)
