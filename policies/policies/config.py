"""Training configuration: one typed dataclass, one docstring per field (``sim2real train --help``
shows them: the app builds the command line from this dataclass with tyro)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Annotated, Literal

import tyro


@dataclass
class TrainConfig:
    """LSTM PPO under dynamics randomization, for one task of the registry (sim_bridge.tasks)."""

    name: str = "reach_lstm"
    """run / policy name (the export writes policies/zoo/NAME)"""
    task: str = "reach"
    """task name from the registry (sim_bridge.tasks; shipped: reach, push); its settings go in env_kwargs"""
    seed: int = 0
    """seed for torch, numpy and the env resets"""
    architecture: str = "lstm"
    """actor network: 'lstm' (recurrent), 'mlp' (feed-forward) or 'mlp_history' (feed-forward over the last `history` observations)"""
    history: int = 8
    """mlp_history: observations stacked into the actor's input (the current one included)"""
    randomization: str = "default"
    """dynamics randomization: a shipped name or a YAML path; "default" is the task's default (reach: default, push: push_default), "none" = nominal physics"""
    robot_profile: Annotated[str, tyro.conf.arg(aliases=("--robot",))] = "panda_like"
    """robot profile: shipped name, an imported robot's name (robots/NAME) or a YAML path"""
    init_from: str = ""
    """fine-tune: start from the weights of this checkpoint (.pt; same architecture and privileged inputs); optimizer and counters start fresh"""
    total_env_steps: int = 3_000_000
    """stop after this many environment steps"""
    num_envs: int = 32
    """parallel environments"""
    num_workers: int = 2
    """env worker processes (0 = step the envs in the training process)"""
    backend: Literal["local", "ray"] = "local"
    """where the env workers run: 'local' (worker processes on this machine) or 'ray' (Ray actors on a Ray cluster; pip install -r requirements/ray.txt); the same seed, num_envs and num_workers give the same batches on both"""
    ray_address: str = ""
    """--backend ray: the cluster to join (host:port of the head node); empty: RAY_ADDRESS if set, else a Ray instance started on this machine"""
    ray_max_restarts: int = 3
    """--backend ray: deaths of one env worker a run survives (restart + replay of the iteration); then it stops with an error"""
    ray_compiled_graph: bool = False
    """--backend ray: drive the env actors on this machine through one Ray compiled graph per step; its actors and the driver busy-wait (a core each), so only for machines with a core to spare per actor and for the driver"""
    num_steps: int = 200
    """steps per env per iteration; envs are reset at every iteration start (one full episode fits)"""
    seq_len: int = 50
    """length of the padded sequences the LSTM is trained on (truncated BPTT)"""
    hidden: int = 64
    """LSTM (or first MLP layer) width of the actor"""
    critic_hidden: tuple[int, ...] = (128, 128)
    """critic MLP widths"""
    init_log_std: float = -1.0
    """initial log standard deviation of the Gaussian policy"""
    final_action_std: float = 0.0
    """anneal the Gaussian's standard deviation instead of learning it: each action dimension's log-std moves linearly from its value at the run's start (init_log_std, or the --init-from checkpoint's) to log(final_action_std) at the run's last iteration (by env steps toward total_env_steps), so the sampled policy PPO optimises converges on the mean an exported policy acts with. 0 = off (the std is learned)"""
    anneal_start_env_steps: int = 0
    """with final_action_std: PPO learns the std until this many env steps, then the schedule takes it from its value there to final_action_std (0: annealed from the run's start). Why: annealed over a whole run from scratch, the std shrank while the policy was still learning to push and PPO's signal shrank with it (docs/push_training.md)"""
    learning_rate: float = 1e-3
    """Adam learning rate (adapted on KL when kl_target > 0)"""
    kl_target: float = 0.01
    """desired KL per update for the adaptive learning rate (0: fixed learning rate)"""
    kl_stop: float = 0.0
    """stop an update's remaining minibatches once one's KL exceeds kl_stop x kl_target (0: off; guards a fine-tuned actor against one huge first step)"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    update_epochs: int = 5
    """passes over each rollout"""
    num_minibatches: int = 4
    """minibatches per epoch (each a set of whole sequences)"""
    clip_coef: float = 0.2
    """PPO clipping of the probability ratio"""
    vf_coef: float = 0.5
    """value loss weight"""
    ent_coef: float = 0.0
    """entropy bonus weight"""
    max_grad_norm: float = 1.0
    """gradient clipping (global norm)"""
    epopt_epsilon: float = 1.0
    """EPOpt: train on the worst epsilon-fraction of episodes by return (1.0 = off)"""
    epopt_warmup_iterations: int = 20
    """EPOpt: iterations with epsilon = 1 before the worst-fraction training starts"""
    torch_threads: int = 2
    """torch intra-op threads for the update"""
    checkpoint_every: int = 10
    """iterations between checkpoints (checkpoints/latest.pt)"""
    snapshot_every: int = 0
    """iterations between kept snapshots (checkpoints/iter_NNNNN.pt, to evaluate or export later; 0 = off)"""
    best_window: int = 10
    """checkpoints/best.pt: saved when the training success rate over the last best_window iterations (episode-weighted) beats the best so far (0 = off)"""
    eval_episodes: int = 200
    """episodes of the final evaluation (nominal and randomized)"""
    kickstart_rounds: int = 0
    """kickstart: DAgger rounds from the task's scripted controller before PPO (one rollout of num_envs x num_steps each; 0 = off; policies/imitation.py)"""
    kickstart_epochs: int = 20
    """kickstart: passes over the aggregated data after each round"""
    kickstart_learning_rate: float = 1e-3
    """kickstart: Adam learning rate of the regression"""
    critic_warmup_iterations: int = 0
    """PPO iterations at the start that fit only the critic (the actor frozen; for a kickstarted actor)"""
    teacher_coef: float = 0.0
    """teacher: weight of the mean squared error between the actor's mean action and the task's scripted controller's action on every rollout step, added to PPO's loss (kickstarting; 0 = off)"""
    teacher_decay_iterations: int = 0
    """teacher: the weight falls linearly to teacher_min_coef over this many PPO iterations (0 = it stays)"""
    teacher_min_coef: float = 0.0
    """teacher: the floor the decaying weight stops at (PPO alone can unlearn what the teacher taught; a floor keeps a pull toward it)"""
    mean_action_envs: int = 0
    """envs (the last ones) that take the actor's mean action in the rollouts, as an exported policy does: their steps feed only the teacher term (no policy gradient, no value target), so the actor also learns the states its own deterministic actions reach; their success is logged (mean_action_success) and picks best.pt. 0 = off"""
    mean_prefix_envs: int = 0
    """envs (just before the mean-action ones) that act with the mean for a random first part of each episode (uniform over 0..mean_prefix_max_steps steps, drawn per episode) and sample from then on: PPO learns from the sampled part only, which starts in the states the deterministic policy reaches (where an exported policy stalls, noisy rollouts never go); the prefix feeds only the teacher term. Their episodes count with the sampled envs' success. 0 = off"""
    mean_prefix_max_steps: int = 300
    """mean_prefix_envs: the longest mean-action prefix of an episode"""
    assist_start_prob: float = 0.0
    """assisted starts (tasks with Task.assist_target; Push: the pusher starts behind the puck): chance per training episode at the start (0 = off; evaluation never uses them)"""
    assist_episodes: int = 0
    """assisted starts: their chance falls linearly to 0 over this many episodes of each env (one per iteration when num_steps is the episode length; 0 = it stays)"""
    observe_prev_action: bool = True
    """the actor observes its previous action (the task setting observe_prev_action; off: the signal is left out, size 0). Push's randomized LSTM trains without it: with it, the exported mean action stalled at the puck (docs/push_training.md)"""
    env_kwargs: dict = field(default_factory=lambda: {"terminate_on_success": False})
    """keyword arguments of the env and settings of the task (training keeps episodes running at the goal)"""

    def validate(self) -> None:
        from sim_bridge.tasks import get_task  # noqa: PLC0415

        get_task(self.task)  # UnknownTaskError names the known tasks
        if self.architecture not in ("lstm", "mlp", "mlp_history"):
            raise ValueError(f"architecture must be 'lstm', 'mlp' or 'mlp_history', got {self.architecture!r}")
        if self.architecture == "mlp_history" and self.history < 2:
            raise ValueError(f"history must be >= 2 for mlp_history, got {self.history}")
        for name in ("kickstart_rounds", "critic_warmup_iterations"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("total_env_steps", "num_envs", "num_steps", "seq_len", "hidden", "update_epochs",
                     "num_minibatches", "kickstart_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.assist_start_prob <= 1.0 or self.assist_episodes < 0:
            raise ValueError(f"assist_start_prob must be in [0, 1] and assist_episodes >= 0, "
                             f"got {self.assist_start_prob} and {self.assist_episodes}")
        if self.teacher_coef < 0 or self.teacher_decay_iterations < 0:
            raise ValueError(f"teacher_coef and teacher_decay_iterations must be >= 0, "
                             f"got {self.teacher_coef} and {self.teacher_decay_iterations}")
        if not 0 <= self.teacher_min_coef <= self.teacher_coef:
            raise ValueError(f"teacher_min_coef must be in [0, teacher_coef={self.teacher_coef}], "
                             f"got {self.teacher_min_coef}")
        if not 0 <= self.mean_action_envs < self.num_envs:
            raise ValueError(f"mean_action_envs must be in [0, num_envs={self.num_envs}), got {self.mean_action_envs}")
        if self.mean_prefix_envs < 0 or self.mean_action_envs + self.mean_prefix_envs >= self.num_envs:
            raise ValueError(f"mean_prefix_envs must be >= 0 and leave envs that sample from the start: "
                             f"mean_action_envs + mean_prefix_envs < num_envs={self.num_envs}, "
                             f"got {self.mean_action_envs} + {self.mean_prefix_envs}")
        if self.mean_prefix_max_steps < 1:
            raise ValueError(f"mean_prefix_max_steps must be >= 1, got {self.mean_prefix_max_steps}")
        for name in ("snapshot_every", "best_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.final_action_std >= 0 and self.final_action_std < float("inf")):
            raise ValueError(f"final_action_std must be >= 0 and finite (0: the std is learned), got {self.final_action_std}")
        if self.anneal_start_env_steps < 0:
            raise ValueError(f"anneal_start_env_steps must be >= 0, got {self.anneal_start_env_steps}")
        if self.anneal_start_env_steps and not self.final_action_std:
            raise ValueError("anneal_start_env_steps needs final_action_std > 0 (the std to anneal to)")
        if self.kl_stop < 0:
            raise ValueError(f"kl_stop must be >= 0, got {self.kl_stop}")
        if not 0 < self.epopt_epsilon <= 1:
            raise ValueError(f"epopt_epsilon must be in (0, 1], got {self.epopt_epsilon}")
        if self.num_minibatches > self.num_envs * self.num_steps // self.seq_len:
            raise ValueError("num_minibatches exceeds the number of sequences per rollout")

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}")
        values = dict(data)
        if "critic_hidden" in values:
            values["critic_hidden"] = tuple(values["critic_hidden"])
        return cls(**values)
