"""Training: `train_and_evaluate(config, workdir)`, importable from a notebook, and `train_step`.

The trainer reads top to bottom in sections: input, model and optimizer, sharding, update step,
evaluation, checkpointing, loop; the mesh is mesh.py's and the model side saved_model.py's. Data
parallelism is `jax.jit` over a one-axis `Mesh` of every device (all hosts): the global batch of
series is split along the `data` axis, the state is replicated, and XLA inserts the gradient
all-reduce.

Input stays tiny: the (N, L, K) training windows live in host memory, a `BatchIterator` picks the
indices of each global batch, and the series (B, L, K) go to the devices; the video transform and
its normalisation run inside the jitted step, where they cost little next to the network.
"""

import functools
import json
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from stdiff_jax import budget, checkpoint, column_values, diffusion, errors, fingerprint, video
from stdiff_jax import labels as labels_lib
from stdiff_jax import prior as prior_lib
from stdiff_jax import workdir as workdir_lib
from stdiff_jax.data import BatchIterator, dataset_of
from stdiff_jax.errors import UserError
from stdiff_jax.mesh import DATA_AXIS, check_divisible, make_mesh, shard_batch
from stdiff_jax.progress import Meter
from stdiff_jax.saved_model import (CONFIG, METRIC_LOG, HostState, apply_fn_of, build_model,
                                    checkpoint_dir, checkpoint_steps, open_checkpoints, read_host,
                                    video_transform, with_trained_components)
from stdiff_jax.schedule import Schedule

VAL_SUBSET_FRACTION = 0.05  # Size of the fixed training subset scored when val_fraction is 0.
SPLIT_SEED_STREAM = 1  # Keeps the hold-out draw independent of the batch order drawn from data.seed.
# Training steps the host may dispatch ahead of the device (dispatch is asynchronous): a signal's
# save waits for them. Unbounded, the host ran ahead by tens of steps, and a SIGTERM to ETTh L = 128
# `cpu_long` (2.4 CPU s a step) was saved about a minute later, past the 30 s notice a preempted VM
# or a Kubernetes pod gets.
IN_FLIGHT = 2


# ------------------------------------------------------------------------------------------------
# Input.
# ------------------------------------------------------------------------------------------------
def split_windows(windows, val_fraction, batch_size, seed, window_starts=None):
    """(train, val) windows, val about `val_fraction` of them in whole batches (every validation
    batch has the training batch's shape: one trace), sharing no time step with any training
    window:
    - windows of a series (`window_starts`, `Dataset.window_starts`): val is the block of the
      last windows (the latest rows), and the L - 1 windows before it, which share rows with it,
      are left out of both;
    - windows that are series of their own (`window_starts` None: sines, mujoco, UCR, npy window
      sets) share no step: val is a seeded random draw of them.
    With `val_fraction` 0 every window trains and val is a fixed random subset of them (scored
    for early stopping, as the protocol trains on everything).

    windows: (N, L, K), or a tuple of arrays with N rows each (windows and their labels), split
    alike. Raises a UserError when less than one training batch is left.
    """
    n = len(jax.tree.leaves(windows)[0])
    order = np.random.default_rng([seed, SPLIT_SEED_STREAM]).permutation(n)
    rows = lambda idx: jax.tree.map(lambda a: a[idx], windows)
    fraction = val_fraction if val_fraction > 0 else VAL_SUBSET_FRACTION
    num_val = max(1, round(fraction * n / batch_size)) * batch_size
    if val_fraction <= 0:
        num_val = min(num_val, n // batch_size * batch_size)
        return windows, rows(np.sort(order[:num_val]))
    if window_starts is None:
        train_idx, val_idx = np.sort(order[num_val:]), np.sort(order[:num_val])
        where = f"holding out {len(val_idx)} random windows for validation"
    else:
        train_idx, val_idx = _last_rows_block(window_starts, num_val,
                                              jax.tree.leaves(windows)[0].shape[1])
        where = (f"holding out the last {len(val_idx)} windows of the series for validation and "
                 f"the {n - len(val_idx) - len(train_idx)} before them (they share rows with it)")
    if len(train_idx) < batch_size:
        raise UserError(f"{n} windows: {where} leaves {len(train_idx)} to train, fewer than one "
                        f"batch of {batch_size}. Set config.data.val_fraction=0 (every window "
                        f"trains, early stopping scores a fixed training subset) or lower "
                        f"config.train.batch_size.")
    logging.info("Validation: %s; %d windows train.", where, len(train_idx))
    return rows(train_idx), rows(val_idx)


def in_model_space(columns, arrays):
    """Training arrays (`labels.training_arrays`' form) with their series in model space, what the
    videos are made of (`column_values.to_model_space` of the run's `columns`)."""
    if columns is None:
        return arrays
    series, labels = labels_lib.split_batch(arrays)
    series = np.asarray(columns.to_model_space(series))
    return series if labels is None else (series, labels)


def fit_model_space(config, train_windows, val_windows):
    """What a fresh run fits on its training windows before the first step: the column values
    (column_values.py), then the video statistics of the windows in model space.

    Returns:
        (columns, train_windows, val_windows, normalizer, stats): the two window sets in
        `labels.training_arrays`' form, in model space; the rest as `HostState` holds them.
    """
    columns = column_values.fit(labels_lib.split_batch(train_windows)[0],
                                config.video.white_below, config.video.max_levels)
    train_windows = in_model_space(columns, train_windows)
    val_windows = in_model_space(columns, val_windows)
    normalizer, stats = video.fit_video_statistics(
        labels_lib.split_batch(train_windows)[0], config.video.n_fft, config.video.hop,
        config.video.ema_alpha, config.video.window, normalizer=config.video.normalizer)
    return columns, train_windows, val_windows, normalizer, stats


def _last_rows_block(window_starts, num_val, seq_len):
    """(train, val) indices of windows starting at rows `window_starts` (N,): val the `num_val`
    latest, train those ending before the first row of val."""
    val = np.sort(np.argsort(window_starts, kind="stable")[-num_val:])
    first_val_row = window_starts[val].min()
    return np.flatnonzero(window_starts + seq_len <= first_val_row), val


def check_classes_train(train_windows, class_names):
    """A UserError when the validation split left a class without training windows."""
    labels = labels_lib.split_batch(train_windows)[1]
    missing = [name for i, name in enumerate(class_names) if not np.any(labels == i)]
    if missing:
        raise UserError(f"The validation split (split_windows) left no training window of the "
                        f"class(es) {missing}: all of theirs are validation windows or share rows "
                        f"with them, so the network would never learn them. Set "
                        f"config.data.val_fraction=0 (every window trains), or a smaller "
                        f"val_fraction if those windows lie in the last rows of the series.")


def with_prior_components(config, dataset):
    """config with model.prior_components at what the data allows (`prior.components_for`: the
    set's windows, or with a prior per class its smallest class's), logged when lowered; saved so
    in workdir/config.json."""
    num_classes = labels_lib.num_classes_of(dataset)
    groups = ([len(dataset.windows)] if not prior_lib.per_class_for(config.model, num_classes)
              else labels_lib.class_counts(dataset.labels, num_classes))
    components = prior_lib.components_for(config.model, groups)
    if components == prior_lib.components_of(config.model):
        return config
    logging.warning("model.prior_components=%d lowered to %d: the mixture keeps at most one "
                    "Gaussian per %d windows of %s (%d).", prior_lib.components_of(config.model),
                    components, prior_lib.WINDOWS_PER_COMPONENT,
                    "the set" if len(groups) == 1 else "its smallest class", min(groups))
    config = config.copy_and_resolve_references()
    config.model.prior_components = components
    return config


# ------------------------------------------------------------------------------------------------
# Model and optimizer.
# ------------------------------------------------------------------------------------------------
def _decay_mask(params):
    """Weight decay on dense kernels only: not on biases, norms, embeddings or the data-prior biases."""
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def _trained_mask(params):
    """Every leaf but the Gaussian prior's (`prior.py`: constants, with zero gradients)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: not prior_lib.is_prior_leaf(path),
                                            params)


def make_optimizer(train_config, prior=False):
    """AdamW after global-norm clipping; learning rate: linear warmup, then cosine decay to the min.
    prior: the model has a Gaussian prior (model.prior_rank > 0), whose leaves the optimizer
    leaves out, so that checkpoints do not hold two moments of zeros the prior's size.

    Returns (optax transformation, learning-rate schedule of the step).
    """
    tc = train_config
    budget.check_warmup(tc)
    learning_rate = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=tc.learning_rate, warmup_steps=tc.warmup_steps,
        decay_steps=tc.num_steps, end_value=tc.min_learning_rate)
    tx = optax.chain(
        optax.clip_by_global_norm(tc.grad_clip),
        optax.adamw(learning_rate, weight_decay=tc.weight_decay, mask=_decay_mask))
    return (optax.masked(tx, _trained_mask) if prior else tx), learning_rate


@flax.struct.dataclass
class TrainState:
    """Every array a resume needs; the host-side rest (data position, scaler, ...) is in `host`."""

    step: jax.Array  # () int32: updates done
    params: Any
    ema_params: Any  # exponential moving average of params, what sampling uses by default
    opt_state: Any
    rng: jax.Array  # (2,) uint32; step s draws its noise from fold_in(rng, s)


def init_train_state(rng, *, model, tx, video_shape):
    init_key, train_key = jax.random.split(rng)
    params = model.init(init_key, jnp.zeros((1, *video_shape)), jnp.zeros((1,)))["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      ema_params=jax.tree.map(jnp.copy, params), opt_state=tx.init(params),
                      rng=train_key)


# ------------------------------------------------------------------------------------------------
# Sharding.
# ------------------------------------------------------------------------------------------------
def state_shardings(mesh, model, tx, video_shape, seed):
    """(abstract state with its shardings, the init function): all leaves replicated over `data`."""
    init_fn = functools.partial(init_train_state, model=model, tx=tx, video_shape=video_shape)
    shapes = jax.eval_shape(init_fn, jax.random.PRNGKey(seed))
    replicated = NamedSharding(mesh, P())
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                            shapes)
    return abstract, init_fn


def create_sharded_state(mesh, abstract, init_fn, seed):
    """Parameters are born on their devices with their final sharding, never gathered on one."""
    shardings = jax.tree.map(lambda a: a.sharding, abstract)
    return jax.jit(init_fn, out_shardings=shardings)(jax.random.PRNGKey(seed))


# ------------------------------------------------------------------------------------------------
# Update step.
# ------------------------------------------------------------------------------------------------
def train_step(state, batch, *, apply_fn, tx, learning_rate, to_video, schedule, normalizer,
               cov_weight, weighting, ema_decay, label_dropout=0.0, null_label=None):
    """One AdamW update on a global batch of series (B, L, K), or of (series, labels (B,)) for a
    labelled data set, -> (new state, metrics).

    Everything after `batch` is bound with functools.partial before jit. Metrics are device
    scalars; the loop checks them on the host at its log points, so no step waits for the host.
    Labels are dropped to the "no class" token `null_label` at the rate `label_dropout`
    (`labels.conditioned`).
    """
    rng = jax.random.fold_in(state.rng, state.step)
    series, labels = labels_lib.split_batch(batch)
    x0 = to_video(series)  # (B, T, F, K, 3)
    apply_fn = labels_lib.conditioned(apply_fn, labels, rng, label_dropout, null_label)

    def loss_fn(params):
        return diffusion.diffusion_loss(params, apply_fn, x0, rng, schedule, normalizer, cov_weight,
                                        weighting=weighting)

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p,
                              state.ema_params, params)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads),
                   learning_rate=learning_rate(state.step))
    new_state = state.replace(step=state.step + 1, params=params, ema_params=ema_params,
                              opt_state=opt_state)
    return new_state, metrics


def compile_train_step(config, mesh, abstract, *, model, tx, learning_rate, normalizer):
    """`train_step` with its settings bound, jitted over the mesh with the state donated."""
    step = functools.partial(
        train_step, apply_fn=apply_fn_of(model), tx=tx, learning_rate=learning_rate,
        to_video=video_transform(config.video, normalizer), schedule=Schedule.from_config(
            config.diffusion), normalizer=normalizer,
        cov_weight=float(config.diffusion.cov_loss_weight),
        weighting=config.diffusion.loss_weighting,
        ema_decay=float(config.train.ema_decay),
        label_dropout=float(config.model.get("label_dropout", 0.0)), null_label=model.num_classes)
    state_sharding = jax.tree.map(lambda a: a.sharding, abstract)
    return jax.jit(step, in_shardings=(state_sharding, NamedSharding(mesh, P(DATA_AXIS))),
                   out_shardings=(state_sharding, NamedSharding(mesh, P())), donate_argnums=0)


def check_finite(rows, first_step):
    """Raises FloatingPointError naming the first step whose loss or gradient norm is not finite.

    rows: host metric dicts of consecutive steps, the first being update number `first_step`.
    """
    for offset, row in enumerate(rows):
        bad = {k: row[k] for k in ("loss", "grad_norm") if not np.isfinite(row[k])}
        if bad:
            raise FloatingPointError(
                f"Training diverged: non-finite {bad} at step {first_step + offset}. Lower "
                f"config.train.learning_rate, keep config.train.grad_clip > 0, and check the data; "
                f"the last checkpoint before the step is still in the workdir.")


# ------------------------------------------------------------------------------------------------
# Evaluation.
# ------------------------------------------------------------------------------------------------
def compile_eval_step(config, mesh, abstract, *, model, normalizer):
    """Validation loss of one batch at fixed stratified times and noise (the key is per batch)."""

    def eval_step(params, batch, key):
        series, labels = labels_lib.split_batch(batch)
        _, metrics = diffusion.validation_loss(
            params, labels_lib.conditioned(apply_fn_of(model), labels),
            video_transform(config.video, normalizer)(series),
            Schedule.from_config(config.diffusion), key, normalizer,
            float(config.diffusion.cov_loss_weight),
            weighting=config.diffusion.loss_weighting)
        return metrics["loss"]

    replicated = NamedSharding(mesh, P())
    return jax.jit(eval_step, in_shardings=(jax.tree.map(lambda a: a.sharding, abstract.params),
                                            NamedSharding(mesh, P(DATA_AXIS)), replicated),
                   out_shardings=replicated)


def mean_validation_loss(eval_step, params, val_batches, seed):
    """Mean validation loss over the fixed batches; batch i always uses the noise of key i."""
    key = jax.random.PRNGKey(seed)
    losses = [eval_step(params, batch, jax.random.fold_in(key, i))
              for i, batch in enumerate(val_batches)]
    return float(np.mean(jax.device_get(losses)))


# ------------------------------------------------------------------------------------------------
# Checkpointing (the Orbax side is in checkpoint.py).
# ------------------------------------------------------------------------------------------------
def restore_train_state(config, workdir, mesh, step=None, prefer_best=True):
    """(state, host state, model, step) of a checkpoint of workdir, laid out over `mesh`.

    step: a step number, or None for the best by validation loss (else the latest; the latest
    without `prefer_best`), falling back to the newest intact step when that one is damaged
    (`checkpoint.restore_first_intact`).
    """
    tx, _ = make_optimizer(config.train, prior=prior_lib.requested_rank(config.model) > 0)
    manager = open_checkpoints(workdir, config.train.keep_checkpoints)

    def restore(step):
        host = read_host(manager, step)
        model, video_shape = build_model(with_trained_components(config, host),
                                         host.series_shape, host.stats, host.num_classes)
        abstract, _ = state_shardings(mesh, model, tx, video_shape, config.train.seed)
        return checkpoint.restore_state(manager, step, abstract), host, model

    try:
        step, (state, host, model) = checkpoint.restore_first_intact(
            manager, checkpoint.steps_to_try(manager, step, prefer_best), restore)
    finally:
        manager.close()
    return state, host, model, step


# ------------------------------------------------------------------------------------------------
# Loop.
# ------------------------------------------------------------------------------------------------
class MetricWriter:
    """Appends one JSON object per line to workdir/metrics.jsonl (process 0 only).

    Rows after `resume_step` (logged by an interrupted run after its last checkpoint, and about
    to be logged again) and unreadable lines (a line a kill cut) are dropped first, so the log
    has each step once. Hand-written: clu.metric_writers and tensorboardX write TensorBoard
    events, not JSON lines, and neither drops the steps a resume redoes.
    """

    def __init__(self, workdir, resume_step):
        self.path = workdir_lib.as_path(workdir) / METRIC_LOG
        self.enabled = jax.process_index() == 0
        if self.enabled and self.path.exists():
            rows, complete = workdir_lib.read_jsonl(self.path)
            keep = [r for r in rows if resume_step is not None and r["step"] <= resume_step]
            if len(keep) < len(rows) or not complete:
                workdir_lib.write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def write(self, step, **scalars):
        if self.enabled:
            row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
            workdir_lib.append_line(self.path, json.dumps(row) + "\n")


def save_config(config, workdir):
    """Writes the resolved config to workdir/config.json (process 0), warning about changes on a
    resume; an unreadable one (empty, cut) is replaced, with a line saying so."""
    path = workdir_lib.as_path(workdir) / CONFIG
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    if path.exists():
        try:
            old, new = _flatten(workdir_lib.read_json(path)), _flatten(json.loads(text))
        except workdir_lib.UnreadableRecord as e:
            logging.warning("%s cannot be read (%s); writing this run's config.", path, e)
        else:
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            if changed:
                logging.warning("The config differs from the one saved in %s in %s.", path,
                                changed)
    if jax.process_index() == 0:
        workdir_lib.write_text(path, text)


def _flatten(d, prefix=""):
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@workdir_lib.locking
def train_and_evaluate(config, workdir, *, dataset=None, stop_at_step=None,
                       allow_workdir_mismatch=False):
    """Trains the model of `config`, saving checkpoints, metrics and the config into `workdir`.

    Resume order: the latest intact checkpoint in workdir/checkpoints (its arrays, data position,
    scaler, normaliser and early-stopping record: the run continues exactly as if never
    interrupted; damaged newer ones are moved aside and their steps redone); else a fresh start. A
    finished or early-stopped run returns at once when called again. On a multi-host runtime's
    preemption notice every host saves at the same step and returns; in a single process a SIGINT
    or SIGTERM saves the step in progress and raises `errors.Interrupted`. The workdir's lock is
    held throughout (workdir.py), and its config.json and fingerprint.json are written only after
    the data and the network were checked against them (fingerprint.py) and the checkpoint read.

    The steps, batch and evaluation intervals a CPU budget leaves to the data
    (`config.train.budget_seconds`; the `cpu` variants) are worked out once the data is loaded
    (budget.py), logged first and saved in workdir/config.json.

    Args:
        config: a config of configs/ (e.g. `configs.sines.get_config("smoke")`).
        workdir: directory of the run; created if missing.
        dataset: a `stdiff_jax.data.Dataset` to use instead of loading `config.data.name`.
        stop_at_step: stop (with a checkpoint) once this many updates are done, as a preempted run
            would; a later call resumes. For notebooks that train in slices.
        allow_workdir_mismatch: resume a workdir trained on other data (same network) anyway.

    Returns:
        dict with step, best_val_loss, stopped_early, checkpoint_dir and train_cpu_s (the process
        CPU seconds of the training so far, summed over resumed runs, as of its last checkpoint).
    """
    cpu_start = time.process_time()
    workdir = workdir_lib.as_path(workdir)
    budget.check(config.train)  # before data loads: the budget fields and a set schedule

    # Mesh --------------------------------------------------------------------------------------
    mesh = make_mesh()
    batch_sharding = NamedSharding(mesh, P(DATA_AXIS))

    # Input -------------------------------------------------------------------------------------
    if dataset is None:
        dataset = dataset_of(config.data)
    config = with_prior_components(config, dataset)
    # The steps and batch a CPU budget leaves to the data follow from its shape (budget.py).
    config, plan = budget.resolve(config, dataset.windows.shape[1:], len(dataset.windows),
                                  labels_lib.num_classes_of(dataset))
    logging.info("%s", plan.describe())
    tc = config.train
    tx, learning_rate = make_optimizer(tc, prior=prior_lib.requested_rank(config.model) > 0)
    check_divisible(tc.batch_size, mesh)
    classes = labels_lib.classes_of(dataset, tc.batch_size)  # (names, counts) or None
    train_windows, val_windows = split_windows(labels_lib.training_arrays(dataset),
                                               config.data.val_fraction, tc.batch_size,
                                               config.data.seed, dataset.window_starts)
    if classes is not None:
        check_classes_train(train_windows, classes[0])
    iterator = BatchIterator(len(jax.tree.leaves(train_windows)[0]), tc.batch_size,
                             config.data.seed)
    num_classes = 0 if classes is None else len(classes[0])
    run_fingerprint = {"data": fingerprint.of_data(dataset),
                       "model": fingerprint.of_model(config, dataset.windows.shape[1:],
                                                     num_classes)}
    fingerprint.check(workdir, run_fingerprint, allow_workdir_mismatch)  # before any write
    workdir.mkdir(parents=True, exist_ok=True)
    newest = max(checkpoint_steps(workdir), default=None)
    resume_step = None
    if newest is None:
        columns, train_windows, val_windows, normalizer, stats = fit_model_space(
            config, train_windows, val_windows)
        if columns is not None:
            logging.info("%s", columns.describe(dataset.column_names))
        host = HostState(iterator=iterator.state(), best_val_loss=None, evals_since_best=0,
                         num_windows=len(dataset), series_shape=tuple(dataset.windows.shape[1:]),
                         scaler=dataset.scaler, normalizer=normalizer, stats=stats,
                         column_names=tuple(dataset.column_names),
                         prior_components=prior_lib.components_of(config.model),
                         column_values=columns, **labels_lib.host_fields(classes))
    else:
        state, host, _, resume_step = restore_train_state(config, workdir, mesh, prefer_best=False)
        iterator.restore(host.iterator)
        train_windows = in_model_space(host.column_values, train_windows)
        val_windows = in_model_space(host.column_values, val_windows)
        if resume_step < newest:
            logging.warning("Resuming from step %d, the newest intact checkpoint: the %d steps to "
                            "step %d will be redone.", resume_step, newest - resume_step, newest)
    save_config(config, workdir)  # after the checkpoint proved to hold this network
    if classes is not None and jax.process_index() == 0:
        labels_lib.save_labels(workdir, *classes)
    fingerprint.record(workdir, run_fingerprint)
    cpu_base = host.train_cpu_s  # of the runs before this one

    def cpu_seconds():
        return cpu_base + time.process_time() - cpu_start

    num_val = len(jax.tree.leaves(val_windows)[0])
    val_batches = [jax.tree.map(lambda a: shard_batch(a[i:i + tc.batch_size], batch_sharding),
                                val_windows) for i in range(0, num_val, tc.batch_size)]

    # Model and optimizer -----------------------------------------------------------------------
    prior = None
    rank = prior_lib.rank_for(config.model, host.series_shape)
    if resume_step is None and rank:
        windows, labels = labels_lib.split_batch(train_windows)
        fitted_on = prior_lib.evenly_spaced(windows, plan.prior_windows)
        per_class = prior_lib.per_class_for(config.model, num_classes)
        prior = prior_lib.same_on_every_process(prior_lib.fit(
            fitted_on, video_transform(config.video, host.normalizer), rank,
            prior_lib.components_of(config.model), seed=tc.seed,
            labels=prior_lib.evenly_spaced(labels, plan.prior_windows) if per_class else None,
            num_classes=num_classes))
        components = plan.shape.prior_components
        logging.info("%s%s of %d of the %d training windows: %d directions hold %.2f%% of their "
                     "videos' variance%s.",
                     "Gaussian prior" if components == 1 else f"Mixture of {components} Gaussians",
                     f" ({components // num_classes} a class)" if per_class else "",
                     len(fitted_on), len(windows), rank, 100 * prior.explained(),
                     "" if components > 1 else
                     f"; the other {prior.mean.size - rank} have variance {prior.residual:.3g} each")
    model, video_shape = build_model(config, host.series_shape, host.stats, host.num_classes,
                                     prior)

    # Sharding ----------------------------------------------------------------------------------
    abstract, init_fn = state_shardings(mesh, model, tx, video_shape, tc.seed)
    if resume_step is None:
        state = create_sharded_state(mesh, abstract, init_fn, tc.seed)
    else:
        logging.info("Resumed from %s at step %d.", checkpoint_dir(workdir), resume_step)
    num_params = sum(x.size for path, x in jax.tree_util.tree_leaves_with_path(state.params)
                     if not prior_lib.is_prior_leaf(path))  # the prior's are constants
    logging.info("%d devices, global batch %d (%d per device), %d training and %d validation "
                 "windows, videos %s, %.2fM parameters.", mesh.size, tc.batch_size,
                 tc.batch_size // mesh.size, iterator.num_examples, num_val, video_shape,
                 num_params / 1e6)

    # Update step -------------------------------------------------------------------------------
    update = compile_train_step(config, mesh, abstract, model=model, tx=tx,
                                learning_rate=learning_rate, normalizer=host.normalizer)
    eval_step = compile_eval_step(config, mesh, abstract, model=model, normalizer=host.normalizer)

    # Loop --------------------------------------------------------------------------------------
    writer = MetricWriter(workdir, resume_step)
    meter = Meter(tc.num_steps, int(jax.device_get(state.step)))

    # (step, CPU s) at this process's first report, after compilation: the next report whose
    # window held no validation or checkpoint (`busy`) logs the pace of a step against the plan's
    # (CPU runs only: the plan is in a CPU's seconds).
    pace_from, busy = None, False

    def log(step, rows):
        nonlocal pace_from, busy
        means = {k: np.mean([r[k] for r in rows]) for k in rows[0]}
        progress, cpu = meter.report(step), cpu_seconds()
        writer.write(step, **means, steps_per_sec=progress.rate,
                     samples_per_sec=progress.rate * tc.batch_size, train_cpu_s=cpu)
        logging.info("step %d/%d  loss %.4f  grad_norm %.3f  lr %.2e  %.0f samples/s  %s", step,
                     tc.num_steps, means["loss"], means["grad_norm"], means["learning_rate"],
                     progress.rate * tc.batch_size, progress.describe("steps"))
        if (progress.first and jax.default_backend() == "cpu") or (pace_from and busy):
            pace_from = (step, cpu)
        elif pace_from is not None:
            logging.info("%s", plan.pace((cpu - pace_from[1]) / (step - pace_from[0])))
            pace_from = None
        busy = False

    def evaluate(step):
        """Validation loss -> (loss, improved, stop early); the params sampled later are scored."""
        params = state.ema_params if config.sample.use_ema else state.params
        val_loss = mean_validation_loss(eval_step, params, val_batches, config.data.seed)
        if not np.isfinite(val_loss):
            raise FloatingPointError(f"Non-finite validation loss {val_loss} at step {step}.")
        improved, stop = host.record_evaluation(val_loss, tc.patience)
        writer.write(step, val_loss=val_loss, best_val_loss=host.best_val_loss)
        logging.info("step %d  validation loss %.5f  (best %.5f, %d evaluations without "
                     "improvement)", step, val_loss, host.best_val_loss, host.evals_since_best)
        return val_loss, improved, stop

    step = meter.start
    last_step = tc.num_steps if stop_at_step is None else min(stop_at_step, tc.num_steps)
    stopped_early = tc.patience > 0 and host.evals_since_best >= tc.patience
    preempted = False  # a multi-host runtime's preemption notice (SIGTERM), agreed on all hosts
    interrupted = False  # a SIGINT or SIGTERM to this single process
    pending, window = [], []  # device metrics not yet on the host; host metrics since the last log
    # On an error, the last good checkpoint still finishes writing.
    with workdir_lib.deferring_signals() as stop, checkpoint.saving(
            checkpoint_dir(workdir), tc.keep_checkpoints) as manager:
        while step < last_step and not (stopped_early or preempted or interrupted):
            indices = next(iterator)
            batch = jax.tree.map(lambda a: shard_batch(a[indices], batch_sharding), train_windows)
            state, metrics = update(state, batch)
            pending.append(metrics)
            if len(pending) > IN_FLIGHT:
                jax.block_until_ready(pending[-IN_FLIGHT - 1])
            step += 1
            is_log = step % tc.log_every == 0 or step == last_step
            is_eval = step % tc.eval_every == 0 or step == tc.num_steps
            preempted = manager.reached_preemption(step)
            interrupted = stop.signum is not None
            is_save = (step % tc.checkpoint_every == 0 or step == last_step or preempted
                       or interrupted)
            if not (is_log or is_eval or is_save):
                continue
            rows = jax.device_get(pending)  # the one host sync between these points
            check_finite(rows, step - len(rows) + 1)
            window, pending = window + rows, []
            if is_log:
                log(step, window)
                window = []
            val_loss = None
            if is_eval:
                val_loss, improved, stopped_early = evaluate(step)
                is_save = is_save or improved or stopped_early
            if is_save:
                host.iterator, host.train_cpu_s = iterator.state(), cpu_seconds()
                checkpoint.save(manager, step, state, host.to_json(), val_loss)
            busy = busy or is_eval or is_save
    if stop.signum is not None:  # the step it came at (or the last one) is saved
        raise errors.Interrupted(stop.signum, (
            f"Stopped by {errors.signal_name(stop.signum)} at step {step}, saved in "
            f"{checkpoint_dir(workdir)}: run the same command again to resume from it."))
    outcome = "Preempted" if preempted else "Stopped early" if stopped_early else "Done"
    logging.info("%s at step %d; best validation loss %s.", outcome, step, host.best_val_loss)
    if jax.default_backend() == "cpu" and step == tc.num_steps:
        logging.info("%s", plan.tally(host.train_cpu_s))
    return {"step": step, "best_val_loss": host.best_val_loss, "stopped_early": stopped_early,
            "checkpoint_dir": str(checkpoint_dir(workdir)), "train_cpu_s": host.train_cpu_s}
