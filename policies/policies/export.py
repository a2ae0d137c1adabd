"""Export a trained actor to ONNX with explicit recurrent state, plus its manifest.

Graph: ``obs [1, O], h_in [1, 1, H], c_in [1, 1, H] -> actions [1, A], h_out, c_out``
(MLP actors: ``obs -> actions``). Observation normalization is inside the graph and
the action is the deterministic mean. The export checks itself: torch and onnxruntime
must agree within 1e-5 over a full episode with the state fed back, or nothing is kept.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from policies.config import TrainConfig
from policies.model import ActorCritic
from policies.train import build_model, load_checkpoint_file

PARITY_TOLERANCE = 1e-5
MANIFEST_NAME = "manifest.json"


class ExportError(RuntimeError):
    pass


class _RecurrentGraph(nn.Module):
    def __init__(self, actor):
        super().__init__()
        self.actor = actor

    def forward(self, obs, h_in, c_in):
        mean, (h_out, c_out) = self.actor(obs.unsqueeze(0), (h_in, c_in))
        return mean[0], h_out, c_out


class _FeedForwardGraph(nn.Module):
    def __init__(self, actor):
        super().__init__()
        self.actor = actor

    def forward(self, obs):
        return self.actor(obs, None)[0]


def actor_from_checkpoint(path: str | Path) -> tuple[nn.Module, TrainConfig, dict]:
    """Rebuild the actor of a checkpoint (loaded with weights_only=True) in eval mode."""
    state = load_checkpoint_file(path)
    cfg = TrainConfig.from_dict(state["config"])
    model = _model_for(cfg, state)
    model.load_state_dict(state["model"])
    return model.actor.eval(), cfg, state


def trained_task(cfg: TrainConfig):
    """The task instance a training config trained on (its settings from ``env_kwargs``)."""
    from sim_bridge.envs import task_settings_of
    from sim_bridge.tasks import make_task
    return make_task(cfg.task, **task_settings_of(cfg.env_kwargs))


def trained_action(cfg: TrainConfig):
    """The action (:mod:`sim_bridge.actions`) a training config's env used (``env_kwargs``:
    ``action_type``, ``action_scale_rad``, ``ee_action``)."""
    from sim_bridge.profile import load_profile
    from sim_bridge.simulator import make_action
    kw = cfg.env_kwargs
    return make_action(load_profile(cfg.robot_profile), trained_task(cfg), kw.get("action_type"),
                       scale_rad=float(kw.get("action_scale_rad", 0.05)), ee=kw.get("ee_action"))


def observation_size_for(cfg: TrainConfig) -> int:
    from sim_bridge.observations import layout_size
    from sim_bridge.profile import load_profile
    return layout_size(trained_task(cfg).observation_layout(load_profile(cfg.robot_profile).num_joints,
                                                            trained_action(cfg)))


def _model_for(cfg: TrainConfig, state: dict) -> ActorCritic:
    return build_model(cfg, observation_size_for(cfg), trained_action(cfg).size, len(state["privileged_names"]))


def export_onnx(actor: nn.Module, path: Path, obs_size: int) -> None:
    actor = actor.eval()
    obs = torch.zeros(1, obs_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        if actor.recurrent:
            h, c = actor.initial_state(1)
            torch.onnx.export(_RecurrentGraph(actor), (obs, h, c), str(path), dynamo=False, opset_version=17,
                              input_names=["obs", "h_in", "c_in"], output_names=["actions", "h_out", "c_out"])
        else:
            torch.onnx.export(_FeedForwardGraph(actor), (obs,), str(path), dynamo=False, opset_version=17,
                              input_names=["obs"], output_names=["actions"])


def parity_check(actor: nn.Module, onnx_path: Path, cfg: TrainConfig, steps: int = 200, seed: int = 0) -> float:
    """Run one full env episode with the torch actor driving and onnxruntime shadowing it,
    both with their own state fed back; return the max abs difference of the actions."""
    import onnxruntime as ort

    from sim_bridge.envs.vector import make_env

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    env = make_env(trained_task(cfg).env_id, task=cfg.task, profile=cfg.robot_profile,
                   randomization=cfg.randomization,
                   max_episode_steps=steps, **{k: v for k, v in cfg.env_kwargs.items() if k != "max_episode_steps"})
    obs, _ = env.reset(seed=seed)
    state = actor.initial_state(1)
    h = np.zeros((1, 1, actor.hidden), np.float32)
    c = np.zeros_like(h)
    worst = 0.0
    for _ in range(steps):
        with torch.inference_mode():
            mean, state = actor(torch.from_numpy(obs).view(1, 1, -1), state)
        action = mean.view(-1).numpy()
        feed = {"obs": obs.reshape(1, -1).astype(np.float32)}
        if actor.recurrent:
            feed |= {"h_in": h, "c_in": c}
            onnx_action, h, c = session.run(None, feed)
        else:
            (onnx_action,) = session.run(None, feed)
        worst = max(worst, float(np.abs(onnx_action.reshape(-1) - action).max()))
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:  # keep going for the full length: a new episode, fresh state
            obs, _ = env.reset()
            state = actor.initial_state(1)
            h[:] = 0.0
            c[:] = 0.0
    return worst


def build_manifest(name: str, onnx_file: str, sha256: str, actor: nn.Module, cfg: TrainConfig,
                   training: dict, evaluation: dict) -> dict:
    from sim_bridge.profile import load_profile
    from sim_bridge.randomization import load_randomization

    profile = load_profile(cfg.robot_profile)
    task = trained_task(cfg)
    action = trained_action(cfg)
    layout = task.observation_layout(profile.num_joints, action)
    recurrent = actor.recurrent
    return {
        "manifest_version": 1,
        "name": name,
        "onnx_file": onnx_file,
        "onnx_sha256": sha256,
        "architecture": cfg.architecture,
        "observation": {"size": sum(s.size for s in layout),
                        "layout": [{"name": s.name, "size": s.size, "unit": s.unit, "description": s.description}
                                   for s in layout]},
        "action": {**action.describe(), "low": -1.0, "high": 1.0},
        "action_std": [float(v) for v in actor.log_std.detach().exp()],   # the trained Gaussian, for sampling
        "joint_names": list(profile.joint_names),
        "task": task.describe(),
        "robot_profile": profile.name,  # the name the policy node checks (cfg may give a YAML path)
        "control_rate_hz": profile.control_rate_hz,
        "default_pose_rad": [float(v) for v in profile.default_pose_rad],
        "recurrent_state": {"layers": 1, "hidden": actor.hidden} if recurrent else None,
        "io": ({"inputs": ["obs", "h_in", "c_in"], "outputs": ["actions", "h_out", "c_out"]} if recurrent
               else {"inputs": ["obs"], "outputs": ["actions"]}),
        "training": {"randomization_name": task.randomization_name(cfg.randomization),
                     "randomization": load_randomization(task.randomization_name(cfg.randomization)).to_dict(),
                     "config": cfg.to_dict(), **training},
        "evaluation": evaluation,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


WEIGHTS_NAME = "checkpoint.pt"
WEIGHTS_KEYS = ("checkpoint_version", "config", "model", "privileged_names", "iteration", "env_steps", "wall_time_s")


def fine_tune_parent(cfg: TrainConfig) -> dict | None:
    """Provenance of the policy a fine-tune started from (``init_from``), when that checkpoint
    is an artifact's ``checkpoint.pt``: its name, seal, training command, env steps and time. A
    fine-tuned artifact's own ``wall_time_s`` counts only the fine-tune, so this is how a reader
    adds up what the policy cost. Read at export time: the export may replace that artifact."""
    if not cfg.init_from:
        return None
    parent = Path(cfg.init_from).parent / MANIFEST_NAME
    if not parent.is_file():
        return {"checkpoint": str(cfg.init_from)}
    manifest = json.loads(parent.read_text())
    training = manifest.get("training", {})
    return {"checkpoint": str(cfg.init_from), "name": manifest.get("name"),
            "artifact_sha256": manifest.get("artifact_sha256"),
            **{key: training[key] for key in ("command", "env_steps", "wall_time_s", "fine_tuned_from")
               if key in training}}


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, name: str | None = None,
                      training_extra: dict | None = None, evaluation: dict | None = None) -> Path:
    """Write ``out_dir/NAME.onnx``, ``out_dir/manifest.json`` and ``out_dir/checkpoint.pt`` (the
    training weights without the optimizer: fine-tuning, ``sim2real loop`` and ``sim2real
    explain`` start from it; the robot computer never reads it); verified before it is kept."""
    from policies.manifest import seal_artifact, sha256_file
    from policies.runtime import PolicyRuntime

    actor, cfg, state = actor_from_checkpoint(checkpoint)
    out_dir = Path(out_dir)
    name = name or out_dir.name
    obs_size = observation_size_for(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / name
        staging.mkdir()
        onnx_path = staging / f"{name}.onnx"
        export_onnx(actor, onnx_path, obs_size)
        worst = parity_check(actor, onnx_path, cfg)
        if not worst <= PARITY_TOLERANCE:
            raise ExportError(f"export parity failed: torch and onnxruntime differ by {worst:.3g} "
                              f"(> {PARITY_TOLERANCE}) over a 200-step episode; nothing written")
        training = {"env_steps": state["env_steps"], "iterations": state["iteration"],
                    "wall_time_s": round(state["wall_time_s"], 1), "seed": cfg.seed,
                    "export_parity_max_abs_diff": worst, **(training_extra or {})}
        parent = fine_tune_parent(cfg)
        if parent is not None:
            training["fine_tuned_from"] = parent
        manifest = build_manifest(name, onnx_path.name, sha256_file(onnx_path), actor, cfg, training,
                                  evaluation or {})
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        seal_artifact(staging)  # artifact_sha256: one hash over graph + manifest
        torch.save({key: state[key] for key in WEIGHTS_KEYS if key in state}, staging / WEIGHTS_NAME)
        PolicyRuntime(staging)  # validates manifest against graph, exactly as deployment will
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, out_dir)
    return out_dir


def update_evaluation(artifact_dir: str | Path, evaluation: dict) -> None:
    """Record evaluation results in an artifact's manifest (the ONNX file is untouched) and
    re-seal it. The artifact is verified first, so this never blesses an edit made since export."""
    from policies.manifest import load_manifest, seal_artifact, verify_artifact
    from sim_bridge.config import write_text_atomic
    path = Path(artifact_dir) / MANIFEST_NAME
    current = load_manifest(path)
    verify_artifact(current, current.onnx_path.read_bytes())
    manifest = json.loads(path.read_text())
    manifest["evaluation"] = evaluation
    write_text_atomic(path, json.dumps(manifest, indent=2) + "\n")
    seal_artifact(artifact_dir)
