"""Benchmark: the policy node closing the loop with the sim bridge (or the real bridge), over real rclpy and DDS.

Run as ``sim2real bench policy-node`` (or ``python bench/policy_node.py``). Every run starts
the sim bridge and the policy node as two separate processes (``sim2real node sim_bridge``
and ``sim2real node policy``, in a namespace, ``seed:=0``, physics at ``--physics-rate``
Hz) and watches them from a third: this benchmark's own monitor node, which subscribes
``joint_states``, ``joint_commands`` and ``/diagnostics`` and changes nothing in the loop
(it only calls the policy node's parameter service in the swap run). With ``--bridge real``
the runs start, instead of the sim bridge, the real side as the stack deploys it on hardware
(``sim2real launch real --emulator``): see "The real bridge" below. Runs:

1. lockstep (``mode:=lockstep``, ``trigger:=state``, control rate ``--lockstep-rate``):
   the bridge steps once per command and the policy runs once per state, so the loop runs
   as fast as it can; its achieved rate is reported (there is no rate target);
2. real time at each of ``--rates`` (default 100, 250, 500 Hz): the bridge's timer steps
   the sim at the control rate, the policy node uses ``--realtime-trigger`` (default
   ``state``, see below);
3. a swap run at ``--swap-rate`` (500 Hz, real time): no swaps in the first half, then
   ``--swaps`` (20) swaps spread over the second half (one at a random point of each of 20
   equal slots, seeded by ``--seed``: see ``swap_schedule``), alternating between two
   shipped policies by setting the node's ``policy`` parameter (SetParameters service);
   the node preloads the second one (``preload_policies``; ``--no-swap-preload``: not), as
   an operator who plans the swap would: creating an onnxruntime session holds the GIL for
   about 2 ms, so only the first swap to a policy that was not preloaded creates one (loaded
   runtimes are cached);
4. only with ``--runs swap-control``: the swap run with, instead of each swap, a parameter set
   that changes nothing (``stale_after_periods := 5``) through the same service at the same
   times: what the parameter round trip costs without a swap (client, DDS, rclpy's parameter
   service in the node).
5. only with ``--attribution-rate-hz R``: after each real-time run, the same run with the
   policy node's live attribution (``attribution_rate_hz:=R``) on; the missed cycles of the
   two are compared (one-sided exact binomial test on the two Poisson counts, scipy) and
   the node's published attribution count is checked (issue 14: it must add no missed
   cycles at 500 Hz).

What the monitor measures, over the steady window (``--warmup`` s after the first command,
then ``--duration`` s):

* achieved command rate and state rate: (messages - 1) / time between the first and last;
* the cycle-time distribution: inter-arrival times of the commands (p50/p99/max);
  missed cycles = for each interval longer than 1.5 periods, round(interval / period) - 1
  (the policy node's own rule), counted on the command stream and, for comparison, on the
  bridge's state stream (misses of the bridge's own timer, which ``trigger:=state`` passes
  on). At 500 Hz a command that is merely 1 ms later than its predecessor's also makes a
  3 ms interval, so this counts late cycles as well as lost ones; *late* (below) counts
  the states the bridge really had to step past without a fresh command;
* the round trip: for each joint state, the time from its arrival to the arrival of the
  command that answers it, both at the monitor. The state reaches the policy node and the
  monitor over two parallel DDS hops, whose times roughly cancel; the command then travels
  one more hop to the monitor. So the round trip is one policy-node cycle (executor
  wake-up, state intake, observation, ONNX inference, publish) plus one extra DDS hop
  (policy -> monitor, about as long as policy -> bridge). The answer to a state is the
  first command the policy node *published* after the bridge *published* the state
  (source timestamps, same host clock): pairing by reception order ("the next command
  received") breaks whenever the monitor receives a state after its own answer, which
  measured here happens for up to a quarter of the states at 100 Hz (an idle machine wakes
  the monitor's receive thread late) and would report a period instead of the latency.
  The literal "next command received" figure is kept in the JSON for comparison. A state
  whose answer was not published before the next state is counted *late* (answered after
  more than a period, or dropped: the node's state queue keeps only the newest). With
  ``trigger:=timer`` the figure also contains the phase between the two timers (0..1
  period). Two more figures from the source stamps: state published -> answer received
  (``pub->rx``: two hops + one cycle, the latency the bridge sees) and state published ->
  answer published.
* arrival times are the DDS reception timestamps of the monitor's readers (``MessageInfo``
  ``received_timestamp``, set by Fast DDS when the sample arrives), so the monitor's own
  Python latency is not in the figures: it takes the samples in batches every <= 20 ms
  from a deep reader history, serialized, without an executor callback per message (a
  third Python process at 1000 messages/s would otherwise take a large share of 2 cores).
  A round trip is negative when the monitor received the state after its answer (counted).
* the policy node's /diagnostics (``policy: control``): inference and loop latency p50/p99
  (over the node's last 500 cycles) as last reported before the end of the window, and the
  worst per-second report in the window; missed cycles (the node counts them only with
  ``trigger:=timer``; with ``trigger:=state`` a cycle is a state, so the node reports 0 and
  only the monitor's figure is meaningful); and CPU use of each process and of everything
  else on the machine during the window (from /proc: other load disturbs the figures).
* CPU time per control cycle of each process, in ms: its cores x the cycle's period, i.e.
  the CPU seconds it used in the window / the cycles it ran there (the bridge's cycle is a
  state it published, the policy node's and the monitor's a command, both at the achieved
  rates; the arm emulator's, with ``--bridge real``, a control period it stepped): unlike
  the cores at a given rate, a figure to compare across rates and runs.
  The benchmark prints the machine it ran on first (CPU model, cores, and the speed of one
  core on a fixed reference loop, bench/_machine.py), recorded in the JSON as ``machine_info``.

Why ``trigger:=state`` in real time: the bridge's timer is then the only clock, each
state gets exactly one command computed from it as soon as it arrives, and the command
is applied at the bridge's next tick. With ``trigger:=timer`` two independent timers run
at the same nominal rate: their phase drifts, so a command is computed from a state
0..1 period old, and around phase wrap the policy uses one state twice or skips one
(aliasing). Measured here (15 s per rate, ``--realtime-trigger timer``): at 100 Hz the
timer runs' round trip p99 was 11 ms against 2 ms with ``state`` (the node's own loop
latency, state arrival -> command, had a p50 of 9.4 ms: the phase had settled near a
whole period) and 3% of the states were never used; at 500 Hz p99 3.2 against 2.4 ms.

Swap attribution: a swap's window runs from sending the SetParameters request until
``--swap-window-ms`` (50) after the reply (the node loads, validates and warms up the new
policy before replying and installs it at the next cycle). The missed cycles inside the
20 windows are compared with the count expected at the rate of the same run outside them
(the no-swap half and the time between the windows: the same processes, the same machine
load). Misses come in bursts (one stall of k periods is k - 1 missed cycles; single stalls of
up to ~100 ms occur in these runs), so the one-sided Poisson test is on *stall events*
(intervals > 1.5 periods), not on missed cycles. Misses are *attributable* to the swaps
when the windows hold significantly more stall events than that rate predicts (p < 0.05);
the raw counts, the excess over the expectation, the figure against the interleaved
between-window rate alone, and where each stall inside a window lies relative to its
request are printed too (stalls of the swap itself sit within a few ms of the request).
The monitor's own activity is the same inside and outside the windows: it drains its readers
on a fixed 20 ms grid, and sends each request half-way between two drains. (States published
around a drain, a burst of CPU in a third process on 2 cores, were answered late 3-5 times as
often as others; the requests used to go out right after a drain, and the monitor drained
every 2 ms while a reply was pending, which put extra load into the windows only.)
The test counts intervals between the node's *publications* (source stamps), not the monitor's
receptions (see ``swap_analysis``), and the requests go out at random points of their slots
(``swap_schedule``: evenly spaced ones aliased with the nodes' 1 Hz diagnostics timers).
One run of 20 swaps only detects a large effect (about 3 stalls are expected in its windows
at the usual base rate); ``--swap-repeats N`` repeats the swap run (and the control run) with
fresh processes and pools the test over all of them: stalls inside every window against the
sum of each run's own expectation, the excess per swap and its 95% upper bound.

The real bridge (``--bridge real``): each run starts three node processes, in this order,
each at the control rate of the run: the arm emulator (``sim2real node arm_emulator``, the
stand-in for a ros2_control arm, with its shipped hidden physics, ``mode:=realtime``,
``seed`` = ``--seed``), at the root as deployed: ``/joint_states`` out,
``/forward_position_controller/commands`` in; the real bridge (``sim2real node
real_bridge``, autostarted, hardware side on those topics, policy side in the namespace:
the same ``joint_states`` / ``joint_commands`` the sim bridge uses, so the monitor and the
figures above are unchanged); and the policy node, as in the sim runs. The bridge's cycle is
its steady-clock timer: it relays the latest hardware state (a state on the policy side) and
sends the latest policy command through the safety filter to the hardware. The emulator's
timer is a second clock at the same rate, so the state the bridge relays is 0..1 period old
and, around phase wrap, one hardware state is relayed twice or one skipped (as on hardware).
The round trip is the policy side's (relayed state -> command), as in the sim runs; the
hardware hops (emulator -> bridge -> emulator) are not measured. CPU per cycle: the real
bridge's cycle is a state it relayed, the emulator's a control period it stepped (the
``control_steps`` of its /diagnostics over the window). Only real-time runs apply: the real
bridge has no lockstep mode, and the physics rate and randomization are the emulator's hidden
ones (the robot profile's physics rate, 500 Hz: the control rates must divide it), so
``lockstep`` runs, ``--physics-rate`` and ``--randomization`` are refused; swap runs,
``--executors`` (all three processes), ``--attribution-rate-hz`` and ``--composed`` (the real
bridge and the policy node in one process, ``sim2real node real_policy``, beside the emulator)
apply as with the sim bridge. Which bridge ran is printed and
recorded in the JSON (``bridge``, at the top and in each run).

Lockstep caveat: when the loop stalls for 0.1 s the bridge republishes the state (its idle
rule); if the answer to the old state was merely late, two cycles can then be in flight
until a keep-last-1 queue drops one, and states and commands no longer pair one to one
(late states, unequal counts). Such stalls show as a max cycle near 100 ms.

Targets (real time): achieved command rate within 2% of the target rate; round trip
p99 <= 2 ms at 500 Hz; CPU per cycle <= 0.3 ms for the policy node and the bridge (sim or
real) at 500 Hz in two-process runs; in the swap run, zero missed cycles attributable to
the swaps.
All figures depend on the machine and on what else runs (2 cores here: bridge, policy
node and monitor are three Python processes); the load average, whether a training job
was running, and the CPU other processes used during each run are printed and recorded.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

_BENCH_DIR = str(Path(__file__).resolve().parent)
sys.path.insert(0, _BENCH_DIR)  # bench/ helpers, also under runpy
from _machine import machine_info, machine_line

sys.path.remove(_BENCH_DIR)  # bench/'s module names (env, policy, train, ...) shadow nothing afterwards

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "policies" / "policies" / "zoo"
RATE_TOLERANCE = 0.02
TARGET_RT_P99_MS = 2.0
TARGET_RT_RATE_HZ = 500.0
TARGET_CPU_MS_PER_CYCLE = 0.3   # issue 18: each node (the policy node, the bridge) at 500 Hz
CPU_TARGET_PROCESSES = {"policy": "policy node", "sim_bridge": "sim bridge", "real_bridge": "real bridge"}
MISS_FACTOR = 1.5
DEFAULT_PHYSICS_RATE = 500.0  # the sim bridge's physics, Hz (--physics-rate)
DIAG_TAIL_S = 1.2  # after the window: wait this long at most for the nodes' next /diagnostics report
DRAIN_PERIOD_S = 0.02  # the monitor takes the samples waiting in its readers this often
CONTROL_PARAM = "stale_after_periods := 5"  # swap-control: the node's default, so nothing changes
SIM2REAL = next((p for p in (Path(sys.executable).with_name("sim2real"), ROOT / ".venv" / "bin" / "sim2real")
                 if p.is_file()), Path(shutil.which("sim2real") or "sim2real"))


class RunFailed(RuntimeError):
    pass


# --- processes ------------------------------------------------------------------------

class Child:
    """A node process in its own session, output to a log file; stopped with SIGINT, then SIGKILL."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict):
        self.name, self.cmd, self.log = name, cmd, log
        self._out = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True, cwd=ROOT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of the process so far (Linux /proc), None if unknown."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(5.0)
                except subprocess.TimeoutExpired:
                    pass
        self._out.close()
        return self.proc.returncode

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def system_idle_s() -> float | None:
    """CPU seconds all cores spent idle (idle + iowait) since boot (/proc/stat), None if unknown.

    Busy time is derived as cores x elapsed - idle: summing the busy counters instead came out
    below the nodes' own CPU times here (a 500 Hz wake/sleep pattern escapes tick sampling).
    """
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return (fields[3] + fields[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def cpu_ms_per_cycle(cpu_cores: dict, loop: dict, emulator_rate_hz: float | None = None) -> dict:
    """CPU milliseconds per control cycle of each process: cores / cycles per second.

    The bridge's cycles (sim or real) are the states it published (its timer or lockstep
    steps; the real bridge's relayed states), the policy node's, the composed process's (both
    nodes) and the monitor's the commands (one per cycle of the loop); rates as received at the
    monitor over the window. The arm emulator's are the control periods it stepped
    (``emulator_rate_hz``, from its /diagnostics).
    """
    per_s = {"sim_bridge": loop.get("state_rate_hz"), "real_bridge": loop.get("state_rate_hz"),
             "arm_emulator": emulator_rate_hz, "policy": loop.get("command_rate_hz"),
             "composed": loop.get("command_rate_hz"), "monitor": loop.get("command_rate_hz")}
    return {name: 1e3 * cpu_cores[name] / rate for name, rate in per_s.items()
            if cpu_cores.get(name) is not None and rate and rate > 0}


COMPOSED_TRANSPORTS = ("intra", "dds")  # sim2real.composed.TRANSPORTS (not imported: it is not the bench's)
BRIDGE_PROCESSES = ("sim_bridge", "real_bridge", "composed")  # whichever ran: the "bridge" column


def bridge_figure(per_process: dict):
    """A run's bridge figure (cores or ms per cycle): the sim bridge's, the real bridge's or
    the composed process's (both nodes), whichever ran; None if none did."""
    return next((per_process[k] for k in BRIDGE_PROCESSES if per_process.get(k) is not None), None)


def node_cmd(kind: str, namespace: str, params: dict) -> list[str]:
    cmd = [str(SIM2REAL), "node", kind, "--ros-args", "-r", f"__ns:={namespace}"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={value}"]
    return cmd


# --- the processes of one run, per bridge kind: [(name, command)] in start order --------------

def sim_children(spec: "RunSpec", args, policy_params: dict, files: Path) -> list[tuple[str, list[str]]]:
    """The sim bridge and the policy node, or both in one process (``spec.composed``: each
    node's parameters in a params file ``<files>_composed_params.yaml``, scoped by node name)."""
    bridge_params = {"mode": spec.mode, "control_rate_hz": float(spec.rate_hz),
                     "physics_rate_hz": float(args.physics_rate), "seed": args.seed,
                     "randomization_file": args.randomization}
    if not spec.composed:
        return [("sim_bridge", node_cmd("sim_bridge", args.namespace, bridge_params)),
                ("policy", node_cmd("policy", args.namespace, policy_params))]
    return [composed_child("sim_policy", args, files, {"sim_bridge": bridge_params, "policy": policy_params})]


def composed_child(kind: str, args, files: Path, params: dict[str, dict]) -> tuple[str, list[str]]:
    """The composed process ``sim2real node KIND``: each node's parameters in a params file
    ``<files>_composed_params.yaml``, scoped by node name."""
    params_file = files.with_name(f"{files.name}_composed_params.yaml")
    params_file.write_text(yaml.safe_dump({
        f"/**/{name}": {"ros__parameters": {k: yaml.safe_load(str(v)) for k, v in node_params.items()}}
        for name, node_params in params.items()}))
    return ("composed", node_cmd(kind, args.namespace, {}) + ["--params-file", str(params_file)])


def real_children(spec: "RunSpec", args, policy_params: dict, files: Path) -> list[tuple[str, list[str]]]:
    """The real side as deployed (``sim2real launch real --emulator``): the arm emulator at the
    root (the ros2_control arm's /joint_states and /forward_position_controller/commands; its
    shipped hidden physics), the real bridge (autostarted) and the policy node in the namespace,
    all three at the run's control rate. Only real time: the bridge's timer is its cycle."""
    rate = float(spec.rate_hz)
    emulator_params = {"mode": "realtime", "control_rate_hz": rate, "seed": args.seed}
    bridge_params = {"control_rate_hz": rate, "seed": args.seed, "autostart": "true"}
    emulator = ("arm_emulator", node_cmd("arm_emulator", "/", emulator_params))
    if spec.composed:  # the robot computer's side in one process (`sim2real node real_policy`)
        return [emulator, composed_child("real_policy", args, files,
                                         {"real_bridge": bridge_params, "policy": policy_params})]
    return [emulator, ("real_bridge", node_cmd("real_bridge", args.namespace, bridge_params)),
            ("policy", node_cmd("policy", args.namespace, policy_params))]


CHILDREN = {"sim": sim_children, "real": real_children}
BRIDGE_LINES = {"sim": "policy node + sim bridge loop",
                "real": "policy node + real bridge + arm emulator (the deployed real graph) loop"}


# --- the monitor ----------------------------------------------------------------------

def diag_values(status) -> dict:
    return {kv.key: kv.value for kv in status.values}


class Monitor:
    """What the bench process sees of the loop; one instance for all runs.

    joint_states and joint_commands are read on a node that no executor spins: their
    samples wait in a deep reader history (DDS keeps receiving and time-stamping them) and
    :meth:`drain` takes them in batches, serialized (not deserialized: only the reception
    info is needed), with the take call rclpy's own executors use. That costs the bench
    process far less CPU than an executor callback per message (2 cores here, shared with
    the two nodes under test). /diagnostics and the parameter client go through an ordinary
    executor.
    """

    def __init__(self, namespace: str):
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.srv import SetParameters
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        from sim_bridge import interface

        self.node = Node("bench_monitor", namespace=namespace)
        self.reader = Node("bench_monitor_reader", namespace=namespace)
        # 1000 samples = 2 s at 500 Hz between drains before anything is lost (losses are counted).
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self._state_sub = self.reader.create_subscription(JointState, interface.JOINT_STATES, lambda m: None, qos,
                                                          raw=True)
        self._command_sub = self.reader.create_subscription(Float64MultiArray, interface.JOINT_COMMANDS,
                                                            lambda m: None, qos, raw=True)
        self.node.create_subscription(DiagnosticArray, interface.DIAGNOSTICS, self._on_diag, interface.DIAGNOSTICS_QOS)
        self.param_client = self.node.create_client(SetParameters, f"{namespace.rstrip('/')}/policy/set_parameters")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.clear()

    def clear(self) -> None:
        self.drain()
        # (received ns, source ns, publication sequence number, taken ns)
        self.states: list[tuple[int, int, int, int]] = []
        self.commands: list[tuple[int, int, int, int]] = []
        self.policy_diag: list[tuple[int, dict, str]] = []
        self.bridge_diag: list[tuple[int, dict, str]] = []
        self.emulator_diag: list[tuple[int, dict, str]] = []

    def drain(self) -> int:
        """Take every sample waiting in the two readers; returns how many."""
        taken = 0
        for sub, store in ((self._state_sub, getattr(self, "states", None)),
                           (self._command_sub, getattr(self, "commands", None))):
            with sub.handle:
                while True:
                    got = sub.handle.take_message(sub.msg_type, True)
                    if got is None:
                        break
                    taken += 1
                    if store is not None:
                        info, now = got[1], time.time_ns()
                        store.append((info.get("received_timestamp") or now, info.get("source_timestamp") or 0,
                                      info.get("publication_sequence_number") or 0, now))
        return taken

    def _on_diag(self, msg) -> None:
        now = time.time_ns()
        for status in msg.status:
            if status.name == "policy: control":
                self.policy_diag.append((now, diag_values(status), status.message))
            elif status.name in ("sim_bridge: health", "real_bridge: safety"):
                self.bridge_diag.append((now, diag_values(status), status.message))
            elif status.name == "arm_emulator: health":
                self.emulator_diag.append((now, diag_values(status), status.message))

    def spin(self, seconds: float) -> None:
        """Serve diagnostics and the client for up to ``seconds``, then drain the readers."""
        self.executor.spin_once(timeout_sec=seconds)
        self.drain()

    def wait(self, seconds: float) -> None:
        """Serve diagnostics and the client for up to ``seconds`` (returns after the first
        callback, e.g. a service reply), without draining the readers."""
        self.executor.spin_once(timeout_sec=seconds)

    def destroy(self) -> None:
        self.executor.shutdown()
        self.reader.destroy_node()
        self.node.destroy_node()


# --- analysis -------------------------------------------------------------------------

def pct(values: np.ndarray, scale: float = 1.0) -> dict:
    if len(values) == 0:
        return {"n": 0}
    v = np.asarray(values, dtype=float) * scale
    p50, p90, p99, p999 = np.percentile(v, [50, 90, 99, 99.9])
    return {"n": int(len(v)), "p50": float(p50), "p90": float(p90), "p99": float(p99), "p99_9": float(p999),
            "max": float(v.max()), "min": float(v.min()), "mean": float(v.mean()), "std": float(v.std())}


def rate_hz(times_ns: np.ndarray) -> float:
    if len(times_ns) < 2 or times_ns[-1] <= times_ns[0]:
        return 0.0
    return (len(times_ns) - 1) / ((times_ns[-1] - times_ns[0]) / 1e9)


def missed_cycles(intervals_s: np.ndarray, period_s: float) -> int:
    late = intervals_s[intervals_s > MISS_FACTOR * period_s]
    return int(np.sum(np.round(late / period_s) - 1)) if len(late) else 0


def window(rows: list, start_ns: int, end_ns: int) -> np.ndarray:
    a = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return a[(a[:, 0] >= start_ns) & (a[:, 0] <= end_ns)]


def pair_answers(states: np.ndarray, commands: np.ndarray) -> dict:
    """Each state's answer: the first command the policy node *published* after the bridge published it.

    Paired by the publishers' source stamps (causal order; same host, same clock), not by
    reception order at the monitor: the monitor's reader sometimes receives a state after the
    command that answers it (its hop from the bridge is slower than bridge -> policy -> monitor,
    e.g. when its receive thread wakes late), and "the next command received" would then be the
    answer to the following state, a period later. Returns, per state (sorted by publication):
    ``rt`` reception -> reception at the monitor (s), ``bridge_view`` state published -> answer
    received (s), ``pub_pub`` state published -> answer published (s), NaN without an answer, and
    ``late`` (no command published before the next state was: the answer was later than a
    period, or the state was never answered).
    """
    have_src = bool(len(states) and len(commands) and np.all(states[:, 1] > 0) and np.all(commands[:, 1] > 0))
    key = 1 if have_src else 0  # without source stamps: reception order
    st, cm = states[np.argsort(states[:, key])], commands[np.argsort(commands[:, key])]
    j = np.searchsorted(cm[:, key], st[:, key], side="right")
    has = j < len(cm)
    jj = np.where(has, j, 0)
    nan = np.full(len(st), np.nan)
    rt = np.where(has, (cm[jj, 0] - st[:, 0]) / 1e9, nan)
    bridge_view = np.where(has, (cm[jj, 0] - st[:, 1]) / 1e9, nan) if have_src else nan
    pub_pub = np.where(has, (cm[jj, 1] - st[:, 1]) / 1e9, nan) if have_src else nan
    next_state = np.append(st[1:, key], np.iinfo(np.int64).max)
    late = ~has | (cm[jj, key] > next_state)
    late[-1:] = False  # the last state's answer may lie past the window
    return {"by_source_stamps": have_src, "state_rx": st[:, 0], "rt": rt, "bridge_view": bridge_view,
            "pub_pub": pub_pub, "late": late}


def finite(a: np.ndarray) -> np.ndarray:
    return a[np.isfinite(a)]


def loop_stats(states: np.ndarray, commands: np.ndarray, period_s: float | None) -> dict:
    """Rates, cycle times, misses and round trips from (received, source, seq, taken) rows."""
    s_rx, c_rx = np.sort(states[:, 0]), np.sort(commands[:, 0])
    out = {"states": int(len(s_rx)), "commands": int(len(c_rx)),
           "command_rate_hz": rate_hz(c_rx), "state_rate_hz": rate_hz(s_rx)}
    cmd_dt = np.diff(c_rx) / 1e9
    out["command_interval_ms"] = pct(cmd_dt, 1e3)
    out["state_interval_ms"] = pct(np.diff(s_rx) / 1e9, 1e3)
    if period_s is not None:
        out["missed_cycles"] = missed_cycles(cmd_dt, period_s)
        out["late_intervals"] = int(np.sum(cmd_dt > MISS_FACTOR * period_s))
        out["state_missed_periods"] = missed_cycles(np.diff(s_rx) / 1e9, period_s)
    # Monitor losses (publication sequence gaps): would look like misses, but are not the loop's.
    for name, rows in (("commands", commands), ("states", states)):
        seq = np.sort(rows[:, 2][rows[:, 2] > 0])
        out[f"monitor_lost_{name}"] = int(np.sum(np.diff(seq) - 1)) if len(seq) > 1 else 0
    pairs = pair_answers(states, commands)
    out["paired_by_source_stamps"] = pairs["by_source_stamps"]
    out["round_trip_ms"] = pct(finite(pairs["rt"]), 1e3)
    out["received_after_its_answer"] = int(np.sum(finite(pairs["rt"]) < 0))
    out["state_pub_to_command_rx_ms"] = pct(finite(pairs["bridge_view"]), 1e3)
    out["state_pub_to_command_pub_ms"] = pct(finite(pairs["pub_pub"]), 1e3)
    out["late_or_unanswered_states"] = int(pairs["late"].sum())
    # The literal "next command received after the state was received", for comparison (see pair_answers).
    j = np.searchsorted(c_rx, s_rx, side="left")
    has = j < len(c_rx)
    out["next_received_command_ms"] = pct((c_rx[j[has]] - s_rx[has]) / 1e9, 1e3)
    # One DDS hop as the monitor sees it (publisher's source stamp -> reception here).
    out["hop_bridge_to_monitor_ms"] = pct((states[:, 0] - states[:, 1]) / 1e9, 1e3)
    out["hop_policy_to_monitor_ms"] = pct((commands[:, 0] - commands[:, 1]) / 1e9, 1e3)
    out["monitor_take_lag_ms"] = pct(np.concatenate([states[:, 3] - states[:, 0],
                                                     commands[:, 3] - commands[:, 0]]) / 1e9, 1e3)
    return out


def num(value: str | None) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def policy_diag_summary(diag: list, start_ns: int, end_ns: int) -> dict:
    inside = [(t, v, m) for t, v, m in diag if start_ns <= t <= end_ns]
    if not inside:
        return {"reports": 0}
    last, first = inside[-1][1], inside[0][1]
    keys = ("inference_p50_us", "inference_p99_us", "loop_latency_p50_us", "loop_latency_p99_us", "achieved_rate_hz")
    out = {"reports": len(inside), "message": inside[-1][2], "policy": last.get("policy"),
           "last": {k: num(last.get(k)) for k in keys}}
    out["worst"] = {k: max((num(v.get(k)) for _, v, _ in inside if num(v.get(k)) is not None), default=None)
                    for k in keys if k != "achieved_rate_hz"}
    for k in ("cycles", "commands", "missed_cycles", "overruns", "stale_cycles", "swaps", "holds", "rejections",
              "attributions"):
        a, b = num(first.get(k)), num(last.get(k))
        out[k] = None if b is None else int(b)
        out[f"{k}_in_window"] = None if a is None or b is None else int(b - a)
    return out


# The counters of each bridge's /diagnostics kept in the summary (as last reported in the window).
BRIDGE_DIAG_COUNTERS = {
    "sim": ("episodes", "blowups", "commands_rejected", "commands_clipped", "control_steps"),
    "real": ("hardware_commands", "hardware_states", "commands_used", "commands_superseded", "commands_rejected",
             "hold_command_timeout", "stop_state_timeout", "filter_position_limit", "filter_step_limit"),
}


def bridge_diag_summary(diag: list, start_ns: int, end_ns: int, bridge: str = "sim") -> dict:
    """The last bridge report in the window: its rate and counters (since start-up). The real
    bridge's also: its mode, the safety filter's p50/p99 time per call, and its counters'
    increase over the window (``in_window``: last report - first; it also reports at every
    mode change, e.g. each command-timeout hold and its end)."""
    inside = [v for t, v, _ in diag if start_ns <= t <= end_ns]
    if not inside:
        return {"reports": 0}
    last = inside[-1]
    counters = BRIDGE_DIAG_COUNTERS[bridge]
    out = {"reports": len(inside), "achieved_rate_hz": num(last.get("achieved_rate_hz")),
           **{k: int(num(last.get(k)) or 0) for k in counters}}
    if bridge == "real":
        out.update(mode=last.get("mode"), filter_p50_us=num(last.get("filter_p50_us")),
                   filter_p99_us=num(last.get("filter_p99_us")),
                   in_window={k: out[k] - int(num(inside[0].get(k)) or 0) for k in counters})
    return out


def emulator_diag_summary(diag: list, start_ns: int, end_ns: int) -> dict:
    """The arm emulator's reports in the window: control periods stepped per second between the
    first and the last (its ``control_steps``, over the monitor's reception times), else the
    last report's own rate (its last ~2 s); catch-up steps and lost periods in the window."""
    inside = [(t, v) for t, v, _ in diag if start_ns <= t <= end_ns]
    if not inside:
        return {"reports": 0}
    (t0, first), (t1, last) = inside[0], inside[-1]
    steps = [num(first.get("control_steps")), num(last.get("control_steps"))]
    rate = ((steps[1] - steps[0]) / ((t1 - t0) / 1e9) if t1 > t0 and None not in steps
            else num(last.get("achieved_rate_hz")))
    return {"reports": len(inside), "steps_per_s": rate, "achieved_rate_hz": num(last.get("achieved_rate_hz")),
            **{f"{k}_in_window": int(num(last.get(k)) - num(first.get(k))) for k in ("catch_up_steps", "lost_periods",
                                                                                    "commands_accepted")
               if num(last.get(k)) is not None and num(first.get(k)) is not None}}


# --- one run --------------------------------------------------------------------------

@dataclass
class RunSpec:
    label: str
    mode: str                 # realtime | lockstep
    rate_hz: float
    trigger: str              # state | timer
    swaps: int = 0
    swap_policies: tuple[str, str] = ("", "")
    policy_dir: str = ""
    control: bool = False     # swap-control: a parameter set that changes nothing, instead of each swap
    repeat: int = 0           # --swap-repeats index (seeds the swap times)
    attribution_hz: float = 0.0  # the policy node's live attribution rate (0: off)
    executor: str = "default"  # SIM2REAL_EXECUTOR of both node processes (sim_bridge.executor.make_executor)
    composed: bool | str = False  # both nodes in one process (`sim2real node sim_policy`): its transport
    #                                 ('intra' or True: the intra-process handoff; 'dds'), False: two processes
    bridge: str = "sim"       # sim | real: the processes of the run (CHILDREN)


def swap_schedule(half_ns: int, end_ns: int, swaps: int, drain_ns: int, rng) -> list[int]:
    """When to send the swap requests: one in each of ``swaps`` equal slots of the second half,
    at a random point of the slot's middle 80%, then moved onto the monitor's drain grid (whole
    multiples of ``drain_ns`` after the first request; kept unmoved where slots are too short).

    Not evenly spaced: the nodes run 1 Hz diagnostics timers, and evenly spaced requests alias
    with them. With 100 swaps in 60 s (0.6 s apart) the policy node's report fell 25-30 ms
    after the request in every fifth window, or in none, depending on the run's phase; the
    report costs 0.5-1 ms of CPU and sometimes a late cycle, so the windows' stall count swung
    from run to run (stall test p from 0.001 to 0.88 with the same code). Random points in the
    slots make where a window falls independent of any periodic activity of the processes.
    """
    step = (end_ns - half_ns) / swaps
    times = [half_ns + (k + rng.uniform(0.1, 0.9)) * step for k in range(swaps)]
    snapped = [int(times[0] + round((t - times[0]) / drain_ns) * drain_ns) for t in times]
    if all(b - a >= drain_ns for a, b in zip(snapped, snapped[1:])) and snapped[-1] < end_ns:
        return snapped
    return [int(t) for t in times]


def run_loop(spec: RunSpec, args, monitor: Monitor, env: dict, log_dir: Path) -> dict:
    period = 1.0 / spec.rate_hz
    policy_params = {"policy": spec.swap_policies[0] if spec.swaps else args.policy,
                     "control_rate_hz": float(spec.rate_hz), "allow_rate_mismatch": "true", "trigger": spec.trigger}
    if spec.swaps and args.swap_preload:  # the operator names the swap candidates at configure
        policy_params["preload_policies"] = f"[{spec.swap_policies[1]}]"  # (preload_policies): no session mid-run
    if spec.policy_dir:
        policy_params["policy_dir"] = spec.policy_dir
    if spec.attribution_hz > 0:  # the live attribution (off by default): does it cost cycles?
        policy_params["attribution_rate_hz"] = float(spec.attribution_hz)
    slug = spec.label.replace(" ", "_")
    monitor.clear()
    children: list[Child] = []
    swaps: list[dict] = []
    try:
        node_env = dict(env, SIM2REAL_EXECUTOR=spec.executor)
        if spec.composed:
            node_env["SIM2REAL_COMPOSED_TRANSPORT"] = composed_kind(spec.composed)
        for name, cmd in CHILDREN[spec.bridge](spec, args, policy_params, log_dir / slug):
            children.append(Child(name, cmd, log_dir / f"{slug}_{name}.log", node_env))

        def check_alive():
            for c in children:
                if not c.alive():
                    raise RunFailed(f"{c.name} exited with code {c.proc.returncode} during '{spec.label}':\n"
                                    f"{c.tail()}")

        # Start-up: wait until the monitor receives both streams (discovery matches each pair of
        # endpoints separately, the monitor's may come seconds after the loop closed) and, for
        # swaps, the parameter service is up.
        deadline = time.monotonic() + args.startup_timeout
        while not (monitor.commands and monitor.states
                   and (not spec.swaps or monitor.param_client.service_is_ready())):
            check_alive()
            if time.monotonic() > deadline:
                raise RunFailed(f"the loop did not start within {args.startup_timeout:g} s in '{spec.label}' "
                                f"({len(monitor.states)} joint_states, {len(monitor.commands)} joint_commands seen)\n"
                                + "\n".join(f"--- {c.name}:\n{c.tail()}" for c in children))
            monitor.spin(0.05)
        t_first = time.time_ns()
        start_ns = t_first + int(args.warmup * 1e9)
        end_ns = start_ns + int(args.duration * 1e9)
        half_ns = start_ns + (end_ns - start_ns) // 2
        drain_ns = int(DRAIN_PERIOD_S * 1e9)
        rng = np.random.default_rng([args.seed, spec.repeat])  # the same times in a repeat's swap and control run
        swap_at = swap_schedule(half_ns, end_ns, spec.swaps, drain_ns, rng) if spec.swaps else []
        # The readers are drained on a fixed grid, each swap request half-way between two drains:
        # a drain is a burst of CPU in this third process, and states published around one are
        # answered late several times as often (2 cores); a request sent right after a drain
        # would start every swap window with one.
        anchor = (swap_at[0] if swap_at else t_first) - drain_ns // 2
        next_drain = anchor + (time.time_ns() - anchor) // drain_ns * drain_ns + drain_ns
        cpu_start: dict = {}
        pending = None
        last_check = 0.0
        # The monitor keeps every message of the run: its heap grows by ~1000 objects per
        # second, and a full garbage collection of it (tens of ms of CPU) in this third process
        # on 2 cores would land as missed cycles of the loop it measures. No collections while
        # it measures; the heap so far is frozen.
        gc.collect()
        gc.freeze()
        gc.disable()
        while True:
            now = time.time_ns()
            if now >= end_ns and pending is None:
                break
            if now >= start_ns and not cpu_start:
                cpu_start = {c.name: (c.cpu_s(), time.monotonic()) for c in children}
                cpu_start["monitor"] = (time.process_time(), time.monotonic())
                cpu_start["idle"] = (system_idle_s(), time.monotonic())
            if time.monotonic() - last_check > 0.5:
                check_alive()
                last_check = time.monotonic()
            if pending is None and swap_at and now >= swap_at[0]:
                swap_at.pop(0)
                name = spec.swap_policies[1 - len(swaps) % 2]  # starts on [0]: swaps go to [1], [0], [1], ...
                request = make_control_request() if spec.control else make_set_policy_request(name)
                pending = {"policy": CONTROL_PARAM if spec.control else name, "sent_ns": time.time_ns(),
                           "future": monitor.param_client.call_async(request)}
            if pending is not None:
                fut = pending["future"]
                if fut.done() or time.time_ns() - pending["sent_ns"] > args.swap_timeout * 1e9:
                    pending["reply_ns"] = time.time_ns()
                    result = fut.result() if fut.done() else None
                    ok = bool(result and result.results and result.results[0].successful)
                    pending["successful"] = ok
                    pending["reason"] = ("" if ok else (result.results[0].reason if result and result.results
                                                        else f"no reply within {args.swap_timeout:g} s"))
                    pending.pop("future")
                    swaps.append(pending)
                    pending = None
                    continue
            now = time.time_ns()
            if now >= next_drain:
                monitor.drain()
                next_drain += max(1, (now - next_drain) // drain_ns + 1) * drain_ns
            wake = next_drain if pending is not None or not swap_at else min(next_drain, swap_at[0])
            monitor.wait(max(0.0, (wake - time.time_ns()) / 1e9))  # returns early on a reply or a report
        cpu = {}
        for name, t1 in [(c.name, c.cpu_s()) for c in children] + [("monitor", time.process_time()),
                                                                    ("idle", system_idle_s())]:
            t0 = cpu_start.get(name)
            if t0 and t0[0] is not None and t1 is not None:
                cpu[name] = (t1 - t0[0]) / (time.monotonic() - t0[1])
        if "idle" in cpu:  # what else ran on the machine meanwhile (other processes, kernel)
            cpu["system"] = (os.cpu_count() or 1) - cpu.pop("idle")
            cpu["other"] = cpu["system"] - sum(cpu.get(c.name, 0.0) for c in children) - cpu.get("monitor", 0.0)
        monitor.spin(0.0)  # take what has arrived
        # The nodes report once per second: wait for the report that covers the window's end.
        n_diag, tail_end = len(monitor.policy_diag), time.monotonic() + DIAG_TAIL_S
        while time.monotonic() < tail_end and len(monitor.policy_diag) == n_diag:
            monitor.spin(0.05)
    finally:
        gc.enable()
        codes = {c.name: c.stop() for c in reversed(children)}
    states, commands = window(monitor.states, start_ns, end_ns), window(monitor.commands, start_ns, end_ns)
    if len(states) < 2 or len(commands) < 2:
        raise RunFailed(f"'{spec.label}': too few messages in the window ({len(states)} states, "
                        f"{len(commands)} commands)")
    diag_end_ns = end_ns + int(DIAG_TAIL_S * 1e9)
    result = {"label": spec.label, "bridge": spec.bridge, "mode": spec.mode, "trigger": spec.trigger,
              "target_rate_hz": spec.rate_hz, "attribution_hz": spec.attribution_hz, "executor": spec.executor,
              "composed": spec.composed, "physics_rate_hz": args.physics_rate, "warmup_s": args.warmup,
              "duration_s": args.duration, "exit_codes": codes, "cpu_cores": cpu,
              "loop": loop_stats(states, commands, period if spec.mode == "realtime" else None),
              "policy_diagnostics": policy_diag_summary(monitor.policy_diag, start_ns, diag_end_ns),
              "bridge_diagnostics": bridge_diag_summary(monitor.bridge_diag, start_ns, diag_end_ns, spec.bridge)}
    emulator_hz = None
    if spec.bridge == "real":
        # its reports inside the measured window only: the steps between them are the window's
        result["emulator_diagnostics"] = emulator_diag_summary(monitor.emulator_diag, start_ns, end_ns)
        emulator_hz = result["emulator_diagnostics"].get("steps_per_s")
    result["cpu_ms_per_cycle"] = cpu_ms_per_cycle(cpu, result["loop"], emulator_hz)
    if spec.mode == "realtime":
        err = result["loop"]["command_rate_hz"] / spec.rate_hz - 1.0
        result["rate_error"] = err
        result["rate_target_met"] = bool(abs(err) <= RATE_TOLERANCE)
    if args.raw_dir:
        args.raw_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.raw_dir / f"{slug}.npz", states=np.array(monitor.states, dtype=np.int64),
                            commands=np.array(monitor.commands, dtype=np.int64),
                            window=np.array([start_ns, end_ns], dtype=np.int64),
                            swaps=np.array([(s["sent_ns"], s["reply_ns"], s["successful"]) for s in swaps],
                                           dtype=np.int64).reshape(-1, 3))
    if spec.swaps:
        result["swap"] = swap_analysis(states, commands, swaps, start_ns, half_ns, end_ns, period, args)
        result["swap"]["control"] = spec.control
    return result


def make_set_policy_request(name: str):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    return SetParameters.Request(parameters=[Parameter("policy", value=name).to_parameter_msg()])


def make_control_request():
    """The swap-control run's request: the same service, a parameter set that changes nothing."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    name, value = CONTROL_PARAM.split(" := ")
    return SetParameters.Request(parameters=[Parameter(name, value=int(value)).to_parameter_msg()])


def poisson_sf(observed: int, expected: float) -> float:
    """P(X >= observed) for X ~ Poisson(expected)."""
    if observed <= 0:
        return 1.0
    return float(max(0.0, 1.0 - sum(math.exp(-expected) * expected ** k / math.factorial(k) for k in range(observed))))


def poisson_upper(observed: int, confidence: float = 0.95) -> float:
    """The upper confidence limit of a Poisson mean given ``observed`` events (bisection on the CDF)."""
    def cdf(mean: float) -> float:
        return sum(math.exp(-mean) * mean ** k / math.factorial(k) for k in range(observed + 1))
    lo, hi = float(observed), float(observed) + 10.0 + 10.0 * math.sqrt(observed + 1)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cdf(mid) > 1.0 - confidence else (lo, mid)
    return hi


def pooled_swaps(results: list[dict], control: bool, executor: str = "default", composed: bool = False) -> dict | None:
    """The swap runs (or the control runs) of several repeats with one executor together: stalls
    inside all their windows against the sum of what each run's own outside rate predicts, and a
    95% upper bound of the excess per swap. None with fewer than two such runs."""
    runs = [r["swap"] for r in results if r.get("swap") and bool(r["swap"].get("control")) == control
            and r.get("executor", "default") == executor
            and composed_kind(r.get("composed")) == composed_kind(composed)]
    if len(runs) < 2:
        return None
    swaps = sum(s["requested"] for s in runs)
    stalls = sum(s["in_swap_windows"]["late_intervals"] for s in runs)
    expected_stalls = sum(s["expected_stalls_in_windows"] for s in runs)
    missed = sum(s["in_swap_windows"]["missed_cycles"] for s in runs)
    expected_missed = sum(s["expected_misses_in_windows"] for s in runs)
    return {"runs": len(runs), "swaps": swaps, "control": control, "executor": executor, "composed": composed,
            "all_accepted": all(s["successful"] == s["requested"] for s in runs),
            "stalls_in_windows": stalls, "expected_stalls_in_windows": expected_stalls,
            "poisson_p_value": poisson_sf(stalls, expected_stalls),
            "excess_stalls_per_swap": (stalls - expected_stalls) / swaps,
            "excess_stalls_per_swap_upper95": max(0.0, poisson_upper(stalls) - expected_stalls) / swaps,
            "missed_in_windows": missed, "expected_missed_in_windows": expected_missed,
            "excess_missed_per_swap": (missed - expected_missed) / swaps}


def print_pooled(pooled: dict) -> None:
    what = "parameter sets (control)" if pooled["control"] else "swaps"
    tag = variant_tag(pooled.get("executor", "default"), pooled.get("composed", False))
    print(f"\npooled over {pooled['runs']} runs{tag}, {pooled['swaps']} {what}: {pooled['stalls_in_windows']} stalls "
          f"inside the windows vs {pooled['expected_stalls_in_windows']:.2f} expected from each run's rate outside "
          f"them (one-sided Poisson p = {pooled['poisson_p_value']:.3g}); excess {pooled['excess_stalls_per_swap']:+.3f} "
          f"stalls per swap (95% upper bound {pooled['excess_stalls_per_swap_upper95']:.3f}); missed cycles "
          f"{pooled['missed_in_windows']} vs {pooled['expected_missed_in_windows']:.2f} expected "
          f"({pooled['excess_missed_per_swap']:+.3f} per swap)")


def swap_analysis(states: np.ndarray, commands: np.ndarray, swaps: list[dict], start_ns: int, half_ns: int,
                  end_ns: int, period: float, args) -> dict:
    """Cycle times with and without swapping: the two halves, and the swap windows against the rest
    of the run (see the module docstring, "Swap attribution").

    A command interval belongs to a segment if it overlaps it; a state (its round trip, whether
    it was answered in time) if it arrived in it. State-side misses (the bridge's own timer) are kept
    apart from command-side ones: with ``trigger:=state`` a missed state is a missed command.

    Intervals are between the publishers' source stamps (when the policy node published each
    command, the bridge each state), not the monitor's receptions: the monitor is busier inside
    the windows than outside (it sends the request and takes the reply there), and its own late
    receptions (a command published on time, received 1 ms late) showed up as stalls 0-2.5 ms
    after the requests (traced in the node: its cycles were on time). The reception-based count
    is kept in the result for comparison. Without source stamps: receptions.
    """
    pairs = pair_answers(states, commands)
    have_src = pairs["by_source_stamps"]
    col = 1 if have_src else 0
    c_rx, s_rx = np.sort(commands[:, col]), np.sort(states[:, col])
    c_lo, c_hi, c_dt = c_rx[:-1], c_rx[1:], np.diff(c_rx) / 1e9
    s_lo, s_hi, s_dt = s_rx[:-1], s_rx[1:], np.diff(s_rx) / 1e9
    p_rx, rt, late = pairs["state_rx"], pairs["rt"], pairs["late"]
    margin = int(args.swap_window_ms * 1e6)
    windows = [(sw["sent_ns"], sw["reply_ns"] + margin) for sw in swaps]

    def overlap(lo, hi, spans):
        mask = np.zeros(len(lo), dtype=bool)
        for a, b in spans:
            mask |= (hi >= a) & (lo <= b)
        return mask

    def part(spans) -> dict:
        cm, sm, pm = overlap(c_lo, c_hi, spans), overlap(s_lo, s_hi, spans), overlap(p_rx, p_rx, spans)
        d = c_dt[cm]
        r = rt[pm]
        return {"intervals": int(len(d)), "seconds": float(sum(min(b, end_ns) - max(a, start_ns)
                                                               for a, b in spans) / 1e9),
                "missed_cycles": missed_cycles(d, period), "late_intervals": int(np.sum(d > MISS_FACTOR * period)),
                "state_missed_periods": missed_cycles(s_dt[sm], period),
                "late_or_unanswered_states": int(np.sum(late[pm])),
                "interval_ms": pct(d, 1e3), "round_trip_ms": pct(r[np.isfinite(r)], 1e3)}

    inside = part(windows)
    gaps, t = [], half_ns  # the swap half between the windows
    for a, b in sorted(windows):
        if a > t:
            gaps.append((t, a))
        t = max(t, b)
    if t < end_ns:
        gaps.append((t, end_ns))
    result = {"no_swap_half": part([(start_ns, half_ns)]), "swap_half": part([(half_ns, end_ns)]),
              "in_swap_windows": inside, "between_swap_windows": part(gaps),
              "outside_swap_windows": part([(start_ns, half_ns)] + gaps)}

    def expected_in_windows(base: dict, key: str) -> float:
        return base[key] / base["seconds"] * inside["seconds"] if base["seconds"] else 0.0

    # Baseline: the whole run outside the windows (both halves). Stall events for the test
    # (misses come in bursts), missed cycles for the figure the target names.
    base, between = result["outside_swap_windows"], result["between_swap_windows"]
    observed, stalls = inside["missed_cycles"], inside["late_intervals"]
    expected = expected_in_windows(base, "missed_cycles")
    expected_stalls = expected_in_windows(base, "late_intervals")
    p_value = poisson_sf(stalls, expected_stalls)
    late_expected = expected_in_windows(base, "late_or_unanswered_states")
    # Where the stalls inside the windows lie: (end of the long interval - request sent, its length), ms.
    long = np.flatnonzero(c_dt > MISS_FACTOR * period)
    stall_offsets = []
    for sent, stop in windows:
        for i in long[(c_hi[long] >= sent) & (c_lo[long] <= stop)]:
            stall_offsets.append((round((int(c_hi[i]) - sent) / 1e6, 2), round(float(c_dt[i]) * 1e3, 2)))
    replies = [(sw["reply_ns"] - sw["sent_ns"]) / 1e6 for sw in swaps]
    all_ok = len(swaps) == args.swaps and all(sw["successful"] for sw in swaps)
    received = np.sort(commands[:, 0])
    r_lo, r_hi, r_dt = received[:-1], received[1:], np.diff(received) / 1e9
    r_in = overlap(r_lo, r_hi, windows)
    r_out = overlap(r_lo, r_hi, [(start_ns, half_ns)] + gaps)
    r_expected = (np.sum(r_dt[r_out] > MISS_FACTOR * period) / base["seconds"] * inside["seconds"]
                  if base["seconds"] else 0.0)
    return {"intervals_from": "source stamps (published)" if have_src else "receptions at the monitor",
            "received_stalls_in_windows": int(np.sum(r_dt[r_in] > MISS_FACTOR * period)),
            "received_expected_stalls_in_windows": float(r_expected),
            "requested": len(swaps), "successful": sum(sw["successful"] for sw in swaps),
            "failures": [sw["reason"] for sw in swaps if not sw["successful"]],
            "policies": sorted({sw["policy"] for sw in swaps}),
            "preloaded": bool(args.swap_preload),
            "request_to_reply_ms": pct(np.array(replies)) if replies else {"n": 0},
            "window_margin_ms": args.swap_window_ms, **result,
            "base_missed_cycles_per_s": base["missed_cycles"] / base["seconds"] if base["seconds"] else 0.0,
            "expected_misses_in_windows": expected,
            "excess_misses_in_windows": observed - expected,
            "expected_stalls_in_windows": expected_stalls,
            "poisson_p_value": p_value,
            "expected_misses_in_windows_at_between_rate": expected_in_windows(between, "missed_cycles"),
            "poisson_p_value_at_between_rate": poisson_sf(stalls, expected_in_windows(between, "late_intervals")),
            "expected_late_states_in_windows": late_expected,
            "late_states_poisson_p_value": poisson_sf(inside["late_or_unanswered_states"], late_expected),
            "stalls_in_windows_ms_after_request": stall_offsets,
            "strict_zero_in_windows": bool(observed == 0),
            # Attributable = significantly more stalls inside the windows than the rest of the run predicts.
            "target_met": bool(all_ok and (observed == 0 or p_value >= 0.05))}


# --- reporting ------------------------------------------------------------------------

def executor_ratios(results: list[dict], executors: list[str]) -> list[dict]:
    """For each real-time rate (no swaps, no attribution): each executor's CPU per cycle and
    round-trip p99 against the first executor's (the baseline) in the same benchmark run."""
    rows = []
    plain = [r for r in results if r.get("mode") == "realtime" and not r.get("swap") and not r.get("attribution_hz")
             and not r.get("composed")]
    for rate in sorted({r["target_rate_hz"] for r in plain}):
        by = {r["executor"]: r for r in plain if r["target_rate_hz"] == rate}
        base = by.get(executors[0])
        for ex in executors[1:]:
            r = by.get(ex)
            if base is None or r is None:
                continue
            row = {"rate_hz": rate, "executor": ex, "baseline": executors[0]}
            for node in [n for n in RATIO_PROCESSES if n in r["cpu_ms_per_cycle"] or n in base["cpu_ms_per_cycle"]]:
                a, b = r["cpu_ms_per_cycle"].get(node), base["cpu_ms_per_cycle"].get(node)
                row[f"{node}_cpu_ms"], row[f"{node}_baseline_cpu_ms"] = a, b
                row[f"{node}_cpu_ratio"] = a / b if a and b else None
            row["round_trip_p99_ms"], row["baseline_round_trip_p99_ms"] = (
                r["loop"]["round_trip_ms"]["p99"], base["loop"]["round_trip_ms"]["p99"])
            row["command_rate_hz"], row["baseline_command_rate_hz"] = (
                r["loop"]["command_rate_hz"], base["loop"]["command_rate_hz"])
            rows.append(row)
    return rows


def composed_kind(composed) -> str:
    """A run's composed transport: '' (two processes), 'intra' (True counts as 'intra') or 'dds'."""
    return "" if not composed else ("intra" if composed is True else str(composed))


def composed_ratios(results: list[dict]) -> list[dict]:
    """For each real-time rate and composed transport (no swaps, no attribution, default
    executor): the composed process's CPU per cycle against the two node processes' sum, and
    its round trip, in the same benchmark run."""
    rows = []
    plain = [r for r in results if r.get("mode") == "realtime" and not r.get("swap") and not r.get("attribution_hz")
             and r.get("executor", "default") == "default"]
    kinds = sorted({composed_kind(r.get("composed")) for r in plain} - {""}, key=COMPOSED_TRANSPORTS.index)
    for rate, kind in ((rate, kind) for rate in sorted({r["target_rate_hz"] for r in plain}) for kind in kinds):
        two = next((r for r in plain if r["target_rate_hz"] == rate and not r.get("composed")), None)
        one = next((r for r in plain if r["target_rate_hz"] == rate and composed_kind(r.get("composed")) == kind),
                   None)
        if two is None or one is None:
            continue
        b = two["cpu_ms_per_cycle"].get("sim_bridge", two["cpu_ms_per_cycle"].get("real_bridge"))
        p = two["cpu_ms_per_cycle"].get("policy")
        c = one["cpu_ms_per_cycle"].get("composed")
        both = b + p if b is not None and p is not None else None
        rows.append({"rate_hz": rate, "transport": kind, "composed_cpu_ms": c, "two_process_cpu_ms": both,
                     "cpu_ratio": c / both if c and both else None,
                     "round_trip_p99_ms": one["loop"]["round_trip_ms"]["p99"],
                     "two_process_round_trip_p99_ms": two["loop"]["round_trip_ms"]["p99"],
                     "command_rate_hz": one["loop"]["command_rate_hz"],
                     "two_process_command_rate_hz": two["loop"]["command_rate_hz"]})
    return rows


def print_composed_ratios(results: list[dict]) -> None:
    print()
    print("composed (both nodes in one process; intra = the intra-process handoff, dds = its messages over DDS) "
          "against two processes (same benchmark run):")
    for row in composed_ratios(results):
        print(f"  {row['rate_hz']:g} Hz {row['transport']:>5}: CPU ms/cycle {fmt(row['composed_cpu_ms'], '.3f')} vs "
              f"{fmt(row['two_process_cpu_ms'], '.3f')} (bridge + policy; x{fmt(row['cpu_ratio'], '.2f')}); commands "
              f"{row['command_rate_hz']:.1f} vs {row['two_process_command_rate_hz']:.1f} Hz; round trip p99 "
              f"{row['round_trip_p99_ms']:.3f} vs {row['two_process_round_trip_p99_ms']:.3f} ms")


# The processes compared across executors, and their names in the printed lines.
RATIO_PROCESSES = {"sim_bridge": "bridge", "real_bridge": "real bridge", "arm_emulator": "emulator", "policy": "policy"}


def print_executor_ratios(results: list[dict], executors: list[str]) -> None:
    print()
    print(f"executors against '{executors[0]}' (same benchmark run; ratio < 1: less CPU per cycle):")
    for row in executor_ratios(results, executors):
        cpu = ", ".join(f"{label} {fmt(row[f'{node}_cpu_ms'], '.3f')} vs {fmt(row[f'{node}_baseline_cpu_ms'], '.3f')} "
                        f"(x{fmt(row[f'{node}_cpu_ratio'], '.2f')})"
                        for node, label in RATIO_PROCESSES.items() if f"{node}_cpu_ms" in row)
        print(f"  {row['rate_hz']:g} Hz {row['executor']:<8} CPU ms/cycle {cpu}; commands {row['command_rate_hz']:.1f} "
              f"vs {row['baseline_command_rate_hz']:.1f} Hz; round trip p99 {row['round_trip_p99_ms']:.3f} vs "
              f"{row['baseline_round_trip_p99_ms']:.3f} ms")


def variant_tag(executor: str, composed: bool) -> str:
    """The label suffix of a run's variant: '' for the default, ' [single]', ' [composed]', ..."""
    kind = composed_kind(composed)
    parts = ([] if executor == "default" else [executor]) + ([] if not kind else
                                                             ["composed" if kind == "intra" else f"composed {kind}"])
    return f" [{', '.join(parts)}]" if parts else ""


def fmt(value, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def cpu_columns(results: list[dict]) -> list[tuple[str, str]]:
    """(letter, process) of the CPU columns: the bridge (sim, real or composed), the arm
    emulator when one ran, the policy node, the monitor."""
    emulator = any("arm_emulator" in r.get("cpu_cores", {}) for r in results)
    return [("b", "bridge")] + ([("e", "arm_emulator")] if emulator else []) + [("p", "policy"), ("m", "monitor")]


def process_figure(per_process: dict, name: str):
    return bridge_figure(per_process) if name == "bridge" else per_process.get(name)


def bridge_diag_brief(b: dict) -> str:
    """The bridge's counters in the diagnostics table (see its header)."""
    if "episodes" in b:
        return f"{b.get('episodes', '-')}/{b.get('blowups', '-')}/{b.get('commands_rejected', '-')}"
    if "in_window" in b:
        w = b["in_window"]
        return (f"{b['mode']} {w['hold_command_timeout']}/{w['stop_state_timeout']}/{w['commands_superseded']}/"
                f"{w['commands_rejected']} {fmt(b.get('filter_p99_us'), '.0f')}")
    return "-"


def print_tables(results: list[dict]) -> None:
    width = max([20] + [len(r["label"]) + 1 for r in results])
    cols = cpu_columns(results)
    letters = "/".join(c for c, _ in cols)
    cores_head, cycle_head = f"CPU {letters}/other", f"CPU ms/cycle {letters}"
    core_widths = [6] + [5] * (len(cols) - 1)
    cycle_widths = [8] + [6] * (len(cols) - 1)
    print()
    print(f"{'run':<{width}}{'cmd Hz':>8}{'state Hz':>9}{'err':>7}{'cycle p50/p99/max ms':>23}{'missed':>7}{'bridge':>7}"
          f"{'late':>6}{'round trip p50/p99 ms':>22}{'pub->rx p50/p99':>17}{cores_head:>{sum(core_widths) + 6}}"
          f"{cycle_head:>{sum(cycle_widths)}}")
    for r in results:
        lp = r["loop"]
        ci, rt, bv = lp["command_interval_ms"], lp["round_trip_ms"], lp["state_pub_to_command_rx_ms"]
        err = f"{100 * r['rate_error']:+.1f}%" if "rate_error" in r else "n/a"
        cpu, per_cycle = r["cpu_cores"], r.get("cpu_ms_per_cycle", {})
        print(f"{r['label']:<{width}}{lp['command_rate_hz']:8.1f}{lp['state_rate_hz']:9.1f}{err:>7}"
              f"{ci['p50']:8.3f}{ci['p99']:7.3f}{ci['max']:8.2f}"
              f"{fmt(lp.get('missed_cycles'), 'd', 'n/a'):>7}{fmt(lp.get('state_missed_periods'), 'd', 'n/a'):>7}"
              f"{lp['late_or_unanswered_states']:6d}{rt['p50']:10.3f}{rt['p99']:12.3f}"
              f"{fmt(bv.get('p50'), '.3f'):>8}{fmt(bv.get('p99'), '.3f'):>9}"
              + "".join(f"{fmt(process_figure(cpu, name), '.2f'):>{w}}" for (_, name), w in zip(cols, core_widths))
              + f"{fmt(cpu.get('other'), '.2f'):>6}"
              + "".join(f"{fmt(process_figure(per_cycle, name), '.3f'):>{w}}"
                        for (_, name), w in zip(cols, cycle_widths)))
    real = any(r.get("bridge") == "real" for r in results)
    bridge_head = ("real bridge: mode holds/stops/superseded/rejected (in the window) filter p99 us" if real
                   else "bridge: episodes/blowups/rejected")
    print()
    print("policy node /diagnostics (last report in the window; worst per-second report in brackets):")
    print(f"{'run':<{width + 2}}{'inference p50/p99 us':>26}{'loop latency p50/p99 us':>30}{'missed':>8}{'overruns':>9}"
          f"{'stale':>6}{'swaps':>6}{'holds':>6}   {bridge_head}")
    for r in results:
        d, b = r["policy_diagnostics"], r["bridge_diagnostics"]
        if not d.get("reports"):
            print(f"{r['label']:<{width + 2}}  (no diagnostics received)")
            continue
        last, worst = d["last"], d["worst"]
        inf = f"{fmt(last['inference_p50_us'], '.0f')}/{fmt(last['inference_p99_us'], '.0f')} " \
              f"[{fmt(worst['inference_p99_us'], '.0f')}]"
        loop = f"{fmt(last['loop_latency_p50_us'], '.0f')}/{fmt(last['loop_latency_p99_us'], '.0f')} " \
               f"[{fmt(worst['loop_latency_p99_us'], '.0f')}]"
        print(f"{r['label']:<{width + 2}}{inf:>26}{loop:>30}{fmt(d.get('missed_cycles_in_window'), 'd'):>8}"
              f"{fmt(d.get('overruns_in_window'), 'd'):>9}{fmt(d.get('stale_cycles_in_window'), 'd'):>6}"
              f"{fmt(d.get('swaps'), 'd'):>6}{fmt(d.get('holds'), 'd'):>6}   {bridge_diag_brief(b)}")


def print_swap(r: dict) -> None:
    s = r["swap"]
    rr = s["request_to_reply_ms"]
    print()
    what = (f"parameter sets instead of swaps (control: {s['policies'][0]}, changes nothing)" if s.get("control")
            else f"alternating {s['policies']} ({'second one preloaded' if s.get('preloaded', True) else 'no preload'})")
    print(f"swaps ({r['label']}): {s['successful']}/{s['requested']} accepted, {what}; "
          f"request -> reply p50 {fmt(rr.get('p50'), '.1f')} ms, max {fmt(rr.get('max'), '.1f')} ms; "
          f"swap window = request .. reply + {s['window_margin_ms']:g} ms")
    print(f"  {'segment':<22}{'cycles':>7}{'s':>6}{'cycle p50/p99/max ms':>24}{'missed':>7}{'bridge':>7}"
          f"{'late':>6}{'round trip p50/p99 ms':>23}")
    for label, key in (("no-swap half", "no_swap_half"), ("swap half", "swap_half"),
                       ("inside swap windows", "in_swap_windows"), ("between swap windows", "between_swap_windows"),
                       ("outside swap windows", "outside_swap_windows")):
        p = s[key]
        if not p["intervals"]:
            print(f"  {label:<22} no intervals")
            continue
        i, rt = p["interval_ms"], p["round_trip_ms"]
        print(f"  {label:<22}{p['intervals']:7d}{p['seconds']:6.1f}{i['p50']:8.3f}{i['p99']:8.3f}{i['max']:8.2f}"
              f"{p['missed_cycles']:7d}{p['state_missed_periods']:7d}{p['late_or_unanswered_states']:6d}"
              f"{fmt(rt.get('p50'), '.3f'):>11}{fmt(rt.get('p99'), '.3f'):>12}")
    if s["failures"]:
        print(f"  refused/failed swaps: {s['failures']}")
    ins, out = s["in_swap_windows"], s["outside_swap_windows"]
    print(f"  missed cycles inside the {s['requested']} swap windows ({ins['seconds']:.2f} s): {ins['missed_cycles']} "
          f"({ins['late_intervals']} stalls); expected at the rate of the same run outside them "
          f"({out['missed_cycles']} missed in {out['late_intervals']} stalls over {out['seconds']:.1f} s = "
          f"{s['base_missed_cycles_per_s']:.2f}/s): {s['expected_misses_in_windows']:.2f} "
          f"({s['expected_stalls_in_windows']:.2f} stalls); excess {s['excess_misses_in_windows']:+.2f}; "
          f"one-sided Poisson p (stalls) = {s['poisson_p_value']:.3g}")
    print(f"  against the interleaved between-window rate alone: expected "
          f"{s['expected_misses_in_windows_at_between_rate']:.2f} (p = {s['poisson_p_value_at_between_rate']:.3g}); "
          f"late states inside {ins['late_or_unanswered_states']}, expected {s['expected_late_states_in_windows']:.2f} "
          f"(p = {s['late_states_poisson_p_value']:.3g})")
    if "received_stalls_in_windows" in s:
        print(f"  intervals from {s['intervals_from']}; from the monitor's receptions instead: "
              f"{s['received_stalls_in_windows']} stalls inside vs {s['received_expected_stalls_in_windows']:.2f} "
              f"expected (p = {poisson_sf(s['received_stalls_in_windows'], s['received_expected_stalls_in_windows']):.3g})")
    offsets = s.get("stalls_in_windows_ms_after_request", [])
    print("  stalls inside the windows (ms after the request: interval ms): "
          + (", ".join(f"{t:g}: {d:g}" for t, d in offsets) if offsets else "none"))
    verdict = "MET" if s["target_met"] else "NOT MET"
    if s.get("control"):
        verdict += " (control run: what a parameter round trip costs without a swap; not the target)"
    print(f"  => swap target {verdict}: {ins['missed_cycles']} missed in the swap windows vs "
          f"{s['expected_misses_in_windows']:.2f} expected without swaps"
          + ("" if s["successful"] == s["requested"] else f"; only {s['successful']}/{s['requested']} swaps accepted"))


def targets(results: list[dict]) -> list[tuple[str, bool, str]]:
    out = []
    for r in results:
        if r["mode"] == "realtime" and "rate_error" in r and not r.get("swap"):
            out.append((f"{r['label']}: command rate within 2% of {r['target_rate_hz']:g} Hz",
                        r["rate_target_met"], f"{r['loop']['command_rate_hz']:.1f} Hz ({100 * r['rate_error']:+.2f}%)"))
        if r["mode"] == "realtime" and r["target_rate_hz"] == TARGET_RT_RATE_HZ and not r.get("swap"):
            p99 = r["loop"]["round_trip_ms"]["p99"]
            out.append((f"{r['label']}: round trip p99 <= {TARGET_RT_P99_MS:g} ms", p99 <= TARGET_RT_P99_MS,
                        f"{p99:.3f} ms"))
            per_cycle = r.get("cpu_ms_per_cycle", {})
            for node, label in CPU_TARGET_PROCESSES.items():
                if per_cycle.get(node) is not None and not r.get("composed"):
                    ms = per_cycle[node]
                    out.append((f"{r['label']}: {label} CPU per cycle <= {TARGET_CPU_MS_PER_CYCLE:g} ms",
                                ms <= TARGET_CPU_MS_PER_CYCLE, f"{ms:.3f} ms"))
        if r.get("attribution_hz"):
            out.append(attribution_check(r, results))
        if r.get("swap") and not r["swap"].get("control"):
            s = r["swap"]
            ins, base, first = s["in_swap_windows"], s["outside_swap_windows"], s["no_swap_half"]
            out.append((f"{r['label']}: zero missed cycles attributable to the {s['requested']} swaps", s["target_met"],
                        f"{ins['missed_cycles']} missed in {ins['seconds']:.1f} s of swap windows (expected "
                        f"{s['expected_misses_in_windows']:.2f} from the {base['missed_cycles']} in "
                        f"{base['seconds']:.0f} s outside them, stall test p = {s['poisson_p_value']:.3f}; no-swap half "
                        f"{first['missed_cycles']} in {first['seconds']:.0f} s); "
                        f"{s['successful']}/{s['requested']} swaps accepted"))
    return out


def attribution_check(on: dict, results: list[dict]) -> tuple[str, bool, str]:
    """The live attribution adds no missed cycles: the run with it against the same run without
    it (same rate, trigger; run just before). Missed cycles as Poisson counts over the measured
    seconds: given both counts, the on-run's share is binomial under equal rates (one-sided
    exact test, scipy); met when p >= 0.05 and the node published its attributions."""
    from scipy.stats import binomtest

    label = f"{on['label']}: no missed cycles added by the live attribution"
    off = next((r for r in results if not r.get("attribution_hz") and not r.get("swap") and r["mode"] == "realtime"
                and r["target_rate_hz"] == on["target_rate_hz"] and r["trigger"] == on["trigger"]), None)
    if off is None:
        return label, False, "no run without it to compare with"
    k_on, k_off = on["loop"]["missed_cycles"], off["loop"]["missed_cycles"]
    published = on["policy_diagnostics"].get("attributions_in_window")
    expected_n = on["attribution_hz"] * on["duration_s"]
    p = binomtest(k_on, k_on + k_off, 0.5, alternative="greater").pvalue if k_on + k_off > 0 else 1.0
    cpu_on, cpu_off = on["cpu_ms_per_cycle"].get("policy"), off["cpu_ms_per_cycle"].get("policy")
    cpu = (f"; policy CPU per cycle {cpu_on:.3f} vs {cpu_off:.3f} ms ({cpu_on / cpu_off:.2f}x)"
           if cpu_on and cpu_off else "")
    ran = published is not None and published >= 0.5 * expected_n
    detail = (f"{k_on} missed with it vs {k_off} without in {on['duration_s']:g} s each (p = {p:.3f}, one-sided); "
              f"{published if published is not None else 'no'} attributions published (~{expected_n:.0f} "
              f"expected){cpu}")
    return label, bool(ran and p >= 0.05), detail


# --- main -----------------------------------------------------------------------------

def choose_swap_policies(arg: str | None, tmp: Path) -> tuple[tuple[str, str], str, str]:
    """(two policy names, policy_dir ('' = the zoo), how they were chosen)."""
    from policies.control import list_policies

    available = list_policies(ZOO)
    if arg:
        a, b = (x.strip() for x in arg.split(","))
        return (a, b), "", "given"
    preferred = [p for p in ("reach_lstm", "reach_lstm_nominal", "reach_mlp") if p in available]
    others = [p for p in available if p not in preferred]
    names = preferred + others
    if len(names) >= 2:
        return (names[0], names[1]), "", "shipped"
    if not names:
        raise RunFailed(f"no policy in {ZOO}")
    # Only one shipped policy: swap between it and a byte-identical copy under another name
    # in a temporary policy_dir (a swap still loads, validates and warms up a new runtime).
    zoo = tmp / "swap_zoo"
    zoo.mkdir()
    shutil.copytree(ZOO / names[0], zoo / names[0])
    shutil.copytree(ZOO / names[0], zoo / f"{names[0]}_copy")
    return (names[0], f"{names[0]}_copy"), str(zoo), f"only '{names[0]}' is shipped: a copy under another name"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds per run (after --warmup)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the first command not measured")
    parser.add_argument("--rates", default="100,250,500", help="real-time control rates, Hz (comma-separated)")
    parser.add_argument("--bridge", choices=tuple(CHILDREN), default="sim",
                        help="sim: the sim bridge (default); real: the real bridge in front of the arm emulator, "
                             "three processes (see 'The real bridge' above; real-time runs only)")
    parser.add_argument("--physics-rate", type=float,
                        help=f"sim physics rate, Hz (an integer multiple of every control rate; default "
                             f"{DEFAULT_PHYSICS_RATE:g}; sim bridge only: the emulator's is the robot profile's)")
    parser.add_argument("--lockstep-rate", type=float, default=500.0,
                        help="control rate of the lockstep run (sim time per step; the loop runs as fast as it can)")
    parser.add_argument("--realtime-trigger", choices=("state", "timer"), default="state",
                        help="policy node trigger in the real-time runs (see above)")
    parser.add_argument("--swap-rate", type=float, default=500.0, help="control rate of the swap run, Hz")
    parser.add_argument("--swaps", type=int, default=20, help="swaps in the second half of the swap run")
    parser.add_argument("--swap-policies", help="two policy names, comma-separated (default: two shipped ones; "
                                                "with only one shipped, it and a copy of it)")
    parser.add_argument("--no-swap-preload", dest="swap_preload", action="store_false",
                        help="do not preload the second swap policy (its first swap creates an onnxruntime session)")
    parser.add_argument("--swap-window-ms", type=float, default=50.0,
                        help="a swap's window: request sent .. reply + this")
    parser.add_argument("--swap-timeout", type=float, default=10.0, help="seconds to wait for a swap reply")
    parser.add_argument("--swap-repeats", type=int, default=1,
                        help="repeat the swap (and swap-control) run this many times, alternating, each with "
                             "fresh processes, and pool the stall test over the repeats (one 20-swap run can "
                             "only detect a large effect; the pooled figure bounds the excess per swap)")
    parser.add_argument("--runs",
                        help="which runs: any of lockstep, realtime, swap, swap-control (comma-separated; "
                             "swap-control: the swap run with a parameter set that changes nothing instead of "
                             "each swap, for what the parameter round trip alone costs; default lockstep,realtime,"
                             "swap, with --bridge real realtime,swap)")
    parser.add_argument("--executors", default="default",
                        help="executors of the node processes, comma-separated: each real-time and swap run is "
                             "repeated for each (SIM2REAL_EXECUTOR: default = the nodes' own choice, control = "
                             "ControlExecutor, single = LeanExecutor (single-threaded), stock = the same on "
                             "rclpy's own wait loop, the baseline); with more than one, the CPU per cycle of "
                             "each is printed as a ratio to the first (e.g. stock,default)")
    parser.add_argument("--composed", nargs="?", const="intra", default="",
                        help="also run each real-time and swap run with the sim bridge and the policy node in one "
                             "process (`sim2real node sim_policy`, the composed deployment) and print its CPU per "
                             "cycle against the two processes' sum; optionally the transports, comma-separated: "
                             "intra (the default: the intra-process handoff), dds (its messages over DDS, the "
                             "composition before the handoff)")
    parser.add_argument("--policy", default="reach_lstm", help="policy of the non-swap runs")
    parser.add_argument("--attribution-rate-hz", type=float, default=0.0,
                        help="also run each real-time rate with the policy node's live attribution at this rate "
                             "(0: off, the default), right after the same run without it, and test whether it "
                             "adds missed cycles")
    parser.add_argument("--randomization", help="sim bridge randomization_file (default: default; sim bridge only: "
                                                "the emulator's physics are its hidden ones)")
    parser.add_argument("--seed", type=int, default=0, help="sim bridge seed (--bridge real: the emulator's noise "
                                                            "and the real bridge's goals); also seeds the swap times")
    parser.add_argument("--namespace", default="/bench", help="namespace of the three nodes")
    parser.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID (default: $ROS_DOMAIN_ID, else one "
                                                      "derived from the pid, 1..100)")
    parser.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for the loop to start")
    parser.add_argument("--log-dir", type=Path, help="keep the node logs here (default: a temporary folder)")
    parser.add_argument("--raw-dir", type=Path, help="save every run's raw reception times here (.npz: columns "
                                                     "received ns, source ns, publication sequence, taken ns)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    real = args.bridge == "real"
    if args.runs is None:
        args.runs = "realtime,swap" if real else "lockstep,realtime,swap"
    runs = {r.strip() for r in args.runs.split(",") if r.strip()}
    kinds = {"lockstep", "realtime", "swap", "swap-control"}
    if runs - kinds:
        parser.error(f"unknown run(s) {sorted(runs - kinds)}")
    if real:
        refused = [what for what, given in (
            ("a lockstep run (the real bridge has no lockstep mode: its timer is its cycle)", "lockstep" in runs),
            ("--physics-rate (the emulator's physics rate is the robot profile's)", args.physics_rate is not None),
            ("--randomization (the emulator's physics are its hidden ones)", args.randomization is not None))
            if given]
        if refused:
            parser.error(f"--bridge real runs real-time runs only; drop {'; '.join(refused)}")
        from sim_bridge.profile import load_profile  # the profile every node of the real graph loads by default

        args.physics_rate = load_profile("panda_like").physics_rate_hz
    else:
        args.physics_rate = DEFAULT_PHYSICS_RATE if args.physics_rate is None else args.physics_rate
        args.randomization = "default" if args.randomization is None else args.randomization
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    from sim_bridge.executor import EXECUTORS  # imports rclpy (no init): after argparse's --help

    executors = [e.strip() for e in args.executors.split(",") if e.strip()]
    unknown = [e for e in executors if e not in EXECUTORS]
    if unknown or not executors:
        parser.error(f"--executors: unknown {unknown}; choose from {', '.join(EXECUTORS)}")
    # (executor, composed) of each variant: every executor as two processes, then the default composed
    kinds = [k.strip() for k in args.composed.split(",") if k.strip()]
    if any(k not in COMPOSED_TRANSPORTS for k in kinds):
        parser.error(f"--composed: transports are {', '.join(COMPOSED_TRANSPORTS)}, got {args.composed!r}")
    variants = [(ex, False) for ex in executors] + [("default", k) for k in kinds]
    for r in rates + ([] if real else [args.lockstep_rate]) + [args.swap_rate]:
        ratio = args.physics_rate / r
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
            parser.error(f"{'the emulator physics rate' if real else '--physics-rate'} {args.physics_rate:g} is not "
                         f"an integer multiple of {r:g} Hz")

    domain = args.domain_id if args.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID") or
                                                                   os.getpid() % 100 + 1)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, on_sigterm)

    import rclpy
    from rclpy.signals import SignalHandlerOptions

    tmp = Path(tempfile.mkdtemp(prefix="sim2real-bench-policy-node-"))
    log_dir = args.log_dir or tmp / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    training = subprocess.run(["pgrep", "-f", "sim2real train"], capture_output=True, text=True).stdout.split()
    load = os.getloadavg()
    machine = machine_info()  # before any node runs
    print(machine_line(machine), flush=True)
    print(f"{BRIDGE_LINES[args.bridge]} (--bridge {args.bridge}), real rclpy ({os.environ['RMW_IMPLEMENTATION']}), "
          f"separate processes; ROS_DOMAIN_ID {domain}, namespace {args.namespace}")
    print(f"{os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}, load average "
          f"{load[0]:.2f}; {'TRAINING RUNNING (measured under load)' if training else 'no training running'}")
    physics = "emulator physics (hidden)" if real else "physics"
    print(f"runs: {args.warmup:g} s warm-up + {args.duration:g} s measured each; {physics} {args.physics_rate:g} Hz; "
          f"policy '{args.policy}'; logs in {log_dir}")

    specs: list[RunSpec] = []
    if "lockstep" in runs:
        specs.append(RunSpec(f"lockstep {args.lockstep_rate:g}", "lockstep", args.lockstep_rate, "state"))
    if "realtime" in runs:
        for r in rates:
            for ex, comp in variants:
                tag = variant_tag(ex, comp)
                specs.append(RunSpec(f"realtime {r:g} {args.realtime_trigger}{tag}", "realtime", r,
                                     args.realtime_trigger, executor=ex, composed=comp, bridge=args.bridge))
                if args.attribution_rate_hz > 0:  # the same run with the live attribution on: the comparison
                    specs.append(RunSpec(f"realtime {r:g} {args.realtime_trigger}{tag} + attribution "
                                         f"{args.attribution_rate_hz:g} Hz", "realtime", r, args.realtime_trigger,
                                         attribution_hz=args.attribution_rate_hz, executor=ex, composed=comp,
                                         bridge=args.bridge))
    swap_origin = ""
    if runs & {"swap", "swap-control"}:
        pair, policy_dir, swap_origin = choose_swap_policies(args.swap_policies, tmp)
    if args.swap_repeats < 1:
        parser.error("--swap-repeats must be at least 1")
    for k, ex, comp in ((k, ex, comp) for ex, comp in variants for k in range(args.swap_repeats)):
        tag = (f" #{k + 1}" if args.swap_repeats > 1 else "") + variant_tag(ex, comp)
        if "swap" in runs:
            specs.append(RunSpec(f"swaps {args.swap_rate:g} {args.realtime_trigger}{tag}", "realtime",
                                 args.swap_rate, args.realtime_trigger, swaps=args.swaps, swap_policies=pair,
                                 policy_dir=policy_dir, repeat=k, executor=ex, composed=comp, bridge=args.bridge))
        if "swap-control" in runs:
            specs.append(RunSpec(f"swap-control {args.swap_rate:g} {args.realtime_trigger}{tag}", "realtime",
                                 args.swap_rate, args.realtime_trigger, swaps=args.swaps, swap_policies=pair,
                                 policy_dir=policy_dir, control=True, repeat=k, executor=ex, composed=comp,
                                 bridge=args.bridge))
    repeats = f", {args.swap_repeats} times (pooled at the end)" if args.swap_repeats > 1 else ""
    if "swap" in runs:
        print(f"swap run: {args.swaps} swaps between '{pair[0]}' and '{pair[1]}' ({swap_origin}){repeats}")
    if "swap-control" in runs:
        print(f"swap-control run: {args.swaps} parameter sets ({CONTROL_PARAM}) at the swap run's times, no swap"
              f"{repeats}")

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C: KeyboardInterrupt, cleanup below
    monitor = Monitor(args.namespace)
    results, failures = [], []
    try:
        for spec in specs:
            t = time.monotonic()
            print(f"running {spec.label} ...", flush=True)
            try:
                results.append(run_loop(spec, args, monitor, env, log_dir))
            except RunFailed as exc:
                failures.append({"label": spec.label, "error": str(exc)})
                print(f"  FAILED: {exc}", flush=True)
                continue
            lp, other = results[-1]["loop"], results[-1]["cpu_cores"].get("other")
            busy = f"; OTHER LOAD: {other:.2f} cores used by other processes" if other and other > 0.25 else ""
            per_cycle = results[-1]["cpu_ms_per_cycle"]
            emulator = (f", emulator {fmt(per_cycle.get('arm_emulator'), '.3f')} ms" if "arm_emulator" in
                        results[-1]["cpu_cores"] else "")
            cycle_cpu = (f", CPU per cycle: {args.bridge} bridge {fmt(bridge_figure(per_cycle), '.3f')} ms{emulator}, "
                         f"policy {fmt(per_cycle.get('policy'), '.3f')} ms")
            print(f"  {time.monotonic() - t:.0f} s: {lp['command_rate_hz']:.1f} Hz commands, round trip p99 "
                  f"{lp['round_trip_ms']['p99']:.3f} ms{cycle_cpu}{busy}", flush=True)
    except KeyboardInterrupt:
        print("interrupted; node processes stopped", file=sys.stderr)
        return 130
    finally:
        monitor.destroy()
        rclpy.try_shutdown()

    if results:
        print_tables(results)
        for r in results:
            if r.get("swap"):
                print_swap(r)
    if len(executors) > 1 and executor_ratios(results, executors):
        print_executor_ratios(results, executors)
    if composed_ratios(results):
        print_composed_ratios(results)
    pooled = [p for ex, comp in variants for p in (pooled_swaps(results, False, ex, comp),
                                                   pooled_swaps(results, True, ex, comp)) if p]
    for p in pooled:
        print_pooled(p)
    print()
    checks = targets(results)
    for p in pooled:
        if not p["control"]:
            tag = variant_tag(p["executor"], p["composed"])
            checks.append((f"pooled over the {p['runs']} swap runs{tag}: zero missed cycles attributable to the "
                           f"{p['swaps']} swaps", p["all_accepted"] and p["poisson_p_value"] >= 0.05,
                           f"{p['stalls_in_windows']} stalls in the windows vs {p['expected_stalls_in_windows']:.2f} "
                           f"expected (p = {p['poisson_p_value']:.3f}); excess per swap "
                           f"{p['excess_stalls_per_swap']:+.3f}, 95% upper bound {p['excess_stalls_per_swap_upper95']:.3f}"))
    for text, ok, detail in checks:
        print(f"{'met    ' if ok else 'NOT MET'}  {text}: {detail}")
    for f in failures:
        print(f"FAILED   {f['label']}: {f['error'].splitlines()[0]}")
    print("cycle = command inter-arrival at the monitor; missed = intervals > 1.5 periods (round(dt/T) - 1); "
          "bridge = the same count on the bridge's state stream; late = states whose answer was not published "
          "before the next state (answered late or never); round trip = state received -> its answer received, "
          "at the monitor (one policy cycle + one DDS hop); pub->rx = state published by the bridge -> its answer "
          "received (the bridge's view: two hops + one cycle); CPU b/p/m/other = cores used by bridge / policy "
          "node / this monitor / everything else on the machine during the window; CPU ms/cycle b/p/m = CPU "
          "time per control cycle of bridge (per state) / policy node / monitor (per command), = cores x period; "
          "[composed] runs: both nodes in one process (intra-process handoff; [composed dds]: over DDS), its CPU "
          "in the bridge column"
          + ("; --bridge real: b = the real bridge (per relayed state), e = the arm emulator (per control period "
             "it stepped)" if real else ""))

    if args.json:
        out = {"bridge": args.bridge, "rmw": os.environ["RMW_IMPLEMENTATION"], "ros_domain_id": domain,
               "namespace": args.namespace,
               "cpus": os.cpu_count(), "load_average_start": load, "load_average_end": os.getloadavg(),
               "training_running_at_start": bool(training), "args": {k: (str(v) if isinstance(v, Path) else v)
                                                                      for k, v in vars(args).items()},
               "swap_policies_origin": swap_origin, "runs": results, "pooled_swaps": pooled, "failures": failures,
               "targets": [{"target": t, "met": ok, "value": d} for t, ok, d in checks], "machine_info": machine}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    if args.log_dir is None and not failures:
        shutil.rmtree(tmp, ignore_errors=True)
    elif failures:
        print(f"node logs kept in {log_dir}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
