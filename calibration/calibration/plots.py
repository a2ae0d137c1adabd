"""PNG plots of a calibration run (matplotlib, Agg backend: no display needed).

* ``trajectories.png``: real vs simulated joint positions of the first episodes, simulated
  at the prior mean (before) and at the fitted mean (after);
* ``discrepancy.png``: D per iteration (at the distribution mean, and the samples' mean);
* ``parameters.png``: each searched variable's mean +- std per iteration (iteration 0 =
  the prior), with the true values when known (benchmarks against the arm emulator);
* ``object_paths.png`` (episodes with an object, Push): the object's path on the table,
  recorded vs simulated at the prior mean and at the fitted mean, with the goal.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["save_plots"]

MAX_EPISODES = 3


def save_plots(calib, folder: str | Path, truth: Mapping[str, float] | None = None) -> list[Path]:
    """Write the three plots of ``calib`` (a :class:`calibration.simopt.Calibration`) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [_trajectories(calib, folder / "trajectories.png"),
             _discrepancy(calib, folder / "discrepancy.png"),
             _parameters(calib, folder / "parameters.png", truth)]
    if "object" in calib.settings.signals:
        paths.append(_object_paths(calib, folder / "object_paths.png"))
    return paths


def _shown(calib) -> list:
    """The episodes the plots show: the first MAX_EPISODES, with the first replayed one (an
    identification strike) in the last panel when the first ones hold none."""
    shown = list(calib.episodes[:MAX_EPISODES])
    replayed = [ep for ep in calib.episodes if ep.replay]
    if replayed and not any(ep.replay for ep in shown):
        shown[-1] = replayed[0]
    return shown


def _mode(calib) -> str:
    mode = calib.settings.mode.replace("_", "-")
    return f"{mode}; replayed episodes open-loop" if mode == "closed-loop" and any(ep.replay for ep in calib.episodes) \
        else mode


def _title(ep) -> str:
    return f"{ep.name} (replayed)" if ep.replay else ep.name


def _object_paths(calib, path: Path) -> Path:
    episodes = _shown(calib)
    col = 2 * calib.profile.num_joints  # the object's x, y in the simulator's rows
    before = calib.sim_rows(calib.prior.mean[None], episodes)
    after = calib.sim_rows(calib.search.mean[None], episodes)
    fig, axes = plt.subplots(1, len(episodes), figsize=(4.2 * len(episodes), 4.2), squeeze=False)
    for e, ep in enumerate(episodes):
        ax = axes[0, e]
        ax.plot(ep.object_pose[:, 0], ep.object_pose[:, 1], color="black", lw=1.6, label="recorded (tracker)")
        ax.plot(before[e][0, :, col], before[e][0, :, col + 1], color="tab:red", lw=1.0, ls="--",
                label="sim, prior mean")
        ax.plot(after[e][0, :, col], after[e][0, :, col + 1], color="tab:blue", lw=1.0, label="sim, calibrated mean")
        ax.plot(*ep.object_pose[0, :2], "ko", ms=4)
        ax.plot(*ep.goal[:2], "g*", ms=12, label="goal")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(_title(ep), fontsize=9)
        ax.set_xlabel("x [m]")
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("y [m]")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Object path on the table: recorded vs simulated ({_mode(calib)})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _trajectories(calib, path: Path) -> Path:
    episodes = _shown(calib)
    j = calib.profile.num_joints
    before = calib.simulate(calib.prior.mean[None], episodes)
    after = calib.simulate(calib.search.mean[None], episodes)
    pos_cols = [k for k, s in enumerate(calib.settings.signals) if s == "position"]
    fig, axes = plt.subplots(j, len(episodes), figsize=(4.2 * len(episodes), 1.5 * j), sharex="col",
                             squeeze=False)
    dt = calib.profile.control_period_s
    for e, ep in enumerate(episodes):
        t = np.arange(ep.steps) * dt
        for k in range(j):
            ax = axes[k, e]
            ax.plot(t, ep.position[:, k], color="black", lw=1.6, label="real")
            if pos_cols:
                col = pos_cols[0] * j + k
                ax.plot(t, before[e][0, :, col], color="tab:red", lw=1.0, ls="--", label="sim, prior mean")
                ax.plot(t, after[e][0, :, col], color="tab:blue", lw=1.0, label="sim, calibrated mean")
            if e == 0:
                ax.set_ylabel(f"{calib.profile.joint_names[k]}\n[rad]", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0, e].set_title(_title(ep), fontsize=9)
        axes[-1, e].set_xlabel("time [s]")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Joint positions: real vs simulated ({_mode(calib)}); "
                 f"D {calib.initial_discrepancy:.4g} -> {calib.final_discrepancy:.4g}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _discrepancy(calib, path: Path) -> Path:
    its = [0] + [r.iteration for r in calib.history]
    at_mean = [calib.initial_discrepancy] + [r.discrepancy_at_mean for r in calib.history]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(its, at_mean, "o-", label="D at the distribution mean")
    if calib.history:
        ax.plot([r.iteration for r in calib.history], [r.cost_mean for r in calib.history], "s--",
                label="mean D of the iteration's samples")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("discrepancy D")
    ax.set_title(f"SimOpt ({calib.settings.method.upper()}, {calib.settings.samples} samples/iteration)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _parameters(calib, path: Path, truth: Mapping[str, float] | None) -> Path:
    names = calib.space.names
    searches = [calib.prior] + [r.search for r in calib.history]
    its = np.arange(len(searches))
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // cols, k % cols]
        mean = np.array([s.mean[k] for s in searches])
        std = np.array([s.std[k] for s in searches])
        ax.fill_between(its, mean - std, mean + std, alpha=0.25)
        ax.plot(its, mean, "o-")
        if truth:
            values = [truth[m] for m in calib.space.members(name) if m in truth]
            if values:
                ax.axhline(float(np.mean(values)), color="black", ls=":", label="hidden truth")
                ax.legend(fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    for k in range(len(names), rows * cols):
        axes[k // cols, k % cols].axis("off")
    fig.suptitle("Search distribution: mean +- std per iteration")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
