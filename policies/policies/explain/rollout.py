"""Batched, seeded episodes of an actor with everything the analyses need recorded.

Episode ``i`` uses env seed ``seed + i`` (the same goal, start pose and sampled dynamics for
every policy and every ablation), runs the task's full length (``terminate_on_success=False``,
as in training) and records, per control step ``t``: the observation the actor saw, its action,
its memory after the step (LSTM: ``h`` then ``c``; MLP: the last hidden layer's activations),
and the task error; per episode: the sampled dynamics vector and success.

:class:`ActorStepper` steps one actor on a batch of envs, optionally with an intervention
(zeroed LSTM units, a zeroed layer) for the ablations.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class Recording:
    """Episodes of one policy: arrays are [episode, step, ...]; steps past ``lengths`` repeat the last."""

    policy: str
    obs: np.ndarray            # [E, T, O] float32
    actions: np.ndarray        # [E, T, A]
    memory: np.ndarray         # [E, T, M]
    distance: np.ndarray       # [E, T] task error after the step
    lengths: np.ndarray        # [E] steps actually run (a physics blow-up ends an episode early)
    success: np.ndarray        # [E] bool
    dynamics: np.ndarray       # [E, P] the sampled dynamics vector
    dynamics_names: tuple[str, ...]
    seeds: np.ndarray
    control_rate_hz: float
    memory_kind: str           # "lstm_hc" | "mlp_last_hidden"

    @property
    def episodes(self) -> int:
        return int(self.obs.shape[0])

    def memory_at(self, step: int) -> np.ndarray:
        """[E, M]: the memory after control step ``step`` (clamped to each episode's last step)."""
        idx = np.minimum(step, self.lengths - 1)
        return self.memory[np.arange(self.episodes), idx]


@dataclass
class Intervention:
    """What to switch off while stepping (ablations). Layer names: :func:`hidden_layer_names`."""

    zero_units: tuple[int, ...] = ()          # LSTM units whose h and c are zeroed after every step
    zero_layers: tuple[str, ...] = ()         # hidden layers whose output is zeroed
    label: str = "intact"


def hidden_layer_names(actor: nn.Module) -> list[str]:
    """The actor's hidden layers, input to output: ``lstm`` then ``head.tanh0``... (MLP: ``body.tanh0``...)."""
    seq = actor.head if actor.recurrent else actor.body
    prefix = "head" if actor.recurrent else "body"
    n_hidden = sum(isinstance(m, nn.Tanh) for m in seq)
    return (["lstm"] if actor.recurrent else []) + [f"{prefix}.tanh{k}" for k in range(n_hidden)]


def mlp_forward(seq: nn.Sequential, x: torch.Tensor, prefix: str,
                zero_layers: tuple[str, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Run an ``mlp()`` Sequential; returns (output, the last hidden layer's activations)."""
    last_hidden = x
    k = 0
    for module in seq:
        x = module(x)
        if isinstance(module, nn.Tanh):
            if f"{prefix}.tanh{k}" in zero_layers:
                x = torch.zeros_like(x)
            last_hidden = x
            k += 1
    return x, last_hidden


class ActorStepper:
    """Deterministic (mean) actions of an actor for a batch, one control step per call."""

    def __init__(self, actor: nn.Module, intervention: Intervention | None = None):
        self.actor = actor.eval()
        self.iv = intervention or Intervention()
        known = set(hidden_layer_names(actor))
        unknown = set(self.iv.zero_layers) - known
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)}; this actor has {sorted(known)}")
        if self.iv.zero_units and not actor.recurrent:
            raise ValueError("zero_units needs an LSTM actor")
        self.state = None

    @property
    def memory_kind(self) -> str:
        return "lstm_hc" if self.actor.recurrent else "mlp_last_hidden"

    def reset(self, batch: int) -> None:
        self.state = self.actor.initial_state(batch)

    @torch.no_grad()
    def step(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """obs [B, O] -> (actions [B, A], memory [B, M])."""
        a = self.actor
        x = a.obs_norm(torch.as_tensor(obs, dtype=torch.float32))
        if a.recurrent:
            out, (h, c) = a.lstm(x.unsqueeze(0), self.state)
            if self.iv.zero_units:
                units = list(self.iv.zero_units)
                h, c = h.clone(), c.clone()
                h[..., units] = 0.0
                c[..., units] = 0.0
            self.state = (h, c)
            feature = torch.zeros_like(h[0]) if "lstm" in self.iv.zero_layers else h[0]
            action, _ = mlp_forward(a.head, feature, "head", self.iv.zero_layers)
            memory = torch.cat([h[0], c[0]], dim=-1)
        else:
            action, memory = mlp_forward(a.body, x, "body", self.iv.zero_layers)
        return action.numpy(), memory.numpy()


@dataclass
class EnvBatch:
    """Seeded envs of one task, built once and reused for every policy and ablation."""

    task: dict
    robot_profile: str
    randomization: str
    envs: list = field(default_factory=list)

    def ensure(self, n: int) -> list:
        from sim_bridge.envs.vector import make_env
        from sim_bridge.tasks import get_task
        env_id = get_task(self.task["name"]).env_id
        while len(self.envs) < n:
            self.envs.append(make_env(env_id, task=self.task["name"], **dict(self.task.get("settings") or {}),
                                      profile=self.robot_profile, randomization=self.randomization,
                                      terminate_on_success=False))
        return self.envs[:n]


def record_episodes(stepper: ActorStepper, envs: EnvBatch, *, episodes: int, seed: int = 20_000,
                    batch: int = 50, policy: str = "", progress=None) -> Recording:
    """Run ``episodes`` seeded episodes in lockstep batches and record them."""
    chunks = [np.arange(s, min(s + batch, episodes)) for s in range(0, episodes, batch)]
    parts = []
    for idx in chunks:
        parts.append(_run_chunk(stepper, envs.ensure(len(idx)), seed + idx))
        if progress is not None:
            progress(len(idx))
    first_env = envs.envs[0]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return Recording(policy=policy, obs=cat["obs"], actions=cat["actions"], memory=cat["memory"],
                     distance=cat["distance"], lengths=cat["lengths"], success=cat["success"],
                     dynamics=cat["dynamics"], dynamics_names=tuple(first_env.dynamics_names),
                     seeds=seed + np.arange(episodes), control_rate_hz=float(first_env.profile.control_rate_hz),
                     memory_kind=stepper.memory_kind)


def _run_chunk(stepper: ActorStepper, envs: list, seeds: np.ndarray) -> dict:
    b = len(seeds)
    first = [env.reset(seed=int(s)) for env, s in zip(envs, seeds)]
    obs = np.stack([o for o, _ in first]).astype(np.float32)
    dynamics = np.stack([np.asarray(i["dynamics"], np.float32) for _, i in first])
    steps = int(envs[0].max_episode_steps)
    stepper.reset(b)
    rec_obs, rec_act, rec_mem, rec_dist = [], [], [], []
    lengths = np.full(b, steps)
    success = np.zeros(b, bool)
    done = np.zeros(b, bool)
    dist = np.zeros(b, np.float32)
    for t in range(steps):
        action, memory = stepper.step(obs)
        rec_obs.append(obs.copy())
        rec_act.append(action)
        rec_mem.append(memory)
        for i, env in enumerate(envs):
            if done[i]:
                continue
            o, _, terminated, truncated, info = env.step(action[i])
            obs[i] = o
            dist[i] = info["distance"] if np.isfinite(info["distance"]) else dist[i]
            success[i] = bool(info["is_success"])
            if terminated or truncated:
                done[i] = True
                lengths[i] = t + 1
        rec_dist.append(dist.copy())
    out = {"obs": np.stack(rec_obs, 1), "actions": np.stack(rec_act, 1), "memory": np.stack(rec_mem, 1),
           "distance": np.stack(rec_dist, 1), "lengths": lengths, "success": success, "dynamics": dynamics}
    for i in range(b):  # past an early end, repeat the last valid step
        n = lengths[i]
        for key in ("obs", "actions", "memory", "distance"):
            out[key][i, n:] = out[key][i, n - 1]
    return out
