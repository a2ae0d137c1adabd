"""Push's object pose over ROS: the sim bridge publishes the tracked pose (PoseStamped), the
policy node reads it into the observation, and holds when the tracker goes stale."""
from __future__ import annotations


import numpy as np
import pytest

from rigs import ros, spin_in_thread, stop_executor, wait_until  # noqa: F401 (ros: autouse fixture)

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("torch")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from policies.control import COMMAND, HOLD, WAITING, PolicyController  # noqa: E402
from policies.node import PolicyNode  # noqa: E402
from policies.testing import export_dummy_policy  # noqa: E402
from sim_bridge.node import SimBridgeNode  # noqa: E402
from sim_bridge.profile import load_profile  # noqa: E402
from sim_bridge.task_messages import read_planar_pose, write_planar_pose  # noqa: E402
from sim_bridge.tasks import make_task  # noqa: E402

pytestmark = pytest.mark.ros
PROFILE = load_profile("panda_like")
JOINTS = list(PROFILE.joint_names)
Q = PROFILE.default_pose_rad.copy()
GOAL = np.array([0.5, 0.0, 0.015])
POSE = np.array([0.42, 0.05, 0.015, np.sin(0.3), np.cos(0.3)])


@pytest.fixture(scope="module")
def push_zoo(tmp_path_factory):
    zoo = tmp_path_factory.mktemp("push_zoo")
    export_dummy_policy(zoo / "dummy_push", obs_size=29, task="push", name="dummy_push")
    return zoo


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def test_pose_messages_round_trip_and_a_bad_quaternion_reads_as_nan():
    msg = PoseStamped()
    write_planar_pose(msg, POSE)
    np.testing.assert_allclose(read_planar_pose(msg), POSE, atol=1e-12)
    msg.pose.orientation.w = 2.0  # not a unit quaternion
    assert all(np.isnan(read_planar_pose(msg)))


def test_the_controller_holds_when_the_object_pose_goes_stale_and_resumes(push_zoo):
    clock = Clock()
    ctl = PolicyController(PROFILE, push_zoo, clock=clock, task_input_stale_s=0.25)
    ctl.set_policy(ctl.load_policy("dummy_push"))
    ctl.on_joint_state(JOINTS, list(Q), [0.0] * 7, 0.0)
    ctl.set_goal(GOAL)
    result = ctl.cycle(0.0)
    assert result.status == WAITING and "object_pose" in result.reason
    assert ctl.set_task_input("object_pose", POSE) == (True, "")
    assert ctl.cycle(0.0).status == COMMAND
    ok, reason = ctl.set_task_input("object_pose", [np.nan] * 5)  # refused, the last good pose kept
    assert not ok and "object_pose rejected" in reason and ctl.task_values["object_pose"][0] == POSE[0]
    for t in (0.1, 0.2, 0.3):  # joint states keep arriving; the tracker has stopped
        clock.t = t
        ctl.on_joint_state(JOINTS, list(Q), [0.0] * 7, t)
        result = ctl.cycle(t)
    assert result.status == HOLD and "object_pose is stale" in result.reason and "250 ms" in result.reason
    np.testing.assert_allclose(result.command, Q)
    assert ctl.counters.holds["stale_task_input"] == 1
    ctl.set_task_input("object_pose", POSE)
    assert ctl.cycle(0.3).status == COMMAND


def test_sim_bridge_publishes_the_tracked_pose_and_the_policy_node_uses_it(push_zoo):
    bridge = SimBridgeNode(task=make_task("push"), parameter_overrides=[
        Parameter("randomization_file", value="none"), Parameter("seed", value=3)])
    policy = PolicyNode(autostart=True, parameter_overrides=[
        Parameter("policy_dir", value=str(push_zoo)), Parameter("policy", value="dummy_push")])
    executor, thread = spin_in_thread(bridge, policy)
    try:
        assert policy.lifecycle_state == "active", policy.last_error
        ctl = policy.controller
        # discovery and the first pose: the node commands only once it has one
        assert wait_until(lambda: ctl.counters.commands > 20 and bridge.session.counters.commands_accepted > 20,
                          timeout=30.0), (ctl.counters, bridge.session.counters)
        pose = ctl.task_values["object_pose"]
        true = bridge.session.task.true_pose(bridge.session.sim, bridge.session.task_state)
        np.testing.assert_allclose(pose[:3], true[:3], atol=0.02)  # nominal: no tracker noise or latency
        assert pose[3:] == pytest.approx([np.sin(true[3]), np.cos(true[3])], abs=0.05)
        np.testing.assert_allclose(ctl.task_values["goal_pos"], bridge.session.goal)
        assert ctl.counters.holds["stale_task_input"] == 0
    finally:
        stop_executor(executor, thread, policy, bridge)


@pytest.mark.parametrize("mode", ["realtime", "lockstep"])
def test_composed_intra_process_hands_state_goal_pose_and_commands_over_directly(push_zoo, mode):
    """``sim2real node sim_policy``'s intra-process path (sim2real/composed.py): the policy node
    subscribes to none of what the bridge delivers, the bridge not to the commands, and the loop
    closes; lockstep keeps the topics (a command steps the simulation: no recursion)."""
    from sim2real.composed import build

    bridge, policy = build(bridge_kwargs={"task": make_task("push"), "parameter_overrides": [
        Parameter("randomization_file", value="none"), Parameter("seed", value=3), Parameter("mode", value=mode)]},
        policy_kwargs={"parameter_overrides": [Parameter("policy_dir", value=str(push_zoo)),
                                               Parameter("policy", value="dummy_push"),
                                               Parameter("trigger", value="state")]})
    executor, thread = spin_in_thread(bridge, policy)
    try:
        assert policy.lifecycle_state == "active", policy.last_error
        subscribed = {sub.topic_name.rsplit("/", 1)[-1] for node in (bridge, policy) for sub in node.subscriptions}
        linked = {"joint_states", "current_goal", "object_pose", "joint_commands"}
        if mode == "realtime":
            assert bridge.intra_process and subscribed.isdisjoint(linked), subscribed
        else:
            assert not bridge.intra_process and linked <= subscribed, subscribed
        ctl = policy.controller
        assert wait_until(lambda: ctl.counters.commands > 20 and bridge.session.counters.commands_accepted > 20,
                          timeout=30.0), (ctl.counters, bridge.session.counters)
        true = bridge.session.task.true_pose(bridge.session.sim, bridge.session.task_state)
        np.testing.assert_allclose(ctl.task_values["object_pose"][:3], true[:3], atol=0.02)
        np.testing.assert_allclose(ctl.task_values["goal_pos"], bridge.session.goal)
        assert ctl.counters.holds["stale_task_input"] == 0 and bridge.session.counters.commands_rejected == 0
    finally:
        stop_executor(executor, thread, policy, bridge)
