"""Simulator core: a MuJoCo arm stepped at the control rate, with randomized dynamics.

No ROS and no task logic: the gymnasium env and the ROS node are thin shells over
:class:`ArmSimulator`. One control step = ``profile.decimation`` physics steps (e.g.
50 Hz control over 500 Hz physics). Commands are absolute joint position targets in
the profile's joint order; they reach the actuators after the episode's sampled
latency (in control steps, fractional values resolved to physics sub-steps) with the
sampled action noise added. Observations carry the sampled observation noise.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections import deque
from dataclasses import dataclass

import mujoco
import numpy as np

from sim_bridge.actions import (ACTION_TYPES, EE_DELTA, JOINT_DELTA, EndEffectorDeltaAction, EndEffectorSettings,
                                JointDeltaAction)
from sim_bridge.config import ConfigError
from sim_bridge.kinematics import KinematicChain
from sim_bridge.observations import clip
from sim_bridge.profile import RobotProfile
from sim_bridge.randomization import (DynamicsRandomizer, EpisodeEffects, NominalModel,
                                      RandomizationSpec)

_MUJOCO_LOG = logging.getLogger("mujoco")


def _mujoco_warning(message: str) -> None:
    _MUJOCO_LOG.debug("%s", message)


def route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings to the Python logger ``mujoco`` (DEBUG) instead of its default
    handler, which prints them and appends them to ``MUJOCO_LOG.TXT`` in the process's
    working directory (~100 kB/s from a node whose physics blows up every step). The
    simulator detects the instabilities these warnings announce itself (``blew_up``) and
    its users report them, throttled. Errors keep MuJoCo's handler: the Python bindings
    turn them into ``mujoco.FatalError``. Idempotent; a handler someone else installed is
    kept."""
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_mujoco_warning)


# Joint velocities above this (rad/s) are treated as a physics blow-up.
BLOWUP_VELOCITY_RAD_S = 1.0e3
_BADQACC, _BADQPOS, _BADQVEL = (int(mujoco.mjtWarning.mjWARN_BADQACC), int(mujoco.mjtWarning.mjWARN_BADQPOS),
                                int(mujoco.mjtWarning.mjWARN_BADQVEL))



@dataclass(frozen=True)
class JointReading:
    """Joint state as a sensor would report it (noise included), profile joint order."""

    position_rad: np.ndarray
    velocity_rad_s: np.ndarray


def _as_slice(indices: np.ndarray):
    """``indices`` as a slice if they are consecutive, else unchanged."""
    if len(indices) and np.array_equal(indices, np.arange(indices[0], indices[0] + len(indices))):
        return slice(int(indices[0]), int(indices[0]) + len(indices))
    return indices


def build_model(profile: RobotProfile, scene=None) -> mujoco.MjModel:
    """Compile the profile's MJCF and write the profile's gains and limits into it.

    ``scene``, if given, is a task's ``add_to_scene(spec, profile)``: it adds the task's bodies to the
    arm's ``mujoco.MjSpec`` before compiling. Raises ConfigError naming the profile field
    when a name does not exist in the MJCF.
    """
    try:
        if scene is None:
            model = mujoco.MjModel.from_xml_path(str(profile.mjcf_path))
        else:
            spec = mujoco.MjSpec.from_file(str(profile.mjcf_path))
            scene(spec, profile)
            model = spec.compile()
    except ValueError as exc:  # MuJoCo's XML errors
        raise ConfigError(f"MJCF failed to compile: {exc}", source=profile.source, field="mjcf") from None
    model.opt.timestep = 1.0 / profile.physics_rate_hz
    for j, (joint, actuator) in enumerate(zip(profile.joint_names, profile.actuator_names)):
        jid = _name_to_id(model, mujoco.mjtObj.mjOBJ_JOINT, joint, profile, "joint_names")
        if int(model.jnt_type[jid]) not in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
            raise ConfigError(f"joint '{joint}' must be a hinge or slide joint", source=profile.source,
                              field="joint_names")
        aid = _name_to_id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, actuator, profile, "actuator_names")
        if model.actuator_trnid[aid, 0] != jid:
            raise ConfigError(f"actuator '{actuator}' does not drive joint '{joint}'",
                              source=profile.source, field="actuator_names")
        # Position actuator: force = kp * ctrl - kp * q - kd * qdot, clipped to the effort limit.
        model.actuator_gainprm[aid, 0] = profile.kp[j]
        model.actuator_biasprm[aid, :3] = (0.0, -profile.kp[j], -profile.kd[j])
        model.actuator_forcelimited[aid] = 1
        model.actuator_forcerange[aid] = (-profile.effort_limit_nm[j], profile.effort_limit_nm[j])
        model.actuator_ctrllimited[aid] = 1
        model.actuator_ctrlrange[aid] = (profile.position_lower_rad[j], profile.position_upper_rad[j])
        model.jnt_limited[jid] = 1
        model.jnt_range[jid] = (profile.position_lower_rad[j], profile.position_upper_rad[j])
    for link in profile.link_names:
        _name_to_id(model, mujoco.mjtObj.mjOBJ_BODY, link, profile, "link_names")
    _name_to_id(model, mujoco.mjtObj.mjOBJ_SITE, profile.end_effector_site, profile, "end_effector_site")
    if profile.target_body is not None:
        bid = _name_to_id(model, mujoco.mjtObj.mjOBJ_BODY, profile.target_body, profile, "target_body")
        if model.body_mocapid[bid] < 0:
            raise ConfigError(f"target body '{profile.target_body}' must be a mocap body",
                              source=profile.source, field="target_body")
    return model


class ModelChain(KinematicChain):
    """A :class:`~sim_bridge.kinematics.KinematicChain` evaluated by MuJoCo's own kinematics
    (``mj_kinematics``, ``mj_comPos``, ``mj_jacSite``) on the model it was read from.

    Where the model is at hand (the env, the scripted pushers, training) this computes the same
    numbers as the numpy walk (1.3e-13 apart over 200 random poses; the tests hold 1e-10), an
    env step's three evaluations ~18x faster: the walk was 44% of a Push training worker's time
    (py-spy). MuJoCo's data is this object's own: one chain per thread, as for the env. The manifest still carries
    the chain as numbers (:meth:`to_dict`, inherited), and the robot computer, which has no
    model, evaluates it with the numpy walk; the batched functions of
    :mod:`sim_bridge.kinematics` keep using the walk too."""

    def __init__(self, model: mujoco.MjModel, joint_names, site: str):
        read = KinematicChain.from_model(model, joint_names, site)
        super().__init__(read.joint_names, read.links, read.site_pos, read._site_quat, site=read.site)
        self._model, self._data = model, mujoco.MjData(model)
        ids = [model.joint(name).id for name in self.joint_names]
        self._qadr = np.array([model.jnt_qposadr[j] for j in ids])
        self._dofadr = np.array([model.jnt_dofadr[j] for j in ids])
        self._site_id = model.site(site).id
        self._jac = np.zeros((6, model.nv))  # [Jp; Jr] over every dof, written in place
        self._arm_dofs = _as_slice(self._dofadr)

    def __reduce__(self):  # rebuilt from the model in another process (an MjData is per process)
        return ModelChain, (self._model, self.joint_names, self.site)

    def _place(self, q) -> None:
        self._data.qpos[self._qadr] = q
        mujoco.mj_kinematics(self._model, self._data)

    def site_position(self, q) -> np.ndarray:
        self._place(q)
        return self._data.site_xpos[self._site_id].copy()

    def jacobian(self, q) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        site, rot, jac = self.stacked_jacobian(q)
        jac = jac.copy()  # stacked_jacobian's arrays are this chain's buffers: the caller keeps these
        return site.copy(), rot.copy(), jac[:3], jac[3:]

    def stacked_jacobian(self, q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`jacobian` stacked, written into this chain's own buffers (the site and rotation
        are views of its MjData): the env step's Jacobian without a copy of each part (the
        end-effector action's ``joint_step`` ~72 -> ~55 us on the Push env, a noisy 2-core host)."""
        self._place(q)
        mujoco.mj_comPos(self._model, self._data)
        jac = self._jac
        mujoco.mj_jacSite(self._model, self._data, jac[:3], jac[3:], self._site_id)
        return (self._data.site_xpos[self._site_id], self._data.site_xmat[self._site_id].reshape(3, 3),
                np.ascontiguousarray(jac[:, self._arm_dofs]))


def make_action(profile: RobotProfile, task=None, action_type: str | None = None, *, scale_rad: float = 0.05,
                ee: dict | None = None):
    """The policy action (:mod:`sim_bridge.actions`) of ``action_type`` for ``profile`` and ``task``
    (None: the task's ``default_action``, else joint deltas): an end-effector action reads its
    kinematic chain (to the task's ``action_site``, default the profile's end-effector site) from
    the nominal model with the task's scene; ``ee``: its
    :class:`~sim_bridge.actions.EndEffectorSettings` fields (None: the task's default ones)."""
    default = dict(getattr(task, "default_action", None) or {})
    if action_type is None:
        action_type = default.get("action_type", JOINT_DELTA)
    if ee is None and action_type == default.get("action_type"):
        ee = default.get("ee_action")
    if action_type == JOINT_DELTA:
        if ee:
            raise ValueError(f"ee_action settings {sorted(ee)} given for action type {JOINT_DELTA!r}")
        return JointDeltaAction(profile.num_joints, scale_rad, profile.position_lower_rad, profile.position_upper_rad)
    if action_type != EE_DELTA:
        raise ValueError(f"unknown action_type {action_type!r}; expected one of {list(ACTION_TYPES)}")
    try:
        settings = EndEffectorSettings(**(ee or {}))
    except TypeError:
        raise ValueError(f"unknown ee_action setting(s) in {sorted(ee)}; known: "
                         f"{[f.name for f in dataclasses.fields(EndEffectorSettings)]}") from None
    site = getattr(task, "action_site", None) or profile.end_effector_site
    model = build_model(profile, getattr(task, "add_to_scene", None))
    floor = task.action_floor_m(model) if task is not None and "min_z_m" not in (ee or {}) else None
    if floor is not None:
        settings = dataclasses.replace(settings, min_z_m=float(floor))
    chain = ModelChain(model, profile.joint_names, site)
    return EndEffectorDeltaAction(chain, settings, profile.default_pose_rad, profile.position_lower_rad,
                                  profile.position_upper_rad)


def _name_to_id(model, obj, name, profile, field) -> int:
    idx = mujoco.mj_name2id(model, obj, name)
    if idx < 0:
        raise ConfigError(f"'{name}' not found in the MJCF {profile.mjcf_path.name}",
                          source=profile.source, field=field)
    return idx


class ArmSimulator:
    """A randomized MuJoCo arm stepped one control period at a time."""

    def __init__(self, profile: RobotProfile, randomization: RandomizationSpec | None = None,
                 seed: int | None = None, scene=None):
        """``scene``: a task's ``add_to_scene(spec, profile)`` hook (see :func:`build_model`)."""
        route_mujoco_warnings()
        self.profile = profile
        self.model = build_model(profile, scene)
        self.data = mujoco.MjData(self.model)
        self.nominal = NominalModel(self.model)
        self.rng = np.random.default_rng(seed)
        m = self.model
        jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in profile.joint_names]
        self._qadr = np.array([m.jnt_qposadr[j] for j in jids])
        self._dadr = np.array([m.jnt_dofadr[j] for j in jids])
        # read() indexes with a slice where the addresses are contiguous (cheaper than an array)
        self._qread, self._dread = _as_slice(self._qadr), _as_slice(self._dadr)
        self._act = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, a)
                              for a in profile.actuator_names])
        self._ee_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, profile.end_effector_site)
        self._mocap = (int(m.body_mocapid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, profile.target_body)])
                       if profile.target_body else -1)
        self.decimation = profile.decimation
        self.randomizer = DynamicsRandomizer(randomization or RandomizationSpec(), m, profile, self.nominal)
        self._next_randomizer: DynamicsRandomizer | None = None
        self.dynamics = self.randomizer.nominal_values.copy()
        self.effects = EpisodeEffects()
        self._pending: deque[tuple[int, np.ndarray]] = deque()
        self._latency_substeps = 0
        self._substep = 0
        self._warnings_seen = 0
        self.control_steps = 0
        self.blew_up = False
        self.commands_clipped = 0
        self.reset()

    # --- configuration ------------------------------------------------------------------
    def set_randomization(self, spec: RandomizationSpec) -> None:
        """Validate ``spec`` against this model now; it takes effect at the next reset."""
        self._next_randomizer = DynamicsRandomizer(spec, self.model, self.profile, self.nominal)

    # --- episode ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, dynamics: np.ndarray | None = None,
              joint_pos: np.ndarray | None = None, randomize: bool = True) -> JointReading:
        """Start an episode: new dynamics sample (or the given vector), arm at ``joint_pos``."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        if self._next_randomizer is not None:  # a new distribution applies from this episode on
            self.randomizer, self._next_randomizer = self._next_randomizer, None
        if dynamics is not None:
            values = np.asarray(dynamics, dtype=float)
        elif randomize:
            values = self.randomizer.sample(self.rng)
        else:
            values = self.randomizer.nominal_values.copy()
        self.effects = self.randomizer.apply(self.model, values)
        self.dynamics = values
        # mj_setConst recomputes derived quantities (subtree masses, ...) for the new
        # sample; it uses data as scratch space, so it runs before the state is set.
        mujoco.mj_setConst(self.model, self.data)
        mujoco.mj_resetData(self.model, self.data)
        q0 = self.profile.default_pose_rad if joint_pos is None else np.asarray(joint_pos, dtype=float)
        q0 = clip(q0, self.profile.position_lower_rad, self.profile.position_upper_rad)
        self.data.qpos[self._qadr] = q0
        self.data.ctrl[self._act] = q0
        mujoco.mj_forward(self.model, self.data)
        self._pending.clear()
        # Round half up to whole physics sub-steps (Python's round() would round half to even).
        self._latency_substeps = int(math.floor(self.effects.action_latency_steps * self.decimation + 0.5))
        self._substep = 0
        self._warnings_seen = self._warning_count()
        self.control_steps = 0
        self.blew_up = False
        return self.read()

    def command(self, joint_targets_rad: np.ndarray) -> None:
        """Queue absolute joint position targets (profile order); clipped to the limits.

        Raises ValueError for a wrong length or non-finite values (nothing is queued).
        """
        target = np.asarray(joint_targets_rad, dtype=float)
        n = self.profile.num_joints
        if target.shape != (n,):
            raise ValueError(f"expected {n} joint targets in order {list(self.profile.joint_names)}, "
                             f"got shape {target.shape}")
        if not np.isfinite(target).all():
            raise ValueError(f"joint targets must be finite, got {target.tolist()}")
        self.command_checked(target)

    def command_checked(self, target: np.ndarray) -> None:
        """:meth:`command` for targets already known to be finite floats of the right shape (the
        env's, every step: it builds them from a clipped action)."""
        if self.effects.action_noise_std > 0:
            target = target + self.rng.normal(0.0, self.effects.action_noise_std, target.shape[0])
        clipped = clip(target, self.profile.position_lower_rad, self.profile.position_upper_rad)
        if (clipped != target).any():
            self.commands_clipped += 1
        self._pending.append((self._substep + self._latency_substeps, clipped))

    def step(self) -> bool:
        """Advance one control period. Returns False (and sets ``blew_up``) on a physics blow-up."""
        m, d = self.model, self.data
        end = self._substep + self.decimation
        while self._substep < end:
            while self._pending and self._pending[0][0] <= self._substep:
                d.ctrl[self._act] = self._pending.popleft()[1]
            next_due = self._pending[0][0] if self._pending else end
            n = max(1, min(end, next_due) - self._substep)
            mujoco.mj_step(m, d, nstep=n)
            self._substep += n
        self.control_steps += 1
        warnings = self._warning_count()
        # `not (x < limit)` is also true for NaN.
        # one reduction each: a sum is NaN/inf if any element is; max |v| via the two extremes
        qvel = d.qvel
        if (warnings != self._warnings_seen or not math.isfinite(d.qpos.sum())
                or not (qvel.max() < BLOWUP_VELOCITY_RAD_S and -qvel.min() < BLOWUP_VELOCITY_RAD_S)):
            self._warnings_seen = warnings
            self.blew_up = True
        return not self.blew_up

    def _warning_count(self) -> int:
        """How often MuJoCo flagged bad accelerations, positions or velocities (and reset)."""
        number = self.data.warning.number
        return int(number[_BADQACC]) + int(number[_BADQPOS]) + int(number[_BADQVEL])

    # --- reading ------------------------------------------------------------------------
    def read(self) -> JointReading:
        """Joint positions and velocities with the episode's observation noise."""
        q = self.data.qpos[self._qread]  # a copy (fancy indexing), or a view while the arm's
        qd = self.data.qvel[self._dread]  # joints are contiguous: copied below
        std = self.effects.obs_noise_std
        pos_std, vel_std = std["joint_pos"], std["joint_vel"]
        if pos_std > 0 and vel_std > 0:  # one draw for both (the same numbers as two in a row)
            noise = self.rng.normal(0.0, 1.0, 2 * q.shape[0])
            n = q.shape[0]
            return JointReading(q + pos_std * noise[:n], qd + vel_std * noise[n:])
        if pos_std > 0:
            q = q + self.rng.normal(0.0, pos_std, q.shape)
        if vel_std > 0:
            qd = qd + self.rng.normal(0.0, vel_std, qd.shape)
        return JointReading(q.copy() if q.base is not None else q, qd.copy() if qd.base is not None else qd)

    def true_joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qadr].copy()

    def true_joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._dadr].copy()

    def applied_command(self) -> np.ndarray:
        """The joint targets the actuators use right now (after latency)."""
        return self.data.ctrl[self._act].copy()

    def actuator_efforts(self) -> np.ndarray:
        """Actuator torques (N m) of the last physics step, profile joint order."""
        return self.data.actuator_force[self._act].copy()

    def end_effector_position(self) -> np.ndarray:
        return self.data.site_xpos[self._ee_site].copy()

    def place_arm(self, joint_pos: np.ndarray) -> JointReading:
        """Put the arm at rest at ``joint_pos`` (clipped to the limits) with its targets there, as
        :meth:`reset` does, keeping the episode's dynamics and everything else in the scene."""
        q0 = clip(np.asarray(joint_pos, dtype=float), self.profile.position_lower_rad, self.profile.position_upper_rad)
        self.data.qpos[self._qadr] = q0
        self.data.qvel[self._dadr] = 0.0
        self.data.ctrl[self._act] = q0
        self._pending.clear()
        mujoco.mj_forward(self.model, self.data)
        return self.read()

    def forward(self) -> None:
        """Recompute the derived state (positions, contacts) after a task moved something."""
        mujoco.mj_forward(self.model, self.data)

    def set_target_marker(self, position_m: np.ndarray) -> None:
        if self._mocap >= 0:
            self.data.mocap_pos[self._mocap] = position_m

    @property
    def time_s(self) -> float:
        return float(self.data.time)

    def dynamics_dict(self) -> dict[str, float]:
        return self.randomizer.as_dict(self.dynamics)
