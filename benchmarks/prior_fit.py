"""How well a prior alone denoises windows it was not fitted on, and what its own samples look
like: the model at initialisation (`prior.py`: the network's output is zero), prior by prior.

    python benchmarks/prior_fit.py --config=configs/fmri_standin.py:cpu
    python benchmarks/prior_fit.py --config=configs/etth.py:cpu --shrinkage=0.1,1,4
    python benchmarks/prior_fit.py --config=configs/fmri_standin.py:cpu --shrinkage=1 \
        --components=30,96 --ranks=1024,256 --samples=4000 --scores=context_fid,discriminative
    python benchmarks/prior_fit.py --config=configs/fmri_standin.py:cpu --shrinkage=0.1 \
        --components=96 --blocks=256 --samples=4000 --scores=context_fid,discriminative

Prepares the data as a training of the config would (the budget's steps, its component count
and the windows its prior is fitted on, the validation split, the normaliser), then, at each
of --ranks (default the config's), for one Gaussian and for a mixture of each of --components
(default the config's) at each --shrinkage (`prior.SHRINKAGE`), and for each mixture cut to
each of --blocks (`blocked`), prints the prior's loss (the training's MSE weighting,
stratified log-SNRs, fixed noise) on three sets of windows: the
validation windows, the training windows the prior was fitted on, and those it was not (the
budget fits it on a subsample when the set is large). A prior that generalises scores the
three alike; the network starts from the validation figure. Also the process CPU s of each fit.

With --samples=N, N exact draws of each prior (a component by its weight, then its Gaussian),
decoded to series: what sampling the model at initialisation gives with an exact solver. Printed:
the spread across windows of each column's within-window std, draws / training windows (the
median over the columns, and the lowest and highest); with --scores, those metrics over
--repeats repeats, the draws against the training windows, both in model space mapped to
[0, 1] by (x + 1) / 2 (for the usual data sets the protocol's units; columns that column_values
transforms stay transformed).
"""

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from sample_statistics import window_statistics  # the script's folder is on the path
from stdiff_jax import budget, diffusion, metrics, saved_model, train
from stdiff_jax import labels as labels_lib
from stdiff_jax import prior as prior_lib
from stdiff_jax.data import dataset_of
from stdiff_jax.schedule import Schedule

config_flags.DEFINE_config_file("config", None, "A training config, e.g. configs/etth.py:cpu.")
flags.DEFINE_list("shrinkage", ["0.1", "1", "4"], "Mixture shrinkages (prior.SHRINKAGE) to fit.")
flags.DEFINE_list("components", [], "Mixture sizes to fit (default: the config's).")
flags.DEFINE_list("ranks", [], "Prior ranks to fit, each capped at L K (default: the config's).")
flags.DEFINE_list("blocks", [], "Also each mixture with its Gaussians kept only in the basis's "
                  "leading B directions and on the diagonal past them (`blocked`), for each B.")
flags.DEFINE_integer("samples", 0, "Exact draws of each prior to look at (0: none).")
flags.DEFINE_list("scores", [], "Metrics to score the draws with (needs --samples).")
flags.DEFINE_integer("repeats", 3, "Repeats of each metric of --scores.")
flags.DEFINE_integer("windows", 2048, "Windows scored a set at most (evenly spaced).")
flags.DEFINE_integer("batch", 64, "Windows a scoring batch.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def prepared(config):
    """(config as the training resolves it, plan, train windows, val windows, to_video, decode)."""
    dataset = dataset_of(config.data)
    config = train.with_prior_components(config, dataset)
    config, plan = budget.resolve(config, dataset.windows.shape[1:], len(dataset.windows),
                                  labels_lib.num_classes_of(dataset))
    train_windows, val_windows = train.split_windows(
        labels_lib.training_arrays(dataset), config.data.val_fraction, config.train.batch_size,
        config.data.seed, dataset.window_starts)
    _, train_windows, val_windows, normalizer, _ = train.fit_model_space(
        config, train_windows, val_windows)  # in model space, as training has them
    return (config, plan, labels_lib.split_batch(train_windows)[0],
            labels_lib.split_batch(val_windows)[0],
            saved_model.video_transform(config.video, normalizer),
            saved_model.series_decoder(config.video, normalizer, config.data.seq_len))


def prior_loss(fitted, windows, to_video, config):
    """The mean validation loss of the prior's velocity alone over `windows` (N, L, K)."""
    leaves = {k.removeprefix("prior_"): jnp.asarray(v) for k, v in fitted.as_params().items()}
    velocity = (prior_lib.posterior_velocity if isinstance(fitted, prior_lib.GaussianPrior)
                else prior_lib.mixture_posterior_velocity)

    @jax.jit  # the leaves as arguments: XLA would fold them as constants, for seconds
    def batch_loss(leaves, series, key):
        return diffusion.validation_loss(
            leaves, lambda p, z, logsnr: velocity(z, logsnr, **p), to_video(series),
            Schedule.from_config(config.diffusion), key, None, 0.0,
            weighting=config.diffusion.loss_weighting)[0]

    losses = [batch_loss(leaves, windows[i:i + FLAGS.batch], jax.random.PRNGKey(i))
              for i in range(0, len(windows) - FLAGS.batch + 1, FLAGS.batch)]
    return float(np.mean(losses))


def draws(fitted, count, rng):
    """(count, D) exact draws of a `GaussianPrior` or `MixturePrior`, flat normalised videos."""
    mixture = prior_lib.as_mixture(fitted)
    weights = np.exp(mixture.log_weights.astype(np.float64))
    component = rng.choice(len(weights), count, p=weights / weights.sum())
    basis = mixture.basis.astype(np.float64)
    coords = np.empty((count, basis.shape[1]))
    for c in np.unique(component):  # one component at a time: (count, r, r) would not fit
        rows = component == c
        xi = rng.standard_normal((rows.sum(), basis.shape[1])) * np.sqrt(mixture.variances[c])
        coords[rows] = mixture.offsets[c] + xi @ mixture.rotations[c].T
    off = rng.standard_normal((count, basis.shape[0]))
    off -= (off @ basis) @ basis.T  # the part outside the basis, at each component's residual
    return (mixture.mean + coords @ basis.T
            + np.sqrt(mixture.residuals[component])[:, None] * off)


def spread(windows):
    """(K,) the spread across windows (N, L, K) of each column's within-window std."""
    return window_statistics(windows)["within std"].std(0)


def look(fitted, reference, video_shape, decode):
    """Cells of --samples exact draws of `fitted`: their spread ratio and --scores."""
    rng = np.random.default_rng(FLAGS.samples)
    flat = draws(fitted, FLAGS.samples, rng).astype(np.float32)
    series = np.concatenate([np.asarray(decode(flat[i:i + FLAGS.batch].reshape(-1, *video_shape)))
                             for i in range(0, len(flat), FLAGS.batch)])
    ratio = spread(series) / spread(reference)
    cells = [f"{np.median(ratio):.2f} [{ratio.min():.2f}, {ratio.max():.2f}]"]
    if FLAGS.scores:
        unit = lambda x: np.clip((x + 1) / 2, 0.0, 1.0)  # noqa: E731
        scores = metrics.evaluate(unit(reference), unit(series), repeats=FLAGS.repeats,
                                   seed=0, metrics=tuple(FLAGS.scores))
        cells += [f"{scores[m]['mean']:.4f}" + (f"±{scores[m]['ci95']:.4f}" if FLAGS.repeats > 1
                                                 else "") for m in FLAGS.scores]
    return cells


def blocked(mixture, block, shared_tail):
    """`mixture` with each Gaussian's covariance (inside the shared basis) kept in the basis's
    leading `block` directions and, past them, on its diagonal: the component's own variances
    there, or with shared_tail the components' weighted mean. A velocity would then cost C
    block^2 + C r, not C r^2, per window; the draws and losses here use the dense form."""
    rotations, variances = mixture.rotations.astype(np.float64), mixture.variances
    covariances = np.einsum("crs,cs,cts->crt", rotations, variances, rotations)
    tail = np.diagonal(covariances, axis1=1, axis2=2)[:, block:]
    if shared_tail:
        tail = np.broadcast_to(np.exp(mixture.log_weights) @ tail, tail.shape)
    lead_values, lead_vectors = np.linalg.eigh(covariances[:, :block, :block])
    rank = rotations.shape[1]
    out = np.zeros_like(rotations)
    out[:, :block, :block] = lead_vectors
    out[:, block:, block:] = np.eye(rank - block)
    return dataclasses.replace(
        mixture, rotations=out.astype(np.float32),
        variances=np.concatenate([np.maximum(lead_values, 0.0), tail], 1).astype(np.float32))


def variants(rank, components):
    """[(name, fit)] of one Gaussian at `rank`, and of each mixture size at each shrinkage."""
    out = [(f"1 Gaussian, rank {rank}", functools.partial(prior_lib.fit_prior, rank=rank))]
    out += [(f"{c} Gaussians, rank {rank}, shrinkage {s}",
             functools.partial(prior_lib.fit_mixture, rank=rank, components=c,
                               shrinkage=float(s)))
            for c in components if c > 1 for s in FLAGS.shrinkage]
    return out


def with_blocks(name, fitted):
    """[(name, prior)]: `fitted`, and for a mixture its `blocked` forms at each of --blocks below
    its rank, with each kind of tail."""
    out = [(name, fitted)]
    if isinstance(fitted, prior_lib.MixturePrior):
        out += [(f"{name}, block {b}, {tail} tail", blocked(fitted, b, tail == "shared"))
                for b in map(int, FLAGS.blocks) if b < fitted.basis.shape[1]
                for tail in ("own", "shared")]
    return out


def main(argv):
    del argv
    if FLAGS.scores and not FLAGS.samples:
        raise app.UsageError("--scores scores the draws of --samples: give --samples=N too.")
    config, plan, train_windows, val_windows, to_video, decode = prepared(FLAGS.config)
    decode = jax.jit(decode)
    compiled = prior_lib.compiled(to_video)
    series_shape = train_windows.shape[1:]
    ranks = [prior_lib.rank_for(model, series_shape)  # capped at L K as training caps it
             for model in [{"prior_rank": int(r)} for r in FLAGS.ranks] or [config.model]]
    components = ([int(c) for c in FLAGS.components]
                  or [prior_lib.components_of(config.model)])
    in_fit = prior_lib.evenly_spaced(np.arange(len(train_windows)), plan.prior_windows)
    fitted_on = train_windows[in_fit]
    video_shape = compiled(fitted_on[:1]).shape[1:]
    sets = {"validation": val_windows, "fitted": fitted_on,
            "not fitted": np.delete(train_windows, in_fit, axis=0)
            if len(in_fit) < len(train_windows) else None}
    print(f"{config.data.name}: {len(train_windows)} training windows (prior fitted on "
          f"{len(fitted_on)}), {len(val_windows)} validation; ranks {ranks}, components "
          f"{components}; D = {int(np.prod(video_shape))}")
    columns = list(sets) + (["spread of within std, draws / real"] + FLAGS.scores
                            if FLAGS.samples else [])
    scored = {k: None if w is None else prior_lib.evenly_spaced(w, FLAGS.windows)
              for k, w in sets.items()}  # the windows each loss is taken on
    print("| prior | fit CPU s | " + " | ".join(columns) + " |")
    print("| --- | --- |" + " --- |" * len(columns))
    for name, fit in [v for rank in ranks for v in variants(rank, components)]:
        start = time.process_time()
        fitted = fit(fitted_on, compiled, seed=config.train.seed)
        fit_s = time.process_time() - start
        for row, prior in with_blocks(name, fitted):
            cells = ["-" if w is None else f"{prior_loss(prior, w, to_video, config):.4f}"
                     for w in scored.values()]
            if FLAGS.samples:
                cells += look(prior, train_windows, video_shape, decode)
            print(f"| {row} | {fit_s:.1f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    app.run(main)
