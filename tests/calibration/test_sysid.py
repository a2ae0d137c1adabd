"""Identification of the mean with mujoco.sysid (calibration.sysid): stays within its simulation
budget, never returns worse than the prior mean, fits synthetic data with known dynamics and
reports confidence intervals."""
from __future__ import annotations

import numpy as np
import pytest

from calib_helpers import synthetic_real
from calibration.simopt import Calibration, CalibrationSettings, SearchEntry
from calibration.sysid import least_squares_mean

TRUTH = np.array([1.3, 0.9])  # body mass factor, kp factor


@pytest.fixture(scope="module")
def real(profile, prior, emulator_eps):
    calib = Calibration(profile, prior, emulator_eps, make_settings())
    truth = calib.element_values(TRUTH[None])[0]
    calib.close()
    return synthetic_real(profile, prior, [e.truncated(25) for e in emulator_eps], truth, "open_loop")


def make_settings():
    return CalibrationSettings(search=(SearchEntry("body_mass", True), SearchEntry("actuator_kp", True)),
                               mode="open_loop", samples=8, iterations=1, max_steps=25)


@pytest.fixture
def calib(profile, prior, real):
    c = Calibration(profile, prior, real, make_settings())
    yield c
    c.close()


def test_least_squares_fits_the_mean_within_the_budget(calib):
    budget = 40
    start = calib.rollouts
    fit = least_squares_mean(calib, budget)
    assert fit.vectors_simulated <= budget
    # Everything simulated went through the calibration (plus one evaluation at the fit).
    assert calib.rollouts - start == (fit.vectors_simulated + 1) * len(calib.episodes)
    assert fit.discrepancy < 0.05 * calib.initial_discrepancy
    np.testing.assert_allclose(fit.mean, TRUTH, atol=0.02)
    assert np.all((fit.mean >= calib.prior.low) & (fit.mean <= calib.prior.high))
    # mujoco.sysid's confidence intervals at the fit: finite (both are identifiable) and small
    print("95% half-widths", fit.interval95)
    assert fit.interval95.shape == (2,) and np.all(np.isfinite(fit.interval95)) and np.all(fit.interval95 < 0.1)


@pytest.mark.parametrize("budget", [0, 1, 5])
def test_a_small_budget_stops_the_fit_and_returns_the_best_seen(calib, budget):
    fit = least_squares_mean(calib, budget)
    assert fit.status == "budget spent"
    assert fit.vectors_simulated <= budget
    assert fit.discrepancy <= calib.initial_discrepancy + 1e-12
    if budget == 0:
        assert fit.vectors_simulated == 0
        np.testing.assert_array_equal(fit.mean, calib.prior.mean)
