"""The ROS 2 workspace (ros2_ws/) builds with the venv's colcon, no system ROS.

The build runs with --build-base/--install-base/--log-base under tmp_path, so
the repository's own ros2_ws/{build,install,log} are left alone.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WS_SRC = REPO / "ros2_ws" / "src"
PACKAGES = ("sim_bridge", "real_bridge", "policies", "calibration", "sim2real")
# console_scripts that `ros2 run <pkg> <exe>` must find under lib/<pkg>/
EXECUTABLES = {"sim_bridge": ("sim_bridge_node",), "sim2real": ("sim2real",)}

# The venv's colcon (requirements/test.txt); not whatever is first on PATH.
COLCON = Path(sys.executable).parent / "colcon"


def _tail(text: str, lines: int = 80) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _build_leftovers() -> set:
    """Build artefacts setuptools could drop into the package source dirs."""
    found = set()
    for pkg in PACKAGES:
        for pattern in ("*.egg-info", "build"):
            found.update(str(p.relative_to(REPO)) for p in (REPO / pkg).glob(pattern))
    return found


def test_workspace_src_links_to_the_packages():
    for pkg in PACKAGES:
        link = WS_SRC / pkg
        assert link.is_symlink(), f"{link} should be a symlink to ../../{pkg}"
        assert os.readlink(link) == f"../../{pkg}", "use relative links (work in any clone)"
        assert (link / "package.xml").is_file()


@pytest.mark.slow
def test_colcon_build_install_layout(tmp_path):
    if not COLCON.is_file():
        pytest.fail(f"colcon not found next to {sys.executable} (run `make setup`)")

    env = dict(os.environ)
    # Isolate from a sourced workspace and from the user's colcon config
    # (~/.colcon/defaults.yaml could e.g. force --symlink-install).
    for var in ("COLCON_DEFAULTS_FILE", "COLCON_PREFIX_PATH", "AMENT_PREFIX_PATH"):
        env.pop(var, None)
    env["COLCON_HOME"] = str(tmp_path / "colcon_home")

    before = _build_leftovers()
    install = tmp_path / "install"
    cmd = [
        str(COLCON), "--log-base", str(tmp_path / "log"),
        "build",
        "--base-paths", str(WS_SRC),
        "--build-base", str(tmp_path / "build"),
        "--install-base", str(install),
        "--event-handlers", "console_cohesion+", "summary+",
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"colcon build timed out; output tail:\n{_tail(out)}")
    out = proc.stdout
    assert proc.returncode == 0, (
        f"colcon build failed (rc={proc.returncode}): {' '.join(cmd)}\n"
        f"--- output tail ---\n{_tail(out)}"
    )

    missing = []
    for pkg in PACKAGES:
        prefix = install / pkg
        for rel in (
            f"share/{pkg}/package.xml",
            f"share/ament_index/resource_index/packages/{pkg}",
        ):
            if not (prefix / rel).is_file():
                missing.append(f"{pkg}: {rel}")
    for pkg, exes in EXECUTABLES.items():
        for exe in exes:
            path = install / pkg / "lib" / pkg / exe
            if not (path.is_file() and os.access(path, os.X_OK)):
                missing.append(f"{pkg}: lib/{pkg}/{exe} (executable)")
    assert not missing, (
        "install layout incomplete:\n  " + "\n  ".join(missing)
        + f"\n--- colcon output tail ---\n{_tail(out)}"
    )

    # `ros2 run` executes these scripts directly: their interpreter must be the
    # one that has the runtime deps (the one running colcon, i.e. this venv).
    for pkg, exes in EXECUTABLES.items():
        for exe in exes:
            first = (install / pkg / "lib" / pkg / exe).read_text().splitlines()[0]
            assert first.startswith("#!"), first
            interpreter = first[2:].strip().split()[0]
            assert os.path.realpath(interpreter) == os.path.realpath(sys.executable), (
                f"lib/{pkg}/{exe} runs {interpreter}, expected {sys.executable}"
            )

    assert _build_leftovers() <= before, "colcon build wrote build artefacts into the source tree"
