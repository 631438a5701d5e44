"""Short-time Fourier transform as a framing op (a gather of strided windows) plus `jnp.fft`.

Both directions are pure array functions: they compose with `jit`, `vmap` and `grad`, and act on
the last axis so any leading batch/covariate axes pass through.

Conventions follow `torch.stft`/`librosa` with `center=True`: the signal is reflect-padded by
`n_fft // 2` on each side, so frame `m` is centred on sample `m * hop`, and the Hann window is the
periodic one. The inverse is the least-squares overlap-add of Griffin & Lim (1984): windowed frames
summed and divided by the summed squared window, which inverts `stft` exactly wherever that sum is
non-zero (checked by `check_stft_settings`).
"""

import functools

import jax.numpy as jnp
import numpy as np

from stdiff_jax.errors import UserError


def num_frames(length, n_fft, hop, center=True):
    """T = 1 + (L + 2 * (n_fft // 2) - n_fft) // hop frames (with centring)."""
    padded = length + 2 * (n_fft // 2) if center else length
    return 1 + (padded - n_fft) // hop


def num_freqs(n_fft):
    """F = n_fft // 2 + 1 one-sided frequency bins."""
    return n_fft // 2 + 1


def get_window(window, n_fft):
    """A window of length n_fft as a numpy array: "hann" (periodic), "ones", or an array."""
    if isinstance(window, str):
        if window == "hann":
            return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
        if window in ("ones", "boxcar", "rectangular"):
            return np.ones(n_fft)
        raise UserError(f"Unknown STFT window {window!r}; use 'hann', 'ones' or pass an array.")
    window = np.asarray(window, dtype=np.float64)
    if window.shape != (n_fft,):
        raise ValueError(f"STFT window has shape {window.shape}, expected ({n_fft},).")
    return window


@functools.lru_cache(maxsize=None)
def _frame_indices(padded_length, n_fft, hop):
    """(T, n_fft) sample indices of every frame of a padded signal."""
    frames = 1 + (padded_length - n_fft) // hop
    return np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]


def _window_sum_squares(length, n_fft, hop, window, center):
    """Summed squared window at every sample of the (unpadded) signal."""
    pad = n_fft // 2 if center else 0
    idx = _frame_indices(length + 2 * pad, n_fft, hop)
    wss = np.zeros(length + 2 * pad)
    np.add.at(wss, idx, np.broadcast_to(get_window(window, n_fft) ** 2, idx.shape))
    return wss[pad:pad + length]


def check_stft_settings(length, n_fft, hop, window="hann", center=True):
    """Raise a UserError naming the fix when (length, n_fft, hop) cannot be inverted exactly."""
    if n_fft < 2 or hop < 1:
        raise UserError(f"STFT needs n_fft >= 2 and hop >= 1 (config.video.n_fft, "
                        f"config.video.hop), got n_fft={n_fft}, hop={hop}.")
    if hop > n_fft:
        raise UserError(f"STFT hop={hop} exceeds n_fft={n_fft}: samples between frames would be "
                        "lost. Use hop <= n_fft.")
    min_length = n_fft // 2 + 1 if center else n_fft
    if length < min_length:
        raise UserError(
            f"Sequence length {length} is too short for an STFT window of n_fft={n_fft} "
            f"(needs at least {min_length} samples). Use a longer seq_len or a smaller n_fft.")
    uncovered = np.flatnonzero(_window_sum_squares(length, n_fft, hop, window, center) < 1e-8)
    if uncovered.size:
        raise UserError(
            f"STFT frames (n_fft={n_fft}, hop={hop}, L={length}) leave samples {uncovered[:5].tolist()}"
            " uncovered, so the series cannot be reconstructed. Use a smaller hop.")


def frame(x, n_fft, hop):
    """(..., N) -> (..., T, n_fft) overlapping frames, a gather of strided windows."""
    return x[..., _frame_indices(x.shape[-1], n_fft, hop)]


def stft(x, n_fft, hop, window="hann", center=True):
    """Real (..., L) -> complex (..., T, F) short-time Fourier transform.

    F = n_fft // 2 + 1 and T = num_frames(L, n_fft, hop, center).
    """
    x = jnp.asarray(x)
    if center:
        pad = n_fft // 2
        if x.shape[-1] <= pad:
            raise UserError(f"Sequence length {x.shape[-1]} is too short for reflect padding of "
                            f"{pad} (n_fft={n_fft}); use a longer sequence or smaller n_fft.")
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    frames = frame(x, n_fft, hop) * get_window(window, n_fft).astype(x.dtype)  # (..., T, n_fft)
    return jnp.fft.rfft(frames, n=n_fft, axis=-1)  # (..., T, F)


def istft(spec, n_fft, hop, length, window="hann", center=True):
    """Complex (..., T, F) -> real (..., length): least-squares windowed overlap-add inverse."""
    spec = jnp.asarray(spec)
    num_t = spec.shape[-2]
    pad = n_fft // 2 if center else 0
    padded_length = (num_t - 1) * hop + n_fft
    if padded_length < pad + length:
        raise ValueError(f"{num_t} STFT frames cannot cover a signal of length {length} "
                         f"(n_fft={n_fft}, hop={hop}).")
    win = get_window(window, n_fft)
    frames = jnp.fft.irfft(spec, n=n_fft, axis=-1) * win.astype(np.float32)  # (..., T, n_fft)
    idx = _frame_indices(padded_length, n_fft, hop)  # (T, n_fft)
    out = jnp.zeros(spec.shape[:-2] + (padded_length,), frames.dtype)
    out = out.at[..., idx.reshape(-1)].add(frames.reshape(frames.shape[:-2] + (-1,)))
    wss = np.zeros(padded_length)
    np.add.at(wss, idx, np.broadcast_to(win ** 2, idx.shape))
    out = out[..., pad:pad + length]
    wss = wss[pad:pad + length]
    return out / np.where(wss > 1e-8, wss, 1.0).astype(np.float32)
