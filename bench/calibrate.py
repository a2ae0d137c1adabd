"""Benchmark: SimOpt calibration against the arm emulator's hidden physics.

Run as ``sim2real bench calibrate`` (or ``python bench/calibrate.py``). In one run:

1. **Data**: the shipped policy (``--policy``, default reach_lstm, trained under the default
   randomization = the prior) runs ``--episodes`` (default 5) episodes on the arm emulator
   (no ROS: the deployed loop on the emulator's reported, quantized states).
2. **Speed**: one iteration's rollouts (``--samples`` x the episodes, closed loop) with the
   batched path (native multi-threaded ``mujoco.rollout`` + one batched ONNX call per
   control step) vs the naive path (``ArmSimulator`` + batch-1 policy, one sample and one
   step at a time in Python) on ``--naive-samples`` samples; per-sample speed-up.
3. **Methods, same data, same simulation budget** (``--iterations`` x ``--samples``
   parameter vectors, each over every episode): no calibration (the prior), SimOpt-REPS,
   CEM, and least-squares identification of the mean (scipy trust-region, batched
   finite-difference Jacobians). Per method: D at the mean before/after, the drop, and
   the relative error of each searched parameter against the emulator's hidden value
   (``ArmEmulator.hidden_dynamics()``; for a tied group the mean over its members).
4. **Transfer** (``--transfer POLICY_A POLICY_B``): two policies (e.g. one trained on
   the prior, one on the calibrated file) evaluated on the emulator side by side.

Targets (issue 6): D drops >= 80 % within 5 iterations; mean relative error <= 10 %; one
iteration (>= 256 samples x the episodes) <= 30 s.

``--task push`` (issue 13): push_lstm on the emulator with the puck's hidden physics (and
its table tilt, which no sample models), the shipped Push settings (``simopt_push.yaml``:
closed loop, the puck's path weighted highest, the puck's mass, friction, damping and size
searched with the arm factors; ``--mode open_loop`` replays the recorded commands instead); the
naive loop of the speed comparison holds the puck too. Targets: D drop >= 80 %; puck mass and sliding
friction within 15 % of the hidden truth; REPS at least as accurate as mujoco.sysid on the
object's parameters; one iteration <= 30 s.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from calibration.episodes import emulator_episodes, strike_episodes
from calibration.rollouts import naive_rollouts
from calibration.simopt import Calibration, load_settings
from calibration.sysid import least_squares_mean
from calibration.transfer import emulator_success
from real_bridge.emulator import ArmEmulator
from sim_bridge.profile import load_profile
from sim_bridge.randomization import load_randomization

_BENCH_DIR = str(Path(__file__).resolve().parent)
sys.path.insert(0, _BENCH_DIR)  # bench/ helpers, also under runpy
from _machine import machine_info, machine_line

sys.path.remove(_BENCH_DIR)  # bench/'s module names (env, policy, train, ...) shadow nothing afterwards

ZOO = Path(__file__).resolve().parents[1] / "policies" / "policies" / "zoo"


def relative_errors(calib: Calibration, mean: np.ndarray, truth: dict) -> dict[str, float]:
    out = {}
    for k, name in enumerate(calib.space.names):
        values = np.array([truth[m] for m in calib.space.members(name)])
        out[name] = float(np.mean(np.abs(mean[k] - values) / np.abs(values)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--task", default="reach", choices=["reach", "push"],
                    help="reach: the bare arm; push: the puck (push_lstm, push_default, the Push settings)")
    ap.add_argument("--policy", default=None, help="policy run on the emulator (default: reach_lstm / push_lstm)")
    ap.add_argument("--prior", default=None,
                    help="prior randomization, what the policy was trained on (default: default / push_default)")
    ap.add_argument("--episodes", type=int, default=5, help="recorded emulator episodes (<= 5 for the target)")
    ap.add_argument("--strikes", type=int, default=0,
                    help="push: also record this many identification strikes (the scripted PushStrike: the puck "
                         "slides free) and calibrate with them replayed open loop beside the policy's episodes")
    ap.add_argument("--steps", type=int, default=None, help="joint states per episode (default: the settings' max_steps)")
    ap.add_argument("--samples", type=int, default=256, help="parameter samples per iteration")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--mode", default=None, choices=["closed_loop", "open_loop"],
                    help="rollouts: the policy on the simulated states, or the recorded commands replayed "
                         "(default: the settings' mode)")
    ap.add_argument("--naive-samples", type=int, default=16, help="samples timed on the naive path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=["prior", "reps", "cem", "least_squares"],
                    choices=["prior", "reps", "cem", "least_squares"])
    ap.add_argument("--plots", type=Path, default=None, help="write the REPS run's plots here")
    ap.add_argument("--out", type=Path, default=None, help="write the REPS result (randomization YAML) here")
    ap.add_argument("--transfer", nargs=2, default=None, metavar=("POLICY_A", "POLICY_B"),
                    help="also evaluate these two policies on the emulator side by side")
    ap.add_argument("--transfer-episodes", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None, help="write all results as JSON")
    args = ap.parse_args(argv)
    push = args.task == "push"
    args.policy = args.policy or str(ZOO / ("push_lstm" if push else "reach_lstm"))
    args.prior = args.prior or ("push_default" if push else "default")
    machine = machine_info()
    print(machine_line(machine), flush=True)

    profile = load_profile("panda_like")
    prior = load_randomization(args.prior)
    emu = ArmEmulator(profile, task=args.task)
    truth = emu.hidden_dynamics()
    base = load_settings("push" if push else None).with_overrides(samples=args.samples, iterations=args.iterations,
                                                                  seed=args.seed)
    if args.mode is not None:
        base = base.with_overrides(mode=args.mode)
    args.steps = args.steps or base.max_steps
    print(f"data: {args.episodes} episodes x {args.steps} steps of {Path(args.policy).name} on the arm emulator "
          f"(hidden physics{', hidden puck and tilted table' if push else ''}); prior '{args.prior}'; "
          f"search {[e.name for e in base.search]}")
    episodes = emulator_episodes(args.policy, args.episodes, steps=args.steps, seed=args.seed, emulator=emu)
    if args.strikes:
        if not push:
            ap.error("--strikes needs the push task (an object to strike)")
        episodes += strike_episodes(args.strikes, steps=args.steps, seed=args.seed, emulator=emu)
        print(f"      + {args.strikes} identification strikes (PushStrike), replayed open loop")
    results: dict = {"settings": base.to_dict(), "episodes": args.episodes, "strikes": args.strikes, "steps": args.steps,
                     "machine_info": machine}

    # --- speed: batched vs naive ------------------------------------------------------
    calib = Calibration(profile, prior, episodes, base, args.policy)
    samples = calib.search.sample(np.random.default_rng(args.seed), args.samples)
    values = calib.element_values(samples)
    t0 = time.perf_counter()
    calib.simulate(samples)
    batched_s = time.perf_counter() - t0
    rollouts = args.samples * len(episodes)
    speed = {"batched_s": batched_s, "rollouts": rollouts,
             "physics_steps_per_s": rollouts * (args.steps - 1) * profile.decimation / batched_s}
    print(f"\nrollouts of one iteration ({args.samples} samples x {len(episodes)} episodes, {base.mode}):")
    closed = base.mode == "closed_loop"
    print(f"  batched (mujoco.rollout, {base.threads} threads{' + batched ONNX' if closed else ''}): {batched_s:6.2f} s "
          f"({speed['physics_steps_per_s'] / 1e3:.0f}k physics steps/s)")
    t0 = time.perf_counter()
    naive_rollouts(profile, prior, values[:args.naive_samples], calib.episodes, base.mode, args.policy,
                   task=base.task)
    naive_s = (time.perf_counter() - t0) * args.samples / args.naive_samples
    speed.update(naive_s_extrapolated=naive_s, speedup=naive_s / batched_s)
    print(f"  naive per-sample Python loop: {naive_s:6.2f} s (timed on {args.naive_samples} samples)"
          f"  -> speed-up {speed['speedup']:.2f}x")
    results["speed"] = speed
    calib.close()

    # --- methods ------------------------------------------------------------------------
    budget = args.iterations * args.samples
    table = {}
    for method in args.methods:
        settings = base.with_overrides(method="cem" if method == "cem" else "reps")
        calib = Calibration(profile, prior, episodes, settings, args.policy)
        t0 = time.perf_counter()
        iteration_s = []
        status = ""
        interval95 = None
        quality = None
        if method in ("reps", "cem"):
            for record in calib.run():
                iteration_s.append(record.elapsed_s)
            mean, after = calib.search.mean, calib.final_discrepancy
            quality = calib.assessment.to_dict() if calib.assessment else None
            if method == "reps" and args.plots:
                from calibration.plots import save_plots  # noqa: PLC0415
                paths = save_plots(calib, args.plots, truth)
                print(f"plots: {', '.join(str(p) for p in paths)}")
            if method == "reps" and args.out:
                calib.result_spec({"benchmark": "sim2real bench calibrate"}).save(args.out)
                print(f"REPS result written to {args.out}")
            curve = [calib.initial_discrepancy] + [r.discrepancy_at_mean for r in calib.history]
        elif method == "least_squares":
            fit = least_squares_mean(calib, budget)  # mujoco.sysid's optimizer (calibration.sysid)
            mean, after, status = fit.mean, fit.discrepancy, fit.status
            interval95 = dict(zip(calib.space.names, map(float, fit.interval95)))
            curve = [calib.initial_discrepancy, after]
        else:
            mean, after = calib.prior.mean, calib.initial_discrepancy
            curve = [calib.initial_discrepancy]
        errors = relative_errors(calib, mean, truth)
        table[method] = {
            "discrepancy_before": calib.initial_discrepancy, "discrepancy_after": after,
            "drop": 1.0 - after / calib.initial_discrepancy, "curve": curve,
            "mean": dict(zip(calib.space.names, map(float, mean))), "relative_error": errors,
            "mean_relative_error": float(np.mean(list(errors.values()))),
            "rollouts": calib.rollouts, "seconds": time.perf_counter() - t0,
            "iteration_s_max": max(iteration_s) if iteration_s else None, "status": status,
            "interval95": interval95, "quality": quality}
        calib.close()
    results["methods"] = table

    names = list(next(iter(table.values()))["relative_error"])
    print(f"\nsame data, budget {budget} parameter vectors x {len(episodes)} episodes per method:")
    head = f"{'method':<14}{'D before':>10}{'D after':>10}{'drop':>8}" + "".join(f"{n[:12]:>13}" for n in names) \
        + f"{'mean err':>10}{'rollouts':>10}{'time s':>8}"
    print(head)
    for method, row in table.items():
        print(f"{'mujoco.sysid' if method == 'least_squares' else method:<14}{row['discrepancy_before']:>10.4f}{row['discrepancy_after']:>10.4f}"
              f"{100 * row['drop']:>7.1f}%" + "".join(f"{100 * row['relative_error'][n]:>12.1f}%" for n in names)
              + f"{100 * row['mean_relative_error']:>9.1f}%{row['rollouts']:>10}{row['seconds']:>8.1f}")
    truth_row = {n: float(np.mean([truth[m] for m in calib.space.members(n)])) for n in names}
    print(f"{'hidden truth':<42}" + "".join(f"{truth_row[n]:>13.3f}" for n in names))
    for method in ("reps", "cem", "least_squares"):
        if method in table:
            label = "sysid" if method == "least_squares" else method
            print(f"{label + ' means':<42}" + "".join(f"{table[method]['mean'][n]:>13.3f}" for n in names))
    if "least_squares" in table and table["least_squares"].get("interval95"):
        ci = table["least_squares"]["interval95"]
        print(f"{'sysid 95% +-':<42}" + "".join(f"{ci[n]:>13.3g}" for n in names)
              + "   (mujoco.sysid.calculate_intervals; inf = not identifiable from these episodes)")
    if "reps" in table:
        row = table["reps"]
        checks = [(f"D drop >= 80% within {args.iterations} iterations (REPS)", row["drop"] >= 0.8,
                   f"{100 * row['drop']:.1f}%")]
        if push:
            err = row["relative_error"]
            checks += [(f"{n} within 15% of the hidden truth (REPS)", err[n] <= 0.15, f"{100 * err[n]:.1f}%")
                       for n in ("puck_mass", "puck_friction") if n in err]
            if "least_squares" in table:
                objects = [n for n in err if n.startswith("puck")]
                mine = float(np.mean([err[n] for n in objects]))
                theirs = float(np.mean([table["least_squares"]["relative_error"][n] for n in objects]))
                checks.append(("REPS at least as accurate as mujoco.sysid on the puck", mine <= theirs,
                               f"mean error {100 * mine:.1f}% vs {100 * theirs:.1f}%"))
        else:
            checks.append(("mean relative error <= 10% (REPS)", row["mean_relative_error"] <= 0.10,
                           f"{100 * row['mean_relative_error']:.1f}%"))
        checks.append((f"iteration <= 30 s ({args.samples} samples x {len(episodes)} episodes)",
                       (row["iteration_s_max"] or 0) <= 30.0, f"max {row['iteration_s_max']:.1f} s"))
        quality = row.get("quality") or {}
        if quality.get("kept_prior"):
            print(f"\nREPS: not identifiable from these episodes (prior kept): {quality['kept_prior']}")
        if quality.get("weakly_identified"):
            print(f"REPS: weakly identified (fit kept; distrust it): {quality['weakly_identified']}")
        print()
        for label, ok, value in checks:
            print(f"  [{'met' if ok else 'MISSED'}] {label}: {value}")
        results["targets"] = {label: {"met": ok, "value": value} for label, ok, value in checks}

    # --- transfer -------------------------------------------------------------------------
    if args.transfer:
        print(f"\ntransfer: {args.transfer_episodes} episodes each on the arm emulator (same goals):")
        scores = [emulator_success(p, args.transfer_episodes, seed=args.seed + 1, label=Path(p).name)
                  for p in args.transfer]
        for s in scores:
            print("  " + s.line())
        results["transfer"] = [{"policy": s.policy, "successes": s.successes, "episodes": s.episodes,
                                "rate": s.rate, "ci95": s.ci95} for s in scores]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
