"""Every default of stdiff_jax in one place, and the variant strings of the data set configs.

A data set config calls `make_config(dataset, arg)`; `arg` is the text after the colon in
`--config=configs/etth.py:seq_len=64,cpu`, a comma-separated list of variants:
  seq_len=N   the sequence length; selects the Table-4 row (n_fft, hop, patch, depth, width, heads);
  cpu         a small network trained within 900 process CPU seconds of a 2-core CPU: its steps
              and batch follow from the data's shape once it is loaded (stdiff_jax/budget.py);
  cpu_long    the cpu network within 10,800 CPU seconds;
  smoke       a tiny network and a few steps, for tests and a first look.
The returned config is locked: assigning a key that does not exist is an error, so a typo in a
command-line override fails instead of being ignored.
"""

import ml_collections

from stdiff_jax.errors import UserError
from stdiff_jax.models import sizes


# Training settings of the variants (over base_config's). `cpu` and `cpu_long` leave the steps,
# the batch and the evaluation and checkpoint intervals at 0, "from the budget": the training
# works them out from budget_seconds and the data's shape (stdiff_jax/budget.py: the measured
# recipes of sines, stocks and ETTh at L = 24, else the cost model). Any of them set on the
# command line wins.
_FROM_BUDGET = dict(num_steps=0, batch_size=0, eval_every=0, checkpoint_every=0)
VARIANT_TRAINING = {
    # The small networks tolerate a 5x higher peak rate than the paper's, and need it: on sines
    # (one block of width 48), 5,000 steps at 1e-3 reached Context-FID 0.40 where 10,000 at 2e-4
    # gave 1.59 (docs/ablations.md).
    "cpu": dict(_FROM_BUDGET, budget_seconds=900.0, learning_rate=1e-3, warmup_steps=100,
                ema_decay=0.995),
    "cpu_long": dict(_FROM_BUDGET, budget_seconds=10_800.0, learning_rate=1e-3, warmup_steps=300,
                     ema_decay=0.999),
    "smoke": dict(batch_size=32, num_steps=30, warmup_steps=5, ema_decay=0.9, log_every=10,
                  eval_every=10, checkpoint_every=20),
}


def base_config():
    """Paper settings (Section 5, Table 4) where the paper gives them; documented choices elsewhere."""
    c = ml_collections.ConfigDict()
    c.name = ""  # Set by make_config: <data set>_L<seq_len>[_<variant>], the run's name.
    c.variant = ""  # Set by make_config: "cpu", "smoke" or "" (part of the default workdir).

    c.data = ml_collections.ConfigDict()
    c.data.name = "sines"
    c.data.seq_len = 24
    c.data.root = ml_collections.FieldReference(None, field_type=str)  # None: $STDIFF_DATA_DIR or cache.
    # Windows held out for early stopping and the best checkpoint, sharing no step with training:
    # the last windows of a series (the L - 1 before them left out), a random draw of a window
    # set (train.split_windows). 0: every window trains (the protocol) and early stopping scores
    # a fixed training subset. 0 by default: on stocks the last 5% held out cost 2-3x the
    # Context-FID (a rising series' highest prices never trained; docs/ablations.md); the window
    # sets' configs (sines, mujoco, class_sines) hold out a random 5%, which shares no step.
    c.data.val_fraction = 0.0
    c.data.seed = 0
    # A share of the rows (windows, for window sets) held out of training and the scaler:
    # Dataset.test_windows, what benchmarks/conditional.py scores on (0: the protocol's, none).
    c.data.test_fraction = 0.0
    c.data.test_position = 1.0  # Where that block sits: 1 the last rows, 0.5 the middle, 0 the first.
    c.data.allow_outliers = False  # Accept values over 1e6 x their column's IQR from its median.
    # Class labels (stdiff_jax/data/labelled.py): a csv: file's column of per-row labels, or an
    # npy: set's labels file (one per row or window). class_sines and ucr:NAME have their own.
    c.data.label_column = ""
    c.data.labels = ""

    c.video = ml_collections.ConfigDict()
    c.video.n_fft = 11
    c.video.hop = 3
    c.video.ema_alpha = 0.2  # Not given by the paper.
    c.video.window = "hann"
    c.video.normalizer = "pooled"  # "frame": statistics per frame (sines); "pooled": over frames.
    # Columns the videos cannot show (stdiff_jax/column_values.py): a column whose values'
    # lag-1 autocorrelation inside windows is under white_below in magnitude is modelled as
    # normal scores (0: none); one with at most max_levels distinct training values has its
    # samples snapped to them (0: none). Neither kind occurs in sines, stocks, ETTh or MuJoCo.
    c.video.white_below = 0.1
    c.video.max_levels = 20

    c.model = ml_collections.ConfigDict()
    c.model.patch_freq = 2
    # Covariates a token (Table 4's "patch (freq, cov)"; the paper's rows use 1): pc > 1 groups
    # pc adjacent columns, in the data's order, into one token, so the covariate axis has
    # ceil(K / pc) tokens (the last padded) and costs about 1/pc. Order the columns so that
    # similar ones are neighbours. Not a default anywhere yet (docs/costs.md).
    c.model.patch_cov = 1
    c.model.depth = 6
    c.model.hidden = 192
    c.model.heads = 4
    c.model.mlp_ratio = 4.0
    c.model.remat = False  # Rematerialise scanned blocks: far less memory, ~15% slower steps.
    c.model.dtype = "float32"  # Compute dtype ("bfloat16" on TPU); parameters stay float32.
    c.model.data_biases = True  # Initialise B_C and B_F from data statistics (else zeros).
    # > 0: the network learns a correction to the exact denoiser of a Gaussian fitted to the
    # training videos, with this many principal directions, at most L K (stdiff_jax/prior.py);
    # 0: the plain network. 1024 keeps every direction up to L K = 1024 (docs/ablations.md, "A
    # Gaussian prior under the network": 2 seeds on the tuned and suite sets).
    c.model.prior_rank = 1024
    # > 1: a mixture of this many Gaussians instead, one per k-means cluster of the training
    # windows (prior.MixturePrior): it keeps separate groups and curved sets of windows. At most
    # one per 100 windows (prior.components_for). Thirty against one at `cpu`: ETTh Context-FID
    # 0.032 against 0.19-0.22, stocks 0.026 against 0.045, every generalisation-suite set under
    # 0.25 / 0.10 (docs/ablations.md, "Thirty components, the default").
    c.model.prior_components = 30
    # The windows the prior is fitted on, evenly spaced: 0 all of them (under a CPU budget, as
    # many as its share of the budget allows: stdiff_jax/budget.py), N at most N.
    c.model.prior_windows = 0
    # Labelled data: prior_components Gaussians a class, each fitted to its class's windows; a
    # class's velocity is its own Gaussians', the "no class" token's all of them in their
    # shares, so unconditional samples keep the classes' proportions (class_sines 0.51 / 0.32 /
    # 0.18 against 0.5 / 0.3 / 0.2; one Gaussian of all: 0.45 / 0.49 / 0.05) and a class of a
    # few dozen windows is learnt (JapaneseVowels CAS 0.86 against 0.41; docs/results.md,
    # "Generation per class"). No effect without labels.
    c.model.prior_per_class = True
    # Labelled data: the share of windows trained with the "no class" token, so one network is
    # conditional and unconditional (classifier-free guidance; stdiff_jax/labels.py).
    c.model.label_dropout = 0.1

    c.diffusion = ml_collections.ConfigDict()
    c.diffusion.logsnr_min = -15.0
    c.diffusion.logsnr_max = 15.0
    c.diffusion.cov_loss_weight = 0.1  # Cross-covariance loss on STFT magnitudes; 0 turns it off.
    # MSE weight across noise levels: "v" (velocity MSE) or "eps" (the paper's). v put the stocks
    # volume-price coupling right where eps missed it (docs/ablations.md, ablations).
    c.diffusion.loss_weighting = "v"

    c.train = ml_collections.ConfigDict()
    # Process CPU seconds the training may take (compilation and validation included), in those of
    # the idle 2-core reference machine; 0: no budget. With a budget, num_steps, batch_size,
    # eval_every and checkpoint_every left at 0 follow from it and the data (stdiff_jax/budget.py).
    c.train.budget_seconds = 0.0
    c.train.batch_size = 128  # Global batch, split over all devices. Not given by the paper.
    c.train.num_steps = 30_000
    c.train.learning_rate = 2e-4
    c.train.min_learning_rate = 1e-6
    c.train.warmup_steps = 500
    c.train.weight_decay = 0.01
    c.train.grad_clip = 1.0
    c.train.ema_decay = 0.999
    c.train.log_every = 100
    c.train.eval_every = 500  # Validation loss for early stopping.
    c.train.patience = 10  # Evaluations without improvement before stopping early; 0 disables.
    c.train.checkpoint_every = 1000
    c.train.keep_checkpoints = 3
    c.train.seed = 0

    c.sample = ml_collections.ConfigDict()
    # "ddim" (the paper's, with 200 steps), "ancestral", "dpmpp_2m", or "auto": ancestral for a
    # model with classes, DPM-Solver++(2M) without (`sampling.resolve`). DPM-Solver++(2M) at 20
    # steps scored as well as or better than DDIM at 200 on sines and ETTh for a tenth of the
    # network calls (docs/ablations.md, samplers); every ablation of the v loss sampled with it.
    c.sample.method = "auto"
    c.sample.num_steps = 0  # 0: the method's (sampling.DEFAULT_STEPS: 200 / 100 / 20)
    c.sample.eta = 0.0
    c.sample.grid = "logsnr"  # Time grid of the sampler: "logsnr" (uniform in log-SNR) or "time".
    c.sample.clip_x0 = 5.0  # Clip predicted clean videos to +-this many normaliser stds; 0: off.
    c.sample.num_samples = 0  # 0: as many as the data set has windows (the protocol).
    c.sample.chunk_size = 0  # 0: chosen from available memory.
    c.sample.use_ema = True
    c.sample.seed = 0
    # A labelled model's samples per class: "protocol" (or ""): as many per class as the data
    # has windows (num_samples > 0: that many in the data's proportions); "NAME:COUNT,...", e.g.
    # "Walking:500,Running:100", class names as in the data (these counts override
    # num_samples). samples.csv gets a label column.
    c.sample.classes = ""
    # Classifier-free guidance scale w: 0 unconditional, 1 conditional, > 1 guided. With a prior
    # per class, w = 2 put the most class_sines samples in their band on both seeds (95.0 /
    # 95.7%; w = 1 93.4 / 93.6%, w = 4 91.5 / 93.8%) and tied w = 1 and 4 on CAS elsewhere
    # (ItalyPowerDemand 0.916 / 0.903 against 0.910 / 0.907 and 0.901 / 0.913; benchmarks/
    # labels.py, docs/results.md "Generation per class").
    c.sample.guidance = 2.0

    c.eval = ml_collections.ConfigDict()
    c.eval.repeats = 5
    c.eval.seed = 0
    c.eval.metrics = ("context_fid", "correlational", "discriminative", "predictive")
    c.eval.plots = True
    # A labelled run's class-conditional scores (stdiff_jax/metrics/classes.py): "cas" (with
    # "trtr"), "class_fidelity", and per class "context_fid" and "discriminative".
    c.eval.class_metrics = ("cas", "class_fidelity")

    # Conditional generation (stdiff_jax/conditional.py): --mode=impute and --mode=forecast, and
    # the defaults of conditional.impute / forecast. Sampler eta, grid and clip_x0 come from
    # c.sample.
    c.condition = ml_collections.ConfigDict()
    c.condition.input = ""  # impute: the CSV to fill in (training columns, original units, empty
    # or NaN cells missing); forecast: the history to continue ("": the data set's series).
    c.condition.horizon = 0  # forecast: steps after the end of the history, 1 <= H < seq_len.
    c.condition.num_samples = 100  # S samples per window; the output is their median.
    c.condition.quantiles = (0.05, 0.5, 0.95)  # Per-value quantiles written beside the output.
    c.condition.method = "dpmpp_2m"  # "ddim", "ancestral" or "dpmpp_2m".
    c.condition.num_steps = 20
    # Network calls per step (RePaint resampling when > 1) and how each clean prediction is made
    # to agree with the observations: "regression" (the Gaussian regression on the series'
    # covariance given the noisy video, from the training data: it carries an observation to the
    # correlated covariates) or "projection" (the smallest change of video). Regression with one
    # call a step: on held-out ETTh windows 23-44% lower MSE than the projection's two calls,
    # 90% intervals covering 0.88-0.91, two thirds of the cost (docs/ablations.md).
    # Stocks takes 3 (configs/stocks.py).
    c.condition.jumps = 1
    c.condition.correction = "regression"
    # The regression's covariance gets ridge x its mean variance on the diagonal, so that copied
    # columns (stocks' Close and Adj Close) keep it invertible; 1e-4 and 1e-5 widened stocks'
    # over-wide bands further and raised the MSE (docs/ablations.md).
    c.condition.ridge = 1e-3
    c.condition.renoise = True  # Redraw the observed part of each noisy state (RePaint).
    c.condition.seed = 0
    c.condition.chunk_size = 0  # 0: chosen from available memory.
    c.condition.output_dir = ""  # "": the workdir.
    # A labelled model: the class of every window ("": unconditional) and the guidance scale.
    c.condition.label = ""
    c.condition.guidance = 1.0
    return c


def parse_variants(arg):
    """'seq_len=64,cpu' -> ({'seq_len': 64}, {'cpu'})."""
    values, flags = {}, set()
    for token in filter(None, (arg or "").split(",")):
        key, eq, value = token.partition("=")
        if eq and key == "seq_len":
            values["seq_len"] = int(value)
        elif not eq and token in sizes.CPU_SIZES:
            flags.add(token)
        else:
            raise UserError(f"Unknown config variant {token!r}; use seq_len=N, "
                            f"{', '.join(sizes.CPU_SIZES)} (comma-separated).")
    if len(flags) > 1:
        raise UserError(f"Choose one of the variants {sorted(flags)}, not several.")
    return values, flags


def make_config(dataset, arg=None, default_seq_len=24):
    """The locked config of `dataset` with the variants in `arg` applied."""
    values, flags = parse_variants(arg)
    c = base_config()
    c.data.name = dataset
    c.data.seq_len = values.get("seq_len", default_seq_len)
    c.video.n_fft, c.video.hop = sizes.stft_settings(c.data.seq_len)
    row = sizes.table4_row(c.data.seq_len)
    for key in ("patch_freq", "depth", "hidden", "heads", "mlp_ratio"):
        c.model[key] = row[key]
    variant = next(iter(flags), "")
    if variant:
        c.model.update(sizes.CPU_SIZES[variant])
        c.train.update(VARIANT_TRAINING[variant])
    if variant == "smoke":
        c.model.prior_components = 1  # thirty k-means fits would take most of a test's seconds
        c.model.prior_windows = 1000  # all 9,488 of sines' took 18 of a run's 65 CPU s
        c.sample.num_steps = 10
        c.sample.num_samples = 64
        c.eval.repeats = 2
        c.eval.metrics = ("correlational",)
        c.eval.class_metrics = ()
        c.eval.plots = False
    c.name = "_".join(filter(None, [dataset, f"L{c.data.seq_len}", variant]))
    c.variant = variant
    c.lock()
    return c


def make_ucr_config(problem, arg, batch_size):
    """The config of the UCR/UEA set `ucr:PROBLEM` (stdiff_jax/data/labelled.py): their training
    sets are small, so no validation share is held out (a fixed training subset is scored), and
    `batch_size` must not exceed the smallest class's windows."""
    config = make_config(f"ucr:{problem}", arg)
    with config.unlocked():
        config.data.val_fraction = 0.0
        config.train.batch_size = batch_size
        # Classes of 10-34 windows: one Gaussian a class (prior.components_for allows one per
        # 100 windows).
        config.model.prior_components = 1
    return config


def get_config(arg=None):
    return make_config("sines", arg)


def from_spec(spec):
    """The config of a `--config` string such as 'configs/etth.py:seq_len=64,cpu' or 'etth:cpu'."""
    import importlib
    import pathlib

    path, _, arg = spec.partition(":")
    module = importlib.import_module(f"configs.{pathlib.Path(path).stem}")
    return module.get_config(arg or None)
