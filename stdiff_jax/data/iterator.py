"""A deterministic, seedable batch iterator whose position can be saved and restored.

Epoch e visits the examples in the order `np.random.default_rng([seed, e]).permutation(n)`, so the
order depends only on (seed, epoch), never on how many batches were drawn before: a resumed run
restores (epoch, position) and draws exactly the batches the uninterrupted run would have drawn.
The last partial batch of each epoch is dropped, so every batch has the same shape (one jit trace).
"""

import numpy as np

from stdiff_jax.errors import UserError


class BatchIterator:
    """Infinite iterator over index batches `(batch_size,)` int64, epoch after epoch.

    Usage: `batch = windows[next(it)]`, or `it.next_batch(windows)`; save `it.state()` with the
    checkpoint and call `it.restore(state)` on resume.
    """

    def __init__(self, num_examples, batch_size, seed):
        if batch_size < 1:
            raise UserError(f"batch_size must be positive, got {batch_size}.")
        if batch_size > num_examples:
            raise UserError(f"batch_size {batch_size} is larger than the {num_examples} examples, "
                            f"and partial batches are dropped, so no batch could be formed. "
                            f"Use a batch size of at most {num_examples}.")
        if seed < 0:
            raise UserError(f"seed must be non-negative, got {seed}.")
        self.num_examples = int(num_examples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.steps_per_epoch = self.num_examples // self.batch_size
        self._epoch, self._position = 0, 0
        self._order = None  # permutation of the current epoch, built when first needed

    def _permutation(self, epoch):
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def __iter__(self):
        return self

    def __next__(self):
        if self._order is None:
            self._order = self._permutation(self._epoch)
        start = self._position * self.batch_size
        batch = self._order[start:start + self.batch_size]  # (B,)
        self._position += 1
        if self._position == self.steps_per_epoch:
            self._epoch, self._position, self._order = self._epoch + 1, 0, None
        return batch

    def next_batch(self, array):
        """The next batch of `array` (N, ...) -> (B, ...), indexed along its first axis."""
        if len(array) != self.num_examples:
            raise ValueError(f"The iterator covers {self.num_examples} examples, the array has "
                             f"{len(array)}.")
        return array[next(self)]

    def state(self):
        """{'epoch', 'position'}: the epoch and the number of batches already drawn from it."""
        return {"epoch": self._epoch, "position": self._position}

    def restore(self, state):
        """Continues from a `state()`: the next batch is the one that followed it."""
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position < self.steps_per_epoch:
            raise ValueError(f"Cannot restore iterator state {state}: position must lie in "
                             f"[0, {self.steps_per_epoch}) and epoch be non-negative.")
        self._epoch, self._position, self._order = epoch, position, None


def split_batch(batch, num_devices):
    """(B, ...) global batch -> (num_devices, B // num_devices, ...), one slice per device."""
    if batch.shape[0] % num_devices:
        raise ValueError(f"The global batch of {batch.shape[0]} does not split evenly over "
                         f"{num_devices} devices: pick a batch size divisible by {num_devices}.")
    return batch.reshape(num_devices, batch.shape[0] // num_devices, *batch.shape[1:])
