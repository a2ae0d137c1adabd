"""What the real bridge does, without ROS: state intake, command intake, the control cycle.

:class:`BridgeCore` holds one configuration of the bridge (robot profile, controller joint
order, safety filter, watchdog, goal generator) and the inputs and counters of the
running bridge. The lifecycle node (:mod:`real_bridge.node`) is a thin shell over it: it
converts messages to plain values (names, arrays, integer ns stamps, monotonic arrival
times in s), calls the core and publishes what the core returns. Tests drive the core
with made-up times. numpy and the stack's pure modules only.

Rules:

* **Hardware joint states are mapped by name** (:class:`~sim_bridge.joints.JointMapper`):
  any order, extra joints ignored. A state with none of the profile's joints is another
  device's on the same topic: counted (``hardware_states_foreign``), not an error. A state
  lacking some of them (``missing_joints``: the hardware is not ready), with a position
  count that is not the name count (``length_mismatch``), with NaN/inf in a position or
  velocity (``non_finite``) or with a header stamp older than the last accepted one
  (``out_of_order``) is rejected: counted, and the last good state is kept. A rejected
  state is not fresh, so the watchdog stops the bridge once no good one arrived for the
  state timeout.
* **Velocity**: the hardware's, when it reports one per joint; otherwise (no velocity
  interface) the finite difference of the positions over the hardware stamps (rad/s).
* **Policy commands** (profile order, rad) are checked on arrival with the filter's
  :meth:`~real_bridge.safety.SafetyFilter.check`: NaN/inf, wrong length or non-numbers are
  rejected, counted, and are not commands: the last valid command stays in force until the
  command timeout (counted from that command), then the bridge holds the measured position.
  A valid command replaces the previous one.
* **Every command received is counted once** (``commands_received``), in exactly one of:
  ``commands_rejected:<kind>`` (invalid), ``commands_used`` (a run cycle sent it through the
  filter), ``commands_superseded`` (a newer valid one arrived before a run cycle used it),
  ``commands_discarded`` (still unused at a (re-)activation, which starts afresh), or it is
  the one pending (``commands_pending``, 0 or 1). So ``received = used + superseded +
  rejected + discarded + pending`` at all times. Messages the middleware replaced in its
  queue before the node took them never reach the core and are in no counter.
* **The cycle** asks the watchdog (run / hold / stop / waiting), passes the latest command
  (run) or the frozen hold target (hold) through the safety filter and returns what to send;
  stop and waiting send nothing. It also returns the state to relay on the policy side: the
  latest good one, at periodic cycles only and never during a stop.
* **STOP -> RUN (or HOLD): the step limit continues from the last command sent**, not from
  the measured position. During a stop the bridge sends nothing and the ros2_control
  position controller keeps its last command: that command, not the measurement, is where
  the controller is taking the arm, so the first command after the stop moves at most one
  step from it (stepping from a measurement that lags the command was a jump of up to
  6.5 steps for the controller). When the measured position is far from that command
  (more than :data:`RESUME_WARN_STEPS` steps on a joint: the arm was moved by hand, or a
  controller did not track, while the bridge was stopped), the bridge still ramps from the
  held command at the step limit and never jumps to the measurement or to the policy's
  target: a jump in the commanded position is what a position controller turns into a
  torque spike, and the held command is what the arm is already being driven to. The
  offset is reported (``last_resume_offset_rad``, ``resumes_far_from_command``, a WARN log
  line), so an operator sees it. Only an activation (an explicit lifecycle transition, after
  which a controller may have been switched or restarted) starts from the measured
  position.
* **reset** samples a new goal in the profile's reach workspace (seeded); it touches
  nothing else: a real arm's physics cannot be resampled and reset does not move it.
* **The object pose** (tasks with a streamed ``object_pose`` input: Push) comes from a
  tracker on the hardware side (motion capture, AprilTags) and is relayed to the policy
  unchanged when it passes :meth:`BridgeCore.on_object_pose`: its frame must be the robot
  base frame (``frame_mismatch``; a leading '/' is ignored), position and quaternion finite
  (``non_finite``), the quaternion unit length within :data:`QUATERNION_TOLERANCE`
  (``non_unit_quaternion``, the policy node's reader refuses it too), its stamp not older
  than the last relayed one (``out_of_order``) and not older than ``object_pose_stale_s``
  when it arrives (``stale``: a late tracker or a clock offset between the tracker's
  computer and this one). A rejected pose is counted and not relayed; the policy node
  then sees no fresh pose and holds by itself (its ``task_input_stale_s``). A relayed
  stream that stops for ``object_pose_stale_s`` while the bridge is active (the tracker lost
  the object or stopped; also no pose yet) is counted once per outage
  (``object_pose_outages``) and makes the diagnostics WARN until poses come back.
* **Every intervention is counted** (:attr:`BridgeCore.counters`, the filter's and the
  watchdog's counters) and reported by :meth:`BridgeCore.health`.

Times are seconds of one monotonic clock; header stamps are integer ns and only order the
hardware readings (see :mod:`real_bridge.watchdog`). Not thread-safe: the node calls every
method under its one lock, as it calls the filter and the watchdog.
"""
from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from real_bridge.safety import CLIPS, DEFAULT_MARGIN_RAD, REJECTIONS, FilterResult, SafetyFilter
from real_bridge.watchdog import COMMAND_TIMEOUT, HOLD, OUT_OF_ORDER, RUN, STOP, Decision, Watchdog
from sim_bridge.config import ConfigError
from sim_bridge.joints import JointMapper
from sim_bridge.rates import RateMeter
from sim_bridge.tasks import ReachTask, Task

__all__ = ["COMMAND_REJECTIONS", "ERROR", "FOREIGN", "LENGTH", "MISSING_JOINTS", "NON_FINITE_STATE",
           "OBJECT_REJECTIONS", "OK", "OUT_OF_ORDER", "QUATERNION_TOLERANCE", "RESUME_WARN_STEPS", "STATE_REJECTIONS", "WARN", "BridgeCore", "CycleOutput", "HardwareState", "Health",
           "Intake"]

# hardware joint state rejections (and foreign states, which are not rejections)
MISSING_JOINTS, LENGTH, NON_FINITE_STATE = "missing_joints", "length_mismatch", "non_finite"
STATE_REJECTIONS = (MISSING_JOINTS, LENGTH, NON_FINITE_STATE, OUT_OF_ORDER)
FOREIGN = "foreign"
# policy command rejections (the filter's input checks)
COMMAND_REJECTIONS = REJECTIONS[:3]   # wrong_length, not_numeric, non_finite
GOAL = "goal"
# object pose rejections (the relay's checks)
FRAME_MISMATCH, NON_UNIT_QUATERNION, STALE_POSE = "frame_mismatch", "non_unit_quaternion", "stale"
OBJECT_REJECTIONS = (FRAME_MISMATCH, NON_FINITE_STATE, NON_UNIT_QUATERNION, OUT_OF_ORDER, STALE_POSE)
QUATERNION_TOLERANCE = 1e-3      # | |q| - 1 | above this: not a rotation (as sim_bridge.task_messages reads it)
OBJECT_POSE = "object_pose"      # the task input (relative topic) the bridge relays
# diagnostic levels (the node maps them to diagnostic_msgs/DiagnosticStatus)
OK, WARN, ERROR = "ok", "warn", "error"
RATE_WINDOW = 100                # control timer ticks behind achieved_rate_hz
RESUME_WARN_STEPS = 3            # STOP -> RUN further than this many steps from the last command: WARN
FILTER_TIMING_WINDOW = 1000      # filter calls behind the p50/p99 timings


@dataclass(frozen=True)
class HardwareState:
    """One accepted hardware joint state, in the profile's joint order.

    ``position_rad``, ``velocity_rad_s`` (the hardware's, or estimated), ``effort`` (as the
    hardware reports it, N m or N; None when it reports none) and ``stamp_ns`` (the
    hardware's header stamp, ns).
    """

    position_rad: np.ndarray
    velocity_rad_s: np.ndarray
    effort: np.ndarray | None
    stamp_ns: int


@dataclass(frozen=True)
class ObjectPose:
    """One relayed object pose: ``position_m`` (x, y, z) and ``quat_xyzw`` in the base frame,
    ``stamp_ns`` (the tracker's header stamp), ``arrival_s`` (monotonic) and ``age_s`` (its
    age on arrival: receive clock minus stamp, s)."""

    position_m: np.ndarray
    quat_xyzw: np.ndarray
    stamp_ns: int
    arrival_s: float
    age_s: float


@dataclass(frozen=True)
class Intake:
    """The answer to one input. ``kind``: the rejection kind ('' when accepted; ``foreign``
    for another device's joint state, which is ignored, not rejected). ``reason``: a sentence
    saying what was wrong and what was kept ('' unless rejected)."""

    accepted: bool
    kind: str = ""
    reason: str = ""


ACCEPTED = Intake(True)


@dataclass(frozen=True)
class CycleOutput:
    """What one control cycle decided.

    ``command``: what to send to the hardware (profile order, rad; it passed the safety
    filter), or None: send nothing. ``hardware_command``: the same in ``controller_joints``
    order. ``filter_result``: the filter's answer (interventions, reason), None when the
    filter was not called (stop, waiting). ``relay``: the state to relay on the policy side,
    or None. ``resume``: at the first cycle after a stop whose measured position is more than
    :data:`RESUME_WARN_STEPS` steps from the last command sent, a sentence saying so (the
    node logs it as a warning), else "".
    """

    decision: Decision
    command: np.ndarray | None
    hardware_command: np.ndarray | None
    filter_result: FilterResult | None
    relay: HardwareState | None
    resume: str = ""


@dataclass(frozen=True)
class Health:
    """The bridge's diagnostics: ``level`` (:data:`OK`, :data:`WARN`, :data:`ERROR`), a one-line
    ``message`` and the key/values (every counter of every intervention)."""

    level: str
    message: str
    values: dict


class BridgeCore:
    """One configured real bridge (module docstring).

    Args:
        profile: the :class:`~sim_bridge.profile.RobotProfile` (joints, limits, control rate,
            reach workspace); its control period is the cycle's period.
        controller_joints: the hardware controller's joint order; None or empty = the
            profile's. Must name the profile's joints, each once (ConfigError otherwise).
        margin_rad: commands are kept this far inside the position limits (rad).
        velocity_scale: per-cycle step <= velocity limit x period x this, in (0, 1].
        command_timeout_periods: no valid command for this many periods -> hold.
        state_timeout_periods: no fresh hardware state for this many periods -> stop.
        seed: seed of the goals; None or negative = random.
        task: the task whose goals ``reset`` samples (:mod:`sim_bridge.tasks`; default Reach);
            a task with a streamed ``object_pose`` input makes the bridge relay object poses.
        base_frame: the robot base frame: relayed object poses must be in it.
        object_pose_stale_s: an object pose older than this on arrival, or none for this long
            while active, is stale (s).
    """

    def __init__(self, profile, *, controller_joints: Sequence[str] | None = None,
                 margin_rad: float = DEFAULT_MARGIN_RAD, velocity_scale: float = 1.0,
                 command_timeout_periods: int = 2, state_timeout_periods: int = 3, seed: int | None = None,
                 task: Task | None = None, base_frame: str = "base_link", object_pose_stale_s: float = 0.25):
        names = list(profile.joint_names)
        joints = list(controller_joints or names)
        if sorted(joints) != sorted(names) or len(set(joints)) != len(joints):
            missing = [j for j in names if j not in joints]
            unknown = [j for j in joints if j not in names]
            raise ConfigError(f"must name the robot profile's joints {names}, each once; got {joints} "
                              f"(missing {missing}, unknown {unknown})", field="controller_joints")
        self.profile = profile
        self.period_s = profile.control_period_s
        self.filter = SafetyFilter.from_profile(profile, margin_rad=margin_rad, velocity_scale=velocity_scale)
        self.watchdog = Watchdog(self.period_s, command_timeout_periods=command_timeout_periods,
                                 state_timeout_periods=state_timeout_periods)
        self.controller_joints = tuple(joints)
        # profile order -> controller order: command[controller_index] is in controller_joints order
        self.controller_index = JointMapper(joints, owner="controller_joints").index(names)
        self.joints = JointMapper.for_profile(profile)
        self.rng = np.random.default_rng(None if seed is None or seed < 0 else int(seed))
        self.task = task if task is not None else ReachTask()
        streamed = [i for i in self.task.inputs if not i.latched]
        unsupported = [i.topic for i in streamed if i.topic != OBJECT_POSE]
        if unsupported:
            raise ConfigError(f"task '{self.task.name}' streams {unsupported}: the real bridge relays only "
                              f"'{OBJECT_POSE}'", field="task")
        self.relays_object_pose = bool(streamed)
        if not (math.isfinite(object_pose_stale_s) and object_pose_stale_s > 0):
            raise ConfigError(f"must be > 0 s, got {object_pose_stale_s}", field="object_pose_stale_s")
        if not base_frame.strip("/"):
            raise ConfigError("must name the robot base frame, got ''", field="frame_id")
        self.base_frame = base_frame.strip("/")
        self.object_pose_stale_s = float(object_pose_stale_s)
        self.object_pose: ObjectPose | None = None    # the latest relayed object pose
        self.object_pose_outage = False               # no pose relayed for object_pose_stale_s while active
        self.last_object_rejection = ""
        self.goal = self.task.sample_goal(self.rng, profile)
        self.rate = RateMeter(RATE_WINDOW)   # control timer ticks (the node ticks it, active or not)
        self.state: HardwareState | None = None       # the latest good hardware state
        self.target: np.ndarray | None = None         # the latest valid policy command (profile order, rad)
        self._fresh_command = False                   # not used by a cycle yet
        self.counters: Counter = Counter()
        self.last_rejection = ""                      # policy command or hardware state
        self.missing_joints: list[str] = []           # of the last state rejected for missing joints
        self.last_hold_latency_s = float("nan")       # last valid command -> first hold command (s)
        self.last_resume_offset_rad = float("nan")    # at the last STOP -> RUN/HOLD: max |measured - last sent|
        self.fault = ""                               # set by the node: no more commands until activate()
        self._filter_ns: deque[int] = deque(maxlen=FILTER_TIMING_WINDOW)

    # --- lifecycle ------------------------------------------------------------------------
    def activate(self) -> None:
        """Start commanding afresh: no old command or state counts (the e-stop stays latched; a
        command still pending is counted as discarded), the step limit starts from the
        measured position, a fault is cleared."""
        self.watchdog.reset()
        self.filter.reset_reference()
        if self._fresh_command:
            self.counters["commands_discarded"] += 1
        self._fresh_command, self.target = False, None
        self.fault = ""

    def record_fault(self, exc: BaseException) -> str:
        """An exception in the cycle (or while publishing its result): no command until
        :meth:`activate`. Returns the text reported on the diagnostics."""
        self.fault = f"{type(exc).__name__}: {exc}"
        self.counters["faults"] += 1
        return self.fault

    # --- hardware side --------------------------------------------------------------------
    def on_joint_state(self, names: Sequence[str], position: Sequence[float], velocity: Sequence[float] = (),
                       effort: Sequence[float] = (), *, stamp_ns: int, arrival_s: float) -> Intake:
        """A hardware joint state (arrays in the order of ``names``, rad and rad/s; an empty
        velocity or effort: the hardware has no such interface), stamped ``stamp_ns`` (ns),
        received at ``arrival_s`` (s, monotonic)."""
        m = self.joints.lookup(names)
        kind = reason = ""
        q = qd = eff = None
        if not m.complete:
            if m.foreign:  # another device's states on the same topic
                self.counters["hardware_states_foreign"] += 1
                return Intake(False, FOREIGN)
            kind, reason = MISSING_JOINTS, f"{m.missing_reason()} (hardware not ready)"
        elif len(position) != len(m.names):
            kind, reason = LENGTH, f"has {len(m.names)} names but {len(position)} positions"
        else:
            q = m.take(position, "positions")
            qd = m.take_if_complete(velocity)
            eff = m.take_if_complete(effort)
            finite = np.isfinite(q) & (np.isfinite(qd) if qd is not None else True)
            if not finite.all():
                bad = [self.profile.joint_names[i] for i in np.flatnonzero(~finite)]
                kind, reason = NON_FINITE_STATE, f"non-finite position/velocity for joint(s) {bad}"
        if not kind:
            ok, why = self.watchdog.on_joint_state(stamp_ns, arrival_s)
            if not ok:
                kind, reason = OUT_OF_ORDER, why
        if kind:
            self.counters[f"hardware_states_rejected:{kind}"] += 1
            if kind == MISSING_JOINTS:
                self.missing_joints = list(m.missing)
            self.last_rejection = f"hardware joint_states rejected: {reason}; kept the last good state"
            return Intake(False, kind, self.last_rejection)
        if qd is None:  # no velocity interface: finite difference over the hardware stamps
            qd = self._velocity_estimate(q, stamp_ns)
        self.state = HardwareState(q, qd, eff, int(stamp_ns))
        self.missing_joints = []
        self.counters["hardware_states"] += 1
        return ACCEPTED

    def _velocity_estimate(self, q: np.ndarray, stamp_ns: int) -> np.ndarray:
        """(q - previous q) / stamp difference (rad/s); the previous estimate for a stamp that
        does not advance, zeros for the first state."""
        prev = self.state
        if prev is None:
            return np.zeros_like(q)
        if stamp_ns <= prev.stamp_ns:
            return prev.velocity_rad_s
        return (q - prev.position_rad) / ((stamp_ns - prev.stamp_ns) * 1e-9)

    def on_object_pose(self, frame_id: str, position_m: Sequence[float], quat_xyzw: Sequence[float], *,
                       stamp_ns: int, now_ns: int, arrival_s: float) -> Intake:
        """An object pose from the tracker (frame, position in m, quaternion x, y, z, w), stamped
        ``stamp_ns`` and received at ``now_ns`` (both ns of the clock the stamps use, the
        ROS clock) and ``arrival_s`` (s, monotonic). Accepted = relay it unchanged (module
        docstring: the checks)."""
        p = np.asarray(position_m, dtype=float)
        q = np.asarray(quat_xyzw, dtype=float)
        age_s = (now_ns - stamp_ns) * 1e-9
        last = self.object_pose
        kind = reason = ""
        frame = frame_id.strip("/")
        if frame != self.base_frame:
            kind, reason = FRAME_MISMATCH, (f"frame '{frame_id}' is not the robot base frame '{self.base_frame}' "
                                            "(the tracker must publish in the base frame; parameter frame_id)")
        elif not (np.isfinite(p).all() and np.isfinite(q).all()):
            kind, reason = NON_FINITE_STATE, f"non-finite position {p.tolist()} or orientation {q.tolist()}"
        elif not abs(float(np.linalg.norm(q)) - 1.0) <= QUATERNION_TOLERANCE:
            kind, reason = NON_UNIT_QUATERNION, (f"orientation {q.tolist()} has norm {np.linalg.norm(q):.4f}, not 1 "
                                                 f"(+-{QUATERNION_TOLERANCE:g})")
        elif last is not None and stamp_ns < last.stamp_ns:
            kind, reason = OUT_OF_ORDER, (f"stamp {stamp_ns} ns is {(last.stamp_ns - stamp_ns) * 1e-6:.1f} ms "
                                          "older than the last relayed pose's")
        elif age_s > self.object_pose_stale_s:
            kind, reason = STALE_POSE, (f"{1e3 * age_s:.0f} ms old on arrival (limit object_pose_stale_s = "
                                        f"{1e3 * self.object_pose_stale_s:.0f} ms; a late tracker or a clock offset "
                                        "between the tracker's computer and this one?)")
        if kind:
            self.counters[f"object_poses_rejected:{kind}"] += 1
            self.last_object_rejection = (f"object pose rejected ({kind}): {reason}; not relayed (the policy holds "
                                          "once its last pose is older than its task_input_stale_s)")
            return Intake(False, kind, self.last_object_rejection)
        self.object_pose = ObjectPose(p, q, int(stamp_ns), float(arrival_s), float(age_s))
        self.counters["object_poses"] += 1
        return ACCEPTED

    def object_pose_age_s(self, now_s: float) -> float:
        """Age of the latest relayed object pose now (its age on arrival + time since), s; inf if none."""
        pose = self.object_pose
        return math.inf if pose is None else pose.age_s + (now_s - pose.arrival_s)

    def _check_object_outage(self, now_s: float) -> None:
        """At a cycle (the bridge is active): count an outage once when no pose was relayed for
        object_pose_stale_s (also before the first one); it ends when poses come back."""
        if not self.relays_object_pose:
            return
        stale = self.object_pose_age_s(now_s) > self.object_pose_stale_s
        if stale and not self.object_pose_outage:
            self.counters["object_pose_outages"] += 1
        self.object_pose_outage = stale

    # --- policy side ----------------------------------------------------------------------
    def on_command(self, values, arrival_s: float) -> Intake:
        """A policy command (absolute joint targets, profile order, rad) received at
        ``arrival_s`` (s, monotonic). Counted as the module docstring says."""
        self.counters["commands_received"] += 1
        cmd, kind, reason = self.filter.check(values)
        if cmd is None:
            self.counters[f"commands_rejected:{kind}"] += 1
            self.last_rejection = f"joint_commands rejected: {reason}; {self._rejection_consequence()}"
            return Intake(False, kind, self.last_rejection)
        if self._fresh_command:
            self.counters["commands_superseded"] += 1  # replaced before a run cycle used it
        self.target, self._fresh_command = cmd, True
        self.counters["commands"] += 1
        self.watchdog.on_command(arrival_s)
        return ACCEPTED

    def _rejection_consequence(self) -> str:
        """What a rejected command leaves in force, in words (the watchdog's timeout in periods and ms)."""
        wd = self.watchdog
        if wd.mode == STOP:
            return "the bridge is stopped (no fresh hardware state) and sends nothing"
        if wd.mode == HOLD:
            return f"the bridge keeps holding ({wd.cause})"
        if self.target is None:
            return "no valid command yet: nothing is sent until one arrives"
        timeout = f"{wd.command_timeout_periods} periods = {1e3 * wd.command_timeout_s:.0f} ms"
        return (f"the last valid command stays in force until the command timeout ({timeout} after it), then "
                "the bridge holds the measured position")

    def set_goal(self, position_m) -> Intake:
        """A new reach target (x, y, z in the base frame, m); non-finite ones are rejected."""
        goal = np.array(position_m, dtype=float)
        if goal.shape != (3,) or not np.isfinite(goal).all():
            self.counters["goals_rejected"] += 1
            return Intake(False, GOAL, f"goal rejected: expected 3 finite numbers, got {goal.tolist()}; "
                                       f"kept {self.goal.tolist()}")
        self.goal = goal
        return ACCEPTED

    def reset(self) -> str:
        """Sample a new goal in the profile's reach workspace (the only thing a reset does on
        hardware); returns the message for the reset service."""
        self.goal = self.task.sample_goal(self.rng, self.profile)
        self.counters["resets"] += 1
        return (f"goal {np.round(self.goal, 3).tolist()} sampled in the reach workspace; on hardware reset "
                "cannot resample physics and does not move the arm")

    def estop(self, source: str) -> bool:
        """Latch the software e-stop (hold the measured position until :meth:`release`);
        False if it was latched already. ``source`` says who latched it."""
        return self.watchdog.estop(source)

    def release(self, now_s: float) -> bool:
        """Unlatch the e-stop; the bridge then holds until a command newer than ``now_s``."""
        return self.watchdog.release(now_s)

    # --- the control cycle ----------------------------------------------------------------
    def hold_due(self, now_s: float) -> bool:
        """True when running and the last command is at least the command timeout old: a
        cycle now starts the hold (the node's deadline timer asks this)."""
        return self.watchdog.mode == RUN and self.watchdog.command_expired(now_s)

    def cycle(self, now_s: float, *, relay: bool = True) -> CycleOutput | None:
        """One control cycle at ``now_s`` (s, monotonic); None after a fault (nothing to send).

        ``relay``: a periodic cycle, which also returns the state to relay; the extra cycles
        (hold deadline, e-stop) only command.
        """
        if self.fault:
            return None
        wd, state = self.watchdog, self.state
        measured = state.position_rad if state is not None else None
        previous = wd.mode
        decision = wd.evaluate(now_s, measured)
        resume = ""
        if previous == STOP and decision.mode in (RUN, HOLD):
            # The step limit continues from the last command sent (what the controller held
            # during the stop); see the module docstring.
            resume = self._resume_offset(measured)
        result = None
        if decision.mode == RUN:
            if self._fresh_command:
                self.counters["commands_used"] += 1
            self._fresh_command = False
            start = time.perf_counter_ns()
            result = self.filter.filter(self.target, measured, self.period_s)
            self._filter_ns.append(time.perf_counter_ns() - start)
        elif decision.mode == HOLD:
            result = self.filter.filter(decision.target, measured, self.period_s)
        command = result.command if result is not None else None
        hardware = None
        if command is not None:
            hardware = command[self.controller_index]
            self.counters["hardware_commands"] += 1
            if decision.changed and decision.mode == HOLD and wd.last_command_s is not None:
                self.last_hold_latency_s = now_s - wd.last_command_s
        out_state = state if relay and decision.mode != STOP else None
        self._check_object_outage(now_s)
        return CycleOutput(decision, command, hardware, result, out_state, resume)

    def _resume_offset(self, measured: np.ndarray | None) -> str:
        """At a STOP -> RUN/HOLD: record how far the measured position is from the last command
        sent (rad); a sentence when it is more than :data:`RESUME_WARN_STEPS` steps on a joint."""
        reference = self.filter.reference
        if reference is None or measured is None:
            return ""  # nothing sent since activation: the filter starts from the measured position
        offset = np.abs(measured - reference)
        self.last_resume_offset_rad = float(offset.max())
        steps = offset / self.filter.step_limit(self.period_s)
        far = np.flatnonzero(steps > RESUME_WARN_STEPS)
        if not far.size:
            return ""
        self.counters["resumes_far_from_command"] += 1
        names = [self.profile.joint_names[i] for i in far]
        return (f"resuming after a stop with the measured position {self.last_resume_offset_rad:.3f} rad "
                f"({steps.max():.1f} steps) from the last command sent, for joint(s) {names} (moved while "
                f"stopped?): ramping from the command the controller holds at the step limit, not jumping")

    # --- reporting --------------------------------------------------------------------------
    def _stop_context(self, decision: Decision) -> str:
        if decision.mode == STOP and self.last_rejection.startswith("hardware"):
            return f"; last {self.last_rejection}"
        return ""

    def describe(self, decision: Decision) -> str:
        """``MODE (cause): reason``, with the last rejected hardware state when it stopped."""
        return f"{decision.mode.upper()} ({decision.cause}): {decision.reason}{self._stop_context(decision)}"

    def describe_transition(self, decision: Decision) -> str:
        """The log line of a mode change; a command-timeout hold says how long after the last
        command it started."""
        text = f"{decision.mode.upper()} ({decision.cause})"
        if decision.reason:
            text += f": {decision.reason}"
        text += self._stop_context(decision)
        if decision.mode == HOLD and decision.cause == COMMAND_TIMEOUT:
            text += f" (hold started {1e3 * self.last_hold_latency_s:.1f} ms after the last command)"
        return text

    def achieved_rate_hz(self) -> float:
        """Control timer ticks per second over the last :data:`RATE_WINDOW` ticks."""
        return self.rate.rate_hz()

    def health(self, lifecycle_state: str, *, active: bool, hardware_topic: str = "",
               now_s: float | None = None) -> Health:
        """The diagnostics: mode, every counter, filter timing, the last rejection and intervention
        (``now_s``: monotonic time for the object pose's age; None = now)."""
        wd, flt, c = self.watchdog, self.filter, self.counters
        mode, cause, reason = (wd.mode, wd.cause, wd.reason) if active else ("inactive", "", "")
        filter_us = np.array(self._filter_ns, dtype=float) / 1e3
        values = {
            "lifecycle_state": lifecycle_state, "mode": mode, "cause": cause,
            "estop": wd.estopped, "hardware_topic": hardware_topic,
            "target_rate_hz": f"{1 / self.period_s:g}", "achieved_rate_hz": f"{self.achieved_rate_hz():.2f}",
            "hardware_commands": c["hardware_commands"], "hardware_states": c["hardware_states"],
            "missing_joints": ",".join(self.missing_joints),
            "commands": c["commands"], "commands_received": c["commands_received"],
            "commands_used": c["commands_used"], "commands_superseded": c["commands_superseded"],
            "commands_discarded": c["commands_discarded"], "commands_pending": int(self._fresh_command),
            "commands_rejected": sum(v for k, v in c.items() if k.startswith("commands_rejected:")),
            "hardware_states_rejected": sum(v for k, v in c.items() if k.startswith("hardware_states_rejected:")),
            **{f"rejected_command_{k}": c[f"commands_rejected:{k}"] for k in COMMAND_REJECTIONS},
            **{f"rejected_state_{k}": c[f"hardware_states_rejected:{k}"] for k in STATE_REJECTIONS},
            **{f"filter_{k}": flt.counters[k] for k in CLIPS + REJECTIONS},
            **{k.replace(":", "_"): v for k, v in wd.counts().items()},
            "last_hold_latency_ms": f"{1e3 * self.last_hold_latency_s:.1f}",
            "last_resume_offset_rad": f"{self.last_resume_offset_rad:.4f}",
            "resumes_far_from_command": c["resumes_far_from_command"],
            "filter_p50_us": f"{np.percentile(filter_us, 50):.1f}" if filter_us.size else "nan",
            "filter_p99_us": f"{np.percentile(filter_us, 99):.1f}" if filter_us.size else "nan",
            "last_rejection": self.last_rejection, "last_intervention": flt.last_intervention,
            "resets": c["resets"], "fault": self.fault,
        }
        if self.relays_object_pose:
            age = self.object_pose_age_s(time.monotonic() if now_s is None else now_s)
            values.update({
                "object_pose_frame": self.base_frame, "object_poses": c["object_poses"],
                "object_poses_rejected": sum(v for k, v in c.items() if k.startswith("object_poses_rejected:")),
                **{f"rejected_object_pose_{k}": c[f"object_poses_rejected:{k}"] for k in OBJECT_REJECTIONS},
                "object_pose_outages": c["object_pose_outages"], "object_pose_stale": self.object_pose_outage,
                "object_pose_age_ms": f"{1e3 * age:.1f}" if math.isfinite(age) else "none",
                "object_pose_stale_limit_ms": f"{1e3 * self.object_pose_stale_s:.0f}",
                "last_object_rejection": self.last_object_rejection})
        level = OK
        message = f"{lifecycle_state}, {mode}" + (f" ({cause}): {reason}" if reason else "")
        if self.fault:
            level = ERROR
            message = f"{lifecycle_state}, FAULT (not commanding until re-activation): {self.fault}"
        elif mode == HOLD:
            level = WARN
            if wd.estopped:
                message = f"{lifecycle_state}, E-STOP latched: {reason}"
        elif mode == STOP:
            level = ERROR
            if self.last_rejection.startswith("hardware"):
                message += f"; last {self.last_rejection}"
        if self.relays_object_pose and self.object_pose_outage and level != ERROR:
            level = WARN
            message += (f"; object pose stale ({values['object_pose_age_ms']} ms, limit "
                        f"{values['object_pose_stale_limit_ms']} ms): the policy holds")
        return Health(level, message, values)
