"""``task:=push`` in the launch graphs: one argument sets the real bridge's task (object pose
relay), the emulator's scene (the puck, placed for the goal it hears on the bridge's
current_goal) and the recorder's task (records object_pose), for ``ros2 launch`` and
``sim2real launch`` alike (both resolve the graph with sim2real.launch_graph.resolve)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from rigs import run_until_logged
from sim2real.launch_graph import launch_dir, load_graph, resolve


def _nodes(graph: str, **values):
    return {n.name: n for n in resolve(load_graph(graph, launch_dir() / "graphs"), values)}


@pytest.mark.parametrize("namespace", ["sim2real", "/sim2real", "/sim2real/"])
def test_real_graph_task_push_reaches_every_node(namespace):
    nodes = _nodes("real", task="push", emulator="true", record="/tmp/never_created_bag", namespace=namespace)
    assert nodes["real_bridge"].parameters["task"] == "push"
    assert nodes["arm_emulator"].parameters["task"] == "push"
    assert nodes["recorder"].parameters["task"] == "push"
    # the emulator (at the root) hears the bridge's goal: one '/' however the namespace is written
    assert nodes["arm_emulator"].remappings == (("current_goal", "/sim2real/current_goal"),)
    assert nodes["arm_emulator"].namespace == "/"


def test_real_graph_without_task_keeps_the_parameter_files_values():
    nodes = _nodes("real", emulator="true")
    assert all("task" not in n.parameters for n in nodes.values())


def test_sim_graph_task_push_reaches_the_recorder():
    nodes = _nodes("sim", task="push", record="/tmp/never_created_bag")
    assert nodes["sim_bridge"].parameters["task"] == "push"
    assert nodes["recorder"].parameters["task"] == "push"


def test_sim2real_launch_dry_run_passes_the_task():
    proc = subprocess.run([sys.executable, "-m", "sim2real.cli", "launch", "real", "--emulator", "--task", "push",
                           "--dry-run"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    assert "task:=" in lines["/arm_emulator"] and "push" in lines["/arm_emulator"]
    assert "current_goal:=/sim2real/current_goal" in lines["/arm_emulator"]
    assert "push" in lines["/sim2real/real_bridge"]


def test_shipped_parameter_files_declare_the_push_parameters():
    from sim_bridge.config import load_yaml_file

    config = launch_dir() / "config"
    bridge = load_yaml_file(config / "real_bridge.yaml")["/**/real_bridge"]["ros__parameters"]
    assert bridge["object_pose_topic"] == "/mocap/puck/pose" and bridge["object_pose_stale_s"] == 0.25
    emulator = load_yaml_file(config / "arm_emulator.yaml")["/**/arm_emulator"]["ros__parameters"]
    assert emulator["object_pose_topic"] == bridge["object_pose_topic"]
    assert emulator["frame_id"] == bridge["frame_id"] == "base_link"
    assert load_yaml_file(config / "recorder.yaml")["/**/recorder"]["ros__parameters"]["task"] == ""


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sim2real_launch_real_push_graph_as_processes_records_object_poses(tmp_path):
    """The push real graph as one process per node (emulator, bridge, a push policy, recorder):
    the tracker stand-in's poses go through the bridge to the policy side and into the bag."""
    pytest.importorskip("torch")
    import shutil

    import numpy as np
    import yaml

    from policies.testing import export_dummy_policy
    from real_bridge.bagload import load_episodes

    export_dummy_policy(tmp_path / "policies" / "dummy_push", obs_size=29, task="push", name="dummy_push")
    params = tmp_path / "config"
    shutil.copytree(launch_dir() / "config", params)
    policy_yaml = params / "policy.yaml"
    data = yaml.safe_load(policy_yaml.read_text())
    data["/**/policy"]["ros__parameters"].update(policy="dummy_push", policy_dir=str(tmp_path / "policies"))
    policy_yaml.write_text(yaml.safe_dump(data))
    bag = tmp_path / "bag"
    wanted = ["relayed to /sim2real/object_pose", "a push object tracked on /mocap/puck/pose", "policy 'dummy_push'",
              "topic(s) to "]
    # 3 s of recording once the four nodes are up, the recorder's subscriptions included (not a
    # fixed duration from the start: start-up time on a loaded machine varies by seconds; on a slow
    # host the recorder came up last and recorded no joint state within 3 s of the others)
    logged, returncode, out = run_until_logged(
        [sys.executable, "-m", "sim2real.cli", "launch", "real", "--emulator", "--task", "push", "--record", str(bag),
         "--params-dir", str(params), "--stop-timeout-s", "30"], wanted, then_s=3.0)
    assert logged, ([w for w in wanted if w not in out], out[-4000:])
    assert returncode == 0, out[-4000:]
    assert "all 4 node(s) stopped cleanly" in out, out[-4000:]
    (episode,) = load_episodes(bag)   # no episode markers: the whole bag
    assert episode.metadata["metadata"]["task"] == "push"
    assert episode.topics["object_pose"] == "/sim2real/object_pose"
    seen = np.isfinite(episode.object_pose[:, 0])   # after the first relayed pose, at every joint state
    assert len(episode) >= 10 and seen.sum() >= 0.8 * len(episode), (seen.sum(), len(episode))
    assert np.all(np.abs(episode.object_pose[seen, 2] - 0.016) < 0.012)   # on the table, base frame
