"""What each command-line mode reads from the workdir and writes to it; main.py runs them.

| --mode | reads | writes |
| --- | --- | --- |
| train | the data set | checkpoints/, config.json, fingerprint.json, metrics.jsonl (`train.py`) |
| sample | the best checkpoint | samples_unit.npy, samples.npy, samples.csv[, samples_labels.npy], samples.json |
| evaluate | samples_unit.npy[, samples_labels.npy], the data set | metrics.json, plots/ |
| impute | the best checkpoint, condition.input | imputed(_quantiles).csv |
| forecast | the best checkpoint, the data set or condition.input | forecast(_quantiles).csv |

Each function here takes (config, workdir), holds the workdir's lock (`workdir.locking`), and
writes its files from process 0, whole and together once the work is done (`workdir.writing`):
an error or a signal before leaves the earlier ones as they were. The work itself is done by
library functions of arrays: `generate.sample_series`, `metrics.evaluate`,
`conditional.impute_table` and `conditional.forecast`.

The samples: samples_unit.npy holds the generated series in [0, 1], as generated (unclipped),
samples.npy and samples.csv the same in original units (the data scaler's inverse). Only scoring
clips them to [0, 1], as the protocol requires, so a drift out of range stays visible in the
files.
"""

import csv
import json
import os
import pathlib
import tempfile

import jax
import numpy as np
from absl import logging

from stdiff_jax import checkpoint, conditional, fingerprint, generate, saved_model
from stdiff_jax import mesh as mesh_lib
from stdiff_jax import workdir as workdir_lib
from stdiff_jax.data import dataset_of, tables
from stdiff_jax.data.held_out import held_out_windows
from stdiff_jax.data.tables import write_windows_csv
from stdiff_jax.errors import MissingFileError, UserError

SAMPLES_UNIT, SAMPLES_RAW, METRICS = "samples_unit.npy", "samples.npy", "metrics.json"
SAMPLES_CSV = "samples.csv"
SAMPLES_LABELS = "samples_labels.npy"  # a labelled model's: the class index each sample asked
SAMPLES_RECORD = "samples.json"  # the checkpoint step and sampling settings the samples came from
CSV_BYTES_PER_VALUE = 16  # samples.csv writes "%.9g" and a comma: at most 16 characters a value
IMPUTED, IMPUTED_QUANTILES = "imputed.csv", "imputed_quantiles.csv"
FORECAST, FORECAST_QUANTILES = "forecast.csv", "forecast_quantiles.csv"


# ------------------------------------------------------------------------------------------------
# --mode=sample.
# ------------------------------------------------------------------------------------------------
def samples_record(tm, num_samples):
    """What decides the samples: the checkpoint step, their number and config.sample (which
    says EMA or raw parameters; the model, data and video settings are the workdir's own)."""
    return {"step": tm.step, "num_samples": int(num_samples),
            "sample": json.loads(tm.config.sample.to_json())}


def _reusable(workdir, record, records):
    """Whether workdir holds every file of `records` and a samples.json equal to `record`."""
    if not all((workdir / name).exists() for name in records + [SAMPLES_RECORD]):
        return False
    try:
        return json.loads((workdir / SAMPLES_RECORD).read_text()) == record
    except (OSError, ValueError):
        return False


@workdir_lib.locking
def sample_to_workdir(config, workdir, reuse=False):
    """Generates config.sample.num_samples series (0: as many as the data set has windows; a
    labelled model: config.sample.classes) with the trained model of workdir and saves them as
    samples_unit.npy ([0, 1]), samples.npy (original units) and samples.csv (original units;
    columns window, t, label for a labelled model, and the data's column names,
    `tables.write_windows_csv`), and a labelled model's class indices as samples_labels.npy.
    Returns the [0, 1] samples.

    The workdir's disk is checked for their size before the generation. The files replace the
    workdir's earlier ones together, once every series is generated (`workdir.writing`): an
    error or a signal before leaves those as they were. samples.json records what they came
    from (`samples_record`); with reuse (--mode=all, so that a run stopped while scoring resumes
    without generating again) samples of the same record are kept and None is returned.
    """
    workdir = workdir_lib.as_path(workdir)
    mesh = mesh_lib.make_mesh()
    tm = saved_model.load(config, workdir, mesh)
    host = tm.host
    labels, num_samples = generate.requested_samples(None, tm.config.sample, host)
    record = samples_record(tm, num_samples)
    records = [SAMPLES_UNIT, SAMPLES_RAW, SAMPLES_CSV] + ([] if labels is None
                                                          else [SAMPLES_LABELS])
    if reuse and _reusable(workdir, record, records):
        logging.info("Keeping the workdir's %d samples: they came from step %d with these "
                     "sampling settings (%s).", num_samples, tm.step, SAMPLES_RECORD)
        return None
    length, k = host.series_shape
    workdir_lib.check_free_space(  # two .npy files of float32 and the CSV, with its indices
        workdir, num_samples * length * (2 * 4 * k + CSV_BYTES_PER_VALUE * (k + 3)),
        f"{num_samples} samples (samples.npy, samples_unit.npy, samples.csv)",
        "lower config.sample.num_samples")
    unit, labels = generate.sample_series(tm, labels, mesh=mesh)  # (N, L, K) in [0, 1]
    if jax.process_index() == 0:
        raw = host.scaler.inverse(unit).astype(np.float32)
        names = host.column_names or [f"c{k}" for k in range(raw.shape[-1])]  # older checkpoints
        with workdir_lib.writing(*(workdir / name for name in records + [SAMPLES_RECORD])) as files:
            np.save(files[0], unit)
            np.save(files[1], raw)
            write_windows_csv(files[2], raw, names,
                              None if labels is None else np.asarray(host.class_names)[labels])
            if labels is not None:
                np.save(files[3], labels)
            pathlib.Path(files[-1]).write_text(json.dumps(record, indent=1))
    return unit


# ------------------------------------------------------------------------------------------------
# --mode=evaluate.
# ------------------------------------------------------------------------------------------------
@workdir_lib.locking
def evaluate_workdir(config, workdir, real_unit=None, allow_workdir_mismatch=False):
    """Scores workdir/samples_unit.npy, clipped to [0, 1], against the real [0, 1] windows, and
    checks them for memorisation against `held_out_windows` of the data set; writes metrics.json
    (and plots into workdir/plots when config.eval.plots: the data's column names title them, and
    loss.png shows the training log). Returns the metrics dict.

    real_unit: the real windows; None loads config.data.name, checked against the data the
    workdir was trained on (`fingerprint.check`; allow_workdir_mismatch scores other data anyway).
    Given real windows leave the memorisation check without a reference (not available).
    """
    from stdiff_jax import metrics  # Only this mode needs the metrics' networks.

    workdir = workdir_lib.as_path(workdir)
    path = workdir / SAMPLES_UNIT
    if not path.exists():
        raise MissingFileError(f"No samples at {path}: run --mode=sample (or all) first.")
    fake = workdir_lib.load_npy(path)
    outside = np.mean((fake < 0) | (fake > 1))
    if outside:  # The protocol scores [0, 1] windows (Diffusion-TS clamps its samples too).
        logging.info("Clipping %.3f%% of the sample values into [0, 1] for scoring.", 100 * outside)
    fake = np.clip(fake, 0.0, 1.0)
    names = dataset = None  # of the columns, for the plots
    held_out, held_out_source = None, "the real windows were given without held-out ones."
    if real_unit is None:
        dataset = fingerprint.checked_dataset(config, workdir, allow_workdir_mismatch)
        real_unit, names = dataset.unit_windows, dataset.column_names
        held_out, held_out_source = held_out_windows(dataset)
    scores = metrics.evaluate(real_unit, fake, repeats=config.eval.repeats, seed=config.eval.seed,
                              metrics=tuple(config.eval.metrics), held_out=held_out,
                              held_out_source=held_out_source)
    if getattr(dataset, "labels", None) is not None and (workdir / SAMPLES_LABELS).exists():
        from stdiff_jax.metrics import classes
        fake_labels = workdir_lib.load_npy(workdir / SAMPLES_LABELS)
        scores.update(classes.evaluate_labelled(dataset, fake, fake_labels, config.eval))
        classes.with_per_class(scores[metrics.MEMORISATION], dataset, fake, fake_labels,
                               held_out, seed=config.eval.seed)
    if jax.process_index() == 0:
        workdir_lib.write_json(workdir / METRICS, checkpoint.to_json(scores))
        if config.eval.plots:
            save_plots(real_unit, fake, workdir, names)
    return scores


def save_plots(real_unit, fake, workdir, names):
    """Draws the evaluation plots, and loss.png from the training log, into workdir/plots: drawn
    in a local temporary folder (matplotlib writes local files; the workdir may be a bucket), then
    each written whole."""
    from stdiff_jax.metrics import plots

    with tempfile.TemporaryDirectory() as local:
        try:
            drawn = plots.save_plots(real_unit, fake, local, names=names)
            if (workdir / saved_model.METRIC_LOG).exists():
                # read and rewritten without a line a kill cut
                rows, _ = workdir_lib.read_jsonl(workdir / saved_model.METRIC_LOG)
                log = pathlib.Path(local) / saved_model.METRIC_LOG
                log.write_text("".join(json.dumps(row) + "\n" for row in rows))
                drawn.append(plots.save_loss_curve(log, local))
        except ImportError as e:  # matplotlib and scikit-learn are an optional extra
            logging.warning("Skipping the plots: %s", e)
            return
        (workdir / "plots").mkdir(exist_ok=True)
        paths = [workdir / "plots" / os.path.basename(p) for p in drawn]
        for source, target in zip(drawn, paths):
            workdir_lib.write_bytes(target, pathlib.Path(source).read_bytes())
    logging.info("Plots: %s", ", ".join(map(str, paths)))


# ------------------------------------------------------------------------------------------------
# --mode=impute and --mode=forecast.
# ------------------------------------------------------------------------------------------------
def read_input_csv(path, column_names):
    """A user's CSV -> (raw (R, K) float64 with NaN where empty, (name, values) of a dropped
    date-like first column or None); its columns must be the training data's."""
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(f"No input CSV at {path} (config.condition.input).")
    raw, names, dates = tables.read_csv(path, keep_dates=True)
    if tuple(names) != tuple(column_names):
        raise UserError(f"{path} has the columns {list(names)}, but the model was trained on "
                        f"{list(column_names)}: give the same columns in the same order (a "
                        f"date-like first column may come before them).")
    return raw, dates


def _write_csv(path, index, names, values):
    """values (R, C) under `names`, after the index column (name, R values) when there is one."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(([index[0]] if index else []) + list(names))
        for r, row in enumerate(values):
            writer.writerow(([index[1][r]] if index else []) + [repr(float(v)) for v in row])


def _write_tables(paths, index, contents):
    """Writes each (names, values) of `contents` as the CSV at its path in `paths` (`_write_csv`),
    all together and each whole (`workdir.writing`), from process 0."""
    if jax.process_index() == 0:
        with workdir_lib.writing(*paths) as files:
            for file, (names, values) in zip(files, contents):
                _write_csv(file, index, names, values)


def _quantile_columns(samples, names, quantiles):
    """(R, Q * K) per-value quantiles of samples (S, R, K), named `<column>_q<percent>`."""
    q = conditional.sample_quantiles(samples, quantiles)  # (Q, R, K)
    values = np.concatenate(list(q), axis=1)  # (R, Q * K): quantile-major
    labels = [f"{name}_q{100 * level:g}" for level in quantiles for name in names]
    return values, labels


def _output_dir(config, workdir):
    """config.condition.output_dir (else the workdir), created and checked writable: before the
    sampling, whose work a folder that cannot be written would waste."""
    return workdir_lib.writable_folder(config.condition.output_dir or workdir, "the output folder")


def column_names_of(tm):
    """The K column names the model was trained on; checkpoints older than the host item's names
    take them from the config's data set."""
    config = tm.config
    return tm.host.column_names or dataset_of(config.data).column_names


@workdir_lib.locking
def impute_to_workdir(config, workdir):
    """--mode=impute: fills the NaNs of config.condition.input with the median of S samples
    (imputed.csv, the input's layout) and writes per-value quantiles (imputed_quantiles.csv),
    both whole and together once the sampling is done. Returns the two paths."""
    settings = conditional.condition_settings(config)
    if not settings.input:
        raise UserError("--mode=impute needs a CSV to fill in: --config.condition.input=FILE.csv "
                        "(original units, the training columns, empty or NaN cells missing).")
    out = _output_dir(config, workdir)
    tm = saved_model.load(config, workdir, mesh_lib.make_mesh())
    names = column_names_of(tm)
    raw, index = read_input_csv(settings.input, names)
    if np.isfinite(raw).all():
        raise UserError(f"{settings.input} has no empty or NaN cells: nothing to impute.")
    samples = conditional.impute_table(tm, raw)  # (S, R, K)
    completed = np.where(np.isfinite(raw), raw, np.median(samples, axis=0))
    quantiles, labels = _quantile_columns(samples, names, tuple(settings.quantiles))
    paths = out / IMPUTED, out / IMPUTED_QUANTILES
    _write_tables(paths, index, [(names, completed), (labels, quantiles)])
    logging.info("Imputed %d of %d values: %s and %s.", (~np.isfinite(raw)).sum(), raw.size,
                 *paths)
    return paths


@workdir_lib.locking
def forecast_to_workdir(config, workdir, allow_workdir_mismatch=False):
    """--mode=forecast: the config.condition.horizon steps after the end of the data set's series
    (or of config.condition.input): the median of S samples (forecast.csv) and per-value quantiles
    (forecast_quantiles.csv), rows numbered by steps ahead, both whole and together once the
    sampling is done. Returns the two paths.

    allow_workdir_mismatch: forecast after the series of other data than the workdir was trained
    on (or with no readable record of it; `fingerprint.check`)."""
    settings = conditional.condition_settings(config)
    length = config.data.seq_len
    if not 1 <= settings.horizon < length:
        raise UserError(f"--mode=forecast needs 1 <= config.condition.horizon < seq_len = "
                        f"{length} (the model's window holds history and forecast), got "
                        f"{settings.horizon}.")
    out = _output_dir(config, workdir)
    tm = saved_model.load(config, workdir, mesh_lib.make_mesh())
    names = column_names_of(tm)
    if settings.input:
        history, _ = read_input_csv(settings.input, names)
    else:  # The end of the data set's series: its last window, of the data the model learnt.
        dataset = fingerprint.checked_dataset(config, workdir, allow_workdir_mismatch)
        history = dataset.to_raw(dataset.windows[-1])
    samples = conditional.forecast(tm, history, settings.horizon)  # (S, H, K)
    quantiles, labels = _quantile_columns(samples, names, tuple(settings.quantiles))
    index = ("step", [str(h) for h in range(1, settings.horizon + 1)])
    paths = out / FORECAST, out / FORECAST_QUANTILES
    _write_tables(paths, index, [(names, np.median(samples, axis=0)), (labels, quantiles)])
    logging.info("Forecast %d steps: %s and %s.", settings.horizon, *paths)
    return paths
