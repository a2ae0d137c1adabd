"""``sim2real calibrate``: SimOpt update of a randomization file from recorded bags."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

DESCRIPTION = ("SimOpt: simulate the recorded episodes under samples of the prior distribution (closed loop with "
               "the same policy, or open-loop replay), score them against the real trajectories, and move the "
               "distribution (REPS under a KL bound, or CEM). Writes OUT atomically (the prior file with a fitted "
               "joint_gaussian and provenance), keeps every version in OUT_STEM.history/ and plots in "
               "OUT_STEM.plots/. Settings: calibration/config/simopt.yaml (--settings; '--settings push' for Push "
               "recordings: the puck's mass, friction, damping and size with the arm factors); the options below "
               "override single fields.")


@dataclass(frozen=True)
class CalibrateConfig:
    """``sim2real calibrate``: fit the randomization distribution to recorded real episodes (SimOpt)."""

    prior: str
    """the distribution the policy was trained under (shipped name like 'default', or a YAML path)"""
    out: Path
    """calibrated randomization file to write"""
    bags: tuple[str, ...] = ()
    """recorded bag folders (sim2real record / real --record)"""
    replay_bags: tuple[str, ...] = ()
    """bags replayed open loop whatever the mode: recordings of a scripted controller, e.g. push's identification strikes (sim2real real --controller strike), whose sliding puck fixes its friction"""
    policy: str | None = None
    """policy that ran on the robot (shipped name or path; None: the one the bags name)"""
    profile: Annotated[str | None, tyro.conf.arg(aliases=("--robot", "--robot-profile"))] = None
    """robot profile: shipped name, imported robot's name or YAML path (None: the one the bags name)"""
    settings: str | None = None
    """calibration settings YAML, or a shipped one by name: 'push' (the puck's physics, closed loop; for Push
    recordings) (None: the shipped Reach settings)"""
    iterations: int | None = None
    """override: SimOpt iterations"""
    samples: int | None = None
    """override: parameter samples per iteration"""
    method: Literal["reps", "cem"] | None = None
    """override: update rule"""
    mode: Literal["closed_loop", "open_loop"] | None = None
    """override: rollout mode"""
    seed: int | None = None
    """override: sampling seed"""
    plots: bool = True
    """write the PNG plots (--no-plots: skip them)"""
    note: str = ""
    """free text stored in the provenance"""
    widen: float = 0.0
    """> 1: a fit that ends at a bound of the prior widens that parameter's range by this factor beyond the bound (in log space for log-uniform ranges, never past the kind's plausible range) and fits again, at most twice; the output's parameter entries carry the widened ranges and provenance.calibration.widened says which (0: only warn)"""
    push: str | None = None
    """after writing, set this node's randomization_file parameter to OUT over ROS (e.g. /sim2real/sim_bridge; it applies at that bridge's next reset)"""
    backend: Literal["local", "ray"] | None = None
    """override: where each iteration's samples are simulated: 'local' (one batch here) or 'ray' (one chunk per Ray actor; the same result)"""
    num_workers: int | None = None
    """override, --backend ray: Ray actors, one chunk of the samples each"""
    ray_address: str | None = None
    """--backend ray: the cluster to join (host:port of the head node; None: RAY_ADDRESS if set, else a Ray instance on this machine)"""


def add_calibrate_command(subparsers) -> None:
    from sim2real.cli import add_typed_command  # noqa: PLC0415

    add_typed_command(subparsers, "calibrate", CalibrateConfig, run_calibrate, description=DESCRIPTION,
                      help="fit the randomization distribution to recorded real episodes (SimOpt)")


def run_calibrate(args: CalibrateConfig) -> int:
    from calibration.job import CalibrationJob, JobError  # noqa: PLC0415
    from calibration.simopt import load_settings  # noqa: PLC0415
    from sim_bridge.config import ConfigError  # noqa: PLC0415

    try:
        settings = load_settings(args.settings).with_overrides(
            iterations=args.iterations, samples=args.samples, method=args.method, mode=args.mode, seed=args.seed,
            backend=args.backend, workers=args.num_workers, ray_address=args.ray_address)
        if settings.backend == "ray":
            from policies.ray_backend import require_ray  # noqa: PLC0415

            require_ray()
    except (ConfigError, OSError, ImportError) as exc:
        print(f"sim2real calibrate: {exc}", file=sys.stderr)
        return 2
    job = CalibrationJob(bags=args.bags, replay_bags=args.replay_bags, prior=args.prior, out=args.out, policy=args.policy, settings=settings,
                         profile=args.profile, plots=args.plots, note=args.note, widen=args.widen)
    try:
        result = job.run(progress=_print_progress)
    except JobError as exc:
        print(f"sim2real calibrate: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {result.out} (version {result.version.name}); D {result.discrepancy_before:.4g} -> "
          f"{result.discrepancy_after:.4g} ({100 * result.reduction:.1f}% lower) in {result.elapsed_s:.1f} s")
    for name, change in result.spec.provenance.get("calibration", {}).get("widened", {}).items():
        print(f"widened {name}: [{change['low'][0]:.4g}, {change['high'][0]:.4g}] -> "
              f"[{change['low'][1]:.4g}, {change['high'][1]:.4g}] (its fit had reached a bound of the prior)")
    a = result.assessment
    fitted = result.spec.provenance.get("calibration", {}).get("search", {}) if result.history else {}
    for name, v in fitted.items():
        rise = f"  D rise +-{args_spread(result)} prior std {a.sensitivity[name]:.3g}" if a else ""
        kept = ("  (not identifiable: prior kept)" if a and name in a.kept_prior
                else "  (weakly identified: distrust)" if a and name in a.weak
                else f"  (rests on one episode, {a.one_episode[name]}: distrust)" if a and name in a.one_episode else "")
        print(f"  {name:<24} mean {v['mean']:.4g}  std {v['std']:.3g}{rise}{kept}")
    if a is not None:
        print(f"stopped: {a.stop_reason}; noise floor {a.noise_floor:.4g} (D of the recordings against "
              "themselves under resampled sensor noise)")
        for text in a.warnings:
            print(f"warning: {text}")
    for path in result.plots:
        print(f"plot: {path}")
    if args.push:
        from calibration.node import push_randomization  # noqa: PLC0415 - needs rclpy

        ok, message = push_randomization(args.push, result.out)
        print(f"push to {args.push}: {message}")
        if not ok:
            return 1
    return 0


def args_spread(result) -> str:
    return f"{result.spec.provenance['calibration'].get('settings', {}).get('sensitivity_spread', 2.0):g}"


def _print_progress(stage: str, info: dict) -> None:
    if stage == "warnings":
        for reason in info["skipped"]:
            print(f"skipped episode {reason}", flush=True)
        for text in info["warnings"]:
            print(f"warning: {text}", flush=True)
    elif stage == "widening":
        for name, change in info["changes"].items():
            print(f"widening {name} (its fit reached a bound): [{change['low'][0]:.4g}, {change['high'][0]:.4g}] -> "
                  f"[{change['low'][1]:.4g}, {change['high'][1]:.4g}]; fitting again", flush=True)
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
