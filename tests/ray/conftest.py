"""A real Ray instance for the Ray backend's tests: small (2 CPUs, 128 MiB object store), no
dashboard, on this machine only (loopback, no RAY_ADDRESS), shut down after each module."""
from __future__ import annotations

import os

import pytest

# Loopback only: Ray resolves "localhost" to the machine's reachable address unless this is
# off (read when ray is imported, and inherited by the GCS, raylets and workers it starts).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

ray = pytest.importorskip("ray", reason="the Ray backend's tests need Ray (make setup installs requirements/ray.txt)")

from ray_helpers import SMALL_RAY  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One Ray node with 2 CPUs for the module's tests."""
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(num_cpus=2, **SMALL_RAY)
    try:
        yield ray
    finally:
        ray.shutdown()
