"""Benchmark: per-cycle cost of the real bridge's SafetyFilter.filter against the bare hot path.

Run as ``sim2real bench safety-filter`` (or ``python bench/safety_filter.py``). In one run,
alternating so that drifts in machine load hit all alike, it times one call at a time
(``time.perf_counter_ns``, p50/p99/max over ``--calls`` calls, the best of ``--repeats``):

1. ``SafetyFilter.filter`` (robot profile ``panda_like``, 7 joints, margin 0.05 rad, step
   limit at the ``--period``) on commands of a policy acting relative to the arm's position:
   most move some joint further than one step (step-limited), 5% push beyond a position
   limit, 1% are NaN (rejected), a few pass unchanged: every path of the filter, in the
   mix a saturating policy produces (the counts are printed);
2. baseline ``np.clip``: a plain ``np.clip(command, lower, upper)`` of the same commands,
   the least a bridge would do without the filter;
3. baseline message: building the hardware message, ``Float64MultiArray(data=command.tolist())``,
   which the bridge does every cycle anyway; and the two together (filter + message), the
   bridge's per-cycle hot path with filtering.

It prints the latencies, the ratios filter / np.clip and (filter + message) / message, and
the filter's p50 and p99 as a share of a 2 ms (500 Hz) control period. Target: filter p99
well under 1% of a 2 ms period (20 us). The numbers depend on the machine and on what
else runs; the ratios and the share of the period are the point.
"""
from __future__ import annotations

import argparse
import sys
import json
import platform
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ helpers, also under runpy
from _machine import machine_info, machine_line  # noqa: E402
from _timing import percentiles_us, time_calls  # noqa: E402

PERIOD_500HZ_US = 2000.0




def policy_like_commands(flt, profile, period_s: float, calls: int, seed: int = 0) -> list[np.ndarray]:
    """Commands of a policy acting relative to where the arm is (the filter's last output, the
    arm assumed to track it): steps up to 2x the step limit, 5% pushed beyond a position limit,
    1% NaN. The filter is deterministic, so replaying the list from the same start (reference
    reset) takes the same paths."""
    rng = np.random.default_rng(seed)
    step = flt.step_limit(period_s)
    q = profile.default_pose_rad.copy()
    flt.reset_reference()
    out = []
    for _ in range(calls):
        cmd = q + rng.uniform(-2, 2, q.shape) * step
        r = rng.random()
        if r < 0.05:
            j = rng.integers(q.size)
            cmd[j] = profile.position_upper_rad[j] + 0.5
        elif r < 0.06:
            cmd[rng.integers(q.size)] = np.nan
        out.append(cmd)
        result = flt.filter(cmd, q, period_s)
        if result.command is not None:
            q = result.command.copy()
    flt.reset_reference()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000, help="timed calls per variant and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; the best p50/p99 of each is kept")
    parser.add_argument("--period", type=float, default=0.002, help="control period for the step limit (s)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    machine = machine_info()
    print(machine_line(machine), flush=True)

    from real_bridge.safety import SafetyFilter
    from sim_bridge.profile import load_profile

    try:
        from std_msgs.msg import Float64MultiArray
    except ImportError:  # no ROS messages installed: the message baselines are skipped
        Float64MultiArray = None

    profile = load_profile("panda_like")
    lower, upper = profile.position_lower_rad, profile.position_upper_rad
    measured = profile.default_pose_rad.copy()
    counting = SafetyFilter.from_profile(profile, margin_rad=0.05)  # what the mix exercises, counted once
    commands = policy_like_commands(counting, profile, args.period, args.calls)
    flt = SafetyFilter.from_profile(profile, margin_rad=0.05)

    def run_filter(cmd):
        return flt.filter(cmd, measured, args.period)

    def run_clip(cmd):
        return np.clip(cmd, lower, upper)

    def run_message(cmd):
        return Float64MultiArray(data=cmd.tolist())

    def run_filter_and_message(cmd):
        out = flt.filter(cmd, measured, args.period).command
        return Float64MultiArray(data=(out if out is not None else cmd).tolist())

    variants = {"filter": run_filter, "np_clip": run_clip}
    if Float64MultiArray is not None:
        variants.update(message=run_message, filter_and_message=run_filter_and_message)
    best: dict[str, dict] = {}
    raw: dict[str, list] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, call in variants.items():
            flt.reset_reference()
            stats = percentiles_us(time_calls(call, commands))
            raw[name].append(stats)
            if name not in best or stats["p50_us"] < best[name]["p50_us"]:
                best[name] = stats

    f, c = best["filter"], best["np_clip"]
    print(f"SafetyFilter.filter ({profile.num_joints} joints, period {1e3 * args.period:g} ms), {args.calls} calls; "
          f"interventions in the mix: {counting.counts()}, unchanged {counting.passed}")
    for name, stats in best.items():
        print(f"  {name:20s} p50 {stats['p50_us']:7.2f} us   p99 {stats['p99_us']:7.2f} us   "
              f"max {stats['max_us']:8.1f} us")
    results = {"filter": f, "np_clip": c, "ratio_filter_to_np_clip_p50": f["p50_us"] / c["p50_us"],
               "filter_p50_share_of_2ms": f["p50_us"] / PERIOD_500HZ_US,
               "filter_p99_share_of_2ms": f["p99_us"] / PERIOD_500HZ_US,
               "interventions": counting.counts(), "unchanged": counting.passed, "calls": args.calls,
               "period_s": args.period, "machine": platform.processor() or platform.machine(), "raw": raw,
               "machine_info": machine}
    print(f"ratio filter / np.clip (p50):                 {results['ratio_filter_to_np_clip_p50']:6.2f}x")
    if "message" in best:
        m, fm = best["message"], best["filter_and_message"]
        results.update(message=m, filter_and_message=fm,
                       ratio_hot_path_p50=fm["p50_us"] / m["p50_us"],
                       added_by_filter_p50_us=fm["p50_us"] - m["p50_us"])
        print(f"ratio (filter + message) / message (p50):     {results['ratio_hot_path_p50']:6.2f}x   "
              f"(+{results['added_by_filter_p50_us']:.2f} us per cycle)")
    print(f"filter share of a 2 ms (500 Hz) period:       p50 {100 * results['filter_p50_share_of_2ms']:.2f} %, "
          f"p99 {100 * results['filter_p99_share_of_2ms']:.2f} %   (target: p99 < 1 %)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
