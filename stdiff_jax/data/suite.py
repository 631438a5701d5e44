"""The generalisation suite: seeded generated series with structure the tuned data sets lack.

sines, stocks and ETTh1, on which the `cpu` recipe was tuned, have unimodal window levels, light
tails and (but for stocks' price columns) no near-copied channels. Each set here adds one such
structure on a common base, so a change to the model or the recipe can be judged on data nobody
tuned for (`benchmarks/suite.py`). Every set is `ROWS` hourly-like rows of 3-8 channels, its
channels built from a daily season (period `DAY`) and AR(1) noise (`_base`), and is drawn from
`numpy.random.default_rng(seed)`: the library trains on seed 0 and the memorisation check draws
fresh windows from seed 1 (`stdiff_jax.data.held_out`). The seed draws the noise, the regimes and
the bursts; the season's phases are constants of each set's process (`SEASON_PHASES`), so another
seed gives new windows of the same process, not of a process whose channels peak at other hours.

| name | K | the structure it tests |
| --- | --- | --- |
| suite_regimes | 5 | a two-state regime chain shifts every channel's level: window means bimodal, |
| | | regime 1's mode holding `REGIME_SHARE` (0.4) of the windows |
| suite_heavy_tails | 4 | Student-t innovations of `TAIL_INDEX` (3) degrees of freedom: tail index |
| | | 3 (Hill's estimate from the top 1% of the values: 2.9-3.7 over seeds 0-9) |
| suite_copy | 4 | channel `copy` is channel `base` plus noise, correlation `COPY_CORRELATION` |
| | | (0.99) |
| suite_bursts | 4 | decaying bursts at `BURST_RATE` (1/200) per row on a quiet base, echoed in |
| | | a second channel `ECHO_LAG` rows later |
| suite_trend | 5 | a level that rises `TREND_RISE` (12) noise stds over the series: the first |
| | | and the last tenth of the windows never overlap in level |
"""

import numpy as np

ROWS = 17_420  # ETTh1's rows, so a run costs about what ETTh's does
DAY = 24  # rows per cycle of the daily season, the same in every set
NOISE_AR = 0.8  # AR(1) coefficient of every base channel's noise
NOISE_STD = 0.3  # its stationary standard deviation

REGIME_SHIFTS = (3.0, 2.5, -2.0, 3.0, 1.5)  # each channel's level in regime 1 (0 in regime 0)
REGIME_DWELL = (180, 120)  # mean rows of a stay in regime 0, 1 (uniform on 0.5-1.5x the mean)
REGIME_SHARE = REGIME_DWELL[1] / sum(REGIME_DWELL)  # 0.4 of the rows in regime 1
TAIL_INDEX = 3.0  # of |x|: P(|x| > t) ~ t^-3, from t-distributed innovations with 3 dof
TAIL_AR = 0.3
COPY_CORRELATION = 0.99
BURST_RATE = 1 / 200  # burst onsets per row: a gap of BURST_MIN_GAP rows plus an exponential
BURST_MIN_GAP = 24  # so bursts never overlap (each decays below 1% of its peak in 24 rows)
BURST_DECAY = 5.0  # e-folding rows
BURST_PEAK = (2.0, 4.0)  # peaks uniform in this range; the quiet base's std is about 0.15
ECHO_LAG, ECHO_GAIN = 2, 0.5
TREND_RISE = 12.0  # the level's rise over the whole series, in units of NOISE_STD
TREND_LOADINGS = (1.0, 0.8, -0.6, 0.4, 0.0)  # each channel's share of the trend
# Each set's daily-season phase per channel (radians): what seed 0 drew when the sets were made,
# fixed since, so that every seed draws the same process (seed 0's series are unchanged).
SEASON_PHASES = {
    "suite_regimes": (4.518991109258015, 0.10047899997889743, 4.762346601567949,
                      3.2217580761284523, 5.837733988950287),
    "suite_heavy_tails": (3.4941064946481553, 1.5130626948728048, 2.237465163732414,
                          2.9996937590120374),
    "suite_copy": (4.002148315014479, 1.6951199159934145),
    "suite_bursts": (4.002148315014479, 1.6951199159934145, 0.25744424357926954,
                     0.10384619671527331),
    "suite_trend": (4.002148315014479, 1.6951199159934145, 0.25744424357926954,
                    0.10384619671527331, 5.109927617709579),
}


def ar1(rng, rows, cols, coef, innovations=None):
    """(rows, cols) AR(1) x_t = coef x_(t-1) + sqrt(1 - coef^2) e_t started at x_0 = e_0, so every
    row has the variance of e: 1 for the default Gaussian innovations."""
    import scipy.signal  # Imported here: it takes over a second, and only generated data needs it.

    e = rng.standard_normal((rows, cols)) if innovations is None else innovations
    scaled = np.sqrt(1 - coef ** 2) * e
    scaled[0] = e[0]
    return scipy.signal.lfilter([1.0], [1.0, -coef], scaled, axis=0)


def season(rng, rows, cols, period=DAY, amplitude=0.5, phases=None):
    """(rows, cols) sinusoids of the period, with a random phase per channel, or the given
    `phases` (cols,): the random ones are drawn either way, so the rest of rng's stream is the
    same."""
    t = np.arange(rows)[:, None]
    drawn = rng.uniform(0, 2 * np.pi, cols)
    phases = drawn if phases is None else np.asarray(phases)
    return amplitude * np.sin(2 * np.pi * t / period + phases)


def _base(rng, phases, rows=ROWS):
    """(rows, len(phases)): a daily season of amplitude 0.5 and the given phases plus
    AR(NOISE_AR) noise of std NOISE_STD."""
    cols = len(phases)
    return season(rng, rows, cols, phases=phases) + NOISE_STD * ar1(rng, rows, cols, NOISE_AR)


def two_state_chain(rng, rows, dwell):
    """(rows,) int: alternating stays in states 0 and 1 of uniform length on [0.5, 1.5] x
    dwell[state] rows (less spread than a Markov chain's geometric stays, so the share of each
    state in a series varies less), starting in state 1 with probability its share."""
    states, state = [], int(rng.random() < dwell[1] / sum(dwell))
    while sum(map(len, states)) < rows:
        states.append(np.full(round(dwell[state] * rng.uniform(0.5, 1.5)), state))
        state = 1 - state
    return np.concatenate(states)[:rows]


def regimes(seed=0):
    """The base with every channel's level shifted by REGIME_SHIFTS while a two-state chain
    (`two_state_chain`, REGIME_DWELL) is in state 1."""
    rng = np.random.default_rng(seed)
    chain = two_state_chain(rng, ROWS, REGIME_DWELL)
    raw = _base(rng, SEASON_PHASES["suite_regimes"]) + chain[:, None] * np.array(REGIME_SHIFTS)
    return raw, [f"c{k}_shift_{s:g}" for k, s in enumerate(REGIME_SHIFTS)]


def heavy_tails(seed=0):
    """Four channels of AR(TAIL_AR) noise driven by t(3) innovations, half of each innovation
    shared: the channels correlate and every one has tail index 3."""
    rng = np.random.default_rng(seed)
    shocks = rng.standard_t(TAIL_INDEX, (ROWS, 5))  # (rows, 1 shared + 4 own)
    innovations = 0.5 * shocks[:, :1] + 0.5 * shocks[:, 1:]
    raw = (season(rng, ROWS, 4, phases=SEASON_PHASES["suite_heavy_tails"])
           + ar1(rng, ROWS, 4, TAIL_AR, innovations))
    return raw, [f"t3_{k}" for k in range(4)]


def near_copy(seed=0):
    """base (season + AR noise), its near copy, a channel with a weekly (7 DAY) season, and a
    slow AR(0.99) channel."""
    rng = np.random.default_rng(seed)
    base, weekly = _base(rng, SEASON_PHASES["suite_copy"]).T
    weekly += np.sin(2 * np.pi * np.arange(ROWS) / (7 * DAY))
    # corr(base, base + e) = rho when var(e) = var(base) (1 / rho^2 - 1).
    noise_std = np.std(base) * np.sqrt(1 / COPY_CORRELATION ** 2 - 1)
    near_copy = base + noise_std * rng.standard_normal(ROWS)
    slow = 0.5 * ar1(rng, ROWS, 1, 0.99)[:, 0]
    return np.stack([base, near_copy, weekly, slow], 1), ["base", "copy", "weekly", "slow"]


def burst_onsets(rng, rows, rate, min_gap):
    """Sorted onset rows: gaps of min_gap plus an exponential, so the mean gap is 1 / rate."""
    gaps = min_gap + rng.exponential(1 / rate - min_gap, int(2 * rows * rate) + 10)
    onsets = np.cumsum(gaps).astype(int)
    return onsets[onsets < rows]


def bursts(seed=0):
    """`bursts` (onsets at BURST_RATE), `echo` (each burst ECHO_LAG rows later at ECHO_GAIN),
    `bursts_b` (bursts of its own at half that rate) and `seasonal` (the base alone), all on a
    quiet base of a third of the other sets' amplitude."""
    rng = np.random.default_rng(seed)
    raw = _base(rng, SEASON_PHASES["suite_bursts"]) / 3
    decay = np.exp(-np.arange(BURST_MIN_GAP) / BURST_DECAY)  # (gap,)
    for channel, rate in ((0, BURST_RATE), (2, BURST_RATE / 2)):
        spikes = np.zeros(ROWS)
        onsets = burst_onsets(rng, ROWS, rate, BURST_MIN_GAP)
        spikes[onsets] = rng.uniform(*BURST_PEAK, len(onsets))
        pulses = np.convolve(spikes, decay)[:ROWS]
        raw[:, channel] += pulses
        if channel == 0:
            raw[ECHO_LAG:, 1] += ECHO_GAIN * pulses[:-ECHO_LAG]
    return raw, ["bursts", "echo", "bursts_b", "seasonal"]


def trend(seed=0):
    """A linear rise of TREND_RISE x NOISE_STD over the series, loaded on the channels by
    TREND_LOADINGS (the last stays level), on the base."""
    rng = np.random.default_rng(seed)
    rise = TREND_RISE * NOISE_STD * np.linspace(0, 1, ROWS)[:, None]
    raw = _base(rng, SEASON_PHASES["suite_trend"]) + rise * np.array(TREND_LOADINGS)
    return raw, [f"trend_{w:g}" for w in TREND_LOADINGS]


# name -> generator(seed) -> ((ROWS, K) float64 series, K column names)
GENERATORS = {"suite_regimes": regimes, "suite_heavy_tails": heavy_tails, "suite_copy": near_copy,
              "suite_bursts": bursts, "suite_trend": trend}
