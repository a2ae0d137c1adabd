"""PPO maths against hand-computed numbers, and recurrent batching against step-by-step unrolling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from policies.model import ActorCritic, RunningNorm
from policies.ppo import build_sequences, compute_gae, ppo_losses


def test_gae_matches_hand_computation():
    # one env, 3 steps, episode ends after step 1 (index 1)
    rewards = np.array([[1.0], [2.0], [3.0]])
    values = np.array([[0.5], [1.0], [1.5]])
    dones = np.array([[0.0], [1.0], [0.0]])
    last = np.array([2.0])
    g, lam = 0.9, 0.8
    # t=2: delta = 3 + 0.9*2 - 1.5 = 3.3 ; A2 = 3.3
    # t=1: done -> delta = 2 - 1.0 = 1.0 ; A1 = 1.0
    # t=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4 ; A0 = 1.4 + 0.9*0.8*1.0 = 2.12
    adv, ret = compute_gae(rewards, values, dones, last, g, lam)
    np.testing.assert_allclose(adv[:, 0], [2.12, 1.0, 3.3])
    np.testing.assert_allclose(ret[:, 0], [2.62, 2.0, 4.8])


def test_ppo_loss_matches_hand_computation():
    old = torch.tensor([0.0, 0.0])
    new = torch.log(torch.tensor([1.5, 0.5]))  # ratios 1.5 and 0.5
    adv = torch.tensor([1.0, -2.0])
    values, returns = torch.tensor([1.0, 0.0]), torch.tensor([3.0, 1.0])
    entropy = torch.tensor([0.2, 0.4])
    w = torch.ones(2)
    pg, v, ent, kl, clip_frac = ppo_losses(new, old, adv, values, returns, entropy, w, clip_coef=0.2)
    # sample 0: -min(1.5*1, 1.2*1) = -1.2 ; sample 1: -min(0.5*-2, 0.8*-2) = 1.6  -> mean 0.2
    assert pg.item() == pytest.approx(0.2)
    assert v.item() == pytest.approx(0.5 * (4.0 + 1.0) / 2)
    assert ent.item() == pytest.approx(0.3)
    # k3 KL: (r - 1) - log r
    expected_kl = np.mean([0.5 - np.log(1.5), -0.5 - np.log(0.5)])
    assert kl.item() == pytest.approx(expected_kl, rel=1e-6)
    assert clip_frac.item() == pytest.approx(1.0)
    # zero weight on sample 1 removes it
    pg, *_ = ppo_losses(new, old, adv, values, returns, entropy, torch.tensor([1.0, 0.0]), clip_coef=0.2)
    assert pg.item() == pytest.approx(-1.2)


def test_running_norm_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, (1000, 4)).astype(np.float32)
    norm = RunningNorm(4)
    for chunk in np.array_split(data, 7):
        norm.update(torch.from_numpy(chunk))
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-4)
    assert norm.count.item() == 1000
    out = norm(torch.from_numpy(data)).numpy()
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(0), 1.0, atol=1e-3)


def test_sequences_cover_every_step_once_and_respect_episode_starts():
    rng = np.random.default_rng(1)
    T, N = 23, 4
    starts = rng.random((T, N)) < 0.1
    seqs = build_sequences(starts, seq_len=5)
    covered = seqs.index[seqs.mask]
    assert sorted(covered.tolist()) == list(range(T * N)), "every step exactly once"
    assert seqs.mask.shape[0] <= 5
    for s in range(seqs.count):
        steps = seqs.index[seqs.mask[:, s], s]
        t, n = steps // N, steps % N
        assert np.all(n == n[0]) and np.all(np.diff(t) == 1), "one env, consecutive steps"
        assert steps[0] == seqs.start[s]
        assert not starts[t[1:], n[1:]].any(), "an episode start only at a sequence's first step"
    # masks are a prefix in each column (padding at the end)
    assert np.all(np.diff(seqs.mask.astype(int), axis=0) <= 0)


def test_recurrent_minibatch_equals_step_by_step_unrolling():
    """The padded-sequence forward pass gives the same action means as the rollout's
    step-by-step pass with state carried and reset at episode starts."""
    torch.manual_seed(0)
    T, N, O = 17, 3, 24
    model = ActorCritic(O, 7, 10, architecture="lstm", hidden=16)
    actor = model.actor
    obs = torch.randn(T, N, O)
    starts = np.zeros((T, N), bool)
    starts[0] = True
    starts[6, 0] = starts[11, 2] = True
    # step by step, as during a rollout
    state = actor.initial_state(N)
    h_store, c_store, means = [], [], []
    with torch.no_grad():
        for t in range(T):
            keep = torch.from_numpy(~starts[t]).float().view(1, N, 1)
            state = (state[0] * keep, state[1] * keep)
            h_store.append(state[0][0].clone())
            c_store.append(state[1][0].clone())
            mean, state = actor(obs[t].unsqueeze(0), state)
            means.append(mean[0])
    step_means = torch.stack(means).reshape(T * N, -1)
    h0 = torch.stack(h_store).reshape(T * N, -1)
    c0 = torch.stack(c_store).reshape(T * N, -1)
    seqs = build_sequences(starts, seq_len=4)
    flat_obs = obs.reshape(T * N, O)
    idx, m = torch.from_numpy(seqs.index), torch.from_numpy(seqs.mask)
    s0 = torch.from_numpy(seqs.start)
    with torch.no_grad():
        seq_means, _ = actor(flat_obs[idx], (h0[s0].unsqueeze(0), c0[s0].unsqueeze(0)))
    torch.testing.assert_close(seq_means[m], step_means[idx[m]], rtol=1e-5, atol=1e-6)


def test_history_mlp_stacks_the_last_observations_newest_first_and_carries_them_as_state():
    import torch

    from policies.model import HistoryMLPActor

    torch.manual_seed(0)
    actor = HistoryMLPActor(obs_size=3, act_size=2, hidden=16, history=4)
    seen = []
    actor.obs_norm.forward = lambda x: (seen.append(x.clone()), x)[1]  # record the stacked inputs
    obs = torch.arange(1, 1 + 6 * 2 * 3, dtype=torch.float32).view(6, 2, 3)  # [L=6, B=2, obs=3]
    state = actor.initial_state(2)
    whole, whole_state = actor(obs, state)
    stacked = seen[-1]  # [L, B, 4, 3] newest first
    assert stacked.shape == (6, 2, 4, 3)
    torch.testing.assert_close(stacked[5, 1, 0], obs[5, 1])  # o_t first
    torch.testing.assert_close(stacked[5, 1, 3], obs[2, 1])  # then o_{t-1}, o_{t-2}, o_{t-3}
    torch.testing.assert_close(stacked[1, 0, 2], torch.zeros(3))  # before the episode: zeros
    # one step at a time with the state fed back == the whole sequence in one call
    step_state, steps = state, []
    for t in range(6):
        mean, step_state = actor(obs[t:t + 1], step_state)
        steps.append(mean[0])
    torch.testing.assert_close(torch.stack(steps), whole)
    torch.testing.assert_close(step_state[0], whole_state[0])
    assert whole_state[0].shape == (1, 2, 9) and actor.hidden == 9


@pytest.mark.parametrize("architecture", ["lstm", "mlp", "mlp_history"])
def test_the_rollouts_one_step_call_and_log_density_match_the_sequence_forward_and_torchs_normal(architecture):
    """The rollout steps the actor with ``actor.step`` and scores actions with ``model.log_prob``
    (cheaper calls); PPO's update replays sequences with ``forward`` and ``torch.distributions``:
    both must give the same numbers, or the update's probability ratios start off 1."""
    torch.manual_seed(0)
    model = ActorCritic(6, 3, 2, architecture=architecture, hidden=16, init_log_std=-0.7)
    model.actor.obs_norm.update(torch.randn(50, 6) * 3 + 1)
    obs = torch.randn(5, 4, 6)
    state = model.actor.initial_state(4)
    with torch.no_grad():
        whole, _ = model.actor(obs, state)
        for t in range(5):
            mean, state = model.actor.step(obs[t], state)
            torch.testing.assert_close(mean, whole[t], rtol=0, atol=1e-6)
        action = mean + torch.randn(4, 3)
        torch.testing.assert_close(model.log_prob(action, mean), model.distribution(mean).log_prob(action).sum(-1),
                                   rtol=0, atol=1e-6)
