"""Hostile input files for the hardening tests (tests/ is on sys.path: rootdir conftest)."""
from __future__ import annotations

from pathlib import Path


def alias_bomb(path: Path) -> Path:
    """A <1 kB YAML 'billion laughs': 9 levels of 9 aliases (9^9 leaves when expanded), used
    where a value is checked (formatting it in the error message exhausted the memory)."""
    lines = ["randomization_version: 1", "provenance:",
             '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"  {name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("description: *i")
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 1024
    return path
