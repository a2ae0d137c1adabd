"""SimOpt: fit the randomization distribution to real trajectories (pure core, no ROS).

One **iteration** = sample ``samples`` parameter vectors from the current search Gaussian,
simulate every recorded episode under each (closed loop with the same policy, or open-loop
replay; :mod:`calibration.rollouts`), score them with the trajectory discrepancy
(:mod:`calibration.discrepancy`) and take one update step (REPS under a KL bound, or CEM;
:mod:`calibration.updates`). The real data stay the same across iterations, so several
iterations are the paper's "several REPS updates per SimOpt iteration"; the outer SimOpt
loop (retrain on the result, deploy, record again) is ``sim2real loop``.

**What is searched** (:class:`SearchSpace`): entries of the calibration settings name
either a parameter of the randomization file (``actuator_kp``: every element of it, one
variable each; with ``shared: true`` one variable for all of them, e.g. one mass factor
for every link) or a single element (``body_mass/link3``). Elements not searched are held
at the prior's mean; observation and action noise are not simulated. The result is written
back as the file's ``joint_gaussian`` over the searched elements (tied elements perfectly
correlated), every parameter entry unchanged, so training samples exactly the fitted
distribution, truncated to the same bounds.

Settings come from a YAML file (``calibration/config/simopt.yaml`` is the default), see
:class:`CalibrationSettings`.

**Where the samples run** (``backend``): ``local`` simulates an iteration's samples here, in
one batch; ``ray`` splits them into ``workers`` chunks evaluated by Ray actors
(:mod:`calibration.ray_backend`), each running the same batched rollout on its chunk. Every
sample's rollout and cost are independent of the others in its batch, so both give the same
costs, the same updates and the same result file.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from calibration.discrepancy import episode_discrepancies, real_scale
from calibration.episodes import ReferenceEpisode
from calibration.rollouts import MODES, BatchPolicy, BatchSimulator
from calibration.quality import (DOMINANT_SHARE, WEAK_FACTOR, Assessment, bound_hits, bound_warnings, evidence_shares,
                                 noise_floor, probes, rises)
from calibration.search import GaussianSearch
from calibration.updates import cem_update, reps_update
from sim_bridge.config import ConfigError, FieldReader, load_yaml_mapping, package_path
from sim_bridge.profile import RobotProfile
from sim_bridge.randomization import RandomizationSpec

__all__ = ["CalibrationError", "CalibrationSettings", "SearchEntry", "SearchSpace", "Calibration",
           "IterationRecord", "load_settings", "default_settings_path", "shipped_settings"]

SETTINGS_FILE = "config/simopt.yaml"
METHODS = ("reps", "cem")
BACKENDS = ("local", "ray")
SIGNALS = ("position", "velocity", "object")  # object: the task object's (x, y) (Push's puck)
_NOISE_KINDS = ("obs_noise_std", "action_noise_std")
# A search variable whose std falls below this fraction of its prior std has collapsed.
COLLAPSE_RATIO = 1e-6
# Settings read from the file's `discrepancy` section (for error messages).
_DISCREPANCY_FIELDS = ("signals", "signal_weights", "w_l1", "w_l2", "smooth_std", "truncate")


class CalibrationError(RuntimeError):
    """The calibration cannot go on (every rollout failed, the distribution diverged, ...)."""


def default_settings_path():
    return package_path("calibration", SETTINGS_FILE)


# --- settings ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchEntry:
    name: str             # a parameter name (all its elements) or one element name
    shared: bool = False  # one variable for all the parameter's elements


@dataclass(frozen=True)
class CalibrationSettings:
    search: tuple[SearchEntry, ...]
    mode: str = "closed_loop"
    task: str | None = None       # a task whose scene the rollouts hold (push: the puck); None: the bare arm
    method: str = "reps"
    samples: int = 256
    iterations: int = 5           # the most iterations (the run stops earlier at the noise floor)
    stop_factor: float = 2.0      # stop once D at the mean <= stop_factor x the noise floor (0: never early)
    sensitivity_spread: float = 2.0  # identifiability probe: each variable +- this many prior stds
    epsilon: float = 1.0          # REPS KL bound
    min_eta: float = 1e-3         # REPS minimum temperature
    elite_fraction: float = 0.1   # CEM
    signals: tuple[str, ...] = ("position", "velocity")
    signal_weights: Mapping[str, float] = field(default_factory=lambda: {"position": 1.0, "velocity": 0.1})
    w_l1: float = 0.5
    w_l2: float = 1.0
    smooth_std: float = 5.0
    truncate: float = 4.0
    max_steps: int = 100          # each episode truncated to this many joint states
    threads: int = 2
    seed: int = 0
    # how the samples run, not what they compute (kept out of to_dict and the provenance)
    backend: str = "local"        # "local" or "ray" (chunks of each iteration's samples on Ray actors)
    workers: int = 2              # Ray backend: actors, one chunk of the samples each
    ray_address: str | None = None  # Ray backend: the cluster (None: RAY_ADDRESS, else a local Ray)

    def __post_init__(self):
        if not self.search:
            raise ConfigError("at least one search entry is required", field="search")
        if self.mode not in MODES:
            raise ConfigError(f"must be one of {list(MODES)}, got {self.mode!r}", field="mode")
        if self.method not in METHODS:
            raise ConfigError(f"must be one of {list(METHODS)}, got {self.method!r}", field="method")
        if self.backend not in BACKENDS:
            raise ConfigError(f"must be one of {list(BACKENDS)}, got {self.backend!r}", field="backend")
        for name, value, ok in (("samples", self.samples, self.samples >= 2),
                                ("iterations", self.iterations, self.iterations >= 0),
                                ("stop_factor", self.stop_factor, self.stop_factor >= 0),
                                ("sensitivity_spread", self.sensitivity_spread, self.sensitivity_spread > 0),
                                ("epsilon", self.epsilon, self.epsilon > 0),
                                ("min_eta", self.min_eta, self.min_eta > 0),
                                ("elite_fraction", self.elite_fraction, 0 < self.elite_fraction <= 1),
                                ("max_steps", self.max_steps, self.max_steps >= 2),
                                ("threads", self.threads, self.threads >= 1),
                                ("workers", self.workers, self.workers >= 1),
                                ("smooth_std", self.smooth_std, self.smooth_std >= 0)):
            if not ok:
                raise ConfigError(f"invalid value {value!r}", field=name)
        unknown = [s for s in self.signals if s not in SIGNALS]
        if unknown or not self.signals:
            raise ConfigError(f"signals must be a non-empty subset of {list(SIGNALS)}, got {list(self.signals)}",
                              field="signals")
        if "object" in self.signals and self.task is None:
            raise ConfigError("the signal 'object' needs a task with an object (task: push)", field="signals")

    def with_overrides(self, **changes) -> CalibrationSettings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return {"search": [{"name": e.name, "shared": e.shared} for e in self.search], "mode": self.mode,
                "task": self.task,
                "method": self.method, "samples": self.samples, "iterations": self.iterations,
                "stop_factor": self.stop_factor, "sensitivity_spread": self.sensitivity_spread,
                "epsilon": self.epsilon, "min_eta": self.min_eta, "elite_fraction": self.elite_fraction,
                "signals": list(self.signals), "signal_weights": dict(self.signal_weights),
                "w_l1": self.w_l1, "w_l2": self.w_l2, "smooth_std": self.smooth_std,
                "truncate": self.truncate, "max_steps": self.max_steps, "threads": self.threads,
                "seed": self.seed}


def shipped_settings(name: str):
    """A shipped settings file by name: ``simopt`` (Reach, the default), ``push`` (``simopt_push.yaml``)."""
    return package_path("calibration", "config/simopt.yaml" if name in ("simopt", "reach")
                        else f"config/simopt_{name}.yaml")


def load_settings(path: str | os.PathLike | None = None) -> CalibrationSettings:
    """Parse a calibration settings file (default: the shipped one; a bare name such as ``push``
    that is not a file: the shipped ``config/simopt_push.yaml``); ConfigError names the field."""
    path = default_settings_path() if path is None else path
    if isinstance(path, str) and os.sep not in path and not path.endswith((".yaml", ".yml")) \
            and not os.path.exists(path) and shipped_settings(path).is_file():
        path = shipped_settings(path)
    data = load_yaml_mapping(path)
    r = FieldReader(data, source=path)
    version = r.integer("calibration_version")
    if version != 1:
        raise r.error("calibration_version", f"unsupported version {version} (this code reads 1)")
    search_raw = r.raw("search")
    if not isinstance(search_raw, dict) or not search_raw:
        raise r.error("search", "expected a non-empty mapping of parameter or element names")
    entries = []
    for name, body in search_raw.items():
        sub = FieldReader(body or {}, source=path, prefix=f"search.{name}")
        shared = sub.raw("shared", False)
        if not isinstance(shared, bool):
            raise sub.error("shared", f"expected true or false, got {shared!r}")
        sub.finish()
        entries.append(SearchEntry(str(name), shared))
    d = r.child("discrepancy", {})
    weights_r = d.child("signal_weights", {})
    signals = tuple(d.strings("signals", ["position", "velocity"]))
    weights = {s: weights_r.number(s, {"position": 1.0, "velocity": 0.1}.get(s, 1.0)) for s in SIGNALS
               if s != "object" or "object" in signals or weights_r.has("object")}
    weights_r.finish()
    try:
        settings = CalibrationSettings(
            search=tuple(entries), mode=r.str("mode", "closed_loop"), task=_task_name(r),
            method=r.str("method", "reps"),
            samples=r.integer("samples", 256), iterations=r.integer("iterations", 5),
            stop_factor=r.number("stop_factor", 2.0), sensitivity_spread=r.number("sensitivity_spread", 2.0),
            epsilon=r.number("epsilon", 1.0), min_eta=r.number("min_eta", 1e-3),
            elite_fraction=r.number("elite_fraction", 0.1),
            signals=signals, signal_weights=weights,
            w_l1=d.number("w_l1", 0.5), w_l2=d.number("w_l2", 1.0), smooth_std=d.number("smooth_std", 5.0),
            truncate=d.number("truncate", 4.0), max_steps=r.integer("max_steps", 100),
            threads=r.integer("threads", 2), seed=r.integer("seed", 0), backend=r.str("backend", "local"),
            workers=r.integer("workers", 2))
    except ConfigError as exc:
        if exc.source is not None:  # from the FieldReader: names the file and the field already
            raise
        # from CalibrationSettings' checks, without a source: its text is "field 'NAME': message"
        message = str(exc).removeprefix(f"field '{exc.field}': ") if exc.field else str(exc)
        field_name = f"discrepancy.{exc.field}" if exc.field in _DISCREPANCY_FIELDS else exc.field
        raise ConfigError(message, source=path, field=field_name) from None
    d.finish()
    r.finish()
    return settings


def _task_name(r: FieldReader) -> str | None:
    task = r.raw("task", None)
    if task is not None and not isinstance(task, str):
        raise r.error("task", f"expected a task name (e.g. push) or null, got {task!r}")
    return task


# --- what is searched -------------------------------------------------------------------
class SearchSpace:
    """Search variables (groups of tied elements) over a randomizer's element vector."""

    def __init__(self, names: Sequence[str], entries: Sequence[SearchEntry], params: Mapping[str, Any]):
        index = {n: i for i, n in enumerate(names)}
        self.element_names: tuple[str, ...] = tuple(names)
        self.groups: list[tuple[str, list[int]]] = []
        taken: dict[int, str] = {}
        for entry in entries:
            if entry.name in index:
                members = [index[entry.name]]
            else:
                members = [i for i, n in enumerate(names) if n.split("/", 1)[0] == entry.name]
            if not members:
                raise ConfigError(f"'{entry.name}' is neither a parameter nor an element of the randomization; "
                                  f"its parameters are {sorted(params)}", field=f"search.{entry.name}")
            if entry.shared or len(members) == 1:
                groups = [(entry.name, members)]
            else:
                groups = [(names[i], [i]) for i in members]
            for group_name, idx in groups:
                for i in idx:
                    if i in taken:
                        raise ConfigError(f"element '{names[i]}' is searched twice ({taken[i]} and {entry.name})",
                                          field=f"search.{entry.name}")
                    taken[i] = entry.name
                self.groups.append((group_name, idx))
        self.names: tuple[str, ...] = tuple(g for g, _ in self.groups)
        self.searched: tuple[int, ...] = tuple(i for _, idx in self.groups for i in idx)
        # element value = A @ group value, for the searched elements (order: self.searched)
        self.matrix = np.zeros((len(self.searched), len(self.groups)))
        row = 0
        for g, (_, idx) in enumerate(self.groups):
            self.matrix[row:row + len(idx), g] = 1.0
            row += len(idx)

    @property
    def size(self) -> int:
        return len(self.groups)

    def members(self, group: str) -> list[str]:
        return [self.element_names[i] for i in dict(self.groups)[group]]

    def initial(self, element_search: GaussianSearch) -> GaussianSearch:
        """Group Gaussian from an element Gaussian over ``element_names``: the mean of a
        group is its elements' mean; covariances are those of each group's first element."""
        first = [idx[0] for _, idx in self.groups]
        mean = np.array([element_search.mean[idx].mean() for _, idx in self.groups])
        cov = element_search.cov[np.ix_(first, first)]
        low = np.array([element_search.low[idx].max() for _, idx in self.groups])
        high = np.array([element_search.high[idx].min() for _, idx in self.groups])
        return GaussianSearch(self.names, mean, cov, low, high)

    def expand(self, group_values: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Full element vectors [N, len(element_names)]: ``base`` with the groups filled in."""
        group_values = np.atleast_2d(group_values)
        out = np.repeat(np.asarray(base, dtype=float)[None], len(group_values), axis=0)
        out[:, list(self.searched)] = group_values @ self.matrix.T
        return out

    def element_gaussian(self, search: GaussianSearch, element_search: GaussianSearch) -> GaussianSearch:
        """The group Gaussian as a (degenerate, for tied groups) Gaussian over the searched elements."""
        idx = list(self.searched)
        names = tuple(self.element_names[i] for i in idx)
        a = self.matrix
        return GaussianSearch(names, a @ search.mean, a @ search.cov @ a.T,
                              element_search.low[idx], element_search.high[idx])


# --- the calibration --------------------------------------------------------------------
@dataclass(frozen=True)
class IterationRecord:
    iteration: int
    search: GaussianSearch          # the distribution after the update
    cost_mean: float                # mean D over the iteration's finite-cost samples
    cost_min: float
    discrepancy_at_mean: float      # D of the deterministic rollout at the new mean
    kl: float                       # KL(new || old)
    failed_samples: int             # blow-ups (cost inf)
    elapsed_s: float                # wall time of the iteration (rollouts + update)
    rollout_s: float
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "cost_mean": self.cost_mean, "cost_min": self.cost_min,
                "discrepancy_at_mean": self.discrepancy_at_mean, "kl": self.kl,
                "failed_samples": self.failed_samples, "elapsed_s": round(self.elapsed_s, 3),
                "rollout_s": round(self.rollout_s, 3), "distribution": self.search.as_dict()}


class Calibration:
    """SimOpt state: the prior, the current search distribution, the real data, the history.

    ``episodes``: the real episodes (truncated to ``settings.max_steps``); ``policy_path``:
    the ONNX policy that produced them (closed-loop mode).
    """

    def __init__(self, profile: RobotProfile, prior: RandomizationSpec, episodes: Sequence[ReferenceEpisode],
                 settings: CalibrationSettings, policy_path: str | os.PathLike | None = None):
        if not episodes:
            raise CalibrationError("no real episodes to calibrate from")
        self.profile = profile
        self.prior_spec = prior
        self.settings = settings
        self.episodes = [ep.truncated(settings.max_steps) for ep in episodes]
        try:
            self.sim = BatchSimulator(profile, prior, threads=settings.threads, task=settings.task)
        except (KeyError, ValueError) as exc:  # an unknown task, a scene without its object
            raise ConfigError(str(exc).strip("'\""), field="task") from None
        randomizer = self.sim.randomizer
        params = {p.name: p for p in prior.parameters}
        self.space = SearchSpace(randomizer.names, settings.search, params)
        self._element_prior = GaussianSearch.from_spec(prior, randomizer)
        self.base = self._element_prior.mean.copy()
        for i, name in enumerate(randomizer.names):
            if params[name.split("/", 1)[0]].kind in _NOISE_KINDS:
                self.base[i] = 0.0
        self.prior = self.space.initial(self._element_prior)
        self.search = self.prior
        self.policy = None
        if settings.mode == "closed_loop" and not all(ep.replay for ep in self.episodes):
            if policy_path is None:
                raise CalibrationError("closed-loop calibration needs the policy that ran on the robot")
            self.policy = BatchPolicy(policy_path)
        j = profile.num_joints
        first = {"position": 0, "velocity": j, "object": 2 * j}  # columns of BatchSimulator's rows
        width = {"position": j, "velocity": j, "object": 2}
        self._columns = np.concatenate([first[s] + np.arange(width[s]) for s in settings.signals])
        self.real = [ep.observed(settings.signals) for ep in self.episodes]
        self.scale = real_scale(self.real)
        self.weights = np.concatenate([np.full(width[s], settings.signal_weights.get(s, 1.0))
                                       for s in settings.signals])
        self.rng = np.random.default_rng(settings.seed)
        self.history: list[IterationRecord] = []
        self.rollouts = 0  # simulated episodes so far (the simulation budget)
        self.initial_discrepancy = self.discrepancy_at(self.prior.mean)
        s = settings
        self.noise_floor = noise_floor(self.real, weights=self.weights, scale=self.scale, w_l1=s.w_l1, w_l2=s.w_l2,
                                       smooth_std=s.smooth_std, truncate=s.truncate, seed=s.seed)
        self.stop_reason = "not run"
        self.assessment: Assessment | None = None
        self._pool = None
        if settings.backend == "ray":
            from calibration.ray_backend import RayCostPool  # noqa: PLC0415 - Ray is optional

            self._pool = RayCostPool(profile, prior, self.episodes, settings, policy_path)

    def close(self) -> None:
        self.sim.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # --- evaluation -------------------------------------------------------------------
    def element_values(self, group_values: np.ndarray) -> np.ndarray:
        return self.space.expand(group_values, self.base)

    def simulate(self, group_values: np.ndarray, episodes: Sequence[ReferenceEpisode] | None = None
                 ) -> list[np.ndarray]:
        """Simulated observed signals per episode (default: all), [N, T_e, dims] each."""
        return [o[:, :, self._columns] for o in self.sim_rows(group_values, episodes)]

    def sim_rows(self, group_values: np.ndarray, episodes: Sequence[ReferenceEpisode] | None = None
                 ) -> list[np.ndarray]:
        """Whole simulated rows per episode: [N, T_e, :attr:`BatchSimulator.columns`] each."""
        episodes = self.episodes if episodes is None else episodes
        self.sim.set_dynamics(self.element_values(group_values))
        out = self.sim.rollout(episodes, self.settings.mode, self.policy)
        self.rollouts += len(np.atleast_2d(group_values)) * len(episodes)
        return out

    def costs(self, group_values: np.ndarray) -> np.ndarray:
        """The discrepancy of each vector over all real episodes (their mean): [K]."""
        return self.episode_costs(group_values).mean(axis=1)

    def episode_costs(self, group_values: np.ndarray) -> np.ndarray:
        """:meth:`costs` before the mean over the real episodes: [K, E]."""
        s = self.settings
        return episode_discrepancies(self.simulate(group_values), self.real, weights=self.weights,
                                     scale=self.scale, w_l1=s.w_l1, w_l2=s.w_l2, smooth_std=s.smooth_std,
                                     truncate=s.truncate)

    def discrepancy_at(self, group_values: np.ndarray) -> float:
        return float(self.costs(np.atleast_2d(group_values))[0])

    def sample_costs(self, group_values: np.ndarray) -> np.ndarray:
        """:meth:`costs` of an iteration's samples: here, or in chunks on the Ray workers (same values)."""
        if self._pool is None:
            return self.costs(group_values)
        self.rollouts += len(group_values) * len(self.episodes)
        return self._pool.costs(group_values)

    # --- iterating --------------------------------------------------------------------
    def step(self) -> IterationRecord:
        s = self.settings
        t0 = time.perf_counter()
        samples = self.search.sample(self.rng, s.samples)
        costs = self.sample_costs(samples)
        rollout_s = time.perf_counter() - t0
        failed = int(np.sum(~np.isfinite(costs)))
        if failed > len(costs) - 2:
            raise CalibrationError(f"{failed} of {len(costs)} simulated samples blew up or failed; "
                                   "the search distribution reaches unstable physics")
        old = self.search
        if s.method == "reps":
            new, info = reps_update(old, samples, costs, s.epsilon, s.min_eta)
        else:
            new, info = cem_update(old, samples, costs, s.elite_fraction)
        self._check_health(new)
        at_mean = self.discrepancy_at(new.mean)
        self.search = new
        finite = costs[np.isfinite(costs)]
        record = IterationRecord(len(self.history) + 1, new, float(finite.mean()), float(finite.min()),
                                 at_mean, float(new.kl(old)), failed, time.perf_counter() - t0, rollout_s,
                                 {k: v for k, v in info.items() if isinstance(v, (int, float, bool))})
        self.history.append(record)
        return record

    def run(self, iterations: int | None = None,
            callback: Callable[[IterationRecord], bool | None] | None = None, *,
            assess: bool = True) -> list[IterationRecord]:
        """Run at most ``iterations`` (default: the settings'): stop early once the discrepancy at
        the mean is within ``stop_factor`` of the noise floor, or when ``callback`` returns True.
        Then (``assess``) judge the fit (:meth:`assess`: parameters the data cannot fix keep
        the prior; bound and convergence warnings)."""
        limit = self.settings.iterations if iterations is None else iterations
        self.stop_reason = f"iteration limit ({limit})"
        for _ in range(limit):
            record = self.step()
            if self.converged(record):
                break
            if callback is not None and callback(record):
                self.stop_reason = f"stopped by the caller after {record.iteration} iteration(s)"
                break
        if assess:
            self.assess()
        return self.history

    def converged(self, record: IterationRecord) -> bool:
        """Whether ``record`` reached the noise floor (``stop_factor`` x it); sets ``stop_reason``."""
        factor, floor = self.settings.stop_factor, self.noise_floor
        if factor > 0 and record.discrepancy_at_mean <= factor * floor:
            self.stop_reason = (f"reached the noise floor after {record.iteration} iteration(s): D "
                                f"{record.discrepancy_at_mean:.4g} <= {factor:g} x floor {floor:.4g}")
            return True
        return False

    def assess(self) -> Assessment:
        """Judge the fit (see :mod:`calibration.quality`): the rise of D per search variable at
        the mean; variables below the noise floor get the prior back (mean, spread, no
        correlation); weakly identified ones (a rise within WEAK_FACTOR of the floor), fitted
        means at a bound and an unconverged run become warnings."""
        s, search, prior = self.settings, self.search, self.prior
        floor = self.noise_floor
        per_episode = self.episode_costs(probes(search.mean, prior.std, prior.low, prior.high, s.sensitivity_spread))
        E = per_episode.shape[1]
        rise = rises(per_episode.mean(axis=1))   # the mean over episodes: what costs() gives
        share, top = evidence_shares(rises(per_episode))
        names = list(search.names)
        identifiable = {n: bool(r > floor) for n, r in zip(names, rise)}
        kept = [n for n in names if not identifiable[n]]
        weak = [n for n, r in zip(names, rise) if identifiable[n] and r <= WEAK_FACTOR * floor]
        warnings = []
        d = self.final_discrepancy
        if self.history and s.stop_factor > 0 and not d <= s.stop_factor * floor:
            warnings.append(f"not converged: {self.stop_reason}, D at the mean {d:.4g} is {d / max(floor, 1e-300):.1f} "
                            f"x the noise floor {floor:.4g}; run more iterations or record more varied episodes")
        for n, r in zip(names, rise):
            if not identifiable[n]:
                warnings.append(f"{n}: not identifiable from these episodes (D rises by {r:.3g} across +-"
                                f"{s.sensitivity_spread:g} prior std, below the noise floor {floor:.3g}); "
                                "the prior is kept for it")
            elif n in weak:
                warnings.append(f"{n}: weakly identified (D rises by {r:.3g} across +-{s.sensitivity_spread:g} prior "
                                f"std, only {r / max(floor, 1e-300):.1f} x the noise floor {floor:.3g}): the fitted "
                                "value is kept but may trade against other parameters; distrust it, or record "
                                "episodes that excite it")
        one_episode = {}
        if E >= 3:   # with one or two episodes every fit rests on one of them; nothing to compare
            for i, n in enumerate(names):
                if identifiable[n] and share[i] > DOMINANT_SHARE:
                    one_episode[n] = self.episodes[top[i]].name
                    warnings.append(f"{n}: the fit rests on one episode: {share[i]:.0%} of its D rise across +-"
                                    f"{s.sensitivity_spread:g} prior std comes from {self.episodes[top[i]].name}, "
                                    f"the other {E - 1} barely constrain it; distrust the value, or record more "
                                    "episodes that move it")
        if kept and self.history:
            idx = [names.index(n) for n in kept]
            mean, cov = search.mean.copy(), search.cov.copy()
            mean[idx] = prior.mean[idx]
            cov[idx, :] = 0.0
            cov[:, idx] = 0.0
            cov[idx, idx] = prior.cov[idx, idx]
            self.search = GaussianSearch(search.names, mean, cov, search.low, search.high)
        fit = [i for i, n in enumerate(names) if identifiable[n]]
        warnings += bound_warnings([names[i] for i in fit], self.search.mean[fit], self.search.std[fit],
                                   prior.std[fit], prior.low[fit], prior.high[fit])
        at_bound = bound_hits([names[i] for i in fit], self.search.mean[fit], prior.low[fit], prior.high[fit])
        self.assessment = Assessment(floor, d, self.stop_reason, dict(zip(names, map(float, rise))),
                                     identifiable, kept_prior=kept, weak=weak, warnings=warnings, at_bound=at_bound,
                                     evidence_share={n: float(v) for n, v in zip(names, share)},
                                     one_episode=one_episode)
        return self.assessment

    def _check_health(self, new: GaussianSearch) -> None:
        if not (np.all(np.isfinite(new.mean)) and np.all(np.isfinite(new.cov))):
            raise CalibrationError("the update produced a non-finite mean or covariance")
        ratio = new.std / np.maximum(self.prior.std, 1e-300)
        if np.any(ratio < COLLAPSE_RATIO):
            names = [n for n, r in zip(new.names, ratio) if r < COLLAPSE_RATIO]
            raise CalibrationError(f"the covariance collapsed for {names} (std < {COLLAPSE_RATIO:g} x prior std)")

    # --- results ----------------------------------------------------------------------
    @property
    def final_discrepancy(self) -> float:
        return self.history[-1].discrepancy_at_mean if self.history else self.initial_discrepancy

    def result_spec(self, provenance: Mapping[str, Any] | None = None) -> RandomizationSpec:
        """The prior file with the fitted Gaussian as its joint_gaussian (+ provenance)."""
        elements = self.space.element_gaussian(self.search, self._element_prior)
        prov = {"calibration": {
            "method": self.settings.method, "mode": self.settings.mode,
            "iterations": len(self.history), "samples_per_iteration": self.settings.samples,
            "episodes": [ep.name for ep in self.episodes],
            "discrepancy_before": _finite_or_none(self.initial_discrepancy),
            "discrepancy_after": _finite_or_none(self.final_discrepancy),
            "kl_from_prior": _finite_or_none(self.search.kl(self.prior)),
            "policy": self.policy.name if self.policy else None,
            "search": self.search.as_dict(),
            "noise_floor": _finite_or_none(self.noise_floor),
            "stop_reason": self.stop_reason,
        }}
        if self.assessment is not None:
            prov["calibration"]["quality"] = self.assessment.to_dict()
        if provenance:
            prov["calibration"].update(provenance)
        return elements.to_spec(self.prior_spec, provenance=prov)


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
