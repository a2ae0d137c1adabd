"""The task interface: what a task declares, once, for every part of the stack.

A task is one module (``sim_bridge/tasks/reach.py`` is the reference) with one
:class:`Task` subclass, registered in :mod:`sim_bridge.tasks`. What it declares is used by

* the gymnasium env (:class:`sim_bridge.envs.task_env.TaskEnv`): reset sampling, the task's
  observation signals, reward, success, the critic's privileged state, scene additions;
* training and export: the manifest records the task's name and its observation layout;
* the deployed runtime and the policy node: the observation is built from the manifest's
  layout with :class:`sim_bridge.observations.ObservationBuilder` (the env's builder), and
  the task's ROS inputs (:class:`TaskInput`) say which topic fills each task signal;
* the bridges and every runner (``sim``, ``real``, ``eval``, transfer scoring, calibration):
  the goal sampling and the ONE success criterion.

This module is numpy-only (no mujoco, no gymnasium, no ROS): the robot computer imports
the declarations. The simulation hooks receive the simulator (or a MuJoCo spec) as an
argument; they never import it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sim_bridge.episode import SuccessCriterion
from sim_bridge.observations import Signal, arm_signals

__all__ = ["Task", "TaskInput", "POINT_STAMPED", "POSE_STAMPED"]

POINT_STAMPED = "geometry_msgs/msg/PointStamped"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"


@dataclass(frozen=True)
class TaskInput:
    """A task signal that arrives over ROS at deployment (the arm's signals always do).

    ``signal`` names the observation signal it fills; ``topic`` is relative (the policy
    node's namespace applies); ``msg_type`` is the ROS type whose fields are read
    (``geometry_msgs/msg/PointStamped`` -> x, y, z); ``latched`` = transient-local QoS
    (a goal that is published once)."""

    signal: str
    topic: str
    msg_type: str
    latched: bool = True


class Task:
    """One task. Subclasses set the class attributes and implement the simulation hooks.

    Episode state (the sampled goal, an object's start, ...) lives in the env, in the
    object :meth:`reset` returns; a task instance only holds its settings.
    """

    #: registry key and ``--task`` value, e.g. "reach"
    name: ClassVar[str]
    #: gymnasium id, e.g. "Sim2Real/Reach-v0"
    env_id: ClassVar[str]
    #: one line for ``--help`` and listings
    summary: ClassVar[str] = ""
    #: ROS inputs that fill the task's observation signals on a robot
    inputs: ClassVar[tuple[TaskInput, ...]] = ()
    #: the action a policy of this task uses unless told otherwise (env keyword arguments
    #: ``action_type`` and ``ee_action``; empty = joint position deltas)
    default_action: ClassVar[dict] = {}
    #: the site an end-effector action (``ee_position_delta``, :mod:`sim_bridge.actions`) moves;
    #: None = the robot profile's end-effector site (Push: its pusher tip)
    action_site: ClassVar[str | None] = None
    #: the shipped randomization the name "default" means for this task (Push: the arm's
    #: ranges plus the object's, "push_default")
    default_randomization: ClassVar[str] = "default"

    def __init__(self, success: SuccessCriterion, max_episode_steps: int, *, observe_prev_action: bool = True):
        """``observe_prev_action``: whether the policy observes its previous action (the
        ``prev_action`` signal; False: the signal is in the layout with size 0). Why a policy may
        do without it: an LSTM trained with sampled actions sees a noisy previous action; its
        deterministic (exported) mean then sees a noise-free one it never saw in training, and on
        Push that alone locked it into a stall at the puck (docs/push_training.md)."""
        if int(max_episode_steps) < 1:
            raise ValueError(f"task {self.name!r}: max_episode_steps must be >= 1, got {max_episode_steps}")
        if not isinstance(observe_prev_action, bool):
            raise ValueError(f"task {self.name!r}: observe_prev_action must be true or false, got {observe_prev_action!r}")
        self.success = success
        self.max_episode_steps = int(max_episode_steps)
        self.observe_prev_action = observe_prev_action
        #: the constructor settings that reproduce this task (set by ``make_task``; recorded in manifests)
        self.settings: dict[str, Any] = {}

    # --- declarations (numpy only) ----------------------------------------------------
    def signals(self) -> tuple[Signal, ...]:
        """The task's observation signals, after the arm's (name, size, unit, description)."""
        raise NotImplementedError

    def observation_layout(self, num_joints: int, action=None) -> tuple[Signal, ...]:
        """The whole observation: the arm's signals, then the task's (``action``: the policy's action,
        its ``type`` and ``size``; None = joint deltas, see :func:`sim_bridge.observations.arm_signals`)."""
        return arm_signals(num_joints, action, prev_action=self.observe_prev_action) + self.signals()

    def sample_goal(self, rng: np.random.Generator, profile) -> np.ndarray:
        """The goal of a new episode (what the bridges publish on ``current_goal``)."""
        raise NotImplementedError

    def randomization_name(self, name: str) -> str:
        """The randomization ``name`` means for this task: "default" is the task's own default."""
        return self.default_randomization if name == "default" else name

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the task."""
        return {"name": self.name, "settings": dict(self.settings), "env_id": self.env_id,
                "success": self.success.to_dict(), "max_episode_steps": self.max_episode_steps}

    # --- simulation hooks (called by TaskEnv with its ArmSimulator) ---------------------
    #: set to a method ``add_to_scene(self, spec, profile)`` that adds the task's bodies to the
    #: arm's ``mujoco.MjSpec`` before it compiles (``profile``: the robot profile, e.g. for its
    #: end-effector site); None = the arm's MJCF as it is (Reach's target marker is the
    #: profile's ``target_body``). Push adds a puck and a pusher tip.
    add_to_scene = None

    def action_floor_m(self, model) -> float | None:
        """The lowest height (base frame, m) an end-effector action may command its site to, on the
        nominal compiled ``model`` with the task's scene (Push: the table top + the push height);
        None: no floor. Recorded in the policy's manifest (``action.min_z_m``)."""
        return None

    def reset(self, sim, rng: np.random.Generator, goal: np.ndarray, options: dict[str, Any]) -> Any:
        """Set up a new episode on the reset simulator, for ``goal`` (sampled by :meth:`sample_goal`
        before the arm's start pose and dynamics, or given); returns the episode's task state."""
        raise NotImplementedError

    def observe(self, sim, state) -> tuple[np.ndarray, ...]:
        """The task signals' values now, in :meth:`signals` order (as a sensor would see them)."""
        raise NotImplementedError

    def measure(self, sim, state) -> dict[str, tuple[np.ndarray, float]]:
        """What the task's sensors deliver this control step, for the bridges to publish on the
        task's non-goal inputs: ``{signal: (value, age_s)}`` (``age_s``: how old the
        measurement is, the sensor's latency). Called once per control step by the sim bridge
        (it advances the sensor model like :meth:`observe`); a signal missing from the dict was
        not delivered this step (a dropout). Default: none (Reach has only the goal)."""
        return {}

    def error(self, sim, state) -> float:
        """The quantity the success criterion bounds (m), from the true simulator state."""
        raise NotImplementedError

    def reward(self, error: float, inside: bool, action: np.ndarray, sim, state) -> float:
        """Reward of one control step (the equation is in the task module's docstring);
        ``sim`` and ``state`` give the terms beyond the error (Push: pusher to puck)."""
        raise NotImplementedError

    def privileged_names(self) -> tuple[str, ...]:
        """Names of the task part of the critic's privileged state (after the dynamics)."""
        return ()

    def privileged(self, sim, state) -> np.ndarray:
        """The task part of the privileged state (true values, never observed by the policy)."""
        return np.zeros(0)

    def info(self, sim, state) -> dict[str, Any]:
        """Extra entries of the env's ``info`` (e.g. ``target_pos``, ``ee_pos``)."""
        return {}

    def assist_target(self, sim, state) -> tuple[str, np.ndarray] | None:
        """Where an *assisted* training episode starts the arm (the env's ``assist_start_prob``):
        ``(site name, point in the world frame)`` for that site, reached by IK from the start
        pose after :meth:`reset`. For tasks whose hard part comes after an approach (Push: the
        pusher behind the puck), so training sees that part from its first iterations. None:
        the task has no assisted start."""
        return None

    def scripted_controller(self, profile, action):
        """The task's scripted controller (IK on the nominal model, no learning) behind a policy's
        interface, acting in ``action``'s space (:mod:`sim_bridge.actions`: the env's action object):
        an object with ``reset()`` (a new episode) and ``act(parts)`` -> action in [-1, 1]^k, where ``parts`` maps each observation signal's name to its slice of the
        observation. Training can kickstart from it (``kickstart_rounds``). None: the task has none."""
        return None
