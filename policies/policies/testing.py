"""Tiny policy artifacts for tests and benchmarks (torch is imported inside the functions only).

:func:`export_dummy_policy` writes ``NAME.onnx`` + ``manifest.json`` in the artifact
contract's format: a freshly initialized LSTM or MLP with observation normalization
buffers in the graph, exported with torch's legacy (TorchScript) ONNX exporter.
The manifest follows ``joint_names`` while the graph follows ``obs_size``/``act_size``,
so a test can make the two disagree on purpose.
"""
from __future__ import annotations

import os
import warnings
from datetime import datetime, timezone
from pathlib import Path

from policies.manifest import IO_NAMES, parse_manifest, save_manifest, seal_artifact, sha256_file
from sim_bridge.actions import EE_DELTA, JOINT_DELTA
from sim_bridge.observations import layout_size
from sim_bridge.tasks import DEFAULT_TASK, get_task


def dummy_module(architecture: str = "lstm", hidden: int = 8, obs_size: int = 24, act_size: int = 7,
                 nan: bool = False, layers: int = 1, seed: int = 0):
    """A deterministic (per ``seed``) torch module with the contract's forward signature.

    lstm: ``forward(obs [1, obs], h [layers, 1, hidden], c) -> (actions [1, act], h, c)``;
    mlp: ``forward(obs) -> actions``. ``nan=True`` makes the actions NaN (the state stays finite).
    """
    import torch
    from torch import nn

    class _Policy(nn.Module):
        def __init__(self):
            super().__init__()
            self.architecture, self.obs_size, self.hidden, self.layers = architecture, obs_size, hidden, layers
            self.register_buffer("obs_mean", 0.5 * torch.randn(obs_size))
            self.register_buffer("obs_std", 0.5 + 1.5 * torch.rand(obs_size))
            if architecture == "lstm":
                self.lstm = nn.LSTM(obs_size, hidden, num_layers=layers)
            elif architecture == "mlp":
                self.body = nn.Sequential(nn.Linear(obs_size, hidden), nn.Tanh())
            else:
                raise ValueError(f"unknown architecture {architecture!r}")
            self.head = nn.Linear(hidden, act_size)
            self.nan = nan

        def _actions(self, features):
            actions = self.head(features)
            return actions * float("nan") if self.nan else actions

        def forward(self, obs, h=None, c=None):
            x = ((obs - self.obs_mean) / self.obs_std).clamp(-10.0, 10.0)
            if self.architecture == "mlp":
                return self._actions(self.body(x))
            y, (h_out, c_out) = self.lstm(x.unsqueeze(0), (h, c))
            return self._actions(y.squeeze(0)), h_out, c_out

        def example_inputs(self):
            obs = torch.zeros(1, self.obs_size)
            if self.architecture == "mlp":
                return (obs,)
            state = torch.zeros(self.layers, 1, self.hidden)
            return obs, state, state.clone()

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _Policy().eval()


def export_onnx(module, path: str | os.PathLike, input_names=None, output_names=None) -> Path:
    """Export a :func:`dummy_module` (or any module with ``example_inputs()``) to ONNX, opset 17."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    default_in, default_out = IO_NAMES[module.architecture]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer warnings
        torch.onnx.export(module, module.example_inputs(), str(path), dynamo=False, opset_version=17,
                          input_names=list(input_names or default_in),
                          output_names=list(output_names or default_out))
    return path


def export_dummy_policy(directory: str | os.PathLike, architecture: str = "lstm", hidden: int = 8,
                        obs_size: int = 24, act_size: int = 7, nan: bool = False, joint_names=None,
                        input_names=None, *, layers: int = 1, seed: int = 0, name: str | None = None,
                        module=None, task: str = DEFAULT_TASK, action=None, task_settings: dict | None = None,
                        action_std=None) -> Path:
    """Write ``NAME.onnx`` and ``manifest.json`` into ``directory``; returns the directory.

    The manifest is sealed (``artifact_sha256``) like an exported one. The graph is ``module`` if given (its architecture, hidden and layers then win), else
    ``dummy_module(architecture, hidden, obs_size, act_size, nan, layers, seed)``. The manifest
    describes ``joint_names`` (default ``joint1..joint{act_size}``) with the contract's io
    names, whatever the graph's are, for ``task`` (its observation layout: give the matching
    ``obs_size``, e.g. 29 for push with 7 joints). ``action``: an action object of
    :mod:`sim_bridge.actions` the manifest describes (default: joint deltas, one per joint; give
    ``act_size`` and ``obs_size`` to match it). ``task_settings``: the task's settings the
    manifest records (some shape the layout: ``observe_prev_action``); ``action_std``: the
    manifest's ``action_std`` (none by default).
    """
    directory = Path(directory)
    if action is not None and joint_names is None:
        joint_names = list(action.chain.joint_names) if action.type == EE_DELTA else None
    if module is None:
        module = dummy_module(architecture, hidden, obs_size, act_size, nan=nan, layers=layers, seed=seed)
    architecture, hidden, layers = module.architecture, module.hidden, module.layers
    name = name or f"dummy_{architecture}"
    onnx_path = export_onnx(module, directory / f"{name}.onnx", input_names=input_names)
    data = dummy_manifest_dict(name, architecture, joint_names or [f"joint{i + 1}" for i in range(act_size)],
                               hidden=hidden, layers=layers, onnx_sha256=sha256_file(onnx_path), seed=seed,
                               task=task, action=action, task_settings=task_settings)
    if action_std is not None:   # the trained Gaussian's std the manifest records (sampling)
        data["action_std"] = [float(v) for v in action_std]
    save_manifest(parse_manifest(data), directory)
    seal_artifact(directory)  # artifact_sha256, as the real export writes it
    return directory


def dummy_manifest_dict(name: str = "dummy_lstm", architecture: str = "lstm", joint_names=None, *,
                        hidden: int = 8, layers: int = 1, onnx_sha256: str = "0" * 64, seed: int = 0,
                        task: str = DEFAULT_TASK, action=None, task_settings: dict | None = None) -> dict:
    """A valid manifest JSON object for ``NAME.onnx`` (no manifest is read or written), for the
    ``panda_like`` robot: its default pose when there are as many joints, else zeros; ``action``:
    an action object of :mod:`sim_bridge.actions` (default: joint deltas of 0.05 rad)."""
    from sim_bridge.profile import load_profile

    joints = list(joint_names) if joint_names is not None else [f"joint{i + 1}" for i in range(7)]
    n = len(joints)
    profile = load_profile("panda_like")
    pose = [float(v) for v in profile.default_pose_rad] if profile.num_joints == n else [0.0] * n
    described = ({"type": JOINT_DELTA, "size": n, "scale_rad": 0.05} if action is None else action.describe())
    layout = get_task(task)(**dict(task_settings or {})).observation_layout(n, action)
    inputs, outputs = IO_NAMES[architecture]
    return {
        "manifest_version": 1,
        "name": name,
        "onnx_file": f"{name}.onnx",
        "onnx_sha256": onnx_sha256,
        "architecture": architecture,
        "observation": {"size": layout_size(layout),
                        "layout": [{"name": s.name, "size": s.size, "unit": s.unit, "description": s.description}
                                   for s in layout]},
        "action": {**described, "low": -1.0, "high": 1.0},
        "joint_names": joints,
        "task": {"name": task, **({"settings": dict(task_settings)} if task_settings else {})},
        "robot_profile": "panda_like",
        "control_rate_hz": 50.0,
        "default_pose_rad": pose,
        "recurrent_state": {"layers": layers, "hidden": hidden} if architecture == "lstm" else None,
        "io": {"inputs": list(inputs), "outputs": list(outputs)},
        "training": {"note": "freshly initialized dummy policy (policies.testing), not trained", "seed": seed},
        "evaluation": {},
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
