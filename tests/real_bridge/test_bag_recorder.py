"""BagRecorder (no ROS): the bag format, never blocking, crash safety, write errors."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from rosbags.rosbag2 import Reader

from real_bridge import recorder as recorder_mod
from real_bridge.bagload import load_episodes
from real_bridge.recorder import SIDECAR_NAME, BagRecorder, RecorderError, recover_bag
from synthetic_bags import TOPICS, float_array, joint_state, point_stamped, typestore

HERE = Path(__file__).resolve().parents[1]  # tests/: holds synthetic_bags.py
NAMES = ["joint1", "joint2", "joint3"]


def write_some(rec: BagRecorder, n: int = 5) -> None:
    rec.record("/current_goal", 1_000, point_stamped(0.0, [0.4, 0.0, 0.3]))
    rec.mark_episode("start", 1, stamp_ns=2_000)
    for i in range(n):
        rec.record("/joint_states", 10_000 + 1000 * i, joint_state(0.02 * i, NAMES, [i, 2 * i, 3 * i]))
        rec.record("/joint_commands", 10_500 + 1000 * i, float_array([i, i, i]))
    rec.mark_episode("end", 1, True, stamp_ns=100_000)


def test_bag_is_readable_by_rosbags_with_the_metadata_ros2_bag_info_needs(tmp_path):
    bag = tmp_path / "bag"
    meta = {"robot_profile": {"name": "panda_like", "joint_names": NAMES}, "note": "first try",
            "policy": {"name": "reach_lstm", "sha256": "ab" * 32}}
    with BagRecorder(bag, TOPICS, meta) as rec:
        write_some(rec)
    stats = rec.stats()
    assert stats.state == "closed" and stats.written == 13 and stats.dropped == stats.failed == 0
    assert sorted(p.name for p in bag.iterdir()) == ["bag.db3", "metadata.yaml", SIDECAR_NAME]

    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 9 and info["storage_identifier"] == "sqlite3"
    assert info["relative_file_paths"] == ["bag.db3"] and info["message_count"] == 13
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]}
    assert counts == {"/joint_states": 5, "/joint_commands": 5, "/current_goal": 1,
                      "/forward_position_controller/commands": 0, "/episode": 2}
    for t in info["topics_with_message_count"]:
        assert t["topic_metadata"]["serialization_format"] == "cdr"
        assert t["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
    assert info["starting_time"]["nanoseconds_since_epoch"] == 1_000
    assert info["duration"]["nanoseconds"] == 99_000
    assert json.loads(info["custom_data"]["sim2real"])["note"] == "first try"

    with Reader(bag) as reader:
        assert reader.message_count == 13
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types["/joint_states"] == "sensor_msgs/msg/JointState"
        goal = next(c for c in reader.connections if c.topic == "/current_goal")
        assert goal.ext.offered_qos_profiles == []
        raw = [data for c, _, data in reader.messages() if c.topic == "/joint_states"]
    assert raw[2] == joint_state(0.04, NAMES, [2, 4, 6]), "the bytes are stored unchanged"
    msg = typestore().deserialize_cdr(raw[2], "sensor_msgs/msg/JointState")
    assert list(msg.name) == NAMES and list(msg.position) == [2, 4, 6]

    sidecar = yaml.safe_load((bag / SIDECAR_NAME).read_text())
    assert sidecar["state"] == "closed" and sidecar["metadata"] == meta

    # The metadata.yaml this package writes itself (while recording, and when recovering a
    # crashed bag) is the one rosbags' Writer.close writes, field for field.
    copy = tmp_path / "copy"
    shutil.copytree(bag, copy)
    (copy / "bag.db3").rename(copy / "copy.db3")
    recover_bag(copy)
    ours = yaml.safe_load((copy / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    theirs = dict(info, relative_file_paths=["copy.db3"], files=[dict(info["files"][0], path="copy.db3")])
    assert ours == theirs
    assert sidecar["episodes"] == [{"episode": 1, "start_ns": 2_000, "end_ns": 100_000, "success": True}]
    assert sidecar["stats"]["written"] == 13


def test_record_never_blocks_when_the_writer_is_stuck(tmp_path, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real_write = recorder_mod._CommittingSqlite3Writer.write

    def stuck_write(self, connection, timestamp, data):
        entered.set()
        release.wait(30)
        real_write(self, connection, timestamp, data)

    monkeypatch.setattr(recorder_mod._CommittingSqlite3Writer, "write", stuck_write)
    rec = BagRecorder(tmp_path / "bag", TOPICS, queue_size=100)
    try:
        data = joint_state(0.0, NAMES, [0, 0, 0])
        assert rec.record("/joint_states", 1, data)
        assert entered.wait(10), "the writer thread took the first message"
        n = 20_000
        accepted, worst = 0, 0.0
        start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            accepted += rec.record("/joint_states", 2 + i, data)
            worst = max(worst, time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        assert elapsed < 2.0, f"{n} record() calls took {elapsed:.2f} s with the writer stuck"
        # Generous bounds for a loaded machine: a call is a few microseconds, no I/O, no waiting.
        assert worst < 0.25, f"one record() call took {1e3 * worst:.1f} ms"
        stats = rec.stats()
        assert accepted == 100 and stats.queued == 100
        assert stats.dropped == n - 100 and stats.topics["/joint_states"].dropped == n - 100
        assert rec.mark_episode("start", 1), "episode markers are never dropped for a full queue"
    finally:
        release.set()
        stats = rec.close()
    assert stats.state == "closed" and stats.written == 1 + 100 + 1 and stats.dropped == 20_000 - 100
    with Reader(tmp_path / "bag") as reader:
        assert reader.message_count == 102
    assert yaml.safe_load((tmp_path / "bag" / SIDECAR_NAME).read_text())["stats"]["dropped"] == 19_900


def test_messages_are_committed_and_readable_while_recording(tmp_path):
    bag = tmp_path / "bag"
    rec = BagRecorder(bag, TOPICS, flush_interval_s=0.1)
    try:
        write_some(rec, n=20)
        deadline = time.monotonic() + 10
        count = listed = -1
        while time.monotonic() < deadline:
            with Reader(bag) as reader:  # metadata.yaml and committed rows, bag still open
                count = len(list(reader.messages()))
            # metadata.yaml is rewritten right after each commit
            listed = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
            if count == 43 and listed["message_count"] == 43:
                break
            time.sleep(0.05)
        assert count == 43 and listed["message_count"] == 43
        assert yaml.safe_load((bag / SIDECAR_NAME).read_text())["state"] == "recording"
    finally:
        rec.close()


CRASH_SCRIPT = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from real_bridge.recorder import BagRecorder
from synthetic_bags import TOPICS, float_array, joint_state
meta = {"note": "crash test", "robot_profile": {"name": "x", "joint_names": ["a", "b"]}}
rec = BagRecorder(sys.argv[1], TOPICS, meta, flush_interval_s=0.1)
rec.mark_episode("start", 1)
i = 0
while True:
    t = time.time_ns()
    rec.record("/joint_states", t, joint_state(i * 0.002, ["b", "a"], [i, -i]))
    rec.record("/joint_commands", t + 1, float_array([i, i]))
    i += 1
    if i % 50 == 0:
        print(rec.stats().written, flush=True)
    time.sleep(0.002)
"""


def test_sigkill_mid_recording_leaves_a_loadable_bag(tmp_path):
    bag = tmp_path / "crashed"
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, str(bag), str(HERE)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first, proc.stderr.read()
        time.sleep(0.3)  # intentional: let the recording run a while
        safe = int(proc.stdout.readline())  # written before the kill: committed by then (0.1 s period)

        def committed() -> int:  # metadata.yaml is rewritten right after each commit
            try:
                return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"][
                    "message_count"]
            except (OSError, yaml.YAMLError, TypeError, KeyError):  # not yet written, or caught mid-write
                return -1

        # wait for a commit that covers them (not a fixed 1 s: a busy machine can delay the flush)
        deadline = time.monotonic() + 30.0
        while committed() < safe and time.monotonic() < deadline:
            time.sleep(0.05)
        assert committed() >= safe, f"{committed()} messages committed, {safe} written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert yaml.safe_load((bag / SIDECAR_NAME).read_text())["state"] == "recording"

    with Reader(bag) as reader:  # as the crash left it: metadata.yaml of the last flush
        assert len(list(reader.messages())) >= safe

    before = {p.name: p.read_bytes() for p in bag.iterdir()}
    episodes = load_episodes(bag)  # recovers in a temporary copy: the bag itself is evidence, untouched
    assert len(episodes) == 1
    ep = episodes[0]
    assert ep.index == 1 and not ep.complete and ep.success is None
    assert len(ep) >= safe // 2 - 1 and ep.joint_names == ("a", "b")
    assert (ep.position[:, 0] == -ep.position[:, 1]).all()
    assert {p.name: p.read_bytes() for p in bag.iterdir()} == before

    recover_bag(bag)  # the explicit in-place repair: metadata.yaml rebuilt from the database
    assert yaml.safe_load((bag / SIDECAR_NAME).read_text())["state"] == "recovered"
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    with Reader(bag) as reader:
        assert info["message_count"] == reader.message_count == len(list(reader.messages()))
    assert not list(bag.glob("*-journal")) or all(p.stat().st_size == 0 for p in bag.glob("*-journal"))


def test_recover_rolls_back_an_interrupted_transaction(tmp_path):
    """A kill between commits leaves the rows of the open transaction in the journal only."""
    bag = tmp_path / "bag"
    with BagRecorder(bag, TOPICS) as rec:
        write_some(rec, n=3)
    db = bag / "bag.db3"
    # A second process dies in the middle of a transaction: a hot journal is left behind.
    script = ("import sqlite3, os, sys\n"
              "c = sqlite3.connect(sys.argv[1])\n"
              "c.execute('PRAGMA cache_size=1')\n"
              "for i in range(2000):\n"
              "    c.execute('INSERT INTO messages (topic_id, timestamp, data) VALUES (1, ?, ?)', (i, b'x' * 500))\n"
              "os._exit(9)\n")
    subprocess.run([sys.executable, "-c", script, str(db)], check=False, timeout=60)
    journal = db.with_name("bag.db3-journal")
    assert journal.exists() and journal.stat().st_size > 0, "the dead writer left a hot journal"
    report = recover_bag(bag)
    assert report.rolled_back_journal and report.messages == 9
    with Reader(bag) as reader:
        assert reader.message_count == 9 and len(list(reader.messages())) == 9


def test_existing_directory_is_refused_with_the_path(tmp_path):
    bag = tmp_path / "bag"
    bag.mkdir()
    with pytest.raises(RecorderError, match=f"cannot create bag {bag}: it exists already"):
        BagRecorder(bag, TOPICS)
    assert list(bag.iterdir()) == [], "nothing written into an existing directory"


def test_unwritable_path_is_reported_with_path_and_cause(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(RecorderError) as info:
        BagRecorder(blocker / "bag", TOPICS)
    assert str(blocker / "bag") in str(info.value) and "Not a directory (ENOTDIR)" in str(info.value)

    def denied(self, *args, **kwargs):  # what a read-only parent gives (tests may run as root)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(RecorderError, match=r"cannot create bag .*/ro/bag: Permission denied \(EACCES\)"):
        BagRecorder(tmp_path / "ro" / "bag", TOPICS)


def test_unknown_message_type_is_refused(tmp_path):
    with pytest.raises(RecorderError, match="my_msgs/msg/Thing.*not in the ROS 2 Jazzy typestore"):
        BagRecorder(tmp_path / "bag", {"/x": "my_msgs/msg/Thing"})


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_disk_full_stops_recording_keeps_what_was_written_and_reports(tmp_path, monkeypatch):
    bag = tmp_path / "bag"
    real_write = recorder_mod._CommittingSqlite3Writer.write
    calls = {"n": 0}

    def write_until_full(self, connection, timestamp, data):
        calls["n"] += 1
        if calls["n"] > 10:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        real_write(self, connection, timestamp, data)

    monkeypatch.setattr(recorder_mod._CommittingSqlite3Writer, "write", write_until_full)
    rec = BagRecorder(bag, TOPICS, flush_interval_s=0.05)
    for i in range(30):
        rec.record("/joint_states", 1000 + i, joint_state(0.02 * i, NAMES, [i, i, i]))
    assert _wait_for(lambda: rec.state == "failed")
    stats = rec.stats()
    assert stats.error == f"cannot write bag {bag}: No space left on device (ENOSPC)"
    assert stats.written == 10 and stats.failed == 20 and stats.topics["/joint_states"].failed == 20
    assert not rec.record("/joint_states", 5000, joint_state(1.0, NAMES, [0, 0, 0])), "no longer recording"
    assert rec.stats().failed == 21
    assert rec.close().state == "failed"
    sidecar = yaml.safe_load((bag / SIDECAR_NAME).read_text())
    assert sidecar["state"] == "failed" and "ENOSPC" in sidecar["stats"]["error"]
    episodes = load_episodes(bag)  # what was written before the disk filled up
    assert len(episodes) == 1 and len(episodes[0]) == 10


def test_disk_full_at_commit_is_reported(tmp_path, monkeypatch):
    """sqlite reports a full disk as 'database or disk is full', typically at commit."""
    def full(self):
        raise sqlite3.OperationalError("database or disk is full")

    rec = BagRecorder(tmp_path / "bag", TOPICS, flush_interval_s=0.05)
    monkeypatch.setattr(recorder_mod._CommittingSqlite3Writer, "commit", full)
    rec.record("/joint_commands", 1, float_array([1, 2, 3]))
    assert _wait_for(lambda: rec.state == "failed")
    assert rec.error == f"cannot write bag {tmp_path / 'bag'}: database or disk is full"
    rec.close()


FILE_SIZE_LIMIT_SCRIPT = r"""
import json, resource, signal, sys, time
sys.path.insert(0, sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))
from real_bridge.recorder import BagRecorder
from synthetic_bags import TOPICS, joint_state
rec = BagRecorder(sys.argv[1], TOPICS, flush_interval_s=0.05)
for i in range(4000):
    rec.record("/joint_states", i, joint_state(i * 0.01, ["a"], [i]))
    if i % 100 == 0:
        time.sleep(0.01)  # let commits happen along the way
stats = rec.close()
print(json.dumps({"state": stats.state, "written": stats.written, "failed": stats.failed, "error": stats.error}))
"""


def test_a_real_write_failure_stops_the_recording_and_keeps_the_committed_part(tmp_path):
    """No monkeypatch: a file size limit (RLIMIT_FSIZE) makes sqlite's own writes fail."""
    bag = tmp_path / "bag"
    out = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT_SCRIPT, str(bag), str(HERE)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["state"] == "failed" and result["error"].startswith(f"cannot write bag {bag}: ")
    assert result["written"] > 100 and result["written"] + result["failed"] == 4000
    (episode,) = load_episodes(bag)
    assert len(episode) == result["written"], "every message counted as written is in the bag"
