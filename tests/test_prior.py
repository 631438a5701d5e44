"""The Gaussian prior under the network (stdiff_jax/prior.py): its fit, its exact posterior
velocity, and a model that starts as the exact denoiser of Gaussian videos and keeps its prior
through training."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.cluster.vq
import pytest
from ml_collections import ConfigDict

from configs import sines
from stdiff_jax import prior as prior_lib
from stdiff_jax import checkpoint, sampling, saved_model, train
from stdiff_jax.data import load_dataset
from stdiff_jax.models import create_model
from stdiff_jax.schedule import Schedule

SHAPE = (3, 2, 2, 3)  # (T, F, K, 3) of a tiny video: D = 36
DIM = int(np.prod(SHAPE))


def low_rank_gaussian(n, rank, seed=0, residual=0.01):
    """n flat draws of N(m, U diag(s) U^T + residual I) with a known spectrum, and the truth."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((DIM, rank)))[0]
    variances = np.geomspace(4.0, 0.5, rank)
    mean = rng.normal(0, 0.5, DIM)
    x = (mean + (rng.standard_normal((n, rank)) * np.sqrt(variances)) @ basis.T
         + np.sqrt(residual) * rng.standard_normal((n, DIM)))
    return x.astype(np.float32), mean, basis, variances


def identity_video(x):
    return jnp.asarray(x).reshape(len(x), *SHAPE)


def test_fit_recovers_mean_spectrum_and_subspace(monkeypatch):
    monkeypatch.setattr(prior_lib, "CHUNK_NUMBERS", 3000 * DIM)  # several chunks
    x, mean, basis, variances = low_rank_gaussian(20_000, 4)
    fitted = prior_lib.fit_prior(x.reshape(len(x), -1, 1), identity_video, rank=4)
    np.testing.assert_allclose(fitted.mean, mean, atol=0.05)
    np.testing.assert_allclose(fitted.variances, variances + 0.01, rtol=0.05)
    overlap = np.linalg.svd(basis.T @ fitted.basis, compute_uv=False)  # cosines of the angles
    assert overlap.min() > 0.999
    assert fitted.residual == pytest.approx(0.01, rel=0.1)
    assert fitted.explained() == pytest.approx(variances.sum() / (variances.sum() + 0.36), abs=0.01)


def test_rank_above_the_data_pads_with_empty_directions():
    x, *_ = low_rank_gaussian(5, 2)  # 5 windows: at most 5 directions
    fitted = prior_lib.fit_prior(x.reshape(5, -1, 1), identity_video, rank=8)
    assert fitted.basis.shape == (DIM, 8) and np.all(fitted.variances[5:] == 0)
    assert np.all(fitted.basis[:, 5:] == 0)


def exact_velocity(z, logsnr, mean, cov):
    """E[v | z] from the full covariance: alpha sigma (I - S)(alpha^2 S + sigma^2 I)^-1 y - sigma m."""
    a2, s2 = 1 / (1 + np.exp(-logsnr)), 1 / (1 + np.exp(logsnr))
    a, s = np.sqrt(a2), np.sqrt(s2)
    y = z - a * mean
    gain = a * s * (np.eye(DIM) - cov) @ np.linalg.inv(a2 * cov + s2 * np.eye(DIM))
    return y @ gain.T - s * mean


@pytest.mark.parametrize("logsnr", [-12.0, -3.0, 0.0, 4.0, 14.0])
def test_posterior_velocity_is_the_exact_gaussian_one(logsnr):
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.standard_normal((DIM, 5)))[0]
    variances, residual, mean = np.array([3.0, 2.0, 1.0, 0.2, 0.0]), 0.05, rng.normal(size=DIM)
    cov = basis @ np.diag(variances) @ basis.T + residual * (np.eye(DIM) - basis @ basis.T)
    z = rng.standard_normal((4, DIM))
    got = prior_lib.posterior_velocity(jnp.asarray(z, jnp.float32), jnp.full((4,), logsnr),
                                       jnp.asarray(mean, jnp.float32),
                                       jnp.asarray(basis, jnp.float32),
                                       jnp.asarray(variances, jnp.float32), residual)
    want = exact_velocity(z, logsnr, mean, cov)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_unit_gaussian_prior_is_the_plain_model():
    """m = 0, S = I: the prior velocity is zero, what a plain v-prediction network assumes."""
    z = jnp.asarray(np.random.default_rng(2).standard_normal((3, DIM)), jnp.float32)
    v = prior_lib.posterior_velocity(z, jnp.array([-5.0, 0.0, 5.0]), jnp.zeros(DIM),
                                     jnp.eye(DIM)[:, :4], jnp.ones(4), 1.0)
    np.testing.assert_array_equal(v, 0.0)


MODEL = dict(depth=1, hidden=16, heads=2, mlp_ratio=2.0, patch_freq=1, prior_rank=6)


def test_model_at_init_samples_the_gaussian():
    """The network is zero at init, so the model is the exact denoiser of the fitted Gaussian:
    DPM-Solver++ from noise gives samples with its mean and covariance."""
    x, mean, basis, variances = low_rank_gaussian(20_000, 6, seed=3)
    fitted = prior_lib.fit_prior(x.reshape(len(x), -1, 1), identity_video, rank=6)
    model = create_model(MODEL, *SHAPE[:3], prior=fitted)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *SHAPE)), jnp.zeros((1,)))["params"]
    samples = sampling.sample(lambda z, s: model.apply({"params": params}, z, s), (3000, *SHAPE),
                              jax.random.PRNGKey(1), method="dpmpp_2m", num_steps=50, eta=0.0,
                              schedule=Schedule(), grid="logsnr", clip_x0=None)
    flat = np.asarray(samples).reshape(3000, -1)
    np.testing.assert_allclose(flat.mean(0), mean, atol=0.15)
    got = np.linalg.eigvalsh(np.cov(flat, rowvar=False))[::-1][:6]
    np.testing.assert_allclose(got, variances + 0.01, rtol=0.1)


def test_model_without_a_fitted_prior_is_nan_and_a_rank_mismatch_is_refused():
    x, *_ = low_rank_gaussian(100, 3)
    model = create_model(MODEL, *SHAPE[:3])  # to restore a checkpoint into
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *SHAPE)), jnp.zeros((1,)))["params"]
    assert np.all(np.isnan(params["prior_basis"]))
    fitted = prior_lib.fit_prior(x.reshape(100, -1, 1), identity_video, rank=3)
    with pytest.raises(ValueError, match="prior_rank"):
        create_model(MODEL, *SHAPE[:3], prior=fitted)


def test_training_leaves_the_prior_as_fitted():
    x, *_ = low_rank_gaussian(200, 6, seed=4)
    fitted = prior_lib.fit_prior(x.reshape(200, -1, 1), identity_video, rank=6)
    model = create_model(MODEL, *SHAPE[:3], prior=fitted)
    tx, _ = train.make_optimizer(ConfigDict(dict(
        learning_rate=1e-2, min_learning_rate=1e-4, warmup_steps=1, num_steps=10,
        weight_decay=0.5, grad_clip=1.0)), prior=True)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *SHAPE)), jnp.zeros((1,)))["params"]
    opt_state = tx.init(params)
    network_size = sum(x.size for name, x in params.items() if not name.startswith("prior_")
                       for x in jax.tree.leaves(x))
    assert sum(x.size for x in jax.tree.leaves(opt_state)) <= 2 * network_size + 2  # + counts
    videos = jnp.asarray(x[:32].reshape(32, *SHAPE))

    def loss(p):
        return jnp.mean((model.apply({"params": p}, videos, jnp.zeros((32,))) - videos) ** 2)

    @jax.jit
    def step(params, opt_state):
        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return jax.tree.map(lambda p, u: p + u, params, updates), opt_state, grads

    for _ in range(3):
        params, opt_state, grads = step(params, opt_state)
        assert np.all(grads["prior_basis"] == 0)
    for name, value in fitted.as_params().items():
        np.testing.assert_array_equal(params[name], value)
    assert not np.allclose(params["final_layer"]["linear"]["kernel"], 0.0)  # the network did learn


def test_videos_have_at_most_l_times_k_directions_and_the_rank_is_capped_there():
    from stdiff_jax import video
    length, k = 12, 2
    series = np.random.default_rng(5).standard_normal((400, length, k)).astype(np.float32)
    fitted = prior_lib.fit_prior(series, lambda x: video.series_to_video(x, 5, 2), rank=40)
    assert fitted.variances[length * k - 1] > 1e-3 * fitted.variances[0]
    assert np.all(fitted.variances[length * k:] < 1e-5 * fitted.variances[0])
    assert prior_lib.rank_for({"prior_rank": 40}, (length, k)) == 24
    assert prior_lib.rank_for({"prior_rank": 16}, (length, k)) == 16
    assert prior_lib.rank_for({}, (length, k)) == 0  # a config older than the prior


def test_evenly_spaced_keeps_the_first_and_last_windows_in_order():
    windows = np.arange(100)[:, None, None] * np.ones((1, 3, 2))
    subset = prior_lib.evenly_spaced(windows, 7)
    starts = subset[:, 0, 0].astype(int).tolist()
    assert starts == sorted(set(starts)) and len(starts) == 7 and starts[0] == 0
    assert starts[-1] == 99 and max(np.diff(starts)) - min(np.diff(starts)) <= 1
    assert prior_lib.evenly_spaced(windows, 100) is windows


def two_clusters(n=4000, seed=6):
    """Flat draws of a two-component mixture (shares 0.7 / 0.3, means 6 apart), and the truth."""
    rng = np.random.default_rng(seed)
    a, _, _, _ = low_rank_gaussian(int(0.7 * n), 4, seed=seed)
    b, _, _, _ = low_rank_gaussian(n - len(a), 3, seed=seed + 1)
    shift = np.zeros(DIM)
    shift[0] = 6.0
    x = np.concatenate([a - a.mean(0), b - b.mean(0) + shift]).astype(np.float32)
    return x[rng.permutation(n)], (0.7, 0.3)


def test_mixture_fit_finds_the_clusters_and_their_shares():
    x, shares = two_clusters()
    fitted = prior_lib.fit(x.reshape(len(x), -1, 1), identity_video, rank=8, components=2)
    order = np.argsort(fitted.means[:, 0])
    np.testing.assert_allclose(np.exp(fitted.log_weights[order]), shares, atol=0.01)
    np.testing.assert_allclose(fitted.means[order, 0], [0.0, 6.0], atol=0.1)
    assert fitted.bases.shape == (2, DIM, 8) and fitted.variances.shape == (2, 8)
    single = prior_lib.fit(x.reshape(len(x), -1, 1), identity_video, rank=8, components=1)
    assert isinstance(single, prior_lib.GaussianPrior)
    with pytest.raises(ValueError, match="prior_components"):
        prior_lib.fit(x[:5].reshape(5, -1, 1), identity_video, rank=8, components=4)


def test_an_outlier_does_not_keep_a_cluster_of_its_own():
    """k-means++ seeds a far outlier as a centre; `clusters` gives it to its nearest cluster and
    splits the largest instead, so every cluster can fit a Gaussian."""
    rng = np.random.default_rng(0)
    coords = np.concatenate([rng.normal(size=(300, 2)), rng.normal(size=(200, 2)) + 8.0,
                             [[1000.0, 1000.0]]])
    _, plain = scipy.cluster.vq.kmeans2(coords, 3, iter=prior_lib.KMEANS_ITERATIONS, minit="++",
                                        rng=0)
    assert np.bincount(plain).min() == 1  # the outlier alone
    labels = prior_lib.clusters(coords, 3)
    assert sorted(np.bincount(labels, minlength=3).tolist()) == [150, 150, 201]
    assert labels[-1] == labels[300]  # with its nearest blob
    assert len(set(labels[:300])) == 2  # the larger blob halved


def velocity_mse(fitted, x, logsnr, seed=0, allowed=None):
    """The mean squared error of a `MixturePrior`'s posterior velocity (of the components
    `allowed`, as mixture_posterior_velocity's) against the velocity target alpha eps - sigma x
    of flat windows x at one log-SNR."""
    a, s = np.sqrt(1 / (1 + np.exp(-logsnr))), np.sqrt(1 / (1 + np.exp(logsnr)))
    eps = np.random.default_rng(seed).standard_normal(x.shape)
    leaves = {k.removeprefix("prior_"): jnp.asarray(v) for k, v in fitted.as_params().items()}
    got = prior_lib.mixture_posterior_velocity(jnp.asarray(a * x + s * eps, jnp.float32),
                                               jnp.full((len(x),), logsnr), **leaves,
                                               allowed=allowed)
    return float(np.mean((np.asarray(got) - (a * eps - s * x)) ** 2))


@pytest.mark.parametrize("per_class", [False, True])
@pytest.mark.parametrize("logsnr", [8.0, 15.0])
def test_groups_of_fewer_windows_than_directions_denoise_windows_they_never_saw(logsnr, per_class):
    """80 windows in two groups of ~56 and ~24 in 36 directions (the residual's 0.01 in each):
    k-means clusters of a mixture, or the classes of a prior per class (each window then denoised
    by its class's Gaussian). A group's sample covariance alone (shrinkage 0) gives the
    directions it lacks variance 0, and the velocity of a window outside the fit alpha / sigma
    (1,800 at log-SNR 15) times its part there; shrunk towards the pooled covariance (the
    default), windows it never saw denoise about as well as the ones it was fitted on."""
    x, _ = two_clusters(600, seed=3)
    labels = (x[:, 0] > 3).astype(int)
    groups = (dict(components=1, labels=labels[:80], num_classes=2) if per_class
              else dict(components=2))
    fits = {shrinkage: prior_lib.fit_mixture(x[:80].reshape(80, -1, 1), identity_video,
                                             rank=DIM, shrinkage=shrinkage, **groups)
            for shrinkage in (prior_lib.SHRINKAGE, 0.0)}

    def mse(fitted, rows):
        allowed = (prior_lib.class_components(jnp.asarray(labels[rows]), 2, 2) if per_class
                   else None)
        return velocity_mse(fitted, x[rows], logsnr, allowed=allowed)

    seen = mse(fits[prior_lib.SHRINKAGE], slice(0, 80))
    unseen = mse(fits[prior_lib.SHRINKAGE], slice(80, None))
    assert seen < 1.0 and unseen < 2 * seen
    if logsnr == 15.0:  # the defect the shrinkage mends
        assert mse(fits[0.0], slice(80, None)) > 5 * unseen


def assert_sample_covariances(fitted, x, labels, basis):
    """Component c of `fitted` has the mean of the windows x (N, D) of labels == c and, inside
    the span of `basis` (D, r), their sample covariance."""
    projector = basis @ basis.T
    for c in range(labels.max() + 1):
        members = x[labels == c]
        np.testing.assert_allclose(fitted.means[c], members.mean(0), atol=0.05)
        want = projector @ np.cov(members, rowvar=False) @ projector
        got = fitted.bases[c] @ np.diag(fitted.variances[c]) @ fitted.bases[c].T
        np.testing.assert_allclose(got, want, atol=2e-3)


def test_mixture_components_are_their_clusters_sample_covariances_without_shrinkage():
    """shrinkage 0: each component's covariance inside the basis of the whole set's Gaussian is
    its cluster's sample covariance; its mean the cluster's mean; off the basis, its windows'
    variance there."""
    x, _ = two_clusters(3000)
    flat = x.reshape(len(x), -1, 1)
    whole = prior_lib.fit_prior(flat, identity_video, rank=8)
    coords, off_basis = prior_lib.basis_coordinates(flat, identity_video, whole)
    labels = (x[:, 0] > 3).astype(int)  # the clusters, means 6 apart
    fitted = prior_lib.within_basis(whole, coords, off_basis, labels, 2, shrinkage=0.0)
    assert_sample_covariances(fitted, x, labels, whole.basis)
    np.testing.assert_allclose(fitted.residuals, 0.01, rtol=0.15)


@pytest.mark.parametrize("logsnr", [-12.0, -3.0, 0.0, 4.0, 14.0])
def test_mixture_posterior_velocity_is_the_exact_one(logsnr):
    """Against the posterior of the full covariances: responsibilities from each component's
    density of z, each component's exact velocity (exact_velocity), weighted."""
    x, _ = two_clusters(600)
    fitted = prior_lib.fit(x.reshape(len(x), -1, 1), identity_video, rank=5, components=2)
    z = np.random.default_rng(7).standard_normal((4, DIM)) * 2 + np.eye(DIM)[0] * 3
    a2, s2 = 1 / (1 + np.exp(-logsnr)), 1 / (1 + np.exp(logsnr))
    logits, velocities = [], []
    for c in range(2):
        u = fitted.bases[c].astype(np.float64)
        cov = (u @ np.diag(fitted.variances[c]) @ u.T
               + fitted.residuals[c] * (np.eye(DIM) - u @ u.T))
        marginal = a2 * cov + s2 * np.eye(DIM)
        y = z - np.sqrt(a2) * fitted.means[c]
        quad = np.einsum("bd,bd->b", y, np.linalg.solve(marginal, y.T).T)
        logits.append(fitted.log_weights[c] - 0.5 * (quad + np.linalg.slogdet(marginal)[1]))
        velocities.append(exact_velocity(z, logsnr, fitted.means[c], cov))
    weights = np.exp(np.array(logits) - np.max(logits, 0))
    want = np.einsum("cb,cbd->bd", weights / weights.sum(0), np.array(velocities))
    leaves = {k.removeprefix("prior_"): jnp.asarray(v) for k, v in fitted.as_params().items()}
    got = prior_lib.mixture_posterior_velocity(jnp.asarray(z, jnp.float32),
                                               jnp.full((4,), logsnr), **leaves)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_model_with_a_mixture_prior_starts_as_its_denoiser():
    x, _ = two_clusters(1000)
    fitted = prior_lib.fit(x.reshape(len(x), -1, 1), identity_video, rank=6, components=2)
    model = create_model({**MODEL, "prior_components": 2}, *SHAPE[:3], prior=fitted)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *SHAPE)), jnp.zeros((1,)))["params"]
    z, logsnr = jnp.asarray(x[:3].reshape(3, *SHAPE)), jnp.array([-4.0, 0.0, 4.0])
    leaves = {k.removeprefix("prior_"): jnp.asarray(v) for k, v in fitted.as_params().items()}
    want = prior_lib.mixture_posterior_velocity(z, logsnr, **leaves)
    np.testing.assert_allclose(model.apply({"params": params}, z, logsnr), want, atol=1e-5)
    blank = create_model({**MODEL, "prior_components": 2}, *SHAPE[:3])  # to restore into
    shapes = jax.eval_shape(blank.init, jax.random.PRNGKey(0), jnp.zeros((1, *SHAPE)),
                            jnp.zeros((1,)))["params"]
    assert {k: shapes[k].shape for k in fitted.as_params()} == {
        k: v.shape for k, v in fitted.as_params().items()}
    with pytest.raises(ValueError, match="prior_components"):
        create_model({**MODEL, "prior_components": 3}, *SHAPE[:3], prior=fitted)


def test_per_class_prior_fits_each_class_and_weighs_by_share():
    """Labels that are the clusters: each class's components fit its windows, weighted by the
    class's share times their weight within it; with one a class and no shrinkage, a class's
    Gaussian has its windows' mean and, inside the basis of all the windows, their sample
    covariance."""
    x, _ = two_clusters(1000)
    labels = (x[:, 0] > 3).astype(int)  # 0: the cluster at 0 (70%), 1: the one at 6
    flat = x.reshape(len(x), -1, 1)
    fitted = prior_lib.fit(flat, identity_video, rank=6, components=2, labels=labels,
                           num_classes=2)
    assert fitted.means.shape == (4, DIM)  # class-major: 2 components of class 0, then class 1
    np.testing.assert_allclose(fitted.means[:2, 0], 0.0, atol=0.5)
    np.testing.assert_allclose(fitted.means[2:, 0], 6.0, atol=0.5)
    shares = np.exp(fitted.log_weights)
    np.testing.assert_allclose([shares[:2].sum(), shares[2:].sum()], [0.7, 0.3], atol=0.01)
    per_class = prior_lib.fit_mixture(flat, identity_video, rank=8, components=1,
                                      shrinkage=0.0, labels=labels, num_classes=2)
    # every class's basis spans the whole set's: class 0's stands for it
    assert_sample_covariances(per_class, x, labels, per_class.bases[0])


def test_per_class_prior_serves_the_label_and_the_mixture_for_no_class():
    """A class's velocity is its own Gaussian's posterior velocity, exactly; the "no class"
    token's is the mixture of the classes' Gaussians weighted by their shares."""
    x, _ = two_clusters(1000)
    labels = (x[:, 0] > 3).astype(int)
    fitted = prior_lib.fit(x.reshape(len(x), -1, 1), identity_video, rank=6, components=1,
                           labels=labels, num_classes=2)
    config = {**MODEL, "prior_per_class": True}
    model = create_model(config, *SHAPE[:3], num_classes=2, prior=fitted)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *SHAPE)), jnp.zeros((1,)),
                        jnp.zeros((1,), jnp.int32))["params"]
    z, logsnr = jnp.asarray(x[:3].reshape(3, *SHAPE)), jnp.array([-4.0, 0.0, 4.0])
    leaves = {k.removeprefix("prior_"): jnp.asarray(v) for k, v in fitted.as_params().items()}
    for c in range(2):  # the network is zero at init: the model is its prior
        own = {k.removeprefix("prior_"): jnp.asarray(v)
               for k, v in fitted.component(c).as_params().items()}
        got = model.apply({"params": params}, z, logsnr, jnp.full((3,), c, jnp.int32))
        np.testing.assert_allclose(got, prior_lib.posterior_velocity(z, logsnr, **own),
                                   atol=1e-5)
    np.testing.assert_allclose(model.apply({"params": params}, z, logsnr),
                               prior_lib.mixture_posterior_velocity(z, logsnr, **leaves),
                               atol=1e-5)
    with pytest.raises(ValueError, match="prior_per_class"):
        create_model({**MODEL, "prior_per_class": True}, *SHAPE[:3], num_classes=3, prior=fitted)


def test_component_count_follows_the_smallest_group():
    """At most one Gaussian per WINDOWS_PER_COMPONENT windows of the smallest group, at least 1."""
    thirty = {**MODEL, "prior_components": 30}
    assert prior_lib.components_for(thirty, [17_397]) == 30
    assert prior_lib.components_for(thirty, [270]) == 270 // prior_lib.WINDOWS_PER_COMPONENT
    assert prior_lib.components_for(thirty, [1500, 900, 60]) == 1
    assert prior_lib.components_for(MODEL, [17_397]) == 1


def test_compiled_transform_pads_and_trims_to_the_eager_result():
    def to_video(x):
        return jnp.cumsum(jnp.asarray(x), axis=1).reshape(len(x), *SHAPE) * 2.0

    run = prior_lib.compiled(to_video)
    x = np.random.default_rng(0).standard_normal((5, DIM, 1)).astype(np.float32)
    for n in (1, 3, 5):  # padded to 1, 4 and 8 rows
        np.testing.assert_allclose(run(x[:n]), to_video(x[:n]), rtol=1e-6)
    assert prior_lib.compiled(run) is run


def test_a_run_with_fewer_components_than_asked_loads_with_the_config_asked(tmp_path):
    """Training lowers model.prior_components to what the data allows (250 windows: 2 of the 5
    asked); the checkpoint records the count, so sampling and the benchmarks, which rebuild the
    network from the config the run was started with, load the network it trained."""
    config = sines.get_config("smoke")
    config.model.prior_components = 5
    config.train.update(batch_size=16, num_steps=2, warmup_steps=1, eval_every=2,
                        checkpoint_every=2)
    dataset = load_dataset("sines", 24)
    dataset = dataclasses.replace(dataset, windows=dataset.windows[:250])
    train.train_and_evaluate(config, tmp_path, dataset=dataset)
    assert saved_model.load_config(tmp_path).model.prior_components == 2
    tm = saved_model.load(config, tmp_path)
    assert tm.config.model.prior_components == 2 and tm.params["prior_rotations"].shape[0] == 2
    assert config.model.prior_components == 5  # the caller's config is left as it was


def test_a_checkpoint_with_a_basis_per_gaussian_is_refused_with_the_version_to_use(tmp_path):
    """Checkpoints of the mixture's first layout (a D x r basis per Gaussian) do not restore into
    the shared basis: one clear error naming the last version that reads them, and the checkpoint
    kept."""
    dim, rank, components = 12, 4, 3
    state = {"params": {"prior_basis": jnp.zeros((components, dim, rank)),
                        "prior_mean": jnp.zeros((components, dim))}}
    with checkpoint.saving(tmp_path / "ckpt", keep=2) as manager:
        checkpoint.save(manager, 5, state, {"step": 5})
    shapes = {"prior_basis": (dim, rank), "prior_mean": (dim,),
              "prior_offsets": (components, rank), "prior_rotations": (components, rank, rank)}
    wanted = {"params": {k: jax.ShapeDtypeStruct(v, jnp.float32) for k, v in shapes.items()}}
    manager = checkpoint.create_manager(tmp_path / "ckpt", keep=2, async_saves=False)
    with pytest.raises(checkpoint.CheckpointMismatch,
                       match=f"a basis per Gaussian.*{checkpoint.LAST_BASIS_PER_GAUSSIAN}"):
        checkpoint.restore_state(manager, 5, wanted)
    assert manager.all_steps() == [5]
