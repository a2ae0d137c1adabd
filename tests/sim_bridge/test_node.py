"""The sim bridge node with real rclpy and DDS (in-process executor, plus one multi-process run)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rigs import closing_factory, ros, spin_until, stop_process, wait_for_match  # noqa: F401 (ros: autouse fixture)

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PointStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from sim_bridge import interface  # noqa: E402
from sim_bridge.node import SimBridgeNode  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[2]


class Graph:
    """A sim bridge node plus a probe node that records what the bridge publishes."""

    def __init__(self, executor=SingleThreadedExecutor, **params):
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        self.bridge = SimBridgeNode(parameter_overrides=overrides)
        self.probe = rclpy.create_node("probe")
        self.states: list[tuple[float, JointState]] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.goals: list[PointStamped] = []
        subscriptions = [
            self.probe.create_subscription(JointState, interface.JOINT_STATES,
                                           lambda m: self.states.append((time.monotonic(), m)), interface.STATE_QOS),
            self.probe.create_subscription(DiagnosticArray, interface.DIAGNOSTICS, self.diagnostics.append,
                                           interface.DIAGNOSTICS_QOS),
            self.probe.create_subscription(PointStamped, interface.CURRENT_GOAL, self.goals.append,
                                           interface.LATCHED_QOS)]
        self.commands = self.probe.create_publisher(Float64MultiArray, interface.JOINT_COMMANDS,
                                                    interface.COMMAND_QOS)
        self.goal_pub = self.probe.create_publisher(PointStamped, interface.GOAL, interface.LATCHED_QOS)
        # DDS discovery between the probe and the bridge, before any test publishes (a command
        # published before the match is lost) or counts on a reception
        assert wait_for_match(*subscriptions, self.commands, self.goal_pub, timeout=30.0), \
            "the probe and the bridge never matched"
        self.reset_client = self.probe.create_client(Trigger, interface.RESET)
        self.executor = executor()
        self.executor.add_node(self.bridge)
        self.executor.add_node(self.probe)

    def spin(self, seconds: float, until=None) -> bool:
        return spin_until(self.executor, seconds, until)

    def command(self, values) -> None:
        self.commands.publish(Float64MultiArray(data=[float(v) for v in values]))

    def reset(self) -> Trigger.Response:
        assert self.reset_client.wait_for_service(timeout_sec=30.0)
        future = self.reset_client.call_async(Trigger.Request())
        assert self.spin(10.0, until=future.done), "reset service did not answer"
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.bridge.destroy_node()
        self.probe.destroy_node()


@pytest.fixture
def graph_factory(tmp_path):
    # runtime randomization files must lie in the bridge's randomization_dir: the test's folder
    yield from closing_factory(lambda **params: Graph(**{"randomization_dir": str(tmp_path), **params}))


def test_publishes_joint_state_at_configured_rate(graph_factory):
    g = graph_factory(control_rate_hz=100.0, physics_rate_hz=500.0, seed=1)
    assert g.spin(30.0, until=lambda: len(g.states) > 5), "no joint_states received"
    g.states.clear()
    g.spin(3.0)  # intentional: the 3 s window the rate is measured over
    times = np.array([t for t, _ in g.states])
    stamps = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for _, m in g.states])
    # The bridge's rate from its sim-time stamps over the wall time they took: a state the
    # probe (keep-last 1, spun by a busy test thread) did not take in time does not count
    # against the bridge, as it would in a rate from receptions.
    rate = 100.0 * (stamps[-1] - stamps[0]) / (times[-1] - times[0])
    assert rate == pytest.approx(100.0, rel=0.05), f"stepped at {rate:.1f} Hz, configured 100 Hz"
    msg = g.states[-1][1]
    assert list(msg.name) == [f"joint{i}" for i in range(1, 8)]
    assert len(msg.position) == len(msg.velocity) == len(msg.effort) == 7
    steps = np.diff(stamps) / 0.01
    assert np.allclose(steps, np.round(steps), atol=1e-4) and (np.round(steps) >= 1).all(), \
        "stamps must advance by whole control periods (sim time)"
    assert np.median(np.round(steps)) == 1 and len(stamps) >= 0.5 * 300, "one state per control period"


@pytest.mark.parametrize("executor", ["lean", "rclpy"])
def test_in_realtime_the_tick_takes_the_commands(graph_factory, executor):
    """Real-time mode: the tick takes the commands that arrived since the last one (the
    project's executors do not wait on the command subscription: one wake per cycle); with
    rclpy's own executor the subscription callback delivers them. Either way a command
    moves the arm, and a bad one is rejected while the last good one stays in force."""
    from sim_bridge.executor import LeanExecutor

    g = graph_factory(executor=LeanExecutor if executor == "lean" else SingleThreadedExecutor,
                      control_rate_hz=100.0, physics_rate_hz=500.0, seed=3, randomization_file="none")
    assert g.bridge.polled_subscriptions == (g.bridge._command_sub,)
    assert g.spin(30.0, until=lambda: len(g.states) > 5), "no joint_states received"
    if executor == "lean":
        waited = {e for prepared in g.executor._prepared_sets.values() for e in prepared.key}
        assert g.bridge._command_sub not in waited, "the executor waits on the polled command subscription"
    target = np.array(g.bridge.profile.default_pose_rad) + 0.2
    accepted = g.bridge.session.counters.commands_accepted
    for _ in range(3):
        g.command(target)
        g.spin(0.1)
    assert g.bridge.session.counters.commands_accepted > accepted
    assert g.spin(10.0, until=lambda: np.abs(np.array(g.states[-1][1].position) - target).max() < 0.05), \
        "the arm did not reach the commanded pose"
    g.command([float("nan")] * 7)
    assert g.spin(5.0, until=lambda: g.bridge.session.counters.commands_rejected >= 1), "a NaN command was taken"
    np.testing.assert_allclose(g.bridge.session.last_command, target)


def test_clock_carries_sim_time_to_a_subscriber(graph_factory):
    """``/clock`` (sim time, for ``use_sim_time`` nodes) is published while someone subscribes
    (the bridge skips it otherwise) and matches the joint states' stamps."""
    from rosgraph_msgs.msg import Clock

    g = graph_factory(mode="lockstep", seed=4, randomization_file="none")
    clocks = []
    sub = g.probe.create_subscription(Clock, interface.CLOCK, clocks.append, 10)
    assert wait_for_match(sub, timeout=30.0), "the probe never matched /clock"
    assert g.spin(30.0, until=lambda: len(g.states) > 2), "no joint_states received"
    for _ in range(5):
        g.command(g.bridge.profile.default_pose_rad)
        n = len(g.states)
        assert g.spin(10.0, until=lambda: len(g.states) > n), "lockstep did not step"
    assert g.spin(10.0, until=lambda: len(clocks) >= 3), "no /clock while subscribed"
    stamp = lambda t: t.sec + 1e-9 * t.nanosec  # noqa: E731
    state_times = {round(stamp(m.header.stamp), 6) for _, m in g.states}
    assert {round(stamp(c.clock), 6) for c in clocks[-3:]} <= state_times, "clock and state stamps differ"


def test_command_moves_the_arm_in_lockstep(graph_factory):
    g = graph_factory(mode="lockstep", seed=2, randomization_file="none")
    assert g.spin(30.0, until=lambda: len(g.states) > 0), "lockstep bridge publishes the reset state"
    q0 = np.array(g.states[-1][1].position)
    target = q0.copy()
    target[0] += 0.3
    for _ in range(50):  # each command advances the sim one control step
        n = len(g.states)
        g.command(target)
        assert g.spin(10.0, until=lambda: len(g.states) > n), "no state after a lockstep command"
    q = np.array(g.states[-1][1].position)
    assert q[0] - q0[0] == pytest.approx(0.3, abs=0.03), f"joint1 moved {q[0] - q0[0]:.3f} rad toward +0.3"
    assert np.allclose(q[1:], q0[1:], atol=0.05)


def test_reset_resamples_dynamics_and_goal(graph_factory):
    g = graph_factory(seed=3)
    assert g.spin(15.0, until=lambda: len(g.diagnostics) > 0 and len(g.goals) > 0), "no diagnostics or goal"
    before = g.bridge.session.sim.dynamics.copy()
    goal_before = g.bridge.session.goal.copy()
    response = g.reset()
    assert response.success and "episode 2" in response.message
    after = g.bridge.session.sim.dynamics
    assert not np.allclose(before, after), "reset must draw a new dynamics sample"
    assert not np.allclose(goal_before, g.bridge.session.goal)
    assert g.spin(15.0, until=lambda: any(  # the next 1 Hz diagnostics
        s.name == "sim_bridge: dynamics" and "episode 2" in s.message for d in g.diagnostics for s in d.status))
    status = [s for d in g.diagnostics for s in d.status if "episode 2" in s.message][-1]
    values = {kv.key: float(kv.value) for kv in status.values}
    assert set(values) == set(g.bridge.session.sim.randomizer.names)
    assert values["body_mass/link3"] == pytest.approx(g.bridge.session.sim.dynamics_dict()["body_mass/link3"],
                                                      rel=1e-5)
    assert g.spin(10.0, until=lambda: np.allclose(
        [g.goals[-1].point.x, g.goals[-1].point.y, g.goals[-1].point.z], g.bridge.session.goal))


def set_randomization(g: Graph, value: str, timeout_s: float = 20.0):
    """Set randomization_file and spin until the bridge's background validation finished:
    (the immediate SetParametersResult, the bridge's randomization_status afterwards)."""
    result = g.bridge.set_parameters([Parameter("randomization_file", value=value)])[0]
    if result.successful:
        assert g.spin(timeout_s, until=lambda: not g.bridge.randomization_status.startswith("validating")), \
            "validation did not finish"
    return result, g.bridge.randomization_status


def test_invalid_randomization_file_is_rejected_and_old_kept(graph_factory, tmp_path):
    # Behaviour changed with the background validation (issue 12): a set is answered at once
    # ("accepted: validating"); an invalid file is then refused on /diagnostics and in the
    # log, and the parameter returns to the file in force.
    g = graph_factory(seed=4)
    bad = tmp_path / "bad.yaml"
    bad.write_text("randomization_version: 1\nparameters:\n  body_mass: {operation: scale, distribution: "
                   "uniform, low: 2.0, high: 1.0}\n")
    result, status = set_randomization(g, str(bad))
    assert status.startswith("refused") and "parameters.body_mass.high" in status and "kept 'default'" in status
    assert g.bridge.get_parameter("randomization_file").value == "default"
    g.reset()
    assert g.bridge.session.randomization_name == "default"
    assert g.bridge.session.sim.randomizer.size > 0

    unknown_body = tmp_path / "unknown_body.yaml"
    unknown_body.write_text("randomization_version: 1\nparameters:\n  body_mass: {targets: [no_such_link], "
                            "operation: scale, distribution: uniform, low: 0.5, high: 1.5}\n")
    result, status = set_randomization(g, str(unknown_body))
    assert status.startswith("refused") and "parameters.body_mass" in status
    assert g.bridge.get_parameter("randomization_file").value == "default"

    result, status = set_randomization(g, "none")
    assert result.successful and status.startswith("accepted")
    assert g.bridge.get_parameter("randomization_file").value == "none"
    assert g.bridge.session.randomization_name == "default", "a new file applies at the next reset"
    g.reset()
    assert g.bridge.session.randomization_name == "none"
    assert g.bridge.session.sim.randomizer.size == 0
    assert g.spin(10.0, until=lambda: len(g.states) > 3), "node keeps publishing"


def test_bad_commands_are_rejected_and_the_node_keeps_running(graph_factory):
    g = graph_factory(seed=5, mode="lockstep", randomization_file="none")
    assert g.spin(30.0, until=lambda: len(g.states) > 0), "no joint_states"
    counters = g.bridge.session.counters
    g.command([0.1, 0.2])  # wrong length
    assert g.spin(10.0, until=lambda: counters.commands_rejected == 1)
    assert "expected 7 values" in counters.last_rejection
    g.command([float("nan")] * 7)
    assert g.spin(10.0, until=lambda: counters.commands_rejected == 2)
    assert "non-finite" in counters.last_rejection
    held = g.bridge.session.last_command
    assert np.all(np.isfinite(held))
    g.command([10.0] * 7)  # out of range: clipped to limits, accepted
    assert g.spin(10.0, until=lambda: counters.commands_clipped == 1)
    assert np.all(g.bridge.session.last_command <= g.bridge.profile.position_upper_rad)
    n = len(g.states)
    g.command(held)
    assert g.spin(10.0, until=lambda: len(g.states) > n), "node still steps after bad input"


def test_goal_topic_sets_target_and_bad_goal_is_rejected(graph_factory):
    g = graph_factory(seed=6)
    assert g.spin(10.0, until=lambda: len(g.goals) > 0), "no current_goal"
    session = g.bridge.session
    goals_set, set_goal = [], session.set_goal   # the goals the bridge took from the topic

    def recording(xyz):
        goals_set.append(list(xyz))
        return set_goal(xyz)

    session.set_goal = recording
    msg = PointStamped()
    msg.point.x, msg.point.y, msg.point.z = 0.5, 0.1, 0.3
    g.goal_pub.publish(msg)
    assert g.spin(10.0, until=lambda: np.allclose(g.bridge.session.goal, [0.5, 0.1, 0.3]))
    msg.point.x = float("nan")
    g.goal_pub.publish(msg)
    assert g.spin(10.0, until=lambda: any(np.isnan(xyz[0]) for xyz in goals_set)), "the NaN goal never arrived"
    assert np.allclose(g.bridge.session.goal, [0.5, 0.1, 0.3]), "a NaN goal must be rejected"


def test_physics_blowup_resets_instead_of_crashing(graph_factory):
    g = graph_factory(seed=7)
    assert g.spin(10.0, until=lambda: len(g.states) > 2), "no joint_states"
    episodes = g.bridge.session.counters.episodes
    g.bridge.session.sim.data.qvel[:] = np.nan
    assert g.spin(10.0, until=lambda: g.bridge.session.counters.blowups == 1)
    assert g.bridge.session.counters.episodes == episodes + 1
    n = len(g.states)
    assert g.spin(10.0, until=lambda: len(g.states) > n + 5)
    assert np.all(np.isfinite(g.states[-1][1].position))


def test_read_only_parameters_cannot_change(graph_factory):
    g = graph_factory(seed=8)
    result = g.bridge.set_parameters([Parameter("mode", value="lockstep")])[0]
    assert not result.successful and "read-only" in result.reason


@pytest.mark.slow
def test_node_runs_as_a_process_from_a_params_file():
    """`sim2real node sim_bridge --ros-args --params-file ...` in its own process, driven from here."""
    exe = Path(sys.executable).with_name("sim2real")
    cmd = [str(exe), "node", "sim_bridge", "--ros-args", "--params-file",
           str(REPO / "launch/config/sim_bridge.yaml"), "-p", "mode:=lockstep", "-p", "seed:=11"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ))
    node = rclpy.create_node("external_probe")
    states = []
    node.create_subscription(JointState, interface.JOINT_STATES, states.append, interface.STATE_QOS)
    pub = node.create_publisher(Float64MultiArray, interface.JOINT_COMMANDS, interface.COMMAND_QOS)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and proc.poll() is None:
            if pub.get_subscription_count() > 0:
                break
            executor.spin_once(timeout_sec=0.05)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
        q[0] = 0.2
        for _ in range(60):
            n = len(states)
            pub.publish(Float64MultiArray(data=q.tolist()))
            end = time.monotonic() + 2.0
            while len(states) == n and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.01)
        assert states, "no joint_states from the node process"
        assert states[-1].position[0] > 0.1, f"joint1 at {states[-1].position[0]:.3f}, commanded 0.2"
    finally:
        out = stop_process(proc, 15)
        executor.shutdown()
        node.destroy_node()
    assert proc.returncode == 0, f"exit code {proc.returncode}:\n{out[-2000:]}"
    assert "sim bridge up" in out and "lockstep mode" in out
