"""Predictive score (train on synthetic, test on real) with TimeGAN's one-step GRU predictor.

Follows TimeGAN's `predictive_score_metrics` as used by Diffusion-TS: the GRU reads the first K-1
channels of steps 0..L-2 and predicts the last channel at steps 1..L-1 through a dense layer and a
sigmoid; 5,000 Adam steps with L1 loss on 128 generated windows drawn afresh each step; the score
is the mean absolute error on every real window (the mean of per-window MAEs, all of equal length).
"""

import numpy as np

from stdiff_jax.metrics import gru
from stdiff_jax.metrics.inputs import check_windows
from stdiff_jax.metrics.scan_train import subset_batches

ITERATIONS = 5000
BATCH_SIZE = 128


def _inputs_targets(x):
    return x[:, :-1, :-1], x[:, 1:, -1:]  # (N, L - 1, K - 1), (N, L - 1, 1)


def predictive_score(real, fake, seed=0, *, iterations=ITERATIONS, batch_size=BATCH_SIZE):
    """MAE on real windows of a GRU trained on generated ones; lower is better.

    Args:
        real, fake: (N, L, K) windows in [0, 1]; N may differ between them.
        seed: fixes the batches and the initial network.
        iterations: Adam steps (the protocol's 5,000; fewer only for tests).
        batch_size: generated windows per step (128; capped at the number of windows).
    """
    real, fake = check_windows(real, fake)
    rng = np.random.default_rng(seed)
    fake_inputs, fake_targets = _inputs_targets(fake.astype(np.float32))
    idx = subset_batches(rng, len(fake), min(batch_size, len(fake)), iterations)
    hidden = gru.hidden_size(real.shape[-1])
    params = gru.init_params(rng, real.shape[-1] - 1, hidden)
    real_inputs, real_targets = _inputs_targets(real.astype(np.float32))
    pred, _ = gru.train_predictor(params, fake_inputs, fake_targets, idx, real_inputs,
                                  hidden=hidden)
    pred = np.asarray(pred)  # (N, L - 1, 1)
    return float(np.mean(np.abs(pred - real_targets)))
