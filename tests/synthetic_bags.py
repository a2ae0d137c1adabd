"""Synthetic CDR messages for the bag tests of real_bridge and calibration (rosbags' serializer, no rclpy)."""
from __future__ import annotations

import numpy as np

from real_bridge.recorder import serialize_string, typestore

JOINT_STATE = "sensor_msgs/msg/JointState"
FLOAT_ARRAY = "std_msgs/msg/Float64MultiArray"
POINT_STAMPED = "geometry_msgs/msg/PointStamped"
STRING = "std_msgs/msg/String"

TOPICS = {
    "/joint_states": JOINT_STATE,
    "/joint_commands": FLOAT_ARRAY,
    "/current_goal": POINT_STAMPED,
    "/forward_position_controller/commands": FLOAT_ARRAY,
}


def _types():
    return typestore().types


def _header(t_s: float):
    t = _types()
    ns = int(round(t_s * 1e9))
    return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
                                    frame_id="base_link")


def joint_state(t_s: float, names, position, velocity=None, effort=None) -> bytes:
    msg = _types()[JOINT_STATE](
        header=_header(t_s), name=list(names), position=np.asarray(position, dtype=float),
        velocity=np.asarray([] if velocity is None else velocity, dtype=float),
        effort=np.asarray([] if effort is None else effort, dtype=float))
    return bytes(typestore().serialize_cdr(msg, JOINT_STATE))


def float_array(values) -> bytes:
    t = _types()
    msg = t[FLOAT_ARRAY](layout=t["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0),
                         data=np.asarray(values, dtype=float))
    return bytes(typestore().serialize_cdr(msg, FLOAT_ARRAY))


def point_stamped(t_s: float, xyz) -> bytes:
    t = _types()
    msg = t[POINT_STAMPED](header=_header(t_s), point=t["geometry_msgs/msg/Point"](*map(float, xyz)))
    return bytes(typestore().serialize_cdr(msg, POINT_STAMPED))


def string(text: str) -> bytes:
    return serialize_string(text)
