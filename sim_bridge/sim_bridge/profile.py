"""Robot profile: the YAML description that makes an arm pluggable.

A profile names the MJCF model, the joint order the whole stack uses, limits, the
default pose, control and physics rates and the PD gains. Gains, torque limits and
position limits are written into the compiled MuJoCo model, so the profile is the one
source of truth for them (see :func:`sim_bridge.simulator.build_model`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim_bridge.config import ConfigError, FieldReader, load_yaml_mapping, package_path, resolve_path

DEFAULT_PROFILE = "panda_like"
PROFILE_VERSION = 1


@dataclass(frozen=True)
class RobotProfile:
    """An arm as the stack sees it. Arrays are in ``joint_names`` order."""

    name: str
    mjcf_path: Path
    joint_names: tuple[str, ...]
    actuator_names: tuple[str, ...]
    link_names: tuple[str, ...]
    end_effector_site: str
    target_body: str | None
    position_lower_rad: np.ndarray
    position_upper_rad: np.ndarray
    velocity_limit_rad_s: np.ndarray
    effort_limit_nm: np.ndarray
    default_pose_rad: np.ndarray
    control_rate_hz: float
    physics_rate_hz: float
    kp: np.ndarray
    kd: np.ndarray
    reach_low_m: np.ndarray
    reach_high_m: np.ndarray
    source: Path | None = None
    # Where the profile came from (``sim2real robot import`` records the URDF, its sha256, the
    # controller file, the stated defaults); free-form, read by ``sim2real robot check``.
    provenance: dict | None = None

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def decimation(self) -> int:
        """Physics steps per control step."""
        return int(round(self.physics_rate_hz / self.control_rate_hz))

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    def with_rates(self, control_rate_hz: float | None = None,
                   physics_rate_hz: float | None = None) -> "RobotProfile":
        """A copy with other rates (validated like a loaded file)."""
        from dataclasses import replace
        new = replace(self,
                      control_rate_hz=float(control_rate_hz or self.control_rate_hz),
                      physics_rate_hz=float(physics_rate_hz or self.physics_rate_hz))
        _check_rates(new.control_rate_hz, new.physics_rate_hz, source=self.source)
        return new


def _check_rates(control_hz: float, physics_hz: float, *, source) -> None:
    if control_hz <= 0 or physics_hz <= 0:
        raise ConfigError("rates must be > 0", source=source, field="control_rate_hz")
    ratio = physics_hz / control_hz
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
        raise ConfigError(
            f"physics_rate_hz ({physics_hz}) must be an integer multiple of control_rate_hz "
            f"({control_hz}); the ratio is the control decimation", source=source,
            field="physics_rate_hz")


def shipped_profile_path(name: str = DEFAULT_PROFILE) -> Path:
    return package_path("sim_bridge", f"config/{name}.yaml")


#: where ``sim2real robot import`` writes an arm by default (relative to the working directory)
IMPORTED_ROBOTS_DIR = Path("robots")


def load_profile(path_or_name: str | os.PathLike = DEFAULT_PROFILE) -> RobotProfile:
    """Load a profile from a YAML path or an imported robot's folder, or by name: a shipped one
    (e.g. ``panda_like``), else one imported into ``robots/NAME/NAME.yaml`` (``sim2real robot
    import --name NAME``; relative to the working directory)."""
    text = os.fspath(path_or_name)
    path = Path(text)
    if path.is_dir():
        path = path / f"{path.name}.yaml"
    elif not (os.sep in text or text.endswith((".yaml", ".yml"))):
        path = shipped_profile_path(text)
        imported = IMPORTED_ROBOTS_DIR / text / f"{text}.yaml"
        if not path.is_file() and imported.is_file():
            path = imported
        elif not path.is_file():
            raise ConfigError(f"no robot profile named '{text}': not shipped (looked for {path}) and not "
                              f"imported (looked for {imported.resolve()})")
    return parse_profile(load_yaml_mapping(path), source=path)


def parse_profile(data: dict, *, source: Path | None = None) -> RobotProfile:
    r = FieldReader(data, source=source)
    version = r.integer("profile_version", PROFILE_VERSION)
    if version != PROFILE_VERSION:
        raise r.error("profile_version", f"unsupported version {version}; this stack reads {PROFILE_VERSION}")
    name = r.str("name")
    base = source.parent if source is not None else None
    mjcf = resolve_path(r.str("mjcf"), relative_to=base)
    if not mjcf.is_file():
        raise r.error("mjcf", f"MJCF file not found: {mjcf}")
    joints = r.strings("joint_names")
    n = len(joints)
    if n == 0:
        raise r.error("joint_names", "at least one joint is required")
    actuators = r.strings("actuator_names")
    if len(actuators) != n:
        raise r.error("actuator_names", f"expected one actuator per joint ({n}), got {len(actuators)}")
    links = r.strings("link_names", [])
    ee_site = r.str("end_effector_site")
    target_body = r.raw("target_body", None)
    if target_body is not None and not isinstance(target_body, str):
        raise r.error("target_body", f"expected a body name, got {target_body!r}")

    lim = r.child("limits")
    lower = np.array(lim.numbers("position_lower_rad", n))
    upper = np.array(lim.numbers("position_upper_rad", n))
    bad = np.flatnonzero(lower >= upper)
    if bad.size:
        raise lim.error("position_lower_rad",
                        f"lower limit must be below upper limit for joint(s) {[joints[i] for i in bad]}")
    vel = np.array(lim.numbers("velocity_rad_s", n))
    effort = np.array(lim.numbers("effort_nm", n))
    for key, arr in (("velocity_rad_s", vel), ("effort_nm", effort)):
        if np.any(arr <= 0):
            raise lim.error(key, "all values must be > 0")
    lim.finish()

    pose = np.array(r.numbers("default_pose_rad", n))
    outside = np.flatnonzero((pose < lower) | (pose > upper))
    if outside.size:
        raise r.error("default_pose_rad",
                      f"outside the position limits for joint(s) {[joints[i] for i in outside]}")
    control_hz = r.number("control_rate_hz", positive=True)
    physics_hz = r.number("physics_rate_hz", positive=True)
    _check_rates(control_hz, physics_hz, source=source)

    gains = r.child("gains")
    kp = np.array(gains.numbers("kp", n))
    kd = np.array(gains.numbers("kd", n))
    if np.any(kp <= 0) or np.any(kd < 0):
        raise gains.error("kp", "kp must be > 0 and kd >= 0")
    gains.finish()

    ws = r.child("reach_workspace", {"low": [0.3, -0.3, 0.2], "high": [0.6, 0.3, 0.6]})
    reach_low = np.array(ws.numbers("low", 3))
    reach_high = np.array(ws.numbers("high", 3))
    if np.any(reach_low >= reach_high):
        raise ws.error("low", "each low value must be below its high value")
    ws.finish()
    provenance = r.raw("provenance", None)
    if provenance is not None and not isinstance(provenance, dict):
        raise r.error("provenance", f"expected a mapping, got {type(provenance).__name__}")
    r.finish()

    for arr in (lower, upper, vel, effort, pose, kp, kd, reach_low, reach_high):
        arr.setflags(write=False)
    return RobotProfile(
        name=name, mjcf_path=mjcf, joint_names=tuple(joints), actuator_names=tuple(actuators),
        link_names=tuple(links), end_effector_site=ee_site, target_body=target_body,
        position_lower_rad=lower, position_upper_rad=upper, velocity_limit_rad_s=vel,
        effort_limit_nm=effort, default_pose_rad=pose, control_rate_hz=control_hz,
        physics_rate_hz=physics_hz, kp=kp, kd=kd, reach_low_m=reach_low,
        reach_high_m=reach_high, source=source, provenance=provenance)
