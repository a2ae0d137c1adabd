"""Benchmark: training throughput of our LSTM PPO trainer against sb3-contrib's RecurrentPPO.

Run as ``sim2real bench train`` (or ``python bench/train.py``). In one run, one after the
other in this process (same machine, same load conditions), it measures

1. ours: ``policies.train.Trainer`` with the default ``TrainConfig`` (LSTM actor,
   asymmetric critic, 32 envs in 2 worker processes, 200 steps per env per iteration,
   default randomization). One warm-up iteration, then ``--iterations`` (15) timed ones;
   throughput = env steps / summed (collect + update) time of the timed iterations. The
   end-to-end wall clock around ``Trainer.train`` (CSV log, checkpoint saves included) is
   printed too.
2. baseline: ``sb3_contrib.RecurrentPPO("MlpLstmPolicy")`` on
   ``gym.make("Sim2Real/Reach-v0", randomization="default")`` (Monitor-wrapped, as sb3's
   ``make_vec_env`` does), 8 envs, CPU, ``torch.set_num_threads(2)``, once in a
   ``SubprocVecEnv`` (start method "spawn", like our vector env) and once in a
   ``DummyVecEnv``; the faster one is the baseline, both are printed. RecurrentPPO keeps
   all its default hyperparameters (n_steps=128, batch_size=128, n_epochs=10, LSTM 256
   for actor and a separate one for the critic, ...): with 8 envs one rollout+update
   cycle is 1024 env steps, so ``--sb3-steps`` (16384) gives 16 timed cycles. The first
   cycle (torch warm-up) is excluded: a callback records the time at each rollout start,
   and the timed span runs from the start of the second rollout to the end of ``learn()``.
   Throughput = env steps / that wall time (rollouts, updates and sb3's logging).
   RecurrentPPO's cycles differ a lot in cost (the per-cycle range is printed): its LSTM
   runs the whole padded sequence in one call only when a minibatch holds no episode
   start, otherwise it loops over the time steps in Python. The 8 envs reset in sync and
   episodes last 200 steps, so that depends on where the episode boundaries fall in each
   128-step rollout (a 25-cycle pattern; 6 of the 16 default timed cycles, 9 of 25, are
   fast ones, so 16 cycles are representative).

It prints env steps/s of both and the ratio ours / sb3 (target: >= 10x), plus the split
into rollout collection and update time for each, since the two differ in algorithm
settings as well as implementation: per env step, sb3's defaults do about 25x more
gradient steps (10 epochs x 8 minibatches per 1024 steps vs 5 x 4 per 6400) on a larger
network (LSTM 256, twice, vs one LSTM 64 + MLP critic). ``--sb3-lstm-hidden 64`` narrows
the network gap. The collect-only numbers compare the rollout machinery alone.

``--task push`` runs both on ``Sim2Real/Push-v0`` (its default randomization, push_default;
ours with 400 steps per env per iteration, one Push episode, and the LSTM width
``--hidden``, 128 as push_lstm was trained).

Finally, if a training log exists (``--progress-csv``, default runs/TASK_lstm/progress.csv),
it prints the wall time and env steps of the first iteration whose training success rate
(stochastic policy, episodes of that iteration's rollout) reached the threshold (0.95 for
reach, 0.85 for push).

Needs requirements/bench.txt (``make bench`` installs it). Numbers depend on the machine
and on what else runs on it; run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

_BENCH_DIR = str(Path(__file__).resolve().parent)
sys.path.insert(0, _BENCH_DIR)  # bench/ helpers, also under runpy
from _machine import machine_info, machine_line

sys.path.remove(_BENCH_DIR)  # bench/'s module names (env, policy, train, ...) shadow nothing afterwards

REPO_ROOT = Path(__file__).resolve().parents[1]
EPISODE_STEPS = {"reach": 200, "push": 400}  # steps per env per iteration: one episode of the task
SUCCESS_THRESHOLD = {"reach": 0.95, "push": 0.85}


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux/macOS
        return "n/a"


# --- ours ------------------------------------------------------------------------------------
def bench_ours(iterations: int, warmup: int, task: str = "reach", hidden: int | None = None) -> dict:
    from policies.config import TrainConfig
    from policies.train import Trainer

    cfg = TrainConfig(task=task, num_steps=EPISODE_STEPS[task])
    if hidden:
        cfg.hidden = hidden
    steps_per_iter = cfg.num_envs * cfg.num_steps
    cfg.total_env_steps = (warmup + iterations) * steps_per_iter
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        trainer = Trainer(cfg, Path(tmp), quiet=True)
        try:
            if warmup:
                trainer.train(stop_after_iterations=warmup)
            start = time.perf_counter()
            trainer.train(stop_after_iterations=iterations)
            end_to_end = time.perf_counter() - start
            rows = trainer.history[warmup:]
        finally:
            trainer.close()
    steps = sum(steps_per_iter for _ in rows)
    collect = sum(r["collect_s"] for r in rows)
    update = sum(r["update_s"] for r in rows)
    return {"env_steps": steps, "iterations": len(rows), "steps_per_iteration": steps_per_iter,
            "collect_s": collect, "update_s": update,
            "steps_per_s": steps / (collect + update), "collect_steps_per_s": steps / collect,
            "median_iteration_steps_per_s": statistics.median(r["steps_per_s"] for r in rows),
            "end_to_end_s": end_to_end, "end_to_end_steps_per_s": steps / end_to_end,
            "per_iteration_steps_per_s": [r["steps_per_s"] for r in rows],
            "config": {k: getattr(cfg, k) for k in ("architecture", "hidden", "num_envs", "num_workers",
                                                    "num_steps", "seq_len", "update_epochs",
                                                    "num_minibatches", "randomization", "torch_threads",
                                                    "task")}}


# --- sb3-contrib RecurrentPPO ------------------------------------------------------------------
def make_sb3_env(env_id: str = "Sim2Real/Reach-v0"):
    """One Monitor-wrapped task env (module level: SubprocVecEnv pickles it to the workers)."""
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor

    import sim_bridge.envs  # noqa: F401  (registers the envs in a fresh worker process)
    return Monitor(gym.make(env_id, randomization="default"))


def bench_sb3(vec: str, num_envs: int, timed_steps: int, lstm_hidden: int, seed: int = 0,
              task: str = "reach") -> dict:
    import functools
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    torch.set_num_threads(2)

    class Times(BaseCallback):
        def __init__(self):
            super().__init__()
            self.rollout_start: list[tuple[float, int]] = []
            self.rollout_end: list[tuple[float, int]] = []

        def _on_rollout_start(self) -> None:
            self.rollout_start.append((time.perf_counter(), self.num_timesteps))

        def _on_rollout_end(self) -> None:
            self.rollout_end.append((time.perf_counter(), self.num_timesteps))

        def _on_step(self) -> bool:
            return True

    fns = [functools.partial(make_sb3_env, f"Sim2Real/{task.capitalize()}-v0")] * num_envs
    venv = SubprocVecEnv(fns, start_method="spawn") if vec == "subproc" else DummyVecEnv(fns)
    try:
        policy_kwargs = None if lstm_hidden == 256 else {"lstm_hidden_size": lstm_hidden}
        model = RecurrentPPO("MlpLstmPolicy", venv, device="cpu", seed=seed, verbose=0,
                             policy_kwargs=policy_kwargs)
        cycle = model.n_steps * num_envs
        cycles = max(1, math.ceil(timed_steps / cycle))
        times = Times()
        model.learn(total_timesteps=(cycles + 1) * cycle, callback=times)
        end = time.perf_counter()
    finally:
        venv.close()
    starts, ends = times.rollout_start, times.rollout_end
    t0, n0 = starts[1]  # the second rollout begins after the first update: warm-up excluded
    steps = model.num_timesteps - n0
    wall = end - t0
    collect = sum(e[0] - s[0] for s, e in zip(starts[1:], ends[1:]))
    bounds = [s[0] for s in starts[1:]] + [end]
    per_cycle = [cycle / (b - a) for a, b in zip(bounds, bounds[1:])]
    return {"vec_env": vec, "num_envs": num_envs, "env_steps": steps, "cycles": len(starts) - 1,
            "wall_s": wall, "steps_per_s": steps / wall, "collect_s": collect, "update_s": wall - collect,
            "collect_steps_per_s": steps / collect, "per_cycle_steps_per_s": per_cycle,
            "hyperparameters": {"n_steps": model.n_steps, "batch_size": model.batch_size,
                                "n_epochs": model.n_epochs, "learning_rate": model.learning_rate,
                                "lstm_hidden_size": lstm_hidden}}


# --- time to 95 % success from a training log ----------------------------------------------------
def progress_csv_path(arg: Path | None, task: str = "reach") -> Path | None:
    if arg is not None:
        return arg
    default = Path("runs") / f"{task}_lstm" / "progress.csv"
    for candidate in (default, REPO_ROOT / default):
        if candidate.is_file():
            return candidate
    return None


def time_to_success(path: Path, threshold: float) -> dict | None:
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                rate = float(row["success_rate"])
            except (KeyError, TypeError, ValueError):
                continue
            if rate >= threshold:  # NaN compares False
                return {"iteration": int(row["iteration"]), "env_steps": int(row["env_steps"]),
                        "wall_time_s": float(row["wall_time_s"]), "success_rate": rate}
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=15, help="timed iterations of our trainer (default 15)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up iterations of our trainer (default 1)")
    parser.add_argument("--sb3-envs", type=int, default=8, help="envs of the RecurrentPPO baseline (default 8)")
    parser.add_argument("--sb3-steps", type=int, default=16384,
                        help="timed env steps of each RecurrentPPO run, rounded up to whole rollout+update "
                             "cycles; one more cycle runs first as warm-up (default 16384)")
    parser.add_argument("--sb3-vec", choices=("both", "subproc", "dummy"), default="both",
                        help="sb3 vector env(s) to measure; with 'both' the faster is the baseline")
    parser.add_argument("--sb3-lstm-hidden", type=int, default=256,
                        help="RecurrentPPO lstm_hidden_size (default 256 = sb3's default)")
    parser.add_argument("--progress-csv", type=Path, default=None,
                        help="training log for the time to the success threshold (default runs/TASK_lstm/progress.csv "
                             "if it exists)")
    parser.add_argument("--success-threshold", type=float, default=None,
                        help="success rate threshold (default 0.95 for reach, 0.85 for push)")
    parser.add_argument("--task", choices=sorted(EPISODE_STEPS), default="reach", help="task env (default reach)")
    parser.add_argument("--hidden", type=int, default=None,
                        help="LSTM width of ours (default: TrainConfig's 64 for reach, 128 for push)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.success_threshold is None:
        args.success_threshold = SUCCESS_THRESHOLD[args.task]
    if args.hidden is None and args.task == "push":
        args.hidden = 128

    try:
        import sb3_contrib  # noqa: F401
        import stable_baselines3  # noqa: F401
    except ImportError:
        print("bench train: sb3-contrib is not installed; pip install -r requirements/bench.txt "
              "(or run make bench)", file=sys.stderr)
        return 2

    machine = machine_info()  # before the benchmark's own load (and before load_before: it is short)
    print(machine_line(machine), flush=True)
    bench_start = time.perf_counter()
    load_before = loadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"load average before: {load_before}", flush=True)

    print(f"task: {args.task} (Sim2Real/{args.task.capitalize()}-v0, its default randomization)", flush=True)
    ours = bench_ours(args.iterations, args.warmup, args.task, args.hidden)
    c = ours["config"]
    print(f"ours (LSTM {c['hidden']}, {c['num_envs']} envs / {c['num_workers']} workers, "
          f"{ours['iterations']} x {ours['steps_per_iteration']} steps after {args.warmup} warm-up):", flush=True)
    print(f"  collect+update:  {ours['steps_per_s']:9.0f} steps/s   "
          f"(collect {ours['collect_s']:.1f} s, update {ours['update_s']:.1f} s)")
    print(f"  collect only:    {ours['collect_steps_per_s']:9.0f} steps/s")
    print(f"  median iteration:{ours['median_iteration_steps_per_s']:9.0f} steps/s   (collect+update)")
    print(f"  end to end:      {ours['end_to_end_steps_per_s']:9.0f} steps/s   (logging and checkpoints included)",
          flush=True)

    kinds = ("subproc", "dummy") if args.sb3_vec == "both" else (args.sb3_vec,)
    sb3 = {}
    for kind in kinds:
        r = sb3[kind] = bench_sb3(kind, args.sb3_envs, args.sb3_steps, args.sb3_lstm_hidden, task=args.task)
        name = "SubprocVecEnv(spawn)" if kind == "subproc" else "DummyVecEnv"
        print(f"sb3-contrib RecurrentPPO, {name}, {r['num_envs']} envs, {r['cycles']} cycles x "
              f"{r['hyperparameters']['n_steps'] * r['num_envs']} steps after 1 warm-up cycle:")
        print(f"  collect+update:  {r['steps_per_s']:9.0f} steps/s   "
              f"(collect {r['collect_s']:.1f} s, update {r['update_s']:.1f} s)")
        print(f"  collect only:    {r['collect_steps_per_s']:9.0f} steps/s")
        print(f"  per cycle:       {min(r['per_cycle_steps_per_s']):9.0f} .. {max(r['per_cycle_steps_per_s']):.0f} steps/s",
              flush=True)
    best = max(sb3, key=lambda k: sb3[k]["steps_per_s"])
    ratio = ours["steps_per_s"] / sb3[best]["steps_per_s"]
    collect_ratio = ours["collect_steps_per_s"] / max(r["collect_steps_per_s"] for r in sb3.values())
    load_after = loadavg()
    print(f"baseline = sb3 with {best} ({sb3[best]['steps_per_s']:.0f} steps/s)")
    print(f"throughput ratio (ours / sb3, collect+update): {ratio:7.1f}x   (target >= 10x)")
    print(f"collect-only ratio (ours / best sb3 collect):  {collect_ratio:7.1f}x")
    print(f"both measured one after the other in this one process run, same machine; "
          f"load average before {load_before}, after {load_after} "
          f"(a high load means something else was running and the numbers are polluted)")

    target = None
    path = progress_csv_path(args.progress_csv, args.task)
    if path is None or not path.is_file():
        where = f"{path}" if path is not None else f"runs/{args.task}_lstm/progress.csv"
        print(f"wall time to {100 * args.success_threshold:.0f}% success: no training log found ({where}); run make train")
    else:
        target = time_to_success(path, args.success_threshold)
        if target is None:
            print(f"wall time to {100 * args.success_threshold:.0f}% success: not reached in {path}")
        else:
            print(f"wall time to {100 * args.success_threshold:.0f}% success: {target['wall_time_s']:.1f} s, "
                  f"{target['env_steps']} env steps (iteration {target['iteration']}, {path}; training "
                  f"success rate of the stochastic policy on that iteration's episodes)")
    total = time.perf_counter() - bench_start
    print(f"benchmark wall time: {total:.0f} s")

    results = {"ours": ours, "sb3": sb3, "sb3_baseline": best, "ratio": ratio, "collect_ratio": collect_ratio,
               "load_before": load_before, "load_after": load_after, "machine": platform.processor() or
               platform.machine(), "cpus": os.cpu_count(), "time_to_success": target,
               "progress_csv": str(path) if path else None, "benchmark_wall_s": total, "task": args.task,
               "machine_info": machine}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
