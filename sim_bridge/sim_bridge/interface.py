"""The ROS 2 interface every bridge offers to the policy side: topic names, types, QoS.

The sim bridge and the real bridge publish and subscribe exactly these, so a policy
node cannot tell them apart. Names are relative: launch files put the graph in a
namespace (``/sim2real`` by default), which keeps the policy-side ``joint_states`` apart
from a ros2_control ``/joint_states``.

QoS: reliable, keep-last 1 for state and commands (only the latest value matters, and a
reliable publisher still serves best-effort subscribers such as a recorder); the
current goal is transient-local so a late subscriber gets it at once.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

JOINT_STATES = "joint_states"      # sensor_msgs/JointState, bridge -> policy
JOINT_COMMANDS = "joint_commands"  # std_msgs/Float64MultiArray, policy -> bridge (profile joint order, rad)
GOAL = "goal"                      # geometry_msgs/PointStamped, anyone -> bridge (base frame, m)
CURRENT_GOAL = "current_goal"      # geometry_msgs/PointStamped, bridge -> anyone (latched)
RESET = "reset"                    # std_srvs/Trigger
DIAGNOSTICS = "/diagnostics"       # diagnostic_msgs/DiagnosticArray
CLOCK = "/clock"                   # rosgraph_msgs/Clock

STATE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE)
COMMAND_QOS = STATE_QOS
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
DIAGNOSTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
