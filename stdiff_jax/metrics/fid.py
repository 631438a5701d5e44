"""Context-FID: Frechet distance between TS2Vec embeddings of real and generated windows.

Follows Diffusion-TS's `Utils/context_fid.py`: a fresh TS2Vec is trained on the real windows,
every real and generated window is encoded to one 320-d vector ('full_series' max-pooling), and
the Frechet distance of the two Gaussians (`np.cov` with rowvar=False, i.e. unbiased) uses the
real part of `scipy.linalg.sqrtm`.
"""

import numpy as np
import scipy.linalg

from stdiff_jax.metrics import ts2vec
from stdiff_jax.metrics.inputs import check_windows


def gaussian_stats(features):
    """Mean (D,) and unbiased covariance (D, D) of `features` (N, D)."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 Re sqrtm(sigma1 sigma2))."""
    covmean = np.real(scipy.linalg.sqrtm(sigma1 @ sigma2))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2.0 * covmean))


def context_fids(real, fake, seeds, *, iterations=None, batch_size=ts2vec.BATCH_SIZE):
    """Context-FID of `fake` against `real` for each seed, the encoders trained side by side.

    Args:
        real, fake: (N, L, K) windows in [0, 1]; N may differ between them.
        seeds: one per repeat; each fixes its encoder's initialisation, batches, crops, masks and
            dropout, as `context_fid` with that seed.
        iterations: TS2Vec training iterations; None uses the protocol's 200 / 600 rule.
        batch_size: TS2Vec batch size (8).

    Returns:
        A list of floats, one per seed; 0 for identical embedding statistics.
    """
    real, fake = check_windows(real, fake)
    params, _ = ts2vec.fit_repeats(real, seeds, iterations=iterations, batch_size=batch_size)
    pairs = zip(ts2vec.encode_repeats(params, real), ts2vec.encode_repeats(params, fake))
    return [frechet_distance(*gaussian_stats(r), *gaussian_stats(f)) for r, f in pairs]


def context_fid(real, fake, seed=0, *, iterations=None, batch_size=ts2vec.BATCH_SIZE):
    """`context_fids` for the single seed `seed`."""
    return context_fids(real, fake, [seed], iterations=iterations, batch_size=batch_size)[0]
