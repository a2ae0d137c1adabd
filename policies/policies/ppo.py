"""PPO maths: GAE, recurrent sequence batching, the clipped loss, one update.

Layers: env -> model (model.py) -> algorithm (this file) -> runner (train.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from policies.model import ActorCritic


def compute_gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_values: np.ndarray,
                gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation over a [T, N] rollout.

    ``dones[t]`` = the episode ended after step t (its successor is a new episode);
    truncations are handled by the caller adding ``gamma * V(final_obs)`` to the reward.
        delta_t = r_t + gamma * V(s_{t+1}) * (1 - done_t) - V(s_t)
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}
        returns = A + V
    """
    T = rewards.shape[0]
    adv = np.zeros_like(rewards)
    next_adv = np.zeros_like(last_values)
    next_value = last_values
    for t in reversed(range(T)):  # the recursion runs over time once per rollout (not in the update)
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        next_adv = delta + gamma * lam * not_done * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values


@dataclass
class Sequences:
    """A rollout cut into padded sequences that never cross an episode start.

    ``index[l, s]`` = flat index (t * N + n) of step l of sequence s, ``mask[l, s]`` =
    the step exists (the rest is padding). ``start`` = flat index of each sequence's
    first step, where the stored rollout hidden state is the sequence's initial state.
    """

    index: np.ndarray
    mask: np.ndarray
    start: np.ndarray

    @property
    def count(self) -> int:
        return self.index.shape[1]


def build_sequences(episode_starts: np.ndarray, seq_len: int) -> Sequences:
    """Cut a [T, N] rollout at episode starts and every ``seq_len`` steps (vectorized).

    ``episode_starts[t, n]`` = step t of env n is the first step of an episode.
    """
    T, N = episode_starts.shape
    t = np.arange(T)[:, None]
    starts = episode_starts.astype(bool) | (t == 0)
    # restart the seq_len counter at every episode start: position since the last start
    last_start = np.maximum.accumulate(np.where(starts, t, 0), axis=0)
    starts |= ((t - last_start) % seq_len) == 0
    # walk env by env (column-major), so each sequence is contiguous in time
    starts_env_major = starts.T.reshape(-1)
    seq_id = np.cumsum(starts_env_major) - 1
    flat_env_major = np.arange(N * T)
    first = np.flatnonzero(starts_env_major)
    pos = flat_env_major - first[seq_id]
    tt, nn_ = flat_env_major % T, flat_env_major // T
    flat_time_major = tt * N + nn_
    S, L = len(first), int(pos.max()) + 1
    index = np.zeros((L, S), dtype=np.int64)
    mask = np.zeros((L, S), dtype=bool)
    index[pos, seq_id] = flat_time_major
    mask[pos, seq_id] = True
    start = (first % T) * N + first // T
    return Sequences(index, mask, start)


@dataclass
class Batch:
    """A rollout flattened to [T * N, ...] tensors (time-major)."""

    obs: torch.Tensor
    priv: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    h0: torch.Tensor | None  # [T*N, hidden] actor state before each step
    c0: torch.Tensor | None
    weights: torch.Tensor  # per-step sample weight (EPOpt selection), 0 or 1
    teacher: torch.Tensor | None = None  # [T*N, act] the scripted controller's action (teacher_coef > 0)


def ppo_losses(new_logp, old_logp, advantages, values, returns, entropy, weights, clip_coef: float):
    """Clipped surrogate, value loss and entropy, averaged over the weighted steps.

        ratio = exp(logp_new - logp_old)
        L_pg  = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)
        L_v   = 0.5 * (V - R)^2
    Returns (pg_loss, v_loss, entropy, approx_kl, clip_fraction).
    """
    w = weights / weights.sum().clamp_min(1.0)
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    pg = -torch.min(ratio * advantages, ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages)
    v = 0.5 * (values - returns).square()
    with torch.no_grad():
        approx_kl = (w * ((ratio - 1) - log_ratio)).sum()  # k3 estimator, always >= 0
        clip_frac = (w * ((ratio - 1).abs() > clip_coef).float()).sum()
    return (w * pg).sum(), (w * v).sum(), (w * entropy).sum(), approx_kl, clip_frac


class PPO:
    def __init__(self, model: ActorCritic, cfg):
        self.model, self.cfg = model, cfg
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, eps=1e-5)
        self.learning_rate = cfg.learning_rate

    def _set_lr(self, lr: float) -> None:
        self.learning_rate = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def update(self, batch: Batch, seqs: Sequences, generator: torch.Generator, *,
               value_only: bool = False, teacher_coef: float = 0.0) -> dict[str, float]:
        """``value_only``: fit the critic alone (the policy loss left out, the learning rate not
        adapted: the actor does not move, so there is no KL to adapt on). ``teacher_coef`` > 0 (and
        ``batch.teacher`` set): add that weight x the mean squared error between the actor's mean
        and the teacher's action to the loss (Schmitt et al. 2018, "Kickstarting deep RL")."""
        teach = teacher_coef > 0 and batch.teacher is not None and not value_only
        cfg, model = self.cfg, self.model
        index = torch.from_numpy(seqs.index)
        mask = torch.from_numpy(seqs.mask)
        start = torch.from_numpy(seqs.start)
        stats = {"pg_loss": 0.0, "v_loss": 0.0, "entropy": 0.0, "kl": 0.0, "clip_frac": 0.0, "teacher_mse": 0.0}
        updates, stopped = 0, 0.0
        kl_stop = getattr(cfg, "kl_stop", 0.0) * cfg.kl_target
        for _ in range(cfg.update_epochs):
            epoch_kl, epoch_updates = 0.0, 0
            order = torch.randperm(seqs.count, generator=generator)
            for mb in order.chunk(cfg.num_minibatches):
                idx, m = index[:, mb], mask[:, mb]  # [L, B]
                flat = idx[m]  # the valid steps, in (l, s) order
                obs = batch.obs[idx]  # [L, B, obs], padding filled with real (ignored) steps
                state = None
                if model.actor.recurrent:
                    s0 = start[mb]
                    state = (batch.h0[s0].unsqueeze(0), batch.c0[s0].unsqueeze(0))
                mean, _ = model.actor(obs, state)
                dist = model.distribution(mean[m])
                new_logp = dist.log_prob(batch.actions[flat]).sum(-1)
                entropy = dist.entropy().sum(-1)
                values = model.value(batch.obs[flat], batch.priv[flat])
                adv = batch.advantages[flat]
                w = batch.weights[flat]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg, v, ent, kl, cf = ppo_losses(new_logp, batch.logp[flat], adv, values, batch.returns[flat],
                                                entropy, w, cfg.clip_coef)
                if kl_stop > 0 and not value_only and kl.item() > kl_stop:
                    stopped = 1.0  # the policy moved too far already: no more steps on this rollout (SB3's target_kl)
                    break
                loss = cfg.vf_coef * v if value_only else pg + cfg.vf_coef * v - cfg.ent_coef * ent
                mse = (mean[m] - batch.teacher[flat]).square().mean() if teach else torch.zeros(())
                if teach:
                    loss = loss + teacher_coef * mse
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                for key, val in zip(stats, (pg, v, ent, kl, cf, mse)):
                    stats[key] += val.item()
                epoch_kl += kl.item()
                epoch_updates += 1
                updates += 1
            if stopped:  # the KL that stopped the update: lower the learning rate for the next one
                if cfg.kl_target > 0:
                    self._set_lr(max(1e-5, self.learning_rate / 1.5))
                break
            if cfg.kl_target > 0 and not value_only:  # adaptive learning rate on the epoch's mean KL
                kl_mean = epoch_kl / epoch_updates
                if kl_mean > 2.0 * cfg.kl_target:
                    self._set_lr(max(1e-5, self.learning_rate / 1.5))
                elif kl_mean < 0.5 * cfg.kl_target:
                    self._set_lr(min(1e-2, self.learning_rate * 1.5))
        return {k: v / max(1, updates) for k, v in stats.items()} | {"learning_rate": self.learning_rate,
                                                              "kl_stopped": stopped}
