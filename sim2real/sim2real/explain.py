"""``sim2real explain POLICY``: what a policy looks at, what its memory knows, which parts it needs.

The analyses live in :mod:`policies.explain` (torch, Captum, scikit-learn: the training extras);
this is the typed command around :func:`policies.explain.explain`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass(frozen=True)
class ExplainConfig:
    """Explain a policy: attribution through time (Captum), linear probes of its memory against the
    sampled dynamics, ablations and weight statistics; writes PNGs, explain.json, report.md and a
    self-contained report.html into --out."""

    policy: tyro.conf.Positional[str]
    """artifact folder (a shipped name, e.g. reach_lstm) or training checkpoint (.pt); an artifact without
    checkpoint.pt is explained through its ONNX weights (reconstructed, parity-checked)"""
    task: str | None = None
    """record episodes on this registered task (None: the one the policy was trained for)"""
    episodes: int = 200
    """randomized episodes per policy (probes, projections, attribution windows)"""
    out: Path | None = None
    """report folder (None: runs/explain/POLICY_NAME)"""
    randomization: str = "default"
    """dynamics randomization of the recorded episodes: a shipped name or a YAML path"""
    compare: tuple[str, ...] | None = None
    """policies recorded on the same episodes, side by side in the probes (None: the other shipped policies of
    the same task; `--compare` with no names: none)"""
    seed: int = 20_000
    """env seed of the first episode (episode i uses seed + i for every policy)"""
    lag_s: float = 0.5
    """attribution window: the action at t is explained by the observations of t - lag_s .. t"""
    windows: int = 64
    """attribution windows (spread over episodes and time) for the maps"""
    ablation_episodes: int = 50
    """episodes per ablation variant (0: no ablations)"""
    unit_episodes: int = 10
    """episodes per single-LSTM-unit ablation (0: skip the per-unit sweep)"""
    progress: bool = True
    """show a progress bar"""


def add_explain_command(subparsers) -> None:
    from sim2real.cli import add_typed_command
    add_typed_command(subparsers, "explain", ExplainConfig, run_explain,
                      help="interpretability report of a policy: attribution, memory probes, ablations")


def run_explain(args: ExplainConfig) -> int:
    from policies.explain import ExplainError, ExplainSettings, explain
    from policies.explain.ablation import AblationSettings
    from policies.explain.attribution import AttributionSettings
    from sim2real.training import resolve_policy

    if args.episodes < 10:
        print("sim2real explain: --episodes must be at least 10 (the probes cross-validate over episodes)",
              file=sys.stderr)
        return 2
    path = resolve_policy(args.policy)
    compare = None if args.compare is None else [resolve_policy(p) for p in args.compare]
    out = args.out or Path("runs") / "explain" / (path.stem if path.suffix in (".pt", ".onnx") else path.name)
    settings = ExplainSettings(
        episodes=args.episodes, randomization=args.randomization, seed=args.seed,
        attribution=AttributionSettings(lag_s=args.lag_s, windows=args.windows),
        ablation=(AblationSettings(episodes=args.ablation_episodes, unit_episodes=args.unit_episodes)
                  if args.ablation_episodes > 0 else None))
    try:
        summary = explain(path, out, compare=compare, task=args.task, settings=settings, progress=args.progress,
                          log=lambda line: print(line, file=sys.stderr))
    except (ExplainError, FileNotFoundError, ValueError) as exc:
        print(f"sim2real explain: {exc}", file=sys.stderr)
        return 2
    from policies.explain.report import reading
    for line in reading(summary):
        print(line)
    print(f"sim2real explain: report {out / 'report.html'} (figures, report.md, explain.json in {out}); "
          f"{summary['wall_time_s']:.0f} s")
    return 0

