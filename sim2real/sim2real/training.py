"""``sim2real train | eval | export``: the policy subcommands (registered by entry points)."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from functools import partial
from pathlib import Path


def add_train_command(subparsers) -> None:
    from policies.config import add_arguments
    p = subparsers.add_parser("train", help="train a policy with LSTM PPO under dynamics randomization",
                              description="Train with PPO; every option is a field of policies.config.TrainConfig. "
                                          "Writes runs/NAME/ (config.json, progress.csv, checkpoints/latest.pt).",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest.pt")
    p.add_argument("--export", type=Path, default=None,
                   help="after training, export to this artifact folder and evaluate it")
    p.add_argument("--json", type=Path, default=None, help="write the final training row (+ eval) as JSON")
    p.set_defaults(func=run_train)


def run_train(args) -> int:
    from policies.config import from_args
    from policies.train import Trainer
    cfg = from_args(args)
    out = args.out or Path("runs") / cfg.name
    try:
        trainer = Trainer(cfg, out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"sim2real train: {exc}", file=sys.stderr)
        return 2
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
        command = "sim2real " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        result["evaluation"] = export_and_evaluate(out / "checkpoints" / "latest.pt", args.export,
                                                   cfg.eval_episodes, command=command)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


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


def export_and_evaluate(checkpoint: Path, artifact: Path, episodes: int, command: str = "") -> dict:
    from policies.evaluate import evaluate, policy_task, runtime_policy
    from policies.export import export_checkpoint, update_evaluation
    extra = training_milestones(Path(checkpoint).parent.parent / "progress.csv")
    if command:
        extra["command"] = command
    out = export_checkpoint(checkpoint, artifact, training_extra=extra)
    print(f"exported {out} (torch/onnxruntime parity checked)")
    results = {}
    task = policy_task(str(out))
    for randomization in ("none", "default"):
        res = evaluate(partial(runtime_policy, str(out)), episodes=episodes, randomization=randomization, task=task)
        print(res.line())
        results[randomization] = res.to_dict()
    update_evaluation(out, results)
    return results


def add_export_command(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX + manifest (parity-checked)")
    p.add_argument("checkpoint", type=Path, help="training checkpoint (runs/NAME/checkpoints/latest.pt)")
    p.add_argument("--out", type=Path, required=True, help="artifact folder, e.g. policies/policies/zoo/NAME")
    p.add_argument("--eval-episodes", type=int, default=0, help="also evaluate the artifact (0: skip)")
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    if args.eval_episodes > 0:
        export_and_evaluate(args.checkpoint, args.out, args.eval_episodes)
    else:
        from policies.export import export_checkpoint
        print(f"exported {export_checkpoint(args.checkpoint, args.out)} (torch/onnxruntime parity checked)")
    return 0


def add_eval_command(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a policy artifact (or checkpoint) on its task")
    p.add_argument("policy", help="artifact folder or .onnx file, a shipped name (see policies/zoo), "
                                  "or a training checkpoint (.pt)")
    p.add_argument("--episodes", type=int, default=100, help="episodes per setting")
    p.add_argument("--randomization", action="append", default=None,
                   help="shipped name or YAML path; repeat for several (default: none and default)")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--seed", type=int, default=10_000, help="first env seed")
    p.add_argument("--task", default=None,
                   help="evaluate on this registered task (default: the one the policy was trained for)")
    p.add_argument("--json", type=Path, default=None, help="write results as JSON")
    p.set_defaults(func=run_eval)


def resolve_policy(text: str) -> Path:
    from policies.manifest import find_policy
    try:
        return find_policy(text)
    except FileNotFoundError as exc:
        raise SystemExit(f"sim2real: {exc}") from None


def run_eval(args) -> int:
    from policies.evaluate import checkpoint_policy, evaluate, policy_task, runtime_policy
    from sim_bridge.tasks import UnknownTaskError, get_task
    path = resolve_policy(args.policy)
    factory = partial(checkpoint_policy if path.suffix == ".pt" else runtime_policy, str(path))
    task = policy_task(str(path))
    if args.task is not None and args.task != task["name"]:
        try:
            get_task(args.task)
        except UnknownTaskError as exc:
            raise SystemExit(f"sim2real eval: {exc}") from None
        task = {"name": args.task}
    print(f"sim2real eval: task '{task['name']}'", flush=True)
    results = {}
    for randomization in args.randomization or ["none", "default"]:
        res = evaluate(factory, episodes=args.episodes, randomization=randomization, workers=args.workers,
                       seed=args.seed, task=task)
        print(res.line(), flush=True)
        results[randomization] = res.to_dict()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
