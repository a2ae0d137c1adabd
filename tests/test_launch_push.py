"""``task:=push`` in the launch graphs: one argument sets the real bridge's task (object pose
relay), the emulator's scene (the puck, placed for the goal it hears on the bridge's
current_goal) and the recorder's task (records object_pose), for ``ros2 launch`` and
``sim2real launch`` alike (both resolve the graph with sim2real.launch_graph.resolve)."""
from __future__ import annotations

import subprocess
import sys

import pytest

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
