"""Predictive score (train on synthetic, test on real) with TimeGAN's one-step GRU predictor.

Follows TimeGAN's `predictive_score_metrics` as used by Diffusion-TS: the GRU reads the first K-1
channels of steps 0..L-2 and predicts the last channel at steps 1..L-1 through a dense layer and a
sigmoid; 5,000 Adam steps with L1 loss on 128 generated windows drawn afresh each step; the score
is the mean absolute error on every real window (the mean of per-window MAEs, all of equal length).
"""

import numpy as np

from stdiff_jax.metrics import gru
from stdiff_jax.metrics.inputs import check_windows
from stdiff_jax.metrics.scan_train import stack_repeats, subset_batches

ITERATIONS = 5000
BATCH_SIZE = 128


def _inputs_targets(x):
    return x[:, :-1, :-1], x[:, 1:, -1:]  # (N, L - 1, K - 1), (N, L - 1, 1)


def _draws(rng, n_fake, channels, iterations, batch_size):
    """One repeat's host-side draws: batches, then the initial network."""
    idx = subset_batches(rng, n_fake, min(batch_size, n_fake), iterations)
    return gru.init_params(rng, channels - 1, gru.hidden_size(channels)), idx


def predictive_scores(real, fake, seeds, *, iterations=ITERATIONS, batch_size=BATCH_SIZE):
    """MAE on real windows of a GRU trained on generated ones, one GRU per seed, trained side by
    side; lower is better.

    Args:
        real, fake: (N, L, K) windows in [0, 1]; N may differ between them.
        seeds: one per repeat; each fixes its batches and initial network.
        iterations: Adam steps (the protocol's 5,000; fewer only for tests).
        batch_size: generated windows per step (128; capped at the number of windows).

    Returns:
        A list of floats, one per seed.
    """
    real, fake = check_windows(real, fake)
    channels = real.shape[-1]
    params, idx = stack_repeats([_draws(np.random.default_rng(seed), len(fake), channels,
                                        iterations, batch_size) for seed in seeds])
    fake_inputs, fake_targets = _inputs_targets(fake.astype(np.float32))
    real_inputs, real_targets = _inputs_targets(real.astype(np.float32))
    pred, _ = gru.train_predictors(params, fake_inputs, fake_targets, idx, real_inputs,
                                   hidden=gru.hidden_size(channels))
    pred = np.asarray(pred)  # (R, N, L - 1, 1)
    return [float(np.mean(np.abs(p - real_targets))) for p in pred]


def predictive_score(real, fake, seed=0, *, iterations=ITERATIONS, batch_size=BATCH_SIZE):
    """`predictive_scores` for the single seed `seed`."""
    return predictive_scores(real, fake, [seed], iterations=iterations, batch_size=batch_size)[0]
