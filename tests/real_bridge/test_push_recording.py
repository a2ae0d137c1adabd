"""Push recordings: the bag loader aligns object poses with the joint states (nearest earlier
sample, with its age) and refuses a push bag without object poses; the recorder node, given
task 'push', records the relayed object_pose and says so in the metadata."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from rigs import ros, wait_for_match, wait_until  # noqa: F401 (ros: autouse fixture)
from synthetic_bags import TOPICS, _header, _types, joint_state

from real_bridge.bagload import BagLoadError, load_episodes
from real_bridge.recorder import BagRecorder, typestore

POSE = "geometry_msgs/msg/PoseStamped"
MS = 1_000_000
NAMES = ["joint1", "joint2"]


def pose_stamped(t_s: float, xyz, yaw: float, w_scale: float = 1.0) -> bytes:
    t = _types()
    msg = t[POSE](header=_header(t_s), pose=t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](*map(float, xyz)),
        orientation=t["geometry_msgs/msg/Quaternion"](0.0, 0.0, w_scale * math.sin(yaw / 2), w_scale * math.cos(yaw / 2))))
    return bytes(typestore().serialize_cdr(msg, POSE))


def write_bag(path, *, poses: bool, task: str = "push"):
    meta = {"task": task, "robot_profile": {"name": "toy", "joint_names": NAMES}}
    with BagRecorder(path, {**TOPICS, "/object_pose": POSE}, meta) as rec:
        for k, t in enumerate([100, 120, 140, 160, 180]):   # joint states every 20 ms
            rec.record("/joint_states", t * MS, joint_state(t / 1000, NAMES, [k, -k]))
        if poses:   # tracker poses at 115, 135 (stamped 40 ms earlier), one non-unit at 155, then silence
            rec.record("/object_pose", 115 * MS, pose_stamped(0.075, [0.5, 0.1, 0.015], 0.3))
            rec.record("/object_pose", 135 * MS, pose_stamped(0.095, [0.51, 0.1, 0.015], 0.4))
            rec.record("/object_pose", 155 * MS, pose_stamped(0.115, [0.52, 0.1, 0.015], 0.4, w_scale=2.0))


def test_loader_aligns_object_poses_nearest_earlier_with_their_age(tmp_path):
    write_bag(tmp_path / "bag", poses=True)
    (ep,) = load_episodes(tmp_path / "bag")
    assert ep.topics["object_pose"] == "/object_pose"
    assert ep.object_pose.shape == (5, 5) and ep.object_pose_age_s.shape == (5,)
    # state at 100 ms: no pose yet; 120: the one of 115; 140: of 135; 160: the non-unit one of 155 (NaN);
    # 180: still that one (the tracker went silent), 25 ms old
    assert np.isnan(ep.object_pose[0]).all() and np.isnan(ep.object_pose_age_s[0])
    np.testing.assert_allclose(ep.object_pose[1], [0.5, 0.1, 0.015, math.sin(0.3), math.cos(0.3)], atol=1e-9)
    np.testing.assert_allclose(ep.object_pose[2, :3], [0.51, 0.1, 0.015])
    assert np.isnan(ep.object_pose[3]).all() and np.isnan(ep.object_pose[4]).all()
    np.testing.assert_allclose(ep.object_pose_age_s[1:], [0.005, 0.005, 0.005, 0.025], atol=1e-9)
    np.testing.assert_allclose(ep.object_time_s[1:3], [0.075, 0.095])   # the tracker's stamps


def test_push_bag_without_object_poses_is_a_clear_error(tmp_path):
    write_bag(tmp_path / "push", poses=False)
    with pytest.raises(BagLoadError, match=r"a push bag needs the object's poses, but /object_pose has no messages"):
        load_episodes(tmp_path / "push")
    # the same bag read as a reach bag loads (its object columns are NaN)
    (ep,) = load_episodes(tmp_path / "push", task="reach")
    assert np.isnan(ep.object_pose).all()
    write_bag(tmp_path / "reach", poses=False, task="reach")
    assert len(load_episodes(tmp_path / "reach")) == 1
    with pytest.raises(BagLoadError, match="push bag needs"):
        load_episodes(tmp_path / "reach", task="push")


# --- the recorder node with task 'push' --------------------------------------------------------
rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from real_bridge.recorder_node import RecorderNode  # noqa: E402
from sim_bridge import interface  # noqa: E402
from sim_bridge.executor import ControlExecutor  # noqa: E402


@pytest.mark.ros
def test_recorder_node_records_object_pose_for_push_and_the_loader_reads_it(tmp_path):
    ns = "/push_recording_test"
    bag = tmp_path / "bag"
    recorder = RecorderNode(namespace=ns, parameter_overrides=[
        Parameter("output", value=str(bag)), Parameter("task", value="push"),
        Parameter("robot_profile", value="panda_like")])
    assert recorder.recorder is not None, recorder.error
    assert f"{ns}/object_pose" in recorder.recorder.topics
    probe = rclpy.create_node("push_recording_probe", namespace=ns)
    states = probe.create_publisher(JointState, interface.JOINT_STATES, interface.STATE_QOS)
    poses = probe.create_publisher(PoseStamped, "object_pose", interface.STATE_QOS)
    executor = ControlExecutor(num_threads=2)
    executor.add_node(recorder)
    executor.add_node(probe)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    joints = [f"joint{i}" for i in range(1, 8)]
    try:
        assert wait_for_match(states, poses), "DDS discovery did not finish"
        for k in range(20):
            now = probe.get_clock().now()
            pose = PoseStamped()
            pose.header.stamp = now.to_msg()
            pose.header.frame_id = "base_link"
            pose.pose.position.x, pose.pose.orientation.w = 0.4 + 0.001 * k, 1.0
            poses.publish(pose)
            state = JointState(name=joints, position=[0.01 * k] * 7)
            state.header.stamp = now.to_msg()
            states.publish(state)
            threading.Event().wait(0.01)
        assert wait_until(lambda: recorder.stats().written >= 40, 10.0), recorder.stats()
    finally:
        recorder.close_bag()
        executor.shutdown(timeout_sec=2.0)
        thread.join(timeout=2.0)
        recorder.destroy_node()
        probe.destroy_node()
    (ep,) = load_episodes(bag)
    assert ep.metadata["metadata"]["task"] == "push"
    assert ep.topics["object_pose"] == f"{ns}/object_pose"
    assert len(ep) == 20 and np.isfinite(ep.object_pose[1:]).all()
    assert (ep.object_pose_age_s[1:] < 0.5).all()
    assert ep.object_pose[-1, 0] == pytest.approx(0.419, abs=0.0011)
