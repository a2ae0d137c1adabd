"""``sim2real real --task push``: the real graph with the puck (arm emulator with hidden object
physics and its tracker stand-in, real bridge relaying the object pose, policy node, recorder),
driven by a dummy push policy, recorded and loaded back; and the scripted pusher as controller."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SIM2REAL = str(Path(sys.executable).with_name("sim2real"))


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sim2real_real_push_runs_a_dummy_push_policy_and_records_object_poses(tmp_path):
    pytest.importorskip("torch")
    from policies.testing import export_dummy_policy
    from real_bridge.bagload import load_episodes

    policies = tmp_path / "policies"
    export_dummy_policy(policies / "dummy_push", obs_size=29, task="push", name="dummy_push")
    bag, results = tmp_path / "bag", tmp_path / "results.json"
    proc = subprocess.run([SIM2REAL, "real", "--task", "push", "--policy", "dummy_push", "--policy-dir", str(policies),
                           "--episodes", "2", "--episode-s", "2", "--seed", "5", "--record", str(bag),
                           "--json", str(results)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    out = proc.stdout
    assert "a push object from emulator_push_hidden.yaml, tracked on /mocap/puck/pose" in out, out
    assert "the tracked object pose the bridge relayed" in out, out
    lines = [line for line in out.splitlines() if line.startswith("episode ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"], out

    data = json.loads(results.read_text())
    (run,) = data["runs"]
    assert run["task"] == "push" and run["policy"] == "dummy_push"
    assert data["success_criterion"]["radius_m"] == 0.05
    assert data["success_criterion"]["measured_by"] == "the tracked object pose the bridge relayed"

    episodes = load_episodes(bag)
    assert [e.index for e in episodes] == [1, 2]
    for ep, result in zip(episodes, run["episodes"]):
        assert ep.metadata["metadata"]["task"] == "push"
        assert ep.topics["object_pose"] == "/sim2real/object_pose"
        n = len(ep)
        assert n >= 10 and ep.object_pose.shape == (n, 5)
        assert np.isfinite(ep.object_pose).all(), "a state without a relayed pose before it"
        # the puck lies on the table (z ~ its half height 1.6 cm, tracker noise 2 mm) in the start region
        assert np.all(np.abs(ep.object_pose[:, 2] - 0.016) < 0.012)
        assert np.all((ep.object_pose[:, 0] > 0.3) & (ep.object_pose[:, 0] < 0.65))
        np.testing.assert_allclose(np.hypot(ep.object_pose[:, 3], ep.object_pose[:, 4]), 1.0, atol=1e-6)
        # poses arrive about every control period (5% dropouts): the held one is rarely old
        assert np.median(ep.object_pose_age_s) < 0.05, np.median(ep.object_pose_age_s)
        # the puck starts 10-25 cm from the goal (the emulator's homing placed it for the bridge's goal)
        start_error = float(np.hypot(*(ep.object_pose[0, :2] - ep.goal[0, :2])))
        assert 0.09 < start_error < 0.27, start_error
        np.testing.assert_allclose(ep.goal[-1], result["goal_m"], atol=1e-3)


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sim2real_real_push_runs_the_scripted_pusher(tmp_path):
    results = tmp_path / "results.json"
    proc = subprocess.run([SIM2REAL, "real", "--task", "push", "--controller", "scripted", "--episodes", "1",
                           "--episode-s", "3", "--seed", "2", "--json", str(results)],
                          cwd=REPO, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = json.loads(results.read_text())["runs"]
    assert run["policy"] == "scripted_push" and run["task"] == "push"
    (episode,) = run["episodes"]
    assert episode["steps"] >= 10   # scored on the relayed object poses, one step per relayed joint state
    assert 0.0 < episode["min_error_m"] < 0.3
    assert "summary: policy 'scripted_push'" in proc.stdout, proc.stdout


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sim2real_real_strike_records_a_sliding_puck_for_calibration_to_replay(tmp_path):
    """--controller strike through the real bridge on the emulator: the bag names the strike
    controller, its puck moved (the strike), and its episodes load marked for replay."""
    from calibration.episodes import load_reference_episodes
    from calibration.job import scripted_bags
    from sim_bridge.profile import load_profile

    bag = tmp_path / "strikes"
    proc = subprocess.run([SIM2REAL, "real", "--task", "push", "--controller", "strike", "--episodes", "1",
                           "--episode-s", "4", "--seed", "2", "--record", str(bag)],
                          cwd=REPO, capture_output=True, text=True, timeout=130)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "summary: policy 'strike_push'" in proc.stdout, proc.stdout
    assert scripted_bags([bag]) == [str(bag)]
    (ep,) = load_reference_episodes([bag], load_profile("panda_like"), replay=True)
    moved = float(np.linalg.norm(ep.object_pose[-1, :2] - ep.object_pose[0, :2]))
    assert ep.replay and moved > 0.02, moved
    bad = subprocess.run([SIM2REAL, "real", "--task", "reach", "--controller", "strike", "--episodes", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "need an object to strike" in bad.stdout + bad.stderr, bad.stdout + bad.stderr


@pytest.mark.ros
@pytest.mark.timeout(60)
def test_sim2real_real_refuses_a_reach_policy_on_the_push_graph(tmp_path):
    proc = subprocess.run([SIM2REAL, "real", "--task", "push", "--policy", "reach_lstm", "--episodes", "1",
                           "--seed", "1"], cwd=REPO, capture_output=True, text=True, timeout=50)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "trained for task 'reach'" in proc.stderr and "runs task 'push'" in proc.stderr, proc.stderr


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_sim2real_real_sample_actions_has_the_policy_node_sample_and_refuses_a_policy_without_a_std(tmp_path):
    """--sample-actions sets the policy node's sample_actions (seeded with --seed); the start line
    says what the loaded runtime does; a manifest without action_std is refused with the reason."""
    pytest.importorskip("torch")
    from policies.testing import export_dummy_policy

    results = tmp_path / "results.json"
    proc = subprocess.run([SIM2REAL, "real", "--task", "push", "--policy", "push_lstm", "--sample-actions",
                           "--episodes", "1", "--episode-s", "1", "--seed", "3", "--json", str(results)],
                          cwd=REPO, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sampled actions)" in proc.stdout, proc.stdout
    assert json.loads(results.read_text())["sample_actions"] is True

    policies = tmp_path / "policies"
    export_dummy_policy(policies / "dummy_push", obs_size=29, task="push", name="dummy_push")
    proc = subprocess.run([SIM2REAL, "real", "--task", "push", "--policy", "dummy_push", "--policy-dir", str(policies),
                           "--sample-actions", "--episodes", "1", "--episode-s", "1", "--seed", "3"],
                          cwd=REPO, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "action_std" in proc.stderr, proc.stderr

    proc = subprocess.run([SIM2REAL, "real", "--task", "push", "--controller", "scripted", "--sample-actions"],
                          cwd=REPO, capture_output=True, text=True, timeout=50)
    assert proc.returncode == 2 and "--sample-actions applies to the policy node" in proc.stderr, proc.stderr


def test_on_a_real_arm_the_operator_is_asked_to_place_the_puck(capsys, monkeypatch):
    """--no-emulator: nothing places the puck; the runner prints the goal (and waits for Enter on a terminal)."""
    from types import SimpleNamespace

    from sim2real.real import DeploymentGraph
    from sim_bridge.tasks import make_task

    graph = SimpleNamespace(task=make_task("push"), bridge=SimpleNamespace(core=SimpleNamespace(base_frame="base_link")))
    DeploymentGraph._operator_places_object(graph, 3, np.array([0.5, -0.1, 0.015]))
    out = capsys.readouterr().out
    assert "episode 3: goal (0.500, -0.100) m in base_link: place the object 10-25 cm from it" in out, out
    asked = []
    monkeypatch.setattr("sys.stdin", SimpleNamespace(isatty=lambda: True))
    monkeypatch.setattr("builtins.input", lambda text: asked.append(text) or "")
    DeploymentGraph._operator_places_object(graph, 4, np.array([0.5, -0.1, 0.015]))
    assert asked and asked[0].endswith("then press Enter ")
