"""Rate and time left of the long loops: training steps and generated samples.

Both write one log line per report through absl logging, so every host of a pod and a batch
job's log file keep them; not tqdm or rich.progress (the latter installed with flax), whose bars
redraw one terminal line and come out garbled or not at all in those logs.
"""

import time
from typing import NamedTuple


def format_seconds(seconds):
    """'1h05m' or '4m07s'."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class Progress(NamedTuple):
    """Where a loop over `total` units stands at one report."""

    done: int
    total: int
    elapsed_s: float  # since the loop started
    rate: float  # units per second since the previous report (the first: since the start)
    first: bool  # the first report, whose interval includes the compilation

    @property
    def eta_s(self):
        """Seconds left at the current rate."""
        return (self.total - self.done) / max(self.rate, 1e-9)

    def describe(self, unit):
        """'<rate> <unit>/s  ETA <time left>', marked on the first report."""
        return (f"{self.rate:.2f} {unit}/s  ETA {format_seconds(self.eta_s)}"
                + ("  (includes compilation)" if self.first else ""))


class Meter:
    """Times a loop over `total` units that starts with `done` of them done (a resumed run)."""

    def __init__(self, total, done=0):
        self.total, self.start = total, done
        self._start_time = time.perf_counter()
        self._last = (done, self._start_time)
        self._reports = 0

    def report(self, done):
        """The `Progress` at `done` units, its rate measured since the previous report."""
        now = time.perf_counter()
        rate = (done - self._last[0]) / max(now - self._last[1], 1e-9)
        self._last, self._reports = (done, now), self._reports + 1
        return Progress(done, self.total, now - self._start_time, rate, self._reports == 1)
