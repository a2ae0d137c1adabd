"""The composed deployment, ``sim2real node sim_policy``: the sim bridge and the policy node in
one process (sim2real/composed.py), as a process with real rclpy and DDS."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rigs import ros, spin_until, stop_process, wait_for_match  # noqa: F401 (ros: autouse fixture)

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from policies.node import shipped_policy_dir  # noqa: E402
from sim_bridge import interface  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
EXE = str(Path(sys.executable).with_name("sim2real"))
NS = "/composed_test"


def params_file(tmp_path: Path, bridge: dict, policy: dict) -> str:
    """Each node's parameters, scoped by node name (any namespace)."""
    path = tmp_path / "composed.yaml"
    path.write_text(yaml.safe_dump({"/**/sim_bridge": {"ros__parameters": bridge},
                                    "/**/policy": {"ros__parameters": policy}}))
    return str(path)


def test_a_bad_policy_stops_the_composed_process_with_exit_2_and_the_node_that_failed(tmp_path):
    bad = subprocess.run([EXE, "node", "sim_policy", "--ros-args", "-r", f"__ns:={NS}_bad", "--params-file",
                          params_file(tmp_path, {"randomization_file": "none"}, {"policy": "nope"})],
                         capture_output=True, text=True, timeout=90)
    assert bad.returncode == 2, bad.stderr
    assert "sim_policy: cannot start policy" in bad.stderr and "no policy 'nope'" in bad.stderr, bad.stderr


def test_a_bad_transport_is_refused_before_rclpy_starts():
    bad = subprocess.run([EXE, "node", "sim_policy"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SIM2REAL_COMPOSED_TRANSPORT": "shm"})
    assert bad.returncode == 2 and "SIM2REAL_COMPOSED_TRANSPORT='shm': must be one of intra, dds" in bad.stderr


@pytest.mark.parametrize("transport", ["intra", "dds"])
def test_the_bridge_and_the_policy_close_the_loop_in_one_process_and_stop_on_sigint(tmp_path, transport):
    """Intra-process (the default) or over DDS: the loop closes, and the topics are published
    for others either way (the probe here sees both)."""
    if not (shipped_policy_dir() / "reach_lstm" / "manifest.json").is_file():
        pytest.skip("no shipped reach_lstm (run `make train`)")
    params = params_file(tmp_path, {"randomization_file": "none", "mode": "realtime"},
                         {"policy": "reach_lstm", "trigger": "state"})
    proc = subprocess.Popen([EXE, "node", "sim_policy", "--ros-args", "-r", f"__ns:={NS}_{transport}",
                             "--params-file", params], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "SIM2REAL_COMPOSED_TRANSPORT": transport})
    probe = rclpy.create_node("composed_probe", namespace=f"{NS}_{transport}")
    states, commands = [], []
    state_sub = probe.create_subscription(JointState, interface.JOINT_STATES, states.append, 50)
    command_sub = probe.create_subscription(Float64MultiArray, interface.JOINT_COMMANDS, commands.append, 50)
    executor = SingleThreadedExecutor()
    executor.add_node(probe)

    def spin_for(predicate, timeout):  # until it holds, or the process ended
        return spin_until(executor, timeout, lambda: predicate() or proc.poll() is not None) and predicate()
    try:
        assert spin_for(lambda: wait_for_match(state_sub, command_sub, timeout=0.0), 60.0), \
            "the composed process's publishers were never discovered"
        assert spin_for(lambda: len(commands) >= 50 and len(states) >= 50, 60.0), \
            f"{len(states)} states, {len(commands)} commands"
        assert proc.poll() is None
    finally:
        out = stop_process(proc, 20)
        executor.shutdown()
        probe.destroy_node()
    assert proc.returncode == 0, f"exit code {proc.returncode}:\n{out[-2000:]}"
    assert "sim bridge up" in out and "randomization 'none'" in out, out[-2000:]
    assert "trigger 'state'" in out and "active: policy 'reach_lstm'" in out, out[-2000:]
    assert all(len(c.data) == len(states[-1].name) for c in commands[-10:])
