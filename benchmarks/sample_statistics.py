"""Per-column statistics of windows that the scores hardly see, shared by `samples_look.py` and
`energy_sources.py`: the power spectrum, the level, size and roughness of windows, and the tails
of their steps. Every function takes (N, L, K) windows."""

import numpy as np
import scipy.stats


def power(windows):
    """(F, K) mean periodogram of (N, L, K) windows after removing each window's mean."""
    centred = windows - windows.mean(1, keepdims=True)
    return (np.abs(np.fft.rfft(centred, axis=1)) ** 2).mean(0)


def window_statistics(windows):
    """name -> (N, K) per-window values."""
    return {"window mean": windows.mean(1), "within std": windows.std(1),
            "difference std": np.diff(windows, axis=1).std(1)}


def tail_statistics(windows):
    """name -> (K,) tail measures of (N, L, K) windows."""
    k = windows.shape[2]
    steps = np.diff(windows, axis=1).reshape(-1, k)
    return {"value kurtosis": scipy.stats.kurtosis(windows.reshape(-1, k), axis=0),
            "step kurtosis": scipy.stats.kurtosis(steps, axis=0),
            "|step| q99.9": np.quantile(np.abs(steps), 0.999, axis=0)}
