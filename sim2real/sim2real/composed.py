"""The composed deployment: the sim bridge and the policy node in one process.

``sim2real node sim_policy --ros-args --params-file composed.yaml`` runs both nodes (names
``sim_bridge`` and ``policy``) in one ``ControlExecutor``. Give each node its parameters in a
params file under ``/**/sim_bridge:`` and ``/**/policy:`` (any namespace); ``-p name:=value``
reaches both nodes, and ``-p node:name:=value`` only matches in the root namespace. Their control
callbacks run in its spinning thread one after the other (``inline_callback_groups``), so a
cycle costs no process switch and one executor's wake-up instead of one per process; the
policy node's parameter and lifecycle services still run in worker threads, so a swap's load
does not hold the loop. The messages still go through DDS (rclpy has no intra-process path);
Fast DDS delivers them within the process. What it saves against two processes is measured
by ``sim2real bench policy-node --composed`` (docs/profile.md).
"""
from __future__ import annotations


def main(args: list[str] | None = None) -> int:
    """Entry point for ``sim2real node sim_policy``."""
    from policies.node import EXECUTOR_THREADS, PolicyNode
    from sim_bridge.executor import run_node
    from sim_bridge.node import SimBridgeNode

    return run_node("sim_policy", lambda: (SimBridgeNode(), PolicyNode(autostart=True)), args,
                    num_threads=EXECUTOR_THREADS)
