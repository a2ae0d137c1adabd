"""Tasks as plug-ins: the registry.

A task is a :class:`~sim_bridge.tasks.base.Task` subclass registered under its name::

    from sim_bridge.tasks import register_task
    register_task(MyTask)                       # a class whose no-argument instance is the default

Shipped: ``reach`` (:mod:`sim_bridge.tasks.reach`) and ``push`` (:mod:`sim_bridge.tasks.push`). Tasks of other installed packages
register through the ``sim2real.tasks`` entry-point group (``name = module:TaskClass``),
loaded on the first lookup, so spawned worker processes (vector envs, evaluation) find
them too. :func:`sim_bridge.envs.register_envs` gives every registered task its gymnasium id
(this module stays free of gymnasium: the robot computer imports it).
"""
from __future__ import annotations

from importlib.metadata import entry_points

from sim_bridge.tasks.base import POINT_STAMPED, POSE_STAMPED, Task, TaskInput
from sim_bridge.tasks.push import PushTask
from sim_bridge.tasks.reach import ReachTask

__all__ = ["Task", "TaskInput", "POINT_STAMPED", "POSE_STAMPED", "ReachTask", "PushTask", "register_task", "get_task", "make_task",
           "task_names", "task_for_env_id", "task_from_record", "DEFAULT_TASK", "UnknownTaskError"]

DEFAULT_TASK = "reach"
_REGISTRY: dict[str, type[Task]] = {}
_entry_points_loaded = False


class UnknownTaskError(KeyError):
    """No task of that name; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_task(task_class: type[Task], *, replace: bool = False) -> type[Task]:
    """Add a task class to the registry (usable as a class decorator)."""
    name = getattr(task_class, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a task needs a 'name' that is an identifier, got {name!r}")
    if name in _REGISTRY and _REGISTRY[name] is not task_class and not replace:
        raise ValueError(f"task {name!r} is already registered ({_REGISTRY[name].__module__})")
    _REGISTRY[name] = task_class
    return task_class


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="sim2real.tasks"):
        if ep.name not in _REGISTRY:
            register_task(ep.load())


def get_task(name: str) -> type[Task]:
    """The task class registered under ``name``."""
    if name not in _REGISTRY:
        _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}") from None


def make_task(name: str | Task, **settings) -> Task:
    """A task instance: a registered name (with settings for its constructor) or an instance."""
    if isinstance(name, Task):
        if settings:
            raise ValueError(f"settings {sorted(settings)} given with a task instance")
        return name
    task = get_task(name)(**settings)
    task.settings = dict(settings)
    return task


def task_from_record(record: dict) -> Task:
    """The task a manifest's ``task`` record describes (its name and constructor settings)."""
    return make_task(record["name"], **dict(record.get("settings") or {}))


def task_names() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def task_for_env_id(env_id: str) -> type[Task]:
    _load_entry_points()
    for cls in _REGISTRY.values():
        if cls.env_id == env_id:
            return cls
    raise UnknownTaskError(f"no task has the env id {env_id!r}")


register_task(ReachTask)
register_task(PushTask)
