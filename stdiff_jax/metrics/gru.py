"""TimeGAN's post-hoc GRUs (discriminator and one-step predictor) and their training loops.

The discriminative and predictive scores of the benchmark come from TimeGAN's TF1 code, copied
unchanged into Diffusion-TS (`Utils/discriminative_metric.py`, `Utils/predictive_metric.py`).
We reproduce its network exactly: a `tf.nn.rnn_cell.GRUCell` (reset gate applied to the state
*before* the recurrent matmul, gate bias initialised to 1, Glorot-uniform kernels over the
concatenated [input, state]), zero initial state, and a `tf.layers.dense` head (Glorot-uniform,
zero bias). Its optimiser is `tf.train.AdamOptimizer()` (lr 1e-3); optax's Adam differs from TF1's
only in where epsilon enters (1e-8), which does not move the scores.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stdiff_jax.metrics.scan_train import scan_train

LEARNING_RATE = 1e-3


def hidden_size(channels):
    """TimeGAN's `int(dim / 2)`, kept at least 1 so univariate data still has a network."""
    return max(1, channels // 2)


class PostHocGRU(nn.Module):
    """One-layer GRU with TF1 `GRUCell` semantics and a dense head.

    Attributes:
        hidden: GRU state size.
        per_step: True gives one output per time step (the predictor); False one output from the
            last state (the discriminator).
        outputs: the head's width (1; a classifier's: its classes' logits).
    """

    hidden: int
    per_step: bool
    outputs: int = 1

    @nn.compact
    def __call__(self, x):  # x: (B, T, F)
        f, h = x.shape[-1], self.hidden
        glorot = nn.initializers.glorot_uniform()
        gate_kernel = self.param("gate_kernel", glorot, (f + h, 2 * h))
        gate_bias = self.param("gate_bias", nn.initializers.ones, (2 * h,))
        cand_kernel = self.param("candidate_kernel", glorot, (f + h, h))
        cand_bias = self.param("candidate_bias", nn.initializers.zeros, (h,))

        # The input halves of both matmuls do not depend on the state: do them for all steps.
        gates_x = jnp.swapaxes(x @ gate_kernel[:f] + gate_bias, 0, 1)  # (T, B, 2H)
        cand_x = jnp.swapaxes(x @ cand_kernel[:f] + cand_bias, 0, 1)  # (T, B, H)

        def cell(state, step):  # state: (B, H)
            g_x, c_x = step
            reset, update = jnp.split(jax.nn.sigmoid(g_x + state @ gate_kernel[f:]), 2, axis=-1)
            candidate = jnp.tanh(c_x + (reset * state) @ cand_kernel[f:])
            state = update * state + (1.0 - update) * candidate
            return state, state

        state0 = jnp.zeros((x.shape[0], h), x.dtype)
        last, states = jax.lax.scan(cell, state0, (gates_x, cand_x))  # states: (T, B, H)
        head = nn.Dense(self.outputs, kernel_init=glorot, bias_init=nn.initializers.zeros, name="head")
        if self.per_step:
            return head(jnp.swapaxes(states, 0, 1))  # (B, T, outputs)
        return head(last)  # (B, outputs)


def init_params(rng, features, hidden, outputs=1):
    """GRU parameters drawn on the host from the module's own (TF1 default) initialisers.

    Glorot-uniform kernels, gate bias 1, candidate and head bias 0. Drawing them with numpy
    instead of `model.init` keeps XLA random ops out of the compiled programs.
    """
    def glorot(fan_in, fan_out):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)

    return {"params": {
        "gate_kernel": glorot(features + hidden, 2 * hidden),
        "gate_bias": np.ones(2 * hidden, np.float32),
        "candidate_kernel": glorot(features + hidden, hidden),
        "candidate_bias": np.zeros(hidden, np.float32),
        "head": {"kernel": glorot(hidden, outputs), "bias": np.zeros(outputs, np.float32)},
    }}


@functools.partial(jax.jit, static_argnames="hidden")
def train_discriminators(params, real, fake, real_idx, fake_idx, real_test, fake_test, *, hidden):
    """Trains R real-vs-fake GRU classifiers side by side, one per leading row of the arguments
    (all but the shared windows), and returns their logits on each one's held-out windows.

    Args:
        params: initial parameters (`init_params`), stacked over a leading repeat axis R.
        real, fake: (N_r, T, K), (N_f, T, K) windows, shared by every repeat.
        real_idx, fake_idx: (R, iterations, batch) indices of each step's training batches.
        real_test, fake_test: (R, M_r), (R, M_f) indices of the windows to classify after
            training.
        hidden: GRU state size.

    Returns:
        `(logits_real_test (R, M_r, 1), logits_fake_test (R, M_f, 1), losses (R, iterations))`.
        The loss is TimeGAN's: mean BCE of the real batch (label 1) plus mean BCE of the fake
        batch.
    """
    model = PostHocGRU(hidden, per_step=False)

    def loss_fn(params, idx):
        r_idx, f_idx = idx
        logit_real = model.apply(params, real[r_idx])  # (B, 1)
        logit_fake = model.apply(params, fake[f_idx])  # (B, 1)
        return (optax.sigmoid_binary_cross_entropy(logit_real, jnp.ones_like(logit_real)).mean()
                + optax.sigmoid_binary_cross_entropy(logit_fake, jnp.zeros_like(logit_fake)).mean())

    def train(params, real_idx, fake_idx, real_test, fake_test):
        params, _, losses = scan_train(loss_fn, params, optax.adam(LEARNING_RATE),
                                       (real_idx, fake_idx))
        return model.apply(params, real[real_test]), model.apply(params, fake[fake_test]), losses

    return jax.vmap(train)(params, real_idx, fake_idx, real_test, fake_test)


@functools.partial(jax.jit, static_argnames="hidden")
def train_predictors(params, inputs, targets, idx, test_inputs, *, hidden):
    """Trains R one-step-ahead GRU regressors side by side with L1 loss and predicts
    `test_inputs` with each.

    Args:
        params: initial parameters (`init_params`), stacked over a leading repeat axis R.
        inputs: (N, T - 1, K - 1) first K-1 channels of steps 0..T-2, shared by every repeat.
        targets: (N, T - 1, 1) last channel of steps 1..T-1.
        idx: (R, iterations, batch) indices of each step's batch.
        test_inputs: (M, T - 1, K - 1) inputs to predict after training.
        hidden: GRU state size.

    Returns:
        `(predictions (R, M, T - 1, 1) in (0, 1), losses (R, iterations))`.
    """
    model = PostHocGRU(hidden, per_step=True)

    def loss_fn(params, batch_idx):
        pred = jax.nn.sigmoid(model.apply(params, inputs[batch_idx]))  # (B, T - 1, 1)
        return jnp.abs(targets[batch_idx] - pred).mean()

    def train(params, idx):
        params, _, losses = scan_train(loss_fn, params, optax.adam(LEARNING_RATE), idx)
        return jax.nn.sigmoid(model.apply(params, test_inputs)), losses

    return jax.vmap(train)(params, idx)
