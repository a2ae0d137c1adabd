"""Robustness check: the test suite N times beside busy loops, failures counted per test.

Run as ``sim2real bench flaky [--runs 3] [--busy 2] [-- PYTEST_ARGS...]`` (or
``python bench/flaky.py``). Each run is one full ``pytest tests`` (what ``make test`` runs,
in this venv), with ``--busy`` processes spinning at 100% CPU beside it for the whole run (on
a 2-core machine two busy loops leave the suite, its nodes and its subprocesses a fraction of
a core each: the situation where timing luck shows). The baseline is the same suite's
definition of "passed": every test that fails in any run is listed with its count, and the
script exits 1 if any failed. JUnit XML of every run goes to ``--out`` (default
``runs/flaky/<UTC time>``), so a failure can be read afterwards.

Tests that wait for DDS discovery and use margins pass here; a test that sleeps a fixed
time or assumes a cycle lands in its slot fails here first.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

_BENCH_DIR = str(Path(__file__).resolve().parent)
sys.path.insert(0, _BENCH_DIR)  # bench/ helpers, also under runpy
from _machine import machine_info, machine_line

sys.path.remove(_BENCH_DIR)  # bench/'s module names (env, policy, train, ...) shadow nothing afterwards

REPO = Path(__file__).resolve().parents[1]


BUSY_LOOP = [sys.executable, "-c", "while True: pass"]


def failed_tests(junit_xml: Path) -> tuple[int, list[str]]:
    """(tests run, ids of the failed or errored ones) of one pytest JUnit XML report."""
    root = ET.parse(junit_xml).getroot()
    cases = root.iter("testcase")
    total, failed = 0, []
    for case in cases:
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname')}::{case.get('name')}")
    return total, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sim2real bench flaky", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="full test-suite runs (default 3)")
    parser.add_argument("--busy", type=int, default=2, help="busy-loop processes beside each run (default 2)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JUnit XML reports and summary.json")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.busy < 0:
        parser.error("--runs must be >= 1 and --busy >= 0")
    out = args.out or REPO / "runs" / "flaky" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()  # before the busy loops
    print(machine_line(machine), flush=True)
    extra = [a for a in args.pytest_args if a != "--"]
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", RMW_IMPLEMENTATION="rmw_fastrtps_cpp")
    failures: Counter = Counter()
    runs = []
    for k in range(1, args.runs + 1):
        # separate processes (not forks of this one: a fork inherits ROS' signal handlers when
        # this runs inside a test process, and would ignore the SIGTERM), killed after the run
        spinners = [subprocess.Popen(BUSY_LOOP, stdin=subprocess.DEVNULL) for _ in range(args.busy)]
        report = out / f"run{k}.xml"
        start = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
                                   f"--junitxml={report}", *extra], cwd=REPO, env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True)
        finally:
            for p in spinners:
                p.kill()
            for p in spinners:
                p.wait()
        wall = time.monotonic() - start
        total, failed = failed_tests(report) if report.is_file() else (0, ["<no report: pytest did not finish>"])
        failures.update(failed)
        runs.append({"run": k, "exit_code": proc.returncode, "tests": total, "failed": failed, "wall_s": round(wall, 1)})
        tail = proc.stdout.strip().splitlines()[-1:] or [""]
        print(f"run {k}/{args.runs} beside {args.busy} busy loop(s): {total} tests, {len(failed)} failed, "
              f"{wall:.0f} s  [{tail[0]}]", flush=True)
    print(f"\n{args.runs} run(s) beside {args.busy} busy loop(s) on {os.cpu_count()} core(s):")
    if failures:
        for test, count in failures.most_common():
            print(f"  {count}/{args.runs} failed  {test}")
    else:
        print("  no test failed in any run")
    (out / "summary.json").write_text(json.dumps({"runs": runs, "failures": dict(failures), "busy": args.busy,
                                                  "machine_info": machine},
                                                 indent=2))
    print(f"reports: {out}")
    return 1 if failures or any(r["exit_code"] != 0 for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
