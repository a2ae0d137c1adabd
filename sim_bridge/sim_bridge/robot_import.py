"""Bring your own arm: build the MJCF and the robot profile from the robot's URDF, and check them.

``sim2real robot import`` and ``sim2real robot check`` are thin shells over this module (no
ROS here: the app reads a live ``/robot_description`` and hands the text in).

Import (:func:`import_robot`)
    1. The URDF is read (:func:`parse_urdf`: every joint's type, parent, child, limits), the
       controller file gives the joint order (:func:`read_controllers`: the ros2_control
       controller's ``joints``, optional ``gains``, the controller manager's ``update_rate``).
    2. The URDF is prepared for MuJoCo's own URDF compiler (``mujoco.MjSpec.from_string``):
       ``package://`` meshes are resolved through the ament index or ``--mesh-dir`` folders
       and copied next to the MJCF; a mesh that cannot be found or read becomes a primitive
       (a cylinder from the link to its child joint), said in a warning; a moving link
       without inertia gets :data:`DEFAULT_LINK_MASS_KG` / :data:`DEFAULT_LINK_INERTIA_KG_M2`,
       said in a warning; locked joints become fixed.
    3. The compiled arm gets the stack's scene (as ``models/arm7.xml``): table top at z = 0,
       floor, light, the ``target`` mocap body, an ``ee_site`` on the end-effector link, and
       one position actuator per joint. Contacts: arm geoms contype 1 / conaffinity 0, table
       contype 0 / conaffinity 1 (no self-collision); URDF visual geoms never collide.
    4. Forward kinematics is sampled (:func:`sample_reach`) for the reach workspace box and
       the default pose; gains come from the controller file or from the effort limit and
       the joint inertia (:func:`estimate_gains`).
    5. ``NAME.xml``, ``NAME.yaml`` (the profile, with ``provenance``: source, URDF sha256,
       controller file, stated defaults, warnings) and ``meshes/`` are written into a fresh
       folder that replaces ``out`` in one rename: nothing is written on failure.

Check (:func:`check_robot`)
    The profile is compiled; zero-mass links, a joint order that differs from the controller
    file and a workspace the scripted reach oracle cannot reach fail the check with reasons.

Errors are :class:`sim_bridge.config.ConfigError` naming the file (or topic) and the element.
"""
from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np
import yaml

from sim_bridge.config import ConfigError, load_yaml_file, read_config_text, short_repr
from sim_bridge.profile import PROFILE_VERSION, RobotProfile, load_profile

MAX_URDF_BYTES = 16 << 20              # a URDF with inline xacro output stays far below this
MESH_FORMATS = (".stl", ".obj", ".msh")  # what MuJoCo reads (no .dae: Collada becomes a primitive)
MOVABLE = ("revolute", "prismatic", "continuous")
XACRO_NAMESPACE = "{http://www.ros.org/wiki/xacro}"
# Stated defaults (each use is a warning and is recorded in the profile's provenance).
DEFAULT_LINK_MASS_KG = 1.0
DEFAULT_LINK_INERTIA_KG_M2 = 1.0e-3    # diagonal, at the link origin (a 1 kg sphere of r = 5 cm)
DEFAULT_ARMATURE_KG_M2 = 0.1           # reflected rotor inertia, as models/arm7.xml
FALLBACK_RADIUS_M = 0.03               # radius of the primitive that replaces a missing mesh
# Gains when the controller file has none: kp = effort / ERROR_AT_FULL_EFFORT_RAD (full effort at
# 3 degrees of error, like arm7's 87 Nm / 1200), capped for a stable explicit step:
# sqrt(kp / M_jj) * dt <= MAX_OMEGA_DT; kd = 2 sqrt(kp M_jj) (critically damped at the default pose).
ERROR_AT_FULL_EFFORT_RAD = 0.05
MAX_OMEGA_DT = 0.25
MIN_LINK_MASS_KG = 1.0e-3              # robot check: a moving link lighter than this is "zero mass"
TABLE_THICKNESS_M = 0.04
RESERVED_BODIES = frozenset({"target"})  # bodies the scene adds (geoms: table, floor; sites: ee_site, target_site)
SEEDS_PER_POINT = 4                    # IK starts (the nearest sampled poses) per workspace grid point
ARM_GROUP, HIDDEN_GROUP = 1, 3


# The arm emulator's hidden physics for an imported arm (`sim2real real --emulator-hidden`): the
# shipped emulator_hidden.yaml's deviations from nominal, without per-link names (every entry
# targets all the profile's links or joints, one shared value).
EMULATOR_HIDDEN_FILE = "emulator_hidden.yaml"
EMULATOR_HIDDEN_TEXT = """\
# Hidden physics of the arm emulator for '{name}' (written by `sim2real robot import`): one fixed
# arm, heavier, more damped and softer than nominal, with latency, noise and stiction, as the
# shipped real_bridge/config/emulator_hidden.yaml but one shared value per group (no link names).
# Use: sim2real real --robot-profile {name}.yaml --emulator-hidden emulator_hidden.yaml
randomization_version: 1
description: Hidden physics of the arm emulator for the imported arm '{name}'.
parameters:
  body_mass: {{shared: true, operation: scale, distribution: normal, mean: 1.22, std: 0.0, low: 0.5, high: 1.5}}
  joint_damping: {{shared: true, operation: scale, distribution: normal, mean: 1.8, std: 0.0, low: 0.3, high: 3.0}}
  joint_armature: {{shared: true, operation: scale, distribution: normal, mean: 1.1, std: 0.0, low: 0.8, high: 1.2}}
  geom_friction: {{shared: true, operation: scale, distribution: normal, mean: 0.9, std: 0.0, low: 0.7, high: 1.3}}
  actuator_kp: {{shared: true, operation: scale, distribution: normal, mean: 0.85, std: 0.0, low: 0.75, high: 1.5}}
  actuator_kd: {{shared: true, operation: scale, distribution: normal, mean: 1.2, std: 0.0, low: 0.5, high: 2.0}}
  gravity/x: {{kind: gravity, targets: [x], shared: true, operation: add, distribution: normal, mean: 0.25, std: 0.0}}
  gravity/y: {{kind: gravity, targets: [y], shared: true, operation: add, distribution: normal, mean: -0.15, std: 0.0}}
  gravity/z: {{kind: gravity, targets: [z], shared: true, operation: add, distribution: normal, mean: -0.30, std: 0.0}}
  action_latency: {{operation: abs, distribution: normal, mean: 1.3, std: 0.0, low: 0.0, high: 2.0}}
  obs_noise_joint_pos: {{kind: obs_noise_std, targets: [joint_pos], operation: abs, distribution: normal,
                        mean: 0.0005, std: 0.0, low: 0.0, high: 0.005}}
  joint_frictionloss: {{shared: true, operation: add, distribution: normal, mean: 0.35, std: 0.0, low: 0.0, high: 1.0}}
emulator:
  seed: 20240611              # noise stream; the physics above are fixed and need none
  encoder_bits: 16            # joint positions quantized to 2*pi / 2^16 rad; 0 = not quantized
  velocity: finite_difference # finite_difference (of quantized positions) | simulator (noisy true velocity)
  frictionloss_solref: [0.004, 1.0]
  frictionloss_solimp: [0.999, 0.9999, 0.001, 0.5, 2.0]
"""


# --- the URDF ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class UrdfJoint:
    name: str
    type: str
    parent: str
    child: str
    element: ET.Element = field(repr=False, compare=False)


@dataclass(frozen=True)
class Urdf:
    """A parsed URDF: the XML tree and its joints (document order)."""

    text: str
    label: str                      # the file path, or "topic /robot_description"
    base_dir: Path | None           # folder of the file (relative mesh paths); None for a topic
    root: ET.Element = field(repr=False)
    links: dict[str, ET.Element] = field(repr=False)
    joints: tuple[UrdfJoint, ...]
    root_link: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def error(self, element: str, message: str) -> ConfigError:
        return ConfigError(message, source=self.label, field=element)

    def movable(self) -> list[UrdfJoint]:
        return [j for j in self.joints if j.type in MOVABLE]


def read_urdf_file(path: str | os.PathLike) -> Urdf:
    path = Path(path)
    text = read_config_text(path, max_bytes=MAX_URDF_BYTES)
    return parse_urdf(text, label=str(path), base_dir=path.resolve().parent)


def parse_urdf(text: str, *, label: str, base_dir: Path | None = None) -> Urdf:
    """Parse URDF text; ConfigError names ``label`` and the element for anything malformed."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line, col = exc.position
        reason = str(exc).split(":")[0]
        raise ConfigError(f"not valid XML at line {line}, column {col + 1} ({reason})", source=label,
                          kind="not valid XML") from None
    if root.tag != "robot":
        raise ConfigError(f"the root element is <{root.tag}>, a URDF's is <robot>", source=label, field="<robot>")
    xacro = next((el.tag.split("}")[-1] for el in root.iter() if el.tag.startswith(XACRO_NAMESPACE)), None)
    if xacro is not None or "${" in text:
        raise ConfigError("this is a xacro file (" + (f"<xacro:{xacro}>" if xacro else "${...}") + "), not a URDF; "
                          "expand it first: xacro FILE.urdf.xacro > FILE.urdf", source=label, field="<robot>")
    links: dict[str, ET.Element] = {}
    for link in root.findall("link"):
        name = link.get("name")
        if not name:
            raise ConfigError("a <link> without a name", source=label, field="<link>")
        if name in links:
            raise ConfigError(f"two links named '{name}'", source=label, field=f"link '{name}'")
        links[name] = link
    if not links:
        raise ConfigError("no <link> elements", source=label, field="<robot>")
    joints, parent_of = [], {}
    for el in root.findall("joint"):
        name = el.get("name")
        where = f"joint '{name}'" if name else "<joint>"
        if not name:
            raise ConfigError("a <joint> without a name", source=label, field=where)
        if name in {j.name for j in joints}:
            raise ConfigError(f"two joints named '{name}'", source=label, field=where)
        jtype = el.get("type")
        if jtype not in (*MOVABLE, "fixed", "floating", "planar"):
            raise ConfigError(f"type {jtype!r} is not a URDF joint type", source=label, field=f"{where} type")
        ends = {}
        for end in ("parent", "child"):
            sub = el.find(end)
            ends[end] = sub.get("link") if sub is not None else None
            if not ends[end]:
                raise ConfigError(f"missing <{end} link=...>", source=label, field=f"{where} <{end}>")
            if ends[end] not in links:
                raise ConfigError(f"<{end} link='{ends[end]}'> names no <link>", source=label,
                                  field=f"{where} <{end}>")
        if ends["child"] in parent_of:
            raise ConfigError(f"link '{ends['child']}' is the child of two joints ('{parent_of[ends['child']]}' "
                              f"and '{name}'); a URDF is a tree", source=label, field=f"{where} <child>")
        parent_of[ends["child"]] = name
        joints.append(UrdfJoint(name, jtype, ends["parent"], ends["child"], el))
    roots = [n for n in links if n not in parent_of]
    if len(roots) != 1:
        raise ConfigError(f"expected one root link, found {roots or 'none (a cycle)'}", source=label,
                          field="<robot>")
    return Urdf(text=text, label=label, base_dir=base_dir, root=root, links=links, joints=tuple(joints),
                root_link=roots[0])


# --- the controller file ----------------------------------------------------------------------
@dataclass(frozen=True)
class Controllers:
    """The controller the policy commands, from a ros2_control controllers YAML."""

    path: Path
    name: str
    joints: tuple[str, ...]
    kp: dict[str, float]
    kd: dict[str, float]
    update_rate_hz: float | None

    @property
    def joints_field(self) -> str:
        return f"{self.name}.ros__parameters.joints"


def _ros_parameters(data: dict) -> dict[str, dict]:
    """node name (namespace and wildcard prefixes dropped) -> its ros__parameters mapping."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(value.get("ros__parameters"), dict):
            out[str(key).rsplit("/", 1)[-1]] = value["ros__parameters"]
    return out


def read_controllers(path: str | os.PathLike, controller: str | None = None) -> Controllers:
    """The joint order (and gains, update rate) of ``controller`` in a ros2_controllers.yaml;
    None: the file's one controller that lists ``joints``."""
    path = Path(path)
    data = load_yaml_file(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of node names to ros__parameters", source=path)
    nodes = _ros_parameters(data)
    with_joints = {n: p for n, p in nodes.items() if "joints" in p}
    if controller is None:
        if len(with_joints) != 1:
            raise ConfigError(f"{len(with_joints)} controllers list joints ({sorted(with_joints)}); name the one "
                              "the policy commands with --controller", source=path, field="--controller")
        controller = next(iter(with_joints))
    if controller not in nodes:
        raise ConfigError(f"no controller '{controller}' (controllers with joints: {sorted(with_joints)})",
                          source=path, field=f"{controller}.ros__parameters")
    params = nodes[controller]
    joints = params.get("joints")
    fld = f"{controller}.ros__parameters.joints"
    if (not isinstance(joints, list) or not joints or not all(isinstance(j, str) for j in joints)):
        raise ConfigError(f"expected a list of joint names, got {short_repr(joints)}", source=path, field=fld)
    if len(set(joints)) != len(joints):
        raise ConfigError(f"a joint is listed twice: {joints}", source=path, field=fld)
    kp, kd = {}, {}
    gains = params.get("gains") or {}
    if not isinstance(gains, dict):
        raise ConfigError(f"expected a mapping joint -> {{p, d}}, got {short_repr(gains)}", source=path,
                          field=f"{controller}.ros__parameters.gains")
    for joint, g in gains.items():
        gfld = f"{controller}.ros__parameters.gains.{joint}"
        if not isinstance(g, dict):
            raise ConfigError(f"expected a mapping {{p, d}}, got {short_repr(g)}", source=path, field=gfld)
        for key, out in (("p", kp), ("d", kd)):
            if key in g:
                v = g[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise ConfigError(f"{key} must be a finite number >= 0, got {short_repr(v)}", source=path,
                                      field=f"{gfld}.{key}")
                out[joint] = float(v)
    rate = None
    manager = nodes.get("controller_manager", {})
    if "update_rate" in manager:
        rate = manager["update_rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
            raise ConfigError(f"expected a rate in Hz > 0, got {short_repr(rate)}", source=path,
                              field="controller_manager.ros__parameters.update_rate")
        rate = float(rate)
    return Controllers(path=path, name=controller, joints=tuple(joints), kp=kp, kd=kd, update_rate_hz=rate)


# --- meshes -----------------------------------------------------------------------------------
def ament_share_dir(package: str) -> Path | None:
    """``share/<package>`` of an installed ROS package (ament index), or None."""
    try:
        from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415
        return Path(get_package_share_directory(package))
    except Exception:  # noqa: BLE001 - not installed, no AMENT_PREFIX_PATH, no ament_index_python
        pass
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        share = Path(prefix) / "share" / package
        if share.is_dir():
            return share
    return None


def mesh_candidates(filename: str, *, base_dir: Path | None, mesh_dirs: tuple[Path, ...]) -> list[Path]:
    """Where a URDF mesh ``filename`` may be, in the order they are tried."""
    out: list[Path] = []
    if filename.startswith("package://"):
        package, _, rel = filename[len("package://"):].partition("/")
        share = ament_share_dir(package)
        if share is not None:
            out.append(share / rel)
        for d in mesh_dirs:
            out += [d / package / rel, d / rel, d / Path(rel).name]
        return out
    if filename.startswith("file://"):
        filename = filename[len("file://"):]
    path = Path(filename)
    if path.is_absolute():
        out.append(path)
    elif base_dir is not None:
        out.append(base_dir / path)
    for d in mesh_dirs:
        out += [d / path, d / path.name]
    return out


# --- import -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportOptions:
    name: str
    controllers: Path | None = None
    controller: str | None = None
    mesh_dirs: tuple[Path, ...] = ()
    ee_link: str | None = None
    lock_joints: tuple[str, ...] = ()
    continuous_range_rad: float | None = None
    control_rate_hz: float = 50.0
    physics_rate_hz: float = 500.0
    fk_samples: int = 8000
    seed: int = 0


@dataclass
class ImportResult:
    out_dir: Path
    profile_path: Path
    mjcf_path: Path
    profile: RobotProfile
    warnings: list[str]
    elapsed_s: float
    meshes: int
    fallbacks: int


def import_robot(urdf: Urdf, options: ImportOptions, out_dir: str | os.PathLike, *, force: bool = False,
                 log=None) -> ImportResult:
    """Build ``out_dir/NAME.xml`` + ``out_dir/NAME.yaml`` (+ ``meshes/``) from ``urdf``.

    ``out_dir`` appears complete or not at all; an existing one is replaced only with ``force``.
    ``log(message)`` gets each warning as it happens."""
    start = time.monotonic()
    out_dir = Path(out_dir)
    _check_name(options.name)
    if out_dir.exists() and not force:
        raise ConfigError(f"{out_dir} exists; choose another --out or pass --force to replace it",
                          source=out_dir, kind="output exists")
    made = [p for p in (out_dir.parent, *out_dir.parent.parents) if not p.exists()]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        builder = _Builder(urdf, options, tmp, log)
        builder.build()
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:  # nothing written on failure: not even the parent folders
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    profile_path = out_dir / f"{options.name}.yaml"
    profile = load_profile(profile_path)
    return ImportResult(out_dir=out_dir, profile_path=profile_path, mjcf_path=out_dir / f"{options.name}.xml",
                        profile=profile, warnings=builder.warnings, elapsed_s=time.monotonic() - start,
                        meshes=len(builder.mesh_copies), fallbacks=builder.fallbacks)


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ConfigError(f"robot name {name!r}: use letters, digits, '_' and '-' (it names files)",
                          field="--name")


def _floats(text: str | None, n: int, default: float = 0.0) -> np.ndarray:
    if text is None:
        return np.full(n, default)
    values = np.array([float(v) for v in text.split()])
    if values.shape != (n,):
        raise ValueError(f"expected {n} numbers, got {text!r}")
    return values


class _Builder:
    """One import: prepares the URDF, compiles it with MuJoCo, adds the scene, writes the files."""

    def __init__(self, urdf: Urdf, options: ImportOptions, folder: Path, log):
        self.urdf, self.options, self.folder = urdf, options, folder
        self.log = log or (lambda message: None)
        self.warnings: list[str] = []
        self.defaults: list[str] = []
        self.mesh_copies: dict[Path, str] = {}
        self.fallbacks = 0

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log(message)

    # --- 1. joints and controller file --------------------------------------------------------
    def joint_order(self) -> tuple[list[str], Controllers | None]:
        urdf, opts = self.urdf, self.options
        names = {j.name: j for j in urdf.joints}
        for locked in opts.lock_joints:
            if locked not in names:
                raise ConfigError(f"no joint '{locked}' in the URDF {urdf.label}", field="--lock-joints")
        for link in urdf.links:
            if link in RESERVED_BODIES:
                raise urdf.error(f"link '{link}'", "the name is used by the stack's scene "
                                 f"({sorted(RESERVED_BODIES)}); rename the link")
        movable = [j.name for j in urdf.movable() if j.name not in opts.lock_joints]
        for j in urdf.joints:
            if j.type in ("floating", "planar") and j.name not in opts.lock_joints:
                raise urdf.error(f"joint '{j.name}' type", f"a {j.type} joint cannot be position-controlled; "
                                 "lock it with --lock-joints (it becomes fixed)")
        ctl = read_controllers(opts.controllers, opts.controller) if opts.controllers else None
        if ctl is None:
            self.warn(f"no controller file (--controllers): the joint order is the URDF's {movable}; the real "
                      "bridge must use the same order")
            return movable, None
        for j in ctl.joints:
            if j not in names:
                raise ConfigError(f"joint '{j}' is not in the URDF {urdf.label} (its joints: {list(names)})",
                                  source=ctl.path, field=ctl.joints_field)
            if j in opts.lock_joints:
                raise ConfigError(f"joint '{j}' is commanded by the controller but locked by --lock-joints",
                                  source=ctl.path, field=ctl.joints_field)
            if names[j].type not in MOVABLE:
                raise ConfigError(f"joint '{j}' is a {names[j].type} joint in the URDF {urdf.label}",
                                  source=ctl.path, field=ctl.joints_field)
        missing = [j for j in movable if j not in ctl.joints]
        if missing:
            raise ConfigError(f"URDF joint(s) {missing} of {urdf.label} are missing from the controller's joints "
                              f"{list(ctl.joints)}; add them, or lock them (--lock-joints {','.join(missing)}) so "
                              "the simulation holds them fixed", source=ctl.path, field=ctl.joints_field)
        return list(ctl.joints), ctl

    # --- 2. prepare the URDF for MuJoCo --------------------------------------------------------
    def prepare(self, joints: list[str]) -> str:
        urdf, opts = self.urdf, self.options
        root = ET.fromstring(urdf.text)  # a copy to edit
        links = {el.get("name"): el for el in root.findall("link")}
        child_of_movable = set()
        for el in root.findall("joint"):
            name, jtype = el.get("name"), el.get("type")
            where = f"joint '{name}'"
            if name in opts.lock_joints:
                el.set("type", "fixed")
                self.warn(f"{where} locked (fixed at 0)")
                continue
            if jtype not in MOVABLE:
                continue
            child_of_movable.add(el.find("child").get("link"))
            limit = el.find("limit")
            if jtype == "continuous":
                if opts.continuous_range_rad is None:
                    raise urdf.error(f"{where} type", "a continuous joint has no position limits; give the range "
                                     "a policy may use with --continuous-range-rad R (limits become [-R, R])")
                el.set("type", "revolute")
                if limit is None:
                    limit = ET.SubElement(el, "limit")
                r = opts.continuous_range_rad
                limit.set("lower", repr(-r)), limit.set("upper", repr(r))
                self.warn(f"{where} is continuous: limited to [-{r:g}, {r:g}] rad (--continuous-range-rad)")
            if limit is None:
                raise urdf.error(f"{where} <limit>", f"a {jtype} joint needs <limit lower upper effort velocity>")
            values = {}
            for key in ("lower", "upper", "effort", "velocity"):
                try:
                    values[key] = float(limit.get(key, "nan"))
                except ValueError:
                    raise urdf.error(f"{where} <limit {key}>", f"not a number: {limit.get(key)!r}") from None
                if not math.isfinite(values[key]):
                    raise urdf.error(f"{where} <limit {key}>", "missing (the stack needs position, effort and "
                                     "velocity limits for every commanded joint)")
            if values["lower"] >= values["upper"]:
                raise urdf.error(f"{where} <limit>", f"lower {values['lower']} must be below upper {values['upper']}")
            for key in ("effort", "velocity"):
                if values[key] <= 0:
                    raise urdf.error(f"{where} <limit {key}>", f"must be > 0, got {values[key]}")
        fixed_children: dict[str, list[str]] = {}
        for el in root.findall("joint"):
            if el.get("type") == "fixed":
                fixed_children.setdefault(el.find("parent").get("link"), []).append(el.find("child").get("link"))
        for name in sorted(child_of_movable):
            welded, stack = [], list(fixed_children.get(name, []))
            while stack:  # links fixed to this one move with it: their mass counts
                welded.append(stack.pop())
                stack += fixed_children.get(welded[-1], [])
            if not any(_has_mass(links[w]) for w in welded):
                self._check_inertial(links[name], name)
        for name, link in links.items():
            self._prepare_meshes(link, name, root)
        for old in root.findall("mujoco"):
            root.remove(old)
            self.warn("the URDF's <mujoco> element was replaced by the importer's compiler settings")
        ext = ET.Element("mujoco")
        ET.SubElement(ext, "compiler", {
            "fusestatic": "false", "discardvisual": "false", "strippath": "false", "inertiafromgeom": "false",
            "balanceinertia": "true", "meshdir": str(self.folder / "meshes"), "angle": "radian"})
        root.insert(0, ext)
        return ET.tostring(root, encoding="unicode")

    def _check_inertial(self, link: ET.Element, name: str) -> None:
        inertial = link.find("inertial")
        reason = None
        if inertial is None:
            reason = "has no <inertial>"
        else:
            mass_el, inertia_el = inertial.find("mass"), inertial.find("inertia")
            try:
                mass = float(mass_el.get("value")) if mass_el is not None else float("nan")
            except (TypeError, ValueError):
                mass = float("nan")
            if not (mass > 0):
                reason = f"<inertial><mass> is {mass_el.get('value') if mass_el is not None else 'missing'}"
            elif inertia_el is None:
                reason = "<inertial> has no <inertia>"
            else:
                try:
                    i = {k: float(inertia_el.get(k, "0")) for k in ("ixx", "ixy", "ixz", "iyy", "iyz", "izz")}
                except ValueError:
                    raise self.urdf.error(f"link '{name}' <inertia>", "a value is not a number") from None
                tensor = np.array([[i["ixx"], i["ixy"], i["ixz"]], [i["ixy"], i["iyy"], i["iyz"]],
                                   [i["ixz"], i["iyz"], i["izz"]]])
                ev = np.linalg.eigvalsh(tensor)
                if ev[0] <= 0:
                    reason = f"<inertia> is not positive definite (principal moments {np.round(ev, 9).tolist()})"
                elif ev[0] + ev[1] < ev[2] * (1 - 1e-9):
                    self.warn(f"link '{name}' <inertia> violates the triangle inequality "
                              f"(principal moments {np.round(ev, 9).tolist()}): MuJoCo balances it "
                              "(compiler balanceinertia)")
        if reason is None:
            return
        if inertial is not None:
            link.remove(inertial)
        inertial = ET.SubElement(link, "inertial")
        ET.SubElement(inertial, "mass", {"value": repr(DEFAULT_LINK_MASS_KG)})
        d = repr(DEFAULT_LINK_INERTIA_KG_M2)
        ET.SubElement(inertial, "inertia", {"ixx": d, "iyy": d, "izz": d, "ixy": "0", "ixz": "0", "iyz": "0"})
        stated = (f"link '{name}' {reason}: using the stated default {DEFAULT_LINK_MASS_KG} kg, diagonal inertia "
                  f"{DEFAULT_LINK_INERTIA_KG_M2} kg m^2 at the link origin (put the real values in the URDF)")
        self.defaults.append(stated)
        self.warn(stated)

    def _prepare_meshes(self, link: ET.Element, name: str, root: ET.Element) -> None:
        has_collision = link.find("collision") is not None
        for kind in ("collision", "visual"):
            for element in list(link.findall(kind)):
                mesh = element.find("geometry/mesh")
                if mesh is None:
                    continue
                filename = mesh.get("filename", "")
                tried = mesh_candidates(filename, base_dir=self.urdf.base_dir, mesh_dirs=self.options.mesh_dirs)
                found = next((p for p in tried if p.is_file()), None)
                if found is not None and found.suffix.lower() in MESH_FORMATS:
                    mesh.set("filename", self._copy_mesh(found))
                    continue
                why = (f"is a {found.suffix} file, which MuJoCo does not read ({', '.join(MESH_FORMATS)})"
                       if found is not None else
                       f"was not found (looked in: {', '.join(str(p) for p in tried) or 'nowhere: give --mesh-dir'})")
                if kind == "visual" and has_collision:
                    link.remove(element)
                    self.warn(f"link '{name}' visual mesh '{filename}' {why}: drawn with its collision shape")
                    continue
                self._fallback(element, name, root)
                self.fallbacks += 1
                self.warn(f"link '{name}' {kind} mesh '{filename}' {why}: replaced by a primitive cylinder "
                          f"(r = {FALLBACK_RADIUS_M} m) from the link to its child joint")

    def _copy_mesh(self, path: Path) -> str:
        path = path.resolve()
        if path not in self.mesh_copies:
            used = {Path(v).stem for v in self.mesh_copies.values()}  # MuJoCo names a mesh by its stem
            stem, n = path.stem, 1
            while stem in used:
                n += 1
                stem = f"{path.stem}_{n}"
            target = f"{stem}{path.suffix.lower()}"
            (self.folder / "meshes").mkdir(exist_ok=True)
            shutil.copyfile(path, self.folder / "meshes" / target)
            self.mesh_copies[path] = target
        return self.mesh_copies[path]

    def _fallback(self, element: ET.Element, link: str, root: ET.Element) -> None:
        """Replace the geometry with a cylinder from the link origin to its first child joint."""
        child = next((j for j in root.findall("joint") if j.find("parent").get("link") == link), None)
        try:
            origin = child.find("origin") if child is not None else None
            tip = _floats(origin.get("xyz"), 3) if origin is not None else np.zeros(3)
        except ValueError as exc:
            raise self.urdf.error(f"joint '{child.get('name')}' <origin xyz>", str(exc)) from None
        for old in element.findall("origin"):
            element.remove(old)
        geometry = element.find("geometry")
        for old in list(geometry):
            geometry.remove(old)
        length = float(np.linalg.norm(tip))
        if length < 2 * FALLBACK_RADIUS_M:
            ET.SubElement(geometry, "sphere", {"radius": repr(FALLBACK_RADIUS_M)})
            return
        pitch = math.atan2(math.hypot(tip[0], tip[1]), tip[2])  # z axis onto the link direction
        yaw = math.atan2(tip[1], tip[0])
        ET.SubElement(element, "origin", {"xyz": " ".join(repr(float(v)) for v in tip / 2),
                                          "rpy": f"0 {pitch!r} {yaw!r}"})
        ET.SubElement(geometry, "cylinder", {"radius": repr(FALLBACK_RADIUS_M), "length": repr(length)})

    # --- 3. compile and add the scene ------------------------------------------------------------
    def compile_arm(self, text: str) -> mujoco.MjSpec:
        try:
            spec = mujoco.MjSpec.from_string(text)
            spec.compile()
        except ValueError as exc:
            raise self.urdf.error("(MuJoCo's URDF compiler)", str(exc).replace("\n", " ")) from None
        return spec

    def _compile(self, spec: mujoco.MjSpec) -> mujoco.MjModel:
        try:
            return spec.compile()
        except ValueError as exc:  # e.g. a URDF name that the stack's scene also uses
            raise self.urdf.error("(MuJoCo, after adding the scene)", str(exc).replace("\n", " ")) from None

    def end_effector_link(self, joints: list[str]) -> str:
        urdf = self.urdf
        by_child = {j.child: j for j in urdf.joints}
        if self.options.ee_link is not None:
            if self.options.ee_link not in urdf.links:
                raise ConfigError(f"no link '{self.options.ee_link}' in the URDF {urdf.label}", field="--ee-link")
            return self.options.ee_link

        def depth(link):
            d = 0
            while link in by_child:
                link, d = by_child[link].parent, d + 1
            return d
        last = max((j for j in urdf.joints if j.name in joints), key=lambda j: depth(j.child))
        link = last.child
        while True:  # follow a single chain of fixed joints (flange, tool0)
            fixed = [j for j in urdf.joints if j.parent == link and
                     (j.type == "fixed" or j.name in self.options.lock_joints)]
            if len(fixed) != 1 or any(j.parent == link and j.type in MOVABLE and j.name not in
                                      self.options.lock_joints for j in urdf.joints):
                return link
            link = fixed[0].child

    def add_scene(self, spec: mujoco.MjSpec, joints: list[str], ee_link: str) -> None:
        o = self.options
        spec.modelname = o.name
        spec.option.timestep = 1.0 / o.physics_rate_hz
        spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        # Inertia from geoms only where a body states none (MuJoCo's default): the URDF's links all
        # have their <inertial> or none (massless frames, whose geoms get density 0 here), and a
        # task's bodies (the Push puck) take their mass from their geoms.
        spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_AUTO
        for body in spec.bodies:
            if body.name == "world":
                continue
            geoms = list(body.geoms)
            if not body.explicitinertial:
                for g in geoms:
                    g.density = 0.0
            visual = [g for g in geoms if g.contype == 0 and g.conaffinity == 0]
            collision = [g for g in geoms if g not in visual]
            for i, g in enumerate(collision):
                g.name = g.name or f"{body.name}_collision{i}"
                g.contype, g.conaffinity = 1, 0
                g.group = HIDDEN_GROUP if visual else ARM_GROUP
                g.rgba = [0.92, 0.92, 0.92, 1] if not visual else g.rgba
            for i, g in enumerate(visual):
                g.name = g.name or f"{body.name}_visual{i}"
                g.group = ARM_GROUP
        for joint in spec.joints:
            if joint.armature == 0:
                joint.armature = DEFAULT_ARMATURE_KG_M2
        self.defaults.append(f"joint armature {DEFAULT_ARMATURE_KG_M2} kg m^2 (a URDF has none; as models/arm7.xml)")
        grid = spec.add_texture(name="grid", type=mujoco.mjtTexture.mjTEXTURE_2D,
                                builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, rgb1=[0.25, 0.28, 0.32],
                                rgb2=[0.2, 0.22, 0.26], width=256, height=256)
        floor = spec.add_material(name="floor", texrepeat=[8, 8])
        floor.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = grid.name
        spec.add_material(name="table", rgba=[0.55, 0.42, 0.3, 1])
        world = spec.worldbody
        world.add_light(pos=[0, -1.5, 2.5], dir=[0, 0.5, -1], diffuse=[0.8, 0.8, 0.8])
        target = world.add_body(name="target", mocap=True, pos=[0.5, 0, 0.4])
        target.add_site(name="target_site", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.02, 0, 0],
                        rgba=[0.1, 0.8, 0.2, 0.6], group=0)
        spec.body(ee_link).add_site(name="ee_site", size=[0.01, 0, 0], rgba=[1, 0.5, 0, 1], group=2)
        for j in joints:
            act = spec.add_actuator(name=f"act_{j}", target=j, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_position(kp=1.0, kv=0.0)  # real gains below, once the model is sampled

    def add_table(self, spec: mujoco.MjSpec, reach_m: float) -> None:
        """Table top at z = 0 under the arm and its reach (as arm7.xml: 1.2 x 1.6 m at least)."""
        x_lo, x_hi = -0.25, max(0.95, reach_m + 0.15)
        half_y = max(0.8, reach_m + 0.15)
        world = spec.worldbody
        t = TABLE_THICKNESS_M / 2
        world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1], pos=[0, 0, -0.75],
                       material="floor", contype=0, conaffinity=1)
        world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, size=[(x_hi - x_lo) / 2, half_y, t],
                       pos=[(x_hi + x_lo) / 2, 0, -t], material="table", contype=0, conaffinity=1)

    # --- 4/5. sample, write -------------------------------------------------------------------
    def build(self) -> None:
        o, urdf = self.options, self.urdf
        if not (o.control_rate_hz > 0 and o.physics_rate_hz > 0):
            raise ConfigError("rates must be > 0", field="--control-rate-hz")
        joints, ctl = self.joint_order()
        spec = self.compile_arm(self.prepare(joints))
        ee_link = self.end_effector_link(joints)
        self.add_scene(spec, joints, ee_link)
        model = self._compile(spec)
        lower, upper, velocity, effort = self._limits(model, joints)
        reach = sample_reach(model, joints, "ee_site", lower, upper, n=o.fk_samples, seed=o.seed)
        if reach.box is None:
            raise ConfigError(f"no reachable workspace above the table: of {o.fk_samples} sampled poses none keeps "
                              f"the arm above z = 0 with '{ee_link}' 2 cm over the table (is the base link "
                              "the root and z up?)", source=urdf.label, field="(workspace)")
        self.add_table(spec, reach.max_reach_m)
        pose = reach.default_pose
        kp, kd, gain_source = estimate_gains(model, joints, pose, effort, ctl)
        if ctl is not None and ctl.update_rate_hz is not None and ctl.update_rate_hz < o.control_rate_hz:
            self.warn(f"the controller manager runs at {ctl.update_rate_hz:g} Hz, below the policy's "
                      f"{o.control_rate_hz:g} Hz")
        for j, name in enumerate(joints):
            act = spec.actuator(f"act_{name}")
            act.set_to_position(kp=float(kp[j]), kv=float(kd[j]))
            act.ctrlrange = [float(lower[j]), float(upper[j])]
            act.forcerange = [-float(effort[j]), float(effort[j])]
            act.ctrllimited = act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        spec.add_key(name="home", qpos=full_qpos(model, joints, pose).tolist(),
                     ctrl=[float(v) for v in pose], mpos=[0.5, 0, 0.4], mquat=[1, 0, 0, 0])
        self._compile(spec)
        mjcf = self.folder / f"{o.name}.xml"
        mjcf.write_text(self._mjcf_text(spec.to_xml(), ctl))
        links = [model.body(b).name for b in _moving_bodies(model)]
        provenance = {
            "source": urdf.label, "urdf_sha256": urdf.sha256, "imported_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                            time.gmtime()),
            "importer": "sim2real robot import (sim_bridge.robot_import)", "mujoco": mujoco.__version__,
            "controllers": None if ctl is None else {"file": str(ctl.path.resolve()), "controller": ctl.name,
                                                     "joints": list(ctl.joints),
                                                     "update_rate_hz": ctl.update_rate_hz},
            "end_effector_link": ee_link, "locked_joints": list(o.lock_joints), "gains": gain_source,
            "meshes": len(self.mesh_copies), "mesh_fallbacks": self.fallbacks,
            "workspace": {"fk_samples": o.fk_samples, "valid_samples": reach.valid, "seed": o.seed,
                          "coverage": round(reach.coverage, 3), "max_reach_m": round(reach.max_reach_m, 4)},
            "stated_defaults": list(self.defaults), "warnings": list(self.warnings),
        }
        profile = {
            "profile_version": PROFILE_VERSION, "name": o.name, "mjcf": mjcf.name,
            "joint_names": list(joints), "actuator_names": [f"act_{j}" for j in joints], "link_names": links,
            "end_effector_site": "ee_site", "target_body": "target",
            "limits": {"position_lower_rad": _r(lower), "position_upper_rad": _r(upper),
                       "velocity_rad_s": _r(velocity), "effort_nm": _r(effort)},
            "default_pose_rad": _r(pose), "control_rate_hz": float(o.control_rate_hz),
            "physics_rate_hz": float(o.physics_rate_hz),
            "gains": {"kp": _r(kp, 2), "kd": _r(kd, 3)},
            "reach_workspace": {"low": _r(reach.box[0], 3), "high": _r(reach.box[1], 3)},
            "provenance": provenance,
        }
        header = (f"# Robot profile of '{o.name}', written by `sim2real robot import` from {urdf.label}\n"
                  f"# (sha256 {urdf.sha256[:16]}...). Joint order = "
                  f"{'the controller ' + repr(ctl.name) + ' of ' + str(ctl.path) if ctl else 'the URDF'}.\n"
                  "# Check it with `sim2real robot check`; edit freely (the MJCF takes gains and limits from here).\n")
        (self.folder / f"{o.name}.yaml").write_text(header + yaml.safe_dump(profile, sort_keys=False, width=110))
        (self.folder / EMULATOR_HIDDEN_FILE).write_text(EMULATOR_HIDDEN_TEXT.format(name=o.name))
        load_profile(self.folder / f"{o.name}.yaml")  # the written files load and compile
        from sim_bridge.simulator import build_model  # noqa: PLC0415
        build_model(load_profile(self.folder / f"{o.name}.yaml"))

    def _limits(self, model, joints):
        lower, upper, velocity, effort = [], [], [], []
        by_name = {j.name: j for j in self.urdf.joints}
        for name in joints:
            jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            lo, hi = model.jnt_range[jid]
            limit = by_name[name].element.find("limit")
            lower.append(float(lo)), upper.append(float(hi))
            velocity.append(float(limit.get("velocity")))
            effort.append(float(limit.get("effort")))
        return (np.array(lower), np.array(upper), np.array(velocity), np.array(effort))

    def _mjcf_text(self, xml: str, ctl: Controllers | None) -> str:
        root = ET.fromstring(xml)
        compiler = root.find("compiler")
        if compiler is not None and self.mesh_copies:
            compiler.set("meshdir", "meshes")  # relative to this file (the copies)
        elif compiler is not None:
            compiler.attrib.pop("meshdir", None)
        ET.indent(root, space="  ")
        lines = [
            f"  {self.options.name}: written by `sim2real robot import` from {self.urdf.label}",
            f"  (URDF sha256 {self.urdf.sha256}) with MuJoCo {mujoco.__version__}'s URDF compiler.",
            "  Added: table top at z = 0, floor, light, the 'target' mocap body, 'ee_site' on the",
            "  end-effector link, one position actuator per joint (the robot profile's gains and limits",
            "  are written over these at load time), joint armature where the URDF has none.",
            "  Arm geoms collide with the table only (contype 1 / conaffinity 0 on the arm,",
            "  contype 0 / conaffinity 1 on the table); URDF visual geoms never collide.",
        ]
        return "<!--\n" + "\n".join(lines) + "\n-->\n" + ET.tostring(root, encoding="unicode") + "\n"


def _has_mass(link: ET.Element) -> bool:
    mass = link.find("inertial/mass")
    try:
        return mass is not None and float(mass.get("value", "0")) > 0
    except ValueError:
        return False


def _r(values, digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in values]


def _moving_bodies(model: mujoco.MjModel) -> list[int]:
    """Arm bodies that carry mass and move (not welded to the world, not mocap), in model order."""
    return [b for b in range(1, model.nbody)
            if model.body_weldid[b] != 0 and model.body_mocapid[b] < 0 and model.body_mass[b] > 0]


def full_qpos(model, joints, pose) -> np.ndarray:
    """The model's qpos with ``pose`` (``joints`` order) at those joints, qpos0 elsewhere."""
    qpos = model.qpos0.copy()
    for name, q in zip(joints, pose):
        qpos[model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]] = q
    return qpos


# --- workspace and gains ----------------------------------------------------------------------
@dataclass(frozen=True)
class Reach:
    box: tuple[np.ndarray, np.ndarray] | None   # reach workspace (low, high), m
    default_pose: np.ndarray | None
    max_reach_m: float
    coverage: float                             # share of the box's grid points near a sampled pose
    valid: int                                  # sampled poses with the arm above the table
    points: np.ndarray                          # end-effector positions of the valid samples


def sample_reach(model: mujoco.MjModel, joints, site: str, lower, upper, *, n: int = 8000, seed: int = 0,
                 min_coverage: float = 0.95) -> Reach:
    """Reach box and default pose from ``n`` uniform joint samples (forward kinematics).

    A pose is valid when every moving body origin is above the table (z >= 0) and the end
    effector is 2 cm above it. The box starts at the shipped arm's proportions of the horizontal
    reach R (98th percentile of the valid samples: x 0.35..0.75 R, y +-0.4 R, z 0.15..0.7 R) in
    the direction (+x, +y, -x, -y) that keeps the largest box, and shrinks about its centre
    until ``min_coverage`` of a 4x4x4 grid in it is reached: damped-least-squares IK from the
    nearest sample ends within 1 cm in a valid pose. The default pose is the valid sample near
    the box centre farthest (relative to each range) from every joint limit.
    """
    rng = np.random.default_rng(seed)
    fk = _Kinematics(model, joints, site, lower, upper)
    qs = rng.uniform(lower, upper, size=(n, len(joints)))
    ee = np.empty((n, 3))
    ok = np.empty(n, bool)
    for i, q in enumerate(qs):
        ee[i], ok[i] = fk.position(q)
    qs, ee = qs[ok], ee[ok]
    if len(ee) < 50:
        return Reach(None, None, 0.0, 0.0, int(ok.sum()), ee)
    radius = float(np.percentile(np.hypot(ee[:, 0], ee[:, 1]), 98))
    best = None
    for heading in (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi):
        c, s = math.cos(heading), math.sin(heading)
        corners = np.array([[0.35 * radius, -0.4 * radius], [0.75 * radius, 0.4 * radius]])
        xy = np.array([[c * x - s * y, s * x + c * y] for x, y in corners])
        low = np.array([xy[:, 0].min(), xy[:, 1].min(), max(0.05, 0.15 * radius)])
        high = np.array([xy[:, 0].max(), xy[:, 1].max(), 0.7 * radius])
        low, high, coverage = _shrink_to_coverage(fk, low, high, qs, ee, min_coverage)
        volume = float(np.prod(high - low))
        if best is None or volume > best[3] * 1.05:
            best = (low, high, coverage, volume)
        if coverage >= min_coverage and volume >= 0.9 * np.prod(np.array([0.4, 0.8, 0.55]) * radius):
            break  # the full-size box in the first direction: no need to look elsewhere
    low, high, coverage, volume = best
    if volume < 0.05 ** 3 or coverage < min_coverage:
        return Reach(None, None, radius, coverage, len(ee), ee)
    centre = (low + high) / 2
    dist = np.linalg.norm(ee - centre, axis=1)
    near = np.argsort(dist)[:max(20, len(ee) // 200)]
    span = np.asarray(upper) - np.asarray(lower)
    margin = np.min(np.minimum(qs[near] - lower, upper - qs[near]) / span, axis=1)
    pose = qs[near[int(np.argmax(margin))]]
    return Reach((low, high), pose, radius, coverage, len(ee), ee)


class _Kinematics:
    """Forward kinematics and a small IK on the nominal model (joint positions in ``joints`` order)."""

    def __init__(self, model, joints, site, lower, upper):
        self.model, self.data = model, mujoco.MjData(model)
        ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joints]
        self.qadr = np.array([model.jnt_qposadr[j] for j in ids])
        self.dadr = np.array([model.jnt_dofadr[j] for j in ids])
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        self.moving = np.array([b for b in range(1, model.nbody)
                                if model.body_weldid[b] != 0 and model.body_mocapid[b] < 0], dtype=int)
        self.lower, self.upper = np.asarray(lower, float), np.asarray(upper, float)
        self.jac = np.zeros((3, model.nv))

    def position(self, q) -> tuple[np.ndarray, bool]:
        """End-effector position and whether the pose keeps the arm above the table."""
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        ee = self.data.site_xpos[self.site].copy()
        valid = ee[2] >= 0.02 and (self.moving.size == 0 or self.data.xpos[self.moving, 2].min() >= 0.0)
        return ee, bool(valid)

    def reaches(self, target, q0, iterations: int = 60, tol_m: float = 0.01) -> bool:
        q = np.array(q0, float)
        for _ in range(iterations):
            ee, valid = self.position(q)
            err = target - ee
            if np.linalg.norm(err) < tol_m:
                return valid
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacSite(self.model, self.data, self.jac, None, self.site)
            jac = self.jac[:, self.dadr]
            dq = jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(3), err)
            q = np.clip(q + np.clip(dq, -0.3, 0.3), self.lower, self.upper)
        return False


def _shrink_to_coverage(fk: _Kinematics, low, high, qs, points, min_coverage, steps: int = 20):
    coverage = 0.0
    for _ in range(steps):
        axes = [np.linspace(lo, hi, 4) for lo, hi in zip(low, high)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        nearest = np.argsort(((grid[:, None, :] - points[None, :, :]) ** 2).sum(-1), axis=1)[:, :SEEDS_PER_POINT]
        allowed_misses = int((1 - min_coverage) * len(grid))
        misses = 0
        for point, ks in zip(grid, nearest):
            misses += not any(fk.reaches(point, qs[k]) for k in ks)
            if misses > allowed_misses:
                break
        coverage = 1.0 - misses / len(grid)
        if misses <= allowed_misses:
            break
        centre, half = (low + high) / 2, (high - low) / 2 * 0.85
        low, high = centre - half, centre + half
        low[2] = max(low[2], 0.05)
    return low, high, coverage


def estimate_gains(model: mujoco.MjModel, joints, pose, effort, ctl: Controllers | None):
    """kp, kd per joint and where they came from (the controller file, or the rule in the header)."""
    data = mujoco.MjData(model)
    data.qpos[:] = full_qpos(model, joints, pose)
    mujoco.mj_forward(model, data)
    full = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, full)
    dt = model.opt.timestep
    kp, kd = np.empty(len(joints)), np.empty(len(joints))
    from_file = []
    for j, name in enumerate(joints):
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        dof = model.jnt_dofadr[jid]
        inertia = float(full[dof, dof])  # includes the armature
        p = min(effort[j] / ERROR_AT_FULL_EFFORT_RAD, inertia * (MAX_OMEGA_DT / dt) ** 2)
        d = 2.0 * math.sqrt(p * inertia)
        if ctl is not None and name in ctl.kp and ctl.kp[name] > 0:
            p, d = ctl.kp[name], ctl.kd.get(name, d)
            from_file.append(name)
        kp[j], kd[j] = p, d
    source = (f"controller file gains for {from_file}; " if from_file else "") + (
        f"others: kp = min(effort / {ERROR_AT_FULL_EFFORT_RAD} rad, M_jj ({MAX_OMEGA_DT} / dt)^2), "
        "kd = 2 sqrt(kp M_jj) at the default pose")
    return kp, kd, source


# --- check ------------------------------------------------------------------------------------
@dataclass
class CheckReport:
    profile: RobotProfile
    joint_rows: list[dict]
    body_masses: list[tuple[str, float]]
    max_reach_m: float
    goals: list[tuple[list[float], bool, float]] = field(default_factory=list)
    episode: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    push_reach: tuple | None = None   # (share reachable, low xy, high xy) of Push's puck region

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        p = self.profile
        out = [f"robot '{p.name}' ({p.num_joints} joints) from {p.source}; MJCF {p.mjcf_path}",
               f"{'joint':<22}{'lower':>9}{'upper':>9}{'vel':>8}{'effort':>8}{'kp':>9}{'kd':>8}{'default':>9}",
               "  (rad, rad/s, Nm)"]
        for r in self.joint_rows:
            out.append(f"{r['joint']:<22}{r['lower']:>9.3f}{r['upper']:>9.3f}{r['velocity']:>8.2f}"
                       f"{r['effort']:>8.1f}{r['kp']:>9.1f}{r['kd']:>8.2f}{r['default']:>9.3f}")
        total = sum(m for _, m in self.body_masses)
        out.append("moving links (kg): " + ", ".join(f"{n} {m:.3g}" for n, m in self.body_masses)
                   + f"; total {total:.3g} kg")
        out.append(f"reach: max {self.max_reach_m:.3f} m (sampled FK); workspace box low "
                   f"{np.round(p.reach_low_m, 3).tolist()} high {np.round(p.reach_high_m, 3).tolist()} m")
        if self.push_reach is not None:
            out.append(f"push: {self.push_reach[0]:.0%} of the Push task's puck region on the table reachable "
                       "(IK, end effector 5 cm above the table)")
        if self.goals:
            hits = sum(ok for _, ok, _ in self.goals)
            worst = max(d for *_, d in self.goals)
            out.append(f"oracle: reached {hits}/{len(self.goals)} random goals (worst final distance {worst:.3f} m)")
        if self.episode:
            e = self.episode
            out.append(f"randomized episode: {e['steps']} steps, final distance {e['distance_m']:.3f} m, "
                       f"success {e['success']}, physics blow-up {e['blowup']}")
        out += [f"warning: {w}" for w in self.warnings]
        out += [f"FAIL: {f}" for f in self.failures]
        out.append("check passed" if self.ok else f"check FAILED ({len(self.failures)} reason(s))")
        return out


def check_robot(profile: RobotProfile, *, goals: int = 10, seed: int = 0, controllers: Path | None = None,
                controller: str | None = None, min_success: float = 0.8) -> CheckReport:
    """Compile ``profile``, tabulate it, run the reach oracle to ``goals`` random goals (nominal
    physics) and one randomized episode; failures name what is off."""
    from sim_bridge.envs.task_env import TaskEnv  # noqa: PLC0415 (gymnasium only for the check)
    from sim_bridge.oracle import ReachOracle  # noqa: PLC0415
    from sim_bridge.simulator import build_model, route_mujoco_warnings  # noqa: PLC0415

    route_mujoco_warnings()
    model = build_model(profile)
    rows = [{"joint": j, "lower": profile.position_lower_rad[i], "upper": profile.position_upper_rad[i],
             "velocity": profile.velocity_limit_rad_s[i], "effort": profile.effort_limit_nm[i],
             "kp": profile.kp[i], "kd": profile.kd[i], "default": profile.default_pose_rad[i]}
            for i, j in enumerate(profile.joint_names)]
    masses = [(model.body(b).name, float(model.body_mass[b])) for b in range(1, model.nbody)
              if model.body_weldid[b] != 0 and model.body_mocapid[b] < 0
              and (model.body_mass[b] > 0 or model.body_jntnum[b] > 0)]
    reach = sample_reach(model, profile.joint_names, profile.end_effector_site, profile.position_lower_rad,
                         profile.position_upper_rad, n=2000, seed=seed)
    report = CheckReport(profile, rows, masses, reach.max_reach_m)
    report.push_reach = _push_region_reach(model, profile, seed)
    if report.push_reach is not None and report.push_reach[0] < 0.95:
        report.warnings.append(
            f"the Push task's default puck region (x {report.push_reach[1][0]}..{report.push_reach[2][0]} m, "
            f"y {report.push_reach[1][1]}..{report.push_reach[2][1]} m) is reachable {report.push_reach[0]:.0%} "
            "5 cm above the table; train push with its start_region_m / goal_region_m settings inside the reach")
    prov = profile.provenance or {}
    report.warnings += [f"stated default: {d}" for d in prov.get("stated_defaults", [])]
    report.warnings += [w for w in prov.get("warnings", []) if "mesh" in w]

    # zero-mass links: the mass each joint moves with its welded (fixed) children
    for b in range(1, model.nbody):
        if model.body_jntnum[b] == 0 or model.body_weldid[b] != b:
            continue
        group = float(model.body_mass[model.body_weldid == b].sum())
        if group < MIN_LINK_MASS_KG:
            report.failures.append(f"zero-mass body: '{model.body(b).name}' moves on joint "
                                   f"'{model.joint(model.body_jntadr[b]).name}' with {group:.3g} kg "
                                   f"(< {MIN_LINK_MASS_KG} kg); give the link its real <inertial>")

    # joint order against the controller file (given, or the one the import recorded)
    recorded = prov.get("controllers") or {}
    if controllers is None and recorded.get("file"):
        controllers, controller = Path(recorded["file"]), controller or recorded.get("controller")
        if not controllers.is_file():
            report.warnings.append(f"the controller file recorded at import ({controllers}) is gone; "
                                   "joint order not checked")
            controllers = None
    if controllers is not None:
        ctl = read_controllers(controllers, controller)
        if tuple(ctl.joints) != tuple(profile.joint_names):
            report.failures.append(
                f"joint order mismatch: the profile has {list(profile.joint_names)}, the controller file "
                f"{ctl.path} field {ctl.joints_field} has {list(ctl.joints)}; commands would drive the wrong joints")
    if prov.get("source") and prov.get("urdf_sha256") and Path(prov["source"]).is_file():
        now = hashlib.sha256(Path(prov["source"]).read_bytes()).hexdigest()
        if now != prov["urdf_sha256"]:
            report.warnings.append(f"the URDF {prov['source']} changed since the import (sha256 differs); re-import")
    if report.failures:
        return report  # the physics would be meaningless

    # the reach oracle to random goals (nominal physics), then one randomized episode
    env = TaskEnv("reach", profile=profile, randomization="none")
    try:
        oracle = ReachOracle(profile, action_scale_rad=env.action_scale_rad)
        n = profile.num_joints
        for k in range(goals):
            obs, info = env.reset(seed=seed + k)
            oracle.reset()
            success = False
            for _ in range(env.task.max_episode_steps):
                obs, _, terminated, truncated, info = env.step(oracle.action(obs[:n], info["target_pos"]))
                if terminated or truncated:
                    success = bool(terminated and info["is_success"])
                    break
            report.goals.append((np.round(info["target_pos"], 3).tolist(), success, float(info["distance"])))
    finally:
        env.close()
    hits = sum(ok for _, ok, _ in report.goals)
    if goals and hits < min_success * goals:
        missed = [g for g, ok, _ in report.goals if not ok][:3]
        report.failures.append(f"unreachable workspace: the scripted oracle reached {hits}/{goals} goals "
                               f"(< {min_success:.0%}); e.g. missed {missed}; shrink reach_workspace")
    env = TaskEnv("reach", profile=profile, randomization="default")
    try:
        oracle = ReachOracle(profile, action_scale_rad=env.action_scale_rad)
        obs, info = env.reset(seed=seed + 1000)
        steps, blowup, success = 0, False, False
        for steps in range(1, env.task.max_episode_steps + 1):
            obs, _, terminated, truncated, info = env.step(oracle.action(obs[:profile.num_joints],
                                                                         info["target_pos"]))
            blowup = blowup or bool(info["physics_blowup"])
            if terminated or truncated:
                success = bool(info["is_success"])
                break
        report.episode = {"steps": steps, "distance_m": float(info["distance"]), "success": success,
                          "blowup": blowup}
    finally:
        env.close()
    if report.episode["blowup"]:
        report.failures.append("the randomized episode blew up (physics unstable: gains too high for the "
                               "joint inertia, or bad inertias)")
    return report


def _push_region_reach(model: mujoco.MjModel, profile: RobotProfile, seed: int, hover_m: float = 0.05):
    """Share of a 4x4 grid over the Push task's puck start region (its default settings) that the
    end effector reaches ``hover_m`` above the table (IK from the nearest of 2000 valid samples);
    None when no push task is registered."""
    from sim_bridge.tasks import UnknownTaskError, make_task  # noqa: PLC0415

    try:
        low, high = (np.asarray(v, dtype=float) for v in make_task("push").start_region)
    except (UnknownTaskError, AttributeError):
        return None
    rng = np.random.default_rng(seed)
    fk = _Kinematics(model, profile.joint_names, profile.end_effector_site, profile.position_lower_rad,
                     profile.position_upper_rad)
    qs = rng.uniform(profile.position_lower_rad, profile.position_upper_rad, size=(2000, profile.num_joints))
    samples = [(q, ee) for q in qs for ee, ok in [fk.position(q)] if ok]
    if not samples:
        return 0.0, low.round(3).tolist(), high.round(3).tolist()
    seeds, points = np.array([q for q, _ in samples]), np.array([ee for _, ee in samples])
    xs, ys = np.linspace(low[0], high[0], 4), np.linspace(low[1], high[1], 4)
    grid = np.array([[x, y, hover_m] for x in xs for y in ys])
    nearest = np.argsort(((grid[:, None, :] - points[None, :, :]) ** 2).sum(-1), axis=1)[:, :SEEDS_PER_POINT]
    reached = [any(fk.reaches(p, seeds[k]) for k in ks) for p, ks in zip(grid, nearest)]
    return float(np.mean(reached)), low.round(3).tolist(), high.round(3).tolist()


def sample_valid_poses(model: mujoco.MjModel, profile: RobotProfile, count: int, *, seed: int = 0,
                       tries: int = 2000) -> list[np.ndarray]:
    """``count`` uniform joint samples that keep the arm above the table (fewer if rare)."""
    rng = np.random.default_rng(seed)
    fk = _Kinematics(model, profile.joint_names, profile.end_effector_site, profile.position_lower_rad,
                     profile.position_upper_rad)
    out = []
    for _ in range(tries):
        if len(out) >= count:
            break
        q = rng.uniform(profile.position_lower_rad, profile.position_upper_rad)
        if fk.position(q)[1]:
            out.append(q)
    return out


def chain_points(profile: RobotProfile, model: mujoco.MjModel, joint_pos) -> np.ndarray:
    """World positions along the kinematic chain (joint anchors, then the end effector) at
    ``joint_pos``: what a drawing of the arm needs when no OpenGL renderer is available."""
    data = mujoco.MjData(model)
    data.qpos[:] = full_qpos(model, profile.joint_names, joint_pos)
    mujoco.mj_kinematics(model, data)
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, profile.end_effector_site)
    base = [data.xpos[b] for b in range(1, model.nbody) if model.body_weldid[b] == 0
            and model.body_mocapid[b] < 0][:1]
    jids = sorted(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in profile.joint_names)  # tree order
    anchors = [data.xanchor[j] for j in jids]
    return np.array([*base, *anchors, data.site_xpos[sid]])
