"""Trajectory recording into rosbag2 bags, without ROS: a bounded queue and a writer thread.

:class:`BagRecorder` takes already-serialized CDR messages (what an rclpy ``raw=True``
subscription delivers; no conversion at all) and writes them with ``rosbags``' rosbag2
writer (metadata version 9, what ROS 2 Jazzy writes and ``ros2 bag info`` reads).

Never blocks the caller: :meth:`BagRecorder.record` appends to a bounded in-memory queue
and returns; a writer thread drains it. A full queue drops the message and counts it
(per topic); a write error (disk full, file removed, ...) stops the recording, keeps what
was committed, and reports "cannot write bag PATH: cause" in :attr:`RecorderStats.error`.

Storage: sqlite3, not MCAP, for crash safety (both are read by ``ros2 bag info`` on Jazzy).
What rosbags 0.11 does, measured:
  * its MCAP writer keeps up to 1 MiB of messages in an in-memory chunk and writes the
    summary and footer only on close; its MCAP reader refuses a file without the footer,
    so a killed MCAP recording is unreadable without a hand-written repair;
  * its sqlite3 writer runs the whole recording as ONE transaction committed on close:
    a SIGKILL leaves an empty bag (rolled back).
So the writer here is rosbags' sqlite3 storage plus a ``commit()`` every
``flush_interval_s`` (0.5 s): a crash loses at most that much. ``metadata.yaml`` (which
rosbags writes on close) is rewritten at every flush as well, so a crashed bag opens in
rosbags and ``ros2 bag info`` as is, with counts up to the last flush. :func:`recover_bag`
(called by the loader for any bag not closed cleanly) rolls back a hot journal (a kill in
the middle of a commit) and rebuilds ``metadata.yaml`` from the database.

Next to the bag, ``sim2real_metadata.yaml`` (the sidecar) holds the caller's metadata
(robot profile, policy name and hash, operator note, topic roles), the episodes seen on
the episode topic, the recorder's counters and its state: ``recording`` until a clean
close, then ``closed`` (or ``failed``; ``recovered`` after :func:`recover_bag`).

Episode markers are ``std_msgs/msg/String`` messages holding JSON:
``{"event": "start" | "end", "episode": n, "success": true | false | null, ...}``.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.errors import WriterError
from rosbags.rosbag2.metadata import dump_qos_v9
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer
from rosbags.typesys import Stores, get_typestore

BAG_VERSION = 9                    # rosbag2 metadata version of ROS 2 Jazzy
STORAGE_ID = "sqlite3"
SIDECAR_NAME = "sim2real_metadata.yaml"
SIDECAR_VERSION = 1
EPISODE_MSGTYPE = "std_msgs/msg/String"
EPISODE_EVENTS = ("start", "end")

# Recorder states (also written to the sidecar).
RECORDING, CLOSED, FAILED, RECOVERED = "recording", "closed", "failed", "recovered"

_TYPESTORE = None


def typestore():
    """The ROS 2 Jazzy typestore (built once; rosbags builds its type classes lazily)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
    return _TYPESTORE


class RecorderError(RuntimeError):
    """The bag cannot be created or written. The message names the path and the cause."""

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, cause: str = ""):
        super().__init__(message)
        self.path = str(path) if path is not None else None
        self.cause = cause


def describe_error(exc: BaseException) -> str:
    """A short human cause for an I/O error: 'No space left on device (ENOSPC)'."""
    if isinstance(exc, OSError) and exc.errno is not None:
        text = exc.strerror or os.strerror(exc.errno)
        name = errno.errorcode.get(exc.errno, "")
        return f"{text} ({name})" if name else text
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "")  # e.g. SQLITE_FULL, SQLITE_IOERR_WRITE
        return f"{text} ({name})" if name else text
    return text if isinstance(exc, WriterError) else f"{type(exc).__name__}: {text}"


def qos(*, reliable: bool = True, transient_local: bool = False, depth: int = 1) -> Qos:
    """An offered QoS profile for metadata.yaml (``ros2 bag play`` re-offers it)."""
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, depth,
               QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


def episode_marker(event: str, episode: int, success: bool | None = None, **extra: Any) -> str:
    """The JSON text of an episode marker (the ``data`` of a std_msgs/String)."""
    if event not in EPISODE_EVENTS:
        raise ValueError(f"episode event must be one of {list(EPISODE_EVENTS)}, got {event!r}")
    return json.dumps({"event": event, "episode": int(episode),
                       "success": None if success is None else bool(success), **extra}, sort_keys=True)


def serialize_string(text: str) -> bytes:
    """CDR bytes of a std_msgs/msg/String (little endian, as DDS sends it here)."""
    ts = typestore()
    return bytes(ts.serialize_cdr(ts.types[EPISODE_MSGTYPE](data=text), EPISODE_MSGTYPE))


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _write_text_replace(path: Path, text: str) -> None:
    """Write via a temporary file and rename: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- the storage: rosbags' sqlite3 writer that can commit --------------------------------
class _CommittingSqlite3Writer(Sqlite3Writer):
    """rosbags' sqlite3 storage with a commit: its own writer commits only on close."""

    def commit(self) -> None:
        self.conn.commit()


class _BagWriter(Writer):
    STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.SQLITE3: _CommittingSqlite3Writer}


def bag_metadata(*, storage_file: str, topics: Sequence[Mapping[str, Any]], start_ns: int | None,
                 end_ns: int | None, custom_data: Mapping[str, str] | None = None) -> dict[str, Any]:
    """metadata.yaml content, as rosbags' Writer.close writes it (version 9).

    ``topics``: dicts with name, type, serialization_format, offered_qos_profiles (list of
    v9 dicts), type_description_hash, message_count.
    """
    count = sum(int(t["message_count"]) for t in topics)
    start = int(start_ns) if start_ns is not None and count else 2**63 - 1
    duration = max(0, int(end_ns) - int(start_ns)) if start_ns is not None and end_ns is not None and count else 0
    return {"rosbag2_bagfile_information": {
        "version": BAG_VERSION,
        "storage_identifier": STORAGE_ID,
        "relative_file_paths": [storage_file],
        "duration": {"nanoseconds": duration},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": count,
        "topics_with_message_count": [
            {"topic_metadata": {"name": t["name"], "type": t["type"],
                                "serialization_format": t.get("serialization_format", "cdr"),
                                "offered_qos_profiles": list(t.get("offered_qos_profiles") or []),
                                "type_description_hash": t.get("type_description_hash", "")},
             "message_count": int(t["message_count"])} for t in topics],
        "compression_format": "",
        "compression_mode": "",
        "files": [{"path": storage_file, "starting_time": {"nanoseconds_since_epoch": start},
                   "duration": {"nanoseconds": duration}, "message_count": count}],
        "custom_data": dict(custom_data) if custom_data else None,
        "ros_distro": "rosbags",
    }}


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


# --- statistics -------------------------------------------------------------------------
@dataclass
class TopicStats:
    msgtype: str
    written: int = 0
    dropped: int = 0
    failed: int = 0


@dataclass
class RecorderStats:
    path: str
    state: str
    written: int
    dropped: int
    failed: int
    queued: int
    episodes: int
    error: str
    topics: dict[str, TopicStats] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "written": self.written, "dropped": self.dropped, "failed": self.failed,
                "episodes": self.episodes, "error": self.error,
                "topics": {name: {"type": t.msgtype, "written": t.written, "dropped": t.dropped,
                                  "failed": t.failed} for name, t in self.topics.items()}}


# --- the recorder -----------------------------------------------------------------------
class BagRecorder:
    """Records serialized messages into a new rosbag2 directory from any thread, without blocking.

    Args:
        path: the bag directory to create; it must not exist (a bag is never overwritten).
        topics: topic name -> message type (``sensor_msgs/msg/JointState``), known to the
            ROS 2 Jazzy typestore. More can be added later with :meth:`add_topic`.
        metadata: free-form, YAML-serializable; stored in the sidecar (robot profile, policy
            name and hash, operator note, ``topics`` roles, ...) and as JSON in the bag's
            ``custom_data`` (key ``sim2real``).
        episode_topic: where :meth:`mark_episode` writes; added if not in ``topics``.
        queue_size: messages waiting for the writer; beyond that, messages are dropped.
        flush_interval_s: commit period: at most this much is lost in a crash.
        offered_qos: topic -> QoS profiles stored in metadata.yaml (see :func:`qos`).

    Raises :class:`RecorderError` (naming the path and the cause) when the bag cannot be
    created. Opening happens in the writer thread (sqlite connections are bound to their
    thread); the constructor waits for it.
    """

    def __init__(self, path: str | os.PathLike, topics: Mapping[str, str], metadata: Mapping[str, Any] | None = None,
                 *, episode_topic: str | None = "/episode", queue_size: int = 10000, flush_interval_s: float = 0.5,
                 offered_qos: Mapping[str, Sequence[Qos]] | None = None):
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        self.path = Path(path).expanduser().absolute()
        self.queue_size = int(queue_size)
        self.flush_interval_s = float(flush_interval_s)
        # JSON round trip: plain lists/dicts/scalars only (YAML- and JSON-safe).
        self.metadata = json.loads(json.dumps(dict(metadata or {}), default=str))
        self.episode_topic = episode_topic
        self._offered_qos = {k: list(v) for k, v in (offered_qos or {}).items()}
        self._topics: dict[str, TopicStats] = {}
        for name, msgtype in topics.items():
            self._check_topic(name, msgtype)
            self._topics[name] = TopicStats(msgtype)
        if episode_topic and episode_topic not in self._topics:
            self._topics[episode_topic] = TopicStats(EPISODE_MSGTYPE)
        elif episode_topic and self._topics[episode_topic].msgtype != EPISODE_MSGTYPE:
            raise RecorderError(f"episode topic {episode_topic} must be {EPISODE_MSGTYPE}, "
                                f"got {self._topics[episode_topic].msgtype}", path=self.path)

        self._queue: deque = deque()
        self._lock = threading.Lock()   # counters updated from callers' threads
        self._wake = threading.Event()
        self._opened = threading.Event()
        self._stopping = False
        self._state = RECORDING
        self._error = ""
        self._dropped = 0
        self._failed = 0
        self._written = 0
        self._committed: dict[str, int] = {}  # topic -> written as of the last commit
        self._episodes: list[dict[str, Any]] = []
        self._writer: _BagWriter | None = None
        self._dir_lock: int | None = None
        self._connections: dict[str, Any] = {}
        self._open_error: RecorderError | None = None
        self._created_utc = utc_now()
        self._closed_utc = ""
        self._start_ns: int | None = None
        self._end_ns: int | None = None
        self._thread = threading.Thread(target=self._run, name=f"bag-writer:{self.path.name}", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._open_error is not None:
            self._thread.join(timeout=5.0)
            raise self._open_error

    # --- caller side (any thread, never blocks on I/O) ------------------------------------
    def record(self, topic: str, stamp_ns: int, data: bytes | memoryview, *, force: bool = False) -> bool:
        """Queue one serialized message (CDR bytes with their 4-byte header) for writing.

        Returns True if queued; False if dropped (queue full), or the recorder has failed or
        is closing. ``force`` bypasses the bound (episode markers must not be lost).
        Raises KeyError for a topic that was never added.
        """
        stats = self._topics[topic]
        if self._state != RECORDING or self._stopping:
            if self._state == FAILED:
                with self._lock:
                    stats.failed += 1
                    self._failed += 1
            return False
        if not force and len(self._queue) >= self.queue_size:
            with self._lock:
                stats.dropped += 1
                self._dropped += 1
            return False
        self._queue.append((topic, int(stamp_ns), data))
        self._wake.set()
        return True

    def add_topic(self, topic: str, msgtype: str, offered_qos: Sequence[Qos] = ()) -> None:
        """Add a topic while recording (its connection is created by the writer thread)."""
        if topic in self._topics:
            if self._topics[topic].msgtype != msgtype:
                raise RecorderError(f"topic {topic} is already recorded as {self._topics[topic].msgtype}, "
                                    f"not {msgtype}", path=self.path)
            return
        self._check_topic(topic, msgtype)
        if offered_qos:
            self._offered_qos[topic] = list(offered_qos)
        with self._lock:  # the writer thread iterates the topics
            self._topics[topic] = TopicStats(msgtype)
        self._queue.append((topic, None, None))  # in order: before any message of the topic
        self._wake.set()

    def mark_episode(self, event: str, episode: int, success: bool | None = None, *,
                     stamp_ns: int | None = None, **extra: Any) -> bool:
        """Write an episode marker on the episode topic (never dropped for a full queue)."""
        if not self.episode_topic:
            raise RecorderError("no episode topic configured", path=self.path)
        text = episode_marker(event, episode, success, **extra)
        return self.record(self.episode_topic, time.time_ns() if stamp_ns is None else stamp_ns,
                           serialize_string(text), force=True)

    @property
    def topics(self) -> dict[str, str]:
        with self._lock:
            return {name: t.msgtype for name, t in self._topics.items()}

    @property
    def state(self) -> str:
        return self._state

    @property
    def error(self) -> str:
        return self._error

    def stats(self) -> RecorderStats:
        with self._lock:
            topics = {name: TopicStats(t.msgtype, t.written, t.dropped, t.failed) for name, t in self._topics.items()}
            return RecorderStats(str(self.path), self._state, self._written, self._dropped, self._failed,
                                 len(self._queue), len(self._episodes), self._error, topics)

    def close(self, timeout_s: float = 30.0) -> RecorderStats:
        """Write what is queued, close the bag (metadata.yaml) and the sidecar. Idempotent."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive() and not self._error:
            self._error = (f"bag {self.path}: the writer did not finish within {timeout_s:g} s "
                           f"({len(self._queue)} messages still queued)")
        return self.stats()

    def __enter__(self) -> "BagRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writer thread --------------------------------------------------------------------
    def _check_topic(self, name: str, msgtype: str) -> None:
        if not name or not isinstance(name, str):
            raise RecorderError(f"invalid topic name {name!r}", path=self.path)
        if msgtype not in typestore().types:
            raise RecorderError(f"topic {name}: message type {msgtype!r} is not in the ROS 2 Jazzy typestore "
                                "(use pkg/msg/Type)", path=self.path)

    def _run(self) -> None:
        try:
            try:
                self._open()
            except RecorderError:
                raise
            except Exception as exc:  # noqa: BLE001 - never leave the constructor waiting
                cause = describe_error(exc)
                raise RecorderError(f"cannot create bag {self.path}: {cause}", path=self.path, cause=cause) from exc
        except RecorderError as exc:
            self._open_error = exc
            self._state = FAILED
            self._error = str(exc)
            self._opened.set()
            return
        self._opened.set()
        last_flush = time.monotonic()
        dirty = False
        in_flight = None
        try:
            while True:
                if not self._queue:
                    self._wake.wait(self.flush_interval_s)
                self._wake.clear()
                stopping = self._stopping
                deadline = time.monotonic() + self.flush_interval_s
                while self._queue:
                    in_flight = self._queue.popleft()
                    self._write(*in_flight)
                    in_flight = None
                    dirty = True
                    if time.monotonic() > deadline:  # a long backlog: still commit on time
                        break
                now = time.monotonic()
                if dirty and (now - last_flush >= self.flush_interval_s or stopping):
                    self._flush()
                    last_flush, dirty = now, False
                if stopping and not self._queue:
                    break
            self._finish()
        except Exception as exc:  # noqa: BLE001 - any write error ends the recording, never the process
            self._fail(exc, in_flight)

    def _open(self) -> None:
        path = self.path
        if path.exists() or path.is_symlink():
            raise RecorderError(f"cannot create bag {path}: it exists already (a bag is never overwritten; "
                                "choose a new output directory)", path=path, cause="exists")
        writer = None
        try:
            writer = _BagWriter(path, version=BAG_VERSION, storage_plugin=StoragePlugin.SQLITE3)
            writer.set_custom_data("sim2real", json.dumps(self.metadata, sort_keys=True))
            writer.open()
            self._writer = writer
            self._dir_lock = _lock_directory(path)
            for name, stats in self._topics.items():
                self._add_connection(name, stats.msgtype)
            writer.storage.commit()
            self._write_sidecar()
            self._write_metadata()
        except (OSError, sqlite3.Error, WriterError) as exc:
            cause = describe_error(exc)
            self._writer = None
            self._unlock()
            if writer is not None and writer.storage is not None:
                try:
                    writer.abort()
                except Exception:  # noqa: BLE001
                    pass
            raise RecorderError(f"cannot create bag {path}: {cause}", path=path, cause=cause) from exc

    def _add_connection(self, topic: str, msgtype: str) -> None:
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=typestore(), offered_qos_profiles=self._offered_qos.get(topic, ()))

    def _write(self, topic: str, stamp_ns: int | None, data) -> None:
        if stamp_ns is None:  # add_topic
            self._add_connection(topic, self._topics[topic].msgtype)
            return
        self._writer.write(self._connections[topic], stamp_ns, data)
        with self._lock:
            self._topics[topic].written += 1
            self._written += 1
        self._start_ns = stamp_ns if self._start_ns is None else min(self._start_ns, stamp_ns)
        self._end_ns = stamp_ns if self._end_ns is None else max(self._end_ns, stamp_ns)
        if topic == self.episode_topic:
            self._on_marker(stamp_ns, data)

    def _on_marker(self, stamp_ns: int, data) -> None:
        try:
            text = typestore().deserialize_cdr(bytes(data), EPISODE_MSGTYPE).data
            marker = json.loads(text)
            event, number = marker["event"], int(marker["episode"])
        except Exception:  # noqa: BLE001 - a malformed marker is recorded, just not indexed
            return
        if event == "start":
            self._episodes.append({"episode": number, "start_ns": stamp_ns, "end_ns": None, "success": None})
        elif event == "end":
            for ep in reversed(self._episodes):
                if ep["episode"] == number and ep["end_ns"] is None:
                    ep["end_ns"], ep["success"] = stamp_ns, marker.get("success")
                    break
        self._write_sidecar()

    def _flush(self) -> None:
        self._writer.storage.commit()
        with self._lock:
            self._committed = {name: t.written for name, t in self._topics.items()}
        self._write_metadata()

    def _topic_rows(self) -> list[dict[str, Any]]:
        rows = []
        for conn in self._writer.connections:
            rows.append({"name": conn.topic, "type": conn.msgtype,
                         "serialization_format": conn.ext.serialization_format,
                         "offered_qos_profiles": dump_qos_v9(list(conn.ext.offered_qos_profiles)),
                         "type_description_hash": conn.digest,
                         "message_count": self._writer.counts[conn.id]})
        return rows

    def _write_metadata(self) -> None:
        """metadata.yaml as of the last commit, so a crashed bag opens as is."""
        data = bag_metadata(storage_file=self._writer.storage.path.name, topics=self._topic_rows(),
                            start_ns=self._start_ns, end_ns=self._end_ns, custom_data=self._writer.custom_data)
        _write_text_replace(self.path / "metadata.yaml", dump_yaml(data))

    def sidecar(self) -> dict[str, Any]:
        stats = self.stats()
        return {"sim2real_bag_version": SIDECAR_VERSION, "state": self._state, "storage": STORAGE_ID,
                "created_utc": self._created_utc, "closed_utc": self._closed_utc,
                "metadata": self.metadata, "topics": self.topics,
                "episode_topic": self.episode_topic or "",
                "episodes": [dict(ep) for ep in self._episodes],
                "stats": {k: v for k, v in stats.as_dict().items() if k not in ("state", "episodes")}}

    def _write_sidecar(self) -> None:
        _write_text_replace(self.path / SIDECAR_NAME, dump_yaml(self.sidecar()))

    def _finish(self) -> None:
        writer, self._writer = self._writer, None
        writer.close()  # commits, writes metadata.yaml (rosbags)
        with self._lock:
            self._state = CLOSED
            for item in self._queue:  # raced in after the last drain
                if item[1] is not None:
                    self._topics[item[0]].dropped += 1
                    self._dropped += 1
            self._queue.clear()
        self._closed_utc = utc_now()
        self._write_sidecar()
        self._unlock()

    def _unlock(self) -> None:
        fd, self._dir_lock = self._dir_lock, None
        if fd is not None:
            os.close(fd)  # releases the flock

    def _fail(self, exc: BaseException, in_flight) -> None:
        cause = describe_error(exc)
        self._error = f"cannot write bag {self.path}: {cause}"
        with self._lock:
            lost = len(self._queue) + (1 if in_flight is not None and in_flight[1] is not None else 0)
            for item in list(self._queue) + ([in_flight] if in_flight is not None else []):
                if item[1] is not None:
                    self._topics[item[0]].failed += 1
            self._queue.clear()
            self._failed += lost
            self._state = FAILED
        writer, self._writer = self._writer, None
        if writer is not None:
            db = writer.storage.path if writer.storage is not None else None
            try:  # keep what can still be committed (nothing, if the disk is full)
                writer.close()
            except Exception:  # noqa: BLE001
                try:
                    writer.abort()
                except Exception:  # noqa: BLE001
                    pass
            # sqlite may have rolled the open transaction back by itself (I/O error, full
            # disk): count what the bag really holds; the rest of 'written' is lost.
            kept = _rows_per_topic(db) if db is not None else None
            if kept is None:
                kept = self._committed
            with self._lock:
                for name, t in self._topics.items():
                    lost = max(0, t.written - kept.get(name, 0))
                    t.written -= lost
                    t.failed += lost
                    self._written -= lost
                    self._failed += lost
        self._closed_utc = utc_now()
        try:
            self._write_sidecar()
        except OSError:
            pass
        self._unlock()


# --- recovery ---------------------------------------------------------------------------
def _lock_directory(path: Path) -> int:
    """An exclusive flock on the bag directory while recording (the kernel drops it when the
    recorder dies, even by SIGKILL): tells a loader that the bag is live, not crashed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def _rows_per_topic(db: Path) -> dict[str, int] | None:
    """Messages per topic in a bag database, or None if it cannot be read."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return dict(conn.execute("SELECT topics.name, count(messages.id) FROM topics LEFT JOIN messages "
                                     "ON topics.id = messages.topic_id GROUP BY topics.id").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def recording_in_progress(path: str | os.PathLike) -> bool:
    """True while a BagRecorder (in any process) is recording into this bag directory."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also releases our shared lock
    return False


@dataclass
class RecoveryReport:
    path: str
    storage_file: str
    messages: int
    topics: dict[str, int]
    rolled_back_journal: bool


def storage_file_of(path: Path) -> Path:
    """The sqlite3 file of a bag directory written here (one file per bag)."""
    files = sorted(path.glob("*.db3"))
    if len(files) != 1:
        raise RecorderError(f"bag {path}: expected one .db3 storage file, found "
                            f"{[f.name for f in files] or 'none'}", path=path)
    return files[0]


def recover_bag(path: str | os.PathLike) -> RecoveryReport:
    """Make a bag that was not closed cleanly whole again, in place.

    Opens the database read-write (sqlite rolls back a hot journal left by a kill during a
    commit), checks it, and rewrites ``metadata.yaml`` from its contents (like
    ``ros2 bag reindex``); the sidecar's state becomes ``recovered``. Raises
    :class:`RecorderError` naming the file if the database is unreadable or corrupt, and
    ``OSError`` if the directory cannot be written.
    """
    path = Path(path)
    if recording_in_progress(path):
        raise RecorderError(f"bag {path} is being recorded right now; recover it only after its recorder "
                            "stopped", path=path, cause="busy")
    db = storage_file_of(path)
    journal = db.with_name(db.name + "-journal")
    had_journal = journal.exists() and journal.stat().st_size > 0
    try:
        # Read-write: sqlite rolls a hot journal back on the first read.
        conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True)
    except sqlite3.Error as exc:
        raise RecorderError(f"{db}: cannot open the database ({exc})", path=db) from exc
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise RecorderError(f"{db}: the database is corrupt ({check})", path=db)
        rows = conn.execute(
            "SELECT topics.id, name, type, serialization_format, offered_qos_profiles, type_description_hash, "
            "count(messages.id) FROM topics LEFT JOIN messages ON topics.id = messages.topic_id "
            "GROUP BY topics.id ORDER BY topics.id").fetchall()
        start, end = conn.execute("SELECT MIN(timestamp), MAX(timestamp) FROM messages").fetchone()
        topics = _topic_rows_from_db(rows)
        metadata = bag_metadata(storage_file=db.name, topics=topics, start_ns=start, end_ns=end,
                                custom_data=_custom_data(path))
        # What rosbags' close does: the metadata row in the database. Being a real write
        # transaction, it also retires a leftover (non-hot) journal.
        conn.execute("DELETE FROM metadata")
        conn.execute("INSERT INTO metadata (metadata_version, metadata) VALUES (?, ?)",
                     (BAG_VERSION, dump_yaml(metadata["rosbag2_bagfile_information"]).strip()))
        conn.commit()
    except sqlite3.OperationalError as exc:
        if "readonly" in str(exc) or "read-only" in str(exc):
            raise PermissionError(errno.EACCES, f"{db}: {exc}") from exc
        raise RecorderError(f"{db}: corrupt or truncated database ({exc})", path=db) from exc
    except sqlite3.Error as exc:
        raise RecorderError(f"{db}: corrupt or truncated database ({exc})", path=db) from exc
    finally:
        conn.close()
    _write_text_replace(path / "metadata.yaml", dump_yaml(metadata))
    _mark_sidecar_recovered(path, sum(t["message_count"] for t in topics))
    return RecoveryReport(str(path), db.name, sum(t["message_count"] for t in topics),
                          {t["name"]: t["message_count"] for t in topics}, had_journal)


def _topic_rows_from_db(rows) -> list[dict[str, Any]]:
    topics = []
    for _, name, msgtype, fmt, qos_text, digest, count in rows:
        try:
            profiles = yaml.safe_load(qos_text) if qos_text else []
        except yaml.YAMLError:
            profiles = []
        topics.append({"name": name, "type": msgtype, "serialization_format": fmt,
                       "offered_qos_profiles": profiles if isinstance(profiles, list) else [],
                       "type_description_hash": digest, "message_count": count})
    return topics


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load((path / SIDECAR_NAME).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _custom_data(path: Path) -> dict[str, str] | None:
    sidecar = _read_sidecar(path)
    return {"sim2real": json.dumps(sidecar.get("metadata", {}), sort_keys=True)} if sidecar else None


def _mark_sidecar_recovered(path: Path, messages: int) -> None:
    sidecar = _read_sidecar(path)
    if not sidecar:
        return
    sidecar["state_before_recovery"] = sidecar.get("state", "")
    sidecar["state"] = RECOVERED
    sidecar["recovered_utc"] = utc_now()
    stats = sidecar.setdefault("stats", {})
    if isinstance(stats, dict):
        stats["written"] = messages
    _write_text_replace(path / SIDECAR_NAME, dump_yaml(sidecar))
