"""What a policy's action means: the joint position targets it turns into.

numpy only: the training env, the deployed policy runtime and the calibration's rollouts use
these classes, so an action means the same everywhere. The manifest records the type and its
settings (``action`` in ``manifest.json``; :func:`action_from_dict`).

``joint_position_delta`` (every shipped Reach policy)
    ``a`` in [-1, 1]^n, one per joint: ``q_target = clip(q_measured + scale_rad * a, lower, upper)``.
``ee_position_delta`` (Push)
    ``a`` in [-1, 1]^3: a step of the end-effector site (Push: the pusher tip) in the robot base
    frame, ``dx = scale_m * a``, added to the *previous command* (an integrated Cartesian target,
    as Cartesian teleoperation does), which may lead the measured joints by at most
    ``max_lead_rad`` per joint; the first command after :meth:`~EndEffectorDeltaAction.reset`
    (episode start, policy start, a hold) starts from the measured joints. The joint step comes
    from damped least squares on the chain's nominal kinematics at that base
    (:class:`sim_bridge.kinematics.KinematicChain`, carried in the manifest: the robot computer
    needs no simulator)::

        q0 = clip(q_previous_target, q - max_lead_rad, q + max_lead_rad)   (q: measured)
        x0, J = the site and [Jp; Jr] at q0  (the tool-axis rows only when down_gain > 0)
        dx_z = max(dx_z, min_z_m - x0_z)              (a floor for the commanded site)
        e = [dx; down_gain * (z_tool x (-z_world))]   (turns the tool axis toward pointing down)
        z = posture_gain * (q_default - q0)           (null-space pull toward the default pose)
        dq = z + J^T (J J^T + damping^2 I)^-1 (e - J z)
        q_target = clip(q0 + clip(dq, -max_joint_step_rad, max_joint_step_rad), lower, upper)

    Why the previous command and not the measured joints: under the arm's PD a target placed
    relative to the measured position loses the gravity sag every step, so the pusher tracked a
    commanded -x step as -0.19 m x and -0.18 m z over 0.5 s; from the previous command the same
    steps gave -0.36 m x and 0.00 m z (measured in the Push env, nominal physics).
    Why a floor (``min_z_m``, Push: the nominal table top + the push height): a command that
    integrates keeps pressing a pusher that touches the table, which then sticks by friction;
    trained policies went down first and stayed pressed on the table.

    Why (docs/architecture.md, "Push acts in Cartesian space"): a joint-space policy had not
    learnt to push in 6.6M env steps; three numbers that move the pusher tip are what the task
    is about, and the arm's redundancy is resolved the same way on every robot computer.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from sim_bridge.kinematics import KinematicChain, jacobian_batch, site_positions

JOINT_DELTA = "joint_position_delta"
EE_DELTA = "ee_position_delta"
ACTION_TYPES = (JOINT_DELTA, EE_DELTA)


def _clip(x, low, high):
    return np.minimum(np.maximum(x, low), high)


@dataclass(frozen=True)
class EndEffectorSettings:
    """The settings of an ``ee_position_delta`` action besides the chain (manifest fields)."""

    scale_m: float = 0.02  # end-effector step per action unit and control step (m): 1 m/s at 50 Hz
    max_joint_step_rad: float = 0.08  # the largest joint step between two commands (rad; the policy node checks it against the velocity limits)
    max_lead_rad: float = 0.15  # how far the integrated command may lead the measured joints (rad)
    damping: float = 0.05  # DLS damping
    down_gain: float = 0.5  # tool axis toward -z (0: no orientation rows)
    min_z_m: float = -1e9  # the lowest commanded site height in the base frame (m; -1e9: no floor)
    posture_gain: float = 0.05  # null-space pull toward the default pose

    def validate(self) -> None:
        for name in ("scale_m", "max_joint_step_rad", "max_lead_rad", "damping"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ee_position_delta: {name} must be > 0, got {getattr(self, name)}")
        for name in ("down_gain", "posture_gain"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"ee_position_delta: {name} must be >= 0, got {getattr(self, name)}")


class JointDeltaAction:
    """``joint_position_delta``: one action per joint, a step from the measured position."""

    type = JOINT_DELTA

    def __init__(self, num_joints: int, scale_rad: float, lower_rad, upper_rad):
        if not scale_rad > 0:
            raise ValueError(f"joint_position_delta: scale_rad must be > 0, got {scale_rad}")
        self.size = int(num_joints)
        self.scale_rad = float(scale_rad)
        self.lower, self.upper = np.asarray(lower_rad, float), np.asarray(upper_rad, float)

    @property
    def max_joint_step_rad(self) -> float:
        """The largest joint target offset one command can ask."""
        return self.scale_rad

    def reset(self) -> None:
        """Nothing to forget: every target is relative to the measured joints."""

    def targets(self, joint_pos: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Joint position targets for an action already clipped to [-1, 1]."""
        return _clip(joint_pos + self.scale_rad * action, self.lower, self.upper)

    def targets_batch(self, joint_pos: np.ndarray, action: np.ndarray, last: np.ndarray | None = None) -> np.ndarray:
        """:meth:`targets` for a batch [B, n] of rows (``last`` is unused: no command state)."""
        return _clip(joint_pos + self.scale_rad * action, self.lower, self.upper)

    def describe(self) -> dict:
        return {"type": self.type, "size": self.size, "scale_rad": self.scale_rad}


class EndEffectorDeltaAction:
    """``ee_position_delta``: a Cartesian step of a site, mapped to joints by damped least squares."""

    type = EE_DELTA
    size = 3

    def __init__(self, chain: KinematicChain, settings: EndEffectorSettings, default_pose_rad, lower_rad, upper_rad):
        settings.validate()
        self.chain, self.settings = chain, settings
        self.default = np.asarray(default_pose_rad, float)
        self.lower, self.upper = np.asarray(lower_rad, float), np.asarray(upper_rad, float)
        n = len(chain.joint_names)
        if not (self.default.shape == self.lower.shape == self.upper.shape == (n,)):
            raise ValueError(f"ee_position_delta: the default pose and limits need {n} values (the chain's joints)")
        rows = 6 if settings.down_gain > 0 else 3
        self._reg = settings.damping ** 2 * np.eye(rows)
        self._task = np.zeros(rows)
        self._last: np.ndarray | None = None  # the previous target (None: start from the measured joints)

    def reset(self) -> None:
        """The next command starts from the measured joints (episode start, a new policy, a hold)."""
        self._last = None

    @property
    def last_target(self) -> np.ndarray | None:
        """The previous target (None after a reset)."""
        return None if self._last is None else self._last.copy()

    @property
    def max_joint_step_rad(self) -> float:
        return self.settings.max_joint_step_rad

    def site_position(self, joint_pos: np.ndarray) -> np.ndarray:
        """The site (Push: the pusher tip) by the nominal kinematics at ``joint_pos`` (m, base frame)."""
        return self.chain.site_position(joint_pos)

    def joint_step(self, joint_pos: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The joint step (rad) for an action already clipped to [-1, 1] (before the step clip)."""
        s = self.settings
        site, rot, jac = self.chain.stacked_jacobian(joint_pos)
        task = self._task
        task[:3] = s.scale_m * np.asarray(action, float)
        floor = s.min_z_m - site[2]
        if task[2] < floor:  # the floor: never command the site below min_z_m
            task[2] = floor
        if s.down_gain > 0:  # the tool axis rot[:, 2] crossed with (0, 0, -1); task[5] stays 0
            task[3], task[4] = -s.down_gain * rot[1, 2], s.down_gain * rot[0, 2]
        else:
            jac = jac[:3]
        z = s.posture_gain * (self.default - joint_pos)
        return z + jac.T @ np.linalg.solve(jac @ jac.T + self._reg, task - jac @ z)

    def _base(self, joint_pos: np.ndarray) -> np.ndarray:
        """The command the next step adds to: the previous target kept within ``max_lead_rad``
        of the measured joints (the measured joints after a reset)."""
        lead = self.settings.max_lead_rad
        return joint_pos if self._last is None else _clip(self._last, joint_pos - lead, joint_pos + lead)

    def observed(self, joint_pos: np.ndarray) -> np.ndarray:
        """The observation's ``ee_pos`` and ``ee_cmd`` (6 values): the site at the measured joints
        and at the command the next step adds to."""
        out = np.empty(6)
        out[:3] = self.chain.site_position(joint_pos)
        out[3:] = out[:3] if self._last is None else self.chain.site_position(self._base(joint_pos))
        return out

    def targets(self, joint_pos: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The next target for an action already clipped to [-1, 1] (remembered for the next call)."""
        base = self._base(joint_pos)
        step = self.settings.max_joint_step_rad
        self._last = _clip(base + _clip(self.joint_step(base, action), -step, step), self.lower, self.upper)
        return self._last.copy()

    # --- batched: closed-loop calibration rollouts, every row with its own command state ----------
    # ``last`` [B, n] holds each row's previous target (a NaN row: after a reset), the per-row
    # ``_last``; the same arithmetic as the methods above with a batch axis.
    def _bases_batch(self, joint_pos: np.ndarray, last: np.ndarray) -> np.ndarray:
        lead = self.settings.max_lead_rad
        return np.where(np.isnan(last[:, :1]), joint_pos, _clip(last, joint_pos - lead, joint_pos + lead))

    def observed_batch(self, joint_pos: np.ndarray, last: np.ndarray) -> np.ndarray:
        """:meth:`observed` per row: [B, 6]."""
        out = np.empty((len(joint_pos), 6))
        out[:, :3] = site_positions(self.chain, joint_pos)
        out[:, 3:] = site_positions(self.chain, self._bases_batch(joint_pos, last))
        return out

    def joint_step_batch(self, joint_pos: np.ndarray, action: np.ndarray) -> np.ndarray:
        """:meth:`joint_step` per row: [B, n]."""
        s = self.settings
        site, rot, jp, jr = jacobian_batch(self.chain, joint_pos)
        rows = len(self._task)
        task = np.zeros((len(joint_pos), rows))
        task[:, :3] = s.scale_m * np.asarray(action, float)
        task[:, 2] = np.maximum(task[:, 2], s.min_z_m - site[:, 2])  # the floor
        if s.down_gain > 0:
            task[:, 3], task[:, 4] = -s.down_gain * rot[:, 1, 2], s.down_gain * rot[:, 0, 2]
            jac = np.concatenate((jp, jr), axis=1)
        else:
            jac = jp
        jac_t = jac.transpose(0, 2, 1)
        z = s.posture_gain * (self.default - joint_pos)
        rhs = task - (jac @ z[:, :, None])[:, :, 0]
        return z + (jac_t @ np.linalg.solve(jac @ jac_t + self._reg, rhs[:, :, None]))[:, :, 0]

    def targets_batch(self, joint_pos: np.ndarray, action: np.ndarray, last: np.ndarray) -> np.ndarray:
        """:meth:`targets` per row (actions already clipped); the result is the rows' next ``last``."""
        base = self._bases_batch(joint_pos, last)
        step = self.settings.max_joint_step_rad
        return _clip(base + _clip(self.joint_step_batch(base, action), -step, step), self.lower, self.upper)

    def describe(self) -> dict:
        s = self.settings
        return {"type": self.type, "size": self.size, "scale_m": s.scale_m, "max_joint_step_rad": s.max_joint_step_rad,
                "max_lead_rad": s.max_lead_rad, "damping": s.damping, "down_gain": s.down_gain, "posture_gain": s.posture_gain,
                "min_z_m": s.min_z_m,
                "kinematics": self.chain.to_dict()}


#: the settings an ``ee_position_delta`` description holds besides its kinematics (manifest fields)
EE_FIELDS = tuple(f.name for f in dataclasses.fields(EndEffectorSettings))


def env_kwargs_of(described: dict) -> dict:
    """The env keyword arguments (``action_type`` and its settings) that rebuild the action an
    action description names (``describe()``, or a manifest's ``action``)."""
    if described["type"] == JOINT_DELTA:
        return {"action_type": JOINT_DELTA, "action_scale_rad": float(described["scale_rad"])}
    return {"action_type": described["type"], "ee_action": {k: described[k] for k in EE_FIELDS if k in described}}


def action_from_dict(data: dict, *, num_joints: int, default_pose_rad, lower_rad, upper_rad):
    """The action a manifest's ``action`` object describes (ValueError naming the field)."""
    kind = data.get("type")
    if kind == JOINT_DELTA:
        return JointDeltaAction(num_joints, float(data["scale_rad"]), lower_rad, upper_rad)
    if kind == EE_DELTA:
        settings = EndEffectorSettings(**{k: float(data[k]) for k in EE_FIELDS if k in data})
        return EndEffectorDeltaAction(KinematicChain.from_dict(data["kinematics"]), settings, default_pose_rad,
                                      lower_rad, upper_rad)
    raise ValueError(f"unsupported action type {kind!r}; expected one of {list(ACTION_TYPES)}")
