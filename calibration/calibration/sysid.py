"""Baseline: system identification of the parameter *mean* with MuJoCo's own toolbox, ``mujoco.sysid``.

No distribution, no KL bound: ``mujoco.sysid.optimize`` (MuJoCo's box-bounded
Levenberg-Marquardt least squares, ``mujoco.minimize``) minimises the squared trajectory error
(the L2 part of the SimOpt discrepancy, same smoothing and normalisation) over the search
variables, each a ``mujoco.sysid.Parameter`` with the prior's mean as nominal value and its
bounds; ``mujoco.sysid.calculate_intervals`` gives 95% confidence half-widths from the
Jacobian at the fit (infinite where the data cannot fix a parameter).

What is ours: the residual. The recordings are closed-loop policy episodes on an arm whose
latency, noise and PD gains live in :class:`sim_bridge.simulator.ArmSimulator`, so the
residual runs the calibration's own batched rollouts (``calib.simulate``, the policy in the
loop when the settings say so) rather than mujoco.sysid's open-loop replay; the toolbox's
optimizer finite-differences it in one batched call per Jacobian (its residual is vectorized
over points). Stops when the optimizer converges or the simulation budget (parameter vectors
simulated, each over all episodes) is spent; returns the best vector seen. This is the
comparison `sim2real bench calibrate` runs next to REPS and CEM on the same data.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from calibration.discrepancy import residuals

__all__ = ["LeastSquaresResult", "least_squares_mean"]


@dataclass
class LeastSquaresResult:
    mean: np.ndarray            # the fitted search variables
    discrepancy: float          # D at the fit (the SimOpt cost, for comparison)
    vectors_simulated: int      # parameter vectors simulated (x the episodes = rollouts)
    status: str
    #: 95% confidence half-width per search variable (mujoco.sysid.calculate_intervals; inf:
    #: the data do not fix it; NaN: no Jacobian, e.g. the budget ran out first)
    interval95: np.ndarray = field(default_factory=lambda: np.zeros(0))


class _Budget(Exception):
    pass


def least_squares_mean(calib, budget_vectors: int, *, rel_step: float = 1e-2, max_iters: int = 50) -> LeastSquaresResult:
    """Fit the mean of ``calib``'s search variables (a :class:`calibration.simopt.Calibration`),
    starting at the prior mean, within ``budget_vectors`` simulated parameter vectors."""
    from mujoco import sysid  # noqa: PLC0415 - the kept library, imported where it is used

    s = calib.settings
    low, high = calib.prior.low.copy(), calib.prior.high.copy()
    span = np.where(np.isfinite(high - low), high - low, np.maximum(np.abs(calib.prior.mean), 1.0))
    low = np.where(np.isfinite(low), low, calib.prior.mean - 10 * span)
    high = np.where(np.isfinite(high), high, calib.prior.mean + 10 * span)
    x0 = np.clip(calib.prior.mean, low + 1e-3 * span, high - 1e-3 * span)  # off the bounds (sysid warns)
    params = sysid.ParameterDict({
        name: sysid.Parameter(name, nominal=float(x0[i]), min_value=float(low[i]), max_value=float(high[i]))
        for i, name in enumerate(calib.space.names)})
    used = 0
    best = [np.inf, calib.prior.mean.copy(), None]  # cost, vector, residual

    def simulate(x: np.ndarray) -> np.ndarray:
        """Residuals [k, m] of k parameter vectors [k, n] (one batched rollout call)."""
        nonlocal used
        if used + len(x) > budget_vectors:
            raise _Budget
        used += len(x)
        r = residuals(calib.simulate(x), calib.real, weights=calib.weights, scale=calib.scale,
                      smooth_std=s.smooth_std, truncate=s.truncate)
        cost = np.where(np.all(np.isfinite(r), axis=1), (r ** 2).sum(axis=1), np.inf)
        k = int(np.argmin(cost))
        if cost[k] < best[0]:
            best[:] = [float(cost[k]), x[k].copy(), r[k].copy()]
        return np.where(np.isfinite(r), r, 1e6)

    def residual_fn(x, _params):
        # mujoco.minimize evaluates the residual at several points at once (columns of x)
        points = np.asarray(x, dtype=float)
        batch = points.reshape(len(x0), -1).T
        r = simulate(batch).T  # [m, k]
        return [r if points.ndim == 2 else r[:, 0]], None, None

    interval = np.full(len(x0), np.nan)
    try:
        _, result = sysid.optimize(params, residual_fn, optimizer="mujoco", verbose=False,
                                   max_iters=max_iters, eps=rel_step, x_scale=span,
                                   output=io.StringIO())  # the optimizer's per-iteration lines
        status = "converged"
        if best[2] is not None and result.jac is not None:
            _, interval = sysid.calculate_intervals([best[2]], np.asarray(result.jac))
    except _Budget:
        status = "budget spent"
    mean = best[1]
    return LeastSquaresResult(mean, calib.discrepancy_at(mean), used, status, np.asarray(interval, dtype=float))
