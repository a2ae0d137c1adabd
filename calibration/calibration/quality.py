"""When to trust a SimOpt fit: the noise floor, identifiability, and the search bounds.

Pure numpy + scipy (no ROS). Three questions a fit must answer before its numbers are used:

* **Has it converged?** :func:`noise_floor` estimates the discrepancy a perfect model would
  still have against the recordings because of the sensors' noise: each real episode is
  compared with itself plus noise resampled at the level of its own high-frequency content
  (the residual of a small Gaussian smoothing, per signal dimension), averaged over draws.
  :meth:`calibration.simopt.Calibration.run` stops once the discrepancy at the fitted mean
  is within ``stop_factor`` of it; a fit that reaches its iteration limit above it says so.
* **Can the data fix each parameter?** :func:`probes` moves one search variable at a
  time by ``spread`` prior standard deviations (inside its bounds) from the fit and measures
  how much the discrepancy rises. A parameter whose rise stays below the noise floor is not
  identifiable from these episodes (e.g. joint damping from reach motions): the result keeps
  the prior for it and reports it, instead of a confident-looking value. One whose rise is
  above the floor but within ``WEAK_FACTOR`` of it is *weakly identified*: the fit is kept,
  with a warning to distrust it (Push's puck mass: a rise of 1.4x the floor, fitted 46% off,
  because it trades against friction: README, "When to trust the puck's parameters").
* **Does the fit rest on one episode?** :func:`evidence_shares`: the same probes, per recorded
  episode: how much of a parameter's rise comes from its most telling episode. Above
  ``DOMINANT_SHARE`` the value is what one recording says (Push's puck friction in one loop run:
  93% of its evidence from one long push, fitted 0.27 against a hidden 0.55, where the other four
  episodes were flat in it): the fit is kept with a warning to record more episodes that move it.
* **Did the fit run into a bound?** :func:`bound_warnings`: a fitted mean within
  ``BOUND_MARGIN`` of a search bound (the prior's support), or a spread collapsed there, means
  the truth may lie outside the prior: widen the prior's range for that parameter.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

from calibration.discrepancy import discrepancy

__all__ = ["Assessment", "noise_floor", "probes", "rises", "evidence_shares", "bound_warnings",
           "bound_hits", "widen_prior", "BOUND_MARGIN", "WEAK_FACTOR", "DOMINANT_SHARE"]

BOUND_MARGIN = 0.02  # of the bound-to-bound range: closer than this to a bound = "at the bound"
COLLAPSED = 0.05     # posterior std below this fraction of the prior std = a collapsed spread
WEAK_FACTOR = 2.0    # a D rise above the noise floor but at most this multiple of it: weakly identified
DOMINANT_SHARE = 0.75  # one episode carrying more than this share of a parameter's rise: the fit rests on it


@dataclass
class Assessment:
    """The quality report of one fit (what the CLI prints and the provenance records)."""

    noise_floor: float
    discrepancy: float
    stop_reason: str
    sensitivity: dict[str, float] = field(default_factory=dict)    # rise of D per variable
    identifiable: dict[str, bool] = field(default_factory=dict)
    kept_prior: list[str] = field(default_factory=list)            # not identifiable: prior kept
    weak: list[str] = field(default_factory=list)                  # weakly identified: fit kept, distrust it
    warnings: list[str] = field(default_factory=list)
    at_bound: dict[str, str] = field(default_factory=dict)         # variable -> "lower" / "upper"
    evidence_share: dict[str, float] = field(default_factory=dict)  # largest one-episode share of the rise
    one_episode: dict[str, str] = field(default_factory=dict)      # variable -> the episode its fit rests on

    def to_dict(self) -> dict:
        return {"noise_floor": self.noise_floor, "discrepancy_at_mean": self.discrepancy,
                "stop_reason": self.stop_reason,
                "sensitivity": {k: float(v) for k, v in self.sensitivity.items()},
                "identifiable": dict(self.identifiable), "kept_prior": list(self.kept_prior),
                "weakly_identified": list(self.weak),
                "warnings": list(self.warnings), "at_bound": dict(self.at_bound),
                "evidence_share": {k: float(v) for k, v in self.evidence_share.items()},
                "rests_on_one_episode": dict(self.one_episode)}


def noise_floor(real: list[np.ndarray], *, weights, scale, w_l1: float, w_l2: float, smooth_std: float,
                truncate: float, draws: int = 8, seed: int = 0, noise_sigma_steps: float = 1.5) -> float:
    """The discrepancy of the real episodes against themselves under resampled sensor noise."""
    rng = np.random.default_rng(seed)
    noisy = []
    for episode in real:
        x = np.asarray(episode, dtype=float)
        std = (x - gaussian_filter1d(x, noise_sigma_steps, axis=0, mode="nearest")).std(axis=0)
        noisy.append(x[None] + rng.normal(0.0, 1.0, (draws, *x.shape)) * std)
    values = discrepancy(noisy, real, weights=weights, scale=scale, w_l1=w_l1, w_l2=w_l2,
                         smooth_std=smooth_std, truncate=truncate)
    return float(np.mean(values))


def probes(mean: np.ndarray, prior_std: np.ndarray, low: np.ndarray, high: np.ndarray,
           spread: float = 2.0) -> np.ndarray:
    """[2n + 1, n]: ``mean``, then each variable alone ``spread`` prior stds up, then down (kept
    inside its bounds)."""
    mean = np.asarray(mean, dtype=float)
    step = spread * np.asarray(prior_std, dtype=float)
    up = np.minimum(mean + step, high) - mean
    down = mean - np.maximum(mean - step, low)
    return np.concatenate([mean[None], mean[None] + np.diag(up), mean[None] - np.diag(down)])


def rises(d: np.ndarray) -> np.ndarray:
    """From the discrepancies at :func:`probes` ([2n + 1], or [2n + 1, E] per episode): the rise
    ``max(D(m +- d e_i)) - D(m)`` per variable ([n], or [n, E])."""
    d = np.asarray(d, dtype=float)
    d = np.where(np.isfinite(d), d, np.inf)
    n = (len(d) - 1) // 2
    return np.maximum(d[1:n + 1], d[n + 1:]) - d[0]


def evidence_shares(episode_rises: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per variable (rows of ``episode_rises`` [n, E], :func:`rises` per episode): the share of
    the positive rise that its most telling episode carries, and that episode's index. Episodes
    that prefer the moved value (a negative rise) count 0; a variable no episode constrains gets
    share NaN. Shares near 1/E: every episode says the same; near 1: one episode decides."""
    r = np.clip(np.nan_to_num(np.asarray(episode_rises, dtype=float), posinf=0.0), 0.0, None)
    total = r.sum(axis=1)
    top = r.argmax(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, r.max(axis=1) / np.where(total > 0, total, 1.0), np.nan)
    return share, top


def bound_hits(names, mean, low, high, margin: float = BOUND_MARGIN) -> dict[str, str]:
    """Variable -> "lower" / "upper" for each fitted mean within ``margin`` of the range of a bound."""
    out = {}
    for name, m, lo, hi in zip(names, mean, low, high):
        if not (np.isfinite(lo) and np.isfinite(hi)):
            continue
        width = hi - lo
        side = "lower" if m - lo <= margin * width else "upper" if hi - m <= margin * width else None
        if side is not None:
            out[name] = side
    return out


def bound_warnings(names, mean, std, prior_std, low, high, margin: float = BOUND_MARGIN) -> list[str]:
    """One line per variable whose fitted mean sits at a search bound (or whose spread collapsed there)."""
    out = []
    hits = bound_hits(names, mean, low, high, margin)
    for name, m, s, s0, lo, hi in zip(names, mean, std, prior_std, low, high):
        side = hits.get(name)
        if side is None:
            continue
        bound = lo if side == "lower" else hi
        collapsed = s < COLLAPSED * s0
        out.append(f"{name}: fitted mean {m:.4g} is at the prior's {side} bound {bound:.4g}"
                   + (f" with a collapsed spread (std {s:.2g} < {COLLAPSED:g} x the prior's {s0:.2g})" if collapsed
                      else "")
                   + "; the truth may lie outside the prior: widen its range in the randomization file "
                     "(sim2real calibrate --widen does it)")
    return out


def widen_prior(spec, hits: dict[str, str], factor: float) -> tuple[object, dict[str, dict]]:
    """``spec`` (a :class:`~sim_bridge.randomization.RandomizationSpec`) with the parameters of
    the variables in ``hits`` (a parameter or an element name -> the bound its fit reached)
    widened beyond that bound: the range grows by ``factor - 1`` times its width on that side
    (log-uniform ranges in log space), never past the kind's plausible range. Returns the new
    spec and, per widened parameter, its old and new bounds; a parameter already at its
    plausible limit is left as it is (and not listed)."""
    from dataclasses import replace  # noqa: PLC0415

    from sim_bridge.randomization import KINDS  # noqa: PLC0415

    if factor <= 1.0:
        raise ValueError(f"the widening factor must be > 1, got {factor}")
    sides: dict[str, set[str]] = {}
    for name, side in hits.items():
        sides.setdefault(name.split("/", 1)[0], set()).add(side)
    changes: dict[str, dict] = {}
    params = []
    for p in spec.parameters:
        d = p.distribution
        if p.name not in sides or d.low is None or d.high is None:
            params.append(p)
            continue
        lo, hi = float(d.low), float(d.high)
        limit_lo, limit_hi = KINDS[p.kind].plausible_range(p.operation)
        if KINDS[p.kind].nonnegative and p.operation in ("abs", "scale"):
            limit_lo = max(limit_lo, 0.0)
        new_lo, new_hi = lo, hi
        if d.type == "loguniform":
            ratio = (hi / lo) ** (factor - 1.0)
            new_lo = lo / ratio if "lower" in sides[p.name] else lo
            new_hi = hi * ratio if "upper" in sides[p.name] else hi
            limit_lo = max(limit_lo, 1e-12)
        else:
            grow = (factor - 1.0) * (hi - lo)
            new_lo = lo - grow if "lower" in sides[p.name] else lo
            new_hi = hi + grow if "upper" in sides[p.name] else hi
        new_lo, new_hi = max(new_lo, limit_lo), min(new_hi, limit_hi)
        if (new_lo, new_hi) == (lo, hi):
            params.append(p)
            continue
        changes[p.name] = {"low": [lo, new_lo], "high": [hi, new_hi]}
        params.append(replace(p, distribution=replace(d, low=new_lo, high=new_hi)))
    widened = replace(spec, parameters=tuple(params))
    return widened, changes
