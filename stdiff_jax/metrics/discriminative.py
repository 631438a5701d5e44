"""Discriminative score: how well a post-hoc GRU tells generated windows from real ones.

Follows TimeGAN's `discriminative_score_metrics` as used by Diffusion-TS: independent 80/20
permutation splits of both sets (`train_test_divide`, `int(n * 0.8)` training rows), 2,000 Adam
steps on batches of 128 real + 128 fake drawn afresh each step, then accuracy of `sigmoid > 0.5`
on the concatenated held-out real and fake windows; score `|accuracy - 0.5|`.
"""

import numpy as np

from stdiff_jax.metrics import gru
from stdiff_jax.metrics.inputs import check_windows
from stdiff_jax.metrics.scan_train import subset_batches

ITERATIONS = 2000
BATCH_SIZE = 128
TRAIN_FRACTION = 0.8


def _split(rng, x):
    idx = rng.permutation(len(x))
    n_train = int(len(x) * TRAIN_FRACTION)
    return x[idx[:n_train]], x[idx[n_train:]]


def discriminative_score(real, fake, seed=0, *, iterations=ITERATIONS, batch_size=BATCH_SIZE):
    """`|accuracy - 0.5|` of a GRU classifier on held-out windows; 0 means indistinguishable.

    Args:
        real, fake: (N, L, K) windows in [0, 1]; N may differ between them.
        seed: fixes the splits, the batches and the initial network.
        iterations: Adam steps (the protocol's 2,000; fewer only for tests).
        batch_size: windows of each set per step (128; capped at the training-set size).
    """
    real, fake = check_windows(real, fake)
    rng = np.random.default_rng(seed)
    real_train, real_test = _split(rng, real.astype(np.float32))
    fake_train, fake_test = _split(rng, fake.astype(np.float32))
    if min(len(real_train), len(fake_train), len(real_test), len(fake_test)) == 0:
        raise ValueError("the discriminative score needs at least 2 windows per set "
                         "(one to train on, one to test on); pass more windows.")
    real_idx = subset_batches(rng, len(real_train), min(batch_size, len(real_train)), iterations)
    fake_idx = subset_batches(rng, len(fake_train), min(batch_size, len(fake_train)), iterations)
    hidden = gru.hidden_size(real.shape[-1])
    params = gru.init_params(rng, real.shape[-1], hidden)
    logit_real, logit_fake, _ = gru.train_discriminator(
        params, real_train, fake_train, real_idx, fake_idx, real_test, fake_test, hidden=hidden)
    logit_real, logit_fake = np.asarray(logit_real), np.asarray(logit_fake)
    # sigmoid(logit) > 0.5 is logit > 0: real windows should be above, fake ones not.
    correct = np.sum(logit_real > 0) + np.sum(logit_fake <= 0)
    accuracy = correct / (len(real_test) + len(fake_test))
    return float(abs(accuracy - 0.5))
