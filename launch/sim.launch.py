"""Simulation graph: sim bridge (randomized MuJoCo arm) + policy node [+ recorder].

    ros2 launch sim_bridge sim.launch.py [policy:=reach_lstm] [record:=/tmp/bag] [namespace:=sim2real] ...
    ros2 launch sim_bridge sim.launch.py --show-args          # every argument with its description

The nodes, their names, namespaces, parameter files, overrides and remappings come from
graphs/sim.yaml through sim_bridge.launch_graph, the same description `sim2real launch sim`
starts (one code path: launch_graph.resolve). Parameters: config/<node>.yaml next to this
file (or params_dir), then the graph's fixed parameters, then the arguments.

Lifecycle: the policy node is a lifecycle node. It is declared as a launch_ros LifecycleNode
and brought to active by its own `autostart: true` parameter (graphs/sim.yaml), which
configures and activates it at construction, exactly as `sim2real node policy` does; no
ChangeState events are emitted (they would be rejected: the node is already active), and
launch_ros' own LifecycleNode(autostart=...) is not used (only launch_ros >= 0.26.7 has it).
"""
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from sim_bridge.launch_graph import load_graph, resolve

HERE = Path(__file__).resolve().parent
GRAPH = load_graph(HERE / "graphs" / "sim.yaml")


def _nodes(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name in GRAPH.arguments}
    actions = []
    for node in resolve(GRAPH, values, base_dir=HERE):
        action = LifecycleNode if node.lifecycle else Node
        actions.append(action(
            package=node.package, executable=node.executable, name=node.name, namespace=node.namespace,
            parameters=[str(node.params_file), node.parameters], remappings=list(node.remappings),
            output="screen", emulate_tty=True))
    return actions


def generate_launch_description():
    return LaunchDescription([
        *(DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description)
          for arg in GRAPH.arguments.values()),
        OpaqueFunction(function=_nodes),
    ])
