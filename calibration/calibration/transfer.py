"""Transfer check: how well a policy does on the arm emulator (the real-arm stand-in).

Pure (no ROS): the deployed loop of :func:`calibration.episodes.emulator_episodes`, from
the home pose to seeded random goals (the policy's task samples them), scored with the
policy's task's success criterion (Reach: end effector within 2 cm of the goal for 10
consecutive control steps, on the emulator's true end effector; Push: the puck's true centre
within 5 cm of the goal for 10 steps, the emulator built with the puck's hidden physics). The same goals for every policy with the
same seed, so success rates compare side by side.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from calibration.episodes import drive_emulator
from sim_bridge.episode import HeldSuccess, SuccessCriterion, wilson_interval
from sim_bridge.tasks import task_from_record

__all__ = ["EmulatorScore", "emulator_success"]


@dataclass(frozen=True)
class EmulatorScore:
    policy: str
    successes: int
    episodes: int
    mean_final_error_m: float
    per_episode: tuple[bool, ...] = ()
    """success of each episode in goal order (the same goals for every policy with the same seed)"""

    @property
    def rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)

    def line(self) -> str:
        lo, hi = self.ci95
        return (f"{self.policy:<28} {self.successes:>4}/{self.episodes:<4} {100 * self.rate:5.1f}% "
                f"[{100 * lo:.0f}, {100 * hi:.0f}]  mean final error {100 * self.mean_final_error_m:.2f} cm")


def emulator_success(policy_path: str | os.PathLike, episodes: int = 50, *, seed: int = 0, steps: int | None = None,
                     success: SuccessCriterion | None = None, emulator=None,
                     label: str | None = None, sample_actions: bool = False) -> EmulatorScore:
    """``success``: None = the criterion of the task the policy was trained for (its manifest);
    ``steps``: control steps per episode (None: the task's episode length); ``sample_actions``:
    act with samples of the policy's trained Gaussian (the policy node's ``sample_actions``),
    the noise seeded per episode from ``seed`` and the episode's index (the goals stay those of
    the mean action)."""
    from policies.runtime import PolicyRuntime  # noqa: PLC0415
    from real_bridge.emulator import ArmEmulator  # noqa: PLC0415

    policy = PolicyRuntime(policy_path, sample_seed=0 if sample_actions else None)
    task = task_from_record(policy.manifest.task)
    emu = emulator or ArmEmulator(task=task.name)
    if emu.task.name != task.name:
        raise ValueError(f"policy {policy.name!r} is for task {task.name!r}; the emulator holds the scene of "
                         f"{emu.task.name!r}")
    p = emu.profile
    rng = np.random.default_rng(seed)
    counter = HeldSuccess(success or task.success)
    wins, finals, outcomes = 0, [], []
    for episode in range(int(episodes)):
        goal = task.sample_goal(rng, p)
        policy.seed_episode(int(np.random.SeedSequence([int(seed), episode]).generate_state(1)[0]))
        counter.reset()
        dist = np.inf
        for _ in drive_emulator(emu, policy, goal, task.max_episode_steps if steps is None else int(steps)):
            dist = (emu.object_error_m() if emu.object is not None  # Push: puck centre to goal
                    else float(np.linalg.norm(emu.end_effector_position() - goal)))
            if counter.update(dist):
                break
        wins += counter.succeeded
        outcomes.append(bool(counter.succeeded))
        finals.append(dist)
    return EmulatorScore(label or policy.name, wins, int(episodes), float(np.mean(finals)), tuple(outcomes))
