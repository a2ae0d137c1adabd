"""Load recorded bags as aligned numpy episodes (for calibration).

``load_episodes(bag)`` returns one :class:`Episode` per start/end pair of episode markers
(``std_msgs/String`` JSON, see :mod:`real_bridge.recorder`); without markers the whole bag
is one episode. Per episode, one row per joint state:

  time_s            the joint_states header stamps (s; sim time or the arm's clock)
  position, velocity, effort   (T, J) in the profile's joint order, mapped by name
  policy_command    (T, J) the latest ``joint_commands`` at each state (zero-order hold)
  hardware_command  (T, J) the latest filtered hardware command (``/<controller>/commands``)
  goal              (T, 3) the latest ``current_goal``
  object_pose       (T, 5) the latest ``object_pose`` (x, y, z m, sin yaw, cos yaw; base frame)
                    received at or before each state (nearest earlier sample; a pose whose
                    quaternion is not unit length reads as NaN, as the policy node reads it)
  object_pose_age_s (T,) how long before the state that pose was received (s; NaN before the first)
  object_time_s     (T,) that pose's header stamp (s; the tracker's clock)
A push bag (the sidecar's ``task``, or ``task=``) without any object pose is an error
(:class:`BagLoadError`), not episodes with a NaN object.

Alignment uses the bag's receive timestamps (one clock, the recorder's), not header
stamps: commands carry no stamp, and the state stamps may come from another clock. A
value before the first message of its topic is NaN, as is a command whose length is not
the number of joints.

Bags not closed cleanly (sidecar state ``recording``/``failed``, no metadata.yaml, a
leftover sqlite journal) are recovered with :func:`real_bridge.recorder.recover_bag` in a
temporary copy: a loaded bag is never modified (bytes and mtimes stay). Any unreadable, corrupt or
truncated bag raises :class:`BagLoadError` naming the file and the problem.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from real_bridge.recorder import (CLOSED, EPISODE_MSGTYPE, RECOVERED, SIDECAR_NAME, RecorderError,
                                  recording_in_progress, recover_bag, typestore)
from sim_bridge.config import ConfigError, load_yaml_file
from sim_bridge.joints import JointMapper

log = logging.getLogger(__name__)

JOINT_STATE = "sensor_msgs/msg/JointState"
FLOAT_ARRAY = "std_msgs/msg/Float64MultiArray"
POINT_STAMPED = "geometry_msgs/msg/PointStamped"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
# role -> (message type, topic base names that identify it when the sidecar does not say)
ROLES = {
    "joint_states": (JOINT_STATE, ("joint_states",)),
    "joint_commands": (FLOAT_ARRAY, ("joint_commands",)),
    "hardware_commands": (FLOAT_ARRAY, ("commands",)),
    "current_goal": (POINT_STAMPED, ("current_goal", "goal")),
    "object_pose": (POSE_STAMPED, ("object_pose",)),
    "episode": (EPISODE_MSGTYPE, ("episode",)),
}


class BagLoadError(ValueError):
    """A bag cannot be loaded; the message names the file and what is wrong."""


@dataclass
class Episode:
    index: int                   # episode number from the markers (0: whole bag, no markers)
    joint_names: tuple[str, ...]
    time_s: np.ndarray           # (T,)  joint_states header stamps, s
    receive_ns: np.ndarray       # (T,)  bag (receive) timestamps, ns: the alignment clock
    position: np.ndarray         # (T, J) rad
    velocity: np.ndarray         # (T, J) rad/s (NaN if not reported)
    effort: np.ndarray           # (T, J) (NaN if not reported)
    policy_command: np.ndarray   # (T, J) zero-order hold of joint_commands
    hardware_command: np.ndarray  # (T, J) zero-order hold of the controller command
    goal: np.ndarray             # (T, 3) zero-order hold of current_goal
    success: bool | None         # from the end marker
    complete: bool               # a start and an end marker were recorded
    start_ns: int | None         # receive time of the start marker
    end_ns: int | None           # receive time of the end marker
    metadata: dict[str, Any] = field(default_factory=dict)  # the recorder's sidecar (profile, policy, note, ...)
    topics: dict[str, str] = field(default_factory=dict)    # role -> topic used
    bag_path: str = ""
    # The object (tasks with one: Push); the loader always fills them (NaN rows before the first
    # pose, all NaN in a bag without one); None only in an Episode built by hand without them.
    object_pose: np.ndarray | None = None        # (T, 5) nearest earlier object_pose: x, y, z, sin yaw, cos yaw
    object_pose_age_s: np.ndarray | None = None  # (T,) receive time of the state - receive time of that pose, s
    object_time_s: np.ndarray | None = None      # (T,) header stamp of that pose, s

    def __len__(self) -> int:
        return len(self.time_s)

    @property
    def elapsed_s(self) -> np.ndarray:
        """Time since the episode's first state."""
        return self.time_s - self.time_s[0] if len(self.time_s) else self.time_s

    @property
    def robot_profile(self) -> str | None:
        profile = self.metadata.get("metadata", {}).get("robot_profile")
        return profile.get("name") if isinstance(profile, dict) else profile

    @property
    def policy(self) -> dict[str, Any]:
        policy = self.metadata.get("metadata", {}).get("policy")
        return policy if isinstance(policy, dict) else {"name": policy}


# --- opening ----------------------------------------------------------------------------
def _read_sidecar(bag: Path) -> dict[str, Any]:
    path = bag / SIDECAR_NAME
    if not path.is_file():
        return {}
    try:
        data = load_yaml_file(path)  # the stack's safe reader: size, file type and alias limits
    except ConfigError as exc:
        raise BagLoadError(f"cannot read the recorder metadata: {exc}") from None
    if not isinstance(data, dict):
        raise BagLoadError(f"{path}: expected a mapping, got {type(data).__name__}")
    return data


def _needs_recovery(bag: Path, sidecar: dict[str, Any]) -> bool:
    if not sidecar:  # not written by the recorder here: read as is, never modified
        return False
    if recording_in_progress(bag):  # live: read what is committed, as is
        log.info("bag %s is being recorded; reading what is committed so far", bag)
        return False
    if sidecar.get("state") not in (CLOSED, RECOVERED):
        return True
    if not (bag / "metadata.yaml").is_file():
        return True
    return any(p.stat().st_size > 0 for p in bag.glob("*.db3-journal"))


def _recover(bag: Path, tmp_dirs: list[str]) -> Path:
    """Recover a bag not closed cleanly in a temporary copy (the input is never modified: a
    bag is evidence, and may be shared or read-only). Returns the copy to read; the caller
    removes ``tmp_dirs``. Costs one copy of the bag on the temporary file system."""
    tmp = tempfile.mkdtemp(prefix="sim2real_bag_")
    tmp_dirs.append(tmp)
    copy = Path(tmp) / bag.name
    try:
        shutil.copytree(bag, copy)
        report = recover_bag(copy)
    except RecorderError as exc:
        raise BagLoadError(str(exc).replace(str(copy), str(bag))) from None
    except (OSError, sqlite3.Error) as exc:
        raise BagLoadError(f"{bag}: not closed cleanly and cannot be recovered ({exc})") from None
    log.warning("bag %s was not closed cleanly; recovered %d messages in a temporary copy%s (the bag is "
                "unchanged; `sim2real` never modifies its inputs)", bag, report.messages,
                " (rolled back an interrupted commit)" if report.rolled_back_journal else "")
    return copy


def _storage_name(bag: Path) -> str:
    """The file a reading error is most likely about (for messages)."""
    files = sorted(bag.glob("*.db3")) + sorted(bag.glob("*.mcap")) if bag.is_dir() else [bag]
    return str(files[0]) if len(files) == 1 else str(bag)


# --- reading ----------------------------------------------------------------------------
def _pick_topics(connections, sidecar: dict[str, Any], override: Mapping[str, str] | None,
                 where: str) -> dict[str, str]:
    available = {}
    for conn in connections:
        available.setdefault(conn.topic, conn.msgtype)
    declared = dict((sidecar.get("metadata") or {}).get("topics") or {}) if sidecar else {}
    declared.update(override or {})
    chosen: dict[str, str] = {}
    for role, (msgtype, basenames) in ROLES.items():
        topic = declared.get(role)
        if topic:
            if topic not in available:
                if override and role in override:
                    raise BagLoadError(f"{where}: topic {topic} ({role}) is not in the bag; "
                                       f"topics: {sorted(available)}")
                continue  # declared by the recorder but never created: nothing recorded
            if available[topic] != msgtype:
                raise BagLoadError(f"{where}: topic {topic} ({role}) has type {available[topic]}, "
                                   f"expected {msgtype}")
            chosen[role] = topic
            continue
        for base in basenames:
            candidates = sorted(t for t, ty in available.items()
                                if ty == msgtype and t.rstrip("/").rsplit("/", 1)[-1] == base
                                and not (role == "hardware_commands" and t in chosen.values()))
            if len(candidates) > 1:
                raise BagLoadError(f"{where}: several {role} topics {candidates}; "
                                   f"pass topics={{'{role}': ...}}")
            if candidates:
                chosen[role] = candidates[0]
                break
    if "joint_states" not in chosen:
        raise BagLoadError(f"{where}: no {JOINT_STATE} topic (joint_states) in the bag; "
                           f"topics: {sorted(f'{t} ({ty})' for t, ty in available.items())}")
    return chosen


def _read(bag: Path, sidecar: dict[str, Any], override: Mapping[str, str] | None):
    from rosbags.rosbag2 import Reader  # noqa: PLC0415 - keep import time of the module small

    where = _storage_name(bag)
    source: Path = bag
    if bag.is_dir() and not (bag / "metadata.yaml").is_file():
        storages = sorted(bag.glob("*.db3")) + sorted(bag.glob("*.mcap"))
        if len(storages) != 1:
            raise BagLoadError(f"{bag}: no metadata.yaml and {len(storages)} storage files; not a rosbag2 bag")
        source = storages[0]  # rosbags reads a bare storage file
    ts = typestore()
    streams: dict[str, list[tuple[int, Any]]] = {}
    try:
        with Reader(source) as reader:
            topics = _pick_topics(reader.connections, sidecar, override, where)
            roles = {topic: role for role, topic in topics.items()}
            wanted = [c for c in reader.connections if c.topic in roles]
            streams = {role: [] for role in topics}
            for conn, stamp, data in reader.messages(connections=wanted):
                try:
                    msg = ts.deserialize_cdr(data, conn.msgtype)
                except Exception as exc:  # noqa: BLE001 - rosbags raises several kinds
                    raise BagLoadError(f"{where}: message on {conn.topic} at {stamp} ns cannot be "
                                       f"deserialized as {conn.msgtype} ({exc})") from None
                streams[roles[conn.topic]].append((stamp, msg))
    except BagLoadError:
        raise
    except FileNotFoundError as exc:
        raise BagLoadError(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - rosbags/apsw/sqlite: never a raw traceback
        raise BagLoadError(f"{where}: corrupt or truncated bag ({type(exc).__name__}: {exc})") from None
    return topics, streams


def _markers(stream: list[tuple[int, Any]], where: str) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for stamp, msg in stream:
        try:
            marker = json.loads(msg.data)
            if marker.get("event") not in ("start", "end"):
                raise ValueError(f"unknown event {marker.get('event')!r}")
            marker["episode"] = int(marker["episode"])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("%s: ignored episode marker at %d ns: %r (%s)", where, stamp, getattr(msg, "data", msg), exc)
            continue
        out.append((stamp, marker))
    return out


def _segments(markers: list[tuple[int, dict[str, Any]]], where: str) -> list[dict[str, Any]]:
    segments, current = [], None
    for stamp, m in markers:
        if m["event"] == "start":
            if current is not None:
                log.warning("%s: episode %d started before episode %d ended", where, m["episode"], current["index"])
                current["end_ns"] = stamp
                segments.append(current)
            current = {"index": m["episode"], "start_ns": stamp, "end_ns": None, "success": None, "complete": False}
        elif current is not None and m["episode"] == current["index"]:
            success = m.get("success")
            current.update(end_ns=stamp, success=None if success is None else bool(success), complete=True)
            segments.append(current)
            current = None
        else:
            log.warning("%s: ignored end of episode %d (not started)", where, m["episode"])
    if current is not None:
        segments.append(current)
    return segments


def _hold(stream: list[tuple[int, Any]], width: int, values, at_ns: np.ndarray) -> np.ndarray:
    """Zero-order hold of a stream at the given receive times; NaN before its first message."""
    out = np.full((len(at_ns), width), np.nan)
    if not stream or not len(at_ns):
        return out
    stamps = np.array([s for s, _ in stream], dtype=np.int64)
    rows = np.full((len(stream), width), np.nan)
    for i, (_, msg) in enumerate(stream):
        v = values(msg)
        if v is not None and len(v) == width:
            rows[i] = v
    idx = np.searchsorted(stamps, at_ns, side="right") - 1
    ok = idx >= 0
    out[ok] = rows[idx[ok]]
    return out


def _planar_pose(msg) -> np.ndarray:
    """(x, y, z, sin yaw, cos yaw) of a PoseStamped; NaN for a non-unit quaternion (as the
    policy node's reader, :func:`sim_bridge.task_messages.read_planar_pose`)."""
    p, q = msg.pose.position, msg.pose.orientation
    norm = float(np.sqrt(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z))
    if not abs(norm - 1.0) < 1e-3:
        return np.full(5, np.nan)
    yaw = np.arctan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
    return np.array([p.x, p.y, p.z, np.sin(yaw), np.cos(yaw)])


def _needs_object(task: str | None) -> bool:
    """Whether the task's policy reads a streamed object pose (Push)."""
    if not task:
        return False
    from sim_bridge.tasks import UnknownTaskError, make_task  # noqa: PLC0415 - numpy-only declarations

    try:
        return any(i.topic == "object_pose" and not i.latched for i in make_task(task).inputs)
    except UnknownTaskError:
        return False


def _nearest_earlier(stream: list[tuple[int, Any]], at_ns: np.ndarray):
    """Index of the last message received at or before each time (-1: none yet)."""
    stamps = np.array([s for s, _ in stream], dtype=np.int64)
    return np.searchsorted(stamps, at_ns, side="right") - 1 if len(stamps) else np.full(len(at_ns), -1)


def load_episodes(bag_path: str | os.PathLike, joint_names: Sequence[str] | None = None, *,
                  topics: Mapping[str, str] | None = None, task: str | None = None) -> list[Episode]:
    """Episodes of a recorded bag as aligned arrays (see the module docstring).

    Args:
        bag_path: the bag directory (or a bare ``.db3``/``.mcap`` storage file).
        joint_names: column order; default: the recorded robot profile's joints, else the
            order of the first joint state.
        topics: role -> topic overrides (roles: joint_states, joint_commands,
            hardware_commands, current_goal, object_pose, episode); default: the recorder's
            sidecar, else found by type and name.
        task: the task the bag was recorded for (default: the sidecar's ``task``); a task
            with an object pose input (Push) makes a bag without object poses an error.
    """
    bag = Path(bag_path).expanduser()
    if not bag.exists():
        raise BagLoadError(f"{bag}: no such bag")
    if bag.is_dir() and not any(bag.iterdir()):
        raise BagLoadError(f"{bag}: empty directory, not a bag")
    sidecar = _read_sidecar(bag) if bag.is_dir() else {}
    tmp_dirs: list[str] = []
    try:
        source = bag
        if bag.is_dir() and _needs_recovery(bag, sidecar):
            source = _recover(bag, tmp_dirs)
            sidecar = _read_sidecar(source) or sidecar
        chosen, streams = _read(source, sidecar, topics)
    finally:
        for tmp in tmp_dirs:
            shutil.rmtree(tmp, ignore_errors=True)
    where = _storage_name(bag)

    states = streams["joint_states"]
    if not states:
        raise BagLoadError(f"{where}: no messages on {chosen['joint_states']} (joint_states)")
    if joint_names is None:
        profile = (sidecar.get("metadata") or {}).get("robot_profile") if sidecar else None
        if isinstance(profile, dict) and profile.get("joint_names"):
            joint_names = profile["joint_names"]
        else:
            joint_names = list(states[0][1].name)
    names = tuple(str(n) for n in joint_names)
    if len(set(names)) != len(names) or not names:
        raise BagLoadError(f"joint_names must be unique and non-empty, got {list(names)}")
    seen = set()
    for _, msg in states:
        seen.update(msg.name)
    if missing := [n for n in names if n not in seen]:
        raise BagLoadError(f"{where}: joint(s) {missing} never appear in {chosen['joint_states']}; "
                           f"recorded joints: {sorted(seen)}")

    n, j = len(states), len(names)
    receive = np.array([s for s, _ in states], dtype=np.int64)
    stamp_s = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for _, m in states])
    pos, vel, eff = (np.full((n, j), np.nan) for _ in range(3))
    mapper = JointMapper(names, owner="the requested joint_names")
    for i, (_, msg) in enumerate(states):
        m = mapper.lookup(msg.name)  # a joint this state lacks stays NaN in its row
        dst, src = m.target_columns, m.source_columns
        for arr, values in ((pos, msg.position), (vel, msg.velocity), (eff, msg.effort)):
            if len(values) == len(m.names):
                arr[i, dst] = np.asarray(values, dtype=float)[src]

    def data(msg):
        return np.asarray(msg.data, dtype=float)

    def point(msg):
        return np.array([msg.point.x, msg.point.y, msg.point.z])

    policy_cmd = _hold(streams.get("joint_commands", []), j, data, receive)
    hardware_cmd = _hold(streams.get("hardware_commands", []), j, data, receive)
    goal = _hold(streams.get("current_goal", []), 3, point, receive)
    objects = streams.get("object_pose", [])
    if task is None:
        task = ((sidecar.get("metadata") or {}).get("task") or None) if sidecar else None
    if _needs_object(task) and not objects:
        where_topic = chosen.get("object_pose") or "an object_pose topic (geometry_msgs/msg/PoseStamped)"
        raise BagLoadError(f"{where}: a {task} bag needs the object's poses, but {where_topic} has no messages "
                           f"(was the tracker running and the object_pose topic recorded? recorded topics: "
                           f"{sorted(chosen.values())})")
    object_pose = _hold(objects, 5, _planar_pose, receive)
    idx = _nearest_earlier(objects, receive)
    ok = idx >= 0
    object_age = np.full(n, np.nan)
    object_time = np.full(n, np.nan)
    if objects:
        obj_receive = np.array([s for s, _ in objects], dtype=np.int64)
        obj_stamp = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for _, m in objects])
        object_age[ok] = (receive[ok] - obj_receive[idx[ok]]) * 1e-9
        object_time[ok] = obj_stamp[idx[ok]]

    segments = _segments(_markers(streams.get("episode", []), where), where)
    if not segments:
        segments = [{"index": 0, "start_ns": None, "end_ns": None, "success": None, "complete": False}]
    episodes = []
    for seg in segments:
        mask = np.ones(n, dtype=bool)
        if seg["start_ns"] is not None:
            mask &= receive >= seg["start_ns"]
        if seg["end_ns"] is not None:
            mask &= receive <= seg["end_ns"]
        episodes.append(Episode(
            index=seg["index"], joint_names=names, time_s=stamp_s[mask], receive_ns=receive[mask],
            position=pos[mask], velocity=vel[mask], effort=eff[mask], policy_command=policy_cmd[mask],
            hardware_command=hardware_cmd[mask], goal=goal[mask], object_pose=object_pose[mask],
            object_pose_age_s=object_age[mask], object_time_s=object_time[mask], success=seg["success"],
            complete=seg["complete"], start_ns=seg["start_ns"], end_ns=seg["end_ns"],
            metadata=sidecar, topics=dict(chosen), bag_path=str(bag)))
    return episodes
