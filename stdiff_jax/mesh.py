"""The one device mesh of every stage: a `data` axis over all devices of all processes.

Training splits its global batch along `data` and generation its chunks; parameters are replicated.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils

from stdiff_jax.errors import UserError

DATA_AXIS = "data"


def make_mesh():
    """A one-axis mesh `data` over every device of every process."""
    return jax.sharding.Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def check_divisible(batch_size, mesh, what="config.train.batch_size"):
    """A batch split along `data` needs the same number of rows on every device."""
    n = mesh.size
    if batch_size % n:
        raise UserError(f"{what}={batch_size} does not split evenly over the {n} devices of the "
                        f"mesh: use a multiple of {n}, e.g. --{what}={n * max(1, batch_size // n)}.")


def shard_batch(batch, sharding):
    """A host batch (B, ...), identical on every process, as a global array split along `data`.

    Each process hands over only the rows its own devices hold, so this works unchanged on a pod.
    """
    batch = np.asarray(batch)
    return jax.make_array_from_callback(batch.shape, sharding, lambda index: batch[index])


def to_host(x):
    """A global array as one numpy array on every process."""
    if jax.process_count() == 1:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
