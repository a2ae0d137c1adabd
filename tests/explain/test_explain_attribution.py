"""Attribution through time: a network built to read one signal group gets all the mass there (every
method, including the mean-baseline ablation); windows reproduce the recorded actions; the
model-randomisation check separates a trained actor from a re-initialised one; ablations act."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from policies.explain.attribution import (AttributionSettings, WindowActor, attribute_recording, make_windows,
                                          randomisation_check, signal_groups)
from policies.explain.loading import load_explained_policy
from policies.explain.rollout import ActorStepper, EnvBatch, Intervention, Recording, record_episodes
from policies.manifest import shipped_zoo
from policies.model import LSTMActor, MLPActor
from sim_bridge.observations import Signal

JOINTS = [f"joint{k}" for k in range(1, 8)]
LAYOUT = (Signal("joint_pos", 7, "rad", ""), Signal("joint_vel", 7, "rad/s", ""),
          Signal("prev_action", 7, "1", ""), Signal("target_pos", 3, "m", ""))


def _reads_only(architecture: str, group: str) -> torch.nn.Module:
    torch.manual_seed(0)
    actor = (LSTMActor if architecture == "lstm" else MLPActor)(24, 7, hidden=16, head=(16,))
    g = next(s for s in signal_groups(LAYOUT) if s.name == group)
    first = actor.lstm.weight_ih_l0 if architecture == "lstm" else actor.body[0].weight
    with torch.no_grad():
        keep = torch.zeros(24, dtype=torch.bool)
        keep[g.start:g.start + g.size] = True
        first[:, ~keep] = 0.0
        first[:, keep] *= 3.0
        last = actor.head[-1] if architecture == "lstm" else actor.body[-1]
        torch.nn.init.normal_(last.weight, 0.0, 0.5)  # the training init's 0.01 gain: tiny actions
    return actor.eval()


def _recording(actor, episodes=3, steps=40, seed=0) -> Recording:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((episodes, steps, 24)).astype(np.float32)
    stepper = ActorStepper(actor)
    stepper.reset(episodes)
    acts, mems = [], []
    for t in range(steps):
        a, m = stepper.step(obs[:, t])
        acts.append(a)
        mems.append(m)
    return Recording(policy="toy", obs=obs, actions=np.stack(acts, 1), memory=np.stack(mems, 1),
                     distance=np.zeros((episodes, steps), np.float32), lengths=np.full(episodes, steps),
                     success=np.zeros(episodes, bool), dynamics=np.zeros((episodes, 1), np.float32),
                     dynamics_names=("none",), seeds=np.arange(episodes), control_rate_hz=50.0,
                     memory_kind=stepper.memory_kind)


@pytest.mark.parametrize("architecture", ["lstm", "mlp"])
@pytest.mark.parametrize("group", ["target_pos", "joint_vel"])
def test_a_network_that_reads_one_group_gets_all_the_attribution(architecture, group):
    actor = _reads_only(architecture, group)
    rec = _recording(actor)
    settings = AttributionSettings(lag_s=0.1, windows=6, noise_samples=4, ig_steps=8)
    res = attribute_recording(rec, actor, LAYOUT, JOINTS, settings)
    for method, shares in res.group_shares.items():
        assert shares[group] > 0.999, (method, shares)
    assert res.summary()["top_elements"]["integrated_gradients"][0][0].startswith(group)
    ablation = res.summary()["ablation_by_group"]
    assert ablation[group] > 0 and sum(v for g, v in ablation.items() if g != group) == 0.0
    if architecture == "mlp":  # no memory: only the current observation matters
        assert res.lag_shares["saliency"][0] == pytest.approx(1.0)
    else:
        assert res.lag_shares["saliency"][1] > 0.01
    episode = np.asarray(res.episode["attribution"])
    assert episode.shape == (40, 4)
    assert np.all(episode[:, [g.name != group for g in signal_groups(LAYOUT)]] == 0.0)


@pytest.fixture(scope="module")
def reach_lstm_recording():
    policy = load_explained_policy(shipped_zoo() / "reach_lstm")
    envs = EnvBatch(policy.task, policy.robot_profile, "default")
    return policy, envs, record_episodes(ActorStepper(policy.actor), envs, episodes=6, seed=5, policy=policy.name)


def test_windows_reproduce_the_recorded_actions(reach_lstm_recording):
    policy, _, rec = reach_lstm_recording
    w = make_windows(rec, policy.actor, [0, 3, 5], [40, 120, 199], 25)
    with torch.no_grad():
        action = WindowActor(policy.actor)(w.z, w.h0, w.c0)
    assert float((action - w.action).abs().max()) < 1e-5
    assert rec.memory.shape == (6, 200, 128) and rec.dynamics.shape[1] == len(rec.dynamics_names)


def test_model_randomisation_changes_the_saliency(reach_lstm_recording):
    policy, _, rec = reach_lstm_recording
    check = randomisation_check(policy.actor, rec, AttributionSettings(windows=8))
    assert check["passed"] and check["spearman_trained_vs_random"] < 0.5


def test_ablations_act_on_the_named_parts(reach_lstm_recording):
    policy, envs, rec = reach_lstm_recording
    stepper = ActorStepper(policy.actor, Intervention(zero_units=(0, 5)))
    stepper.reset(2)
    _, memory = stepper.step(rec.obs[:2, 0])
    assert np.all(memory[:, [0, 5, 64, 69]] == 0.0) and np.any(memory[:, 1] != 0.0)
    broken = record_episodes(ActorStepper(policy.actor, Intervention(zero_layers=("lstm",))), envs,
                             episodes=6, seed=5)
    assert rec.success.mean() >= 0.8 and broken.success.mean() < rec.success.mean()
    with pytest.raises(ValueError, match="unknown layers"):
        ActorStepper(policy.actor, Intervention(zero_layers=("body.tanh0",)))


def test_a_signal_the_policy_does_not_observe_has_no_group_and_the_rest_keep_their_indices():
    layout = LAYOUT[:2] + (Signal("prev_action", 0, "1", "not observed"),) + LAYOUT[3:]
    groups = signal_groups(layout)
    assert [(g.name, g.start, g.size) for g in groups] == [("joint_pos", 0, 7), ("joint_vel", 7, 7),
                                                           ("target_pos", 14, 3)]
