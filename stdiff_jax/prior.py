"""A Gaussian prior under the network: the denoiser that is exact for Gaussian videos.

The network sees normalised videos x (D = T F K 3 numbers each). With v = alpha eps - sigma x and
z = alpha x + sigma eps, a network whose output is zero predicts x0 = alpha z: the posterior mean
of data with mean 0 and covariance I, the usual implicit prior of v-prediction. Real videos are
far from isotropic (on MuJoCo, 64 directions hold 99.98% of the variance), and a small network
trained for minutes learns their covariance only in part, so its samples come out with about half
the variance of the data (docs/ablations.md, "A Gaussian prior under the network").

With `model.prior_rank` = r > 0 the network's output is added to the posterior velocity of a
Gaussian N(m, S) fitted to the training videos, S = U diag(s) U^T + c (I - U U^T) (U: the top r
principal directions, c: the mean variance of the rest). Writing y = z - alpha m,

    E[v | z] = alpha sigma (I - S) (alpha^2 S + sigma^2 I)^-1 y - sigma m,

which is diagonal in U's basis (`posterior_velocity`). The network, zero at initialisation, then
starts as the exact Gaussian denoiser and learns only what is not Gaussian. With m = 0 and S = I
the prior velocity is zero: the plain model. U is found by a randomised SVD streamed over the
windows (Halko, Martinsson and Tropp 2011, Algorithm 4.4), so that D x D is never formed: videos
at L = 256 have ~10^4-10^5 numbers.

With `model.prior_components` = C > 1 the prior is a mixture of C such Gaussians (`MixturePrior`),
one per k-means cluster of the windows' coordinates on the top CLUSTER_DIRECTIONS principal
directions, each fitted to its cluster's windows inside the r directions of the Gaussian of them
all (its covariance shrunk towards the clusters' pooled one, so that a cluster of fewer windows
than directions misses none) and weighted by its share. A Gaussian cannot
hold windows that lie on a curve (a daily season's phase puts the windows of one level on a
ring) or in separate groups (regimes); a mixture can, and its posterior mean is as exact: the
components' posterior velocities weighted by their posterior probabilities given z
(`mixture_posterior_velocity`).

With labels and `model.prior_per_class`, the prior is a mixture of each class's prior (C Gaussians
a class, class-major, weighted by their shares; each class's fitted as the mixture's clusters are,
inside the basis of all the windows and shrunk towards the pooled within-class covariance, so
that a class of fewer windows than directions misses none): the velocity of a window of class y is
that of class y's components alone, and the "no class" token's that of them all
(`class_components`), so the unconditional prior keeps the classes' proportions.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from stdiff_jax.errors import UserError
from stdiff_jax.schedule import alpha_sigma

CLUSTER_DIRECTIONS = 16  # Principal directions whose coordinates the mixture's k-means clusters.
# A mixture keeps at most one Gaussian per this many windows of the smallest group it is fitted to
# (the set, or each class with a prior per class): a guard for small sets and classes, far above
# k-means' need of 2 a cluster (ETTh's 17,397 windows give 580 a component at 30).
WINDOWS_PER_COMPONENT = 100
OVERSAMPLING = 10  # Extra random directions of the randomised SVD (Halko et al. use 5-10).
POWER_ITERATIONS = 2  # Passes that sharpen the spectrum (their q; 1-2 suffice for fast decay).


@dataclasses.dataclass(frozen=True)
class GaussianPrior:
    """N(mean, basis diag(variances) basis^T + residual (I - basis basis^T)) over flat videos.

    mean: (D,); basis: (D, r), orthonormal columns; variances: (r,), descending; residual: the
    variance of every direction outside the basis (0 when r = D).
    """

    mean: np.ndarray
    basis: np.ndarray
    variances: np.ndarray
    residual: float

    def explained(self):
        """The share of the total variance the basis directions hold."""
        rest = self.residual * (self.basis.shape[0] - self.basis.shape[1])
        return float(self.variances.sum() / (self.variances.sum() + rest))

    def as_params(self):
        """The model's parameter leaves of the prior (stdiff.STDiff, `prior_*`)."""
        return {"prior_mean": self.mean, "prior_basis": self.basis,
                "prior_variances": self.variances,
                "prior_residual": np.asarray(self.residual, np.float32)}


@dataclasses.dataclass(frozen=True)
class MixturePrior:
    """sum_c weight_c N(mean_c, S_c) over flat videos, every component inside one basis U:
    mean_c = mean + U offsets_c, S_c = U R_c diag(variances_c) R_c^T U^T + residuals_c (I - U U^T).

    mean: (D,); basis: U (D, r), orthonormal columns (a fit's `GaussianPrior` of all the windows);
    offsets: (C, r); rotations: R_c (C, r, r), orthogonal; variances: (C, r), descending;
    residuals: (C,); log_weights: (C,), the log of each component's share of the windows. The
    components share U, so a velocity reads it three times whatever C
    (`mixture_posterior_velocity`).
    """

    mean: np.ndarray
    basis: np.ndarray
    offsets: np.ndarray
    rotations: np.ndarray
    variances: np.ndarray
    residuals: np.ndarray
    log_weights: np.ndarray

    @property
    def means(self):
        """(C, D): the components' means."""
        return self.mean + self.offsets @ self.basis.T

    @property
    def bases(self):
        """(C, D, r): the components' own bases U R_c (C times U's numbers)."""
        return np.einsum("dr,crs->cds", self.basis, self.rotations)

    def component(self, c):
        """Component c as a `GaussianPrior` (its own basis U R_c)."""
        return GaussianPrior(mean=self.mean + self.basis @ self.offsets[c],
                             basis=self.basis @ self.rotations[c], variances=self.variances[c],
                             residual=float(self.residuals[c]))

    def explained(self):
        """The share of each component's variance its basis holds, averaged with the weights."""
        rest = self.residuals * (self.basis.shape[0] - self.basis.shape[1])
        total = self.variances.sum(1)
        return float(np.exp(self.log_weights) @ (total / (total + rest)))

    def as_params(self):
        """The model's parameter leaves of the prior (stdiff.STDiff, `prior_*`)."""
        return {"prior_mean": self.mean, "prior_basis": self.basis,
                "prior_offsets": self.offsets, "prior_rotations": self.rotations,
                "prior_variances": self.variances, "prior_residual": self.residuals,
                "prior_log_weights": self.log_weights}


def same_on_every_process(prior):
    """Process 0's prior on every process: hosts whose BLAS rounds differently would otherwise
    hold different replicas of one replicated parameter."""
    if jax.process_count() == 1:
        return prior
    fields = [np.asarray(getattr(prior, f.name), np.float32) for f in dataclasses.fields(prior)]
    fields = [np.asarray(x) for x in multihost_utils.broadcast_one_to_all(tuple(fields))]
    if isinstance(prior, GaussianPrior):
        fields[-1] = float(fields[-1])
    return type(prior)(*fields)


def _chunks(windows, to_video, chunk_size):
    for start in range(0, len(windows), chunk_size):
        video = np.asarray(to_video(windows[start:start + chunk_size]), np.float64)
        yield slice(start, start + len(video)), video.reshape(len(video), -1)


def requested_rank(model_config):
    """model.prior_rank (0, no prior, in configs older than it)."""
    return int(model_config.get("prior_rank", 0))


def components_of(model_config):
    """model.prior_components (1, a single Gaussian, in configs older than it)."""
    return int(model_config.get("prior_components", 1))


def components_for(model_config, group_sizes):
    """model.prior_components, at most one per WINDOWS_PER_COMPONENT windows of the smallest of
    `group_sizes` (the window counts the mixture is fitted to: the set's, or each class's), and at
    least 1."""
    return max(1, min(components_of(model_config), int(min(group_sizes)) // WINDOWS_PER_COMPONENT))


def per_class_for(model_config, num_classes):
    """Whether a model with `num_classes` classes (0: unlabelled) fits a prior per class:
    model.prior_per_class (False in configs older than it), with two classes or more (one
    class's prior is the prior)."""
    return bool(model_config.get("prior_per_class", False)) and num_classes > 1


def total_components(model_config, num_classes):
    """The Gaussians of the prior of a model with `num_classes` classes (0: unlabelled):
    model.prior_components, a class with a prior per class (`per_class_for`)."""
    per_class = per_class_for(model_config, num_classes)
    return components_of(model_config) * (num_classes if per_class else 1)


def windows_asked(model_config, num_windows):
    """The windows model.prior_windows lets the prior be fitted on (0, all of them, in configs
    older than it), at most num_windows."""
    return min(int(model_config.get("prior_windows", 0)) or num_windows, num_windows)


def rank_for(model_config, series_shape):
    """The directions a prior keeps for series (L, K): model.prior_rank, at most L K, since a video
    is a linear map of its series (EMA trend, frame sampling, interpolation, STFT) and so its
    covariance has rank L K at most; the other directions of the D > L K video numbers hold no
    variance."""
    length, k = series_shape
    return min(requested_rank(model_config), length * k)


def is_prior_leaf(path):
    """Whether a parameter tree path (`jax.tree_util` keys) is one of the prior's leaves."""
    return path[-1].key.startswith("prior_")


def evenly_spaced(windows, count):
    """`count` of `windows`, evenly spaced from the first to the last (all when count >= N):
    the subset a budget fits the prior on (budget.prior_windows_within)."""
    if count >= len(windows):
        return windows
    return windows[np.linspace(0, len(windows) - 1, count).round().astype(int)]


CHUNK_NUMBERS = 2 ** 24  # Video numbers per chunk of the fit: 128 MiB of float64.


def fit_prior(windows, to_video, rank, seed=0):
    """The `GaussianPrior` of the videos of `windows` (N, L, K), with the top `rank` directions.

    to_video: (B, L, K) -> normalised videos (B, T, F, K, 3), the transform the network sees.
    Passes over the data, in chunks of CHUNK_NUMBERS: one for the mean and total variance, then
    2 + 2 POWER_ITERATIONS.
    """
    windows = np.asarray(windows, np.float32)
    n = len(windows)
    if n < 2:
        raise UserError(f"A Gaussian prior needs at least 2 training windows, got {n}; set "
                        "model.prior_rank=0.")
    chunk_size = max(1, CHUNK_NUMBERS // np.asarray(to_video(windows[:1])).size)
    total, sq = 0.0, 0.0
    for _, x in _chunks(windows, to_video, chunk_size):
        total, sq = total + x.sum(0), sq + (x ** 2).sum(0)
    mean = total / n
    dim = mean.shape[0]
    total_variance = float(np.sum(np.maximum(sq - n * mean ** 2, 0.0)) / (n - 1))
    width = min(rank + OVERSAMPLING, dim, n)

    def times(matrix):  # (X - mean) @ matrix, (N, width)
        out = np.empty((n, matrix.shape[1]))
        for rows, x in _chunks(windows, to_video, chunk_size):
            out[rows] = (x - mean) @ matrix
        return out

    def transposed_times(q):  # (X - mean)^T @ q, (D, width)
        out = np.zeros((dim, q.shape[1]))
        for rows, x in _chunks(windows, to_video, chunk_size):
            out += (x - mean).T @ q[rows]
        return out

    omega = np.random.default_rng(seed).standard_normal((dim, width))
    q = np.linalg.qr(times(omega))[0]
    for _ in range(POWER_ITERATIONS):
        q = np.linalg.qr(times(np.linalg.qr(transposed_times(q))[0]))[0]
    _, singular, vt = np.linalg.svd(transposed_times(q).T, full_matrices=False)  # of Q^T (X - m)
    r = min(rank, len(singular))
    variances = singular[:r] ** 2 / (n - 1)
    residual = max(total_variance - variances.sum(), 0.0) / (dim - r) if dim > r else 0.0
    basis = np.zeros((dim, rank))  # a rank above min(D, N) gets zero columns of zero variance
    basis[:, :r] = vt[:r].T
    variances = np.concatenate([variances, np.zeros(rank - r)])
    return GaussianPrior(mean=mean.astype(np.float32), basis=basis.astype(np.float32),
                         variances=variances.astype(np.float32), residual=float(residual))


KMEANS_ITERATIONS = 30
# Windows a cluster of the mixture must hold to fit a Gaussian. k-means++ seeds outliers as
# centres of their own (at C = 30, suite_heavy_tails' and stocks' smallest clusters hold 1-2
# windows; the other suite sets' and ETTh's 55 or more): such a cluster gives its windows to their
# nearest other cluster and takes half of the largest instead (`clusters`).
MIN_CLUSTER = 20
# A mixture's Gaussian is its cluster's sample covariance shrunk towards the clusters' pooled one
# by this many pseudo-windows a direction (`within_basis`).
SHRINKAGE = 0.1


def compiled(to_video):
    """`to_video` compiled once for batches padded to a power of two: a mixture's fits (one a
    cluster or class, each of another size, each passing over its windows 3 + 2
    POWER_ITERATIONS times) would otherwise run it op by op, ~0.4 CPU s a call at K = 5. A
    function this returned comes back as it is."""
    if getattr(to_video, "is_compiled", False):
        return to_video
    jitted = jax.jit(to_video)

    def run(series):
        n = len(series)
        padding = np.zeros(((1 << (n - 1).bit_length()) - n, *series.shape[1:]), series.dtype)
        return np.asarray(jitted(np.concatenate([series, padding])))[:n]

    run.is_compiled = True
    return run


def fit_mixture(windows, to_video, rank, components, seed=0, shrinkage=SHRINKAGE, labels=None,
                num_classes=1):
    """The `MixturePrior` of the videos of `windows` (N, L, K): the Gaussian prior of them all
    (`fit_prior`, `rank` directions), k-means (k-means++ starts, seeded) on the windows'
    coordinates on its top CLUSTER_DIRECTIONS directions, then a Gaussian per cluster inside the
    prior's basis (`within_basis`, `shrinkage` as there), weighted by its share of the windows.
    With labels (N,) in [0, num_classes) (a prior per class), `components` clusters of each
    class's windows, class-major: the classes' Gaussians shrink towards their pooled
    within-class covariance, the class-conditional Gaussians regularised discriminant analysis
    was made for. to_video: as `fit_prior`'s, traceable by jax (it is compiled)."""
    windows = np.asarray(windows, np.float32)
    to_video = compiled(to_video)
    whole = fit_prior(windows, to_video, rank, seed)
    coords, off_basis = basis_coordinates(windows, to_video, whole)
    labels = np.zeros(len(windows), int) if labels is None else np.asarray(labels)
    groups = labels * components
    if components > 1:
        for c in range(num_classes):
            members = labels == c
            groups[members] += clusters(coords[members, :CLUSTER_DIRECTIONS], components, seed)
    return within_basis(whole, coords, off_basis, groups, num_classes * components, shrinkage)


def basis_coordinates(windows, to_video, prior):
    """(N, r) coordinates of the videos of `windows` on `prior`'s basis, centred at its mean, and
    (N,) the squared norm of each centred video off the basis."""
    chunk_size = max(1, CHUNK_NUMBERS // prior.mean.size)
    coords, off_basis = np.empty((len(windows), prior.basis.shape[1])), np.empty(len(windows))
    for rows, x in _chunks(windows, to_video, chunk_size):
        centred = x - prior.mean
        coords[rows] = centred @ prior.basis
        off_basis[rows] = (centred ** 2).sum(1) - (coords[rows] ** 2).sum(1)
    return coords, np.maximum(off_basis, 0.0)


def within_basis(whole, coords, off_basis, labels, components, shrinkage=SHRINKAGE):
    """The `MixturePrior` of clusters `labels` (N,) in [0, components) of windows with
    `coords` and `off_basis` (`basis_coordinates` on the Gaussian `whole` of them all).

    Component c: the mean of its windows' coordinates; inside whole's basis U, the covariance
    S_c = (scatter_c + k W) / (n_c - 1 + k), W the clusters' pooled within-cluster covariance and
    k = shrinkage x rank pseudo-windows (regularised discriminant analysis, Friedman 1989), with
    rotation V_c and variances from S_c = V_c diag(s_c) V_c^T; off the basis, the variance of its
    windows there (`residual`). A cluster of fewer windows than directions (a subsample or a small
    set) thus keeps every direction the data vary in, where its sample covariance alone would give
    the directions it lacks variance 0: a window outside the fit would then get a posterior
    velocity up to alpha / sigma times its part there (docs/ablations.md, "A mixture's Gaussians
    inside the whole set's basis, shrunk").
    """
    dim, rank = whole.basis.shape
    members = [labels == c for c in range(components)]
    means = [coords[m].mean(0) for m in members]
    scatters = [(coords[m] - mean).T @ (coords[m] - mean) for m, mean in zip(members, means)]
    pooled = sum(scatters) / max(len(labels) - components, 1)
    k = shrinkage * rank
    rotations, variances, residuals = [], [], []
    for c, m in enumerate(members):
        values, rotation = np.linalg.eigh((scatters[c] + k * pooled) / (m.sum() - 1 + k))
        order = np.argsort(values)[::-1]
        rotations.append(rotation[:, order])
        variances.append(np.maximum(values[order], 0.0))
        residuals.append(off_basis[m].mean() / (dim - rank) if dim > rank else 0.0)
    f32 = functools.partial(np.asarray, dtype=np.float32)
    return MixturePrior(mean=f32(whole.mean), basis=f32(whole.basis), offsets=f32(means),
                        rotations=f32(rotations), variances=f32(variances),
                        residuals=f32(residuals),
                        log_weights=f32(np.log([m.mean() for m in members])))


def as_mixture(prior):
    """A `GaussianPrior` as a `MixturePrior` of one component; a `MixturePrior` as it is."""
    if isinstance(prior, MixturePrior):
        return prior
    rank = prior.basis.shape[1]
    return MixturePrior(mean=prior.mean, basis=prior.basis,
                        offsets=np.zeros((1, rank), np.float32),
                        rotations=np.eye(rank, dtype=np.float32)[None],
                        variances=prior.variances[None],
                        residuals=np.array([prior.residual], np.float32),
                        log_weights=np.zeros(1, np.float32))


def clusters(coords, components, seed=0):
    """(N,) cluster of each row of coords (N, d) in [0, components): k-means (k-means++ starts,
    seeded); then, while a cluster holds fewer than MIN_CLUSTER rows, its rows go to their
    nearest other centre and it takes the half of the largest cluster above the median of that
    cluster's first principal coordinate."""
    if len(coords) < components * MIN_CLUSTER:
        raise UserError(f"model.prior_components={components} needs {MIN_CLUSTER} training "
                        f"windows a component, the prior is fitted on {len(coords)}: set fewer "
                        f"components.")
    import scipy.cluster.vq  # Imported here: half a second of every start; only mixtures use it.

    centres, labels = scipy.cluster.vq.kmeans2(coords, components, iter=KMEANS_ITERATIONS,
                                               minit="++", missing="raise", rng=seed)
    for _ in range(2 * components):  # a pass fills one cluster below MIN_CLUSTER
        small = np.flatnonzero(np.bincount(labels, minlength=components) < MIN_CLUSTER)
        if not len(small):
            return labels
        c, others = small[0], np.delete(np.arange(components), small[0])
        members = np.flatnonzero(labels == c)
        distances = ((coords[members, None] - centres[None, others]) ** 2).sum(-1)
        labels[members] = others[np.argmin(distances, axis=1)]
        big = np.argmax(np.bincount(labels, minlength=components))
        largest = np.flatnonzero(labels == big)
        centred = coords[largest] - coords[largest].mean(axis=0)
        along = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
        labels[largest[along > np.median(along)]] = c
        for k in (c, big):
            centres[k] = coords[labels == k].mean(axis=0)
    raise UserError(f"model.prior_components={components} left clusters of fewer than "
                    f"{MIN_CLUSTER} of the {len(coords)} windows the prior is fitted on: set "
                    f"fewer components.")


def fit(windows, to_video, rank, components, seed=0, labels=None, num_classes=0):
    """The prior a model of `components` (model.prior_components) fits: a `GaussianPrior` for
    1, a `MixturePrior` above; with labels (N,) in [0, num_classes) (model.prior_per_class), a
    `MixturePrior` of `components` Gaussians a class, class-major, weighted by their shares of the
    windows (with two classes or more: one class's prior is the prior; `fit_mixture`)."""
    if labels is not None and num_classes > 1:
        return fit_mixture(windows, to_video, rank, components, seed, labels=labels,
                           num_classes=num_classes)
    if components == 1:  # compiled: op by op, sines' smoke fit took 10 CPU s, not 1.3, to the bit
        return fit_prior(windows, compiled(to_video), rank, seed)
    return fit_mixture(windows, to_video, rank, components, seed)


def class_components(labels, num_classes, total):
    """(B, total) whether each of a per-class prior's `total` components (class-major, the same
    count a class) serves each label (B,) in [0, num_classes]: its class's, or all of them for
    the "no class" token num_classes."""
    component_class = jnp.arange(total) // (total // num_classes)
    labels = labels[:, None]
    return (component_class == labels) | (labels == num_classes)


def posterior_velocity(z, logsnr, mean, basis, variances, residual):
    """E[v | z] under the prior for noisy videos z (B, ...) at log-SNRs (B,) -> like z.

    Directions of the basis get gain(s_i), the rest gain(residual), with
    gain(s) = alpha sigma (1 - s) / (alpha^2 s + sigma^2): finite for every s >= 0, since
    sigma^2 > 0 at every log-SNR the schedule reaches.
    """
    alpha, sigma = (scale[:, None] for scale in alpha_sigma(logsnr))  # (B, 1)
    alpha2, sigma2 = alpha ** 2, sigma ** 2

    def gain(s):
        return alpha * sigma * (1.0 - s) / (alpha2 * s + sigma2)

    # Full float32 products on every backend (TPUs multiply float32 in bfloat16 passes and GPUs in
    # TF32 by default): at high log-SNR gain(residual) ~ alpha / sigma (1,800 at +15) multiplies
    # the rounding of y - basis basis^T y, the noise outside the data's span.
    matmul = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
    y = z.reshape(z.shape[0], -1) - alpha * mean  # (B, D)
    coords = matmul(y, basis)  # (B, r)
    v = matmul(coords * (gain(variances) - gain(residual)), basis.T) + gain(residual) * y
    return (v - sigma * mean).reshape(z.shape)


def mixture_posterior_velocity(z, logsnr, mean, basis, offsets, rotations, variances, residual,
                               log_weights, allowed=None):
    """E[v | z] under a `MixturePrior` (its leaves; those with a component axis C lead with it):
    each component's posterior velocity (`posterior_velocity`'s) weighted by its posterior
    probability given z, softmax over c of log_weight_c + log N(z; alpha mean_c,
    alpha^2 S_c + sigma^2 I). allowed: (B, C) bool, the components each sample's mixture keeps
    (`class_components`); None: all.

    The components share the basis U: with y = z - alpha mean and a = U^T y, component c's
    coordinates are (a - alpha offsets_c) R_c and its part of y off its basis is y - U a, the same
    for all; the weighted sum of their velocities is U (sum_c w_c (R_c g_c - sigma offsets_c)) +
    (sum_c w_c gain_c) (y - U a) - sigma mean. So U (D x r) is read three times a step whatever
    C, and each component adds r x r products, not D x r ones."""
    alpha, sigma = (scale[:, None] for scale in alpha_sigma(logsnr))  # (B, 1)
    alpha2, sigma2 = alpha ** 2, sigma ** 2
    matmul = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
    einsum = functools.partial(jnp.einsum, precision=jax.lax.Precision.HIGHEST)
    dim, rank = basis.shape
    y = z.reshape(z.shape[0], -1) - alpha * mean  # (B, D)
    shared = matmul(y, basis)  # (B, r)
    outside = y - matmul(shared, basis.T)  # (B, D): y off the basis, without cancellation
    centred = shared[:, None] - alpha[:, :, None] * offsets  # (B, C, r)
    coords = einsum("bcr,crs->bcs", centred, rotations)  # on each component's directions
    var_in = alpha2[:, :, None] * variances + sigma2[:, :, None]  # (B, C, r): of z's coordinates
    var_out = alpha2 * residual + sigma2  # (B, C)
    quad = jnp.sum(coords ** 2 / var_in, -1) + jnp.sum(outside ** 2, -1, keepdims=True) / var_out
    logdet = jnp.sum(jnp.log(var_in), -1) + (dim - rank) * jnp.log(var_out)
    logits = log_weights - 0.5 * (quad + logdet)  # (B, C)
    if allowed is not None:
        logits = jnp.where(allowed, logits, -jnp.inf)
    weights = jax.nn.softmax(logits, axis=-1)

    # gain(s) of posterior_velocity, with alpha^2 s + sigma^2 = var: inside and off the basis
    gain_in = alpha[:, :, None] * sigma[:, :, None] * (1.0 - variances) / var_in  # (B, C, r)
    gain_out = alpha * sigma * (1.0 - residual) / var_out  # (B, C)
    # Rotated back one component at a time, then summed: contracting c and s at once would
    # transpose every rotation (C r^2 numbers) into a temporary each step.
    rotated_back = einsum("bcs,crs->bcr", weights[..., None] * coords * gain_in, rotations)
    inside = rotated_back.sum(1) - sigma * matmul(weights, offsets)  # (B, r)
    v = (matmul(inside, basis.T) + jnp.sum(weights * gain_out, -1, keepdims=True) * outside
         - sigma * mean)
    return v.reshape(z.shape)
