"""Which machine a benchmark ran on, and how fast one of its cores is: printed and recorded by every
benchmark in bench/, so that figures from different machines can be compared.

``machine_info()`` returns the CPU model (``/proc/cpuinfo`` "model name"; on ARM boards
"Hardware" or the device-tree model; else ``platform.processor()``), the logical core count,
the Python and numpy versions, and the **reference loop speed**: two fixed, deterministic,
single-thread workloads timed in this process, each the best of ``REPEATS`` (5) short runs
after one untimed warm-up run (about 0.1-0.3 s in all):

* ``python_mops_per_s``: millions of iterations per second of a pure-Python loop
  (``acc = (acc * 31 + i) % 1000003`` for i in range(200000)): interpreter speed of one
  core, what the nodes' per-message Python work (rclpy, message conversion) scales with;
* ``numpy_matmul64_per_s``: 64x64 float64 matrix products per second (``a @ b``, 300 in a
  row): one core's floating-point speed through numpy/BLAS (OpenBLAS runs products of up
  to 4 x 65536 multiply-adds, 64^3 = 262144, on one thread).

Best of several runs, because interference only ever slows a run down: the best is the
figure of the core itself, not of brief load on it. Sustained load on every core (a load
average at or above the core count, recorded too) still slows all runs: measure idle. A
machine with twice the Python speed runs the same single-thread Python work in about half the
time: to compare a time (a latency, CPU ms per cycle) from another machine, scale it by the
ratio of the two Python speeds (numpy-bound work: the matmul speeds). The Python speed is that
of this interpreter on one core (another Python version differs on the same core). Neither
workload uses more than one core, so the core count is stated separately.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPEATS = 5
PY_LOOP_N = 200_000
MATMUL_SIZE = 64
MATMUL_N = 300


def cpu_model() -> str:
    """The CPU model as the OS names it ('' never: falls back to the architecture)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Hardware", "cpu model", "Model"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return " ".join(value.split())
    try:
        model = Path("/sys/firmware/devicetree/base/model").read_text(errors="replace").strip("\x00\n ")
        if model:
            return model
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _python_loop(n: int) -> int:
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i) % 1000003
    return acc


def _matmul_loop(a: np.ndarray, b: np.ndarray, n: int) -> float:
    out = np.empty_like(a)
    for _ in range(n):
        np.matmul(a, b, out=out)
    return float(out[0, 0])


def reference_speeds(repeats: int = REPEATS) -> dict:
    """Best-of-``repeats`` speeds of the two fixed single-thread workloads (see the module doc)."""
    clock = time.perf_counter
    expected = _python_loop(PY_LOOP_N)  # warm-up (and the deterministic result)
    py_best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        result = _python_loop(PY_LOOP_N)
        py_best = min(py_best, clock() - t0)
        assert result == expected
    rng = np.random.default_rng(0)
    a = rng.standard_normal((MATMUL_SIZE, MATMUL_SIZE))
    b = rng.standard_normal((MATMUL_SIZE, MATMUL_SIZE)) / MATMUL_SIZE
    _matmul_loop(a, b, MATMUL_N)  # warm-up
    mm_best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        _matmul_loop(a, b, MATMUL_N)
        mm_best = min(mm_best, clock() - t0)
    return {"python_mops_per_s": PY_LOOP_N / py_best / 1e6,
            "numpy_matmul64_per_s": MATMUL_N / mm_best,
            "repeats": repeats,
            "workloads": {"python": f"acc = (acc * 31 + i) % 1000003, i in range({PY_LOOP_N}); Mops/s = "
                                    "loop iterations per second / 1e6, best of the repeats",
                          "numpy": f"{MATMUL_N} x np.matmul of two {MATMUL_SIZE}x{MATMUL_SIZE} float64 "
                                   "matrices; products per second, best of the repeats"}}


def machine_info() -> dict:
    """CPU model, logical cores, versions, load average and the reference loop speeds (measured now)."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        load = None
    return {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count(), "arch": platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__, "system": platform.system(),
            "load_average": load, "reference": reference_speeds()}


def machine_line(info: dict) -> str:
    """One printable line: model, cores, Python, and the reference loop speeds."""
    ref = info["reference"]
    load = f", load {info['load_average'][0]:.2f}" if info.get("load_average") else ""
    return (f"machine: {info['cpu_model']} ({info['arch']}), {info['logical_cpus']} logical CPUs, "
            f"Python {info['python']}{load}; reference loop (1 core, best of {ref['repeats']}): "
            f"Python {ref['python_mops_per_s']:.2f} Mops/s, numpy 64x64 matmul "
            f"{ref['numpy_matmul64_per_s'] / 1e3:.1f}k/s")


if __name__ == "__main__":  # python bench/_machine.py: this machine's line
    print(machine_line(machine_info()))
    sys.exit(0)
