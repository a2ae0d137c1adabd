"""The scripted reach controller as a ROS 2 node (stands in for a policy node).

Subscribes ``joint_states`` and ``current_goal``, publishes ``joint_commands`` once per
joint state received: absolute targets = measured position + the oracle's joint step,
the same action semantics a policy uses (:mod:`sim_bridge.observations`).
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from sim_bridge import interface
from sim_bridge.joints import JointMapper, JointMappingError
from sim_bridge.observations import action_to_joint_targets
from sim_bridge.oracle import ReachOracle
from sim_bridge.profile import RobotProfile


class ScriptedReachNode(Node):
    def __init__(self, profile: RobotProfile, **kwargs):
        super().__init__("scripted_reach", **kwargs)
        self.profile = profile
        self._joints = JointMapper.for_profile(profile)
        self.oracle = ReachOracle(profile)
        self.goal: np.ndarray | None = None
        self._index: dict[str, int] = {}
        self._pub = self.create_publisher(Float64MultiArray, interface.JOINT_COMMANDS, interface.COMMAND_QOS)
        self.create_subscription(JointState, interface.JOINT_STATES, self._on_state, interface.STATE_QOS)
        self.create_subscription(PointStamped, interface.CURRENT_GOAL, self._on_goal, interface.LATCHED_QOS)

    def reset(self) -> None:
        self.oracle.reset()

    def _on_goal(self, msg: PointStamped) -> None:
        self.goal = np.array([msg.point.x, msg.point.y, msg.point.z])

    def _on_state(self, msg: JointState) -> None:
        if self.goal is None:
            return
        try:
            q = self._joints.take(msg.name, msg.position, "positions")
        except JointMappingError as exc:
            self.get_logger().warning(f"joint_states skipped: {exc}")
            return
        action = self.oracle.action(q, self.goal)
        target = action_to_joint_targets(action, q, self.oracle.action_scale_rad,
                                         self.profile.position_lower_rad, self.profile.position_upper_rad)
        self._pub.publish(Float64MultiArray(data=target.tolist()))
