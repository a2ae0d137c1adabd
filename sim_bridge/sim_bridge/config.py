"""Shared helpers for the stack's YAML files: clear errors, path resolution, atomic writes.

Every file format of the stack (robot profile, randomization distribution, later the
policy manifest and calibration output) reports problems as :class:`ConfigError`, whose
message names the file and the field, so a user can fix the file without reading code.
"""
from __future__ import annotations

import os
import reprlib
import stat
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PACKAGE_URI_PREFIX = "package://"


class ConfigError(ValueError):
    """A configuration file or value is invalid. The message says which and why.

    ``str(error)`` is the full detail, for the reading process's own log or terminal; it
    may quote the file (a YAML syntax error shows the line). :meth:`public` is what a
    remote caller may see (a ROS parameter reply, a service response): the path, the field
    and ``kind``, a short content-free description of the error.
    """

    def __init__(self, message: str, *, source: str | os.PathLike | None = None,
                 field: str | None = None, kind: str | None = None):
        self.source = str(source) if source is not None else None
        self.field = field
        self.kind = kind
        where = []
        if self.source:
            where.append(self.source)
        if field:
            where.append(f"field '{field}'")
        prefix = ": ".join(where)
        self._prefix = prefix
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def public(self) -> str:
        """The error without file contents: path, field and the kind of error."""
        kind = self.kind or ("invalid value" if self.field else "invalid file")
        return f"{self._prefix}: {kind}" if self._prefix else kind


def package_path(package: str, relative: str) -> Path:
    """Absolute path of a data file shipped inside an installed Python package."""
    return Path(str(resources.files(package).joinpath(relative)))


def resolve_path(value: str | os.PathLike, *, relative_to: Path | None = None) -> Path:
    """Resolve ``package://pkg/rel/path``, absolute paths and paths relative to a file's folder."""
    text = os.fspath(value)
    if text.startswith(PACKAGE_URI_PREFIX):
        package, _, rel = text[len(PACKAGE_URI_PREFIX):].partition("/")
        return package_path(package, rel)
    path = Path(text).expanduser()
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    return path


# Limits of :func:`read_config_text` / :func:`load_yaml_mapping`: every file the stack reads
# is small (a robot profile ~5 kB, a calibrated distribution ~20 kB); these bound the time
# and memory a broken or hostile file can cost the process that reads it.
MAX_CONFIG_BYTES = 256 << 10         # 256 KiB (50x the largest file the stack writes)
MAX_YAML_ALIASES = 64               # ``*name`` references in one document
MAX_YAML_NODES = 100_000            # nodes of the document with every alias expanded

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6
_SHORT.maxlevel = 2


def short_repr(value: Any) -> str:
    """``repr`` bounded in length and depth (cost independent of the value's size), for
    messages: an alias-expanded YAML value is never formatted in full."""
    return _SHORT.repr(value)


class _UniqueKeyLoader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):
    """A safe loader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeConstructor refuses it below
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {short_repr(key)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node, source: Path) -> None:
    """Refuse an alias bomb before anything is constructed: count the aliases (nodes reached
    more than once) and the node count with every alias expanded (memoized per node, so the
    check itself costs one pass over the distinct nodes)."""
    expanded: dict[int, int] = {}
    reached: set[int] = set()
    aliases = 0
    # iterative post-order walk (a deep document must not hit the recursion limit)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            total = 1 + sum(expanded[id(c)] for c in _children(node))
            if total > MAX_YAML_NODES:
                why = " through aliases (an alias bomb?)" if aliases else ""
                raise ConfigError(f"not accepted: the YAML has more than {MAX_YAML_NODES} nodes{why}",
                                  source=source, kind="YAML size limit")
            expanded[key] = total
            continue
        if key in reached:
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise ConfigError(f"not accepted: more than {MAX_YAML_ALIASES} YAML aliases (*name)",
                                  source=source, kind="YAML alias limit")
            if key in expanded:
                continue
            # reached again before its size is known: a recursive alias (a cycle)
            raise ConfigError("not accepted: a recursive YAML alias", source=source, kind="YAML alias limit")
        reached.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def read_config_text(path: str | os.PathLike, *, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """Read a small UTF-8 text file safely, for any thread, from any path a user gives.

    Only regular files: a FIFO, device (``/dev/zero``), socket or folder is refused from
    ``os.stat`` before opening, and the file is opened with ``O_NONBLOCK`` and checked
    again on the open descriptor (the path may be swapped in between), so no read ever
    blocks. Files over ``max_bytes`` (bytes) are refused without reading them.
    Raises :class:`ConfigError` naming the file and the reason (never its contents).
    """
    path = Path(path)
    try:
        check_regular_file(path, max_bytes=max_bytes)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError("file not found", source=path, kind="file not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror})", source=path, kind="cannot read file") from None
    try:
        _check_regular(os.fstat(fd), path, max_bytes)
        data = os.read(fd, max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror})", source=path, kind="cannot read file") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew since the stat
        raise ConfigError(f"larger than the limit of {max_bytes} bytes", source=path, kind="file too large")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", source=path, kind="not UTF-8 text") from None


def check_regular_file(path: str | os.PathLike, *, max_bytes: int = MAX_CONFIG_BYTES) -> None:
    """Refuse (:class:`ConfigError`) a path that is not a regular file of at most
    ``max_bytes`` bytes, from ``os.stat`` alone (never blocks, reads nothing). OSError
    (not found, no permission) propagates."""
    _check_regular(os.stat(path), Path(path), max_bytes)


def _check_regular(st: os.stat_result, path: Path, max_bytes: int) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError("is a folder, not a file", source=path, kind="not a regular file")
    if not stat.S_ISREG(st.st_mode):
        what = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise ConfigError(f"refused: {what}; only regular files are read", source=path,
                          kind="not a regular file")
    if st.st_size > max_bytes:
        raise ConfigError(f"refused: {st.st_size} bytes, larger than the limit of {max_bytes} bytes",
                          source=path, kind="file too large")


def parse_yaml(text: str, source: str | os.PathLike) -> Any:
    """Parse YAML text with the stack's safe loader: safe types only, duplicate keys refused,
    aliases limited (:data:`MAX_YAML_ALIASES`, :data:`MAX_YAML_NODES` when expanded).
    A syntax error names the line and column; the offending text is in the message but not
    in :meth:`ConfigError.public`."""
    source = Path(source)
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"not valid YAML ({exc})", source=source, kind=f"not valid YAML{where}") from None
    except RecursionError:
        raise ConfigError("not accepted: nested too deeply", source=source, kind="YAML nesting limit") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | os.PathLike, *, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """:func:`read_config_text` + :func:`parse_yaml`: the one way the stack reads a YAML file."""
    return parse_yaml(read_config_text(path, max_bytes=max_bytes), path)


def load_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file (see :func:`load_yaml_file`)."""
    path = Path(path)
    data = load_yaml_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}",
                          source=path, kind="not a mapping")
    return data


def confine_path(value: str | os.PathLike, root: str | os.PathLike, *, what: str = "path") -> Path:
    """``value`` as a path inside the folder ``root``, for paths a remote caller can set (ROS
    parameters, services). A relative value is taken inside ``root``; an absolute one must
    lie inside it. The result is resolved (symlinks followed as far as the path exists), so
    ``..`` and symlinks that leave the folder are refused too. Raises :class:`ConfigError`
    naming the value, the folder and the rule (the message is safe for remote callers).
    """
    text = os.fspath(value)
    root_path = Path(root).expanduser().resolve()
    if not text:
        raise ConfigError(f"{what}: empty path", kind=f"{what}: empty path")
    if "\0" in text:
        raise ConfigError(f"{what}: NUL in the path", kind=f"{what}: NUL in the path")
    path = Path(text)
    resolved = (path if path.is_absolute() else root_path / path).resolve()
    if resolved != root_path and not resolved.is_relative_to(root_path):
        reason = (f"{what} '{text}' is outside the allowed folder {root_path} (resolves to {resolved}); "
                  "give a name or a relative path inside it ('..', absolute paths elsewhere and symlinks "
                  "leaving the folder are refused)")
        raise ConfigError(reason, kind=reason)
    return resolved


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a file so that readers see either the old or the new content, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FieldReader:
    """Typed access to one mapping of a config file, with errors that name the field.

    ``reader.get("limits.velocity_rad_s", list)`` style paths are built by :meth:`child`.
    Unknown keys are rejected by :meth:`finish`, so a typo never passes silently.
    """

    def __init__(self, data: dict[str, Any], *, source: str | os.PathLike | None, prefix: str = ""):
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping, got {type(data).__name__}",
                              source=source, field=prefix or None)
        self.data = data
        self.source = source
        self.prefix = prefix
        self._used: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str | None, message: str) -> ConfigError:
        return ConfigError(message, source=self.source,
                           field=self._name(key) if key else (self.prefix or None))

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = ..., ) -> Any:
        self._used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.error(key, "missing required field")
            return default
        return self.data[key]

    def str(self, key: str, default: Any = ...) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {short_repr(value)}")
        return value

    def number(self, key: str, default: Any = ..., *, positive: bool = False) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {short_repr(value)}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(key, f"expected a finite number, got {short_repr(value)}")
        if positive and value <= 0:
            raise self.error(key, f"must be > 0, got {value}")
        return value

    def integer(self, key: str, default: Any = ...) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {short_repr(value)}")
        return value

    def numbers(self, key: str, length: int | None = None, default: Any = ...) -> list[float]:
        value = self.raw(key, default)
        if not isinstance(value, (list, tuple)):
            raise self.error(key, f"expected a list of numbers, got {short_repr(value)}")
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise self.error(key, f"item {i} is not a number: {short_repr(item)}")
            if item != item or abs(item) == float("inf"):
                raise self.error(key, f"item {i} is not finite: {short_repr(item)}")
            out.append(float(item))
        if length is not None and len(out) != length:
            raise self.error(key, f"expected {length} values, got {len(out)}")
        return out

    def strings(self, key: str, default: Any = ...) -> list[str]:
        value = self.raw(key, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"expected a list of strings, got {short_repr(value)}")
        if len(set(value)) != len(value):
            raise self.error(key, f"names must be unique, got {list(value)}")
        return list(value)

    def child(self, key: str, default: Any = ...) -> "FieldReader":
        value = self.raw(key, default)
        return FieldReader(value, source=self.source, prefix=self._name(key))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            raise self.error(None, f"unknown field(s) {unknown}; allowed: {sorted(self._used)}")
