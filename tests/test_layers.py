"""The package layering (.importlinter), checked with import-linter as `make test` runs it.

sim2real (the application) on top; calibration; policies | real_bridge (siblings that never
import each other); sim_bridge at the bottom. The deployed runtime never imports torch,
Ray or the training extras, the policy runtime never imports MuJoCo, and only
policies.ray_backend imports Ray (an optional extra)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def _lint(cwd: Path, *args: str, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([LINT, "--no-cache", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_project_keeps_its_import_contracts():
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 kept, 0 broken" in proc.stdout, proc.stdout


def test_a_lazy_back_edge_breaks_the_layers_contract(tmp_path):
    """The contracts see imports inside functions too (the back-edges this layering removed
    were lazy ones): a library importing the application breaks the build."""
    for pkg, body in {"app": "import lib\n",
                      "lib": "def run():\n    from app import cli  # a lazy back-edge\n    return cli\n"}.items():
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(body)
        (tmp_path / pkg / "cli.py").write_text("")
    (tmp_path / ".importlinter").write_text(textwrap.dedent("""\
        [importlinter]
        root_packages =
            app
            lib
        [importlinter:contract:layers]
        name = app on lib
        type = layers
        layers =
            app
            lib
        """))
    proc = _lint(tmp_path, pythonpath=str(tmp_path))
    assert proc.returncode != 0, proc.stdout
    assert "lib -> app.cli" in proc.stdout.replace("\n", " ") or "BROKEN" in proc.stdout, proc.stdout
