"""ROS messages of task signals: how a task input's message becomes signal values (the policy
node reads) and how signal values become a message (the bridges publish).

One table per direction, keyed by the ROS type a :class:`sim_bridge.tasks.TaskInput`
declares. A task whose inputs need another type adds its reader and writer here.

* ``geometry_msgs/msg/PointStamped`` <-> a point ``[x, y, z]`` (m): Reach's target, Push's goal;
* ``geometry_msgs/msg/PoseStamped`` <-> an object pose as a tracker gives it,
  ``[x, y, z, sin(yaw), cos(yaw)]`` (yaw = rotation about the base frame's z axis; roll and
  pitch are dropped: an object on a table). A quaternion that is not unit length (within
  1e-3) or not finite reads as NaN values, which the policy node refuses.
"""
from __future__ import annotations

import math

from geometry_msgs.msg import PointStamped, PoseStamped

from sim_bridge.tasks.base import POINT_STAMPED, POSE_STAMPED

__all__ = ["READERS", "WRITERS", "read_point", "read_planar_pose", "write_point", "write_planar_pose"]


def read_point(msg: PointStamped) -> tuple[float, float, float]:
    return (msg.point.x, msg.point.y, msg.point.z)


def read_planar_pose(msg: PoseStamped) -> tuple[float, ...]:
    p, q = msg.pose.position, msg.pose.orientation
    norm = math.sqrt(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z)
    if not abs(norm - 1.0) < 1e-3:  # also NaN
        return (math.nan,) * 5
    yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
    return (p.x, p.y, p.z, math.sin(yaw), math.cos(yaw))


def write_point(msg: PointStamped, values) -> None:
    msg.point.x, msg.point.y, msg.point.z = (float(v) for v in values[:3])


def write_planar_pose(msg: PoseStamped, values) -> None:
    x, y, z, s, c = (float(v) for v in values[:5])
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, z
    half = 0.5 * math.atan2(s, c)
    msg.pose.orientation.w, msg.pose.orientation.x = math.cos(half), 0.0
    msg.pose.orientation.y, msg.pose.orientation.z = 0.0, math.sin(half)


#: ROS type -> (message class, message -> signal values)
READERS = {POINT_STAMPED: (PointStamped, read_point), POSE_STAMPED: (PoseStamped, read_planar_pose)}
#: ROS type -> (message class, fill(message, signal values))
WRITERS = {POINT_STAMPED: (PointStamped, write_point), POSE_STAMPED: (PoseStamped, write_planar_pose)}
