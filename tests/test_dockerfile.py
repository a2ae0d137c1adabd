"""Static checks of the Dockerfile (no docker engine needed)."""

import fnmatch
import json
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


def _instructions():
    """(INSTRUCTION, arguments) pairs, with comments and continuations folded."""
    result, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue  # comments / parser directives / blank lines
        if current and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        result.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a line continuation"
    return result


def _copy_sources(args: str):
    """Local source paths of a COPY/ADD, or [] for COPY --from=<stage>."""
    if args.startswith("["):
        words = json.loads(args)
    else:
        words = shlex.split(args)
    flags = [w for w in words if w.startswith("--")]
    if any(f.startswith("--from=") for f in flags):
        return []
    paths = [w for w in words if not w.startswith("--")]
    assert len(paths) >= 2, f"COPY needs a source and a destination: {args}"
    return paths[:-1]


def _dockerignore_patterns():
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line.rstrip("/"))
    return patterns


def _ignored(path: str, patterns) -> bool:
    """Simplified .dockerignore matching (a path or any parent matches)."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.replace("**/", "*/") if pat.startswith("**/") else pat
        for cand in candidates:
            if fnmatch.fnmatch(cand, pat) or (
                pattern.startswith("**/") and fnmatch.fnmatch(Path(cand).name, pat[2:])
            ):
                ignored = not negate
    return ignored


def test_base_image_is_ros_jazzy():
    froms = [args for kw, args in _instructions() if kw == "FROM"]
    assert froms, "no FROM instruction"
    image = froms[0].split()[0]
    assert image == "ros:jazzy", f"base image is {image}, expected the official ros:jazzy"


def test_copy_sources_exist_and_are_not_dockerignored():
    sources = [
        src
        for kw, args in _instructions()
        if kw in ("COPY", "ADD")
        for src in _copy_sources(args)
    ]
    assert sources, "Dockerfile copies nothing from the repository"
    patterns = _dockerignore_patterns()
    for src in sources:
        assert "://" not in src, f"remote ADD source not allowed: {src}"
        rel = src.rstrip("/") or "."
        matches = list(REPO.glob(rel)) if any(c in rel for c in "*?[") else [REPO / rel]
        assert matches and all(m.exists() for m in matches), f"COPY source missing: {src}"
        assert not _ignored(rel, patterns), f"COPY source excluded by .dockerignore: {src}"


def test_entrypoint_script_is_executable():
    for kw, args in _instructions():
        if kw == "COPY" and "entrypoint" in args:
            src = REPO / _copy_sources(args)[0]
            assert src.stat().st_mode & 0o111, f"{src} must be executable (git keeps +x)"
            assert src.read_text().startswith("#!")
            break
    else:
        raise AssertionError("no entrypoint script copied into the image")


def test_default_command_launches_the_sim_graph_from_the_installed_share():
    instructions = _instructions()
    cmd = [args for kw, args in instructions if kw == "CMD"][-1]
    assert json.loads(cmd) == ["ros2", "launch", "sim2real", "sim.launch.py"]
    # sim2real's setup.py installs ../launch (next to the package folder) into share/: the
    # image must hold launch/ as a sibling of src/sim2real/, as ros2_ws/src does (symlinks)
    copies = {shlex.split(args)[-1].rstrip("/"): shlex.split(args)[0].rstrip("/")
              for kw, args in instructions if kw == "COPY" and not args.startswith("--")}
    assert copies.get("src/sim2real") == "sim2real" and copies.get("src/launch") == "launch"
    assert 'os.pardir, "launch"' in (REPO / "sim2real" / "setup.py").read_text()
    assert (REPO / "launch" / "sim.launch.py").is_file()
    for package in ("sim_bridge", "real_bridge", "policies", "calibration", "sim2real"):
        assert copies.get(f"src/{package}") == package, f"{package} not copied into the workspace"
