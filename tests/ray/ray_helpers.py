"""Helpers of the Ray backend's tests."""
from __future__ import annotations

import os
import signal
import time

OBJECT_STORE_BYTES = 128 * 1024 * 1024
SMALL_RAY = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                 object_store_memory=OBJECT_STORE_BYTES)


def kill_process(pid: int, timeout_s: float = 30.0) -> None:
    """SIGKILL ``pid`` and wait until it is gone (or a zombie): the worker is certainly dead."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().split(") ", 1)[1].startswith("Z"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not die within {timeout_s} s")


def assert_same_steps(outs) -> None:
    """Each item of ``outs`` holds two vector envs' answers to the same reset or step: equal."""
    import numpy as np

    for a, b in outs:
        for x, y in zip(a, b):
            if isinstance(x, dict):
                assert x.keys() == y.keys()
                for key in x:
                    np.testing.assert_array_equal(x[key], y[key], err_msg=key)
            else:
                np.testing.assert_array_equal(x, y)


def wait_for_free_cpus(ray, timeout_s: float = 60.0) -> None:
    """Wait until every CPU of the cluster is free again: actors of an earlier test are killed
    asynchronously, and while they hold a node's CPUs the scheduler places nothing there."""
    deadline = time.monotonic() + timeout_s
    total = ray.cluster_resources().get("CPU", 0.0)
    while ray.available_resources().get("CPU", 0.0) < total:
        if time.monotonic() > deadline:
            raise AssertionError(f"cluster CPUs still busy after {timeout_s} s: "
                                 f"{ray.available_resources().get('CPU', 0.0)} of {total} free")
        time.sleep(0.05)
