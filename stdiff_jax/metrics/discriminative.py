"""Discriminative score: how well a post-hoc GRU tells generated windows from real ones.

Follows TimeGAN's `discriminative_score_metrics` as used by Diffusion-TS: independent 80/20
permutation splits of both sets (`train_test_divide`, `int(n * 0.8)` training rows), 2,000 Adam
steps on batches of 128 real + 128 fake drawn afresh each step, then accuracy of `sigmoid > 0.5`
on the concatenated held-out real and fake windows; score `|accuracy - 0.5|`.
"""

import numpy as np

from stdiff_jax.metrics import gru
from stdiff_jax.metrics.inputs import check_windows
from stdiff_jax.metrics.scan_train import stack_repeats, subset_batches

ITERATIONS = 2000
BATCH_SIZE = 128
TRAIN_FRACTION = 0.8


def _split(rng, n):
    """`train_test_divide`'s split of n rows: (training, held-out) row indices."""
    idx = rng.permutation(n)
    n_train = int(n * TRAIN_FRACTION)
    return idx[:n_train], idx[n_train:]


def _draws(rng, n_real, n_fake, channels, iterations, batch_size):
    """One repeat's host-side draws: splits, then batches (as indices into the full sets),
    then the initial network."""
    real_train, real_test = _split(rng, n_real)
    fake_train, fake_test = _split(rng, n_fake)
    real_idx = real_train[subset_batches(rng, len(real_train), min(batch_size, len(real_train)),
                                         iterations)]
    fake_idx = fake_train[subset_batches(rng, len(fake_train), min(batch_size, len(fake_train)),
                                         iterations)]
    params = gru.init_params(rng, channels, gru.hidden_size(channels))
    return params, real_idx, fake_idx, real_test, fake_test


def discriminative_scores(real, fake, seeds, *, iterations=ITERATIONS, batch_size=BATCH_SIZE):
    """`|accuracy - 0.5|` of a GRU classifier on held-out windows, one classifier per seed,
    trained side by side; 0 means indistinguishable.

    Args:
        real, fake: (N, L, K) windows in [0, 1]; N may differ between them.
        seeds: one per repeat; each fixes its splits, batches and initial network.
        iterations: Adam steps (the protocol's 2,000; fewer only for tests).
        batch_size: windows of each set per step (128; capped at the training-set size).

    Returns:
        A list of floats, one per seed.
    """
    real, fake = check_windows(real, fake)
    # From 2 windows on, both parts of the 80/20 split are non-empty.
    if min(len(real), len(fake)) < 2:
        raise ValueError("the discriminative score needs at least 2 windows per set "
                         "(one to train on, one to test on); pass more windows.")
    channels = real.shape[-1]
    params, real_idx, fake_idx, real_test, fake_test = stack_repeats(
        [_draws(np.random.default_rng(seed), len(real), len(fake), channels, iterations,
                batch_size) for seed in seeds])
    logit_real, logit_fake, _ = gru.train_discriminators(
        params, real.astype(np.float32), fake.astype(np.float32), real_idx, fake_idx, real_test,
        fake_test, hidden=gru.hidden_size(channels))
    logit_real, logit_fake = np.asarray(logit_real)[..., 0], np.asarray(logit_fake)[..., 0]
    # sigmoid(logit) > 0.5 is logit > 0: real windows should be above, fake ones not.
    correct = np.sum(logit_real > 0, axis=1) + np.sum(logit_fake <= 0, axis=1)  # (R,)
    accuracy = correct / (logit_real.shape[1] + logit_fake.shape[1])
    return [float(abs(a - 0.5)) for a in accuracy]


def discriminative_score(real, fake, seed=0, *, iterations=ITERATIONS, batch_size=BATCH_SIZE):
    """`discriminative_scores` for the single seed `seed`."""
    return discriminative_scores(real, fake, [seed], iterations=iterations,
                                 batch_size=batch_size)[0]
