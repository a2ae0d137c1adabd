"""The calibration's Ray backend: an iteration's parameter samples in chunks on Ray actors.

``sim2real calibrate --backend ray``: :class:`RayCostPool` starts ``settings.workers`` actors
(:class:`CalibrationWorker`, spread over the cluster's nodes). Each holds a local-backend
:class:`~calibration.simopt.Calibration` built from the same robot, prior, episodes, settings
and policy, so a chunk's costs are computed by exactly the code the local backend runs; the
driver samples, splits the samples into one chunk per actor, gathers the costs in order and
updates. What travels per iteration: the chunk of sample vectors out (samples x searched
variables x 8 bytes) and one cost per sample back; the episodes, settings and the policy
artifact (its manifest and ONNX bytes, so the nodes need no shared filesystem) travel once,
when the actors start.

Fault tolerance: the actors restart (``max_restarts``) and Ray re-runs the lost chunk on the
restarted actor (``max_task_retries``; a chunk is a pure function of its samples); after the
budget the calibration stops with a :class:`~calibration.simopt.CalibrationError` that says so.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from calibration.episodes import ReferenceEpisode
from calibration.simopt import Calibration, CalibrationError, CalibrationSettings
from policies.manifest import load_manifest, manifest_path_for
from policies.ray_backend import connect, node_id, require_ray
from sim_bridge.profile import RobotProfile
from sim_bridge.randomization import RandomizationSpec

__all__ = ["CalibrationWorker", "RayCostPool", "pack_artifact", "unpack_artifact"]

MAX_RESTARTS = 3


def pack_artifact(path: str | os.PathLike) -> dict[str, bytes]:
    """The files a policy artifact needs (its manifest and ONNX graph), by name."""
    manifest = manifest_path_for(path)
    onnx_path = load_manifest(manifest).onnx_path
    return {manifest.name: manifest.read_bytes(), onnx_path.name: onnx_path.read_bytes()}


def unpack_artifact(files: dict[str, bytes], folder: str | os.PathLike) -> Path:
    """Write a packed artifact into ``folder``; returns the folder."""
    folder = Path(folder)
    for name, data in files.items():
        (folder / Path(name).name).write_bytes(data)
    return folder


class CalibrationWorker:
    """A Ray actor: a local-backend :class:`Calibration` that scores chunks of samples."""

    def __init__(self, profile: RobotProfile, prior: RandomizationSpec, episodes: Sequence[ReferenceEpisode],
                 settings: CalibrationSettings, policy: dict[str, bytes] | None):
        self._folder = tempfile.TemporaryDirectory(prefix="sim2real-policy-")
        policy_path = unpack_artifact(policy, self._folder.name) if policy else None
        self.calib = Calibration(profile, prior, episodes, replace(settings, backend="local"), policy_path)

    def where(self) -> tuple[int, str]:
        """(process id, Ray node id) of this actor."""
        return os.getpid(), node_id()

    def costs(self, group_values: np.ndarray) -> np.ndarray:
        return self.calib.costs(group_values)


class RayCostPool:
    """``settings.workers`` :class:`CalibrationWorker` actors; :meth:`costs` splits the samples over them."""

    def __init__(self, profile: RobotProfile, prior: RandomizationSpec, episodes: Sequence[ReferenceEpisode],
                 settings: CalibrationSettings, policy_path: str | os.PathLike | None = None, *,
                 max_restarts: int = MAX_RESTARTS, worker_class: type = CalibrationWorker):
        ray = self._ray = require_ray()
        self.max_restarts = max_restarts
        self._started_ray = connect(settings.ray_address)
        policy = pack_artifact(policy_path) if policy_path is not None and settings.mode == "closed_loop" else None
        actor = ray.remote(worker_class).options(num_cpus=1, max_restarts=max_restarts,
                                                 max_task_retries=max_restarts, scheduling_strategy="SPREAD")
        # in the object store once; a restarted actor is built again from the same references
        self._args = [ray.put(value) for value in (profile, prior, list(episodes), settings, policy)]
        self._workers = [actor.remote(*self._args) for _ in range(settings.workers)]
        self.setup_bytes = len(pickle.dumps([profile, prior, list(episodes), settings, policy], protocol=5))
        self.bytes_sent = self.bytes_received = 0  # per-iteration array payload: samples out, costs back
        try:
            self.placement()  # construction errors surface here
        except BaseException:
            self.close()
            raise

    @property
    def num_workers(self) -> int:
        return len(self._workers)

    def placement(self) -> list[tuple[int, str]]:
        """(process id, node id) of each worker."""
        return self._ray.get([w.where.remote() for w in self._workers])

    def costs(self, group_values: np.ndarray) -> np.ndarray:
        """The costs of ``group_values`` [N, variables], one chunk per worker, in order."""
        chunks = [c for c in np.array_split(np.atleast_2d(group_values), len(self._workers)) if len(c)]
        refs = [w.costs.remote(c) for w, c in zip(self._workers, chunks)]
        self.bytes_sent += sum(c.nbytes for c in chunks)
        out = []
        for i, ref in enumerate(refs):
            try:
                out.append(self._ray.get(ref))
            except self._ray.exceptions.RayActorError as exc:
                raise CalibrationError(
                    f"calibration worker {i} died and its chunk ({len(chunks[i])} samples) was lost after "
                    f"{self.max_restarts} restart(s) and re-runs (the retry budget); nothing was written. "
                    f"Last error: {type(exc).__name__}") from exc
        self.bytes_received += sum(c.nbytes for c in out)
        return np.concatenate(out)

    def close(self) -> None:
        for worker in self._workers:
            try:
                self._ray.kill(worker, no_restart=True)
            except Exception:  # noqa: BLE001 - an actor that is already gone
                pass
        self._workers = []
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False
