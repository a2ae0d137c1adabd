"""``sim2real loop``: the SimOpt loop end to end, as the commands a user would type.

Each round runs, as separate processes (so every step is exactly the documented command):

1. ``sim2real real --policy P --episodes N --record RUN/round<k>/bag``: deploy the current
   policy on the arm emulator (the real-arm stand-in; ``--no-emulator`` for a real arm)
   through the real bridge, recording every episode; with ``--strikes M`` (push) also
   ``sim2real real --controller strike --episodes M --record RUN/round<k>/strike_bag``: scripted
   identification strikes after which the puck slides free (its friction shows);
2. ``sim2real calibrate --bags ... --prior D --policy P --out RUN/round<k>/calibrated.yaml``:
   SimOpt from the recorded episodes (all rounds' bags so far; the strike bags with
   ``--replay-bags``: replayed open loop, no policy drove them);
3. ``sim2real train --randomization RUN/round<k>/calibrated.yaml --init-from CKPT --export
   RUN/round<k>/policy``: retrain on the calibrated distribution, by default fine-tuning the
   deployed policy's weights (its artifact's ``checkpoint.pt``, or the previous round's
   training checkpoint; 2M steps), from scratch with ``--init-from none`` (8M steps);
4. score the previous and the retrained policy on the emulator (same goals) side by side.

The next round deploys the retrained policy and calibrates from its new distribution.
``--dry-run`` prints the command sequence without running it (the documented recipe).

Push recordings are calibrated with the shipped Push settings (``--settings push``: the
puck's physics, closed loop). ``--compare`` ends with **the transfer table**: the starting
policy is also fine-tuned on its own prior with the same budget and options, and every row
(the task's other zoo policies as baselines, the starting policy, its fine-tune on the prior,
its fine-tune on the calibration) is scored on the emulator on the same goals, without ROS
(``--eval-episodes``) and through the ROS graph (``--ros-episodes``, ``sim2real real``),
with Wilson 95% intervals; written to RUN/transfer.md and RUN/transfer.json.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class LoopConfig:
    """``sim2real loop``: deploy on the emulator, record, calibrate (SimOpt), retrain; repeat."""

    policy: str = "reach_lstm"
    """policy to start from (shipped name or artifact path)"""
    prior: str = "default"
    """the distribution that policy was trained under"""
    rounds: int = 1
    """loop rounds"""
    episodes: int = 5
    """recorded episodes per round"""
    episode_s: float | None = None
    """seconds per recorded episode (None: the task's training episode: 4 s Reach, 8 s Push)"""
    train_steps: int | None = None
    """env steps per retraining (None: 2M when fine-tuning, 8M from scratch)"""
    init_from: str = "auto"
    """weights to fine-tune: 'auto' (the policy artifact's checkpoint.pt, then each round's training checkpoint), 'none' (train from scratch) or a checkpoint path"""
    train_args: str = ""
    """extra `sim2real train` options, one quoted string given with '=' (--train-args='--num-envs 16')"""
    calibrate_args: str = ""
    """extra `sim2real calibrate` options, one quoted string given with '=' (--calibrate-args='--samples 64')"""
    eval_episodes: int = 100
    """emulator episodes per policy score"""
    emulator: bool = True
    """deploy on the arm emulator (--no-emulator: a real ros2_control arm)"""
    out: Path | None = None
    """run folder (None: runs/loop/<UTC time>)"""
    seed: int = 0
    """seed of the goals, the calibration and the training"""
    dry_run: bool = False
    """print the commands and exit"""
    compare: bool = False
    """end with the transfer table: also fine-tune the starting policy on the prior (same budget), score every row"""
    baselines: tuple[str, ...] | None = None
    """transfer table: baseline policies (None: the zoo's other policies of the task)"""
    ros_episodes: int = 10
    """transfer table: episodes per policy through the ROS graph (sim2real real; 0: skip)"""
    strikes: int = 0
    """push: also record this many identification strikes per round (sim2real real --controller strike: the puck slides free, which fixes its friction) and calibrate with them replayed open loop (--replay-bags)"""
    sample_actions: bool = False
    """deploy, record and score every policy with samples of its trained Gaussian (sim2real real --sample-actions) instead of its mean"""


def add_loop_command(subparsers) -> None:
    from sim2real.cli import add_typed_command  # noqa: PLC0415

    add_typed_command(subparsers, "loop", LoopConfig, run_loop, description=__doc__.split("\n\n", 1)[1],
                      help="deploy on the emulator, record, calibrate (SimOpt), retrain; repeat")


def _sim2real() -> list[str]:
    return [sys.executable, "-m", "sim2real.cli"]


@dataclass(frozen=True)
class RoundFiles:
    """Where round ``k`` of a loop run writes each of its files (the one place that names them):
    the deployed policy's recording, the identification strikes' recording (``--strikes``), the
    calibrated distribution, the retraining's run folder and the retrained policy's artifact."""

    bag: Path
    strike_bag: Path
    calibrated: Path
    train: Path
    policy: Path

    @classmethod
    def of(cls, out: Path, k: int) -> RoundFiles:
        d = out / f"round{k}"
        return cls(d / "bag", d / "strike_bag", d / "calibrated.yaml", d / "train", d / "policy")


def round_commands(args: LoopConfig, k: int, policy: str, prior: str, bags: list[str],
                   init: str | None = None, task: str = "reach",
                   strike_bags: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """(label, argv) of round ``k`` (1-based); ``init``: the checkpoint to fine-tune (None: scratch);
    ``task``: the starting policy's task (every round deploys and retrains on it); ``strike_bags``:
    the earlier rounds' strike recordings (``--strikes``)."""
    files = RoundFiles.of(args.out, k)
    bag, calibrated = files.bag, files.calibrated
    deploy = [*_sim2real(), "real", "--policy-dir", str(Path(policy).parent), "--policy", Path(policy).name,
              "--task", task, "--episodes", str(args.episodes),
              "--episode-s", f"{episode_seconds(args, task):g}", "--seed", str(args.seed + k), "--record", str(bag)]
    if not args.emulator:
        deploy.append("--no-emulator")
    if args.sample_actions:
        deploy.append("--sample-actions")
    commands = [("deploy + record", deploy)]
    replay = list(strike_bags or [])
    if args.strikes > 0:
        strike_bag = files.strike_bag
        commands.append(("identification strikes", [
            *_sim2real(), "real", "--task", task, "--controller", "strike", "--episodes", str(args.strikes),
            "--episode-s", f"{episode_seconds(args, task):g}", "--seed", str(args.seed + k),
            "--record", str(strike_bag), *([] if args.emulator else ["--no-emulator"])]))
        replay.append(str(strike_bag))
    calibrate = [*_sim2real(), "calibrate", "--bags", *bags, str(bag), *(["--replay-bags", *replay] if replay else []),
                 "--prior", prior, "--policy", policy,
                 "--out", str(calibrated), "--seed", str(args.seed), *shlex.split(args.calibrate_args)]
    if task == "push" and "--settings" not in args.calibrate_args:
        calibrate += ["--settings", "push"]  # the puck's physics, closed loop (the shipped Push settings)
    train = train_command(args, f"loop_round{k}", task, str(calibrated), files.train, files.policy, init)
    return [*commands, ("calibrate", calibrate), ("retrain", train)]


def train_command(args: LoopConfig, name: str, task: str, randomization: str, out: Path, export: Path,
                  init: str | None) -> list[str]:
    """The retraining command: fine-tune ``init`` (None: from scratch) on ``randomization``."""
    steps = args.train_steps or (2_000_000 if init else 8_000_000)
    return [*_sim2real(), "train", "--name", name, "--task", task, "--randomization", randomization,
            "--total-env-steps", str(steps), "--seed", str(args.seed), "--out", str(out),
            "--export", str(export), *(["--init-from", init] if init else []), *shlex.split(args.train_args)]


def episode_seconds(args: LoopConfig, task: str) -> float:
    if args.episode_s is not None:
        return float(args.episode_s)
    from sim_bridge.profile import load_profile  # noqa: PLC0415
    from sim_bridge.tasks import make_task  # noqa: PLC0415

    return make_task(task).max_episode_steps * load_profile("panda_like").control_period_s


def default_baselines(policy: str, task: str) -> list[str]:
    """The zoo's policies of ``task`` other than ``policy`` (push: push_lstm_nominal, push_mlp, ...)."""
    from policies.manifest import load_manifest, shipped_zoo  # noqa: PLC0415

    zoo = shipped_zoo()
    return [str(d) for d in sorted(zoo.iterdir()) if (d / "manifest.json").is_file()
            and d.resolve() != Path(policy).resolve() and load_manifest(d).task_name == task]


def run_loop(args: LoopConfig) -> int:
    from calibration.job import resolve_policy_path  # noqa: PLC0415

    if args.rounds < 1 or args.episodes < 1 or (args.train_steps is not None and args.train_steps < 1):
        print("sim2real loop: --rounds, --episodes and --train-steps must be >= 1", file=sys.stderr)
        return 2
    if args.strikes < 0:
        print("sim2real loop: --strikes must be >= 0", file=sys.stderr)
        return 2
    if args.out is None:
        args = replace(args, out=Path("runs/loop") / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    if not args.dry_run:
        if args.out.exists() and any(args.out.iterdir()):
            print(f"sim2real loop: {args.out} exists and is not empty", file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
    from policies.manifest import load_manifest  # noqa: PLC0415

    policy, prior, bags, strike_bags = str(resolve_policy_path(args.policy)), args.prior, [], []
    task = load_manifest(policy).task_name
    if args.strikes and task != "push":
        print(f"sim2real loop: --strikes needs an object to strike (push); {Path(policy).name} is a {task} policy",
              file=sys.stderr)
        return 2
    if args.init_from == "none":
        init = None
    elif args.init_from == "auto":
        shipped = Path(policy) / "checkpoint.pt"
        init = str(shipped) if shipped.is_file() else None
        if init is None:
            print(f"sim2real loop: {policy} ships no checkpoint.pt; retraining from scratch", flush=True)
    else:
        init = args.init_from
    start, start_init = policy, init
    scores = []
    for k in range(1, args.rounds + 1):
        steps = round_commands(args, k, policy, prior, bags, init, task, strike_bags)
        for label, cmd in steps:
            print(f"\n== round {k}: {label}\n$ {shlex.join(cmd)}", flush=True)
            if args.dry_run:
                continue
            rc = subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode
            if rc != 0:
                print(f"sim2real loop: round {k} {label} failed (exit {rc}); stopping", file=sys.stderr)
                return 1
        if args.dry_run:
            break
        files = RoundFiles.of(args.out, k)
        bags.append(str(files.bag))
        if args.strikes > 0:
            strike_bags.append(str(files.strike_bag))
        retrained = str(files.policy)
        if args.eval_episodes > 0 and args.emulator:
            print(f"\n== round {k}: emulator score ({args.eval_episodes} episodes, same goals)", flush=True)
            before = emulator_score(args, policy, f"before ({Path(policy).name})")
            after = emulator_score(args, retrained, f"round {k} retrained")
            for s in (before, after):
                print("  " + s.line(), flush=True)
            scores.append((k, before, after))
        policy, prior = retrained, str(files.calibrated)
        if init is not None:
            init = str(files.train / "checkpoints" / "latest.pt")
    rows = None
    if args.compare:
        on_prior = args.out / "prior_finetune"
        cmd = train_command(args, "loop_prior_finetune", task, args.prior, on_prior / "train", on_prior / "policy",
                            start_init)
        print(f"\n== transfer table: the same retraining on the prior\n$ {shlex.join(cmd)}", flush=True)
        if not args.dry_run:
            rc = subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode
            if rc != 0:
                print(f"sim2real loop: the retraining on the prior failed (exit {rc}); stopping", file=sys.stderr)
                return 1
            baselines = list(args.baselines) if args.baselines is not None else default_baselines(start, task)
            rows = [(Path(b).name, str(resolve_policy_path(b))) for b in baselines]
            rows += [(f"{Path(start).name} (prior)", start), (f"{Path(start).name} fine-tuned on the prior",
                                                             str(on_prior / "policy")),
                     (f"{Path(start).name} fine-tuned on the calibration", policy)]
            rows = transfer_table(args, rows, task, paired=(
                (f"{Path(start).name} fine-tuned on the calibration", f"{Path(start).name} fine-tuned on the prior"),
                (f"{Path(start).name} fine-tuned on the prior", f"{Path(start).name} (prior)")))
    if args.dry_run:
        print("\n(dry run; later rounds repeat with the retrained policy and the calibrated prior)")
        return 0
    print(f"\nsim2real loop: {args.rounds} round(s) in {args.out}; final policy {policy}, distribution {prior}")
    for k, before, after in scores:
        print(f"  round {k}: {100 * before.rate:.1f}% -> {100 * after.rate:.1f}% on the emulator")
    if rows:
        print("\n" + (args.out / "transfer.md").read_text())
    return 0


def emulator_score(args: LoopConfig, policy: str, label: str):
    """``policy`` on the arm emulator without ROS: ``--eval-episodes`` goals of the run's score seed
    (the same for every policy), with its mean action or, with ``--sample-actions``, samples."""
    from calibration.transfer import emulator_success  # noqa: PLC0415

    return emulator_success(policy, args.eval_episodes, seed=args.seed + 1000, label=label,
                            sample_actions=args.sample_actions)


def transfer_table(args: LoopConfig, rows: list[tuple[str, str]], task: str,
                   paired: tuple[tuple[str, str], ...] = ()) -> list[dict]:
    """Score each (label, policy) on the emulator on the same goals, without ROS and through the
    ROS graph; write RUN/transfer.md and RUN/transfer.json; returns the rows. ``paired``: pairs of
    labels (A, B) compared on the same goals without ROS with McNemar's exact test (the episodes
    only one of them solved), which detects smaller differences than two overlapping intervals."""
    import json  # noqa: PLC0415

    from policies.evaluate import mcnemar_exact  # noqa: PLC0415
    from sim_bridge.episode import wilson_interval  # noqa: PLC0415

    def cell(successes, n):
        if not n:
            return "-"
        lo, hi = wilson_interval(successes, n)
        return f"{100 * successes / n:.1f}% [{100 * lo:.0f}, {100 * hi:.0f}] ({successes}/{n})"

    out = []
    for label, policy in rows:
        row = {"label": label, "policy": policy}
        if args.eval_episodes > 0:
            score = emulator_score(args, policy, label)
            row["emulator"] = {"successes": score.successes, "episodes": score.episodes,
                               "mean_final_error_m": score.mean_final_error_m, "per_episode": list(score.per_episode)}
            print("  without ROS: " + score.line(), flush=True)
        if args.ros_episodes > 0 and args.emulator:
            result = args.out / "transfer_ros" / f"{len(out):02d}.json"
            cmd = [*_sim2real(), "real", "--policy-dir", str(Path(policy).parent), "--policy", Path(policy).name,
                   "--task", task, "--episodes", str(args.ros_episodes), "--episode-s",
                   f"{episode_seconds(args, task):g}", "--seed", str(args.seed + 1000), "--json", str(result),
                   *(["--sample-actions"] if args.sample_actions else [])]
            print(f"$ {shlex.join(cmd)}", flush=True)
            if subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode == 0:
                run = json.loads(result.read_text())["runs"][0]
                row["ros"] = {"successes": run["successes"], "episodes": len(run["episodes"])}
            else:
                row["ros"] = {"error": f"sim2real real failed; see its output above ({shlex.join(cmd[2:5])} ...)"}
        out.append(row)
    ros_n, emu_n = args.ros_episodes if args.emulator else 0, args.eval_episodes
    lines = [f"Transfer to the arm emulator (hidden arm and {task} physics): in each column the same goals for "
             f"every row (seed {args.seed + 1000}; the ROS graph's bridge draws its own sequence); Wilson 95% "
             "intervals" + ("; every policy acts with samples of its trained Gaussian (--sample-actions), not "
                            "its mean" if args.sample_actions else "") + ".", "",
             "| policy | emulator, no ROS | emulator, through ROS |", "|---|---|---|"]
    for row in out:
        emu = row.get("emulator") or {}
        ros = row.get("ros") or {}
        lines.append(f"| {row['label']} | {cell(emu.get('successes', 0), emu.get('episodes', 0)) if emu_n else '-'} | "
                     f"{ros.get('error') or (cell(ros.get('successes', 0), ros.get('episodes', 0)) if ros_n else '-')} |")
    by_label = {row["label"]: (row.get("emulator") or {}).get("per_episode") for row in out}
    comparisons = []
    for a, b in paired:
        if by_label.get(a) and by_label.get(b):
            cmp = {"a": a, "b": b, **mcnemar_exact(by_label[a], by_label[b])}
            comparisons.append(cmp)
            if len(comparisons) == 1:
                lines += ["", "Paired on the same goals without ROS (McNemar's exact test on the goals only one solved):"]
            lines.append(f"- {a}: {cmp['a_successes']}/{cmp['episodes']} against {b}: {cmp['b_successes']}/"
                         f"{cmp['episodes']}; solved only by the first {cmp['only_a']}, only by the second "
                         f"{cmp['only_b']}; p = {cmp['mcnemar_exact_p']:.3g}")
    (args.out / "transfer.md").write_text("\n".join(lines) + "\n")
    (args.out / "transfer.json").write_text(json.dumps({"task": task, "seed": args.seed + 1000,
                                                        "sample_actions": args.sample_actions, "rows": out,
                                                        "paired": comparisons}, indent=2))
    return out
