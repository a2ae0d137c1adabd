"""Simulation graph: sim bridge (randomized MuJoCo arm) + policy node [+ recorder].

    ros2 launch sim2real sim.launch.py [task:=reach] [policy:=reach_lstm] [record:=/tmp/bag] [namespace:=sim2real] ...
    ros2 launch sim2real sim.launch.py --show-args          # every argument with its description

Nodes, names, namespaces, parameter files, overrides and remappings come from graphs/sim.yaml
through sim2real.launch_graph, the same description `sim2real launch sim` starts (one code
path: launch_graph.resolve). Parameters: config/<node>.yaml next to this file (or params_dir),
then the graph's fixed parameters, then the arguments. Lifecycle nodes activate themselves
through their `autostart` parameter (see launch_graph.launch_description).
"""
from pathlib import Path

from sim2real.launch_graph import launch_description


def generate_launch_description():
    return launch_description(Path(__file__).resolve().parent / "graphs" / "sim.yaml")
