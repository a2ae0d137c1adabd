"""The observation vector and action semantics, shared by the env and the policy runtime.

numpy only (no mujoco, no ROS, no torch): the deployed policy runtime imports this
module to build observations exactly as the training env did, so there is one
definition, not two copies.

Observation (what real sensors give), concatenated in this order::

    joint_pos    [n]  rad     measured joint positions
    joint_vel    [n]  rad/s   measured joint velocities
    prev_action  [n]  1       the previous policy action, in [-1, 1]
    target_pos   [3]  m       reach target in the robot base frame

Action: ``a`` in [-1, 1]^n, joint position *deltas* relative to the measured position:
``q_target = clip(q_measured + action_scale_rad * a, lower, upper)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTION_TYPE = "joint_position_delta"


@dataclass(frozen=True)
class Signal:
    name: str
    size: int
    unit: str
    description: str


def observation_layout(num_joints: int) -> tuple[Signal, ...]:
    """Named slices of the observation vector, in order."""
    return (
        Signal("joint_pos", num_joints, "rad", "measured joint positions"),
        Signal("joint_vel", num_joints, "rad/s", "measured joint velocities"),
        Signal("prev_action", num_joints, "1", "previous policy action in [-1, 1]"),
        Signal("target_pos", 3, "m", "reach target in the robot base frame"),
    )


def observation_size(num_joints: int) -> int:
    return sum(s.size for s in observation_layout(num_joints))


def build_observation(joint_pos: np.ndarray, joint_vel: np.ndarray, prev_action: np.ndarray,
                      target_pos: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Concatenate the named signals into the float32 observation vector."""
    n = len(joint_pos)
    if out is None:
        out = np.empty(3 * n + 3, dtype=np.float32)
    out[:n] = joint_pos
    out[n:2 * n] = joint_vel
    out[2 * n:3 * n] = prev_action
    out[3 * n:3 * n + 3] = target_pos
    return out


def clip(x: np.ndarray, low, high) -> np.ndarray:
    """np.clip without its dispatch overhead (this runs every control step)."""
    return np.minimum(np.maximum(x, low), high)


def action_to_joint_targets(action: np.ndarray, joint_pos_measured: np.ndarray, action_scale_rad: float,
                            lower_rad: np.ndarray, upper_rad: np.ndarray) -> np.ndarray:
    """Absolute joint position targets for a policy action (see the module docstring)."""
    a = clip(np.asarray(action, dtype=float), -1.0, 1.0)
    return clip(joint_pos_measured + action_scale_rad * a, lower_rad, upper_rad)
