"""Kickstarting PPO from the task's scripted controller: DAgger on the training envs.

Why: on Push, PPO from a random policy spends millions of steps before its pushes move the
puck toward the goal (two runs on the 2-core machine: 0% and 3-9% training success after
2.3M and 6.6M env steps). The task ships a scripted pusher (IK on the nominal model,
:class:`sim_bridge.oracle.PushOracle`) that sees what a policy sees, so its actions are
labels a policy can learn from: that is what ``kickstart_rounds`` uses before PPO.

DAgger (Ross, Gordon and Bagnell 2011, "A reduction of imitation learning ... to no-regret
online learning"): in round 0 the expert drives every episode; in round k an episode is
driven by the expert with probability ``beta_k = 0.5 ** k`` and by the student (the actor's
mean action) otherwise, and the expert labels every state either way, so the student also
learns what to do in the states its own mistakes lead to. The data of all rounds is kept
and the actor is fitted after each round: mean squared error between its mean action and
the expert's action, on whole episodes (an LSTM sees each episode from its start; the
``mlp_history`` actor its growing history), the observation normalizer updated from the
data first. The action's log-std and the critic are left to PPO; ``critic_warmup_iterations``
then fits the critic with the actor frozen, so the first policy updates do not follow the
advantages of a random value function. Steps and time of the kickstart count in the run's
``env_steps`` and ``wall_time_s``.

After the kickstart, ``teacher_coef`` keeps the same controller as a teacher during PPO
(Schmitt et al. 2018, "Kickstarting deep reinforcement learning"): every rollout step is
labelled with its action (:func:`make_experts`), and the weight x the mean squared error
between the actor's mean and the label is added to PPO's loss, the weight falling linearly to
0 over ``teacher_decay_iterations``. Why: on Push, PPO alone took a kickstarted actor from
37% to 22% training success within 20 iterations (the critic warm-up had run): its first
updates follow noisy advantages away from what the labels taught, and nothing pulls it back.

No library fits: imitation libraries (e.g. ``imitation``'s DAgger) expect SB3 policies and
gymnasium vector envs; this runs on the project's own vector env, actor and recurrent
batching, which PPO continues from.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from policies.ppo import build_sequences


@dataclass
class KickstartRound:
    """What one DAgger round did (a row of ``kickstart.csv``)."""

    round: int
    beta: float
    episodes: int
    expert_episodes: int
    expert_success: float    # success rate of the episodes the expert drove (nan if none)
    student_success: float   # ... of the episodes the student drove (nan if none)
    samples: int             # steps in the aggregated data set after this round
    loss: float              # mean squared error on the data set after fitting
    env_steps: int
    wall_time_s: float

    def to_dict(self) -> dict:
        return asdict(self)


class Experts:
    """One scripted controller per env, fed the env's observation split into signals."""

    def __init__(self, task, profile, num_envs: int, action, layout):
        first = task.scripted_controller(profile, action)
        if first is None:
            raise ValueError(f"task '{task.name}' has no scripted controller to kickstart from "
                             "(Task.scripted_controller); set kickstart_rounds to 0")
        self.experts = [first] + [task.scripted_controller(profile, action) for _ in range(num_envs - 1)]
        self.slices, start = {}, 0
        for signal in layout:
            self.slices[signal.name] = slice(start, start + signal.size)
            start += signal.size
        self.size = start

    def reset(self, envs) -> None:
        for n in envs:
            self.experts[n].reset()

    def act(self, obs: np.ndarray) -> np.ndarray:
        if obs.shape[1] != self.size:
            raise ValueError(f"observation of {obs.shape[1]} values, the task's layout has {self.size}")
        # one call for all envs where the controller keeps no state between steps (Push with its
        # observed command: 232 vs 928 us for 12 envs, the same labels); else one controller per env
        act_batch = getattr(self.experts[0], "act_batch", None)  # a plug-in task's controller may lack it
        batch = None if act_batch is None else act_batch({k: obs[:, s] for k, s in self.slices.items()})
        if batch is not None:
            return batch
        return np.stack([e.act({k: o[s] for k, s in self.slices.items()}) for e, o in zip(self.experts, obs)])


def fit_actor(actor, obs: torch.Tensor, labels: torch.Tensor, starts: np.ndarray, *, epochs: int,
              minibatch_sequences: int, learning_rate: float, generator: torch.Generator) -> float:
    """Regress the actor's mean action on ``labels`` over whole episodes; returns the final
    mean squared error over the data set. ``obs``/``labels`` [T*N, ...] time-major per block,
    ``starts`` [T, N] episode starts (every sequence starts at one: rollouts start with a reset)."""
    T = starts.shape[0]
    seqs = build_sequences(starts, T)   # cut only at episode starts
    index, mask = torch.from_numpy(seqs.index), torch.from_numpy(seqs.mask)
    params = [p for name, p in actor.named_parameters() if name != "log_std"]
    optimizer = torch.optim.Adam(params, lr=learning_rate)

    def loss_of(cols) -> torch.Tensor:
        idx, m = index[:, cols], mask[:, cols]
        mean, _ = actor(obs[idx], actor.initial_state(len(cols)))
        return (mean[m] - labels[idx[m]]).square().mean()

    for _ in range(epochs):
        for cols in torch.randperm(seqs.count, generator=generator).split(minibatch_sequences):
            loss = loss_of(cols)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
    with torch.no_grad():
        return float(loss_of(torch.arange(seqs.count)))


def make_experts(cfg) -> Experts:
    """The task's scripted controller for each of the run's ``num_envs`` envs."""
    from sim_bridge.profile import load_profile

    from policies.export import trained_action, trained_task

    task, profile, action = trained_task(cfg), load_profile(cfg.robot_profile), trained_action(cfg)
    return Experts(task, profile, cfg.num_envs, action, task.observation_layout(profile.num_joints, action))


def kickstart(trainer, *, on_round=None) -> list[KickstartRound]:
    """Run ``cfg.kickstart_rounds`` DAgger rounds on the trainer's envs and actor (see the module
    docstring). Advances ``trainer.env_steps`` and ``trainer.wall_time_s``."""
    cfg, model, venv = trainer.cfg, trainer.model, trainer.venv
    actor = model.actor
    T, N = cfg.num_steps, cfg.num_envs
    experts = make_experts(cfg)
    rng = np.random.default_rng(cfg.seed + 17)
    generator = torch.Generator().manual_seed(cfg.seed + 23)
    data_obs, data_labels, data_starts = [], [], []
    rounds: list[KickstartRound] = []
    for k in range(cfg.kickstart_rounds):
        t0 = time.perf_counter()
        beta = 0.5 ** k
        obs, info = venv.reset(seed=2_000_000_011 + cfg.seed * 10_007 + k * N)  # apart from PPO's seeds
        priv = info["privileged"]
        experts.reset(range(N))
        state = actor.initial_state(N)
        expert_drives = rng.random(N) < beta
        buf_obs = np.zeros((T, N, obs.shape[1]), np.float32)
        buf_priv = np.zeros((T, N, priv.shape[1]), np.float32)
        buf_lab = np.zeros((T, N, venv.single_action_space.shape[0]), np.float32)
        starts = np.zeros((T, N), bool)
        starts[0] = True
        outcomes = {True: [], False: []}
        for t in range(T):
            labels = experts.act(obs)
            with torch.no_grad():
                mean, state = actor(torch.from_numpy(obs).unsqueeze(0), state)
            action = np.where(expert_drives[:, None], labels, np.clip(mean[0].numpy(), -1.0, 1.0))
            buf_obs[t], buf_priv[t], buf_lab[t] = obs, priv, labels
            obs, _, term, trunc, info = venv.step(action.astype(np.float32))
            priv = info["privileged"]
            done = term | trunc
            for n in np.flatnonzero(done):
                outcomes[bool(expert_drives[n])].append(bool(info["is_success"][n]))
                expert_drives[n] = rng.random() < beta
            experts.reset(np.flatnonzero(done))
            if t + 1 < T:
                starts[t + 1] = done
            if actor.recurrent:
                keep = torch.from_numpy(~done).float().view(1, N, 1)
                state = (state[0] * keep, state[1] * keep)
        data_obs.append(buf_obs)
        data_labels.append(buf_lab)
        data_starts.append(starts)
        new_obs = torch.from_numpy(buf_obs.reshape(T * N, -1))
        model.update_normalizers(new_obs, torch.from_numpy(buf_priv.reshape(T * N, -1)))
        # the aggregated data as one [T, N * rounds] rollout (each round's envs as more columns)
        all_obs = np.concatenate(data_obs, axis=1)
        all_lab = np.concatenate(data_labels, axis=1)
        all_starts = np.concatenate(data_starts, axis=1)
        flat = lambda x: torch.from_numpy(np.ascontiguousarray(x.reshape(T * x.shape[1], *x.shape[2:])))  # noqa: E731
        torch.set_num_threads(cfg.torch_threads)
        loss = fit_actor(actor, flat(all_obs), flat(all_lab), all_starts, epochs=cfg.kickstart_epochs,
                         minibatch_sequences=max(1, N // 2), learning_rate=cfg.kickstart_learning_rate,
                         generator=generator)
        torch.set_num_threads(1)
        trainer.env_steps += T * N
        trainer.wall_time_s += time.perf_counter() - t0
        rate = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
        row = KickstartRound(k, beta, len(outcomes[True]) + len(outcomes[False]), len(outcomes[True]),
                             rate(outcomes[True]), rate(outcomes[False]), int(all_obs.shape[0] * all_obs.shape[1]),
                             loss, trainer.env_steps, round(trainer.wall_time_s, 2))
        rounds.append(row)
        if on_round is not None:
            on_round(row)
    return rounds
