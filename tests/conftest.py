"""Test-session environment for the sim2real stack.

This conftest only prepares the process environment; it runs before any test
module is imported, so before anything imports rclpy (which reads these
variables when the RMW / DDS participant is created).

* ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: DDS discovery stays on this host.
* RMW_IMPLEMENTATION=rmw_fastrtps_cpp: the RMW shipped by requirements/runtime.txt.
* ROS_DOMAIN_ID: a per-session domain derived from the pid (1..100) unless the
  caller already set one, so concurrent test runs on one machine do not see
  each other's topics.  Subprocesses spawned by tests inherit all three.
"""

import os

# Forced, not setdefault: tests must never reach beyond localhost.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"

if not os.environ.get("ROS_DOMAIN_ID"):
    # 1..100: avoids the default domain 0 and stays well inside the range that
    # maps onto valid DDS ports (0..101 for Fast DDS on Linux).
    os.environ["ROS_DOMAIN_ID"] = str(os.getpid() % 100 + 1)
