"""Attribution through time: which observation signals, how far back, move the action.

The action at step ``t`` is explained in terms of the observations of steps ``t-K .. t``
(lag 0 = the current step). The actor runs on that window from its recorded memory at
``t-K-1`` (held fixed: older inputs act only through that state, which is not attributed).

Inputs are attributed in the actor's own **normalized** units ``z = (obs - mean) / sqrt(var + eps)``
(before its clip), so a joint velocity in rad/s and a target in m are comparable: the saliency
is "action change per standard deviation of the signal". Each method's map is the mean over
windows and over the action's components of ``|attribution|`` (Captum, one call per component):

* ``saliency``: |d a_j / d z|  (``captum.attr.Saliency``);
* ``smoothgrad``: the mean of |grad| under N(0, sigma^2) input noise, ``vargrad``: the variance
  of the gradient under that noise (``captum.attr.NoiseTunnel``);
* ``integrated_gradients``: path integral from the **mean observation** baseline
  (``captum.attr.IntegratedGradients``);
* ``ablation``: ``captum.attr.FeatureAblation`` with one feature per (signal group, lag),
  replaced by its mean-observation value; the attribution is the action change ||delta a||_2
  (a unitless action in [-1, 1]^A), so it does not cancel across the action's components.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from policies.explain.rollout import Recording

GRADIENT_METHODS = ("saliency", "smoothgrad", "vargrad", "integrated_gradients")


@dataclass(frozen=True)
class SignalGroup:
    name: str
    start: int
    size: int
    unit: str = ""


def signal_groups(layout) -> list[SignalGroup]:
    """The observation layout's named signals as index ranges (layout: ``Signal`` or dicts).
    A signal of size 0 (``prev_action`` when the task does not observe it) has no group."""
    groups, start = [], 0
    for s in layout:
        name, size, unit = (s["name"], s["size"], s.get("unit", "")) if isinstance(s, dict) \
            else (s.name, s.size, s.unit)
        if int(size) > 0:
            groups.append(SignalGroup(name, start, int(size), unit))
        start += int(size)
    return groups


def joint_groups(groups: list[SignalGroup], joint_names: list[str]) -> list[tuple[str, list[int]]]:
    """Regroup by joint: every signal of joint k (position, velocity, previous action...) in one
    group; signals that are not per joint (the task's) stay groups of their own."""
    n = len(joint_names)
    out = [(name, []) for name in joint_names]
    for g in groups:
        if g.size == n and g.name.startswith(("joint_", "prev_action")):
            for k in range(n):
                out[k][1].append(g.start + k)
        else:
            out.append((g.name, list(range(g.start, g.start + g.size))))
    return out


def element_labels(groups: list[SignalGroup], joint_names: list[str]) -> list[str]:
    labels = []
    for g in groups:
        if g.size == len(joint_names):
            labels += [f"{g.name}[{j}]" for j in joint_names]
        elif g.size == 3:
            labels += [f"{g.name}[{a}]" for a in "xyz"]
        else:
            labels += [f"{g.name}[{k}]" for k in range(g.size)]
    return labels


class WindowActor(nn.Module):
    """``z`` [B, L, O] (normalized, unclipped) -> the action [B, A] at the window's last step,
    from the memory ``h0, c0`` [B, H] (batch first so Captum can expand it with the inputs)."""

    def __init__(self, actor: nn.Module):
        super().__init__()
        self.actor = actor

    def forward(self, z: torch.Tensor, h0: torch.Tensor | None = None, c0: torch.Tensor | None = None):
        a = self.actor
        x = z.clamp(-a.obs_norm.clip, a.obs_norm.clip)
        if a.recurrent:
            out, _ = a.lstm(x.transpose(0, 1), (h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous()))
            return a.head(out[-1])
        return a.body(x[:, -1])


class _ActionChange(nn.Module):
    """||a(z) - a_ref||_2 per window: what FeatureAblation measures when a group is replaced."""

    def __init__(self, window: WindowActor):
        super().__init__()
        self.window = window

    def forward(self, z, h0, c0, a_ref):
        return (self.window(z, h0, c0) - a_ref).norm(dim=-1)


def normalize(actor: nn.Module, obs: np.ndarray) -> np.ndarray:
    n = actor.obs_norm
    return ((obs - n.mean.numpy()) / np.sqrt(n.var.numpy() + n.eps)).astype(np.float32)


@dataclass
class Windows:
    z: torch.Tensor        # [B, L, O]
    h0: torch.Tensor       # [B, H] (MLP: [B, 1] zeros, unused)
    c0: torch.Tensor
    action: torch.Tensor   # [B, A] the recorded action at the window's last step
    episode: np.ndarray
    step: np.ndarray


def make_windows(rec: Recording, actor: nn.Module, episodes, steps, lag: int) -> Windows:
    """Windows ending at ``(episodes[i], steps[i])``, of ``min(lag, step) + 1`` steps (all the same length)."""
    episodes, steps = np.asarray(episodes), np.asarray(steps)
    length = int(min(lag, int(steps.min()))) + 1
    if np.any(np.minimum(steps, lag) + 1 != length):
        raise ValueError("make_windows: all windows of one call must have the same length")
    zs, h0, c0 = [], [], []
    hidden = actor.hidden if actor.recurrent else 1
    for e, t in zip(episodes, steps):
        s = t - length + 1
        zs.append(normalize(actor, rec.obs[e, s:t + 1]))
        if actor.recurrent and s > 0:
            mem = rec.memory[e, s - 1]
            h0.append(mem[:hidden])
            c0.append(mem[hidden:])
        else:
            h0.append(np.zeros(hidden, np.float32))
            c0.append(np.zeros(hidden, np.float32))
    return Windows(torch.from_numpy(np.stack(zs)), torch.from_numpy(np.stack(h0)), torch.from_numpy(np.stack(c0)),
                   torch.from_numpy(rec.actions[episodes, steps].astype(np.float32)), episodes, steps)


def lag_steps(settings: "AttributionSettings", rate_hz: float) -> int:
    return max(1, int(round(settings.lag_s * rate_hz)))


@dataclass
class AttributionSettings:
    lag_s: float = 0.5                # the window: K = lag_s * control rate steps back (K + 1 steps)
    windows: int = 64                 # windows for the maps (spread over episodes and time)
    noise_sigma: float = 0.2          # SmoothGrad / VarGrad input noise, in normalized units
    noise_samples: int = 16
    ig_steps: int = 16
    seed: int = 0


def method_maps(window: WindowActor, w: Windows, baseline_z: np.ndarray, settings: AttributionSettings,
                methods=GRADIENT_METHODS) -> dict[str, np.ndarray]:
    """{method: [B, L, O] |attribution| averaged over the action's components}."""
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    n_act = int(w.action.shape[1])
    extra = (w.h0, w.c0)
    z = w.z.detach().clone().requires_grad_(True)
    base = torch.from_numpy(np.broadcast_to(baseline_z, w.z.shape).copy())
    saliency = Saliency(window)
    out = {m: torch.zeros_like(w.z) for m in methods}
    torch.manual_seed(settings.seed)
    for j in range(n_act):
        if "saliency" in methods:
            out["saliency"] += saliency.attribute(z, target=j, abs=True, additional_forward_args=extra)
        for kind in ("smoothgrad", "vargrad"):
            if kind in methods:
                out[kind] += NoiseTunnel(saliency).attribute(
                    z, nt_type=kind, nt_samples=settings.noise_samples, stdevs=settings.noise_sigma,
                    target=j, abs=kind == "smoothgrad", additional_forward_args=extra)
        if "integrated_gradients" in methods:
            ig = IntegratedGradients(window).attribute(z, baselines=base, target=j, n_steps=settings.ig_steps,
                                                       additional_forward_args=extra)
            out["integrated_gradients"] += ig.abs()
    return {m: (v / n_act).detach().numpy() for m, v in out.items()}


def ablation_map(window: WindowActor, w: Windows, baseline_z: np.ndarray,
                 groups: list[tuple[str, list[int]]]) -> np.ndarray:
    """[B, G, L]: ||delta action||_2 when group g at lag l is replaced by the mean observation."""
    from captum.attr import FeatureAblation

    b, length, n_obs = w.z.shape
    mask = torch.zeros(1, length, n_obs, dtype=torch.long)
    for li in range(length):
        for gi, (_, idx) in enumerate(groups):
            mask[0, li, idx] = li * len(groups) + gi
    base = torch.from_numpy(np.broadcast_to(baseline_z, w.z.shape).copy())
    with torch.no_grad():
        a_ref = window(w.z, w.h0, w.c0)
    attr = FeatureAblation(_ActionChange(window)).attribute(
        w.z, baselines=base, feature_mask=mask, additional_forward_args=(w.h0, w.c0, a_ref))
    attr = -attr.detach().numpy()  # f(x) - f(x_ablated) = 0 - ||a_ablated - a||
    out = np.zeros((b, len(groups), length), np.float32)
    for gi, (_, idx) in enumerate(groups):
        out[:, gi, :] = attr[:, :, idx[0]]
    return out


@dataclass
class AttributionResult:
    labels: list[str]                          # observation elements
    groups: list[str]                          # named signal groups
    joint_groups: list[str]                    # per-joint groups (+ task signals)
    lag_s: list[float]                         # lag of each column, s (column 0 = now)
    maps: dict[str, np.ndarray]                # method -> [O, L] mean |attribution| (lag 0 last -> flipped: col 0 = now)
    ablation_groups: np.ndarray                # [G, L]
    ablation_joints: np.ndarray                # [J, L]
    group_shares: dict[str, dict[str, float]]  # method -> group -> share of the total
    lag_shares: dict[str, list[float]]         # method -> share per lag
    episode: dict = field(default_factory=dict)  # one episode over time
    windows: int = 0

    def summary(self) -> dict:
        return {"windows": self.windows, "lag_s": self.lag_s, "group_shares": self.group_shares,
                "lag_shares": self.lag_shares,
                "ablation_by_group": {g: float(v) for g, v in zip(self.groups, self.ablation_groups.sum(1))},
                "ablation_by_joint_group": {g: float(v) for g, v in
                                            zip(self.joint_groups, self.ablation_joints.sum(1))},
                "top_elements": {m: top_elements(v, self.labels) for m, v in self.maps.items()}}


def top_elements(m: np.ndarray, labels: list[str], k: int = 5) -> list[list]:
    per = m.sum(1)
    share = per / max(float(per.sum()), 1e-12)
    order = np.argsort(-share)[:k]
    return [[labels[i], round(float(share[i]), 4)] for i in order]


def group_share(m: np.ndarray, groups: list[SignalGroup]) -> dict[str, float]:
    total = max(float(m.sum()), 1e-12)
    return {g.name: float(m[g.start:g.start + g.size].sum() / total) for g in groups}


def attribute_recording(rec: Recording, actor: nn.Module, layout, joint_names: list[str],
                        settings: AttributionSettings | None = None, episode: int = 0) -> AttributionResult:
    """The maps over windows spread across the recording, and one episode over time."""
    settings = settings or AttributionSettings()
    rng = np.random.default_rng(settings.seed)
    groups = signal_groups(layout)
    jgroups = joint_groups(groups, joint_names)
    lag = lag_steps(settings, rec.control_rate_hz)
    steps_total = int(rec.lengths.min())
    if steps_total <= lag:
        raise ValueError(f"episodes of {steps_total} steps are too short for a {lag}-step window")
    n = settings.windows
    eps = rng.integers(0, rec.episodes, n)
    steps = rng.integers(lag, steps_total, n)
    w = make_windows(rec, actor, eps, steps, lag)
    window = WindowActor(actor.eval())
    valid = np.concatenate([rec.obs[e, :rec.lengths[e]] for e in range(rec.episodes)])
    baseline_z = normalize(actor, valid.mean(0, keepdims=True))[None]  # [1, 1, O]
    raw = method_maps(window, w, baseline_z, settings)
    # [B, L, O] with column L-1 = now -> [O, L] with column 0 = now
    maps = {m: v.mean(0)[::-1].T.copy() for m, v in raw.items()}
    abl_g = ablation_map(window, w, baseline_z, [(g.name, list(range(g.start, g.start + g.size))) for g in groups])
    abl_j = ablation_map(window, w, baseline_z, jgroups)
    maps["ablation"] = np.zeros_like(next(iter(maps.values())))
    abl_g_now = abl_g.mean(0)[:, ::-1].copy()
    for gi, g in enumerate(groups):  # spread the group's effect over its elements, for the element map
        maps["ablation"][g.start:g.start + g.size] = abl_g_now[gi] / g.size
    result = AttributionResult(
        labels=element_labels(groups, joint_names), groups=[g.name for g in groups],
        joint_groups=[name for name, _ in jgroups], lag_s=[k / rec.control_rate_hz for k in range(lag + 1)],
        maps=maps, ablation_groups=abl_g_now, ablation_joints=abl_j.mean(0)[:, ::-1].copy(),
        group_shares={m: group_share(v, groups) for m, v in maps.items()},
        lag_shares={m: (v.sum(0) / max(float(v.sum()), 1e-12)).round(5).tolist() for m, v in maps.items()},
        windows=n)
    result.episode = episode_over_time(rec, actor, episode, groups, baseline_z, settings)
    return result


def episode_over_time(rec: Recording, actor: nn.Module, episode: int, groups: list[SignalGroup],
                      baseline_z: np.ndarray, settings: AttributionSettings) -> dict:
    """Integrated gradients of the action at every step of one episode, summed over lags, per group."""
    window = WindowActor(actor.eval())
    length = int(rec.lengths[episode])
    lag = lag_steps(settings, rec.control_rate_hz)
    per_step = np.zeros((length, len(groups)), np.float32)
    settings_ig = AttributionSettings(**{**settings.__dict__, "ig_steps": max(8, settings.ig_steps // 2)})
    batches = [np.arange(t, t + 1) for t in range(min(lag, length))] + [np.arange(min(lag, length), length)]
    for steps in batches:
        if len(steps) == 0:
            continue
        w = make_windows(rec, actor, np.full(len(steps), episode), steps, lag)
        ig = method_maps(window, w, baseline_z, settings_ig, methods=("integrated_gradients",))
        m = ig["integrated_gradients"].sum(1)  # [B, O]
        for gi, g in enumerate(groups):
            per_step[steps, gi] = m[:, g.start:g.start + g.size].sum(1)
    return {"episode": int(episode), "seed": int(rec.seeds[episode]), "groups": [g.name for g in groups],
            "time_s": (np.arange(length) / rec.control_rate_hz).tolist(),
            "attribution": per_step.tolist(), "distance_m": rec.distance[episode, :length].tolist(),
            "success": bool(rec.success[episode])}


def randomisation_check(actor: nn.Module, rec: Recording, settings: AttributionSettings | None = None,
                        seed: int = 1) -> dict:
    """Model-randomisation sanity check (Adebayo et al. 2018): re-initialise every weight of the actor
    (keeping its normalizer) and compare the saliency maps; a map that survives is not about the model.
    Returns the Spearman rank correlation over observation elements of the saliency at lag 0
    (trained vs random); the check passes below 0.5."""
    import copy

    from scipy.stats import spearmanr

    settings = settings or AttributionSettings(windows=16)
    rng = np.random.default_rng(settings.seed)
    lag = lag_steps(settings, rec.control_rate_hz)
    eps = rng.integers(0, rec.episodes, settings.windows)
    steps = rng.integers(lag, int(rec.lengths.min()), settings.windows)
    w = make_windows(rec, actor, eps, steps, lag)
    base = np.zeros((1, 1, w.z.shape[-1]), np.float32)
    random_actor = copy.deepcopy(actor)
    torch.manual_seed(seed)
    for name, p in random_actor.named_parameters():
        if name.startswith("obs_norm") or name == "log_std":
            continue
        with torch.no_grad():
            if p.dim() >= 2:
                nn.init.orthogonal_(p)
            else:
                p.normal_(0.0, 0.1)
    # the recorded memory belongs to the trained actor: the random one starts each window from zeros
    w = Windows(w.z, torch.zeros_like(w.h0), torch.zeros_like(w.c0), w.action, w.episode, w.step)
    trained = method_maps(WindowActor(actor), w, base, settings, methods=("saliency",))["saliency"].mean(0)
    randomized = method_maps(WindowActor(random_actor.eval()), w, base, settings, methods=("saliency",))["saliency"].mean(0)
    # per observation element at lag 0 (the lag profile of any LSTM decays: it would correlate anyway)
    rho = float(spearmanr(trained[-1], randomized[-1]).statistic)
    return {"spearman_trained_vs_random": rho, "windows": int(settings.windows),
            "passed": bool(rho < 0.5)}
