"""How well a prior alone denoises windows it was not fitted on: the validation loss of the
network's output held at zero (the model at initialisation, `prior.py`), prior by prior.

    python benchmarks/prior_fit.py --config=configs/fmri_standin.py:cpu
    python benchmarks/prior_fit.py --config=configs/etth.py:cpu --shrinkage=0.1,1,4

Prepares the data as a training of the config would (the budget's steps, its component count
and the windows its prior is fitted on, the validation split, the normaliser), then for one
Gaussian and for the mixture at each --shrinkage (`prior.SHRINKAGE`) prints the prior's loss
(the training's MSE weighting, stratified log-SNRs, fixed noise) on three sets of windows: the
validation windows, the training windows the prior was fitted on, and those it was not (the
budget fits it on a subsample when the set is large). A prior that generalises scores the
three alike; the network starts from the validation figure. Also the process CPU s of each fit.
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from stdiff_jax import budget, diffusion, saved_model, train
from stdiff_jax import labels as labels_lib
from stdiff_jax import prior as prior_lib
from stdiff_jax.data import dataset_of
from stdiff_jax.schedule import Schedule

config_flags.DEFINE_config_file("config", None, "A training config, e.g. configs/etth.py:cpu.")
flags.DEFINE_list("shrinkage", ["0.1", "1", "4"], "Mixture shrinkages (prior.SHRINKAGE) to fit.")
flags.DEFINE_integer("windows", 2048, "Windows scored a set at most (evenly spaced).")
flags.DEFINE_integer("batch", 64, "Windows a scoring batch.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def prepared(config):
    """(config as the training resolves it, plan, train windows, val windows, to_video)."""
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
            saved_model.video_transform(config.video, normalizer))


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


def main(argv):
    del argv
    config, plan, train_windows, val_windows, to_video = prepared(FLAGS.config)
    compiled = prior_lib.compiled(to_video)
    rank = prior_lib.rank_for(config.model, train_windows.shape[1:])
    components = prior_lib.components_of(config.model)
    in_fit = prior_lib.evenly_spaced(np.arange(len(train_windows)), plan.prior_windows)
    fitted_on = train_windows[in_fit]
    sets = {"validation": val_windows, "fitted": fitted_on,
            "not fitted": np.delete(train_windows, in_fit, axis=0)
            if len(in_fit) < len(train_windows) else None}
    print(f"{config.data.name}: {len(train_windows)} training windows (prior fitted on "
          f"{len(fitted_on)}), {len(val_windows)} validation; rank {rank}, "
          f"{components} components; D = {compiled(fitted_on[:1]).size}")
    print("| prior | fit CPU s | " + " | ".join(sets) + " |")
    print("| --- | --- |" + " --- |" * len(sets))
    variants = [("1 Gaussian", functools.partial(prior_lib.fit_prior, rank=rank))]
    variants += [(f"{components} Gaussians, shrinkage {s}",
                  functools.partial(prior_lib.fit_mixture, rank=rank, components=components,
                                    shrinkage=float(s))) for s in FLAGS.shrinkage]
    for name, fit in variants:
        start = time.process_time()
        fitted = fit(fitted_on, compiled, seed=config.train.seed)
        fit_s = time.process_time() - start
        cells = ["-" if w is None else
                 f"{prior_loss(fitted, prior_lib.evenly_spaced(w, FLAGS.windows), to_video, config):.4f}"
                 for w in sets.values()]
        print(f"| {name} | {fit_s:.1f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    app.run(main)
