"""What the sim bridge node does, without ROS: episodes, goals, command checks, stepping.

The task (:mod:`sim_bridge.tasks`, Reach by default) samples each episode's goal, adds its
scene, and defines the error its success criterion bounds (:meth:`SimSession.task_error`).

:class:`SimSession` owns an :class:`~sim_bridge.simulator.ArmSimulator` and applies the
bridge's rules: commands are validated (wrong length or non-finite -> rejected, the
previous command stays in force; out of range -> clipped and counted); a new
randomization file is validated (:meth:`SimSession.check_randomization` may run in a worker
thread) and used from the next reset; a physics
blow-up resets the episode instead of crashing. The ROS node is a thin shell over it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from sim_bridge.profile import RobotProfile
from sim_bridge.randomization import DynamicsRandomizer, RandomizationSpec, load_randomization
from sim_bridge.simulator import ArmSimulator
from sim_bridge.tasks import ReachTask, Task


@dataclass(frozen=True)
class CommandResult:
    accepted: bool
    clipped: bool = False
    reason: str = ""


@dataclass
class SessionCounters:
    commands_accepted: int = 0
    commands_rejected: int = 0
    commands_clipped: int = 0
    control_steps: int = 0
    episodes: int = 0
    blowups: int = 0
    last_rejection: str = ""


@dataclass(frozen=True)
class JointStateSample:
    names: tuple[str, ...]
    position_rad: np.ndarray
    velocity_rad_s: np.ndarray
    effort_nm: np.ndarray
    sim_time_s: float


@dataclass
class SimSession:
    profile: RobotProfile
    randomization: RandomizationSpec
    randomization_name: str = "default"
    seed: int | None = None
    counters: SessionCounters = field(default_factory=SessionCounters)
    task: Task = field(default_factory=ReachTask)

    def __post_init__(self):
        # Called after every control step with the session (in the stepping thread);
        # lets a recorder see every step, whatever the mode.
        self.tick_observers: list = []
        self.sim = ArmSimulator(self.profile, self.randomization, seed=self.seed, scene=self.task.add_to_scene)
        self.rng = np.random.default_rng(self.seed)
        self._pending: tuple[str, RandomizationSpec] | None = None
        self.goal = np.zeros(3)
        self.task_state = None
        self.clock_s = 0.0  # monotonic sim time across episodes (what /clock shows)
        self._last_command = self.profile.default_pose_rad.copy()
        self._new_command = False
        self.reset()

    # --- configuration ------------------------------------------------------------------
    def request_randomization(self, name_or_path: str | os.PathLike) -> None:
        """Load and check a distribution file against this model now (ConfigError: nothing
        changes); it is used from the next reset on."""
        self.use_randomization(name_or_path, self.check_randomization(name_or_path))

    def check_randomization(self, name_or_path: str | os.PathLike) -> RandomizationSpec:
        """Load a distribution file and check it against this robot's model; changes nothing,
        so a worker thread may call it while another thread steps (the slow part of
        :meth:`request_randomization`). Raises ConfigError with the reason."""
        spec = load_randomization(name_or_path)
        DynamicsRandomizer(spec, self.sim.model, self.profile, self.sim.nominal)
        return spec

    def use_randomization(self, name_or_path: str | os.PathLike, spec: RandomizationSpec) -> None:
        """Use a checked distribution from the next reset on (in the stepping thread)."""
        self.sim.set_randomization(spec)
        self._pending = (os.fspath(name_or_path), spec)

    # --- episodes -----------------------------------------------------------------------
    def reset(self) -> dict[str, float]:
        """New episode: pending randomization, new dynamics sample, new goal, default pose."""
        if self._pending is not None:  # the simulator switches its randomizer at this reset
            self.randomization_name, self.randomization = self._pending
            self._pending = None
        self.sim.reset(seed=int(self.rng.integers(2**31)))
        self.set_goal(self.task.sample_goal(self.rng, self.profile))
        self._last_command = self.sim.true_joint_positions()
        self._new_command = False
        self.counters.episodes += 1
        return self.sim.dynamics_dict()

    def set_goal(self, position_m) -> None:
        goal = np.asarray(position_m, dtype=float)
        if goal.shape != (3,) or not np.all(np.isfinite(goal)):
            raise ValueError(f"goal must be 3 finite numbers (x, y, z in m), got {goal.tolist()}")
        self.goal = goal
        self.task_state = self.task.reset(self.sim, self.rng, goal, {})

    def measure_task_inputs(self) -> dict[str, tuple[np.ndarray, float]]:
        """The task's sensor readings of this control step (see :meth:`Task.measure`)."""
        return self.task.measure(self.sim, self.task_state)

    def task_error(self) -> float:
        """The task's error now (Reach: end effector to goal, m), from the true simulator state."""
        return self.task.error(self.sim, self.task_state)

    # --- commands and stepping ----------------------------------------------------------
    def submit_command(self, values) -> CommandResult:
        """Check a joint command (profile order, rad); it is used from the next tick."""
        target = np.asarray(values, dtype=float)
        names = list(self.profile.joint_names)
        reason = ""
        if target.shape != (len(names),):
            reason = (f"expected {len(names)} values in joint order {names}, got {target.size}; "
                      "kept the previous command")
        elif not np.all(np.isfinite(target)):
            bad = [names[i] for i in np.flatnonzero(~np.isfinite(target))]
            reason = f"non-finite value for joint(s) {bad}; kept the previous command"
        if reason:
            self.counters.commands_rejected += 1
            self.counters.last_rejection = reason
            return CommandResult(False, reason=reason)
        lower, upper = self.profile.position_lower_rad, self.profile.position_upper_rad
        clipped = np.clip(target, lower, upper)
        was_clipped = not np.array_equal(clipped, target)
        if was_clipped:
            self.counters.commands_clipped += 1
        self.counters.commands_accepted += 1
        self._last_command = clipped
        self._new_command = True
        out = [names[i] for i in np.flatnonzero(clipped != target)]
        return CommandResult(True, clipped=was_clipped,
                             reason=f"clipped to position limits for joint(s) {out}" if was_clipped else "")

    @property
    def last_command(self) -> np.ndarray:
        """The joint targets in force (the last accepted command, or the reset pose)."""
        return self._last_command.copy()

    def tick(self) -> bool:
        """One control period. On a physics blow-up the episode is reset; returns False."""
        if self._new_command:
            self.sim.command(self._last_command)
            self._new_command = False
        ok = self.sim.step()
        self.counters.control_steps += 1
        self.clock_s += self.profile.control_period_s
        if ok:
            for observer in self.tick_observers:
                observer(self)
        else:
            self.counters.blowups += 1
            self.reset()
        return ok

    def joint_state(self) -> JointStateSample:
        reading = self.sim.read()
        effort = self.sim.actuator_efforts()
        return JointStateSample(self.profile.joint_names, reading.position_rad, reading.velocity_rad_s,
                                effort, self.clock_s)
