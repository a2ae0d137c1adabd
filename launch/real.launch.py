"""Real-arm graph: real bridge + policy node [+ recorder] [+ arm emulator].

    ros2 launch sim_bridge real.launch.py emulator:=true [policy:=reach_lstm] [record:=/tmp/bag] ...
    ros2 launch sim_bridge real.launch.py              # with the robot's own ros2_control launch running
    ros2 launch sim_bridge real.launch.py --show-args          # every argument with its description

The nodes, their names, namespaces, parameter files, overrides and remappings come from
graphs/real.yaml through sim_bridge.launch_graph, the same description `sim2real launch real`
starts (one code path: launch_graph.resolve). Parameters: config/<node>.yaml next to this
file (or params_dir), then the graph's fixed parameters, then the arguments.

Hardware side: emulator:=true starts the arm emulator at the root namespace (/joint_states,
/forward_position_controller/commands); otherwise the robot's own ros2_control launch
(joint_state_broadcaster + forward position controller) must provide those topics.

Lifecycle: real_bridge and policy are lifecycle nodes. They are declared as launch_ros
LifecycleNodes and brought to active by their own `autostart: true` parameter
(graphs/real.yaml), which configures and activates each at construction, exactly as
`sim2real node real_bridge|policy` does (activation needs no hardware state: the bridge
starts commanding only once the policy sends joint_commands and the arm reports); no
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
GRAPH = load_graph(HERE / "graphs" / "real.yaml")


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
