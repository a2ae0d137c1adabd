"""Issue 12, defect 7: a flood of ``joint_commands`` must not halt the real bridge's control.

Another process floods the bridge's ``joint_commands`` at :data:`FLOOD_HZ` for
:data:`FLOOD_S` (valid commands mixed with NaN and wrong-length ones) while the bridge runs
against a fake arm and a 50 Hz policy: the probe of ``test_real_bridge_node`` (another
executor of this process), or the arm emulator spun by the bridge's own executor (as
``sim2real real`` spins them). Measured in the bridge's process (its control ticks, hardware
publishes, state and command intake, timed where they happen) and on the fake ros2_control
side:

* the intake is bounded: at most ``COMMAND_INTAKE_PER_PERIOD`` commands are taken per control
  period (the defect: thousands per second, each a pass of the executor's loop);
* the bridge keeps commanding: no gap over :data:`MAX_GAP_PERIODS` control periods between
  hardware commands, no STOP, and RUN after the flood. A short HOLD is allowed and reported: it
  is the watchdog's answer to 2 periods without a valid command taken, which on a busy
  machine (this process descheduled for 40 ms) happens with or without a flood, and the bridge
  says why (cause ``command_timeout``) while it keeps sending hardware commands (the hold);
* the counters are honest: every command the bridge received is in exactly one counter
  (used, superseded, rejected, discarded, or the one pending). The rest of what was sent
  was replaced in the middleware's queue before the bridge took it: no node can count that.

The window starts when the flooder has started and matched (its start-up loads the machine for
a second or two; a CI run once counted a STOP whose 365 ms without a state began before the
first command of the flood) and the bridge is in RUN with fresh states.

The measurement runs with this process's garbage collector frozen (a full collection, then
``gc.freeze()``: ``sim_bridge.executor.freeze_heap``, as the nodes do; undone after). Both CI
failures of these tests were one ~350 ms stall of this
process that never shows when the file runs alone (a STOP after 365 ms without a state; later a
first gap of 333 ms between hardware commands, then 20 ms gaps throughout). The likely cause: in
the full suite this pytest process holds the objects of ~1,000 earlier tests, and a full
collection, which the flood's allocation rate makes likely to fall in the window, pauses every
thread of it, the bridge included. Not proven: with 6M extra objects loaded the file still
passes without the freeze (a full collection of them took 110-140 ms here). A deployed bridge's
process holds only its own nodes; the frozen heap stands in for that, and whatever the flood
allocates is still collected.

The fake arm's states come from this process, so the rig's 10-period state timeout applies
(see ``test_real_bridge_node.Rig``); a STOP would still show a starved state intake.
"""
from __future__ import annotations

import gc
import itertools
import json
import resource
import subprocess
import sys
import time

import numpy as np
import pytest
from real_bridge.node import COMMAND_INTAKE_PER_PERIOD
from sim_bridge.executor import freeze_heap
from rigs import ros, wait_until  # noqa: F401 (ros: autouse fixture)
from test_real_bridge_node import DELTA, PERIOD, Q, rig_factory  # noqa: F401 (rig_factory: fixture)

pytestmark = pytest.mark.ros

FLOOD_HZ = 5000.0
FLOOD_S = 2.0
# The bound on the gap between two hardware commands during the flood, in control periods.
# A bridge that keeps its 50 Hz cycle has gaps of 1 period. Measured here (2-core machine,
# the flooder and the test process on it): 23-47 ms alone, up to 90 ms beside two busy loops
# and other jobs (load 5), where this process gets under half a core. The defect: 616 ms
# (31 periods) and a 364 ms STOP. 10 periods (200 ms) keeps a factor of 3 from the defect
# and 2 from the worst busy-machine gap measured.
MAX_GAP_PERIODS = 10

FLOOD = r"""
import json, sys, time
import numpy as np
import rclpy
from std_msgs.msg import Float64MultiArray
from sim_bridge import interface

ns, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
base = np.array(json.loads(sys.argv[4]))
delta = np.array(json.loads(sys.argv[5]))
rclpy.init()
node = rclpy.create_node("flood", namespace=ns)
pub = node.create_publisher(Float64MultiArray, interface.JOINT_COMMANDS, interface.COMMAND_QOS)
end = time.monotonic() + 30.0
while pub.get_subscription_count() < 1 and time.monotonic() < end:
    time.sleep(0.01)
assert pub.get_subscription_count() >= 1, "the bridge's joint_commands subscription never matched"
good = [Float64MultiArray(data=(base + delta * (0.5 + 0.1 * k)).tolist()) for k in range(6)]
nan = Float64MultiArray(data=(base + delta).tolist())
nan.data[3] = float("nan")
short = Float64MultiArray(data=base[:5].tolist())
sent = {"valid": 0, "non_finite": 0, "wrong_length": 0}
print("ready", flush=True)
sys.stdin.readline()   # the test's go: this process's start-up and discovery are over by then
print("flooding", flush=True)
start = time.perf_counter()
k = 0
while True:
    elapsed = time.perf_counter() - start
    if elapsed >= seconds:
        break
    if k > elapsed * rate:   # ahead of the schedule: sleep 1 ms (publish in bursts of rate/1000, not spin)
        time.sleep(1e-3)
        continue
    if k % 10 == 9:
        pub.publish(nan); sent["non_finite"] += 1
    elif k % 50 == 24:
        pub.publish(short); sent["wrong_length"] += 1
    else:
        pub.publish(good[k % 6]); sent["valid"] += 1
    k += 1
sent["seconds"] = time.perf_counter() - start
sent["total"] = k
print("SENT " + json.dumps(sent), flush=True)
node.destroy_node()
rclpy.try_shutdown()
"""


def _gaps(times) -> np.ndarray:
    return np.diff(np.asarray(times, dtype=float)) if len(times) > 1 else np.zeros(0)


def _max_taken_between_ticks(ticks, taken) -> float:
    """The most commands taken between two control ticks, per started control period of the
    interval (a late tick: the intake's wait for it ends after one period)."""
    ticks, taken = np.asarray(ticks), np.asarray(taken)
    worst = 0.0
    for a, b in itertools.pairwise(ticks):
        n = np.count_nonzero((taken >= a) & (taken < b))
        worst = max(worst, n / (1 + int((b - a) / PERIOD)))
    return worst


def _timed(times: list, function):
    """``function``, appending time.monotonic() to ``times`` at each call."""
    def timed(*args, **kwargs):
        times.append(time.monotonic())
        return function(*args, **kwargs)
    return timed


def flood_and_measure(rig, label: str) -> None:
    """Flood ``rig``'s bridge from another process for FLOOD_S; measure and check (module docstring)."""
    node = rig.node
    assert rig.wait_hw(10, timeout=30.0), "no hardware commands before the flood"
    core = node.core
    # Timed in the bridge's process: control ticks, hardware commands, states and commands taken.
    ticks, published, states, taken = [], [], [], []
    core.rate.tick = _timed(ticks, core.rate.tick)
    node._publish_hardware = _timed(published, node._publish_hardware)
    core.on_joint_state = _timed(states, core.on_joint_state)
    core.on_command = _timed(taken, core.on_command)

    def states_fresh() -> bool:   # hardware states taken in the last 2 control periods
        return bool(states) and time.monotonic() - states[-1] <= 2 * PERIOD
    freeze_heap()   # the earlier tests' objects out of the collector's way (module docstring)
    try:
        _flood_and_measure(rig, label, node, core, ticks, published, states, taken, states_fresh)
    finally:
        gc.unfreeze()


def _flood_and_measure(rig, label, node, core, ticks, published, states, taken, states_fresh) -> None:
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, rig.ns, str(FLOOD_HZ), str(FLOOD_S), json.dumps(Q.tolist()),
         json.dumps(DELTA.tolist())], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        ready = flood.stdout.readline()
        assert ready.startswith("ready"), ready + flood.stdout.read()
        # The flooder's start-up (imports, a new DDS participant to discover) loads this 2-core
        # machine for a second or two: the window starts once it is over and the bridge is in
        # RUN with a fresh hardware state, so a STOP counted below is one the flood caused.
        assert wait_until(lambda: core.watchdog.mode == "run" and states_fresh(), 30.0), \
            f"not in RUN with fresh hardware states before the flood: {core.watchdog.mode} ({core.watchdog.reason})"
        with node._lock:
            entries_before = core.watchdog.counts()
        flood.stdin.write("go\n")
        flood.stdin.flush()
        first = flood.stdout.readline()
        assert first.startswith("flooding"), first + flood.stdout.read()
        start, cpu_start = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
        out, _ = flood.communicate(timeout=60)
    finally:
        if flood.poll() is None:
            flood.kill()
    end, cpu_end = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    sent = json.loads(next(line for line in out.splitlines() if line.startswith("SENT "))[5:])
    # the bridge drains what DDS still holds; the 50 Hz policy goes on: RUN again (at least 0.3 s
    # after the flood, intentionally: the drain; then as soon as it runs, within a generous bound)
    back_to_run = wait_until(lambda: core.watchdog.mode == "run" and time.monotonic() > end + 0.3, 10.0)
    with node._lock:
        counts = dict(core.counters)
        watchdog = {k: v - entries_before[k] for k, v in core.watchdog.counts().items()}   # during the flood
        mode, reason = core.watchdog.mode, core.watchdog.reason
        pending = core.health("active", active=True).values["commands_pending"]

    gaps = _gaps([start] + [t for t in published if start <= t <= end] + [end])
    state_gaps = _gaps([start] + [t for t in states if start <= t <= end] + [end])
    probe_gaps = _gaps([start] + [t for t, _ in rig.hw_since(start) if t <= end] + [end])
    during = [t for t in taken if start <= t <= end]
    per_period = _max_taken_between_ticks(ticks, taken)
    cpu = (cpu_end.ru_utime + cpu_end.ru_stime - cpu_start.ru_utime - cpu_start.ru_stime) / (end - start)
    received = counts.get("commands_received", 0)
    print(f"\nflood ({label}): {sent['total']} commands in {sent['seconds']:.2f} s "
          f"({sent['total'] / sent['seconds']:.0f} Hz: {sent['valid']} valid, {sent['non_finite']} NaN, "
          f"{sent['wrong_length']} short) + the 50 Hz policy; taken during the flood {len(during)} "
          f"(max {per_period:.1f} per control period); bridge counters "
          f"{({k: v for k, v in counts.items() if k.startswith('commands')})}, pending {pending}; "
          f"hardware commands: max gap {1e3 * gaps.max():.1f} ms (probe side {1e3 * probe_gaps.max():.1f} ms); "
          f"hardware states taken: max gap {1e3 * state_gaps.max():.1f} ms; entries during the flood "
          f"{({k: v for k, v in watchdog.items() if v})}; mode {mode}; test process CPU {100 * cpu:.0f} % of a core")

    assert sent["total"] / sent["seconds"] >= 2000, "the flood must reach 2 kHz"
    # bounded intake (deterministic: the intake's budget); the defect took ~30 per period
    assert per_period <= 2 * COMMAND_INTAKE_PER_PERIOD, f"{per_period:.1f} commands taken per control period"
    assert gaps.max() <= MAX_GAP_PERIODS * PERIOD, \
        f"no hardware command for {1e3 * gaps.max():.0f} ms during the flood (bound {MAX_GAP_PERIODS} periods)"
    assert watchdog["stop:state_timeout"] == 0, "the flood starved the hardware-state intake: STOP"
    assert watchdog["hold:estop"] == watchdog["hold:released"] == 0
    assert back_to_run and mode == "run", f"{mode}: {reason}"
    # Honest counters: every command the bridge received is in exactly one of them.
    rejected = sum(v for k, v in counts.items() if k.startswith("commands_rejected:"))
    accounted = (counts.get("commands_used", 0) + counts.get("commands_superseded", 0) + rejected
                 + counts.get("commands_discarded", 0) + pending)
    assert received > 0 and accounted == received, (received, accounted, counts)
    assert rejected > 0, "the flood's NaN and short commands are counted as rejected"
    assert int(rig.diag()["command_intake_waits"]) > 0, "the diagnostics show the paced intake"


@pytest.mark.timeout(120)
def test_a_command_flood_from_another_process_does_not_halt_control(rig_factory):
    flood_and_measure(rig_factory(policy_hz=50.0), "bridge alone")


@pytest.mark.timeout(120)
def test_a_command_flood_does_not_halt_control_with_the_arm_emulator_in_the_same_executor(rig_factory):
    """As ``sim2real real`` runs them: the arm (the emulator) spins in the bridge's executor."""
    from real_bridge.emulator_node import ArmEmulatorNode

    rig = rig_factory(policy_hz=50.0, hw_rate=0.0)
    emulator = ArmEmulatorNode(namespace=rig.ns + "_arm")
    rig.executor.add_node(emulator)
    try:
        flood_and_measure(rig, "arm emulator in the bridge's executor")
    finally:
        rig.executor.remove_node(emulator)
        emulator.destroy_node()
