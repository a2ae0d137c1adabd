"""The real-arm bridge with real rclpy and DDS: every bad input of the issue, end to end.

A fake ros2_control side (a probe node) publishes ``/joint_states`` the way a
joint_state_broadcaster does (reliable, its own joint order, extra joints, stamped) and records
``/forward_position_controller/commands``; the same probe plays the policy (``joint_commands``
in the bridge's namespace) and watches the policy-side topics. The bridge spins in a
ControlExecutor on a background thread, as ``main()`` spins it. Every test ends by checking
that nothing it recorded on the hardware topic broke the limits (:func:`assert_hardware_safe`).

Policy-side topics are put in a namespace per test; the hardware topics are the real
absolute ros2_control names (rigs are torn down between tests, so none overlap).
"""
from __future__ import annotations

import collections
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rigs import closing_factory, ros, wait_for_match, wait_until  # noqa: F401 (ros: autouse fixture)

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import PointStamped  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from sim_bridge.executor import ControlExecutor  # noqa: E402
from real_bridge.node import RealBridgeNode  # noqa: E402
from sim_bridge import interface  # noqa: E402
from sim_bridge.profile import load_profile  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[2]
PROFILE = load_profile("panda_like")
JOINTS = list(PROFILE.joint_names)
N = len(JOINTS)
PERIOD = PROFILE.control_period_s            # 50 Hz
MARGIN = 0.05
LO, HI = PROFILE.position_lower_rad + MARGIN, PROFILE.position_upper_rad - MARGIN
STEP = PROFILE.velocity_limit_rad_s * PERIOD
Q = PROFILE.default_pose_rad.copy()          # where the fake arm is (it does not move)
DELTA = np.array([0.02, -0.01, 0.015, 0.0, 0.01, -0.02, 0.03])  # within one step of Q
# The broadcaster's own order: reordered, with joints the profile does not know.
HW_NAMES = ["finger_joint1", "joint7", "joint3", "joint1", "finger_joint2", "joint6", "joint2", "joint5", "joint4"]
HW_RATE_HZ = 100.0
# Scheduling tolerance for the hold latency, on top of the 2 periods the watchdog waits:
# DDS loopback twice (probe -> bridge -> probe, well under 1 ms each), the executor waking
# for the deadline timer and the GIL among 5 threads on a 2-core machine that may be busy
# training (a few ms). Half a period: a hold that waited for the next control tick instead
# (up to a whole period late) would fail it.
HOLD_TOLERANCE_S = 0.5 * PERIOD
RECORD_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
TRANSITIONS = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP}
_ns = itertools.count()


def to_profile_order(values, joints) -> np.ndarray:
    return np.array([values[list(joints).index(j)] for j in JOINTS])


class Rig:
    """A real bridge, a fake ros2_control arm + policy (probe), and their executors."""

    def __init__(self, *, hw_rate: float = HW_RATE_HZ, policy_hz: float = 0.0, **params):
        params.setdefault("autostart", True)
        # The fake arm's states come from a timer in this test process, which on a busy 2-core
        # machine pauses for up to ~70 ms now and then (seen twice in CI runs). With the shipped
        # 3 periods (60 ms) such a pause STOPs the bridge: right, but not what most tests test.
        # The tests of the state timeout itself set it back to 3.
        params.setdefault("state_timeout_periods", 10)
        self.ns = f"/rb_test{next(_ns)}"
        self.controller_joints = params.get("controller_joints", JOINTS)
        self.node = RealBridgeNode(namespace=self.ns,
                                   parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.probe = p = rclpy.create_node("real_probe", namespace=self.ns)
        # fake arm
        self.q = Q.copy()
        self.hw_names = list(HW_NAMES)
        self.hw_publishing = True
        self.hw_stamps: list[int] = []
        self._hw_pub = p.create_publisher(JointState, params.get("hardware_joint_states", "/joint_states"), 10)
        self.hw_commands: list[tuple[float, np.ndarray]] = []   # profile order
        self.hw_received = 0   # hardware commands received in all (hw_commands may be cleared)
        controller = params.get("controller", "forward_position_controller")
        if params.get("output", "forward") == "forward":
            hw_sub = p.create_subscription(Float64MultiArray, f"/{controller}/commands", self._on_hw_command,
                                           RECORD_QOS)
        else:
            from trajectory_msgs.msg import JointTrajectory
            self.trajectories: list = []
            hw_sub = p.create_subscription(JointTrajectory, f"/{controller}/joint_trajectory", self._on_trajectory,
                                           RECORD_QOS)
        if hw_rate:
            p.create_timer(1.0 / hw_rate, self._hw_tick)
        # fake policy
        self.policy_cmd = Q + DELTA
        self.policy_on = False   # switched on once DDS discovery matched the probe and the bridge
        self._policy_lock = threading.Lock()
        self.policy_sent: list[tuple[float, np.ndarray]] = []
        self._cmd_pub = p.create_publisher(Float64MultiArray, interface.JOINT_COMMANDS, interface.COMMAND_QOS)
        self._goal_pub = p.create_publisher(PointStamped, interface.GOAL, interface.LATCHED_QOS)
        if policy_hz:
            p.create_timer(1.0 / policy_hz, self._policy_tick)
        self.states: list[tuple[float, JointState]] = []
        self.goals: list[PointStamped] = []
        self.diagnostics: list[tuple[float, DiagnosticStatus]] = []
        # every endpoint the probe shares with the bridge, for wait_matched
        self._bridge_endpoints = [
            self._hw_pub, hw_sub, self._cmd_pub, self._goal_pub,
            p.create_subscription(JointState, interface.JOINT_STATES,
                                  lambda m: self.states.append((time.monotonic(), m)), interface.STATE_QOS),
            p.create_subscription(PointStamped, interface.CURRENT_GOAL, self.goals.append, interface.LATCHED_QOS),
            p.create_subscription(DiagnosticArray, interface.DIAGNOSTICS, self._on_diagnostics,
                                  interface.DIAGNOSTICS_QOS)]
        self.estop_client = p.create_client(Trigger, f"{self.ns}/real_bridge/estop")
        self.release_client = p.create_client(Trigger, f"{self.ns}/real_bridge/release")
        self.reset_client = p.create_client(Trigger, interface.RESET)
        self.lifecycle = p.create_client(ChangeState, f"{self.ns}/real_bridge/change_state")
        self.executor = ControlExecutor(num_threads=4)
        self.executor.add_node(self.node)
        self.probe_executor = SingleThreadedExecutor()
        self.probe_executor.add_node(self.probe)
        self._threads = [threading.Thread(target=e.spin, daemon=True) for e in (self.executor, self.probe_executor)]
        for thread in self._threads:
            thread.start()
        if self.node.lifecycle_state != "unconfigured":   # autostart: the bridge's endpoints exist
            self.wait_matched()
        self.policy_on = bool(policy_hz)

    def wait_matched(self, timeout: float = 30.0) -> None:
        """DDS discovery done between the probe and the configured bridge: from now on nothing
        the probe publishes, and nothing the bridge sends to the probe, is lost for want of a
        match (what a fixed sleep after construction used to stand in for)."""
        assert wait_for_match(*self._bridge_endpoints, timeout=timeout), "the probe and the bridge never matched"
        writers = [w for w in (self.node._hw_pub, self.node._state_pub) if w is not None]   # the bridge's ends too
        assert wait_for_match(*writers, timeout=timeout), "the bridge's publishers never matched the probe"

    def drained(self, timeout: float = 10.0) -> bool:
        """Every hardware command the bridge counted as sent has reached the probe (in order:
        one reliable writer); True as soon as that holds. After a mode change that stops the
        commands, none is still in flight once this returns."""
        return wait_until(lambda: self.hw_received >= self.node.counters["hardware_commands"], timeout)

    # --- fake arm -----------------------------------------------------------------------------
    def _hw_tick(self) -> None:
        if self.hw_publishing:
            self.publish_hw_state()

    def publish_hw_state(self, q=None, names=None, stamp_ns: int | None = None, velocity=True) -> None:
        names = list(self.hw_names if names is None else names)
        q = self.q if q is None else q
        msg = JointState()
        stamp_ns = self.probe.get_clock().now().nanoseconds if stamp_ns is None else stamp_ns
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.name = names
        msg.position = [float(q[JOINTS.index(n)]) if n in JOINTS else 0.04 for n in names]
        if velocity:
            msg.velocity = [0.0] * len(names)
        msg.effort = [1.0] * len(names)
        self._hw_pub.publish(msg)
        self.hw_stamps.append(stamp_ns)

    def _on_hw_command(self, msg: Float64MultiArray) -> None:
        values = np.array(msg.data)
        if len(values) == N:
            values = to_profile_order(values, self.controller_joints)
        self.hw_commands.append((time.monotonic(), values))
        self.hw_received += 1

    def _on_trajectory(self, msg) -> None:
        self.trajectories.append(msg)
        self.hw_commands.append((time.monotonic(), to_profile_order(msg.points[0].positions, msg.joint_names)))
        self.hw_received += 1

    # --- fake policy --------------------------------------------------------------------------
    def _policy_tick(self) -> None:
        with self._policy_lock:
            if self.policy_on:
                self.command(self.policy_cmd)

    def stop_policy(self, timeout: float = 10.0) -> None:
        """Stop the fake policy; returns once the bridge has received its last command (so no
        policy command is in flight afterwards)."""
        with self._policy_lock:   # a tick in progress finishes first; none publishes afterwards
            self.policy_on = False
        last_sent = self.policy_sent[-1][0] if self.policy_sent else None
        assert last_sent is None or wait_until(
            lambda: (self.node.watchdog.last_command_s or 0.0) >= last_sent, timeout), \
            "the bridge never received the policy's last command"

    def command(self, values) -> None:
        t = time.monotonic()
        self._cmd_pub.publish(Float64MultiArray(data=[float(v) for v in values]))
        self.policy_sent.append((t, np.asarray(values, dtype=float)))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "real_bridge: safety":
                self.diagnostics.append((time.monotonic(), status))

    # --- calls and records ----------------------------------------------------------------------
    def call(self, client, request, timeout: float = 10.0):
        assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} not available"
        future = client.call_async(request)
        assert wait_until(future.done, timeout), f"{client.srv_name} did not answer"
        return future.result()

    def transition(self, label: str) -> bool:
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[label]
        return self.call(self.lifecycle, request).success

    def wait_hw(self, n: int, timeout: float = 5.0) -> bool:
        start = len(self.hw_commands)
        return wait_until(lambda: len(self.hw_commands) >= start + n, timeout)

    def hw_since(self, t: float) -> list[tuple[float, np.ndarray]]:
        return [(tc, c) for tc, c in list(self.hw_commands) if tc >= t]

    def diag(self, since: float | None = None, timeout: float = 10.0) -> dict:  # the 1 Hz report
        since = time.monotonic() if since is None else since
        assert wait_until(lambda: any(t >= since for t, _ in self.diagnostics), timeout), "no diagnostics"
        status = [s for t, s in list(self.diagnostics) if t >= since][-1]
        return {"level": status.level, "message": status.message, **{kv.key: kv.value for kv in status.values}}

    def close(self) -> None:
        self.policy_on = self.hw_publishing = False
        self.probe_executor.remove_node(self.probe)
        self.executor.remove_node(self.node)
        time.sleep(0.1)  # teardown: callbacks already running finish (not a discovery wait)
        self.executor.shutdown(timeout_sec=5.0)
        self.probe_executor.shutdown(timeout_sec=5.0)
        for thread in self._threads:
            thread.join(timeout=5.0)
        self.node.destroy_node()
        self.probe.destroy_node()


def assert_hardware_safe(rig: Rig) -> None:
    """Nothing that reached the hardware topic broke a limit: length, finite, inside the margin
    band (the fake arm starts inside it), and each command within one step of the previous one.
    The first command, and the first after a re-activation, step from the measured position
    instead (where the bridge restarts its step limit; the fake arm sits at Q unless a test moves
    it); after a STOP the chain continues from the last command sent (issue 12, defect 6)."""
    received = list(rig.hw_commands)
    for _, c in received:
        assert c.shape == (N,) and np.isfinite(c).all(), f"malformed hardware command {c}"
        assert np.all(c >= LO) and np.all(c <= HI), f"hardware command outside the position band: {c}"
    previous_t, previous = None, Q
    for t, c in received:
        paused = previous_t is None or t - previous_t > 1.5 * PERIOD
        reference = Q if paused else previous
        ratio = np.max(np.abs(c - reference) / STEP)
        if paused and ratio > 1 + 1e-9:   # a late delivery, not a pause in the bridge: the chain holds
            ratio = min(ratio, np.max(np.abs(c - previous) / STEP))
        assert ratio <= 1 + 1e-9, f"step limit broken at t={t:.3f}: {ratio:.3f} x the limit"
        previous_t, previous = t, c


@pytest.fixture
def rig_factory():
    yield from closing_factory(Rig, after_close=assert_hardware_safe)


# --- the interface ------------------------------------------------------------------------------

def test_relays_states_in_profile_order_and_forwards_commands_in_controller_order(rig_factory):
    """Hardware states in another order with extra joints come out in the profile's order with
    the hardware stamp; commands go out in the controller's order; nothing before the policy."""
    controller_joints = JOINTS[::-1]
    rig = rig_factory(controller_joints=controller_joints)
    assert wait_until(lambda: len(rig.states) > 3, 5.0), "no joint_states relayed to the policy side"
    t, msg = rig.states[-1]
    assert list(msg.name) == JOINTS
    np.testing.assert_array_equal(msg.position, Q)
    assert len(msg.velocity) == N and list(msg.effort) == [1.0] * N
    stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
    assert stamp in rig.hw_stamps, "stamped with the hardware stamp"
    assert not rig.hw_commands, "no hardware command before the policy commands"
    assert rig.diag()["mode"] == "waiting"
    assert rig.goals, "current_goal is latched at configure"

    raw: list = []
    raw_sub = rig.probe.create_subscription(Float64MultiArray, "/forward_position_controller/commands",
                                            lambda m: raw.append(list(m.data)), RECORD_QOS)
    assert wait_for_match(raw_sub), "the second hardware-topic subscription never matched the bridge"
    rig.policy_on = True
    rig.probe.create_timer(PERIOD, rig._policy_tick)
    assert rig.wait_hw(20), "no hardware commands"
    start, states = time.monotonic(), len(rig.states)
    time.sleep(1.0)  # intentional: a 1 s window to count the commands and relayed states at 50 Hz
    n = len(rig.hw_since(start))
    assert 0.7 * 50 <= n <= 52, f"{n} hardware commands in 1 s, control rate 50 Hz"
    np.testing.assert_array_equal(rig.hw_commands[-1][1], Q + DELTA)
    assert raw and raw[-1] == (Q + DELTA)[::-1].tolist(), "published in controller_joints order"
    assert 0.7 * 50 <= len(rig.states) - states <= 52, "one relayed state per control cycle"
    # the 1 Hz diagnostics: a report of RUN (on a busy machine the one just after the window may
    # catch a hold caused by this process's 50 Hz policy timer pausing > 2 periods)
    for _ in range(5):
        d = rig.diag()
        if d["mode"] == "run":
            break
    assert d["mode"] == "run" and d["level"] == DiagnosticStatus.OK and d["hardware_topic"] == \
        "/forward_position_controller/commands"


# --- bad policy commands ------------------------------------------------------------------------

def test_nan_inf_and_wrong_length_commands_never_reach_the_hardware(rig_factory):
    rig = rig_factory(policy_hz=50.0)
    assert rig.wait_hw(10)
    bad = []
    for k, v in enumerate((np.nan, np.inf, -np.inf)):
        c = Q + DELTA
        c[(2 * k) % N] = v
        bad.append(c)
    bad += [(Q + DELTA)[:6], np.r_[Q + DELTA, 0.0], np.array([])]
    start = time.monotonic()
    for _ in range(15):  # interleaved with the good 50 Hz stream, faster than it (keep-last 1:
        for c in bad:    # spaced so that DDS does not replace one by the next before the bridge takes it)
            rig.command(c)
            time.sleep(0.004)  # intentional pacing (see above)
    ctl, sent = rig.node, time.monotonic()
    # a good command of the 50 Hz stream received after the last bad one (one writer, in order):
    # the bridge has taken every bad command it will take
    assert wait_until(lambda: (ctl.watchdog.last_command_s or 0.0) > sent, 10.0), "the good stream stopped"
    assert rig.drained(), "hardware commands the bridge sent never reached the probe"
    assert ctl.counters["commands_rejected:non_finite"] > 0 and ctl.counters["commands_rejected:wrong_length"] > 0
    hw = rig.hw_since(start)
    for _, c in hw:  # never a bad command: the good one, or a hold at the measured position
        assert np.array_equal(c, Q + DELTA) or np.array_equal(c, Q), c
    if any(np.array_equal(c, Q) for _, c in hw):
        # a hold is right only when the good stream itself paused for the command timeout (the
        # test process's 50 Hz timer on a busy machine), never because bad commands crowded it out
        good = np.array([t for t, c in rig.policy_sent if t >= start - 0.1 and np.array_equal(c, Q + DELTA)])
        assert len(good) > 1 and np.diff(good).max() > 2 * PERIOD, "held although the good stream never paused"
    assert wait_until(lambda: rig.node.watchdog.mode == "run", 2.0), \
        "interleaved bad commands do not interrupt the good ones"
    d = rig.diag()
    assert int(d["rejected_command_non_finite"]) > 0 and int(d["rejected_command_wrong_length"]) > 0
    assert "joint_commands rejected:" in d["last_rejection"]

    rig.policy_on = False  # only bad commands now: they are not commands, the watchdog holds
    t_bad = time.monotonic()
    while time.monotonic() - t_bad < 0.4:  # intentional: 0.4 s (20 periods) of bad commands only
        rig.command(bad[0])
        time.sleep(0.01)
    assert rig.node.watchdog.mode == "hold" and rig.node.watchdog.cause == "command_timeout"
    assert rig.drained(), "hardware commands the bridge sent never reached the probe"
    np.testing.assert_array_equal(rig.hw_commands[-1][1], Q, err_msg="holds the measured position")
    d = rig.diag()
    assert d["level"] == DiagnosticStatus.WARN and "no valid policy command" in d["message"]
    assert "non-finite value for joint(s) ['joint1']" in d["last_rejection"]
    rig.policy_on = True
    assert wait_until(lambda: np.array_equal(rig.hw_commands[-1][1], Q + DELTA), 2.0), "the node keeps running"


def test_commands_beyond_the_limits_are_clipped_and_step_limited(rig_factory):
    # An even longer state timeout: a STOP pauses the walk to the limits this test follows
    # (after it the step limit continues from the last command sent, tested elsewhere).
    rig = rig_factory(policy_hz=50.0, state_timeout_periods=25)
    rig.policy_cmd = np.array([10.0, -1e9, 1e308, -5.0, 4.0, 100.0, -3.5])
    ctl = rig.node
    # the walk until joint1 is at its limit (~1.3 s at the velocity limit; on a busy machine the
    # cycles come later: wait for it rather than for a fixed time)
    assert wait_until(lambda: sum(not np.array_equal(c, Q + DELTA) for _, c in list(rig.hw_commands)) > 30
                      and rig.hw_commands[-1][1][0] >= HI[0] - 1e-9
                      and ctl.filter.counters["step_limit"] > 20 and ctl.filter.counters["position_limit"] > 20,
                      20.0), f"{len(rig.hw_commands)} hardware commands, filter {ctl.filter.counters}"
    values = np.array([c for _, c in rig.hw_commands])
    # the rig's policy commanded Q + DELTA from its start: on a busy machine a cycle or two may
    # forward that before the new command arrives; the walk starts at the first other command
    first = next(i for i, c in enumerate(values) if not np.array_equal(c, Q + DELTA))
    values = values[first:]
    assert len(values) > 30
    # every joint moves toward its limit at the velocity limit (until it gets there), one step
    # from the last command sent (the measured position Q before the first)
    prev = Q + DELTA if first > 0 else Q
    expected_first = np.clip(np.clip(rig.policy_cmd, prev - STEP, prev + STEP), LO, HI)
    np.testing.assert_allclose(values[0], expected_first, rtol=0, atol=1e-12, err_msg=f"one step from {prev}")
    assert np.all(np.diff(values[:, 0]) > 0) or values[-1, 0] == pytest.approx(HI[0])
    assert ctl.filter.counters["step_limit"] > 20 and ctl.filter.counters["position_limit"] > 20
    # a report while running: on a busy machine this process's 50 Hz policy timer can pause > 2
    # periods, and a report during the hold that follows names the hold's step limit instead
    for _ in range(5):
        d = rig.diag()
        if d["mode"] == "run":
            break
    assert int(d["filter_step_limit"]) > 0 and int(d["filter_position_limit"]) > 0
    assert "clipped to the position limits (margin 0.05 rad) for joint(s) ['joint1'" in d["last_intervention"]
    rig.policy_cmd = Q + DELTA  # the node keeps running and comes back at the velocity limit
    assert wait_until(lambda: np.array_equal(rig.hw_commands[-1][1], Q + DELTA), 10.0)


def test_bursts_faster_than_the_control_rate_use_only_the_latest(rig_factory):
    """12 commands at once (the bridge's reader keeps 16, so all arrive): the cycle of the tick
    that takes them sends the burst's last; the others are counted as superseded."""
    rig = rig_factory()
    node, total = rig.node, 0
    for burst in range(10):
        received = node.counters["commands"]
        sent_at = time.monotonic()
        burst_values = [Q + DELTA * (0.5 + 0.5 * (burst * 12 + k) / 119) for k in range(12)]  # all distinct
        for value in burst_values:
            rig.command(value)
        total += 12
        last = rig.policy_sent[-1][1]
        assert wait_until(lambda: node.counters["commands"] >= received + 12, 2.0), "the burst did not arrive"
        assert wait_until(lambda: any(np.array_equal(c, last) for _, c in rig.hw_since(sent_at)), 1.0), \
            "the cycle uses the latest command"
        # before it, the hardware got older commands (the previous burst's, still in force) and at
        # most one of this burst's earlier ones: a tick that came while the burst was arriving
        before = rig.hw_since(sent_at)
        before = before[:next(i for i, (_, c) in enumerate(before) if np.array_equal(c, last))]
        earlier = [c for _, c in before if any(np.array_equal(c, v) for v in burst_values[:-1])]
        assert len(earlier) <= 1, f"{len(earlier)} cycles used earlier commands of the burst than its last"
    # the commands stopped: wait for the hold (2 periods later) to be sent and received
    assert wait_until(lambda: node.watchdog.mode == "hold", 5.0) and rig.drained(), "no hold after the bursts"
    values = [c for _, c in rig.hw_commands]
    for c in values:  # the bridge forwards commands it received (or holds), nothing else
        assert any(np.array_equal(c, s) for _, s in rig.policy_sent) or np.array_equal(c, Q)
    assert np.array_equal(values[-1], Q) and node.watchdog.mode == "hold", "then the commands stopped"
    dropped = node.counters["commands_superseded"]
    assert dropped >= total // 2 and int(rig.diag()["commands_superseded"]) == dropped
    assert len(values) < total // 2, f"{len(values)} hardware commands for {total} policy commands"
    print(f"\nbursts: {total} policy commands, {node.counters['commands']} reached the bridge, "
          f"{dropped} superseded (replaced before a cycle), {len(values)} hardware commands")


# --- bad hardware states ------------------------------------------------------------------------

def test_joint_states_with_missing_joints_mean_not_ready(rig_factory):
    rig = rig_factory(policy_hz=50.0)
    assert rig.wait_hw(5), "no hardware commands with complete states"
    rig.hw_names = [n for n in HW_NAMES if n != "joint7"]
    # incomplete states are rejected; the bridge STOPs once the last complete one is too old
    assert wait_until(lambda: rig.node.watchdog.mode == "stop", 10.0), "no STOP on incomplete states"
    assert rig.drained(), "hardware commands the bridge sent before the STOP never reached the probe"
    rig.hw_commands.clear()
    rig.states.clear()
    time.sleep(0.5)  # intentional: nothing may be commanded or relayed for 0.5 s while not ready
    assert not rig.hw_commands and not rig.states, "not ready: no commands, no relayed states"
    d = rig.diag()
    assert d["level"] == DiagnosticStatus.ERROR and d["mode"] == "stop" and d["missing_joints"] == "joint7"
    assert "lacks joint(s) ['joint7'] of robot profile 'panda_like' (hardware not ready)" in d["message"]
    assert int(d["rejected_state_missing_joints"]) > 10
    # a state from another device on the same topic (no profile joint at all) is not an error
    rig.publish_hw_state(names=["gripper_left", "gripper_right"])
    rig.hw_names = list(HW_NAMES)
    assert rig.wait_hw(5), "commands once the state is complete"
    assert rig.node.counters["hardware_states_foreign"] >= 1
    assert rig.diag()["missing_joints"] == ""


def test_stale_joint_states_stop_the_commands_until_fresh_ones_arrive(rig_factory):
    rig = rig_factory(policy_hz=50.0, state_timeout_periods=3)
    assert rig.wait_hw(10)
    # the fake arm's timer runs in this process: on a busy machine it can pause > 3 periods and
    # STOP the bridge before the silence this test makes; count only the STOP that follows it
    assert wait_until(lambda: rig.node.watchdog.mode == "run", 5.0)
    stops = rig.node.watchdog.counts().get("stop:state_timeout", 0)
    rig.hw_publishing = False
    silent = time.monotonic()
    time.sleep(0.5)  # intentional: the states stay away well past the 3-period state timeout
    assert rig.drained()
    after = rig.hw_since(silent)
    last = after[-1][0] if after else silent
    # 3 periods + one period of tick quantization + scheduling
    assert last - silent <= 4 * PERIOD + 0.05, f"commands went on {1e3 * (last - silent):.0f} ms without a state"
    quiet = time.monotonic()
    time.sleep(0.3)  # intentional: 0.3 s more without states, and without commands
    assert rig.drained()
    assert not rig.hw_since(quiet), "no commands on a stale state"
    d = rig.diag()
    assert d["mode"] == "stop" and d["cause"] == "state_timeout" and d["level"] == DiagnosticStatus.ERROR
    assert "no fresh hardware joint state" in d["message"] and int(d["stop_state_timeout"]) == stops + 1
    rig.hw_publishing = True
    assert rig.wait_hw(10), "commands resume with fresh states"
    assert rig.node.watchdog.mode == "run"


def test_after_a_stop_the_first_command_steps_from_the_last_command_sent(rig_factory):
    """Issue 12, defect 6, end to end: the policy drives every joint towards a far target at the
    step limit while the fake arm lags 3 commands behind (a position-controlled arm does not
    reach each command within a cycle); its states stop long enough for a STOP, then return.
    On the hardware topic every command, the first after the STOP included, is within one step
    of the previous one: the step limit continues from what the controller held, not from the
    lagging measurement (which was a jump back of 2 steps)."""
    rig = rig_factory(policy_hz=50.0, state_timeout_periods=3)
    lagging = collections.deque(maxlen=4)   # the last 4 commands: the arm is at the oldest

    def follow(msg):
        lagging.append(np.array(msg.data))
        rig.q = lagging[0]

    follow_sub = rig.probe.create_subscription(Float64MultiArray, "/forward_position_controller/commands", follow,
                                               RECORD_QOS)
    assert wait_for_match(follow_sub), "the fake arm's command subscription never matched the bridge"
    direction = np.where(HI - Q > Q - LO, 1.0, -1.0)
    rig.policy_cmd = np.clip(Q + 60 * STEP * direction, LO, HI)    # more than a second away
    assert rig.wait_hw(8), "no hardware commands"
    rig.hw_publishing = False
    assert wait_until(lambda: rig.node.watchdog.mode == "stop", 2.0), "no STOP without hardware states"
    stopped = time.monotonic()
    time.sleep(0.1)  # intentional: the STOP lasts 5 periods
    rig.hw_publishing = True
    assert rig.wait_hw(5), "commands resume with fresh states"
    rig.policy_on = False   # the hold that follows is checked too
    assert wait_until(lambda: rig.node.watchdog.mode == "hold", 5.0) and rig.drained(), "no hold"
    commands = list(rig.hw_commands)
    before = [c for t, c in commands if t < stopped]
    after = [c for t, c in commands if t > stopped]
    assert before and after and rig.node.watchdog.counts()["stop:state_timeout"] >= 1
    ratios = [np.max(np.abs(b - a) / STEP) for a, b in zip([Q] + [c for _, c in commands], [c for _, c in commands])]
    offset = float(rig.diag()["last_resume_offset_rad"])
    print(f"\nSTOP -> RUN: first command after the stop {np.max(np.abs(after[0] - before[-1]) / STEP):.3f} steps "
          f"from the last before it; max step ratio {max(ratios):.3f}; at the resume the arm was {offset:.3f} rad "
          f"from the last command sent")
    assert max(ratios) <= 1 + 1e-9, f"step limit broken: {max(ratios):.3f} x the per-cycle step"
    assert not np.allclose(after[-1], before[-1]), "the walk went on after the stop"
    assert offset > 1.5 * STEP.min(), "the measured position lagged the last command at the resume"


def test_non_finite_and_out_of_order_joint_states_are_rejected(rig_factory):
    rig = rig_factory(policy_hz=50.0)
    assert rig.wait_hw(5)
    bad_q = Q + 0.3
    now = rig.probe.get_clock().now().nanoseconds
    node = rig.node

    def mix_in(publish, counter: str, at_least: int, timeout: float = 20.0) -> None:
        """Publish 10 bad states into the 100 Hz stream, 12 ms apart, and go on until the bridge
        has rejected ``at_least``: the reader keeps 1, so the regular stream may replace some
        before the bridge takes them (many, when this process or the bridge is slowed down)."""
        k, end = 0, time.monotonic() + timeout
        while k < 10 or (node.counters[counter] < at_least and time.monotonic() < end):
            publish(k)
            k += 1
            time.sleep(0.012)  # intentional pacing

    # a reading from the past (older stamp), mixed into the stream
    mix_in(lambda k: rig.publish_hw_state(q=bad_q, stamp_ns=now - 10**9 + k),
           "hardware_states_rejected:out_of_order", 5)
    nan_q = Q.copy()
    nan_q[4] = np.nan
    mix_in(lambda k: rig.publish_hw_state(q=nan_q), "hardware_states_rejected:non_finite", 1)
    assert wait_until(lambda: node.counters["hardware_states_rejected:out_of_order"] >= 5
                      and node.counters["hardware_states_rejected:non_finite"] >= 1, 10.0), node.counters
    # the bridge has taken the bad states; 3 more relayed states: every one it relayed after
    # them is in rig.states (one writer, in order)
    relayed = len(rig.states)
    assert wait_until(lambda: len(rig.states) >= relayed + 3, 5.0), "no states relayed after the bad ones"
    positions = np.array([m.position for _, m in list(rig.states)])
    assert np.all(positions == Q), "rejected states are never relayed to the policy"
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in list(rig.states)]
    assert stamps == sorted(stamps), "relayed stamps never go back"
    d = rig.diag()
    assert int(d["rejected_state_out_of_order"]) >= 5 and int(d["rejected_state_non_finite"]) >= 1
    # the node keeps commanding on the good states (a report may catch a momentary hold when a
    # command came late beside busy loops: seen once in bench flaky; the next reports say run)
    assert d["mode"] == "run" or wait_until(lambda: rig.diag()["mode"] == "run", 20.0), \
        "the node keeps commanding on the good states"
    # the hardware clock jumps back for good: no state is fresh any more, the bridge stops
    rig.hw_publishing = False
    past = now - 5 * 10**9
    end = time.monotonic() + 0.4   # intentional: 0.4 s of old stamps only, past the state timeout
    k = 0
    while time.monotonic() < end:
        rig.publish_hw_state(stamp_ns=past + k)
        k += 1
        time.sleep(0.01)
    d = rig.diag()
    assert d["mode"] == "stop" and "out-of-order stamp" in d["message"]


def test_velocity_is_estimated_from_positions_when_the_hardware_has_no_velocity_interface(rig_factory):
    rig = rig_factory(hw_rate=0.0)
    base = rig.probe.get_clock().now().nanoseconds
    slope = np.linspace(-0.5, 0.5, N)  # rad/s
    for k in range(20):
        rig.publish_hw_state(q=Q + slope * 0.01 * k, stamp_ns=base + k * 10_000_000, velocity=False)
        time.sleep(0.01)  # intentional pacing: a 100 Hz hardware stream
    last_stamp = base + 19 * 10_000_000

    def relayed_last():  # the state relayed from the last hardware state (its stamp)
        return next((m for _, m in reversed(list(rig.states))
                     if m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec == last_stamp), None)

    assert wait_until(lambda: relayed_last() is not None, 5.0), "the last hardware state was never relayed"
    msg = relayed_last()
    np.testing.assert_allclose(msg.velocity, slope, atol=1e-6)


# --- the watchdog -------------------------------------------------------------------------------

def test_watchdog_holds_within_two_control_periods_of_the_last_command(rig_factory, record_property):
    """Measured on the hardware topic: last policy command published -> first hold command
    received, both by the probe (so DDS both ways is included)."""
    rig = rig_factory()
    latencies = []
    for trial in range(8):
        for _ in range(10):
            rig.command(Q + DELTA)
            time.sleep(PERIOD)
        last_sent = rig.policy_sent[-1][0]

        def final_hold():
            """The first hold after the bridge's last running command of this trial: a hold that
            arrives after ``last_sent`` but before a running command is an earlier timeout (the
            test process itself paused > 2 periods between two of its commands, on a busy machine)."""
            after = rig.hw_since(last_sent)
            last_run = max((i for i, (_, c) in enumerate(after) if np.array_equal(c, Q + DELTA)), default=-1)
            return next((t for t, c in after[last_run + 1:] if np.array_equal(c, Q)), None)

        assert wait_until(lambda: final_hold() is not None, 1.0), f"trial {trial}: no hold"
        first_hold = final_hold()
        running = [c for t, c in rig.hw_since(last_sent) if t < first_hold and not np.array_equal(c, Q)]
        assert all(np.array_equal(c, Q + DELTA) for c in running)
        latencies.append(first_hold - last_sent)
        time.sleep(0.1)  # intentional: the hold goes on for 5 periods before the next trial
    lat_ms = 1e3 * np.array(latencies)
    record_property("hold_latency_ms", lat_ms.round(2).tolist())
    print(f"\nhold latency (last command -> first hold on the hardware topic), ms: {lat_ms.round(1).tolist()}; "
          f"max {lat_ms.max():.1f}, limit {1e3 * (2 * PERIOD + HOLD_TOLERANCE_S):.0f} "
          f"(2 periods = {2e3 * PERIOD:.0f} + tolerance {1e3 * HOLD_TOLERANCE_S:.0f})")
    assert np.all(lat_ms >= 2e3 * PERIOD - 1.0), "held before the timeout"
    # The median must meet the bound: a design that waited for the next control tick would be
    # ~half a period late on average. Single outliers are the scheduler of a busy 2-core
    # machine (seen: one trial of eight at 54 ms while a training job ran, one at 62 ms beside
    # two busy loops in bench flaky); they must still stay below two more periods.
    assert np.median(lat_ms) <= 1e3 * (2 * PERIOD + HOLD_TOLERANCE_S), f"hold latencies {lat_ms.round(1)} ms"
    assert lat_ms.max() <= 1e3 * 4 * PERIOD, f"hold latencies {lat_ms.round(1)} ms"
    d = rig.diag()
    # one hold per trial, plus any the test process caused by pausing between its own commands
    assert d["mode"] == "hold" and d["cause"] == "command_timeout" and int(d["hold_command_timeout"]) >= 8
    assert 2e3 * PERIOD <= float(d["last_hold_latency_ms"]) <= 1e3 * (2 * PERIOD + HOLD_TOLERANCE_S)


def test_estop_latches_a_hold_until_released(rig_factory):
    rig = rig_factory(policy_hz=50.0)
    assert rig.wait_hw(5)
    response = rig.call(rig.estop_client, Trigger.Request())
    assert response.success and "e-stop latched" in response.message
    latched = time.monotonic()
    time.sleep(0.5)  # intentional: for 0.5 s the policy keeps commanding: ignored
    assert rig.drained()
    for _, c in rig.hw_since(latched + 0.05):
        np.testing.assert_array_equal(c, Q)
    d = rig.diag()
    assert d["estop"] == "True" and d["cause"] == "estop" and "E-STOP latched" in d["message"]
    assert d["level"] == DiagnosticStatus.WARN
    assert "already latched" in rig.call(rig.estop_client, Trigger.Request()).message
    rig.stop_policy()  # no policy command in flight at the release
    response = rig.call(rig.release_client, Trigger.Request())
    assert response.success and "holding until a new policy command" in response.message
    time.sleep(0.2)  # intentional: 10 periods without a new command: the bridge keeps holding
    assert rig.node.watchdog.cause == "released"
    assert rig.drained()
    np.testing.assert_array_equal(rig.hw_commands[-1][1], Q)
    rig.policy_on = True
    assert wait_until(lambda: np.array_equal(rig.hw_commands[-1][1], Q + DELTA), 2.0)
    assert not rig.call(rig.release_client, Trigger.Request()).success, "nothing to release"


# --- goals, reset, output, lifecycle ------------------------------------------------------------

def test_reset_samples_a_goal_in_the_reach_workspace(rig_factory):
    rig = rig_factory(seed=7)
    assert wait_until(lambda: rig.goals, 5.0)
    first = rig.node.goal.copy()
    goals = []
    for _ in range(5):
        response = rig.call(rig.reset_client, Trigger.Request())
        assert response.success and "cannot resample physics" in response.message
        assert wait_until(lambda: len(rig.goals) > len(goals) + 1, 2.0)
        g = rig.goals[-1]
        goals.append([g.point.x, g.point.y, g.point.z])
    goals = np.array(goals)
    assert np.all(goals >= PROFILE.reach_low_m) and np.all(goals <= PROFILE.reach_high_m)
    assert len(np.unique(goals, axis=0)) == 5 and not np.allclose(goals[0], first)
    rng = np.random.default_rng(7)  # seeded: the same goals as the node's generator
    np.testing.assert_allclose(first, rng.uniform(PROFILE.reach_low_m, PROFILE.reach_high_m))
    np.testing.assert_allclose(goals[0], rng.uniform(PROFILE.reach_low_m, PROFILE.reach_high_m))
    msg = PointStamped()
    msg.point.x, msg.point.y, msg.point.z = 0.4, 0.0, 0.3
    rig._goal_pub.publish(msg)
    assert wait_until(lambda: rig.goals[-1].point.x == 0.4, 2.0), "a goal is echoed on current_goal"
    assert rig.goals[-1].header.frame_id == "base_link"


def test_trajectory_output_for_a_joint_trajectory_controller(rig_factory):
    rig = rig_factory(policy_hz=50.0, output="trajectory", controller="joint_trajectory_controller")
    assert rig.wait_hw(5), "no JointTrajectory on /joint_trajectory_controller/joint_trajectory"
    msg = rig.trajectories[-1]
    assert list(msg.joint_names) == JOINTS and len(msg.points) == 1
    assert (msg.points[0].time_from_start.sec, msg.points[0].time_from_start.nanosec) == (0, 20_000_000)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 0), "stamp 0: start now"
    np.testing.assert_array_equal(msg.points[0].positions, Q + DELTA)


def test_lifecycle_gates_the_hardware_commands_and_bad_configuration_is_refused(rig_factory):
    rig = rig_factory(policy_hz=50.0, autostart=False)
    time.sleep(0.3)  # intentional: 0.3 s of policy commands while unconfigured (no endpoints yet)
    assert rig.node.lifecycle_state == "unconfigured" and not rig.hw_commands
    assert rig.transition("configure")
    rig.wait_matched()
    node = rig.node
    received = node.counters["commands"]
    assert wait_until(lambda: node.counters["commands"] >= received + 5, 10.0), "the inactive bridge gets commands"
    time.sleep(0.3)  # intentional: 15 more periods of policy commands while inactive
    assert not rig.hw_commands and node.counters["hardware_commands"] == 0, "no commands while inactive"
    assert rig.transition("activate")
    assert rig.wait_hw(10)
    assert rig.transition("deactivate")
    stopped = time.monotonic()
    time.sleep(0.4)  # intentional: 0.4 s of policy commands after deactivate
    assert rig.drained()
    assert not rig.hw_since(stopped + 0.02), "no commands after deactivate"
    assert rig.transition("cleanup") and rig.node.lifecycle_state == "unconfigured"

    for params, why in (({"controller_joints": JOINTS[:6]}, "missing ['joint7']"),
                        ({"output": "effort"}, "must be one of ['forward', 'trajectory']"),
                        ({"hardware_joint_states": "joint_states"}, "must be an absolute topic name"),
                        ({"robot_profile": "nope"}, "no robot profile named 'nope': not shipped")):
        node = RealBridgeNode(autostart=True, namespace=rig.ns + "_bad",
                              parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        try:
            assert node.lifecycle_state == "unconfigured" and why in node.last_error, node.last_error
        finally:
            node.destroy_node()


def test_main_runs_with_the_shipped_parameter_file_and_stops_on_sigint(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-c", "import sys; from real_bridge.node import main; sys.exit(main())",
           "--ros-args", "--params-file", str(REPO / "launch/config/real_bridge.yaml"),
           "-r", "__ns:=/rb_main", "-p", "hardware_joint_states:=/rb_main_hw/joint_states"]
    log = tmp_path / "log.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        try:
            assert wait_until(lambda: "active: commands go to" in log.read_text(), 20.0), log.read_text()
            time.sleep(0.5)  # intentional: it keeps spinning for 0.5 s (does not exit on its own)
            assert proc.poll() is None, log.read_text()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "margin 0.05 rad, velocity scale 1, hold after 2 periods" in log.read_text()
