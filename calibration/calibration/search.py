"""The SimOpt search distribution: a Gaussian (full covariance) over named dynamics elements.

Pure numpy, no ROS. The elements are those of the randomization vector
(:attr:`sim_bridge.randomization.DynamicsRandomizer.names`, e.g. ``body_mass/link3``,
``gravity/z``); the Gaussian is truncated to the elements' declared bounds, exactly as
:class:`DynamicsRandomizer` truncates a file's ``joint_gaussian`` (rejection, clip as a
last resort), so what the calibration samples is what training will sample once the
result is written back with :meth:`GaussianSearch.to_spec`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim_bridge.randomization import (Distribution, DynamicsRandomizer, JointGaussian, RandomizationSpec,
                                      sample_truncated_gaussian)

__all__ = ["GaussianSearch", "distribution_moments"]

# Floor for a variance taken from a file (a normal with std 0 would make the Gaussian singular).
MIN_VARIANCE = 1e-12


def distribution_moments(dist: Distribution) -> tuple[float, float]:
    """(mean, variance) of a declared distribution, ignoring the truncation of a normal."""
    if dist.type == "uniform":
        a, b = dist.low, dist.high
        return 0.5 * (a + b), (b - a) ** 2 / 12.0
    if dist.type == "loguniform":
        a, b = dist.low, dist.high
        span = math.log(b) - math.log(a)
        m1 = (b - a) / span
        m2 = (b * b - a * a) / (2.0 * span)
        return m1, max(m2 - m1 * m1, 0.0)
    if dist.type == "normal":
        return float(dist.mean), float(dist.std) ** 2
    raise ValueError(f"unknown distribution type '{dist.type}'")


@dataclass(frozen=True, eq=False)
class GaussianSearch:
    """N(mean, cov) over ``names``, truncated to [low, high] per element. Immutable."""

    names: tuple[str, ...]
    mean: np.ndarray
    cov: np.ndarray
    low: np.ndarray
    high: np.ndarray
    _factor: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        names = tuple(self.names)
        n = len(names)
        if n == 0:
            raise ValueError("a search distribution needs at least one element")
        if len(set(names)) != n:
            raise ValueError(f"duplicate element names in {list(names)}")
        mean = _vector(self.mean, n, "mean")
        low = _vector(self.low, n, "low", finite=False)
        high = _vector(self.high, n, "high", finite=False)
        cov = np.array(self.cov, dtype=float)
        if cov.shape != (n, n) or not np.all(np.isfinite(cov)):
            raise ValueError(f"cov must be a finite {n}x{n} matrix, got shape {cov.shape}")
        if not np.allclose(cov, cov.T, rtol=1e-8, atol=1e-12):
            raise ValueError("cov must be symmetric")
        cov = 0.5 * (cov + cov.T)
        eigval, eigvec = np.linalg.eigh(cov)
        if eigval.min() < -1e-10 * max(1.0, float(np.abs(eigval).max())):
            raise ValueError(f"cov is not positive semi-definite (smallest eigenvalue {eigval.min():.3g})")
        if np.any(np.isnan(low)) or np.any(np.isnan(high)) or np.any(low >= high):
            raise ValueError("bounds must satisfy low < high for every element")
        for arr in (mean, cov, low, high):
            arr.setflags(write=False)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "_factor", eigvec * np.sqrt(np.clip(eigval, 0.0, None)))  # from the check's eigh

    # --- construction -----------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: RandomizationSpec, randomizer: DynamicsRandomizer,
                  names: Sequence[str] | None = None) -> GaussianSearch:
        """The current distribution of ``names`` (default: every element) as a Gaussian.

        Each element gets its declared distribution's mean and variance (uniform,
        loguniform, normal), independent of the others; elements of the file's
        ``joint_gaussian`` take its mean and (cross-)covariance instead. Bounds are the
        randomizer's per-element bounds.
        """
        names = tuple(randomizer.names if names is None else names)
        index = {name: i for i, name in enumerate(randomizer.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise ValueError(f"element(s) {missing} not in the randomization; its elements are "
                             f"{list(randomizer.names)}")
        params = {p.name: p for p in spec.parameters}
        n = len(names)
        mean, var = np.empty(n), np.empty(n)
        for k, name in enumerate(names):
            param = params.get(name.split("/", 1)[0])
            if param is None:
                raise ValueError(f"element '{name}' belongs to no parameter of the spec")
            mean[k], var[k] = distribution_moments(param.distribution)
        cov = np.diag(np.maximum(var, MIN_VARIANCE))
        g = spec.joint_gaussian
        if g is not None:
            where = {name: i for i, name in enumerate(g.names)}
            ours = [k for k, name in enumerate(names) if name in where]
            theirs = [where[names[k]] for k in ours]
            if ours:
                mean[ours] = g.mean[theirs]
                cov[np.ix_(ours, ours)] = g.cov[np.ix_(theirs, theirs)]
        idx = [index[n] for n in names]
        return cls(names, mean, cov, randomizer.low[idx], randomizer.high[idx])

    def replace(self, *, mean=None, cov=None) -> GaussianSearch:
        """The same elements and bounds with a new mean and/or covariance."""
        return GaussianSearch(self.names, self.mean if mean is None else mean,
                              self.cov if cov is None else cov, self.low, self.high)

    # --- properties -------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {n: {"mean": float(m), "std": float(s)} for n, m, s in zip(self.names, self.mean, self.std)}

    # --- sampling ---------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """[n, size] samples, truncated to the bounds by rejection (clip as a last resort)."""
        return sample_truncated_gaussian(rng, self.mean, self._factor, self.low, self.high, n)

    def embed(self, samples: np.ndarray, names: Sequence[str], base: np.ndarray) -> np.ndarray:
        """Full randomization vectors (order ``names``, e.g. ``randomizer.names``): ``base``
        [len(names)] everywhere, the searched elements taken from ``samples`` [n, size]."""
        index = {name: i for i, name in enumerate(names)}
        missing = [n for n in self.names if n not in index]
        if missing:
            raise ValueError(f"element(s) {missing} not in {list(names)}")
        samples = np.atleast_2d(np.asarray(samples, dtype=float))
        out = np.repeat(np.asarray(base, dtype=float)[None], len(samples), axis=0)
        out[:, [index[n] for n in self.names]] = samples
        return out

    # --- divergence -------------------------------------------------------------------
    def kl(self, other: GaussianSearch) -> float:
        """KL(self || other) of the (untruncated) Gaussians, closed form."""
        if tuple(other.names) != self.names:
            raise ValueError("KL needs the same elements in the same order")
        return gaussian_kl(self.mean, self.cov, other.mean, other.cov)

    # --- writing back -----------------------------------------------------------------
    def to_spec(self, base_spec: RandomizationSpec, *,
                provenance: Mapping[str, Any] | None = None) -> RandomizationSpec:
        """``base_spec`` with this Gaussian as its ``joint_gaussian``; parameters unchanged.

        Elements of an existing ``joint_gaussian`` that this search does not cover keep
        their marginal (mean, covariance block), uncorrelated with the searched ones.
        ``provenance`` entries are merged into the base provenance.
        """
        names, mean, cov = list(self.names), self.mean.copy(), self.cov.copy()
        old = base_spec.joint_gaussian
        if old is not None:
            keep = [i for i, name in enumerate(old.names) if name not in set(self.names)]
            if keep:
                n, k = len(names), len(keep)
                names += [old.names[i] for i in keep]
                mean = np.concatenate([mean, old.mean[keep]])
                full = np.zeros((n + k, n + k))
                full[:n, :n] = cov
                full[n:, n:] = old.cov[np.ix_(keep, keep)]
                cov = full
        mean.setflags(write=False)
        cov.setflags(write=False)
        merged = dict(base_spec.provenance)
        if provenance:
            merged.update(provenance)
        return RandomizationSpec(base_spec.parameters, JointGaussian(tuple(names), mean, cov),
                                 base_spec.description, merged)


def gaussian_kl(mean0: np.ndarray, cov0: np.ndarray, mean1: np.ndarray, cov1: np.ndarray) -> float:
    """KL(N(mean0, cov0) || N(mean1, cov1)); inf when cov1 is singular."""
    k = len(mean0)
    try:
        chol1 = np.linalg.cholesky(cov1)
    except np.linalg.LinAlgError:
        return math.inf
    sign0, logdet0 = np.linalg.slogdet(cov0)
    if sign0 <= 0:
        return math.inf
    logdet1 = 2.0 * np.log(np.diag(chol1)).sum()
    solve = lambda b: np.linalg.solve(chol1.T, np.linalg.solve(chol1, b))  # noqa: E731
    diff = np.asarray(mean1, dtype=float) - np.asarray(mean0, dtype=float)
    trace = float(np.trace(solve(cov0)))
    maha = float(diff @ solve(diff))
    return float(max(0.5 * (trace + maha - k + logdet1 - logdet0), 0.0))


def _vector(values, n: int, what: str, *, finite: bool = True) -> np.ndarray:
    arr = np.array(values, dtype=float).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"{what} must have {n} values, got shape {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite")
    return arr
