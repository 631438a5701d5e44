"""Every config value checked before any work: `check_config(config, mode)`.

Unchecked, a bad value surfaces late: `train.batch_size=0` as a ZeroDivisionError, a sampler or
metric typo or a negative sample count only after `--mode=all` has trained, and a sample count
the machine cannot hold after hours of generation. main.py calls `check_config` first; a notebook
that calls `train.train_and_evaluate` or `modes.sample_to_workdir` can call it too. Every
problem found is reported at once, in one `UserError` paragraph. Checks that need the data (a
batch larger than the windows, a CSV's columns) stay with the code that loads it.
"""

import difflib
import math

from stdiff_jax import budget, conditional, diffusion, generate, sampling, video
from stdiff_jax import mesh as mesh_lib
from stdiff_jax.data import synthetic
from stdiff_jax.data.sources import SOURCES
from stdiff_jax.errors import UserError
from stdiff_jax.models.stdiff import DTYPES
from stdiff_jax.schedule import Schedule
from stdiff_jax.stft import check_stft_settings

CHOICES = {"sample.method": (sampling.AUTO, *sampling.METHODS), "sample.grid": sampling.GRIDS,
           "diffusion.loss_weighting": diffusion.WEIGHTINGS,
           "video.normalizer": video.NORMALIZERS, "model.dtype": tuple(sorted(DTYPES))}

# (test, what the value must be) of each kind of range; NaN fails every test.
AT_LEAST_1 = (lambda v: v >= 1, ">= 1")
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
POSITIVE = (lambda v: 0 < v < math.inf, "> 0 and finite")
FRACTION = (lambda v: 0 <= v < 1, "in [0, 1)")
CLOSED_UNIT = (lambda v: 0 <= v <= 1, "in [0, 1]")
RANGES = {
    "data.seq_len": (lambda v: v >= 2, ">= 2"),
    "data.val_fraction": FRACTION,
    "data.test_fraction": FRACTION,
    "data.test_position": CLOSED_UNIT,
    "data.seed": NON_NEGATIVE,
    "video.ema_alpha": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "video.white_below": FRACTION,
    "video.max_levels": NON_NEGATIVE,
    "model.patch_freq": AT_LEAST_1,
    "model.patch_cov": AT_LEAST_1,
    "model.depth": AT_LEAST_1,
    "model.hidden": AT_LEAST_1,
    "model.heads": AT_LEAST_1,
    "model.mlp_ratio": POSITIVE,
    "model.label_dropout": FRACTION,
    "model.prior_rank": NON_NEGATIVE,
    "model.prior_components": AT_LEAST_1,
    "model.prior_windows": NON_NEGATIVE,
    "diffusion.cov_loss_weight": NON_NEGATIVE,
    "train.batch_size": AT_LEAST_1,
    "train.num_steps": AT_LEAST_1,
    "train.learning_rate": POSITIVE,
    "train.min_learning_rate": NON_NEGATIVE,
    "train.weight_decay": NON_NEGATIVE,
    "train.grad_clip": POSITIVE,
    "train.ema_decay": FRACTION,
    "train.log_every": AT_LEAST_1,
    "train.eval_every": AT_LEAST_1,
    "train.checkpoint_every": AT_LEAST_1,
    "train.patience": NON_NEGATIVE,
    "train.keep_checkpoints": AT_LEAST_1,
    "sample.num_steps": NON_NEGATIVE,
    "sample.eta": CLOSED_UNIT,
    "sample.clip_x0": NON_NEGATIVE,
    "sample.num_samples": NON_NEGATIVE,
    "sample.chunk_size": NON_NEGATIVE,
    "sample.guidance": NON_NEGATIVE,
    "eval.repeats": AT_LEAST_1,
    "condition.horizon": NON_NEGATIVE,
    "condition.chunk_size": NON_NEGATIVE,
    "condition.guidance": NON_NEGATIVE,
}

# Float32 copies of the generated series the sample mode holds at its peak: the chunks and their
# concatenation, the [0, 1] and raw-unit arrays (float64 on the way) and the CSV's float64 table.
SAMPLE_COPIES = 8
MEMORY_SHARE = 0.5  # of the host's available memory the samples may take (the rest: the model)


def check_config(config, mode="all"):
    """Raises one UserError listing every config value that would fail the run in `mode`
    (main.py's --mode: train, sample, evaluate, all, impute or forecast), before any work.

    Checked: counts and sizes in range (RANGES), choices (CHOICES, the conditional settings),
    the STFT against seq_len, the schedule, batch and chunk sizes against the device count, the
    metric names (modes that evaluate) and the memory the generated samples need (modes that
    sample). The forecast horizon's upper bound, seq_len, is `modes.forecast_to_workdir`'s
    first check.
    """
    problems = value_problems(config) + _raised(*_existing_checks(config, mode))
    if mode in ("evaluate", "all"):
        problems += metric_name_problems(config.eval.metrics)
        problems += class_metric_problems(config.eval.get("class_metrics", ()))
    if mode in ("sample", "all") and config.sample.num_samples > 0:
        problems += sample_memory_problems(config.sample.num_samples, config.data.seq_len,
                                           known_num_columns(config.data.name))
    if len(problems) == 1:
        raise UserError(f"{problems[0]}. Nothing was run: fix it with "
                        f"--config.SECTION.FIELD=VALUE.")
    if problems:
        raise UserError(f"The config has {len(problems)} bad values: {'; '.join(problems)}. "
                        f"Nothing was run: fix them with --config.SECTION.FIELD=VALUE.")


def value_problems(config):
    """Sentences naming each value outside its RANGES or CHOICES, and a minimum learning rate
    above the peak."""
    from_budget = {f"train.{key}" for key in budget.SCHEDULE_KEYS
                   if config.train.get("budget_seconds") and _get(config, f"train.{key}") == 0}
    problems = [f"config.{path}={value!r} must be {must}"
                for path, (ok, must) in RANGES.items()
                if path not in from_budget  # 0: what the CPU budget leaves (budget.py)
                and (value := _get(config, path)) is not None and not ok(value)]
    problems += [f"config.{path}={value!r} is not one of {choices}"
                 for path, choices in CHOICES.items()
                 if (value := _get(config, path)) is not None and value not in choices]
    tc = config.train
    if tc.min_learning_rate > tc.learning_rate > 0:
        problems.append(f"config.train.min_learning_rate={tc.min_learning_rate} must not exceed "
                        f"config.train.learning_rate={tc.learning_rate}")
    return problems


def _existing_checks(config, mode):
    """The checks the stages run themselves, as calls that raise a UserError, so they run here
    before any work; those whose inputs `value_problems` already refuses are left out."""
    mesh = mesh_lib.make_mesh()
    tc, length = config.train, config.data.seq_len
    checks = [lambda: Schedule.from_config(config.diffusion),
              lambda: conditional.condition_settings(config)]
    if tc.budget_seconds:  # the budget fields, and the warmup against a set num_steps
        checks.append(lambda: budget.check(tc))
    if tc.batch_size and mode in ("train", "all"):  # under a budget, 0 until the data is read
        checks.append(lambda: mesh_lib.check_divisible(tc.batch_size, mesh))
    checks += [lambda path=path: mesh_lib.check_divisible(_get(config, path), mesh,
                                                          f"config.{path}")
               for path in ("sample.chunk_size", "condition.chunk_size") if _get(config, path)]
    if length >= 2:
        checks.append(lambda: check_stft_settings(length, config.video.n_fft, config.video.hop,
                                                  config.video.window))
    if not tc.budget_seconds and tc.num_steps >= 1:
        checks.append(lambda: budget.check_warmup(tc))
    return checks


def metric_name_problems(metrics):
    """Sentences naming each unknown metric of config.eval.metrics, with the closest known name."""
    from stdiff_jax.metrics import METRICS  # Its networks load only where a mode evaluates.

    if not metrics:
        return [f"config.eval.metrics is empty: name at least one of {', '.join(METRICS)}"]
    problems = []
    for name in metrics:
        if name not in METRICS:
            close = difflib.get_close_matches(name, METRICS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"config.eval.metrics names an unknown metric {name!r}{hint}; the "
                            f"metrics are {', '.join(METRICS)}")
    return problems


def class_metric_problems(names):
    """Sentences naming each unknown metric of config.eval.class_metrics."""
    from stdiff_jax.metrics.classes import CLASS_METRICS  # As METRICS: where a mode evaluates.

    return [f"config.eval.class_metrics names an unknown metric {name!r}; the class metrics are "
            f"{', '.join(CLASS_METRICS)}" for name in names if name not in CLASS_METRICS]


def sample_memory_problems(num_samples, seq_len, num_columns=1, available=None):
    """A sentence when num_samples series (seq_len, num_columns) need more than MEMORY_SHARE of
    the host's available memory (SAMPLE_COPIES float32 copies), saying how many fit; else [].

    num_columns: K where it is known (`known_num_columns`); 1 is a lower bound (the config alone
    does not say how many columns a CSV has), which only lets more through."""
    available = generate.host_available_bytes() if available is None else available
    per_series = seq_len * num_columns * 4 * SAMPLE_COPIES
    fits = int(MEMORY_SHARE * available // per_series)
    if num_samples <= fits:
        return []
    return [f"config.sample.num_samples={num_samples} series of {seq_len} x {num_columns} values "
            f"need at least {num_samples * per_series / 2 ** 30:,.4g} GiB of host memory "
            f"({SAMPLE_COPIES} float32 copies while they are saved), more than {MEMORY_SHARE:.0%} "
            f"of the {available / 2 ** 30:,.4g} GiB available: at most {fits:,} fit here (0 "
            f"generates as many as the data set has windows)"]


def known_num_columns(data_name):
    """K of a named data set whose width is known without loading it, else 1 (a lower bound)."""
    if data_name == "sines":
        return synthetic.NUM_CHANNELS
    source = SOURCES.get(data_name)
    return source.shape[1] if source is not None and source.shape else 1


def _get(config, path):
    """config.SECTION.FIELD, or None where the config has no such field (an older config)."""
    section, field = path.split(".")
    return config[section].get(field) if section in config else None


def _raised(*checks):
    """The messages of the UserErrors the checks raise, each run in turn."""
    messages = []
    for check in checks:
        try:
            check()
        except UserError as e:
            messages.append(str(e).rstrip("."))
    return messages
