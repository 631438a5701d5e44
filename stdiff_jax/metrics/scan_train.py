"""The training loop every metric network uses: one `lax.scan` over iterations.

The metric networks are tiny (a GRU with 3 hidden units, a 64-channel convolution stack) so a
Python loop of thousands of jitted steps would cost more in dispatch than in arithmetic. Scanning
over precomputed per-iteration inputs (batch indices, crop sizes, RNG keys) compiles one program
per call and keeps the whole loop inside XLA.
"""

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import optax


def scan_train(loss_fn, params, optimizer, per_step, average=False):
    """Minimises `loss_fn(params, step_input)` for as many steps as `per_step` has rows.

    Args:
        loss_fn: `(params, step_input) -> scalar loss`; `step_input` is one row of `per_step`.
        params: initial parameter pytree.
        optimizer: an optax gradient transformation.
        per_step: pytree of arrays with a leading iterations axis (batch indices, keys, ...).
        average: also return the equal-weight average of the initial parameters and of the
            parameters after every step, as `torch.optim.swa_utils.AveragedModel` keeps it in
            TS2Vec (it is built from the initial network and updated after each step).

    Returns:
        `(params, averaged_params or None, losses)`, `losses` of shape (iterations,).
    """
    # One flat parameter vector: the optimizer update is then a handful of fused elementwise ops
    # instead of a few per parameter tensor, which matters for compile time.
    flat, unravel = ravel_pytree(params)
    grad_fn = jax.value_and_grad(lambda flat, step_input: loss_fn(unravel(flat), step_input))

    def step(carry, step_input):
        params, opt_state, averaged, count = carry
        loss, grads = grad_fn(params, step_input)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if average:
            count = count + 1
            averaged = averaged + (params - averaged) / count
        return (params, opt_state, averaged, count), loss

    averaged = flat if average else None
    carry = (flat, optimizer.init(flat), averaged, jnp.ones((), flat.dtype))
    (flat, _, averaged, _), losses = jax.lax.scan(step, carry, per_step)
    return unravel(flat), (unravel(averaged) if average else None), losses


def subset_batches(rng, n, batch, iterations):
    """(iterations, batch) indices, each row a fresh draw without replacement.

    This is TimeGAN's `np.random.permutation(n)[:batch]` per iteration; `Generator.choice` draws
    the same distribution without permuting all n rows every time.
    """
    return np.stack([rng.choice(n, size=batch, replace=False) for _ in range(iterations)])


def epoch_batches(rng, n, batch, iterations):
    """(iterations, batch) indices as a shuffled `DataLoader(drop_last=True)` yields them.

    Each epoch is a fresh permutation cut into full batches (the ragged tail is dropped); the
    iterations run through as many epochs as they need, as TS2Vec's `fit` loop does.
    """
    per_epoch = n // batch
    epochs = -(-iterations // per_epoch)
    rows = [rng.permutation(n)[: per_epoch * batch].reshape(per_epoch, batch)
            for _ in range(epochs)]
    return np.concatenate(rows)[:iterations]


def stack_repeats(draws):
    """One pytree from per-repeat pytrees of host arrays, each leaf with a leading repeat axis."""
    return jax.tree.map(lambda *leaves: np.stack(leaves), *draws)
