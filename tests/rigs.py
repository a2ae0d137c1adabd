"""Helper for the ROS node tests' factory fixtures (tests/ is on sys.path: rootdir conftest)."""
from __future__ import annotations

import signal
import time

import pytest


@pytest.fixture(scope="module", autouse=True)
def ros():
    """rclpy initialised for the whole test module (import it into a module to use it)."""
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()


def wait_until(predicate, timeout: float) -> bool:
    """Poll ``predicate`` every 2 ms until it is true or ``timeout`` seconds passed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.002)
    return bool(predicate())


def matched_count(entity) -> int:
    """The number of DDS endpoints matched with ``entity``: subscriptions for a publisher,
    publishers for a subscription."""
    if hasattr(entity, "get_subscription_count"):
        return entity.get_subscription_count()
    return entity.get_publisher_count()


def wait_for_match(*entities, count: int = 1, timeout: float = 30.0) -> bool:
    """Wait until every publisher in ``entities`` has ``count`` matched subscriptions and every
    subscription ``count`` matched publishers (DDS discovery done: a message published from
    then on reaches them). Polls; returns as soon as all match, False after ``timeout`` s.
    Use it before the first publish, instead of a fixed sleep."""
    return wait_until(lambda: all(matched_count(e) >= count for e in entities), timeout)


def spin_until(executor, seconds: float, until=None, step_s: float = 0.005) -> bool:
    """Spin ``executor`` in this thread for up to ``seconds``: True once ``until()`` holds (checked
    after each spin_once), False at the end; with no ``until``, spin the whole time and return True."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=step_s)
        if until is not None and until():
            return True
    return until is None


def stop_process(proc, timeout_s: float = 15.0) -> str:
    """Stop a node process started with ``stdout=PIPE, text=True`` as a launcher does (SIGINT),
    killed if it outlives ``timeout_s``; returns its output (its exit code is ``proc.returncode``)."""
    import subprocess

    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)   # a node process (run_node) prints every thread's stack
        try:
            out, _ = proc.communicate(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    return out


def run_until_logged(cmd, wanted, *, timeout_s: float = 120.0, then_s: float = 0.0,
                     stop_timeout_s: float = 90.0) -> tuple[bool, int, str]:
    """Start ``cmd`` (a launcher or node process), wait until every string of ``wanted`` is in
    its output (or it exits, or ``timeout_s``), let it run ``then_s`` more, then SIGINT it as a
    user's Ctrl-C. Returns (all logged, exit code, output). Tests of processes that must come
    up use this rather than a fixed duration, which a loaded machine overruns."""
    import subprocess
    import threading

    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        logged = wait_until(lambda: all(w in "".join(lines) for w in wanted) or proc.poll() is not None, timeout_s)
        logged = logged and proc.poll() is None
        if logged and then_s > 0:
            time.sleep(then_s)  # intentional: the caller's window (e.g. a recording) after start-up
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=stop_timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    out = "".join(lines)
    return all(w in out for w in wanted), proc.returncode, out


def closing_factory(build, after_close=None):
    """Body of a factory fixture (``yield from closing_factory(Rig)``): the test gets
    ``make(**params) -> build(**params)``; at teardown every object built is closed, then
    ``after_close(obj)`` runs for each (e.g. a check on what the closing left behind).
    """
    built = []

    def make(**params):
        obj = build(**params)
        built.append(obj)
        return obj

    yield make
    for obj in built:
        obj.close()
    if after_close is not None:
        for obj in built:
            after_close(obj)


def spin_in_thread(*nodes, num_threads: int = 4):
    """A ControlExecutor (``num_threads`` workers) spinning ``nodes`` in a daemon thread:
    ``(executor, thread)``, for :func:`stop_executor`."""
    import threading

    from sim_bridge.executor import ControlExecutor

    executor = ControlExecutor(num_threads=num_threads)
    for node in nodes:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    return executor, thread


def stop_executor(executor, thread, *nodes, settle_s: float = 0.2) -> None:
    """Stop an executor spun in ``thread`` and destroy ``nodes``. rclpy's Executor.shutdown()
    does not wait for callbacks in flight (and a callback that ends after it hits the destroyed
    guard condition): stop dispatching, let them finish, then shut down and destroy."""
    for node in nodes:
        executor.remove_node(node)
    time.sleep(settle_s)  # teardown: callbacks in flight finish (not a discovery wait)
    executor.shutdown(timeout_sec=5.0)
    thread.join(5.0)
    for node in nodes:
        node.destroy_node()
