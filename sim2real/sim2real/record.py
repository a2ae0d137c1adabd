"""``sim2real record``: record the arm's topics into a rosbag2 bag (for calibration).

Joint states, policy and hardware commands, goals and episode markers go into a rosbag2 bag
(sqlite3; ``ros2 bag info`` reads it) with the run's metadata, until Ctrl-C or
``--duration-s``. Load it with :func:`real_bridge.bagload.load_episodes`. The recorder node
(:class:`real_bridge.recorder_node.RecorderNode`) does the work; this command names the
policy's hash (found with :func:`policies.manifest.find_policy`) so the bag says exactly which
policy drove the arm.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RecordConfig:
    """``sim2real record``: record the arm's topics into a rosbag2 bag (for calibration)."""

    output: Path | None = None
    """bag directory to create (must not exist; None: runs/bags/<UTC time>)"""
    note: str = ""
    """operator note stored in the bag's metadata"""
    duration_s: float = 0.0
    """stop after this many seconds (0: until Ctrl-C)"""
    topics: tuple[str, ...] = ()
    """topics ('name' or 'name:pkg/msg/Type'; empty: the recorder's defaults)"""
    robot_profile: str = "panda_like"
    """robot profile stored in the metadata ('' = none)"""
    policy_name: str = ""
    """policy driving the arm (shipped name or artifact folder), stored in the metadata with its hash"""
    namespace: str = ""
    """ROS namespace of the relative topic names (e.g. /sim2real)"""


def add_record_command(subparsers) -> None:
    from sim2real.cli import add_typed_command  # noqa: PLC0415

    add_typed_command(subparsers, "record", RecordConfig, run_record, description=__doc__,
                      help="record the arm's topics into a rosbag2 bag (for calibration)")


def policy_sha256(name: str) -> str:
    """The ONNX hash of a shipped policy or artifact folder ('' when there is none)."""
    from policies.manifest import find_policy, load_manifest  # noqa: PLC0415
    from sim_bridge.config import ConfigError  # noqa: PLC0415

    if not name:
        return ""
    try:
        return load_manifest(find_policy(name)).onnx_sha256
    except (FileNotFoundError, ConfigError):
        return ""


def run_record(args: RecordConfig) -> int:
    import rclpy  # noqa: PLC0415
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: PLC0415
    from rclpy.parameter import Parameter  # noqa: PLC0415

    from real_bridge.recorder import CLOSED  # noqa: PLC0415
    from real_bridge.recorder_node import RecorderNode, default_output, format_summary  # noqa: PLC0415
    from sim_bridge.config import ConfigError  # noqa: PLC0415

    if args.duration_s < 0:
        print("sim2real record: --duration-s must be >= 0", file=sys.stderr)
        return 2
    overrides = [Parameter("note", value=args.note), Parameter("robot_profile", value=args.robot_profile),
                 Parameter("policy_name", value=args.policy_name),
                 Parameter("policy_sha256", value=policy_sha256(args.policy_name)),
                 Parameter("output", value=str(args.output) if args.output else str(default_output()))]
    if args.topics:
        overrides.append(Parameter("topics", value=list(args.topics)))
    rclpy.init()
    try:
        node = RecorderNode(parameter_overrides=overrides, namespace=args.namespace or None)
    except ConfigError as exc:
        print(f"sim2real record: invalid configuration: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    if node.recorder is None:
        print(f"sim2real record: {node.error}", file=sys.stderr)
        node.destroy_node()
        rclpy.try_shutdown()
        return 2
    until = f"for {args.duration_s:g} s" if args.duration_s > 0 else "until Ctrl-C"
    print(f"sim2real record: recording {len(node.recorder.topics)} topic(s) to {node.output} {until}", flush=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    start = time.monotonic()
    end = start + args.duration_s if args.duration_s > 0 else float("inf")
    try:
        while rclpy.ok() and time.monotonic() < end:
            executor.spin_once(timeout_sec=min(0.1, max(0.0, end - time.monotonic())))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stats = node.close_bag()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    print(format_summary(stats, time.monotonic() - start, node.error), flush=True)
    return 0 if stats is not None and stats.state == CLOSED and not stats.error else 1
