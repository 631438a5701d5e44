"""Conditioning the samplers on observed values: the maths of imputation and forecasting.

Known values of a series are a linear constraint on its video: the video transform `encode`
(series in model space [-1, 1] -> normalised video) is affine and `decode` inverts it exactly
(decode(encode(x)) == x), so "these values of decode(v) are y" reads C v = y', with C the
observed rows of decode's linear part D. `observation_guide` is the `sampling.Guide` that makes
any of the samplers honour it, at every step:

- the clean prediction x0_hat is corrected to agree with the observations, by one of two edits
  (config.condition.correction): "projection", the smallest change of video that makes them
  agree, x0_hat + C^T (C C^T)^{-1} (y - decode(x0_hat))_observed, the orthogonal projection onto
  {C v = y'} in the normalised video metric (not the oblique re-encoding of the corrected series,
  whose components in the bins of little variance are far from the smallest edit); or
  "regression" (`regression_correction`), the Gaussian regression of the residual on the series'
  covariance given the noisy video (`SeriesPrior`, from the training windows), which moves every
  correlated value of every covariate at once. Both are exact, the corrected video decoding to y
  where observed, because decode is linear; eps_hat is recomputed from the corrected x0_hat, so
  the sampler's update steps towards it;
- the noisy state's observed part is drawn afresh from the forward process (RePaint, Lugmayr et
  al. 2022; `renoise`): the projection applied to z with the target decode(alpha encode(y) +
  sigma noise). The noise of z stays white, the projection being orthogonal in the metric the
  noise is white in, and the part of z that no observation fixes stays as the sampler made it;
- with `jumps` > 1, each step is taken again after sending its result back to the step's start by
  the forward process q(z_s | z_t) (RePaint's resampling, one step at a time), giving the
  unobserved part more network calls to become consistent with the observed one.

`conditional_sample` runs a sampler with that guide and sets the decoded series to the
observations where observed, bit for bit. The measurements behind these choices and the defaults:
docs/ablations.md, "Why the orthogonal projection, and why the regression by default".
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from stdiff_jax import sampling
from stdiff_jax.errors import UserError
from stdiff_jax.schedule import alpha_sigma

CORRECTIONS = ("projection", "regression")  # config.condition.correction
REGRESSION_MAX_SIZE = 1024  # L x K: (L K)^2 floats a sample for the regression's solve


def observation_guide(encode, decode, observed, mask, *, jumps, renoise, prior=None):
    """The `sampling.Guide` that conditions videos on observed values (module docstring).

    encode: (B, L, K) series -> (B, T, F, K, 3) videos, affine and acting on every covariate
      separately (as the STFT, the trend and the per-(F, K, channel) normaliser do); decode: its
      exact left inverse, affine too.
    observed: (B, L, K) series in model space (values where mask is False are ignored).
    mask: (B, L, K) bool, True where observed.
    jumps: network calls per step (`sampling.Guide`).
    renoise: redraw the observed part of every noisy state from the forward process (RePaint);
      False leaves z as the sampler made it, so only the projection of the clean prediction
      conditions (DDNM-style, Wang et al. 2023).
    prior: None, or a `SeriesPrior`: the clean prediction is then corrected by
      `regression_correction` instead of the orthogonal projection (the noisy state keeps the
      projection).
    """
    length, num_columns = observed.shape[1:]
    video_shape = jax.eval_shape(encode, observed).shape[1:]
    zero_video = jnp.zeros((1, *video_shape), observed.dtype)

    def decode_linear(v):  # decode minus its offset
        return decode(v) - decode(jnp.zeros_like(v))

    transpose = jax.linear_transpose(decode_linear, zero_video)
    adjoint = jax.vmap(lambda s: transpose(s[None])[0][0])  # (B, L, K) -> (B, T, F, K, 3)
    # The decoder's Gram matrix D D^T, one (L, L) block per covariate: impulse l in every
    # covariate at once.
    probes = jnp.broadcast_to(jnp.eye(length, dtype=observed.dtype)[:, :, None],
                              (length, length, num_columns))
    gram = jnp.moveaxis(decode_linear(adjoint(probes)), 2, 0)  # (K, L, L)
    m = jnp.moveaxis(mask, 2, 1).astype(observed.dtype)  # (B, K, L)
    # D_o D_o^T of the observed rows, the identity on the others, so one Cholesky serves all.
    gram_observed = (m[..., :, None] * gram * m[..., None, :]
                     + (1.0 - m)[..., :, None] * jnp.eye(length, dtype=observed.dtype))
    cholesky = jnp.linalg.cholesky(gram_observed)  # (B, K, L, L)

    def impose(v, target):  # v (B, T, F, K, 3), target (B, L, K)
        residual = jnp.moveaxis(jnp.where(mask, target - decode(v), 0.0), 2, 1)  # (B, K, L)
        weights = jax.scipy.linalg.cho_solve((cholesky, True), residual[..., None])[..., 0] * m
        return v + adjoint(jnp.moveaxis(weights, 1, 2))

    known = encode(observed)  # a video whose series holds the observations

    if prior is None:
        def x0_fn(x0_hat, logsnr):
            return impose(x0_hat, observed)
    else:
        correct = regression_correction(encode, decode, mask, prior)

        def x0_fn(x0_hat, logsnr):
            return correct(x0_hat, observed, logsnr)

    def z_fn(z, logsnr, noise):
        alpha, sigma = alpha_sigma(logsnr)
        return impose(z, decode(alpha * known + sigma * noise))

    return sampling.Guide(x0_fn=x0_fn, z_fn=z_fn if renoise else None, jumps=jumps)


class SeriesPrior(NamedTuple):
    """A Gaussian prior N(., Sigma) of the flattened (L K,) series and what a noisy video tells of
    them: with G = A^T A (A the linear part of `encode`), a video at signal-to-noise ratio snr
    leaves the series the covariance Sigma_t = (Sigma^{-1} + snr G)^{-1}, kept factored as
    P diag(1 / (1 + snr lam)) P^T (Sigma = L L^T, L^T G L = Q diag(lam) Q^T, P = L Q)."""

    basis: np.ndarray  # P, (L K, L K)
    eigenvalues: np.ndarray  # lam, (L K,)

    def covariance(self, logsnr):
        """Sigma_t at a log-SNR: Sigma at -inf, shrinking as the video gets cleaner."""
        shrink = 1.0 / (1.0 + jnp.exp(logsnr) * jnp.asarray(self.eigenvalues, jnp.float32))
        basis = jnp.asarray(self.basis, jnp.float32)
        return (basis * shrink) @ basis.T


def series_prior(covariance, encode, series_shape):
    """The `SeriesPrior` of a covariance (L K, L K) of series (L, K) seen through `encode`."""
    size = int(np.prod(series_shape))
    basis = jnp.eye(size, dtype=jnp.float32).reshape(size, *series_shape)
    zero = encode(jnp.zeros((1, *series_shape), jnp.float32))
    images = np.asarray(encode(basis) - zero, np.float64).reshape(size, -1)  # A^T, (L K, video)
    cholesky = np.linalg.cholesky(np.asarray(covariance, np.float64))
    eigenvalues, q = np.linalg.eigh(cholesky.T @ (images @ images.T) @ cholesky)
    return SeriesPrior(basis=cholesky @ q, eigenvalues=np.maximum(eigenvalues, 0.0))


def regression_correction(encode, decode, mask, prior):
    """correct(v, target, logsnr) -> v edited so that decode(v) == target where `mask`, by the
    Gaussian regression of the residual on the series' covariance given the noisy video.

    The residual r_o = (target - decode(v))_o of the observed values o moves the series by
    Sigma_t[:, o] Sigma_t[o, o]^{-1} r_o, with Sigma_t the `SeriesPrior` covariance at the step's
    log-SNR: the conditioning of a Gaussian posterior of the clean series, centred on the network's
    prediction, on the observations (PiGDM, Song et al. 2023, with a Gaussian prior's posterior
    covariance). Exact on o, and carried to every unobserved value of every covariate as far as
    the data's correlations reach at that noise level: at high noise the prior's (the five price
    columns of stocks move together); at the clean end Sigma_t tends to (snr G)^{-1} and the
    edit to the smallest one in the video metric, the projection's. The orthogonal
    projection edits only the covariate it observes and leaves the coupling to the network,
    which RePaint shows the observations one noise level at a time (docs/ablations.md). The edit
    is encoded by the linear part of `encode`, so the video decodes exactly to the corrected
    series.
    """
    batch, length, num_columns = mask.shape
    size = length * num_columns
    m = mask.reshape(batch, size).astype(jnp.float32)

    def correct(v, target, logsnr):
        cov = prior.covariance(logsnr)
        # Sigma_t[o, o] on the observed values, the identity on the others: one Cholesky a mask.
        scale = jnp.mean(jnp.diag(cov))
        gram = (m[:, :, None] * cov * m[:, None, :]
                + (1.0 - m)[:, :, None] * scale * jnp.eye(size))
        residual = jnp.where(mask, target - decode(v), 0.0).reshape(batch, size)
        weights = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(gram), True),
                                             residual[..., None])[..., 0] * m
        edit = (weights @ cov).reshape(batch, length, num_columns)  # cov is symmetric
        return v + encode(edit) - encode(jnp.zeros_like(edit))

    return correct


def series_covariance(windows, ridge):
    """(L K, L K) float64 covariance of series windows (N, L, K), flattened step-major, with
    `ridge` x its mean variance added to the diagonal: a little independent noise per value, so
    that the observed block stays invertible where columns are copies (stocks' Close and Adj
    Close) and the regression stays exact on the observed values."""
    flat = np.asarray(windows, np.float64).reshape(len(windows), -1)
    cov = np.cov(flat, rowvar=False)
    return cov + ridge * np.mean(np.diag(cov)) * np.eye(cov.shape[0])


def regression_prior(windows, ridge, encode, series_shape):
    """The `SeriesPrior`, in model space with `series_covariance`'s ridge, of series windows
    (N, L, K) seen through `encode`; UserError for windows of more than REGRESSION_MAX_SIZE
    values (`check_regression_size`)."""
    check_regression_size(series_shape)
    return series_prior(series_covariance(windows, ridge), encode, series_shape)


def check_regression_size(series_shape):
    """UserError when windows (L, K) hold more than REGRESSION_MAX_SIZE values: the regression
    solves a system of L x K values per sample."""
    size = int(np.prod(series_shape))
    if size > REGRESSION_MAX_SIZE:
        raise UserError(f"The regression correction solves a system of L x K = {size} values per "
                        f"sample, more than {REGRESSION_MAX_SIZE}: use "
                        f"config.condition.correction=projection for windows this large.")


def conditional_sample(denoise_fn, encode, decode, observed, mask, video_shape, key, *,
                       jumps, renoise, prior=None, first_index=0, **sampler_options):
    """(B, L, K) series in model space that agree with `observed` where `mask`, bit for bit.

    Sample b is sample first_index + b of the run of `key`. jumps, renoise, prior: as for
    `observation_guide`.
    sampler_options: `sampling.sample`'s method, num_steps, eta, schedule, grid and clip_x0.
    """
    guide = observation_guide(encode, decode, observed, mask, jumps=jumps, renoise=renoise,
                              prior=prior)
    videos = sampling.sample(denoise_fn, (observed.shape[0], *video_shape), key,
                             first_index=first_index, guide=guide, **sampler_options)
    return jnp.where(mask, observed, decode(videos))
