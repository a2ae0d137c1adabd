"""``--gui``: the MuJoCo viewer on the running simulation, where a display exists.

The passive viewer (``mujoco.viewer.launch_passive``) shows the simulator's model and data;
it is synced from the sim's stepping thread after every control step (a tick observer of
:class:`sim_bridge.session.SimSession`), so it never reads the data mid-step. Without a
display (no ``DISPLAY`` / ``WAYLAND_DISPLAY``, e.g. CI or ssh) or without a working OpenGL
context the run goes on headless and says why.
"""
from __future__ import annotations

import os
from collections.abc import Mapping


def display_available(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def _glfw_works() -> bool:
    """Whether GLFW initializes here. Checked first because MuJoCo's viewer ends the whole
    process (exit 1) when it cannot, instead of raising."""
    import warnings  # noqa: PLC0415

    try:
        import glfw  # noqa: PLC0415 - installed with mujoco
    except ImportError:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(glfw.init())
        except Exception:  # noqa: BLE001
            return False


class SimViewer:
    """A passive MuJoCo viewer synced once per control step; ``close()`` when done."""

    def __init__(self, handle):
        self._handle = handle

    @classmethod
    def open(cls, sim, log=print) -> SimViewer | None:
        """The viewer on ``sim`` (an :class:`~sim_bridge.simulator.ArmSimulator`), or None
        (with the reason logged) when there is no display or the viewer cannot start."""
        if not display_available():
            log("--gui: no display (DISPLAY / WAYLAND_DISPLAY unset); running headless")
            return None
        if not _glfw_works():
            log(f"--gui: cannot open a window on display {os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')}"
                " (GLFW failed to initialize); running headless")
            return None
        try:
            import mujoco.viewer  # noqa: PLC0415 - pulls in GLFW; only when asked for

            handle = mujoco.viewer.launch_passive(sim.model, sim.data, show_left_ui=False, show_right_ui=False)
        except Exception as exc:  # noqa: BLE001 - any GL/GLFW failure: go on without the window
            log(f"--gui: the MuJoCo viewer could not start ({type(exc).__name__}: {exc}); running headless")
            return None
        return cls(handle)

    def on_tick(self, session) -> None:
        if self._handle.is_running():
            self._handle.sync()

    def close(self) -> None:
        self._handle.close()
