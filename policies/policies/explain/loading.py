"""Load the actor of a policy for analysis: from a training checkpoint, or from a sealed artifact.

Three inputs are accepted (:func:`load_explained_policy`):

* a training checkpoint (``.pt``): the actor is rebuilt as training built it;
* an artifact folder (or its ``.onnx``) that holds ``checkpoint.pt``: the checkpoint's actor,
  checked against the artifact (architecture, sizes, and onnxruntime parity: the checkpoint must
  be the one the graph was exported from);
* an artifact folder without a checkpoint: the actor's torch weights are reconstructed from the
  ONNX graph's initializers (:func:`actor_from_onnx`). ``policies.export`` wrote the graph:
  ``obs -> Sub(mean) -> Div(sqrt(var + eps)) -> Clip(+-clip) -> [LSTM] -> (MatMul + Add | Gemm)
  -> Tanh -> ... -> actions``. Only this shape is reconstructed; anything else is refused with
  the operator that is not understood. The rebuilt actor must agree with onnxruntime to
  :data:`PARITY_TOLERANCE` on random observation sequences (state fed back), or it is refused.

There is no critic then; the analyses need only the actor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from policies.model import LSTMActor, MLPActor

PARITY_TOLERANCE = 1e-5
CHECKPOINT_NAME = "checkpoint.pt"
# ops that only reshape or select (no weights); everything else must be understood
_SHAPE_OPS = {"Constant", "Unsqueeze", "Squeeze", "Gather", "Reshape", "Identity", "Shape", "Slice"}


class ExplainError(RuntimeError):
    """A policy cannot be analysed; the message says what is missing or wrong."""


@dataclass
class ExplainedPolicy:
    """An actor to analyse and what the stack knows about it."""

    name: str
    actor: nn.Module                 # LSTMActor or MLPActor, eval mode
    architecture: str                # "lstm" | "mlp"
    source: str                      # "checkpoint" | "onnx-reconstruction"
    path: Path
    task: dict[str, Any]             # {"name", "settings", ...} (manifest-style)
    robot_profile: str
    randomization: str               # what it was trained under
    parity_max_abs_diff: float | None = None   # torch vs onnxruntime (None: no graph to compare)
    notes: list[str] = field(default_factory=list)

    @property
    def recurrent(self) -> bool:
        return bool(self.actor.recurrent)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "architecture": self.architecture, "weights_from": self.source,
                "path": str(self.path), "task": self.task["name"], "robot_profile": self.robot_profile,
                "trained_randomization": self.randomization, "hidden": int(self.actor.hidden),
                "onnx_parity_max_abs_diff": self.parity_max_abs_diff, "notes": list(self.notes)}


# --- entry point -------------------------------------------------------------------------------
def load_explained_policy(path: str | Path) -> ExplainedPolicy:
    """The actor of a checkpoint (``.pt``), an artifact folder or its ``.onnx`` file."""
    path = Path(path)
    if path.suffix == ".pt":
        return _from_checkpoint(path)
    folder = path.parent if path.suffix == ".onnx" else path
    if not (folder / "manifest.json").is_file():
        raise ExplainError(f"{path}: neither a training checkpoint (.pt) nor a policy artifact folder "
                           f"(no manifest.json in {folder})")
    from policies.manifest import load_manifest
    try:
        manifest = load_manifest(folder)
    except Exception as exc:  # noqa: BLE001 - the manifest loader raises the config errors of its fields
        raise ExplainError(f"{folder}: unreadable manifest ({exc})") from None
    onnx_path = manifest.onnx_path
    if onnx_path is None or not onnx_path.is_file():
        raise ExplainError(f"{folder}: the manifest names {manifest.onnx_file}, which is missing")
    checkpoint = folder / CHECKPOINT_NAME
    if checkpoint.is_file():
        policy = _from_checkpoint(checkpoint, name=manifest.name)
        _check_against_manifest(policy, manifest, checkpoint)
        worst = onnx_parity(policy.actor, onnx_path)
        if not worst < PARITY_TOLERANCE:
            raise ExplainError(f"{checkpoint} does not match {onnx_path.name}: torch and onnxruntime differ by "
                               f"{worst:.3g} (> {PARITY_TOLERANCE}); it is not the checkpoint this graph was "
                               f"exported from (remove it to analyse the graph's own weights)")
        policy.parity_max_abs_diff = worst
        policy.path = folder
        return policy
    actor = actor_from_onnx(onnx_path, expected_architecture=manifest.architecture,
                            obs_size=manifest.observation.size, act_size=manifest.action.size)
    worst = onnx_parity(actor, onnx_path)
    if not worst < PARITY_TOLERANCE:
        raise ExplainError(f"{onnx_path}: the torch actor rebuilt from the graph's weights differs from "
                           f"onnxruntime by {worst:.3g} (> {PARITY_TOLERANCE}); refusing to explain a different "
                           f"network (ship the training checkpoint as {folder / CHECKPOINT_NAME})")
    training = manifest.training or {}
    return ExplainedPolicy(
        name=manifest.name, actor=actor, architecture=manifest.architecture, source="onnx-reconstruction",
        path=folder, task=dict(manifest.task), robot_profile=manifest.robot_profile,
        randomization=str(training.get("randomization_name", "default")), parity_max_abs_diff=worst,
        notes=[f"no {CHECKPOINT_NAME}: actor weights reconstructed from {onnx_path.name} "
               f"(onnxruntime parity {worst:.1e})"])


def _from_checkpoint(path: Path, name: str | None = None) -> ExplainedPolicy:
    from policies.export import actor_from_checkpoint, trained_task
    try:
        actor, cfg, _ = actor_from_checkpoint(path)
    except FileNotFoundError as exc:
        raise ExplainError(str(exc)) from None
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ExplainError(f"{path}: cannot rebuild the actor from this checkpoint ({exc})") from None
    return ExplainedPolicy(
        name=name or cfg.name, actor=actor, architecture=cfg.architecture, source="checkpoint", path=path,
        task=trained_task(cfg).describe(), robot_profile=cfg.robot_profile, randomization=str(cfg.randomization))


def _check_against_manifest(policy: ExplainedPolicy, manifest, checkpoint: Path) -> None:
    problems = []
    if policy.architecture != manifest.architecture:
        problems.append(f"architecture {policy.architecture!r} vs the manifest's {manifest.architecture!r}")
    hidden = manifest.recurrent_state.hidden if manifest.recurrent_state else None
    if hidden is not None and hidden != policy.actor.hidden:
        problems.append(f"LSTM hidden size {policy.actor.hidden} vs the manifest's {hidden}")
    obs_size = int(policy.actor.obs_norm.mean.numel())
    if obs_size != manifest.observation.size:
        problems.append(f"observation size {obs_size} vs the manifest's {manifest.observation.size}")
    if policy.task["name"] != manifest.task_name:
        problems.append(f"task {policy.task['name']!r} vs the manifest's {manifest.task_name!r}")
    if problems:
        raise ExplainError(f"{checkpoint} does not match its manifest: " + "; ".join(problems))


# --- ONNX -> torch -----------------------------------------------------------------------------
def actor_from_onnx(onnx_path: str | Path, *, expected_architecture: str | None = None,
                    obs_size: int | None = None, act_size: int | None = None) -> nn.Module:
    """Rebuild the torch actor (``LSTMActor`` / ``MLPActor``) of a graph written by ``policies.export``.

    ONNX LSTM gates are ordered (i, o, f, c); torch's are (i, f, g=c, o). ``B`` holds the input
    bias then the recurrent bias. ``MatMul`` weights are stored [in, out] (torch: [out, in]);
    ``Gemm`` weights follow its ``transB``. The normalizer's ``var`` is recovered as
    ``std^2 - eps`` from the baked divisor ``std = sqrt(var + eps)``.
    """
    import onnx
    from onnx import numpy_helper

    onnx_path = Path(onnx_path)
    graph = onnx.load(str(onnx_path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consts = dict(init)
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)

    def refuse(why: str) -> ExplainError:
        return ExplainError(f"{onnx_path}: cannot reconstruct the actor's torch weights from this graph: {why} "
                            f"(only graphs written by policies.export for the LSTM and MLP actors are understood; "
                            f"ship the training checkpoint as checkpoint.pt next to it)")

    def weight_of(node) -> np.ndarray:
        names = [n for n in node.input if n in consts]
        if len(names) != 1:
            raise refuse(f"{node.op_type} node {node.name!r} has {len(names)} constant inputs, expected 1")
        return consts[names[0]]

    mean = std = None
    clip = None
    lstm = None
    linears: list[tuple[np.ndarray, np.ndarray | None]] = []  # (weight [out, in], bias)
    activations: list[str] = []
    for node in graph.node:
        op = node.op_type
        if op in _SHAPE_OPS:
            continue
        if op == "Sub" and mean is None:
            mean = weight_of(node)
        elif op == "Div" and std is None:
            std = weight_of(node)
        elif op == "Clip" and clip is None:
            lo, hi = (float(np.asarray(consts[n]).reshape(())) for n in node.input[1:3])
            if lo != -hi:
                raise refuse(f"asymmetric observation clip [{lo}, {hi}]")
            clip = hi
        elif op == "LSTM":
            if lstm is not None or linears:
                raise refuse("an LSTM that is not the first layer")
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            direction = attrs.get("direction", b"forward")
            if direction not in (b"forward", "forward") or attrs.get("input_forget", 0) or "clip" in attrs \
                    or "activations" in attrs:
                raise refuse(f"LSTM attributes {sorted(attrs)} other than a plain forward LSTM")
            if len(node.input) < 4 or not all(n in init for n in node.input[1:4]):
                raise refuse("LSTM without constant W, R and B")
            lstm = (init[node.input[1]], init[node.input[2]], init[node.input[3]], int(attrs["hidden_size"]))
        elif op == "MatMul":
            linears.append((weight_of(node).T, None))
        elif op == "Add" and linears and linears[-1][1] is None:
            linears[-1] = (linears[-1][0], weight_of(node))
        elif op == "Gemm":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
                raise refuse(f"Gemm {node.name!r} with alpha/beta/transA")
            w = init.get(node.input[1])
            b = init.get(node.input[2]) if len(node.input) > 2 else None
            if w is None:
                raise refuse(f"Gemm {node.name!r} without a constant weight")
            linears.append((w if attrs.get("transB", 0) else w.T, b))
        elif op == "Tanh":
            activations.append(op)
        else:
            raise refuse(f"operator {op} ({node.name!r})")
    if mean is None or std is None or clip is None:
        raise refuse("no observation normalization (Sub, Div, Clip) at the input")
    if not linears:
        raise refuse("no linear layers")
    if len(activations) != len(linears) - 1:
        raise refuse(f"{len(linears)} linear layers but {len(activations)} Tanh activations")
    architecture = "lstm" if lstm is not None else "mlp"
    if expected_architecture is not None and expected_architecture != architecture:
        raise ExplainError(f"{onnx_path}: the graph is an {architecture.upper()} actor but the manifest says "
                           f"{expected_architecture!r}")
    n_obs = int(mean.size)
    n_act = int(linears[-1][0].shape[0])
    if obs_size is not None and obs_size != n_obs:
        raise ExplainError(f"{onnx_path}: the graph takes {n_obs} observations, the manifest says {obs_size}")
    if act_size is not None and act_size != n_act:
        raise ExplainError(f"{onnx_path}: the graph gives {n_act} actions, the manifest says {act_size}")
    sizes = [int(w.shape[0]) for w, _ in linears[:-1]]  # hidden widths of the MLP part
    if architecture == "lstm":
        w_ih, w_hh, bias, hidden = lstm
        actor: nn.Module = LSTMActor(n_obs, n_act, hidden=hidden, head=tuple(sizes))
        order = np.concatenate([np.arange(k * hidden, (k + 1) * hidden) for k in (0, 2, 3, 1)])  # iofc -> ifco
        state = {"lstm.weight_ih_l0": w_ih[0][order], "lstm.weight_hh_l0": w_hh[0][order],
                 "lstm.bias_ih_l0": bias[0, :4 * hidden][order], "lstm.bias_hh_l0": bias[0, 4 * hidden:][order]}
        prefix, first_in = "head", hidden
    else:
        if not sizes:
            raise refuse("an MLP actor without hidden layers")
        actor = MLPActor(n_obs, n_act, hidden=sizes[0], head=tuple(sizes[1:]))
        state, prefix, first_in = {}, "body", n_obs
    for k, (w, b) in enumerate(linears):
        expected_in = first_in if k == 0 else sizes[k - 1]
        if w.shape[1] != expected_in:
            raise refuse(f"linear layer {k} takes {w.shape[1]} inputs, expected {expected_in}")
        state[f"{prefix}.{2 * k}.weight"] = w
        state[f"{prefix}.{2 * k}.bias"] = b if b is not None else np.zeros(w.shape[0], np.float32)
    eps = actor.obs_norm.eps
    state["obs_norm.mean"] = mean.reshape(-1)
    state["obs_norm.var"] = np.square(std.reshape(-1).astype(np.float64)) - eps
    actor.obs_norm.clip = clip
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}
    own = actor.state_dict()
    tensors["obs_norm.count"] = own["obs_norm.count"]
    tensors["log_std"] = own["log_std"]  # not in the graph (it exports the mean action); unused here
    missing = set(own) - set(tensors)
    if missing:
        raise refuse(f"no weights for {sorted(missing)}")
    actor.load_state_dict(tensors)
    return actor.eval()


def onnx_parity(actor: nn.Module, onnx_path: str | Path, *, steps: int = 60, sequences: int = 3,
                seed: int = 0) -> float:
    """Max |torch - onnxruntime| over actions (and h, c) on random observation sequences around the
    normalizer's mean (+-2 std, some beyond the clip), each graph with its own state fed back."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    rng = np.random.default_rng(seed)
    mean = actor.obs_norm.mean.numpy()
    std = np.sqrt(actor.obs_norm.var.numpy() + actor.obs_norm.eps)
    worst = 0.0
    for _ in range(sequences):
        state = actor.initial_state(1)
        if actor.recurrent:
            h = np.zeros((1, 1, actor.hidden), np.float32)
            c = np.zeros_like(h)
        for step in range(steps):
            scale = 15.0 if step % 17 == 0 else 2.0  # now and then beyond the clip
            obs = (mean + scale * std * rng.standard_normal(mean.shape)).astype(np.float32).reshape(1, -1)
            with torch.inference_mode():
                act, state = actor(torch.from_numpy(obs).view(1, 1, -1), state)
            if actor.recurrent:
                out_a, h, c = session.run(None, dict(zip(names, (obs, h, c))))
                worst = max(worst, float(np.abs(h - state[0].numpy()).max()),
                            float(np.abs(c - state[1].numpy()).max()))
            else:
                (out_a,) = session.run(None, {names[0]: obs})
            worst = max(worst, float(np.abs(out_a.reshape(-1) - act.reshape(-1).numpy()).max()))
    return worst
