"""The progress lines of training and generation: rates between reports, time left, formatting."""

import pytest

from stdiff_jax import progress


@pytest.fixture
def clock(monkeypatch):
    """A fake perf_counter: set clock.now, and the meter reads it."""

    class Clock:
        now = 0.0

    monkeypatch.setattr(progress.time, "perf_counter", lambda: Clock.now)
    return Clock


def test_meter_measures_the_rate_between_reports_from_a_resumed_start(clock):
    meter = progress.Meter(total=100, done=10)  # resumed at unit 10, at time 0
    clock.now = 4.0
    first = meter.report(30)
    assert (first.done, first.total, first.elapsed_s, first.rate) == (30, 100, 4.0, 5.0)
    assert first.first and first.eta_s == 14.0
    assert first.describe("steps") == "5.00 steps/s  ETA 0m14s  (includes compilation)"
    clock.now = 6.0
    second = meter.report(50)  # 20 units in the 2 s since the last report, not 40 in 6
    assert (second.rate, second.elapsed_s, second.first, second.eta_s) == (10.0, 6.0, False, 5.0)
    assert second.describe("samples") == "10.00 samples/s  ETA 0m05s"
    clock.now = 7.0
    assert meter.report(100).eta_s == 0


def test_format_seconds():
    assert progress.format_seconds(247.4) == "4m07s"
    assert progress.format_seconds(3725) == "1h02m"
    assert progress.format_seconds(0) == "0m00s"
