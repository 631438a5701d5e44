"""Correlational score: distance between the lag-0 cross-correlation matrices of two sets.

Follows Diffusion-TS (`Utils/cross_correlation.py`, `CrossCorrelLoss` with `max_lag=1`, and the
loop of its metric notebook): standardise each set per channel over (batch, time) with the
unbiased std, take the mean over batch and time of x_i * x_j for every pair i >= j (diagonal
included, `torch.tril_indices` order), and score `sum |fake - real| / 10`. Each repeat draws
`N // 5` windows with replacement from each set (`np.random.randint`, N the real set's size).
"""

import numpy as np

from stdiff_jax.metrics.inputs import check_windows
from stdiff_jax.metrics.scan_train import stack_repeats

SUBSETS = 5  # the notebook's `size = int(len(real) / iterations)` with 5 iterations


def cross_correlation(x):
    """Lag-0 cross-correlations (..., K (K + 1) / 2) of windows `x` (..., N, L, K), lower
    triangle, for every set of windows along the leading axes.

    A channel that is constant over the whole set has no correlation: its entries are NaN, as in
    the reference code, so a collapsed generator shows up as a NaN score rather than a number.
    """
    x = np.asarray(x, np.float64)
    sets = (-3, -2)  # the (batch, time) axes of one set
    x = (x - x.mean(axis=sets, keepdims=True)) / x.std(axis=sets, ddof=1, keepdims=True)
    rows, cols = np.tril_indices(x.shape[-1])
    return np.mean(x[..., rows] * x[..., cols], axis=sets)


def _draw(rng, n_real, n_fake):
    """One repeat's resampling: `n_real // 5` row indices into each set."""
    size = max(1, n_real // SUBSETS)
    return rng.integers(0, n_real, size), rng.integers(0, n_fake, size)


def correlational_scores(real, fake, seeds, *, resample=True):
    """`sum |C_fake - C_real| / 10` over the lower triangle, one resampling per seed; 0 for
    identical correlations.

    Args:
        real, fake: (N, L, K) windows in [0, 1]; N may differ between them.
        seeds: one per repeat; each fixes its resampling.
        resample: draw `len(real) // 5` windows with replacement from each set, as the protocol
            does per repeat; False scores the full sets as given (the same score for every seed).

    Returns:
        A list of floats, one per seed.
    """
    real, fake = check_windows(real, fake)
    if resample:
        real_idx, fake_idx = stack_repeats(
            [_draw(np.random.default_rng(seed), len(real), len(fake)) for seed in seeds])
        real, fake = real[real_idx], fake[fake_idx]  # (R, N // 5, L, K)
    else:
        real, fake = real[None], fake[None]
    scores = np.sum(np.abs(cross_correlation(fake) - cross_correlation(real)), axis=-1) / 10.0
    return [float(s) for s in np.broadcast_to(scores, len(seeds))]


def correlational_score(real, fake, seed=0, *, resample=True):
    """`correlational_scores` for the single seed `seed`."""
    return correlational_scores(real, fake, [seed], resample=resample)[0]
