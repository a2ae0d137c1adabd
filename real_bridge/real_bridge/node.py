"""The real-arm bridge: the sim bridge's policy-side interface in front of a ros2_control arm,
with a safety filter and a watchdog in between. A thin lifecycle node over the pure
:class:`~real_bridge.core.BridgeCore` (the bridge's rules, over the
:class:`~real_bridge.safety.SafetyFilter` and the :class:`~real_bridge.watchdog.Watchdog`):
it converts messages to arrays, calls the core and publishes what the core returns.

Policy side (names relative to the node's namespace, types and QoS of
:mod:`sim_bridge.interface`, so a policy node cannot tell this bridge from the sim bridge):
  joint_states   sensor_msgs/JointState (out)   the hardware joint states in the profile's joint
                 order, stamped with the hardware stamp, once per control cycle while active
                 and the state is fresh (what the sim bridge does: one state per control step)
  current_goal   geometry_msgs/PointStamped (out, latched)
  /diagnostics   diagnostic_msgs/DiagnosticArray (out): status 'real_bridge: safety', once per
                 second and at every mode change. Command counters: every command the node
                 took is in exactly one of commands_used, commands_superseded,
                 commands_rejected (by kind: rejected_command_*), commands_discarded, or
                 commands_pending (0/1); their sum is commands_received; command_intake_waits:
                 how often the intake waited for the next cycle (a flood). Commands the middleware
                 replaced in the reader's queue (a publisher faster than the intake, see
                 joint_commands) never reach the node and cannot be counted by it: compare
                 commands_received with what the policy sent.
  joint_commands std_msgs/Float64MultiArray (in)  absolute joint targets, profile order, rad
                 (reliable like COMMAND_QOS; the reader keeps 16, so commands of a burst are
                 seen and counted as superseded rather than silently replaced by DDS). The
                 control tick takes them (the executor does not wake per command; each
                 command's age counts from its reception stamp). Bounded intake: at most 16
                 commands are taken per control period, so a flood costs the executor and the
                 GIL a bounded amount per period (DDS's own threads still receive every
                 message: CPU, no GIL); what a flood sends beyond that waits in the reader's 16
                 and DDS replaces the oldest.
  object_pose    geometry_msgs/PoseStamped (out; tasks with an object: Push) the tracker's pose
                 from ``object_pose_topic``, relayed unchanged (same stamp and frame) as soon as
                 it arrives, if it passes the checks of
                 :meth:`BridgeCore.on_object_pose <real_bridge.core.BridgeCore.on_object_pose>`:
                 frame = ``frame_id`` (the robot base), finite, unit quaternion, in order, not
                 older than ``object_pose_stale_s``. A rejected pose is counted
                 (rejected_object_pose_<kind> on /diagnostics), logged (throttled, per kind) and
                 not relayed: the policy node holds by itself once its last pose is stale. A
                 stream that stops while active is counted (object_pose_outages), logged and WARNs.
  goal           geometry_msgs/PointStamped (in)  new reach target (base frame, m)
  reset          std_srvs/Trigger  a real arm cannot resample its physics: reset samples a new
                 goal in the profile's reach_workspace (seeded by ``seed``), publishes it on
                 current_goal and says so in its message. It does not move the arm.
Hardware side (ros2_control conventions, absolute names):
  <object_pose_topic>              geometry_msgs/PoseStamped (in; Push) from the object tracker
                                   (motion capture, AprilTags), in the robot base frame;
                                   best-effort keep-last 10 (matches reliable and best-effort
                                   publishers); subscribed only when the task needs it
  <hardware_joint_states>          sensor_msgs/JointState (in) from joint_state_broadcaster;
                                   mapped by name (any order, extra joints ignored); best-effort
                                   keep-last 4, which matches reliable and best-effort publishers;
                                   the control tick takes the latest (its age from the reception
                                   stamp), so the executor does not wake for each state
  /<controller>/commands           std_msgs/Float64MultiArray (out, output 'forward') for a
                                   forward_position_controller, in ``controller_joints`` order
  /<controller>/joint_trajectory   trajectory_msgs/JointTrajectory (out, output 'trajectory') for
                                   a joint_trajectory_controller: one point, time_from_start one
                                   control period, stamp 0 (start now)
Services:
  ~/estop    std_srvs/Trigger  latch a software e-stop: hold the measured position until released
  ~/release  std_srvs/Trigger  unlatch it; the bridge holds until a new policy command arrives
Parameters (read-only; set them in launch/config/real_bridge.yaml):
  robot_profile (str)           shipped name or YAML path: joints, limits, rate, reach workspace
  hardware_joint_states (str)   '/joint_states'
  controller (str)              'forward_position_controller' (the topic is /<controller>/...)
  controller_joints (str[])     the controller's joint order; [] = the profile's. Must name the
                                profile's joints, each once (mapped by name)
  output (str)                  'forward' (Float64MultiArray) | 'trajectory' (JointTrajectory)
  control_rate_hz (float)       0 = the profile's rate
  margin_rad (float)            commands are kept this far inside the position limits (0.05)
  velocity_scale (float)        per-cycle step <= velocity limit x period x this, in (0, 1] (1.0)
  command_timeout_periods (int) no valid policy command for this many periods -> hold (2)
  state_timeout_periods (int)   no fresh hardware joint state for this many periods -> stop (3)
  seed (int)                    goal sampling at reset; -1 = random
  task (str)                    registered task whose goals reset samples (default "reach")
  frame_id (str)                the robot base frame: of the goal messages, and the frame object
                                poses must be in ('base_link')
  object_pose_topic (str)       the tracker's topic (absolute), '/mocap/puck/pose'; used when the
                                task has an object pose input (Push)
  object_pose_stale_s (float)   an object pose older than this on arrival is rejected; none for
                                this long while active is an outage (0.25 s, the policy node's
                                task_input_stale_s)
  autostart (bool)              configure + activate at construction (default true for main())

The control cycle (a steady-clock timer at the control rate; the rules are
:meth:`BridgeCore.cycle <real_bridge.core.BridgeCore.cycle>`): take the latest valid policy
command (commands arriving faster than the rate replace each other; the replaced ones are
counted as superseded), ask the watchdog (run / hold / stop / waiting, see
:mod:`real_bridge.watchdog`), pass the command or the hold target through the safety filter
(see :mod:`real_bridge.safety`), publish the result to the hardware, relay the joint state to
the policy. Invalid policy commands (NaN/inf, wrong length) are rejected on arrival and do
not count as commands. A second steady-clock timer, re-armed by every valid command,
fires ``command_timeout_periods`` after the last one (by its reception stamp) and starts
the hold at once, so the hold does not wait up to a period for the next tick; it first takes
any command that arrived meanwhile. Every intervention is counted,
reported on /diagnostics and logged (throttled, per cause) with the cause.

Lifecycle: configure builds the core (filter, watchdog, goal generator) and the topics;
activate starts commanding (fresh watchdog, the step limit starts from the measured
position); deactivate stops all hardware commands; cleanup removes the topics. Threads
(ControlExecutor, main()): the cycle and the hold deadline share one mutually exclusive
group; hardware states, policy commands, object poses, the goal and services/diagnostics have a
group each. The first four are the control path and run inline, in the executor's spinning
thread (``inline_callback_groups``: no hand-off to a worker thread per message, which cost
~0.5 ms of CPU per 500 Hz cycle, docs/profile.md), and the tick takes the hardware states and
the commands itself (``polled_subscriptions``: one executor wake-up per cycle instead of
three); the goal, the services and diagnostics run in worker threads. One lock guards the core; a cycle holds it while it publishes, so no
command goes out once a transition closed the gate.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter, deque

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped, PoseStamped
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from real_bridge.core import ERROR, OBJECT_POSE, OK, WARN, BridgeCore, CycleOutput
from real_bridge.watchdog import HOLD, STOP, WAITING
from sim_bridge import interface
from sim_bridge.executor import ThrottledLog, freeze_heap, run_node, take_polled
from sim_bridge.handoff import HandoffSource
from sim_bridge.lifecycle import CommandGateMixin
from sim_bridge.config import ConfigError
from sim_bridge.profile import load_profile
from sim_bridge.tasks import DEFAULT_TASK, UnknownTaskError, make_task

OUTPUTS = ("forward", "trajectory")
EXECUTOR_THREADS = 2  # the goal, services/diagnostics (the control path runs inline: module docstring)
# Hardware joint states: the latest matters; best-effort matches both a reliable
# joint_state_broadcaster (its default) and a best-effort (sensor data QoS) driver. The tick
# takes every state that arrived since the last one (at most this depth): with keep-last 1,
# another device's states on the same topic (a gripper's broadcaster) would replace the arm's
# between two ticks.
HARDWARE_STATE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=4, reliability=ReliabilityPolicy.BEST_EFFORT,
                                durability=DurabilityPolicy.VOLATILE)
# Hardware commands: reliable keep-last 1 (the controllers subscribe reliable; a best-effort
# subscriber is served too).
HARDWARE_COMMAND_QOS = interface.COMMAND_QOS
# Policy commands: the interface's QoS (reliable, volatile) with a deeper, bounded reader
# queue: with keep-last 1, DDS would replace the commands of a burst before the bridge sees
# them, and they could not be counted. The bridge takes them (at most COMMAND_INTAKE_PER_PERIOD
# per control period) and uses only the latest.
COMMAND_INTAKE_DEPTH = 16
COMMAND_INTAKE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=COMMAND_INTAKE_DEPTH,
                                reliability=interface.COMMAND_QOS.reliability,
                                durability=interface.COMMAND_QOS.durability)
# Commands taken from the middleware per control period, at most: the reader's depth, 16x what
# a policy sends. Beyond it, the intake waits for the next control cycle (the subscription is
# polled, out of the wait set, until the tick), so a flood costs the process at most this many
# takes per period, whatever its rate. Not lower: a
# policy's commands interleaved with a few bad or burst messages must all be taken (with 4, a
# 50 Hz policy beside 250 Hz of invalid commands was crowded out into command-timeout holds).
COMMAND_INTAKE_PER_PERIOD = COMMAND_INTAKE_DEPTH
LOG_THROTTLE_S = 1.0
MIN_DEADLINE_NS = 100_000   # a command taken after its own timeout: the hold deadline fires 0.1 ms later
DEFAULT_OBJECT_POSE_TOPIC = "/mocap/puck/pose"
# Object poses from a tracker: best-effort matches reliable and best-effort (sensor data)
# publishers; a few deep, so a burst of poses is relayed rather than replaced.
OBJECT_POSE_INTAKE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                                    reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
LEVELS = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN, ERROR: DiagnosticStatus.ERROR}


def _arrival_s(info: dict) -> float:
    """When a taken message arrived (monotonic s), from its middleware reception stamp (system
    time, ns): a polled message's age counts from its arrival, not from the take."""
    return time.monotonic() - max(0.0, (time.time_ns() - info["received_timestamp"]) * 1e-9)


class RealBridgeNode(HandoffSource, CommandGateMixin, LifecycleNode):
    INACTIVE_MESSAGE = "inactive: no commands are sent to the hardware"
    CONFIGURE_ERRORS = (ConfigError, ValueError)  # configure FAILURE with the reason

    def __init__(self, *, autostart: bool = False, intra_process: bool = False, **kwargs):
        """``intra_process`` (the composed deployment with a policy node, ``sim2real/composed.py``):
        the policy commands come through :meth:`take_linked_command` instead of the
        ``joint_commands`` subscription (not created), and the relayed joint states and object
        poses also go to the listeners of :class:`~sim_bridge.handoff.HandoffSource` (the goal
        stays on its topic: ``~/reset`` publishes it from a worker thread)."""
        super().__init__("real_bridge", **kwargs)
        self.intra_process = bool(intra_process)
        self._init_handoff()
        # commands handed over by the linked policy node, with their arrival (monotonic s): the
        # tick takes them like the subscription's (same budget; the oldest go beyond the depth,
        # as DDS's keep-last replaces them)
        self._handed: deque = deque(maxlen=COMMAND_INTAKE_DEPTH)

        def ro(text: str, **extra) -> ParameterDescriptor:
            return ParameterDescriptor(description=text, read_only=True, **extra)

        self.declare_parameter("robot_profile", "panda_like", ro("shipped robot profile name or YAML path"))
        self.declare_parameter("hardware_joint_states", "/joint_states", ro(
            "joint state topic of the ros2_control joint_state_broadcaster (absolute)"))
        self.declare_parameter("controller", "forward_position_controller", ro(
            "ros2_control controller receiving the commands: /<controller>/commands or /<controller>/joint_trajectory"))
        self.declare_parameter("controller_joints", Parameter.Type.STRING_ARRAY, ro(
            "the controller's joint order; empty = the robot profile's order"))
        self.declare_parameter("output", "forward", ro(
            "'forward': Float64MultiArray on /<controller>/commands; 'trajectory': JointTrajectory on "
            "/<controller>/joint_trajectory"))
        self.declare_parameter("control_rate_hz", 0.0, ro("control rate; 0 = the robot profile's"))
        self.declare_parameter("margin_rad", 0.05, ro(
            "commands are kept this far inside the profile's position limits (rad)",
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=0.5)]))
        self.declare_parameter("velocity_scale", 1.0, ro(
            "per-cycle command step <= velocity limit x control period x this",
            floating_point_range=[FloatingPointRange(from_value=0.01, to_value=1.0)]))
        self.declare_parameter("command_timeout_periods", 2, ro(
            "no valid policy command for this many control periods -> hold the measured position",
            integer_range=[IntegerRange(from_value=1, to_value=100, step=1)]))
        self.declare_parameter("state_timeout_periods", 3, ro(
            "no fresh hardware joint state for this many control periods -> stop commanding",
            integer_range=[IntegerRange(from_value=1, to_value=100, step=1)]))
        self.declare_parameter("seed", -1, ro("seed of the goals sampled at reset; -1 = random"))
        self.declare_parameter("task", DEFAULT_TASK, ro("registered task (sim_bridge.tasks) whose goals reset samples"))
        self.declare_parameter("frame_id", "base_link", ro(
            "the robot base frame: of the goal messages, and the frame relayed object poses must be in"))
        self.declare_parameter("object_pose_topic", DEFAULT_OBJECT_POSE_TOPIC, ro(
            "the object tracker's geometry_msgs/PoseStamped topic (absolute); used when the task needs object poses"))
        self.declare_parameter("object_pose_stale_s", 0.25, ro(
            "object poses older than this on arrival are not relayed; none for this long while active: an outage",
            floating_point_range=[FloatingPointRange(from_value=0.001, to_value=10.0)]))
        self.declare_parameter("autostart", autostart, ro("configure and activate right after construction"))

        self.lifecycle_state = "unconfigured"
        self.last_error = ""
        self.core: BridgeCore | None = None  # the bridge's rules and state; built at configure
        self.hardware_topic = ""
        self.output = ""
        self._active = False
        self._lock = threading.Lock()   # the core; held for a whole cycle, publishing included
        self._gate = self._lock         # CommandGateMixin
        self._entities: list = []
        self._hw_pub = None
        self._state_pub = None
        self._goal_pub = None
        self._deadline = None
        self._command_sub = None
        self._state_sub = None
        self._intake_taken = 0                  # commands taken since the last control tick
        self.intake_waits = 0                   # times the intake waited for the next tick (a flood)
        # subscriptions the executor does not wait on (StaticWaitMixin): the hardware states and
        # the policy commands, which the control tick takes itself
        self.polled_subscriptions = ()
        self._log_throttled = ThrottledLog(self.get_logger().warning, LOG_THROTTLE_S)
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._cycle_group = MutuallyExclusiveCallbackGroup()     # control cycle and hold deadline
        self._hardware_group = MutuallyExclusiveCallbackGroup()  # hardware joint states
        self._command_group = MutuallyExclusiveCallbackGroup()   # joint_commands
        self._object_group = MutuallyExclusiveCallbackGroup()    # object poses from the tracker
        self._policy_group = MutuallyExclusiveCallbackGroup()    # goal
        # the control path runs in the executor's spinning thread (ControlExecutor): each
        # callback is short, and a hand-off to a worker per message was most of the CPU per cycle
        self.inline_callback_groups = (self._cycle_group, self._hardware_group, self._command_group,
                                       self._object_group)
        self._object_pub = None
        self.object_pose_topic = ""
        self._outages_logged = 0                                 # object pose outages already logged
        self._aux_group = MutuallyExclusiveCallbackGroup()       # services, diagnostics
        self._diag_pub = self.create_publisher(DiagnosticArray, interface.DIAGNOSTICS, interface.DIAGNOSTICS_QOS)
        self.create_service(Trigger, "~/estop", self._on_estop, callback_group=self._aux_group)
        self.create_service(Trigger, "~/release", self._on_release, callback_group=self._aux_group)
        self.create_timer(1.0, self.publish_diagnostics, callback_group=self._aux_group)

        if self.get_parameter("autostart").value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    # --- the core's parts, for callers and tests (None before the first configure) ----------
    @property
    def profile(self):
        return self.core.profile if self.core is not None else None

    @property
    def period_s(self) -> float:
        return self.core.period_s if self.core is not None else 0.0

    @property
    def filter(self):
        return self.core.filter if self.core is not None else None

    @property
    def watchdog(self):
        return self.core.watchdog if self.core is not None else None

    @property
    def counters(self) -> Counter:
        return self.core.counters if self.core is not None else Counter()

    @property
    def goal(self):
        return self.core.goal if self.core is not None else None

    @property
    def controller_joints(self) -> list[str]:
        return list(self.core.controller_joints) if self.core is not None else []

    # --- lifecycle ------------------------------------------------------------------------
    def _configure(self) -> None:
        p = {name: self.get_parameter(name).value for name in (
            "robot_profile", "hardware_joint_states", "controller", "output", "control_rate_hz", "margin_rad",
            "velocity_scale", "command_timeout_periods", "state_timeout_periods", "seed", "task", "frame_id",
            "object_pose_topic", "object_pose_stale_s")}
        try:
            p["controller_joints"] = self.get_parameter("controller_joints").value
        except ParameterUninitializedException:  # a string array without a value: the profile's order
            p["controller_joints"] = None
        if p["output"] not in OUTPUTS:
            raise ConfigError(f"must be one of {list(OUTPUTS)}, got '{p['output']}'", field="output")
        profile = load_profile(p["robot_profile"])
        try:
            task = make_task(p["task"])
        except UnknownTaskError as exc:
            raise ConfigError(str(exc), field="task") from None
        if p["control_rate_hz"]:
            profile = profile.with_rates(p["control_rate_hz"], p["control_rate_hz"])  # no physics on hardware
        core = BridgeCore(profile, controller_joints=p["controller_joints"], margin_rad=p["margin_rad"],
                          velocity_scale=p["velocity_scale"], command_timeout_periods=p["command_timeout_periods"],
                          state_timeout_periods=p["state_timeout_periods"], seed=p["seed"],
                          task=task, base_frame=p["frame_id"], object_pose_stale_s=p["object_pose_stale_s"])
        object_topic = p["object_pose_topic"] if core.relays_object_pose else ""
        if core.relays_object_pose and not object_topic.startswith("/"):
            raise ConfigError(f"must be an absolute topic name, got '{object_topic}'", field="object_pose_topic")
        hw_topic = p["hardware_joint_states"]
        if not hw_topic.startswith("/"):
            raise ConfigError(f"must be an absolute topic name, got '{hw_topic}'", field="hardware_joint_states")
        controller = p["controller"].strip("/")
        if not controller:
            raise ConfigError("must name the ros2_control controller", field="controller")
        with self._lock:
            self.core, self.output = core, p["output"]
            self._outages_logged = 0

        if self.output == "forward":
            self.hardware_topic = f"/{controller}/commands"
            self._hw_pub = self.create_lifecycle_publisher(Float64MultiArray, self.hardware_topic,
                                                           HARDWARE_COMMAND_QOS)
        else:
            try:
                from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
            except ImportError as exc:
                raise ConfigError(f"'trajectory' needs the trajectory_msgs package ({exc})", field="output") from None
            self._trajectory_types = (JointTrajectory, JointTrajectoryPoint)
            self.hardware_topic = f"/{controller}/joint_trajectory"
            self._hw_pub = self.create_lifecycle_publisher(JointTrajectory, self.hardware_topic,
                                                           HARDWARE_COMMAND_QOS)
        self._state_pub = self.create_publisher(JointState, interface.JOINT_STATES, interface.STATE_QOS)
        self._goal_pub = self.create_publisher(PointStamped, interface.CURRENT_GOAL, interface.LATCHED_QOS)
        self._entities = [
            self._state_pub, self._goal_pub,
            self._new_state_subscription(hw_topic),
            self._new_command_subscription(),
            self.create_subscription(PointStamped, interface.GOAL, self._on_goal, interface.LATCHED_QOS,
                                     callback_group=self._policy_group),
            self.create_service(Trigger, interface.RESET, self._on_reset, callback_group=self._aux_group),
            self.create_timer(core.period_s, self._on_tick, callback_group=self._cycle_group, clock=self._steady),
        ]
        self._entities = [entity for entity in self._entities if entity is not None]  # intra_process: no commands sub
        self._deadline = self.create_timer(core.watchdog.command_timeout_s, self._on_deadline,
                                           callback_group=self._cycle_group, clock=self._steady)
        self._entities.append(self._deadline)
        self.object_pose_topic = object_topic
        if object_topic:
            self._object_pub = self.create_publisher(PoseStamped, OBJECT_POSE, interface.STATE_QOS)
            self._entities += [self._object_pub, self.create_subscription(
                PoseStamped, object_topic, self._on_object_pose, OBJECT_POSE_INTAKE_QOS,
                callback_group=self._object_group)]
        self._publish_goal(core.goal)
        self.get_logger().info(
            f"configured: robot '{profile.name}' ({profile.num_joints} joints), {1 / core.period_s:g} Hz; hardware "
            f"states from {hw_topic}, commands to {self.hardware_topic} ({self.output}, joints "
            f"{list(core.controller_joints)}); margin {p['margin_rad']:g} rad, velocity scale "
            f"{p['velocity_scale']:g}, hold after {p['command_timeout_periods']} periods without a command, stop "
            f"after {p['state_timeout_periods']} periods without a hardware state"
            + (f"; object poses from {object_topic} (frame '{core.base_frame}', stale after "
               f"{1e3 * core.object_pose_stale_s:.0f} ms) relayed to {self.resolve_topic_name(OBJECT_POSE)}"
               if object_topic else ""))

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self.core.activate()             # fresh watchdog, the first step from the measured position
        freeze_heap(full=True)               # no full garbage collection (5-20 ms, more in a big process) in the loop
        ret = super().on_activate(state)     # enables the hardware publisher
        self._active = True
        self.lifecycle_state = "active"
        self.get_logger().info(f"active: commands go to {self.hardware_topic} once the policy sends joint_commands")
        return ret

    def _teardown(self) -> None:
        with self._lock:
            self._active = False
            entities, self._entities = self._entities, []
            hw_pub, self._hw_pub = self._hw_pub, None
            self._deadline = self._state_pub = self._goal_pub = self._object_pub = self._state_sub = None
            self.polled_subscriptions = ()
            self._handed.clear()
        for entity in entities:
            kind = type(entity).__name__
            if kind == "Timer":
                entity.cancel()
                self.destroy_timer(entity)
            elif kind == "Subscription":
                self.destroy_subscription(entity)
            elif kind == "Service":
                self.destroy_service(entity)
            else:
                self.destroy_publisher(entity)
        if hw_pub is not None:
            self.destroy_lifecycle_publisher(hw_pub)

    def destroy_node(self) -> None:
        with self._lock:  # a cycle in progress finishes first; none publishes afterwards
            self._active = False
        super().destroy_node()

    # --- inputs: messages -> the core ---------------------------------------------------------
    def _new_state_subscription(self, topic: str):
        # polled: the control tick takes the latest state itself (_take_hardware_states), so the
        # executor does not wake for it (StaticWaitMixin; rclpy's own loop still calls the callback)
        self._state_sub = self.create_subscription(JointState, topic, self._on_hardware_state, HARDWARE_STATE_QOS,
                                                   callback_group=self._hardware_group)
        return self._state_sub

    @property
    def linked_topics(self) -> tuple[str, ...]:
        """What an intra-process link hands over (``intra_process`` only): the relayed joint
        states, and the relayed object poses when the task has them (both published from the
        spinning thread: the control path's callbacks run there)."""
        if not self.intra_process:
            return ()
        return (interface.JOINT_STATES, *((OBJECT_POSE,) if self.object_pose_topic else ()))

    def take_linked_command(self, msg: Float64MultiArray) -> None:
        """A command from the policy node this bridge is composed with: taken at the next tick
        (or hold deadline) with the same checks and counters as one from the topic, its age
        counted from now."""
        self._handed.append((msg, time.monotonic()))

    def _new_command_subscription(self):
        # polled: the control tick (and the hold deadline) take the commands (_take_commands)
        self._intake_taken = 0
        self._handed.clear()
        if self.intra_process:  # the linked policy node hands them over (take_linked_command)
            self._command_sub = None
            self.polled_subscriptions = (self._state_sub,)
            return None
        self._command_sub = self.create_subscription(Float64MultiArray, interface.JOINT_COMMANDS, self._on_command,
                                                     COMMAND_INTAKE_QOS, callback_group=self._command_group)
        self.polled_subscriptions = (self._state_sub, self._command_sub)
        return self._command_sub

    def _take_commands(self) -> None:
        """Take the policy commands that arrived since the last take, oldest first, each with its
        arrival time from the middleware's reception stamp, and re-arm the hold deadline from the
        latest valid one.

        Called by the control tick and the hold deadline (the subscription is polled: the
        executor does not wake for each command, StaticWaitMixin). At most
        :data:`COMMAND_INTAKE_PER_PERIOD` commands are taken per control period: a flood of
        joint_commands costs the process (the executor's loop, the GIL, other nodes in the same
        executor) a bounded amount per period, and the cycle and the hardware states keep their
        timing. The commands DDS keeps meanwhile (the reader's keep-last
        :data:`COMMAND_INTAKE_DEPTH`) are taken at the next tick; the ones it replaces never reach
        the bridge and are in no counter. (rclpy's own wait loop, ``SIM2REAL_EXECUTOR=stock``, a
        baseline for benchmarks, ignores the polled set and calls :meth:`_on_command` per message:
        there the intake is not bounded.)
        """
        if self._command_sub is None and not self.intra_process:
            return
        latest = None
        while self._intake_taken < COMMAND_INTAKE_PER_PERIOD:
            command = self._next_command()
            if command is None:
                break
            msg, arrival = command
            self._intake_taken += 1
            if self._accept_command(msg, arrival):
                latest = arrival
        else:
            self.intake_waits += 1
            self._log_throttled("command:intake", (
                f"joint_commands arrive faster than {COMMAND_INTAKE_PER_PERIOD} per control period: the intake "
                f"waits for the next cycle ({self.intake_waits} waits so far); only the latest command is used"))
        if latest is not None:
            self._arm_deadline(latest)

    def _next_command(self):
        """The next command waiting and its arrival (monotonic s), or None: from the linked policy
        node's handoff (``intra_process``), else taken from the subscription."""
        if self.intra_process:
            return self._handed.popleft() if self._handed else None
        taken = take_polled(self._command_sub)
        return None if taken is None else (taken[0], _arrival_s(taken[1]))

    def _arm_deadline(self, arrival: float) -> None:
        """The hold deadline fires ``command_timeout`` after the command that arrived at ``arrival``
        (monotonic s), unless another comes; it fires once (``_on_deadline`` cancels it)."""
        core, deadline = self.core, self._deadline
        if core is None or deadline is None:
            return
        remaining = core.watchdog.command_timeout_s - (time.monotonic() - arrival)
        try:
            deadline.timer_period_ns = max(MIN_DEADLINE_NS, int(remaining * 1e9))
            deadline.reset()
        except Exception:  # noqa: BLE001 - destroyed by a concurrent cleanup: nothing to re-arm
            pass

    def _take_hardware_states(self) -> None:
        """Take the hardware states that arrived since the last tick (up to the reader's depth),
        each with its arrival time from the middleware's reception stamp: the watchdog's
        freshness is measured from when the state arrived, not from when the tick took it."""
        sub = self._state_sub
        if sub is None:
            return
        for _ in range(HARDWARE_STATE_QOS.depth):
            taken = take_polled(sub)
            if taken is None:
                return
            self._on_hardware_state(taken[0], arrival=_arrival_s(taken[1]))

    def _on_hardware_state(self, msg: JointState, arrival: float | None = None) -> None:
        arrival = time.monotonic() if arrival is None else arrival
        core = self.core
        if core is None:
            return
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            result = core.on_joint_state(msg.name, msg.position, msg.velocity, msg.effort,
                                         stamp_ns=stamp_ns, arrival_s=arrival)
        if result.reason:
            self._log_throttled(f"state:{result.kind}", result.reason)

    def _on_command(self, msg: Float64MultiArray) -> None:
        """The subscription's callback: only rclpy's own wait loop calls it (the project's
        executors leave the subscription to :meth:`_take_commands`)."""
        arrival = time.monotonic()
        if self._accept_command(msg, arrival):
            self._arm_deadline(arrival)

    def _accept_command(self, msg: Float64MultiArray, arrival: float) -> bool:
        """Give a command to the core; True if it was valid."""
        core = self.core
        if core is None:
            return False
        with self._lock:
            result = core.on_command(msg.data, arrival)
        if not result.accepted:
            self._log_throttled(f"command:{result.kind}", result.reason)
        return result.accepted

    def _on_object_pose(self, msg: PoseStamped) -> None:
        arrival = time.monotonic()
        core = self.core
        if core is None:
            return
        now_ns = self.get_clock().now().nanoseconds
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        p, q = msg.pose.position, msg.pose.orientation
        with self._lock:
            result = core.on_object_pose(msg.header.frame_id, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w),
                                         stamp_ns=stamp_ns, now_ns=now_ns, arrival_s=arrival)
            pub = self._object_pub
        if not result.accepted:
            self._log_throttled(f"object:{result.kind}", result.reason)
        elif pub is not None:
            pub.publish(msg)   # unchanged: the tracker's stamp and frame
            self._deliver(OBJECT_POSE, msg)

    def _on_goal(self, msg: PointStamped) -> None:
        core = self.core
        if core is None:
            return
        with self._lock:
            result = core.set_goal([msg.point.x, msg.point.y, msg.point.z])
            goal = core.goal
        if not result.accepted:
            self.get_logger().warning(result.reason)
            return
        self._publish_goal(goal)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            message = self.core.reset()
            goal = self.core.goal
        self._publish_goal(goal)
        response.success, response.message = True, message
        self.get_logger().info(f"reset: {message}")
        return response

    def _publish_goal(self, goal) -> None:
        pub = self._goal_pub
        if pub is None:
            return
        msg = PointStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.get_parameter("frame_id").value
        msg.point.x, msg.point.y, msg.point.z = (float(v) for v in goal)
        pub.publish(msg)

    # --- e-stop -----------------------------------------------------------------------------
    def _on_estop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        core = self.core
        if core is None:
            response.success, response.message = False, f"not configured ({self.lifecycle_state})"
            return response
        with self._lock:
            new = core.estop("~/estop service")
        if new:
            self.get_logger().error("E-STOP latched via ~/estop: holding the measured position until ~/release")
            self._cycle(time.monotonic(), relay=False)  # hold now, not at the next tick
        response.success = True
        response.message = ("e-stop latched: holding the measured position; call ~/release to resume" if new
                            else "e-stop was already latched")
        return response

    def _on_release(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        core = self.core
        if core is None:
            response.success, response.message = False, f"not configured ({self.lifecycle_state})"
            return response
        with self._lock:
            released = core.release(time.monotonic())
        response.success = released
        response.message = ("e-stop released: holding until a new policy command arrives" if released
                            else "the e-stop was not latched")
        self.get_logger().warning(f"~/release: {response.message}")
        return response

    # --- the control cycle ------------------------------------------------------------------
    def _on_tick(self) -> None:
        self._intake_taken = 0             # a new budget for the command intake
        self._take_commands()
        self._take_hardware_states()
        now = time.monotonic()
        core = self.core
        if core is not None:
            core.rate.tick(now)
        self._cycle(now, relay=True)

    def _on_deadline(self) -> None:
        """Armed by every valid command (:meth:`_arm_deadline`): fires once the command timeout
        after it has passed, unless a command that arrived since (not taken yet) re-arms it."""
        deadline = self._deadline
        if deadline is not None:
            deadline.cancel()           # once; the next valid command re-arms it
        self._take_commands()
        core = self.core
        if core is not None and core.hold_due(time.monotonic()):
            self._take_hardware_states()  # hold the latest measured position
            self._cycle(time.monotonic(), relay=False)

    def _cycle(self, now: float, *, relay: bool) -> None:
        try:
            relayed = self._cycle_unguarded(now, relay=relay)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the executor thread silently
            with self._lock:
                fault = self.core.record_fault(exc)
            self.get_logger().error(f"FAULT in the control cycle, no more hardware commands until re-activation: "
                                    f"{fault}")
            return
        if relayed is not None:  # a linked policy node's cycle runs here: outside the lock and the fault guard
            self._deliver(interface.JOINT_STATES, relayed)

    def _cycle_unguarded(self, now: float, *, relay: bool) -> JointState | None:
        """One cycle; returns the joint state it relayed (None if none)."""
        core = self.core
        with self._lock:
            if not self._active or core is None or self._hw_pub is None:
                return None
            out = core.cycle(now, relay=relay)
            if out is None:  # faulted
                return None
            if out.hardware_command is not None:
                self._publish_hardware(out.hardware_command.tolist())
            relayed = self._relay_state(out.relay) if out.relay is not None else None
        self._report(core, out)
        return relayed

    def _publish_hardware(self, values: list[float]) -> None:
        """``values``: the filtered command in the controller's joint order (rad)."""
        if self.output == "forward":
            self._hw_pub.publish(Float64MultiArray(data=values))
            return
        trajectory, point_type = self._trajectory_types
        sec, nsec = divmod(int(round(self.period_s * 1e9)), 1_000_000_000)
        point = point_type(positions=values, time_from_start=Duration(sec=sec, nanosec=nsec))
        self._hw_pub.publish(trajectory(joint_names=self.controller_joints, points=[point]))

    def _relay_state(self, state) -> JointState:
        msg = JointState()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(state.stamp_ns, 1_000_000_000)
        msg.name = list(self.profile.joint_names)
        msg.position = state.position_rad.tolist()
        msg.velocity = state.velocity_rad_s.tolist()
        if state.effort is not None:
            msg.effort = state.effort.tolist()
        self._state_pub.publish(msg)
        return msg

    def _report(self, core: BridgeCore, out: CycleOutput) -> None:
        """Log a mode change (and publish the diagnostics), a filter intervention, or a
        continuing hold/stop, each throttled per cause."""
        decision, result = out.decision, out.filter_result
        outages = core.counters["object_pose_outages"]
        if outages != self._outages_logged:   # the tracker's stream stopped while active (once per outage)
            self._outages_logged = outages
            age = core.object_pose_age_s(time.monotonic())
            since = "none relayed yet" if age == float("inf") else f"none relayed for {1e3 * age:.0f} ms"
            self.get_logger().warning(
                f"object pose stale: {since} (limit "
                f"object_pose_stale_s = {1e3 * core.object_pose_stale_s:.0f} ms; outage {outages}): did the tracker on "
                f"{self.object_pose_topic} stop or lose the object? The policy holds until poses return")
        if out.resume:
            self.get_logger().warning(out.resume)
        if decision.changed:
            if decision.mode in (HOLD, STOP):
                self._log_throttled.mark(f"mode:{decision.cause}")  # repeats are throttled from here
                self.get_logger().warning(core.describe_transition(decision))
            elif decision.mode == WAITING:
                self.get_logger().info(core.describe_transition(decision))
            else:
                self.get_logger().info(f"RUN: forwarding the policy's commands to {self.hardware_topic}")
            self.publish_diagnostics()
        if result is not None and result.interventions:
            kind = result.interventions[0]
            # lazily formatted: at 500 Hz the step limit clips most commands and the line is throttled
            self._log_throttled(f"filter:{kind}", lambda: f"safety filter ({decision.mode}): {result.reason}")
        elif decision.mode in (HOLD, STOP) and not decision.changed:
            self._log_throttled(f"mode:{decision.cause}", lambda: core.describe(decision))

    # --- diagnostics ----------------------------------------------------------------------
    def publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name="real_bridge: safety", level=DiagnosticStatus.OK)
        core = self.core
        if core is None:
            status.message = self.lifecycle_state + (f"; last error: {self.last_error}" if self.last_error else "")
            status.values = [KeyValue(key="lifecycle_state", value=self.lifecycle_state)]
        else:
            with self._lock:
                health = core.health(self.lifecycle_state, active=self._active, hardware_topic=self.hardware_topic)
            if self.object_pose_topic:
                health.values["object_pose_topic"] = self.object_pose_topic
            status.hardware_id = core.profile.name
            status.level, status.message = LEVELS[health.level], health.message
            status.values = [KeyValue(key=k, value=str(v)) for k, v in health.values.items()]
            status.values.append(KeyValue(key="command_intake_waits", value=str(self.intake_waits)))
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Entry point for ``ros2 run real_bridge real_bridge_node`` and ``sim2real node real_bridge``."""
    return run_node("real_bridge", lambda: RealBridgeNode(autostart=True), args, num_threads=EXECUTOR_THREADS)


if __name__ == "__main__":
    sys.exit(main())
