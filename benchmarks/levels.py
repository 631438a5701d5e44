"""Where the modes of the window level merge: real against generated, the samplers, the denoiser.

    python benchmarks/levels.py --workdir=W                      # samples_unit.npy of W vs real
    python benchmarks/levels.py --workdir=W --samplers           # + fresh samples per sampler
    python benchmarks/levels.py --workdir=W --denoiser           # + the denoiser at fixed log-SNRs
    python benchmarks/levels.py --workdir=W --trajectories       # + when a sample's level decides

The level of a window is each channel's mean over the window ([0, 1] units), and, over channels,
its projection on the first principal axis of the real windows' levels (the axis along which
suite_regimes' regimes move every channel; 98% of the variance there). Its bimodality is a
two-component Gaussian mixture: the weights and means of the components, Ashman's D
(sqrt(2) |mu1 - mu0| / sqrt(s0^2 + s1^2); above 2 the modes are separate), the mass on each side
of the real density's valley, and the density at that valley over the lower peak's
(1: no valley); then the shares of windows near each real mode and between them, and the share
whose channels sit on different sides of their own valleys (channels split: a regime shared by
the channels, as in suite_regimes, leaves only windows that switch inside at it).

--denoiser noises real windows of each mode at fixed log-SNRs and compares the level of the
network's clean prediction with that of the exact posterior mean of the training windows (the
ideal denoiser of the empirical distribution, E[x0 | z] = sum_i w_i x_i with w_i proportional to
N(z; alpha x_i, sigma^2 I)): a network that shrinks the level to the middle where the ideal one
has decided is where the modes merge. --trajectories follows DDIM (eta 0, the probability-flow
ODE) with the network and with the ideal denoiser, and prints per log-SNR the bimodality of the
clean prediction's level and the share of samples whose side of the valley is still to change.
"""

import copy
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from absl import app, flags, logging
from sklearn.mixture import GaussianMixture

from stdiff_jax import checkpoint, diffusion, generate, modes, sampling, saved_model
from stdiff_jax import mesh as mesh_lib
from stdiff_jax.data import dataset_of
from stdiff_jax.schedule import Schedule, alpha_sigma

flags.DEFINE_string("workdir", None, "A trained workdir.")
flags.DEFINE_bool("samplers", False, "Generate with each of SAMPLERS and measure each.")
flags.DEFINE_bool("denoiser", False, "Probe the denoiser at DENOISER_LOGSNRS.")
flags.DEFINE_bool("trajectories", False, "Follow DDIM trajectories of network and ideal denoiser.")
flags.DEFINE_integer("num_samples", 1000, "Series per sampler setting and per trajectory run.")
flags.DEFINE_integer("per_mode", 200, "Real windows per mode in the denoiser probe.")
flags.DEFINE_integer("seed", 0, "Seed of the samples, noise and subsets.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS

# (label, sample-config overrides); the first is the library's default.
SAMPLERS = (
    ("dpmpp_2m 20 (default)", {}),
    ("dpmpp_2m 50", dict(num_steps=50)),
    ("dpmpp_2m 20, clip_x0 off", dict(clip_x0=0.0)),
    ("dpmpp_2m 20, raw params", dict(use_ema=False)),
    ("ddim 200", dict(method="ddim", num_steps=200)),
    ("ancestral 100", dict(method="ancestral", num_steps=100)),
)
DENOISER_LOGSNRS = (-10.0, -8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0)
TRAJECTORY_STEPS = 50
IDEAL_CHUNK = 256  # queries per block of the ideal denoiser


# ------------------------------------------------------------------------------------------------
# Levels and their bimodality.
# ------------------------------------------------------------------------------------------------
def level_axis(real_levels):
    """(centre (K,), unit axis (K,)): the first principal axis of the real levels (N, K), signed so
    that the smaller mode lies on the positive side."""
    centre = real_levels.mean(0)
    axis = np.linalg.svd(real_levels - centre, full_matrices=False)[2][0]
    projected = (real_levels - centre) @ axis
    return centre, axis if np.mean(projected > 0) < 0.5 else -axis


def mixture(values, seed=0):
    """A two-component GaussianMixture of (N,) values, its components sorted by mean."""
    gm = GaussianMixture(2, random_state=seed, n_init=3).fit(values[:, None])
    order = np.argsort(gm.means_[:, 0])
    return gm.weights_[order], gm.means_[order, 0], np.sqrt(gm.covariances_[order, 0, 0])


def valley(values):
    """The real density's minimum between its two mixture means: the mode threshold."""
    _, means, _ = mixture(values)
    grid = np.linspace(means[0], means[1], 201)
    return grid[np.argmin(scipy.stats.gaussian_kde(values)(grid))]


def bimodality(values, threshold):
    """Bimodality figures of (N,) levels given the real valley `threshold`."""
    weights, means, stds = mixture(values)
    kde = scipy.stats.gaussian_kde(values)
    below, above = values[values < threshold], values[values >= threshold]
    peaks = [kde(side).max() if len(side) else 0.0 for side in (below, above)]
    return {"w1": weights[1], "mu0": means[0], "mu1": means[1],
            "ashman_d": np.sqrt(2) * abs(means[1] - means[0]) / np.sqrt(np.sum(stds ** 2)),
            "upper_mass": np.mean(values >= threshold),
            "valley_ratio": kde(threshold)[0] / max(min(peaks), 1e-12)}


def bimodality_cells(values, threshold):
    b = bimodality(values, threshold)
    return [f"{b['upper_mass']:.3f}", f"{b['w1']:.3f}", f"{b['mu0']:+.3f} / {b['mu1']:+.3f}",
            f"{b['ashman_d']:.2f}", f"{b['valley_ratio']:.2f}"]


def markdown(header, rows):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                     + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


BIMODALITY = ["mass above valley", "mixture w1", "mixture means", "Ashman's D",
              "valley / lower peak"]


class Levels:
    """The real windows' level axis and valleys, and the levels of any [0, 1] windows."""

    def __init__(self, real_unit):
        real_means = real_unit.mean(1)  # (N, K)
        self.centre, self.axis = level_axis(real_means)
        self.real = self(real_unit)
        self.threshold = valley(self.real)
        self.modes = mixture(self.real)[1]  # (2,) the real mixture's means
        self.channel_thresholds = np.array([valley(real_means[:, k])
                                            for k in range(real_means.shape[1])])

    def __call__(self, unit):
        """(N, L, K) windows in [0, 1] -> (N,) levels along the axis."""
        return (np.asarray(unit).mean(1) - self.centre) @ self.axis

    def mode_shares(self, unit):
        """The shares of windows whose level lies within a quarter of the real modes' distance of
        mode 0, of mode 1, and between those two bands (a regime switch inside the window, or a
        blend of the regimes)."""
        level, band = self(unit), (self.modes[1] - self.modes[0]) / 4
        return (np.mean(np.abs(level - self.modes[0]) < band),
                np.mean(np.abs(level - self.modes[1]) < band),
                np.mean((level >= self.modes[0] + band) & (level <= self.modes[1] - band)))

    def split_share(self, unit):
        """The share of windows whose channels sit on different sides of their valleys (sides
        signed by the level axis, so a shared regime puts every channel on one side)."""
        sides = (np.asarray(unit).mean(1) >= self.channel_thresholds) == (self.axis > 0)  # (N, K)
        return np.mean(sides.any(1) & ~sides.all(1))

    def table(self, named_windows, names):
        """Markdown: the level's bimodality with the share of split windows, then each channel's
        mass above its valley, Ashman's D and valley ratio, for each (label, windows)."""
        level_rows = [[label, *bimodality_cells(self(w), self.threshold),
                       " / ".join(f"{share:.3f}" for share in self.mode_shares(w)),
                       f"{self.split_share(w):.3f}"] for label, w in named_windows]
        channel_rows = []
        for label, w in named_windows:
            means = np.asarray(w).mean(1)  # (N, K)
            cells = [bimodality_cells(means[:, k], t)
                     for k, t in enumerate(self.channel_thresholds)]
            channel_rows.append([label] + [f"{c[0]} / {c[3]} / {c[4]}" for c in cells])
        return "\n".join([
            "Level along the real windows' first principal axis:",
            markdown(["windows", *BIMODALITY, "near mode 0 / mode 1 / between",
                      "channels split"], level_rows), "",
            "Each channel's window mean (mass above valley / Ashman's D / valley ratio):",
            markdown(["windows", *names], channel_rows)])


# ------------------------------------------------------------------------------------------------
# Samples from the trained model under other sampler settings.
# ------------------------------------------------------------------------------------------------
def sample_with(config, workdir, overrides, num_samples, seed):
    """(num_samples, L, K) windows in [0, 1] (clipped, as scored) from the workdir's model with
    config.sample updated by `overrides`."""
    config = copy.deepcopy(config)
    with config.unlocked():
        config.sample.update(overrides)
    mesh = mesh_lib.make_mesh()
    tm = saved_model.load(config, workdir, mesh)
    chunk = min(num_samples, 500)
    sampler = generate.compile_sampler(config, mesh, tm.model, tm.host, chunk)
    series = generate.generate_series(sampler, tm.params, num_samples, chunk,
                                      jax.random.PRNGKey(seed), progress=None)
    return np.clip((series + 1) / 2, 0, 1)


# ------------------------------------------------------------------------------------------------
# The denoiser against the ideal one.
# ------------------------------------------------------------------------------------------------
def ideal_x0(z, logsnr, train_videos):
    """E[x0 | z] over the training videos (N, ...) for queries z (B, ...) at a scalar log-SNR."""
    alpha, sigma = (float(a) for a in alpha_sigma(logsnr))
    flat = train_videos.reshape(len(train_videos), -1).astype(np.float64)  # (N, D)
    sq = np.sum(flat ** 2, 1)  # (N,)
    out = []
    for start in range(0, len(z), IDEAL_CHUNK):
        q = z[start:start + IDEAL_CHUNK].reshape(-1, flat.shape[1]).astype(np.float64)  # (b, D)
        logits = (alpha * q @ flat.T - 0.5 * alpha ** 2 * sq) / sigma ** 2  # (b, N)
        w = np.exp(logits - logits.max(1, keepdims=True))
        out.append((w / w.sum(1, keepdims=True)) @ flat)
    return np.concatenate(out).reshape(z.shape).astype(np.float32)


class Probe:
    """The trained model's videos, its clean predictions and their levels."""

    def __init__(self, config, workdir, use_ema=True):
        config = copy.deepcopy(config)
        with config.unlocked():
            config.sample.use_ema = use_ema
        self.tm = saved_model.load(config, workdir, mesh_lib.make_mesh())
        self.to_video = jax.jit(self.tm.to_video)
        self.decode = jax.jit(self.tm.decode)
        apply_fn = self.tm.apply_fn
        self.x0 = jax.jit(lambda z, logsnr: diffusion.predictions(
            z, apply_fn(self.tm.params, z, logsnr), logsnr).x0)

    def videos(self, unit):
        return np.asarray(self.to_video(2 * np.asarray(unit, np.float32) - 1))

    def network_x0(self, z, logsnr):
        return np.asarray(self.x0(z, jnp.full((len(z),), logsnr, jnp.float32)))

    def unit(self, videos):
        return (np.asarray(self.decode(videos)) + 1) / 2


def denoiser_table(probe, levels, real_unit, train_videos, rng):
    """Markdown: per log-SNR and true mode, the level of the network's and of the ideal clean
    prediction (mean +- std), the share on the true mode's side of the valley, the RMS difference
    of the two levels and the share of predictions whose channels are split between regimes.
    Below about log-SNR -2 the ideal denoiser is the true posterior mean; above it, it recalls
    the nearest training window, whose level is decided by then."""
    means, band = levels.modes, (levels.modes[1] - levels.modes[0]) / 4
    picks = [rng.choice(np.flatnonzero(np.abs(levels.real - centre) < band), FLAGS.per_mode,
                        replace=False) for centre in means]  # windows near each mode's centre
    rows = []
    for logsnr in DENOISER_LOGSNRS:
        alpha, sigma = (float(a) for a in alpha_sigma(logsnr))
        for mode, idx in enumerate(picks):
            x0 = probe.videos(real_unit[idx])
            z = alpha * x0 + sigma * rng.standard_normal(x0.shape).astype(np.float32)
            net_unit = probe.unit(probe.network_x0(z, logsnr))
            ideal_unit = probe.unit(ideal_x0(z, logsnr, train_videos))
            net, ideal = levels(net_unit), levels(ideal_unit)
            side = (lambda v: np.mean((v >= levels.threshold) == bool(mode)))
            rows.append([f"{logsnr:+.0f}", mode, f"{net.mean():+.3f} +- {net.std():.3f}",
                         f"{ideal.mean():+.3f} +- {ideal.std():.3f}",
                         f"{side(net):.2f} / {side(ideal):.2f}",
                         f"{np.sqrt(np.mean((net - ideal) ** 2)):.3f}",
                         f"{levels.split_share(net_unit):.3f} / "
                         f"{levels.split_share(ideal_unit):.3f}"])
    header = ["log-SNR", "true mode", "network level", "ideal level", "on side: network / ideal",
              "RMS network - ideal", "channels split: network / ideal"]
    return "\n".join([f"Modes of the real level: {means[0]:+.3f} (0) and {means[1]:+.3f} (1), "
                      f"valley {levels.threshold:+.3f}.", "", markdown(header, rows)])


# ------------------------------------------------------------------------------------------------
# Trajectories of the probability-flow ODE.
# ------------------------------------------------------------------------------------------------
def ddim_step(z, x0, logsnr_s, logsnr_t):
    """One deterministic DDIM step from z at logsnr_s to logsnr_t given the clean prediction x0."""
    alpha_s, sigma_s = (float(a) for a in alpha_sigma(logsnr_s))
    alpha_t, sigma_t = (float(a) for a in alpha_sigma(logsnr_t))
    return alpha_t * x0 + sigma_t * (z - alpha_s * x0) / sigma_s


def trajectory(x0_fn, z, logsnrs, unit_fn, levels):
    """DDIM (eta 0) from z along logsnrs with clean predictions x0_fn(z, logsnr); -> (levels of
    the clean prediction at every grid point but the last (S, B), the samples in [0, 1])."""
    history = []
    for s, t in zip(logsnrs[:-1], logsnrs[1:]):
        x0 = x0_fn(z, float(s))
        history.append(levels(unit_fn(x0)))
        z = ddim_step(z, x0, s, t)
    return np.stack(history), unit_fn(z)


def trajectory_table(label, history, final_unit, logsnrs, levels):
    """Markdown: per grid point, the clean prediction's level bimodality and the share of samples
    whose side of the valley will still change."""
    threshold, final = levels.threshold, levels(np.clip(final_unit, 0, 1))
    side_final = final >= threshold
    final_cells = " / ".join(bimodality_cells(final, threshold))
    lines = [f"{label}: DDIM {len(logsnrs) - 1} steps; the final samples' level ("
             f"{' / '.join(BIMODALITY)}): {final_cells}; channels split "
             f"{levels.split_share(np.clip(final_unit, 0, 1)):.3f}", "",
             "| log-SNR | mean level | std | mass above valley | Ashman's D | still to change |",
             "| --- | --- | --- | --- | --- | --- |"]
    for i, values in enumerate(history):
        if i % 3 and i != len(history) - 1:
            continue
        b = bimodality(values, threshold)
        lines.append(f"| {logsnrs[i]:+.1f} | {values.mean():+.3f} | {values.std():.3f} | "
                     f"{b['upper_mass']:.3f} | {b['ashman_d']:.2f} | "
                     f"{np.mean((values >= threshold) != side_final):.3f} |")
    return "\n".join(lines)


def trajectories_report(probe, levels, train_videos, rng):
    logsnrs = np.asarray(sampling.logsnr_grid(Schedule.from_config(probe.tm.config.diffusion),
                                              TRAJECTORY_STEPS, probe.tm.config.sample.grid))
    z = rng.standard_normal((FLAGS.num_samples, *probe.tm.video_shape)).astype(np.float32)
    tables = []
    for label, x0_fn in (("network", probe.network_x0),
                         ("ideal", functools.partial(ideal_x0, train_videos=train_videos))):
        history, final = trajectory(x0_fn, z, logsnrs, probe.unit, levels)
        tables.append(trajectory_table(label, history, final, logsnrs, levels))
    return "\n\n".join(tables)


# ------------------------------------------------------------------------------------------------
def main(argv):
    del argv
    logging.get_absl_handler().addFilter(checkpoint.QuietOrbax())
    workdir = pathlib.Path(FLAGS.workdir)
    config = saved_model.load_config(workdir)
    dataset = dataset_of(config.data)
    real = dataset.unit_windows
    levels = Levels(real)
    named = [("real", real)]
    if (workdir / modes.SAMPLES_UNIT).exists():
        named.append(("samples_unit.npy", np.clip(np.load(workdir / modes.SAMPLES_UNIT), 0, 1)))
    rng = np.random.default_rng(FLAGS.seed)
    if FLAGS.samplers:  # KDE valleys are shallower in fewer windows: real ones as many, beside
        named.append((f"real, {FLAGS.num_samples} drawn",
                      real[rng.choice(len(real), FLAGS.num_samples, replace=False)]))
        for label, overrides in SAMPLERS:
            named.append((label, sample_with(config, workdir, overrides, FLAGS.num_samples,
                                             FLAGS.seed)))
    print(levels.table(named, dataset.column_names), flush=True)
    if FLAGS.denoiser or FLAGS.trajectories:
        probe = Probe(config, workdir)
        train_videos = probe.videos(real)
        if FLAGS.denoiser:
            print("\n" + denoiser_table(probe, levels, real, train_videos, rng), flush=True)
        if FLAGS.trajectories:
            print("\n" + trajectories_report(probe, levels, train_videos, rng), flush=True)


if __name__ == "__main__":
    app.run(main)
