"""Executors, process entry points and runtime helpers shared by the stack's ROS nodes."""
from __future__ import annotations

import functools
import gc
import os
import sys
import time

from rclpy.exceptions import InvalidHandle
from rclpy.executors import (ConditionReachedException, ExternalShutdownException, MultiThreadedExecutor,
                             ShutdownException, TimeoutException)


class ControlExecutor(MultiThreadedExecutor):
    """A MultiThreadedExecutor without rclpy's busy loop on queued callbacks.

    rclpy (7.1) yields a callback task that no worker has started yet again on every pass of
    its wait loop, without waiting, and MultiThreadedExecutor submits it again. While the
    workers wait for the GIL, the spinning thread keeps it busy: measured here, a 50 Hz node
    used 0.3-0.6 of a core and fell to 30 Hz (4 Hz on a loaded machine), with the loop
    rebuilding its wait set ~13 times per callback. Here a task already submitted is not
    submitted again; the spinning thread sleeps briefly instead, so a worker can take it.

    Inline groups: a node may list callback groups in ``inline_callback_groups``; their
    callbacks run in the spinning thread itself, as in rclpy's SingleThreadedExecutor, instead
    of being handed to a worker (the hand-off, a thread wake-up and a GIL transfer per callback,
    cost the policy node ~0.2 ms of CPU per 500 Hz cycle: docs/profile.md). Everything else
    still runs in the workers, so a long callback elsewhere (a policy load in the parameter
    service) does not hold the inline ones.

    Pacing: a node may define ``pace_callback(entity)``. The worker thread calls it before
    the entity's task starts, i.e. before rclpy takes the message or request from the
    middleware and converts it, so the node can hold back callbacks that are not part of
    its control loop until the loop's idle time (the policy node: its parameter service,
    whose request handling would otherwise hold the GIL while a cycle waits for it).
    """

    QUEUED_BACKOFF_S = 2e-4

    def _spin_once_impl(self, timeout_sec=None, wait_condition=lambda: False) -> None:
        try:
            handler, entity, node = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            return
        if any(handler is queued for queued in self._futures):
            time.sleep(self.QUEUED_BACKOFF_S)
        elif entity is not None and entity.callback_group in getattr(node, "inline_callback_groups", ()):
            handler()  # in this thread, as SingleThreadedExecutor does: no hand-off to a worker
            handler.result()  # raise any exception
        else:
            pace = getattr(node, "pace_callback", None)
            self._executor.submit(handler if pace is None else functools.partial(_run_paced, pace, entity, handler))
            self._futures.append(handler)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                try:
                    future.result()  # raise any exceptions
                except InvalidHandle:
                    # shutdown() destroys the executor's guard conditions while a last task may
                    # still trigger one: harmless then, a bug otherwise
                    if not self._is_shutdown:
                        raise


def _run_paced(pace, entity, handler) -> None:
    pace(entity)
    handler()


EXECUTOR_ENV = "SIM2REAL_EXECUTOR"
EXECUTORS = ("default", "control", "single")


def executor_kind(kind: str | None = None) -> str:
    """``kind``, or ``SIM2REAL_EXECUTOR`` when None, checked against :data:`EXECUTORS`."""
    kind = (kind if kind is not None else os.environ.get(EXECUTOR_ENV, "")).strip() or "default"
    if kind not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={kind!r}: must be one of {', '.join(EXECUTORS)}")
    return kind


def make_executor(num_threads: int = 0, kind: str | None = None):
    """The executor a node process spins in.

    ``kind`` (default: the environment variable ``SIM2REAL_EXECUTOR``, else ``default``):
    ``default`` = a :class:`ControlExecutor` with ``num_threads`` workers, or rclpy's
    SingleThreadedExecutor when ``num_threads`` is 0; ``control`` / ``single`` force one of
    those (for benchmarks: a single-threaded policy node runs a swap's load inside the control
    loop). rclpy's ``rclpy.experimental.EventsExecutor`` is not offered: in the Jazzy wheels
    installed here (rclpy 7.1.6) its ``spin()`` never ran a timer callback and ignored SIGTERM
    at ~70% of a core (measured; ``docs/profile.md``)."""
    kind = executor_kind(kind)
    if kind == "single" or (kind == "default" and not num_threads):
        from rclpy.executors import SingleThreadedExecutor
        return SingleThreadedExecutor()
    return ControlExecutor(num_threads=num_threads or 2)


def run_node(label: str, make_node, args: list[str] | None = None, *, num_threads: int = 0) -> int:
    """``main()`` of a node process: init, build (a ConfigError or a bad parameter prints the
    reason and returns 2; so does a lifecycle node with ``autostart`` that did not reach
    active), spin until Ctrl-C or shutdown (:func:`make_executor`: single-threaded, or a
    ControlExecutor with ``num_threads``; ``SIM2REAL_EXECUTOR`` overrides), stop dispatching,
    clean up, return 0. ``make_node`` may return several nodes (a composed process): they are
    built in order, spun by the one executor and destroyed in reverse order."""
    import rclpy
    from rclpy.exceptions import ParameterException

    from sim_bridge.config import ConfigError

    try:
        executor_kind()
    except ValueError as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        return 2

    rclpy.init(args=args if args is not None else sys.argv)
    try:
        built = make_node()
    except (ConfigError, ParameterException) as exc:
        print(f"{label}: invalid configuration: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    nodes = list(built) if isinstance(built, (list, tuple)) else [built]
    for node in nodes:
        lifecycle = getattr(node, "lifecycle_state", None) is not None
        if lifecycle and node.get_parameter("autostart").value and node.lifecycle_state != "active":
            print(f"{label}: cannot start {node.get_name()}: {node.last_error or 'activation failed'}", file=sys.stderr)
            for other in reversed(nodes):
                other.destroy_node()
            rclpy.try_shutdown()
            return 2
    executor = None
    try:
        executor = make_executor(num_threads)
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # Ctrl-C during start-up: the context was shut down before spinning began.
    finally:
        if executor is not None:
            for node in nodes:
                executor.remove_node(node)  # stop dispatching; destroy_node lets a running cycle finish
        for node in reversed(nodes):
            node.destroy_node()
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown()
    return 0


def freeze_heap(full: bool = True) -> None:
    """Move every object alive now out of the cyclic garbage collector's generations.

    A full collection walks every tracked object: ~47k in a running policy node (rclpy,
    onnxruntime, numpy), 5-20 ms holding the GIL, i.e. several 500 Hz cycles; a policy swap's
    allocations (manifest, session, arrays) make one likely. Control nodes call this once
    their long-lived objects exist (the sim bridge after start-up, the policy node at
    activation and after each swap). Frozen objects are never
    scanned again, so later collections only see what the control loop allocates
    (messages, arrays: short-lived). ``full``: collect everything first (before a loop
    runs); otherwise only the youngest generation (0.1 ms), so cyclic garbage of the last
    allocations may stay frozen: a few kB per call.
    """
    gc.collect(2 if full else 0)
    gc.freeze()


class ThrottledLog:
    """A log call that lets each key through at most once per ``period_s``."""

    def __init__(self, log, period_s: float = 1.0):
        self._log, self.period_s = log, period_s
        self._last: dict[str, float] = {}

    def __call__(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.period_s:
            self._last[key] = now
            self._log(text)

    def mark(self, key: str) -> None:
        """Count ``key`` as just logged (by other means): repeats are throttled from now."""
        self._last[key] = time.monotonic()
