"""Executors, process entry points and runtime helpers shared by the stack's ROS nodes."""
from __future__ import annotations

import faulthandler
import functools
import gc
import os
import signal
import sys
import time

from rclpy.exceptions import InvalidHandle
from rclpy.executors import (ConditionReachedException, ExternalShutdownException, MultiThreadedExecutor,
                             ShutdownException, SingleThreadedExecutor, TimeoutException, TimeoutObject)
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.utilities import timeout_sec_to_nsec


class _InlineCall:
    """The handler of an inline callback: takes the message (or fires the timer) and runs the
    callback at once, in the thread that calls it. Unlike rclpy's ``Task`` handler it creates no
    coroutine task, marks nothing pending and triggers no guard condition (each trigger wakes
    the wait loop once more for nothing)."""

    __slots__ = ("entity", "take", "tracker")

    def __init__(self, entity, take, tracker):
        self.entity, self.take, self.tracker = entity, take, tracker

    def __call__(self) -> None:
        with self.tracker:
            call = self.take(self.entity)
            if call is None:
                return
            coroutine = call()
            try:
                coroutine.send(None)
            except StopIteration:
                return
            coroutine.close()
            raise RuntimeError(f"an inline callback of {type(self.entity).__name__} awaited something: "
                               "inline callbacks must be plain functions that do not wait")

    def done(self) -> bool:
        return True

    def result(self) -> None:
        return None

    def exception(self) -> None:
        return None


class _Prepared:
    """What one wait needs, kept while the waited-on entities stay the same."""

    __slots__ = ("key", "wait_set", "handles", "waitables", "by_kind", "kinds")

    def __init__(self, key, wait_set, handles, waitables, by_kind, kinds):
        self.key, self.wait_set, self.handles, self.waitables, self.by_kind = key, wait_set, handles, waitables, by_kind
        self.kinds = kinds  # the kinds with entities in the set (the others are never ready)


_KINDS = ("timer", "subscription", "guard_condition", "client", "service")
#: (kind, Node attribute) gathered in a full pass (kind None: waitables) and in a control pass
_ALL_KINDS = (("timer", "timers"), ("subscription", "subscriptions"), ("client", "clients"),
              ("service", "services"), ("guard_condition", "guards"), (None, "waitables"))
_CONTROL_KINDS = _ALL_KINDS[:2]
#: ``inline_callback_groups`` of every node in a :class:`LeanExecutor`
ALL_GROUPS = object()


class StaticWaitMixin:
    """rclpy's wait loop without rebuilding its wait set on every wake.

    rclpy (7.1) builds a new ``rcl`` wait set on every pass of its wait loop: it gathers every
    node's entities through generators, enters each handle through an ``ExitStack``, allocates
    the wait set, then scans every entity against the ready lists. Measured here, that is most
    of the CPU a 500 Hz node spends (0.14-0.22 ms per wake; a raw wait on the same timer: 0.05
    ms, ``docs/profile.md``). This loop keeps the wait set and a pointer -> entity map while the
    waited-on entities are the same ones (compared by identity on each pass; any entity
    created, destroyed, or held back by its callback group makes a new one) and looks the ready
    entities up by pointer.

    ``rcl_wait`` itself costs ~2 us per entity (each publisher and subscription brings two QoS
    event handlers). So for a node with inline groups (every node in a :class:`LeanExecutor`)
    most passes wait only on the *control set*, its inline timers and subscriptions; the full
    set (services, clients, QoS events, guard conditions, other groups' callbacks) is waited on
    at least every ``FULL_WAIT_PERIOD_NS`` (10 ms): a request is served at most that much later,
    the loop is never delayed. Subscriptions a node lists in ``polled_subscriptions`` are never
    waited on: the node takes their messages itself (the sim bridge's commands, at its tick).

    Everything else is rclpy's: a callback's handler is ``self._make_handler`` (a ``Task``
    that respects callback groups), in-progress tasks are yielded first, guard conditions
    and waitables (QoS events) behave the same, and handles are entered while waiting so an
    entity destroyed meanwhile is freed only afterwards. Callbacks of a node's
    ``inline_callback_groups`` (all callbacks, in :class:`LeanExecutor`) get an
    :class:`_InlineCall` instead of a ``Task``: the executor runs them at once in its spinning
    thread.
    """

    #: wait sets kept (the control set and the full one; a callback handed to a worker changes
    #: the set until it has taken its message, so a node alternates between a few)
    PREPARED_SETS = 8
    #: the full set (services, clients, QoS events, guard conditions, other groups' timers and
    #: subscriptions) is waited on at least this often; between, only the control set
    FULL_WAIT_PERIOD_NS = 10_000_000
    _next_full_ns = 0

    @property
    def _prepared_sets(self) -> dict:
        sets = self.__dict__.get("_static_wait_sets")
        if sets is None:
            sets = self.__dict__["_static_wait_sets"] = {}
        return sets

    def shutdown(self, timeout_sec=None) -> bool:
        done = super().shutdown(timeout_sec)
        # nothing of this executor's waits outlives it: no wait set (each holds the context),
        # no suspended wait loop
        self._prepared_sets.clear()
        self._cb_iter = None
        return done

    def _inline_groups(self, node):
        """The node's callback groups that run inline (:data:`ALL_GROUPS`: all of them)."""
        return getattr(node, "inline_callback_groups", ()) if node is not None else ()

    def _runs_inline(self, entity, node) -> bool:
        groups = self._inline_groups(node)
        return groups is ALL_GROUPS or entity.callback_group in groups

    def _make_handler(self, entity, node, take_from_wait_list):
        if self.static_wait and self._runs_inline(entity, node):
            return _InlineCall(entity, take_from_wait_list, self._work_tracker)
        return super()._make_handler(entity, node, take_from_wait_list)

    def _gather(self, nodes, full: bool):
        """(entity, node, kind) of everything to wait on in this pass; kind None = a waitable.
        Not ``full``: only the control set of nodes that have inline groups (their inline
        timers and subscriptions; every entity of a node without inline groups)."""
        can_execute = self.can_execute
        found = []
        for node in nodes:
            inline = self._inline_groups(node)
            everything = full or not inline
            polled = getattr(node, "polled_subscriptions", ())
            kinds = _ALL_KINDS if everything else _CONTROL_KINDS
            for kind, attribute in kinds:
                for entity in getattr(node, attribute):
                    if polled and entity in polled:
                        continue  # the node takes their messages itself
                    runs_inline = inline is ALL_GROUPS or entity.callback_group in inline
                    if not (everything or runs_inline):
                        continue
                    if (runs_inline and not entity._executor_event) or can_execute(entity):
                        found.append((entity, node, kind))
        return found

    def _prepare(self, found) -> _Prepared:
        counts = dict.fromkeys(_KINDS, 0)
        events = 0
        handles, waitables = [], []
        by_kind = {kind: {} for kind in _KINDS}
        for entity, node, kind in found:
            if kind is None:
                number = entity.get_num_entities()
                counts["subscription"] += number.num_subscriptions
                counts["guard_condition"] += number.num_guard_conditions
                counts["timer"] += number.num_timers
                counts["client"] += number.num_clients
                counts["service"] += number.num_services
                events += number.num_events
                waitables.append((entity, node))
            else:
                counts[kind] += 1
                handles.append((kind, entity.handle))
                by_kind[kind][entity.handle.pointer] = (entity, node)
        for guard in (self._guard, self._sigint_gc):
            counts["guard_condition"] += 1
            handles.append(("guard_condition", guard.handle))
        wait_set = _rclpy.WaitSet(counts["subscription"], counts["guard_condition"], counts["timer"],
                                  counts["client"], counts["service"], events, self._context.handle)
        key = tuple(entity for entity, _, _ in found)
        handles = [(getattr(wait_set, "add_" + kind), handle) for kind, handle in handles]
        kinds = tuple(kind for kind in _KINDS if counts[kind])
        return _Prepared(key, wait_set, handles, waitables, by_kind, kinds)

    #: False: rclpy's own wait loop and handlers (the baseline the benchmarks compare with)
    static_wait = True

    def _wait_for_ready_callbacks(self, timeout_sec=None, nodes=None, condition=lambda: False):
        if not self.static_wait:
            yield from super()._wait_for_ready_callbacks(timeout_sec, nodes, condition)
            return
        timeout_nsec = timeout_sec_to_nsec(timeout_sec.timeout if isinstance(timeout_sec, TimeoutObject)
                                           else timeout_sec)
        deadline = None if timeout_nsec < 0 else time.monotonic_ns() + timeout_nsec
        yielded_work = False
        while not yielded_work and not self._is_shutdown and not condition():
            nodes_to_use = self.get_nodes() if nodes is None else nodes
            if self._tasks:  # tasks in progress first, as rclpy does
                with self._tasks_lock:
                    tasks = list(self._tasks)
                for task, entity, node in reversed(tasks):
                    if not task.executing() and not task.done() and (node is None or node in nodes_to_use):
                        yielded_work = True
                        yield task, entity, node
                with self._tasks_lock:
                    self._tasks = [t for t in self._tasks if not t[0].done() and not t[0].cancelled()]

            now = time.monotonic_ns()
            full = timeout_nsec == 0 or now >= self._next_full_ns
            if full:
                self._next_full_ns = now + self.FULL_WAIT_PERIOD_NS
            found = self._gather(nodes_to_use, full)
            for entity, _, kind in found:  # retrigger a guard condition triggered but not handled
                if kind == "guard_condition" and entity._executor_triggered:
                    entity.trigger()
            key = tuple(entity for entity, _, _ in found)
            prepared = self._prepared_sets.get(key)
            if prepared is None:
                if len(self._prepared_sets) >= self.PREPARED_SETS:
                    self._prepared_sets.clear()
                prepared = self._prepared_sets[key] = self._prepare(found)
            wait_set = prepared.wait_set
            entered = []
            try:
                wait_set.clear_entities()
                for add, handle in prepared.handles:
                    try:
                        handle.__enter__()
                    except InvalidHandle:  # destroyed since: not waited on (rclpy skips it too)
                        continue
                    entered.append(handle)
                    add(handle)
                for waitable, _ in prepared.waitables:
                    try:
                        waitable.__enter__()
                    except InvalidHandle:
                        continue
                    entered.append(waitable)
                    waitable.add_to_wait_set(wait_set)
                self._context.handle.__enter__()
                entered.append(self._context.handle)
                until = deadline if full else min(deadline or self._next_full_ns, self._next_full_ns)
                wait_set.wait(-1 if until is None else max(0, until - time.monotonic_ns()))
                if self._is_shutdown:
                    raise ShutdownException()
                if not self._context.ok():
                    raise ExternalShutdownException()
                ready = dict.fromkeys(_KINDS, ())
                for kind in prepared.kinds:
                    ready[kind] = wait_set.get_ready_entities(kind)
                for pointer in ready["guard_condition"]:
                    entry = prepared.by_kind["guard_condition"].get(pointer)
                    if entry is not None:
                        entry[0]._executor_triggered = True
                ready_waitables = [(w, node) for w, node in prepared.waitables
                                   if w.is_ready(wait_set) and w.callback_group.can_execute(w)]
            finally:
                # the kept wait set must not keep what it waited on: a destroyed node's entities
                # (and with them the node, still in the ROS graph) would live as long as it
                wait_set.clear_entities()
                for handle in reversed(entered):
                    handle.__exit__(None, None, None)

            for waitable, node in ready_waitables:
                yielded_work = True
                yield self._make_handler(waitable, node, self._take_waitable), waitable, node
            takes = (("timer", self._take_timer), ("subscription", self._take_subscription),
                     ("client", self._take_client), ("service", self._take_service))
            for kind, take in takes:
                pointers = ready[kind]
                if not pointers:
                    continue
                known = prepared.by_kind[kind]
                for pointer in pointers:
                    entry = known.get(pointer)
                    if entry is None:
                        continue
                    entity, node = entry
                    if kind == "timer" and not _timer_ready(entity):
                        continue  # rclpy's workaround for cancelled timers
                    if self._runs_inline(entity, node) or entity.callback_group.can_execute(entity):
                        yielded_work = True
                        yield self._make_handler(entity, node, take), entity, node
            for guard, (entity, node) in prepared.by_kind["guard_condition"].items():
                if entity._executor_triggered and entity.callback_group.can_execute(entity):
                    yielded_work = True
                    yield self._make_handler(entity, node, self._take_guard_condition), entity, node
            if timeout_nsec == 0 or (deadline is not None and time.monotonic_ns() >= deadline and not yielded_work):
                raise TimeoutException()
        if self._is_shutdown:
            raise ShutdownException()
        if condition():
            raise ConditionReachedException()


def take_polled(subscription):
    """One message a node takes itself from a subscription in its ``polled_subscriptions``:
    ``(message, info)`` (info: rclpy's message info, ``received_timestamp`` included), or None
    when nothing is waiting or another thread destroyed the subscription (a lifecycle cleanup)."""
    try:
        with subscription.handle:
            return subscription.handle.take_message(subscription.msg_type, subscription.raw)
    except InvalidHandle:
        return None


def _timer_ready(timer) -> bool:
    """A ready timer's re-check (rclpy's workaround for cancelled timers); False for a timer
    another thread destroyed since the wait (a lifecycle cleanup in a worker): rcl then raises
    on the freed handle instead of answering."""
    try:
        with timer.handle:
            return timer.handle.is_timer_ready()
    except (InvalidHandle, _rclpy.RCLError):
        return False


class ControlExecutor(StaticWaitMixin, MultiThreadedExecutor):
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
            try:
                handler()  # in this thread, as SingleThreadedExecutor does: no hand-off to a worker
                handler.result()  # raise any exception
            except Exception:
                # SIGINT shut the context down between the wait and the take: rclpy then fails to
                # convert the taken message (a RuntimeError from pybind11, seen in the fresh-clone
                # CI on the real bridge's object-pose subscription). A stop, not a fault.
                if self._is_shutdown or not self._context.ok():
                    return
                raise
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


class StockControlExecutor(ControlExecutor):
    """:class:`ControlExecutor` on rclpy's own wait loop and ``Task`` handlers (what it was
    before :class:`StaticWaitMixin`): the baseline of ``bench policy-node --executors``."""

    static_wait = False


class LeanExecutor(StaticWaitMixin, SingleThreadedExecutor):
    """rclpy's SingleThreadedExecutor on :class:`StaticWaitMixin`'s wait loop, every callback
    run inline (no ``Task`` per callback). For nodes whose callbacks are all short (the sim
    bridge, the arm emulator, the recorder, the calibration node)."""

    def _inline_groups(self, node):
        return ALL_GROUPS


EXECUTOR_ENV = "SIM2REAL_EXECUTOR"
EXECUTORS = ("default", "control", "single", "stock")


def executor_kind(kind: str | None = None) -> str:
    """``kind``, or ``SIM2REAL_EXECUTOR`` when None, checked against :data:`EXECUTORS`."""
    kind = (kind if kind is not None else os.environ.get(EXECUTOR_ENV, "")).strip() or "default"
    if kind not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={kind!r}: must be one of {', '.join(EXECUTORS)}")
    return kind


def make_executor(num_threads: int = 0, kind: str | None = None):
    """The executor a node process spins in.

    ``kind`` (default: the environment variable ``SIM2REAL_EXECUTOR``, else ``default``):
    ``default`` = a :class:`ControlExecutor` with ``num_threads`` workers, or a
    :class:`LeanExecutor` (single-threaded) when ``num_threads`` is 0; ``control`` / ``single``
    force one of those (for benchmarks: a single-threaded policy node runs a swap's load inside
    the control loop); ``stock`` = the same on rclpy's own wait loop (rclpy's
    SingleThreadedExecutor, or :class:`StockControlExecutor`): the baseline the benchmarks
    compare with. rclpy's ``rclpy.experimental.EventsExecutor`` is not offered: in the Jazzy
    wheels installed here (rclpy 7.1.6) its ``spin()`` never ran a timer callback and ignored
    SIGTERM at ~70% of a core (measured; ``docs/profile.md``)."""
    kind = executor_kind(kind)
    if kind == "stock":
        return StockControlExecutor(num_threads=num_threads) if num_threads else SingleThreadedExecutor()
    if kind == "single" or (kind == "default" and not num_threads):
        return LeanExecutor()
    return ControlExecutor(num_threads=num_threads or 2)


def _context_going_down(rclpy, grace_s: float = 1.0) -> bool:
    """Whether the default context is shut down or goes down within ``grace_s``: after a
    SIGINT rclpy shuts it down from its signal-handling thread, which on a loaded machine can
    lag the failure it causes in the spinning thread. A real fault waits ``grace_s`` longer."""
    deadline = time.monotonic() + grace_s
    while rclpy.ok():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def run_node(label: str, make_node, args: list[str] | None = None, *, num_threads: int = 0) -> int:
    """``main()`` of a node process: init, build (a ConfigError or a bad parameter prints the
    reason and returns 2; so does a lifecycle node with ``autostart`` that did not reach
    active), spin until Ctrl-C or shutdown (:func:`make_executor`: single-threaded, or a
    ControlExecutor with ``num_threads``; ``SIM2REAL_EXECUTOR`` overrides), stop dispatching,
    clean up, return 0. ``make_node`` may return several nodes (a composed process): they are
    built in order, spun by the one executor and destroyed in reverse order. SIGUSR1 prints
    every thread's stack (faulthandler) without stopping the process: what a node that does not
    stop is doing."""
    import rclpy
    from rclpy.exceptions import ParameterException

    from sim_bridge.config import ConfigError

    try:
        executor_kind()
    except ValueError as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        return 2

    if hasattr(signal, "SIGUSR1"):   # `kill -USR1 PID`: every thread's stack to stderr (a hung stop)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        built = make_node()
    except (ConfigError, ParameterException) as exc:
        print(f"{label}: invalid configuration: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        rclpy.try_shutdown()
        return 0
    except Exception:
        if not _context_going_down(rclpy):
            raise
        # Ctrl-C while the node is being built: rclpy's signal handler shut the context down
        # under it (e.g. "RCLError: ... context is not valid"); a stop, not a failure.
        rclpy.try_shutdown()
        return 0
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
        if not _context_going_down(rclpy):
            raise
        # Ctrl-C while spinning or during start-up: rclpy's signal handler shuts the context
        # down from its own thread, and a take or conversion in flight fails on the way (a
        # RuntimeError from pybind11, seen once in the fresh-clone CI). A stop, not a fault.
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
    activation and after each swap, the real bridge at activation). Frozen objects are never
    scanned again, so later collections only see what the control loop allocates
    (messages, arrays: short-lived). ``full``: collect everything first (before a loop
    runs); otherwise only the youngest generation (0.1 ms), so cyclic garbage of the last
    allocations may stay frozen: a few kB per call.
    """
    gc.collect(2 if full else 0)
    gc.freeze()


class ThrottledLog:
    """A log call that lets each key through at most once per ``period_s``. ``text`` may be a
    function returning the text: it is only formatted when the line goes out (a per-cycle
    caller whose lines are mostly throttled then does not format them)."""

    def __init__(self, log, period_s: float = 1.0):
        self._log, self.period_s = log, period_s
        self._last: dict[str, float] = {}

    def __call__(self, key: str, text) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.period_s:
            self._last[key] = now
            self._log(text() if callable(text) else text)

    def mark(self, key: str) -> None:
        """Count ``key`` as just logged (by other means): repeats are throttled from now."""
        self._last[key] = time.monotonic()
