"""The bridge's watchdog: when to forward the policy, hold the arm, or stop commanding.

Pure logic (no ROS, no clock of its own): the node feeds it arrival times and header
stamps and asks it, every control cycle, what to do. Tests drive it with made-up times.

Modes, checked in this order at each :meth:`Watchdog.evaluate`:

* ``stop``: no fresh hardware joint state, i.e. none yet (``no_state``) or the last one
  arrived more than ``state_timeout_periods`` control periods ago (``state_timeout``).
  The bridge sends nothing: without a measurement it cannot know where the arm is, and a
  ros2_control position controller keeps its last command, which is the safest thing
  for it to do. When fresh states return, the safety filter's step limit continues from
  that last command (:mod:`real_bridge.core`), so commanding resumes without a jump.
  A state that is rejected (missing joints, NaN, out of order) is not fresh.
* ``hold`` (``estop``): an e-stop latched by :meth:`estop`; only :meth:`release` ends it.
  A software hold, not a replacement for the arm's hardware e-stop.
* ``waiting``: no valid policy command since activation; nothing is sent (the bridge does
  not take over the arm before the policy does).
* ``hold`` (``released``): after a release, until a command arrives that is newer than
  the release (one sent during the e-stop must not resume motion).
* ``hold`` (``command_timeout``): no valid policy command for ``command_timeout_periods``
  control periods (``now - last_command >= timeout``).
* ``run``: forward the latest policy command (through the safety filter).

**Hold** commands the measured joint positions *frozen when the hold starts*: re-targeting
the live measurement every cycle would let a gravity-loaded arm creep down (each cycle
commands where it sagged to). The frozen target is kept across causes and across a
``stop`` in between; it is released when the bridge runs again (or waits).

**Out-of-order states**: a joint state whose header stamp is older than the last accepted
one is rejected (reported by :meth:`on_joint_state`) and does not count as fresh. Equal
stamps are accepted (a broadcaster may publish one reading twice). A hardware clock
that jumps back therefore stops the bridge until :meth:`reset` (the node resets at
activation): after a clock step no stamp can be trusted to order readings.

**Why monotonic arrival times for the timeouts**, not header stamps or ROS time: the
stamps come from the hardware computer's clock (another machine: offset, drift, NTP steps)
and ROS/system time can jump (NTP, ``use_sim_time``); a jump forward would fire a
timeout, a jump back would hide one. What matters for safety is how long ago *this*
process last heard from the policy or the arm, which only a monotonic clock read on
arrival measures. Stamps are used for one thing only: ordering the hardware readings.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

RUN, HOLD, STOP, WAITING = "run", "hold", "stop", "waiting"
MODES = (RUN, HOLD, STOP, WAITING)
# causes
NO_STATE, STATE_TIMEOUT = "no_state", "state_timeout"
ESTOP, RELEASED, COMMAND_TIMEOUT = "estop", "released", "command_timeout"
NO_COMMAND, COMMANDS = "no_command", "commands"
OUT_OF_ORDER = "out_of_order"


@dataclass(frozen=True)
class Decision:
    """What to do this cycle. ``target``: the hold target (mode ``hold``), else None."""

    mode: str
    cause: str
    reason: str
    target: np.ndarray | None = None
    changed: bool = False          # mode or cause differs from the previous evaluation


class Watchdog:
    """Command and state timeouts, the e-stop latch and stamp ordering (module docstring).

    Times are seconds of one monotonic clock (``time.monotonic()`` in the node); stamps
    are integers in ns (header stamps), compared exactly. Not thread-safe: the node calls
    it under its lock.
    """

    def __init__(self, period_s: float, *, command_timeout_periods: int = 2, state_timeout_periods: int = 3):
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        if command_timeout_periods < 1 or state_timeout_periods < 1:
            raise ValueError("timeouts must be at least 1 control period")
        self.period_s = float(period_s)
        self.command_timeout_periods = int(command_timeout_periods)
        self.state_timeout_periods = int(state_timeout_periods)
        self.counters = Counter()      # entries into hold / stop by cause, rejected states by kind, ...
        self.cycles = Counter()        # evaluations by mode
        self.estopped, self.estop_reason = False, ""
        self.reset()

    @property
    def command_timeout_s(self) -> float:
        return self.command_timeout_periods * self.period_s

    @property
    def state_timeout_s(self) -> float:
        return self.state_timeout_periods * self.period_s

    def reset(self) -> None:
        """Forget all inputs (activation): no state, no command, no stamp; the e-stop stays latched."""
        self.last_state_s: float | None = None
        self.last_stamp_ns: int | None = None
        self.last_command_s: float | None = None
        self.released_s: float | None = None
        self.hold_target: np.ndarray | None = None
        self.mode, self.cause, self.reason = WAITING, NO_STATE, "not evaluated yet"
        self.mode_since_s: float | None = None

    # --- inputs -----------------------------------------------------------------------------
    def on_joint_state(self, stamp_ns: int, arrival_s: float) -> tuple[bool, str]:
        """A valid hardware joint state arrived; (accepted, reason). Older than the last -> rejected."""
        last = self.last_stamp_ns
        if last is not None and stamp_ns < last:
            self.counters[OUT_OF_ORDER] += 1
            return False, (f"out-of-order stamp {stamp_ns / 1e9:.6f} s is {(last - stamp_ns) / 1e6:.3f} ms older "
                           f"than the previous joint state's ({last / 1e9:.6f} s)")
        self.last_stamp_ns = int(stamp_ns)
        self.last_state_s = arrival_s
        return True, ""

    def on_command(self, arrival_s: float) -> None:
        """A valid policy command arrived (checked: right length, finite)."""
        self.last_command_s = arrival_s

    def estop(self, reason: str = "e-stop") -> bool:
        """Latch the e-stop (hold until :meth:`release`); False if it was already latched."""
        if self.estopped:
            return False
        self.estopped, self.estop_reason = True, reason
        self.counters["estops"] += 1
        return True

    def release(self, now_s: float) -> bool:
        """Unlatch the e-stop; the bridge holds until a command newer than now arrives."""
        if not self.estopped:
            return False
        self.estopped, self.estop_reason = False, ""
        self.released_s = now_s
        self.counters["releases"] += 1
        return True

    # --- the decision -----------------------------------------------------------------------
    def state_fresh(self, now_s: float) -> bool:
        return self.last_state_s is not None and now_s - self.last_state_s <= self.state_timeout_s

    def command_expired(self, now_s: float) -> bool:
        """True when the last command is at least the command timeout old (or there is none)."""
        return self.last_command_s is None or now_s - self.last_command_s >= self.command_timeout_s

    def evaluate(self, now_s: float, measured_q: np.ndarray | None) -> Decision:
        """What to do at ``now_s``; ``measured_q`` (the latest valid state) is frozen as the hold
        target when a hold starts."""
        if self.last_state_s is None:
            mode, cause, reason = STOP, NO_STATE, "no valid hardware joint state yet; not commanding"
        elif now_s - self.last_state_s > self.state_timeout_s:
            mode, cause = STOP, STATE_TIMEOUT
            reason = (f"no fresh hardware joint state for {1e3 * (now_s - self.last_state_s):.0f} ms "
                      f"(limit {self.state_timeout_periods} control periods = {1e3 * self.state_timeout_s:.0f} ms); "
                      "not commanding")
        elif self.estopped:
            mode, cause, reason = HOLD, ESTOP, f"e-stop latched ({self.estop_reason}); holding until released"
        elif self.released_s is not None and (self.last_command_s is None or self.last_command_s <= self.released_s):
            mode, cause, reason = HOLD, RELEASED, "e-stop released; holding until a new policy command arrives"
        elif self.last_command_s is None:
            mode, cause, reason = WAITING, NO_COMMAND, "no policy command yet; not commanding"
        elif now_s - self.last_command_s >= self.command_timeout_s:
            mode, cause = HOLD, COMMAND_TIMEOUT
            reason = (f"no valid policy command for {1e3 * (now_s - self.last_command_s):.0f} ms (limit "
                      f"{self.command_timeout_periods} control periods = {1e3 * self.command_timeout_s:.0f} ms); "
                      "holding the measured position")
        else:
            mode, cause, reason = RUN, COMMANDS, ""

        if mode == HOLD:
            if self.hold_target is None:
                if measured_q is None:  # cannot happen with a fresh state; never hold at an unknown position
                    mode, cause, reason = STOP, NO_STATE, "no measured position to hold; not commanding"
                else:
                    self.hold_target = np.array(measured_q, dtype=float)
                    self.hold_target.setflags(write=False)
        elif mode in (RUN, WAITING):
            self.hold_target = None
        changed = (mode, cause) != (self.mode, self.cause)
        if changed:
            self.mode_since_s = now_s
            if mode in (HOLD, STOP):
                self.counters[f"{mode}:{cause}"] += 1
        self.mode, self.cause, self.reason = mode, cause, reason
        self.cycles[mode] += 1
        return Decision(mode, cause, reason, self.hold_target if mode == HOLD else None, changed)

    def counts(self) -> dict[str, int]:
        """Entries into hold/stop by cause, rejected out-of-order states, e-stops and releases."""
        keys = [f"{HOLD}:{c}" for c in (COMMAND_TIMEOUT, ESTOP, RELEASED)] + \
               [f"{STOP}:{c}" for c in (NO_STATE, STATE_TIMEOUT)] + [OUT_OF_ORDER, "estops", "releases"]
        return {k: self.counters[k] for k in keys}
