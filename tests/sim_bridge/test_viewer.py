"""`sim2real sim --gui`: the MuJoCo viewer where a display exists, a clear headless fallback elsewhere."""
from __future__ import annotations

import subprocess
import sys

from sim_bridge.viewer import display_available

PROBE = ("from sim_bridge.viewer import SimViewer\n"
         "from sim_bridge.simulator import ArmSimulator\n"
         "from sim_bridge.profile import load_profile\n"
         "print('viewer:', SimViewer.open(ArmSimulator(load_profile('panda_like'))))\n")


def test_display_detection():
    assert not display_available({})
    assert display_available({"DISPLAY": ":0"}) and display_available({"WAYLAND_DISPLAY": "wayland-0"})
    assert not display_available({"DISPLAY": ""})


def _probe(env_update: dict) -> subprocess.CompletedProcess:
    import os  # noqa: PLC0415

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")} | env_update
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)


def test_no_display_runs_headless_with_the_reason():
    proc = _probe({})
    assert proc.returncode == 0, proc.stderr
    assert "no display" in proc.stdout and "viewer: None" in proc.stdout


def test_unreachable_display_does_not_kill_the_process():
    # MuJoCo's viewer exits the process when GLFW cannot start; the pre-check must catch that
    proc = _probe({"DISPLAY": ":97"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GLFW failed" in proc.stdout and "viewer: None" in proc.stdout
