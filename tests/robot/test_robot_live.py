"""`sim2real robot import --from-topic / --from-node`: the URDF of a running robot, over ROS.

A test node plays robot_state_publisher: the URDF as its ``robot_description`` string parameter
and on the latched (transient local) ``robot_description`` topic, published once before the
importer exists, so only a latched subscription gets it. The importer waits for the message
(discovery included) up to its timeout; nothing here sleeps a fixed time.
"""
from __future__ import annotations

import os
import threading

import pytest

from rigs import ros  # noqa: F401 (ros: autouse fixture)
from robot_urdfs import CONTROLLER_ORDER, controllers_yaml, six_dof_urdf
from sim2real.robot import ImportConfig, run_import

pytest.importorskip("rclpy")
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from sim_bridge.profile import load_profile  # noqa: E402

pytestmark = pytest.mark.ros
NAMESPACE = f"/robot_live_{os.getpid()}"


@pytest.fixture
def state_publisher():
    """A robot_state_publisher stand-in, spun in a background thread."""
    urdf = six_dof_urdf(name="live_six")
    node = rclpy.create_node("robot_state_publisher", namespace=NAMESPACE)
    node.declare_parameter("robot_description", urdf)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    publisher = node.create_publisher(String, "robot_description", latched)
    publisher.publish(String(data=urdf))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield urdf
    executor.shutdown()
    thread.join(timeout=5)
    node.destroy_node()


def _config(tmp_path, **source) -> ImportConfig:
    return ImportConfig(name="live_six", controllers=controllers_yaml(tmp_path / "ctl.yaml"),
                        out=tmp_path / "robots" / "live_six", timeout_s=20.0, **source)


def test_import_from_the_latched_topic(state_publisher, tmp_path, capsys):
    assert run_import(_config(tmp_path, from_topic=f"{NAMESPACE}/robot_description")) == 0
    profile = load_profile(tmp_path / "robots" / "live_six" / "live_six.yaml")
    assert list(profile.joint_names) == CONTROLLER_ORDER
    assert profile.provenance["source"] == f"topic {NAMESPACE}/robot_description"
    import hashlib
    assert profile.provenance["urdf_sha256"] == hashlib.sha256(state_publisher.encode()).hexdigest()
    assert "imported 'live_six' from topic" in capsys.readouterr().out


def test_import_from_the_node_parameter(state_publisher, tmp_path):
    assert run_import(_config(tmp_path, from_node=f"{NAMESPACE}/robot_state_publisher")) == 0
    profile = load_profile(tmp_path / "robots" / "live_six" / "live_six.yaml")
    assert profile.provenance["source"] == f"parameter {NAMESPACE}/robot_state_publisher/robot_description"


def test_a_topic_that_never_publishes_is_a_clear_error(tmp_path, capsys):
    config = ImportConfig(name="x", from_topic=f"{NAMESPACE}/nobody", out=tmp_path / "x", timeout_s=1.0)
    assert run_import(config) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sim2real robot import: topic {NAMESPACE}/nobody: no robot description within 1 s "
                          "(nobody publishes it)"), err
    assert not (tmp_path / "x").exists()


def test_a_node_that_does_not_exist_is_a_clear_error(tmp_path, capsys):
    config = ImportConfig(name="x", from_node=f"{NAMESPACE}/nobody", out=tmp_path / "x", timeout_s=1.0)
    assert run_import(config) == 2
    assert f"parameter {NAMESPACE}/nobody/robot_description: node {NAMESPACE}/nobody did not answer within 1 s" \
        in capsys.readouterr().err
