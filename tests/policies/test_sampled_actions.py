"""Sampled actions: the policy's Gaussian (its mean + its trained std), what PPO optimised, next to
the deterministic mean an exported policy runs by default. On Push they differed by 10-20 points
with a learnt std (push_lstm's second stage, 500 randomized episodes: 80.2% sampled, 66.6% mean;
README), so the runtime
can sample (``sample_seed``, the manifest's ``action_std``) and ``sim2real eval --sample-actions``
measures it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from policies.evaluate import TorchPolicy, checkpoint_policy  # noqa: E402
from policies.manifest import load_manifest, parse_manifest, shipped_zoo  # noqa: E402
from policies.train import load_checkpoint_file  # noqa: E402
from policies.runtime import PolicyLoadError, PolicyRuntime  # noqa: E402
from policies.testing import export_dummy_policy  # noqa: E402
from sim_bridge.config import ConfigError  # noqa: E402

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


STD = [0.2, 0.05, 0.1, 0.3, 0.15, 0.25, 0.1]


def test_the_runtime_samples_around_its_mean_with_the_manifests_std_and_repeats_per_seed(tmp_path):
    path = export_dummy_policy(tmp_path / "mlp", architecture="mlp", hidden=16, action_std=STD, seed=5)
    assert load_manifest(path).action_std == tuple(STD)
    mean_runtime, sampling = PolicyRuntime(path), PolicyRuntime(path, sample_seed=1)
    assert sampling.sampling and not mean_runtime.sampling
    obs = np.random.default_rng(0).normal(0, 0.3, 24).astype(np.float32)
    mean = mean_runtime.step(obs)
    sampling.seed_episode(11)
    draws = np.array([sampling.step(obs) for _ in range(4000)])
    np.testing.assert_allclose(draws.mean(0), mean, atol=4 * max(STD) / np.sqrt(4000))
    np.testing.assert_allclose(draws.std(0), STD, rtol=0.06)
    sampling.seed_episode(11)
    np.testing.assert_array_equal(sampling.step(obs), draws[0])
    np.testing.assert_array_equal(mean_runtime.step(obs), mean)


def test_sampling_without_a_recorded_std_or_with_a_bad_one_is_refused_naming_the_field(tmp_path):
    plain = export_dummy_policy(tmp_path / "plain", architecture="mlp", hidden=16)
    PolicyRuntime(plain)   # the mean needs no std
    with pytest.raises(PolicyLoadError, match="action_std") as info:
        PolicyRuntime(plain, sample_seed=0)
    assert info.value.field == "action_std"
    for bad, match in (([0.1] * 6, "expected 7 values"), ([0.1] * 6 + [0.0], "must be > 0"),
                       ([0.1] * 6 + [float("nan")], "not finite")):
        data = json.loads((plain / "manifest.json").read_text())
        data["action_std"] = bad
        with pytest.raises(ConfigError, match=match):
            parse_manifest(data)


def test_the_shipped_policies_record_their_trained_std():
    for name in ("push_lstm", "reach_lstm"):
        weights = load_checkpoint_file(shipped_zoo() / name / "checkpoint.pt")["model"]["actor.log_std"]
        np.testing.assert_allclose(load_manifest(shipped_zoo() / name).action_std, weights.exp().numpy(), rtol=1e-6)


def test_eval_without_a_std_anywhere_is_refused_naming_what_is_missing(tmp_path):
    artifact = export_dummy_policy(tmp_path / "plain", architecture="mlp", hidden=16)
    out = subprocess.run([SIM2REAL, "eval", str(artifact), "--sample-actions", "--episodes", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "action_std" in out.stderr and "checkpoint.pt" in out.stderr, out.stderr


def _zoo(tmp_path):
    export_dummy_policy(tmp_path / "with_std", architecture="mlp", hidden=16, action_std=STD, seed=5,
                        name="with_std")
    export_dummy_policy(tmp_path / "without_std", architecture="mlp", hidden=16, seed=6, name="without_std")
    return tmp_path


def _command(ctl):
    from sim_bridge.profile import load_profile
    profile = load_profile("panda_like")
    ctl.on_joint_state(list(profile.joint_names), list(profile.default_pose_rad), [0.0] * 7, 0.0)
    ctl.set_goal(np.array([0.5, 0.1, 0.4]))
    return ctl.cycle(0.0)


def test_a_sampling_controller_commands_samples_and_refuses_a_policy_without_a_std_keeping_its_own(tmp_path):
    from policies.control import COMMAND, PolicyController, PolicyRejected
    from sim_bridge.profile import load_profile

    zoo, profile = _zoo(tmp_path), load_profile("panda_like")
    mean_ctl, ctl = PolicyController(profile, zoo), PolicyController(profile, zoo, sample_seed=3)
    mean_ctl.set_policy(mean_ctl.load_policy("with_std"))
    ctl.set_policy(ctl.load_policy("with_std"))
    assert ctl.active.runtime.sampling and not mean_ctl.active.runtime.sampling
    mean, sampled = _command(mean_ctl), _command(ctl)
    assert mean.status == sampled.status == COMMAND
    assert not np.allclose(mean.command, sampled.command)   # 0.05-0.3 of noise x the action scale
    with pytest.raises(PolicyRejected, match="action_std"):
        ctl.load_policy("without_std")
    assert ctl.active.name == "with_std" and _command(ctl).status == COMMAND


@pytest.mark.ros
def test_the_policy_node_samples_when_its_parameter_says_so(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from policies.node import PolicyNode

    zoo = _zoo(tmp_path)
    rclpy.init()
    try:
        nodes = [PolicyNode(autostart=True, parameter_overrides=[
            Parameter("policy_dir", value=str(zoo)), Parameter("policy", value=name),
            Parameter("sample_actions", value=True), Parameter("sample_seed", value=7)])
            for name in ("with_std", "without_std")]
        sampling, refused = nodes
        assert sampling.lifecycle_state == "active" and sampling.controller.active.runtime.sampling
        assert refused.lifecycle_state != "active" and "action_std" in refused.last_error, refused.last_error
        for node in nodes:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
