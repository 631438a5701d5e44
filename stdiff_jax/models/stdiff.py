"""The ST-Diff denoiser: a spectro-temporal video transformer (paper Section 4.3).

Reads like DiT's models.py, top to bottom: initialisers, embedders, attention, block, final layer,
model, then `create_model`, which builds the model from a config and the data statistics.

A video is channels-last `(B, T, F, K, 3)`: T STFT frames, F frequency bins, K covariates, and the
channels real, imaginary, trend. Each frame's F x K plane is cut into anisotropic (pf, pc) patches
(Table 4's "patch (freq, cov)"), so tokens are `(B, T, F', K', D)` with F' = ceil(F / pf) and
K' = ceil(K / pc). With pc = 1 (the default) covariates are never mixed by patching; with pc > 1
each token holds pc adjacent covariates in the data's column order (the last patch zero-padded),
which cuts the covariate axis, the part of the cost that grows with K, about pc-fold.
Each block attends along time, then frequency, then covariates, then applies an MLP, every sub-layer
pre-norm with adaLN-Zero modulation from the diffusion conditioning.
"""
import math
from typing import Any, Callable

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn

from stdiff_jax import prior as prior_lib
from stdiff_jax.errors import UserError
from stdiff_jax.models.rope import apply_rope, rope_angles

# ------------------------------------------------------------------------------------------------
# Initialisers: every initialisation of the network is chosen here (DiT's `initialize_weights`).
# ------------------------------------------------------------------------------------------------
DENSE_INIT = nn.initializers.xavier_uniform()  # all projections: patch embed, qkv, out, MLP
EMBED_INIT = nn.initializers.normal(stddev=0.02)  # timestep MLP, covariate and class embeddings
# adaLN-Zero: the modulation layers and the final projection start at exactly zero, so every
# residual branch is gated off and the network's output is exactly zero at initialisation.
ZERO_INIT = nn.initializers.zeros

# The conditioning is the log-SNR (VDM style). A fixed affine map sends [LOGSNR_MIN, LOGSNR_MAX]
# onto [1000, 0], the range of DDPM timesteps the sinusoidal frequencies were designed for; values
# outside it still embed smoothly.
LOGSNR_MIN, LOGSNR_MAX = -20.0, 20.0
TIMESTEP_FREQ_DIM = 256


class Dense(nn.Dense):
    """nn.Dense on the tokens flattened to (N, D).

    XLA:CPU computes the gradient of a dot with several batch axes ~2.5x slower than that of the
    same dot on a 2-D matrix; the reshapes are free.
    """

    def __call__(self, x):  # (..., D_in) -> (..., features)
        return super().__call__(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], self.features)


def modulate(x, shift, scale):
    """adaLN: x (B, T, F', K', D), shift and scale (B, D) broadcast over the token axes."""
    return x * (1 + scale[:, None, None, None, :]) + shift[:, None, None, None, :]


def symmetrize(a):
    """(A + A^T) / 2: the attention biases are symmetric by construction, whatever A learns."""
    return (a + a.T) / 2


def attention_biases(params):
    """The effective (B_C, B_F) biases, (K', K') and (F', F'), of a parameter tree."""
    return symmetrize(params["cov_bias"]), symmetrize(params["freq_bias"])


# ------------------------------------------------------------------------------------------------
# Embedders: patches, diffusion conditioning.
# ------------------------------------------------------------------------------------------------
def num_patches(size, patch):
    """ceil(size / patch): the patches of `patch` entries covering `size`, the last one padded."""
    return -(-size // patch)


def patchify(z, patch_freq, patch_cov=1):
    """(B, T, F, K, C) -> (B, T, F', K', pf * pc * C), zero-padding F to F' pf and K to K' pc."""
    b, t, f, k, c = z.shape
    fp, kp = num_patches(f, patch_freq), num_patches(k, patch_cov)
    z = jnp.pad(z, ((0, 0), (0, 0), (0, fp * patch_freq - f), (0, kp * patch_cov - k), (0, 0)))
    z = z.reshape(b, t, fp, patch_freq, kp, patch_cov, c)  # (B, T, F', pf, K', pc, C)
    z = z.transpose(0, 1, 2, 4, 3, 5, 6)  # (B, T, F', K', pf, pc, C)
    return z.reshape(b, t, fp, kp, patch_freq * patch_cov * c)  # (B, T, F', K', pf*pc*C)


def unpatchify(x, patch_freq, num_freqs, patch_cov=1, num_covariates=None):
    """(B, T, F', K', pf * pc * C) -> (B, T, F, K, C), dropping the padded frequency rows and
    covariate columns (num_covariates None: K = K' pc, nothing dropped)."""
    b, t, fp, kp, ppc = x.shape
    c = ppc // (patch_freq * patch_cov)
    x = x.reshape(b, t, fp, kp, patch_freq, patch_cov, c)  # (B, T, F', K', pf, pc, C)
    x = x.transpose(0, 1, 2, 4, 3, 5, 6)  # (B, T, F', pf, K', pc, C)
    x = x.reshape(b, t, fp * patch_freq, kp * patch_cov, c)  # (B, T, F'pf, K'pc, C)
    return x[:, :, :num_freqs, :num_covariates]  # (B, T, F, K, C)


def timestep_embedding(t, dim, max_period=10000.0):
    """DiT's sinusoidal embedding of a (B,) float timestep -> (B, dim)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)  # (dim/2,)
    args = t[:, None].astype(jnp.float32) * freqs[None]  # (B, dim/2)
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)  # (B, dim)


class TimestepEmbedder(nn.Module):
    """log-SNR -> fixed affine map to ~[0, 1000] -> sinusoids -> MLP -> conditioning vector c."""

    hidden: int

    @nn.compact
    def __call__(self, logsnr):  # (B,)
        t = (LOGSNR_MAX - logsnr) * (1000.0 / (LOGSNR_MAX - LOGSNR_MIN))  # (B,)
        h = timestep_embedding(t, TIMESTEP_FREQ_DIM)  # (B, 256)
        h = Dense(self.hidden, kernel_init=EMBED_INIT, name="mlp_in")(h)  # (B, D)
        return Dense(self.hidden, kernel_init=EMBED_INIT, name="mlp_out")(nn.silu(h))  # (B, D)


class ClassEmbedder(nn.Module):
    """Class labels (B,) -> vectors (B, D), added to the timestep embedding (DiT's LabelEmbedder).

    Index `num_classes` is the "no class" token: label dropout trains it on a share of the
    windows, so one network serves conditional and unconditional sampling (classifier-free
    guidance, `stdiff_jax.labels`).
    """

    num_classes: int
    hidden: int

    @nn.compact
    def __call__(self, labels):  # (B,) int in [0, num_classes]
        table = nn.Embed(self.num_classes + 1, self.hidden, embedding_init=EMBED_INIT,
                         name="embedding")
        return table(labels)  # (B, D)


class AdaLNModulation(nn.Module):
    """c (B, D) -> `num` modulation vectors (B, D) each (shifts, scales, gates), zero at init."""

    num: int

    @nn.compact
    def __call__(self, c):
        d = c.shape[-1]
        linear = Dense(self.num * d, kernel_init=ZERO_INIT, bias_init=ZERO_INIT, name="linear")
        mods = linear(nn.silu(c))  # (B, num * D)
        return jnp.split(mods, self.num, axis=-1)  # num x (B, D)


# ------------------------------------------------------------------------------------------------
# Factorized attention (scenic ViViT style): one axis at a time, the others act as batch.
# ------------------------------------------------------------------------------------------------
def attend_along(axis, q, k, v, bias=None, rope=False):
    """Self-attention along one token axis of q, k, v (B, T, F', K', N, H).

    Moves `axis` next to the head axes, folds the rest into the batch, applies RoPE along it if
    asked (before the logits, so scores depend on relative position only), attends with the
    optional (S, S) logit bias shared by all heads, and moves the axis back.
    """
    if q.shape[axis] == 1:
        return v  # softmax over a single key is 1, whatever the logits (F' = 1 with wide patches)
    q, k, v = (jnp.moveaxis(a, axis, -3) for a in (q, k, v))  # (..., S, N, H)
    lead, (s, n, h) = q.shape[:-3], q.shape[-3:]
    q, k, v = (a.reshape(-1, s, n, h) for a in (q, k, v))  # (B', S, N, H)
    if rope:
        cos, sin = rope_angles(s, h)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    if bias is not None:
        bias = bias.astype(q.dtype)[None, None]  # (1, 1, S, S)
    out = jax.nn.dot_product_attention(q, k, v, bias=bias)  # (B', S, N, H)
    return jnp.moveaxis(out.reshape(*lead, s, n, h), -3, axis)  # (B, T, F', K', N, H)


class FactorizedAttention(nn.Module):
    """Multi-head self-attention of tokens (B, T, F', K', D) along `axis` (1 T, 2 F', 3 K')."""

    axis: int
    heads: int
    rope: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, bias=None):  # (B, T, F', K', D)
        d = x.shape[-1]
        dense = lambda n, name: Dense(n, dtype=self.dtype, kernel_init=DENSE_INIT, name=name)
        qkv = dense(3 * d, "qkv")(x)  # (B, T, F', K', 3D)
        qkv = qkv.reshape(*x.shape[:-1], 3, self.heads, d // self.heads)  # (B, T, F', K', 3, N, H)
        q, k, v = (qkv[..., i, :, :] for i in range(3))  # (B, T, F', K', N, H) each
        out = attend_along(self.axis, q, k, v, bias=bias, rope=self.rope)  # (B, T, F', K', N, H)
        return dense(d, "out")(out.reshape(x.shape))  # (B, T, F', K', D)


class Mlp(nn.Module):
    """Token-wise D -> hidden -> D with tanh-approximated GELU, as DiT."""

    hidden: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):  # (B, T, F', K', D)
        h = Dense(self.hidden, dtype=self.dtype, kernel_init=DENSE_INIT, name="fc1")(x)
        h = nn.gelu(h, approximate=True)  # (B, T, F', K', rD)
        return Dense(x.shape[-1], dtype=self.dtype, kernel_init=DENSE_INIT, name="fc2")(h)


# ------------------------------------------------------------------------------------------------
# The ST-Diff block and the final layer.
# ------------------------------------------------------------------------------------------------
@jax.custom_vjp
def layer_norm(x):
    """Pre-norm over the feature axis without affine parameters (adaLN supplies shift and scale).

    A hand-written gradient, dx = r (dy - mean(dy) - y mean(dy y)): two row reductions instead of
    the several that autodiff of the forward pass leaves, about twice as fast on XLA:CPU.
    """
    return _layer_norm_fwd(x)[0]


def _layer_norm_fwd(x):
    xf = x.astype(jnp.float32)
    centred = xf - xf.mean(-1, keepdims=True)
    r = jax.lax.rsqrt((centred * centred).mean(-1, keepdims=True) + 1e-6)  # (..., 1)
    y = centred * r
    return y.astype(x.dtype), (y, r)


def _layer_norm_bwd(residuals, dy):
    y, r = residuals
    g = dy.astype(jnp.float32)
    dx = r * (g - g.mean(-1, keepdims=True) - y * (g * y).mean(-1, keepdims=True))
    return (dx.astype(dy.dtype),)


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


class STDiffBlock(nn.Module):
    """Attention along time, frequency, covariates, then an MLP; each adaLN-Zero modulated.

    Written as a scan body, `(x, c, biases) -> (x, None)`, so the model can `nn.scan` over depth.
    """

    heads: int
    mlp_ratio: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, c, cov_bias, freq_bias):  # x (B, T, F', K', D), c (B, D)
        d = x.shape[-1]
        mods = AdaLNModulation(12, name="adaLN_modulation")(c)  # 12 x (B, D)
        attend = lambda axis, rope, name: FactorizedAttention(
            axis, self.heads, rope=rope, dtype=self.dtype, name=name)
        sublayers = [
            lambda h: attend(1, True, "attn_time")(h),  # RoPE over frames
            lambda h: attend(2, True, "attn_freq")(h, freq_bias),  # RoPE over patches, + B_F
            lambda h: attend(3, False, "attn_cov")(h, cov_bias),  # a set of patches, + B_C
            Mlp(int(d * self.mlp_ratio), dtype=self.dtype, name="mlp"),
        ]
        for i, sublayer in enumerate(sublayers):
            shift, scale, gate = mods[3 * i: 3 * i + 3]
            h = modulate(layer_norm(x), shift, scale)  # (B, T, F', K', D)
            x = x + gate[:, None, None, None, :] * sublayer(h)  # (B, T, F', K', D), float32
        return x, None


class FinalLayer(nn.Module):
    """adaLN (shift, scale) then a zero-initialised projection to the patch pixels."""

    out_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, c):  # (B, T, F', K', D), (B, D)
        shift, scale = AdaLNModulation(2, name="adaLN_modulation")(c)
        x = modulate(layer_norm(x), shift, scale)  # (B, T, F', K', D)
        x = Dense(self.out_dim, dtype=self.dtype, kernel_init=ZERO_INIT, name="linear")(x)
        return x.astype(jnp.float32)  # (B, T, F', K', pf*pc*3)


# ------------------------------------------------------------------------------------------------
# The model.
# ------------------------------------------------------------------------------------------------
class STDiff(nn.Module):
    """Predicts the velocity v = alpha eps - sigma x0 of a noisy video z (B, T, F, K, 3) at
    log-SNR (B,), given class labels (B,) when `num_classes` > 0; `diffusion.predictions` turns
    it into the clean video and the noise.

    Classes. With num_classes > 0 a learned class embedding (`ClassEmbedder`, index num_classes
    the "no class" token, which labels=None selects) is added to the timestep embedding, so it
    reaches every block through the same adaLN conditioning as the noise level. With
    num_classes = 0 the network has no class parameters and ignores labels: its parameter tree
    is that of a model without classes.

    Covariate patches. `patch_cov` = pc > 1 groups pc adjacent covariates (the data's column
    order) into one token: K' = ceil(K / pc) tokens along the covariate axis, the last patch
    zero-padded (its padded outputs are dropped). The covariate embeddings are then per patch
    (K' x D), and B_C is K' x K'. The covariate axis has no RoPE either way: patches, like
    covariates, are a set told apart by their learned embeddings.

    Attention biases. `cov_bias` (K' x K', added to the covariate-attention logits) and `freq_bias`
    (F' x F', frequency-attention logits) are each ONE matrix shared by all heads and all layers:
    the paper writes a single B_C and B_F, they are a data prior (initialised from the data's
    cross-correlation and pooled log-magnitude covariance) rather than per-layer features, and the
    per-layer, per-head query-key logits already give each layer its own freedom; sharing also keeps
    them outside the scanned blocks (K'^2 + F'^2 parameters instead of depth * heads times that).
    The stored parameters A are free; the biases used are (A + A^T) / 2, symmetric by construction.

    Depth. The blocks are always an `nn.scan` with stacked parameters (leading axis `depth`), with
    `remat` choosing whether each block is rematerialised; so the parameter tree, and checkpoints,
    do not depend on `remat`. On XLA:CPU `nn.remat` in a Python loop saved no memory while scan over
    remat blocks does: for the L = 24 paper-size model on K = 50 covariates at batch 64, XLA's
    temporaries are 18.8 GiB without remat and 3.3 GiB with it (4.0 GiB peak RSS of the whole
    training process; benchmarks/model_step.py, rows fmri24 and fmri24_remat).
    """

    num_frames: int
    num_freqs: int
    num_covariates: int
    depth: int
    hidden: int
    heads: int
    mlp_ratio: float
    patch_freq: int
    patch_cov: int = 1
    remat: bool = False
    unroll: bool = False  # Unrolled scan, same parameters: XLA's flop count sees every block.
    dtype: Any = jnp.float32
    cov_bias_init: Callable = ZERO_INIT
    freq_bias_init: Callable = ZERO_INIT
    num_classes: int = 0
    prior_rank: int = 0  # > 0: the network's output is added to a Gaussian prior's (prior.py)
    prior_components: int = 1  # > 1: to a mixture of that many Gaussians' (prior.MixturePrior)
    prior_per_class: bool = False  # with classes: prior_components a class (prior.py)
    prior_init: Any = None  # {parameter name: initialiser} of the prior's leaves

    @property
    def num_freq_patches(self):
        return num_patches(self.num_freqs, self.patch_freq)

    @property
    def num_cov_patches(self):
        return num_patches(self.num_covariates, self.patch_cov)

    @property
    def _prior_config(self):
        """The model config fields that shape the prior (prior.total_components')."""
        return {"prior_components": self.prior_components,
                "prior_per_class": self.prior_per_class}

    @property
    def num_prior_components(self):
        """The prior's Gaussians: prior_components, a class with prior_per_class."""
        return prior_lib.total_components(self._prior_config, self.num_classes)

    @nn.compact
    def __call__(self, z, logsnr, labels=None):  # (B, T, F, K, 3), (B,), (B,) or None
        self._check_inputs(z, logsnr, labels)
        d, pf, pc = self.hidden, self.patch_freq, self.patch_cov
        fp, kp = self.num_freq_patches, self.num_cov_patches
        c = TimestepEmbedder(d, name="t_embedder")(logsnr)  # (B, D)
        if self.num_classes:
            if labels is None:
                labels = jnp.full(logsnr.shape, self.num_classes, jnp.int32)
            c = c + ClassEmbedder(self.num_classes, d, name="y_embedder")(labels)  # (B, D)
        x = patchify(z, pf, pc)  # (B, T, F', K', 3 pf pc)
        x = Dense(d, kernel_init=DENSE_INIT, name="x_embedder")(x)  # (B, T, F', K', D)
        x = x + self.param("cov_embed", EMBED_INIT, (kp, d))  # (B, T, F', K', D)
        cov_bias = symmetrize(self.param("cov_bias", self.cov_bias_init, (kp, kp)))  # (K', K')
        freq_bias = symmetrize(self.param("freq_bias", self.freq_bias_init, (fp, fp)))  # (F', F')

        block = nn.remat(STDiffBlock, prevent_cse=False) if self.remat else STDiffBlock
        blocks = nn.scan(
            block, variable_axes={"params": 0}, split_rngs={"params": True},
            in_axes=(nn.broadcast, nn.broadcast, nn.broadcast), length=self.depth,
            unroll=self.depth if self.unroll else 1)
        x, _ = blocks(self.heads, self.mlp_ratio, self.dtype, name="blocks")(
            x, c, cov_bias, freq_bias)  # (B, T, F', K', D)

        x = FinalLayer(3 * pf * pc, dtype=self.dtype, name="final_layer")(x, c)  # (.., 3 pf pc)
        v = unpatchify(x, pf, self.num_freqs, pc, self.num_covariates)  # (B, T, F, K, 3)
        if self.prior_rank:
            v = v + self._prior_velocity(z, logsnr, labels)
        return v

    def _prior_velocity(self, z, logsnr, labels):
        """The prior's posterior velocity; a per-class prior's from the labels' components."""
        total = self.num_prior_components
        if total == 1:
            return prior_lib.posterior_velocity(z, logsnr, **self._prior_leaves())
        allowed = None
        if prior_lib.per_class_for(self._prior_config, self.num_classes):
            allowed = prior_lib.class_components(labels, self.num_classes, total)
        return prior_lib.mixture_posterior_velocity(z, logsnr, **self._prior_leaves(),
                                                    allowed=allowed)

    def _prior_leaves(self):
        """The Gaussian prior's leaves: parameters, so that checkpoints, EMA and sharding carry
        them, but constants: no gradient flows into them (AdamW, given zero gradients and no
        weight decay off kernels, leaves them as fitted)."""
        dim, rank = self.num_frames * self.num_freqs * self.num_covariates * 3, self.prior_rank
        c = () if self.num_prior_components == 1 else (self.num_prior_components,)
        shapes = {"prior_mean": (dim,), "prior_basis": (dim, rank),
                  "prior_variances": (*c, rank), "prior_residual": c}
        if c:  # prior.MixturePrior: its components inside the one basis
            shapes.update(prior_offsets=(*c, rank), prior_rotations=(*c, rank, rank),
                          prior_log_weights=c)
        leaves = {name: jax.lax.stop_gradient(self.param(name, self.prior_init[name], shape))
                  for name, shape in shapes.items()}
        return {name.removeprefix("prior_"): value for name, value in leaves.items()}

    def _check_inputs(self, z, logsnr, labels):
        expected = (self.num_frames, self.num_freqs, self.num_covariates, 3)
        if z.ndim != 5 or tuple(z.shape[1:]) != expected:
            raise ValueError(
                f"STDiff expects videos (B, T, F, K, 3) = (B, {', '.join(map(str, expected))}), "
                f"got {tuple(z.shape)}; build the model with create_model(..., num_frames, num_freqs, "
                "num_covariates) of this data.")
        if logsnr.shape != (z.shape[0],):
            raise ValueError(f"logsnr must have shape (B,) = ({z.shape[0]},), got {logsnr.shape}.")
        if labels is not None and self.num_classes and (
                labels.shape != (z.shape[0],) or not jnp.issubdtype(labels.dtype, jnp.integer)):
            raise ValueError(f"labels must be integers of shape (B,) = ({z.shape[0]},), got "
                             f"{labels.dtype} {labels.shape}.")


# ------------------------------------------------------------------------------------------------
# Building a model from a config and the data statistics.
# ------------------------------------------------------------------------------------------------
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def pool_patches(stat, patch):
    """(N, N) -> (N', N'), N' = ceil(N / patch): the mean of the entries over each pair of patches
    of `patch` adjacent rows (B_F from the frequency covariance, B_C from the covariate
    correlation).

    A patch's padded rows (when `patch` does not divide N) hold no data, so only real rows are
    averaged.
    """
    stat = np.asarray(stat, np.float64)
    n = stat.shape[0]
    pool = np.zeros((num_patches(n, patch), n))  # (N', N) row-averaging matrix
    for p in range(len(pool)):
        rows = slice(p * patch, min((p + 1) * patch, n))
        pool[p, rows] = 1.0 / (rows.stop - rows.start)
    return (pool @ stat @ pool.T).astype(np.float32)  # (N', N')


def constant_init(value):
    """An initialiser returning `value` (a data statistic), checking the requested shape."""
    value = np.asarray(value, np.float32)

    def init(key, shape, dtype=jnp.float32):
        del key
        if tuple(shape) != value.shape:
            raise ValueError(f"statistic of shape {value.shape} cannot initialise a {shape} bias")
        return jnp.asarray(value, dtype)

    return init


PRIOR_LEAVES = ("prior_mean", "prior_basis", "prior_variances", "prior_residual")
MIXTURE_LEAVES = (*PRIOR_LEAVES, "prior_offsets", "prior_rotations", "prior_log_weights")


def nan_init(key, shape, dtype=jnp.float32):
    """NaNs: the prior of a model built to restore a checkpoint into (or to take shapes from);
    a training that forgot to fit the prior fails at its first loss instead of running on."""
    del key
    return jnp.full(shape, jnp.nan, dtype)


def _stat(stats, name):
    value = stats.get(name) if isinstance(stats, dict) else getattr(stats, name, None)
    return None if value is None else np.asarray(value)


def create_model(model_config, num_frames, num_freqs, num_covariates, stats=None, num_classes=0,
                 prior=None):
    """STDiff for videos (B, num_frames, num_freqs, num_covariates, 3), conditioned on
    `num_classes` classes (0: unconditional, no class parameters).

    model_config: dict-like with depth, hidden, heads, mlp_ratio, patch_freq, and optionally
    patch_cov (default 1), remat (default False) and dtype ('float32' or 'bfloat16' compute;
    parameters stay float32).
    stats: optional dict or object with `cov_corr` (K, K) and `freq_cov` (F, F); pooled over the
    covariate and frequency patches, they initialise B_C and B_F. Without them the biases start
    at zero.
    prior: the `prior.GaussianPrior` (or, with model_config.prior_components > 1, the
    `prior.MixturePrior`) of the training videos when model_config.prior_rank > 0 and the model
    is to be trained from scratch; None to restore a checkpoint into.
    """
    cfg = {name: model_config[name]
           for name in ("depth", "hidden", "heads", "mlp_ratio", "patch_freq")}
    cfg["patch_cov"] = model_config.get("patch_cov", 1)
    remat, dtype = bool(model_config.get("remat", False)), model_config.get("dtype", "float32")
    if dtype not in DTYPES:
        raise UserError(f"model.dtype must be one of {sorted(DTYPES)}, got {dtype!r}.")
    if cfg["hidden"] % cfg["heads"] or (cfg["hidden"] // cfg["heads"]) % 2:
        raise UserError(
            f"model.hidden ({cfg['hidden']}) must split into model.heads ({cfg['heads']}) heads of "
            "even size (RoPE rotates feature pairs); change hidden or heads.")
    if min(cfg["patch_freq"], cfg["patch_cov"], cfg["depth"]) < 1:
        raise UserError(f"model.patch_freq, model.patch_cov and model.depth must be >= 1, got "
                        f"{cfg}; set them to whole numbers from 1 (patch_cov 1: one covariate "
                        f"a token).")

    inits = {}
    if stats is not None:
        cov_corr, freq_cov = _stat(stats, "cov_corr"), _stat(stats, "freq_cov")
        for name, value, shape in (("cov_corr", cov_corr, (num_covariates,) * 2),
                                   ("freq_cov", freq_cov, (num_freqs,) * 2)):
            if value is None or value.shape != shape or not np.all(np.isfinite(value)):
                raise ValueError(
                    f"stats.{name} must be a finite {shape} array for this data, got "
                    f"{None if value is None else value.shape}; recompute the data statistics "
                    "with the same video settings, or pass stats=None for zero biases.")
        inits = dict(cov_bias_init=constant_init(pool_patches(cov_corr, cfg["patch_cov"])),
                     freq_bias_init=constant_init(pool_patches(freq_cov, cfg["patch_freq"])))
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}.")
    rank = int(model_config.get("prior_rank", 0))
    components = int(model_config.get("prior_components", 1))
    if rank < 0 or components < 1:
        raise UserError(f"model.prior_rank must be >= 0 and model.prior_components >= 1, got "
                        f"{rank} and {components}.")
    total = prior_lib.total_components(model_config, num_classes)
    if prior is not None:
        fitted = prior.as_params()
        shape = (total, rank) if total > 1 else (rank,)
        if fitted["prior_variances"].shape != shape:
            raise ValueError(f"The prior's variances are {fitted['prior_variances'].shape}, the "
                             f"model's (prior_components [x classes with prior_per_class], "
                             f"prior_rank) want {shape}.")
    if rank:
        inits.update(prior_rank=rank, prior_components=components,
                     prior_per_class=prior_lib.per_class_for(model_config, num_classes))
        leaves = MIXTURE_LEAVES if total > 1 else PRIOR_LEAVES
        inits["prior_init"] = ({name: constant_init(value) for name, value in fitted.items()}
                               if prior is not None else dict.fromkeys(leaves, nan_init))
    return STDiff(num_frames=num_frames, num_freqs=num_freqs, num_covariates=num_covariates,
                  remat=remat, dtype=DTYPES[dtype], num_classes=int(num_classes), **cfg, **inits)
