"""The PPO runner: rollouts on the vector env, updates, logging, checkpoints.

Every iteration starts by resetting all envs (seeded by ``seed`` and the iteration), so
an iteration boundary holds no env state: a checkpoint (model, optimizer, normalizers,
learning rate, random generators, counters) resumes a run exactly. ``num_steps``
defaults to the episode length, so each env completes at least one whole episode per
iteration; an episode still running at the end is bootstrapped with the critic.
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from policies.config import TrainConfig
from policies.model import ActorCritic
from policies.ppo import PPO, Batch, build_sequences, compute_gae

CHECKPOINT_VERSION = 1


@dataclass
class RolloutStats:
    episodes: int
    mean_return: float
    success_rate: float
    mean_length: float
    mean_action_episodes: int = 0       # episodes of the envs acting with the mean (cfg.mean_action_envs)
    mean_action_success: float = float("nan")


def assist_kwargs(cfg: TrainConfig, episodes_done: int = 0) -> dict:
    """The env options of the assisted starts for envs that have already run ``episodes_done``
    episodes (a resumed run): the same linear schedule, continued."""
    if cfg.assist_start_prob <= 0:
        return {}
    if cfg.assist_episodes == 0:
        return {"assist_start_prob": cfg.assist_start_prob, "assist_episodes": 0}
    left = cfg.assist_episodes - episodes_done
    if left <= 0:
        return {}
    return {"assist_start_prob": cfg.assist_start_prob * left / cfg.assist_episodes, "assist_episodes": left}


def make_vector_env(cfg: TrainConfig, episodes_done: int = 0):
    """The training envs: worker processes (``backend='local'``) or Ray actors (``'ray'``), same batches.
    ``episodes_done``: episodes each env has run before (a resumed run; the assisted starts' schedule)."""
    from sim_bridge.envs.vector import VectorTaskEnv

    from sim_bridge.tasks import get_task

    kwargs = {"profile": cfg.robot_profile, "randomization": cfg.randomization, **cfg.env_kwargs,
              **assist_kwargs(cfg, episodes_done)}
    env_id = get_task(cfg.task).env_id
    if cfg.backend == "ray":
        from policies.ray_backend import RayVectorEnv

        return RayVectorEnv(cfg.num_envs, cfg.num_workers, env_id=env_id, env_kwargs=kwargs,
                            address=cfg.ray_address or None, max_restarts=cfg.ray_max_restarts,
                            compiled_graph=cfg.ray_compiled_graph)
    if cfg.backend != "local":
        raise ValueError(f"backend must be 'local' or 'ray', got {cfg.backend!r}")
    return VectorTaskEnv(cfg.num_envs, cfg.num_workers, env_id=env_id, env_kwargs=kwargs)


def record_action(cfg: TrainConfig) -> None:
    """Write the action the run uses into ``cfg.env_kwargs`` (``action_type``, and ``ee_action``
    or ``action_scale_rad``; ``observe_prev_action`` when off) when the config leaves it to the task's default, so the checkpoint,
    a resumed run and the export keep it even if a task's default changes later."""
    from policies.export import trained_action
    from sim_bridge.actions import env_kwargs_of

    if not cfg.observe_prev_action:   # a task setting: it shapes the observation layout
        cfg.env_kwargs = {**cfg.env_kwargs, "observe_prev_action": False}
    cfg.env_kwargs = {**env_kwargs_of(trained_action(cfg).describe()), **cfg.env_kwargs}


def build_model(cfg: TrainConfig, obs_size: int, act_size: int, priv_size: int) -> ActorCritic:
    return ActorCritic(obs_size, act_size, priv_size, architecture=cfg.architecture, hidden=cfg.hidden,
                       critic_hidden=cfg.critic_hidden, init_log_std=cfg.init_log_std, history=cfg.history)


class Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: Path, *, quiet: bool = False):
        cfg.validate()
        record_action(cfg)
        self.cfg, self.out_dir, self.quiet = cfg, Path(out_dir), quiet
        torch.manual_seed(cfg.seed)
        self.venv = make_vector_env(cfg)
        obs_size = self.venv.single_observation_space.shape[0]
        act_size = self.venv.single_action_space.shape[0]
        self.priv_names = self.venv.privileged_names
        self.model = build_model(cfg, obs_size, act_size, len(self.priv_names))
        if cfg.init_from:
            try:
                self._init_weights(Path(cfg.init_from))
            except BaseException:
                self.venv.close()
                raise
        # cfg.final_action_std: the std follows a schedule (from the first iteration, or from
        # cfg.anneal_start_env_steps on), not the optimiser; std_start is None until _anneal_std
        # takes it over
        self.std_start = None
        self.ppo = PPO(self.model, cfg)
        self.sample_gen = torch.Generator().manual_seed(cfg.seed)
        self.batch_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.iteration = 0
        self.env_steps = 0
        self.wall_time_s = 0.0
        self.kickstarted = False  # the kickstart (cfg.kickstart_rounds) has run
        self._experts = None  # the teacher's scripted controllers (cfg.teacher_coef > 0)
        self.history: list[dict] = []
        self._update_times: list[float] = []   # this process's policy updates (contended_update)
        self._contended_warnings = 0
        self.best_success = -1.0  # best windowed training success so far (checkpoints/best.pt)

    def _init_weights(self, path: Path) -> None:
        """Fine-tuning: the model weights (and observation normalizer) of another run."""
        state = load_checkpoint_file(path)
        theirs, ours = list(state.get("privileged_names") or []), list(self.priv_names)
        if theirs != ours:
            diff = sorted(set(theirs) ^ set(ours)) or "same names, other order"
            raise ValueError(f"{path}: trained with other privileged inputs than this randomization gives the "
                             f"critic ({len(theirs)} vs {len(ours)}; differing: {diff})")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ValueError(f"{path}: its model does not fit this configuration (architecture, hidden sizes): "
                             f"{first}") from None

    # --- checkpoints ------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        return {"checkpoint_version": CHECKPOINT_VERSION, "config": self.cfg.to_dict(),
                "model": self.model.state_dict(), "optimizer": self.ppo.optimizer.state_dict(),
                "learning_rate": self.ppo.learning_rate, "iteration": self.iteration,
                "env_steps": self.env_steps, "wall_time_s": self.wall_time_s,
                "sample_gen": self.sample_gen.get_state(), "batch_gen": self.batch_gen.get_state(),
                "privileged_names": list(self.priv_names), "kickstarted": self.kickstarted,
                "best_success": self.best_success, "std_start": self.std_start}

    def save_checkpoint(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.checkpoint(), tmp)
        tmp.replace(path)

    def load_checkpoint(self, path: Path) -> None:
        state = load_checkpoint_file(path)
        self.model.load_state_dict(state["model"])
        self.ppo.optimizer.load_state_dict(state["optimizer"])
        self.ppo._set_lr(state["learning_rate"])
        self.iteration, self.env_steps = state["iteration"], state["env_steps"]
        self.wall_time_s = state["wall_time_s"]
        self.sample_gen.set_state(state["sample_gen"])
        self.batch_gen.set_state(state["batch_gen"])
        self.kickstarted = bool(state.get("kickstarted", False))
        self.best_success = float(state.get("best_success", -1.0))
        if self.cfg.final_action_std > 0 and state.get("std_start") is not None:
            self._freeze_std(state["std_start"])   # the schedule continues from the run's own start
        if self.cfg.assist_start_prob > 0 and self.iteration > 0:
            # the envs continue the assisted starts' schedule where the run stopped (one
            # episode per env and iteration: an iteration starts every env's episode)
            self.venv.close()
            self.venv = make_vector_env(self.cfg, episodes_done=self.iteration)

    # --- rollouts ---------------------------------------------------------------------------
    @torch.no_grad()
    def collect(self) -> tuple[Batch, np.ndarray, RolloutStats]:
        cfg, model, venv = self.cfg, self.model, self.venv
        T, N = cfg.num_steps, cfg.num_envs
        obs, info = venv.reset(seed=cfg.seed * 1_000_003 + self.iteration * N)
        priv = info["privileged"]
        O, P = obs.shape[1], priv.shape[1]
        A = venv.single_action_space.shape[0]
        buf_obs = np.zeros((T, N, O), np.float32)
        buf_priv = np.zeros((T, N, P), np.float32)
        buf_act = np.zeros((T, N, A), np.float32)
        buf_logp = np.zeros((T, N), np.float32)
        buf_val = np.zeros((T, N), np.float32)
        buf_rew = np.zeros((T, N), np.float32)
        buf_done = np.zeros((T, N), np.float32)
        starts = np.zeros((T, N), bool)
        starts[0] = True
        recurrent = model.actor.recurrent
        H = model.actor.hidden
        buf_h = np.zeros((T, N, H), np.float32) if recurrent else None
        buf_c = np.zeros((T, N, H), np.float32) if recurrent else None
        state = model.actor.initial_state(N)
        ep_return, ep_len = np.zeros(N), np.zeros(N, int)
        done_returns, done_success, done_lengths = [], [], []
        mean_envs = np.arange(N) >= N - cfg.mean_action_envs   # the last ones act with the mean
        # the envs before them act with the mean for a random first part of each episode, then sample
        prefix_envs = ~mean_envs & (np.arange(N) >= N - cfg.mean_action_envs - cfg.mean_prefix_envs)
        prefix_gen = np.random.default_rng([cfg.seed, self.iteration, 17])
        prefix_left = np.where(prefix_envs, prefix_gen.integers(0, cfg.mean_prefix_max_steps + 1, N), 0)
        acted_mean = np.zeros((T, N), bool)
        mean_success = []
        teacher = self._teacher() if self.teacher_coef() > 0 else None
        buf_teach = np.zeros((T, N, A), np.float32) if teacher is not None else None
        if teacher is not None:
            teacher.reset(range(N))
        for t in range(T):
            obs_t = torch.from_numpy(obs)
            if teacher is not None:
                buf_teach[t] = teacher.act(obs)
            if recurrent:
                buf_h[t], buf_c[t] = state[0][0].numpy(), state[1][0].numpy()
            mean, next_state = model.actor.step(obs_t, state)
            action = mean + model.actor.log_std.exp() * torch.randn(mean.shape, generator=self.sample_gen)
            acted_mean[t] = mean_envs | (prefix_left > 0)
            if acted_mean[t].any():
                rows = torch.from_numpy(acted_mean[t])
                action[rows] = mean[rows]
            prefix_left = np.maximum(prefix_left - 1, 0)
            buf_logp[t] = model.log_prob(action, mean).numpy()
            buf_val[t] = model.value(obs_t, torch.from_numpy(priv)).numpy()
            buf_obs[t], buf_priv[t], buf_act[t] = obs, priv, action.numpy()
            obs, reward, term, trunc, info = venv.step(buf_act[t])
            done = term | trunc
            bootstrap = trunc & ~term
            if bootstrap.any():  # a time limit is not a terminal state: add gamma * V(s_final)
                v_final = model.value(torch.from_numpy(info["final_observation"][bootstrap]),
                                      torch.from_numpy(info["final_privileged"][bootstrap])).numpy()
                reward = reward.copy()
                reward[bootstrap] += cfg.gamma * v_final
            buf_rew[t], buf_done[t] = reward, done
            priv = info["privileged"]
            ep_return += info_reward(reward, bootstrap, info, cfg.gamma, v_final if bootstrap.any() else None)
            ep_len += 1
            for n in np.flatnonzero(done):
                if mean_envs[n]:
                    mean_success.append(bool(info["is_success"][n]))
                else:
                    done_returns.append(ep_return[n])
                    done_success.append(bool(info["is_success"][n]))
                    done_lengths.append(ep_len[n])
                ep_return[n], ep_len[n] = 0.0, 0
            if t + 1 < T:
                starts[t + 1] = done
            if teacher is not None:
                teacher.reset(np.flatnonzero(done))
            restart = np.flatnonzero(done & prefix_envs)
            prefix_left[restart] = prefix_gen.integers(0, cfg.mean_prefix_max_steps + 1, len(restart))
            if recurrent:
                keep = torch.from_numpy(~done).float().view(1, N, 1)
                state = (next_state[0] * keep, next_state[1] * keep)
        last_val = model.value(torch.from_numpy(obs), torch.from_numpy(priv)).numpy()
        adv, ret = compute_gae(buf_rew, buf_val, buf_done, last_val, cfg.gamma, cfg.gae_lambda)
        weights = self._epopt_weights(buf_rew, starts, buf_done)
        weights[acted_mean] = 0.0   # mean actions: no policy gradient, no value target; the teacher term only
        flat = lambda x: torch.from_numpy(np.ascontiguousarray(x.reshape(T * N, *x.shape[2:])))  # noqa: E731
        batch = Batch(flat(buf_obs), flat(buf_priv), flat(buf_act), flat(buf_logp), flat(adv), flat(ret),
                      flat(buf_h) if recurrent else None, flat(buf_c) if recurrent else None, flat(weights),
                      flat(buf_teach) if teacher is not None else None)
        stats = RolloutStats(len(done_returns), float(np.mean(done_returns)) if done_returns else float("nan"),
                             float(np.mean(done_success)) if done_success else float("nan"),
                             float(np.mean(done_lengths)) if done_lengths else float("nan"),
                             len(mean_success), float(np.mean(mean_success)) if mean_success else float("nan"))
        return batch, starts, stats

    def teacher_coef(self) -> float:
        """The teacher's weight at this iteration: ``teacher_coef`` falling linearly to
        ``teacher_min_coef`` over ``teacher_decay_iterations`` after the critic's warm-up."""
        cfg = self.cfg
        if cfg.teacher_decay_iterations <= 0:
            return cfg.teacher_coef
        done = max(0, self.iteration - cfg.critic_warmup_iterations)
        left = max(0.0, 1.0 - done / cfg.teacher_decay_iterations)
        return cfg.teacher_min_coef + (cfg.teacher_coef - cfg.teacher_min_coef) * left

    def _teacher(self):
        """The task's scripted controller per env (built on first use; policies/imitation.py)."""
        if self._experts is None:
            from policies.imitation import make_experts  # noqa: PLC0415
            self._experts = make_experts(self.cfg)
        return self._experts

    def _epopt_weights(self, rewards: np.ndarray, starts: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """EPOpt (Rajeswaran 2017): after warm-up, keep only the worst epsilon-fraction of the
        completed episodes by return (a CVaR objective); other steps get weight 0."""
        cfg = self.cfg
        if cfg.epopt_epsilon >= 1.0 or self.iteration < cfg.epopt_warmup_iterations:
            return np.ones_like(rewards)
        T, N = rewards.shape
        ep_id = np.cumsum(starts.T.reshape(-1)) - 1  # env-major episode ids
        rew = rewards.T.reshape(-1)
        complete = np.zeros(ep_id[-1] + 1, bool)
        complete[ep_id[dones.T.reshape(-1).astype(bool)]] = True
        returns = np.bincount(ep_id, weights=rew)
        candidates = np.flatnonzero(complete)
        k = max(1, int(np.ceil(cfg.epopt_epsilon * len(candidates))))
        chosen = candidates[np.argsort(returns[candidates])[:k]]
        keep = np.isin(ep_id, chosen).astype(np.float32)
        return keep.reshape(N, T).T

    # --- the loop ---------------------------------------------------------------------------
    def train(self, *, stop_after_iterations: int | None = None) -> dict:
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        steps_per_iter = cfg.num_envs * cfg.num_steps
        if cfg.kickstart_rounds > 0 and not self.kickstarted:
            self._kickstart()
        # the iterations left to reach total_env_steps (the kickstart's steps count too)
        total_iters = self.iteration + max(0, -(-(cfg.total_env_steps - self.env_steps) // steps_per_iter))
        log_path = self.out_dir / "progress.csv"
        new_log = not log_path.exists() or self.iteration == 0
        log_file = log_path.open("w" if new_log else "a", newline="")
        writer = None
        board = tensorboard_writer(self.out_dir / "tensorboard", purge_step=self.env_steps)
        done_here = 0
        try:
            while self.iteration < total_iters:
                if stop_after_iterations is not None and done_here >= stop_after_iterations:
                    break
                t0 = time.perf_counter()
                self._anneal_std(steps_per_iter)
                torch.set_num_threads(1)
                batch, starts, stats = self.collect()
                t1 = time.perf_counter()
                torch.set_num_threads(self.cfg.torch_threads)
                seqs = build_sequences(starts, cfg.seq_len)
                update = self.ppo.update(batch, seqs, self.batch_gen,
                                         value_only=self.iteration < cfg.critic_warmup_iterations,
                                         teacher_coef=self.teacher_coef())
                T, N = starts.shape
                self.model.update_normalizers(batch.obs, batch.priv)
                t2 = time.perf_counter()
                if self.iteration >= cfg.critic_warmup_iterations:   # policy updates only
                    warning = contended_update(self._update_times, t2 - t1, cfg.torch_threads)
                    if warning and self._contended_warnings < 3:
                        self._contended_warnings += 1
                        print(f"\nwarning: iteration {self.iteration + 1}: {warning}", file=sys.stderr, flush=True)
                    self._update_times.append(t2 - t1)
                self.iteration += 1
                done_here += 1
                self.env_steps += steps_per_iter
                self.wall_time_s += t2 - t0
                row = {"iteration": self.iteration, "env_steps": self.env_steps,
                       "wall_time_s": round(self.wall_time_s, 2), "episodes": stats.episodes,
                       "mean_return": stats.mean_return, "success_rate": stats.success_rate,
                       "mean_length": stats.mean_length, "mean_action_episodes": stats.mean_action_episodes,
                       "mean_action_success": stats.mean_action_success, "steps_per_s": steps_per_iter / (t2 - t0),
                       "collect_s": t1 - t0, "update_s": t2 - t1,
                       "action_std": self.model.actor.log_std.detach().exp().mean().item(), **update}
                self.history.append(row)
                if writer is None:
                    writer = csv.DictWriter(log_file, fieldnames=list(row))
                    if new_log:
                        writer.writeheader()
                writer.writerow(row)
                log_file.flush()
                for key, value in row.items():
                    if key not in ("iteration", "env_steps"):
                        board.add_scalar(f"train/{key}", value, self.env_steps)
                if not self.quiet:
                    self._progress(row, total_iters)
                if self.iteration % cfg.checkpoint_every == 0 or self.iteration == total_iters:
                    self.save_checkpoint(self.out_dir / "checkpoints" / "latest.pt")
                self._keep_best_and_snapshot()
        finally:
            log_file.close()
            board.close()
            if not self.quiet:
                print(file=sys.stderr)
        self.save_checkpoint(self.out_dir / "checkpoints" / "latest.pt")
        return self.history[-1] if self.history else {}

    def _freeze_std(self, start: torch.Tensor | None = None) -> None:
        """Take the actor's log-std from the optimiser; the schedule starts at ``start`` (default:
        its value now)."""
        self.model.actor.log_std.requires_grad_(False)
        self.std_start = (self.model.actor.log_std.detach() if start is None else start).clone()

    def _anneal_std(self, steps_per_iter: int) -> None:
        """``final_action_std``: set the actor's log-std for the coming iteration, linear in log space
        from the run's start, or its value at ``anneal_start_env_steps`` (``std_start``), to
        ``log(final_action_std)``, reached by the iteration that ends at ``total_env_steps``."""
        cfg = self.cfg
        if cfg.final_action_std <= 0 or self.env_steps < cfg.anneal_start_env_steps:
            return
        if self.std_start is None:   # anneal_start_env_steps reached: from the learnt std on
            self._freeze_std()
        start = cfg.anneal_start_env_steps
        span = max(1, cfg.total_env_steps - steps_per_iter - start)
        frac = min(1.0, (self.env_steps - start) / span)
        target = self.std_start + frac * (math.log(self.cfg.final_action_std) - self.std_start)
        with torch.no_grad():
            self.model.actor.log_std.copy_(target)

    def windowed_success(self) -> float | None:
        """Training success over the last ``best_window`` iterations, weighted by their finished
        episodes (None until that many iterations ran in this process, or none finished): of the
        envs acting with the mean action when there are some (``mean_action_envs``: what an
        exported policy does), else of the sampled actions."""
        window = self.history[-self.cfg.best_window:] if self.cfg.best_window else []
        if len(window) < self.cfg.best_window or not window:
            return None
        count, rate = (("mean_action_episodes", "mean_action_success") if self.cfg.mean_action_envs
                       else ("episodes", "success_rate"))
        episodes = sum(r[count] for r in window)
        if episodes == 0:
            return None
        return sum(r[rate] * r[count] for r in window if r[count]) / episodes

    def _keep_best_and_snapshot(self) -> None:
        """checkpoints/best.pt when the windowed training success beats the best so far (PPO can
        lose a skill late in a run); checkpoints/iter_NNNNN.pt every ``snapshot_every``."""
        folder = self.out_dir / "checkpoints"
        success = self.windowed_success()
        if success is not None and success > self.best_success:
            self.best_success = success
            self.save_checkpoint(folder / "best.pt")
        if self.cfg.snapshot_every and self.iteration % self.cfg.snapshot_every == 0:
            self.save_checkpoint(folder / f"iter_{self.iteration:05d}.pt")

    def _kickstart(self) -> None:
        """DAgger from the task's scripted controller (policies/imitation.py); rows in kickstart.csv
        and TensorBoard (kickstart/*), then a checkpoint (a resumed run does not repeat it)."""
        from policies.imitation import kickstart  # noqa: PLC0415

        self.out_dir.mkdir(parents=True, exist_ok=True)
        board = tensorboard_writer(self.out_dir / "tensorboard", purge_step=self.env_steps)
        with (self.out_dir / "kickstart.csv").open("w", newline="") as f:
            writer = None

            def on_round(row) -> None:
                nonlocal writer
                data = row.to_dict()
                if writer is None:
                    writer = csv.DictWriter(f, fieldnames=list(data))
                    writer.writeheader()
                writer.writerow(data)
                f.flush()
                for key in ("expert_success", "student_success", "loss"):
                    board.add_scalar(f"kickstart/{key}", data[key], row.env_steps)
                if not self.quiet:
                    print(f"kickstart round {row.round + 1}/{self.cfg.kickstart_rounds}: beta {row.beta:.2f}, "
                          f"expert {100 * row.expert_success:5.1f}% / student {100 * row.student_success:5.1f}% "
                          f"success ({row.episodes} episodes), fit mse {row.loss:.4f} on {row.samples} steps, "
                          f"{row.wall_time_s:.0f} s", file=sys.stderr, flush=True)

            try:
                kickstart(self, on_round=on_round)
            finally:
                board.close()
        self.kickstarted = True
        self.save_checkpoint(self.out_dir / "checkpoints" / "latest.pt")

    def _progress(self, row: dict, total_iters: int) -> None:
        width = 24
        filled = int(width * self.iteration / total_iters)
        eta = (total_iters - self.iteration) * row["wall_time_s"] / max(1, self.iteration)
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] it {self.iteration}/{total_iters} "
              f"steps {row['env_steps'] / 1e6:.2f}M  return {row['mean_return']:8.2f}  "
              f"success {100 * row['success_rate']:5.1f}%  len {row['mean_length']:5.1f}  "
              f"{row['steps_per_s']:6.0f} steps/s  kl {row['kl']:.4f}  lr {row['learning_rate']:.1e}  "
              f"eta {eta / 60:4.1f} min", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.venv.close()


#: an update this many times the median of the run's earlier ones is reported as contended
CONTENDED_UPDATE_FACTOR = 5.0


def contended_update(previous: list[float], current: float, torch_threads: int) -> str | None:
    """A warning when this policy update took far longer than the run's earlier ones (at least
    5 of them) while torch runs the update on several threads, else None.

    Why: torch's intra-op threads meet at the end of every small parallel region (each LSTM time
    step is several), so with another process busy on one of the cores every region waits for
    the descheduled thread. Measured on the 2-core machine (2026-12-07): a Push update of ~1.0 s
    took 44-55 s while one other Python process ran (``nice`` did not help: with Linux's autogroup
    scheduling the CPU is shared per session, not per niceness); a small Push run's update (8 envs
    x 200 steps, LSTM 128) took 0.32 s on 2 threads and 0.38 s on 1 when idle, and beside one
    ``yes`` loop 1.44 s on 2 threads and 0.41 s on 1."""
    if torch_threads <= 1 or len(previous) < 5:
        return None
    median = float(np.median(previous))
    if current <= CONTENDED_UPDATE_FACTOR * median:
        return None
    return (f"update took {current:.1f} s, {current / median:.0f}x the run's median of {median:.2f} s: another "
            f"process is probably competing for the CPU, and torch's {torch_threads} intra-op threads wait "
            "for each other at every step while one of them is descheduled; stop the other work, or train "
            "with --torch-threads 1")


def tensorboard_writer(log_dir: Path, purge_step: int):
    """TensorBoard event files next to progress.csv (the same rows, x axis = env steps);
    ``purge_step`` drops events a resumed run had written past its checkpoint."""
    from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - imports tensorboard

    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step or None)


def info_reward(reward, bootstrap, info, gamma, v_final) -> np.ndarray:
    """The env's own reward (the critic's bootstrap term removed) for episode statistics."""
    if v_final is None:
        return reward
    out = reward.copy()
    out[bootstrap] -= gamma * v_final
    return out


def load_checkpoint_file(path: str | Path) -> dict:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: not a sim2real checkpoint (version {CHECKPOINT_VERSION})")
    return state
