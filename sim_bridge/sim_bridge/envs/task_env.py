"""``TaskEnv``: the gymnasium env of any registered task, under randomized dynamics.

The arm part is the same for every task; the task (:mod:`sim_bridge.tasks`) supplies the
rest. ``gym.make("Sim2Real/Reach-v0")`` is ``TaskEnv(task="reach")``.

Episode
    Reset samples the task's goal (``task.sample_goal``: Reach's target), a start pose =
    default pose + U(-``start_pose_noise_rad``, +``start_pose_noise_rad``) rad, new dynamics
    (from the randomization file), then sets up the task's episode (``task.reset``).
    Assisted starts (training only): with probability ``assist_start_prob`` (falling linearly
    to 0 over the env's first ``assist_episodes`` episodes, if that is > 0) the arm then starts
    at rest where ``task.assist_target`` says (Push: the pusher behind the puck), by IK from
    the start pose; so PPO meets the hard part of the task (pushing) in its first iterations
    instead of only after it has learnt the approach. Evaluation never uses them.
Observation
    :class:`sim_bridge.observations.ObservationBuilder` over the task's layout: joint
    positions and velocities (with the sampled sensor noise), the previous action, then the
    task's signals (float32).
Action
    ``action_type`` (:mod:`sim_bridge.actions`; None: the task's ``default_action``, Reach:
    ``joint_position_delta``, Push: ``ee_position_delta`` with 2 cm steps): joint position
    deltas in [-1, 1]^n, scaled by ``action_scale_rad`` and added to the measured position; or
    ``ee_position_delta``, a step of the task's ``action_site`` (Push: the pusher tip) in [-1, 1]^3
    times ``ee_action["scale_m"]``, added to the previous command and mapped to joint targets by
    damped least squares on the nominal kinematics (``ee_action``: the other settings; the
    equations are in :mod:`sim_bridge.actions`).
Reward
    ``task.reward`` (each task module states its equation).
Success / termination
    The task's :class:`~sim_bridge.episode.SuccessCriterion` on ``task.error``, counted by
    :class:`~sim_bridge.episode.HeldSuccess`; ``info["is_success"]`` stays True for the rest
    of the episode. With ``terminate_on_success`` (default) the episode then terminates;
    training turns it off, because ending the episode at the goal would take away the
    positive reward of staying there.
Truncation
    After the task's ``max_episode_steps`` control steps (Reach: 200 = 4 s at 50 Hz), or on
    a physics blow-up (``info["physics_blowup"] = True``; the next reset starts clean).
Info (privileged, for an asymmetric critic; never part of the observation)
    ``dynamics``: the sampled dynamics vector (float32, order = ``env.dynamics_names``),
    ``privileged``: ``dynamics`` followed by ``task.privileged`` (names: ``env.privileged_names``),
    ``distance`` (the task error, m), ``is_success``, ``physics_blowup``, and ``task.info``
    (Reach: ``target_pos``, ``ee_pos``).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from sim_bridge.episode import HeldSuccess
from sim_bridge.observations import ObservationBuilder, clip
from sim_bridge.profile import RobotProfile, load_profile
from sim_bridge.randomization import RandomizationSpec, load_randomization
from sim_bridge.simulator import ArmSimulator, make_action
from sim_bridge.tasks import DEFAULT_TASK, Task, make_task


class TaskEnv(gym.Env):
    # Rendering is not offered (headless CI has no OpenGL); `sim2real sim --gui` is the viewer path.
    metadata = {"render_modes": [], "render_fps": 50}

    def __init__(self, task: str | Task = DEFAULT_TASK, profile: str | RobotProfile = "panda_like",
                 randomization: str | RandomizationSpec | None = "default", action_scale_rad: float = 0.05,
                 terminate_on_success: bool = True, start_pose_noise_rad: float = 0.1,
                 assist_start_prob: float = 0.0, assist_episodes: int = 0,
                 action_type: str | None = None, ee_action: dict | None = None,
                 render_mode: str | None = None, **task_settings):
        """``task_settings`` go to the task's constructor (Reach: ``success_radius_m``,
        ``max_episode_steps``, reward weights, ... see :class:`sim_bridge.tasks.reach.ReachTask`).
        ``assist_start_prob``, ``assist_episodes``: training's assisted starts (module docstring)."""
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported")
        self.task = make_task(task, **task_settings)
        if not 0.0 <= assist_start_prob <= 1.0 or assist_episodes < 0:
            raise ValueError(f"assist_start_prob must be in [0, 1] and assist_episodes >= 0, "
                             f"got {assist_start_prob} and {assist_episodes}")
        if assist_start_prob > 0 and type(self.task).assist_target is Task.assist_target:
            raise ValueError(f"task '{self.task.name}' has no assisted start (Task.assist_target): "
                             "set assist_start_prob to 0")
        self.assist_start_prob, self.assist_episodes = float(assist_start_prob), int(assist_episodes)
        self._assist_ik = None  # built on the first assisted reset
        self._episodes = 0  # episodes run (reset and stepped at least once)
        self._fresh = False
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        if isinstance(randomization, str):  # "default": the task's default (Push: push_default)
            randomization = load_randomization(self.task.randomization_name(randomization))
        self.sim = ArmSimulator(self.profile, randomization, scene=self.task.add_to_scene)
        self.action_scale_rad = float(action_scale_rad)
        self.action = make_action(self.profile, self.task, action_type, scale_rad=self.action_scale_rad, ee=ee_action)
        self.terminate_on_success = bool(terminate_on_success)
        self.start_pose_noise_rad = float(start_pose_noise_rad)
        self.max_episode_steps = self.task.max_episode_steps
        self.success = self.task.success
        n = self.profile.num_joints
        self.observation_layout = self.task.observation_layout(n, self.action)
        self._builder = ObservationBuilder(self.observation_layout)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self._builder.size,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action.size,), np.float32)
        self.render_mode = None
        self._counter = HeldSuccess(self.success)
        self._prev_action = np.zeros(self.action.size)
        self._state = None
        self._reading = None
        self._dynamics = self.sim.dynamics.astype(np.float32)
        self._steps = 0

    @property
    def dynamics_names(self) -> tuple[str, ...]:
        return self.sim.randomizer.names

    @property
    def privileged_names(self) -> tuple[str, ...]:
        """Names of ``info["privileged"]``: the dynamics, then the task's privileged state."""
        return self.dynamics_names + self.task.privileged_names()

    @property
    def task_state(self):
        """The episode's task state (Reach: the target, m)."""
        return self._state

    # --- gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Options: ``goal`` (Reach: also ``target``), ``joint_pos`` (start pose), ``dynamics`` (vector)."""
        super().reset(seed=seed)
        options = options or {}
        rng = self.np_random
        p = self.profile
        goal = options.get("goal", options.get("target"))  # ("target": Reach's name for its goal)
        goal = self.task.sample_goal(rng, p) if goal is None else np.asarray(goal, dtype=float)
        start = options.get("joint_pos")
        if start is None:
            noise = rng.uniform(-self.start_pose_noise_rad, self.start_pose_noise_rad, p.num_joints)
            start = p.default_pose_rad + noise
        self._reading = self.sim.reset(seed=int(rng.integers(2**31)), dynamics=options.get("dynamics"),
                                       joint_pos=start)
        self._state = self.task.reset(self.sim, rng, goal, options)
        if self.assist_start_prob > 0 and options.get("joint_pos") is None and rng.random() < self._assist_prob():
            self._assisted_start(start)
        self._fresh = True
        self.action.reset()  # an end-effector action's command starts from the measured joints
        self._prev_action = np.zeros(self.action.size)
        self._dynamics = self.sim.dynamics.astype(np.float32)  # privileged state, fixed per episode
        self._dynamics.setflags(write=False)  # shared by every info of the episode
        self._steps = 0
        self._counter.reset()
        return self._observation(), self._info(self.task.error(self.sim, self._state), blowup=False)

    def step(self, action):
        a = clip(np.asarray(action, dtype=float), -1.0, 1.0)
        if self._fresh:
            self._episodes, self._fresh = self._episodes + 1, False
        targets = self.action.targets(self._reading.position_rad, a)  # within the limits
        self.sim.command_checked(targets)  # finite (the action was clipped), the right shape
        ok = self.sim.step()
        self._steps += 1
        self._prev_action = a
        if not ok:
            # Physics blew up: end the episode; the observation is the last good one.
            return self._observation(), -1.0, False, True, self._info(np.inf, blowup=True)
        self._reading = self.sim.read()
        error = self.task.error(self.sim, self._state)
        inside = self._counter.inside(error)
        succeeded = self._counter.update(error)
        reward = self.task.reward(error, inside, a, self.sim, self._state)
        terminated = self.terminate_on_success and succeeded
        truncated = self._steps >= self.max_episode_steps and not terminated
        return self._observation(), float(reward), terminated, truncated, self._info(error, blowup=False)

    # --- helpers --------------------------------------------------------------------------
    def _assist_prob(self) -> float:
        """This episode's chance of an assisted start: ``assist_start_prob``, falling linearly to
        0 over the first ``assist_episodes`` episodes the env runs (0: it stays)."""
        if self.assist_episodes == 0:
            return self.assist_start_prob
        return self.assist_start_prob * max(0.0, 1.0 - self._episodes / self.assist_episodes)

    def _assisted_start(self, start: np.ndarray) -> None:
        """Move the arm (at rest) to where the task's :meth:`~sim_bridge.tasks.base.Task.assist_target`
        puts the site, by IK on the nominal kinematics; if IK does not get there, keep the start."""
        site, point = self.task.assist_target(self.sim, self._state)
        if self._assist_ik is None or self._assist_ik[0] != site:
            from sim_bridge.oracle import ReachOracle  # noqa: PLC0415 (training only)
            self._assist_ik = (site, ReachOracle(self.profile, gain=1.0, integral_gain=0.0,
                                                 scene=self.task.add_to_scene, site=site))
        q = self._assist_ik[1].solve(start, point, down_gain=0.5)
        if q is not None:
            self._reading = self.sim.place_arm(q)
            self.sim.forward()

    def _observation(self) -> np.ndarray:
        r = self._reading
        ee = self.action.observed(r.position_rad) if self._builder.has_ee else None
        return self._builder.build(r.position_rad, r.velocity_rad_s, self._prev_action,
                                   self.task.observe(self.sim, self._state), ee=ee)

    def _info(self, error: float, *, blowup: bool) -> dict[str, Any]:
        task_priv = self.task.privileged(self.sim, self._state)
        privileged = np.empty(len(self._dynamics) + len(task_priv), dtype=np.float32)
        privileged[:len(self._dynamics)] = self._dynamics
        privileged[len(self._dynamics):] = task_priv
        return {
            "dynamics": self._dynamics,
            "privileged": privileged,
            **self.task.info(self.sim, self._state),
            "distance": error,
            "is_success": self._counter.succeeded,
            "physics_blowup": blowup,
        }
