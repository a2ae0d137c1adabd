"""``sim2real real``: the deployment graph (arm emulator, real bridge, policy node, recorder) in one
process, configured from launch/config, driving the shipped reach_lstm for real episodes."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SIM2REAL = str(Path(sys.executable).with_name("sim2real"))
JOINTS = [f"joint{i}" for i in range(1, 8)]


def held_within(distances: np.ndarray, radius: float, steps: int) -> bool:
    run = 0
    for d in distances:
        run = run + 1 if d < radius else 0
        if run >= steps:
            return True
    return False


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sim2real_real_runs_reach_lstm_on_the_emulator_and_records_the_episodes(tmp_path):
    from real_bridge.bagload import load_episodes
    from sim_bridge.tasks import ReachTask

    SUCCESS = ReachTask().success  # the policy's task's criterion, as sim2real real scores it
    from sim_bridge.oracle import ReachOracle
    from sim_bridge.profile import load_profile

    bag, results = tmp_path / "bag", tmp_path / "results.json"
    start = time.monotonic()
    proc = subprocess.run([SIM2REAL, "real", "--episodes", "2", "--policy", "reach_lstm", "--seed", "0",
                           "--record", str(bag), "--json", str(results)],
                          cwd=REPO, capture_output=True, text=True, timeout=90)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert elapsed < 60, f"took {elapsed:.1f} s"
    out = proc.stdout
    assert "policy side in /sim2real" in out and "arm emulator" in out, out

    # one line per episode, a summary; the policy reaches the goal at least once
    lines = [line for line in out.splitlines() if line.startswith("episode ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"], out
    printed = [line.split()[2] == "success" for line in lines]
    assert any(printed), out
    assert f"summary: policy 'reach_lstm': {sum(printed)}/2 reached the goal" in out, out

    data = json.loads(results.read_text())
    assert data["seed"] == 0 and data["hardware"] == "arm_emulator"
    (run,) = data["runs"]
    assert run["policy"] == "reach_lstm" and len(run["onnx_sha256"]) == 64
    assert [e["success"] for e in run["episodes"]] == printed
    assert run["bag"] == str(bag.resolve())

    # the bag: two complete episodes, aligned arrays, the printed outcomes and goals
    episodes = load_episodes(bag)
    assert [e.index for e in episodes] == [1, 2]
    fk = ReachOracle(load_profile("panda_like"))
    for ep, ok, result in zip(episodes, printed, run["episodes"]):
        n = len(ep)
        assert ep.complete and ep.success is ok
        assert ep.joint_names == tuple(JOINTS)
        assert n >= SUCCESS.hold_steps and abs(n - result["steps"]) <= 5, (n, result["steps"])
        assert ep.time_s.shape == ep.receive_ns.shape == (n,)
        for name in ("position", "velocity", "effort", "policy_command", "hardware_command"):
            assert getattr(ep, name).shape == (n, 7), name
        assert ep.goal.shape == (n, 3)
        assert np.isfinite(ep.position).all() and np.isfinite(ep.velocity).all()
        assert np.all(np.diff(ep.time_s) >= 0)  # a cycle without a new hardware state relays the last one again
        np.testing.assert_allclose(ep.goal[-1], result["goal_m"], atol=1e-3)
        assert np.isfinite(ep.policy_command[-SUCCESS.hold_steps:]).all()
        assert np.isfinite(ep.hardware_command[-SUCCESS.hold_steps:]).all()
        # the recorded joints tell the same story as the printed line (nominal FK)
        dist = np.array([np.linalg.norm(fk.end_effector(q) - g) for q, g in zip(ep.position, ep.goal)])
        assert held_within(dist, SUCCESS.radius_m, SUCCESS.hold_steps) is ok
        assert ep.policy["name"] == "reach_lstm" and ep.robot_profile == "panda_like"


@pytest.mark.ros
@pytest.mark.timeout(60)
def test_parameter_files_load_through_rcl_with_the_node_wildcard(tmp_path):
    import rclpy

    from sim2real.real import DeployError, file_parameters, params_file_args

    (tmp_path / "real_bridge.yaml").write_text(
        "/**/real_bridge:\n  ros__parameters:\n    seed: 123\n    velocity_scale: 0.5\n"
        "/**/other:\n  ros__parameters:\n    seed: 7\n")
    rclpy.init()
    try:
        params = file_parameters("real_bridge", "/sim2real", params_file_args(tmp_path, "real_bridge"))
        assert params["seed"] == 123 and params["velocity_scale"] == 0.5
        assert "margin_rad" not in params  # only what the file sets for this node
        with pytest.raises(DeployError, match="policy.yaml not found"):
            params_file_args(tmp_path, "policy")
    finally:
        rclpy.try_shutdown()


@pytest.mark.ros
@pytest.mark.timeout(60)
def test_sim2real_real_reports_a_missing_parameter_file(tmp_path):
    proc = subprocess.run([SIM2REAL, "real", "--params-dir", str(tmp_path), "--seed", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=50)
    assert proc.returncode == 2
    assert "arm_emulator.yaml not found" in proc.stderr, proc.stderr
