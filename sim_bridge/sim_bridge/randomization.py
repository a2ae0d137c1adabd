"""Dynamics randomization: a validated distribution file, sampling, and applying samples.

Pure library (numpy + mujoco), no ROS. The flow per episode::

    spec = load_randomization("default")                  # YAML -> RandomizationSpec
    randomizer = DynamicsRandomizer(spec, model, profile, nominal)  # ids resolved once
    values = randomizer.sample(rng)                       # fixed-order vector
    effects = randomizer.apply(model, values)             # from the nominal model

Every sample is applied to the *nominal* values saved in :class:`NominalModel`, so
repeated resets never compound. ``values`` is one number per randomized element, in
the order of :attr:`DynamicsRandomizer.names` (e.g. ``body_mass/link3``,
``gravity/z``, ``action_latency``); that vector is also the privileged state an
asymmetric critic sees, and the space the calibration (SimOpt) searches.

Semantics of a sampled value ``v`` for a nominal value ``x0``:
``scale`` -> ``x0 * v``; ``add`` -> ``x0 + v``; ``abs`` -> ``v``.
Quantities that cannot be negative (mass, damping, friction, ...) are clipped at 0.

What can be randomized is the kind registry :data:`KINDS`: one :class:`Kind` entry per
quantity says what it targets (a :class:`Target` type: body, joint, geom, axis, ...),
how its nominal value is read and how a sampled value is applied (to the model, or to
the simulator's :class:`EpisodeEffects` such as latency and noise). A new kind is one
entry in that table, or one :func:`register_kind` call from another module.
"""
from __future__ import annotations

import copy
import functools
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import yaml

from sim_bridge.config import ConfigError, FieldReader, load_yaml_mapping, package_path, write_text_atomic
from sim_bridge.profile import RobotProfile

RANDOMIZATION_VERSION = 1
OPERATIONS = ("scale", "add", "abs")
DISTRIBUTIONS = ("uniform", "loguniform", "normal")


# --- target types: what the ``targets`` of a parameter name ------------------------------

AXES = ("x", "y", "z")
SIGNALS = ("joint_pos", "joint_vel")
OBJECT_SIGNALS = ("position", "yaw")  # what an object-pose tracker reports (m, rad)


class UnknownTarget(LookupError):
    """A target name that does not resolve; the message lists the names that would."""


@dataclass(frozen=True)
class Target:
    """A target type: what the elements of a kind are, and how a target name becomes an index.

    ``name`` is the word messages use ("body", "joint", "geom", ...). :meth:`resolve` turns
    a target name into the index the kind receives (a body id, a dof address, an axis
    index, ...); :meth:`defaults` gives the targets of a parameter that lists none.
    ``allowed`` is a closed set of names, checked already when a file is parsed (axes,
    signals); None where only the model knows the names.

    This base class is a single value per parameter: no targets, no index (latency, ...).
    """

    name: str

    single = True  # class attributes, overridden by the subclasses that name targets
    allowed = None

    def resolve(self, model: mujoco.MjModel, profile: RobotProfile, name: str) -> int:
        """The index of target ``name``; raises :class:`UnknownTarget` listing known names."""
        raise UnknownTarget(f"a '{self.name}' target type takes no targets")

    def defaults(self, model: mujoco.MjModel, profile: RobotProfile) -> tuple[tuple[str, ...], list[int]]:
        """``(names, indices)`` of the targets used when a parameter lists none."""
        return (), []


_OBJECT_COUNT = {mujoco.mjtObj.mjOBJ_BODY: "nbody", mujoco.mjtObj.mjOBJ_JOINT: "njnt",
                 mujoco.mjtObj.mjOBJ_GEOM: "ngeom", mujoco.mjtObj.mjOBJ_SITE: "nsite",
                 mujoco.mjtObj.mjOBJ_ACTUATOR: "nu"}


@dataclass(frozen=True)
class ModelObject(Target):
    """Model objects by name (``mj_name2id(model, obj, name)``), e.g. any body or geom of
    the model, robot or not. ``index`` maps the object id through a model array (e.g.
    ``"jnt_dofadr"``: a joint's dof address). Default targets: the robot profile's
    ``profile_names`` (e.g. ``"link_names"``); none when None."""

    obj: mujoco.mjtObj
    profile_names: str | None = None
    index: str | None = None

    single = False

    def resolve(self, model: mujoco.MjModel, profile: RobotProfile, name: str) -> int:
        idx = mujoco.mj_name2id(model, self.obj, name)
        if idx < 0:
            known = [mujoco.mj_id2name(model, self.obj, i) for i in range(getattr(model, _OBJECT_COUNT[self.obj]))]
            raise UnknownTarget(f"unknown {self.name} '{name}'; the model has {[k for k in known if k]}")
        return idx if self.index is None else int(getattr(model, self.index)[idx])

    def defaults(self, model: mujoco.MjModel, profile: RobotProfile) -> tuple[tuple[str, ...], list[int]]:
        names = tuple(getattr(profile, self.profile_names)) if self.profile_names else ()
        return names, [self.resolve(model, profile, n) for n in names]


@dataclass(frozen=True)
class ContactGeoms(ModelObject):
    """Geoms by name; default targets: every contact geom, unnamed ones labelled ``geom<id>``."""

    def defaults(self, model: mujoco.MjModel, profile: RobotProfile) -> tuple[tuple[str, ...], list[int]]:
        ids = [i for i in range(model.ngeom) if model.geom_contype[i] or model.geom_conaffinity[i]]
        return tuple(model.geom(i).name or f"geom{i}" for i in ids), ids


@dataclass(frozen=True)
class JointActuator(Target):
    """Robot joints by profile name; the index is the id of the actuator the profile pairs
    with the joint. Default targets: all the profile's joints."""

    single = False

    def resolve(self, model: mujoco.MjModel, profile: RobotProfile, name: str) -> int:
        if name not in profile.joint_names:
            raise UnknownTarget(f"unknown joint '{name}'; the robot profile's joints are "
                                f"{list(profile.joint_names)}")
        act = profile.actuator_names[profile.joint_names.index(name)]
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, act)

    def defaults(self, model: mujoco.MjModel, profile: RobotProfile) -> tuple[tuple[str, ...], list[int]]:
        names = tuple(profile.joint_names)
        return names, [self.resolve(model, profile, n) for n in names]


@dataclass(frozen=True)
class ClosedSet(Target):
    """A fixed list of names (``allowed``), checked when a file is parsed; the index is the
    position in the list. Default targets: all of them."""

    allowed: tuple[str, ...]

    single = False

    def resolve(self, model: mujoco.MjModel, profile: RobotProfile, name: str) -> int:
        if name not in self.allowed:
            raise UnknownTarget(f"unknown {self.name} '{name}'; allowed: {list(self.allowed)}")
        return self.allowed.index(name)

    def defaults(self, model: mujoco.MjModel, profile: RobotProfile) -> tuple[tuple[str, ...], list[int]]:
        return self.allowed, list(range(len(self.allowed)))


# The target types, and the index each gives a kind. Names are model names unless noted.
_OBJ = mujoco.mjtObj
BODY = ModelObject("body", _OBJ.mjOBJ_BODY, profile_names="link_names")  # body id; default: profile links
JOINT = ModelObject("joint", _OBJ.mjOBJ_JOINT, profile_names="joint_names")  # joint id
JOINT_DOF = ModelObject("joint", _OBJ.mjOBJ_JOINT, profile_names="joint_names",
                        index="jnt_dofadr")  # the joint's dof address (dof_* arrays)
JOINT_ACTUATOR = JointActuator("joint")  # profile joint name -> id of its actuator
ACTUATOR = ModelObject("actuator", _OBJ.mjOBJ_ACTUATOR, profile_names="actuator_names")  # actuator id
GEOM = ContactGeoms("geom", _OBJ.mjOBJ_GEOM)  # geom id; default: every contact geom
AXIS = ClosedSet("axis", AXES)  # 0, 1, 2 for x, y, z
SIGNAL = ClosedSet("signal", SIGNALS)  # position in SIGNALS
OBJECT_SIGNAL = ClosedSet("object signal", OBJECT_SIGNALS)  # position in OBJECT_SIGNALS
# Objects of a task's scene: no default targets, a file names them (e.g. the puck's geom)
OBJECT_GEOM = ModelObject("geom", _OBJ.mjOBJ_GEOM)  # geom id
OBJECT_JOINT_DOF = ModelObject("joint", _OBJ.mjOBJ_JOINT, index="jnt_dofadr")  # the joint's first dof
NO_TARGET = Target("none")  # a single value


# --- kinds: the quantities a distribution file can randomize ----------------------------

@dataclass(frozen=True)
class EpisodeEffects:
    """Sampled settings that live outside the MuJoCo model (read by the simulator).

    ``action_latency_steps``: delay from command to actuator, in control steps;
    ``obs_noise_std``: std of Gaussian observation noise per signal (rad, rad/s);
    ``action_noise_std``: std of Gaussian noise on position commands, rad.

    The object-pose tracker of tasks with an object (Push): ``object_noise_std`` per
    :data:`OBJECT_SIGNALS` (position in m, yaw in rad), ``object_latency_steps`` (control
    steps from the true pose to the observation), ``object_dropout_prob`` (probability per
    control step that no new pose arrives: the observation holds the last one).
    """

    action_latency_steps: float = 0.0
    obs_noise_std: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in SIGNALS})
    action_noise_std: float = 0.0
    object_noise_std: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in OBJECT_SIGNALS})
    object_latency_steps: float = 0.0
    object_dropout_prob: float = 0.0


@dataclass
class ApplyContext:
    """What :meth:`Kind.apply` writes into during one :meth:`DynamicsRandomizer.apply`.

    ``model`` has just been restored to ``nominal``. ``effects`` holds the fields of
    :class:`EpisodeEffects` (fresh values each apply) and becomes the returned effects.
    """

    model: mujoco.MjModel
    nominal: NominalModel
    effects: dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """One randomizable quantity: what it targets, how its nominal value is read, and how a
    sampled value is applied. Subclasses implement :meth:`apply` (and :meth:`nominal`,
    :attr:`writes` where they read or write model fields).

    ``doc`` names the quantity and its unit. ``operations`` are those a file may use.
    ``nonnegative``: results are clipped at 0, and an ``abs`` range must have low >= 0.
    ``default_targets``: target names used when a parameter lists none; None: the target
    type's defaults (e.g. the profile's links). An object kind would give e.g. ``("object",)``.
    ``plausible``: the physically plausible range of a sampled value per operation, as
    ``((operation, low, high), ...)`` (:func:`plausible`): a file whose distribution can
    sample outside it is refused at load, naming the parameter, the bound and the value.
    ``scale`` defaults to :data:`SCALE_RANGE`; an operation without a range is unchecked.
    """

    target: Target
    doc: str
    operations: tuple[str, ...] = OPERATIONS
    nonnegative: bool = True
    default_targets: tuple[str, ...] | None = None
    plausible: tuple[tuple[str, float, float], ...] = ()

    def __post_init__(self):
        unknown = [op for op in self.operations if op not in OPERATIONS]
        if not self.operations or unknown:
            raise ValueError(f"operations must be a non-empty subset of {list(OPERATIONS)}, "
                             f"got {list(self.operations)}")
        if self.target.single and self.default_targets is not None:
            raise ValueError(f"a '{self.target.name}' target type takes no default_targets")
        for op, low, high in self.plausible:
            if op not in OPERATIONS or not low < high:
                raise ValueError(f"plausible range ({op!r}, {low}, {high}): need an operation of "
                                 f"{list(OPERATIONS)} and low < high")

    def plausible_range(self, operation: str) -> tuple[float, float]:
        """The plausible ``(low, high)`` of a sampled value under ``operation``, in the unit
        of the operation (a factor for scale, the kind's unit for add/abs); +-inf if none."""
        for op, low, high in self.plausible:
            if op == operation:
                return low, high
        return SCALE_RANGE if operation == "scale" else (-math.inf, math.inf)

    @property
    def writes(self) -> tuple[str, ...]:
        """Model field paths apply() writes (``"dof_damping"``, ``"opt.gravity"``).
        :class:`NominalModel` saves them, and restores them before every apply."""
        return ()

    def nominal(self, nominal: NominalModel, ids: np.ndarray) -> np.ndarray:
        """The unrandomized value of each target, in the kind's unit, read from the
        nominal model (the fields as the freshly built MuJoCo model had them). Default 0."""
        return np.zeros(len(ids))

    def apply(self, ctx: ApplyContext, ids: np.ndarray, operation: str, value: float) -> None:
        """Apply the sampled ``value`` with ``operation`` to the targets ``ids`` (indices
        from the target type's resolve; empty for a single-value kind)."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class ModelField(Kind):
    """A number stored in one model array: ``model.<path>[id]``, or ``[id, column]`` for a
    2-D array. The quantity is ``sign`` times the stored number (e.g. -1 for a D gain
    stored as a negative bias)."""

    path: str
    column: int | None = None
    sign: float = 1.0

    @property
    def writes(self) -> tuple[str, ...]:
        return (self.path,)

    def nominal(self, nominal: NominalModel, ids: np.ndarray) -> np.ndarray:
        saved = nominal.arrays[self.path]
        return self.sign * (saved[ids] if self.column is None else saved[ids, self.column])

    def apply(self, ctx: ApplyContext, ids: np.ndarray, operation: str, value: float) -> None:
        new = self.sign * apply_operation(operation, self.nominal(ctx.nominal, ids), value, nonneg=self.nonnegative)
        array = model_field(ctx.model, self.path)
        if self.column is None:
            array[ids] = new
        else:
            array[ids, self.column] = new


@dataclass(frozen=True)
class BodyMass(Kind):
    """Body mass in kg (``body_mass``); the inertia tensor (``body_inertia``) is rescaled by
    the same ratio, as for a body of unchanged shape and scaled density."""

    @property
    def writes(self) -> tuple[str, ...]:
        return ("body_mass", "body_inertia")

    def nominal(self, nominal: NominalModel, ids: np.ndarray) -> np.ndarray:
        return nominal.arrays["body_mass"][ids]

    def apply(self, ctx: ApplyContext, ids: np.ndarray, operation: str, value: float) -> None:
        mass0 = ctx.nominal.arrays["body_mass"][ids]
        mass = apply_operation(operation, mass0, value, nonneg=self.nonnegative)
        ctx.model.body_mass[ids] = mass
        ratio = np.divide(mass, mass0, out=np.ones_like(mass), where=mass0 > 0)
        # multiplies the current inertia (restored to nominal before every apply), so it
        # composes with ObjectSize's rescaling in either order
        ctx.model.body_inertia[ids] = ctx.model.body_inertia[ids] * ratio[:, None]


@dataclass(frozen=True)
class ObjectSize(Kind):
    """Size factor of an object's geom (``geom_size``, with its bounding radius and box so
    collision detection sees the new size). The body's inertia is rescaled by the factor
    squared (same mass, same shape: I ~ m l^2), composing with a ``body_mass`` sample of the
    same body. A sampled factor s makes every dimension s times the nominal; the geom
    should be the only geom of its body and centred on it (a puck, a box)."""

    @property
    def writes(self) -> tuple[str, ...]:
        return ("geom_size", "geom_rbound", "geom_aabb", "body_inertia")

    def nominal(self, nominal: NominalModel, ids: np.ndarray) -> np.ndarray:
        return np.ones(len(ids))  # a factor: the nominal size is "1 x"

    def apply(self, ctx: ApplyContext, ids: np.ndarray, operation: str, value: float) -> None:
        s = float(value)
        m, n = ctx.model, ctx.nominal.arrays
        m.geom_size[ids] = n["geom_size"][ids] * s
        m.geom_rbound[ids] = n["geom_rbound"][ids] * s
        m.geom_aabb[ids] = n["geom_aabb"][ids] * s
        bodies = m.geom_bodyid[ids]
        m.body_inertia[bodies] = m.body_inertia[bodies] * (s * s)


@dataclass(frozen=True)
class ObjectDamping(Kind):
    """Linear damping of a free object's translation, N s/m (a rolling / sliding resistance
    proportional to speed): ``dof_damping`` of the first three dofs of a free joint (one dof
    for a hinge or slide joint)."""

    @property
    def writes(self) -> tuple[str, ...]:
        return ("dof_damping",)

    def nominal(self, nominal: NominalModel, ids: np.ndarray) -> np.ndarray:
        return nominal.arrays["dof_damping"][ids]

    def apply(self, ctx: ApplyContext, ids: np.ndarray, operation: str, value: float) -> None:
        for adr in ids:
            width = 3 if ctx.model.dof_jntid[adr] >= 0 and int(
                ctx.model.jnt_type[ctx.model.dof_jntid[adr]]) == int(mujoco.mjtJoint.mjJNT_FREE) else 1
            new = apply_operation(operation, ctx.nominal.arrays["dof_damping"][adr:adr + width], value,
                                  nonneg=self.nonnegative)
            ctx.model.dof_damping[adr:adr + width] = new


@dataclass(frozen=True)
class PositionGain(Kind):
    """Stiffness kp of a MuJoCo position actuator, N m/rad: it is stored twice, as the gain
    ``actuator_gainprm[:, 0] = kp`` and as the bias ``actuator_biasprm[:, 1] = -kp``."""

    @property
    def writes(self) -> tuple[str, ...]:
        return ("actuator_gainprm", "actuator_biasprm")

    def nominal(self, nominal: NominalModel, ids: np.ndarray) -> np.ndarray:
        return nominal.arrays["actuator_gainprm"][ids, 0]

    def apply(self, ctx: ApplyContext, ids: np.ndarray, operation: str, value: float) -> None:
        kp = apply_operation(operation, self.nominal(ctx.nominal, ids), value, nonneg=self.nonnegative)
        ctx.model.actuator_gainprm[ids, 0] = kp
        ctx.model.actuator_biasprm[ids, 1] = -kp


@dataclass(frozen=True)
class JointLimitOffset(Kind):
    """Shift of both position limits of a joint (``jnt_range``), rad; nominal 0. The sampled
    value is the shift itself (operation ``add`` on 0)."""

    @property
    def writes(self) -> tuple[str, ...]:
        return ("jnt_range",)

    def apply(self, ctx: ApplyContext, ids: np.ndarray, operation: str, value: float) -> None:
        ctx.model.jnt_range[ids] = ctx.nominal.arrays["jnt_range"][ids] + value


@dataclass(frozen=True, kw_only=True)
class EpisodeSetting(Kind):
    """A setting outside the MuJoCo model: the field ``effect`` of :class:`EpisodeEffects`,
    one number, or for SIGNAL targets one number per signal. Nominal 0 (off); the sampled
    value is used as is."""

    effect: str

    def __post_init__(self):
        super().__post_init__()
        if self.effect not in EpisodeEffects.__dataclass_fields__:
            raise ValueError(f"'{self.effect}' is not a field of EpisodeEffects")
        if not self.target.single and self.target.allowed is None:
            raise ValueError("an EpisodeSetting targets a single value or a closed set of names (SIGNAL)")

    def apply(self, ctx: ApplyContext, ids: np.ndarray, operation: str, value: float) -> None:
        if self.target.single:
            ctx.effects[self.effect] = float(value)
        else:
            for i in ids:
                ctx.effects[self.effect][self.target.allowed[i]] = float(value)


# Physical plausibility (Kind.plausible): the widest sampled values a robotics engineer would
# accept for an arm of up to ~20 kg payload, generous enough for any real randomization study
# (OpenAI's Dactyl, Tan et al. 2018 and Peng et al. 2018 stay inside them by an order of
# magnitude) and tight enough that a typo (kp x 1e300) is refused at load instead of making
# every physics step blow up. Scale factors: 1/100 .. 100 times the nominal value.
SCALE_RANGE = (0.01, 100.0)
GAIN_SCALE_RANGE = (0.1, 10.0)  # kp, kd: beyond 10x the profile's gains the PD loop is unstable at 500 Hz


def plausible(*, scale: tuple[float, float] | None = SCALE_RANGE, add: tuple[float, float] | None = None,
              abs: tuple[float, float] | None = None) -> tuple[tuple[str, float, float], ...]:  # noqa: A002
    """The ``plausible`` field of a :class:`Kind`: ``(low, high)`` per operation."""
    return tuple((op, *rng) for op, rng in (("scale", scale), ("add", add), ("abs", abs)) if rng is not None)


# THE KIND TABLE: every quantity a distribution file can randomize, by kind name (the
# parameter name, or its ``kind:``). One entry per kind; other modules use register_kind().
KINDS: dict[str, Kind] = {
    "body_mass": BodyMass(BODY, "link mass in kg; inertia is rescaled by the same ratio",
                          plausible=plausible(add=(-50.0, 50.0), abs=(0.0, 100.0))),
    "joint_damping": ModelField(JOINT_DOF, "passive joint damping in N m s/rad", path="dof_damping",
                                plausible=plausible(add=(-500.0, 500.0), abs=(0.0, 500.0))),
    "joint_frictionloss": ModelField(JOINT_DOF, "dry (Coulomb) joint friction, stiction, in N m",
                                     path="dof_frictionloss",
                                     plausible=plausible(add=(-200.0, 200.0), abs=(0.0, 200.0))),
    "joint_armature": ModelField(JOINT_DOF, "rotor inertia added to the joint, in kg m^2", path="dof_armature",
                                 plausible=plausible(add=(-10.0, 10.0), abs=(0.0, 10.0))),
    "geom_friction": ModelField(GEOM, "sliding friction coefficient of contact geoms",
                                path="geom_friction", column=0,
                                plausible=plausible(add=(-5.0, 5.0), abs=(0.0, 5.0))),
    "actuator_kp": PositionGain(JOINT_ACTUATOR, "position-actuator stiffness (P gain) in N m/rad",
                                plausible=plausible(scale=GAIN_SCALE_RANGE, add=(-1e4, 1e4), abs=(0.0, 1e4))),
    "actuator_kd": ModelField(JOINT_ACTUATOR, "position-actuator damping (D gain) in N m s/rad",
                              path="actuator_biasprm", column=2, sign=-1.0,
                              plausible=plausible(scale=GAIN_SCALE_RANGE, add=(-1e3, 1e3), abs=(0.0, 1e3))),
    "joint_limit_offset": JointLimitOffset(JOINT, "shift of both joint position limits, rad",
                                           operations=("add",), nonnegative=False,
                                           plausible=plausible(add=(-0.5, 0.5))),
    "gravity": ModelField(AXIS, "gravity vector component in m/s^2", path="opt.gravity",
                          operations=("add", "abs"), nonnegative=False,
                          plausible=plausible(add=(-30.0, 30.0), abs=(-30.0, 30.0))),
    "action_latency": EpisodeSetting(NO_TARGET, "delay from command to actuator, in control steps "
                                                "(fractional values delay by physics sub-steps)",
                                     operations=("abs",), effect="action_latency_steps",
                                     plausible=plausible(abs=(0.0, 20.0))),
    "obs_noise_std": EpisodeSetting(SIGNAL, "std of Gaussian noise added to an observed signal "
                                            "(joint_pos in rad, joint_vel in rad/s)",
                                    operations=("abs",), effect="obs_noise_std",
                                    plausible=plausible(abs=(0.0, 1.0))),
    "action_noise_std": EpisodeSetting(NO_TARGET, "std of Gaussian noise added to joint position commands, rad",
                                       operations=("abs",), effect="action_noise_std",
                                       plausible=plausible(abs=(0.0, 0.5))),
    # --- objects (Push): name the object's body, geom or joint in ``targets`` ---
    "object_size": ObjectSize(OBJECT_GEOM, "size factor of an object geom (inertia follows: same mass, I ~ s^2)",
                              operations=("scale",), plausible=plausible(scale=(0.5, 2.0))),
    "object_damping": ObjectDamping(OBJECT_JOINT_DOF, "linear damping of a free object's translation, N s/m",
                                    plausible=plausible(add=(-10.0, 10.0), abs=(0.0, 10.0))),
    "table_height": ModelField(GEOM, "height offset of the table top (a geom's z position), m",
                               path="geom_pos", column=2, operations=("add",), nonnegative=False,
                               default_targets=("table",), plausible=plausible(add=(-0.1, 0.1))),
    "object_noise_std": EpisodeSetting(OBJECT_SIGNAL, "std of Gaussian noise of the object-pose tracker "
                                                      "(position in m, yaw in rad)",
                                       operations=("abs",), effect="object_noise_std",
                                       plausible=plausible(abs=(0.0, 0.1))),
    "object_latency": EpisodeSetting(NO_TARGET, "delay of the object-pose tracker, in control steps "
                                                "(rounded to whole steps)",
                                     operations=("abs",), effect="object_latency_steps",
                                     plausible=plausible(abs=(0.0, 20.0))),
    "object_dropout": EpisodeSetting(NO_TARGET, "probability per control step that the object tracker "
                                                "delivers no pose (the observation holds the last one)",
                                     operations=("abs",), effect="object_dropout_prob",
                                     plausible=plausible(abs=(0.0, 0.9))),
}
BUILTIN_KINDS: tuple[str, ...] = tuple(KINDS)
#: the built-in kinds that act on a task's objects and table (the rest act on the arm)
OBJECT_KINDS: tuple[str, ...] = ("object_size", "object_damping", "table_height", "object_noise_std",
                                 "object_latency", "object_dropout")


def register_kind(name: str, kind: Kind, *, replace: bool = False) -> Kind:
    """Make ``kind`` available to distribution files as ``name`` (e.g. ``object_friction``).

    Call it when the module defining the kind is imported, before files that use it are
    parsed. A :class:`NominalModel` built before the call saves the kind's fields when the
    first randomizer using the kind is built on it. ``replace=True`` re-registers an added
    kind; built-in kinds cannot be replaced. Returns ``kind``.
    """
    if not isinstance(kind, Kind):
        raise TypeError(f"expected a Kind, got {type(kind).__name__}")
    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(f"a kind name must be an identifier (letters, digits, _), got {name!r}")
    if name in BUILTIN_KINDS:
        raise ValueError(f"'{name}' is a built-in kind and cannot be replaced")
    if name in KINDS and not replace:
        raise ValueError(f"kind '{name}' is already registered; pass replace=True to replace it")
    KINDS[name] = kind
    return kind


def unregister_kind(name: str) -> Kind:
    """Remove a kind added by :func:`register_kind` (built-in kinds stay). Returns it.
    Randomizers already built keep working; new files can no longer use the name."""
    if name in BUILTIN_KINDS:
        raise ValueError(f"'{name}' is a built-in kind and cannot be removed")
    if name not in KINDS:
        raise KeyError(f"no registered kind '{name}'")
    return KINDS.pop(name)


def _fields_written(kinds: Iterable[Kind]) -> tuple[str, ...]:
    """The model fields the given kinds write, each once, in order of first use."""
    return tuple(dict.fromkeys(path for kind in kinds for path in kind.writes))


def model_field(model: mujoco.MjModel, path: str) -> np.ndarray:
    """The array ``model.<path>``, a writable view: e.g. ``dof_damping`` or ``opt.gravity``."""
    return functools.reduce(getattr, path.split("."), model)


@dataclass(frozen=True)
class Distribution:
    """uniform(low, high) | loguniform(low, high) | normal(mean, std) truncated to [low, high]."""

    type: str
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None

    def bounds(self) -> tuple[float, float]:
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        return low, high

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.type == "uniform":
            return rng.uniform(self.low, self.high, size)
        if self.type == "loguniform":
            return np.exp(rng.uniform(math.log(self.low), math.log(self.high), size))
        # normal, truncated by rejection (bounds are checked to hold >= 1% of the mass)
        low, high = self.bounds()
        out = self.mean + self.std * rng.standard_normal(size)
        bad = (out < low) | (out > high)
        for _ in range(1000):
            if not bad.any():
                break
            out[bad] = self.mean + self.std * rng.standard_normal(int(bad.sum()))
            bad = (out < low) | (out > high)
        return np.clip(out, low, high)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"distribution": self.type}
        for key in ("mean", "std", "low", "high"):
            value = getattr(self, key)
            if value is not None:
                out[key] = float(value)
        return out


@dataclass(frozen=True)
class ParameterSpec:
    """One entry of the ``parameters`` mapping of a distribution file."""

    name: str
    kind: str
    operation: str
    distribution: Distribution
    targets: tuple[str, ...] | None = None  # None: the kind's default targets
    shared: bool = False  # one sample for all targets instead of one each

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.kind != self.name:
            out["kind"] = self.kind
        if self.targets is not None:
            out["targets"] = list(self.targets)
        if self.shared:
            out["shared"] = True
        out["operation"] = self.operation
        out.update(self.distribution.to_dict())
        return out


@dataclass(frozen=True)
class JointGaussian:
    """A Gaussian with full covariance over named elements; overrides their own distributions."""

    names: tuple[str, ...]
    mean: np.ndarray
    cov: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "mean": [float(v) for v in self.mean],
                "cov": [[float(v) for v in row] for row in self.cov]}


@dataclass(frozen=True, eq=False)
class RandomizationSpec:
    """A validated distribution file (model-independent part). Equal = same file content."""

    parameters: tuple[ParameterSpec, ...] = ()
    joint_gaussian: JointGaussian | None = None
    description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    source: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"randomization_version": RANDOMIZATION_VERSION}
        if self.description:
            out["description"] = self.description
        out["parameters"] = {p.name: p.to_dict() for p in self.parameters}
        if self.joint_gaussian is not None:
            out["joint_gaussian"] = self.joint_gaussian.to_dict()
        if self.provenance:
            out["provenance"] = copy.deepcopy(self.provenance)
        return out

    def __eq__(self, other) -> bool:
        return isinstance(other, RandomizationSpec) and self.to_dict() == other.to_dict()

    __hash__ = None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (readers never see a half-written file)."""
        write_text_atomic(path, self.to_yaml())


def shipped_randomization_path(name: str) -> Path:
    return package_path("sim_bridge", f"config/randomization/{name}.yaml")


def is_randomization_file_path(path_or_name: str | os.PathLike) -> bool:
    """True for a file path, False for a shipped name (``default``, ``none``)."""
    text = os.fspath(path_or_name)
    return os.sep in text or text.endswith((".yaml", ".yml"))


def randomization_path(path_or_name: str | os.PathLike) -> Path:
    """The file of a distribution given by path, or by shipped name (``default``, ``none``)."""
    text = os.fspath(path_or_name)
    if not text:
        raise ConfigError("empty name; give a shipped name (default, none) or a YAML path", kind="empty name")
    if is_randomization_file_path(text):
        return Path(text)
    path = shipped_randomization_path(text)
    if not path.is_file():
        raise ConfigError(f"no shipped randomization named '{text}' (looked for {path})",
                          kind=f"no shipped randomization named '{text}'")
    return path


def load_randomization(path_or_name: str | os.PathLike) -> RandomizationSpec:
    """Load a distribution file by path, or a shipped one by name (``default``, ``none``),
    with the stack's safe reader (:func:`sim_bridge.config.load_yaml_file`)."""
    path = randomization_path(path_or_name)
    return parse_randomization(load_yaml_mapping(path), source=path)


def parse_randomization(data: dict[str, Any], *, source: str | os.PathLike | None = None) -> RandomizationSpec:
    r = FieldReader(data, source=source)
    version = r.integer("randomization_version")
    if version != RANDOMIZATION_VERSION:
        raise r.error("randomization_version",
                      f"unsupported version {version}; this stack reads {RANDOMIZATION_VERSION}")
    description = r.str("description", "")
    params_raw = r.raw("parameters", {})
    if params_raw is None:
        params_raw = {}
    if not isinstance(params_raw, dict):
        raise r.error("parameters", "expected a mapping from parameter name to its settings")
    params = tuple(_parse_parameter(name, body, source) for name, body in params_raw.items())
    gaussian = None
    if r.has("joint_gaussian") and r.raw("joint_gaussian") is not None:
        gaussian = _parse_joint_gaussian(r.child("joint_gaussian"))
    provenance = r.raw("provenance", {}) or {}
    if not isinstance(provenance, dict):
        raise r.error("provenance", "expected a mapping")
    r.finish()
    spec = RandomizationSpec(params, gaussian, description, provenance, Path(source) if source else None)
    if gaussian is not None:
        _check_gaussian_names(spec, source)
    return spec


def _parse_parameter(name: Any, body: Any, source) -> ParameterSpec:
    if not isinstance(name, str):
        raise ConfigError(f"parameter names must be strings, got {name!r}", source=source, field="parameters")
    r = FieldReader(body if body is not None else {}, source=source, prefix=f"parameters.{name}")
    kind = r.str("kind", name)
    if kind not in KINDS:
        raise r.error("kind" if r.has("kind") else None,
                      f"unknown parameter kind '{kind}'; known kinds: {sorted(KINDS)}")
    spec_kind = KINDS[kind]
    operation = r.str("operation")
    if operation not in spec_kind.operations:
        raise r.error("operation", f"'{operation}' not allowed for {kind}; use one of {list(spec_kind.operations)}")
    targets = r.raw("targets", None)
    if targets is not None:
        if spec_kind.target.single:
            raise r.error("targets", f"{kind} is a single value and takes no targets")
        targets = tuple(r.strings("targets"))
        if not targets:
            raise r.error("targets", "empty list; omit the field to use the default targets")
        allowed = spec_kind.target.allowed
        if allowed is not None:
            unknown = [t for t in targets if t not in allowed]
            if unknown:
                raise r.error("targets", f"unknown {spec_kind.target.name}(s) {unknown}; allowed: {list(allowed)}")
    shared = r.raw("shared", False)
    if not isinstance(shared, bool):
        raise r.error("shared", f"expected true or false, got {shared!r}")
    dist = _parse_distribution(r)
    low, high = dist.bounds()
    if operation == "scale" and low <= 0:
        raise r.error("low", "a scale factor must stay > 0: give low > 0")
    if spec_kind.nonnegative and operation == "abs" and low < 0:
        raise r.error("low", f"{kind} cannot be negative: give low >= 0")
    _check_plausible(r, spec_kind, kind, operation, dist)
    r.finish()
    return ParameterSpec(name, kind, operation, dist, targets, shared)


# An unbounded normal's support is taken as mean +- this many std for the plausibility check
# (the chance of a sample beyond it is 2e-9).
PLAUSIBLE_NORMAL_STD = 6.0


def _check_plausible(r: FieldReader, spec_kind: Kind, kind: str, operation: str, dist: Distribution) -> None:
    """Refuse a distribution that can sample outside the kind's plausible range (the
    message names the parameter, the field, the bound and the value)."""
    lo, hi = spec_kind.plausible_range(operation)
    low, high = dist.bounds()
    if dist.type == "normal":
        spread = PLAUSIBLE_NORMAL_STD * dist.std
        low = max(low, dist.mean - spread)
        high = min(high, dist.mean + spread)
    unit = "factor" if operation == "scale" else "value"
    for field_name, value, bad in (("low", low, low < lo), ("high", high, high > hi)):
        if bad:
            key = field_name if r.has(field_name) else ("std" if dist.type == "normal" else field_name)
            what = value if r.has(field_name) else f"{value:.6g} (mean +- {PLAUSIBLE_NORMAL_STD:g} std)"
            raise ConfigError(f"{kind} {operation} {unit} {what} is outside the plausible range "
                              f"[{lo:g}, {hi:g}]", source=r.source, field=f"{r.prefix}.{key}",
                              kind=f"outside the plausible range [{lo:g}, {hi:g}] for {kind} {operation}")


def _parse_distribution(r: FieldReader) -> Distribution:
    dtype = r.str("distribution")
    if dtype not in DISTRIBUTIONS:
        raise r.error("distribution", f"unknown distribution '{dtype}'; use one of {list(DISTRIBUTIONS)}")
    if dtype in ("uniform", "loguniform"):
        low, high = r.number("low"), r.number("high")
        if not low < high:
            raise r.error("high", f"bad bounds: need low < high, got low={low}, high={high}")
        if dtype == "loguniform" and low <= 0:
            raise r.error("low", f"loguniform needs low > 0, got {low}")
        return Distribution(dtype, low=low, high=high)
    mean, std = r.number("mean"), r.number("std")
    if std < 0:
        raise r.error("std", f"must be >= 0, got {std}")
    low = r.number("low") if r.has("low") else None
    high = r.number("high") if r.has("high") else None
    if low is not None and high is not None and not low < high:
        raise r.error("high", f"bad bounds: need low < high, got low={low}, high={high}")
    # Rejection sampling must terminate: the bounds must hold some probability mass.
    lo = -math.inf if low is None else low
    hi = math.inf if high is None else high
    if std == 0:
        if not lo <= mean <= hi:
            raise r.error("mean", f"mean {mean} outside the bounds [{lo}, {hi}] with std 0")
    else:
        mass = 0.5 * (math.erf((hi - mean) / (std * math.sqrt(2))) - math.erf((lo - mean) / (std * math.sqrt(2))))
        if mass < 0.01:
            raise r.error("low", f"bounds [{lo}, {hi}] hold only {mass:.2%} of normal({mean}, {std})")
    return Distribution("normal", low=low, high=high, mean=mean, std=std)


def _parse_joint_gaussian(r: FieldReader) -> JointGaussian:
    names = tuple(r.strings("names"))
    n = len(names)
    if n == 0:
        raise r.error("names", "at least one element name is required")
    mean = np.array(r.numbers("mean", n))
    cov_raw = r.raw("cov")
    if not isinstance(cov_raw, (list, tuple)) or len(cov_raw) != n:
        raise r.error("cov", f"expected a {n}x{n} matrix (list of {n} rows)")
    rows = []
    for i, row in enumerate(cov_raw):
        if not isinstance(row, (list, tuple)) or len(row) != n:
            raise r.error("cov", f"row {i} must have {n} numbers")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row):
            raise r.error("cov", f"row {i} holds a non-finite or non-numeric value")
        rows.append([float(v) for v in row])
    cov = np.array(rows)
    if not np.allclose(cov, cov.T, rtol=1e-8, atol=1e-12):
        raise r.error("cov", "covariance must be symmetric")
    eig = np.linalg.eigvalsh(cov)
    tol = 1e-10 * max(1.0, float(np.abs(eig).max()))
    if eig.min() < -tol:
        raise r.error("cov", f"covariance is not positive semi-definite (smallest eigenvalue {eig.min():.3g})")
    r.finish()
    mean.setflags(write=False)
    cov.setflags(write=False)
    return JointGaussian(names, mean, cov)


def _check_gaussian_names(spec: RandomizationSpec, source) -> None:
    """Gaussian names must be elements of parameters; full checking needs the model."""
    prefixes = {p.name for p in spec.parameters}
    for name in spec.joint_gaussian.names:
        if name.split("/", 1)[0] not in prefixes:
            raise ConfigError(f"'{name}' is not an element of any parameter {sorted(prefixes)}",
                              source=source, field="joint_gaussian.names")


class NominalModel:
    """The model fields randomization writes, saved from the freshly built model.

    ``arrays`` maps a field path (``"dof_damping"``, ``"opt.gravity"``) to its saved copy.
    A new NominalModel saves the fields every registered kind writes (:attr:`FIELDS` for
    the built-in kinds); :meth:`ensure` adds the fields of kinds registered later.
    """

    # The fields the built-in kinds write.
    FIELDS: tuple[str, ...] = _fields_written(KINDS[name] for name in BUILTIN_KINDS)

    def __init__(self, model: mujoco.MjModel):
        self.arrays: dict[str, np.ndarray] = {}
        self.ensure(model, _fields_written(KINDS.values()))

    def ensure(self, model: mujoco.MjModel, paths: Iterable[str]) -> None:
        """Also save the fields ``paths`` not saved yet, from ``model``. Safe on a randomized
        model: a field not saved here was never written by a randomizer using this object,
        since each randomizer ensures its kinds' fields before its first apply."""
        for path in paths:
            if path not in self.arrays:
                self.arrays[path] = np.array(model_field(model, path), copy=True)

    def restore(self, model: mujoco.MjModel) -> None:
        for path, arr in self.arrays.items():
            model_field(model, path)[...] = arr


@dataclass(frozen=True)
class _Element:
    name: str
    param: ParameterSpec
    kind: Kind
    ids: np.ndarray  # target indices from the kind's target type, or empty for a single value
    nominal: float  # the value that means "unchanged" for this element's operation


class DynamicsRandomizer:
    """Resolves a spec against a model (by name, once) and samples / applies it."""

    def __init__(self, spec: RandomizationSpec, model: mujoco.MjModel, profile: RobotProfile,
                 nominal: NominalModel | None = None):
        self.spec = spec
        self.nominal = nominal or NominalModel(model)
        self._elements: list[_Element] = []
        for param in spec.parameters:
            self._elements.extend(self._resolve(param, model, profile))
        self.names: tuple[str, ...] = tuple(e.name for e in self._elements)
        self._check_no_overlap()
        index = {name: i for i, name in enumerate(self.names)}
        self._gauss_idx = None
        if spec.joint_gaussian is not None:
            missing = [n for n in spec.joint_gaussian.names if n not in index]
            if missing:
                raise ConfigError(f"element(s) {missing} not found; elements of this file are {list(self.names)}",
                                  source=spec.source, field="joint_gaussian.names")
            self._gauss_idx = np.array([index[n] for n in spec.joint_gaussian.names])
            self._gauss_factor = gaussian_factor(spec.joint_gaussian.cov)
            # truncated to each element's bounds and its kind's plausible range
            bounds = np.array([_plausible_bounds(self._elements[i]) for i in self._gauss_idx])
            self._gauss_low, self._gauss_high = bounds[:, 0], bounds[:, 1]
            # Rejection sampling needs the bounds to hold some of the Gaussian's mass.
            probe = self._draw_gaussian(np.random.default_rng(0), 4000)
            inside = np.all((probe >= self._gauss_low) & (probe <= self._gauss_high), axis=1).mean()
            if inside < 0.01:
                raise ConfigError(f"the elements' bounds hold only {inside:.2%} of the Gaussian's mass; "
                                  "move the mean inside the bounds or widen them",
                                  source=spec.source, field="joint_gaussian.mean")
        self.nominal_values = np.array([e.nominal for e in self._elements])
        bounds = np.array([e.param.distribution.bounds() for e in self._elements]).reshape(-1, 2)
        self.low, self.high = bounds[:, 0], bounds[:, 1]

    def _check_no_overlap(self) -> None:
        """Two parameters of one kind must not randomize the same model element."""
        owner: dict[tuple[str, int], str] = {}
        for e in self._elements:
            for i in e.ids:
                key = (e.param.kind, int(i))
                if key in owner and owner[key] != e.param.name:
                    raise ConfigError(f"'{e.param.name}' and '{owner[key]}' both randomize the same "
                                      f"{e.kind.target.name} ({e.name})", source=self.spec.source,
                                      field=f"parameters.{e.param.name}.targets")
                owner[key] = e.param.name

    # --- resolution -------------------------------------------------------------------
    def _resolve(self, param: ParameterSpec, model: mujoco.MjModel, profile: RobotProfile) -> list[_Element]:
        """The elements of one parameter: one per target, or one for all when shared."""
        kind = KINDS[param.kind]
        field_name = f"parameters.{param.name}.targets"
        if kind.target.single:
            return [_Element(param.name, param, kind, np.zeros(0, int), _unchanged(param.operation, 0.0))]
        try:
            if param.targets or kind.default_targets:
                targets = param.targets or kind.default_targets
                ids = [kind.target.resolve(model, profile, t) for t in targets]
            else:
                targets, ids = kind.target.defaults(model, profile)
        except UnknownTarget as err:
            raise ConfigError(str(err), source=self.spec.source, field=field_name) from None
        ids = np.array(ids, dtype=int)
        if len(ids) == 0:
            raise ConfigError(f"no default targets for {param.kind} on this robot; list them in 'targets'",
                              source=self.spec.source, field=field_name)
        self.nominal.ensure(model, kind.writes)
        nominal_values = [float(x) for x in kind.nominal(self.nominal, ids)]
        if param.shared:
            if param.operation == "abs" and np.ptp(nominal_values) > 0:
                raise ConfigError(
                    f"shared 'abs' would give all targets one value, but their nominal values differ "
                    f"({dict(zip(targets, np.round(nominal_values, 6).tolist()))}); use 'scale' or 'add', "
                    "or drop 'shared'", source=self.spec.source, field=f"parameters.{param.name}.shared")
            value = _unchanged(param.operation, float(nominal_values[0]))
            return [_Element(param.name, param, kind, ids, value)]
        return [_Element(f"{param.name}/{t}", param, kind, np.array([i]), _unchanged(param.operation, v))
                for t, i, v in zip(targets, ids, nominal_values)]

    # --- sampling ---------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.names)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One fixed-order vector of sampled values (see the module docstring)."""
        return self.sample_batch(rng, 1)[0]

    def sample_batch(self, rng: np.random.Generator, count: int) -> np.ndarray:
        out = np.empty((count, self.size))
        for j, element in enumerate(self._elements):
            out[:, j] = element.param.distribution.sample(rng, count)
        if self._gauss_idx is not None:
            out[:, self._gauss_idx] = self._sample_gaussian(rng, count)
        return out

    def _sample_gaussian(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Joint Gaussian, truncated to the elements' bounds (see sample_truncated_gaussian)."""
        return sample_truncated_gaussian(rng, self.spec.joint_gaussian.mean, self._gauss_factor,
                                         self._gauss_low, self._gauss_high, count)

    def _draw_gaussian(self, rng: np.random.Generator, count: int) -> np.ndarray:
        g = self.spec.joint_gaussian
        return g.mean + rng.standard_normal((count, len(g.names))) @ self._gauss_factor.T

    def as_dict(self, values: np.ndarray) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.names, values)}

    # --- applying ---------------------------------------------------------------------
    def apply(self, model: mujoco.MjModel, values: np.ndarray) -> EpisodeEffects:
        """Restore the nominal model, then apply ``values``. Never compounds."""
        values = np.asarray(values, dtype=float)
        if values.shape != (self.size,):
            raise ValueError(f"expected {self.size} values ({list(self.names)}), got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError("dynamics values must be finite")
        self.nominal.restore(model)
        ctx = ApplyContext(model, self.nominal, effects=dict(vars(EpisodeEffects())))
        for element, v in zip(self._elements, values):
            element.kind.apply(ctx, element.ids, element.param.operation, v)
        return EpisodeEffects(**ctx.effects)


def _plausible_bounds(element) -> tuple[float, float]:
    """An element's distribution bounds intersected with its kind's plausible range."""
    low, high = element.param.distribution.bounds()
    p_low, p_high = element.kind.plausible_range(element.param.operation)
    return max(low, p_low), min(high, p_high)


def gaussian_factor(cov: np.ndarray) -> np.ndarray:
    """F with F @ F.T = cov, for a symmetric PSD (possibly singular) covariance."""
    eigval, eigvec = np.linalg.eigh(cov)
    return eigvec * np.sqrt(np.clip(eigval, 0.0, None))


def sample_truncated_gaussian(rng: np.random.Generator, mean: np.ndarray, factor: np.ndarray,
                              low: np.ndarray, high: np.ndarray, count: int) -> np.ndarray:
    """[count, n] draws of N(mean, factor @ factor.T) inside [low, high] per element:
    rejection (100 rounds), then clipping as a last resort."""
    def draw(k: int) -> np.ndarray:
        return mean + rng.standard_normal((k, len(mean))) @ factor.T

    out = draw(int(count))
    bad = np.any((out < low) | (out > high), axis=1)
    for _ in range(100):
        if not bad.any():
            break
        out[bad] = draw(int(bad.sum()))
        bad = np.any((out < low) | (out > high), axis=1)
    return np.clip(out, low, high)


def _unchanged(operation: str, nominal: float) -> float:
    """The sampled value that leaves ``nominal`` unchanged under ``operation``."""
    return {"scale": 1.0, "add": 0.0, "abs": nominal}[operation]


def apply_operation(operation: str, nominal: np.ndarray, value: float, *, nonneg: bool) -> np.ndarray:
    """``nominal * value`` (scale), ``nominal + value`` (add) or ``value`` (abs) per element,
    in the nominal's unit; clipped at 0 when ``nonneg``. For :meth:`Kind.apply`."""
    out = {"scale": nominal * value, "add": nominal + value,
           "abs": np.full_like(nominal, value, dtype=float)}[operation]
    return np.maximum(out, 0.0) if nonneg else out
