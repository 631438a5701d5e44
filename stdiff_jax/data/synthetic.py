"""The sines data set of TimeGAN / Diffusion-TS, drawn in their exact random order.

Their generator seeds numpy's global RNG and, for each sample and each channel, draws the frequency
then the phase from U(0, 0.1). `RandomState(seed).uniform(size=(N, K, 2))` draws the same numbers
in the same order (legacy uniform is one double per value, row-major), so the windows are identical
to theirs without a Python loop and without touching numpy's global RNG.
"""

import numpy as np

NUM_SAMPLES = 10_000
NUM_CHANNELS = 5
SEED = 123


def sine_windows(num=NUM_SAMPLES, seq_len=24, dim=NUM_CHANNELS, seed=SEED):
    """(num, seq_len, dim) float64 windows in [0, 1]: (sin(freq * j + phase) + 1) / 2."""
    draws = np.random.RandomState(seed).uniform(0, 0.1, size=(num, dim, 2))  # (N, K, [freq, phase])
    freq, phase = draws[..., 0], draws[..., 1]  # (N, K) each
    j = np.arange(seq_len, dtype=np.float64)  # (L,)
    x = np.sin(freq[:, None, :] * j[None, :, None] + phase[:, None, :])  # (N, L, K)
    return (x + 1) * 0.5
