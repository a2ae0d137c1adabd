"""``sim2real node real_policy``: the real bridge and the policy node in one process with the
intra-process handoff (sim2real/composed.py), in front of the arm emulator, with real rclpy."""
from __future__ import annotations

import pytest

from rigs import ros, spin_in_thread, stop_executor, wait_until  # noqa: F401 (ros: autouse fixture)

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("onnxruntime")
from rclpy.parameter import Parameter  # noqa: E402

from policies.node import shipped_policy_dir  # noqa: E402
from real_bridge.emulator_node import ArmEmulatorNode  # noqa: E402

pytestmark = pytest.mark.ros
NS = "/real_composed_test"


@pytest.mark.parametrize("intra", [True, False], ids=["intra", "dds"])
def test_the_real_bridge_and_the_policy_close_the_loop_through_the_handoff(intra):
    if not (shipped_policy_dir() / "reach_lstm" / "manifest.json").is_file():
        pytest.skip("no shipped reach_lstm")
    from sim2real.composed import build_real

    emulator = ArmEmulatorNode(parameter_overrides=[Parameter("seed", value=2)])
    bridge, policy = build_real(intra, bridge_kwargs={"namespace": NS}, policy_kwargs={
        "namespace": NS, "parameter_overrides": [Parameter("policy", value="reach_lstm"),
                                                 Parameter("trigger", value="state")]})
    executor, thread = spin_in_thread(emulator, bridge, policy)
    try:
        assert bridge.lifecycle_state == "active" and policy.lifecycle_state == "active", \
            (bridge.last_error, policy.last_error)
        subscribed = {sub.topic_name for node in (bridge, policy) for sub in node.subscriptions}
        if intra:
            assert bridge.linked_topics == ("joint_states",)  # Reach: no object pose to relay
            assert f"{NS}/joint_states" not in subscribed and f"{NS}/joint_commands" not in subscribed, subscribed
        else:
            assert bridge.linked_topics == () and {f"{NS}/joint_states", f"{NS}/joint_commands"} <= subscribed
        assert f"{NS}/current_goal" in subscribed, "the goal stays on its latched topic"
        ctl = policy.controller
        # the policy commands from relayed states; the bridge takes its commands and drives the arm
        assert wait_until(lambda: ctl.counters.commands > 50 and bridge.counters["commands_used"] > 50
                          and emulator.commands_accepted > 50, 30.0), \
            (ctl.counters, dict(bridge.counters), emulator.commands_accepted)
        counters = dict(bridge.counters)
        assert not any(k.startswith("commands_rejected") for k in counters if counters[k]), counters
        assert counters.get("faults", 0) == 0, counters
    finally:
        stop_executor(executor, thread, policy, bridge, emulator)


def test_push_through_the_handoff_relays_the_tracked_pose_to_the_policy():
    """Push: the relayed object poses go over the handoff too; the policy commands with them
    (no stale-pose holds) while the goal still arrives on its latched topic."""
    if not (shipped_policy_dir() / "push_lstm" / "manifest.json").is_file():
        pytest.skip("no shipped push_lstm")
    from sim2real.composed import build_real

    tracker = f"{NS}_push/mocap/puck/pose"
    emulator = ArmEmulatorNode(parameter_overrides=[Parameter("seed", value=2), Parameter("task", value="push"),
                                                    Parameter("object_pose_topic", value=tracker)],
                               cli_args=["--ros-args", "-r", f"current_goal:={NS}_push/current_goal"])
    bridge, policy = build_real(True, bridge_kwargs={"namespace": f"{NS}_push", "parameter_overrides": [
        Parameter("task", value="push"), Parameter("object_pose_topic", value=tracker)]}, policy_kwargs={
        "namespace": f"{NS}_push", "parameter_overrides": [Parameter("policy", value="push_lstm"),
                                                           Parameter("trigger", value="state")]})
    executor, thread = spin_in_thread(emulator, bridge, policy)
    try:
        assert policy.lifecycle_state == "active", policy.last_error
        assert bridge.linked_topics == ("joint_states", "object_pose")
        assert f"{NS}_push/object_pose" not in {sub.topic_name for sub in policy.subscriptions}
        ctl = policy.controller
        assert wait_until(lambda: ctl.counters.commands > 50 and bridge.counters["commands_used"] > 50, 30.0), \
            (ctl.counters, dict(bridge.counters))
        assert bridge.counters["object_poses"] > 0 and ctl.task_values.get("object_pose") is not None
        assert ctl.counters.holds["stale_task_input"] == 0, ctl.counters
    finally:
        stop_executor(executor, thread, policy, bridge, emulator)
