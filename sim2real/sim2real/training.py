"""``sim2real train | eval | export``: the policy subcommands, one typed config each."""
from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

import tyro

from policies.config import TrainConfig


@dataclass(frozen=True)
class TrainCommand:
    """Train with PPO; the options are the fields of policies.config.TrainConfig, plus where the run goes.
    Writes runs/NAME/ (config.json, command.txt, progress.csv, tensorboard/, checkpoints/latest.pt and
    best.pt)."""

    config: Annotated[TrainConfig, tyro.conf.arg(name="")] = field(default_factory=TrainConfig)
    out: Path | None = None
    """run folder (None: runs/NAME)"""
    resume: bool = False
    """continue from OUT/checkpoints/latest.pt"""
    export: Path | None = None
    """after training, export to this artifact folder and evaluate it"""
    export_checkpoint: Literal["latest", "best"] = "latest"
    """--export: the final checkpoint, or checkpoints/best.pt (best windowed training success)"""
    json: Path | None = None
    """write the final training row (+ eval) as JSON"""


@dataclass(frozen=True)
class ExportConfig:
    """Export a training checkpoint to ONNX + manifest (parity-checked against torch)."""

    checkpoint: tyro.conf.Positional[Path]
    """training checkpoint (runs/NAME/checkpoints/latest.pt)"""
    out: Path
    """artifact folder, e.g. policies/policies/zoo/NAME"""
    eval_episodes: int = 0
    """also evaluate the artifact (0: skip); the results go into its manifest"""
    randomization: tuple[str, ...] = ("none", "default")
    """--eval-episodes: randomizations to evaluate under (shipped names or YAML paths; e.g. add push_hard for a held-out one)"""


@dataclass(frozen=True)
class EvalConfig:
    """Evaluate a policy on its task: success rate (Wilson 95%), return and final distance."""

    policy: tyro.conf.Positional[str]
    """artifact folder or .onnx file, a shipped name (see policies/zoo), or a training checkpoint (.pt)"""
    episodes: int = 100
    """episodes per randomization"""
    randomization: tuple[str, ...] = ("none", "default")
    """randomizations to evaluate under: shipped names or YAML paths"""
    workers: int = 2
    """worker processes (--backend ray: Ray tasks, one chunk of the episodes each)"""
    backend: Literal["local", "ray"] = "local"
    """where the episodes run: 'local' (worker processes) or 'ray' (Ray tasks; the same results)"""
    ray_address: str | None = None
    """--backend ray: the cluster to join (host:port; None: RAY_ADDRESS if set, else a Ray instance on this machine)"""
    seed: int = 10_000
    """first env seed"""
    task: str | None = None
    """evaluate on this registered task (None: the one the policy was trained for)"""
    json: Path | None = None
    """write results as JSON"""
    sample_actions: bool = False
    """act with samples of the policy's Gaussian (its mean + its trained std, seeded per episode) instead of the deterministic mean: what PPO optimised. Needs the std: a manifest with action_std (the export writes it), an artifact that ships checkpoint.pt, or a training checkpoint (.pt)"""
    against: str | None = None
    """a second policy (same forms as POLICY) evaluated on the same seeded episodes: prints both and McNemar's exact test on the episodes only one solved (paired: detects smaller differences than two intervals); --json adds the comparison"""


def add_train_command(subparsers) -> None:
    from sim2real.cli import add_typed_command
    add_typed_command(subparsers, "train", TrainCommand, run_train,
                      help="train a policy with LSTM PPO under dynamics randomization")


def add_export_command(subparsers) -> None:
    from sim2real.cli import add_typed_command
    add_typed_command(subparsers, "export", ExportConfig, run_export,
                      help="export a checkpoint to ONNX + manifest (parity-checked)")


def add_eval_command(subparsers) -> None:
    from sim2real.cli import add_typed_command
    add_typed_command(subparsers, "eval", EvalConfig, run_eval, help="evaluate a policy artifact (or checkpoint) on its task")


def run_train(args: TrainCommand) -> int:
    from policies.train import Trainer
    cfg = args.config
    out = args.out or Path("runs") / cfg.name
    try:
        trainer = Trainer(cfg, out)
    except (ValueError, FileNotFoundError, ImportError) as exc:  # ImportError: --backend ray without Ray
        print(f"sim2real train: {exc}", file=sys.stderr)
        return 2
    command = "sim2real " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out.mkdir(parents=True, exist_ok=True)
    with (out / COMMAND_FILE).open("a") as handle:   # a resumed run appends its command
        handle.write(command + "\n")
    try:
        if args.resume:
            trainer.load_checkpoint(out / "checkpoints" / "latest.pt")
            print(f"resumed {out} at iteration {trainer.iteration} ({trainer.env_steps} env steps)")
        final = trainer.train()
    finally:
        trainer.close()
    print(f"trained {cfg.name}: {final.get('env_steps', 0)} env steps in {final.get('wall_time_s', 0):.0f} s; "
          f"checkpoint {out / 'checkpoints' / 'latest.pt'}")
    result = {"train": final}
    if args.export:
        result["evaluation"] = export_and_evaluate(out / "checkpoints" / f"{args.export_checkpoint}.pt",
                                                   args.export, cfg.eval_episodes)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


COMMAND_FILE = "command.txt"


def training_milestones(progress_csv: Path, threshold: float = 0.95) -> dict:
    """When the run's (stochastic) training success rate first reached ``threshold``."""
    import csv
    if not progress_csv.is_file():
        return {}
    with progress_csv.open() as handle:
        for row in csv.DictReader(handle):
            if float(row["success_rate"]) >= threshold:
                return {f"first_training_success_{int(threshold * 100)}pct": {
                    "iteration": int(row["iteration"]), "env_steps": int(row["env_steps"]),
                    "wall_time_s": float(row["wall_time_s"])}}
    return {}


def export_and_evaluate(checkpoint: Path, artifact: Path, episodes: int,
                        randomizations: tuple[str, ...] = ("none", "default")) -> dict:
    """Export ``checkpoint`` (the manifest records the run's command.txt, if any) and evaluate it
    under ``randomizations``; the results go into the manifest."""
    from policies.evaluate import evaluate, policy_action_kwargs, policy_robot, policy_task, runtime_policy
    from policies.export import export_checkpoint, update_evaluation
    run_dir = Path(checkpoint).parent.parent
    extra = training_milestones(run_dir / "progress.csv")
    if (run_dir / COMMAND_FILE).is_file():   # the command(s) that trained it
        extra["command"] = " && ".join(line for line in (run_dir / COMMAND_FILE).read_text().splitlines()
                                       if line.strip())
    out = export_checkpoint(checkpoint, artifact, training_extra=extra)
    print(f"exported {out} (torch/onnxruntime parity checked)")
    results = {}
    task, robot = policy_task(str(out)), policy_robot(str(checkpoint))
    for randomization in randomizations:
        res = evaluate(partial(runtime_policy, str(out)), episodes=episodes, randomization=randomization, task=task,
                       robot_profile=robot, env_kwargs=policy_action_kwargs(str(out)))
        print(res.line())
        results[randomization] = res.to_dict()
    update_evaluation(out, results)
    return results


def run_export(args: ExportConfig) -> int:
    if args.eval_episodes > 0:
        export_and_evaluate(args.checkpoint, args.out, args.eval_episodes, randomizations=args.randomization)
    else:
        from policies.export import export_checkpoint
        print(f"exported {export_checkpoint(args.checkpoint, args.out)} (torch/onnxruntime parity checked)")
    return 0


def resolve_policy(text: str) -> Path:
    from policies.manifest import find_policy
    try:
        return find_policy(text)
    except FileNotFoundError as exc:
        raise SystemExit(f"sim2real: {exc}") from None


def _eval_policy_factory(path: Path, sample_actions: bool):
    """What each evaluation worker builds for ``path``: the ONNX runtime for an artifact, the
    torch actor for a training checkpoint; with ``sample_actions``, their Gaussian (the
    std from the manifest's action_std, else the artifact's checkpoint.pt). None (after saying
    why) when sampling is asked of a policy with no std anywhere."""
    from policies.evaluate import checkpoint_policy, runtime_policy
    if path.suffix == ".pt":
        return partial(checkpoint_policy, str(path), sample=sample_actions)
    if not sample_actions:
        return partial(runtime_policy, str(path))
    from policies.manifest import load_manifest, manifest_path_for
    weights = (path if path.is_dir() else path.parent) / "checkpoint.pt"
    if load_manifest(manifest_path_for(path)).action_std is not None:
        return partial(runtime_policy, str(path), sample=True)
    if weights.is_file():
        return partial(checkpoint_policy, str(weights), sample=True)
    print(f"sim2real eval: --sample-actions needs the policy's action std: its manifest records no "
          f"action_std and there is no {weights} (re-export it, or give a training checkpoint .pt)",
          file=sys.stderr)
    return None


def run_eval(args: EvalConfig) -> int:
    from policies.evaluate import (evaluate, paired_comparison, paired_line, policy_action_kwargs, policy_robot,
                                   policy_task)
    from sim_bridge.tasks import UnknownTaskError, get_task
    path = resolve_policy(args.policy)
    factory = _eval_policy_factory(path, args.sample_actions)
    other = resolve_policy(args.against) if args.against else None
    other_factory = _eval_policy_factory(other, args.sample_actions) if other is not None else None
    if factory is None or (other is not None and other_factory is None):
        return 2
    task, robot = policy_task(str(path)), policy_robot(str(path))
    other_trained = (policy_task(str(other))["name"], policy_robot(str(other))) if other is not None else None
    if other_trained is not None and other_trained != (task["name"], robot):
        print(f"sim2real eval: --against {args.against} was trained for task {other_trained[0]!r} on "
              f"{other_trained[1]!r}; {args.policy} for {task['name']!r} on {robot!r}: a paired "
              f"comparison needs the same episodes", file=sys.stderr)
        return 2
    if args.task is not None and args.task != task["name"]:
        try:
            get_task(args.task)
        except UnknownTaskError as exc:
            raise SystemExit(f"sim2real eval: {exc}") from None
        task = {"name": args.task}
    print(f"sim2real eval: task '{task['name']}', robot '{robot}'"
          + (", sampled actions (mean + the policy's std)" if args.sample_actions else ""), flush=True)
    if args.backend == "ray":  # one Ray session for every randomization
        from policies.ray_backend import connect
        try:
            connect(args.ray_address)
        except ImportError as exc:
            raise SystemExit(f"sim2real eval: {exc}") from None
    results = {}
    for randomization in args.randomization:
        try:
            res = evaluate(factory, episodes=args.episodes, randomization=randomization, workers=args.workers,
                           seed=args.seed, task=task, robot_profile=robot, backend=args.backend,
                           ray_address=args.ray_address, env_kwargs=policy_action_kwargs(str(path)))
        except ImportError as exc:  # --backend ray without Ray
            raise SystemExit(f"sim2real eval: {exc}") from None
        print(res.line(), flush=True)
        results[randomization] = res.to_dict()
        if other_factory is not None:
            base = evaluate(other_factory, episodes=args.episodes, randomization=randomization, workers=args.workers,
                            seed=args.seed, task=task, robot_profile=robot, backend=args.backend,
                            ray_address=args.ray_address, env_kwargs=policy_action_kwargs(str(other)))
            print(base.line() + f"  <- {args.against}", flush=True)
            cmp = paired_comparison(res, base)
            print(paired_line(args.policy, args.against, cmp), flush=True)
            results[randomization]["against"] = {"policy": args.against, **base.to_dict(), "paired": cmp}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
