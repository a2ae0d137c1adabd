"""Baseline: plain least-squares system identification of the parameter *mean*.

No distribution, no KL bound: minimise the squared trajectory error (the L2 part of the
SimOpt discrepancy, same smoothing and normalisation) over the search variables with
scipy's bounded trust-region least squares, finite-difference Jacobians batched into one
rollout call each. Stops when scipy converges or the simulation budget (parameter vectors
simulated, each over all episodes) is spent; returns the best vector seen. This is the
comparison `sim2real bench calibrate` runs next to REPS and CEM on the same data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from calibration.discrepancy import residuals

__all__ = ["LeastSquaresResult", "least_squares_mean"]


@dataclass
class LeastSquaresResult:
    mean: np.ndarray            # the fitted search variables
    discrepancy: float          # D at the fit (the SimOpt cost, for comparison)
    vectors_simulated: int      # parameter vectors simulated (x the episodes = rollouts)
    status: str


class _Budget(Exception):
    pass


def least_squares_mean(calib, budget_vectors: int, *, rel_step: float = 1e-2) -> LeastSquaresResult:
    """Fit the mean of ``calib``'s search variables (a :class:`calibration.simopt.Calibration`),
    starting at the prior mean, within ``budget_vectors`` simulated parameter vectors."""
    s = calib.settings
    low, high = calib.prior.low.copy(), calib.prior.high.copy()
    span = np.where(np.isfinite(high - low), high - low, np.maximum(np.abs(calib.prior.mean), 1.0))
    step = rel_step * span
    used = 0
    best = (np.inf, calib.prior.mean.copy())

    def simulate(x: np.ndarray) -> np.ndarray:
        nonlocal used, best
        if used + len(x) > budget_vectors:
            raise _Budget
        used += len(x)
        r = residuals(calib.simulate(x), calib.real, weights=calib.weights, scale=calib.scale,
                      smooth_std=s.smooth_std, truncate=s.truncate)
        cost = np.where(np.all(np.isfinite(r), axis=1), (r ** 2).sum(axis=1), np.inf)
        k = int(np.argmin(cost))
        if cost[k] < best[0]:
            best = (float(cost[k]), x[k].copy())
        return np.where(np.isfinite(r), r, 1e6)

    def fun(x):
        return simulate(x[None])[0]

    def jac(x):
        # forward differences, stepping away from the nearer bound; one batched rollout
        h = np.where(x + step <= high, step, -step)
        probes = x[None] + np.diag(h)
        base = simulate(x[None])[0]
        return (simulate(probes) - base[None]).T / h[None]

    x0 = np.clip(calib.prior.mean, low + 1e-9 * span, high - 1e-9 * span)
    status = "converged"
    try:
        res = least_squares(fun, x0, jac=jac, bounds=(low, high), method="trf", x_scale=span)
        status = f"converged ({res.message})"
    except _Budget:
        status = "budget spent"
    mean = best[1]
    return LeastSquaresResult(mean, calib.discrepancy_at(mean), used, status)
