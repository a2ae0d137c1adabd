"""The policy node: an ONNX policy at the control rate, swappable at runtime. A lifecycle
node, thin over :class:`policies.control.PolicyController`.

Subscribes (names relative to the node's namespace, see :mod:`sim_bridge.interface`):
  joint_states   sensor_msgs/JointState      mapped by joint name (STATE_QOS: reliable, keep-last 1)
  the task's inputs (:class:`sim_bridge.tasks.TaskInput`, from the configured policy's task):
  current_goal   geometry_msgs/PointStamped  Reach's target, Push's goal (latched)
  object_pose    geometry_msgs/PoseStamped   Push: the tracked object (stale -> hold)
Publishes:
  joint_commands std_msgs/Float64MultiArray  absolute joint targets, profile order, rad;
                                             only while active (a lifecycle publisher)
  /diagnostics   diagnostic_msgs/DiagnosticArray, status 'policy: control', once per second:
                 WARN while holding, stale, or after overruns since the last report; ERROR
                 after a fall-back to the previous policy or a disable (until the next swap,
                 ``fault`` says why) and while non-finite outputs last FAULT_LIMIT cycles
Services:
  ~/reset          std_srvs/Trigger  zero the recurrent state and the previous action
  ~/list_policies  std_srvs/Trigger  the policy names in policy_dir, comma-separated
Parameters:
  policy (str)                 artifact folder name inside policy_dir; setting it swaps the
                               policy at runtime (loaded, validated and warmed up in the
                               parameter thread, each step right after a control cycle;
                               refused with the reason, old one kept). After a fall-back
                               (PolicyController: overruns, non-finite outputs) it still names
                               the failed policy; diagnostics' 'policy' and 'fault' say which
                               one runs and why; setting it again swaps as usual
  policy_dir (str, read-only)  folder of policy artifacts; '' = the shipped zoo
  robot_profile (str, read-only)  shipped name or YAML path
  trigger (str, read-only)     'timer': a cycle per control period; 'state': a cycle per joint state
  control_rate_hz (float, read-only)  0 = the policy manifest's rate
  stale_after_periods (int)    no state for longer than this many periods -> no command
  task_input_stale_s (float)   a streamed task input (Push's object_pose) older than this -> hold
  allow_rate_mismatch (bool)   accept a policy trained at another control rate
  attribution_rate_hz (float, read-only)  live occlusion attribution of the action per
                               observation signal on ~/attribution (diagnostic_msgs/DiagnosticArray)
                               and /diagnostics, outside the control loop; 0 = off (default)
  available_policies (str[], read-only)  refreshed at configure
  preload_policies (str[], read-only)  loaded at configure and kept, so swapping to them
                               creates no onnxruntime session (that stalls the control thread)
  autostart (bool, read-only)  configure + activate at construction (default true for main())

Lifecycle: configure loads and validates the policy and creates the topics (control off);
activate zeroes the recurrent state and starts commanding; deactivate stops all commands;
cleanup frees the runtime. Threads (ControlExecutor, a MultiThreadedExecutor; main()): the control
cycle has its own mutually exclusive callback group, state and goal intake another (in
'timer' mode), parameters and lifecycle services stay in the node's default group, services
and diagnostics in a fourth. A swap loads in the parameter thread, so the control loop runs
on meanwhile, and states keep arriving while a slow policy runs. All threads share the GIL:
the load therefore takes each of its steps right after a control cycle has published its
command (``PolicyController.end_cycle`` / ``yield_to_control``), in the idle part of the period,
and every callback outside the control and intake groups starts there too (``pace_callback``).
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from sim_bridge.executor import ThrottledLog, freeze_heap, run_node
from sim_bridge.task_messages import READERS
from sim_bridge.lifecycle import CommandGateMixin
from policies.control import (FAULT_LIMIT, HOLD, STALE, PolicyController, PolicyRejected, list_policies,
                              resolve_policy)
from policies.manifest import shipped_zoo
from sim_bridge import interface
from sim_bridge.config import ConfigError
from sim_bridge.profile import load_profile

TRIGGERS = ("timer", "state")
DEFAULT_POLICY = "reach_lstm"
EXECUTOR_THREADS = 4  # control cycle, state intake, parameters/lifecycle, services/diagnostics


def shipped_policy_dir() -> Path:
    """The zoo folder shipped inside the policies package."""
    return shipped_zoo()


# Message types a task input may have -> (message class, values in the signal's order).
# A task whose inputs need another type adds its reader here.
TASK_MESSAGE_READERS = READERS


class PolicyNode(CommandGateMixin, LifecycleNode):
    CONFIGURE_ERRORS = (ConfigError, PolicyRejected)  # configure FAILURE with the reason

    def __init__(self, *, autostart: bool = False, linked_topics: Iterable[str] = (),
                 linked_latest: Callable | None = None, **kwargs):
        """``linked_topics`` (the composed deployment, ``sim2real/composed.py``): the inputs on
        these topics (joint states, the task's inputs) come from a bridge in this process through
        :meth:`take_linked` instead of subscriptions (not created for them), and every command
        published also goes to the callables in ``command_listeners``. ``linked_latest(topic)``:
        the bridge's last message on a topic (None if none), read at configure for the latched
        inputs (the goal), as a latched subscription gets it on joining."""
        super().__init__("policy", **kwargs)
        self.linked_topics = frozenset(linked_topics)
        self._linked_latest = linked_latest
        self._linked: dict[str, Callable] = {}  # topic -> the input callback a subscription would run
        self.command_listeners: list = []  # callables taking each published command (intra-process)

        def describe(text: str, read_only: bool = False, **extra) -> ParameterDescriptor:
            return ParameterDescriptor(description=text, read_only=read_only, **extra)

        self.declare_parameter("policy", DEFAULT_POLICY, describe(
            "artifact folder name inside policy_dir; set it at runtime to swap policies"))
        self.declare_parameter("policy_dir", "", describe(
            "folder holding the policy artifacts; '' = the shipped zoo", read_only=True))
        self.declare_parameter("robot_profile", "panda_like", describe(
            "robot profile (shipped name or YAML path) the policy is validated against", read_only=True))
        self.declare_parameter("trigger", "timer", describe(
            "'timer': one cycle per control period; 'state': one cycle per joint state received",
            read_only=True))
        self.declare_parameter("control_rate_hz", 0.0, describe(
            "control rate; 0 = the policy manifest's rate", read_only=True))
        self.declare_parameter("stale_after_periods", 5, describe(
            "no command when the last joint state arrived more than this many control periods ago",
            integer_range=[IntegerRange(from_value=1, to_value=1000, step=1)]))
        self.declare_parameter("task_input_stale_s", 0.25, describe(
            "hold (command the measured position) when a streamed task input (not latched, e.g. Push's "
            "object_pose) arrived longer ago than this, s", floating_point_range=[
                FloatingPointRange(from_value=0.001, to_value=60.0, step=0.0)]))
        self.declare_parameter("attribution_rate_hz", 0.0, describe(
            "live occlusion attribution of the current action per observation signal, published on "
            "~/attribution and /diagnostics at this rate (outside the control loop); 0 = off",
            read_only=True, floating_point_range=[FloatingPointRange(from_value=0.0, to_value=10.0, step=0.0)]))
        self.declare_parameter("allow_rate_mismatch", False, describe(
            "accept a policy trained at another control rate than the node's"))
        self.declare_parameter("available_policies", Parameter.Type.STRING_ARRAY, describe(
            "policy names found in policy_dir (refreshed at configure)", read_only=True))
        self.declare_parameter("preload_policies", [""], describe(
            "policies to load at configure so that swapping to them creates no onnxruntime session "
            "(a session's creation can stall the control thread for milliseconds)", read_only=True))
        self.declare_parameter("sample_actions", False, describe(
            "act with samples of each policy's trained Gaussian (the graph's mean + the manifest's "
            "action_std) instead of its mean; a policy without action_std is then refused. Off by "
            "default: a deterministic policy is what most deployments want; Push's LSTM does ~20 points "
            "better sampled (README)", read_only=True))
        self.declare_parameter("sample_seed", 0, describe(
            "sample_actions: the seed of the sampler (one per loaded policy)", read_only=True))
        self.declare_parameter("autostart", autostart, describe(
            "configure and activate right after construction", read_only=True))

        self.controller: PolicyController | None = None
        self.trigger = ""
        self.lifecycle_state = "unconfigured"
        self.last_error = ""
        self._active = False
        self._publish_lock = threading.Lock()  # no command can go out once on_deactivate returned
        self._gate = self._publish_lock  # CommandGateMixin
        self._pub = None
        self._entities: list = []
        self._log_throttled = ThrottledLog(self.get_logger().warning)
        self._reported_overruns = 0  # overruns counted at the last diagnostics report
        self._control_group = MutuallyExclusiveCallbackGroup()  # the cycle (timer, or state in 'state' mode)
        self._input_group = MutuallyExclusiveCallbackGroup()    # state and goal intake in 'timer' mode
        self._aux_group = MutuallyExclusiveCallbackGroup()      # services, diagnostics
        # ControlExecutor runs these in its spinning thread (no hand-off to a worker per cycle);
        # parameters, lifecycle and the aux group stay in workers, so a swap's load runs beside them
        self.inline_callback_groups = (self._control_group, self._input_group)
        self._diag_pub = self.create_publisher(DiagnosticArray, interface.DIAGNOSTICS, interface.DIAGNOSTICS_QOS)
        self._attribution_pub = None  # ~/attribution, when attribution_rate_hz > 0
        self.attribution: dict[str, float] = {}  # the latest live attribution per observation signal
        self.attributions = 0  # live attributions published since start
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=self._aux_group)
        self.create_service(Trigger, "~/list_policies", self._on_list_policies, callback_group=self._aux_group)
        self.create_timer(1.0, self.publish_diagnostics, callback_group=self._aux_group)
        self._refresh_available()
        self.add_on_set_parameters_callback(self._on_set_parameters)

        if self.get_parameter("autostart").value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    # --- parameters -----------------------------------------------------------------------
    @property
    def policy_dir(self) -> Path:
        return Path(self.get_parameter("policy_dir").value or shipped_policy_dir()).expanduser().resolve()

    def _refresh_available(self) -> list[str]:
        names = list_policies(self.policy_dir)
        param = Parameter("available_policies", Parameter.Type.STRING_ARRAY, names)
        # Read-only to the outside; the node updates it itself, bypassing the read-only check.
        self._set_parameters_atomically_common([param], {param.name: self.describe_parameter(param.name)})
        return names

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        new = {param.name: param.value for param in params}
        ctl = self.controller
        if ctl is not None and "policy" not in new:
            # Any parameter set: rclpy publishes the parameter event and sends the reply right
            # after this returns, 0.2-0.5 ms of GIL; right after a control cycle, like a swap's
            # steps (a swap waits in load_policy).
            ctl.yield_to_control()
        if "policy" in new:  # first: if the swap is refused, nothing of this request applies
            allow = new.get("allow_rate_mismatch", ctl.allow_rate_mismatch if ctl else False)
            ok, reason = self._swap(new["policy"], allow)
            if not ok:
                return SetParametersResult(successful=False, reason=reason)
        if ctl is not None:
            if "stale_after_periods" in new:
                ctl.stale_after_periods = int(new["stale_after_periods"])
            if "task_input_stale_s" in new:
                ctl.task_input_stale_s = float(new["task_input_stale_s"])
            if "allow_rate_mismatch" in new:
                ctl.allow_rate_mismatch = bool(new["allow_rate_mismatch"])
        return SetParametersResult(successful=True)

    def _swap(self, name: str, allow_rate_mismatch: bool) -> tuple[bool, str]:
        """Runs in the parameter thread: load, validate and warm up (paced by the control loop,
        see PolicyController.load_policy), then hand over to the loop."""
        ctl = self.controller
        if ctl is None:  # unconfigured: only the name is checked; configure loads it
            try:
                resolve_policy(self.policy_dir, name)
            except PolicyRejected as exc:
                reason = f"policy '{name}' rejected: {exc}"
                self.get_logger().error(reason)
                return False, reason
            return True, ""
        old = ctl.active_name
        try:
            loaded = ctl.swap(name, allow_rate_mismatch=allow_rate_mismatch)
        except PolicyRejected as exc:
            reason = f"{exc}; '{old}' keeps control"
            ctl.yield_to_control()  # the log call too (see below)
            self.get_logger().error(reason)
            return False, reason
        freeze_heap(full=False)  # the new runtime's objects: out of the collector's way
        after_cycle = False  # True right after a control cycle ended
        if not self._active:  # no control loop to hand over to
            ctl.apply_pending_swap()
        else:  # the loop installs it at its next cycle boundary: wait for that (2 cycles at most)
            for _ in range(2):
                if ctl.active is loaded:
                    break
                after_cycle = ctl.yield_to_control()
                if not after_cycle:
                    break
        # One log line, from this thread (not the control thread), right after a control cycle:
        # a rclpy log call holds the GIL for 0.2-0.9 ms (it inspects the caller's frames), as
        # long as a whole 500 Hz cycle's work. With warnings (rate mismatch) it is a warning.
        text = f"policy '{name}' ({loaded.short_sha}) loaded in {1e3 * loaded.load_s:.0f} ms"
        if not self._active:
            text += " and installed (node inactive)"
        elif ctl.active is loaded:
            text += f"; took control from '{old}' at cycle {ctl.last_swap_cycle} (zero recurrent state)"
        else:
            text += f"; takes over from '{old}' at the next control cycle"
        if not after_cycle:
            ctl.yield_to_control()
        if loaded.warnings:
            self.get_logger().warning(f"{text}; {'; '.join(loaded.warnings)}")
        else:
            self.get_logger().info(text)
        # rclpy publishes the parameter event and sends the reply when this returns: after the
        # next cycle, not in the same idle slot as the log call.
        ctl.yield_to_control()
        return True, ""

    # --- lifecycle ------------------------------------------------------------------------
    def _configure(self) -> None:
        trigger = self.get_parameter("trigger").value
        if trigger not in TRIGGERS:
            raise ConfigError(f"must be one of {list(TRIGGERS)}, got '{trigger}'", field="trigger")
        policy_dir = self.policy_dir
        if not policy_dir.is_dir():
            raise ConfigError(f"policy folder {policy_dir} does not exist", field="policy_dir")
        profile = load_profile(self.get_parameter("robot_profile").value)
        ctl = PolicyController(profile, policy_dir,
                               control_rate_hz=self.get_parameter("control_rate_hz").value or None,
                               stale_after_periods=self.get_parameter("stale_after_periods").value,
                               task_input_stale_s=self.get_parameter("task_input_stale_s").value,
                               allow_rate_mismatch=self.get_parameter("allow_rate_mismatch").value,
                               periodic=trigger == "timer",
                               sample_seed=(self.get_parameter("sample_seed").value
                                            if self.get_parameter("sample_actions").value else None))
        available = self._refresh_available()
        loaded = ctl.load_policy(self.get_parameter("policy").value)
        ctl.set_policy(loaded)
        preload = [name for name in self.get_parameter("preload_policies").value if name]
        for reason in ctl.preload(preload):
            self.get_logger().warning(f"preload_policies: {reason}")
        self.controller, self.trigger = ctl, trigger

        # In 'timer' mode the subscriptions get a group of their own: in the timer's group an
        # overrunning policy would starve them (the overdue timer always wins), and states that
        # do arrive would be reported stale.
        inputs = self._input_group if trigger == "timer" else self._control_group
        self._pub = self.create_lifecycle_publisher(Float64MultiArray, interface.JOINT_COMMANDS,
                                                    interface.COMMAND_QOS)
        self._entities = []
        self._linked = {}

        latched_links = []

        def subscribe(msg_class, topic: str, callback, qos) -> None:
            if topic in self.linked_topics:
                self._linked[topic] = callback
                if qos is interface.LATCHED_QOS:
                    latched_links.append(topic)
            else:
                self._entities.append(self.create_subscription(msg_class, topic, callback, qos, callback_group=inputs))

        subscribe(JointState, interface.JOINT_STATES, self._on_state, interface.STATE_QOS)
        for task_input in ctl.task.inputs:  # the task's signals that arrive over ROS (Reach: current_goal)
            if task_input.msg_type not in TASK_MESSAGE_READERS:
                raise PolicyRejected(f"task '{ctl.task.name}': input {task_input.signal} on {task_input.topic} has "
                                     f"message type {task_input.msg_type}; the policy node reads "
                                     f"{sorted(TASK_MESSAGE_READERS)}")
            msg_class, read = TASK_MESSAGE_READERS[task_input.msg_type]
            subscribe(msg_class, task_input.topic, self._task_input_callback(task_input.signal, read),
                      interface.LATCHED_QOS if task_input.latched else interface.STATE_QOS)
        for topic in latched_links:  # what a latched subscription would get on joining
            msg = self._linked_latest(topic) if self._linked_latest is not None else None
            if msg is not None:
                self._linked[topic](msg)
        if trigger == "timer":
            self._entities.append(self.create_timer(ctl.period_s, self._on_timer, callback_group=self._control_group))
        rate = self.get_parameter("attribution_rate_hz").value
        if rate > 0:  # in the aux group: starts right after a control cycle (see before_callback)
            if self._attribution_pub is None:
                self._attribution_pub = self.create_publisher(DiagnosticArray, "~/attribution", 10)
            self._entities.append(self.create_timer(1.0 / rate, self._on_attribution, callback_group=self._aux_group))
        for warning in loaded.warnings:
            self.get_logger().warning(f"policy '{loaded.name}': {warning}")
        self.get_logger().info(
            f"configured: policy '{loaded.name}' ({loaded.short_sha}, {loaded.runtime.manifest.architecture}) "
            f"loaded in {1e3 * loaded.load_s:.0f} ms for robot '{profile.name}' ({profile.num_joints} joints), "
            f"{ctl.control_rate_hz:g} Hz, trigger '{trigger}'; policies in {policy_dir}: {available}")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.controller.reset()  # the arm may have moved while inactive: start from zero state
        freeze_heap(full=True)
        ret = super().on_activate(state)  # enables the lifecycle publisher
        self._active = True
        self.lifecycle_state = "active"
        self.get_logger().info(f"active: policy '{self.controller.active_name}' commands joint_commands")
        return ret

    def _teardown(self) -> None:
        for entity in self._entities:
            if hasattr(entity, "cancel"):
                entity.cancel()
                self.destroy_timer(entity)
            else:
                self.destroy_subscription(entity)
        self._entities = []
        self._linked = {}
        if self._pub is not None:
            self.destroy_lifecycle_publisher(self._pub)
            self._pub = None
        self.controller = None  # frees the runtime

    def destroy_node(self) -> None:
        # An executor's shutdown does not wait for running callbacks: stop publishing and let
        # a cycle in progress finish before the publishers go away.
        with self._publish_lock:
            self._active = False
        ctl = self.controller
        if ctl is not None:
            ctl.wait_idle()
        super().destroy_node()

    def pace_callback(self, entity) -> None:
        """ControlExecutor hook, run in a worker thread before a callback's task starts.

        Everything outside the control loop's groups (the parameter and lifecycle services,
        ~/reset, ~/list_policies, diagnostics) starts right after a control cycle, in the idle
        part of the period: rclpy takes and converts a request before any callback of ours
        runs, 0.3-1 ms of GIL that a cycle would otherwise wait for (a swap's first stall).
        Waits 2 periods at most (PolicyController.yield_to_control)."""
        ctl = self.controller
        if ctl is not None and entity.callback_group not in (self._control_group, self._input_group):
            ctl.yield_to_control()

    def _on_attribution(self) -> None:
        ctl = self.controller
        if ctl is None or not self._active:
            return
        try:
            values = ctl.attribution()
        except Exception as exc:  # noqa: BLE001 - a diagnostic must never stop the node
            self._log_throttled("attribution", f"live attribution failed: {type(exc).__name__}: {exc}")
            return
        if values is None:
            return
        self.attribution = values
        self.attributions += 1
        total = sum(values.values())
        status = DiagnosticStatus(name="policy: attribution", hardware_id=ctl.profile.name, level=DiagnosticStatus.OK,
                                  message=f"policy '{ctl.active_name}': occlusion attribution of the current action "
                                          "per observation signal (L2 change of the action; mean-observation baseline)")
        status.values = [KeyValue(key=k, value=f"{v:.6g}") for k, v in values.items()] + [
            KeyValue(key=f"share/{k}", value=f"{(v / total if total > 0 else 0.0):.4f}") for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._attribution_pub.publish(msg)

    # --- control --------------------------------------------------------------------------
    def _on_state(self, msg: JointState) -> None:
        ctl = self.controller
        if ctl is None:
            return
        now = time.monotonic()
        ok, reason = ctl.on_joint_state(msg.name, msg.position, msg.velocity, now)
        if not ok:
            self._log_throttled("state", reason)
        elif self.trigger == "state" and self._active:
            self._run_cycle(ctl, now)

    def take_linked(self, topic: str, msg) -> None:
        """A message the bridge this node is composed with published on ``topic`` (one of
        ``linked_topics``): what the subscription's callback would do with it (the same checks;
        a joint state with trigger 'state' runs the cycle), in the caller's thread (the bridge's
        tick, inline in the executor's spinning thread, like the callback it replaces). Ignored
        while unconfigured or when this policy's task does not read the topic."""
        callback = self._linked.get(topic)
        if callback is not None:
            callback(msg)

    def _task_input_callback(self, signal: str, read):
        def on_input(msg) -> None:
            ctl = self.controller
            if ctl is not None:
                ok, reason = ctl.set_task_input(signal, read(msg))
                if not ok:
                    self.get_logger().warning(reason)
        return on_input

    def _on_timer(self) -> None:
        ctl = self.controller
        if ctl is not None and self._active:
            self._run_cycle(ctl, time.monotonic())

    def _run_cycle(self, ctl: PolicyController, now: float) -> None:
        result = ctl.cycle(now)
        if result.command is not None:
            msg = Float64MultiArray(data=result.command.tolist())
            with self._publish_lock:
                if self._active and self._pub is not None:
                    self._pub.publish(msg)
                    for deliver in self.command_listeners:
                        deliver(msg)
        # The command is out: a policy load waiting in the parameter thread may take its next
        # step now, in the idle part of the period. (A swap is logged by the parameter thread.)
        ctl.end_cycle()
        if result.fault:  # once, on the cycle that fell back or disabled the policy
            self.get_logger().error(result.fault)
        elif result.status in (HOLD, STALE):
            self._log_throttled(result.status, result.reason)

    # --- services -------------------------------------------------------------------------
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        ctl = self.controller
        if ctl is None:
            response.success, response.message = False, f"not configured ({self.lifecycle_state})"
            return response
        ctl.reset()
        response.success = True
        response.message = f"policy '{ctl.active_name}': recurrent state and previous action zeroed"
        self.get_logger().info(response.message)
        return response

    def _on_list_policies(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success = True
        response.message = ",".join(list_policies(self.policy_dir))
        return response

    # --- diagnostics ----------------------------------------------------------------------
    def publish_diagnostics(self) -> None:
        # Building and publishing the report holds the GIL for 0.5-1 ms (measured at 500 Hz):
        # the timer's callback starts right after a control cycle (pace_callback).
        ctl = self.controller
        status = DiagnosticStatus(name="policy: control", level=DiagnosticStatus.OK)
        if ctl is None:
            status.message = f"{self.lifecycle_state}" + (f"; last error: {self.last_error}" if self.last_error else "")
            status.values = [KeyValue(key="lifecycle_state", value=self.lifecycle_state)]
        else:
            c, active = ctl.counters, ctl.active
            rate, target = ctl.achieved_rate_hz(), ctl.control_rate_hz
            status.hardware_id = ctl.profile.name
            status.message = (f"{self.lifecycle_state}, policy '{ctl.active_name}', {rate:.1f} Hz achieved "
                              f"(target {target:g} Hz, trigger '{self.trigger}')")
            new_overruns, self._reported_overruns = c.overruns - self._reported_overruns, c.overruns
            if self._active and (ctl.holding or ctl.stale):
                status.level = DiagnosticStatus.WARN
                status.message += f"; HOLDING: {c.last_hold}" if ctl.holding else "; joint state STALE"
            if self._active and new_overruns > 0:
                status.level = DiagnosticStatus.WARN
                status.message += (f"; {new_overruns} OVERRUNS since the last report (cycles longer than the "
                                   f"{1e3 * ctl.period_s:g} ms period)")
            if ctl.fault or (self._active and ctl.non_finite_run >= FAULT_LIMIT):
                status.level = DiagnosticStatus.ERROR
                status.message += f"; FAULT: {ctl.fault}" if ctl.fault else \
                    f"; non-finite outputs for {ctl.non_finite_run} consecutive cycles"
            us = 1e6
            status.values = [KeyValue(key=k, value=str(v)) for k, v in (
                ("lifecycle_state", self.lifecycle_state),
                ("policy", ctl.active_name),
                ("onnx_sha256", active.short_sha if active else ""),
                ("pending_policy", ctl.pending_name),
                ("target_rate_hz", f"{target:g}"), ("achieved_rate_hz", f"{rate:.2f}"),
                ("inference_p50_us", f"{us * ctl.inference.p50():.0f}"),
                ("inference_p99_us", f"{us * ctl.inference.p99():.0f}"),
                ("loop_latency_p50_us", f"{us * ctl.loop_latency.p50():.0f}"),
                ("loop_latency_p99_us", f"{us * ctl.loop_latency.p99():.0f}"),
                ("cycles", c.cycles), ("commands", c.commands), ("missed_cycles", c.missed_cycles),
                ("overruns", c.overruns), ("stale_cycles", c.stale_cycles), ("swaps", c.swaps),
                ("fallbacks", c.fallbacks), ("fault", ctl.fault), ("disabled", ctl.disabled),
                ("previous_policy", ctl.previous.name if ctl.previous else ""),
                ("holds", sum(c.holds.values())), ("holding", ctl.holding), ("stale", ctl.stale),
                ("rejections", sum(c.rejections.values())),
                ("rejected_joint_states", c.rejections["joint_state"]),
                ("rejected_goals", c.rejections["goal"]), ("rejected_policies", c.rejections["policy"]),
                ("last_rejection", c.last_rejection), ("last_hold", c.last_hold),
                *((("attributions", self.attributions),) if self._attribution_pub is not None else ()),
                *((f"attribution/{k}", f"{v:.4g}") for k, v in self.attribution.items()))]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Entry point for ``ros2 run policies policy_node`` and ``sim2real node policy``."""
    return run_node("policy", lambda: PolicyNode(autostart=True), args, num_threads=EXECUTOR_THREADS)


if __name__ == "__main__":
    sys.exit(main())
