"""Input checks shared by every metric: the benchmark scores windows `(N, L, K)` in [0, 1]."""

import numpy as np

# Generated windows come back to [0, 1] through (x + 1) / 2 in float32; allow that rounding.
RANGE_TOLERANCE = 1e-5


def _check_one(name, x):
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(
            f"{name} must be windows of shape (N, L, K), got shape {x.shape}; "
            "add a channel axis for univariate series (x[..., None]).")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{name} must be a real-valued array, got dtype {x.dtype}.")
    if min(x.shape) == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}).")
    if x.shape[1] < 2:
        raise ValueError(f"{name} has windows of length {x.shape[1]}; the metrics need L >= 2.")
    finite = np.isfinite(x)
    if not finite.all():
        raise ValueError(
            f"{name} contains {x.size - finite.sum()} NaN or infinite values; the metrics need "
            "finite windows (check the sampler for divergence).")
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise ValueError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]; the protocol scores "
            "[0, 1] windows: map model outputs in [-1, 1] with (x + 1) / 2 and clip them.")
    return x


def check_windows(real, fake):
    """Returns `(real, fake)` as numpy arrays after checking they are comparable window sets.

    Both must be finite `(N, L, K)` arrays in [0, 1] with the same L and K; N may differ.
    """
    real = _check_one("real", real)
    fake = _check_one("fake", fake)
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            f"real windows have (L, K) = {real.shape[1:]} but fake windows {fake.shape[1:]}; "
            "generate windows with the real set's length and channel count.")
    return real, fake
