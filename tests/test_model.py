"""The ST-Diff network: shapes, adaLN-Zero, RoPE, the data-initialised attention biases, covariate
patches, and the hand-written gradient of its LayerNorm."""
import ast
import hashlib
import pathlib

import jax
import jax.test_util
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from stdiff_jax import config_checks, stft
from stdiff_jax.errors import UserError
from stdiff_jax.models import (CPU_SIZES, TABLE4, attention_biases, create_model, pool_patches,
                               stft_settings)
from stdiff_jax.models.rope import apply_rope, rope_angles
from stdiff_jax.models.stdiff import layer_norm, patchify, unpatchify

# A tiny network on a tiny video; F = 5 with patch_freq 2 exercises the frequency padding.
TINY = dict(depth=2, hidden=16, heads=2, mlp_ratio=2.0, patch_freq=2)
T, F, K = 4, 5, 3


def random_stats(k, f, seed=0):
    rng = np.random.default_rng(seed)
    cov_corr = np.corrcoef(rng.normal(size=(k, 40)))
    freq_cov = np.cov(rng.normal(size=(f, 40)) * np.linspace(0.5, 2.0, f)[:, None])
    return dict(cov_corr=cov_corr.astype(np.float32), freq_cov=freq_cov.astype(np.float32))


def inputs(b=2, t=T, f=F, k=K, seed=1):
    rng = np.random.default_rng(seed)
    z = jnp.asarray(rng.normal(size=(b, t, f, k, 3)), jnp.float32)
    logsnr = jnp.asarray(rng.uniform(-10, 10, size=(b,)), jnp.float32)
    return z, logsnr


def perturbed(params, scale=0.3, seed=2):
    """Random non-zero parameters, so that every branch the zero-init gates off contributes."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [p + scale * jax.random.normal(key, p.shape)
                                        for p, key in zip(leaves, keys)])


@pytest.mark.parametrize("seq_len", sorted(TABLE4))
def test_table4_shapes(seq_len):
    """Every Table-4 configuration maps (B, T, F, K, 3) to itself (shapes only: eval_shape)."""
    n_fft, hop = stft_settings(seq_len)
    t, f, k = stft.num_frames(seq_len, n_fft, hop), stft.num_freqs(n_fft), 7
    model = create_model(dict(TABLE4[seq_len], remat=True), t, f, k, random_stats(k, f))
    z = jax.ShapeDtypeStruct((3, t, f, k, 3), jnp.float32)
    logsnr = jax.ShapeDtypeStruct((3,), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), z, logsnr)
    out = jax.eval_shape(model.apply, variables, z, logsnr)
    assert out.shape == z.shape and out.dtype == jnp.float32
    fp = -(-f // TABLE4[seq_len]["patch_freq"])
    assert variables["params"]["freq_bias"].shape == (fp, fp)
    assert variables["params"]["blocks"]["attn_time"]["qkv"]["kernel"].shape == (
        TABLE4[seq_len]["depth"], TABLE4[seq_len]["hidden"], 3 * TABLE4[seq_len]["hidden"])


@pytest.mark.parametrize("size", sorted(CPU_SIZES))
def test_cpu_sizes_run_and_start_at_exactly_zero(size):
    """The CPU sizes run on the L = 24, K = 7 video; adaLN-Zero makes the first output exactly 0."""
    n_fft, hop = stft_settings(24)
    t, f, k = stft.num_frames(24, n_fft, hop), stft.num_freqs(n_fft), 7
    cfg = {key: TABLE4[24][key] for key in ("patch_freq", "depth", "hidden", "heads", "mlp_ratio")}
    model = create_model({**cfg, **CPU_SIZES[size]}, t, f, k, random_stats(k, f))
    z, logsnr = inputs(b=3, t=t, f=f, k=k)

    @jax.jit  # one compile: init and apply together
    def init_and_apply(key, z, logsnr):
        variables = model.init(key, z, logsnr)
        return model.apply(variables, z, logsnr)

    out = np.asarray(init_and_apply(jax.random.key(0), z, logsnr))
    assert out.shape == z.shape and np.array_equal(out, np.zeros(z.shape, np.float32))


@pytest.fixture(scope="module")
def tiny():
    """One tiny model with data statistics, initialised once and shared: XLA:CPU compiles are the
    cost of these tests, so every test below reuses the same compiled apply."""
    stats = random_stats(K, F)
    model = create_model(TINY, T, F, K, stats)
    z, logsnr = inputs()
    params = jax.jit(model.init)(jax.random.key(0), z, logsnr)["params"]
    apply = jax.jit(lambda p, z, l: model.apply({"params": p}, z, l))
    return model, stats, params, apply, mse_grad(model, z, logsnr)


def mse_grad(model, z, logsnr):
    """jit(value_and_grad) of the MSE of the prediction to 1 (a target other than the output 0)."""
    loss = lambda p: jnp.mean((model.apply({"params": p}, z, logsnr) - 1.0) ** 2)
    return jax.jit(jax.value_and_grad(loss))


@pytest.mark.slow  # two compiled gradients of the network (~20 s on 2 cores)
def test_remat_changes_neither_parameters_nor_function(tiny):
    """remat only changes what is recomputed: same parameter tree, same loss and gradients."""
    _, stats, params, _, grad = tiny
    remat_model = create_model(dict(TINY, remat=True), T, F, K, stats)
    z, logsnr = inputs()
    shapes = jax.eval_shape(remat_model.init, jax.random.key(0), z, logsnr)["params"]
    assert jax.tree.map(jnp.shape, shapes) == jax.tree.map(jnp.shape, params)
    params = perturbed(params)
    (loss0, grad0), (loss1, grad1) = grad(params), mse_grad(remat_model, z, logsnr)(params)
    np.testing.assert_allclose(loss0, loss1, rtol=1e-5)
    # Recomputation reorders float32 sums: entries near zero differ by rounding of the leaf's scale
    # (seen: 2e-6 on a leaf reaching 1.7), so the absolute tolerance follows each leaf's magnitude.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(
        a, b, rtol=1e-4, atol=1e-5 * float(np.abs(b).max())), grad0, grad1)


def test_output_is_exactly_zero_at_init(tiny):
    _, _, params, apply, _ = tiny
    z, logsnr = inputs()
    assert np.array_equal(np.asarray(apply(params, z, logsnr)), np.zeros(z.shape, np.float32))


def test_rope_scores_depend_only_on_relative_position():
    """<rope(q, i), rope(k, j)> is a function of i - j, and not a constant one."""
    s, h = 9, 8
    rng = np.random.default_rng(0)
    q = np.broadcast_to(rng.normal(size=(1, 1, h)), (s, 1, h)).astype(np.float32)  # (S, N, H)
    k = np.broadcast_to(rng.normal(size=(1, 1, h)), (s, 1, h)).astype(np.float32)
    cos, sin = rope_angles(s, h)
    scores = np.einsum("inh,jnh->ij", apply_rope(jnp.asarray(q), cos, sin),
                       apply_rope(jnp.asarray(k), cos, sin))  # (S, S)
    for offset in range(-s + 1, s):
        diagonal = np.diagonal(scores, offset)
        np.testing.assert_allclose(diagonal, diagonal[0], rtol=1e-5, atol=1e-5)
    assert np.ptp([np.diagonal(scores, o)[0] for o in range(-s + 1, s)]) > 0.1


def test_rope_rejects_odd_head_dimension():
    with pytest.raises(ValueError, match="even"):
        create_model(dict(TINY, hidden=18, heads=2), T, F, K)


def test_patchify_pads_and_unpatchify_inverts():
    z, _ = inputs()
    tokens = patchify(z, 2)  # F = 5 -> 3 patches, the last one half padding
    assert tokens.shape == (2, T, 3, K, 6)
    np.testing.assert_array_equal(np.asarray(tokens[:, :, 2, :, 3:]), 0.0)
    np.testing.assert_array_equal(np.asarray(unpatchify(tokens, 2, F)), np.asarray(z))


def test_pool_patches_averages_real_bins_of_each_patch():
    cov = np.arange(25, dtype=np.float64).reshape(5, 5)
    cov = cov + cov.T
    patches = [[0, 1], [2, 3], [4]]
    expected = [[cov[np.ix_(p, q)].mean() for q in patches] for p in patches]
    np.testing.assert_allclose(pool_patches(cov, 2), expected, rtol=1e-6)


def test_biases_start_at_the_data_statistics_and_stay_symmetric(tiny):
    """B_C = cov_corr and B_F = pooled freq_cov at init; symmetric, also after a gradient step."""
    _, stats, params, _, grad = tiny
    cov_bias, freq_bias = attention_biases(params)
    np.testing.assert_allclose(cov_bias, stats["cov_corr"], rtol=1e-6)
    np.testing.assert_allclose(freq_bias, pool_patches(stats["freq_cov"], 2), rtol=1e-6)

    # At init the gates are zero, so the biases get no gradient; step from perturbed weights.
    params = perturbed(params)
    _, grads = grad(params)
    for name in ("cov_bias", "freq_bias"):
        assert np.abs(grads[name]).max() > 1e-6, f"{name} gets no gradient"
    stepped = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    for before, after in zip(attention_biases(params), attention_biases(stepped)):
        np.testing.assert_array_equal(np.asarray(after), np.asarray(after).T)
        assert not np.allclose(before, after)


def test_without_stats_biases_start_at_zero():
    model = create_model(TINY, T, F, K)
    for init in (model.cov_bias_init, model.freq_bias_init):
        np.testing.assert_array_equal(init(jax.random.key(0), (K, K)), 0.0)


def test_permuting_covariates_permutes_the_output(tiny):
    """The covariates are an unordered set: permuting them together with their embeddings and B_C
    permutes the prediction the same way. (Permuting the statistics permutes the initial B_C, since
    B_C starts equal to them.) Time and frequency are ordered (RoPE): no such symmetry there."""
    _, _, params, apply, _ = tiny
    perm = np.array([2, 0, 1])
    params = perturbed(params)
    params_perm = dict(params, cov_embed=params["cov_embed"][perm],
                       cov_bias=params["cov_bias"][np.ix_(perm, perm)])
    z, logsnr = inputs()
    out = np.asarray(apply(params, z, logsnr))
    out_perm = np.asarray(apply(params_perm, z[:, :, :, perm], logsnr))
    assert np.abs(out).max() > 1e-3
    np.testing.assert_allclose(out_perm, out[:, :, :, perm], rtol=1e-4, atol=1e-5)
    shuffled = np.asarray(apply(params, z[:, :, :, perm], logsnr))  # embeddings not permuted
    assert not np.allclose(shuffled, out[:, :, :, perm], atol=1e-3)


def tree_digest(tree):
    """sha256 of a tree's paths and exact values."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()[:16]


def test_patch_cov_1_is_the_network_before_covariate_patches(tiny):
    """patch_cov = 1 (the default) is today's network: the digest and the output below were
    computed with the code before model.patch_cov existed (commit 0b6cce6), and were equal bit
    for bit there (exact output digest a86bbb1abe8e74bf on the project's VM)."""
    model, _, params, apply, _ = tiny
    assert model.patch_cov == 1 and model.num_cov_patches == K
    assert tree_digest(params) == "a6e1cd2ee00928bc"  # init is exact: random bits and constants
    z, logsnr = inputs()
    out = np.asarray(apply(perturbed(params), z, logsnr))
    # Matmuls may round differently on another CPU, so the output is compared to 1e-5.
    np.testing.assert_allclose(out[0, 1, 2], [[-1.3355796, 15.313198, 6.1921988],
                                              [-0.4481636, 15.837274, 5.7027369],
                                              [-1.8612113, 16.034372, 4.5217934]], rtol=1e-5)
    np.testing.assert_allclose(np.abs(out).sum(), 2000.0631, rtol=1e-5)


@pytest.mark.parametrize("k,patch_cov", [(5, 2), (5, 3), (7, 4), (3, 4), (4, 2)])
def test_covariate_patches_pad_group_adjacent_covariates_and_invert(k, patch_cov):
    """Tokens hold patch_cov adjacent covariates in column order, (freq, cov, channel) inside a
    token; the last patch is zero-padded; unpatchify inverts exactly (F = 5, pf = 2 pads too)."""
    z, _ = inputs(k=k)
    tokens = np.asarray(patchify(z, 2, patch_cov))  # (B, T, F', K', 2 pc 3)
    kp = -(-k // patch_cov)
    assert tokens.shape == (2, T, 3, kp, 2 * patch_cov * 3)
    cells = tokens.reshape(2, T, 3, kp, 2, patch_cov, 3)  # (B, T, F', K', pf, pc, C)
    for j in range(kp):
        for i in range(patch_cov):
            covariate = j * patch_cov + i
            expected = (np.asarray(z[:, :, 2:4, covariate]) if covariate < k
                        else np.zeros((2, T, 2, 3)))  # a padded covariate
            np.testing.assert_array_equal(cells[:, :, 1, j, :, i], expected)
    np.testing.assert_array_equal(np.asarray(unpatchify(jnp.asarray(tokens), 2, F, patch_cov, k)),
                                  np.asarray(z))


def test_patch_cov_1_tokens_are_the_frequency_patches():
    z, _ = inputs()
    np.testing.assert_array_equal(np.asarray(patchify(z, 2, 1)), np.asarray(patchify(z, 2)))
    np.testing.assert_array_equal(np.asarray(unpatchify(patchify(z, 2), 2, F, 1, K)),
                                  np.asarray(unpatchify(patchify(z, 2), 2, F)))


def test_covariate_bias_is_pooled_over_real_covariates_of_each_patch():
    """K = 3 in patches of 2: B_C's first patch averages the 2 x 2 block, the second holds only
    covariate 2 (its padded covariate has no data, so it is not averaged in as a zero)."""
    cov_corr = np.array([[1.0, 0.8, 0.2], [0.8, 1.0, 0.4], [0.2, 0.4, 1.0]], np.float32)
    stats = dict(random_stats(3, F), cov_corr=cov_corr)
    model = create_model(dict(TINY, patch_cov=2), T, F, 3, stats)
    assert model.num_cov_patches == 2
    np.testing.assert_allclose(model.cov_bias_init(jax.random.key(0), (2, 2)),
                               [[0.9, 0.3], [0.3, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(pool_patches(cov_corr, 1), cov_corr, rtol=0)
    with pytest.raises(ValueError, match="cannot initialise"):
        model.cov_bias_init(jax.random.key(0), (3, 3))


@pytest.mark.slow  # a compiled gradient of a second network (~15 s on 2 cores)
def test_covariate_patches_network_shapes_symmetry_and_gradients():
    """K = 5 in patches of 2 (K' = 3, the last padded): per-patch embeddings and a K' x K' B_C,
    the video's shape back, exactly zero at init; permuting whole patches (with their embeddings
    and B_C) permutes the prediction the same way; every parameter gets a finite gradient."""
    k, patch_cov = 5, 2
    model = create_model(dict(TINY, patch_cov=patch_cov), T, F, k, random_stats(k, F))
    z, logsnr = inputs(k=k)
    params = jax.jit(model.init)(jax.random.key(0), z, logsnr)["params"]
    assert params["cov_embed"].shape == (3, TINY["hidden"])
    assert params["cov_bias"].shape == (3, 3) and params["freq_bias"].shape == (3, 3)
    assert params["x_embedder"]["kernel"].shape == (2 * patch_cov * 3, TINY["hidden"])
    assert params["final_layer"]["linear"]["kernel"].shape == (TINY["hidden"], 2 * patch_cov * 3)
    apply = jax.jit(lambda p, z: model.apply({"params": p}, z, logsnr))
    assert np.array_equal(np.asarray(apply(params, z)), np.zeros(z.shape, np.float32))

    params = perturbed(params)
    out = np.asarray(apply(params, z))
    assert out.shape == z.shape and np.abs(out).max() > 1e-3
    patches, covariates = np.array([1, 0, 2]), np.array([2, 3, 0, 1, 4])
    swapped = dict(params, cov_embed=params["cov_embed"][patches],
                   cov_bias=params["cov_bias"][np.ix_(patches, patches)])
    np.testing.assert_allclose(np.asarray(apply(swapped, z[:, :, :, covariates])),
                               out[:, :, :, covariates], rtol=1e-4, atol=1e-5)
    # Inside a patch the covariates are ordered: swapping two of them is not a symmetry.
    inside = np.array([1, 0, 2, 3, 4])
    assert not np.allclose(np.asarray(apply(params, z[:, :, :, inside])), out[:, :, :, inside],
                           atol=1e-3)

    loss, grads = mse_grad(model, z, logsnr)(params)
    assert np.isfinite(loss)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, jax.tree_util.keystr(path)


def test_patch_cov_below_1_is_refused_before_any_work():
    with pytest.raises(UserError, match="patch_cov"):
        create_model(dict(TINY, patch_cov=0), T, F, K)
    config = base.make_config("etth", "cpu")
    config.model.patch_cov = 0
    with pytest.raises(UserError, match=r"config\.model\.patch_cov=0 must be >= 1"):
        config_checks.check_config(config, "train")


def test_bad_inputs_give_clear_errors():
    model = create_model(TINY, T, F, K)
    z, logsnr = inputs()
    with pytest.raises(ValueError, match="expects videos"):
        model.init(jax.random.key(0), z[:, :, :4], logsnr)
    with pytest.raises(ValueError, match="logsnr"):
        model.init(jax.random.key(0), z, logsnr[:1])
    with pytest.raises(ValueError, match="cov_corr"):
        create_model(TINY, T, F, K, dict(random_stats(K + 1, F)))
    with pytest.raises(ValueError, match="dtype"):
        create_model(dict(TINY, dtype="float16"), T, F, K)


# Every custom_vjp / custom_jvp of the library, as module:function, and the test that checks it.
CHECKED_CUSTOM_GRADIENTS = {"stdiff_jax/models/stdiff.py:layer_norm":
                            "test_layer_norm_gradient_is_autodiff_of_the_plain_formula"}


def custom_gradients():
    """module:function of every function the library decorates with jax.custom_vjp/custom_jvp."""
    root = pathlib.Path(__file__).resolve().parents[1]
    found = set()
    for path in sorted((root / "stdiff_jax").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(
                    "custom_vjp" in ast.unparse(d) or "custom_jvp" in ast.unparse(d)
                    for d in node.decorator_list):
                found.add(f"{path.relative_to(root)}:{node.name}")
    return found


def test_every_custom_gradient_is_checked():
    assert custom_gradients() == set(CHECKED_CUSTOM_GRADIENTS)
    assert all(name in globals() for name in CHECKED_CUSTOM_GRADIENTS.values())


def plain_layer_norm(x):
    """layer_norm's forward formula, differentiated by JAX's autodiff."""
    xf = x.astype(jnp.float32)
    centred = xf - xf.mean(-1, keepdims=True)
    return centred * jax.lax.rsqrt((centred * centred).mean(-1, keepdims=True) + 1e-6)


def test_layer_norm_gradient_is_autodiff_of_the_plain_formula():
    rng = np.random.default_rng(3)
    # Rows of different scales and offsets, tokens shaped as the model's (B, T, F', K, D).
    x = rng.normal(size=(2, 3, 2, 4, 16)) * rng.uniform(0.1, 5.0, (2, 3, 2, 4, 1))
    x = jnp.asarray(x + rng.normal(size=(2, 3, 2, 4, 1)), jnp.float32)
    dy = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    y, vjp = jax.vjp(layer_norm, x)
    y_ref, vjp_ref = jax.vjp(plain_layer_norm, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    (dx,), (dx_ref,) = vjp(dy), vjp_ref(dy)
    assert np.abs(dx_ref).max() > 0.1
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5 * float(np.abs(dx_ref).max()))
    # Against finite differences, first and second order (the gradient of the gradient goes
    # through the hand-written rule too). float64 would be tighter, but the model runs float32.
    jax.test_util.check_grads(layer_norm, (x[0, 0, 0],), order=2, modes=("rev",), eps=1e-2)
    # bfloat16 compute (TPU): the rule runs in float32 and rounds once, like the forward pass.
    xb = x.astype(jnp.bfloat16)
    (dxb,) = jax.vjp(layer_norm, xb)[1](dy.astype(jnp.bfloat16))
    (dxb_ref,) = jax.vjp(plain_layer_norm, xb.astype(jnp.float32))[1](dy)
    assert dxb.dtype == jnp.bfloat16
    np.testing.assert_allclose(dxb.astype(jnp.float32), dxb_ref, rtol=2e-2,
                               atol=1e-2 * float(np.abs(dxb_ref).max()))
