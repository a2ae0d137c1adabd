"""Lifecycle bookkeeping shared by the nodes that command an arm (policy node, real bridge)."""
from __future__ import annotations

from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn


class CommandGateMixin:
    """Deactivate, clean up, shut down and error transitions of a commanding lifecycle node.

    The subclass (listed before ``LifecycleNode``) provides ``self._gate`` (the lock its
    publishing code holds while it checks ``self._active``, so no command goes out once a
    transition closed the gate), ``_configure()`` (raises one of ``CONFIGURE_ERRORS`` with
    the reason when the configuration is unusable), ``_teardown()`` (frees what configure
    created) and ``INACTIVE_MESSAGE`` (logged on deactivate); it keeps ``lifecycle_state``
    and ``last_error`` readable.
    """

    INACTIVE_MESSAGE = "inactive: no commands are sent"
    CONFIGURE_ERRORS: tuple[type[BaseException], ...] = (ValueError,)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except self.CONFIGURE_ERRORS as exc:
            self.last_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            self._teardown()
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # rclpy would turn it into ERROR without a word
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"configure failed unexpectedly: {self.last_error}")
            self._teardown()
            return TransitionCallbackReturn.ERROR
        self.lifecycle_state = "inactive"
        return super().on_configure(state)

    def destroy_node(self) -> None:
        # rclpy's LifecycleNode has no destroy_node of its own: its state machine (which owns the
        # lifecycle services, ~/change_state ...) was freed only when the garbage collector took
        # the node, i.e. never once freeze_heap() had frozen it, and the destroyed node stayed in
        # the ROS graph (tests: one more /policy per policy node; new clients then found
        # /policy/change_state "not available"). Free it here, while the node is still valid.
        machine = getattr(self, "_state_machine", None)
        if machine is not None:
            machine.destroy_when_not_in_use()
        super().destroy_node()

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
