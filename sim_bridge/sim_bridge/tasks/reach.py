"""``reach`` (``Sim2Real/Reach-v0``): move the end effector to a sampled target.

Episode
    Reset samples a target uniformly in the profile's ``reach_workspace`` box (or in
    ``region_m`` when given); the env samples new dynamics and the start pose.
Observation (task part)
    ``target_pos`` [3] m, the target in the robot base frame; on a robot it comes from the
    ``current_goal`` topic (geometry_msgs/PointStamped).
Reward (per control step, d = distance end effector -> target in m)
    ``-d + precision_weight * (1 - tanh(d / precision_scale_m))
    + success_bonus * [d < success radius] - action_cost * mean(a^2)``
    (the tanh kernel gives a gradient toward the centre once the arm is close).
Success
    ``d`` below 2 cm for 10 consecutive control steps (:class:`sim_bridge.episode.SuccessCriterion`).
Privileged state (critic only)
    the true end-effector-to-target vector ``target_error/x,y,z`` (m).
"""
from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np

from sim_bridge.episode import SuccessCriterion
from sim_bridge.observations import Signal
from sim_bridge.tasks.base import POINT_STAMPED, Task, TaskInput


class ReachTask(Task):
    name = "reach"
    env_id = "Sim2Real/Reach-v0"
    summary = "move the end effector to a target point (2 cm for 10 steps)"
    inputs = (TaskInput("target_pos", "current_goal", POINT_STAMPED, latched=True),)

    def __init__(self, *, success_radius_m: float = 0.02, success_hold_steps: int = 10,
                 max_episode_steps: int = 200, success_bonus: float = 1.0, action_cost: float = 0.01,
                 precision_weight: float = 0.5, precision_scale_m: float = 0.05,
                 region_m: tuple | None = None, observe_prev_action: bool = True):
        """``region_m`` = ((x, y, z) low, (x, y, z) high) of the targets; None = the profile's
        ``reach_workspace``."""
        super().__init__(SuccessCriterion(float(success_radius_m), int(success_hold_steps), "end effector to target"),
                         max_episode_steps, observe_prev_action=observe_prev_action)
        self.success_bonus = float(success_bonus)
        self.action_cost = float(action_cost)
        self.precision_weight = float(precision_weight)
        self.precision_scale_m = float(precision_scale_m)
        self.region_m = None
        if region_m is not None:
            low, high = (np.asarray(v, dtype=float) for v in region_m)
            if low.shape != (3,) or high.shape != (3,) or not np.all(low < high):
                raise ValueError(f"task {self.name!r}: region_m must be ((x, y, z) low, (x, y, z) high) "
                                 f"with low < high, got {region_m!r}")
            self.region_m = (low, high)

    def signals(self) -> tuple[Signal, ...]:
        return (Signal("target_pos", 3, "m", "reach target in the robot base frame"),)

    def target_region(self, profile) -> tuple[np.ndarray, np.ndarray]:
        return self.region_m if self.region_m is not None else (profile.reach_low_m, profile.reach_high_m)

    def sample_goal(self, rng: np.random.Generator, profile) -> np.ndarray:
        low, high = self.target_region(profile)
        return rng.uniform(low, high)

    # --- simulation hooks ---------------------------------------------------------------
    def reset(self, sim, rng: np.random.Generator, goal: np.ndarray, options: dict[str, Any]) -> np.ndarray:
        sim.set_target_marker(goal)
        return goal

    def observe(self, sim, target: np.ndarray) -> tuple[np.ndarray, ...]:
        return (target,)

    def error(self, sim, target: np.ndarray) -> float:
        delta = sim.end_effector_position() - target
        return math.sqrt(float(delta @ delta))

    def reward(self, error: float, inside: bool, action: np.ndarray, sim=None, state=None) -> float:
        return (-error + self.precision_weight * (1.0 - math.tanh(error / self.precision_scale_m))
                + self.success_bonus * inside - self.action_cost * float(action @ action) / action.size)

    def privileged_names(self) -> tuple[str, ...]:
        return ("target_error/x", "target_error/y", "target_error/z")

    def privileged(self, sim, target: np.ndarray) -> np.ndarray:
        return target - sim.end_effector_position()

    def info(self, sim, target: np.ndarray) -> dict[str, Any]:
        return {"target_pos": target.copy(), "ee_pos": sim.end_effector_position()}

    def scripted_controller(self, profile, action):
        """:class:`sim_bridge.oracle.ReachOracle` on the measured joints and the target."""
        # imported by name at call time: the oracle needs MuJoCo, and the robot computer (which
        # imports the task declarations) never calls this (import-linter checks the static imports)
        oracle_module = importlib.import_module("sim_bridge.oracle")

        oracle = oracle_module.ReachOracle(profile, **oracle_module.action_settings(action))
        return oracle_module.ScriptedPolicy(oracle, lambda p: oracle.action(p["joint_pos"].astype(float), p["target_pos"],
                                                                                commanded=p.get("ee_cmd")))
