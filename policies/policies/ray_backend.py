"""The Ray backend: env workers as Ray actors, and episode chunks as Ray tasks.

Training (``sim2real train --backend ray``): :class:`RayVectorEnv` is the vector env of
:mod:`sim_bridge.envs.vector` with Ray actors in place of worker processes. Each actor
(:class:`EnvWorker`) hosts one :class:`~sim_bridge.envs.vector.EnvBatch`, the same envs a
local worker hosts (:func:`~sim_bridge.envs.vector.worker_bounds`); the learner (policy,
sampling, PPO update) stays in the driver, so with the same seed, ``num_envs`` and
``num_workers`` the batches are the ones the local backend produces, bit for bit.

Transport, per step:
* an actor on the driver's machine steps its envs **in place**, into its rows of the driver's
  buffers (one named shared-memory segment, :func:`~sim_bridge.envs.vector.named_buffers`, as
  the local workers share theirs), and reads its actions there; the step's message and answer
  carry no arrays;
* an actor on another node steps into buffers of its own and answers with its rows of the
  observations, rewards and infos (of the dynamics and final observations only the rows that
  changed); the driver sends it its rows of the actions.
An attached actor takes its steps over a Unix socket: one long-running :meth:`EnvWorker.serve`
call connects to a socket the driver listens on and answers each step's message there (a plain
Ray call per step cost ~1.5 ms of a 2-core machine's time per step, the socket ~0.07 ms); an
actor on another node gets one plain actor call per step. A death closes the socket (EOF), the
serve call's Ray error confirms it, and the restart + replay below runs. A Ray **compiled graph** over the actors'
``handle`` method (shared-memory channels, one ``execute`` per step) is an option
(``compiled_graph=True``, ``--ray-compiled-graph``) when every actor runs on the driver's
machine, but not the default: in Ray 2.60 its readers busy-wait (ray-project/ray#55128), so
each idle actor holds a core at 100% (measured: 0.98 core each, between steps and through the
whole PPO update) and the driver spins while the actors step (0.75 core, leaving the two
actors 0.43 core each on a 2-core machine). Where the driver and the actors have more cores
than they use it can pay; on this machine plain calls over the shared buffers were faster
(README, "Scaling out on Ray"). :meth:`RayVectorEnv.placement` leaves a graph (an actor in a
graph runs nothing else) and the next step rebuilds it.

Fault tolerance: actors are created with ``max_restarts``; a step whose actor died is not
retried by Ray (a fresh actor's envs are not the dead one's), :class:`RayVectorEnv` does
it: it keeps the iteration's reset seed and the actions sent since, and the restarted
actor replays them (the env resets are seeded and the episode resets inside a step draw
from the env's own generator, so the replayed state is the lost one) before the lost step
is answered (in a compiled graph, a failed step tears the graph down, the actors whose process
changed since the last placement are counted as deaths, and every actor replays with plain
calls). The replay is exact when the last reset was seeded (training seeds every
iteration's reset); ``final_observation`` / ``final_privileged`` rows of envs that have not
finished an episode since that reset (rows the vector env leaves undefined) hold zeros
afterwards instead of older values when the actor answers with its rows (in the shared buffers
they keep theirs). After ``max_restarts`` deaths of one worker the run stops with an error that
says so; a checkpoint resumes with ``--resume``, on this cluster or another.

Evaluation fan-out: :func:`map_chunks` runs a function over chunks as Ray tasks (retried
``max_retries`` times when their worker dies; each chunk is a pure function of its input).

This module is the only one of ``policies`` that imports Ray, lazily: ``--backend local``
needs no Ray, and the deployed runtime never imports it (.importlinter).
"""
from __future__ import annotations

import os
import pickle
import shutil
import socket
import struct
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sim_bridge.envs import REACH_ID
from sim_bridge.envs.vector import EnvBatch, VectorTaskEnv, named_buffers, plain_buffers, worker_bounds

INSTALL_HINT = "pip install -r requirements/ray.txt -c requirements/runtime.txt -c requirements/train.txt"
# how long a restarting env actor may stay unreachable before the run gives up on it
RESTART_TIMEOUT_S = 120.0
# what an actor sends back after each step: every buffer but the actions (which come from the driver)
RETURNED_FIELDS = ("obs", "final_obs", "rewards", "terminated", "truncated", "success", "blowup", "distance",
                   "dynamics", "privileged", "final_privileged")
# buffers whose rows rarely change (the episode's dynamics; the final observation and privileged
# state of an episode that just ended): only their changed rows travel, as (row indices, rows)
CHANGED_ROWS_ONLY = ("final_obs", "dynamics", "final_privileged")


_FRAME = struct.Struct("<I")  # a socket frame: its pickle's length, then the pickle


def send_frame(sock: socket.socket, obj) -> None:
    """Send ``obj`` as one length-prefixed pickle."""
    payload = pickle.dumps(obj, protocol=5)
    sock.sendall(_FRAME.pack(len(payload)) + payload)


def recv_frame(sock: socket.socket):
    """The next object :func:`send_frame` sent, or None when the peer closed the socket
    between frames (a close inside a frame raises ConnectionError)."""
    header = _recv_exactly(sock, _FRAME.size)
    if header is None:
        return None
    payload = _recv_exactly(sock, _FRAME.unpack(header)[0])
    if payload is None:
        raise ConnectionError("the peer closed the socket inside a frame")
    return pickle.loads(payload)


def _recv_exactly(sock: socket.socket, size: int) -> bytearray | None:
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            if got:
                raise ConnectionError("the peer closed the socket inside a frame")
            return None
        got += n
    return buf


class _Lost(Exception):
    """An attached actor's socket link broke: ``error`` says why (a death, or a restart)."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class _StepLink:
    """The driver's end of an attached actor's step signals: a Unix socket in a private
    temporary folder, which the actor connects to from its long-running
    :meth:`EnvWorker.serve` call. Opening it waits for the connection (the call may queue
    behind a restart); a death (the serve call fails with a Ray actor error, the socket
    closes) raises :class:`_Lost`, and so does a process other than ``expected_pid``."""

    ACCEPT_POLL_S = 0.05

    def __init__(self, ray, worker, expected_pid: int | None):
        self._ray = ray
        self._folder = tempfile.mkdtemp(prefix="s2r-ray-")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock: socket.socket | None = None
        self.pid: int | None = None
        try:
            path = os.path.join(self._folder, "steps")
            self._listener.bind(path)
            self._listener.listen(1)
            self._listener.settimeout(self.ACCEPT_POLL_S)
            self.ref = worker.serve.remote(path)
            self.sock = self._accept()
            try:
                self.pid = recv_frame(self.sock)
            except OSError:
                self.pid = None
            if self.pid is None:
                raise _Lost(self._why_closed())
            if expected_pid is not None and self.pid != expected_pid:
                raise _Lost(RuntimeError(f"its process {expected_pid} died; Ray restarted it as process {self.pid}"))
        except BaseException:
            self.close()
            raise

    def _accept(self) -> socket.socket:
        ray, since = self._ray, time.monotonic()
        while True:
            try:
                sock, _ = self._listener.accept()
                sock.settimeout(None)
                return sock
            except TimeoutError:
                done, _ = ray.wait([self.ref], timeout=0)
                if done:  # the serve call ended without connecting
                    raise _Lost(self._why_closed())
                if time.monotonic() - since > RESTART_TIMEOUT_S:
                    raise _Lost(RuntimeError(f"did not connect within {RESTART_TIMEOUT_S:.0f} s")) from None

    def _why_closed(self) -> Exception:
        """The serve call ended (or its socket closed): the Ray actor error of a death, else
        raise what the call raised (not a death: a fault to report)."""
        ray = self._ray
        try:
            ray.get(self.ref, timeout=RESTART_TIMEOUT_S)
        except ray.exceptions.RayActorError as exc:
            return exc
        except ray.exceptions.GetTimeoutError:
            return RuntimeError("its socket closed while its serve call went on")
        return RuntimeError("its serve call returned before the driver stopped it")

    def send(self, message) -> None:
        try:
            send_frame(self.sock, message)
        except OSError as exc:  # a broken pipe or reset: the actor's process is gone
            raise _Lost(self._why_closed()) from exc

    def receive(self):
        """The actor's answer to the message sent (an exception it raised is raised here)."""
        try:
            reply = recv_frame(self.sock)
        except OSError as exc:
            raise _Lost(self._why_closed()) from exc
        if reply is None:
            raise _Lost(self._why_closed())
        status, value = reply
        if status == "error":
            raise value
        return value

    def close(self, stop: bool = True) -> None:
        """Stop the serve call (``stop``: say so and wait for it to end, so the actor takes
        calls again) and remove the socket."""
        if self.sock is not None:
            if stop:
                try:
                    send_frame(self.sock, ("stop", None))
                    self._ray.wait([self.ref], timeout=RESTART_TIMEOUT_S)
                except OSError:
                    pass
            self.sock.close()
            self.sock = None
        self._listener.close()
        shutil.rmtree(self._folder, ignore_errors=True)


class RayNotInstalled(ImportError):
    """``--backend ray`` was asked for, but Ray is not installed."""


def require_ray():
    """The ``ray`` module, or :class:`RayNotInstalled` with the command that installs it."""
    try:
        import ray  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise RayNotInstalled(f"--backend ray needs Ray, which is not installed here ({INSTALL_HINT}); "
                              "--backend local needs no Ray") from None
    return ray


def connect(address: str | None = None) -> bool:
    """Join the Ray cluster at ``address`` (None or '': ``RAY_ADDRESS`` if set, else start a Ray
    instance on this machine without a dashboard). Returns True when this call started or
    joined Ray (the caller then shuts it down), False when Ray was already initialized."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    ray.init(address=address or None, include_dashboard=False, configure_logging=False)
    return True


def node_id() -> str:
    """The Ray node this code runs on (for placement checks)."""
    ray = require_ray()
    return ray.get_runtime_context().get_node_id()


class EnvWorker:
    """A Ray actor hosting envs [start, stop): one :class:`EnvBatch`.

    ``shared``: (segment name, num_envs, node id) of the driver's buffers. An actor on that
    node attaches to the segment and steps its envs into their rows in place (answers carry
    no arrays); elsewhere it steps into buffers of its own and sends its rows back.
    """

    def __init__(self, env_id: str, env_kwargs: dict, start: int, stop: int, dims: tuple[int, int, int, int],
                 shared: tuple[str, int, str] | None = None):
        self._segment = None
        if shared is not None and shared[2] == node_id():
            self._segment, self.buf = named_buffers(shared[1], *dims, name=shared[0])
            self.batch = EnvBatch(env_id, env_kwargs, start, stop, self.buf)  # rows start..stop-1 of all
        else:
            self.buf = plain_buffers(stop - start, *dims)
            self.batch = EnvBatch(env_id, env_kwargs, start, stop, self.buf, first_row=0)
        self._sent: dict[str, np.ndarray] = {}  # the CHANGED_ROWS_ONLY buffers as the driver has them

    def where(self) -> tuple[int, str]:
        """(process id, Ray node id) of this actor."""
        return os.getpid(), node_id()

    def attached(self) -> bool:
        """Whether this actor steps into the driver's shared buffers (on the driver's node)."""
        return self._segment is not None

    def reset(self, seed: int | None) -> dict[str, np.ndarray] | None:
        self.batch.reset(seed)
        return self._rows()

    def step(self, actions: np.ndarray | None) -> dict[str, np.ndarray] | None:
        if actions is not None:  # attached: the driver wrote them into the shared rows
            self.buf.actions[:] = actions
        self.batch.step()
        return self._rows()

    def handle(self, message: tuple[str, Any]) -> dict[str, np.ndarray] | None:
        """The compiled graph's one method: ``("reset", seed)`` or ``("step", actions)``."""
        command, arg = message
        return self.reset(arg) if command == "reset" else self.step(arg)

    def serve(self, path: str) -> None:
        """Take :meth:`handle` messages over the Unix socket the driver listens on at ``path``
        until it says ``("stop", None)`` or closes it: one long-running actor call instead of
        one Ray call per step (an attached actor's messages and answers carry no arrays). The
        actor runs nothing else meanwhile. First frame out: this process's id (the driver
        checks it is the actor it knows, not a restart it has not replayed yet)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            send_frame(sock, os.getpid())
            while True:
                message = recv_frame(sock)
                if message is None or message[0] == "stop":
                    return
                try:
                    reply = ("ok", self.handle(message))
                except Exception as exc:  # noqa: BLE001 - the driver raises it
                    reply = ("error", exc)
                try:
                    send_frame(sock, reply)
                except (pickle.PicklingError, TypeError, AttributeError):  # an exception that does not pickle
                    send_frame(sock, ("error", RuntimeError(traceback.format_exc())))

    def replay(self, seed: int | None, actions: Sequence[np.ndarray]) -> dict[str, np.ndarray] | None:
        """Reset with ``seed`` and take the steps ``actions``: the state a lost actor had (all
        rows are sent: the driver may have missed the last answer)."""
        self._sent = {}
        self.batch.reset(seed)
        rows = slice(self.batch.first_row, self.batch.first_row + len(self.batch.envs))
        for step_actions in actions:
            self.buf.actions[rows] = step_actions
            self.batch.step()
        return self._rows()

    def _rows(self) -> dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]] | None:
        if self._segment is not None:
            return None  # the rows are in the driver's buffers already
        out = {}
        for name in RETURNED_FIELDS:
            value = getattr(self.buf, name)
            if name not in CHANGED_ROWS_ONLY:
                out[name] = value
            elif name not in self._sent:
                out[name] = value
                self._sent[name] = value.copy()
            else:
                last = self._sent[name]
                rows = np.flatnonzero((value != last).any(axis=1))
                out[name] = (rows, value[rows])
                last[rows] = value[rows]
        return out

    def close(self) -> None:
        self.batch.close()


class RayVectorEnv(VectorTaskEnv):
    """:class:`VectorTaskEnv` with ``num_workers`` Ray actors as its workers (same results).

    ``address``: the Ray cluster (see :func:`connect`); ``max_restarts``: deaths of one worker
    the run survives (each answered by a restart and a replay of the iteration so far);
    ``cpus_per_worker``: the CPUs each actor reserves. Actors are spread over the nodes.
    ``shared_memory``: actors on the driver's node step into the driver's buffers in place
    (False: every actor answers with its rows, as actors on other nodes always do);
    ``compiled_graph``: one Ray compiled graph per step when every actor is on this node (off by
    default: see the module docstring); ``socket_signals``: an attached actor takes its steps
    over a Unix socket from one long-running call (False: one plain Ray call per step).
    """

    def __init__(self, num_envs: int, num_workers: int = 2, env_id: str = REACH_ID,
                 env_kwargs: dict[str, Any] | None = None, *, address: str | None = None,
                 max_restarts: int = 3, cpus_per_worker: float = 1.0, compiled_graph: bool = False,
                 shared_memory: bool = True, socket_signals: bool = True):
        ray = require_ray()
        if num_workers < 1:
            raise ValueError(f"the Ray backend needs num_workers >= 1 (env actors), got {num_workers}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
        self.closed = True
        self._pipes, self._procs, self._local = [], [], None  # the local transport's fields, unused
        env_kwargs = self._describe(num_envs, num_workers, env_id, env_kwargs)
        self.max_restarts = max_restarts
        self._segment = None  # the shared buffers' segment (shared_memory), unlinked by close()
        self._workers = []
        self._started_ray = connect(address)
        self._ray = ray
        shared = None
        if shared_memory:
            self._segment, self._buf = named_buffers(num_envs, *self.buffer_dims)
            shared = (self._segment.name, num_envs, node_id())
        else:
            self._buf = plain_buffers(num_envs, *self.buffer_dims)
        self._bounds = worker_bounds(num_envs, num_workers)
        actor = ray.remote(EnvWorker).options(num_cpus=cpus_per_worker, max_restarts=max_restarts,
                                              max_task_retries=0, scheduling_strategy="SPREAD")
        self._workers = [actor.remote(env_id, env_kwargs, a, b, self.buffer_dims, shared) for a, b in self._bounds]
        self.attached = [False] * len(self._workers)  # per actor: stepping in the shared buffers
        self.restarts = [0] * len(self._workers)
        self._seed: int | None = None
        self._actions: list[np.ndarray] = []  # the actions sent since the last reset (for a replay)
        self.bytes_sent = self.bytes_received = 0  # array payload to / from the actors (replays excluded)
        self._dag = None  # the compiled graph over every actor's `handle` (see _call)
        self.socket_signals = bool(socket_signals)
        self._links: list[_StepLink | None] = [None] * len(self._workers)  # attached actors' sockets
        self._plain_only: set[int] = set()  # attached actors whose serve call could not connect
        self._pids: list[int] = []  # each actor's process at the last placement() (deaths in the graph)
        self.closed = False
        try:
            nodes = {node for _, node in self.placement()}  # construction errors surface here
            self.attached = ray.get([w.attached.remote() for w in self._workers])
        except BaseException:
            self.close()
            raise
        # Ray's compiled graph (shared-memory channels) only when asked for and every actor is on
        # this machine; its readers busy-wait (module docstring). Actors on other nodes: plain calls.
        self.compiled_graph = bool(compiled_graph) and nodes == {node_id()}

    @property
    def num_workers(self) -> int:
        return len(self._bounds)

    @property
    def on_socket(self) -> list[bool]:
        """Per actor: whether its steps go over an open socket link now (attached actors with
        ``socket_signals``, from their first step after a placement or a replay)."""
        return [link is not None for link in self._links]

    def placement(self) -> list[tuple[int, str]]:
        """(process id, node id) of each env actor."""
        self._teardown()  # an actor in a compiled graph runs nothing else; the next step recompiles
        where = self._ray.get([w.where.remote() for w in self._workers])
        self._pids = [pid for pid, _ in where]
        return where

    def _compile(self) -> None:
        from ray.dag import InputNode, MultiOutputNode  # noqa: PLC0415 - Ray is optional

        with InputNode() as inp:
            dag = MultiOutputNode([w.handle.bind(inp[i]) for i, w in enumerate(self._workers)])
        self._dag = dag.experimental_compile()

    def _teardown(self, stop: bool = True) -> None:
        """Leave the compiled graph and stop the socket links (``stop``: wait until each
        actor's serve call ended, so it takes Ray calls again)."""
        links, self._links = getattr(self, "_links", []), [None] * len(getattr(self, "_links", []))
        for link in links:
            if link is not None:
                link.close(stop=stop)
        dag, self._dag = getattr(self, "_dag", None), None
        if dag is not None:
            try:
                dag.teardown()
            except Exception:  # noqa: BLE001 - a graph whose actor died is gone anyway
                pass

    def _call(self, cmd: str, arg=None) -> None:
        if cmd == "reset":
            self._seed, self._actions = arg, []
            messages = [("reset", arg)] * len(self._workers)
        else:
            self._actions.append(self._buf.actions.copy())
            # an attached actor reads its actions from the shared rows the driver just wrote
            messages = [("step", None if self.attached[i] else self._buf.actions[a:b])
                        for i, (a, b) in enumerate(self._bounds)]
            self.bytes_sent += sum(m[1].nbytes for m in messages if m[1] is not None)
        if self.compiled_graph:
            answers = self._call_compiled(messages)
        else:
            answers = self._call_plain(messages)
        for i, rows in enumerate(answers):
            if rows is None:  # an attached actor: its rows are in the shared buffers already
                continue
            a, b = self._bounds[i]
            for name, value in rows.items():
                if isinstance(value, tuple):  # (indices, rows) of the changed rows only
                    getattr(self._buf, name)[a:b][value[0]] = value[1]
                    self.bytes_received += value[0].nbytes + value[1].nbytes
                else:
                    getattr(self._buf, name)[a:b] = value
                    self.bytes_received += value.nbytes

    def _call_plain(self, messages: list[tuple[str, Any]]) -> list[dict]:
        """One step or reset on every actor: attached actors over their socket links (opened
        at their first step, after a placement or a replay), the others with a Ray call each."""
        n = len(self._workers)
        socketed = [i for i in range(n) if self.socket_signals and self.attached[i] and i not in self._plain_only]
        deaths: dict[int, Exception] = {}
        sent = []
        for i in socketed:  # every signal goes out before any answer is awaited
            try:
                if self._links[i] is None:
                    self._links[i] = _StepLink(self._ray, self._workers[i], self._pids[i])
                self._links[i].send(messages[i])
                sent.append(i)
            except _Lost as lost:
                deaths[i] = lost.error
            except self._ray.exceptions.RayTaskError as exc:  # its serve call failed: no socket between us
                warnings.warn(f"Ray env worker {i} cannot reach the driver's socket ({exc}); it takes its steps "
                              "as plain Ray calls from now on", RuntimeWarning, stacklevel=3)
                self._plain_only.add(i)
        refs = {i: self._workers[i].handle.remote(messages[i]) for i in range(n) if i not in sent and i not in deaths}
        answers: list[Any] = [None] * n
        for i in sent:
            try:
                answers[i] = self._links[i].receive()
            except _Lost as lost:
                deaths[i] = lost.error
        for i, ref in refs.items():
            try:
                answers[i] = self._ray.get(ref)
            except self._ray.exceptions.RayActorError as exc:  # a worker died: the others' answers stand
                deaths[i] = exc
        for i, error in deaths.items():
            link, self._links[i] = self._links[i], None
            if link is not None:
                link.close(stop=False)  # a dead actor's, or a restart's that must replay first
            answers[i] = self._recover(i, error)
        return answers

    def _call_compiled(self, messages: list[tuple[str, Any]]) -> list[dict]:
        ray = self._ray
        try:
            if self._dag is None:
                self._compile()
            return ray.get(self._dag.execute(*messages))
        except (ray.exceptions.RayActorError, ray.exceptions.RayChannelError, ray.exceptions.RayChannelTimeoutError):
            # A worker died (the graph does not say which, and Ray may have restarted it already):
            # leave the graph, find the actors whose process changed (a death, counted), replay
            # the iteration so far on every actor with plain calls (the living ones reproduce
            # their own state) and recompile at the next step.
            self._teardown()
            return [self._recover(i, self._death_of(i)) for i in range(len(self._workers))]

    def _death_of(self, i: int) -> Exception | None:
        """Whether actor ``i`` died since :meth:`placement` saw it: an exception saying so, or None."""
        ray, since = self._ray, time.monotonic()
        while True:
            try:
                pid, _ = ray.get(self._workers[i].where.remote())
                break
            except ray.exceptions.ActorUnavailableError:  # restarting
                if time.monotonic() - since > RESTART_TIMEOUT_S:
                    return RuntimeError(f"unavailable for {RESTART_TIMEOUT_S:.0f} s")
                time.sleep(0.05)
            except ray.exceptions.RayActorError as exc:
                return exc
        if pid == self._pids[i]:
            return None
        old, self._pids[i] = self._pids[i], pid
        return RuntimeError(f"its process {old} died; Ray restarted it as process {pid}")

    def _recover(self, i: int, error: Exception | None) -> dict[str, np.ndarray]:
        """Worker ``i`` died (``error``): replay the iteration so far on its restarted actor."""
        a, b = self._bounds[i]
        ray = self._ray
        waiting_since = None
        while True:
            if error is not None:  # a death, counted against the budget
                self.restarts[i] += 1
                if self.restarts[i] > self.max_restarts:
                    self.close()
                    raise RuntimeError(
                        f"Ray env worker {i} (envs {a}..{b - 1}) died {self.restarts[i]} times; its retry budget "
                        f"(max_restarts={self.max_restarts}) is spent, so the run stops. Continue from the last "
                        f"checkpoint with --resume. Last error: {type(error).__name__}: {error}") from error
            try:
                answer = ray.get(self._workers[i].replay.remote(self._seed, [act[a:b] for act in self._actions]))
                self.attached[i] = answer is None  # a restart on another node steps into its own buffers
                self._pids[i] = self._pid_of(i)
                return answer
            except ray.exceptions.ActorUnavailableError as exc:  # still restarting: not a new death
                error = None
                waiting_since = waiting_since or time.monotonic()
                if time.monotonic() - waiting_since > RESTART_TIMEOUT_S:
                    self.close()
                    raise RuntimeError(f"Ray env worker {i} (envs {a}..{b - 1}) did not come back within "
                                       f"{RESTART_TIMEOUT_S:.0f} s of its restart: {exc}") from exc
                time.sleep(0.05)
            except ray.exceptions.RayActorError as exc:
                error, waiting_since = exc, None

    def _pid_of(self, i: int) -> int | None:
        """Actor ``i``'s process now (None when it cannot say: the next step finds out why)."""
        try:
            return self._ray.get(self._workers[i].where.remote())[0]
        except self._ray.exceptions.RayActorError:
            return None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._teardown(stop=False)  # the actors are killed next: no need to wait for their serve calls
        ray = self._ray
        for worker in self._workers:
            try:
                ray.kill(worker, no_restart=True)
            except Exception:  # noqa: BLE001 - an actor that is already gone
                pass
        self._workers = []
        if self._segment is not None:
            self._buf = None  # the views into the segment go first
            try:
                self._segment.close()
            except BufferError:  # a view still held elsewhere: the mapping goes with this process
                pass
            self._segment.unlink()
            self._segment = None
        if self._started_ray:
            ray.shutdown()


def map_chunks(fn: Callable, chunks: Sequence[Any], *, address: str | None = None, max_retries: int = 3,
               cpus_per_task: float = 1.0) -> list[Any]:
    """``[fn(chunk) for chunk in chunks]``, each call a Ray task (spread over the nodes; rerun
    up to ``max_retries`` times when its worker dies). ``fn`` must be importable or picklable."""
    ray = require_ray()
    started = connect(address)
    try:
        task = ray.remote(fn).options(num_cpus=cpus_per_task, max_retries=max_retries,
                                      scheduling_strategy="SPREAD")
        return ray.get([task.remote(chunk) for chunk in chunks])
    finally:
        if started:
            ray.shutdown()
