"""Real episodes as calibration uses them: from recorded bags, or from the arm emulator.

:class:`ReferenceEpisode` holds one real trajectory in the robot profile's joint order
(the initial state, the goal, the commands sent and the joint states that followed);
:func:`load_reference_episodes` reads them from rosbag2 recordings (``sim2real record``,
``sim2real real --record``), :func:`emulator_episodes` produces them directly from the
arm emulator without ROS (benchmarks and tests).
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim_bridge.joints import JointMapper

__all__ = ["EpisodeError", "EpisodeList", "ReferenceEpisode", "load_reference_episodes", "home_emulator",
           "drive_emulator", "emulator_episodes", "strike_episodes", "align_object_poses"]


class EpisodeError(ValueError):
    """A recorded episode cannot be used for calibration (the message says which and why)."""


@dataclass(frozen=True)
class ReferenceEpisode:
    """One real episode as calibration needs it, in the profile's joint order.

    ``position``/``velocity`` [T, J]: the joint states; ``command`` [T-1, J]: the absolute
    joint targets sent after state t (open-loop replay); ``goal`` [3]: the task's goal (Reach:
    the target; Push: where the puck should go). ``object_pose`` [T, 3] (tasks with an object,
    Push): the object's (x, y, yaw) at each joint state's time, from the tracker's poses placed
    at their measurement stamps (:func:`align_object_poses`: the tracker's latency and dropouts
    are taken out), so row t is comparable with a simulated object at row t. ``replay``: the
    episode was driven by something calibration cannot re-run (a scripted identification strike,
    :class:`sim_bridge.oracle.PushStrike`): its rollouts replay its commands open loop even when
    the others run the policy closed loop.
    """

    name: str
    position: np.ndarray
    velocity: np.ndarray
    command: np.ndarray
    goal: np.ndarray
    object_pose: np.ndarray | None = None
    replay: bool = False

    def __post_init__(self):
        pos = np.asarray(self.position, dtype=float)
        if pos.ndim != 2 or len(pos) < 2:
            raise EpisodeError(f"{self.name}: needs at least 2 joint states, got shape {pos.shape}")
        if not np.all(np.isfinite(pos)):
            rows = np.flatnonzero(~np.all(np.isfinite(pos), axis=1))
            raise EpisodeError(f"{self.name}: joint positions are NaN/inf in {len(rows)} row(s) "
                               f"(first: row {rows[0]}); drop the episode or re-record it")
        vel = np.asarray(self.velocity, dtype=float)
        cmd = np.asarray(self.command, dtype=float)
        goal = np.asarray(self.goal, dtype=float)
        if vel.shape != pos.shape:
            raise EpisodeError(f"{self.name}: velocity shape {vel.shape} != position shape {pos.shape}")
        if cmd.shape != (len(pos) - 1, pos.shape[1]):
            raise EpisodeError(f"{self.name}: command must be [{len(pos) - 1}, {pos.shape[1]}], got {cmd.shape}")
        if goal.shape != (3,) or not np.all(np.isfinite(goal)):
            raise EpisodeError(f"{self.name}: goal must be 3 finite numbers, got {goal.tolist()}")
        values = [("position", pos), ("velocity", vel), ("command", cmd), ("goal", goal)]
        if self.object_pose is not None:
            obj = np.asarray(self.object_pose, dtype=float)
            if obj.shape != (len(pos), 3):
                raise EpisodeError(f"{self.name}: object_pose must be [{len(pos)}, 3] (x, y, yaw per joint state), "
                                   f"got {obj.shape}")
            if not np.all(np.isfinite(obj)):
                raise EpisodeError(f"{self.name}: object poses are NaN/inf in "
                                   f"{int(np.sum(~np.all(np.isfinite(obj), axis=1)))} row(s)")
            values.append(("object_pose", obj))
        for attr, value in values:
            value.setflags(write=False)
            object.__setattr__(self, attr, value)

    @property
    def steps(self) -> int:
        return len(self.position)

    @property
    def num_joints(self) -> int:
        return self.position.shape[1]

    @property
    def has_object(self) -> bool:
        return self.object_pose is not None

    def observed(self, signals: Sequence[str] = ("position",)) -> np.ndarray:
        """[T, D] of the named signals: ``position``, ``velocity`` (J columns each), ``object``
        (the object's x, y: 2 columns)."""
        if "object" in signals and self.object_pose is None:
            raise EpisodeError(f"{self.name}: the signal 'object' needs the object's poses; this episode has none "
                               "(recorded without a tracker, or a task without an object)")
        return np.concatenate([self.object_pose[:, :2] if s == "object" else getattr(self, s) for s in signals],
                              axis=1)

    def truncated(self, steps: int) -> ReferenceEpisode:
        steps = max(2, min(int(steps), self.steps))
        obj = None if self.object_pose is None else self.object_pose[:steps]
        return ReferenceEpisode(self.name, self.position[:steps], self.velocity[:steps],
                                self.command[:steps - 1], self.goal, obj, self.replay)

    @classmethod
    def from_recorded(cls, episode, name: str | None = None) -> ReferenceEpisode:
        """From a :class:`real_bridge.bagload.Episode` (columns in the profile's joint order).

        The command sent after state t is the one in force at state t+1 (the bag holds the
        latest command at each state); rows before the first command hold the initial
        position (the arm holds still). Unreported velocities (NaN) become the finite
        difference of the positions. The goal is the one in force at the episode's end.
        """
        name = name or f"{os.path.basename(str(episode.bag_path).rstrip('/'))}#{episode.index}"
        pos = np.asarray(episode.position, dtype=float)
        if len(pos) < 2:
            raise EpisodeError(f"{name}: {len(pos)} joint state(s); an episode needs at least 2")
        cmd = np.asarray(episode.hardware_command, dtype=float)
        if not np.isfinite(cmd).any():
            cmd = np.asarray(episode.policy_command, dtype=float)
        cmd = cmd[1:].copy()
        missing = ~np.all(np.isfinite(cmd), axis=1)
        if missing.all():
            cmd[:] = pos[0]
        elif missing.any():  # before the first command (or a bad one): hold the last good command
            last = pos[0]
            for t in range(len(cmd)):
                if missing[t]:
                    cmd[t] = last
                else:
                    last = cmd[t]
        vel = np.asarray(episode.velocity, dtype=float)
        if not np.all(np.isfinite(vel)):
            dt = np.diff(np.asarray(episode.time_s, dtype=float))
            dt = np.where(dt > 0, dt, np.nan)
            fd = np.vstack([np.zeros((1, pos.shape[1])), np.diff(pos, axis=0) / dt[:, None]])
            vel = np.where(np.isfinite(vel), vel, np.nan_to_num(fd))
        goals = np.asarray(episode.goal, dtype=float)
        finite = np.flatnonzero(np.all(np.isfinite(goals), axis=1))
        if len(finite) == 0:
            raise EpisodeError(f"{name}: no goal was recorded (current_goal); closed-loop rollouts need it")
        obj = None
        poses = getattr(episode, "object_pose", None)
        if poses is not None and np.isfinite(np.asarray(poses, dtype=float)).all(axis=1).any():
            poses = np.asarray(poses, dtype=float)
            stamps = np.asarray(episode.object_time_s, dtype=float)
            ok = np.all(np.isfinite(poses), axis=1) & np.isfinite(stamps)
            yaw = np.arctan2(poses[ok, 3], poses[ok, 4])
            times = np.asarray(episode.time_s, dtype=float)
            obj = align_object_poses(times, stamps[ok], np.column_stack([poses[ok, :2], yaw]), name=name)
            # after the tracker's last pose nothing is known of the object: the episode ends there
            # (a tracker that stopped mid-episode; normally only its latency's last rows)
            keep = max(2, int(np.sum(times <= stamps[ok].max() + 1e-9)))
            pos, vel, cmd, obj = pos[:keep], vel[:keep], cmd[:keep - 1], obj[:keep]
        return cls(name, pos, vel, cmd, goals[finite[-1]], obj)


def align_object_poses(times_s: np.ndarray, stamps_s: np.ndarray, poses: np.ndarray, *,
                       name: str = "episode") -> np.ndarray:
    """The object's (x, y, yaw) at each of ``times_s`` from tracker poses [N, 3] measured at
    ``stamps_s``: a pose repeated by a zero-order hold counts once (its stamp), the rest is
    linear interpolation in time (yaw unwrapped first); before the first measurement the
    object is where it was first seen (it rests at an episode's start), after the last it
    stays where it was last seen. This removes the tracker's latency (a pose describes its
    stamp's time, not its arrival) and fills dropouts; a tracker that stopped early leaves
    the rest of the episode at its last pose, which :class:`EpisodeError` reports when more
    than half the episode has no measurement."""
    times_s = np.asarray(times_s, dtype=float)
    stamps_s = np.asarray(stamps_s, dtype=float)
    poses = np.asarray(poses, dtype=float).reshape(-1, 3)
    if len(stamps_s) != len(poses) or len(poses) == 0:
        raise EpisodeError(f"{name}: no object poses to align ({len(poses)} poses, {len(stamps_s)} stamps)")
    stamps, first = np.unique(stamps_s, return_index=True)  # sorted; a held pose keeps its first row
    values = poses[first]
    values[:, 2] = np.unwrap(values[:, 2])
    covered = np.mean((times_s >= stamps[0] - 1e-9) & (times_s <= stamps[-1] + 1e-9)) if len(times_s) else 0.0
    if covered < 0.5:
        raise EpisodeError(f"{name}: the object's poses cover only {100 * covered:.0f}% of the episode's time "
                           f"({stamps[0]:.3f}-{stamps[-1]:.3f} s of {times_s[0]:.3f}-{times_s[-1]:.3f} s): did the "
                           "tracker stop, or do its stamps use another clock than the joint states?")
    return np.column_stack([np.interp(times_s, stamps, values[:, k]) for k in range(3)])



def load_reference_episodes(bags: Sequence[str | os.PathLike], profile, *, max_steps: int | None = None,
                            min_steps: int = 10, complete_only: bool = True,
                            replay: bool = False) -> list[ReferenceEpisode]:
    """Every usable episode of the given bags, in the profile's joint order (``replay``: marked
    :attr:`ReferenceEpisode.replay`, e.g. bags of scripted identification strikes).

    Episodes without an end marker (``complete_only``) or shorter than ``min_steps`` are
    skipped with a reason in the returned list's ``skipped`` attribute; a bag that cannot
    be read raises :class:`real_bridge.bagload.BagLoadError` naming it; an episode with
    NaN positions raises :class:`EpisodeError`. ``max_steps`` truncates each episode.
    """
    from real_bridge.bagload import BagLoadError, load_episodes  # noqa: PLC0415 - optional dependency

    if not bags:
        raise BagLoadError("no bags given")
    out = EpisodeList()
    for bag in bags:
        for ep in load_episodes(bag, profile.joint_names):
            name = f"{os.path.basename(os.fspath(bag).rstrip('/'))}#{ep.index}"
            if complete_only and not ep.complete and ep.start_ns is not None:
                out.skipped.append(f"{name}: no end marker (recording stopped mid-episode)")
                continue
            if len(ep) < min_steps:
                out.skipped.append(f"{name}: {len(ep)} joint states (< {min_steps})")
                continue
            if ep.start_ns is None:
                out.warnings.append(f"{name}: no episode markers, the whole bag is one episode; closed-loop "
                                    "calibration assumes the policy started (zero recurrent state) at its first "
                                    "joint state (record with sim2real real --record, or mark episodes with "
                                    "the recorder's ~/start_episode)")
            ref = dataclasses.replace(ReferenceEpisode.from_recorded(ep, name), replay=replay)
            out.append(ref.truncated(max_steps) if max_steps else ref)
    if not out:
        raise BagLoadError(f"no usable episodes in {[os.fspath(b) for b in bags]}: " + "; ".join(out.skipped))
    return out


def _arm_state(joints: JointMapper, state) -> tuple[np.ndarray, np.ndarray]:
    """An emulator joint state's arm positions (rad) and velocities (rad/s) in the profile's
    order, mapped by name (the emulator also reports non-arm joints)."""
    m = joints.lookup(state.names)
    return m.take(state.position_rad, "positions"), m.take(state.velocity_rad_s, "velocities")


class EpisodeList(list):
    """A list of episodes that also says which ones were skipped and why, and what to mind."""

    def __init__(self, *args):
        super().__init__(*args)
        self.skipped: list[str] = []
        self.warnings: list[str] = []


def home_emulator(emu, goal: np.ndarray):
    """Home the emulator for an episode toward ``goal`` (with an object: placed for the goal);
    returns the reported joint state."""
    return emu.reset(goal=goal) if emu.object is not None else emu.reset()


def drive_emulator(emu, policy, goal: np.ndarray, steps: int, *, start=None):
    """The deployed loop on the arm emulator, from the home pose: yields, after each control
    period, (command sent, the emulator's new reported joint state). ``policy`` is a
    :class:`policies.runtime.PolicyRuntime`; the observation is built from the reported
    (quantized) state, as on a real arm. ``start``: the state of a homing the caller did
    (:func:`home_emulator`); None: home here. With an object (Push; the emulator built with
    the policy's task): the homing places the object for ``goal``, and the policy sees the
    tracker stand-in's latest pose (held through dropouts, as the policy node holds it)."""
    p = emu.profile
    joints = JointMapper.for_profile(p)
    state = home_emulator(emu, goal) if start is None else start
    policy.reset()
    prev = np.zeros(getattr(policy, "action_size", None) or policy.manifest.action.size)
    seen = None
    for _ in range(int(steps)):
        q, v = _arm_state(joints, state)
        if emu.object is None:
            prev = np.clip(policy.act(q, v, prev, goal), -1.0, 1.0)
        else:
            reading = emu.object_pose()
            seen = reading.pose if reading is not None else seen
            if seen is None:  # the policy node would hold until a first pose comes: so do we
                target = emu.last_command
            else:
                prev = np.clip(policy.act(q, v, prev, seen, goal), -1.0, 1.0)
        if emu.object is None or seen is not None:
            target = policy.joint_targets(prev, q, p.position_lower_rad, p.position_upper_rad)
        emu.command(target)  # controller order = profile order unless configured otherwise
        emu.step()
        state = emu.joint_state()
        yield target, state


def emulator_episodes(policy_path: str | os.PathLike, count: int, *, steps: int = 100, seed: int = 0,
                      emulator=None) -> list[ReferenceEpisode]:
    """Run the policy on the arm emulator (no ROS) for ``count`` episodes of ``steps``
    joint states each, from the home pose to goals the policy's task samples (seeded;
    :func:`drive_emulator`). With an object (the emulator is then built with the policy's
    task when not given): each episode also holds the object's poses, aligned from the
    tracker stand-in's readings at their measurement times (:func:`align_object_poses`)."""
    from policies.runtime import PolicyRuntime  # noqa: PLC0415
    from real_bridge.emulator import ArmEmulator  # noqa: PLC0415
    from sim_bridge.tasks import task_from_record  # noqa: PLC0415

    policy = PolicyRuntime(policy_path)
    task = task_from_record(policy.manifest.task)
    emu = emulator or ArmEmulator(task=task.name)
    if emu.task.name != task.name:
        raise EpisodeError(f"policy {policy.name!r} is for task {task.name!r}; the emulator holds the scene of "
                           f"{emu.task.name!r} (build it with task={task.name!r})")
    return _record(emu, task, policy, count, steps, seed, "emulator")


def strike_episodes(count: int, *, steps: int = 200, seed: int = 0, emulator=None,
                    strike_steps: int = 8) -> list[ReferenceEpisode]:
    """Identification strikes (:class:`sim_bridge.oracle.PushStrike`, end-effector steps as
    ``sim2real real --controller strike`` sends them) on the arm emulator with the push task's
    object, no ROS: ``count`` episodes of ``steps`` joint states, marked
    :attr:`ReferenceEpisode.replay` (calibration replays them open loop); the emulator homes the
    puck for goals sampled as :func:`emulator_episodes` samples them (same ``seed``: same starts)."""
    from real_bridge.emulator import ArmEmulator  # noqa: PLC0415
    from sim_bridge.tasks import make_task  # noqa: PLC0415

    emu = emulator or ArmEmulator(task="push")
    if emu.object is None:
        raise EpisodeError(f"identification strikes need an object to strike: the emulator holds the scene of "
                           f"{emu.task.name!r} (build it with task='push')")
    task = make_task(emu.task.name)
    return [dataclasses.replace(ep, replay=True)
            for ep in _record(emu, task, _StrikeDriver(emu.profile, task, strike_steps), count, steps, seed, "strike")]


class _StrikeDriver:
    """:class:`sim_bridge.oracle.ActingPusher` striking, behind :func:`drive_emulator`'s policy
    interface (as the ROS node drives it: sim_bridge.controller.ScriptedPushNode)."""

    def __init__(self, profile, task, strike_steps: int):
        from sim_bridge.oracle import ActingPusher  # noqa: PLC0415

        self.pusher = ActingPusher(profile, task, strike_steps)
        self.action_size = self.pusher.action.size

    def reset(self) -> None:
        self.pusher.reset()

    def act(self, q, v, prev, pose, goal) -> np.ndarray:
        return self.pusher.act(q, pose, goal)

    def joint_targets(self, action, joint_pos, lower, upper) -> np.ndarray:
        return self.pusher.targets(joint_pos, action)


def _record(emu, task, policy, count: int, steps: int, seed: int, prefix: str) -> list[ReferenceEpisode]:
    """``count`` episodes of ``policy`` (a PolicyRuntime, or a driver with its interface) on ``emu``."""
    joints = JointMapper.for_profile(emu.profile)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(int(count)):
        goal = task.sample_goal(rng, emu.profile)
        pos, vel, cmd, times, stamps, poses = [], [], [], [], [], []

        def sense(state):
            q, v = _arm_state(joints, state)
            pos.append(q)
            vel.append(v)
            times.append(state.stamp_s)
            reading = emu.object_pose()
            if reading is not None:
                stamps.append(reading.stamp_s - reading.age_s)
                x, y, _, s, c = reading.pose
                poses.append((x, y, math.atan2(s, c)))

        start = home_emulator(emu, goal)
        sense(start)
        for target, state in drive_emulator(emu, policy, goal, int(steps) - 1, start=start):
            cmd.append(target)
            sense(state)
        name = f"{prefix}#{k}"
        obj = align_object_poses(times, stamps, poses, name=name) if emu.object is not None else None
        out.append(ReferenceEpisode(name, np.array(pos), np.array(vel), np.array(cmd), goal, obj))
    return out
