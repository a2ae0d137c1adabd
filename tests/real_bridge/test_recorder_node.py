"""The recorder node with real rclpy and DDS: live topics into a bag, episode services, diagnostics, CLI."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rigs import ros  # noqa: F401 (ros: autouse fixture)
import yaml

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import PointStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64, Float64MultiArray  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from real_bridge.bagload import load_episodes  # noqa: E402
from real_bridge.recorder_node import DEFAULT_TOPICS, RecorderNode  # noqa: E402
from sim_bridge import interface  # noqa: E402

pytestmark = pytest.mark.ros
SIM2REAL = str(Path(sys.executable).with_name("sim2real"))
JOINTS = [f"joint{i}" for i in range(1, 8)]
HW = "/forward_position_controller/commands"


class Probe:
    """Publishes what a bridge and a policy would, and listens to /diagnostics."""

    def __init__(self, name: str = "recorder_probe"):
        self.node = rclpy.create_node(name)
        self.states = self.node.create_publisher(JointState, interface.JOINT_STATES, interface.STATE_QOS)
        self.commands = self.node.create_publisher(Float64MultiArray, interface.JOINT_COMMANDS, interface.COMMAND_QOS)
        self.hardware = self.node.create_publisher(Float64MultiArray, HW, interface.COMMAND_QOS)
        self.goal = self.node.create_publisher(PointStamped, interface.CURRENT_GOAL, interface.LATCHED_QOS)
        self.diagnostics: list[DiagnosticArray] = []
        self.node.create_subscription(DiagnosticArray, interface.DIAGNOSTICS, self.diagnostics.append,
                                      interface.DIAGNOSTICS_QOS)
        self.k = 0

    def publish_step(self) -> None:
        """State k (joint order reversed: the loader maps by name), then commands k."""
        k = self.k
        msg = JointState(name=list(reversed(JOINTS)), position=[float(k + j) for j in reversed(range(7))])
        msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + k // 100, (k % 100) * 10_000_000
        self.states.publish(msg)
        self.commands.publish(Float64MultiArray(data=[float(k)] * 7))
        self.hardware.publish(Float64MultiArray(data=[float(-k)] * 7))
        self.k += 1


def spin(executor, seconds: float, until=None) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.005)
        if until is not None and until():
            return True
    return until is None


def call(executor, client, seconds: float = 10.0) -> Trigger.Response:
    assert client.wait_for_service(timeout_sec=30.0), f"{client.srv_name}: service discovery"
    future = client.call_async(Trigger.Request())
    assert spin(executor, seconds, until=future.done), "service did not answer"
    return future.result()


def test_node_records_a_live_stream_with_episode_markers(tmp_path):
    bag = tmp_path / "live"
    recorder = RecorderNode(parameter_overrides=[
        Parameter("output", value=str(bag)), Parameter("note", value="probe run"),
        Parameter("policy_name", value="reach_lstm"), Parameter("policy_sha256", value="ab" * 32),
        Parameter("flush_interval_s", value=0.1),
        Parameter("topics", value=[*DEFAULT_TOPICS, "/probe_temperature"])])  # type found in the graph
    probe = Probe()
    temperature = probe.node.create_publisher(Float64, "/probe_temperature", 10)
    start = probe.node.create_client(Trigger, "/recorder/start_episode")
    end_ok = probe.node.create_client(Trigger, "/recorder/end_episode_success")
    executor = SingleThreadedExecutor()
    executor.add_node(recorder)
    executor.add_node(probe.node)
    try:
        assert recorder.recorder is not None, recorder.error
        goal = PointStamped()
        goal.point.x, goal.point.y, goal.point.z = 0.5, 0.1, 0.3
        probe.goal.publish(goal)  # latched before anything else: the recorder gets it on matching
        assert spin(executor, 30.0, until=lambda: all(
            p.get_subscription_count() > 0 for p in (probe.states, probe.commands, probe.hardware))), "discovery"
        for _ in range(10):  # before the episode
            probe.publish_step()
            spin(executor, 0.01)  # pacing: the recorder takes each step before the next
        response = call(executor, start)
        assert response.success and response.message == "episode 1 started"
        assert spin(executor, 30.0, until=lambda: temperature.get_subscription_count() > 0), "topic discovery"
        for _ in range(50):
            probe.publish_step()
            temperature.publish(Float64(data=21.5))
            spin(executor, 0.01)
        response = call(executor, end_ok)
        assert response.success and response.message == "episode 1 ended (success)"
        assert not call(executor, end_ok).success, "no episode in progress"
        # the 1 Hz diagnostics (the probe's subscription matched while the steps went out)
        assert spin(executor, 15.0, until=lambda: any(
            s.name == "recorder: bag" and int(dict((kv.key, kv.value) for kv in s.values)["written"]) > 100
            for d in probe.diagnostics for s in d.status)), "no diagnostics with the steps written"
        status = [s for d in probe.diagnostics for s in d.status if s.name == "recorder: bag"][-1]
        values = {kv.key: kv.value for kv in status.values}
        assert values["path"] == str(bag) and values["state"] == "recording" and values["dropped"] == "0"
        assert values["failed"] == "0" and status.level == DiagnosticStatus.OK
    finally:
        stats = recorder.close_bag()
        executor.shutdown()
        recorder.destroy_node()
        probe.node.destroy_node()

    assert stats.state == "closed" and stats.dropped == 0 and stats.error == ""
    assert stats.topics["/joint_states"].written == 60 and stats.topics[HW].written == 60
    assert stats.topics["/current_goal"].written == 1 and stats.topics["/episode"].written == 2
    assert stats.topics["/probe_temperature"].written > 0
    (episode,) = load_episodes(bag)
    assert episode.index == 1 and episode.complete and episode.success is True
    assert len(episode) == 50 and episode.joint_names == tuple(JOINTS)
    k = np.arange(10, 60)
    np.testing.assert_allclose(episode.position, k[:, None] + np.arange(7))
    np.testing.assert_allclose(episode.time_s, 100 + k * 0.01)
    # Commands k follow state k: at state k the latest ones are k - 1 (zero-order hold).
    np.testing.assert_allclose(episode.policy_command, np.repeat((k - 1)[:, None], 7, axis=1))
    np.testing.assert_allclose(episode.hardware_command, -np.repeat((k - 1)[:, None], 7, axis=1))
    np.testing.assert_allclose(episode.goal, np.tile([0.5, 0.1, 0.3], (50, 1)))
    meta = episode.metadata["metadata"]
    assert meta["note"] == "probe run" and meta["robot_profile"]["joint_names"] == JOINTS
    assert meta["policy"] == {"name": "reach_lstm", "sha256": "ab" * 32}
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    goal_topic = next(t for t in info["topics_with_message_count"] if t["topic_metadata"]["name"] == "/current_goal")
    assert goal_topic["topic_metadata"]["offered_qos_profiles"][0]["durability"] == "transient_local"


def test_node_keeps_running_when_the_bag_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    recorder = RecorderNode(parameter_overrides=[Parameter("output", value=str(blocker / "bag"))])
    probe = Probe("recorder_probe_2")
    start = probe.node.create_client(Trigger, "/recorder/start_episode")
    executor = SingleThreadedExecutor()
    executor.add_node(recorder)
    executor.add_node(probe.node)
    try:
        assert recorder.recorder is None
        assert str(blocker / "bag") in recorder.error and "Not a directory (ENOTDIR)" in recorder.error
        response = call(executor, start)
        assert not response.success and "ENOTDIR" in response.message
        # the 1 Hz diagnostics, once the probe's subscription matched (discovery, then a report)
        assert spin(executor, 15.0, until=lambda: any(s.name == "recorder: bag" for d in probe.diagnostics
                                                      for s in d.status)), "no diagnostics"
        status = [s for d in probe.diagnostics for s in d.status if s.name == "recorder: bag"][-1]
        assert status.level == DiagnosticStatus.ERROR and "not recording" in status.message
        assert str(blocker / "bag") in status.message
    finally:
        executor.shutdown()
        recorder.destroy_node()
        probe.node.destroy_node()


class StatePublisher:
    """A joint-state publisher made *before* the recorder process starts, so DDS discovery runs
    while the process boots (on a busy machine discovery can outlast a short recording)."""

    def __init__(self, name: str):
        self.node = rclpy.create_node(name)
        self.pub = self.node.create_publisher(JointState, interface.JOINT_STATES, interface.STATE_QOS)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)

    def publish_while(self, proc, publish_s: float = 30.0, timeout_s: float = 30.0) -> int:
        """Publish joint states at ~50 Hz from when the process subscribes, for publish_s or until it exits."""
        sent = 0
        try:
            end = time.monotonic() + timeout_s
            while time.monotonic() < end and proc.poll() is None:
                if self.pub.get_subscription_count() > 0:
                    end = min(end, time.monotonic() + publish_s) if sent == 0 else end
                    msg = JointState(name=JOINTS, position=[float(sent)] * 7)
                    msg.header.stamp.sec = sent
                    self.pub.publish(msg)
                    sent += 1
                self.executor.spin_once(timeout_sec=0.02)
        finally:
            self.executor.shutdown()
            self.node.destroy_node()
        return sent


@pytest.mark.slow
def test_record_command_runs_for_the_duration_and_prints_a_summary(tmp_path):
    bag = tmp_path / "cli"
    probe = StatePublisher("cli_probe")
    # 6 s of recording: the duration counts from the recorder's start, discovery from before it
    proc = subprocess.Popen([SIM2REAL, "record", "--output", str(bag), "--duration-s", "6", "--note", "from the cli"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    sent = probe.publish_while(proc)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert sent > 10, f"the recorder never subscribed: {out}{err}"
    assert f"to {bag}" in out and "(closed)" in out and "episodes: 0" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("/joint_states"))
    written = int(line.split()[1])
    assert 10 < written <= sent
    (episode,) = load_episodes(bag)
    assert len(episode) == written and episode.metadata["metadata"]["note"] == "from the cli"
    assert np.all(np.diff(episode.position[:, 0]) > 0)


@pytest.mark.slow
def test_recorder_node_process_closes_the_bag_on_ctrl_c(tmp_path):
    bag = tmp_path / "node"
    probe = StatePublisher("node_probe")
    proc = subprocess.Popen([SIM2REAL, "node", "recorder", "--ros-args", "--params-file",
                             str(Path(__file__).resolve().parents[2] / "launch/config/recorder.yaml"),
                             "-p", f"output:={bag}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ))
    sent = probe.publish_while(proc, publish_s=1.5)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert sent > 0 and "(closed)" in out, out
    assert yaml.safe_load((bag / "sim2real_metadata.yaml").read_text())["state"] == "closed"
    assert len(load_episodes(bag)[0]) > 0
