"""Real-arm graph: real bridge + policy node [+ recorder] in front of a ros2_control arm.

    ros2 launch sim2real real.launch.py                          # the robot's own ros2_control launch runs
    ros2 launch sim2real real.launch.py emulator:=true record:=/tmp/bag   # the arm emulator as hardware
    ros2 launch sim2real real.launch.py task:=push policy:=push_lstm    # object poses from /mocap/puck/pose
    ros2 launch sim2real real.launch.py --show-args

Hardware side at the root (/joint_states, /forward_position_controller/commands), policy side
in the namespace. Nodes and parameters come from graphs/real.yaml through
sim2real.launch_graph, the same description `sim2real launch real` starts (one code path).
"""
from pathlib import Path

from sim2real.launch_graph import launch_description


def generate_launch_description():
    return launch_description(Path(__file__).resolve().parent / "graphs" / "real.yaml")
