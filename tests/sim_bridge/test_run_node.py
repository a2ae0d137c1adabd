"""``run_node``: a failure while the context goes down is a stop; any other failure is raised.

The case behind it: a fresh-clone CI run stopped the sim bridge with SIGINT while its tick was
taking a command; rclpy's signal thread shut the context down under the take, pybind11 raised a
RuntimeError, the context was not down yet when ``run_node`` checked, and the node exited 1.
"""
from __future__ import annotations

import threading

import pytest
import rclpy
from rclpy.node import Node

from sim_bridge.executor import run_node


class _FailingTick(Node):
    """A node whose first timer tick raises; ``shutdown_after_s`` also shuts the context down
    from another thread that long after the failure (as rclpy's signal thread does)."""

    def __init__(self, shutdown_after_s: float | None):
        super().__init__("failing_tick")
        self._shutdown_after_s = shutdown_after_s
        self.create_timer(0.01, self._tick)

    def _tick(self) -> None:
        if self._shutdown_after_s is not None:
            threading.Timer(self._shutdown_after_s, rclpy.try_shutdown).start()
        raise RuntimeError("Unable to convert call argument '0' to Python object")


def test_a_failure_while_the_context_goes_down_shortly_after_is_a_clean_stop():
    assert run_node("probe", lambda: _FailingTick(shutdown_after_s=0.2), []) == 0
    assert not rclpy.ok()


def test_a_failure_while_the_context_stays_up_is_raised():
    with pytest.raises(RuntimeError, match="Unable to convert"):
        run_node("probe", lambda: _FailingTick(shutdown_after_s=None), [])
    assert not rclpy.ok(), "run_node shuts rclpy down on its way out"
