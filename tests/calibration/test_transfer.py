"""Transfer scoring on the arm emulator (calibration.transfer): the shipped reach_lstm reaches
most goals, the score is reproducible for a seed, and a loop too short to hold a goal scores 0."""
from __future__ import annotations

import numpy as np

from sim_bridge.episode import SuccessCriterion

from calib_helpers import REACH_LSTM
from calibration.transfer import emulator_success
from real_bridge.emulator import ArmEmulator


def test_shipped_policy_reaches_goals_on_the_emulator():
    score = emulator_success(REACH_LSTM, 5, seed=0)
    assert score.policy == "reach_lstm" and score.episodes == 5
    assert score.successes >= 1, score.line()
    assert 0.0 <= score.mean_final_error_m < 0.1
    lo, hi = score.ci95
    assert 0.0 <= lo <= score.rate <= hi <= 1.0
    assert "reach_lstm" in score.line() and f"{score.successes}/5" in score.line().replace(" ", "")


def test_score_is_deterministic_for_a_seed():
    a = emulator_success(REACH_LSTM, 3, seed=7, label="run a")
    b = emulator_success(REACH_LSTM, 3, seed=7, label="run b", emulator=ArmEmulator())
    assert (a.successes, a.mean_final_error_m) == (b.successes, b.mean_final_error_m)
    assert (a.policy, b.policy) == ("run a", "run b")
    other = emulator_success(REACH_LSTM, 3, seed=8)
    assert other.mean_final_error_m != a.mean_final_error_m  # other goals


def test_too_short_episodes_never_succeed():
    score = emulator_success(REACH_LSTM, 3, seed=0, steps=5, success=SuccessCriterion(0.02, 10))
    assert score.successes == 0 and score.rate == 0.0
    assert np.isfinite(score.mean_final_error_m) and score.mean_final_error_m > 0.02
