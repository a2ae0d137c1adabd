"""`sim2real eval --sample-actions`: the policy's Gaussian (its mean + its trained std), what PPO
optimised, next to the deterministic mean an exported policy runs. On Push the two differ by
~30 points (docs/push_training.md), so the sampled figure has to be measurable by a command."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from policies.evaluate import TorchPolicy, checkpoint_policy  # noqa: E402
from policies.manifest import shipped_zoo  # noqa: E402

SIM2REAL = str(Path(sys.executable).with_name("sim2real"))


def test_sampled_actions_scatter_around_the_mean_with_the_trained_std_and_repeat_per_episode_seed():
    weights = shipped_zoo() / "reach_mlp" / "checkpoint.pt"
    mean_policy, sampled = checkpoint_policy(str(weights)), checkpoint_policy(str(weights), sample=True)
    obs = np.random.default_rng(0).normal(0, 0.3, mean_policy.actor.obs_norm.mean.numel()).astype(np.float32)
    mean = mean_policy.step(obs)
    sampled.seed_episode(7)
    draws = np.array([sampled.step(obs) for _ in range(4000)])   # an MLP: no state between steps
    std = sampled.actor.log_std.detach().exp().numpy()
    np.testing.assert_allclose(draws.mean(0), mean, atol=4 * std.max() / np.sqrt(4000))
    np.testing.assert_allclose(draws.std(0), std, rtol=0.06)
    sampled.seed_episode(7)
    np.testing.assert_array_equal(sampled.step(obs), draws[0])
    assert isinstance(mean_policy, TorchPolicy) and mean_policy.std is None
    np.testing.assert_array_equal(mean_policy.step(obs), mean)   # the mean policy stays deterministic


def test_an_artifact_without_its_training_weights_is_refused_naming_the_file(tmp_path):
    artifact = tmp_path / "reach_mlp"
    artifact.mkdir()
    for f in (shipped_zoo() / "reach_mlp").iterdir():
        if f.name != "checkpoint.pt":
            shutil.copy(f, artifact / f.name)
    out = subprocess.run([SIM2REAL, "eval", str(artifact), "--sample-actions", "--episodes", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "checkpoint.pt" in out.stderr and "--sample-actions" in out.stderr, out.stderr
