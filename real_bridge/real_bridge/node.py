"""The real-arm bridge: the sim bridge's policy-side interface in front of a ros2_control arm,
with a safety filter and a watchdog in between. A lifecycle node over the pure
:class:`~real_bridge.safety.SafetyFilter` and :class:`~real_bridge.watchdog.Watchdog`.

Policy side (names relative to the node's namespace, types and QoS of
:mod:`sim_bridge.interface`, so a policy node cannot tell this bridge from the sim bridge):
  joint_states   sensor_msgs/JointState (out)   the hardware joint states in the profile's joint
                 order, stamped with the hardware stamp, once per control cycle while active
                 and the state is fresh (what the sim bridge does: one state per control step)
  current_goal   geometry_msgs/PointStamped (out, latched)
  /diagnostics   diagnostic_msgs/DiagnosticArray (out): status 'real_bridge: safety', once per
                 second and at every mode change
  joint_commands std_msgs/Float64MultiArray (in)  absolute joint targets, profile order, rad
                 (reliable like COMMAND_QOS; the reader keeps 16, so commands of a burst are
                 seen and counted as dropped rather than silently replaced by DDS)
  goal           geometry_msgs/PointStamped (in)  new reach target (base frame, m)
  reset          std_srvs/Trigger  a real arm cannot resample its physics: reset samples a new
                 goal in the profile's reach_workspace (seeded by ``seed``), publishes it on
                 current_goal and says so in its message. It does not move the arm.
Hardware side (ros2_control conventions, absolute names):
  <hardware_joint_states>          sensor_msgs/JointState (in) from joint_state_broadcaster;
                                   mapped by name (any order, extra joints ignored); best-effort
                                   keep-last 1, which matches reliable and best-effort publishers
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
  frame_id (str)                frame of the goal messages ('base_link')
  autostart (bool)              configure + activate at construction (default true for main())

The control cycle (a steady-clock timer at the control rate): take the latest valid policy
command (commands arriving faster than the rate replace each other; the replaced ones are
counted as dropped), ask the watchdog (run / hold / stop / waiting, see
:mod:`real_bridge.watchdog`), pass the command or the hold target through the safety filter
(see :mod:`real_bridge.safety`), publish the result to the hardware, relay the joint state to
the policy. Invalid policy commands (NaN/inf, wrong length) are rejected on arrival and do
not count as commands. A second steady-clock timer, re-armed by every valid command,
fires ``command_timeout_periods`` after the last one and starts the hold at once, so the
hold does not wait up to a period for the next tick. Every intervention is counted,
reported on /diagnostics and logged (throttled, per cause) with the cause.

Lifecycle: configure builds the filter, watchdog and topics; activate starts commanding
(fresh watchdog, the step limit starts from the measured position); deactivate stops all
hardware commands; cleanup removes the topics. Threads (ControlExecutor, main()): the
cycle and the hold deadline share one mutually exclusive group, hardware states, policy
inputs and services/diagnostics have a group each.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter, deque

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped
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

from real_bridge.safety import CLIPS, REJECTIONS, SafetyFilter
from real_bridge.watchdog import HOLD, RUN, STOP, WAITING, Watchdog
from sim_bridge import interface
from sim_bridge.executor import ThrottledLog, run_node
from sim_bridge.lifecycle import CommandGateMixin
from sim_bridge.config import ConfigError
from sim_bridge.profile import load_profile

OUTPUTS = ("forward", "trajectory")
EXECUTOR_THREADS = 4  # cycle, hardware states, policy inputs, services/diagnostics
# Hardware joint states: only the latest matters; best-effort matches both a reliable
# joint_state_broadcaster (its default) and a best-effort (sensor data QoS) driver.
HARDWARE_STATE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                                durability=DurabilityPolicy.VOLATILE)
# Hardware commands: reliable keep-last 1 (the controllers subscribe reliable; a best-effort
# subscriber is served too).
HARDWARE_COMMAND_QOS = interface.COMMAND_QOS
# Policy commands: the interface's QoS (reliable, volatile) with a deeper reader queue: with
# keep-last 1, DDS would replace the commands of a burst before the bridge sees them, and
# they could not be counted. The bridge takes them all and uses only the latest.
COMMAND_INTAKE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=16,
                                reliability=interface.COMMAND_QOS.reliability,
                                durability=interface.COMMAND_QOS.durability)
LOG_THROTTLE_S = 1.0
# hardware joint state rejections
MISSING_JOINTS, LENGTH, NON_FINITE_STATE = "missing_joints", "length_mismatch", "non_finite"


class RealBridgeNode(CommandGateMixin, LifecycleNode):
    INACTIVE_MESSAGE = "inactive: no commands are sent to the hardware"
    CONFIGURE_ERRORS = (ConfigError, ValueError)  # configure FAILURE with the reason

    def __init__(self, *, autostart: bool = False, **kwargs):
        super().__init__("real_bridge", **kwargs)

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
        self.declare_parameter("frame_id", "base_link", ro("frame of the goal messages"))
        self.declare_parameter("autostart", autostart, ro("configure and activate right after construction"))

        self.lifecycle_state = "unconfigured"
        self.last_error = ""
        self.profile = None
        self.filter: SafetyFilter | None = None
        self.watchdog: Watchdog | None = None
        self.period_s = 0.0
        self.hardware_topic = ""
        self._active = False
        self._lock = threading.Lock()   # inputs, watchdog, filter; held for a whole cycle
        self._gate = self._lock         # CommandGateMixin
        self._entities: list = []
        self._hw_pub = None
        self._state_pub = None
        self._goal_pub = None
        self._deadline = None
        self._log_throttled = ThrottledLog(self.get_logger().warning, LOG_THROTTLE_S)
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._cycle_group = MutuallyExclusiveCallbackGroup()     # control cycle and hold deadline
        self._hardware_group = MutuallyExclusiveCallbackGroup()  # hardware joint states
        self._policy_group = MutuallyExclusiveCallbackGroup()    # joint_commands, goal
        self._aux_group = MutuallyExclusiveCallbackGroup()       # services, diagnostics
        self._diag_pub = self.create_publisher(DiagnosticArray, interface.DIAGNOSTICS, interface.DIAGNOSTICS_QOS)
        self.create_service(Trigger, "~/estop", self._on_estop, callback_group=self._aux_group)
        self.create_service(Trigger, "~/release", self._on_release, callback_group=self._aux_group)
        self.create_timer(1.0, self.publish_diagnostics, callback_group=self._aux_group)
        self._reset_runtime()

        if self.get_parameter("autostart").value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    def _reset_runtime(self) -> None:
        """Inputs and counters of one activation."""
        self.q = self.qd = self.effort = None           # latest valid hardware state, profile order
        self.stamp_ns: int | None = None
        self._state_seq = 0                            # valid hardware states so far
        self._relayed_seq = 0
        self.target: np.ndarray | None = None          # latest valid policy command
        self._fresh_command = False                    # not used by a cycle yet
        self.counters: Counter = Counter()
        self.last_rejection = ""                       # policy command or hardware state
        self.missing_joints: list[str] = []
        self.last_hold_latency_s = float("nan")        # last valid command -> first hold command sent
        self.fault = ""                                # an exception in the cycle: stops commanding
        self._cycle_times: deque[float] = deque(maxlen=100)
        self._filter_ns: deque[int] = deque(maxlen=1000)

    # --- lifecycle ------------------------------------------------------------------------
    def _configure(self) -> None:
        p = {name: self.get_parameter(name).value for name in (
            "robot_profile", "hardware_joint_states", "controller", "output", "control_rate_hz", "margin_rad",
            "velocity_scale", "command_timeout_periods", "state_timeout_periods", "seed")}
        try:
            p["controller_joints"] = self.get_parameter("controller_joints").value
        except ParameterUninitializedException:  # a string array without a value: the profile's order
            p["controller_joints"] = None
        if p["output"] not in OUTPUTS:
            raise ConfigError(f"must be one of {list(OUTPUTS)}, got '{p['output']}'", field="output")
        profile = load_profile(p["robot_profile"])
        if p["control_rate_hz"]:
            profile = profile.with_rates(p["control_rate_hz"], p["control_rate_hz"])  # no physics on hardware
        names = list(profile.joint_names)
        joints = list(p["controller_joints"] or names)
        if sorted(joints) != sorted(names) or len(set(joints)) != len(joints):
            missing = [j for j in names if j not in joints]
            unknown = [j for j in joints if j not in names]
            raise ConfigError(f"must name the robot profile's joints {names}, each once; got {joints} "
                              f"(missing {missing}, unknown {unknown})", field="controller_joints")
        hw_topic = p["hardware_joint_states"]
        if not hw_topic.startswith("/"):
            raise ConfigError(f"must be an absolute topic name, got '{hw_topic}'", field="hardware_joint_states")
        controller = p["controller"].strip("/")
        if not controller:
            raise ConfigError("must name the ros2_control controller", field="controller")
        self.filter = SafetyFilter.from_profile(profile, margin_rad=p["margin_rad"],
                                                velocity_scale=p["velocity_scale"])
        self.watchdog = Watchdog(profile.control_period_s, command_timeout_periods=p["command_timeout_periods"],
                                 state_timeout_periods=p["state_timeout_periods"])
        self.profile, self.period_s, self.output = profile, profile.control_period_s, p["output"]
        self.controller_joints = joints
        self._controller_index = np.array([names.index(j) for j in joints])
        self._rng = np.random.default_rng(None if p["seed"] < 0 else int(p["seed"]))
        self.goal = self._rng.uniform(profile.reach_low_m, profile.reach_high_m)
        self._index_cache: tuple | None = None
        self._reset_runtime()

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
            self.create_subscription(JointState, hw_topic, self._on_hardware_state, HARDWARE_STATE_QOS,
                                     callback_group=self._hardware_group),
            self.create_subscription(Float64MultiArray, interface.JOINT_COMMANDS, self._on_command,
                                     COMMAND_INTAKE_QOS, callback_group=self._policy_group),
            self.create_subscription(PointStamped, interface.GOAL, self._on_goal, interface.LATCHED_QOS,
                                     callback_group=self._policy_group),
            self.create_service(Trigger, interface.RESET, self._on_reset, callback_group=self._aux_group),
            self.create_timer(self.period_s, self._on_tick, callback_group=self._cycle_group, clock=self._steady),
        ]
        self._deadline = self.create_timer(self.watchdog.command_timeout_s, self._on_deadline,
                                           callback_group=self._cycle_group, clock=self._steady)
        self._entities.append(self._deadline)
        self._publish_goal()
        self.get_logger().info(
            f"configured: robot '{profile.name}' ({profile.num_joints} joints), {1 / self.period_s:g} Hz; hardware "
            f"states from {hw_topic}, commands to {self.hardware_topic} ({self.output}, joints {joints}); "
            f"margin {p['margin_rad']:g} rad, velocity scale {p['velocity_scale']:g}, hold after "
            f"{p['command_timeout_periods']} periods without a command, stop after {p['state_timeout_periods']} "
            "periods without a hardware state")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self.watchdog.reset()            # no old command or state counts
            self.filter.reset_reference()    # the first step is taken from the measured position
            self._fresh_command, self.target = False, None
            self.fault = ""
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
            self._deadline = self._state_pub = self._goal_pub = None
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

    # --- hardware side --------------------------------------------------------------------
    def _index(self, names: tuple[str, ...]):
        cache = self._index_cache
        if cache is None or cache[0] != names:
            position = {name: i for i, name in enumerate(names)}
            missing = [j for j in self.profile.joint_names if j not in position]
            index = None if missing else np.array([position[j] for j in self.profile.joint_names])
            self._index_cache = cache = (names, index, missing)
        return cache[1], cache[2]

    def _on_hardware_state(self, msg: JointState) -> None:
        arrival = time.monotonic()
        if self.watchdog is None:
            return
        names = tuple(msg.name)
        index, missing = self._index(names)
        kind = reason = ""
        q = qd = effort = None
        if index is None:
            if len(missing) == self.profile.num_joints:  # another device's states on the same topic
                self.counters["hardware_states_foreign"] += 1
                return
            kind, reason = MISSING_JOINTS, (f"lacks joint(s) {missing} of robot profile '{self.profile.name}' "
                                            "(hardware not ready)")
        elif len(msg.position) != len(names):
            kind, reason = LENGTH, f"has {len(names)} names but {len(msg.position)} positions"
        else:
            q = np.asarray(msg.position, dtype=float)[index]
            if len(msg.velocity) == len(names):
                qd = np.asarray(msg.velocity, dtype=float)[index]
            if len(msg.effort) == len(names):
                effort = np.asarray(msg.effort, dtype=float)[index]
            finite = np.isfinite(q) & (np.isfinite(qd) if qd is not None else True)
            if not finite.all():
                bad = [self.profile.joint_names[i] for i in np.flatnonzero(~finite)]
                kind, reason = NON_FINITE_STATE, f"non-finite position/velocity for joint(s) {bad}"
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            if not kind:
                ok, why = self.watchdog.on_joint_state(stamp_ns, arrival)
                if not ok:
                    kind, reason = "out_of_order", why
            if kind:
                self.counters[f"hardware_states_rejected:{kind}"] += 1
                self.missing_joints = missing if kind == MISSING_JOINTS else self.missing_joints
                self.last_rejection = f"hardware joint_states rejected: {reason}; kept the last good state"
                text = self.last_rejection
            else:
                if qd is None:  # no velocity interface: finite difference over the hardware stamps
                    qd = self._velocity_estimate(q, stamp_ns)
                self.q, self.qd, self.effort, self.stamp_ns = q, qd, effort, stamp_ns
                self._state_seq += 1
                self.missing_joints = []
                self.counters["hardware_states"] += 1
                return
        self._log_throttled(f"state:{kind}", text)

    def _velocity_estimate(self, q: np.ndarray, stamp_ns: int) -> np.ndarray:
        if self.q is None or self.stamp_ns is None or stamp_ns <= self.stamp_ns:
            return self.qd if self.qd is not None and self.q is not None else np.zeros_like(q)
        return (q - self.q) / ((stamp_ns - self.stamp_ns) * 1e-9)

    # --- policy side ----------------------------------------------------------------------
    def _on_command(self, msg: Float64MultiArray) -> None:
        arrival = time.monotonic()
        flt = self.filter
        if flt is None:
            return
        cmd, kind, reason = flt.check(msg.data)
        deadline = None
        with self._lock:
            if cmd is None:
                self.counters[f"commands_rejected:{kind}"] += 1
                self.last_rejection = f"joint_commands rejected: {reason}; kept the previous command"
                text = self.last_rejection
            else:
                if self._fresh_command:
                    self.counters["commands_dropped"] += 1  # replaced before a cycle used it
                self.target, self._fresh_command = cmd, True
                self.counters["commands"] += 1
                self.watchdog.on_command(arrival)
                deadline = self._deadline
        if cmd is None:
            self._log_throttled(f"command:{kind}", text)
        elif deadline is not None:
            try:
                deadline.reset()  # fires command_timeout after this command, unless another comes
            except Exception:  # noqa: BLE001 - destroyed by a concurrent cleanup: nothing to re-arm
                pass

    def _on_goal(self, msg: PointStamped) -> None:
        goal = np.array([msg.point.x, msg.point.y, msg.point.z], dtype=float)
        if not np.isfinite(goal).all():
            self.counters["goals_rejected"] += 1
            self.get_logger().warning(f"goal rejected: expected 3 finite numbers, got {goal.tolist()}; "
                                      f"kept {self.goal.tolist()}")
            return
        self.goal = goal
        self._publish_goal()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.goal = self._rng.uniform(self.profile.reach_low_m, self.profile.reach_high_m)
        self._publish_goal()
        self.counters["resets"] += 1
        response.success = True
        response.message = (f"goal {np.round(self.goal, 3).tolist()} sampled in the reach workspace; on hardware "
                            "reset cannot resample physics and does not move the arm")
        self.get_logger().info(f"reset: {response.message}")
        return response

    def _publish_goal(self) -> None:
        pub = self._goal_pub
        if pub is None:
            return
        msg = PointStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.get_parameter("frame_id").value
        msg.point.x, msg.point.y, msg.point.z = (float(v) for v in self.goal)
        pub.publish(msg)

    # --- e-stop -----------------------------------------------------------------------------
    def _on_estop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.watchdog is None:
            response.success, response.message = False, f"not configured ({self.lifecycle_state})"
            return response
        with self._lock:
            new = self.watchdog.estop("~/estop service")
        if new:
            self.get_logger().error("E-STOP latched via ~/estop: holding the measured position until ~/release")
            self._cycle(time.monotonic(), relay=False)  # hold now, not at the next tick
        response.success = True
        response.message = ("e-stop latched: holding the measured position; call ~/release to resume" if new
                            else "e-stop was already latched")
        return response

    def _on_release(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.watchdog is None:
            response.success, response.message = False, f"not configured ({self.lifecycle_state})"
            return response
        with self._lock:
            released = self.watchdog.release(time.monotonic())
        response.success = released
        response.message = ("e-stop released: holding until a new policy command arrives" if released
                            else "the e-stop was not latched")
        self.get_logger().warning(f"~/release: {response.message}")
        return response

    # --- the control cycle ------------------------------------------------------------------
    def _on_tick(self) -> None:
        now = time.monotonic()
        self._cycle_times.append(now)
        self._cycle(now, relay=True)

    def _on_deadline(self) -> None:
        """Re-armed by every valid command: fires once the command timeout has passed."""
        wd = self.watchdog
        if wd is not None and wd.mode == RUN and wd.command_expired(time.monotonic()):
            self._cycle(time.monotonic(), relay=False)

    def _cycle(self, now: float, *, relay: bool) -> None:
        try:
            self._cycle_unguarded(now, relay=relay)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the executor thread silently
            with self._lock:
                self.fault = f"{type(exc).__name__}: {exc}"
                self.counters["faults"] += 1
            self.get_logger().error(f"FAULT in the control cycle, no more hardware commands until re-activation: "
                                    f"{self.fault}")

    def _cycle_unguarded(self, now: float, *, relay: bool) -> None:
        with self._lock:
            if not self._active or self.watchdog is None or self._hw_pub is None or self.fault:
                return
            previous = self.watchdog.mode
            decision = self.watchdog.evaluate(now, self.q)
            if previous == STOP and decision.mode != STOP:
                # After a gap in the measurements the last command is not known to be where the arm
                # is (a controller may have been switched meanwhile): step from the measured position.
                self.filter.reset_reference()
            result = None
            if decision.mode == RUN:
                self._fresh_command = False
                start = time.perf_counter_ns()
                result = self.filter.filter(self.target, self.q, self.period_s)
                self._filter_ns.append(time.perf_counter_ns() - start)
            elif decision.mode == HOLD:
                result = self.filter.filter(decision.target, self.q, self.period_s)
            sent = None
            if result is not None and result.command is not None:
                sent = result.command
                self._publish_hardware(sent)
                self.counters["hardware_commands"] += 1
                if decision.changed and decision.mode == HOLD and self.watchdog.last_command_s is not None:
                    self.last_hold_latency_s = now - self.watchdog.last_command_s
            if relay and decision.mode != STOP and self._state_seq > 0:
                self._relay_state()
        if decision.changed:
            self._report_transition(decision)
        if result is not None and result.interventions:
            kind = result.interventions[0]
            self._log_throttled(f"filter:{kind}", f"safety filter ({decision.mode}): {result.reason}")
        elif decision.mode in (HOLD, STOP) and not decision.changed:
            self._log_throttled(f"mode:{decision.cause}", f"{decision.mode.upper()} ({decision.cause}): "
                                f"{decision.reason}{self._stop_context(decision)}")

    def _publish_hardware(self, command: np.ndarray) -> None:
        values = command[self._controller_index].tolist()
        if self.output == "forward":
            self._hw_pub.publish(Float64MultiArray(data=values))
            return
        trajectory, point_type = self._trajectory_types
        sec, nsec = divmod(int(round(self.period_s * 1e9)), 1_000_000_000)
        point = point_type(positions=values, time_from_start=Duration(sec=sec, nanosec=nsec))
        self._hw_pub.publish(trajectory(joint_names=self.controller_joints, points=[point]))

    def _relay_state(self) -> None:
        msg = JointState()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(self.stamp_ns, 1_000_000_000)
        msg.name = list(self.profile.joint_names)
        msg.position = self.q.tolist()
        msg.velocity = self.qd.tolist()
        if self.effort is not None:
            msg.effort = self.effort.tolist()
        self._state_pub.publish(msg)
        self._relayed_seq = self._state_seq

    def _stop_context(self, decision) -> str:
        if decision.mode == STOP and self.last_rejection.startswith("hardware"):
            return f"; last {self.last_rejection}"
        return ""

    def _report_transition(self, decision) -> None:
        text = f"{decision.mode.upper()} ({decision.cause})"
        if decision.reason:
            text += f": {decision.reason}"
        text += self._stop_context(decision)
        if decision.mode == HOLD and decision.cause == "command_timeout":
            text += f" (hold started {1e3 * self.last_hold_latency_s:.1f} ms after the last command)"
        if decision.mode in (HOLD, STOP):
            self._log_throttled.mark(f"mode:{decision.cause}")  # repeats are throttled from here
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text if decision.mode == WAITING else f"RUN: forwarding the policy's commands "
                                   f"to {self.hardware_topic}")
        self.publish_diagnostics()

    # --- diagnostics ----------------------------------------------------------------------
    def achieved_rate_hz(self) -> float:
        times = list(self._cycle_times)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name="real_bridge: safety", level=DiagnosticStatus.OK)
        wd, flt = self.watchdog, self.filter
        if wd is None or flt is None:
            status.message = self.lifecycle_state + (f"; last error: {self.last_error}" if self.last_error else "")
            status.values = [KeyValue(key="lifecycle_state", value=self.lifecycle_state)]
        else:
            with self._lock:
                c = self.counters
                mode, cause, reason = (wd.mode, wd.cause, wd.reason) if self._active else ("inactive", "", "")
                filter_us = np.array(self._filter_ns, dtype=float) / 1e3
                values = {
                    "lifecycle_state": self.lifecycle_state, "mode": mode, "cause": cause,
                    "estop": wd.estopped, "hardware_topic": self.hardware_topic,
                    "target_rate_hz": f"{1 / self.period_s:g}", "achieved_rate_hz": f"{self.achieved_rate_hz():.2f}",
                    "hardware_commands": c["hardware_commands"], "hardware_states": c["hardware_states"],
                    "missing_joints": ",".join(self.missing_joints),
                    "commands": c["commands"], "commands_dropped": c["commands_dropped"],
                    "commands_rejected": sum(v for k, v in c.items() if k.startswith("commands_rejected:")),
                    "hardware_states_rejected": sum(v for k, v in c.items()
                                                    if k.startswith("hardware_states_rejected:")),
                    **{f"rejected_command_{k}": c[f"commands_rejected:{k}"] for k in REJECTIONS[:3]},
                    **{f"rejected_state_{k}": c[f"hardware_states_rejected:{k}"]
                       for k in (MISSING_JOINTS, LENGTH, NON_FINITE_STATE, "out_of_order")},
                    **{f"filter_{k}": flt.counters[k] for k in CLIPS + REJECTIONS},
                    **{k.replace(":", "_"): v for k, v in wd.counts().items()},
                    "last_hold_latency_ms": f"{1e3 * self.last_hold_latency_s:.1f}",
                    "filter_p50_us": f"{np.percentile(filter_us, 50):.1f}" if filter_us.size else "nan",
                    "filter_p99_us": f"{np.percentile(filter_us, 99):.1f}" if filter_us.size else "nan",
                    "last_rejection": self.last_rejection, "last_intervention": flt.last_intervention,
                    "resets": c["resets"], "fault": self.fault,
                }
            status.hardware_id = self.profile.name
            status.message = f"{self.lifecycle_state}, {mode}" + (f" ({cause}): {reason}" if reason else "")
            if self.fault:
                status.level = DiagnosticStatus.ERROR
                status.message = f"{self.lifecycle_state}, FAULT (not commanding until re-activation): {self.fault}"
            elif mode == HOLD:
                status.level = DiagnosticStatus.WARN
                if wd.estopped:
                    status.message = f"{self.lifecycle_state}, E-STOP latched: {reason}"
            elif mode == STOP:
                status.level = DiagnosticStatus.ERROR
                if self.last_rejection.startswith("hardware"):
                    status.message += f"; last {self.last_rejection}"
            status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Entry point for ``ros2 run real_bridge real_bridge_node`` and ``sim2real node real_bridge``."""
    return run_node("real_bridge", lambda: RealBridgeNode(autostart=True), args, num_threads=EXECUTOR_THREADS)


if __name__ == "__main__":
    sys.exit(main())
