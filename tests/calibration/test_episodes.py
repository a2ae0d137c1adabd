"""Reference episodes (calibration.episodes): validation, conversion of recorded episodes
(command shift and hold, velocities, goal) and loading recorded bags, bad bags included."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from calib_bags import write_episode_bag
from calibration.episodes import EpisodeError, ReferenceEpisode, load_reference_episodes
from real_bridge.bagload import BagLoadError, Episode


def simple_episode(name="ep", steps=5, joints=3, **changes):
    pos = np.linspace(0.0, 1.0, steps)[:, None] + np.arange(joints)[None]
    fields = dict(position=pos, velocity=np.zeros_like(pos), command=pos[1:] + 0.01, goal=np.array([0.4, 0.1, 0.3]))
    fields.update(changes)
    return ReferenceEpisode(name, **fields)


def recorded(position, hardware_command, *, policy_command=None, velocity=None, goal=None, time_s=None,
             bag_path="/data/bags/run7", index=3):
    """A real_bridge.bagload.Episode as the loader returns it."""
    position = np.asarray(position, dtype=float)
    t, j = position.shape
    nan = np.full((t, j), np.nan)
    return Episode(index=index, joint_names=tuple(f"joint{i + 1}" for i in range(j)),
                   time_s=np.arange(t) * 0.02 if time_s is None else np.asarray(time_s, dtype=float),
                   receive_ns=np.arange(t, dtype=np.int64) * 20_000_000, position=position,
                   velocity=nan.copy() if velocity is None else np.asarray(velocity, dtype=float),
                   effort=nan.copy(),
                   policy_command=nan.copy() if policy_command is None else np.asarray(policy_command, dtype=float),
                   hardware_command=np.asarray(hardware_command, dtype=float),
                   goal=np.tile([0.5, 0.0, 0.3], (t, 1)) if goal is None else np.asarray(goal, dtype=float),
                   success=True, complete=True, start_ns=0, end_ns=t * 20_000_000, bag_path=bag_path)


# --- ReferenceEpisode ---------------------------------------------------------------------
def test_reference_episode_validation_names_the_episode():
    ep = simple_episode()
    assert (ep.steps, ep.num_joints) == (5, 3)
    assert not ep.position.flags.writeable and not ep.command.flags.writeable
    assert ep.observed(("position", "velocity")).shape == (5, 6)
    short = ep.truncated(3)
    assert short.steps == 3 and short.command.shape == (2, 3)
    assert ep.truncated(1).steps == 2 and ep.truncated(99).steps == 5

    pos = ep.position.copy()
    pos[2, 1] = np.nan
    pos[4, 0] = np.inf
    with pytest.raises(EpisodeError, match=r"run3#1: joint positions are NaN/inf in 2 row\(s\) \(first: row 2\)"):
        simple_episode("run3#1", position=pos)
    with pytest.raises(EpisodeError, match="run3#2: goal must be 3 finite numbers"):
        simple_episode("run3#2", goal=np.full(3, np.nan))
    with pytest.raises(EpisodeError, match="run3#3: goal must be 3 finite numbers"):
        simple_episode("run3#3", goal=np.zeros(2))
    with pytest.raises(EpisodeError, match=r"run3#4: command must be \[4, 3\]"):
        simple_episode("run3#4", command=ep.command[:3])
    with pytest.raises(EpisodeError, match="run3#5: velocity shape"):
        simple_episode("run3#5", velocity=np.zeros((5, 2)))
    with pytest.raises(EpisodeError, match="run3#6: needs at least 2 joint states"):
        simple_episode("run3#6", position=pos[:1], velocity=np.zeros((1, 3)), command=np.zeros((0, 3)))
    assert issubclass(EpisodeError, ValueError)


# --- from_recorded ------------------------------------------------------------------------
def test_from_recorded_shifts_commands_by_one_row_and_holds_before_the_first():
    t, j = 6, 2
    pos = np.arange(t * j, dtype=float).reshape(t, j) / 10
    hw = np.full((t, j), np.nan)
    # The bag holds, at each state, the latest command: the one sent after the previous state.
    hw[3] = [1.0, 2.0]   # sent after state 2
    hw[4] = [np.nan, 3.0]  # a command that did not fit: held
    hw[5] = [5.0, 6.0]   # sent after state 4
    ref = ReferenceEpisode.from_recorded(recorded(pos, hw, policy_command=np.zeros((t, j))))
    assert ref.name == "run7#3"
    np.testing.assert_array_equal(ref.command, [pos[0], pos[0], [1.0, 2.0], [1.0, 2.0], [5.0, 6.0]])
    np.testing.assert_array_equal(ref.position, pos)


def test_from_recorded_falls_back_to_policy_commands_and_differences_velocities():
    t, j = 5, 2
    pos = np.cumsum(np.ones((t, j)), axis=0) * [0.01, 0.02]
    policy = np.vstack([np.full((1, j), np.nan), pos[1:] + 1.0])
    vel = np.full((t, j), np.nan)
    vel[:, 1] = 7.0  # reported for joint 2 only
    goal = np.full((t, 3), np.nan)
    goal[1] = [0.1, 0.2, 0.3]
    goal[3] = [0.4, 0.5, 0.6]  # the goal in force at the end
    ref = ReferenceEpisode.from_recorded(recorded(pos, np.full((t, j), np.nan), policy_command=policy,
                                                  velocity=vel, goal=goal), name="mine")
    assert ref.name == "mine"
    np.testing.assert_allclose(ref.command, policy[1:])
    np.testing.assert_allclose(ref.velocity[1:, 0], 0.01 / 0.02)  # finite difference at 20 ms
    assert ref.velocity[0, 0] == 0.0
    np.testing.assert_allclose(ref.velocity[:, 1], 7.0)
    np.testing.assert_allclose(ref.goal, [0.4, 0.5, 0.6])
    # No command at all: the arm held its initial position.
    held = ReferenceEpisode.from_recorded(recorded(pos, np.full((t, j), np.nan)))
    np.testing.assert_allclose(held.command, np.tile(pos[0], (t - 1, 1)))


def test_from_recorded_without_a_goal_or_states_is_an_error():
    pos = np.zeros((4, 2))
    with pytest.raises(EpisodeError, match=r"run7#3: no goal was recorded \(current_goal\)"):
        ReferenceEpisode.from_recorded(recorded(pos, np.zeros((4, 2)), goal=np.full((4, 3), np.nan)))
    with pytest.raises(EpisodeError, match="run7#3: 1 joint state"):
        ReferenceEpisode.from_recorded(recorded(pos[:1], np.zeros((1, 2))))


# --- bags ---------------------------------------------------------------------------------
def test_bags_round_trip_episodes_of_different_lengths(tmp_path, profile, emulator_eps):
    write_episode_bag(tmp_path / "run1", emulator_eps, profile.joint_names)
    loaded = load_reference_episodes([tmp_path / "run1"], profile)
    assert [e.name for e in loaded] == ["run1#1", "run1#2"]
    assert [e.steps for e in loaded] == [30, 24]
    assert loaded.skipped == []
    for want, got in zip(emulator_eps, loaded):
        np.testing.assert_array_equal(got.position, want.position)
        np.testing.assert_array_equal(got.velocity, want.velocity)
        np.testing.assert_array_equal(got.command, want.command)  # command after state t = row t
        np.testing.assert_array_equal(got.goal, want.goal)
    # Several bags, truncated.
    write_episode_bag(tmp_path / "run2", emulator_eps[:1], profile.joint_names)
    both = load_reference_episodes([tmp_path / "run1", tmp_path / "run2"], profile, max_steps=20)
    assert [(e.name, e.steps) for e in both] == [("run1#1", 20), ("run1#2", 20), ("run2#1", 20)]


def test_a_bag_without_markers_is_one_episode_with_a_warning(tmp_path, profile, emulator_eps):
    write_episode_bag(tmp_path / "plain", emulator_eps[:1], profile.joint_names, markers=False)
    loaded = load_reference_episodes([tmp_path / "plain"], profile)
    assert len(loaded) == 1 and loaded[0].steps == emulator_eps[0].steps
    assert len(loaded.warnings) == 1 and "no episode markers" in loaded.warnings[0]
    marked = tmp_path / "marked"
    write_episode_bag(marked, emulator_eps[:1], profile.joint_names)
    assert load_reference_episodes([marked], profile).warnings == []


def test_unfinished_and_short_episodes_are_skipped_with_a_reason(tmp_path, profile, emulator_eps):
    short = emulator_eps[0].truncated(5)
    write_episode_bag(tmp_path / "bag", [emulator_eps[0], short, emulator_eps[1]], profile.joint_names,
                      end_last=False)
    loaded = load_reference_episodes([tmp_path / "bag"], profile)
    assert [e.name for e in loaded] == ["bag#1"]
    assert loaded.skipped == ["bag#2: 5 joint states (< 10)", "bag#3: no end marker (recording stopped mid-episode)"]
    assert len(load_reference_episodes([tmp_path / "bag"], profile, complete_only=False)) == 2
    with pytest.raises(BagLoadError, match=r"no usable episodes in .*bag#2: 5 joint states"):
        load_reference_episodes([tmp_path / "bag"], profile, min_steps=50)


def test_nan_positions_in_a_bag_name_the_episode(tmp_path, profile, emulator_eps):
    ep = emulator_eps[1]
    pos = ep.position.copy()
    pos[7, 2] = np.nan
    bad = SimpleNamespace(steps=ep.steps, position=pos, velocity=ep.velocity, command=ep.command, goal=ep.goal)
    write_episode_bag(tmp_path / "nanbag", [emulator_eps[0], bad], profile.joint_names)
    with pytest.raises(EpisodeError, match=r"nanbag#2: joint positions are NaN/inf in 1 row\(s\) \(first: row 7\)"):
        load_reference_episodes([tmp_path / "nanbag"], profile)


def test_unreadable_bags_raise_bag_load_error_naming_the_file(tmp_path, profile, emulator_eps):
    with pytest.raises(BagLoadError, match="no bags given"):
        load_reference_episodes([], profile)
    with pytest.raises(BagLoadError, match=f"{tmp_path / 'missing'}: no such bag"):
        load_reference_episodes([tmp_path / "missing"], profile)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagLoadError, match=f"{tmp_path / 'empty'}: empty directory"):
        load_reference_episodes([tmp_path / "empty"], profile)

    write_episode_bag(tmp_path / "good", emulator_eps, profile.joint_names)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tmp_path / "good", corrupt)
    db = next(corrupt.glob("*.db3"))
    with open(db, "r+b") as f:
        f.write(np.random.default_rng(0).bytes(100))  # garbage over the sqlite header
    with pytest.raises(BagLoadError, match=f"{db}: corrupt or truncated bag"):
        load_reference_episodes([tmp_path / "good", corrupt], profile)

    truncated = tmp_path / "truncated"
    shutil.copytree(tmp_path / "good", truncated)
    db = next(truncated.glob("*.db3"))
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 3)
    with pytest.raises(BagLoadError, match=str(db)):
        load_reference_episodes([truncated], profile)
