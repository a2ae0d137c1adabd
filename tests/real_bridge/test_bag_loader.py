"""load_episodes: aligned arrays per episode, joint mapping by name, and clear errors on bad bags."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from real_bridge import bagload
from real_bridge.bagload import BagLoadError, load_episodes
from real_bridge.recorder import BagRecorder, episode_marker, recover_bag
from synthetic_bags import TOPICS, float_array, joint_state, point_stamped, string, typestore

PROFILE_JOINTS = ["joint1", "joint2", "joint3"]
HW = "/forward_position_controller/commands"
MS = 1_000_000  # ns


def write_two_episodes(path):
    """Receive times in ms. States every 10 ms, in shuffled joint order; commands 5 ms (policy) and
    6 ms (hardware) after each state, so the first state has no command yet.

    Episode 1: states at 100..140 ms (success); between episodes a state at 200 ms;
    episode 2: states at 300..320 ms, ended without an outcome; a trailing state at 400 ms.
    """
    meta = {"robot_profile": {"name": "panda_like", "joint_names": PROFILE_JOINTS},
            "policy": {"name": "reach_lstm", "sha256": "cd" * 32}, "note": "round trip"}
    shuffled = ["joint3", "joint1", "joint2"]
    with BagRecorder(path, TOPICS, meta) as rec:
        rec.record("/current_goal", 50 * MS, point_stamped(0.05, [0.5, 0.0, 0.3]))
        rec.mark_episode("start", 1, stamp_ns=95 * MS)
        for k, t in enumerate([100, 110, 120, 130, 140, 200, 300, 310, 320, 400]):
            q = {"joint1": k + 0.1, "joint2": k + 0.2, "joint3": k + 0.3}
            rec.record("/joint_states", t * MS, joint_state(
                1000 + t / 1000, shuffled, [q[n] for n in shuffled], velocity=[-q[n] for n in shuffled]))
            rec.record("/joint_commands", (t + 5) * MS, float_array([10 * k + 1, 10 * k + 2, 10 * k + 3]))
            rec.record(HW, (t + 6) * MS, float_array([20 * k + 1, 20 * k + 2, 20 * k + 3]))
            if t == 140:
                rec.mark_episode("end", 1, True, stamp_ns=150 * MS)
            if t == 200:
                rec.record("/current_goal", 250 * MS, point_stamped(0.25, [0.1, 0.2, 0.3]))
                rec.mark_episode("start", 2, stamp_ns=295 * MS)
            if t == 320:
                rec.mark_episode("end", 2, stamp_ns=330 * MS)


def test_round_trip_gives_aligned_arrays_in_profile_joint_order(tmp_path):
    write_two_episodes(tmp_path / "bag")
    episodes = load_episodes(tmp_path / "bag")
    assert [e.index for e in episodes] == [1, 2]
    first, second = episodes
    assert first.joint_names == tuple(PROFILE_JOINTS) and len(first) == 5 and len(second) == 3
    assert first.success is True and first.complete and second.success is None and second.complete
    np.testing.assert_allclose(first.time_s, [1000.1, 1000.11, 1000.12, 1000.13, 1000.14])
    np.testing.assert_allclose(first.elapsed_s, [0, 0.01, 0.02, 0.03, 0.04], atol=1e-9)
    assert first.receive_ns.tolist() == [t * MS for t in (100, 110, 120, 130, 140)]
    k = np.arange(5)[:, None]
    np.testing.assert_allclose(first.position, k + np.array([0.1, 0.2, 0.3]))  # mapped by name
    np.testing.assert_allclose(first.velocity, -first.position)
    assert np.isnan(first.effort).all(), "effort was not reported"
    # Zero-order hold: at the state at t, the latest command is the one sent after the previous state.
    assert np.isnan(first.policy_command[0]).all() and np.isnan(first.hardware_command[0]).all()
    np.testing.assert_allclose(first.policy_command[1:], 10 * (k[1:] - 1) + np.array([1, 2, 3]))
    np.testing.assert_allclose(first.hardware_command[1:], 20 * (k[1:] - 1) + np.array([1, 2, 3]))
    np.testing.assert_allclose(first.goal, np.tile([0.5, 0.0, 0.3], (5, 1)))
    # Episode 2: states 6..8 (at 300..320 ms); commands held from before the episode start.
    np.testing.assert_allclose(second.position[:, 0], [6.1, 7.1, 8.1])
    np.testing.assert_allclose(second.policy_command[:, 0], [51, 61, 71])
    np.testing.assert_allclose(second.goal, np.tile([0.1, 0.2, 0.3], (3, 1)))
    # Metadata: profile, policy, note, topics used.
    assert first.robot_profile == "panda_like" and first.policy["name"] == "reach_lstm"
    assert first.metadata["metadata"]["note"] == "round trip"
    assert first.topics == {"joint_states": "/joint_states", "joint_commands": "/joint_commands",
                            "hardware_commands": HW, "current_goal": "/current_goal", "episode": "/episode"}


def test_joint_names_select_and_order_columns(tmp_path):
    write_two_episodes(tmp_path / "bag")
    ep = load_episodes(tmp_path / "bag", joint_names=["joint2", "joint1"])[0]
    assert ep.joint_names == ("joint2", "joint1")
    np.testing.assert_allclose(ep.position[:, 0], np.arange(5) + 0.2)
    np.testing.assert_allclose(ep.position[:, 1], np.arange(5) + 0.1)
    assert np.isnan(ep.policy_command).all(), "a 3-wide command does not fit 2 joints: NaN, not guessed"
    with pytest.raises(BagLoadError, match=r"joint\(s\) \['elbow'\] never appear in /joint_states"):
        load_episodes(tmp_path / "bag", joint_names=["joint1", "elbow"])


def test_bag_without_markers_is_one_episode_and_foreign_bags_load(tmp_path):
    """A bag written by another tool (rosbags here; no sidecar, namespaced topics) loads by type and name."""
    ts = typestore()
    path = tmp_path / "foreign"
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        js = writer.add_connection("/sim2real/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        cmd = writer.add_connection("/sim2real/joint_commands", "std_msgs/msg/Float64MultiArray", typestore=ts)
        for i in range(4):
            writer.write(js, (i + 1) * MS, joint_state(i * 0.1, ["b", "a"], [i, -i]))
            writer.write(cmd, (i + 1) * MS + 1, float_array([i, i]))
    (episode,) = load_episodes(path)
    assert episode.index == 0 and not episode.complete and episode.success is None
    assert episode.joint_names == ("b", "a") and episode.metadata == {}
    np.testing.assert_allclose(episode.position[:, 1], [0, -1, -2, -3])
    np.testing.assert_allclose(episode.policy_command[1:, 0], [0, 1, 2])
    assert np.isnan(episode.hardware_command).all() and np.isnan(episode.goal).all()
    assert episode.topics == {"joint_states": "/sim2real/joint_states", "joint_commands": "/sim2real/joint_commands"}


def test_markers_from_other_nodes_and_unfinished_episodes(tmp_path):
    path = tmp_path / "bag"
    with BagRecorder(path, {**TOPICS, "/episode": "std_msgs/msg/String"}) as rec:
        rec.record("/episode", 1 * MS, string(episode_marker("start", 7)))
        rec.record("/joint_states", 2 * MS, joint_state(0.0, ["a"], [1.0]))
        rec.record("/episode", 3 * MS, string("not json"))  # ignored, with a warning
        rec.record("/episode", 4 * MS, string(json.dumps({"event": "start", "episode": 8})))  # 7 never ended
        rec.record("/joint_states", 5 * MS, joint_state(0.1, ["a"], [2.0]))
        rec.record("/episode", 6 * MS, string(episode_marker("end", 8, False)))
        rec.record("/episode", 7 * MS, string(episode_marker("end", 9, True)))  # never started: ignored
        rec.record("/episode", 8 * MS, string(episode_marker("start", 9)))
        rec.record("/joint_states", 9 * MS, joint_state(0.2, ["a"], [3.0]))
    episodes = load_episodes(path)
    assert [(e.index, e.complete, e.success, e.position[:, 0].tolist()) for e in episodes] == [
        (7, False, None, [1.0]), (8, True, False, [2.0]), (9, False, None, [3.0])]


def test_corrupt_bag_raises_bag_load_error_naming_the_file(tmp_path):
    write_two_episodes(tmp_path / "bag")
    db = tmp_path / "bag" / "bag.db3"
    size = db.stat().st_size
    rng = np.random.default_rng(0)

    header = tmp_path / "header"
    shutil.copytree(tmp_path / "bag", header)
    with open(header / "bag.db3", "r+b") as f:  # garbage over the sqlite header
        f.write(rng.bytes(100))
    with pytest.raises(BagLoadError, match=f"{header / 'bag.db3'}: corrupt or truncated bag"):
        load_episodes(header)

    pages = tmp_path / "pages"
    shutil.copytree(tmp_path / "bag", pages)
    with open(pages / "bag.db3", "r+b") as f:  # garbage over every page but the first
        f.seek(4096)
        f.write(rng.bytes(size - 4096))
    with pytest.raises(BagLoadError, match=str(pages / "bag.db3")):
        load_episodes(pages)


def test_truncated_bag_raises_bag_load_error_naming_the_file(tmp_path):
    write_two_episodes(tmp_path / "bag")
    db = tmp_path / "bag" / "bag.db3"
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 3)
    with pytest.raises(BagLoadError, match=str(db)):
        load_episodes(tmp_path / "bag")
    # Not closed cleanly and truncated: recovery refuses it, naming the file too.
    sidecar = tmp_path / "bag" / "sim2real_metadata.yaml"
    sidecar.write_text(sidecar.read_text().replace("state: closed", "state: recording"))
    with pytest.raises(BagLoadError, match=str(db)):
        load_episodes(tmp_path / "bag")


def test_missing_and_non_bags_are_reported(tmp_path):
    with pytest.raises(BagLoadError, match="no such bag"):
        load_episodes(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagLoadError, match="empty directory"):
        load_episodes(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(BagLoadError, match="not a rosbag2 bag"):
        load_episodes(tmp_path / "junk")
    (tmp_path / "badmeta").mkdir()
    (tmp_path / "badmeta" / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9")
    with pytest.raises(BagLoadError, match="metadata.yaml"):
        load_episodes(tmp_path / "badmeta")
    assert issubclass(BagLoadError, ValueError)


def test_bag_without_joint_states_is_reported(tmp_path):
    with BagRecorder(tmp_path / "bag", TOPICS) as rec:
        rec.record("/joint_commands", 1, float_array([1.0]))
    with pytest.raises(BagLoadError, match="no messages on /joint_states"):
        load_episodes(tmp_path / "bag")


def test_live_bag_is_read_as_is_and_a_read_only_crashed_bag_is_recovered_in_a_copy(tmp_path, monkeypatch):
    path = tmp_path / "bag"
    rec = BagRecorder(path, TOPICS, flush_interval_s=0.05)
    try:
        rec.record("/joint_states", 1 * MS, joint_state(0.0, ["a"], [1.0]))
        rec.record("/joint_states", 2 * MS, joint_state(0.1, ["a"], [2.0]))
        rows = 0
        deadline = time.monotonic() + 10
        while rows < 2 and time.monotonic() < deadline:  # committed within a flush period
            time.sleep(0.05)
            try:
                rows = len(load_episodes(path)[0])
            except BagLoadError as exc:  # nothing committed yet
                assert "no messages on /joint_states" in str(exc)
        assert rows == 2
        assert "state: recording" in (path / "sim2real_metadata.yaml").read_text(), "a live bag is not recovered"
    finally:
        rec.close()

    # A crashed bag on a read-only medium: recovered in a temporary copy, the original untouched.
    sidecar = path / "sim2real_metadata.yaml"
    sidecar.write_text(sidecar.read_text().replace("state: closed", "state: recording"))
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    real_recover = bagload.recover_bag

    def read_only_in_place(bag):
        if bag == path:
            raise PermissionError(13, "Permission denied", str(bag))
        return real_recover(bag)

    monkeypatch.setattr(bagload, "recover_bag", read_only_in_place)
    (episode,) = load_episodes(path)
    assert episode.position[:, 0].tolist() == [1.0, 2.0]
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert recover_bag(path).messages == 2
