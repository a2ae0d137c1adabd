"""The recorder node: records the bridge/policy topics into a rosbag2 bag for calibration.

A thin shell over :class:`real_bridge.recorder.BagRecorder`. Subscriptions are ``raw=True``:
the CDR bytes DDS delivered go into the bag unchanged (no conversion, no Python message
objects); a callback only stamps the message and appends it to the recorder's queue, so a
slow disk never blocks anything (a full queue drops and counts).

Subscribes (names relative to the node's namespace unless absolute):
  joint_states, joint_commands, current_goal, /forward_position_controller/commands,
  episode (std_msgs/String JSON markers from other nodes), by default (parameter ``topics``);
  with ``task`` set to a task with streamed inputs (Push) also those inputs (``object_pose``,
  geometry_msgs/PoseStamped, the pose the bridge relayed to the policy)
Services:
  ~/start_episode        std_srvs/Trigger  write {"event": "start", "episode": n} (ends an open episode first)
  ~/end_episode          std_srvs/Trigger  write {"event": "end", "episode": n, "success": null}
  ~/end_episode_success  std_srvs/Trigger  ... with "success": true
  ~/end_episode_failure  std_srvs/Trigger  ... with "success": false
  (markers are written into the bag directly, on the resolved ``episode`` topic; not published)
Publishes:
  /diagnostics  diagnostic_msgs/DiagnosticArray, status 'recorder: bag', once per second:
                messages written / dropped / failed, queue depth, per-topic counts;
                WARN when messages were dropped, ERROR when the bag failed
Parameters (all read-only):
  output (str)            bag directory, must not exist; '' = runs/bags/<UTC time>
  topics (str[])          topic names, optionally 'name:pkg/msg/Type'; types of the known
                          names are built in, others are taken from the ROS graph once a
                          publisher appears
  note (str)              operator note, stored in the bag's metadata
  robot_profile (str)     shipped name or YAML path ('' = none): name and joint order go to the metadata
  policy_name (str)       the policy driving the arm ('' = none)
  policy_sha256 (str)     the ONNX hash of that policy; '' = read from policy_name's manifest.json
                          when policy_name is an artifact folder path (the app passes the hash
                          of a named policy: this package does not know the policy zoo)
  task (str)              the task being recorded ('' = not said): stored in the metadata, and its
                          streamed inputs (Push: object_pose) are recorded too; the bag loader
                          then refuses a push bag without object poses
  queue_size (int)        messages waiting for the disk before dropping
  flush_interval_s (float)  commit period: the most a crash can lose

QoS (picked per topic): streams (states, commands, anything else) are subscribed
BEST_EFFORT / VOLATILE, keep-last 100: compatible with both reliable and best-effort
publishers (a reliable publisher serves a best-effort subscriber), and the recorder never
makes a reliable publisher wait for it. ``current_goal`` is RELIABLE / TRANSIENT_LOCAL
(interface.LATCHED_QOS) to get the latched goal at startup; ``episode`` is RELIABLE (markers
must not be lost; publish them reliable, the rclpy default). Bag timestamps are the
recorder's wall clock at reception (as ``ros2 bag record``), also under sim time: they are the
one clock all topics share, used by the loader for alignment.
"""
from __future__ import annotations

import importlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

from real_bridge.recorder import (FAILED, BagRecorder, RecorderError, RecorderStats, qos,
                                  typestore)
from sim_bridge import interface
from sim_bridge.config import ConfigError

EPISODE_TOPIC = "episode"
HARDWARE_COMMAND_TOPIC = "/forward_position_controller/commands"
DEFAULT_TOPICS = [interface.JOINT_STATES, interface.JOINT_COMMANDS, interface.CURRENT_GOAL,
                  HARDWARE_COMMAND_TOPIC, EPISODE_TOPIC]
DEFAULT_OUTPUT_DIR = Path("runs/bags")
# Types of the topics this stack knows, by base name.
KNOWN_TYPES = {
    "joint_states": "sensor_msgs/msg/JointState",
    "joint_commands": "std_msgs/msg/Float64MultiArray",
    "commands": "std_msgs/msg/Float64MultiArray",
    "joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "current_goal": "geometry_msgs/msg/PointStamped",
    "object_pose": "geometry_msgs/msg/PoseStamped",
    "goal": "geometry_msgs/msg/PointStamped",
    "episode": "std_msgs/msg/String",
    "diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    "clock": "rosgraph_msgs/msg/Clock",
}
# Roles the loader looks up in the metadata: role -> (base name, type).
ROLES = {"joint_states": ("joint_states", "sensor_msgs/msg/JointState"),
         "joint_commands": ("joint_commands", "std_msgs/msg/Float64MultiArray"),
         "hardware_commands": ("commands", "std_msgs/msg/Float64MultiArray"),
         "current_goal": ("current_goal", "geometry_msgs/msg/PointStamped"),
         "object_pose": ("object_pose", "geometry_msgs/msg/PoseStamped"),
         "episode": ("episode", "std_msgs/msg/String")}

STREAM_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.BEST_EFFORT,
                        durability=DurabilityPolicy.VOLATILE)
EVENT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE)
DISCOVERY_PERIOD_S = 0.5


def default_output() -> Path:
    return DEFAULT_OUTPUT_DIR / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def base_name(topic: str) -> str:
    return topic.rstrip("/").rsplit("/", 1)[-1]


def message_class(msgtype: str):
    """rclpy message class of 'pkg/msg/Type'."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def artifact_sha256(name: str) -> str:
    """The ONNX hash in ``<name>/manifest.json`` when ``name`` is a policy artifact folder, else ''."""
    if not name:
        return ""
    try:
        return str(json.loads((Path(name).expanduser() / "manifest.json").read_text()).get("onnx_sha256", ""))
    except (OSError, ValueError, AttributeError):
        return ""


class RecorderNode(Node):
    def __init__(self, **kwargs):
        super().__init__("recorder", **kwargs)
        ro = dict(read_only=True)
        self.declare_parameter("output", "", ParameterDescriptor(
            description="bag directory (must not exist); '' = runs/bags/<UTC time>", **ro))
        self.declare_parameter("topics", DEFAULT_TOPICS, ParameterDescriptor(
            description="topics to record, 'name' or 'name:pkg/msg/Type'", **ro))
        self.declare_parameter("note", "", ParameterDescriptor(description="operator note", **ro))
        self.declare_parameter("robot_profile", "panda_like", ParameterDescriptor(
            description="robot profile (shipped name or YAML path; '' = none) stored in the metadata", **ro))
        self.declare_parameter("policy_name", "", ParameterDescriptor(description="policy driving the arm", **ro))
        self.declare_parameter("policy_sha256", "", ParameterDescriptor(
            description="ONNX hash of the policy; '' = read from policy_name when it is an artifact folder", **ro))
        self.declare_parameter("task", "", ParameterDescriptor(
            description="task being recorded ('' = not said); its streamed inputs (Push: object_pose) are recorded",
            **ro))
        self.declare_parameter("queue_size", 10000, ParameterDescriptor(
            description="messages waiting for the disk before dropping", **ro))
        self.declare_parameter("flush_interval_s", 0.5, ParameterDescriptor(
            description="commit period (the most a crash loses)", **ro))

        entries = list(self.get_parameter("topics").value)
        self.task = self.get_parameter("task").value
        if self.task:
            from sim_bridge.tasks import UnknownTaskError, make_task  # noqa: PLC0415 - numpy-only declarations

            try:
                task = make_task(self.task)
            except UnknownTaskError as exc:
                raise ConfigError(str(exc), field="task") from None
            named = {e.strip().partition(":")[0] for e in entries}
            entries += [f"{i.topic}:{i.msg_type}" for i in task.inputs if not i.latched and i.topic not in named]
        topics = self._parse_topics(entries)
        output = self.get_parameter("output").value or str(default_output())
        self.output = Path(output).expanduser().absolute()
        self.episode_topic = self.resolve_topic_name(EPISODE_TOPIC)
        self.episode = 0            # the last episode number started here
        self.episode_open = False
        self.error = ""
        self.final_stats: RecorderStats | None = None
        self.recorder: BagRecorder | None = None
        self._recorded_subs: dict[str, object] = {}
        self._pending: dict[str, str] = {}   # topic -> '' (type unknown yet)
        self._warned: set[str] = set()
        self._started = time.monotonic()

        known = {name: t for name, t in topics.items() if t}
        self._pending = {name: "" for name, t in topics.items() if not t}
        metadata = self._metadata(known, list(topics))
        offered = {name: [qos(transient_local=True)] for name in known if base_name(name) == "current_goal"}
        try:
            self.recorder = BagRecorder(
                self.output, known, metadata, episode_topic=self.episode_topic,
                queue_size=int(self.get_parameter("queue_size").value),
                flush_interval_s=float(self.get_parameter("flush_interval_s").value), offered_qos=offered)
        except RecorderError as exc:
            self.error = str(exc)
            self.get_logger().error(f"not recording: {exc}")
        if self.recorder is not None:
            for name, msgtype in known.items():
                self._subscribe(name, msgtype)
            self.get_logger().info(
                f"recording {len(known)} topic(s) to {self.output}: {', '.join(sorted(known))}"
                + (f"; waiting for the type of {sorted(self._pending)}" if self._pending else ""))
            if self._pending:
                self.create_timer(DISCOVERY_PERIOD_S, self._discover)

        self._diag_pub = self.create_publisher(DiagnosticArray, interface.DIAGNOSTICS, interface.DIAGNOSTICS_QOS)
        self.create_service(Trigger, "~/start_episode", self._on_start_episode)
        self.create_service(Trigger, "~/end_episode", lambda rq, rs: self._on_end_episode(rs, None))
        self.create_service(Trigger, "~/end_episode_success", lambda rq, rs: self._on_end_episode(rs, True))
        self.create_service(Trigger, "~/end_episode_failure", lambda rq, rs: self._on_end_episode(rs, False))
        self.create_timer(1.0, self.publish_diagnostics)

    # --- setup ----------------------------------------------------------------------------
    def _parse_topics(self, entries: list[str]) -> dict[str, str]:
        """Resolved name -> type ('' = ask the graph)."""
        topics: dict[str, str] = {}
        for entry in entries:
            name, _, msgtype = entry.strip().partition(":")
            if not name:
                raise ConfigError(f"empty topic name in {entries}", field="topics")
            try:
                resolved = self.resolve_topic_name(name)
            except Exception as exc:  # noqa: BLE001 - rclpy raises its own invalid-name errors
                raise ConfigError(f"invalid topic name {name!r} ({exc})", field="topics") from None
            msgtype = msgtype.strip() or KNOWN_TYPES.get(base_name(resolved), "")
            if msgtype and msgtype not in typestore().types:
                raise ConfigError(f"topic {resolved}: type {msgtype!r} unknown (use pkg/msg/Type of a "
                                  "ROS 2 Jazzy message)", field="topics")
            topics[resolved] = msgtype
        return topics

    def _metadata(self, known: dict[str, str], requested: list[str]) -> dict:
        profile_name = self.get_parameter("robot_profile").value
        profile = {}
        if profile_name:
            from sim_bridge.profile import load_profile  # noqa: PLC0415 - mujoco-free, but only when asked

            p = load_profile(profile_name)
            profile = {"name": p.name, "source": profile_name, "joint_names": list(p.joint_names)}
        policy_name = self.get_parameter("policy_name").value
        sha = self.get_parameter("policy_sha256").value or artifact_sha256(policy_name)
        roles = {}
        for role, (base, msgtype) in ROLES.items():
            matches = [t for t in requested if base_name(t) == base and known.get(t, msgtype) == msgtype]
            if role == "episode":
                matches = [self.episode_topic]
            if matches:
                roles[role] = matches[0]
        return {"robot_profile": profile, "policy": {"name": policy_name, "sha256": sha}, "task": self.task,
                "note": self.get_parameter("note").value, "topics": roles,
                "node": self.get_fully_qualified_name(), "recorded_topics": requested}

    def _subscribe(self, topic: str, msgtype: str) -> None:
        base = base_name(topic)
        qos_profile = interface.LATCHED_QOS if base == "current_goal" else (
            EVENT_QOS if topic == self.episode_topic else STREAM_QOS)
        recorder = self.recorder

        def on_message(data: bytes, topic=topic) -> None:
            recorder.record(topic, time.time_ns(), data)

        self._recorded_subs[topic] = self.create_subscription(
            message_class(msgtype), topic, on_message, qos_profile, raw=True)

    def _discover(self) -> None:
        if not self._pending or self.recorder is None:
            return
        graph = dict(self.get_topic_names_and_types())
        for topic in list(self._pending):
            types = graph.get(topic)
            if not types:
                continue
            msgtype = types[0]
            del self._pending[topic]
            if msgtype not in typestore().types:
                self.get_logger().error(f"not recording {topic}: type {msgtype} is not a ROS 2 Jazzy message "
                                        "known to the bag writer")
                continue
            try:
                self.recorder.add_topic(topic, msgtype)
            except RecorderError as exc:
                self.get_logger().error(f"not recording {topic}: {exc}")
                continue
            self._subscribe(topic, msgtype)
            self.get_logger().info(f"recording {topic} ({msgtype})")

    # --- episodes -------------------------------------------------------------------------
    def _mark(self, event: str, success: bool | None = None) -> tuple[bool, str]:
        if self.recorder is None or self.recorder.state != "recording":
            return False, f"not recording: {self.error or (self.recorder.error if self.recorder else '')}"
        ok = self.recorder.mark_episode(event, self.episode, success, source=self.get_fully_qualified_name())
        return ok, "" if ok else f"marker not written: {self.recorder.error or 'recorder closing'}"

    def _on_start_episode(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        note = ""
        if self.episode_open:
            ok, reason = self._mark("end")
            note = f" (episode {self.episode} was still open: ended, success unknown)"
            self.episode_open = False
        self.episode += 1
        ok, reason = self._mark("start")
        self.episode_open = ok
        response.success = ok
        response.message = f"episode {self.episode} started{note}" if ok else reason
        if not ok:
            self.episode -= 1
        self.get_logger().info(response.message)
        return response

    def _on_end_episode(self, response: Trigger.Response, success: bool | None) -> Trigger.Response:
        if not self.episode_open:
            response.success, response.message = False, "no episode in progress"
            return response
        ok, reason = self._mark("end", success)
        self.episode_open = not ok
        outcome = {None: "", True: " (success)", False: " (failure)"}[success]
        response.success = ok
        response.message = f"episode {self.episode} ended{outcome}" if ok else reason
        self.get_logger().info(response.message)
        return response

    # --- diagnostics ----------------------------------------------------------------------
    def stats(self) -> RecorderStats | None:
        if self.final_stats is not None:
            return self.final_stats
        return self.recorder.stats() if self.recorder is not None else None

    def publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name="recorder: bag", hardware_id=str(self.output))
        stats = self.stats()
        if stats is None:
            status.level = DiagnosticStatus.ERROR
            status.message = f"not recording: {self.error}"
            status.values = [KeyValue(key="path", value=str(self.output)), KeyValue(key="state", value="failed"),
                             KeyValue(key="error", value=self.error)]
        else:
            if stats.state == FAILED or stats.error:
                status.level = DiagnosticStatus.ERROR
                status.message = f"{stats.state}: {stats.error}"
            else:
                status.level = DiagnosticStatus.WARN if stats.dropped else DiagnosticStatus.OK
                status.message = (f"{stats.state} to {stats.path}: {stats.written} written, "
                                  f"{stats.dropped} dropped, {stats.failed} failed")
            values = [("path", stats.path), ("state", stats.state), ("written", stats.written),
                      ("dropped", stats.dropped), ("failed", stats.failed), ("queued", stats.queued),
                      ("episodes", stats.episodes), ("episode_open", self.episode_open),
                      ("waiting_for_type", ",".join(sorted(self._pending))), ("error", stats.error)]
            for topic, t in stats.topics.items():
                values += [(f"written {topic}", t.written), (f"dropped {topic}", t.dropped)]
            status.values = [KeyValue(key=k, value=str(v)) for k, v in values]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    # --- shutdown -------------------------------------------------------------------------
    def close_bag(self) -> RecorderStats | None:
        """Stop recording and close the bag (metadata.yaml); returns the final counters. Idempotent."""
        if self.recorder is not None and self.final_stats is None:
            for sub in self._recorded_subs.values():
                self.destroy_subscription(sub)
            self._recorded_subs.clear()
            if self.episode_open:
                self._mark("end")
                self.episode_open = False
            self.final_stats = self.recorder.close()
            if self.final_stats.error:
                self.get_logger().error(self.final_stats.error)
        return self.stats()

    def destroy_node(self) -> None:
        self.close_bag()
        super().destroy_node()


def format_summary(stats: RecorderStats | None, seconds: float, error: str = "") -> str:
    if stats is None:
        return f"nothing recorded: {error}"
    lines = [f"recorded {stats.written} message(s) in {seconds:.1f} s to {stats.path} ({stats.state})"]
    width = max((len(t) for t in stats.topics), default=0)
    for topic, t in sorted(stats.topics.items()):
        extra = "".join(f", {n} {label}" for n, label in ((t.dropped, "dropped"), (t.failed, "failed")) if n)
        lines.append(f"  {topic:<{width}}  {t.written:6d} written{extra}  ({t.msgtype})")
    lines.append(f"episodes: {stats.episodes}; dropped {stats.dropped}, failed {stats.failed}")
    if stats.error:
        lines.append(f"error: {stats.error}")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    """Entry point for ``ros2 run real_bridge recorder`` and ``sim2real node recorder``."""
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = RecorderNode()
    except ConfigError as exc:
        print(f"recorder: invalid configuration: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    start = time.monotonic()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stats = node.close_bag()
        node.destroy_node()
        rclpy.try_shutdown()
    print(format_summary(stats, time.monotonic() - start, node.error), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
