"""Imputation and forecasting with a trained model, without retraining: the Python API.

`impute` (windows with NaN gaps), `forecast` (the steps after a history) and `impute_table` (a
long table covered by overlapping windows) take arrays in the data's original units and return
S samples each, the observed values exactly as given; `sample_windows` is the same on the data's
[-1, 1] scale for callers that hold scaled windows. The settings are config.condition's
(`condition_settings`: those of the run's own config, with per-call overrides). The sampling is
`observation.conditional_sample` with the trained network, chunked and sharded over the `data`
mesh like unconditional generation (`generate.py`): sample s of window n is the sampler's sample
n * S + s of the run of the key, the same for every chunk size and device layout. With
config.condition.correction="regression" the prior is the covariance of the model's training
windows (`prior_of`); "projection" needs no training data.

`modes.impute_to_workdir` and `modes.forecast_to_workdir` are the command line's --mode=impute
and --mode=forecast.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from stdiff_jax import column_values, generate, labels as labels_lib, observation, sampling
from stdiff_jax import saved_model
from stdiff_jax import mesh as mesh_lib
from stdiff_jax.data import dataset_of, tables
from stdiff_jax.errors import MissingFileError, UserError

# The fields of config.condition that conditional sampling reads.
SETTINGS = ("num_samples", "quantiles", "method", "num_steps", "jumps", "correction", "ridge",
            "renoise", "seed", "chunk_size")


# ------------------------------------------------------------------------------------------------
# The regression's prior of a trained model.
# ------------------------------------------------------------------------------------------------
def prior_of(tm, ridge, windows=None):
    """The `observation.SeriesPrior` of the training windows (N, L, K) of the
    `saved_model.TrainedModel` tm (`observation.regression_prior`): `windows` when given (a caller
    that has loaded and checked them), else those of its config's data set."""
    observation.check_regression_size(tm.series_shape)  # before the data loads
    if windows is None:
        windows = _training_windows(tm)
    # The covariance of what the videos are made of, seen through the affine video transform.
    windows = np.asarray(column_values.to_model_space(tm.host.column_values, windows))
    encode = saved_model.video_transform(tm.config.video, tm.host.normalizer)
    return observation.regression_prior(windows, ridge, encode, tm.series_shape)


def _training_windows(tm):
    """The windows of tm's data set, checked to be scaled as its training data was."""
    try:
        dataset = dataset_of(tm.config.data)
    except MissingFileError as e:
        raise MissingFileError(f"{e} The regression correction (config.condition.correction) "
                               f"reads the training data's covariance; without the data, use "
                               f"config.condition.correction=projection.") from e
    if not (np.allclose(dataset.scaler.min, tm.host.scaler.min)
            and np.allclose(dataset.scaler.max, tm.host.scaler.max)):
        raise UserError(f"The data set {tm.config.data.name!r} is not scaled as the model's "
                        f"training data was (it changed since training), so its covariance is not "
                        f"the model's prior: use config.condition.correction=projection.")
    return dataset.windows


# ------------------------------------------------------------------------------------------------
# Settings, and the sharded chunk sampler of a trained model.
# ------------------------------------------------------------------------------------------------
def condition_settings(config, **overrides):
    """config.condition with `overrides` applied and checked (a ConfigDict).

    The settings are those of the config passed: the run's own (config.json) for a workdir, so
    configs/base.py stays the one place of their defaults. A run's config from before a setting
    existed lacks it: pass it as an override, or load the run with a current config.
    """
    stored = config.condition.to_dict() if "condition" in config else {}
    missing = [name for name in SETTINGS if name not in stored and name not in overrides]
    if missing:
        raise UserError(f"The run's config has no config.condition.{{{', '.join(missing)}}} (its "
                        f"config.json predates them): pass them (e.g. impute(..., "
                        f"{missing[0]}=...)), or load the model with a current config, "
                        f"saved_model.load(<configs/DATA.py's get_config()>, workdir).")
    unknown = sorted(set(overrides) - set(stored) - set(SETTINGS))
    if unknown:
        raise UserError(f"Unknown conditional-sampling setting(s) {unknown}; use "
                        f"{', '.join(sorted(set(stored) | set(SETTINGS)))} (the fields of "
                        f"config.condition).")
    settings = ml_collections.ConfigDict(stored)
    settings.update(overrides)  # type-checked against the stored fields
    if settings.method not in sampling.METHODS:
        raise UserError(f"Unknown sampler config.condition.method={settings.method!r}; use one "
                        f"of {sampling.METHODS}.")
    if settings.correction not in observation.CORRECTIONS:
        raise UserError(f"Unknown config.condition.correction={settings.correction!r}; use one "
                        f"of {observation.CORRECTIONS}.")
    if not 0.0 < settings.ridge < 1.0:
        raise UserError(f"config.condition.ridge must lie in (0, 1) (a share of the mean "
                        f"variance), got {settings.ridge}.")
    for name in ("num_samples", "num_steps", "jumps"):
        if settings[name] < 1:
            raise UserError(f"config.condition.{name} must be >= 1, got {settings[name]}.")
    if not all(0.0 < q < 1.0 for q in settings.quantiles):
        raise UserError(f"config.condition.quantiles must lie in (0, 1), got "
                        f"{tuple(settings.quantiles)}.")
    return settings


def compile_conditional_sampler(tm, settings, mesh, chunk_size, windows=None):
    """The `generate.compile_chunk_sampler` of conditional sampling for the
    `saved_model.TrainedModel` tm: fn(params, key, first_index, observed, mask[, labels]) ->
    (chunk_size, L, K) in model space, `observation.conditional_sample` with `settings`
    (config.condition's). A model with classes also takes the chunk's labels; settings.label is
    the class ("" unconditional, guided at settings.guidance otherwise). The regression
    correction reads the covariance of the training data (`prior_of`; `windows`: its windows, if
    the caller holds them)."""
    config, host = tm.config, tm.host
    prior = prior_of(tm, settings.ridge, windows) if settings.correction == "regression" else None
    encode = saved_model.video_transform(config.video, host.normalizer)
    decode = saved_model.series_decoder(config.video, host.normalizer, host.series_shape[0])
    options = generate.sampler_settings(config, settings.method, settings.num_steps)

    def sample_fn(denoise, key, first_index, observed, mask):
        return observation.conditional_sample(
            denoise, encode, decode, observed, mask, tm.video_shape, key, jumps=settings.jumps,
            renoise=settings.renoise, prior=prior, first_index=first_index, **options)

    guidance = settings.guidance if settings.get("label") else 1.0  # "no class": exactly uncond.
    return generate.compile_chunk_sampler(sample_fn, mesh, chunk_size, apply_fn=tm.apply_fn,
                                          num_classes=tm.model.num_classes, guidance=guidance,
                                          num_rows=2, setting="config.condition.chunk_size")


def sample_windows(tm, observed, mask, settings, mesh=None, progress=sampling.log_progress,
                   sampler=None):
    """(N, S, L, K) conditional samples in [-1, 1] of windows `observed` (N, L, K), float32 in
    [-1, 1] where `mask` (N, L, K) is True, and exactly those values there; S =
    settings.num_samples.

    The N * S rows run in chunks of settings.chunk_size (0: from free memory) over every device;
    the last chunk is padded with copies of the last window and trimmed. sampler: a
    `compile_conditional_sampler` of these settings and chunk size, to reuse one compilation.
    """
    mesh = mesh_lib.make_mesh() if mesh is None else mesh
    n, s = observed.shape[0], settings.num_samples
    rows = n * s
    chunk_size = settings.chunk_size or generate.auto_chunk_size(mesh, tm.model, tm.params,
                                                                 tm.video_shape, rows)
    sampler = sampler or compile_conditional_sampler(tm, settings, mesh, chunk_size)
    data = NamedSharding(mesh, P(mesh_lib.DATA_AXIS))
    key = jax.random.PRNGKey(settings.seed)
    given, mask = np.asarray(observed, np.float32), np.asarray(mask, bool)
    # The constraint is affine in the space the videos are made of (white columns' normal scores).
    observed = np.asarray(jnp.where(mask, column_values.to_model_space(tm.host.column_values,
                                                                       given), 0.0))
    labels = labels_lib.condition_labels(settings, tm.host, chunk_size)  # () or ((chunk,),)

    def run_chunk(first):
        window = np.minimum(np.arange(first, first + chunk_size) // s, n - 1)  # (chunk,)
        return sampler(tm.params, key, first, mesh_lib.shard_batch(observed[window], data),
                       mesh_lib.shard_batch(mask[window], data),
                       *(mesh_lib.shard_batch(a, data) for a in labels))

    logging.info("Conditional sampling: %d windows x %d samples with %s, %d steps, %d jump(s), "
                 "in chunks of %d on %d devices.", n, s, settings.method, settings.num_steps,
                 settings.jumps, chunk_size, mesh.size)
    out = sampling.run_chunks(run_chunk, rows, chunk_size, fetch=mesh_lib.to_host,
                              progress=progress).reshape(n, s, *observed.shape[1:])
    out = np.asarray(column_values.from_model_space(tm.host.column_values, out))
    return np.where(mask[:, None], given[:, None], out)


# ------------------------------------------------------------------------------------------------
# The Python API, in original units.
# ------------------------------------------------------------------------------------------------
def as_trained_model(model, mesh=None):
    """A `saved_model.TrainedModel` as given, or the one of a workdir (its config and best
    checkpoint)."""
    if isinstance(model, saved_model.TrainedModel):
        return model
    return saved_model.load(saved_model.load_config(model), model, mesh)


def _windows_of(tm, series, mask, what):
    """(raw (N, L, K) float64, mask (N, L, K) bool, whether one window (L, K) was given)."""
    raw = np.asarray(series, np.float64)
    single = raw.ndim == 2
    raw = raw[None] if single else raw
    shape = tuple(tm.series_shape)
    if raw.ndim != 3 or raw.shape[1:] != shape:
        raise UserError(f"{what} must have shape (N, {shape[0]}, {shape[1]}) or {shape} (the "
                        f"model's windows: L = {shape[0]} steps, K = {shape[1]} columns), got "
                        f"{np.shape(series)}.")
    if mask is None:
        mask = np.isfinite(raw)
    else:
        mask = np.asarray(mask, bool)
        mask = mask[None] if single else mask
        if mask.shape != raw.shape:
            raise UserError(f"The mask has shape {np.shape(mask)}; it must match the series' "
                            f"{np.shape(series)}.")
        if not np.all(np.isfinite(raw[mask])):
            raise UserError("The series has NaN or inf values where the mask says observed.")
    return raw, mask, single


def _sample_raw(tm, raw, mask, settings, mesh, progress):
    """(N, S, L, K) samples in original units with the given values put back where observed."""
    scaler = tm.host.scaler
    observed = np.where(mask, 2.0 * scaler.transform(np.where(mask, raw, 0.0)) - 1.0, 0.0)
    series = sample_windows(tm, observed.astype(np.float32), mask, settings, mesh, progress)
    samples = scaler.inverse((series.astype(np.float64) + 1.0) / 2.0)  # (N, S, L, K)
    return np.where(mask[:, None], raw[:, None], samples)


def impute(model, series, mask=None, *, mesh=None, progress=sampling.log_progress, **settings):
    """S samples of every window with its missing values filled in, in original units.

    Args:
        model: a `saved_model.TrainedModel`, or the workdir of a trained run.
        series: (N, L, K) windows, or one (L, K), in the data's original units; NaN where missing.
        mask: bool of the same shape, True where observed; default: where series is finite.
        mesh: the device mesh (default: every device).
        progress: called with a `progress.Progress` after every chunk (None: silent).
        **settings: fields of config.condition to override: num_samples (S), method, num_steps,
            jumps, seed, chunk_size.

    Returns:
        (N, S, L, K) float64, or (S, L, K) for one window; observed values exactly as given.
        A window with nothing missing comes back as given; nothing missing at all is an error.
    """
    tm = as_trained_model(model, mesh)
    raw, mask, single = _windows_of(tm, series, mask, "impute's series")
    if mask.all():
        raise UserError("Nothing to impute: every value is observed (mark missing values NaN, "
                        "or False in the mask).")
    tables.check_windows_observed(mask)
    samples = _sample_raw(tm, raw, mask, condition_settings(tm.config, **settings), mesh,
                          progress)
    return samples[0] if single else samples


def forecast(model, history, horizon, *, mesh=None, progress=sampling.log_progress, **settings):
    """S sample paths of the `horizon` steps after each history, in original units.

    Args:
        model: a `saved_model.TrainedModel`, or the workdir of a trained run.
        history: (N, R, K) series, or one (R, K), in original units (NaN: missing). The last
            L - horizon rows condition the forecast; a shorter history is padded in front with
            missing rows.
        horizon: H steps to forecast, 1 <= H < L (the model sees windows of L steps).
        mesh, progress, **settings: as for `impute`.

    Returns:
        (N, S, H, K) float64, or (S, H, K) for one history.
    """
    tm = as_trained_model(model, mesh)
    length, num_columns = tm.series_shape
    if not 1 <= horizon < length:
        raise UserError(f"The forecast horizon must satisfy 1 <= horizon < L = {length} (the "
                        f"model's window holds the history and the forecast), got {horizon}.")
    raw = np.asarray(history, np.float64)
    single = raw.ndim == 2
    raw = raw[None] if single else raw
    if raw.ndim != 3 or raw.shape[2] != num_columns or raw.shape[1] < 1:
        raise UserError(f"forecast's history must have shape (N, R, {num_columns}) or "
                        f"(R, {num_columns}) with R >= 1 rows, got {np.shape(history)}.")
    context = min(raw.shape[1], length - horizon)
    windows = np.full((raw.shape[0], length, num_columns), np.nan)
    windows[:, length - horizon - context:length - horizon] = raw[:, -context:]
    mask = np.isfinite(windows)
    samples = _sample_raw(tm, windows, mask, condition_settings(tm.config, **settings), mesh,
                          progress)[:, :, length - horizon:]
    return samples[0] if single else samples


def covering_windows(num_rows, length, stride):
    """Starts (W,) of windows of `length` every `stride` rows, the last one ending at the last
    row (one window at 0 when num_rows <= length), and for every row the window whose centre is
    nearest (R,): the window that sees the most context on both sides of it."""
    last = max(num_rows - length, 0)
    starts = np.arange(0, last + 1, stride)
    if starts[-1] != last:
        starts = np.append(starts, last)
    centres = starts + (length - 1) / 2
    owner = np.argmin(np.abs(np.arange(num_rows)[:, None] - centres[None, :]), axis=1)
    return starts, owner


def impute_table(model, table, *, stride=None, mesh=None, progress=sampling.log_progress,
                 **settings):
    """S samples of a whole table (R, K), any R, with its NaNs filled in, in original units.

    Windows of the model's length L, every `stride` rows (default L // 2), cover the table (a
    table shorter than L is padded at the end with missing rows); each row takes its values from
    the window whose centre is nearest, so overlapping windows are reconciled towards the most
    context on both sides. Only windows that own a missing value are sampled. The samples of one
    row are those of one window: per-value quantiles are exact marginals of that window's
    conditional, but a sample path may jump where the owning window changes.

    Returns:
        (S, R, K) float64; observed values exactly as given.
    """
    tm = as_trained_model(model, mesh)
    length, num_columns = tm.series_shape
    raw = np.asarray(table, np.float64)
    if raw.ndim != 2 or raw.shape[1] != num_columns:
        raise UserError(f"impute_table needs a (rows, {num_columns}) table, got {raw.shape}.")
    mask = np.isfinite(raw)
    if mask.all():
        raise UserError("Nothing to impute: the table has no missing (NaN or empty) values.")
    settings = condition_settings(tm.config, **settings)
    num_rows = raw.shape[0]
    padded = np.concatenate([raw, np.full((max(length - num_rows, 0), num_columns), np.nan)])
    starts, owner = covering_windows(padded.shape[0], length, stride or max(1, length // 2))
    needed = np.unique(owner[:num_rows][~mask.all(axis=1)])  # windows owning a missing value
    windows = np.stack([padded[s:s + length] for s in starts[needed]])  # (W, L, K)
    tables.check_windows_observed(np.isfinite(windows), starts[needed], num_rows)
    samples = _sample_raw(tm, windows, np.isfinite(windows), settings, mesh, progress)

    out = np.broadcast_to(raw, (settings.num_samples, *raw.shape)).copy()  # (S, R, K)
    for w, start in zip(needed, starts[needed]):
        rows = np.flatnonzero(owner[:num_rows] == w)
        out[:, rows] = samples[np.searchsorted(needed, w)][:, rows - start]
    return np.where(mask, raw, out)


def sample_quantiles(samples, quantiles, axis=0):
    """Quantiles of S samples along `axis` as predictions of one more draw of their distribution.

    The plotting position q (S + 1) (numpy's "weibull" method) puts the quantile so that a new
    draw falls below it with probability q in expectation: the 5%-95% interval of S >= 19 samples
    covers 90% of new draws (fewer samples clamp it to their extremes, (S - 1) / (S + 1)).
    numpy's default (linear, position q (S - 1) + 1) covers 0.9 (S - 1) / (S + 1): 81% at
    S = 20 and 88% at S = 100, which reads as an over-confident model where the samples are
    right (tests/test_conditional.py). The median is the same for both.
    """
    return np.quantile(samples, quantiles, axis=axis, method="weibull")


