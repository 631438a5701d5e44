"""Time series as spectro-temporal videos (Section 4.1 of the paper), exactly invertible.

A batch of series `(B, L, K)` becomes a video `(B, T, F, K, 3)`: T STFT frames, F frequency bins,
K covariates and three channels (real part, imaginary part, trend).

The paper resamples an EMA trend to T frames and broadcasts it over F, which loses information: the
residual was taken against the full-rate trend. Here the trend is kept at frame rate and the residual
is defined against that frame-rate trend *upsampled back to L*:

    trend_frames = ema_trend(x)[frame centres]              # (B, T, K)
    trend_full   = upsample(trend_frames)                   # (B, L, K), linear interpolation
    residual     = x - trend_full                           # goes through the STFT

Decoding averages the F copies of the trend channel, upsamples it the same way and adds the inverse
STFT of the residual, so `video_to_series(series_to_video(x)) == x` up to float32 rounding.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from stdiff_jax import stft as stft_lib
from stdiff_jax.errors import UserError

DEFAULT_EMA_ALPHA = 0.2  # Not given by the paper: smooths over ~5 samples, below the STFT window.


def ema_trend(x, alpha=DEFAULT_EMA_ALPHA, axis=-2):
    """Exponential moving average along `axis`: y_0 = x_0, y_n = alpha x_n + (1 - alpha) y_{n-1}."""
    if not 0.0 < alpha <= 1.0:
        raise UserError(f"EMA factor alpha must lie in (0, 1], got {alpha}.")
    x = jnp.moveaxis(jnp.asarray(x), axis, 0)

    def step(prev, xn):
        y = alpha * xn + (1.0 - alpha) * prev
        return y, y

    _, ys = jax.lax.scan(step, x[0], x[1:])
    return jnp.moveaxis(jnp.concatenate([x[:1], ys], axis=0), 0, axis)


@functools.lru_cache(maxsize=None)
def _frame_centres(length, n_fft, hop, center):
    """Sample index at the centre of every STFT frame, clipped to the series."""
    offset = 0 if center else n_fft // 2
    centres = np.arange(stft_lib.num_frames(length, n_fft, hop, center)) * hop + offset
    return np.minimum(centres, length - 1)


@functools.lru_cache(maxsize=None)
def _upsample_matrix(length, n_fft, hop, center):
    """(L, T) linear-interpolation weights from frame centres to every sample (constant past ends)."""
    centres = _frame_centres(length, n_fft, hop, center)
    eye = np.eye(len(centres))
    cols = [np.interp(np.arange(length), centres, eye[t]) for t in range(len(centres))]
    return np.stack(cols, axis=1).astype(np.float32)


def series_to_video(x, n_fft, hop, ema_alpha=DEFAULT_EMA_ALPHA, window="hann", center=True):
    """(B, L, K) series -> (B, T, F, K, 3) video with channels (real, imag, trend)."""
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 3:
        raise ValueError(f"series_to_video expects (B, L, K) series, got shape {x.shape}.")
    length = x.shape[1]
    stft_lib.check_stft_settings(length, n_fft, hop, window, center)
    centres = _frame_centres(length, n_fft, hop, center)
    trend_frames = ema_trend(x, ema_alpha, axis=1)[:, centres]  # (B, T, K)
    upsample = _upsample_matrix(length, n_fft, hop, center)  # (L, T)
    residual = x - jnp.einsum("lt,btk->blk", upsample, trend_frames)  # (B, L, K)
    spec = stft_lib.stft(jnp.swapaxes(residual, 1, 2), n_fft, hop, window, center)  # (B, K, T, F)
    spec = jnp.transpose(spec, (0, 2, 3, 1))  # (B, T, F, K)
    trend = jnp.broadcast_to(trend_frames[:, :, None, :], spec.shape)  # (B, T, F, K)
    return jnp.stack([spec.real, spec.imag, trend], axis=-1)  # (B, T, F, K, 3)


def video_to_series(v, n_fft, hop, length, window="hann", center=True):
    """(B, T, F, K, 3) video -> (B, L, K) series; the exact inverse of `series_to_video`."""
    v = jnp.asarray(v, jnp.float32)
    expected = (stft_lib.num_frames(length, n_fft, hop, center), stft_lib.num_freqs(n_fft))
    if v.ndim != 5 or v.shape[-1] != 3 or v.shape[1:3] != expected:
        raise ValueError(f"video_to_series expects (B, {expected[0]}, {expected[1]}, K, 3) for "
                         f"L={length}, n_fft={n_fft}, hop={hop}; got shape {v.shape}.")
    spec = jnp.transpose(v[..., 0] + 1j * v[..., 1], (0, 3, 1, 2))  # (B, K, T, F)
    residual = stft_lib.istft(spec, n_fft, hop, length, window, center)  # (B, K, L)
    trend_frames = jnp.mean(v[..., 2], axis=2)  # (B, T, K)
    upsample = _upsample_matrix(length, n_fft, hop, center)  # (L, T)
    return jnp.swapaxes(residual, 1, 2) + jnp.einsum("lt,btk->blk", upsample, trend_frames)


@dataclasses.dataclass(frozen=True)
class VideoNormalizer:
    """Per-element standardisation of videos, fitted on the training set.

    Per frame (mean and std of shape (T, F, K, 3)) or pooled over frames ((F, K, 3)); both
    broadcast against (B, T, F, K, 3). Per frame matters where windows are not stationary along
    time: every sines window starts near 0.5, so frame 0 varies ~1/10 as much as the last frames,
    and a pooled std leaves that direction at ~1/100 of unit variance, resolved only in the last
    sampler steps. Elements with (near) zero spread, such as the imaginary part of the DC bin,
    keep std 1 so they stay exactly invertible instead of blowing up.
    """

    mean: np.ndarray  # (T, F, K, 3) or (F, K, 3)
    std: np.ndarray  # like mean

    def normalize(self, v):
        return (v - self.mean) / self.std

    def denormalize(self, v):
        return v * self.std + self.mean

    def to_dict(self):
        return {"mean": np.asarray(self.mean), "std": np.asarray(self.std)}

    @classmethod
    def from_dict(cls, d):
        return cls(mean=np.asarray(d["mean"], np.float32), std=np.asarray(d["std"], np.float32))


@dataclasses.dataclass(frozen=True)
class AttentionStats:
    """Data statistics that initialise the model's attention biases (Section 4.3).

    cov_corr: (K, K) correlation between covariates of their STFT coefficients (real and imaginary
      parts of every frame and bin pooled as samples).
    freq_cov: (F, F) covariance between frequency bins of the STFT log-magnitudes (every frame and
      covariate of every window a sample); the model pools it to frequency patches.
    """

    cov_corr: np.ndarray
    freq_cov: np.ndarray

    def to_dict(self):
        return {"cov_corr": np.asarray(self.cov_corr), "freq_cov": np.asarray(self.freq_cov)}

    @classmethod
    def from_dict(cls, d):
        return cls(cov_corr=np.asarray(d["cov_corr"], np.float32),
                   freq_cov=np.asarray(d["freq_cov"], np.float32))


LOG_MAGNITUDE_EPS = 1e-4  # Floors |S| inside the log so empty bins do not dominate the covariance.


class _Moments:
    """Streaming first and second moments of row vectors, in float64."""

    def __init__(self, dim):
        self.count, self.sum, self.outer = 0, np.zeros(dim), np.zeros((dim, dim))

    def add(self, rows):  # rows: (n, dim)
        rows = np.asarray(rows, np.float64)
        self.count += rows.shape[0]
        self.sum += rows.sum(0)
        self.outer += rows.T @ rows

    def covariance(self):
        mean = self.sum / self.count
        return (self.outer - self.count * np.outer(mean, mean)) / max(self.count - 1, 1)


def _correlation(cov):
    scale = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
    return np.clip(cov / np.outer(scale, scale), -1.0, 1.0)


NORMALIZERS = ("frame", "pooled")


def fit_video_statistics(windows, n_fft, hop, ema_alpha=DEFAULT_EMA_ALPHA, window="hann",
                         center=True, chunk_size=2048, normalizer="pooled"):
    """Normaliser and attention statistics of the videos of `windows` (N, L, K), streamed in chunks.

    normalizer: "frame" (statistics per frame) or "pooled" (over frames), see `VideoNormalizer`.
    """
    if normalizer not in NORMALIZERS:
        raise UserError(f"Unknown video normaliser {normalizer!r}; use one of {NORMALIZERS} "
                        f"(config.video.normalizer).")
    pooled_axes = (0, 1) if normalizer == "pooled" else (0,)
    windows = np.asarray(windows, np.float32)
    if windows.ndim != 3 or not np.all(np.isfinite(windows)):
        raise ValueError(f"fit_video_statistics needs finite (N, L, K) windows, got {windows.shape}.")
    to_video = jax.jit(functools.partial(series_to_video, n_fft=n_fft, hop=hop,
                                         ema_alpha=ema_alpha, window=window, center=center))
    num_k = windows.shape[2]
    num_f = stft_lib.num_freqs(n_fft)
    channel_sum, channel_sq, count = 0.0, 0.0, 0
    cov_moments, freq_moments = _Moments(num_k), _Moments(num_f)
    for start in range(0, len(windows), chunk_size):
        video = np.asarray(to_video(windows[start:start + chunk_size]), np.float64)  # (b, T, F, K, 3)
        channel_sum = channel_sum + video.sum(pooled_axes)
        channel_sq = channel_sq + (video ** 2).sum(pooled_axes)
        count += video.shape[0] * (video.shape[1] if normalizer == "pooled" else 1)
        cov_moments.add(np.moveaxis(video[..., :2], 3, -1).reshape(-1, num_k))
        log_mag = np.log(np.hypot(video[..., 0], video[..., 1]) + LOG_MAGNITUDE_EPS)  # (b, T, F, K)
        freq_moments.add(np.moveaxis(log_mag, 2, -1).reshape(-1, num_f))
    mean = channel_sum / count
    std = np.sqrt(np.maximum(channel_sq / count - mean ** 2, 0.0))
    std = np.where(std > 1e-6 * max(std.max(), 1e-12), std, 1.0)
    normalizer = VideoNormalizer(mean=mean.astype(np.float32), std=std.astype(np.float32))
    stats = AttentionStats(cov_corr=_correlation(cov_moments.covariance()).astype(np.float32),
                           freq_cov=freq_moments.covariance().astype(np.float32))
    return normalizer, stats
