"""SimOpt distribution updates: REPS (relative entropy policy search) and CEM.

Pure functions of (search distribution, samples, costs): they return a new
:class:`~calibration.search.GaussianSearch` and an info dict and change nothing, so
several updates on the same rollouts are possible.

REPS (Peters et al. 2010, as used by SimOpt, Chebotar et al. 2019): minimise E_p[D]
subject to KL(p || q) <= epsilon, q the current distribution. With samples x_i ~ q and
costs D_i, the optimal sample weights are w_i ∝ exp(-D_i / eta), where the temperature
eta > 0 minimises the convex dual

    g(eta) = eta * epsilon + eta * log mean_i exp(-(D_i - D_min) / eta) + D_min .

g'(eta) = epsilon - KL(w || uniform), so at the optimum the weights use up exactly the
KL budget (on the samples); eta is floored at ``min_eta``. The new Gaussian is the
weighted maximum-likelihood fit (mean, covariance + jitter). That fit can exceed the
budget as a Gaussian (KL(new || old) > epsilon); then the step is shrunk: the mean and
covariance are interpolated between old and new, (1 - a) * old + a * new, with the
largest a in [0, 1] found by bisection such that KL(new || old) <= epsilon. The
interpolated covariance is a convex combination of PSD matrices, and the weighted mean
of in-bounds samples stays inside the (box) bounds.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from calibration.search import GaussianSearch

__all__ = ["reps_update", "cem_update", "reps_dual", "reps_weights"]

# Eigenvalue floor of a fitted covariance, relative to the old covariance's mean variance.
DEFAULT_JITTER = 1e-6


def reps_dual(eta: float, costs: np.ndarray, epsilon: float) -> float:
    """The REPS dual g(eta) (see the module docstring); ``costs`` finite."""
    d_min = costs.min()
    return float(eta * epsilon + eta * (logsumexp(-(costs - d_min) / eta) - math.log(len(costs))) + d_min)


def reps_weights(costs: np.ndarray, eta: float) -> np.ndarray:
    """Normalised weights ∝ exp(-D / eta) (non-finite costs get weight 0)."""
    costs = np.asarray(costs, dtype=float)
    finite = np.isfinite(costs)
    logw = np.full(costs.shape, -np.inf)
    if math.isinf(eta):
        logw[finite] = 0.0
    else:
        logw[finite] = -(costs[finite] - costs[finite].min()) / eta
    return np.exp(logw - logsumexp(logw))


def _sample_kl(w: np.ndarray) -> float:
    """KL(w || uniform over the len(w) samples)."""
    n = len(w)
    pos = w[w > 0]
    return float(np.sum(pos * np.log(pos * n)))


def _solve_eta(costs: np.ndarray, epsilon: float, min_eta: float) -> tuple[float, float]:
    """argmin of the dual over eta >= min_eta: (eta, dual value)."""
    spread = float(costs.max() - costs.min())
    if spread <= 0.0:
        return math.inf, float(costs.min())  # equal costs: uniform weights
    lo = math.log(min_eta)
    # Above ~1e4 * spread / epsilon the weights are uniform to ~1e-4: a safe upper end.
    hi = max(math.log(1e4 * spread / max(epsilon, 1e-12)), lo + 1.0)
    res = minimize_scalar(lambda t: reps_dual(math.exp(t), costs, epsilon), bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-10, "maxiter": 500})
    t = float(res.x)
    # Safety: the weights' KL falls with eta; if the optimiser stopped just below the
    # stationary point, raise eta until the sample KL is within the budget.
    if _sample_kl(reps_weights(costs, math.exp(t))) > epsilon:
        a, b = t, hi
        for _ in range(100):
            mid = 0.5 * (a + b)
            if _sample_kl(reps_weights(costs, math.exp(mid))) > epsilon:
                a = mid
            else:
                b = mid
        t = b
    eta = math.exp(t)
    return eta, reps_dual(eta, costs, epsilon)


def _check(search: GaussianSearch, samples, costs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(samples, dtype=float)
    d = np.asarray(costs, dtype=float).reshape(-1)
    if x.ndim != 2 or x.shape[1] != search.size:
        raise ValueError(f"samples must be [N, {search.size}], got shape {x.shape}")
    if len(d) != len(x):
        raise ValueError(f"{len(d)} costs for {len(x)} samples")
    if np.any(np.isnan(d)) or np.any(d == -np.inf):
        raise ValueError("costs must be finite or +inf (failed rollouts)")
    finite = np.isfinite(d)
    if finite.sum() < 2:
        raise ValueError(f"need at least 2 samples with finite cost, got {int(finite.sum())}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples must be finite")
    return x, d, finite


def _weighted_fit(x: np.ndarray, w: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ML mean and covariance, symmetrised, eigenvalues floored at ``floor``."""
    mean = w @ x
    centred = x - mean
    cov = (centred * w[:, None]).T @ centred
    cov = 0.5 * (cov + cov.T)
    eigval, eigvec = np.linalg.eigh(cov)
    cov = (eigvec * np.maximum(eigval, floor)) @ eigvec.T
    return mean, 0.5 * (cov + cov.T)


def _floor(search: GaussianSearch, jitter: float) -> float:
    return jitter * max(float(np.trace(search.cov)) / search.size, 1e-300)


def _limit_kl(old: GaussianSearch, mean: np.ndarray, cov: np.ndarray, epsilon: float,
              iterations: int = 60) -> tuple[GaussianSearch, float, float]:
    """Shrink the step toward ``old`` until KL(new || old) <= epsilon: (new, step a, kl)."""
    new = old.replace(mean=mean, cov=cov)
    kl = new.kl(old)
    if kl <= epsilon:
        return new, 1.0, kl
    lo, hi = 0.0, 1.0
    best, best_kl = old, 0.0
    for _ in range(iterations):
        a = 0.5 * (lo + hi)
        cand = old.replace(mean=old.mean + a * (mean - old.mean), cov=(1 - a) * old.cov + a * cov)
        cand_kl = cand.kl(old)
        if cand_kl <= epsilon:
            lo, best, best_kl = a, cand, cand_kl
        else:
            hi = a
    return best, lo, best_kl


def reps_update(search: GaussianSearch, samples, costs, epsilon: float = 1.0, min_eta: float = 1e-3,
                *, jitter: float = DEFAULT_JITTER) -> tuple[GaussianSearch, dict]:
    """One REPS step of the search distribution from ``samples`` [N, size] and ``costs`` [N].

    Costs of ``inf`` (failed rollouts) get zero weight. Returns the new distribution,
    with KL(new || old) <= epsilon guaranteed, and ``info``: ``eta``, ``dual``, ``kl``
    (Gaussian KL(new || old)), ``sample_kl`` (KL of the weights from uniform over the
    finite-cost samples, <= epsilon),
    ``effective_sample_size`` (1 / sum w^2), ``step`` (1.0, or the fraction of the
    weighted fit taken when the Gaussian KL had to be limited), ``kl_limited``,
    ``unlimited_kl`` (the fit's KL before limiting), ``n_finite``, ``cost_min``,
    ``cost_mean``, ``weighted_cost``.
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if not min_eta > 0:
        raise ValueError(f"min_eta must be > 0, got {min_eta}")
    x, d, finite = _check(search, samples, costs)
    eta, dual = _solve_eta(d[finite], epsilon, min_eta)
    w = reps_weights(d, eta)
    mean, cov = _weighted_fit(x, w, _floor(search, jitter))
    unlimited = search.replace(mean=mean, cov=cov).kl(search)
    new, step, kl = _limit_kl(search, mean, cov, epsilon)
    info = {
        "eta": eta, "dual": dual, "kl": kl, "sample_kl": _sample_kl(w[finite]),
        "effective_sample_size": float(1.0 / np.sum(w ** 2)),
        "step": step, "kl_limited": step < 1.0, "unlimited_kl": unlimited,
        "n_finite": int(finite.sum()), "cost_min": float(d[finite].min()),
        "cost_mean": float(d[finite].mean()), "weighted_cost": float(w[finite] @ d[finite]),
    }
    return new, info


def cem_update(search: GaussianSearch, samples, costs, elite_frac: float = 0.1, smoothing: float = 0.0,
               *, jitter: float = DEFAULT_JITTER) -> tuple[GaussianSearch, dict]:
    """Cross-entropy step: refit to the lowest-cost ``elite_frac`` of the samples.

    ``smoothing`` in [0, 1) keeps that fraction of the old mean and covariance.
    Infinite costs are never elite. ``info``: ``n_elite``, ``elite_cost_max``,
    ``elite_cost_mean``, ``kl`` (KL(new || old)), ``cost_min``, ``n_finite``.
    """
    if not 0 < elite_frac <= 1:
        raise ValueError(f"elite_frac must be in (0, 1], got {elite_frac}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    x, d, finite = _check(search, samples, costs)
    n_elite = min(max(2, int(math.ceil(elite_frac * len(d)))), int(finite.sum()))
    elite = np.argsort(d, kind="stable")[:n_elite]
    w = np.full(n_elite, 1.0 / n_elite)
    mean, cov = _weighted_fit(x[elite], w, _floor(search, jitter))
    mean = smoothing * search.mean + (1 - smoothing) * mean
    cov = smoothing * search.cov + (1 - smoothing) * cov
    new = search.replace(mean=mean, cov=cov)
    info = {"n_elite": n_elite, "elite_cost_max": float(d[elite].max()),
            "elite_cost_mean": float(d[elite].mean()), "kl": new.kl(search),
            "cost_min": float(d[finite].min()), "n_finite": int(finite.sum())}
    return new, info
