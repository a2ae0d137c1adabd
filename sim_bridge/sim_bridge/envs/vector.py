"""A vectorized env for training on a few cores: envs batched per worker process.

Each worker process hosts ``num_envs / num_workers`` envs and steps them all on one
message, so the inter-process cost (one pipe round trip per worker per step) is
amortized over the batch. Observations, rewards and the privileged dynamics come back
through shared memory. Finished envs reset automatically; the observation that ended
the episode is in ``info["final_observation"]`` and its privileged state in
``info["final_privileged"]`` (rows where ``terminated | truncated``); ``is_success``,
``distance`` and ``dynamics`` describe the step just taken, ``privileged`` the returned
observation.

``num_workers=0`` runs the same envs in this process (handy for debugging and as the
single-core baseline).

The transport is the only part specific to processes: :class:`EnvBatch` (the envs of one
worker, stepping into rows of a :class:`EnvBuffers`) and :func:`worker_bounds` (which envs
each worker hosts) are shared with the Ray backend (``policies.ray_backend``), whose actors
each host one ``EnvBatch`` over buffers of their own; a subclass replaces ``_call``.
"""
from __future__ import annotations

import multiprocessing as mp
import traceback
from multiprocessing import resource_tracker, shared_memory
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim_bridge.envs import REACH_ID


def make_env(env_id: str = REACH_ID, **kwargs):
    """Build one env from its registered entry point, without gymnasium's wrappers.

    (``gym.make`` would take ``max_episode_steps`` for its own TimeLimit wrapper instead
    of passing it to the env; the env truncates itself.)
    """
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    from sim_bridge.envs import register_envs

    register_envs()  # a fresh worker process, or a task registered after sim_bridge.envs was imported
    spec = gym.spec(env_id)
    return load_env_creator(spec.entry_point)(**{**spec.kwargs, **kwargs})


@dataclass
class EnvBuffers:
    """Arrays for all envs (shared memory between processes, or plain); row i belongs to env i."""

    obs: np.ndarray
    final_obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray
    blowup: np.ndarray
    distance: np.ndarray
    dynamics: np.ndarray
    privileged: np.ndarray
    final_privileged: np.ndarray


def _shapes(num_envs: int, obs_dim: int, act_dim: int, dyn_dim: int, priv_dim: int) -> dict:
    return {"obs": ((num_envs, obs_dim), np.float32), "final_obs": ((num_envs, obs_dim), np.float32),
              "actions": ((num_envs, act_dim), np.float32), "rewards": ((num_envs,), np.float64),
              "terminated": ((num_envs,), np.bool_), "truncated": ((num_envs,), np.bool_),
              "success": ((num_envs,), np.bool_), "blowup": ((num_envs,), np.bool_),
              "distance": ((num_envs,), np.float64), "dynamics": ((num_envs, max(dyn_dim, 1)), np.float32),
              "privileged": ((num_envs, priv_dim), np.float32),
              "final_privileged": ((num_envs, priv_dim), np.float32)}


def _allocate(ctx, num_envs: int, obs_dim: int, act_dim: int, dyn_dim: int, priv_dim: int):
    shapes = _shapes(num_envs, obs_dim, act_dim, dyn_dim, priv_dim)
    raw = {k: ctx.RawArray("b", int(np.prod(s)) * np.dtype(t).itemsize) for k, (s, t) in shapes.items()}
    return raw, shapes


def _view(raw, shapes) -> EnvBuffers:
    return EnvBuffers(**{k: np.frombuffer(raw[k], dtype=t).reshape(s) for k, (s, t) in shapes.items()})


def plain_buffers(num_envs: int, obs_dim: int, act_dim: int, dyn_dim: int, priv_dim: int) -> EnvBuffers:
    """The same arrays as the shared ones, in this process's memory (a Ray actor's own rows)."""
    return EnvBuffers(**{k: np.zeros(s, t) for k, (s, t) in
                         _shapes(num_envs, obs_dim, act_dim, dyn_dim, priv_dim).items()})


def named_buffers(num_envs: int, obs_dim: int, act_dim: int, dyn_dim: int, priv_dim: int,
                  name: str | None = None) -> tuple[shared_memory.SharedMemory, EnvBuffers]:
    """The same arrays in one named shared-memory segment: created when ``name`` is None (the
    creator unlinks it: ``segment.close(); segment.unlink()``), else attached by name from any
    process on this machine (the Ray backend's actors on the driver's node write their rows
    in place). Views into the segment: keep the segment object alive while they are used."""
    shapes = _shapes(num_envs, obs_dim, act_dim, dyn_dim, priv_dim)
    offsets, size = {}, 0
    for key, (shape, dtype) in shapes.items():
        offsets[key] = size
        size += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 8) * 8  # each array 8-byte aligned
    if name is None:
        segment = shared_memory.SharedMemory(create=True, size=size)
    else:
        segment = shared_memory.SharedMemory(name=name)
        # Python < 3.13 registers an attached segment with this process's resource tracker too,
        # which would unlink it when this process exits (the creator owns it): undo that.
        resource_tracker.unregister(segment._name, "shared_memory")  # noqa: SLF001 - the tracker's own key
    views = {key: np.ndarray(shape, dtype, buffer=segment.buf, offset=offsets[key])
             for key, (shape, dtype) in shapes.items()}
    return segment, EnvBuffers(**views)


def worker_bounds(num_envs: int, num_workers: int) -> list[tuple[int, int]]:
    """Env rows [start, stop) of each worker: ``num_envs`` split as evenly as possible."""
    workers = min(num_workers, num_envs)
    bounds = np.linspace(0, num_envs, workers + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


class EnvBatch:
    """The envs [start, stop) of one worker, writing into rows ``first_row + k`` of ``buf``
    (default ``start``: the shared buffers of all envs). Env ``start + k`` is reset with
    seed ``seed + start + k`` wherever its row lives."""

    def __init__(self, env_id: str, env_kwargs: dict, start: int, stop: int, buf: EnvBuffers,
                 first_row: int | None = None):
        self.envs = [make_env(env_id, **env_kwargs) for _ in range(start, stop)]
        self.start, self.buf = start, buf
        self.first_row = start if first_row is None else first_row

    def _write_info(self, row: int, info: dict) -> None:
        b = self.buf
        dyn = info["dynamics"]
        b.dynamics[row, :len(dyn)] = dyn
        b.success[row] = info["is_success"]
        b.blowup[row] = info["physics_blowup"]
        b.distance[row] = info["distance"]
        b.privileged[row] = info["privileged"]

    def reset(self, seed: int | None) -> None:
        for k, env in enumerate(self.envs):
            row = self.first_row + k
            obs, info = env.reset(seed=None if seed is None else seed + self.start + k)
            self.buf.obs[row] = obs
            self._write_info(row, info)
            self.buf.terminated[row] = self.buf.truncated[row] = False

    def step(self) -> None:
        b = self.buf
        for k, env in enumerate(self.envs):
            row = self.first_row + k
            obs, reward, term, trunc, info = env.step(b.actions[row])
            b.rewards[row], b.terminated[row], b.truncated[row] = reward, term, trunc
            self._write_info(row, info)
            if term or trunc:
                b.final_obs[row] = obs
                b.final_privileged[row] = info["privileged"]
                obs, reset_info = env.reset()
                b.privileged[row] = reset_info["privileged"]  # aligned with the new observation
            b.obs[row] = obs

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _worker(conn, env_id, env_kwargs, start, stop, raw, shapes) -> None:
    batch = None
    try:
        batch = EnvBatch(env_id, env_kwargs, start, stop, _view(raw, shapes))
        conn.send(("ok", None))
        while True:
            cmd, arg = conn.recv()
            if cmd == "close":
                break
            getattr(batch, cmd)(*([arg] if cmd == "reset" else []))
            conn.send(("ok", None))
    except (EOFError, KeyboardInterrupt):
        pass
    except Exception:  # report to the parent instead of dying silently
        conn.send(("error", traceback.format_exc()))
    finally:
        if batch is not None:
            batch.close()
        conn.close()


class VectorTaskEnv:
    """``num_envs`` envs of one task (``env_id``) over ``num_workers`` processes (0 = in this process)."""

    def __init__(self, num_envs: int, num_workers: int = 2, env_id: str = REACH_ID,
                 env_kwargs: dict[str, Any] | None = None, start_method: str = "spawn"):
        env_kwargs = self._describe(num_envs, num_workers, env_id, env_kwargs)
        ctx = mp.get_context(start_method)
        raw, shapes = _allocate(ctx, num_envs, *self.buffer_dims)
        self._buf = _view(raw, shapes)
        self._pipes, self._procs = [], []
        self._local: EnvBatch | None = None
        if num_workers == 0:
            self._local = EnvBatch(env_id, env_kwargs, 0, num_envs, self._buf)
        else:
            for start, stop in worker_bounds(num_envs, num_workers):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, daemon=True,
                                   args=(child, env_id, env_kwargs, start, stop, raw, shapes))
                proc.start()
                child.close()
                self._pipes.append(parent)
                self._procs.append(proc)
            self.closed = False
            self._collect()
        self.closed = False

    def _describe(self, num_envs: int, num_workers: int, env_id: str, env_kwargs: dict | None) -> dict:
        """Check the sizes and read the spaces and names from a probe env; returns the env kwargs."""
        if num_envs < 1:
            raise ValueError("num_envs must be >= 1")
        if num_workers < 0:
            raise ValueError("num_workers must be >= 0")
        env_kwargs = dict(env_kwargs or {})
        probe = make_env(env_id, **env_kwargs)
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        self.dynamics_names = tuple(probe.dynamics_names)
        self.privileged_names = tuple(probe.privileged_names)
        probe.close()
        self.num_envs = num_envs
        return env_kwargs

    @property
    def buffer_dims(self) -> tuple[int, int, int, int]:
        """(observation, action, dynamics, privileged) sizes of one env's buffer row."""
        return (self.single_observation_space.shape[0], self.single_action_space.shape[0],
                len(self.dynamics_names), len(self.privileged_names))

    @property
    def num_workers(self) -> int:
        return len(self._procs)

    def _call(self, cmd: str, arg=None) -> None:
        if self._local is not None:
            getattr(self._local, cmd)(*([arg] if cmd == "reset" else []))
            return
        for pipe in self._pipes:
            pipe.send((cmd, arg))
        self._collect()

    def _collect(self) -> None:
        errors = []
        for i, pipe in enumerate(self._pipes):
            try:
                status, detail = pipe.recv()
            except EOFError:
                status, detail = "error", f"worker {i} exited (exit code {self._procs[i].exitcode})"
            if status != "ok":
                errors.append(detail)
        if errors:
            self.close()
            raise RuntimeError("vector env worker failed:\n" + "\n".join(errors))

    def _info(self) -> dict[str, np.ndarray]:
        b = self._buf
        return {"dynamics": b.dynamics[:, :len(self.dynamics_names)].copy(), "is_success": b.success.copy(),
                "physics_blowup": b.blowup.copy(), "distance": b.distance.copy(),
                "privileged": b.privileged.copy(), "final_observation": b.final_obs.copy(),
                "final_privileged": b.final_privileged.copy()}

    def reset(self, seed: int | None = None):
        self._call("reset", seed)
        return self._buf.obs.copy(), self._info()

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != self._buf.actions.shape:
            raise ValueError(f"expected actions of shape {self._buf.actions.shape}, got {actions.shape}")
        self._buf.actions[:] = actions
        self._call("step")
        b = self._buf
        return b.obs.copy(), b.rewards.copy(), b.terminated.copy(), b.truncated.copy(), self._info()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._local is not None:
            self._local.close()
        for pipe in self._pipes:
            try:
                pipe.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
