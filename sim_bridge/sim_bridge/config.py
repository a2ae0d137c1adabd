"""Shared helpers for the stack's YAML files: clear errors, path resolution, atomic writes.

Every file format of the stack (robot profile, randomization distribution, later the
policy manifest and calibration output) reports problems as :class:`ConfigError`, whose
message names the file and the field, so a user can fix the file without reading code.
"""
from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PACKAGE_URI_PREFIX = "package://"


class ConfigError(ValueError):
    """A configuration file or value is invalid. The message says which and why."""

    def __init__(self, message: str, *, source: str | os.PathLike | None = None,
                 field: str | None = None):
        self.source = str(source) if source is not None else None
        self.field = field
        where = []
        if self.source:
            where.append(self.source)
        if field:
            where.append(f"field '{field}'")
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError("file not found", source=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror})", source=path) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({exc})", source=path) from None
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}",
                          source=path)
    return data


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
            raise self.error(key, f"expected a string, got {value!r}")
        return value

    def number(self, key: str, default: Any = ..., *, positive: bool = False) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(key, f"expected a finite number, got {value!r}")
        if positive and value <= 0:
            raise self.error(key, f"must be > 0, got {value}")
        return value

    def integer(self, key: str, default: Any = ...) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {value!r}")
        return value

    def numbers(self, key: str, length: int | None = None, default: Any = ...) -> list[float]:
        value = self.raw(key, default)
        if not isinstance(value, (list, tuple)):
            raise self.error(key, f"expected a list of numbers, got {value!r}")
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise self.error(key, f"item {i} is not a number: {item!r}")
            if item != item or abs(item) == float("inf"):
                raise self.error(key, f"item {i} is not finite: {item!r}")
            out.append(float(item))
        if length is not None and len(out) != length:
            raise self.error(key, f"expected {length} values, got {len(out)}")
        return out

    def strings(self, key: str, default: Any = ...) -> list[str]:
        value = self.raw(key, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"expected a list of strings, got {value!r}")
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
