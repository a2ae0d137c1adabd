"""The observation vector and action semantics, shared by the envs and the policy runtime.

numpy only (no mujoco, no ROS, no torch): the deployed policy runtime builds observations
with the same :class:`ObservationBuilder` the training env uses, so there is one
definition, not two copies.

Observation: the arm's signals (what joint sensors give), then the task's signals (declared
by the task, :mod:`sim_bridge.tasks`), concatenated in this order::

    joint_pos    [n]  rad     measured joint positions
    joint_vel    [n]  rad/s   measured joint velocities
    prev_action  [k]  1       the previous policy action, in [-1, 1] (k = the action's size:
                              n for joint deltas, 3 for end-effector steps; 0 when the task's
                              ``observe_prev_action`` is false: the signal stays, empty)
    ee_pos       [3]  m       only with an end-effector action: the site it moves (Push: the
                              pusher tip) by the nominal kinematics at the measured joints
    ee_cmd       [3]  m       only with an end-effector action: the same site at the joint
                              command the action integrates (where the policy is steering it;
                              the measured site after a reset). The command is the controller's
                              own state: without it the next step's effect is not a function of
                              the observation (the arm sags 1-2 cm below its command)
    <task signals>            e.g. Reach: target_pos [3] m, the target in the robot base frame

Action: :mod:`sim_bridge.actions` (the default ``a`` in [-1, 1]^n, joint position *deltas*
relative to the measured position: ``q_target = clip(q_measured + action_scale_rad * a, lower, upper)``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim_bridge.actions import EE_DELTA


@dataclass(frozen=True)
class Signal:
    name: str
    size: int
    unit: str
    description: str


ARM_SIGNAL_NAMES = ("joint_pos", "joint_vel", "prev_action")
EE_SIGNALS = (
    Signal("ee_pos", 3, "m", "the action's site (nominal kinematics at the measured joints), robot base frame"),
    Signal("ee_cmd", 3, "m", "the action's site at its integrated joint command (the measured site after a reset), robot base frame"),
)


def arm_signals(num_joints: int, action=None, prev_action: bool = True) -> tuple[Signal, ...]:
    """The arm's part of every observation, in order. ``action``: the policy's action (an object
    of :mod:`sim_bridge.actions` or a manifest's ``ActionSpec``: its ``type`` and ``size``);
    None = joint deltas, one per joint. ``prev_action``: False = the policy does not observe its
    previous action (the signal has size 0)."""
    size = num_joints if action is None else int(action.size)
    signals = (
        Signal("joint_pos", num_joints, "rad", "measured joint positions"),
        Signal("joint_vel", num_joints, "rad/s", "measured joint velocities"),
        Signal("prev_action", size, "1", "previous policy action in [-1, 1]") if prev_action else
        Signal("prev_action", 0, "1", "not observed (the task's observe_prev_action is false)"),
    )
    return signals + (EE_SIGNALS if action is not None and action.type == EE_DELTA else ())


def layout_size(layout) -> int:
    return sum(s.size for s in layout)


class ObservationBuilder:
    """Fills the float32 observation vector of a layout: the arm's signals, then the task's.

    Built once per layout (the slices are computed here), called every control step."""

    def __init__(self, layout: tuple[Signal, ...]):
        layout = tuple(layout)
        if tuple(s.name for s in layout[:3]) != ARM_SIGNAL_NAMES or layout[0].size != layout[1].size:
            raise ValueError(f"an observation layout starts with the arm's signals {ARM_SIGNAL_NAMES} "
                             f"(one position and velocity per joint), got {[(s.name, s.size) for s in layout[:3]]}")
        self.layout = layout
        self.num_joints = n = layout[0].size
        self.prev_action_size = k = layout[2].size   # the action's size, or 0: not observed
        self.size = layout_size(layout)
        self.has_ee = layout[3:3 + len(EE_SIGNALS)] == EE_SIGNALS
        arm = 3 + len(EE_SIGNALS) if self.has_ee else 3
        self.task_signals = layout[arm:]
        bounds, start = [], 2 * n + k + (6 if self.has_ee else 0)
        for s in self.task_signals:
            bounds.append((start, start + s.size))
            start += s.size
        self._task_bounds = tuple(bounds)

    def build(self, joint_pos, joint_vel, prev_action, task_values, out: np.ndarray | None = None,
              ee=None) -> np.ndarray:
        """Concatenate the signals (``task_values`` in the layout's task-signal order; ``ee``:
        ``ee_pos`` and ``ee_cmd``, 6 values, when the layout has them: the action's ``observed``).

        One observation ``[size]``, or a batch ``[B, size]`` when ``out`` is 2-D (every
        signal then has a leading batch axis, or broadcasts over it). ``prev_action`` is not
        read when the layout does not observe it (its size is 0)."""
        n, k = self.num_joints, self.prev_action_size
        if out is None:
            out = np.empty(self.size, dtype=np.float32)
        if self.has_ee:
            if ee is None:
                raise ValueError("this observation layout has ee_pos and ee_cmd: pass the action's observed sites")
            out[..., 2 * n + k:2 * n + k + 6] = ee
        if out.ndim == 1:
            out[:n] = joint_pos
            out[n:2 * n] = joint_vel
            if k:
                out[2 * n:2 * n + k] = prev_action
            for (lo, hi), value in zip(self._task_bounds, task_values):
                out[lo:hi] = value
        else:
            out[:, :n] = joint_pos
            out[:, n:2 * n] = joint_vel
            if k:
                out[:, 2 * n:2 * n + k] = prev_action
            for (lo, hi), value in zip(self._task_bounds, task_values):
                out[:, lo:hi] = value
        return out


def clip(x: np.ndarray, low, high) -> np.ndarray:
    """np.clip without its dispatch overhead (this runs every control step)."""
    return np.minimum(np.maximum(x, low), high)


def action_to_joint_targets(action: np.ndarray, joint_pos_measured: np.ndarray, action_scale_rad: float,
                            lower_rad: np.ndarray, upper_rad: np.ndarray) -> np.ndarray:
    """Absolute joint position targets for a policy action (see the module docstring)."""
    a = clip(np.asarray(action, dtype=float), -1.0, 1.0)
    return clip(joint_pos_measured + action_scale_rad * a, lower_rad, upper_rad)
