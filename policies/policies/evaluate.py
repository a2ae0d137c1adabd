"""Evaluate a policy on its task: success rate, return and final distance with CIs.

The task is the one the policy was trained for (:func:`policy_task`: the manifest's ``task``
record, or the checkpoint's config), unless the caller names another.

Works with any object that has ``reset()`` and ``step(obs) -> action`` (the deployed
ONNX runtime, or a torch actor in :class:`TorchPolicy`). Episodes are spread over
worker processes (or Ray tasks on a cluster: ``backend="ray"``); episode ``i`` always uses
env seed ``seed + i``, so results depend on neither the number of workers nor the backend.
"""
from __future__ import annotations

import math
import multiprocessing as mp
from dataclasses import asdict, dataclass, field

from pathlib import Path

import numpy as np

from sim_bridge.episode import wilson_interval


@dataclass
class EvalResult:
    episodes: int
    randomization: str
    success_rate: float
    success_ci95: tuple[float, float]
    mean_return: float
    return_ci95: tuple[float, float]
    mean_final_distance_m: float
    final_distance_ci95: tuple[float, float]
    median_steps_to_success: float | None
    successes: tuple[bool, ...] = field(default=(), repr=False)
    """per episode, in seed order (episode i used seed + i); not in to_dict (manifests keep the summary)"""

    def to_dict(self) -> dict:
        out = asdict(self)
        del out["successes"]
        return out

    def line(self) -> str:
        lo, hi = self.success_ci95
        steps = f"{self.median_steps_to_success:.0f}" if self.median_steps_to_success is not None else "-"
        return (f"{self.randomization:>10}: success {100 * self.success_rate:5.1f}% "
                f"[{100 * lo:.1f}, {100 * hi:.1f}]  return {self.mean_return:7.2f} "
                f"+- {(self.return_ci95[1] - self.return_ci95[0]) / 2:.2f}  final distance "
                f"{100 * self.mean_final_distance_m:.2f} cm  median steps to success {steps}  "
                f"({self.episodes} episodes)")


def mean_ci(values: np.ndarray, z: float = 1.96) -> tuple[float, tuple[float, float]]:
    mean = float(np.mean(values))
    half = z * float(np.std(values, ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else float("inf")
    return mean, (mean - half, mean + half)


def run_episodes(policy, env, seeds) -> list[tuple[bool, float, float, int]]:
    """(success, return, final distance, steps) per seeded episode."""
    out = []
    for seed in seeds:
        obs, info = env.reset(seed=int(seed))
        policy.reset()
        if hasattr(policy, "seed_episode"):   # a sampling policy: its noise seeded per episode, so
            policy.seed_episode(int(seed))      # results do not depend on how episodes split over workers
        total, steps = 0.0, 0
        while True:
            obs, reward, terminated, truncated, info = env.step(policy.step(obs))
            total += reward
            steps += 1
            if terminated or truncated:
                break
        out.append((bool(info["is_success"]), total, float(info["distance"]), steps))
    return out


def _worker(args):
    factory, env_kwargs, seeds = args
    import torch
    torch.set_num_threads(1)
    from sim_bridge.envs.vector import make_env

    env = make_env(**env_kwargs)
    return run_episodes(factory(), env, seeds)


def evaluate(policy_factory, *, episodes: int, randomization: str = "default", robot_profile: str = "panda_like",
             seed: int = 10_000, workers: int = 2, env_kwargs: dict | None = None,
             task: dict | None = None, backend: str = "local", ray_address: str | None = None) -> EvalResult:
    """Run ``episodes`` seeded episodes; ``policy_factory()`` builds the policy in each worker
    (it must be picklable: a module-level function or a functools.partial of one).
    ``task``: a manifest-style record ``{"name": ..., "settings": {...}}`` (default: Reach).
    ``backend="ray"``: the ``workers`` chunks of episodes run as Ray tasks on the cluster at
    ``ray_address`` (:func:`policies.ray_backend.map_chunks`; the policy's files must be
    readable on every node)."""
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    task = task or {"name": "reach"}
    kwargs = {"task": task["name"], **dict(task.get("settings") or {}), "profile": robot_profile,
              "randomization": randomization, **(env_kwargs or {})}
    seeds = seed + np.arange(episodes)
    chunks = [c for c in np.array_split(seeds, max(1, workers)) if len(c)]
    if backend == "ray":
        from policies.ray_backend import map_chunks  # noqa: PLC0415 - Ray is optional

        parts = map_chunks(_worker, [(policy_factory, kwargs, c) for c in chunks], address=ray_address)
        results = [r for part in parts for r in part]
    elif workers <= 1:
        results = _worker((policy_factory, kwargs, seeds))
    else:
        with mp.get_context("spawn").Pool(len(chunks)) as pool:
            results = [r for part in pool.map(_worker, [(policy_factory, kwargs, c) for c in chunks]) for r in part]
    success = np.array([r[0] for r in results])
    returns = np.array([r[1] for r in results])
    dist = np.array([r[2] for r in results])
    steps = np.array([r[3] for r in results])
    mean_ret, ret_ci = mean_ci(returns)
    mean_dist, dist_ci = mean_ci(dist)
    return EvalResult(episodes, str(randomization), float(success.mean()),
                      wilson_interval(int(success.sum()), len(success)), mean_ret, ret_ci, mean_dist, dist_ci,
                      float(np.median(steps[success])) if success.any() else None,
                      tuple(bool(x) for x in success))


def paired_comparison(a: EvalResult, b: EvalResult) -> dict:
    """Compare two policies evaluated on the same seeded episodes (same seed, episodes and
    randomization): McNemar's exact test on the episodes only one of them solved (scipy's
    binomial test of the discordant pairs against 1/2). Pairing removes the spread that the
    episodes themselves put into two independent success rates, so it detects smaller
    differences than two overlapping Wilson intervals do."""
    if a.randomization != b.randomization:
        raise ValueError(f"a paired comparison needs the same episodes: {a.randomization!r} against "
                         f"{b.randomization!r}")
    return {"randomization": a.randomization, **mcnemar_exact(a.successes, b.successes)}


def mcnemar_exact(a, b) -> dict:
    """McNemar's exact test for two success sequences over the same episodes: the counts, and
    the two-sided binomial p of the discordant ones against 1/2 (scipy)."""
    from scipy.stats import binomtest  # noqa: PLC0415

    sa, sb = np.asarray(a, bool), np.asarray(b, bool)
    if sa.shape != sb.shape or not sa.size:
        raise ValueError(f"a paired comparison needs the same episodes: {sa.size} against {sb.size}")
    only_a, only_b = int(np.sum(sa & ~sb)), int(np.sum(~sa & sb))
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"episodes": int(sa.size), "a_successes": int(sa.sum()), "b_successes": int(sb.sum()),
            "only_a": only_a, "only_b": only_b, "both": int(np.sum(sa & sb)), "mcnemar_exact_p": float(p)}


def paired_line(name_a: str, name_b: str, cmp: dict) -> str:
    return (f"{cmp['randomization']:>10}: {name_a} {cmp['a_successes']}/{cmp['episodes']} vs {name_b} "
            f"{cmp['b_successes']}/{cmp['episodes']} on the same episodes: solved only by {name_a} "
            f"{cmp['only_a']}, only by {name_b} {cmp['only_b']}, McNemar exact p = {cmp['mcnemar_exact_p']:.3g}")


class TorchPolicy:
    """A torch actor behind the runtime's interface (batch 1): its deterministic mean action, or
    with ``sample`` the Gaussian it was trained with (mean + its std x N(0, 1), seeded per
    episode by :func:`run_episodes`): what PPO optimised, where an exported policy runs the mean."""

    def __init__(self, actor, sample: bool = False):
        import torch
        self.torch, self.actor = torch, actor.eval()
        from policies.runtime import ActionSampler
        self.sampler = ActionSampler(actor.log_std.detach().exp().numpy(), 0) if sample else None
        self.reset()

    def reset(self) -> None:
        self.state = self.actor.initial_state(1)

    @property
    def std(self) -> np.ndarray | None:
        """The std it samples with (None: the mean)."""
        return None if self.sampler is None else self.sampler.std

    def seed_episode(self, seed: int) -> None:
        if self.sampler is not None:
            self.sampler.seed(seed)

    def step(self, obs: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            mean, self.state = self.actor(self.torch.as_tensor(obs, dtype=self.torch.float32).view(1, 1, -1),
                                          self.state)
        mean = mean.view(-1).numpy()
        return mean if self.sampler is None else self.sampler(mean)


def checkpoint_policy(checkpoint_path: str, sample: bool = False) -> TorchPolicy:
    """A TorchPolicy from a training checkpoint (module-level so workers can build it)."""
    from policies.export import actor_from_checkpoint
    return TorchPolicy(actor_from_checkpoint(checkpoint_path)[0], sample=sample)


def policy_task(path: str) -> dict:
    """The task record of a policy: its manifest's ``task`` (artifact) or its training config's
    task and settings (checkpoint ``.pt``)."""
    if str(path).endswith(".pt"):
        from policies.config import TrainConfig
        from policies.export import trained_task
        from policies.train import load_checkpoint_file
        return trained_task(TrainConfig.from_dict(load_checkpoint_file(path)["config"])).describe()
    from policies.manifest import load_manifest
    return dict(load_manifest(path).task)


def policy_action_kwargs(path: str) -> dict:
    """The env keyword arguments of a policy's action (``action_type`` and its settings): its
    manifest's ``action`` (artifact) or its training config's (checkpoint ``.pt``), so it is
    evaluated with the action it was trained with, not the task's current default."""
    if str(path).endswith(".pt"):
        from policies.config import TrainConfig
        from policies.train import load_checkpoint_file
        kwargs = TrainConfig.from_dict(load_checkpoint_file(path)["config"]).env_kwargs
        return {k: kwargs[k] for k in ("action_type", "action_scale_rad", "ee_action") if k in kwargs}
    from policies.manifest import load_manifest
    return load_manifest(path).action.env_kwargs()


def policy_robot(path: str) -> str:
    """The robot profile a policy was trained for (the env of its evaluation must be that robot):
    a checkpoint's training config's ``robot_profile`` (a name or a YAML path), for an artifact
    that of its ``checkpoint.pt`` if it has one, else its manifest's robot name."""
    from policies.config import TrainConfig
    from policies.train import load_checkpoint_file

    path = Path(path)
    checkpoint = path if path.suffix == ".pt" else path / "checkpoint.pt"
    if checkpoint.is_file():
        return TrainConfig.from_dict(load_checkpoint_file(checkpoint)["config"]).robot_profile
    from policies.manifest import load_manifest
    return load_manifest(path).robot_profile


def runtime_policy(artifact_path: str, sample: bool = False):
    """The deployed ONNX runtime (module-level so workers can build it); ``sample``: it samples
    the policy's Gaussian (the manifest's ``action_std``; seeded per episode by run_episodes)."""
    from policies.runtime import PolicyRuntime
    return PolicyRuntime(artifact_path, sample_seed=0 if sample else None)
