"""The deployed policy runtime: an ONNX policy artifact run with onnxruntime.

numpy + onnxruntime only (no torch, no mujoco): this is what runs on the robot computer.
Observations are built (from the manifest's layout: the arm's signals, then the task's) and
actions turned into joint targets by the same code the training env uses
(:mod:`sim_bridge.observations`).

    policy = PolicyRuntime("policies/policies/zoo/reach_lstm")
    policy.warmup()
    action = policy.act(q, qd, prev_action, target)   # task signals after the arm's (Reach: target)
                                                      # -> float32 [k], the unclipped mean
    q_target = policy.joint_targets(action, q, lower, upper)
    prev_action = np.clip(action, -1, 1)              # what the env feeds back (clipped)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_errors

from policies.manifest import PolicyManifest, load_manifest, manifest_path_for, verify_artifact
from sim_bridge.config import ConfigError
from sim_bridge.observations import ObservationBuilder

# What onnxruntime raises for a file it cannot load (all plain Exception subclasses).
_ORT_LOAD_ERRORS = (_ort_errors.InvalidProtobuf, _ort_errors.InvalidGraph, _ort_errors.InvalidArgument,
                    _ort_errors.Fail, _ort_errors.NotImplemented, _ort_errors.RuntimeException,
                    _ort_errors.NoSuchFile)
_FLOAT = "tensor(float)"
# onnxruntime's message for a graph with external data loaded from bytes (it has no folder to look in).
_EXTERNAL_DATA_ERROR = "model_path must not be empty"


class PolicyLoadError(ConfigError):
    """A policy artifact cannot be used; the message names the file and the field."""


class NonFiniteOutputError(RuntimeError):
    """The policy produced NaN or inf; the recurrent state was not advanced."""


class NonFiniteObservationError(ValueError):
    """The observation holds NaN or inf; the policy was not run.

    Checked before running because onnxruntime's LSTM kernel does not propagate NaN: it
    returns finite, saturated outputs for a NaN input, where torch returns NaN.
    """


class ActionSampler:
    """Samples of a policy's Gaussian: ``mean + std x N(0, 1)`` from a seeded generator (float32).
    Shared by the ONNX runtime and evaluation's torch policy, so both draw the same noise."""

    def __init__(self, std, seed: int):
        self.std = np.asarray(std, dtype=np.float32)
        self.seed(seed)

    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def __call__(self, mean: np.ndarray) -> np.ndarray:
        return mean + self.std * self._rng.standard_normal(mean.shape, dtype=np.float32)


class PolicyRuntime:
    """One policy, stepped one observation at a time (batch 1), recurrent state kept inside."""

    def __init__(self, path: str | os.PathLike, intra_op_threads: int = 1, inter_op_threads: int = 1,
                 pause=None, sample_seed: int | None = None):
        """Load, check and probe the artifact at ``path`` (its folder, manifest or ONNX file).

        ``pause``, if given, is called between the loading steps (manifest, hash, session
        creation, graph checks and probe run): the policy node passes a function that waits
        for the end of a control cycle, so that no step's GIL time delays the control thread.
        ``sample_seed``: act with samples of the Gaussian the policy was trained with (the
        graph's mean + the manifest's ``action_std`` x N(0, 1), from a generator seeded with it)
        instead of the mean; the manifest must record ``action_std``. Why one would: a
        recurrent policy trained with sampled actions can do much better with them than with
        its mean (Push: 74.5% against 54.2%, README).
        """
        pause = pause or _no_pause
        manifest_path = manifest_path_for(path)
        if not manifest_path.is_file():
            raise PolicyLoadError(_missing_manifest(path, manifest_path), source=manifest_path)
        try:
            m = load_manifest(manifest_path)
        except ConfigError as exc:
            raise _as_load_error(exc) from None
        if sample_seed is not None and m.action_std is None:
            raise PolicyLoadError("sampled actions were asked for, but the manifest records no action_std (the "
                                  "trained Gaussian's std; a re-export writes it)", source=manifest_path,
                                  field="action_std")
        self._sampler = None if sample_seed is None else ActionSampler(m.action_std, sample_seed)
        onnx_path = m.onnx_path
        given = Path(path)
        if given.suffix == ".onnx" and given.name != m.onnx_file:
            raise PolicyLoadError(f"names {m.onnx_file!r}, but the policy was given as {given}",
                                  source=manifest_path, field="onnx_file")
        pause()
        try:
            model_bytes = onnx_path.read_bytes()
        except OSError as exc:
            raise PolicyLoadError(f"cannot read ONNX file {onnx_path} ({exc.strerror})",
                                  source=manifest_path, field="onnx_file") from None
        try:
            verify_artifact(m, model_bytes)
        except ConfigError as exc:
            raise _as_load_error(exc) from None

        pause()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(intra_op_threads)
        options.inter_op_num_threads = int(inter_op_threads)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        try:
            self._session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except _ORT_LOAD_ERRORS as exc:
            if _EXTERNAL_DATA_ERROR in str(exc):  # what onnxruntime says for a graph loaded from bytes
                raise PolicyLoadError(
                    "the graph keeps its weights in external data files (ONNX external data); the runtime "
                    "loads one self-contained .onnx file, the one onnx_sha256 covers: re-export with the "
                    "weights inside the file", source=onnx_path) from None
            raise PolicyLoadError(f"not a valid ONNX model ({type(exc).__name__}: {exc})", source=onnx_path) from None

        self._manifest = m
        self._onnx_path = onnx_path
        pause()
        self._check_graph()
        self._builder = ObservationBuilder(m.observation.layout)
        self._task_sizes = tuple(sig.size for sig in self._builder.task_signals)
        # what an action means (sim_bridge.actions); the caller's limits are applied in joint_targets
        n = m.num_joints
        self._action = m.action.build(m.default_pose_rad, np.full(n, -np.inf), np.full(n, np.inf))
        self._obs = np.zeros((1, m.observation.size), dtype=np.float32)
        self._obs_row = self._obs[0]
        self._feed = {"obs": self._obs}
        self._outputs = list(m.io.outputs)
        if m.recurrent_state is not None:
            self._h = np.zeros(m.recurrent_state.shape, dtype=np.float32)
            self._c = np.zeros(m.recurrent_state.shape, dtype=np.float32)
            self._feed.update(h_in=self._h, c_in=self._c)
        else:
            self._h = self._c = None
        self._probe()

    # --- properties --------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._manifest.name

    @property
    def manifest(self) -> PolicyManifest:
        return self._manifest

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray] | None:
        """A copy of the recurrent state (h, c), each [layers, 1, hidden]; None for an MLP."""
        return None if self._h is None else (self._h.copy(), self._c.copy())

    def set_state(self, h: np.ndarray, c: np.ndarray) -> None:
        if self._h is None:
            raise ValueError(f"policy {self.name!r} is feed-forward ({self._manifest.architecture}); it has no state")
        for label, value, buf in (("h", h, self._h), ("c", c, self._c)):
            value = np.asarray(value)
            if value.shape != buf.shape:
                raise ValueError(f"policy {self.name!r}: {label} has shape {value.shape}, expected {buf.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"policy {self.name!r}: {label} is not finite")
        self._h[...] = h
        self._c[...] = c

    # --- stepping ----------------------------------------------------------------

    @property
    def sampling(self) -> bool:
        """Whether actions are samples of the policy's Gaussian (``sample_seed``), not its mean."""
        return self._sampler is not None

    def seed_episode(self, seed: int) -> None:
        """Restart the sampler from ``seed`` (evaluation: the same noise per episode however the
        episodes are split over workers); nothing when not sampling."""
        if self._sampler is not None:
            self._sampler.seed(seed)

    def reset(self) -> None:
        """Zero the recurrent state and restart the action from the measured joints (call at
        the start of every episode)."""
        self._action.reset()
        if self._h is not None:
            self._h.fill(0.0)
            self._c.fill(0.0)

    def step(self, obs: np.ndarray) -> np.ndarray:
        """The action (float32 [act_size], unclipped: the mean, or a sample with ``sample_seed``)
        for one observation [obs_size]."""
        obs = np.asarray(obs)
        if obs.shape != self._obs_row.shape:
            raise ValueError(f"policy {self.name!r}: observation has shape {obs.shape}, "
                             f"expected {self._obs_row.shape}")
        self._obs_row[:] = obs
        mean = self._run()
        return mean if self._sampler is None else self._sampler(mean)

    def act(self, joint_pos: np.ndarray, joint_vel: np.ndarray, prev_action: np.ndarray,
            *task_values: np.ndarray) -> np.ndarray:
        """Build the observation exactly as the env does and step.

        ``prev_action`` is the previous action as the env saw it: clipped to [-1, 1];
        ``task_values`` are the task's signals in the manifest's order (Reach: the target).
        """
        n, k = self._manifest.num_joints, self._manifest.action.size
        sizes = tuple(len(v) for v in task_values)
        if not (len(joint_pos) == len(joint_vel) == n and len(prev_action) == k and sizes == self._task_sizes):
            want = ", ".join(f"{sig.name} [{sig.size}]" for sig in self._builder.task_signals)
            raise ValueError(f"policy {self.name!r}: expected {n} joint positions and velocities, {k} previous "
                             f"actions and the task signals {want}, got {len(joint_pos)}, {len(joint_vel)}, "
                             f"{len(prev_action)} and sizes {list(sizes)}")
        self._builder.build(joint_pos, joint_vel, prev_action, task_values, out=self._obs_row,
                            ee=self._ee(joint_pos))
        mean = self._run()
        return mean if self._sampler is None else self._sampler(mean)

    def observation(self, joint_pos, joint_vel, prev_action, *task_values) -> np.ndarray:
        """The observation :meth:`act` would build (a new float32 array; nothing is run)."""
        return self._builder.build(joint_pos, joint_vel, prev_action, task_values, ee=self._ee(joint_pos))

    def _ee(self, joint_pos) -> np.ndarray | None:
        """``ee_pos`` and ``ee_cmd`` of an end-effector action (None when the layout has none)."""
        return self._action.observed(joint_pos) if self._builder.has_ee else None

    def occlusion(self, obs: np.ndarray, baseline: np.ndarray, state=None) -> dict[str, float]:
        """Occlusion attribution of the action for ``obs`` to each observation signal: the L2
        change of the action when that signal alone takes its value in ``baseline`` (e.g. the
        mean observation), from the recurrent ``state`` (default: a copy of the current one).
        Never advances this runtime's state or touches the arrays :meth:`step` uses, so another
        thread may call it while the control loop steps (onnxruntime's run is thread-safe).
        One graph run per signal, plus one."""
        obs = np.asarray(obs, dtype=np.float32).reshape(1, -1)
        baseline = np.asarray(baseline, dtype=np.float32).reshape(1, -1)
        if obs.shape != self._obs.shape or baseline.shape != self._obs.shape:
            raise ValueError(f"policy {self.name!r}: occlusion needs observations of size {self._obs.shape[1]}")
        feed = {"obs": obs}
        if self._h is not None:
            h, c = state if state is not None else (self._h.copy(), self._c.copy())
            feed.update(h_in=h, c_in=c)
        base = self._session.run(self._outputs[:1], feed)[0][0]
        out, start = {}, 0
        for signal in self._manifest.observation.layout:
            occluded = obs.copy()
            occluded[0, start:start + signal.size] = baseline[0, start:start + signal.size]
            start += signal.size
            action = self._session.run(self._outputs[:1], {**feed, "obs": occluded})[0][0]
            out[signal.name] = float(np.linalg.norm(action - base))
        return out

    def joint_targets(self, action: np.ndarray, joint_pos: np.ndarray, lower: np.ndarray,
                      upper: np.ndarray) -> np.ndarray:
        """Absolute joint targets for an action (clipped to [-1, 1]; then what the manifest's action
        type says, :mod:`sim_bridge.actions`; within ``lower`` and ``upper``)."""
        if self._action.lower is not lower or self._action.upper is not upper:  # the caller's limits
            self._action.lower, self._action.upper = lower, upper
        return self._action.targets(joint_pos, np.minimum(np.maximum(np.asarray(action, dtype=float), -1.0), 1.0))

    def reset_action(self) -> None:
        """The next command starts from the measured joints (after a hold); the recurrent state stays."""
        self._action.reset()

    def warmup(self, n: int = 10) -> None:
        """Run ``n`` steps on a zero observation (first runs are slow), then reset."""
        self._obs.fill(0.0)
        for _ in range(n):
            self._run()
        self.reset()

    def _run(self) -> np.ndarray:
        if not np.isfinite(self._obs).all():
            raise NonFiniteObservationError(f"policy {self.name!r}: observation is not finite: "
                                            f"{self._non_finite_signals()}; the policy was not run")
        out = self._session.run(self._outputs, self._feed)
        for name, value in zip(self._outputs, out):
            if not np.isfinite(value).all():
                raise NonFiniteOutputError(f"policy {self.name!r}: output '{name}' is not finite; "
                                           "the recurrent state was not advanced")
        if self._h is not None:
            np.copyto(self._h, out[1])
            np.copyto(self._c, out[2])
        return out[0][0]

    def _non_finite_signals(self) -> str:
        bad, start = [], 0
        for signal in self._manifest.observation.layout:
            values = self._obs_row[start:start + signal.size]
            bad += [f"{signal.name}[{i}]={values[i]}" for i in np.flatnonzero(~np.isfinite(values))]
            start += signal.size
        return ", ".join(bad)

    # --- validation --------------------------------------------------------------

    def _check_graph(self) -> None:
        m = self._manifest
        for kind, nodes, want in (("inputs", self._session.get_inputs(), m.io.inputs),
                                  ("outputs", self._session.get_outputs(), m.io.outputs)):
            got = [node.name for node in nodes]
            if sorted(got) != sorted(want):
                raise self._error(f"io.{kind}", f"the graph's {kind} are {got}, the manifest says {list(want)}")
        expected = {"obs": ((1, m.observation.size), "observation.size"),
                    "actions": ((1, m.action.size), "action.size")}
        if m.recurrent_state is not None:
            for name in ("h_in", "c_in", "h_out", "c_out"):
                expected[name] = (m.recurrent_state.shape, "recurrent_state")
        for node in (*self._session.get_inputs(), *self._session.get_outputs()):
            shape, field = expected[node.name]
            if node.type != _FLOAT:
                raise self._error(field, f"graph {node.name!r} has type {node.type}, expected {_FLOAT}")
            # Symbolic dims (str/None, e.g. a dynamic batch axis) are checked by the probe run.
            if len(node.shape) != len(shape) or any(isinstance(d, int) and d != w for d, w in zip(node.shape, shape)):
                raise self._error(field, f"graph {node.name!r} has shape {list(node.shape)}, "
                                         f"the manifest implies {list(shape)}")

    def _probe(self) -> None:
        """One run on zeros: the outputs' actual shapes must match (covers symbolic dims)."""
        try:
            out = self._session.run(self._outputs, self._feed)
        except _ORT_LOAD_ERRORS as exc:
            raise PolicyLoadError(f"the graph fails on a zero observation ({type(exc).__name__}: {exc})",
                                  source=self._onnx_path) from None
        m = self._manifest
        want = [(1, m.action.size)] + ([m.recurrent_state.shape] * 2 if m.recurrent_state else [])
        for name, value, shape in zip(self._outputs, out, want):
            if value.shape != shape or value.dtype != np.float32:
                field = "action.size" if name == "actions" else "recurrent_state"
                raise self._error(field, f"graph output {name!r} is {value.dtype} {list(value.shape)}, "
                                         f"expected float32 {list(shape)}")

    def _error(self, field: str, message: str) -> PolicyLoadError:
        return PolicyLoadError(f"{message} ({self._onnx_path.name})", source=self._manifest.source, field=field)

    def __repr__(self) -> str:
        m = self._manifest
        return (f"PolicyRuntime({m.name!r}, {m.architecture}, obs {m.observation.size}, act {m.action.size}, "
                f"joints {list(m.joint_names)})")


def _no_pause() -> None:
    pass


def _missing_manifest(given: str | os.PathLike, manifest_path: Path) -> str:
    """Why ``manifest_path`` is not a readable file, in words (a symlink is named as one)."""
    if manifest_path.is_symlink():
        target = os.readlink(manifest_path)
        if not manifest_path.exists():
            return f"manifest.json of policy {os.fspath(given)!r} is a symlink to {target}, which does not exist"
        return f"manifest.json of policy {os.fspath(given)!r} is a symlink to {target}, which is not a regular file"
    if manifest_path.exists():
        return f"manifest.json of policy {os.fspath(given)!r} is not a regular file"
    return f"no manifest.json for policy {os.fspath(given)!r}"


def _as_load_error(exc: ConfigError) -> PolicyLoadError:
    err = PolicyLoadError(str(exc))
    err.source, err.field = exc.source, exc.field
    return err
