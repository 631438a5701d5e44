"""The model as a workdir saves it, named for that (not `trained`, one letter from train.py).

What training, generation and conditional sampling share:
- `video_transform` and `series_decoder`: series in model space (B, L, K) to normalised videos
  (B, T, F, K, 3), what the network sees, and back (affine maps). Model space is the data's
  [-1, 1] scale, with a run's white columns as normal scores (`stdiff_jax.column_values`);
  `run_decoder` decodes all the way back to [-1, 1];
- `build_model` and `apply_fn_of`: the network for a data shape, and the velocity-predicting
  function the loss and the samplers call;
- `HostState`: the JSON item of every checkpoint (data scaler, column values, video
  normaliser, attention statistics, data shape, and the trainer's position);
- `load_config` and `load`: a run's config, and a `TrainedModel`, the parameters of a workdir's
  checkpoint with everything needed to sample from them.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from stdiff_jax import checkpoint, column_values as column_values_lib, video
from stdiff_jax import prior as prior_lib
from stdiff_jax import workdir as workdir_lib
from stdiff_jax.data import MinMaxScaler
from stdiff_jax.errors import MissingFileError, UserError
from stdiff_jax.mesh import make_mesh
from stdiff_jax.models import create_model


def video_transform(video_config, normalizer):
    """(B, L, K) series in model space -> (B, T, F, K, 3) normalised video: what the model sees."""

    def to_video(series):
        v = video.series_to_video(series, video_config.n_fft, video_config.hop,
                                  video_config.ema_alpha, video_config.window)
        return normalizer.normalize(v)

    return to_video


def series_decoder(video_config, normalizer, length):
    """(B, T, F, K, 3) normalised videos -> (B, L, K) series in model space: the inverse of
    `video_transform`, unclipped."""

    def decode(videos):
        return video.video_to_series(normalizer.denormalize(videos), video_config.n_fft,
                                     video_config.hop, length, video_config.window)

    return decode


def run_decoder(video_config, host):
    """(B, T, F, K, 3) normalised videos -> (B, L, K) series in [-1, 1] of a run (`HostState`):
    `series_decoder`, then out of model space (`column_values.from_model_space`)."""
    decode = series_decoder(video_config, host.normalizer, host.series_shape[0])
    return lambda videos: column_values_lib.from_model_space(host.column_values, decode(videos))


def video_shape_of(video_config, series_shape):
    """(T, F, K, 3) of the videos of series (L, K)."""
    identity = video.VideoNormalizer(0.0, 1.0)
    return jax.eval_shape(video_transform(video_config, identity),
                          jax.ShapeDtypeStruct((1, *series_shape), jnp.float32)).shape[1:]


def build_model(config, series_shape, stats, num_classes=0, prior=None):
    """The network for series (L, K), conditioned on `num_classes` classes (0: none), and the
    shape (T, F, K, 3) of its videos. prior: the fitted `prior.GaussianPrior` of a model with
    model.prior_rank > 0 trained from scratch (None: its prior comes from a checkpoint)."""
    video_shape = video_shape_of(config.video, series_shape)
    model_config = dict(config.model,
                        prior_rank=prior_lib.rank_for(config.model, series_shape))
    model = create_model(model_config, *video_shape[:3],
                         stats=stats if config.model.data_biases else None,
                         num_classes=num_classes, prior=prior)
    return model, video_shape


def apply_fn_of(model):
    """apply_fn(params, z, logsnr, labels=None) -> v, the form the loss and the samplers call
    (labels (B,): class indices of a model with classes; None: the "no class" token): the
    network's velocity, which `diffusion.predictions` turns into the clean video and the noise."""
    return lambda params, z, logsnr, labels=None: model.apply({"params": params}, z, logsnr,
                                                              labels)


def abstract_params(model, video_shape, mesh):
    """The parameter tree's shapes, replicated over `mesh`, without initialising anything."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *video_shape)),
                                               jnp.zeros((1,)))["params"])
    replicated = NamedSharding(mesh, P())
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                        shapes)


@dataclasses.dataclass
class HostState:
    """What a checkpoint holds besides the arrays: stored as the JSON item of every checkpoint."""

    iterator: dict
    best_val_loss: float | None  # None before the first evaluation
    evals_since_best: int
    num_windows: int  # of the whole data set: the default number of samples to generate
    series_shape: tuple  # (L, K)
    scaler: MinMaxScaler
    normalizer: video.VideoNormalizer
    stats: video.AttentionStats
    column_names: tuple | None = None  # K names of the data; None in checkpoints older than them
    # Process CPU seconds of training up to this checkpoint, summed over the runs that resumed it
    # (each run's data loading and compilation included); 0 in checkpoints older than it.
    train_cpu_s: float = 0.0
    # The classes of a labelled data set in index order and its windows per class (the
    # "protocol" sample counts); None for an unlabelled run (stdiff_jax/labels.py).
    class_names: tuple | None = None
    class_counts: tuple | None = None
    # model.prior_components of the trained network, which training may lower from the count
    # asked (`with_trained_components`); None in checkpoints older than it: the config's holds.
    prior_components: int | None = None
    # The white and few-valued columns (`column_values.fit`); None: none, or a checkpoint older
    # than them.
    column_values: column_values_lib.ColumnValues | None = None

    @property
    def num_classes(self):
        return len(self.class_names or ())

    def record_evaluation(self, val_loss, patience):
        """Updates the early-stopping record -> (improved, stop: `patience` evaluations in a row
        without improvement; never when patience is 0)."""
        improved = self.best_val_loss is None or val_loss < self.best_val_loss
        if improved:
            self.best_val_loss, self.evals_since_best = val_loss, 0
        else:
            self.evals_since_best += 1
        return improved, patience > 0 and self.evals_since_best >= patience

    def to_json(self):
        d = dataclasses.asdict(self) | {"scaler": self.scaler.to_dict(),
                                        "normalizer": self.normalizer.to_dict(),
                                        "stats": self.stats.to_dict(),
                                        "column_values": self.column_values
                                        and self.column_values.to_dict()}
        return checkpoint.to_json(d)

    @classmethod
    def from_json(cls, d):
        names, classes, counts = (d.get(key) for key in ("column_names", "class_names",
                                                         "class_counts"))
        return cls(iterator=d["iterator"], best_val_loss=d["best_val_loss"],
                   evals_since_best=d["evals_since_best"], num_windows=d["num_windows"],
                   series_shape=tuple(d["series_shape"]),
                   scaler=MinMaxScaler.from_dict(d["scaler"]),
                   normalizer=video.VideoNormalizer.from_dict(d["normalizer"]),
                   stats=video.AttentionStats.from_dict(d["stats"]),
                   column_names=None if names is None else tuple(names),
                   train_cpu_s=d.get("train_cpu_s", 0.0),
                   class_names=None if classes is None else tuple(classes),
                   class_counts=None if counts is None else tuple(counts),
                   prior_components=d.get("prior_components"),
                   column_values=d.get("column_values")
                   and column_values_lib.ColumnValues.from_dict(d["column_values"]))


def read_host(manager, step):
    """The `HostState` of a step; a host item that is not one is unreadable, like a broken file."""
    d = checkpoint.restore_host(manager, step)
    try:
        return HostState.from_json(d)
    except (KeyError, TypeError, AttributeError) as e:
        raise checkpoint.UnreadableCheckpoint(f"the host item is no HostState ({e!r})") from e


METRIC_LOG = "metrics.jsonl"  # in the workdir: one JSON object per logged step (train.MetricWriter)
CONFIG = "config.json"  # in the workdir: the run's resolved config (train.save_config)


def checkpoint_dir(workdir):
    return workdir_lib.as_path(workdir) / "checkpoints"


def checkpoint_steps(workdir):
    """The steps of workdir's finished checkpoints (`checkpoint.finished_steps`)."""
    return checkpoint.finished_steps(checkpoint_dir(workdir))


def open_checkpoints(workdir, keep):
    """A synchronous CheckpointManager over workdir's checkpoints; MissingFileError, creating
    nothing, when there are none."""
    if not checkpoint_steps(workdir):
        raise MissingFileError(f"No checkpoint in {checkpoint_dir(workdir)}: train first "
                               f"(--mode=train or all) with this --workdir.")
    return checkpoint.create_manager(checkpoint_dir(workdir), keep, async_saves=False)


@dataclasses.dataclass
class TrainedModel:
    """A network with the parameters of one checkpoint and the transforms of its data."""

    config: Any  # the run's config (video, model, sample and diffusion settings are read)
    model: Any  # the STDiff module
    params: Any  # replicated over the mesh it was loaded on
    host: HostState
    step: int
    video_shape: tuple  # (T, F, K, 3)

    @property
    def series_shape(self):
        return self.host.series_shape  # (L, K)

    @property
    def apply_fn(self):
        return apply_fn_of(self.model)

    def to_video(self, series):
        """(B, L, K) series in [-1, 1] -> (B, T, F, K, 3) normalised videos."""
        encode = video_transform(self.config.video, self.host.normalizer)
        return encode(column_values_lib.to_model_space(self.host.column_values, series))

    def decode(self, videos):
        """(B, T, F, K, 3) normalised videos -> (B, L, K) series in [-1, 1], unclipped (the
        few-valued columns at their levels)."""
        return run_decoder(self.config.video, self.host)(videos)


def load_config(workdir):
    """The config a run was trained with (workdir/config.json, written by the trainer), locked."""
    path = workdir_lib.as_path(workdir) / CONFIG
    if not path.exists():
        raise MissingFileError(f"No {CONFIG} in {path.parent}: not a workdir of a training run "
                               f"(train one with --mode=train first).")
    try:
        config = ml_collections.ConfigDict(workdir_lib.read_json(path))
    except workdir_lib.UnreadableRecord as e:
        raise UserError(f"{path} cannot be read ({e}). Training writes it: run --mode=train with "
                        f"this --workdir and the config it was trained with (it resumes, and "
                        f"rewrites the file), or pass that config to the command.") from e
    config.lock()
    return config


def with_trained_components(config, host):
    """config with the model.prior_components of the network a checkpoint holds: training lowers
    the count asked to what the data and the cost share allow (`train.with_prior_components`,
    `budget.resolve`), and the config a run was started with must still load that network."""
    if host.prior_components in (None, prior_lib.components_of(config.model)):
        return config
    config = config.copy_and_resolve_references()
    config.model.prior_components = host.prior_components
    return config


def load(config, workdir, mesh=None, step=None):
    """The `TrainedModel` of a checkpoint of workdir, its parameters replicated over `mesh`.

    config: the run's config (`load_config(workdir)`, or the config it was started with: the
    network is built with the checkpoint's own model.prior_components, `with_trained_components`).

    step: a step number, or None for the best by validation loss (else the latest), falling back
    to the newest intact step when that one is damaged (`checkpoint.restore_first_intact`). Only
    the parameters sampling uses are read: the EMA ones when config.sample.use_ema, else the raw
    ones.
    """
    mesh = make_mesh() if mesh is None else mesh
    which = "ema_params" if config.sample.use_ema else "params"
    manager = open_checkpoints(workdir, config.train.keep_checkpoints)

    def restore(step):
        host = read_host(manager, step)
        trained = with_trained_components(config, host)
        model, video_shape = build_model(trained, host.series_shape, host.stats,
                                         host.num_classes)
        params = checkpoint.restore_subtree(manager, step, which,
                                            abstract_params(model, video_shape, mesh))
        return trained, host, model, video_shape, params

    try:
        step, (config, host, model, video_shape, params) = checkpoint.restore_first_intact(
            manager, checkpoint.steps_to_try(manager, step, prefer_best=True), restore)
    finally:
        manager.close()
    logging.info("Loaded the %s parameters of step %d from %s.",
                 "EMA" if config.sample.use_ema else "raw", step, checkpoint_dir(workdir))
    return TrainedModel(config=config, model=model, params=params, host=host, step=int(step),
                        video_shape=tuple(video_shape))
