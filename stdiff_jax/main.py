"""Command line: train, sample and evaluate ST-Diff.

    python -m stdiff_jax.main --config=configs/etth.py:cpu [--workdir=DIR] [--mode=all]
        [--config.train.num_steps=100 ...]

--mode=all (the default) trains (resuming from the workdir's checkpoints), generates as many series
as the data set has windows (keeping samples the workdir has from the same checkpoint and
settings, samples.json, so a run stopped while scoring resumes there), and scores them; train,
sample and evaluate run one stage. Outputs in
the workdir: checkpoints/, config.json, metrics.jsonl, samples_unit.npy ([0, 1]), samples.npy
(original units), metrics.json and plots/. On a multi-host system (TPU pod, SLURM, MPI) every host
runs the same command; `jax.distributed.initialize()` is called when the environment asks for it.
Repeat runs start faster with a persistent compilation cache: JAX_COMPILATION_CACHE_DIR=DIR.
Also in the workdir: samples.csv (original units, the data's column names), fingerprint.json (the
data and network the workdir belongs to: another run stops before touching it) and
damaged_checkpoints/ (checkpoints that failed to read, moved aside). A problem with the data,
config or workdir is printed as one paragraph, without a traceback, with exit status 2: among
them a workdir another run is writing (lock.json names it), one that cannot be written (checked
before any long work) and a full disk. The workdir may be a gs:// path (workdir.py).

SIGINT (Ctrl-C) or SIGTERM (a batch scheduler's or a preempted VM's notice) during training saves
a checkpoint of the step in progress; during sampling, imputation or forecasting it leaves no
partial output (files are written whole). Either way one line says so, and the exit status is
128 + the signal's number (130, 143); the same command resumes.

Labelled data (--config.data.label_column=NAME on a csv: file, --config.data.labels=FILE.npy for
npy:, class_sines, ucr:NAME) trains a class-conditional model; --mode=sample then generates the
classes of --config.sample.classes ("protocol": as many per class as the data has; or
"NAME:COUNT,...") with classifier-free guidance --config.sample.guidance=w (0 unconditional, 1
conditional, > 1 guided), and samples.csv gets a label column (stdiff_jax/labels.py).

--mode=impute fills the NaNs of --config.condition.input=FILE.csv (imputed.csv,
imputed_quantiles.csv); --mode=forecast forecasts --config.condition.horizon=H steps after the
data set's series or that CSV (forecast.csv, forecast_quantiles.csv). What every mode reads
and writes: stdiff_jax/modes.py.
"""

import logging as std_logging
import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from stdiff_jax import checkpoint, config_checks, errors, modes, train
from stdiff_jax import workdir as workdir_lib
from stdiff_jax.data.loaders import custom_file

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/sines.py:smoke.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory; default workdirs/<data set>_L<seq_len>"
                    "[_<variant>], the data set being a csv:/npy: file's stem.")
flags.DEFINE_enum("mode", "all", ["train", "sample", "evaluate", "all", "impute", "forecast"],
                  "What to run.")
flags.DEFINE_bool("distributed", None, "Call jax.distributed.initialize() (multi-host); default: "
                  "when JAX_COORDINATOR_ADDRESS, SLURM or Open MPI launch variables say so.")
flags.DEFINE_bool("allow_workdir_mismatch", False, "Resume (or score) a workdir trained on other "
                  "data, or one whose fingerprint.json is lost, anyway; the network must still "
                  "match.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def launched_multi_process():
    """Whether the environment launched several processes that must join one JAX runtime."""
    env = os.environ
    return bool(env.get("JAX_COORDINATOR_ADDRESS")) or any(
        int(env.get(name, "1")) > 1 for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"))


class NoLibtpuNote(std_logging.Filter):
    """Drops JAX's INFO line "Unable to initialize backend 'tpu': ... Failed to open libtpu.so" that
    opens every run on a machine without libtpu: no TPU is usable there, and JAX warns by itself
    when it sees TPU hardware without libtpu. Other backend failures are still shown."""

    def filter(self, record):
        message = record.getMessage()
        return not (record.levelno < std_logging.WARNING and "backend 'tpu'" in message
                    and "Failed to open libtpu.so" in message)


def default_workdir(config):
    """workdirs/<data set>_L<seq_len>[_<variant>] of the final config (after --config overrides),
    the data set being a csv:/npy: file's stem (a ucr:NAME set's NAME): other data gets another
    workdir."""
    path = custom_file(config.data.name)
    data = config.data.name.rpartition(":")[2] if path is None else path.stem
    return os.path.join("workdirs", "_".join(filter(None, [data, f"L{config.data.seq_len}",
                                                           config.get("variant", "")])))


def print_scores(scores):
    """metric  mean +- 95% interval  (repeats), one line each, then the memorisation check's."""
    from stdiff_jax.metrics import MEMORISATION, memorisation  # evaluate has imported them

    rows = {name: s for name, s in scores.items() if name != MEMORISATION}
    width = max(map(len, rows))
    for name, s in rows.items():
        interval = "" if s["ci95"] is None else f" +- {s['ci95']:.4f}"
        print(f"{name:<{width}}  {s['mean']:.4f}{interval}  ({len(s['values'])} repeats)")
    if MEMORISATION in scores:
        print(memorisation.describe(scores[MEMORISATION]))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments {argv[1:]}.")
    logging.get_absl_handler().addFilter(checkpoint.QuietOrbax())
    std_logging.getLogger("jax._src.xla_bridge").addFilter(NoLibtpuNote())
    if FLAGS.distributed or (FLAGS.distributed is None and launched_multi_process()):
        jax.distributed.initialize()
    config = FLAGS.config
    config_checks.check_config(config, FLAGS.mode)
    workdir = workdir_lib.as_path(FLAGS.workdir or default_workdir(config))
    logging.info("workdir: %s (mode %s, process %d of %d, %d devices)", workdir,
                 FLAGS.mode, jax.process_index(), jax.process_count(), jax.device_count())
    try:
        with workdir_lib.raising_on_signals(), workdir_lib.locked(workdir):
            run_modes(config, workdir, FLAGS.mode, FLAGS.allow_workdir_mismatch)
    except Exception as e:  # Orbax's background saves raise a full disk's OSError wrapped
        disk = errors.disk_error(e)
        if disk is None or isinstance(e, errors.UserError):
            raise
        raise errors.UserError(errors.disk_error_message(disk, f"the workdir {workdir}")) from e


def run_modes(config, workdir, mode, allow_workdir_mismatch):
    """The stages of --mode, in order (what each reads and writes: modes.py)."""
    if mode in ("train", "all"):
        train.train_and_evaluate(config, workdir, allow_workdir_mismatch=allow_workdir_mismatch)
    if mode in ("sample", "all"):
        modes.sample_to_workdir(config, workdir, reuse=mode == "all")
    if mode in ("evaluate", "all"):
        print_scores(modes.evaluate_workdir(config, workdir,
                                            allow_workdir_mismatch=allow_workdir_mismatch))
    if mode == "impute":
        modes.impute_to_workdir(config, workdir)
    if mode == "forecast":
        modes.forecast_to_workdir(config, workdir, allow_workdir_mismatch=allow_workdir_mismatch)


if __name__ == "__main__":
    app.run(errors.reporting_user_errors(main), flags_parser=errors.flags_parser(FLAGS))
