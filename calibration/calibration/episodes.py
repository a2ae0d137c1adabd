"""Real episodes as calibration uses them: from recorded bags, or from the arm emulator.

:class:`ReferenceEpisode` holds one real trajectory in the robot profile's joint order
(the initial state, the goal, the commands sent and the joint states that followed);
:func:`load_reference_episodes` reads them from rosbag2 recordings (``sim2real record``,
``sim2real real --record``), :func:`emulator_episodes` produces them directly from the
arm emulator without ROS (benchmarks and tests).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim_bridge.joints import JointMapper

__all__ = ["EpisodeError", "ReferenceEpisode", "load_reference_episodes", "drive_emulator", "emulator_episodes"]


class EpisodeError(ValueError):
    """A recorded episode cannot be used for calibration (the message says which and why)."""


@dataclass(frozen=True)
class ReferenceEpisode:
    """One real episode as calibration needs it, in the profile's joint order.

    ``position``/``velocity`` [T, J]: the joint states; ``command`` [T-1, J]: the absolute
    joint targets sent after state t (open-loop replay); ``goal`` [3]: the reach target.
    """

    name: str
    position: np.ndarray
    velocity: np.ndarray
    command: np.ndarray
    goal: np.ndarray

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
        for attr, value in (("position", pos), ("velocity", vel), ("command", cmd), ("goal", goal)):
            value.setflags(write=False)
            object.__setattr__(self, attr, value)

    @property
    def steps(self) -> int:
        return len(self.position)

    @property
    def num_joints(self) -> int:
        return self.position.shape[1]

    def observed(self, signals: Sequence[str] = ("position",)) -> np.ndarray:
        """[T, J * len(signals)] of the named signals (``position``, ``velocity``)."""
        return np.concatenate([getattr(self, s) for s in signals], axis=1)

    def truncated(self, steps: int) -> ReferenceEpisode:
        steps = max(2, min(int(steps), self.steps))
        return ReferenceEpisode(self.name, self.position[:steps], self.velocity[:steps],
                                self.command[:steps - 1], self.goal)

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
        return cls(name, pos, vel, cmd, goals[finite[-1]])



def load_reference_episodes(bags: Sequence[str | os.PathLike], profile, *, max_steps: int | None = None,
                            min_steps: int = 10, complete_only: bool = True) -> list[ReferenceEpisode]:
    """Every usable episode of the given bags, in the profile's joint order.

    Episodes without an end marker (``complete_only``) or shorter than ``min_steps`` are
    skipped with a reason in the returned list's ``skipped`` attribute; a bag that cannot
    be read raises :class:`real_bridge.bagload.BagLoadError` naming it; an episode with
    NaN positions raises :class:`EpisodeError`. ``max_steps`` truncates each episode.
    """
    from real_bridge.bagload import BagLoadError, load_episodes  # noqa: PLC0415 - optional dependency

    if not bags:
        raise BagLoadError("no bags given")
    out = _EpisodeList()
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
            ref = ReferenceEpisode.from_recorded(ep, name)
            out.append(ref.truncated(max_steps) if max_steps else ref)
    if not out:
        raise BagLoadError(f"no usable episodes in {[os.fspath(b) for b in bags]}: " + "; ".join(out.skipped))
    return out


def _arm_state(joints: JointMapper, state) -> tuple[np.ndarray, np.ndarray]:
    """An emulator joint state's arm positions (rad) and velocities (rad/s) in the profile's
    order, mapped by name (the emulator also reports non-arm joints)."""
    m = joints.lookup(state.names)
    return m.take(state.position_rad, "positions"), m.take(state.velocity_rad_s, "velocities")


class _EpisodeList(list):
    """A list of episodes that also says which ones were skipped and why, and what to mind."""

    def __init__(self, *args):
        super().__init__(*args)
        self.skipped: list[str] = []
        self.warnings: list[str] = []


def drive_emulator(emu, policy, goal: np.ndarray, steps: int):
    """The deployed loop on the arm emulator, from the home pose: yields, after each control
    period, (command sent, the emulator's new reported joint state). ``policy`` is a
    :class:`policies.runtime.PolicyRuntime`; the observation is built from the reported
    (quantized) state, as on a real arm."""
    p = emu.profile
    joints = JointMapper.for_profile(p)
    state = emu.reset()
    policy.reset()
    prev = np.zeros(p.num_joints)
    for _ in range(int(steps)):
        q, v = _arm_state(joints, state)
        prev = np.clip(policy.act(q, v, prev, goal), -1.0, 1.0)
        target = policy.joint_targets(prev, q, p.position_lower_rad, p.position_upper_rad)
        emu.command(target)  # controller order = profile order unless configured otherwise
        emu.step()
        state = emu.joint_state()
        yield target, state


def emulator_episodes(policy_path: str | os.PathLike, count: int, *, steps: int = 100, seed: int = 0,
                      emulator=None) -> list[ReferenceEpisode]:
    """Run the policy on the arm emulator (no ROS) for ``count`` episodes of ``steps``
    joint states each, from the home pose to random goals in the profile's reach box
    (:func:`drive_emulator`)."""
    from policies.runtime import PolicyRuntime  # noqa: PLC0415
    from real_bridge.emulator import ArmEmulator  # noqa: PLC0415

    emu = emulator or ArmEmulator()
    p = emu.profile
    joints = JointMapper.for_profile(p)
    policy = PolicyRuntime(policy_path)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(int(count)):
        goal = rng.uniform(p.reach_low_m, p.reach_high_m)
        q, v = _arm_state(joints, emu.reset())
        pos, vel, cmd = [q], [v], []
        for target, state in drive_emulator(emu, policy, goal, int(steps) - 1):
            cmd.append(target)
            q, v = _arm_state(joints, state)
            pos.append(q)
            vel.append(v)
        out.append(ReferenceEpisode(f"emulator#{k}", np.array(pos), np.array(vel), np.array(cmd), goal))
    return out
