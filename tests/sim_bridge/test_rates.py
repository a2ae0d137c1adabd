"""RateMeter: achieved_rate_hz over a sliding window of ticks."""
from __future__ import annotations

import pytest

from sim_bridge.rates import RateMeter


def test_no_rate_before_two_ticks():
    meter = RateMeter(10)
    assert meter.rate_hz() == 0.0 and meter.last_s is None and len(meter) == 0
    meter.tick(5.0)
    assert meter.rate_hz() == 0.0 and meter.last_s == 5.0 and len(meter) == 1


def test_regular_ticks_give_their_rate():
    meter = RateMeter(100)
    for k in range(60):
        meter.tick(3.0 + k / 50.0)
    assert meter.rate_hz() == pytest.approx(50.0)
    assert len(meter) == 60 and meter.last_s == pytest.approx(3.0 + 59 / 50.0)


def test_the_window_slides_to_the_latest_ticks():
    meter = RateMeter(20)
    t = 0.0
    for _ in range(100):   # 10 Hz for a while
        t += 0.1
        meter.tick(t)
    assert meter.rate_hz() == pytest.approx(10.0)
    for _ in range(20):    # then 100 Hz: the window (20 ticks) holds only those
        t += 0.01
        meter.tick(t)
    assert meter.rate_hz() == pytest.approx(100.0) and len(meter) == 20


def test_ticks_without_elapsed_time_give_zero_not_a_division_error():
    meter = RateMeter(5)
    meter.tick(1.0)
    meter.tick(1.0)
    assert meter.rate_hz() == 0.0


def test_clear_and_window_sizes():
    meter = RateMeter.over(2.0, 50.0)
    assert meter.window == 100
    assert RateMeter.over(2.0, 1.0).window == 10, "at least the minimum"
    assert RateMeter.over(2.0, 1.0, minimum=3).window == 3
    meter.tick(0.0)
    meter.tick(1.0)
    meter.clear()
    assert len(meter) == 0 and meter.rate_hz() == 0.0 and meter.last_s is None
    with pytest.raises(ValueError, match="at least 2"):
        RateMeter(1)
