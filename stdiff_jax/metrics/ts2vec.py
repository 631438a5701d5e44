"""TS2Vec (Yue et al., 2022) as the Context-FID protocol trains it, in Flax and one `lax.scan`.

Everything follows the TS2Vec code that Diffusion-TS vendors (`Models/ts2vec/`, called with
batch_size=8, lr=1e-3, output_dims=320; its max_train_length=3000 never applies to windows):
- encoder: linear input projection to 64, timestamp masking (Bernoulli(0.5) per timestamp of the
  projected input, training only), 10 residual blocks of two kernel-3 "same" convolutions with
  dilation 2^i and exact GELU before each, a final block to 320 with a 1x1 projector on the
  residual, dropout 0.1 on the output representation (training only); PyTorch default inits.
- training: shuffled epochs of batches of 8 with the ragged tail dropped, two random overlapping
  crops per batch drawn exactly as `TS2Vec.fit` draws them, hierarchical contrastive loss
  (instance + temporal, alpha 0.5) on the overlap, AdamW with PyTorch's defaults (lr 1e-3,
  weight decay 1e-2), 600 iterations when the data has more than 100,000 values, else 200.
- inference: the running average of the network weights (`AveragedModel`, which includes the
  initial weights), no masking, no dropout; 'full_series' max-pooling over time.

Fixed-size crops. The two crops of a batch have random lengths, which would recompile under
`jit`. We keep every crop in a buffer of the full window length L at its own position (the
buffer position j of row b holds timestamp `offset_b + j`) and zero the timestamps outside the
crop after the input projection and after every convolution. Because each PyTorch convolution
zero-pads its input, the valid timestamps then see exactly the inputs they see in PyTorch, and
the encoder outputs there are identical. The overlap is moved to the front of both buffers, and
the losses average only over its valid timestamps and leave the padded ones out of every softmax,
so the loss equals PyTorch's for the same crops, masks and weights. Convolution taps whose
dilation reaches past the window only ever read zero padding and are skipped.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stdiff_jax.metrics.scan_train import epoch_batches, scan_train, stack_repeats

HIDDEN = 64
OUTPUT = 320
DEPTH = 10
MASK_KEEP = 0.5  # `generate_binomial_mask(p=0.5)`: each timestamp kept with probability 0.5
DROPOUT = 0.1
ALPHA = 0.5
BATCH_SIZE = 8
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-2  # torch.optim.AdamW default
ENCODE_CHUNK = 1024
PADDED_LEVELS = 32  # loss levels of at most this many timestamps are padded to one size
_BLOCKED = -1e30  # logit of pairs left out of a softmax (finite so gradients stay finite)


def default_iterations(data_size):
    """TS2Vec's default: 200 iterations, or 600 when the data has more than 100,000 values."""
    return 600 if data_size > 100_000 else 200


def _torch_kernel_init():
    # PyTorch's kaiming_uniform(a=sqrt(5)) for Linear/Conv1d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _torch_bias_init(fan_in):
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _shift(x, offset):
    """`y[:, t] = x[:, t + offset]` for x (B, T, C), zero where `t + offset` leaves [0, T)."""
    if offset == 0:
        return x
    pad = jnp.zeros_like(x[:, : abs(offset)])
    if offset > 0:
        return jnp.concatenate([x[:, offset:], pad], axis=1)
    return jnp.concatenate([pad, x[:, :offset]], axis=1)


class Conv1d(nn.Module):
    """PyTorch's `SamePadConv` (odd kernel): `y[t] = b + sum_k W_k x[t + (k - (K-1)/2) d]`."""

    features: int
    kernel_size: int
    dilation: int = 1

    @nn.compact
    def __call__(self, x):  # x: (B, T, C_in)
        c_in, half = x.shape[-1], (self.kernel_size - 1) // 2
        kernel = self.param("kernel", _torch_kernel_init(), (self.kernel_size, c_in, self.features))
        bias = self.param("bias", _torch_bias_init(c_in * self.kernel_size), (self.features,))
        # Taps further than the window away read only zero padding: keep the reachable ones and
        # do them as one matmul over the concatenated shifted inputs.
        reach = min(half, (x.shape[1] - 1) // self.dilation)
        taps = range(half - reach, half + reach + 1)
        shifted = jnp.concatenate([_shift(x, (k - half) * self.dilation) for k in taps], axis=-1)
        weight = kernel[half - reach: half + reach + 1].reshape(-1, self.features)
        return shifted @ weight + bias  # (B, T, features)


class ConvBlock(nn.Module):
    """Residual block: GELU, dilated conv, GELU, dilated conv, plus the (projected) input."""

    features: int
    dilation: int
    final: bool

    @nn.compact
    def __call__(self, h, valid):  # h: (B, T, C_in); valid: (B, T, 1) or None
        keep = (lambda y: y) if valid is None else (lambda y: y * valid)
        gelu = functools.partial(nn.gelu, approximate=False)  # PyTorch's F.gelu: exact erf form
        residual = h
        if h.shape[-1] != self.features or self.final:
            residual = keep(Conv1d(self.features, 1, name="projector")(h))
        h = keep(Conv1d(self.features, 3, self.dilation, name="conv1")(gelu(h)))
        h = keep(Conv1d(self.features, 3, self.dilation, name="conv2")(gelu(h)))
        return h + residual  # (B, T, features)


class TSEncoder(nn.Module):
    """TS2Vec's dilated-convolution encoder: (B, T, K) windows to (B, T, 320) representations."""

    hidden: int = HIDDEN
    output: int = OUTPUT
    depth: int = DEPTH

    @nn.compact
    def __call__(self, x, valid=None, train=False):  # x: (B, T, K); valid: (B, T, 1) or None
        k = x.shape[-1]
        h = nn.Dense(self.hidden, kernel_init=_torch_kernel_init(), bias_init=_torch_bias_init(k),
                     name="input_fc")(x)  # (B, T, hidden)
        keep = valid
        if train:
            stamp = jax.random.bernoulli(self.make_rng("mask"), MASK_KEEP, h.shape[:2] + (1,))
            keep = stamp.astype(h.dtype) if valid is None else stamp * valid
        if keep is not None:
            h = h * keep
        widths = [self.hidden] * self.depth + [self.output]
        for i, width in enumerate(widths):
            h = ConvBlock(width, 2**i, final=i == len(widths) - 1)(h, valid)
        return nn.Dropout(DROPOUT, deterministic=not train)(h)  # (B, T, output)


def _softmax_nll(sim, blocked, positive, weight):
    """Weighted mean of -log softmax(sim)[row, positive column], `blocked` columns left out.

    `blocked` and `positive` are boolean masks broadcastable to `sim` (..., R, R); `positive`
    has one column per row. Masks instead of gathers keep the backward pass free of scatters.
    """
    logp = jax.nn.log_softmax(jnp.where(blocked, _BLOCKED, sim), axis=-1)
    nll = -jnp.sum(jnp.where(positive, logp, 0.0), axis=-1)  # (..., R)
    return (nll * weight).sum() / jnp.maximum(weight.sum(), 1.0)


def _other_view(n):
    """(2n, 2n) mask pairing row i with row (i + n) mod 2n: the same item in the other view."""
    return np.roll(np.eye(2 * n, dtype=bool), n, axis=1)


def instance_contrastive_loss(z1, z2, valid_t):
    """Each window against the other windows of both views at the same timestamp."""
    b, t = z1.shape[:2]  # z: (B, T, C); valid_t: (T,)
    if b == 1:
        return jnp.zeros(())
    z = jnp.swapaxes(jnp.concatenate([z1, z2], axis=0), 0, 1)  # (T, 2B, C)
    sim = z @ jnp.swapaxes(z, 1, 2)  # (T, 2B, 2B)
    weight = jnp.broadcast_to(valid_t[:, None], (t, 2 * b)).astype(z.dtype)
    return _softmax_nll(sim, np.eye(2 * b, dtype=bool), _other_view(b), weight)


def temporal_contrastive_loss(z1, z2, valid_t):
    """Each timestamp against the other valid timestamps of both views of the same window."""
    b, t = z1.shape[:2]
    z = jnp.concatenate([z1, z2], axis=1)  # (B, 2T, C)
    sim = z @ jnp.swapaxes(z, 1, 2)  # (B, 2T, 2T)
    valid2 = jnp.concatenate([valid_t, valid_t])  # (2T,)
    blocked = np.eye(2 * t, dtype=bool) | ~valid2[None, :]  # (2T, 2T)
    weight = jnp.broadcast_to(valid2[None, :], (b, 2 * t)).astype(z.dtype)
    return _softmax_nll(sim, blocked, _other_view(t), weight)


def _max_pool2(z):  # (B, T, C) -> (B, T // 2, C), PyTorch's max_pool1d(kernel_size=2)
    b, t, c = z.shape
    return z[:, : 2 * (t // 2)].reshape(b, t // 2, 2, c).max(axis=2)


def _pyramid(z):
    """(levels, B, T, C): `z` max-pooled by 2 once per level, each level zero-padded to T."""
    t = z.shape[1]
    levels = [z]
    while z.shape[1] > 1:
        z = _max_pool2(z)
        levels.append(jnp.pad(z, ((0, 0), (0, t - z.shape[1]), (0, 0))))
    return jnp.stack(levels)


def _levels_loss(p1, p2, n, alpha):
    """(sum of the per-level losses, number of levels with a valid timestamp) of levels `p1`,
    `p2` (levels, B, T, C) whose first `n` (levels,) timestamps are valid, scored at once."""
    valid_t = jnp.arange(p1.shape[2])[None, :] < n[:, None]  # (levels, T)
    instance = jax.vmap(instance_contrastive_loss)(p1, p2, valid_t)
    temporal = jax.vmap(temporal_contrastive_loss)(p1, p2, valid_t)
    per_level = alpha * instance + jnp.where(n >= 2, (1 - alpha) * temporal, 0.0)
    present = n >= 1
    return jnp.sum(jnp.where(present, per_level, 0.0)), jnp.sum(present)


def hierarchical_contrastive_loss(z1, z2, length, alpha=ALPHA):
    """TS2Vec's loss for overlaps `z1`, `z2` (B, T, C) whose first `length` timestamps are valid.

    Level by level (max-pooling by 2 in between): while more than one timestamp remains, add
    alpha * instance + (1 - alpha) * temporal; at a single timestamp add alpha * instance; divide
    by the number of levels. `length` may be traced: levels past it contribute nothing.

    The temporal loss of a level of T timestamps costs T^2. Levels of more than
    `PADDED_LEVELS` timestamps are each scored at their own size; the smaller ones are padded to
    the first of them and scored in one batched computation, which compiles once (padding every
    level of a window of 256 to its length made training 2.5x dearer: docs/costs.md).
    """
    sums, counts, n = [], [], jnp.asarray(length)
    while z1.shape[1] > PADDED_LEVELS:
        level_sum, present = _levels_loss(z1[None], z2[None], n[None], alpha)
        sums.append(level_sum)
        counts.append(present)
        z1, z2, n = _max_pool2(z1), _max_pool2(z2), n >> 1
    p1, p2 = _pyramid(z1), _pyramid(z2)  # (levels, B, T', C)
    level_sum, present = _levels_loss(p1, p2, n >> jnp.arange(p1.shape[0]), alpha)
    return sum(sums, level_sum) / sum(counts, present)


def sample_crops(rng, seq_len, batch, iterations):
    """Per-iteration crops drawn as `TS2Vec.fit` draws them (temporal_unit 0).

    Returns int32 arrays: `length`, `left`, `eleft`, `eright` of shape (iterations,) and `offset`
    (iterations, batch). View 1 covers [eleft, left + length), view 2 [left, eright), both shifted
    by each row's offset; they overlap on [left, left + length).
    """
    length = rng.integers(2, seq_len + 1, size=iterations)
    left = rng.integers(0, seq_len - length + 1)
    right = left + length
    eleft = rng.integers(0, left + 1)
    eright = rng.integers(right, seq_len + 1)
    offset = rng.integers(-eleft[:, None], (seq_len - eright + 1)[:, None],
                          size=(iterations, batch))
    crops = dict(length=length, left=left, eleft=eleft, eright=eright, offset=offset)
    return jax.tree.map(lambda a: a.astype(np.int32), crops)


def _crop_loss(model, params, x, crop, key):
    """Loss of one batch `x` (B, T, K) for one draw of crops, masks and dropout."""
    b, t, _ = x.shape
    pos = jnp.arange(t)
    # Buffer position j of row b holds timestamp offset_b + j (in range wherever it is valid).
    src = jnp.clip(crop["offset"][:, None] + pos[None, :], 0, t - 1)  # (B, T)
    shifted = jnp.take_along_axis(x, src[..., None], axis=1)  # (B, T, K)
    right = crop["left"] + crop["length"]
    valid1 = (pos >= crop["eleft"]) & (pos < right)  # (T,)
    valid2 = (pos >= crop["left"]) & (pos < crop["eright"])
    valid = jnp.concatenate([jnp.broadcast_to(valid1, (b, t)), jnp.broadcast_to(valid2, (b, t))])
    mask_key, dropout_key = jax.random.split(key)
    views = jnp.concatenate([shifted, shifted])  # (2B, T, K): view 1 rows, then view 2 rows
    out = model.apply(params, views, valid[..., None].astype(x.dtype), train=True,
                      rngs={"mask": mask_key, "dropout": dropout_key})  # (2B, T, C)
    # Move the overlap to the front of both views (a 0/1 matmul: its gradient needs no scatter).
    to_front = (pos[None, :] == crop["left"] + pos[:, None]).astype(out.dtype)  # (T, T)
    z1 = jnp.einsum("st,btc->bsc", to_front, out[:b])  # (B, T, C)
    z2 = jnp.einsum("st,btc->bsc", to_front, out[b:])
    return hierarchical_contrastive_loss(z1, z2, crop["length"])


@functools.lru_cache(maxsize=None)
def _param_shapes(channels, model):
    # Tracing `model.init` takes a while, and every repeat of every call needs the same shapes.
    return jax.eval_shape(model.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 2, channels), jnp.float32))


def init_params(rng, channels, model=TSEncoder()):
    """`model`'s parameters drawn on the host from its own (PyTorch default) initialisers.

    Every layer's kernel and bias are U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in being the
    kernel's size without its output axis. Drawing them with numpy instead of `model.init` avoids
    compiling one XLA random op per tensor, which costs seconds on a CPU.
    """
    shapes = _param_shapes(channels, model)

    def draw(tree):
        if "kernel" not in tree:
            return {name: draw(sub) for name, sub in sorted(tree.items())}
        bound = 1.0 / math.sqrt(math.prod(tree["kernel"].shape[:-1]))
        return {name: rng.uniform(-bound, bound, leaf.shape).astype(np.float32)
                for name, leaf in sorted(tree.items())}

    return draw(shapes)


def _draws(rng, shape, iterations, batch):
    """One repeat's host-side draws, in `TS2Vec.fit`'s order: weights, batches, crops."""
    n, seq_len, channels = shape
    params = init_params(rng, channels)
    return params, epoch_batches(rng, n, batch, iterations), sample_crops(rng, seq_len, batch,
                                                                          iterations)


@jax.jit
@functools.partial(jax.vmap, in_axes=(0, 0, None, 0, 0))
def _train(params, seed, data, batch_idx, crops):
    # vmap over the repeat axis: every repeat's network in one program, compiled once, each of
    # its ops R times the size one batch of 8 gives it.
    model = TSEncoder()
    keys = jax.random.split(jax.random.key(seed), batch_idx.shape[0])

    def loss_fn(params, step):
        idx, crop, key = step
        return _crop_loss(model, params, data[idx], crop, key)

    optimizer = optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    _, averaged, losses = scan_train(loss_fn, params, optimizer, (batch_idx, crops, keys),
                                     average=True)
    return averaged, losses


def fit_repeats(data, seeds, iterations=None, batch_size=BATCH_SIZE):
    """Trains one fresh TS2Vec encoder per seed on windows `data` (N, L, K), all in one program.

    Repeat r draws from `np.random.default_rng(seeds[r])` exactly what a lone `fit` with that
    seed draws. Returns `(averaged_params, losses)` with a leading repeat axis: the weight
    averages used for inference and the loss of every iteration, (R, iterations).
    `iterations=None` uses TS2Vec's default for the data size.
    """
    data = np.asarray(data, np.float32)
    if iterations is None:
        iterations = default_iterations(data.size)
    batch = min(batch_size, len(data))
    params, batch_idx, crops = stack_repeats(
        [_draws(np.random.default_rng(seed), data.shape, iterations, batch) for seed in seeds])
    return _train(params, np.asarray(seeds, np.uint32), data, batch_idx, crops)


def fit(data, seed=0, iterations=None, batch_size=BATCH_SIZE):
    """`fit_repeats` for the single seed `seed`, without the repeat axis."""
    return jax.tree.map(lambda a: a[0], fit_repeats(data, [seed], iterations, batch_size))


@jax.jit
@functools.partial(jax.vmap, in_axes=(0, None))
def _encode_chunk(params, x):  # (R, ...) params, (C, L, K) -> (R, C, OUTPUT)
    return TSEncoder().apply(params, x).max(axis=1)


def encode_repeats(params, data):
    """Full-series representations (R, N, 320) of `data` under each of R encoders `params`
    (a leading repeat axis, as `fit_repeats` returns them): outputs max-pooled over time."""
    data = np.asarray(data, np.float32)
    chunk = min(ENCODE_CHUNK, len(data))  # one chunk shape: the last chunk is zero-padded
    n_pad = -len(data) % chunk
    padded = np.concatenate([data, np.zeros((n_pad,) + data.shape[1:], data.dtype)])
    out = [np.asarray(_encode_chunk(params, padded[i:i + chunk]))
           for i in range(0, len(padded), chunk)]
    return np.concatenate(out, axis=1)[:, : len(data)]


def encode(params, data):
    """Full-series representations (N, 320) of `data` under one encoder `params`."""
    return encode_repeats(jax.tree.map(lambda a: a[None], params), data)[0]
