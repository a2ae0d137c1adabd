"""``Sim2Real/Reach-v0``: move the end effector to a sampled target under randomized dynamics.

Episode
    Reset samples new dynamics (from the randomization file), a target uniformly in the
    profile's ``reach_workspace`` box, and a start pose = default pose + U(-0.1, 0.1) rad.
Observation
    :func:`sim_bridge.observations.build_observation`: joint positions and velocities
    (with the sampled sensor noise), the previous action and the target (float32).
Action
    Joint position deltas in [-1, 1], scaled by ``action_scale_rad`` and added to the
    measured position (:func:`sim_bridge.observations.action_to_joint_targets`).
Reward (per control step, d = distance to the target in m)
    ``-d + precision_weight * (1 - tanh(d / precision_scale_m))
    + success_bonus * [d < success_radius] - action_cost * mean(a^2)``
    (the tanh kernel gives a gradient toward the centre once the arm is close).
Success / termination
    Success = the end effector stays within ``success_radius_m`` (2 cm) of the target for
    ``success_hold_steps`` consecutive control steps; ``info["is_success"]`` stays True
    for the rest of the episode. With ``terminate_on_success`` (default) the episode then
    terminates; training turns it off, because ending the episode at the goal would take
    away the positive reward of staying there.
Truncation
    After ``max_episode_steps`` control steps (200 = 4 s at 50 Hz), or on a physics
    blow-up (``info["physics_blowup"] = True``; the next reset starts clean).
Info (privileged, for an asymmetric critic; never part of the observation)
    ``dynamics``: the sampled dynamics vector (float32, order = ``env.dynamics_names``),
    ``privileged``: ``dynamics`` followed by the true end-effector-to-target vector (m),
    ``target_pos``, ``ee_pos``, ``distance``, ``is_success``, ``physics_blowup``.
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from sim_bridge.episode import HeldSuccess, SuccessCriterion
from sim_bridge.observations import action_to_joint_targets, build_observation, clip, observation_size
from sim_bridge.profile import RobotProfile, load_profile
from sim_bridge.randomization import RandomizationSpec, load_randomization
from sim_bridge.simulator import ArmSimulator


class ReachEnv(gym.Env):
    # Rendering is not offered (headless CI has no OpenGL); `sim2real sim --gui` is the viewer path.
    metadata = {"render_modes": [], "render_fps": 50}

    def __init__(self, profile: str | RobotProfile = "panda_like",
                 randomization: str | RandomizationSpec | None = "default",
                 max_episode_steps: int = 200, success_radius_m: float = 0.02,
                 success_hold_steps: int = 10, action_scale_rad: float = 0.05,
                 success_bonus: float = 1.0, action_cost: float = 0.01, precision_weight: float = 0.5,
                 precision_scale_m: float = 0.05, terminate_on_success: bool = True,
                 start_pose_noise_rad: float = 0.1, render_mode: str | None = None):
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        if isinstance(randomization, str):
            randomization = load_randomization(randomization)
        self.sim = ArmSimulator(self.profile, randomization)
        self.max_episode_steps = int(max_episode_steps)
        self.success = SuccessCriterion(float(success_radius_m), int(success_hold_steps), "end effector to target")
        self.success_radius_m = self.success.radius_m
        self.success_hold_steps = self.success.hold_steps
        self._counter = HeldSuccess(self.success)
        self.action_scale_rad = float(action_scale_rad)
        self.success_bonus = float(success_bonus)
        self.precision_weight = float(precision_weight)
        self.precision_scale_m = float(precision_scale_m)
        self.terminate_on_success = bool(terminate_on_success)
        self.action_cost = float(action_cost)
        self.start_pose_noise_rad = float(start_pose_noise_rad)
        n = self.profile.num_joints
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (observation_size(n),), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported")
        self.render_mode = None
        self._prev_action = np.zeros(n)
        self._target = np.zeros(3)
        self._reading = None
        self._dynamics = self.sim.dynamics.astype(np.float32)
        self._steps = 0

    @property
    def dynamics_names(self) -> tuple[str, ...]:
        return self.sim.randomizer.names

    @property
    def privileged_names(self) -> tuple[str, ...]:
        """Names of ``info["privileged"]``: the dynamics, then the true target error."""
        return self.dynamics_names + ("target_error/x", "target_error/y", "target_error/z")

    # --- gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Options: ``target`` (xyz), ``joint_pos`` (start pose), ``dynamics`` (vector)."""
        super().reset(seed=seed)
        options = options or {}
        rng = self.np_random
        p = self.profile
        self._target = np.asarray(options.get("target", rng.uniform(p.reach_low_m, p.reach_high_m)), float)
        start = options.get("joint_pos")
        if start is None:
            noise = rng.uniform(-self.start_pose_noise_rad, self.start_pose_noise_rad, p.num_joints)
            start = p.default_pose_rad + noise
        self._reading = self.sim.reset(seed=int(rng.integers(2**31)), dynamics=options.get("dynamics"),
                                       joint_pos=start)
        self.sim.set_target_marker(self._target)
        self._prev_action = np.zeros(p.num_joints)
        self._dynamics = self.sim.dynamics.astype(np.float32)  # privileged state, fixed per episode
        self._dynamics.setflags(write=False)  # shared by every info of the episode
        self._steps = 0
        self._counter.reset()
        return self._observation(), self._info(self._distance(), blowup=False)

    def step(self, action):
        a = clip(np.asarray(action, dtype=float), -1.0, 1.0)
        p = self.profile
        targets = action_to_joint_targets(a, self._reading.position_rad, self.action_scale_rad,
                                          p.position_lower_rad, p.position_upper_rad)
        self.sim.command(targets)
        ok = self.sim.step()
        self._steps += 1
        self._prev_action = a
        if not ok:
            # Physics blew up: end the episode; the observation is the last good one.
            return self._observation(), -1.0, False, True, self._info(np.inf, blowup=True)
        self._reading = self.sim.read()
        dist = self._distance()
        inside = self._counter.inside(dist)
        succeeded = self._counter.update(dist)
        reward = (-dist + self.precision_weight * (1.0 - math.tanh(dist / self.precision_scale_m))
                  + self.success_bonus * inside - self.action_cost * float(a @ a) / a.size)
        terminated = self.terminate_on_success and succeeded
        truncated = self._steps >= self.max_episode_steps and not terminated
        return self._observation(), float(reward), terminated, truncated, self._info(dist, blowup=False)

    # --- helpers --------------------------------------------------------------------------
    def _distance(self) -> float:
        delta = self.sim.end_effector_position() - self._target
        return math.sqrt(float(delta @ delta))

    def _observation(self) -> np.ndarray:
        r = self._reading
        return build_observation(r.position_rad, r.velocity_rad_s, self._prev_action, self._target)

    def _info(self, dist: float, *, blowup: bool) -> dict[str, Any]:
        ee = self.sim.end_effector_position()
        privileged = np.empty(len(self._dynamics) + 3, dtype=np.float32)
        privileged[:-3] = self._dynamics
        privileged[-3:] = self._target - ee
        return {
            "dynamics": self._dynamics,
            "privileged": privileged,
            "target_pos": self._target.copy(),
            "ee_pos": ee,
            "distance": dist,
            "is_success": self._counter.succeeded,
            "physics_blowup": blowup,
        }
