"""The intra-process handoff of a composed deployment (``sim2real/composed.py``).

rclpy has no intra-process path: two nodes in one process still exchange every message through
DDS (a serialisation, a delivery by the middleware's threads, a take and an executor wake-up on
the other side). A bridge composed with a policy node instead hands each message it publishes
on a *linked topic* straight to the partner's own subscription callback, and the partner hands
its commands back the same way; neither subscribes to those topics, every topic is still
published for recorders and monitors. The callbacks run in the caller's thread, so a node links
only topics it publishes from its executor's spinning thread (where the partner's callback would
have run anyway).
"""
from __future__ import annotations

from collections.abc import Callable


class HandoffSource:
    """Mixin for a node that hands the messages it publishes on :attr:`linked_topics` to
    in-process listeners (call :meth:`_init_handoff` in ``__init__``, :meth:`_deliver` after
    each publish on a linked topic)."""

    linked_topics: tuple[str, ...] = ()
    intra_process = False  # the node sets it: only then are messages kept and handed over

    def _init_handoff(self) -> None:
        self.listeners: dict[str, list[Callable]] = {}  # topic -> callables taking each message
        self._latest: dict[str, object] = {}            # topic -> the last message handed over

    def link(self, topic: str, listener: Callable) -> None:
        """Hand every message published on ``topic`` (one of :attr:`linked_topics`) to ``listener``."""
        if topic not in self.linked_topics:
            raise ValueError(f"{topic!r} is not a linked topic of this node ({', '.join(self.linked_topics)})")
        self.listeners.setdefault(topic, []).append(listener)

    def latest(self, topic: str):
        """The last message published on a linked topic, or None: what a latched (transient
        local) subscription gets on joining, for an in-process partner."""
        return self._latest.get(topic)

    def _deliver(self, topic: str, msg) -> None:
        if not self.intra_process:  # a node on its own: nothing to keep on the publish path
            return
        self._latest[topic] = msg
        for listener in self.listeners.get(topic, ()):
            listener(msg)
