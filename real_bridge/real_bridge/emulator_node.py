"""The arm emulator node: a stand-in for a real ros2_control arm, thin over
:class:`real_bridge.emulator.ArmEmulator`.

It speaks what a ros2_control arm with a joint_state_broadcaster and a forward position
controller speaks, so the real bridge can be run against it unchanged:

Publishes (absolute names, as ros2_control's):
  /joint_states   sensor_msgs/JointState   every arm joint in the profile (URDF) order, then
                  the extra non-arm joints (default ``finger_joint``, always 0); positions
                  quantized by the encoder, velocities estimated by finite differences;
                  stamped with the node clock (wall time, like real hardware)
  /diagnostics    diagnostic_msgs/DiagnosticArray, status 'arm_emulator: health', once per
                  second: achieved rate, counters. Never the hidden physics.
  <object_pose_topic>  geometry_msgs/PoseStamped  (task 'push' only; default /mocap/puck/pose)
                  the tracker stand-in: the puck's pose in ``frame_id`` once per control
                  period, with the hidden tracker noise, stamped (now - the hidden latency),
                  nothing at all on a dropout; reliable keep-last 10, like a mocap driver
Subscribes:
  /<controller>/commands  std_msgs/Float64MultiArray  absolute joint position targets in the
                  controller's joint order (default the profile's); the last valid command is
                  held. A wrong length or a NaN/inf is ignored and logged (a real controller
                  rejects it), and the previous command stays in force. In realtime mode the
                  physics tick takes the commands that arrived since the last one (as a
                  ros2_control update reads its command buffer).
Services:
  ~/reset         std_srvs/Trigger  home the arm: default pose, command = default pose
                  (pending commands dropped); the hidden physics stay (same arm). With the
                  puck (task 'push'): also place it for the latest goal heard on
                  ``current_goal`` (push_distance_m from it, random direction and yaw,
                  seeded by the hidden object file; no goal heard yet: a goal sampled here).
                  On a real arm a person places the object.
Subscribes (task 'push' only):
  current_goal    geometry_msgs/PointStamped (latched)  the bridge's goal, to place the puck
                  for it; relative: remap it to the bridge's (e.g. /sim2real/current_goal)
Parameters (all read-only: restart the node to change them):
  robot_profile (str)       shipped name or YAML path
  hidden_params_file (str)  '' = the shipped real_bridge/config/emulator_hidden.yaml
  controller (str)          forward position controller name (command topic), default
                            forward_position_controller
  controller_joints (str[]) the controller's joint order; unset = the profile's
  extra_joints (str[])      non-arm joints reported at 0 (empty names are ignored)
  mode (str)                'realtime': a timer steps the physics at control_rate_hz, catching
                            up (up to 5 periods per tick) when the timer is late, so the arm
                            moves in wall time; 'lockstep': one control period per command
                            message (the state is republished every 0.1 s while idle)
  control_rate_hz (float)   0 = the profile's (the hardware's update rate)
  seed (int)                noise seed; -1 = the hidden file's
  task (str)                'reach' (the bare arm) | 'push' (the puck on the table, tracked)
  object_hidden_params_file (str)  '' = the task's shipped file (config/emulator_push_hidden.yaml)
  object_pose_topic (str)   the tracker stand-in's topic (absolute), default /mocap/puck/pose
  frame_id (str)            frame of the tracked poses: the robot base frame ('base_link')

QoS is ros2_control's (system defaults: reliable, volatile): a best-effort command
publisher does not connect, as with a real controller.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped, PoseStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from real_bridge.emulator import ArmEmulator
from sim_bridge.task_messages import write_planar_pose
from sim_bridge.tasks import DEFAULT_TASK
from sim_bridge import interface
from sim_bridge.executor import ThrottledLog, run_node, take_polled
from sim_bridge.config import ConfigError
from sim_bridge.profile import load_profile
from sim_bridge.rates import RateMeter

NODE_NAME = "arm_emulator"
JOINT_STATES_TOPIC = "/joint_states"
DEFAULT_CONTROLLER = "forward_position_controller"
MODES = ("realtime", "lockstep")
LOCKSTEP_IDLE_REPUBLISH_S = 0.1
DEFAULT_OBJECT_POSE_TOPIC = "/mocap/puck/pose"
GOAL_TOPIC = "current_goal"   # relative: remapped to the bridge's in a graph
MAX_CATCH_UP_STEPS = 5
# ros2_control's publishers and subscribers use the system default QoS: reliable, volatile.
ROS2_CONTROL_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.VOLATILE)


def command_topic(controller: str) -> str:
    return f"/{controller.strip('/')}/commands"


class ArmEmulatorNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)

        def ro(text: str) -> ParameterDescriptor:
            return ParameterDescriptor(description=text, read_only=True)

        self.declare_parameter("robot_profile", "panda_like", ro("shipped name or YAML path"))
        self.declare_parameter("hidden_params_file", "", ro("hidden physics; '' = the shipped emulator_hidden.yaml"))
        self.declare_parameter("controller", DEFAULT_CONTROLLER, ro("forward position controller name"))
        self.declare_parameter("controller_joints", Parameter.Type.STRING_ARRAY,
                               ro("the controller's joint order; unset = the profile's"))
        self.declare_parameter("extra_joints", ["finger_joint"], ro("non-arm joints reported at 0"))
        self.declare_parameter("mode", "realtime", ro("realtime | lockstep"))
        self.declare_parameter("control_rate_hz", 0.0, ro("0 = the profile's rate"))
        self.declare_parameter("seed", -1, ro("noise seed; -1 = the hidden file's"))
        self.declare_parameter("task", DEFAULT_TASK, ro("'reach' (bare arm) | 'push' (a tracked puck on the table)"))
        self.declare_parameter("object_hidden_params_file", "", ro(
            "hidden object physics; '' = the task's shipped file (emulator_push_hidden.yaml)"))
        self.declare_parameter("object_pose_topic", DEFAULT_OBJECT_POSE_TOPIC, ro(
            "topic of the tracker stand-in (absolute), geometry_msgs/PoseStamped"))
        self.declare_parameter("frame_id", "base_link", ro("frame of the tracked object poses (the robot base)"))

        mode = self.get_parameter("mode").value
        if mode not in MODES:
            raise ConfigError(f"must be one of {list(MODES)}, got '{mode}'", field="mode")
        self.mode = mode
        try:
            controller_joints = self.get_parameter("controller_joints").value
        except ParameterUninitializedException:
            controller_joints = None
        extra = [j for j in self.get_parameter("extra_joints").value if j]
        seed = self.get_parameter("seed").value
        self.emulator = ArmEmulator(
            load_profile(self.get_parameter("robot_profile").value),
            self.get_parameter("hidden_params_file").value or None,
            control_rate_hz=self.get_parameter("control_rate_hz").value or None,
            seed=None if seed < 0 else int(seed), controller_joints=controller_joints, extra_joints=extra,
            task=self.get_parameter("task").value,
            hidden_object=self.get_parameter("object_hidden_params_file").value or None)
        self.profile = self.emulator.profile
        controller = self.get_parameter("controller").value
        if not controller.strip("/"):
            raise ConfigError("must name the controller, got ''", field="controller")
        self.command_topic = command_topic(controller)

        self.commands_accepted = 0
        self.commands_rejected = 0
        self.last_rejection = ""
        self.catch_up_steps = 0
        self.lost_periods = 0
        self._steps = RateMeter.over(2.0, self.profile.control_rate_hz)  # physics periods, the last ~2 s
        self._log_throttled = ThrottledLog(self.get_logger().error)

        self._state_pub = self.create_publisher(JointState, JOINT_STATES_TOPIC, ROS2_CONTROL_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, interface.DIAGNOSTICS, interface.DIAGNOSTICS_QOS)
        self._command_sub = self.create_subscription(Float64MultiArray, self.command_topic, self._on_command,
                                                     ROS2_CONTROL_QOS)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.goal = None            # the latest goal heard (the puck is placed for it at ~/reset)
        self.object_poses_published = 0
        self.object_pose_dropouts = 0
        self._object_pub = None
        self.object_pose_topic = ""
        if self.emulator.object is not None:
            self.object_pose_topic = self.get_parameter("object_pose_topic").value
            if not self.object_pose_topic.startswith("/"):
                raise ConfigError(f"must be an absolute topic name, got '{self.object_pose_topic}'",
                                  field="object_pose_topic")
            self._object_pub = self.create_publisher(PoseStamped, self.object_pose_topic, ROS2_CONTROL_QOS)
            self.create_subscription(PointStamped, GOAL_TOPIC, self._on_goal, interface.LATCHED_QOS)
        self._t0 = time.monotonic()
        self._periods_done = 0
        if mode == "realtime":
            self.create_timer(self.profile.control_period_s, self._on_timer)
            # the commands only matter at the next physics step: the tick takes what arrived
            # since, as a ros2_control update reads its command buffer, so the executor wakes
            # once per period instead of twice (StaticWaitMixin does not wait on polled
            # subscriptions; rclpy's own loops still call _on_command)
            self.polled_subscriptions = (self._command_sub,)
        else:
            self.create_timer(LOCKSTEP_IDLE_REPUBLISH_S, self._on_lockstep_idle)
        self.create_timer(1.0, self.publish_diagnostics)
        hidden = self.emulator.hidden.source.name if self.emulator.hidden.source else "<in memory>"
        self.get_logger().info(
            f"arm emulator up: robot '{self.profile.name}' ({self.profile.num_joints} joints"
            f"{' + ' + ', '.join(extra) if extra else ''}), {mode} mode, {self.profile.control_rate_hz:g} Hz; "
            f"commands on {self.command_topic} in order {list(self.emulator.controller_joints)}, state on "
            f"{JOINT_STATES_TOPIC}; hidden physics from {hidden}"
            + (f"; a {self.emulator.task.name} object tracked on {self.object_pose_topic} (hidden object physics "
               f"from {self.emulator.object.source.name if self.emulator.object.source else '<in memory>'}), "
               f"placed at ~/reset for the goal on {self.resolve_topic_name(GOAL_TOPIC)}"
               if self._object_pub is not None else ""))
        self._publish_state()

    # --- callbacks ----------------------------------------------------------------------
    def _on_timer(self) -> None:
        """Keep the physics in wall time: step every period that has passed (a few at most)."""
        self._take_commands()
        period = self.profile.control_period_s
        due = int((time.monotonic() - self._t0) / period + 0.5) - self._periods_done
        steps = max(1, due)
        if steps > MAX_CATCH_UP_STEPS:  # far behind (a stall): give the lost time up
            self.lost_periods += steps - MAX_CATCH_UP_STEPS
            self._periods_done += steps - MAX_CATCH_UP_STEPS
            steps = MAX_CATCH_UP_STEPS
        self.catch_up_steps += steps - 1
        for _ in range(steps):
            self._periods_done += 1
            if not self._step():
                break
        self._publish_state()

    def _take_commands(self) -> None:
        """Apply the commands that arrived since the last tick, oldest first (at most the
        reader's depth: a flood cannot hold the tick)."""
        sub = self._command_sub
        for _ in range(ROS2_CONTROL_QOS.depth):
            taken = take_polled(sub)
            if taken is None:
                return
            self._on_command(taken[0])

    def _on_lockstep_idle(self) -> None:
        last = self._steps.last_s or 0.0
        if time.monotonic() - last >= LOCKSTEP_IDLE_REPUBLISH_S:
            self._publish_state()

    def _on_command(self, msg: Float64MultiArray) -> None:
        try:
            self.emulator.command(msg.data)
        except ValueError as exc:
            self.commands_rejected += 1
            self.last_rejection = str(exc)
            self._log_throttled("reject", f"{self.command_topic}: command ignored ({exc}); "
                                          "holding the previous command")
        else:
            self.commands_accepted += 1
        if self.mode == "lockstep":  # time passes with every message, accepted or not
            self._step()
            self._publish_state()

    def _on_goal(self, msg: PointStamped) -> None:
        self.goal = (msg.point.x, msg.point.y, msg.point.z)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        goal = self.goal
        self.emulator.reset(goal=goal)
        self._publish_state()
        self._publish_object_pose()
        response.success = True
        response.message = (f"homed: arm at the default pose {self.profile.default_pose_rad.round(3).tolist()}, "
                            "command = default pose, pending commands dropped")
        if self.emulator.object is not None:
            x, y, _, yaw = self.emulator.true_object_pose()
            response.message += (f"; puck placed at ({x:.3f}, {y:.3f}) m, yaw {yaw:.2f} rad, for the goal "
                                 f"{np.round(self.emulator.goal, 3).tolist()}"
                                 + ("" if goal is not None else " (no goal heard on current_goal: sampled here)"))
        self.get_logger().info(response.message)
        return response

    # --- helpers ------------------------------------------------------------------------
    def _step(self) -> bool:
        ok = self.emulator.step()
        self._steps.tick(time.monotonic())
        if not ok:
            self.get_logger().error("physics fault (blow-up): the arm was re-homed to the default pose")
        self._publish_object_pose()
        return ok

    def _publish_object_pose(self) -> None:
        """The tracker stand-in's reading of this period: stamped now - its latency; none on a dropout."""
        if self._object_pub is None:
            return
        reading = self.emulator.object_pose()
        if reading is None:
            self.object_pose_dropouts += 1
            return
        msg = PoseStamped()
        stamp_ns = self.get_clock().now().nanoseconds - round(reading.age_s * 1e9)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(max(0, stamp_ns), 1_000_000_000)
        msg.header.frame_id = self.get_parameter("frame_id").value
        write_planar_pose(msg, reading.pose)
        self._object_pub.publish(msg)
        self.object_poses_published += 1

    def _publish_state(self) -> None:
        s = self.emulator.joint_state()
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = list(s.names)
        msg.position = s.position_rad.tolist()
        msg.velocity = s.velocity_rad_s.tolist()
        msg.effort = s.effort_nm.tolist()
        self._state_pub.publish(msg)

    def achieved_rate_hz(self) -> float:
        """Physics control periods per wall-clock second over the last ~2 s."""
        return self._steps.rate_hz()

    def publish_diagnostics(self) -> None:
        rate = self.achieved_rate_hz()
        target = self.profile.control_rate_hz
        e = self.emulator
        slow = self.mode == "realtime" and len(self._steps) > 10 and rate < 0.9 * target
        status = DiagnosticStatus(name=f"{NODE_NAME}: health", hardware_id=f"{NODE_NAME}/{self.profile.name}",
                                  level=DiagnosticStatus.WARN if slow else DiagnosticStatus.OK,
                                  message=f"{self.mode}, {rate:.1f} Hz achieved (target {target:g} Hz)")
        status.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ("mode", self.mode), ("target_rate_hz", f"{target:g}"), ("achieved_rate_hz", f"{rate:.2f}"),
            ("control_steps", e.control_steps), ("homings", e.resets - 1), ("faults", e.faults),
            ("commands_accepted", self.commands_accepted), ("commands_rejected", self.commands_rejected),
            ("last_rejection", self.last_rejection), ("catch_up_steps", self.catch_up_steps),
            ("lost_periods", self.lost_periods), ("command_topic", self.command_topic),
            ("joints", ",".join(e.state_names)), ("task", e.task.name),
            ("object_pose_topic", self.object_pose_topic), ("object_poses_published", self.object_poses_published),
            ("object_pose_dropouts", self.object_pose_dropouts))]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Entry point for ``ros2 run real_bridge arm_emulator`` and ``sim2real node arm_emulator``."""
    return run_node("arm_emulator", ArmEmulatorNode, args)


if __name__ == "__main__":
    sys.exit(main())
