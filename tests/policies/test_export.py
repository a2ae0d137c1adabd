"""Export of a trained checkpoint: parity, manifest contents, runtime == torch, failures keep nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from policies import export as export_mod
from policies.evaluate import TorchPolicy
from policies.export import ExportError, actor_from_checkpoint, export_checkpoint
from policies.runtime import PolicyRuntime
from policies.train import Trainer, load_checkpoint_file
from sim_bridge.envs.vector import make_env

from test_training import tiny_config  # noqa: E402  (tests/policies is on sys.path under pytest)


@pytest.fixture(scope="module", params=["lstm", "mlp", "mlp_history"])
def checkpoint(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"run_{request.param}")
    trainer = Trainer(tiny_config(architecture=request.param, total_env_steps=4 * 20), out, quiet=True)
    trainer.train()
    trainer.close()
    return out / "checkpoints" / "latest.pt"


def test_export_writes_a_parity_checked_artifact(checkpoint, tmp_path):
    out = export_checkpoint(checkpoint, tmp_path / "zoo" / "tiny", training_extra={"command": "pytest"})
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "manifest.json", "tiny.onnx"]
    # the artifact ships the training weights (no optimizer): fine-tuning and explain start there
    weights, full = load_checkpoint_file(out / "checkpoint.pt"), load_checkpoint_file(checkpoint)
    assert "optimizer" not in weights and weights["config"] == full["config"]
    for key, value in full["model"].items():
        assert torch.equal(weights["model"][key], value), key
    tuned = Trainer(tiny_config(architecture=full["config"]["architecture"], init_from=str(out / "checkpoint.pt")),
                    tmp_path / "tune", quiet=True)
    try:
        tuned.train(stop_after_iterations=1)
    finally:
        tuned.close()
    manifest = json.loads((out / "manifest.json").read_text())
    # a fine-tune's export names what it started from (its own wall time counts only the fine-tune)
    assert "fine_tuned_from" not in manifest["training"]
    child = export_checkpoint(tmp_path / "tune" / "checkpoints" / "latest.pt", tmp_path / "zoo" / "tuned")
    parent = json.loads((child / "manifest.json").read_text())["training"]["fine_tuned_from"]
    assert parent["name"] == "tiny" and parent["artifact_sha256"] == manifest["artifact_sha256"]
    assert parent["command"] == "pytest" and parent["env_steps"] == manifest["training"]["env_steps"]
    actor, cfg, _ = actor_from_checkpoint(checkpoint)
    assert manifest["architecture"] == cfg.architecture
    assert manifest["training"]["export_parity_max_abs_diff"] <= 1e-5
    assert manifest["training"]["randomization_name"] == "default"
    assert "body_mass" in manifest["training"]["randomization"]["parameters"]
    assert manifest["training"]["config"]["seed"] == cfg.seed and manifest["training"]["command"] == "pytest"
    assert [s["name"] for s in manifest["observation"]["layout"]] == ["joint_pos", "joint_vel", "prev_action",
                                                                     "target_pos"]
    assert (manifest["recurrent_state"] is None) == (cfg.architecture == "mlp")

    # the trained Gaussian's std, for a runtime asked to sample
    np.testing.assert_allclose(manifest["action_std"], actor.log_std.detach().exp().numpy(), rtol=1e-6)

    # The deployed runtime and the torch actor agree on a real episode with state fed back,
    # acting with the mean and, seeded alike, with samples.
    runtime, torch_policy = PolicyRuntime(out), TorchPolicy(actor)
    sampling, torch_sampling = PolicyRuntime(out, sample_seed=0), TorchPolicy(actor, sample=True)
    sampling.seed_episode(3)
    torch_sampling.seed_episode(3)
    env = make_env(randomization="default")
    obs, _ = env.reset(seed=3)
    for _ in range(60):
        a_rt, a_torch = runtime.step(obs), torch_policy.step(obs)
        np.testing.assert_allclose(a_rt, a_torch, atol=1e-5)
        np.testing.assert_allclose(sampling.step(obs), torch_sampling.step(obs), atol=1e-5)
        obs, *_ = env.step(a_torch)


def test_runtime_builds_the_same_observation_as_the_env(checkpoint, tmp_path):
    out = export_checkpoint(checkpoint, tmp_path / "art")
    runtime = PolicyRuntime(out)
    env = make_env(randomization="default")
    obs, info = env.reset(seed=5)
    prev = np.zeros(7)
    for _ in range(5):
        action = runtime.step(obs)
        prev = np.clip(action, -1, 1)
        obs, *_ = env.step(action)
    reading = env._reading  # the env's own sensor reading for this step
    runtime.reset()
    from_signals = runtime.act(reading.position_rad, reading.velocity_rad_s, prev, env.task_state)
    runtime.reset()
    np.testing.assert_array_equal(from_signals, runtime.step(obs))


def test_failed_parity_writes_nothing(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "parity_check", lambda *a, **k: 3e-4)
    target = tmp_path / "zoo" / "broken"
    with pytest.raises(ExportError, match="parity failed"):
        export_checkpoint(checkpoint, target)
    assert not target.exists()


def test_export_of_a_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        export_checkpoint(tmp_path / "nope.pt", tmp_path / "out")
