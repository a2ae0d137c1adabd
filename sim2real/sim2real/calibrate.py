"""``sim2real calibrate``: SimOpt update of a randomization file from recorded bags."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_calibrate_command(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate", help="fit the randomization distribution to recorded real episodes (SimOpt)",
        description="SimOpt: simulate the recorded episodes under samples of the prior distribution "
                    "(closed loop with the same policy, or open-loop replay), score them against the "
                    "real trajectories, and move the distribution (REPS under a KL bound, or CEM). "
                    "Writes OUT atomically (the prior file with a fitted joint_gaussian and "
                    "provenance), keeps every version in OUT_STEM.history/ and plots in "
                    "OUT_STEM.plots/. Settings: calibration/config/simopt.yaml (--settings); the "
                    "options below override single fields.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bags", nargs="+", required=True, help="recorded bag folders (sim2real record / real --record)")
    p.add_argument("--prior", required=True, help="the distribution the policy was trained under "
                                                  "(shipped name like 'default', or a YAML path)")
    p.add_argument("--out", required=True, type=Path, help="calibrated randomization file to write")
    p.add_argument("--policy", default=None,
                   help="policy that ran on the robot (shipped name or path; default: the one the bags name)")
    p.add_argument("--profile", default=None, help="robot profile (default: the one the bags name)")
    p.add_argument("--settings", default=None, help="calibration settings YAML (default: the shipped one)")
    p.add_argument("--iterations", type=int, default=None, help="override: SimOpt iterations")
    p.add_argument("--samples", type=int, default=None, help="override: parameter samples per iteration")
    p.add_argument("--method", choices=("reps", "cem"), default=None, help="override: update rule")
    p.add_argument("--mode", choices=("closed_loop", "open_loop"), default=None, help="override: rollout mode")
    p.add_argument("--seed", type=int, default=None, help="override: sampling seed")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--note", default="", help="free text stored in the provenance")
    p.add_argument("--push", default=None, metavar="NODE",
                   help="after writing, set NODE's randomization_file parameter to OUT over ROS "
                        "(e.g. /sim2real/sim_bridge; it applies at that bridge's next reset)")
    p.set_defaults(func=run_calibrate)


def run_calibrate(args) -> int:
    from calibration.job import CalibrationJob, JobError  # noqa: PLC0415
    from calibration.simopt import load_settings  # noqa: PLC0415
    from sim_bridge.config import ConfigError  # noqa: PLC0415

    try:
        settings = load_settings(args.settings).with_overrides(
            iterations=args.iterations, samples=args.samples, method=args.method, mode=args.mode, seed=args.seed)
    except (ConfigError, OSError) as exc:
        print(f"sim2real calibrate: {exc}", file=sys.stderr)
        return 2
    job = CalibrationJob(bags=args.bags, prior=args.prior, out=args.out, policy=args.policy, settings=settings,
                         profile=args.profile, plots=not args.no_plots, note=args.note)
    try:
        result = job.run(progress=_print_progress)
    except JobError as exc:
        print(f"sim2real calibrate: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {result.out} (version {result.version.name}); D {result.discrepancy_before:.4g} -> "
          f"{result.discrepancy_after:.4g} ({100 * result.reduction:.1f}% lower) in {result.elapsed_s:.1f} s")
    for name, v in result.history[-1].search.as_dict().items() if result.history else ():
        print(f"  {name:<24} mean {v['mean']:.4g}  std {v['std']:.3g}")
    for path in result.plots:
        print(f"plot: {path}")
    if args.push:
        from calibration.node import push_randomization  # noqa: PLC0415 - needs rclpy

        ok, message = push_randomization(args.push, result.out)
        print(f"push to {args.push}: {message}")
        if not ok:
            return 1
    return 0


def _print_progress(stage: str, info: dict) -> None:
    if stage == "warnings":
        for reason in info["skipped"]:
            print(f"skipped episode {reason}", flush=True)
        for text in info["warnings"]:
            print(f"warning: {text}", flush=True)
    elif stage == "calibrating":
        print(f"calibrating from {info['episodes']} episode(s): {info['iterations']} iterations x "
              f"{info['samples']} samples; policy {info['policy']}", flush=True)
    elif stage == "iteration":
        if info["iteration"] == 0:
            print(f"iteration 0: D at prior mean {info['discrepancy_at_mean']:.4g}", flush=True)
        else:
            print(f"iteration {info['iteration']}: D at mean {info['discrepancy_at_mean']:.4g}, samples' mean D "
                  f"{info['cost_mean']:.4g}, KL {info['kl']:.3f}, {info['failed_samples']} failed, "
                  f"{info['elapsed_s']:.1f} s (rollouts {info['rollout_s']:.1f} s)", flush=True)
