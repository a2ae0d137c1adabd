"""The sim bridge ROS 2 node: a thin shell over :class:`sim_bridge.session.SimSession`.

Publishes (names relative to the node's namespace, see :mod:`sim_bridge.interface`):
  joint_states   sensor_msgs/JointState   at the control rate, stamped with sim time
  current_goal   geometry_msgs/PointStamped (latched)
  <task inputs>  the task's other ROS inputs (sim_bridge.tasks.TaskInput), e.g. Push's
                 object_pose (geometry_msgs/PoseStamped): what the task's simulated sensor
                 delivers each control step (tracker noise, latency: the stamp is the
                 measurement's time; a dropout publishes nothing)
  /clock         rosgraph_msgs/Clock      sim time (other nodes may set use_sim_time)
  /diagnostics   diagnostic_msgs/DiagnosticArray: the episode's sampled dynamics as
                 key/values, and health (achieved rate, counters), once per second
Subscribes:
  joint_commands std_msgs/Float64MultiArray  absolute joint targets, profile order, rad
  goal           geometry_msgs/PointStamped  new reach target (base frame, m)
Services:
  reset          std_srvs/Trigger  new episode: resample dynamics and goal
Parameters:
  robot_profile (str, read-only)       shipped name or YAML path
  randomization_dir (str, read-only)   the folder a YAML path set at runtime must lie in
                                       ('' = the node's working directory); shipped names
                                       (default, none) are always allowed
  randomization_file (str)             shipped name or YAML path; applies at the next reset.
                                       A set is answered at once: obvious errors (no such
                                       file, not a regular file (FIFO, device, folder), over
                                       the size limit) are refused; otherwise "accepted:
                                       validating", and a worker thread reads and checks the
                                       file (size, YAML alias and plausibility limits) while
                                       physics keeps stepping. An invalid file is refused in
                                       the log and on /diagnostics (randomization_status), the
                                       parameter returns to the file in force. Replies and
                                       diagnostics name the path, the field and the kind of
                                       error, never the file's contents (those are logged).
  mode (str, read-only)                "realtime": a timer steps at the control rate;
                                       "lockstep": one control step per command received
                                       (the current state is republished every 0.1 s while
                                       no command arrives, so a controller can start)
  task (str, read-only)                registered task (sim_bridge.tasks) whose goals the bridge
                                       samples and whose scene it adds; default "reach"
  seed (int, read-only)                -1 = random
  control_rate_hz, physics_rate_hz (float, read-only)  0 = the profile's rates
  frame_id (str)                       frame of the goal messages
"""
from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from sim_bridge import interface
from sim_bridge.executor import ThrottledLog, freeze_heap, run_node
from sim_bridge.handoff import HandoffSource
from sim_bridge.config import ConfigError, check_regular_file, confine_path
from sim_bridge.profile import load_profile
from sim_bridge.randomization import is_randomization_file_path, load_randomization, randomization_path
from sim_bridge.rates import RateMeter
from sim_bridge.session import SimSession
from sim_bridge.task_messages import WRITERS
from sim_bridge.tasks import DEFAULT_TASK, Task, UnknownTaskError, make_task

MODES = ("realtime", "lockstep")
LOCKSTEP_IDLE_REPUBLISH_S = 0.1
READ_ONLY = ("robot_profile", "task", "mode", "seed", "control_rate_hz", "physics_rate_hz", "randomization_dir")
VALIDATION_POLL_S = 0.05  # how often the executor picks up a finished file validation
BLOWUP_LOG_PERIOD_S = 1.0  # at most one blow-up ERROR line per this period (the counter counts all)


def _stamp(msg_stamp, seconds: float) -> None:
    total_ns = int(round(seconds * 1e9))
    msg_stamp.sec, msg_stamp.nanosec = divmod(total_ns, 1_000_000_000)


class SimBridgeNode(HandoffSource, Node):
    def __init__(self, task: Task | None = None, *, intra_process: bool = False, **kwargs):
        """``task``: a task instance (in-process composition, e.g. with settings from a policy's
        manifest); None = the ``task`` parameter's registered task with its default settings.

        ``intra_process`` (the composed deployment, ``sim2real/composed.py``; real-time mode
        only, ignored in lockstep): the commands come from a policy node in this process through
        :meth:`take_linked_command` instead of the ``joint_commands`` subscription (not created),
        and each message published on one of :attr:`linked_topics` also goes to the callables in
        ``listeners[topic]`` (:class:`~sim_bridge.handoff.HandoffSource`). The topics are
        published as always, for recorders and monitors."""
        super().__init__("sim_bridge", **kwargs)
        self._init_handoff()
        ro = ParameterDescriptor(read_only=True)
        self.declare_parameter("robot_profile", "panda_like", ro)
        self.declare_parameter("task", task.name if task is not None else DEFAULT_TASK, ro)
        self.declare_parameter("randomization_dir", "", ParameterDescriptor(
            description="folder that runtime randomization_file paths must lie in ('' = working directory)",
            read_only=True))
        self.declare_parameter("randomization_file", "default", ParameterDescriptor(
            description="shipped randomization name or YAML path inside randomization_dir; applies at the next reset"))
        self.declare_parameter("mode", "realtime", ro)
        self.declare_parameter("seed", -1, ro)
        self.declare_parameter("control_rate_hz", 0.0, ro)
        self.declare_parameter("physics_rate_hz", 0.0, ro)
        self.declare_parameter("frame_id", "base_link")

        mode = self.get_parameter("mode").value
        if mode not in MODES:
            raise ConfigError(f"must be one of {list(MODES)}, got '{mode}'", field="mode")
        self.mode = mode
        profile = load_profile(self.get_parameter("robot_profile").value).with_rates(
            self.get_parameter("control_rate_hz").value or None,
            self.get_parameter("physics_rate_hz").value or None)
        seed = self.get_parameter("seed").value
        rand_name = self.get_parameter("randomization_file").value
        if task is None:
            try:
                task = make_task(self.get_parameter("task").value)
            except UnknownTaskError as exc:
                raise ConfigError(str(exc), field="task") from None
        rand_name = task.randomization_name(rand_name)  # "default": the task's default distribution
        session = SimSession(profile, load_randomization(rand_name), rand_name,
                             seed=None if seed < 0 else int(seed), task=task)
        self.session = session
        self.profile = profile

        self._state_pub = self.create_publisher(JointState, interface.JOINT_STATES, interface.STATE_QOS)
        self._goal_pub = self.create_publisher(PointStamped, interface.CURRENT_GOAL, interface.LATCHED_QOS)
        self._clock_pub = self.create_publisher(Clock, interface.CLOCK, 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, interface.DIAGNOSTICS, interface.DIAGNOSTICS_QOS)
        # the task's sensed inputs (not the goal, published above): signal -> (publisher, message class, fill)
        self._task_pubs = {}
        for task_input in session.task.inputs:
            if task_input.topic == interface.CURRENT_GOAL:
                continue
            if task_input.msg_type not in WRITERS:
                raise ConfigError(f"task '{session.task.name}': input {task_input.signal} has message type "
                                  f"{task_input.msg_type}; the bridge writes {sorted(WRITERS)}", field="task")
            msg_class, fill = WRITERS[task_input.msg_type]
            qos = interface.LATCHED_QOS if task_input.latched else interface.STATE_QOS
            self._task_pubs[task_input.signal] = (self.create_publisher(msg_class, task_input.topic, qos),
                                                  msg_class, fill, task_input.topic)
        self._last_measured: dict = {}
        # lockstep steps on each command: a command delivered inside the state's own delivery
        # would recurse, so lockstep keeps the topic
        self.intra_process = bool(intra_process) and mode == "realtime"
        self._command_sub = None if self.intra_process else self.create_subscription(
            Float64MultiArray, interface.JOINT_COMMANDS, self._on_command, interface.COMMAND_QOS)
        self.create_subscription(PointStamped, interface.GOAL, self._on_goal, interface.LATCHED_QOS)
        self.create_service(Trigger, interface.RESET, self._on_reset)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._ticks = RateMeter.over(2.0, profile.control_rate_hz)  # control steps, the last ~2 s
        self._log_throttled = ThrottledLog(self.get_logger().warning)
        self._log_blowup = ThrottledLog(self.get_logger().error, BLOWUP_LOG_PERIOD_S)
        # randomization_file validation in a worker thread (see _on_set_parameters)
        self._accepted_randomization = rand_name  # the file in force or pending: the parameter's value
        self._validation: threading.Thread | None = None
        self._validated: tuple[str, object] | None = None  # (name, spec or ConfigError), set by the worker
        self._validation_lock = threading.Lock()
        self._reverting = False
        self.randomization_status = f"in force: '{rand_name}'"
        self.create_timer(VALIDATION_POLL_S, self._on_validation_poll)
        if mode == "realtime":
            self.create_timer(profile.control_period_s, self._on_timer)
            # A command only matters at the next tick: the tick takes what arrived since, so
            # the executor wakes once per cycle instead of twice (StaticWaitMixin does not
            # wait on polled subscriptions; rclpy's own loops still call _on_command)
            self.polled_subscriptions = (self._command_sub,) if self._command_sub is not None else ()
        else:
            # Lockstep waits for a command, the controller for a state: republishing the
            # current state while idle starts the loop and survives a lost message.
            self.create_timer(LOCKSTEP_IDLE_REPUBLISH_S, self._on_lockstep_idle)
        self.create_timer(1.0, self._publish_diagnostics)
        # In a ControlExecutor (a composed process, `sim2real sim`) every callback of the bridge
        # runs in the spinning thread, as in its own single-threaded process (executor.py)
        self.inline_callback_groups = (self.default_callback_group,)
        self.get_logger().info(
            f"sim bridge up: robot '{profile.name}' ({profile.num_joints} joints), {mode} mode, "
            f"{profile.control_rate_hz:g} Hz control over {profile.physics_rate_hz:g} Hz physics, "
            f"randomization '{rand_name}' ({session.sim.randomizer.size} parameters)")
        self._after_reset()
        freeze_heap()  # no full garbage collection (5-20 ms) in the stepping loop later

    # --- callbacks ----------------------------------------------------------------------
    def _on_timer(self) -> None:
        self._take_commands()
        self._step_and_publish()

    def _take_commands(self) -> None:
        """Run ``_on_command`` on each command that arrived since the last tick, oldest first
        (at most the subscription's queue depth: a flood cannot hold the tick)."""
        sub = self._command_sub
        if sub is None:  # intra-process: the linked policy node delivers its commands itself
            return
        for _ in range(interface.COMMAND_QOS.depth):
            with sub.handle:
                taken = sub.handle.take_message(sub.msg_type, sub.raw)
            if taken is None:
                return
            self._on_command(taken[0])

    def _on_lockstep_idle(self) -> None:
        last = self._ticks.last_s or 0.0
        if time.monotonic() - last >= LOCKSTEP_IDLE_REPUBLISH_S:
            self._publish_task_inputs(measure=False)
            self._publish_state()

    def _on_command(self, msg: Float64MultiArray) -> None:
        result = self.session.submit_command(msg.data)
        if not result.accepted:
            self._log_throttled("reject", f"joint_commands rejected: {result.reason}")
            return
        if result.clipped:
            self._log_throttled("clip", f"joint_commands {result.reason}")
        if self.mode == "lockstep":
            self._step_and_publish()

    def take_linked_command(self, msg: Float64MultiArray) -> None:
        """A command from the policy node this bridge is composed with (``intra_process``): the
        same checks as one from the topic; it applies at the next tick."""
        self._on_command(msg)

    def _on_goal(self, msg: PointStamped) -> None:
        try:
            self.session.set_goal([msg.point.x, msg.point.y, msg.point.z])
        except ValueError as exc:
            self.get_logger().warning(f"goal rejected: {exc}; kept {self.session.goal.tolist()}")
            return
        self._publish_goal()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.session.reset()
        self._after_reset()
        response.success = True
        response.message = (f"episode {self.session.counters.episodes}: goal "
                            f"{np.round(self.session.goal, 3).tolist()}, randomization "
                            f"'{self.session.randomization_name}'")
        return response

    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            if param.name in READ_ONLY:
                return SetParametersResult(successful=False, reason=f"{param.name} is read-only; restart the node")
        for param in params:
            if param.name == "randomization_file" and not self._reverting:
                return self._start_validation(param.value)
        return SetParametersResult(successful=True)

    def _start_validation(self, value) -> SetParametersResult:
        """Answer a randomization_file set at once; read and check the file in a worker thread.

        Replies carry :meth:`ConfigError.public` (path, field, kind of error), never the
        file's contents; the full reason goes to this node's log."""
        kept = f"kept '{self._accepted_randomization}'"
        if self._validation is not None:
            return SetParametersResult(successful=False, reason=(
                f"refused: still validating '{self._validation.name}'; {kept}; try again in a moment"))
        try:
            if not isinstance(value, str):
                raise ConfigError("expected a string (shipped name or YAML path)", kind="expected a string")
            path = randomization_path(value)
            if is_randomization_file_path(value):  # a path, not a shipped name: confined
                path = confine_path(path, self.get_parameter("randomization_dir").value or os.getcwd(),
                                    what="randomization_file")
            check_regular_file(path)
        except ConfigError as exc:
            return self._refuse_now(exc.public(), str(exc), kept)
        except OSError as exc:  # not found, no permission: path and strerror only
            reason = f"{value}: {exc.strerror}"
            return self._refuse_now(reason, reason, kept)
        worker = threading.Thread(target=self._validate, args=(value,), name=value, daemon=True)
        self._validation = worker
        self.randomization_status = f"validating '{value}'"
        worker.start()
        self.get_logger().info(f"randomization_file '{value}': validating in the background; {kept} until then")
        return SetParametersResult(successful=True, reason="accepted: validating; applies at the next reset "
                                                           "if valid (see the log or /diagnostics)")

    def _refuse_now(self, public: str, detail: str, kept: str) -> SetParametersResult:
        self.get_logger().error(f"randomization_file rejected: {detail}; {kept}")
        return SetParametersResult(successful=False, reason=f"rejected: {public}; {kept}")

    def _validate(self, name: str) -> None:
        """Worker thread: read and check the file (never touches the simulator's state)."""
        try:
            outcome = self.session.check_randomization(name)
        except ConfigError as exc:
            outcome = exc
        except Exception as exc:  # noqa: BLE001 - whatever happens, the result must reach the executor
            outcome = ConfigError(f"cannot load ({type(exc).__name__}: {exc})", source=name,
                                  kind=f"cannot load ({type(exc).__name__})")
        with self._validation_lock:
            self._validated = (name, outcome)

    def _on_validation_poll(self) -> None:
        """Executor thread: apply a finished validation, or refuse it and restore the parameter."""
        with self._validation_lock:
            done, self._validated = self._validated, None
        if done is None:
            return
        self._validation = None
        name, outcome = done
        if isinstance(outcome, ConfigError):
            kept = self._accepted_randomization
            self.get_logger().error(f"randomization_file '{name}' rejected: {outcome}; kept '{kept}'")
            self._reverting = True
            try:
                self.set_parameters([Parameter("randomization_file", value=kept)])
            finally:
                self._reverting = False
            # the status last: whoever sees it settled also finds the parameter restored
            self.randomization_status = f"refused '{name}': {outcome.public()}; kept '{kept}'"
            return
        self.session.use_randomization(name, outcome)
        self._accepted_randomization = name
        self.randomization_status = f"accepted '{name}'; applies at the next reset"
        self.get_logger().info(f"randomization_file '{name}' valid; applies at the next reset")

    # --- helpers ------------------------------------------------------------------------
    def _step_and_publish(self) -> None:
        ok = self.session.tick()
        self._ticks.tick(time.monotonic())
        if not ok:
            self._log_blowup("blowup", (
                f"physics blow-up (NaN or MuJoCo instability); reset to episode {self.session.counters.episodes} "
                f"({self.session.counters.blowups} blow-ups so far; logged at most every {BLOWUP_LOG_PERIOD_S:g} s)"))
            self._after_reset()
            return
        # the task's inputs first: the state triggers a policy cycle (trigger 'state'; at once
        # when composed intra-process), which should see this step's inputs
        self._publish_task_inputs()
        self._publish_state()

    def _after_reset(self) -> None:
        self._publish_goal()
        self._publish_task_inputs()
        self._publish_state()
        self._publish_diagnostics()

    def _publish_task_inputs(self, measure: bool = True) -> None:
        """Publish what the task's sensors delivered this step (``measure=False``: again the last)."""
        if not self._task_pubs:
            return
        if measure:
            now = self.session.clock_s
            self._last_measured = {signal: (value, now - age)
                                   for signal, (value, age) in self.session.measure_task_inputs().items()}
        frame = self.get_parameter("frame_id").value
        for signal, (value, stamp_s) in self._last_measured.items():
            publisher, msg_class, fill, topic = self._task_pubs[signal]
            msg = msg_class()
            _stamp(msg.header.stamp, max(0.0, stamp_s))
            msg.header.frame_id = frame
            fill(msg, value)
            publisher.publish(msg)
            self._deliver(topic, msg)

    @property
    def linked_topics(self) -> tuple[str, ...]:
        """The topics an intra-process link hands over (:class:`HandoffSource`): the joint
        states, the goal and the task's sensed inputs (all published from the spinning thread:
        every callback of this node runs there)."""
        if not self.intra_process:
            return ()
        return (interface.JOINT_STATES, interface.CURRENT_GOAL,
                *(topic for *_, topic in self._task_pubs.values()))

    def _publish_state(self) -> None:
        s = self.session.joint_state()
        msg = JointState()
        _stamp(msg.header.stamp, s.sim_time_s)
        msg.name = list(s.names)
        msg.position = s.position_rad.tolist()
        msg.velocity = s.velocity_rad_s.tolist()
        msg.effort = s.effort_nm.tolist()
        if self._clock_pub.get_subscription_count():  # a publish costs ~30 us even to nobody
            clock = Clock()
            _stamp(clock.clock, s.sim_time_s)
            self._clock_pub.publish(clock)
        self._state_pub.publish(msg)
        self._deliver(interface.JOINT_STATES, msg)

    def _publish_goal(self) -> None:
        msg = PointStamped()
        _stamp(msg.header.stamp, self.session.clock_s)
        msg.header.frame_id = self.get_parameter("frame_id").value
        msg.point.x, msg.point.y, msg.point.z = (float(v) for v in self.session.goal)
        self._goal_pub.publish(msg)
        self._deliver(interface.CURRENT_GOAL, msg)

    def achieved_rate_hz(self) -> float:
        """Control steps per wall-clock second over the last ~2 s."""
        return self._ticks.rate_hz()

    def _publish_diagnostics(self) -> None:
        s, c = self.session, self.session.counters
        dyn = DiagnosticStatus(name="sim_bridge: dynamics", hardware_id=self.profile.name,
                               level=DiagnosticStatus.OK,
                               message=f"episode {c.episodes}, randomization '{s.randomization_name}'")
        dyn.values = [KeyValue(key=k, value=f"{v:.6g}") for k, v in s.sim.dynamics_dict().items()]
        rate = self.achieved_rate_hz()
        target = self.profile.control_rate_hz
        slow = self.mode == "realtime" and len(self._ticks) > 10 and rate < 0.9 * target
        health = DiagnosticStatus(name="sim_bridge: health", hardware_id=self.profile.name,
                                  level=DiagnosticStatus.WARN if slow else DiagnosticStatus.OK,
                                  message=f"{self.mode}, {rate:.1f} Hz achieved (target {target:g} Hz)")
        health.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ("mode", self.mode), ("target_rate_hz", f"{target:g}"), ("achieved_rate_hz", f"{rate:.2f}"),
            ("control_steps", c.control_steps), ("episodes", c.episodes), ("blowups", c.blowups),
            ("commands_accepted", c.commands_accepted), ("commands_rejected", c.commands_rejected),
            ("commands_clipped", c.commands_clipped), ("last_rejection", c.last_rejection),
            ("sim_time_s", f"{s.clock_s:.3f}"), ("randomization_status", self.randomization_status))]
        msg = DiagnosticArray(status=[dyn, health])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Entry point for ``ros2 run sim_bridge sim_bridge_node`` and ``sim2real node sim_bridge``."""
    return run_node("sim_bridge", SimBridgeNode, args)


if __name__ == "__main__":
    sys.exit(main())
