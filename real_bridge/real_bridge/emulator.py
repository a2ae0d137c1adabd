"""The arm emulator: a stand-in for a real ros2_control arm, with physics nobody trained on.

Pure core (numpy + MuJoCo, no ROS); :mod:`real_bridge.emulator_node` is the ROS shell.
The emulator is one particular arm: an :class:`~sim_bridge.simulator.ArmSimulator` whose
dynamics are fixed by a HIDDEN parameter file (``config/emulator_hidden.yaml``), plus what
the training randomization does not model:

* **Hidden dynamics** (the randomization format, fixed values): heavier links, more
  damping, softer P gain, gravity offset, 1.3 steps of latency, position noise, all
  inside the default training ranges but away from their centre; and stiction (joint
  frictionloss) *above* the training range, with stiff MuJoCo solver settings for it so
  a joint really sticks below the friction torque (MuJoCo's soft default, which training
  uses, lets it creep).
* **Encoder quantization**: reported joint positions are multiples of ``2 pi / 2^bits``.
* **Velocity estimation**: reported velocities are the finite difference of consecutive
  quantized positions over one control period, as many real drivers compute them.

It is driven like a ros2_control arm with a forward position controller::

    emu = ArmEmulator()                 # shipped profile and hidden file
    emu.command(q_targets)              # absolute targets, controller joint order; held
    emu.step()                          # one control period of physics (latency applies)
    state = emu.joint_state()           # names, position, velocity, effort, stamp_s

Sensors are read once per control period (at the end of :meth:`step`, like a hardware
interface's ``read()``); :meth:`joint_state` returns that latched reading, so calling it
twice gives the same values. Commands stay in force until the next one (the forward
position controller holds its last command); :meth:`reset` homes the arm: default pose,
command = default pose, same hidden physics.

**With an object** (``task='push'``): the task's scene (the puck and the pusher rod, from
:meth:`sim_bridge.tasks.PushTask.add_to_scene`) is added to the arm, and the object's
physics come from a second hidden file (``config/emulator_push_hidden.yaml``: heavier,
stickier, more damped, slightly larger than nominal, plus a table tilt no training sample
has, see the file). A tracker stand-in reads the puck's pose once per control period with
the hidden tracker noise, latency and dropouts (the task's own tracker model,
:meth:`~sim_bridge.tasks.PushTask.measure`, with the hidden values): :meth:`object_pose`.
:meth:`reset` (a homing) also places the puck: ``push_distance_m`` from the given goal
(the goal the bridge published), in a random direction, seeded by the hidden file; on a
real arm a person (or a script with its own robot) does this.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim_bridge.config import ConfigError, FieldReader, load_yaml_mapping, package_path
from sim_bridge.profile import RobotProfile, load_profile
from sim_bridge.randomization import (DynamicsRandomizer, RandomizationSpec, load_randomization,
                                      parse_randomization)
from sim_bridge.simulator import ArmSimulator
from sim_bridge.tasks import DEFAULT_TASK, Task, make_task

HIDDEN_FILE = "config/emulator_hidden.yaml"
OBJECT_HIDDEN_FILES = {"push": "config/emulator_push_hidden.yaml"}  # task -> its shipped object file
GRAVITY_M_S2 = 9.81
VELOCITY_MODES = ("finite_difference", "simulator")
MAX_ENCODER_BITS = 32


def shipped_hidden_path() -> Path:
    """The shipped hidden parameter file (package data of real_bridge)."""
    return package_path("real_bridge", HIDDEN_FILE)


@dataclass(frozen=True)
class EmulatorSettings:
    """The ``emulator:`` block of a hidden file: what the training randomization lacks."""

    seed: int
    encoder_bits: int = 16  # 0: positions not quantized
    velocity: str = "finite_difference"
    # MuJoCo solver settings of the joints' frictionloss constraints (dof_solref/dof_solimp);
    # None: the MJCF's. MuJoCo's default is soft: a torque below the friction level still
    # makes the joint creep; a stiff setting makes frictionloss hold like real stiction.
    frictionloss_solref: tuple[float, ...] | None = None
    frictionloss_solimp: tuple[float, ...] | None = None

    @property
    def position_resolution_rad(self) -> float:
        return 2.0 * math.pi / 2 ** self.encoder_bits if self.encoder_bits else 0.0


@dataclass(frozen=True)
class HiddenParameters:
    """A parsed hidden file: the fixed dynamics (a randomization spec) and the emulator settings."""

    dynamics: RandomizationSpec
    settings: EmulatorSettings
    source: Path | None = None


def parse_hidden_parameters(data: dict, *, source: str | os.PathLike | None = None) -> HiddenParameters:
    """A randomization mapping plus an ``emulator`` block (see the shipped file)."""
    data = dict(data)
    if "emulator" not in data:
        raise ConfigError("missing required field (seed, encoder_bits, velocity, ...)", source=source,
                          field="emulator")
    r = FieldReader(data.pop("emulator"), source=source, prefix="emulator")
    seed = r.integer("seed")
    if seed < 0:
        raise r.error("seed", f"must be >= 0, got {seed}")
    bits = r.integer("encoder_bits", 16)
    if not 0 <= bits <= MAX_ENCODER_BITS:
        raise r.error("encoder_bits", f"must be in [0, {MAX_ENCODER_BITS}] (0 = no quantization), got {bits}")
    velocity = r.str("velocity", "finite_difference")
    if velocity not in VELOCITY_MODES:
        raise r.error("velocity", f"unknown velocity source '{velocity}'; use one of {list(VELOCITY_MODES)}")
    solref = tuple(r.numbers("frictionloss_solref", 2)) if r.has("frictionloss_solref") else None
    if solref is not None and solref[0] <= 0:
        raise r.error("frictionloss_solref", f"the time constant must be > 0, got {solref[0]}")
    solimp = tuple(r.numbers("frictionloss_solimp", 5)) if r.has("frictionloss_solimp") else None
    if solimp is not None and not (0 < solimp[0] < 1 and 0 < solimp[1] < 1 and solimp[2] > 0):
        raise r.error("frictionloss_solimp", f"need 0 < dmin, dmax < 1 and width > 0, got {list(solimp)}")
    r.finish()
    spec = parse_randomization(data, source=source)
    return HiddenParameters(spec, EmulatorSettings(seed, bits, velocity, solref, solimp),
                            Path(source) if source else None)


def load_hidden_parameters(path: str | os.PathLike | None = None) -> HiddenParameters:
    """Load a hidden file (default: the shipped one). Errors name the file and the field."""
    path = Path(path) if path else shipped_hidden_path()
    return parse_hidden_parameters(load_yaml_mapping(path), source=path)


def shipped_object_hidden_path(task: str = "push") -> Path:
    """The shipped hidden object file of a task (package data of real_bridge)."""
    if task not in OBJECT_HIDDEN_FILES:
        raise ConfigError(f"no shipped hidden object file for task '{task}' (shipped: {sorted(OBJECT_HIDDEN_FILES)}); "
                          "pass one", field="object_hidden_params_file")
    return package_path("real_bridge", OBJECT_HIDDEN_FILES[task])


@dataclass(frozen=True)
class ObjectSettings:
    """The ``emulator:`` block of a hidden object file: what the training randomization lacks.

    ``table_tilt_deg``: slope of the table surface; ``table_downhill_deg``: the direction in
    which it descends (deg from the base frame's +x toward +y). Applied to the object as the
    downhill component of gravity, a constant force ``m g sin(tilt)`` on its centre along
    that direction (the table's geometry stays level). ``seed``: where homings place it."""

    seed: int
    table_tilt_deg: float = 0.0
    table_downhill_deg: float = 0.0

    def tilt_force_n(self, mass_kg: float) -> np.ndarray:
        """The force (N, base frame x, y, z) the tilt puts on an object of this mass."""
        f = mass_kg * GRAVITY_M_S2 * math.sin(math.radians(self.table_tilt_deg))
        a = math.radians(self.table_downhill_deg)
        return np.array([f * math.cos(a), f * math.sin(a), 0.0])


@dataclass(frozen=True)
class HiddenObject:
    """A parsed hidden object file: the object's fixed physics and tracker (a randomization
    spec over the task scene's object kinds) and the :class:`ObjectSettings`."""

    physics: RandomizationSpec
    settings: ObjectSettings
    source: Path | None = None


def parse_hidden_object(data: dict, *, source: str | os.PathLike | None = None) -> HiddenObject:
    """A randomization mapping plus an ``emulator`` block (seed, table_tilt_deg, table_downhill_deg)."""
    data = dict(data)
    if "emulator" not in data:
        raise ConfigError("missing required field (seed, table_tilt_deg, table_downhill_deg)", source=source,
                          field="emulator")
    r = FieldReader(data.pop("emulator"), source=source, prefix="emulator")
    seed = r.integer("seed")
    if seed < 0:
        raise r.error("seed", f"must be >= 0, got {seed}")
    tilt = r.number("table_tilt_deg", 0.0)
    if not 0.0 <= tilt <= 10.0:
        raise r.error("table_tilt_deg", f"must be in [0, 10] deg (a table, not a ramp), got {tilt}")
    downhill = r.number("table_downhill_deg", 0.0)
    if not math.isfinite(downhill):
        raise r.error("table_downhill_deg", f"must be finite, got {downhill}")
    r.finish()
    spec = parse_randomization(data, source=source)
    return HiddenObject(spec, ObjectSettings(seed, float(tilt), float(downhill)), Path(source) if source else None)


def load_hidden_object(path: str | os.PathLike | None = None, task: str = "push") -> HiddenObject:
    """Load a hidden object file (default: the task's shipped one). Errors name the file and field."""
    path = Path(path) if path else shipped_object_hidden_path(task)
    return parse_hidden_object(load_yaml_mapping(path), source=path)


def merged_dynamics(arm: RandomizationSpec, obj: RandomizationSpec, model, profile) -> RandomizationSpec:
    """The arm's hidden spec and the object's as one (the emulator's one sim). An arm parameter
    with the kind's default targets (e.g. ``geom_friction``: every contact geom) would also
    take the object's geoms, which the object file sets itself: its targets become the
    defaults minus the object file's targets of the same kind."""
    from dataclasses import replace  # noqa: PLC0415

    from sim_bridge.randomization import KINDS  # noqa: PLC0415

    taken: dict[str, set[str]] = {}
    for p in obj.parameters:
        taken.setdefault(p.kind, set()).update(p.targets or ())
    params = []
    for p in arm.parameters:
        if p.targets is None and taken.get(p.kind):
            names, _ = KINDS[p.kind].target.defaults(model, profile)
            p = replace(p, targets=tuple(n for n in names if n not in taken[p.kind]))
        params.append(p)
    names = {p.name for p in params}
    clash = sorted(names & {p.name for p in obj.parameters})
    if clash:
        raise ConfigError(f"the object file repeats the arm's parameter name(s) {clash}", source=obj.source,
                          field="parameters")
    return RandomizationSpec(tuple(params) + tuple(obj.parameters), arm.joint_gaussian,
                             description=f"{arm.description} + {obj.description}".strip(" +"))


@dataclass(frozen=True)
class ObjectPoseReading:
    """One pose from the tracker stand-in: ``pose`` = (x, y, z, sin yaw, cos yaw) in the base
    frame (m), measured ``age_s`` before ``stamp_s`` (emulator time of the read); stamp it
    ``now - age_s``."""

    pose: np.ndarray
    age_s: float
    stamp_s: float


@dataclass(frozen=True)
class EmulatorJointState:
    """What a joint_state_broadcaster would publish: all joints, extras last."""

    names: tuple[str, ...]
    position_rad: np.ndarray
    velocity_rad_s: np.ndarray
    effort_nm: np.ndarray
    stamp_s: float  # emulator time at the sensor read, monotonic (the node stamps wall time)


class ArmEmulator:
    """One fixed arm with hidden physics, quantized encoders and finite-difference velocities.

    Args:
        profile: robot profile (object, shipped name or YAML path).
        hidden: hidden parameters (object or file path); None = the shipped file.
        control_rate_hz: the emulator's control (ros2_control update) rate; None = the
            profile's. Latency is kept in time: the hidden value is in control steps at the
            profile's rate.
        seed: seeds the noise (sensor, and commands if the hidden file has command noise);
            None = the hidden file's seed.
        controller_joints: joint order of commands (the forward position controller's
            ``joints``), a permutation of the profile's joints; None = profile order.
        extra_joints: non-arm joints reported at 0 after the arm joints (e.g. a gripper).
        task: the task whose scene the table holds (name or :class:`~sim_bridge.tasks.Task`;
            default Reach: the bare arm). A task with a scene (Push: the puck) needs hidden
            object physics.
        hidden_object: the object's hidden physics (object or file path); None = the task's
            shipped file (``config/emulator_push_hidden.yaml`` for Push).
    """

    def __init__(self, profile: RobotProfile | str = "panda_like",
                 hidden: HiddenParameters | str | os.PathLike | None = None, *,
                 control_rate_hz: float | None = None, seed: int | None = None,
                 controller_joints: list[str] | tuple[str, ...] | None = None,
                 extra_joints: list[str] | tuple[str, ...] = (), task: str | Task | None = None,
                 hidden_object: HiddenObject | str | os.PathLike | None = None):
        base = load_profile(profile) if isinstance(profile, (str, os.PathLike)) else profile
        self.nominal_profile = base
        self.profile = base.with_rates(control_rate_hz) if control_rate_hz else base
        self.hidden = hidden if isinstance(hidden, HiddenParameters) else load_hidden_parameters(hidden)
        self.settings = self.hidden.settings
        self.seed = self.settings.seed if seed is None else int(seed)

        names = list(self.profile.joint_names)
        order = list(controller_joints) if controller_joints else names
        if sorted(order) != sorted(names) or len(set(order)) != len(order):
            raise ConfigError(f"must be a permutation of the profile's joints {names}, got {order}",
                              field="controller_joints")
        self.controller_joints = tuple(order)
        self._to_profile = np.array([order.index(j) for j in names])  # controller -> profile order
        extras = tuple(extra_joints)
        clash = sorted(set(extras) & set(names)) or sorted({j for j in extras if extras.count(j) > 1})
        if clash:
            raise ConfigError(f"extra joint(s) {clash} duplicate an arm joint or each other", field="extra_joints")
        self.extra_joints = extras
        self.state_names = tuple(names) + extras

        # Noise streams come from `seed`; the physics are the hidden file's (drawn once with
        # its own seed, so a narrow distribution still gives the same arm every time).
        self.task = make_task(task if task is not None else DEFAULT_TASK)
        self.object: HiddenObject | None = None
        if self.task.add_to_scene is None:
            self.sim = ArmSimulator(self.profile, self.hidden.dynamics, seed=self.seed)
        else:
            self.object = (hidden_object if isinstance(hidden_object, HiddenObject)
                           else load_hidden_object(hidden_object, self.task.name))
            self.sim = ArmSimulator(self.profile, None, seed=self.seed, scene=self.task.add_to_scene)
            spec = merged_dynamics(self.hidden.dynamics, self.object.physics, self.sim.model, self.profile)
            self.sim.randomizer = DynamicsRandomizer(spec, self.sim.model, self.profile, self.sim.nominal)
        self._object_rng = np.random.default_rng(self.object.settings.seed if self.object else 0)
        self._task_state = None              # the task's episode state (the object's tracker)
        self._object_reading: ObjectPoseReading | None = None
        self.goal: np.ndarray | None = None  # the goal the last homing placed the object for
        model = self.sim.model
        if self.settings.frictionloss_solref is not None:
            model.dof_solref[:] = self.settings.frictionloss_solref
        if self.settings.frictionloss_solimp is not None:
            model.dof_solimp[:] = self.settings.frictionloss_solimp
        randomizer = self.sim.randomizer
        self._hidden_values = randomizer.sample(np.random.default_rng(self.settings.seed))
        self._run_values = self._hidden_values.copy()
        scale = self.profile.control_rate_hz / self.nominal_profile.control_rate_hz
        for i in self._latency_indices(randomizer):
            self._run_values[i] *= scale  # the same latency in seconds at this control rate
        self.resolution_rad = self.settings.position_resolution_rad
        self.resets = 0  # homings, the first one at construction included
        self.faults = 0
        self.control_steps = 0  # control periods stepped since construction
        self._clock_s = 0.0  # emulator time since construction, monotonic across homings
        self.reset()

    def _latency_indices(self, randomizer: DynamicsRandomizer) -> list[int]:
        """Positions of action_latency elements (a single value: element name = parameter name)."""
        names = [p.name for p in self.hidden.dynamics.parameters if p.kind == "action_latency"]
        return [randomizer.names.index(name) for name in names]

    # --- driving --------------------------------------------------------------------------
    def reset(self, joint_pos: np.ndarray | None = None, *, goal=None,
              object_start=None, object_yaw: float | None = None) -> EmulatorJointState:
        """Home the arm: ``joint_pos`` (profile order; default pose), command = that pose.

        The hidden physics stay the same (it is the same arm); pending commands are dropped.
        With an object: it is placed for ``goal`` (x, y, z; None: a goal sampled here, seeded)
        as the task's episodes start (Push: ``push_distance_m`` from the goal, random
        direction and yaw), or at ``object_start`` (x, y) / ``object_yaw`` (rad) when given;
        the tracker starts afresh.
        """
        self.sim.reset(dynamics=self._run_values, joint_pos=joint_pos)
        if self.object is not None:
            rng = self._object_rng
            goal = (self.task.sample_goal(rng, self.profile) if goal is None
                    else np.asarray(goal, dtype=float).reshape(3))
            options = {} if object_start is None else {"object_start": np.asarray(object_start, dtype=float)}
            if object_yaw is not None:
                options["object_yaw"] = float(object_yaw)
            self._task_state = self.task.reset(self.sim, rng, goal, options)
            self.goal = goal
            self._apply_tilt()
        self._last_command = self.sim.applied_command()
        self._q_prev: np.ndarray | None = None
        self.resets += 1
        self._read_sensors()
        return self.joint_state()

    def _apply_tilt(self) -> None:
        """The table tilt's downhill force on the object's body (cleared by every MuJoCo reset)."""
        m = self.sim.model
        body = int(m.jnt_bodyid[m.joint(self._object_joint_name()).id])
        self.sim.data.xfrc_applied[body, :3] = self.object.settings.tilt_force_n(float(m.body_mass[body]))

    def _object_joint_name(self) -> str:
        from sim_bridge.tasks.push import PUCK_JOINT  # noqa: PLC0415 - the one object scene shipped

        return PUCK_JOINT

    def command(self, joint_targets_rad) -> None:
        """Absolute joint position targets in controller joint order; held until the next.

        Raises ValueError for a wrong length or non-finite values (the command in force
        stays, as a forward position controller rejects such a message).
        """
        target = np.asarray(joint_targets_rad, dtype=float)
        n = len(self.controller_joints)
        if target.shape != (n,):
            raise ValueError(f"expected {n} joint targets in order {list(self.controller_joints)}, "
                             f"got {target.size}")
        if not np.all(np.isfinite(target)):
            bad = [self.controller_joints[i] for i in np.flatnonzero(~np.isfinite(target))]
            raise ValueError(f"non-finite target for joint(s) {bad}")
        target = target[self._to_profile]
        self.sim.command(target)  # clipped to the position limits there, as by the hardware
        self._last_command = np.clip(target, self.profile.position_lower_rad, self.profile.position_upper_rad)

    def step(self) -> bool:
        """One control period of physics, then a sensor read.

        Returns False on a physics blow-up; the arm is then homed (a real arm would fault
        and need re-homing) and ``faults`` counts it.
        """
        ok = self.sim.step()
        self.control_steps += 1
        self._clock_s += self.profile.control_period_s
        if not ok:
            self.faults += 1
            self.reset()
            return False
        self._read_sensors()
        return True

    # --- sensing --------------------------------------------------------------------------
    def _read_sensors(self) -> None:
        reading = self.sim.read()  # noise from the hidden file (obs_noise_std)
        q = self.quantize(reading.position_rad)
        if self.settings.velocity == "finite_difference":
            qd = np.zeros_like(q) if self._q_prev is None else (q - self._q_prev) / self.profile.control_period_s
        else:
            qd = reading.velocity_rad_s
        self._q_prev = q
        n_extra = len(self.extra_joints)
        self._state = EmulatorJointState(
            self.state_names, np.concatenate([q, np.zeros(n_extra)]), np.concatenate([qd, np.zeros(n_extra)]),
            np.concatenate([self.sim.actuator_efforts(), np.zeros(n_extra)]), self._clock_s)
        if self._task_state is not None:  # the tracker stand-in: one read per control period
            measured = self.task.measure(self.sim, self._task_state)
            if measured:
                pose, age = next(iter(measured.values()))
                self._object_reading = ObjectPoseReading(np.array(pose, dtype=float), float(age), self._clock_s)
            else:
                self._object_reading = None  # a dropout: the tracker sends nothing this period

    def object_pose(self) -> ObjectPoseReading | None:
        """The tracker stand-in's reading of this control period (None: a dropout, or no object)."""
        return self._object_reading

    def quantize(self, position_rad: np.ndarray) -> np.ndarray:
        """Round to the encoder resolution (identity when ``encoder_bits`` is 0)."""
        if not self.resolution_rad:
            return np.asarray(position_rad, dtype=float).copy()
        return np.round(np.asarray(position_rad) / self.resolution_rad) * self.resolution_rad

    def joint_state(self) -> EmulatorJointState:
        """The latest sensor reading: arm joints (profile order), then the extra joints."""
        return self._state

    # --- ground truth (for tests and benchmarks; a real arm has no such thing) -------------
    def true_joint_positions(self) -> np.ndarray:
        return self.sim.true_joint_positions()

    def true_object_pose(self) -> np.ndarray | None:
        """The object's true (x, y, z, yaw) (m, rad; base frame); None without an object."""
        if self._task_state is None:
            return None
        return self.task.true_pose(self.sim, self._task_state)

    def object_error_m(self) -> float:
        """The task's error now (Push: puck centre to goal in the table plane, m); nan without an object."""
        return float("nan") if self._task_state is None else float(self.task.error(self.sim, self._task_state))

    def end_effector_position(self) -> np.ndarray:
        return self.sim.end_effector_position()

    @property
    def last_command(self) -> np.ndarray:
        """The targets in force, profile order (the last accepted command or the home pose)."""
        return self._last_command.copy()

    @property
    def latency_substeps(self) -> int:
        """Command-to-actuator delay in physics steps."""
        return int(math.floor(self.sim.effects.action_latency_steps * self.profile.decimation + 0.5))

    @property
    def time_s(self) -> float:
        """Emulator time since construction (monotonic across homings)."""
        return self._clock_s

    @property
    def control_period_s(self) -> float:
        return self.profile.control_period_s

    def hidden_dynamics(self) -> dict[str, float]:
        """The hidden truth, name -> value. Dynamics use the training vector's element names
        and semantics (scale factor, additive offset, absolute value; latency in control steps
        at the profile's rate), then the sensor model: ``encoder_resolution_rad``,
        ``velocity_finite_difference`` (1.0 or 0.0); with an object also ``table_tilt_deg`` and
        ``table_downhill_deg`` (outside the training model)."""
        out = self.sim.randomizer.as_dict(self._hidden_values)
        out["encoder_resolution_rad"] = float(self.resolution_rad)
        out["velocity_finite_difference"] = 1.0 if self.settings.velocity == "finite_difference" else 0.0
        if self.object is not None:
            out["table_tilt_deg"] = self.object.settings.table_tilt_deg
            out["table_downhill_deg"] = self.object.settings.table_downhill_deg
        return out

    def training_range_check(self, training: RandomizationSpec | str = "default") -> dict[str, tuple]:
        """For each hidden dynamics element: (value, training low, training high, inside?);
        low/high are None where the training distribution does not randomize the element."""
        spec = load_randomization(self.task.randomization_name(training)) if isinstance(training, str) else training
        train = DynamicsRandomizer(spec, self.sim.model, self.profile, self.sim.nominal)
        bounds = {name: (lo, hi) for name, lo, hi in zip(train.names, train.low, train.high)}
        out = {}
        for name, value in self.sim.randomizer.as_dict(self._hidden_values).items():
            lo, hi = bounds.get(name, (None, None))
            inside = lo is not None and lo <= value <= hi
            out[name] = (value, None if lo is None else float(lo), None if hi is None else float(hi), inside)
        return out

    def describe(self, training: RandomizationSpec | str | None = "default") -> str:
        """A readable summary of the hidden arm (every hidden value), one line per element."""
        src = self.hidden.source.name if self.hidden.source else "<in memory>"
        lines = [f"arm emulator '{self.profile.name}': hidden physics from {src}, noise seed {self.seed}, "
                 f"{self.profile.control_rate_hz:g} Hz control over {self.profile.physics_rate_hz:g} Hz physics, "
                 f"latency {self.latency_substeps} physics steps "
                 f"({1e3 * self.latency_substeps / self.profile.physics_rate_hz:.0f} ms)"]
        ops = {p.name: p.operation for p in self.hidden.dynamics.parameters}
        check = self.training_range_check(training) if training is not None else {}
        for name, value in self.sim.randomizer.as_dict(self._hidden_values).items():
            op = ops.get(name, ops.get(name.split("/", 1)[0], "abs"))
            text = {"scale": f"x{value:.4g}", "add": f"{value:+.4g}", "abs": f"{value:.4g}"}[op]
            line = f"  {name:<28} {text}"
            if name in check:
                _, lo, hi, inside = check[name]
                line += ("   (training: not randomized)" if lo is None else
                         f"   (training {lo:.4g}..{hi:.4g}{'' if inside else ', OUTSIDE'})")
            lines.append(line)
        res = self.resolution_rad
        lines.append(f"  {'encoder':<28} {self.settings.encoder_bits} bits: positions quantized to "
                     f"{res:.4g} rad" if res else f"  {'encoder':<28} not quantized")
        lines.append(f"  {'joint velocity':<28} " + (
            "finite difference of quantized positions per control period" if self.settings.velocity ==
            "finite_difference" else "simulator velocity with noise"))
        if self.object is not None:
            o = self.object.settings
            src = self.object.source.name if self.object.source else "<in memory>"
            lines.append(f"  {'object physics':<28} from {src} (the {self.task.name} scene)")
            lines.append(f"  {'table tilt':<28} {o.table_tilt_deg:g} deg, downhill toward {o.table_downhill_deg:g} deg "
                         "from +x   (training: not modelled)")
        return "\n".join(lines)
