"""Lifecycle bookkeeping shared by the nodes that command an arm (policy node, real bridge)."""
from __future__ import annotations

from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn


class CommandGateMixin:
    """Deactivate, clean up, shut down and error transitions of a commanding lifecycle node.

    The subclass (listed before ``LifecycleNode``) provides ``self._gate`` (the lock its
    publishing code holds while it checks ``self._active``, so no command goes out once a
    transition closed the gate), ``_teardown()`` (frees what configure created) and
    ``INACTIVE_MESSAGE`` (logged on deactivate); it keeps ``lifecycle_state`` readable.
    """

    INACTIVE_MESSAGE = "inactive: no commands are sent"

    def _close_gate(self) -> None:
        with self._gate:
            self._active = False

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close_gate()
        self.lifecycle_state = "inactive"
        self.get_logger().info(self.INACTIVE_MESSAGE)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        self.lifecycle_state = "unconfigured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close_gate()
        self._teardown()
        self.lifecycle_state = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close_gate()
        self._teardown()
        self.lifecycle_state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS
