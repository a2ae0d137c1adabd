"""Explaining the reality gap: the same analyses on episodes recorded on a real arm (or the arm
emulator) next to the simulated ones.

A recorded episode gives joint positions and velocities, the commands sent and the goal
(``calibration.episodes.ReferenceEpisode``, in the profile's joint order). The observations the
policy saw are rebuilt from them: ``obs_t = [q_t, v_t, a_{t-1}, goal]`` with the previous action
recovered from the absolute command, ``a_{t-1} = clip((cmd_{t-1} - q_{t-1}) / scale, -1, 1)``
(exact unless the command was clipped at a joint limit). Only tasks whose observation is the
arm's signals plus one 3-D goal (Reach) can be rebuilt; any other layout is refused naming the
signal the recording does not give.

The actor is run on the rebuilt observations (its memory follows the recorded trajectory), and

* the attribution of its actions is computed as in simulation (same windows, same baseline),
* the ridge probes fitted on the simulated memory at each probe time are applied to the recorded
  memory at that time: the memory's estimate of each parameter over the episode, against the
  randomization's mean and, for the emulator, the hidden value.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from policies.explain.loading import ExplainError
from policies.explain.probes import RIDGE_ALPHAS, probe_step, varying
from policies.explain.rollout import ActorStepper, Recording

ARM_SIGNALS = ("joint_pos", "joint_vel", "prev_action")


def rebuild_observations(layout, position: np.ndarray, velocity: np.ndarray, command: np.ndarray,
                         goal: np.ndarray, scale_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """(observations [T-1, O], actions [T-1, A]) of one recorded episode: the action sent after
    state t is recovered from the command (see the module docstring)."""
    names = [s.name for s in layout]
    task_signals = [s for s in layout if s.name not in ARM_SIGNALS]
    if names[:3] != list(ARM_SIGNALS) or len(task_signals) != 1 or task_signals[0].size != len(goal):
        missing = [s.name for s in task_signals][1:] or [s.name for s in task_signals]
        raise ExplainError(f"recorded episodes give joint states, commands and a {len(goal)}-D goal; this policy's "
                           f"observation also needs {missing} ({', '.join(f'{s.name}[{s.size}]' for s in layout)}): "
                           f"record the task's inputs too, or explain the policy in simulation only")
    q, v, cmd = (np.asarray(a, dtype=np.float64) for a in (position, velocity, command))
    if q.shape[1] != layout[0].size:
        raise ExplainError(f"recorded episodes have {q.shape[1]} joints, the policy {layout[0].size} "
                           f"(a bag from another robot?)")
    steps = len(cmd)
    actions = np.clip((cmd - q[:steps]) / scale_rad, -1.0, 1.0)
    prev = np.vstack([np.zeros((1, q.shape[1])), actions[:-1]])[:, :layout[2].size]  # none if not observed
    obs = np.hstack([q[:steps], v[:steps], prev, np.broadcast_to(goal, (steps, len(goal)))])
    return obs.astype(np.float32), actions.astype(np.float32)


def replay(actor: nn.Module, episodes: list[dict], rate_hz: float, dynamics_names: tuple[str, ...],
           hidden: dict[str, float] | None, name: str) -> tuple[Recording, float]:
    """The actor teacher-forced on recorded observations (all episodes cut to the shortest).
    Returns the recording and the median |actor action - recorded action| (how well the recorded
    actions are reproduced: ~0 when the recording was made by this very policy)."""
    steps = min(len(e["obs"]) for e in episodes)
    obs = np.stack([e["obs"][:steps] for e in episodes])
    recorded = np.stack([e["actions"][:steps] for e in episodes])
    stepper = ActorStepper(actor)
    stepper.reset(len(episodes))
    acts, mems = [], []
    for t in range(steps):
        a, m = stepper.step(obs[:, t])
        acts.append(a)
        mems.append(m)
    actions = np.stack(acts, 1)
    dyn = np.array([[hidden.get(n, np.nan) if hidden else np.nan for n in dynamics_names]] * len(episodes),
                   np.float32)
    rec = Recording(policy=name, obs=obs, actions=actions, memory=np.stack(mems, 1),
                    distance=np.zeros((len(episodes), steps), np.float32), lengths=np.full(len(episodes), steps),
                    success=np.zeros(len(episodes), bool), dynamics=dyn, dynamics_names=tuple(dynamics_names),
                    seeds=np.arange(len(episodes)), control_rate_hz=rate_hz, memory_kind=stepper.memory_kind)
    return rec, float(np.median(np.abs(np.clip(actions, -1, 1) - recorded)))


def probe_estimates(sim: Recording, real: Recording, times_s, hidden: dict[str, float] | None,
                    parameters: list[str] | None = None) -> dict:
    """Per parameter and probe time: the sim-fitted ridge probe's estimate from the recorded memory
    (mean and std over the recorded episodes), the simulated episodes' mean, and the hidden value."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = varying(sim.dynamics)
    names = [n for n, k in zip(sim.dynamics_names, keep) if k and (parameters is None or n in parameters)]
    idx = [sim.dynamics_names.index(n) for n in names]
    y = sim.dynamics[:, idx].astype(np.float64)
    out = {"parameters": names, "times_s": [], "estimate_mean": {n: [] for n in names},
           "estimate_std": {n: [] for n in names}, "sim_mean": {n: float(y[:, j].mean()) for j, n in enumerate(names)},
           "sim_std": {n: float(y[:, j].std()) for j, n in enumerate(names)},
           "hidden": {n: (float(hidden[n]) if hidden and n in hidden else None) for n in names}}
    for t in times_s:
        step = probe_step(t, sim.control_rate_hz)
        if step >= real.memory.shape[1] or step >= sim.memory.shape[1]:
            continue
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(sim.memory_at(step), y)
        est = model.predict(real.memory_at(step))
        out["times_s"].append(float(t))
        for j, n in enumerate(names):
            out["estimate_mean"][n].append(float(est[:, j].mean()))
            out["estimate_std"][n].append(float(est[:, j].std()))
    return out
