"""ControlExecutor's pacing hook with real rclpy: a node's ``pace_callback(entity)`` runs in
the worker thread before the entity's callback task starts, and can hold it back."""
from __future__ import annotations

import threading
import time

import pytest

from rigs import ros, stop_executor, wait_until  # noqa: F401 (ros: autouse fixture)

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
        stop_executor(executor, thread, node, client_node)


def test_the_executor_is_chosen_by_name_and_a_bad_name_is_refused(monkeypatch, capsys):
    """``SIM2REAL_EXECUTOR`` picks the executor of a node process (benchmarks compare them);
    an unknown name is refused before rclpy starts, with the names that exist."""
    from rclpy.executors import SingleThreadedExecutor

    from sim_bridge.executor import EXECUTOR_ENV, executor_kind, make_executor, run_node

    from sim_bridge.executor import LeanExecutor, StockControlExecutor

    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    assert executor_kind() == "default"
    assert isinstance(make_executor(0), LeanExecutor)
    assert type(make_executor(0, "stock")) is SingleThreadedExecutor, "stock = rclpy's own loop"
    assert isinstance(make_executor(3, "stock"), StockControlExecutor)
    assert isinstance(make_executor(3), ControlExecutor)
    assert isinstance(make_executor(0, "control"), ControlExecutor)
    monkeypatch.setenv(EXECUTOR_ENV, "single")
    assert isinstance(make_executor(3), SingleThreadedExecutor), "the environment overrides the node's choice"
    monkeypatch.setenv(EXECUTOR_ENV, "events")
    with pytest.raises(ValueError, match="must be one of default, control, single, stock"):
        make_executor(3)
    built = []
    assert run_node("probe", lambda: built.append(1), []) == 2
    assert not built, "the node must not be built with a bad executor name"
    assert "probe: SIM2REAL_EXECUTOR='events': must be one of" in capsys.readouterr().err


def test_inline_groups_run_in_the_spinning_thread_and_a_long_callback_elsewhere_does_not_hold_them():
    """``inline_callback_groups``: those callbacks run in the thread that spins (no hand-off to
    a worker); a callback of another group that blocks (a policy load) runs in a worker while
    the inline timer keeps ticking."""
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

    node = rclpy.create_node("inline", namespace="/exec_test")
    control, slow_group = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
    node.inline_callback_groups = (control,)
    ticks, slow_threads, release = [], [], threading.Event()

    def slow():
        slow_threads.append(threading.get_ident())
        release.wait(5.0)

    node.create_timer(0.01, lambda: ticks.append(threading.get_ident()), callback_group=control)
    slow_timer = node.create_timer(0.05, slow, callback_group=slow_group)
    executor = ControlExecutor(num_threads=2)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: slow_threads, 5.0), "the slow timer never ran"
        n = len(ticks)
        assert wait_until(lambda: len(ticks) >= n + 10, 5.0), "the inline timer stopped behind a blocked worker"
        assert set(ticks) == {thread.ident}, "an inline callback ran outside the spinning thread"
        assert thread.ident not in slow_threads, "the other group ran in the spinning thread"
    finally:
        slow_timer.cancel()
        release.set()
        stop_executor(executor, thread, node)


@pytest.mark.parametrize("kind", ["lean", "control"])
def test_the_static_wait_loop_serves_every_kind_of_entity_and_follows_entities_made_while_spinning(kind):
    """:class:`StaticWaitMixin` keeps its wait set while the waited-on entities stay the same:
    timers, subscriptions, services, clients (a request answered in the same executor) and
    guard conditions all run; a subscription destroyed and another created while it spins are
    followed (no message to the old one, the new one's arrive); the wait set is rebuilt only
    when the entities change, not on every wake."""
    from std_msgs.msg import Int32

    from sim_bridge.executor import ControlExecutor, LeanExecutor

    node = rclpy.create_node(f"static_{kind}", namespace="/exec_test")
    if kind == "control":
        node.inline_callback_groups = (node.default_callback_group,)
    ticks, first, second, guarded = [], [], [], []
    node.create_timer(0.005, lambda: ticks.append(1))
    old_sub = node.create_subscription(Int32, "~/first", lambda m: first.append(m.data), 10)
    pub_first = node.create_publisher(Int32, "~/first", 10)
    pub_second = node.create_publisher(Int32, "~/second", 10)

    def serve(request, response):
        response.success, response.message = True, "served"
        return response

    node.create_service(Trigger, "~/go", serve)
    guard = node.create_guard_condition(lambda: guarded.append(1))
    client_node = rclpy.create_node(f"static_client_{kind}", namespace="/exec_test")
    client = client_node.create_client(Trigger, f"/exec_test/static_{kind}/go")
    executor = LeanExecutor() if kind == "lean" else ControlExecutor(num_threads=2)
    prepared, prepare = [], executor._prepare
    executor._prepare = lambda found: (prepared.append(len(found)), prepare(found))[1]
    executor.add_node(node)
    executor.add_node(client_node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: len(ticks) >= 20, 10.0), "the timer did not run"
        n, built = len(ticks), len(prepared)
        assert wait_until(lambda: len(ticks) >= n + 100, 20.0)
        assert len(prepared) == built, "the wait set was rebuilt although nothing changed"

        assert wait_until(lambda: pub_first.get_subscription_count() >= 1, 30.0), "discovery"
        assert wait_until(lambda: (pub_first.publish(Int32(data=1)), bool(first))[1], 10.0), "subscription"
        guard.trigger()
        assert wait_until(lambda: guarded, 5.0), "guard condition callback"
        assert client.wait_for_service(timeout_sec=30.0), "service discovery"
        future = client.call_async(Trigger.Request())
        assert wait_until(future.done, 10.0) and future.result().message == "served"

        node.destroy_subscription(old_sub)
        node.create_subscription(Int32, "~/second", lambda m: second.append(m.data), 10)
        assert wait_until(lambda: pub_second.get_subscription_count() >= 1, 30.0), "discovery"
        count = len(first)
        assert wait_until(lambda: (pub_second.publish(Int32(data=2)), bool(second))[1], 10.0), \
            "a subscription created while spinning got nothing"
        pub_first.publish(Int32(data=3))
        n = len(ticks)
        assert wait_until(lambda: len(ticks) >= n + 20, 10.0), "the timer stopped after the change"
        assert len(first) == count, "the destroyed subscription still got a message"
    finally:
        stop_executor(executor, thread, node, client_node)


def test_spin_once_returns_after_its_timeout_and_an_inline_coroutine_that_waits_is_refused():
    """``spin_once(timeout)`` with nothing ready returns (rclpy's TimeoutException path); an
    inline callback must be a plain function: one that awaits is stopped with a clear error
    instead of being left half-run."""
    from sim_bridge.executor import LeanExecutor

    node = rclpy.create_node("static_timeout", namespace="/exec_test")
    executor = LeanExecutor()
    executor.add_node(node)
    try:
        start = time.monotonic()
        for _ in range(3):
            executor.spin_once(timeout_sec=0.05)
        assert time.monotonic() - start >= 0.1, "spin_once returned before its timeout with nothing to do"

        async def waits():
            await rclpy.task.Future()

        node.create_timer(0.01, waits)
        with pytest.raises(RuntimeError, match="awaited something"):
            for _ in range(50):
                executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()


def test_throttled_log_formats_a_lazy_line_only_when_it_goes_out():
    from sim_bridge.executor import ThrottledLog
    lines, formatted = [], []

    def text():
        formatted.append(1)
        return "clipped"

    log = ThrottledLog(lines.append, period_s=60.0)
    for _ in range(100):
        log("filter:step", text)
    log("other", "plain text")
    assert lines == ["clipped", "plain text"] and len(formatted) == 1
