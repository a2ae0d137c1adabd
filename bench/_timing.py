"""Latency measurement shared by the micro-benchmarks (bench/policy.py, bench/safety_filter.py)."""
from __future__ import annotations

import time

import numpy as np


def time_calls(call, inputs, warmup: int = 200) -> np.ndarray:
    """Per-call latency (ns) of ``call(x)`` for each input, after ``warmup`` untimed calls."""
    for k in range(warmup):
        call(inputs[k % len(inputs)])
    samples = np.empty(len(inputs), dtype=np.int64)
    clock = time.perf_counter_ns
    for k, x in enumerate(inputs):
        start = clock()
        call(x)
        samples[k] = clock() - start
    return samples


def percentiles_us(samples_ns: np.ndarray) -> dict:
    us = samples_ns / 1e3
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return {"p50_us": float(p50), "p90_us": float(p90), "p99_us": float(p99), "max_us": float(us.max()),
            "mean_us": float(us.mean())}
