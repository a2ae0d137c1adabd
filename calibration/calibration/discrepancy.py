"""SimOpt trajectory discrepancy between simulated rollouts and real trajectories.

Pure numpy/scipy, no ROS. For one real trajectory ``real`` [T_r, D] and S simulated
rollouts ``sim`` [S, T_s, D] (the same policy, closed loop, from the same initial state,
one per dynamics sample xi_s), the cost of sample s is (Chebotar et al. 2019, with the
choices of the open SimOpt implementation)::

    T     = min(T_s, T_r)                     # both truncated to equal length
    e_t   = W * (g(o_sim / c) - g(o_real / c))[t]   # c: per-dim scale, W: per-dim weights
    D_s   = w_l1 * mean_t sum_d |e_t,d|  +  w_l2 * mean_t sum_d e_t,d^2

where ``g`` is a Gaussian filter along time (std ``smooth_std`` steps, truncated at
``truncate`` std; ``smooth_std=0`` disables it) and ``c`` defaults to the real
trajectory's range per dimension (dimensions with zero range use 1). Means over time
(instead of the paper's sums) make costs of different lengths comparable.

Multi-episode: ``real`` a list of E episodes [T_e, D] and ``sim`` [S, E, T, D] (or a
list of E arrays [S, T_e', D]); the cost is the mean of the per-episode costs. The
default scale is then the range over all real episodes together, so every episode is
measured in the same units.

A simulated rollout with non-finite values (a physics blow-up) gets cost ``inf``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = ["discrepancy", "episode_discrepancies", "real_scale", "residuals"]

# Ranges at or below this are treated as constant dimensions (scale 1).
_MIN_RANGE = 1e-12


def real_scale(real: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Per-dimension range of the real trajectory (or of all episodes), zero ranges -> 1."""
    episodes = [real] if isinstance(real, np.ndarray) and real.ndim == 2 else list(real)
    stacked = np.concatenate([_as_real(e) for e in episodes], axis=0)
    rng = np.ptp(stacked, axis=0)
    return np.where(rng > _MIN_RANGE, rng, 1.0)


def discrepancy(sim, real, *, weights=None, scale=None, w_l1: float = 0.5, w_l2: float = 1.0,
                smooth_std: float = 5.0, truncate: float = 4.0) -> np.ndarray:
    """Discrepancy of each simulated sample against the real trajectory (or episodes): [S].

    ``sim``: [S, T, D] against ``real`` [T_r, D]; or [S, E, T, D] / a list of E arrays
    [S, T_e, D] against ``real`` a list of E arrays [T_e, D] (mean over episodes).
    ``weights``: [D] per-dimension weights W (default ones). ``scale``: [D] divisor per
    dimension (default: the real range per dimension, see :func:`real_scale`).
    """
    per_episode = episode_discrepancies(sim, real, weights=weights, scale=scale, w_l1=w_l1, w_l2=w_l2,
                                        smooth_std=smooth_std, truncate=truncate)
    return per_episode.sum(axis=1) / per_episode.shape[1]


def episode_discrepancies(sim, real, *, weights=None, scale=None, w_l1: float = 0.5, w_l2: float = 1.0,
                          smooth_std: float = 5.0, truncate: float = 4.0) -> np.ndarray:
    """:func:`discrepancy` before the mean over episodes: [S, E] (E = 1 for one trajectory),
    every episode in the same units (the scale over all of them)."""
    multi = not (isinstance(real, np.ndarray) and real.ndim == 2)
    if multi:
        real_eps = [_as_real(e) for e in real]
        if not real_eps:
            raise ValueError("no real episodes given")
        if isinstance(sim, np.ndarray):
            if sim.ndim != 4:
                raise ValueError(f"with {len(real_eps)} real episodes sim must be [S, E, T, D], "
                                 f"got shape {sim.shape}")
            sim_eps = [sim[:, e] for e in range(sim.shape[1])]
        else:
            sim_eps = [np.asarray(s, dtype=float) for s in sim]
        if len(sim_eps) != len(real_eps):
            raise ValueError(f"{len(sim_eps)} simulated episodes for {len(real_eps)} real episodes")
    else:
        real_eps = [_as_real(real)]
        sim_eps = [np.asarray(sim, dtype=float)]
    dim = real_eps[0].shape[1]
    if any(e.shape[1] != dim for e in real_eps):
        raise ValueError("real episodes differ in their number of dimensions")
    counts = {s.shape[0] for s in sim_eps if s.ndim == 3}
    for s in sim_eps:
        if s.ndim != 3 or s.shape[2] != dim:
            raise ValueError(f"sim must be [S, T, {dim}] per episode, got shape {s.shape}")
        if s.shape[1] < 1:
            raise ValueError("simulated trajectories must hold at least one step")
    if len(counts) != 1:
        raise ValueError(f"episodes have different sample counts {sorted(counts)}")
    c = real_scale(real_eps) if scale is None else _per_dim(scale, dim, "scale")
    if np.any(c <= 0):
        raise ValueError("scale must be > 0 in every dimension")
    w = np.ones(dim) if weights is None else _per_dim(weights, dim, "weights")
    if np.any(w < 0):
        raise ValueError("weights must be >= 0")
    if smooth_std < 0:
        raise ValueError(f"smooth_std must be >= 0, got {smooth_std}")
    return np.stack([_episode_cost(s, r, w, c, w_l1, w_l2, smooth_std, truncate)
                     for s, r in zip(sim_eps, real_eps)], axis=1)


def _episode_cost(sim: np.ndarray, real: np.ndarray, w: np.ndarray, c: np.ndarray,
                  w_l1: float, w_l2: float, smooth_std: float, truncate: float) -> np.ndarray:
    steps = min(sim.shape[1], real.shape[0])
    sim, real = sim[:, :steps] / c, real[:steps] / c
    bad = ~np.all(np.isfinite(sim), axis=(1, 2))
    if bad.any():  # keep the filter away from NaN/inf; those samples cost inf anyway
        sim = np.where(bad[:, None, None], 0.0, sim)
    if smooth_std > 0:
        sim = gaussian_filter1d(sim, smooth_std, axis=1, truncate=truncate)
        real = gaussian_filter1d(real, smooth_std, axis=0, truncate=truncate)
    err = (sim - real[None]) * w
    cost = w_l1 * np.abs(err).sum(axis=2).mean(axis=1) + w_l2 * np.square(err).sum(axis=2).mean(axis=1)
    cost[bad] = np.inf
    return cost


def _as_real(real) -> np.ndarray:
    arr = np.asarray(real, dtype=float)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"a real trajectory must be [T, D] with T >= 1, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("the real trajectory holds non-finite values; drop those dimensions "
                         "(e.g. unreported velocities) before comparing")
    return arr


def _per_dim(values, dim: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.shape != (dim,):
        raise ValueError(f"{what} must have one value per dimension ({dim}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite")
    return arr


def residuals(sim, real, *, weights=None, scale=None, smooth_std: float = 5.0, truncate: float = 4.0) -> np.ndarray:
    """The per-step errors behind D's L2 term, flattened: [S, sum_e T_e * D] such that
    ``(r ** 2).sum(1) / T`` per episode is its ``mean_t sum_d e^2`` (least-squares fitting).
    Each episode's block is divided by sqrt(T_e * E), so ``(r ** 2).sum(1)`` equals the L2
    part of :func:`discrepancy` (with ``w_l2 = 1``). Blow-ups give inf rows."""
    real_eps = [_as_real(real)] if isinstance(real, np.ndarray) and real.ndim == 2 else [_as_real(e) for e in real]
    sim_eps = [np.asarray(sim, dtype=float)] if len(real_eps) == 1 and not isinstance(sim, list) else \
        [np.asarray(s, dtype=float) for s in sim]
    dim = real_eps[0].shape[1]
    c = real_scale(real_eps) if scale is None else _per_dim(scale, dim, "scale")
    w = np.ones(dim) if weights is None else _per_dim(weights, dim, "weights")
    blocks = []
    for s, r in zip(sim_eps, real_eps):
        steps = min(s.shape[1], r.shape[0])
        s, r = s[:, :steps] / c, r[:steps] / c
        bad = ~np.all(np.isfinite(s), axis=(1, 2))
        s = np.where(bad[:, None, None], 0.0, s)
        if smooth_std > 0:
            s = gaussian_filter1d(s, smooth_std, axis=1, truncate=truncate)
            r = gaussian_filter1d(r, smooth_std, axis=0, truncate=truncate)
        err = ((s - r[None]) * w).reshape(len(s), -1) / np.sqrt(steps * len(real_eps))
        err[bad] = np.inf
        blocks.append(err)
    return np.concatenate(blocks, axis=1)
