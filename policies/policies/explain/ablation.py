"""Which parts the policy needs: ablations on the same seeded episodes, and weight statistics.

Every variant runs the same episodes (same seeds: goals, start poses, dynamics) as the intact
actor, batched (:func:`policies.explain.rollout.record_episodes`); the drop in success rate and
the change of the final task error measure what the part contributed.

* zero a hidden layer's output (``lstm``, ``head.tanh0``, ... / ``body.tanh0``, ...);
* re-initialise one layer's weights (the layer-robustness test of Zhang, Bengio & Singer 2019:
  a layer whose re-initialisation costs nothing is not used);
* zero LSTM units (h and c after every step): the top-k units by probe weight (the units that
  carry the dynamics estimate), the same number of random units as a control, and each unit alone.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from policies.explain.rollout import ActorStepper, EnvBatch, Intervention, hidden_layer_names, record_episodes


@dataclass
class AblationSettings:
    episodes: int = 50          # episodes per variant (layers, top-k groups)
    top_k: tuple[int, ...] = (4, 8, 16)
    unit_episodes: int = 10     # episodes per single-unit ablation (0: skip them)
    seed: int = 30_000


def linear_layer_names(actor: nn.Module) -> list[str]:
    """Layers with weights, input to output: ``lstm``, ``head.0``, ``head.2``... (MLP: ``body.0``...)."""
    seq, prefix = (actor.head, "head") if actor.recurrent else (actor.body, "body")
    return (["lstm"] if actor.recurrent else []) + [f"{prefix}.{i}" for i, m in enumerate(seq)
                                                    if isinstance(m, nn.Linear)]


def reinitialised(actor: nn.Module, layer: str, seed: int = 0) -> nn.Module:
    """A copy of ``actor`` with ``layer`` re-initialised as training initialises it."""
    out = copy.deepcopy(actor)
    module = out.get_submodule(layer)
    torch.manual_seed(seed)
    with torch.no_grad():
        if isinstance(module, nn.LSTM):
            module.reset_parameters()
        else:
            last = layer == linear_layer_names(actor)[-1]
            nn.init.orthogonal_(module.weight, 0.01 if last else float(np.sqrt(2)))
            nn.init.zeros_(module.bias)
    return out.eval()


def weight_statistics(actor: nn.Module) -> list[dict]:
    """Per weight matrix: size, mean |w|, std, max |w|, spectral norm (largest singular value)."""
    rows = []
    for name, p in actor.named_parameters():
        if p.dim() < 2:
            continue
        w = p.detach()
        rows.append({"name": name, "shape": list(w.shape), "mean_abs": float(w.abs().mean()),
                     "std": float(w.std()), "max_abs": float(w.abs().max()),
                     "spectral_norm": float(torch.linalg.matrix_norm(w, ord=2)),
                     "frobenius": float(torch.linalg.matrix_norm(w))})
    return rows


def _score(actor: nn.Module, iv: Intervention, envs: EnvBatch, episodes: int, seed: int) -> dict:
    rec = record_episodes(ActorStepper(actor, iv), envs, episodes=episodes, seed=seed)
    final = rec.distance[np.arange(rec.episodes), rec.lengths - 1]
    return {"label": iv.label, "success_rate": float(rec.success.mean()),
            "final_distance_m": float(np.mean(final)), "episodes": int(episodes)}


def run_ablations(actor: nn.Module, envs: EnvBatch, settings: AblationSettings,
                  unit_weights: np.ndarray | None = None, progress=None) -> dict:
    """{"variants": [...], "units": [...] (LSTM)}: success rate and final error per variant, with the
    drop against the intact actor on the same episodes. ``progress(n)`` after every n episodes."""
    rng = np.random.default_rng(settings.seed)
    tick = progress or (lambda n: None)
    n, seed = settings.episodes, settings.seed
    intact = _score(actor, Intervention(label="intact"), envs, n, seed)
    tick(n)
    variants = []
    for layer in hidden_layer_names(actor):
        variants.append({"kind": "zero_layer", "layer": layer,
                         **_score(actor, Intervention(zero_layers=(layer,), label=f"zero {layer}"), envs, n, seed)})
        tick(n)
    for layer in linear_layer_names(actor):
        variants.append({"kind": "reinit_layer", "layer": layer,
                         **_score(reinitialised(actor, layer), Intervention(label=f"re-init {layer}"), envs, n, seed)})
        tick(n)
    units_out = []
    if actor.recurrent:
        hidden = actor.hidden
        strength = None
        if unit_weights is not None:
            strength = unit_weights[:hidden] + unit_weights[hidden:2 * hidden]  # h and c of each unit
            order = np.argsort(-strength)
            for k in settings.top_k:
                if k >= hidden:
                    continue
                top = tuple(int(u) for u in order[:k])
                rand = tuple(int(u) for u in rng.choice(hidden, k, replace=False))
                variants.append({"kind": "zero_top_units", "k": k, "units": list(top),
                                 **_score(actor, Intervention(zero_units=top, label=f"zero top-{k} probe units"),
                                          envs, n, seed)})
                variants.append({"kind": "zero_random_units", "k": k, "units": list(rand),
                                 **_score(actor, Intervention(zero_units=rand, label=f"zero {k} random units"),
                                          envs, n, seed)})
                tick(2 * n)
        if settings.unit_episodes > 0:
            base = _score(actor, Intervention(label="intact"), envs, settings.unit_episodes, seed)
            tick(settings.unit_episodes)
            for u in range(hidden):
                row = _score(actor, Intervention(zero_units=(u,), label=f"zero unit {u}"), envs,
                             settings.unit_episodes, seed)
                units_out.append({"unit": u, "success_drop": base["success_rate"] - row["success_rate"],
                                  "final_distance_change_m": row["final_distance_m"] - base["final_distance_m"],
                                  "probe_weight": float(strength[u]) if strength is not None else None})
                tick(settings.unit_episodes)
    for v in variants:
        v["success_drop"] = intact["success_rate"] - v["success_rate"]
        v["final_distance_change_m"] = v["final_distance_m"] - intact["final_distance_m"]
    return {"intact": intact, "variants": variants, "units": units_out,
            "unit_episodes": settings.unit_episodes if actor.recurrent else 0}


def ablation_steps(actor: nn.Module, settings: AblationSettings) -> int:
    """How many episodes :func:`run_ablations` runs (its progress ticks, for the progress bar)."""
    episodes = settings.episodes * (1 + len(hidden_layer_names(actor)) + len(linear_layer_names(actor)))
    if actor.recurrent:
        episodes += 2 * settings.episodes * sum(k < actor.hidden for k in settings.top_k)
        episodes += settings.unit_episodes * (actor.hidden + 1)
    return episodes
