"""Shared fixtures of the calibration tests: the robot, the prior and short "real" episodes
(the shipped reach_lstm driving the arm emulator, no ROS)."""
from __future__ import annotations

import pytest

from calib_helpers import REACH_LSTM
from calibration.episodes import ReferenceEpisode, emulator_episodes
from sim_bridge.profile import load_profile
from sim_bridge.randomization import load_randomization


@pytest.fixture(scope="session")
def profile():
    return load_profile("panda_like")


@pytest.fixture(scope="session")
def prior():
    return load_randomization("default")


@pytest.fixture(scope="session")
def emulator_eps():
    """Two emulator episodes of different lengths (30 and 24 joint states), reach_lstm."""
    a = emulator_episodes(REACH_LSTM, 1, steps=30, seed=3)[0]
    b = emulator_episodes(REACH_LSTM, 1, steps=24, seed=4)[0]
    return [a, ReferenceEpisode("emulator#1", b.position, b.velocity, b.command, b.goal)]
