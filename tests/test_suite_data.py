"""The generated data sets have the structure their docstrings claim: the suite's modes, tail
index, near copy, bursts and trend; the stand-ins' shapes, periods and cross-channel structure;
and every generator is reproducible from its seed."""

import importlib

import numpy as np
import pytest
import scipy.stats

from stdiff_jax.data import load_dataset, standins, suite
from stdiff_jax.data.loaders import GENERATED, NAMES
from stdiff_jax.data.sources import SOURCES

L = 24
SEEDS = (0, 1, 2)


def window_means(raw, length=L):
    """(N, K) means of every stride-1 window."""
    return np.lib.stride_tricks.sliding_window_view(raw, length, axis=0).mean(-1)


def hill(x, share=0.01):
    """Hill's estimate of the tail index of |x| from its top `share`."""
    top = np.sort(np.abs(np.ravel(x)))[::-1]
    k = int(share * len(top))
    return 1 / np.mean(np.log(top[:k] / top[k]))


def peak_period(x, shortest=2, longest=None):
    """The period (rows) of the largest periodogram bin of x, its linear trend removed."""
    t = np.arange(len(x))
    x = x - np.polyval(np.polyfit(t, x, 1), t)
    power, freq = np.abs(np.fft.rfft(x)) ** 2, np.fft.rfftfreq(len(x))
    keep = (freq <= 1 / shortest) & (freq >= 1 / (longest or len(x)))
    return 1 / freq[keep][np.argmax(power[keep])]


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generators_are_seeded_and_load_as_data_sets(name):
    raw, names = GENERATED[name](seed=0)
    again, _ = GENERATED[name](seed=0)
    other, _ = GENERATED[name](seed=1)
    np.testing.assert_array_equal(raw, again)
    assert raw.shape == other.shape and not np.allclose(raw, other)
    assert raw.dtype == np.float64 and np.all(np.isfinite(raw)) and len(names) == raw.shape[1]
    dataset = load_dataset(name, L)
    assert name in NAMES and dataset.column_names == tuple(names)
    assert dataset.windows.shape == (len(raw) - L + 1, L, raw.shape[1])
    np.testing.assert_allclose(dataset.to_raw(dataset.windows[0]), raw[:L], rtol=1e-5, atol=1e-4)
    if name.startswith("suite_"):
        assert 3 <= raw.shape[1] <= 8 and 5_000 <= len(raw) <= 20_000
    config = importlib.import_module(f"configs.{name}").get_config("cpu")
    assert config.data.name == name and config.name == f"{name}_L24_cpu"


def cycles(raw, period):
    """(K,) complex amplitude of each channel's cycle of `period` rows (a + i b for
    a cos + b sin; its angle is the phase)."""
    t = np.arange(len(raw))
    return 2 * np.exp(-2j * np.pi * t / period) @ (raw - raw.mean(0)) / len(raw)


CYCLES = {"energy_standin": (standins.ENERGY_DAY,), "fmri_standin": standins.FMRI_PERIODS}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_another_seed_draws_new_data_of_the_same_process(name):
    """The memorisation check's reference is another seed's draw: it must be the same process
    (every channel's cycles at the same phase and amplitude), or generated windows that match
    the training series would read as copies."""
    raw0, raw1 = GENERATED[name](seed=0)[0], GENERATED[name](seed=1)[0]
    checked = 0
    for period in CYCLES.get(name, (suite.DAY,)):
        c0, c1 = cycles(raw0, period), cycles(raw1, period)
        strong = np.abs(c0) > 0.25 * raw0.std(0)  # cycles above the noise
        checked += strong.sum()
        np.testing.assert_allclose(np.angle(c1[strong] / c0[strong]), 0, atol=0.25)
        np.testing.assert_allclose(np.abs(c1[strong] / c0[strong]), 1, atol=0.3)
    assert checked >= 2


@pytest.mark.parametrize("seed", SEEDS)
def test_regimes_make_the_window_means_bimodal_at_the_chain_s_share(seed):
    raw, _ = suite.regimes(seed)
    for channel, shift in enumerate(suite.REGIME_SHIFTS):
        means = window_means(raw)[:, channel] / shift  # the modes at 0 and 1
        grid = np.linspace(-0.5, 1.5, 401)
        density = scipy.stats.gaussian_kde(means)(grid)
        peaks = np.flatnonzero((density[1:-1] > density[:-2]) & (density[1:-1] > density[2:])) + 1
        tall = peaks[density[peaks] > 0.1 * density.max()]
        assert len(tall) == 2, (channel, grid[peaks])
        np.testing.assert_allclose(grid[tall], [0, 1], atol=0.1)
        dip = density[(grid > 0.3) & (grid < 0.7)].max()  # the windows straddling a switch
        assert dip < 0.35 * density[tall].min()
        assert np.mean(means > 0.5) == pytest.approx(suite.REGIME_SHARE, abs=0.03)


@pytest.mark.parametrize("seed", SEEDS)
def test_heavy_tails_have_tail_index_three_and_the_gaussian_base_does_not(seed):
    raw, _ = suite.heavy_tails(seed)
    assert hill(raw - np.median(raw, 0)) == pytest.approx(suite.TAIL_INDEX, abs=0.75)
    assert scipy.stats.kurtosis(raw, axis=0).min() > 3  # a Gaussian's excess kurtosis is 0
    base, _ = suite.near_copy(seed)  # its base channel is the Gaussian AR base of every set
    assert hill(base[:, 0] - np.median(base[:, 0])) > 6


@pytest.mark.parametrize("seed", SEEDS)
def test_near_copy_has_the_stated_correlation_and_the_others_do_not(seed):
    raw, names = suite.near_copy(seed)
    corr = np.corrcoef(raw.T)
    assert names[:2] == ["base", "copy"]
    assert corr[0, 1] == pytest.approx(suite.COPY_CORRELATION, abs=0.002)
    assert np.all(np.abs(corr[np.triu_indices(4, 1)][1:]) < 0.5)


@pytest.mark.parametrize("seed", SEEDS)
def test_bursts_come_at_their_rate_and_echo_after_the_lag(seed):
    raw, _ = suite.bursts(seed)
    quiet = np.abs(raw[:, 3]).max()  # the channel without bursts bounds the base
    for channel, rate in ((0, suite.BURST_RATE), (2, suite.BURST_RATE / 2)):
        above = raw[:, channel] > suite.BURST_PEAK[0] / 2 + quiet
        onsets = np.flatnonzero(above[1:] & ~above[:-1])
        # A renewal count: n = rows x rate on average, with sd sqrt(n) x (the exponential part's
        # share of the mean gap).
        expected = len(raw) * rate
        sd = np.sqrt(expected) * (1 - suite.BURST_MIN_GAP * rate)
        assert abs(len(onsets) - expected) < 4 * sd
        assert np.diff(onsets).min() >= suite.BURST_MIN_GAP
    lags = np.arange(-5, 6)
    cross = [np.corrcoef(raw[5:-5, 0], np.roll(raw[:, 1], -lag)[5:-5])[0, 1] for lag in lags]
    assert lags[np.argmax(cross)] == suite.ECHO_LAG and max(cross) > 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_trend_moves_the_window_level_across_the_series(seed):
    raw, _ = suite.trend(seed)
    means = window_means(raw)
    index = np.arange(len(means))
    for channel, loading in enumerate(suite.TREND_LOADINGS):
        corr = np.corrcoef(index, means[:, channel])[0, 1]
        assert abs(corr) < 0.2 if loading == 0 else np.sign(corr) == np.sign(loading)
    tenth = len(means) // 10
    assert means[:tenth, 0].max() < means[-tenth:, 0].min()  # start and end never overlap
    assert np.corrcoef(index, means[:, 0])[0, 1] > 0.95


def test_standins_have_the_real_sets_shapes_and_names():
    for name, real in (("energy_standin", "energy"), ("fmri_standin", "fmri")):
        raw, names = GENERATED[name](seed=0)
        assert raw.shape == SOURCES[real].shape
    _, names = standins.energy_standin()
    assert (names[0], names[-1]) == SOURCES["energy"].header and len(set(names)) == 28


def test_energy_standin_periods_and_channel_relations():
    raw, names = standins.energy_standin(seed=0)
    col = {name: raw[:, k] for k, name in enumerate(names)}
    for name in ("T_out", "T1", "T5", "RH_1", "Appliances"):
        assert peak_period(col[name], shortest=12, longest=2000) == pytest.approx(
            standins.ENERGY_DAY, rel=0.01), name
    weekday = np.arange(len(raw)) // standins.ENERGY_DAY % 7
    use = np.array([col["Appliances"][weekday == d].mean() for d in range(7)])
    assert use[5:].min() > 1.25 * use[:5].max()  # the weekly period: two heavier days a week
    rooms = np.corrcoef(np.stack([col[f"T{k}"] for k in range(1, 10)]))
    assert rooms[np.triu_indices(9, 1)].min() > 0.3
    assert all(np.corrcoef(col[f"T{k}"], col[f"RH_{k}"])[0, 1] < -0.3 for k in range(1, 10))
    np.testing.assert_allclose(col["Tdewpoint"], col["T_out"] - (100 - col["RH_out"]) / 5)
    np.testing.assert_array_equal(col["rv1"], col["rv2"])
    for name in ("Appliances", "lights"):
        assert np.all(col[name] % 10 == 0) and col[name].min() >= 0


def test_fmri_standin_networks_oscillate_at_their_periods_and_correlate_inside():
    raw, _ = standins.fmri_standin(seed=0)
    networks = raw.reshape(len(raw), standins.FMRI_NETWORKS, standins.FMRI_NODES)
    for n, period in enumerate(standins.FMRI_PERIODS):
        assert peak_period(networks[:, n].mean(1), longest=200) == pytest.approx(period, rel=0.02)
    corr = np.corrcoef(raw.T)
    same = np.kron(np.eye(standins.FMRI_NETWORKS), np.ones((standins.FMRI_NODES,) * 2)) > 0
    inside = corr[same & ~np.eye(len(corr), dtype=bool)]
    assert inside.min() > 0.4 and np.abs(corr[~same]).max() < 0.1
