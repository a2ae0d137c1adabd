"""End to end, as a user runs it: the sim graph and the real graph (arm emulator) as launched
process graphs, a policy swap in the running real graph, recorded episodes, a calibration
from them, and the calibrated distribution pushed into the running sim bridge.

Everything goes through the real CLI (`sim2real launch sim|real`, `sim2real calibrate`) and
real DDS between processes; the test process is the operator (services and parameters over
ROS, like `ros2 service call` / `ros2 param set`).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.e2e]

SIM_NS = "/e2e_sim"
REAL_NS = "/sim2real"


class Graph:
    """`sim2real launch <graph> ...` in its own process group, output to a log file."""

    def __init__(self, name: str, args: list[str], log: Path):
        self.log = log
        self._fh = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "sim2real.cli", "launch", name, *args],
                                     stdin=subprocess.DEVNULL, stdout=self._fh, stderr=subprocess.STDOUT,
                                     process_group=0)

    def output(self) -> str:
        if not self._fh.closed:
            self._fh.flush()
        return self.log.read_text()

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode


@pytest.fixture
def operator():
    import rclpy  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("e2e_operator", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield Operator(node, executor)
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)


class Operator:
    def __init__(self, node, executor):
        self.node, self.executor = node, executor
        self._clients = {}

    def call(self, srv_type, name: str, request=None, timeout: float = 20.0):
        client = self._clients.get(name) or self.node.create_client(srv_type, name)
        self._clients[name] = client
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} did not appear"
        future = client.call_async(request or srv_type.Request())
        self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        assert future.done(), f"{name}: no answer within {timeout} s"
        return future.result()

    def trigger(self, name: str):
        from std_srvs.srv import Trigger  # noqa: PLC0415

        return self.call(Trigger, name)

    def set_param(self, node: str, name: str, value: str):
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: PLC0415
        from rcl_interfaces.srv import SetParameters  # noqa: PLC0415

        req = SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(
            type=ParameterType.PARAMETER_STRING, string_value=value))])
        return self.call(SetParameters, f"{node}/set_parameters", req).results[0]

    def get_param(self, node: str, name: str):
        from rcl_interfaces.srv import GetParameters  # noqa: PLC0415

        return self.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=[name])).values[0]

    def count_messages(self, topic: str, msg_type, seconds: float, *, at_least: int | None = None,
                       discovery_s: float = 60.0) -> int:
        """Messages on ``topic`` within ``seconds`` (or until ``at_least`` arrived), counted from
        when the new subscription matched a publisher (DDS discovery, up to ``discovery_s``: a
        process that is still starting has none yet), so that discovery does not eat the window."""
        from rclpy.qos import qos_profile_sensor_data  # noqa: PLC0415

        got = []
        sub = self.node.create_subscription(msg_type, topic, got.append, qos_profile_sensor_data)
        matched_by = time.monotonic() + discovery_s
        while sub.get_publisher_count() < 1 and time.monotonic() < matched_by:
            self.executor.spin_once(timeout_sec=0.05)
        end = time.monotonic() + seconds
        while time.monotonic() < end and (at_least is None or len(got) < at_least):
            self.executor.spin_once(timeout_sec=0.05)
        self.node.destroy_subscription(sub)
        return len(got)

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass, spinning (intentional: an episode's length)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)


def episode(op: Operator, seconds: float = 2.5) -> None:
    """One recorded episode, the operator's way: home the arm, new goal, zero the policy's
    recurrent state, open the episode, let the policy run, close it."""
    assert op.trigger("/arm_emulator/reset").success
    assert op.trigger(f"{REAL_NS}/reset").success
    assert op.trigger(f"{REAL_NS}/policy/reset").success
    assert op.trigger(f"{REAL_NS}/recorder/start_episode").success
    op.wait(seconds)
    assert op.trigger(f"{REAL_NS}/recorder/end_episode").success


def test_sim_and_real_graphs_swap_record_calibrate_and_push(tmp_path, operator):
    from std_msgs.msg import Float64MultiArray  # noqa: PLC0415

    op = operator
    bag = tmp_path / "bag"
    sim = Graph("sim", ["--namespace", SIM_NS.strip("/"), "--randomization-dir", str(tmp_path)], tmp_path / "sim.log")
    real = Graph("real", ["--emulator", "--record", str(bag)], tmp_path / "real.log")
    try:
        # both graphs up (process start-up included): the policies command their bridges
        assert op.count_messages(f"{SIM_NS}/joint_commands", Float64MultiArray, 60.0, at_least=20) >= 20, \
            sim.output()[-3000:]
        assert op.count_messages(f"{REAL_NS}/joint_commands", Float64MultiArray, 60.0, at_least=20) >= 20, \
            real.output()[-3000:]

        episode(op)
        episode(op)
        # swap in the running real graph, as `ros2 param set /sim2real/policy policy reach_lstm_nominal`
        result = op.set_param(f"{REAL_NS}/policy", "policy", "reach_lstm_nominal")
        assert result.successful, result.reason
        end = time.monotonic() + 20.0   # the parameter reads back the new policy (at once, or soon)
        while op.get_param(f"{REAL_NS}/policy", "policy").string_value != "reach_lstm_nominal" \
                and time.monotonic() < end:
            op.wait(0.05)
        assert op.get_param(f"{REAL_NS}/policy", "policy").string_value == "reach_lstm_nominal"
        # a bad choice is refused with the reason, the running policy stays
        bad = op.set_param(f"{REAL_NS}/policy", "policy", "../../etc/passwd")
        assert not bad.successful and bad.reason
        assert op.get_param(f"{REAL_NS}/policy", "policy").string_value == "reach_lstm_nominal"
        assert op.count_messages(f"{REAL_NS}/joint_commands", Float64MultiArray, 1.0) > 10  # no gap
        episode(op)
        assert real.stop() == 0, real.output()[-4000:]
        assert "reach_lstm_nominal" in real.output()  # the node logged the swap

        # calibrate from the recording (open loop: the bag holds episodes of two policies)
        out = tmp_path / "calibrated.yaml"
        cal = subprocess.run(
            [sys.executable, "-m", "sim2real.cli", "calibrate", "--bags", str(bag), "--prior", "default",
             "--out", str(out), "--mode", "open_loop", "--samples", "24", "--iterations", "2", "--no-plots",
             "--push", f"{SIM_NS}/sim_bridge"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
        assert cal.returncode == 0, cal.stdout[-3000:] + cal.stderr[-3000:]
        assert "accepted" in cal.stdout, cal.stdout
        doc = yaml.safe_load(out.read_text())
        assert doc["joint_gaussian"]["names"] and doc["provenance"]["calibration"]["iterations"] == 2
        assert doc["provenance"]["calibration"]["bags"] == [str(bag.resolve())]
        assert len(doc["provenance"]["calibration"]["episodes"]) == 3

        # the running sim bridge took it, and runs its next episode from it
        assert op.get_param(f"{SIM_NS}/sim_bridge", "randomization_file").string_value == str(out.resolve())
        assert op.trigger(f"{SIM_NS}/reset").success
        assert op.count_messages(f"{SIM_NS}/joint_commands", Float64MultiArray, 2.0) > 20
    finally:
        real_rc = real.stop()
        sim_rc = sim.stop()
    assert sim_rc == 0, sim.output()[-4000:]
    assert real_rc == 0


@pytest.mark.timeout(420)
def test_push_graphs_record_calibrate_the_puck_and_push_it_into_the_running_sim_bridge(tmp_path, operator):
    """Push through the loop (issue 13): the push sim graph (sim bridge with the puck + push_lstm)
    runs while the push real graph (emulator with the hidden puck, real bridge relaying the
    tracker, push_lstm, recorder) records episodes; a small closed-loop calibration of the puck's
    physics from that bag is pushed into the running sim bridge."""
    from std_msgs.msg import Float64MultiArray  # noqa: PLC0415

    op = operator
    ns = "/e2e_push_sim"
    bag, results = tmp_path / "bag", tmp_path / "real.json"
    sim = Graph("sim", ["--namespace", ns.strip("/"), "--task", "push", "--policy", "push_lstm",
                        "--randomization-dir", str(tmp_path)], tmp_path / "sim.log")
    try:
        assert op.count_messages(f"{ns}/joint_commands", Float64MultiArray, 60.0, at_least=20) >= 20, \
            sim.output()[-3000:]
        real = subprocess.run(
            [sys.executable, "-m", "sim2real.cli", "real", "--task", "push", "--policy", "push_lstm",
             "--episodes", "2", "--episode-s", "4", "--seed", "3", "--record", str(bag), "--json", str(results)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
        assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-3000:]

        out = tmp_path / "push_calibrated.yaml"
        cal = subprocess.run(
            [sys.executable, "-m", "sim2real.cli", "calibrate", "--bags", str(bag), "--prior", "push_default",
             "--settings", "push", "--out", str(out), "--samples", "16", "--iterations", "1", "--no-plots",
             "--push", f"{ns}/sim_bridge"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
        assert cal.returncode == 0, cal.stdout[-3000:] + cal.stderr[-3000:]
        assert "accepted" in cal.stdout, cal.stdout
        doc = yaml.safe_load(out.read_text())
        names = doc["joint_gaussian"]["names"]
        assert {"puck_mass/puck", "puck_friction/puck", "puck_size/puck"} <= set(names), names
        prov = doc["provenance"]["calibration"]
        assert prov["mode"] == "closed_loop" and prov["settings"]["task"] == "push" and len(prov["episodes"]) == 2

        # the running push sim bridge took it and runs its next episode from it
        assert op.get_param(f"{ns}/sim_bridge", "randomization_file").string_value == str(out.resolve())
        assert op.trigger(f"{ns}/reset").success
        assert op.count_messages(f"{ns}/joint_commands", Float64MultiArray, 2.0) > 20
    finally:
        sim_rc = sim.stop()
    assert sim_rc == 0, sim.output()[-4000:]
