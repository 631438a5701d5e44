"""Generated stand-ins for the energy and fMRI data sets, whose files cannot be fetched everywhere.

They have the real sets' shapes and the kind of structure the real sets have, with known periods
and cross-channel structure, so that cost and quality can be measured (and a floor computed from
two halves of their windows) without the files. They are not the real data: their scores are
reported under their own names, `energy_standin` and `fmri_standin`; `energy` and `fmri` still
load (download and verify) the real files. Both are drawn from `numpy.random.default_rng(seed)`:
the library trains on seed 0, the memorisation check draws fresh windows from seed 1. The seed
draws the noise and the inputs; the phases of the daily cycles and oscillations are constants
of the process (`ENERGY_ROOM_PHASES`, `FMRI_PHASES`), as the suite's are.

energy_standin (ENERGY_ROWS x 28, the columns of the UCI appliances-energy file): 10-minute rows,
so a day is ENERGY_DAY rows and a week ENERGY_WEEK.
- `T_out`: a warming of 8 C over the series, slow weather (AR(0.999), std 3 C) and a daily
  cycle of 4 C amplitude, coldest at night.
- `T1`..`T9` (rooms): 0.3 of the outdoor temperature plus a daily cycle of their own phase and a
  room AR(0.99) drift; `RH_1`..`RH_9`: -2 %/C of their room's temperature deviation plus a
  shared humidity factor (AR(0.995)); `RH_out` the same on `T_out`, clipped to [20, 100].
- `Tdewpoint` = T_out - (100 - RH_out) / 5 (the usual approximation), exactly.
- `Press_mm_hg`, `Windspeed` (>= 0), `Visibility` ([1, 66]): slow AR processes.
- `Appliances` (multiples of 10 Wh) and `lights` (0-70 in steps of 10): a daily profile peaking in
  the evening, 1.4x higher on 2 days of each week (the ENERGY_WEEK period), log-normal
  fluctuations; lights Poisson counts of that profile.
- `rv1` uniform on [0, 50] and `rv2` identical to it, as in the real file.

fmri_standin (FMRI_ROWS x 50), a NetSim-like BOLD simulation: 5 networks of 10 nodes. Each
node's neural activity is an AR(0.5) response to sparse boxcar inputs, to its network's
oscillation (period FMRI_PERIODS[network] rows, the same phase across the network) and, one row
later, to the previous node of its network (weight FMRI_COUPLING: a chain of directed
connections). The BOLD signal is that activity convolved with a double-gamma haemodynamic
response (TR FMRI_TR s) plus white noise of FMRI_NOISE std. Nodes of a network correlate
strongly, nodes of different networks barely.
"""

import numpy as np

from stdiff_jax.data.suite import ar1, season

ENERGY_ROWS = 19_735
ENERGY_DAY = 144  # 10-minute rows per day
ENERGY_WEEK = 7 * ENERGY_DAY
ROOMS = 9
FMRI_ROWS = 10_000
FMRI_NETWORKS, FMRI_NODES = 5, 10
FMRI_PERIODS = (8, 12, 16, 24, 32)  # rows per cycle of each network's oscillation
FMRI_COUPLING = 0.4
FMRI_TR = 2.0  # seconds per row
FMRI_NOISE = 0.3
FMRI_WARMUP = 64  # rows simulated and dropped, so the filters start from their stationary law
# The phases of the rooms' daily cycles (days) and of the networks' oscillations (radians):
# constants of each stand-in's process, what seed 0 drew when they were made, so that another
# seed (the memorisation check's fresh draws) gives new data of the same process.
ENERGY_ROOM_PHASES = (0.9366153201548123, 0.10213465113424336, 0.2005574846475734,
                      0.20623249324247261, 0.9822380531424931, 0.9745000627474513,
                      0.8004780959966431, 0.9460849723710872, 0.2796503194434232)
FMRI_PHASES = (4.203696450265438, 5.091109144526286, 5.421856384918667, 0.9478360645626223,
               2.6954559548602752)


def _daily(rows, phase, period=ENERGY_DAY):
    """(rows, ...) sin(2 pi (t / period - phase)), phases in days."""
    t = np.arange(rows)[:, None] if np.ndim(phase) else np.arange(rows)
    return np.sin(2 * np.pi * (t / period - phase))


def _energy_use(rng, rows):
    """(Appliances, lights): the evening-peaked daily profile, 1.4x on days 5 and 6 of each week."""
    day = np.arange(rows) // ENERGY_DAY
    profile = (1 + np.maximum(_daily(rows, 0.55), 0) ** 2) * np.where(day % 7 >= 5, 1.4, 1.0)
    appliances = 10 * np.round(6 * profile * np.exp(0.5 * ar1(rng, rows, 1, 0.9)[:, 0]))
    lights = 10 * np.minimum(rng.poisson(0.6 * (profile - 0.9)), 7)
    return appliances, lights


def energy_standin(seed=0):
    """(ENERGY_ROWS, 28) and the real file's column names; the structure is in the module
    docstring."""
    rng, rows = np.random.default_rng(seed), ENERGY_ROWS
    t_out = (5 + 8 * np.linspace(0, 1, rows) + 3 * ar1(rng, rows, 1, 0.999)[:, 0]
             - 4 * np.cos(2 * np.pi * np.arange(rows) / ENERGY_DAY))
    humid = ar1(rng, rows, 1, 0.995)  # (rows, 1) shared humidity factor
    rng.uniform(0, 1, ROOMS)  # the phases' draw of old, kept so that the stream stays the same
    rooms = (19 + 0.3 * t_out[:, None] + 1.2 * _daily(rows, np.asarray(ENERGY_ROOM_PHASES))
             + 0.8 * ar1(rng, rows, ROOMS, 0.99))  # (rows, 9)
    rh_rooms = 45 - 2 * (rooms - rooms.mean(0)) + 5 * humid + ar1(rng, rows, ROOMS, 0.9)
    rh_out = np.clip(80 - 3 * (t_out - t_out.mean()) + 8 * humid[:, 0], 20, 100)
    dewpoint = t_out - (100 - rh_out) / 5
    pressure = 755 + 5 * ar1(rng, rows, 1, 0.9995)[:, 0]
    wind = 4 * np.abs(ar1(rng, rows, 1, 0.99)[:, 0])
    visibility = np.clip(40 + 10 * ar1(rng, rows, 1, 0.99)[:, 0], 1, 66)
    appliances, lights = _energy_use(rng, rows)
    rv = rng.uniform(0, 50, rows)
    interleaved = np.stack([rooms, rh_rooms], 2).reshape(rows, 2 * ROOMS)  # T1, RH_1, T2, ...
    raw = np.column_stack([appliances, lights, interleaved, t_out, pressure, rh_out, wind,
                           visibility, dewpoint, rv, rv])
    names = (["Appliances", "lights"]
             + [f"{kind}{k}" for k in range(1, ROOMS + 1) for kind in ("T", "RH_")]
             + ["T_out", "Press_mm_hg", "RH_out", "Windspeed", "Visibility", "Tdewpoint",
                "rv1", "rv2"])
    return raw, names


def haemodynamic_response(tr=FMRI_TR, seconds=32.0):
    """The canonical double-gamma HRF (peak ~5 s, undershoot ~15 s) sampled every tr seconds,
    summing to 1."""
    import scipy.stats  # Imported here, as scipy.signal below: only the stand-ins need them.

    t = np.arange(0, seconds, tr)
    h = scipy.stats.gamma.pdf(t, 6) - scipy.stats.gamma.pdf(t, 16) / 6
    return h / h.sum()


def fmri_standin(seed=0):
    """(FMRI_ROWS, 50) BOLD signals, nodes net0_0 ... net4_9; the module docstring has the
    structure."""
    import scipy.signal  # Imported here: it takes over a second, and only the stand-ins need it.

    rng, rows = np.random.default_rng(seed), FMRI_ROWS + FMRI_WARMUP
    shape = (rows, FMRI_NETWORKS, FMRI_NODES)
    # Sparse boxcar inputs: each node is "on" in about 5% of the rows, in runs of ~4 rows.
    onsets = rng.random(shape) < 0.0125
    boxcars = scipy.signal.lfilter(np.ones(4), [1.0], onsets, axis=0)
    drive = boxcars + np.concatenate(
        [season(rng, rows, 1, period=p, amplitude=1.0, phases=(phase,))
         for p, phase in zip(FMRI_PERIODS, FMRI_PHASES)], 1)[:, :, None]
    activity = np.zeros(shape)
    for node in range(FMRI_NODES):  # a chain: node j listens to node j - 1 one row earlier
        inputs = drive[:, :, node].copy()
        if node:
            inputs[1:] += FMRI_COUPLING * activity[:-1, :, node - 1]
        activity[:, :, node] = scipy.signal.lfilter([1.0], [1.0, -0.5], inputs, axis=0)
    bold = scipy.signal.lfilter(haemodynamic_response(), [1.0], activity, axis=0)
    bold = bold[FMRI_WARMUP:].reshape(FMRI_ROWS, -1)
    bold = bold + FMRI_NOISE * rng.standard_normal(bold.shape)
    return bold, [f"net{n}_{j}" for n in range(FMRI_NETWORKS) for j in range(FMRI_NODES)]


# name -> generator(seed) -> ((rows, K) float64 series, K column names)
GENERATORS = {"energy_standin": energy_standin, "fmri_standin": fmri_standin}
