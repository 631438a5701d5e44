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


def context_fid(real, fake, seed=0, *, iterations=None, batch_size=ts2vec.BATCH_SIZE):
    """Context-FID of `fake` against `real`; 0 for identical embedding statistics.

    Args:
        real, fake: (N, L, K) windows in [0, 1]; N may differ between them.
        seed: fixes the encoder's initialisation, batches, crops, masks and dropout.
        iterations: TS2Vec training iterations; None uses the protocol's 200 / 600 rule.
        batch_size: TS2Vec batch size (8).
    """
    real, fake = check_windows(real, fake)
    params, _ = ts2vec.fit(real, seed, iterations=iterations, batch_size=batch_size)
    stats_real = gaussian_stats(ts2vec.encode(params, real))
    stats_fake = gaussian_stats(ts2vec.encode(params, fake))
    return frechet_distance(*stats_real, *stats_fake)
