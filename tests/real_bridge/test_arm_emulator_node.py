"""The arm emulator node with real rclpy and DDS: what a ros2_control arm would publish and accept."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rigs import closing_factory, ros, spin_until, stop_process  # noqa: F401 (ros: autouse fixture)

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from real_bridge.emulator_node import ROS2_CONTROL_QOS, ArmEmulatorNode  # noqa: E402
from sim_bridge import interface  # noqa: E402
from sim_bridge.config import ConfigError  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[2]
ARM = [f"joint{i}" for i in range(1, 8)]
HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


class Rig:
    """An emulator node plus a probe node playing the real bridge."""

    def __init__(self, **params):
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        self.emulator = ArmEmulatorNode(parameter_overrides=overrides)
        self.probe = rclpy.create_node("bridge_probe")
        self.states: list[tuple[float, float, JointState]] = []  # (monotonic, wall time, msg)
        self.diagnostics: list[DiagnosticArray] = []
        self.probe.create_subscription(
            JointState, "/joint_states", lambda m: self.states.append((time.monotonic(), time.time(), m)),
            ROS2_CONTROL_QOS)
        self.probe.create_subscription(DiagnosticArray, interface.DIAGNOSTICS, self.diagnostics.append,
                                       interface.DIAGNOSTICS_QOS)
        topic = f"/{params.get('controller', 'forward_position_controller')}/commands"
        self.commands = self.probe.create_publisher(Float64MultiArray, topic, ROS2_CONTROL_QOS)
        self.reset_client = self.probe.create_client(Trigger, "/arm_emulator/reset")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.emulator)
        self.executor.add_node(self.probe)

    def spin(self, seconds: float, until=None) -> bool:
        return spin_until(self.executor, seconds, until)

    def connected(self) -> bool:
        """DDS discovery done both ways (the command publisher matched, states arriving)."""
        return self.spin(30.0, until=lambda: self.commands.get_subscription_count() > 0 and self.states)

    def command(self, values) -> None:
        self.commands.publish(Float64MultiArray(data=[float(v) for v in values]))

    def arm_position(self) -> np.ndarray:
        return np.array(self.states[-1][2].position[:7])

    def close(self) -> None:
        self.executor.shutdown()
        self.emulator.destroy_node()
        self.probe.destroy_node()


@pytest.fixture
def rig_factory():
    yield from closing_factory(Rig)


def test_publishes_joint_states_at_the_rate_with_the_extra_joint_and_wall_stamps(rig_factory):
    rig = rig_factory(seed=1)
    assert rig.spin(30.0, until=lambda: len(rig.states) > 5), "no /joint_states"
    rig.states.clear()
    rig.spin(3.0)  # intentional: a 3 s window to measure the rate
    times = np.array([t for t, _, _ in rig.states])
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert rate == pytest.approx(50.0, rel=0.1), f"received {rate:.1f} Hz, expected the profile's 50 Hz"
    _, wall, msg = rig.states[-1]
    assert list(msg.name) == ARM + ["finger_joint"]
    assert len(msg.position) == len(msg.velocity) == len(msg.effort) == 8
    assert msg.position[7] == msg.velocity[7] == msg.effort[7] == 0.0
    stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
    assert abs(stamp - wall) < 1.0, "stamped with the node clock (wall time), not sim time"
    assert np.abs(np.array(msg.position[:7]) - HOME).max() < 0.05, "starts homed"
    # physics in wall time: the emulator's clock kept up with the wall clock
    assert rig.emulator.achieved_rate_hz() == pytest.approx(50.0, rel=0.1)


def test_a_command_moves_the_arm_and_is_held(rig_factory):
    rig = rig_factory(seed=2)
    assert rig.connected()
    target = HOME.copy()
    target[0] += 0.3
    rig.command(target)  # once: the forward position controller holds it
    assert rig.spin(5.0, until=lambda: rig.arm_position()[0] > 0.27), \
        f"joint1 at {rig.arm_position()[0]:.3f}, commanded 0.3"
    rig.spin(0.5)  # intentional: 0.5 s more, the command is held (one command only)
    assert rig.arm_position()[0] == pytest.approx(0.3, abs=0.02)
    assert np.abs(rig.arm_position()[1:] - HOME[1:]).max() < 0.05
    assert rig.emulator.commands_accepted == 1


def test_bad_commands_are_ignored_and_the_node_keeps_running(rig_factory):
    rig = rig_factory(seed=3)
    assert rig.connected()
    target = HOME.copy()
    target[0] -= 0.2
    rig.command(target)
    assert rig.spin(3.0, until=lambda: rig.emulator.commands_accepted == 1)
    rig.command([0.1, 0.2])  # wrong length (e.g. the gripper's command on the arm's topic)
    assert rig.spin(2.0, until=lambda: rig.emulator.commands_rejected == 1)
    assert "expected 7 joint targets" in rig.emulator.last_rejection
    rig.command([float("nan")] * 7)
    assert rig.spin(2.0, until=lambda: rig.emulator.commands_rejected == 2)
    assert "non-finite" in rig.emulator.last_rejection
    rig.command(list(target) + [0.0])  # 8 values: the extra joint is not the controller's
    assert rig.spin(2.0, until=lambda: rig.emulator.commands_rejected == 3)
    np.testing.assert_allclose(rig.emulator.emulator.last_command, target)
    n = len(rig.states)
    assert rig.spin(2.0, until=lambda: len(rig.states) > n + 20), "still publishing"
    assert rig.arm_position()[0] == pytest.approx(-0.2, abs=0.02), "the last valid command is held"


def test_lockstep_steps_once_per_command_on_a_custom_controller_topic(rig_factory):
    rig = rig_factory(seed=4, mode="lockstep", controller="joint_group_position_controller")
    assert rig.connected()
    assert rig.emulator.command_topic == "/joint_group_position_controller/commands"
    steps = rig.emulator.emulator.control_steps
    rig.spin(0.5)  # intentional: 0.5 s without a command
    assert rig.emulator.emulator.control_steps == steps, "no command, no time"
    target = HOME.copy()
    target[0] += 0.2
    emulator = rig.emulator.emulator
    for i in range(40):
        rig.command(target)
        # waited on the step itself: a state alone may be the idle re-publish (every 0.1 s without a
        # command), which on a loaded machine can come before the command's callback
        assert rig.spin(5.0, until=lambda: emulator.control_steps >= steps + i + 1), (i, emulator.control_steps)
        assert emulator.control_steps == steps + i + 1, "one command, one period"
    n = len(rig.states)
    assert rig.spin(2.0, until=lambda: len(rig.states) > n)   # a state after the 40th step
    assert emulator.control_steps == steps + 40, "no command, no time"
    assert rig.arm_position()[0] == pytest.approx(0.2, abs=0.03)


def test_reset_service_homes_the_arm(rig_factory):
    rig = rig_factory(seed=5)
    assert rig.connected()
    target = HOME + 0.15
    target[3] = HOME[3] + 0.15
    rig.command(target)
    assert rig.spin(4.0, until=lambda: np.abs(rig.arm_position() - HOME).max() > 0.1)
    assert rig.reset_client.wait_for_service(timeout_sec=30.0)
    future = rig.reset_client.call_async(Trigger.Request())
    assert rig.spin(10.0, until=future.done)
    assert future.result().success and "homed" in future.result().message
    n = len(rig.states)  # states published after the reset (some may have been in flight at it)
    assert rig.spin(10.0, until=lambda: len(rig.states) > n + 5), "no /joint_states after the reset"
    assert np.abs(rig.arm_position() - HOME).max() < 0.05
    np.testing.assert_allclose(rig.emulator.emulator.last_command, HOME)


def test_diagnostics_report_the_rate_but_not_the_hidden_physics(rig_factory):
    rig = rig_factory(seed=6)
    assert rig.spin(15.0, until=lambda: any(  # discovery, then the 1 Hz diagnostics
        float({kv.key: kv.value for kv in s.values}.get("control_steps", 0)) > 20
        for d in rig.diagnostics for s in d.status))
    status = [s for d in rig.diagnostics for s in d.status if s.name == "arm_emulator: health"][-1]
    values = {kv.key: kv.value for kv in status.values}
    assert float(values["achieved_rate_hz"]) > 40
    assert values["command_topic"] == "/forward_position_controller/commands"
    hidden = rig.emulator.emulator.hidden_dynamics()
    text = " ".join([status.message] + list(values) + list(values.values()))
    leaked = [name for name in hidden if name in text or name.split("/")[0] in text]
    assert not leaked, f"diagnostics leak hidden parameters: {leaked}"


def test_a_best_effort_command_publisher_does_not_connect(rig_factory):
    """As with ros2_control (reliable subscriptions), a best-effort publisher gets no match."""
    rig = rig_factory(seed=7)
    best_effort = rig.probe.create_publisher(
        Float64MultiArray, "/forward_position_controller/commands",
        QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    assert rig.connected()
    rig.spin(0.5)  # intentional: discovery of the reliable publisher is done; 0.5 s more for a match that must not come
    assert best_effort.get_subscription_count() == 0


def test_invalid_parameters_are_refused_at_construction(tmp_path):
    with pytest.raises(ConfigError, match="mode"):
        ArmEmulatorNode(parameter_overrides=[Parameter("mode", value="turbo")])
    with pytest.raises(ConfigError, match="controller_joints"):
        ArmEmulatorNode(parameter_overrides=[Parameter("controller_joints", value=ARM[:6])])
    with pytest.raises(ConfigError, match="file not found"):
        ArmEmulatorNode(parameter_overrides=[Parameter("hidden_params_file", value=str(tmp_path / "no.yaml"))])


@pytest.mark.slow
def test_node_runs_as_a_process_from_the_params_file():
    """`sim2real node arm_emulator --ros-args --params-file ...` in its own process."""
    exe = Path(sys.executable).with_name("sim2real")
    cmd = [str(exe), "node", "arm_emulator", "--ros-args", "--params-file",
           str(REPO / "launch/config/arm_emulator.yaml"), "-p", "seed:=11"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    node = rclpy.create_node("external_bridge_probe")
    states = []
    node.create_subscription(JointState, "/joint_states", states.append, ROS2_CONTROL_QOS)
    pub = node.create_publisher(Float64MultiArray, "/forward_position_controller/commands", ROS2_CONTROL_QOS)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and proc.poll() is None and not (pub.get_subscription_count() and states):
            executor.spin_once(timeout_sec=0.05)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        target = HOME.copy()
        target[0] = 0.2
        pub.publish(Float64MultiArray(data=target.tolist()))
        end = time.monotonic() + 5
        while time.monotonic() < end and not (states and states[-1].position[0] > 0.15):
            executor.spin_once(timeout_sec=0.02)
        assert states and list(states[-1].name) == ARM + ["finger_joint"]
        assert states[-1].position[0] > 0.15, f"joint1 at {states[-1].position[0]:.3f}, commanded 0.2"
    finally:
        out = stop_process(proc, 15)
        executor.shutdown()
        node.destroy_node()
    assert proc.returncode == 0, f"exit code {proc.returncode}:\n{out[-2000:]}"
    assert "arm emulator up" in out and "realtime mode" in out
