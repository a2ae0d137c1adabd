"""Joint-name mapping: arrays in a message's joint order -> a fixed joint order (the profile's).

Every node that reads ``sensor_msgs/JointState`` (the real bridge, the policy node, the bag
loader) gets the joints in whatever order the publisher chose, often with extra joints (a
gripper) the robot profile does not know. :class:`JointMapper` maps them *by name* to its
target order. The index arrays are built once per distinct name tuple and cached, so a
stream whose names never change costs one dict lookup per message.

Pure Python + numpy (no ROS): callers pass ``msg.name`` and ``msg.position`` as sequences.

Conventions:

* Extra source joints (not in the target order) are ignored.
* A source that lacks target joints cannot be mapped completely: :meth:`JointMap.take`
  raises :class:`JointMappingError` naming the missing joints; :attr:`JointMap.foreign`
  says the source holds none of them (another device publishing on the same topic).
  :attr:`JointMap.target_columns` / :attr:`JointMap.source_columns` map the joints that
  are present (a bag loader fills the others with NaN).
* A name that occurs twice in the source maps to its last occurrence.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["JointMap", "JointMapper", "JointMappingError"]

MAX_CACHED = 16  # distinct name tuples kept per mapper (a topic normally carries one or two)


class JointMappingError(ValueError):
    """Values cannot be mapped to the target joint order; the message says which joints or
    lengths were wrong."""


@dataclass(frozen=True)
class JointMap:
    """How one source name tuple maps to the target order (read-only index arrays).

    ``index``: for each target joint, its position in the source (``values[index]`` is in
    the target order), or None when some target joints are missing. ``missing``: the
    target joints the source lacks, in target order. ``target_columns`` /
    ``source_columns``: the target joints that are present and where they are in the source.
    """

    names: tuple[str, ...]
    joint_names: tuple[str, ...]
    owner: str
    index: np.ndarray | None
    missing: tuple[str, ...]
    target_columns: np.ndarray
    source_columns: np.ndarray

    @property
    def complete(self) -> bool:
        """Every target joint is in the source."""
        return self.index is not None

    @property
    def foreign(self) -> bool:
        """No target joint is in the source (another device's joints)."""
        return len(self.missing) == len(self.joint_names)

    def missing_reason(self) -> str:
        """``"lacks joint(s) [...] of <owner>"``, or "" when complete."""
        return f"lacks joint(s) {list(self.missing)} of {self.owner}" if self.missing else ""

    def take(self, values: Sequence[float], what: str = "values") -> np.ndarray:
        """``values`` (one per source name, source order) as a float array in the target order.

        Raises :class:`JointMappingError` when target joints are missing or when the number
        of values is not the number of source names (``what`` names the values in the message,
        e.g. ``"positions"``). Non-finite values are returned as they are: finiteness is the
        caller's rule.
        """
        if self.index is None:
            raise JointMappingError(self.missing_reason())
        if len(values) != len(self.names):
            raise JointMappingError(f"has {len(self.names)} names but {len(values)} {what}")
        return np.asarray(values, dtype=float)[self.index]

    def take_if_complete(self, values: Sequence[float]) -> np.ndarray | None:
        """Like :meth:`take` for optional fields (velocity, effort): None instead of an error
        when the source has no value per name (an empty field: no such interface)."""
        if self.index is None or len(values) != len(self.names):
            return None
        return np.asarray(values, dtype=float)[self.index]


class JointMapper:
    """Maps source joint name tuples to the fixed order ``joint_names`` (module docstring).

    ``owner`` names the target order in error messages, e.g. ``"robot profile 'panda_like'"``.
    Thread-safe in the sense that matters here: concurrent lookups at worst build the same
    (immutable) map twice.
    """

    def __init__(self, joint_names: Sequence[str], *, owner: str = "the target joint order"):
        names = tuple(str(n) for n in joint_names)
        if not names:
            raise ValueError("a joint mapper needs at least one target joint name")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"target joint names must be unique; {duplicates} occur more than once in {list(names)}")
        self.joint_names = names
        self.owner = owner
        self._cache: dict[tuple[str, ...], JointMap] = {}
        self._last: JointMap | None = None

    @classmethod
    def for_profile(cls, profile) -> JointMapper:
        """A mapper to a :class:`~sim_bridge.profile.RobotProfile`'s joint order."""
        return cls(profile.joint_names, owner=f"robot profile '{profile.name}'")

    def lookup(self, names: Sequence[str]) -> JointMap:
        """The (cached) map of the source name tuple ``names``."""
        key = names if type(names) is tuple else tuple(names)
        last = self._last
        if last is not None and last.names == key:
            return last
        found = self._cache.get(key)
        if found is None:
            found = self._build(key)
            if len(self._cache) >= MAX_CACHED:
                self._cache.pop(next(iter(self._cache)), None)  # the oldest
            self._cache[key] = found
        self._last = found
        return found

    def index(self, names: Sequence[str]) -> np.ndarray:
        """Source positions of the target joints; :class:`JointMappingError` names any missing."""
        found = self.lookup(names)
        if found.index is None:
            raise JointMappingError(found.missing_reason())
        return found.index

    def take(self, names: Sequence[str], values: Sequence[float], what: str = "values") -> np.ndarray:
        """``values`` (in the order of ``names``) in the target order (see :meth:`JointMap.take`)."""
        return self.lookup(names).take(values, what)

    def _build(self, names: tuple[str, ...]) -> JointMap:
        position = {name: i for i, name in enumerate(names)}  # a repeated name: its last occurrence
        present = [(k, position[j]) for k, j in enumerate(self.joint_names) if j in position]
        missing = tuple(j for j in self.joint_names if j not in position)
        target = np.array([k for k, _ in present], dtype=int)
        source = np.array([i for _, i in present], dtype=int)
        index = None if missing else source.copy()
        for arr in (target, source, index):
            if arr is not None:
                arr.setflags(write=False)
        return JointMap(names, self.joint_names, self.owner, index, missing, target, source)
