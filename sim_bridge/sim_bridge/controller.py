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

    def _ready(self) -> bool:
        return self.goal is not None

    def _action(self, q: np.ndarray) -> np.ndarray:
        return self.oracle.action(q, self.goal)

    def _on_state(self, msg: JointState) -> None:
        if not self._ready():
            return
        try:
            q = self._joints.take(msg.name, msg.position, "positions")
        except JointMappingError as exc:
            self.get_logger().warning(f"joint_states skipped: {exc}")
            return
        self._pub.publish(Float64MultiArray(data=self._targets(self._action(q), q).tolist()))

    def _targets(self, action: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Absolute joint targets for the oracle's action (joint deltas)."""
        return action_to_joint_targets(action, q, self.oracle.action_scale_rad,
                                       self.profile.position_lower_rad, self.profile.position_upper_rad)


class ScriptedPushNode(ScriptedReachNode):
    """The scripted pusher (:class:`sim_bridge.oracle.PushOracle`) as a ROS 2 node: also
    subscribes the task's ``object_pose`` (geometry_msgs/PoseStamped) and commands nothing
    until a pose has arrived. It acts in the task's own action space, as Push's policies and the
    training env's scripted pusher do (end-effector steps integrated into a command; measured on
    the arm emulator, joint steps left the strike's approach unfinished after 4 s in 3 of 3
    episodes). ``strike_steps`` > 0: identification strikes instead of pushes to the goal
    (:class:`sim_bridge.oracle.PushStrike`, for calibration recordings)."""

    def __init__(self, profile: RobotProfile, task=None, strike_steps: int = 0, **kwargs):
        from geometry_msgs.msg import PoseStamped  # noqa: PLC0415

        from sim_bridge.oracle import ActingPusher  # noqa: PLC0415
        from sim_bridge.task_messages import read_planar_pose  # noqa: PLC0415
        from sim_bridge.tasks import PushTask  # noqa: PLC0415

        super().__init__(profile, **kwargs)
        self.pusher = ActingPusher(profile, task or PushTask(), strike_steps)
        self.oracle = self.pusher.oracle
        self.object_pose: np.ndarray | None = None
        self._read_pose = read_planar_pose
        self.create_subscription(PoseStamped, "object_pose", self._on_pose, interface.STATE_QOS)

    def _on_pose(self, msg) -> None:
        pose = np.array(self._read_pose(msg))
        if np.all(np.isfinite(pose)):
            self.object_pose = pose

    def _ready(self) -> bool:
        return self.goal is not None and self.object_pose is not None

    def reset(self) -> None:
        self.pusher.reset()

    def _action(self, q: np.ndarray) -> np.ndarray:
        return self.pusher.act(q, self.object_pose, self.goal)

    def _targets(self, action: np.ndarray, q: np.ndarray) -> np.ndarray:
        return self.pusher.targets(q, action)


def scripted_controller(task, profile: RobotProfile, strike_steps: int = 0, **kwargs) -> Node:
    """The scripted controller node of a task (reach, push); ValueError for other tasks.
    ``strike_steps`` > 0: push's identification strikes (ValueError for a task without an object)."""
    if strike_steps and task.name != "push":
        raise ValueError(f"identification strikes (--controller strike) need an object to strike: task "
                         f"'{task.name}' has none (push has)")
    if task.name == "reach":
        return ScriptedReachNode(profile, **kwargs)
    if task.name == "push":
        return ScriptedPushNode(profile, task, strike_steps=strike_steps, **kwargs)
    raise ValueError(f"no scripted controller for task '{task.name}' (reach and push have one); "
                     "use --controller policy")
