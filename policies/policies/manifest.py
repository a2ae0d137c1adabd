"""The policy manifest: what a deployed ONNX policy expects and produces.

A policy artifact is a folder holding ``NAME.onnx`` and ``manifest.json``. The manifest
records the task the policy was trained for (``task``: its name and settings; a manifest
without one is a Reach policy, as every policy was before tasks became plug-ins), the
observation layout (it must equal the task's layout for the policy's joints,
:meth:`sim_bridge.tasks.Task.observation_layout`), the action
semantics, the joints and rates the policy was trained for, the graph's input/output
names, the sha256 of the ONNX file, free-form training and evaluation records, and
(optional) ``action_std``: the std of the Gaussian the policy was trained with, per action,
for a runtime asked to sample instead of running the mean the graph gives.

Integrity: ``artifact_sha256`` seals graph and manifest together. Every manifest value
changes what the robot does (``action.scale_rad`` scales every command, ``default_pose_rad``
and ``robot_profile`` say where and on what it may run), so a hash over the ONNX file alone
let an edited manifest through unchecked. The hash is::

    sha256( b"sim2real-policy-artifact/1\n"
            + len(onnx bytes) as 8 bytes, big-endian + the ONNX file's bytes
            + canonical JSON of the manifest without the artifact_sha256 field )

where the canonical JSON is ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` in UTF-8 (key order, whitespace and indentation of the file do not
matter; any value that changes does). :func:`artifact_digest` computes it,
:func:`seal_artifact` writes it (the export does, after the parity check), and
:func:`verify_artifact` checks it: the runtime refuses an artifact without it or whose
hash does not match, naming what changed when it can tell (the ONNX file, via
``onnx_sha256``, or the manifest). This is integrity, not authenticity: it catches edits
and incomplete copies, not someone who re-seals on purpose (``python -m policies.manifest
seal FOLDER`` re-seals an artifact you edited and trust; signing would be the next step).

numpy and the standard library only: the deployed runtime imports this module.
Errors are :class:`sim_bridge.config.ConfigError` naming the file and the field.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sim_bridge.config import ConfigError, FieldReader, write_text_atomic
from sim_bridge.actions import EE_DELTA, EE_FIELDS, JOINT_DELTA, action_from_dict, env_kwargs_of
from sim_bridge.observations import Signal
from sim_bridge.tasks import DEFAULT_TASK, UnknownTaskError, get_task, task_from_record

MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"
ARCHITECTURES = ("lstm", "mlp", "mlp_history")
# Architectures with an explicit state (h, c) in the graph; an MLP over an observation
# history carries its past observations as that state (policies.model.HistoryMLPActor).
RECURRENT_ARCHITECTURES = ("lstm", "mlp_history")
# The graph's input and output names, per architecture (the artifact contract).
IO_NAMES = {
    "lstm": (("obs", "h_in", "c_in"), ("actions", "h_out", "c_out")),
    "mlp": (("obs",), ("actions",)),
    "mlp_history": (("obs", "h_in", "c_in"), ("actions", "h_out", "c_out")),
}
ACTION_LOW, ACTION_HIGH = -1.0, 1.0  # the runtime clips actions to this range
_SHA256 = re.compile(r"[0-9a-f]{64}")
ARTIFACT_HASH_FIELD = "artifact_sha256"
_ARTIFACT_TAG = b"sim2real-policy-artifact/1\n"


@dataclass(frozen=True)
class ObservationSpec:
    size: int
    layout: tuple[Signal, ...]


@dataclass(frozen=True)
class ActionSpec:
    """``action`` of the manifest (:mod:`sim_bridge.actions` says what each type means)."""

    type: str
    size: int
    scale_rad: float | None  # joint_position_delta: rad per action unit (None for other types)
    low: float = ACTION_LOW
    high: float = ACTION_HIGH
    #: ee_position_delta: scale_m, max_joint_step_rad, max_lead_rad, damping, down_gain, posture_gain, kinematics
    settings: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.type == JOINT_DELTA:
            return {"type": self.type, "size": self.size, "scale_rad": self.scale_rad, "low": self.low,
                    "high": self.high}
        return {"type": self.type, "size": self.size, **_plain(self.settings or {}), "low": self.low,
                "high": self.high}

    def build(self, default_pose_rad, lower_rad, upper_rad):
        """The action object (``targets(joint_pos, action)``) for these limits."""
        return action_from_dict(self.to_dict(), num_joints=len(default_pose_rad), default_pose_rad=default_pose_rad,
                                lower_rad=lower_rad, upper_rad=upper_rad)

    def env_kwargs(self) -> dict[str, Any]:
        """The env keyword arguments that give an env this action (evaluation runs a policy on them)."""
        return env_kwargs_of(self.to_dict())

    @property
    def max_joint_step_rad(self) -> float:
        """The largest joint target offset one command can ask (rad)."""
        return float(self.scale_rad if self.type == JOINT_DELTA else self.settings["max_joint_step_rad"])


@dataclass(frozen=True)
class RecurrentStateSpec:
    layers: int
    hidden: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of ``h`` and ``c``: [layers, batch 1, hidden]."""
        return (self.layers, 1, self.hidden)


@dataclass(frozen=True)
class IoSpec:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class PolicyManifest:
    """A validated ``manifest.json``. ``source`` is the file it was loaded from (if any)."""

    name: str
    onnx_file: str
    onnx_sha256: str
    architecture: str
    observation: ObservationSpec
    action: ActionSpec
    joint_names: tuple[str, ...]
    task: dict[str, Any]              # {"name": ..., then the task's settings as recorded at export}
    robot_profile: str
    control_rate_hz: float
    default_pose_rad: tuple[float, ...]
    recurrent_state: RecurrentStateSpec | None
    io: IoSpec
    training: dict[str, Any]
    evaluation: dict[str, Any]
    created_utc: str
    manifest_version: int = MANIFEST_VERSION
    artifact_sha256: str | None = None  # None: not sealed (a runtime refuses it)
    #: the std of the Gaussian the policy was trained with, per action (the ONNX graph gives its
    #: mean); None: not recorded. Used only by a runtime asked to sample (``sample_seed``).
    action_std: tuple[float, ...] | None = None
    source: Path | None = field(default=None, compare=False)
    # The canonical JSON of the manifest as read, without artifact_sha256 (what the hash covers).
    canonical: bytes = field(default=b"", compare=False, repr=False)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def task_name(self) -> str:
        return self.task["name"]

    @property
    def recurrent(self) -> bool:
        return self.recurrent_state is not None

    @property
    def onnx_path(self) -> Path | None:
        """The ONNX file next to the manifest (None for a manifest not loaded from a file)."""
        return self.source.parent / self.onnx_file if self.source is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``manifest.json`` (fields in the contract's order)."""
        rs = self.recurrent_state
        return {
            "manifest_version": self.manifest_version,
            "name": self.name,
            "onnx_file": self.onnx_file,
            "onnx_sha256": self.onnx_sha256,
            **({} if self.artifact_sha256 is None else {ARTIFACT_HASH_FIELD: self.artifact_sha256}),
            "architecture": self.architecture,
            "observation": {"size": self.observation.size,
                            "layout": [{"name": s.name, "size": s.size, "unit": s.unit,
                                        "description": s.description} for s in self.observation.layout]},
            "action": self.action.to_dict(),
            **({} if self.action_std is None else {"action_std": list(self.action_std)}),
            "joint_names": list(self.joint_names),
            "task": _plain(self.task),
            "robot_profile": self.robot_profile,
            "control_rate_hz": self.control_rate_hz,
            "default_pose_rad": list(self.default_pose_rad),
            "recurrent_state": None if rs is None else {"layers": rs.layers, "hidden": rs.hidden},
            "io": {"inputs": list(self.io.inputs), "outputs": list(self.io.outputs)},
            "training": _plain(self.training),
            "evaluation": _plain(self.evaluation),
            "created_utc": self.created_utc,
        }


def shipped_zoo() -> Path:
    """The folder of the policies shipped inside this package (``policies/zoo``)."""
    return Path(__file__).resolve().parent / "zoo"


def find_policy(text: str | os.PathLike) -> Path:
    """A policy given as a path (artifact folder, ONNX or checkpoint file) or as the name of
    a shipped one; FileNotFoundError names the shipped ones otherwise."""
    path = Path(text).expanduser()
    if path.exists():
        return path
    zoo = shipped_zoo()
    if (zoo / str(text)).is_dir():
        return zoo / str(text)
    known = sorted(p.name for p in zoo.iterdir() if p.is_dir()) if zoo.is_dir() else []
    raise FileNotFoundError(f"no policy '{os.fspath(text)}' (not a path; shipped: {known})")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path_for(path: str | os.PathLike) -> Path:
    """``manifest.json`` of an artifact given as its folder, its manifest or its .onnx file."""
    path = Path(path)
    if path.suffix == ".onnx":
        return path.with_name(MANIFEST_FILE)
    if path.suffix == ".json" and not path.is_dir():
        return path
    return path / MANIFEST_FILE


def load_manifest(path: str | os.PathLike) -> PolicyManifest:
    """Read and validate a manifest (path of the file, or of the artifact folder)."""
    path = manifest_path_for(path)
    return parse_manifest(_read_json(path), source=path)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError("manifest file not found", source=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read manifest ({exc.strerror})", source=path) from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except (json.JSONDecodeError, ValueError) as exc:
        raise ConfigError(f"not valid JSON ({exc})", source=path) from None


def parse_manifest(data: Any, *, source: str | os.PathLike | None = None) -> PolicyManifest:
    """Validate a manifest given as the JSON object (a dict)."""
    source = Path(source) if source is not None else None
    r = FieldReader(data, source=source)
    version = r.integer("manifest_version")
    if version != MANIFEST_VERSION:
        raise r.error("manifest_version", f"unsupported version {version}; this runtime reads {MANIFEST_VERSION}")
    name = _nonempty(r, "name")
    onnx_file = _nonempty(r, "onnx_file")
    if Path(onnx_file).name != onnx_file or not onnx_file.endswith(".onnx"):
        raise r.error("onnx_file", f"expected a file name ending in .onnx next to the manifest, got {onnx_file!r}")
    sha = r.str("onnx_sha256")
    if not _SHA256.fullmatch(sha):
        raise r.error("onnx_sha256", f"expected 64 lowercase hex digits, got {sha!r}")
    sealed = r.raw(ARTIFACT_HASH_FIELD, None)
    if sealed is not None and (not isinstance(sealed, str) or not _SHA256.fullmatch(sealed)):
        raise r.error(ARTIFACT_HASH_FIELD, f"expected 64 lowercase hex digits, got {sealed!r}")
    arch = r.str("architecture")
    if arch not in ARCHITECTURES:
        raise r.error("architecture", f"unknown architecture {arch!r}; expected one of {list(ARCHITECTURES)}")

    joints = r.strings("joint_names")
    n = len(joints)
    if n == 0:
        raise r.error("joint_names", "at least one joint is required")
    task = _task(r)
    pose = tuple(r.numbers("default_pose_rad", n))
    action = _action(r.child("action"), tuple(joints), pose)
    observation = _observation(r.child("observation"), n, _task_instance(r, task), action)
    robot_profile = _nonempty(r, "robot_profile")
    rate = r.number("control_rate_hz", positive=True)
    action_std = None
    if r.raw("action_std", None) is not None:
        action_std = tuple(r.numbers("action_std", action.size))
        if min(action_std) <= 0:
            raise r.error("action_std", f"every std must be > 0, got {list(action_std)}")

    raw_state = r.raw("recurrent_state")
    if arch in RECURRENT_ARCHITECTURES:
        if raw_state is None:
            raise r.error("recurrent_state", f"an '{arch}' policy needs {{layers, hidden}}, got null")
        sr = r.child("recurrent_state")
        state = RecurrentStateSpec(_positive_int(sr, "layers"), _positive_int(sr, "hidden"))
        sr.finish()
    else:
        if raw_state is not None:
            raise r.error("recurrent_state", f"must be null for architecture {arch!r}, got {raw_state!r}")
        state = None

    io = r.child("io")
    want_in, want_out = IO_NAMES[arch]
    inputs, outputs = tuple(io.strings("inputs")), tuple(io.strings("outputs"))
    if inputs != want_in:
        raise io.error("inputs", f"expected {list(want_in)} for architecture {arch!r}, got {list(inputs)}")
    if outputs != want_out:
        raise io.error("outputs", f"expected {list(want_out)} for architecture {arch!r}, got {list(outputs)}")
    io.finish()

    training, evaluation = _mapping(r, "training"), _mapping(r, "evaluation")
    created = r.str("created_utc")
    try:
        datetime.fromisoformat(created)
    except ValueError:
        raise r.error("created_utc", f"expected an ISO 8601 date-time, got {created!r}") from None
    r.finish()
    return PolicyManifest(
        name=name, onnx_file=onnx_file, onnx_sha256=sha, architecture=arch, observation=observation,
        action=action, joint_names=tuple(joints), task=task, robot_profile=robot_profile, control_rate_hz=rate,
        default_pose_rad=pose, recurrent_state=state, io=IoSpec(inputs, outputs), training=training,
        evaluation=evaluation, created_utc=created, manifest_version=version, artifact_sha256=sealed,
        action_std=action_std, source=source, canonical=canonical_json(data))


def canonical_json(data: dict[str, Any]) -> bytes:
    """The manifest object as the artifact hash covers it: without ``artifact_sha256``, keys
    sorted, no whitespace, UTF-8 (see the module docstring)."""
    body = {k: v for k, v in _plain(data).items() if k != ARTIFACT_HASH_FIELD}
    # default=repr: objects no file holds (a manifest built in code) must not make parsing fail
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr).encode("utf-8")


def artifact_digest(onnx_bytes: bytes, manifest: dict[str, Any] | bytes) -> str:
    """Hex ``artifact_sha256`` of a graph (the ONNX file's bytes) and its manifest (the JSON
    object, or its :func:`canonical_json`)."""
    canonical = manifest if isinstance(manifest, bytes) else canonical_json(manifest)
    digest = hashlib.sha256(_ARTIFACT_TAG)
    digest.update(len(onnx_bytes).to_bytes(8, "big"))
    digest.update(onnx_bytes)
    digest.update(canonical)
    return digest.hexdigest()


def verify_artifact(manifest: PolicyManifest, onnx_bytes: bytes) -> None:
    """ConfigError unless ``onnx_bytes`` and the manifest (as read) are what was exported.

    Checks ``onnx_sha256`` first (then the message names the ONNX file), then
    ``artifact_sha256`` (a mismatch with a matching ONNX file means the manifest was edited).
    """
    source, name = manifest.source, manifest.onnx_file
    onnx_sha = hashlib.sha256(onnx_bytes).hexdigest()
    if onnx_sha != manifest.onnx_sha256:
        raise ConfigError(f"{name} has sha256 {onnx_sha}, the manifest says {manifest.onnx_sha256} "
                          "(file changed or copied incompletely)", source=source, field="onnx_sha256")
    reseal = ("re-export the policy (or, for an artifact you changed yourself and trust: "
              "python -m policies.manifest seal FOLDER)")
    if manifest.artifact_sha256 is None:
        raise ConfigError(f"the artifact is not sealed: no {ARTIFACT_HASH_FIELD} (the hash over graph + manifest), "
                          f"so an edited manifest could not be told from an exported one; {reseal}",
                          source=source, field=ARTIFACT_HASH_FIELD)
    actual = artifact_digest(onnx_bytes, manifest.canonical)
    if actual != manifest.artifact_sha256:
        raise ConfigError(f"the manifest was edited after export: graph + manifest hash to {actual}, the seal "
                          f"records {manifest.artifact_sha256}; {name} matches the manifest's onnx_sha256, so the "
                          "manifest changed (with its onnx_sha256, if the graph was replaced too); refusing values "
                          f"nobody exported (action scale, default pose, robot, ...); {reseal}",
                          source=source, field=ARTIFACT_HASH_FIELD)


def seal_artifact(folder: str | os.PathLike) -> str:
    """Write ``artifact_sha256`` into the manifest of the artifact in ``folder`` (atomically;
    the ONNX file is untouched) and return it. The manifest must be valid and its
    ``onnx_sha256`` must match the ONNX file: sealing never blesses a changed graph."""
    path = manifest_path_for(folder)
    data = _read_json(path)
    manifest = parse_manifest(data, source=path)
    try:
        onnx_bytes = manifest.onnx_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {manifest.onnx_file} ({exc.strerror})", source=path, field="onnx_file") from None
    onnx_sha = hashlib.sha256(onnx_bytes).hexdigest()
    if onnx_sha != manifest.onnx_sha256:
        raise ConfigError(f"{manifest.onnx_file} has sha256 {onnx_sha}, the manifest says {manifest.onnx_sha256}; "
                          "not sealing a graph that is not the one recorded", source=path, field="onnx_sha256")
    data[ARTIFACT_HASH_FIELD] = artifact_digest(onnx_bytes, data)
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    return data[ARTIFACT_HASH_FIELD]


def save_manifest(manifest: PolicyManifest, path: str | os.PathLike) -> Path:
    """Write ``manifest.json`` atomically (path of the file or of the artifact folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_FILE
    try:
        text = json.dumps(manifest.to_dict(), indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:  # NaN / inf or objects in the free-form records
        raise ConfigError(f"cannot write the manifest as JSON: {exc}", source=path) from None
    write_text_atomic(path, text + "\n")
    return path


# --- helpers -----------------------------------------------------------------------

def _task(r: FieldReader) -> dict[str, Any]:
    raw = r.raw("task", {"name": DEFAULT_TASK})
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"].strip():
        raise r.error("task", f"expected an object with the task's 'name' (e.g. {{\"name\": \"reach\"}}), got {raw!r}")
    try:
        get_task(raw["name"])
    except UnknownTaskError as exc:
        raise r.error("task", f"{exc} (is the package that registers it installed?)") from None
    return dict(raw)


def _task_instance(r: FieldReader, record: dict[str, Any]):
    """The task the record describes, with its settings (some shape the observation layout)."""
    try:
        return task_from_record(record)
    except (TypeError, ValueError) as exc:   # an unknown or invalid setting
        raise r.error("task", f"its settings do not make a {record['name']!r} task: {exc}") from None


def _observation(o: FieldReader, num_joints: int, task, action: ActionSpec) -> ObservationSpec:
    size = _positive_int(o, "size")
    raw = o.raw("layout")
    if not isinstance(raw, list) or not raw:
        raise o.error("layout", f"expected a non-empty list of signals, got {raw!r}")
    layout = []
    for i, item in enumerate(raw):
        s = FieldReader(item, source=o.source, prefix=f"{o.prefix}.layout[{i}]")
        signal_size = s.integer("size")   # 0: a signal the task's settings leave out (prev_action)
        if signal_size < 0:
            raise s.error("size", f"must be >= 0, got {signal_size}")
        layout.append(Signal(_nonempty(s, "name"), signal_size, s.str("unit"), s.str("description")))
        s.finish()
    o.finish()
    total = sum(s.size for s in layout)
    if total != size:
        raise o.error("size", f"{size} does not equal the sum of the layout sizes ({total})")
    expected = task.observation_layout(num_joints, action)
    task_name = task.name
    got = [(s.name, s.size, s.unit) for s in layout]
    want = [(s.name, s.size, s.unit) for s in expected]
    if got != want:
        raise o.error("layout", f"(name, size, unit) must be {want} (the observation layout of task "
                                f"{task_name!r} for {num_joints} joints and a {action.type} action), got {got}")
    return ObservationSpec(size, tuple(layout))


def _action(a: FieldReader, joints: tuple[str, ...], default_pose: tuple[float, ...]) -> ActionSpec:
    kind = a.str("type")
    n = len(joints)
    size = _positive_int(a, "size")
    if kind == JOINT_DELTA:
        if size != n:
            raise a.error("size", f"{size} does not equal the number of joint_names ({n})")
        scale, settings = a.number("scale_rad", positive=True), None
    elif kind == EE_DELTA:
        if size != 3:
            raise a.error("size", f"an {EE_DELTA} action has 3 values (x, y, z), got {size}")
        settings = {k: a.number(k) for k in EE_FIELDS}
        kinematics = a.raw("kinematics")
        if not isinstance(kinematics, dict):
            raise a.error("kinematics", f"expected the kinematic chain object, got {type(kinematics).__name__}")
        if list(kinematics.get("joint_names", [])) != list(joints):
            raise a.error("kinematics", f"its joint_names {kinematics.get('joint_names')!r} must equal the "
                                        f"manifest's {list(joints)}")
        settings["kinematics"] = kinematics
        scale = None
        try:  # the chain and the settings as the runtime will build them
            action_from_dict({"type": kind, **settings}, num_joints=n, default_pose_rad=default_pose,
                             lower_rad=[-1e9] * n, upper_rad=[1e9] * n)
        except (ValueError, KeyError, TypeError) as exc:
            raise a.error("kinematics", f"not a usable chain or settings: {exc}") from None
    else:
        raise a.error("type", f"unsupported action type {kind!r}; the runtime implements "
                              f"{[JOINT_DELTA, EE_DELTA]}")
    low, high = a.number("low"), a.number("high")
    if (low, high) != (ACTION_LOW, ACTION_HIGH):
        raise a.error("low", f"actions are clipped to [{ACTION_LOW}, {ACTION_HIGH}] by the runtime; "
                             f"got low={low}, high={high}")
    a.finish()
    return ActionSpec(kind, size, scale, low, high, settings)


def _nonempty(r: FieldReader, key: str) -> str:
    value = r.str(key)
    if not value.strip():
        raise r.error(key, "must not be empty")
    return value


def _positive_int(r: FieldReader, key: str) -> int:
    value = r.integer(key)
    if value <= 0:
        raise r.error(key, f"must be > 0, got {value}")
    return value


def _mapping(r: FieldReader, key: str) -> dict[str, Any]:
    value = r.raw(key)
    if not isinstance(value, dict):
        raise r.error(key, f"expected an object, got {value!r}")
    return value


def _unique_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _plain(value: Any) -> Any:
    """Free-form records as plain JSON types (numpy scalars/arrays and paths allowed)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar or array
        return _plain(value.tolist())
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m policies.manifest seal FOLDER...``: (re-)seal artifacts (see the module docstring)."""
    import sys
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] != "seal":
        print("usage: python -m policies.manifest seal FOLDER...", file=sys.stderr)
        return 2
    for folder in args[1:]:
        try:
            print(f"{folder}: artifact_sha256 {seal_artifact(folder)}")
        except ConfigError as exc:
            print(f"{folder}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
