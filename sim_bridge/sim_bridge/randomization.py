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
"""
from __future__ import annotations

import copy
import math
import os
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


@dataclass(frozen=True)
class Kind:
    """What a parameter changes: the target type and the operations that make sense."""

    target: str  # "body" | "joint" | "geom" | "axis" | "signal" | "none"
    operations: tuple[str, ...]
    doc: str
    nonnegative: bool = True


# The physics (and sensing) quantities a distribution file can randomize.
KINDS: dict[str, Kind] = {
    "body_mass": Kind("body", OPERATIONS, "link mass in kg; inertia is rescaled by the same ratio"),
    "joint_damping": Kind("joint", OPERATIONS, "passive joint damping in N m s/rad"),
    "joint_frictionloss": Kind("joint", OPERATIONS, "dry (Coulomb) joint friction, stiction, in N m"),
    "joint_armature": Kind("joint", OPERATIONS, "rotor inertia added to the joint, in kg m^2"),
    "geom_friction": Kind("geom", OPERATIONS, "sliding friction coefficient of contact geoms"),
    "actuator_kp": Kind("joint", OPERATIONS, "position-actuator stiffness (P gain) in N m/rad"),
    "actuator_kd": Kind("joint", OPERATIONS, "position-actuator damping (D gain) in N m s/rad"),
    "joint_limit_offset": Kind("joint", ("add",), "shift of both joint position limits, rad", nonnegative=False),
    "gravity": Kind("axis", ("add", "abs"), "gravity vector component in m/s^2", nonnegative=False),
    "action_latency": Kind("none", ("abs",), "delay from command to actuator, in control steps "
                                             "(fractional values delay by physics sub-steps)"),
    "obs_noise_std": Kind("signal", ("abs",), "std of Gaussian noise added to an observed signal "
                                              "(joint_pos in rad, joint_vel in rad/s)"),
    "action_noise_std": Kind("none", ("abs",), "std of Gaussian noise added to joint position commands, rad"),
}
AXES = ("x", "y", "z")
SIGNALS = ("joint_pos", "joint_vel")


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


def load_randomization(path_or_name: str | os.PathLike) -> RandomizationSpec:
    """Load a distribution file by path, or a shipped one by name (``default``, ``none``)."""
    text = os.fspath(path_or_name)
    if os.sep in text or text.endswith((".yaml", ".yml")):
        path = Path(text)
    else:
        path = shipped_randomization_path(text)
        if not path.is_file():
            raise ConfigError(f"no shipped randomization named '{text}' (looked for {path})")
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
        if spec_kind.target == "none":
            raise r.error("targets", f"{kind} is a single value and takes no targets")
        targets = tuple(r.strings("targets"))
        if not targets:
            raise r.error("targets", "empty list; omit the field to use the default targets")
        allowed = {"axis": AXES, "signal": SIGNALS}.get(spec_kind.target)
        if allowed is not None:
            unknown = [t for t in targets if t not in allowed]
            if unknown:
                raise r.error("targets", f"unknown {spec_kind.target}(s) {unknown}; allowed: {list(allowed)}")
    shared = r.raw("shared", False)
    if not isinstance(shared, bool):
        raise r.error("shared", f"expected true or false, got {shared!r}")
    dist = _parse_distribution(r)
    low, high = dist.bounds()
    if operation == "scale" and low <= 0:
        raise r.error("low", "a scale factor must stay > 0: give low > 0")
    if spec_kind.nonnegative and operation == "abs" and low < 0:
        raise r.error("low", f"{kind} cannot be negative: give low >= 0")
    r.finish()
    return ParameterSpec(name, kind, operation, dist, targets, shared)


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
    """The model fields randomization touches, saved once from the freshly built model."""

    FIELDS = ("body_mass", "body_inertia", "dof_damping", "dof_frictionloss", "dof_armature",
              "geom_friction", "actuator_gainprm", "actuator_biasprm", "jnt_range")

    def __init__(self, model: mujoco.MjModel):
        self.arrays = {name: np.array(getattr(model, name), copy=True) for name in self.FIELDS}
        self.gravity = np.array(model.opt.gravity, copy=True)

    def restore(self, model: mujoco.MjModel) -> None:
        for name, arr in self.arrays.items():
            getattr(model, name)[...] = arr
        model.opt.gravity[:] = self.gravity


@dataclass(frozen=True)
class EpisodeEffects:
    """Sampled settings that live outside the MuJoCo model."""

    action_latency_steps: float = 0.0
    obs_noise_std: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in SIGNALS})
    action_noise_std: float = 0.0


@dataclass(frozen=True)
class _Element:
    name: str
    param: ParameterSpec
    ids: np.ndarray  # model ids (bodies, dofs, geoms, actuators, axes) or empty
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
            bounds = np.array([self._elements[i].param.distribution.bounds() for i in self._gauss_idx])
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
                                      f"{KINDS[e.param.kind].target} ({e.name})", source=self.spec.source,
                                      field=f"parameters.{e.param.name}.targets")
                owner[key] = e.param.name

    # --- resolution -------------------------------------------------------------------
    def _resolve(self, param: ParameterSpec, model: mujoco.MjModel, profile: RobotProfile) -> list[_Element]:
        kind = KINDS[param.kind]
        field_name = f"parameters.{param.name}.targets"
        if kind.target == "none":
            return [_Element(param.name, param, np.zeros(0, int), 0.0)]
        if param.targets:
            targets = param.targets
            ids = np.array([self._target_id(param, kind.target, t, model, profile, field_name) for t in targets])
        else:
            targets, ids = self._default_targets(param, model, profile)
        if len(ids) == 0:
            raise ConfigError(f"no default targets for {param.kind} on this robot; list them in 'targets'",
                              source=self.spec.source, field=field_name)
        nominal_values = [self._nominal_of(param, i, model) for i in ids]
        if param.shared:
            if param.operation == "abs" and np.ptp(nominal_values) > 0:
                raise ConfigError(
                    f"shared 'abs' would give all targets one value, but their nominal values differ "
                    f"({dict(zip(targets, np.round(nominal_values, 6).tolist()))}); use 'scale' or 'add', "
                    "or drop 'shared'", source=self.spec.source, field=f"parameters.{param.name}.shared")
            value = _unchanged(param.operation, float(nominal_values[0]))
            return [_Element(param.name, param, ids, value)]
        return [_Element(f"{param.name}/{t}", param, np.array([i]), _unchanged(param.operation, v))
                for t, i, v in zip(targets, ids, nominal_values)]

    def _default_targets(self, param: ParameterSpec, model: mujoco.MjModel,
                         profile: RobotProfile) -> tuple[tuple[str, ...], np.ndarray]:
        """Targets when a parameter lists none: the profile's links or joints, every
        contact geom (unnamed ones labelled ``geom<id>``), all axes or signals."""
        target = KINDS[param.kind].target
        if target == "geom":
            ids = [i for i in range(model.ngeom) if model.geom_contype[i] or model.geom_conaffinity[i]]
            return tuple(model.geom(i).name or f"geom{i}" for i in ids), np.array(ids, dtype=int)
        names = {"body": profile.link_names, "joint": profile.joint_names, "axis": AXES,
                 "signal": SIGNALS}[target]
        field_name = f"parameters.{param.name}.targets"
        ids = [self._target_id(param, target, t, model, profile, field_name) for t in names]
        return tuple(names), np.array(ids, dtype=int)

    def _target_id(self, param, target_type, name, model, profile, field_name) -> int:
        if target_type in ("axis", "signal"):
            return (AXES if target_type == "axis" else SIGNALS).index(name)
        if target_type == "joint" and param.kind in ("actuator_kp", "actuator_kd"):
            if name not in profile.joint_names:
                raise ConfigError(f"unknown joint '{name}'; the robot profile's joints are "
                                  f"{list(profile.joint_names)}", source=self.spec.source, field=field_name)
            act = profile.actuator_names[profile.joint_names.index(name)]
            return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, act)
        obj = {"body": mujoco.mjtObj.mjOBJ_BODY, "joint": mujoco.mjtObj.mjOBJ_JOINT,
               "geom": mujoco.mjtObj.mjOBJ_GEOM}[target_type]
        idx = mujoco.mj_name2id(model, obj, name)
        if idx < 0:
            count = {"body": model.nbody, "joint": model.njnt, "geom": model.ngeom}[target_type]
            known = [mujoco.mj_id2name(model, obj, i) for i in range(count)]
            raise ConfigError(f"unknown {target_type} '{name}'; the model has {[k for k in known if k]}",
                              source=self.spec.source, field=field_name)
        if target_type == "joint" and param.kind != "joint_limit_offset":
            return int(model.jnt_dofadr[idx])
        return idx

    def _nominal_of(self, param: ParameterSpec, i: int, model: mujoco.MjModel) -> float:
        arrays, k = self.nominal.arrays, param.kind
        return float({
            "body_mass": lambda: arrays["body_mass"][i],
            "joint_damping": lambda: arrays["dof_damping"][i],
            "joint_frictionloss": lambda: arrays["dof_frictionloss"][i],
            "joint_armature": lambda: arrays["dof_armature"][i],
            "geom_friction": lambda: arrays["geom_friction"][i, 0],
            "actuator_kp": lambda: arrays["actuator_gainprm"][i, 0],
            "actuator_kd": lambda: -arrays["actuator_biasprm"][i, 2],
            "joint_limit_offset": lambda: 0.0,
            "gravity": lambda: self.nominal.gravity[i],
            "obs_noise_std": lambda: 0.0,
        }[k]())

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
        nom = self.nominal.arrays
        latency, action_noise = 0.0, 0.0
        obs_noise = {s: 0.0 for s in SIGNALS}
        for element, v in zip(self._elements, values):
            p, ids = element.param, element.ids
            k = p.kind
            if k == "body_mass":
                mass = _op(p.operation, nom["body_mass"][ids], v, nonneg=True)
                model.body_mass[ids] = mass
                ratio = np.divide(mass, nom["body_mass"][ids], out=np.ones_like(mass),
                                  where=nom["body_mass"][ids] > 0)
                model.body_inertia[ids] = nom["body_inertia"][ids] * ratio[:, None]
            elif k == "joint_damping":
                model.dof_damping[ids] = _op(p.operation, nom["dof_damping"][ids], v, nonneg=True)
            elif k == "joint_frictionloss":
                model.dof_frictionloss[ids] = _op(p.operation, nom["dof_frictionloss"][ids], v, nonneg=True)
            elif k == "joint_armature":
                model.dof_armature[ids] = _op(p.operation, nom["dof_armature"][ids], v, nonneg=True)
            elif k == "geom_friction":
                model.geom_friction[ids, 0] = _op(p.operation, nom["geom_friction"][ids, 0], v, nonneg=True)
            elif k == "actuator_kp":
                kp = _op(p.operation, nom["actuator_gainprm"][ids, 0], v, nonneg=True)
                model.actuator_gainprm[ids, 0] = kp
                model.actuator_biasprm[ids, 1] = -kp
            elif k == "actuator_kd":
                kd = _op(p.operation, -nom["actuator_biasprm"][ids, 2], v, nonneg=True)
                model.actuator_biasprm[ids, 2] = -kd
            elif k == "joint_limit_offset":
                model.jnt_range[ids] = nom["jnt_range"][ids] + v
            elif k == "gravity":
                model.opt.gravity[ids] = _op(p.operation, self.nominal.gravity[ids], v, nonneg=False)
            elif k == "action_latency":
                latency = float(v)
            elif k == "action_noise_std":
                action_noise = float(v)
            elif k == "obs_noise_std":
                for i in ids:
                    obs_noise[SIGNALS[i]] = float(v)
        return EpisodeEffects(latency, obs_noise, action_noise)


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
    return {"scale": 1.0, "add": 0.0, "abs": nominal}[operation]


def _op(operation: str, nominal: np.ndarray, value: float, *, nonneg: bool) -> np.ndarray:
    out = {"scale": nominal * value, "add": nominal + value,
           "abs": np.full_like(nominal, value, dtype=float)}[operation]
    return np.maximum(out, 0.0) if nonneg else out
