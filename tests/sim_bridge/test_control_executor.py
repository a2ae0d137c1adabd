"""ControlExecutor's pacing hook with real rclpy: a node's ``pace_callback(entity)`` runs in
the worker thread before the entity's callback task starts, and can hold it back."""
from __future__ import annotations

import threading
import time

import pytest

from rigs import ros, wait_until  # noqa: F401 (ros: autouse fixture)

rclpy = pytest.importorskip("rclpy")
from std_srvs.srv import Trigger  # noqa: E402

from sim_bridge.executor import ControlExecutor  # noqa: E402

pytestmark = pytest.mark.ros


def test_pace_callback_holds_back_a_service_while_a_timer_runs_on():
    node = rclpy.create_node("paced", namespace="/exec_test")
    release, ticks, served, paced = threading.Event(), [], [], []

    def pace(entity):
        paced.append(type(entity).__name__)
        if type(entity).__name__ == "Service":
            release.wait(5.0)

    def serve(request, response):
        served.append(time.monotonic())
        response.success = True
        return response

    node.pace_callback = pace
    node.create_timer(0.01, lambda: ticks.append(time.monotonic()))
    node.create_service(Trigger, "~/go", serve)
    client_node = rclpy.create_node("pacer_client", namespace="/exec_test")
    client = client_node.create_client(Trigger, "/exec_test/paced/go")
    executor = ControlExecutor(num_threads=3)
    executor.add_node(node)
    executor.add_node(client_node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        assert client.wait_for_service(timeout_sec=30.0), "service discovery"
        future = client.call_async(Trigger.Request())
        assert wait_until(lambda: "Service" in paced, 5.0), "pace_callback not called for the request"
        n = len(ticks)
        time.sleep(0.3)  # intentional: 0.3 s in which the request stays held back and the timer runs on
        assert not served and not future.done(), "the request ran before pace_callback returned"
        assert len(ticks) - n >= 10, "the timer stopped while the service was held back"
        release.set()
        assert wait_until(future.done, 5.0) and future.result().success
        assert len(served) == 1
    finally:
        executor.remove_node(node)
        executor.remove_node(client_node)
        time.sleep(0.1)  # teardown: callbacks in flight finish (not a discovery wait)
        executor.shutdown(timeout_sec=5.0)
        thread.join(5.0)
        node.destroy_node()
        client_node.destroy_node()
