"""The composed deployment: the sim bridge and the policy node in one process.

``sim2real node sim_policy --ros-args --params-file composed.yaml`` runs both nodes (names
``sim_bridge`` and ``policy``) in one ``ControlExecutor``. Give each node its parameters in a
params file under ``/**/sim_bridge:`` and ``/**/policy:`` (any namespace); ``-p name:=value``
reaches both nodes, and ``-p node:name:=value`` only matches in the root namespace. Their control
callbacks run in its spinning thread one after the other (``inline_callback_groups``), so a
cycle costs no process switch and one executor's wake-up instead of one per process; the
policy node's parameter and lifecycle services still run in worker threads, so a swap's load
does not hold the loop.

**Intra-process path** (the default; rclpy has none of its own): the bridge hands each joint
state, goal and task input it publishes straight to the policy node's input callbacks
(:meth:`PolicyNode.take_linked`), and the policy node hands each command it publishes straight
to the bridge (:meth:`SimBridgeNode.take_linked_command`): no DDS delivery, no take, no wake-up
in between, the same checks on both sides. Both nodes still publish every topic for recorders
and monitors, but neither subscribes to what its partner delivers directly, so the bridge takes
commands only from its policy node. The bridge's tick runs the policy cycle (trigger 'state')
inside its own callback. Lockstep mode keeps the topics (a command steps the simulation, which
would recurse inside the state's delivery). ``SIM2REAL_COMPOSED_TRANSPORT=dds`` composes the
two nodes over DDS instead (the baseline of ``sim2real bench policy-node --composed``).

``sim2real node real_policy`` does the same for the robot computer: the real bridge (in front
of ros2_control) and the policy node; the relayed joint states and object poses go to the policy
node, its commands into the bridge's intake (taken at the next tick with their arrival time, the
same checks, counters and hold deadline as from the topic).
"""
from __future__ import annotations

import functools
import os

TRANSPORT_ENV = "SIM2REAL_COMPOSED_TRANSPORT"
TRANSPORTS = ("intra", "dds")


def transport() -> str:
    """``SIM2REAL_COMPOSED_TRANSPORT`` ('intra' when unset), checked against :data:`TRANSPORTS`."""
    kind = os.environ.get(TRANSPORT_ENV, "").strip() or "intra"
    if kind not in TRANSPORTS:
        raise ValueError(f"{TRANSPORT_ENV}={kind!r}: must be one of {', '.join(TRANSPORTS)}")
    return kind


def build(intra_process: bool = True, *, bridge_kwargs: dict | None = None, policy_kwargs: dict | None = None):
    """The two nodes (``*_kwargs``: passed to their constructors), linked intra-process when
    ``intra_process`` and the bridge runs in real time."""
    from sim_bridge.node import SimBridgeNode

    bridge = SimBridgeNode(intra_process=intra_process, **(bridge_kwargs or {}))
    return bridge, linked_policy(bridge, policy_kwargs)


def linked_policy(bridge, policy_kwargs: dict | None = None):
    """An autostarted policy node for ``bridge``: linked to it (the bridge's linked topics to
    the node, its commands back) when the bridge has linked topics, else on DDS alone."""
    from policies.node import PolicyNode

    if not bridge.linked_topics:  # over DDS, lockstep, or a bridge that did not configure
        bridge.get_logger().info("composed with the policy node over DDS (no intra-process handoff)")
        return PolicyNode(autostart=True, **(policy_kwargs or {}))
    policy = PolicyNode(autostart=True, linked_topics=bridge.linked_topics, linked_latest=bridge.latest,
                        **(policy_kwargs or {}))
    for topic in bridge.linked_topics:
        bridge.link(topic, functools.partial(policy.take_linked, topic))
    policy.command_listeners.append(bridge.take_linked_command)
    bridge.get_logger().info(f"composed with the policy node intra-process: hands it {', '.join(bridge.linked_topics)}"
                             f"; takes its commands directly")
    return policy


def build_real(intra_process: bool = True, *, bridge_kwargs: dict | None = None,
               policy_kwargs: dict | None = None):
    """The real bridge and the policy node, both autostarted (``*_kwargs``: passed to their
    constructors), linked intra-process when ``intra_process``: the relayed joint states and
    object poses to the policy node, its commands to the bridge's intake (the goal stays on its
    latched topic: the bridge's ``~/reset`` publishes it from a worker thread)."""
    from real_bridge.node import RealBridgeNode

    bridge = RealBridgeNode(autostart=True, intra_process=intra_process, **(bridge_kwargs or {}))
    return bridge, linked_policy(bridge, policy_kwargs)


def _main(label: str, builder, args: list[str] | None) -> int:
    import sys

    from policies.node import EXECUTOR_THREADS
    from sim_bridge.executor import run_node

    try:
        intra = transport() == "intra"
    except ValueError as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        return 2
    return run_node(label, lambda: builder(intra), args, num_threads=EXECUTOR_THREADS)


def main(args: list[str] | None = None) -> int:
    """Entry point for ``sim2real node sim_policy``."""
    return _main("sim_policy", build, args)


def main_real(args: list[str] | None = None) -> int:
    """Entry point for ``sim2real node real_policy``: the robot computer's side of the real
    graph (the real bridge in front of ros2_control, and the policy node) in one process."""
    return _main("real_policy", build_real, args)
