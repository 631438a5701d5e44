"""Rotary positional embeddings (RoPE, Su et al. 2024) as pure functions.

RoPE rotates each pair of query/key features by an angle proportional to the token's position, so
the dot product of a rotated query at position i and a rotated key at position j depends on the
positions only through i - j. That gives relative positions with no maximum length, which is why
the paper uses it along time frames and frequency patches.
"""
import numpy as np
import jax.numpy as jnp

from stdiff_jax.errors import UserError


def rope_angles(length, head_dim, base=10000.0):
    """cos and sin tables, each (length, head_dim // 2), for positions 0..length-1.

    Computed in numpy: they depend only on static shapes, so under jit they are constants.
    """
    if head_dim % 2:
        raise UserError(
            f"RoPE needs an even head dimension, got {head_dim}: pick hidden / heads even.")
    inv_freq = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)  # (H/2,)
    angles = np.arange(length, dtype=np.float64)[:, None] * inv_freq[None, :]  # (S, H/2)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x, cos, sin):
    """Rotates x (..., S, N, H) by the angles of its position along S (split-half convention)."""
    cos = jnp.asarray(cos, x.dtype)[:, None, :]  # (S, 1, H/2)
    sin = jnp.asarray(sin, x.dtype)[:, None, :]  # (S, 1, H/2)
    x1, x2 = jnp.split(x, 2, axis=-1)  # (..., S, N, H/2) each
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)  # (..., S, N, H)
