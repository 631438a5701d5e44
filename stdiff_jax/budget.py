"""What a training run costs in process CPU seconds, and the steps and batch that fit a budget.

Cost model. A training step of batch B costs `COST . step_features(shape, B)` process CPU seconds,
the features being work counts of the network and the loss for the step's shape (`StepShape`):
dense projections (tokens x depth x width^2; tokens = T x F' x K', F' and K' the frequency and
covariate patches), factorized attention (tokens x depth x width x the three axes' lengths),
element-wise work (tokens x depth x width), the video transform (pixels),
the loss's correlation matrices (pixels x (K + F)), the optimizer (parameters) and a constant;
the Gaussian prior adds its velocity (`prior_step_seconds`: a mixture's multiply-adds, the
reading of its basis and rotations and its intermediates). A validation batch costs EVAL_RATIO of
the network's step and PRIOR_EVAL_RATIO of the prior's, compilation COMPILE (by depth), the data
statistics STATS (by windows x pixels), the prior's fit PRIOR, and start-up and checkpoints
OVERHEAD_S. The
coefficients are fitted by `python benchmarks/train_step.py --sweep` and `benchmarks/
prior_cost.py` (non-negative least squares on relative error, medians of several steps) on the
reference machine, the project's idle 2-core VM; REFERENCE_FACTOR scales them to its steps on
real windows (REFERENCE_STEPS). Every prediction here is in the reference machine's process CPU
seconds; docs/costs.md compares them with whole runs.

The rule (`plan`). With `config.train.budget_seconds` > 0 (`cpu`: 900, `cpu_long`: 10,800), the
steps and batch that are 0 in the config come from the budget, once the data's shape is known:
a measured recipe where one exists for the data set, length, variant and network (MEASURED),
else the cost model: the largest batch of BATCH_LADDER (64, 32, 16) that still buys MIN_STEPS
steps (the last otherwise), the mixture's Gaussians kept within MIXTURE_SHARE of a step of that
batch, and as many steps as the budget then holds with compilation, data statistics, the
prior's fit and up to EVALS_PER_RUN validations included. Steps or a batch set in the config
win; the plan still predicts their cost.
"""

import dataclasses

import numpy as np

from stdiff_jax import prior as prior_lib
from stdiff_jax import saved_model
from stdiff_jax.errors import UserError
from stdiff_jax.models import sizes
from stdiff_jax.models.stdiff import num_patches

# ------------------------------------------------------------------------------------------------
# The cost model.
# ------------------------------------------------------------------------------------------------
FEATURES = ("dense", "attention", "elementwise", "pixels", "pairs", "params", "step")

# Fitted on 2026-12-04 by
# `python benchmarks/train_step.py --sweep --sweep_out=docs/costs_sweep.json` (40 cells: K in
# {5, 7, 14, 28, 50} x L in {24, 64, 128, 256}, the `cpu` network and the Table-4 sizes) and
# `... --sweep_sizes=cpu --sweep_batch=16` (the `cpu` cells again at batch 16, where a sample
# costs up to 1.3x what it does at 64; docs/costs.md) on the project's 2-core "AMD EPYC" VM with
# nothing else running: medians of 5 timed steps (Table-4 sizes: 3). The step model's error per
# cell: median 3.5%, at most 29%. COST: process CPU seconds per unit of each of FEATURES.
COST = dict(dense=5.831e-11, attention=2.214e-10, elementwise=2.376e-07, pixels=0.0,
            pairs=1.594e-08, params=3.317e-09, step=0.0)
EVAL_RATIO = 0.2447  # a validation batch / a training step of the same batch (median)
COMPILE = dict(base=14.28, per_block=0.06507)  # train and eval step, model and state set-up
STATS = dict(base=0.2272, per_pixel=1.522e-07)  # the data statistics, per window x T x F x K
# Start-up and checkpoints: what a 200-step training on a K = 28 CSV took beyond the rest (~1 s).
OVERHEAD_S = 2.0
# Process CPU per step of the `cpu` network (no prior) at L = 24 on the idle reference machine, on
# sines', stocks' and ETTh's windows: (K, batch, seconds), medians of 3 blocks of 20 steps of
# `python benchmarks/train_step.py --config=configs/NAME.py:cpu --config.model.prior_rank=0
# --config.train.batch_size=B` (2026-12-04, nothing else running). The figures of 2026-12-01/02
# (0.21 s at K = 6, batch 64) were 1.6-1.9x these: the code or the machine changed since, and
# the factor they gave (1.48) made every plan of 2026-12-03 over-predict (docs/costs.md).
REFERENCE_STEPS = ((5, 128, 0.194), (6, 128, 0.252), (6, 64, 0.120), (6, 32, 0.064),
                   (7, 128, 0.278), (7, 64, 0.144))
# REFERENCE_STEPS over the model's steps at their shapes (median of 6; the sweep's fit).
REFERENCE_FACTOR = 0.9932
# The Gaussian prior (model.prior_rank, stdiff_jax/prior.py), which the sweep's networks lack:
# process CPU s per multiply-add of its fit (`prior_fit_work`), per video value of each of its
# passes over the windows (`prior_passes`) and per multiply-add of its velocity in a training step
# (`prior_step_work`). Fitted on 2026-12-04 by `python benchmarks/prior_cost.py
# --cells=7x24,28x24,7x128,7x256 --windows=8000 --steps=7` on the idle sweep machine
# (docs/costs.md): the fit took 4.3 to 67.7 CPU s; the step's share was inside the noise of
# 7-step medians (-2.7% to +3.5%, 2 B D r multiply-adds being 1-5% of the network's), so the fit
# gave it ~0.
PRIOR = dict(fit=4.855e-11, fit_pixel=2.027e-07, step=1.485e-15)
# A mixture prior (model.prior_components > 1), in the sweep machine's seconds: per multiply-add
# of its velocity, per number of its basis (D x r) and C rotations (r x r), which every step reads
# whatever the batch, and per number of its intermediates (B x (D + C r)). Fitted on 2026-12-05
# (session 24) by `python benchmarks/prior_cost.py --cells=5x24,7x24,14x24,7x64,7x128,7x256,
# 7x256,28x24,50x24 --components=30,30,30,30,30,30,10,30,30 --batch=64,64,64,32,16,16,16,16,16
# --windows=4000 --steps=25 --rows_out=docs/costs_mixture.json` on an idle Intel Xeon VM: each
# cell's mixture share of the step measured there (25-step medians) times the model's network
# step (`prior_cost.reference_extra`), met within 0.81-1.17x on the seven cells above the noise
# (5 x 24's -0.6% and 7 x 24's +3.3% are inside it). The intermediates came out free. Since the
# Gaussians share one basis (prior.MixturePrior), thirty cost -1% to +6% of the step at L = 24
# (K = 5 to 14) and +38% at L = 256; with a basis each, the first fit of 2026-12-05 had measured
# +37% to +48% at L = 24 for thirty and +46% at L = 256 for five.
MIXTURE_FEATURES = ("step", "basis", "velocity")
MIXTURE = dict(step=1.525e-11, basis=2.640e-09, velocity=0.0)
# A validation batch's prior part over a training step's (the same velocity, no gradient): the
# median of the same run's cells.
PRIOR_EVAL_RATIO = 0.832
# A mixture's velocity may cost at most this share of the network's part of a step
# (`within_mixture_share`, at the batch the plan takes). Set (with the first layout's prices) so
# that every L = 24 row measured with thirty Gaussians kept them; with the shared basis they cost
# at most 7% there, and the share binds at many covariates and long windows only (docs/costs.md).
MIXTURE_SHARE = 0.5
# A run's measured step within this share of the plan's is on pace (`Plan.pace`): the budget's
# +-15%.
PACE_TOLERANCE = 0.15
MODEL_NOTE = ("CPU s of the 2-core reference machine, cost model of benchmarks/train_step.py "
              "--sweep 2026-12-04 and, for a mixture, benchmarks/prior_cost.py 2026-12-05")


@dataclasses.dataclass(frozen=True)
class StepShape:
    """What a training step's cost depends on: the video (T, F, K), its patches and the network."""

    frames: int  # T
    freqs: int  # F
    covariates: int  # K
    freq_patches: int  # F' = ceil(F / patch_freq)
    depth: int
    hidden: int
    mlp_ratio: float
    patch_cov: int = 1  # covariates a token (a default: sweep rows measured before it lack it)
    prior_rank: int = 0  # directions of the Gaussian prior (0: none, as in every sweep row)
    prior_components: int = 1  # Gaussians of the prior (model.prior_components)

    @property
    def cov_patches(self):
        """K' = ceil(K / patch_cov): the tokens along the covariate axis."""
        return num_patches(self.covariates, self.patch_cov)

    @property
    def tokens(self):
        """Tokens of one sample: T x F' x K'."""
        return self.frames * self.freq_patches * self.cov_patches

    @property
    def pixels(self):
        """Video values of one sample per channel: T x F x K."""
        return self.frames * self.freqs * self.covariates

    @property
    def video_numbers(self):
        """D = 3 T F K: the numbers of one video, the dimension of the prior's Gaussian."""
        return 3 * self.pixels

    @classmethod
    def of(cls, config, series_shape, num_classes=0):
        """The shape of a training step of `config` on series (L, K) with `num_classes` classes
        (0: unlabelled; they set the Gaussians of a per-class prior)."""
        frames, freqs, covariates, _ = saved_model.video_shape_of(config.video, tuple(series_shape))
        m = config.model
        return cls(frames, freqs, covariates, num_patches(freqs, m.patch_freq), m.depth, m.hidden,
                   float(m.mlp_ratio), m.get("patch_cov", 1),
                   prior_lib.rank_for(m, tuple(series_shape)),
                   prior_lib.total_components(m, num_classes))


def step_features(shape, batch):
    """(len(FEATURES),) work counts of one training step of `batch` samples of `shape`."""
    s, b = shape, batch
    # Attention runs only along axes longer than 1 (models/stdiff.py attend_along).
    axes = sum(n for n in (s.frames, s.freq_patches, s.cov_patches) if n > 1)
    per_token = s.depth * s.tokens
    return np.array([
        b * per_token * s.hidden ** 2 * (12 + 2 * s.mlp_ratio),  # qkv + out x 3, MLP
        b * per_token * s.hidden * axes,  # logits and weighted sums
        b * per_token * s.hidden,  # norms, modulation, residuals, activations
        b * s.pixels,  # STFT, normalisation, patching, the MSE
        b * s.pixels * (s.covariates + s.freqs),  # the loss's correlation matrices
        s.depth * s.hidden ** 2 * (24 + 2 * s.mlp_ratio),  # AdamW and EMA over the blocks
        1.0,
    ], dtype=np.float64)


def sweep_step_seconds(shape, batch):
    """Process CPU seconds of one training step on the sweep machine (the fitted model)."""
    return float(np.dot([COST[f] for f in FEATURES], step_features(shape, batch)))


def prior_step_work(shape, batch):
    """Multiply-adds of the prior's velocity in a training step: two products of the batch's
    videos (B x D) with the D x r basis (prior.posterior_velocity; no gradient flows there); a
    mixture's three, and two of the batch's coordinates (B x r) with each of its C rotations
    (r x r; prior.mixture_posterior_velocity)."""
    d, r, c = shape.video_numbers, shape.prior_rank, shape.prior_components
    if c == 1:
        return 2.0 * batch * d * r
    return batch * (3.0 * d * r + 2.0 * c * r * r)


def _gaussian_fit_work(n, d, rank):
    """Multiply-adds of prior.fit_prior of `rank` directions on n videos of d numbers."""
    w = min(rank + prior_lib.OVERSAMPLING, d, n)
    products = (2 + 2 * prior_lib.POWER_ITERATIONS) * n * d * w
    return products + (1 + 2 * prior_lib.POWER_ITERATIONS) * max(n, d) * w ** 2


def prior_fit_work(shape, num_windows):
    """Multiply-adds of the prior's fit on `num_windows` windows (0 without a prior): a
    Gaussian's 2 + 2 POWER_ITERATIONS products of the centred videos (N x D) with N x w or D x w
    matrices (w = r + OVERSAMPLING) and 1 + 2 POWER_ITERATIONS QR factorisations of N x w or
    D x w; a mixture's the same Gaussian's, the windows' coordinates on its basis (N x D x r),
    the clusters' scatter matrices (N x r x r) and a component's eigendecomposition (r x r)
    each (prior.fit_mixture)."""
    if not shape.prior_rank:
        return 0.0
    n, d, r, c = num_windows, shape.video_numbers, shape.prior_rank, shape.prior_components
    gaussian = _gaussian_fit_work(n, d, r)
    return gaussian if c == 1 else gaussian + n * d * r + n * r * r + c * r * r * r


def prior_passes(shape):
    """Passes of the prior's fit over the windows, each making their videos anew: a Gaussian's
    mean and products; a mixture's, and one for the coordinates (0 without a prior)."""
    if not shape.prior_rank:
        return 0
    passes = 3 + 2 * prior_lib.POWER_ITERATIONS
    return passes if shape.prior_components == 1 else passes + 1


def mixture_basis_numbers(shape):
    """D x r + C x r x r: the numbers of a mixture's basis and rotations, which its velocity
    reads in every step."""
    r = shape.prior_rank
    return shape.video_numbers * r + shape.prior_components * r * r


def mixture_velocity_numbers(shape, batch):
    """B x (D + C x r): the numbers of a mixture velocity's intermediates, of the videos' shape
    and of the components' coordinates."""
    return batch * (shape.video_numbers + shape.prior_components * shape.prior_rank)


def mixture_step_features(shape, batch):
    """A mixture's velocity in a training step: its multiply-adds, the numbers of its basis and
    rotations (read once a step whatever the batch) and of its intermediates (MIXTURE's keys)."""
    return np.array([prior_step_work(shape, batch), mixture_basis_numbers(shape),
                     mixture_velocity_numbers(shape, batch)], dtype=np.float64)


def prior_step_seconds(shape, batch):
    """The prior's velocity in a training step of `batch` (sweep machine): one Gaussian's
    multiply-adds at PRIOR's rate; a mixture's `mixture_step_features` at MIXTURE's (0 without a
    prior)."""
    if not shape.prior_rank:
        return 0.0
    if shape.prior_components == 1:
        return PRIOR["step"] * prior_step_work(shape, batch)
    return float(np.dot([MIXTURE[f] for f in MIXTURE_FEATURES],
                        mixture_step_features(shape, batch)))


def step_seconds(shape, batch):
    """Process CPU seconds of one training step on the reference machine."""
    return REFERENCE_FACTOR * (sweep_step_seconds(shape, batch) + prior_step_seconds(shape, batch))


def mixture_share(shape, batch):
    """The prior's velocity over the network's part of a training step of `batch`."""
    return prior_step_seconds(shape, batch) / sweep_step_seconds(shape, batch)


def within_mixture_share(shape, batch, per_class):
    """`shape` with the most Gaussians (a multiple of per_class, the classes of a prior per class,
    else 1; at most shape's, at least one a class) whose velocity costs at most MIXTURE_SHARE of
    the network's part of a training step of `batch`."""
    for c in range(shape.prior_components // per_class, 1, -1):
        mixture = dataclasses.replace(shape, prior_components=c * per_class)
        if mixture_share(mixture, batch) <= MIXTURE_SHARE:
            return mixture
    return dataclasses.replace(shape, prior_components=per_class)


def prior_fit_seconds(shape, prior_windows):
    """The prior's fit on `prior_windows` windows (reference machine; 0 without a prior)."""
    if not shape.prior_rank:
        return 0.0
    return REFERENCE_FACTOR * (
        PRIOR["fit"] * prior_fit_work(shape, prior_windows)
        + PRIOR["fit_pixel"] * prior_passes(shape) * prior_windows * shape.pixels)  # videos


def fixed_seconds(shape, num_windows, prior_windows):
    """Compilation, model set-up, data statistics, the prior's fit on prior_windows windows,
    start-up and checkpoints (reference machine)."""
    compile_s = COMPILE["base"] + COMPILE["per_block"] * shape.depth
    stats_s = STATS["base"] + STATS["per_pixel"] * num_windows * shape.pixels
    return (REFERENCE_FACTOR * (compile_s + stats_s + OVERHEAD_S)
            + prior_fit_seconds(shape, prior_windows))


def validation_batches(num_windows, val_fraction, batch):
    """Batches of one evaluation: about val_fraction of the windows, 5% when it is 0, in whole
    batches (as train.split_windows holds them out)."""
    fraction = val_fraction if val_fraction > 0 else 0.05
    return max(1, round(fraction * num_windows / batch))


def num_evaluations(num_steps, eval_every):
    """Evaluations of a run: every eval_every steps and at the last step."""
    return num_steps // eval_every + (num_steps % eval_every != 0)


def eval_batch_seconds(shape, batch):
    """Process CPU seconds of one validation batch on the reference machine: EVAL_RATIO of the
    network's training step and PRIOR_EVAL_RATIO of the prior's."""
    return REFERENCE_FACTOR * (EVAL_RATIO * sweep_step_seconds(shape, batch)
                               + PRIOR_EVAL_RATIO * prior_step_seconds(shape, batch))


def run_seconds(shape, batch, num_steps, eval_every, num_windows, val_fraction, prior_windows):
    """Predicted process CPU seconds of a whole training run on the reference machine."""
    evals = num_evaluations(num_steps, eval_every)
    per_eval = validation_batches(num_windows, val_fraction, batch) * eval_batch_seconds(shape,
                                                                                         batch)
    return (fixed_seconds(shape, num_windows, prior_windows)
            + step_seconds(shape, batch) * num_steps + evals * per_eval)


def prior_windows_within(budget_s, shape, num_windows):
    """The windows the prior is fitted on: all of them, or under a budget as many as fit in
    PRIOR_SHARE of it (at least MIN_PRIOR_WINDOWS): stride-1 windows overlap in all but one row,
    so an evenly spaced subset (prior.evenly_spaced) should estimate their covariance nearly as
    well."""
    if not (budget_s and shape.prior_rank) or (
            prior_fit_seconds(shape, num_windows) <= PRIOR_SHARE * budget_s):
        return num_windows
    return _largest_within(min(MIN_PRIOR_WINDOWS, num_windows), num_windows,  # grows with them
                           lambda n: prior_fit_seconds(shape, n) <= PRIOR_SHARE * budget_s)


def _largest_within(lo, hi, fits):
    """The largest n in [lo, hi) with fits(n), for fits true up to some n and false after,
    given fits(hi) is false (lo when no larger n fits): a bisection."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


# ------------------------------------------------------------------------------------------------
# The budget rule.
# ------------------------------------------------------------------------------------------------
# Recipes trained within their budgets on the reference machine, with the scores of
# docs/ablations.md: they win over the cost model for their data set, length, variant, network and
# budget, so that those scores keep their training exactly (steps, batch, evaluations). They were
# set when a step cost 1.6-1.9x what it does now (REFERENCE_STEPS): the model prices sines'
# `cpu` at ~440 CPU s and its `cpu_long` at ~4,900 (docs/costs.md).
_CPU_RECIPE = dict(budget_seconds=900.0, batch_size=64, eval_every=250, checkpoint_every=500)
_LONG_RECIPE = dict(budget_seconds=10_800.0, batch_size=128, eval_every=1000,
                    checkpoint_every=1000)
MEASURED = {
    ("sines", 24, "cpu"): dict(_CPU_RECIPE, num_steps=4100),
    ("stocks", 24, "cpu"): dict(_CPU_RECIPE, num_steps=3800),
    ("etth", 24, "cpu"): dict(_CPU_RECIPE, num_steps=3300),
    ("sines", 24, "cpu_long"): dict(_LONG_RECIPE, num_steps=24_000),
    ("stocks", 24, "cpu_long"): dict(_LONG_RECIPE, num_steps=24_000),
    ("etth", 24, "cpu_long"): dict(_LONG_RECIPE, num_steps=20_000),
}
# The batch halves from 64 while the budget buys fewer than MIN_STEPS steps. At 900 CPU s, on
# all three measured data sets, halving the batch from 128 to 64 (1,650-2,250 steps -> twice as
# many) lowered Context-FID by 32-64% (docs/ablations.md, "Batch against steps"): below ~2,000
# updates, updates count more than samples per update. Batch 16 is the floor: noisier gradients
# than that were never tried.
BATCH_LADDER = (64, 32, 16)
MIN_STEPS = 2000
# Evaluations in a run whose eval_every comes from the steps (checkpoints every second one): the
# measured `cpu` recipes evaluate 13-16 times (every 250 of 3,300-4,100 steps). A validation
# covers ~5% of the windows whatever the batch, so on many windows of a costly shape 16 of them
# would cost more than the training; fewer are made where they would take more than EVAL_SHARE
# of the budget (at least the one at the last step).
EVALS_PER_RUN = 16
EVAL_SHARE = 0.1
# A set of a few dozen windows is copied long before a budget runs out, so the budget's steps
# stop at MAX_PASSES passes over the set's windows. ItalyPowerDemand's 67 training days
# (docs/results.md, "Generation per class"; memorisation ratio of the median distances, share of
# samples closer to a training day than 99% of new days are): 2,866 passes 1.60-1.78 and 0-1.5%,
# 7,164 passes 0.94-1.05 and 4.5-7.5%, the budget's 20,346 passes 0.49 and 54% (copies).
MAX_PASSES = 3000
# The Gaussian prior's fit takes at most this share of a budget: on every data set at L = 24 it
# fits on all the windows (ETTh's 17,397: ~33 CPU s); at L = 256 (ETTh: ~450 CPU s for all) or
# with many channels it fits on an evenly spaced subset, never below MIN_PRIOR_WINDOWS.
PRIOR_SHARE = 0.1
MIN_PRIOR_WINDOWS = 1024
SCHEDULE_KEYS = ("num_steps", "batch_size", "eval_every", "checkpoint_every")
COST_MODEL = "cost model"  # a Plan's source when its steps and batch both come from the model


@dataclasses.dataclass(frozen=True)
class Plan:
    """The training a config gets on data of a given shape, and its predicted cost."""

    num_steps: int
    batch_size: int
    eval_every: int
    checkpoint_every: int
    predicted_s: float  # the whole run, process CPU s of the reference machine
    step_s: float  # one training step
    budget_s: float  # config.train.budget_seconds (0: none)
    source: str  # where the steps and batch come from, for the log
    shape: StepShape
    seq_len: int
    prior_windows: int  # windows the Gaussian prior is fitted on (prior_windows_within)
    prior_windows_asked: int  # at most these (model.prior_windows; prior.windows_asked)
    num_windows: int
    components_asked: int  # the prior's Gaussians the config asked (shape's: within_mixture_share)

    def describe(self):
        """The first log line of a training: steps, batch, predicted CPU seconds, and why."""
        s = self.shape
        head = (f"CPU budget {self.budget_s:,.0f} s: " if self.budget_s
                else "No CPU budget (config.train.budget_seconds=0): ")
        over = (f"; {self.predicted_s / self.budget_s - 1:.0%} over the budget"
                if self.budget_s and self.predicted_s > 1.15 * self.budget_s else "")
        few = ("; few steps for this shape: expect a weak model (a larger budget_seconds trains "
               "longer)" if self.source == COST_MODEL and self.num_steps < MIN_STEPS else "")
        fit_s = prior_fit_seconds(s, self.prior_windows)
        what = ("the Gaussian prior" if s.prior_components == 1 else
                f"the mixture of {s.prior_components} Gaussians")
        if s.prior_components < self.components_asked:
            what += (f" ({self.components_asked} asked: its velocity kept within "
                     f"{MIXTURE_SHARE:.0%} of the network's step)")
        prior = (f"; {what} (rank {s.prior_rank}) is fitted on "
                 f"{self.prior_windows:,} of the {self.num_windows:,} windows, ~{fit_s:,.0f} CPU s"
                 if s.prior_rank else "")
        if s.prior_rank and self.prior_windows < self.num_windows:
            prior += (f" (at most {PRIOR_SHARE:.0%} of the budget)" if self.budget_s and
                      self.prior_windows < self.prior_windows_asked else " (model.prior_windows)")
        return (f"{head}{self.num_steps:,} steps of batch {self.batch_size} ({self.source}), "
                f"~{self.step_s:.3g} CPU s a step, ~{self.predicted_s:,.0f} CPU s in all with "
                f"compilation and {num_evaluations(self.num_steps, self.eval_every)} validations "
                f"(K={s.covariates}, L={self.seq_len}: {s.tokens} tokens = {s.frames} frames x "
                f"{s.freq_patches} x {s.cov_patches}{_cov_patches_note(s)}, depth {s.depth}, "
                f"width {s.hidden}; {MODEL_NOTE}){prior}{over}{few}.")

    def pace(self, step_cpu_s):
        """A log line comparing a step's measured process CPU seconds on this machine with the
        plan's, and what the whole run then costs here: the plan is in the reference machine's
        seconds, so a slower (or shared) machine trains the same steps for more CPU seconds."""
        ratio = step_cpu_s / self.step_s
        here = (f"{ratio:.2f}x the reference machine's; the plan's steps stay, the run takes "
                f"~{self.predicted_s * ratio:,.0f} CPU s here"
                if abs(ratio - 1.0) > PACE_TOLERANCE else
                f"{ratio:.2f}x the reference machine's, within {PACE_TOLERANCE:.0%}")
        return (f"Pace: {step_cpu_s:.3g} CPU s a training step on this machine against "
                f"~{self.step_s:.3g} planned ({here}).")

    def tally(self, train_cpu_s):
        """A log line for a finished training: its process CPU seconds (summed over resumed
        runs) against the plan's prediction."""
        return (f"Trained in {train_cpu_s:,.0f} CPU s against ~{self.predicted_s:,.0f} predicted "
                f"for the reference machine ({train_cpu_s / self.predicted_s:.2f}x).")


def _cov_patches_note(shape):
    """' (patches of 4 covariates)' where model.patch_cov groups covariates, else ''."""
    return f" (patches of {shape.patch_cov} covariates)" if shape.patch_cov > 1 else ""


def check(train_config):
    """Raises UserError for budget and schedule fields no plan can satisfy (before data loads)."""
    tc = train_config
    negative = [k for k in ("budget_seconds", *SCHEDULE_KEYS) if tc[k] < 0]
    if negative:
        raise UserError(f"config.train.{negative[0]}={tc[negative[0]]} is negative; use a "
                        f"positive value, or 0 for 'from the budget'.")
    if not tc.budget_seconds and not (tc.num_steps and tc.batch_size):
        raise UserError(
            f"config.train.num_steps={tc.num_steps} and batch_size={tc.batch_size}: 0 means 'from "
            f"the CPU budget', but config.train.budget_seconds is 0 (no budget). Set both, or a "
            f"budget (the cpu variant's is 900 process CPU seconds).")
    if tc.num_steps:
        check_warmup(tc)


def check_warmup(train_config):
    """Raises UserError unless 0 <= warmup_steps < num_steps (the optimizer's schedule)."""
    tc = train_config
    if not 0 <= tc.warmup_steps < tc.num_steps:
        raise UserError(f"config.train.warmup_steps={tc.warmup_steps} must lie in "
                        f"[0, num_steps={tc.num_steps}).")


def _measured_recipe(config):
    """The MEASURED recipe that applies to config unchanged, or None."""
    tc, variant = config.train, config.get("variant", "")
    recipe = MEASURED.get((config.data.name, config.data.seq_len, variant))
    if recipe is None or tc.budget_seconds != recipe["budget_seconds"]:
        return None
    if prior_lib.components_of(config.model) != 1:  # measured with one Gaussian
        return None
    network = {k: config.model[k] for k in sizes.CPU_SIZES[variant]}
    video = (config.video.n_fft, config.video.hop)
    if network != sizes.CPU_SIZES[variant] or video != sizes.stft_settings(config.data.seq_len):
        return None
    return recipe


def _evaluations(budget_s, shape, batch, num_windows, val_fraction):
    """Evaluations of a run: EVALS_PER_RUN, fewer where they would exceed EVAL_SHARE of budget_s."""
    if not budget_s:
        return EVALS_PER_RUN
    per_eval = validation_batches(num_windows, val_fraction, batch) * eval_batch_seconds(shape,
                                                                                         batch)
    return int(np.clip(EVAL_SHARE * budget_s // per_eval, 1, EVALS_PER_RUN))


def _eval_interval(num_steps, evaluations):
    """Steps between at most `evaluations` evaluations in num_steps (the last one included): a
    multiple of 10 steps where num_steps allows."""
    return min(max(10, -(-num_steps // (10 * evaluations)) * 10), max(num_steps, 1))


def _steps_within(budget_s, shape, batch, num_windows, val_fraction, eval_every, prior_windows):
    """The most steps whose whole run fits budget_s, a multiple of 50 from 2,000 (else of 10)."""
    evaluations = _evaluations(budget_s, shape, batch, num_windows, val_fraction)

    def cost(steps):
        return run_seconds(shape, batch, steps, eval_every or _eval_interval(steps, evaluations),
                           num_windows, val_fraction, prior_windows)

    # cost(hi) > budget_s, and the cost grows with the steps
    lo = _largest_within(0, int(budget_s / step_seconds(shape, batch)) + 1,
                         lambda steps: cost(steps) <= budget_s)
    unit = 50 if lo >= 2000 else 10
    return lo // unit * unit


def plan(config, series_shape, num_windows, num_classes=0):
    """The Plan of `config` for `num_windows` windows of series (L, K) in `num_classes` classes
    (0: unlabelled) (module docstring)."""
    tc, data = config.train, config.data
    check(tc)
    asked = StepShape.of(config, series_shape, num_classes)
    per_class = asked.prior_components // prior_lib.components_of(config.model)

    def shape_at(batch):  # the Gaussians kept within their share of a step of this batch
        if asked.prior_components == 1:
            return asked
        return within_mixture_share(asked, batch, per_class)

    prior_asked = prior_lib.windows_asked(config.model, num_windows)
    recipe = _measured_recipe(config) if not (tc.num_steps or tc.batch_size) else None
    if recipe is not None:
        values = {k: tc[k] or recipe[k] for k in SCHEDULE_KEYS}
        source = f"the measured recipe for {data.name} at L={data.seq_len}"
    else:
        values, source = _budget_values(tc, shape_at, num_windows, data.val_fraction,
                                        prior_asked)
    shape = shape_at(values["batch_size"])
    prior_windows = prior_windows_within(tc.budget_seconds, shape, prior_asked)
    eval_every = values["eval_every"] or _eval_interval(values["num_steps"], _evaluations(
        tc.budget_seconds, shape, values["batch_size"], num_windows, data.val_fraction))
    checkpoint_every = values["checkpoint_every"] or 2 * eval_every
    predicted = run_seconds(shape, values["batch_size"], values["num_steps"], eval_every,
                            num_windows, data.val_fraction, prior_windows)
    return Plan(values["num_steps"], values["batch_size"], eval_every, checkpoint_every, predicted,
                step_seconds(shape, values["batch_size"]), float(tc.budget_seconds), source,
                shape, int(data.seq_len), prior_windows, prior_asked, num_windows,
                asked.prior_components)


def _budget_values(tc, shape_at, num_windows, val_fraction, prior_asked):
    """(steps, batch, eval_every, checkpoint_every as set or 0, why) from the cost model, a step
    of batch b costing shape_at(b)'s (its prior fitted on `prior_windows_within` windows, at
    most prior_asked)."""
    values = {k: tc[k] for k in SCHEDULE_KEYS}
    if not tc.budget_seconds:
        return values, "as configured"

    def steps_at(batch):
        shape = shape_at(batch)
        return _steps_within(tc.budget_seconds, shape, batch, num_windows, val_fraction,
                             tc.eval_every,
                             prior_windows_within(tc.budget_seconds, shape, prior_asked))

    if not values["batch_size"]:
        values["batch_size"] = next((b for b in BATCH_LADDER if steps_at(b) >= MIN_STEPS),
                                    BATCH_LADDER[-1])
    bought = 0  # the steps the budget buys, where MAX_PASSES stops them short
    if not values["num_steps"]:
        values["num_steps"] = steps_at(values["batch_size"])
        most = passes_cap(num_windows, values["batch_size"])
        if values["num_steps"] > most:
            bought, values["num_steps"] = values["num_steps"], most
        if values["num_steps"] <= tc.warmup_steps:
            shape = shape_at(values["batch_size"])
            raise UserError(
                f"The CPU budget of {tc.budget_seconds:,.0f} s buys only {values['num_steps']} "
                f"steps of batch {values['batch_size']} for this shape ({shape.tokens} tokens: "
                f"{shape.frames} frames x {shape.freq_patches} frequency patches x "
                f"{shape.cov_patches} covariate tokens{_cov_patches_note(shape)}, depth "
                f"{shape.depth}, width {shape.hidden}), too "
                f"few to train after {tc.warmup_steps} warm-up steps. Raise "
                f"config.train.budget_seconds (cpu_long: 10,800), shrink the network or the "
                f"window (data.seq_len){_fewer_gaussians_note(shape, values['batch_size'])}, "
                f"or set config.train.num_steps yourself.")
    given = [k for k in ("num_steps", "batch_size") if tc[k]]
    source = (COST_MODEL if not given else
              f"{' and '.join(given)} as configured, the rest from the cost model")
    if bought:
        source += (f", capped at {MAX_PASSES:,} passes over the {num_windows:,} windows: the "
                   f"budget buys {bought:,}, which would copy them")
    return values, source


def _fewer_gaussians_note(shape, batch):
    """The mixture as a lever in the too-few-steps error ('' for one Gaussian or none)."""
    if shape.prior_components == 1 or not shape.prior_rank:
        return ""
    return (f", take fewer Gaussians (model.prior_components; {shape.prior_components} here "
            f"cost {mixture_share(shape, batch):.0%} of the network's step)")


def passes_cap(num_windows, batch):
    """The most steps of `batch` a budget gives `num_windows` windows: MAX_PASSES passes over
    them, a multiple of 10 steps, at least 10."""
    return max(10, MAX_PASSES * num_windows // batch // 10 * 10)


def resolve(config, series_shape, num_windows, num_classes=0):
    """(a copy of config with the plan's steps, batch and intervals filled in, the plan)."""
    p = plan(config, series_shape, num_windows, num_classes)
    config = config.copy_and_resolve_references()
    config.train.update({k: getattr(p, k) for k in SCHEDULE_KEYS})
    config.model.prior_components = (prior_lib.components_of(config.model)
                                     * p.shape.prior_components // p.components_asked)
    return config, p
