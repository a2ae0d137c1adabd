"""Live attribution in the policy node (off by default): occlusion per observation signal,
computed outside the control loop from a copy of the inputs and the recurrent state."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from rigs import ros, wait_for_match, wait_until  # noqa: F401 (ros: autouse fixture)

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from policies.manifest import shipped_zoo  # noqa: E402
from policies.node import PolicyNode  # noqa: E402
from policies.runtime import PolicyRuntime  # noqa: E402
from sim_bridge.envs.vector import make_env  # noqa: E402
from sim_bridge.executor import ControlExecutor  # noqa: E402
from sim_bridge.node import SimBridgeNode  # noqa: E402

pytestmark = pytest.mark.ros


def test_occlusion_attributes_only_the_signal_that_differs_and_never_advances_the_state():
    runtime = PolicyRuntime(shipped_zoo() / "reach_lstm")
    env = make_env(randomization="default")
    obs, _ = env.reset(seed=2)
    for _ in range(5):
        obs, *_ = env.step(runtime.step(obs))
    state = runtime.state
    assert all(v == 0.0 for v in runtime.occlusion(obs, obs).values())
    baseline = obs.copy()
    baseline[-3:] += np.float32(0.2)  # only the target differs
    values = runtime.occlusion(obs, baseline)
    assert list(values) == ["joint_pos", "joint_vel", "prev_action", "target_pos"]
    assert values["target_pos"] > 1e-3 and all(values[k] == 0.0 for k in ("joint_pos", "joint_vel", "prev_action"))
    np.testing.assert_array_equal(runtime.state[0], state[0])  # the control loop's state is untouched


def _graph(**policy_params):
    bridge = SimBridgeNode(parameter_overrides=[Parameter("seed", value=4)])
    policy = PolicyNode(autostart=True, parameter_overrides=[
        Parameter(k, value=v) for k, v in {"policy": "reach_lstm", **policy_params}.items()])
    executor = ControlExecutor(num_threads=4)
    executor.add_node(bridge)
    executor.add_node(policy)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    return bridge, policy, executor, thread


def _stop(bridge, policy, executor, thread, *extra):
    executor.remove_node(policy)
    executor.remove_node(bridge)
    executor.shutdown(timeout_sec=2.0)
    thread.join(timeout=2.0)
    for node in (policy, bridge, *extra):
        node.destroy_node()


def test_the_node_publishes_live_attribution_when_asked_and_nothing_by_default():
    graph = _graph(attribution_rate_hz=5.0)
    bridge, policy = graph[:2]
    probe = rclpy.create_node("attribution_probe")
    received = []
    sub = probe.create_subscription(DiagnosticArray, "/policy/attribution", received.append, 10)
    graph[2].add_node(probe)
    try:
        assert policy.lifecycle_state == "active", policy.last_error
        assert wait_for_match(sub, timeout=30.0), "no ~/attribution publisher"
        assert wait_until(lambda: len(received) >= 3, 30.0), len(received)
        status = received[-1].status[0]
        values = {kv.key: float(kv.value) for kv in status.values}
        assert {"joint_pos", "joint_vel", "prev_action", "target_pos"} <= set(values)
        assert all(np.isfinite(v) and v >= 0 for v in values.values()) and max(values.values()) > 0
        assert sum(values[f"share/{k}"] for k in ("joint_pos", "joint_vel", "prev_action",
                                                  "target_pos")) == pytest.approx(1.0, abs=1e-3)
        assert policy.controller.counters.commands > 0  # the control loop kept commanding
        assert policy.attributions >= len(received)   # counted (on /diagnostics as 'attributions')
    finally:
        graph[2].remove_node(probe)
        _stop(*graph, probe)

    graph = _graph()  # default: off
    try:
        assert graph[1].lifecycle_state == "active"
        topics = [name for name, _ in graph[1].get_publisher_names_and_types_by_node("policy", "/")]
        assert not any(t.endswith("/attribution") for t in topics), topics
    finally:
        _stop(*graph)
