"""A scripted reach controller: damped-least-squares IK on the nominal model.

Used to test that the reach task is solvable, and by ``sim2real sim`` to drive the arm
before a trained policy is shipped. It sees only what a policy sees (measured joint
positions and the target) and computes kinematics on its own nominal copy of the model,
so it works unchanged against the ROS sim bridge.
"""
from __future__ import annotations

import mujoco
import numpy as np

from sim_bridge.profile import RobotProfile
from sim_bridge.simulator import build_model


class ReachOracle:
    """Task-space P+I controller mapped to joint deltas with damped least squares."""

    def __init__(self, profile: RobotProfile, action_scale_rad: float = 0.05, gain: float = 0.5,
                 integral_gain: float = 0.05, damping: float = 0.05, posture_gain: float = 0.05):
        self.profile = profile
        self.model = build_model(profile)
        self.data = mujoco.MjData(self.model)
        self.action_scale_rad = action_scale_rad
        self.gain, self.integral_gain = gain, integral_gain
        self.damping, self.posture_gain = damping, posture_gain
        m = self.model
        jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in profile.joint_names]
        self._qadr = np.array([m.jnt_qposadr[j] for j in jids])
        self._dadr = np.array([m.jnt_dofadr[j] for j in jids])
        self._site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, profile.end_effector_site)
        self._jacp = np.zeros((3, m.nv))
        self._integral = np.zeros(3)

    def reset(self) -> None:
        self._integral[:] = 0.0

    def end_effector(self, joint_pos: np.ndarray) -> np.ndarray:
        self.data.qpos[self._qadr] = joint_pos
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self._site].copy()

    def joint_delta(self, joint_pos: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Joint position change (rad) that moves the end effector toward ``target``."""
        err = np.asarray(target, float) - self.end_effector(joint_pos)
        self._integral = np.clip(self._integral + err, -0.5, 0.5)
        mujoco.mj_comPos(self.model, self.data)
        mujoco.mj_jacSite(self.model, self.data, self._jacp, None, self._site)
        jac = self._jacp[:, self._dadr]
        task = self.gain * err + self.integral_gain * self._integral
        jjt = jac @ jac.T + self.damping**2 * np.eye(3)
        dq = jac.T @ np.linalg.solve(jjt, task)
        # Null-space pull toward the default pose keeps the elbow tidy.
        null = np.eye(len(dq)) - np.linalg.pinv(jac) @ jac
        dq += null @ (self.posture_gain * (self.profile.default_pose_rad - joint_pos))
        return dq

    def action(self, joint_pos: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The same step as a policy action in [-1, 1]."""
        return np.clip(self.joint_delta(joint_pos, target) / self.action_scale_rad, -1.0, 1.0)
