"""One episode core for every runner and report: the success criterion, its held counter,
the episode result, the per-episode line, the summary and the Wilson interval.

Pure (numpy + scipy; no mujoco, no ROS, no torch). The gymnasium env, ``sim2real sim``,
``sim2real real``, ``sim2real eval`` and the calibration's transfer scoring all score an
episode with :class:`EpisodeTracker` (or its :class:`HeldSuccess` counter inside the env)
and print it with :func:`episode_line` / :func:`summary_line`, so "success" means the same
thing everywhere: the task's error (for Reach, the end effector's distance to the target)
below ``radius_m`` for ``hold_steps`` consecutive control steps.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["SuccessCriterion", "HeldSuccess", "EpisodeTracker", "EpisodeResult", "EpisodeSummary",
           "wilson_interval", "episode_line", "summary_line"]


@dataclass(frozen=True)
class SuccessCriterion:
    """Success = the task error stays below ``radius_m`` for ``hold_steps`` consecutive control steps."""

    radius_m: float = 0.02
    hold_steps: int = 10
    #: what the error measures, for messages ("end effector to target")
    error_name: str = "distance to the goal"

    def __post_init__(self):
        if not (math.isfinite(self.radius_m) and self.radius_m > 0):
            raise ValueError(f"success radius must be a finite number > 0 m, got {self.radius_m!r}")
        if int(self.hold_steps) != self.hold_steps or self.hold_steps < 1:
            raise ValueError(f"success hold_steps must be an integer >= 1, got {self.hold_steps!r}")

    def describe(self) -> str:
        return f"within {100 * self.radius_m:g} cm for {self.hold_steps} control steps"

    def to_dict(self) -> dict:
        return {"radius_m": self.radius_m, "hold_steps": int(self.hold_steps), "error": self.error_name}


class HeldSuccess:
    """The held counter of a :class:`SuccessCriterion`: feed one error per control step.

    ``succeeded`` is sticky for the episode; ``first_held_step`` is the 1-based step at which
    the successful run of held steps began (the time to goal counts to there)."""

    __slots__ = ("criterion", "_radius", "_hold", "held", "steps", "succeeded", "first_held_step", "_run_start")

    def __init__(self, criterion: SuccessCriterion):
        self.criterion = criterion
        self._radius = float(criterion.radius_m)
        self._hold = int(criterion.hold_steps)
        self.reset()

    def reset(self) -> None:
        self.held = 0
        self.steps = 0
        self.succeeded = False
        self.first_held_step: int | None = None
        self._run_start = 0

    def inside(self, error_m: float) -> bool:
        return error_m < self._radius

    def update(self, error_m: float) -> bool:
        """Count one control step with this error; returns ``succeeded`` (sticky)."""
        self.steps += 1
        if error_m < self._radius:
            if self.held == 0:
                self._run_start = self.steps
            self.held += 1
            if not self.succeeded and self.held >= self._hold:
                self.succeeded = True
                self.first_held_step = self._run_start
        else:
            self.held = 0
        return self.succeeded


@dataclass
class EpisodeResult:
    """One episode, whoever ran it (simulation, emulator, real arm)."""

    episode: int
    success: bool
    time_to_goal_s: float | None     # start -> the first of the held steps
    steps_to_goal: int | None        # control steps to the first of the held steps
    final_error_m: float             # at the last control step of the episode
    min_error_m: float
    steps: int                       # control steps scored
    goal_m: list[float] = field(default_factory=list)
    dynamics: dict[str, float] = field(default_factory=dict)   # the sampled physics (simulation)
    wall_s: float | None = None
    safety_interventions: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class EpisodeTracker:
    """Scores one episode step by step: ``begin`` once, ``step(error_m)`` per control step,
    ``result`` at the end. Time to goal is measured with the caller's clock: pass ``time_s``
    to :meth:`step` (wall clock on hardware), else it is steps x ``period_s`` (sim time)."""

    def __init__(self, criterion: SuccessCriterion, period_s: float):
        self.criterion = criterion
        self.period_s = float(period_s)
        self.counter = HeldSuccess(criterion)
        self.begin()

    def begin(self, t0_s: float = 0.0) -> None:
        self.counter.reset()
        self._t0 = float(t0_s)
        self._run_start_s = self._time_to_goal = float("nan")
        self.final_error_m = float("nan")
        self.min_error_m = float("inf")

    @property
    def succeeded(self) -> bool:
        return self.counter.succeeded

    @property
    def steps(self) -> int:
        return self.counter.steps

    def step(self, error_m: float, time_s: float | None = None) -> bool:
        """Count one control step; returns True once the episode succeeded."""
        error_m = float(error_m)
        self.final_error_m = error_m
        if error_m < self.min_error_m:
            self.min_error_m = error_m
        c = self.counter
        was = c.succeeded
        c.update(error_m)
        if c.held == 1:  # a run of held steps starts here: its time, should it succeed
            self._run_start_s = (c.steps * self.period_s) if time_s is None else float(time_s) - self._t0
        if c.succeeded and not was:
            self._time_to_goal = self._run_start_s
        return c.succeeded

    def result(self, episode: int, **extra) -> EpisodeResult:
        c = self.counter
        return EpisodeResult(
            episode=episode, success=c.succeeded,
            time_to_goal_s=self._time_to_goal if c.succeeded else None,
            steps_to_goal=c.first_held_step if c.succeeded else None,
            final_error_m=self.final_error_m,
            min_error_m=self.min_error_m if c.steps else float("nan"),
            steps=c.steps, **extra)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success rate (scipy's ``binomtest(...).proportion_ci``).

    No episodes: (0.0, 1.0), the whole range (nothing is known about the rate)."""
    if n <= 0:
        return (0.0, 1.0)
    from scipy.stats import binomtest  # noqa: PLC0415 - scipy import is slow; reports only

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


@dataclass(frozen=True)
class EpisodeSummary:
    """What a set of episodes adds up to."""

    episodes: int
    successes: int
    ci95: tuple[float, float]
    mean_time_to_goal_s: float | None
    mean_final_error_m: float | None

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else float("nan")

    @classmethod
    def of(cls, results: list[EpisodeResult]) -> "EpisodeSummary":
        n, ok = len(results), sum(r.success for r in results)
        times = [r.time_to_goal_s for r in results if r.success and r.time_to_goal_s is not None]
        finals = [r.final_error_m for r in results if math.isfinite(r.final_error_m)]
        return cls(n, ok, wilson_interval(ok, n), float(np.mean(times)) if times else None,
                   float(np.mean(finals)) if finals else None)

    def to_dict(self) -> dict:
        return {"episodes": self.episodes, "successes": self.successes, "success_rate": self.success_rate,
                "success_ci95": list(self.ci95), "mean_time_to_goal_s": self.mean_time_to_goal_s,
                "mean_final_error_m": self.mean_final_error_m}


def episode_line(r: EpisodeResult, total: int, *, extra: str = "") -> str:
    """``episode 2/5  success  time to goal  1.42 s  final error  0.83 cm ...`` (one per episode)."""
    status = "success" if r.success else "FAILED "
    ttg = f"{r.time_to_goal_s:5.2f} s" if r.success and r.time_to_goal_s is not None else "   -   "
    line = f"episode {r.episode}/{total}  {status}  time to goal {ttg}  final error {100 * r.final_error_m:5.2f} cm"
    if r.goal_m:
        line += f"  goal [{', '.join(f'{v:+.3f}' for v in r.goal_m)}] m  {r.steps} steps"
    if extra:
        line += f"  {extra}"
    if r.safety_interventions:
        line += f"  safety filter: {', '.join(f'{k} x{v}' for k, v in r.safety_interventions.items())}"
    if r.note:
        line += f"  ({r.note})"
    return line


def summary_line(results: list[EpisodeResult], criterion: SuccessCriterion, *, who: str = "",
                 measured_by: str = "") -> str:
    """``summary: 4/5 reached the goal (within 2 cm for 10 control steps): 80% (95% CI ...)``."""
    s = EpisodeSummary.of(results)
    how = criterion.describe() + (f", {measured_by}" if measured_by else "")
    text = f"summary: {who + ': ' if who else ''}{s.successes}/{s.episodes} reached the goal ({how})"
    if s.episodes:
        lo, hi = s.ci95
        text += f": {100 * s.success_rate:.0f}% (95% CI {100 * lo:.0f}-{100 * hi:.0f}%)"
    if s.mean_time_to_goal_s is not None:
        text += f"; mean time to goal {s.mean_time_to_goal_s:.2f} s"
    if s.mean_final_error_m is not None:
        text += f"; mean final error {100 * s.mean_final_error_m:.2f} cm"
    return text
