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
    emulator_episodes: int = 0
    """also run the policy on the arm emulator for this many episodes and explain the reality gap: attribution
    there vs in simulation, the memory's estimate of each parameter against the emulator's hidden values
    (artifact folders only: the emulator runs the deployed ONNX runtime)"""
    bags: tuple[Path, ...] = ()
    """also explain episodes recorded in these rosbag2 folders (sim2real real --record / sim2real record)"""
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
        real = _recorded_episodes(args, path)
        summary = explain(path, out, compare=compare, task=args.task, settings=settings, progress=args.progress,
                          log=lambda line: print(line, file=sys.stderr), real=real)
    except (ExplainError, FileNotFoundError, ValueError) as exc:
        print(f"sim2real explain: {exc}", file=sys.stderr)
        return 2
    from policies.explain.report import reading
    for line in reading(summary):
        print(line)
    print(f"sim2real explain: report {out / 'report.html'} (figures, report.md, explain.json in {out}); "
          f"{summary['wall_time_s']:.0f} s")
    return 0



def _recorded_episodes(args: ExplainConfig, path: Path) -> dict | None:
    """The recorded episodes of --bags or --emulator-episodes, in the profile's joint order."""
    if not args.bags and args.emulator_episodes <= 0:
        return None
    if args.bags and args.emulator_episodes > 0:
        raise ValueError("give --bags or --emulator-episodes, not both")
    from calibration.episodes import emulator_episodes, load_reference_episodes
    from policies.explain.loading import load_explained_policy
    from sim_bridge.profile import load_profile

    policy = load_explained_policy(path)
    steps = int(policy.task.get("max_episode_steps") or 200) + 1  # T joint states -> T - 1 actions
    if args.bags:
        from real_bridge.bagload import BagLoadError
        try:
            episodes = load_reference_episodes([str(b) for b in args.bags], load_profile(policy.robot_profile),
                                               max_steps=steps)
        except BagLoadError as exc:
            raise ValueError(str(exc)) from None
        for line in getattr(episodes, "skipped", []):
            print(f"sim2real explain: skipped {line}", file=sys.stderr)
        source, hidden = f"{len(args.bags)} bag(s)", None
    else:
        if path.suffix == ".pt" or not (path / "manifest.json").is_file():
            raise ValueError("--emulator-episodes needs an artifact folder (the emulator runs the ONNX runtime); "
                             f"{path} is a checkpoint: export it first (sim2real export)")
        from real_bridge.emulator import ArmEmulator
        emulator = ArmEmulator()
        episodes = emulator_episodes(path, args.emulator_episodes, steps=steps, seed=args.seed, emulator=emulator)
        source, hidden = "arm emulator", emulator.hidden_dynamics()
    return {"source": source, "hidden": hidden,
            "episodes": [{"position": e.position, "velocity": e.velocity, "command": e.command, "goal": e.goal}
                         for e in episodes]}
