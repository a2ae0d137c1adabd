"""The one episode core: success criterion, held counter, tracker, summary, Wilson interval."""
from __future__ import annotations

import math

import pytest

from sim_bridge.episode import (EpisodeResult, EpisodeSummary, EpisodeTracker, HeldSuccess, SuccessCriterion,
                                episode_line, summary_line, wilson_interval)

REACH = SuccessCriterion(0.02, 10)


def test_success_needs_hold_steps_consecutive_steps_inside_the_radius():
    c = HeldSuccess(REACH)
    for _ in range(9):
        assert not c.update(0.01)
    assert not c.update(0.03)           # leaving resets the run
    assert c.held == 0
    for _ in range(9):
        assert not c.update(0.019)
    assert c.update(0.0199)             # the 10th consecutive step
    assert c.first_held_step == 11
    assert c.update(0.5) and c.succeeded  # sticky for the episode
    c.reset()
    assert not c.succeeded and c.steps == 0


def test_the_radius_is_exclusive():
    c = HeldSuccess(SuccessCriterion(0.02, 1))
    assert not c.update(0.02)
    assert c.update(0.0199999)


@pytest.mark.parametrize("radius,hold", [(0.0, 10), (-1.0, 10), (math.nan, 10), (0.02, 0), (0.02, 2.5)])
def test_a_criterion_that_cannot_be_met_is_refused(radius, hold):
    with pytest.raises(ValueError):
        SuccessCriterion(radius, hold)


def test_tracker_time_to_goal_in_sim_time_is_the_first_held_step():
    t = EpisodeTracker(REACH, period_s=0.02)
    errors = [0.1] * 5 + [0.01] * 12
    for e in errors:
        t.step(e)
    r = t.result(3, goal_m=[0.1, 0.2, 0.3])
    assert r.success and r.steps_to_goal == 6 and r.time_to_goal_s == pytest.approx(6 * 0.02)
    assert r.steps == 17 and r.final_error_m == 0.01 and r.min_error_m == 0.01 and r.episode == 3


def test_tracker_time_to_goal_with_the_callers_clock():
    t = EpisodeTracker(REACH, period_s=0.02)
    t.begin(t0_s=100.0)
    for i in range(15):
        t.step(0.5 if i < 3 else 0.001, time_s=100.0 + 0.03 * (i + 1))
    r = t.result(1)
    assert r.time_to_goal_s == pytest.approx(0.03 * 4)  # the 4th state, 0.12 s after the start


def test_failed_and_empty_episodes():
    t = EpisodeTracker(REACH, period_s=0.02)
    for _ in range(5):
        t.step(0.05)
    r = t.result(1)
    assert not r.success and r.time_to_goal_s is None and r.steps_to_goal is None
    t.begin()
    empty = t.result(2)
    assert empty.steps == 0 and math.isnan(empty.min_error_m) and math.isnan(empty.final_error_m)


def test_wilson_interval_is_scipys_and_covers_no_data():
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the Wilson score interval of 8/10
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 20)
    assert lo == pytest.approx(0.0, abs=1e-12) and 0.15 < hi < 0.17
    assert wilson_interval(20, 20)[1] == pytest.approx(1.0)


def test_summary_and_lines():
    results = [EpisodeResult(1, True, 1.2, 60, 0.01, 0.005, 80),
               EpisodeResult(2, False, None, None, 0.20, 0.1, 200, note="blow-up")]
    s = EpisodeSummary.of(results)
    assert (s.episodes, s.successes, s.success_rate) == (2, 1, 0.5)
    assert s.mean_time_to_goal_s == pytest.approx(1.2) and s.mean_final_error_m == pytest.approx(0.105)
    assert s.to_dict()["success_ci95"] == list(wilson_interval(1, 2))
    line = summary_line(results, REACH, who="policy 'x'")
    assert line.startswith("summary: policy 'x': 1/2 reached the goal (within 2 cm for 10 control steps): 50%")
    assert "episode 2/2  FAILED" in episode_line(results[1], 2) and "(blow-up)" in episode_line(results[1], 2)
    assert "time to goal  1.20 s" in episode_line(results[0], 2)
    assert EpisodeSummary.of([]).episodes == 0 and "0/0 reached" in summary_line([], REACH)
