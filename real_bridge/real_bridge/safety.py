"""The safety filter between a policy and a real arm: joint limits, step limits, input checks.

numpy only (no ROS): the bridge node calls :meth:`SafetyFilter.filter` once per control
cycle for every command it is about to send to the hardware, holds included; tests and
``bench/safety_filter.py`` drive it directly.

Rules (per joint, ``lo = lower + margin``, ``hi = upper - margin`` from the robot profile,
``s = velocity_limit * period * velocity_scale``):

* **Rejected, nothing sent**: a command that is not a flat array of exactly one number
  per profile joint (``wrong_length``), that cannot be read as numbers (``not_numeric``)
  or that holds NaN/inf (``non_finite``); a command when there is no valid reference
  (``no_reference``: nothing sent yet and the measured position is missing or
  non-finite); a command the optional ``workspace_check`` refuses (``workspace``).
  A rejection never produces an output and leaves the reference unchanged.
* **Position limits**: the output is clipped into ``[lo, hi]`` (``position_limit``).
* **Step limit**: the output is clipped into ``[ref - s, ref + s]`` (``step_limit``),
  where ``ref`` is the last command this filter put out (so "sent": call :meth:`filter`
  only for commands you then publish) or, when there is none (start, after
  :meth:`reset_reference`; the bridge resets it at activation only), the measured
  position. After a stop (no fresh joint states) the reference stays the last command
  sent: that is what the ros2_control position controller held meanwhile, so the first
  command after the stop moves at most one step from it (:mod:`real_bridge.core`). This bounds the commanded joint
  velocity to the profile's limits, whatever the policy asks for. The node passes the
  nominal control period, not the measured gap since the last cycle: a late cycle must
  not widen the step.
* **A reference outside the band** (the arm parked inside the margin or beyond a limit,
  a hold at such a position): the position bound of that joint is widened to include the
  reference, so the output for it is never further out than the reference ("never
  further out, never a jump"). The filter does not move such a joint by itself: a hold
  stays a hold, and the policy can bring it back into the band at the step rate.

Guarantee (property-tested in ``tests/real_bridge/test_safety_filter.py``): for any input,
an output ``out`` satisfies ``|out - ref| <= s`` and, per joint,
``min(lo, ref) <= out <= max(hi, ref)``; in particular every output is inside
``[lo, hi]`` once a reference is, which holds from the first output on whenever the arm
starts inside the band. NaN/inf/wrong-length inputs never produce an output.

Workspace (Cartesian) bounds need forward kinematics and are out of scope here; a caller
can pass ``workspace_check(q) -> reason or ""`` and commands it refuses are rejected.

Speed: called every cycle (2 ms at 500 Hz), so the hot path is a handful of
``np.minimum``/``np.maximum`` calls on 7 values (no ``np.clip``: its dispatch costs more
than the clipping), and reason texts are built only when something was changed.
"""
from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Callable, Sequence

import numpy as np

POSITION_LIMIT = "position_limit"
STEP_LIMIT = "step_limit"
WRONG_LENGTH = "wrong_length"
NOT_NUMERIC = "not_numeric"
NON_FINITE = "non_finite"
NO_REFERENCE = "no_reference"
WORKSPACE = "workspace"
CLIPS = (POSITION_LIMIT, STEP_LIMIT)
REJECTIONS = (WRONG_LENGTH, NOT_NUMERIC, NON_FINITE, NO_REFERENCE, WORKSPACE)
INTERVENTIONS = CLIPS + REJECTIONS

DEFAULT_MARGIN_RAD = 0.05

_minimum, _maximum, _isfinite, _count = np.minimum, np.maximum, np.isfinite, np.count_nonzero


class FilterResult:
    """``command``: what to send (profile joint order, rad, read-only), or None: send nothing.

    ``interventions``: what the filter did (kinds from :data:`INTERVENTIONS`), empty when
    the command passed unchanged; ``rejected``: no output. ``reason``: a sentence naming
    the cause and the joints (built on first access: a cycle that only logs once a second
    should not pay for formatting every cycle).
    """

    __slots__ = ("command", "interventions", "rejected", "_reason", "_explain")

    def __init__(self, command, interventions=(), rejected=False, reason="", explain=None):
        self.command, self.interventions, self.rejected = command, interventions, rejected
        self._reason, self._explain = reason, explain

    @property
    def reason(self) -> str:
        if self._explain is not None:
            self._reason, self._explain = self._explain(), None
        return self._reason

    def __repr__(self) -> str:
        return (f"FilterResult(command={self.command!r}, interventions={self.interventions!r}, "
                f"rejected={self.rejected!r}, reason={self.reason!r})")


_PASSED = ()


class SafetyFilter:
    """Joint position and step limits, and input checks, for one arm (see the module docstring).

    Not thread-safe: the node calls it under its cycle lock. :meth:`check` is pure and may
    be called from any thread.
    """

    def __init__(self, joint_names: Sequence[str], lower_rad, upper_rad, velocity_limit_rad_s, *,
                 margin_rad: float = DEFAULT_MARGIN_RAD, velocity_scale: float = 1.0,
                 workspace_check: Callable[[np.ndarray], str] | None = None):
        self.joint_names = tuple(joint_names)
        n = len(self.joint_names)
        lower = np.array(lower_rad, dtype=float).reshape(-1)
        upper = np.array(upper_rad, dtype=float).reshape(-1)
        vel = np.array(velocity_limit_rad_s, dtype=float).reshape(-1)
        if not (lower.shape == upper.shape == vel.shape == (n,)):
            raise ValueError(f"limits must have one value per joint ({n}), got {lower.size}, {upper.size}, "
                             f"{vel.size}")
        if not (np.isfinite(lower).all() and np.isfinite(upper).all() and np.isfinite(vel).all()):
            raise ValueError("limits must be finite")
        if not np.isfinite(margin_rad) or margin_rad < 0:
            raise ValueError(f"margin_rad must be >= 0, got {margin_rad}")
        narrow = [self.joint_names[i] for i in np.flatnonzero(upper - lower <= 2 * margin_rad)]
        if narrow:
            raise ValueError(f"margin_rad {margin_rad} leaves no room inside the position limits of joint(s) "
                             f"{narrow}")
        if np.any(vel <= 0):
            raise ValueError("velocity limits must be > 0")
        if not (0 < velocity_scale <= 1):
            raise ValueError(f"velocity_scale must be in (0, 1], got {velocity_scale}")
        self.num_joints = n
        self.margin_rad = float(margin_rad)
        self.velocity_scale = float(velocity_scale)
        self.lower_rad, self.upper_rad, self.velocity_limit_rad_s = lower, upper, vel
        self.low = lower + margin_rad    # the band commands are kept in
        self.high = upper - margin_rad
        for arr in (lower, upper, vel, self.low, self.high):
            arr.setflags(write=False)
        self.workspace_check = workspace_check
        self._reference: np.ndarray | None = None
        self._step_period: float | None = None
        self._step: np.ndarray | None = None
        self.counters: Counter = Counter()   # intervention kind -> number of filter calls it happened in
        self.calls = 0
        self.outputs = 0
        self.passed = 0                      # outputs equal to the input command
        self._last_reason, self._last_clip = "", None

    @classmethod
    def from_profile(cls, profile, **kwargs) -> "SafetyFilter":
        """A filter with a :class:`~sim_bridge.profile.RobotProfile`'s joints and limits."""
        return cls(profile.joint_names, profile.position_lower_rad, profile.position_upper_rad,
                   profile.velocity_limit_rad_s, **kwargs)

    # --- reference ------------------------------------------------------------------------
    @property
    def reference(self) -> np.ndarray | None:
        """The last output (what was sent), or None: the next call uses the measured position."""
        return self._reference

    def reset_reference(self, position_rad=None) -> None:
        """Forget the last output (or set it): the next step limit is taken from this position,
        or from the measured one when None. The bridge calls it at activation (not after a
        stop: the controller still holds the last output then)."""
        if position_rad is None:
            self._reference = None
            return
        ref, kind, reason = self.check(position_rad)
        if ref is None:
            raise ValueError(f"reference rejected: {reason}")
        self._reference = ref

    def step_limit(self, period_s: float) -> np.ndarray:
        """Largest change per cycle, per joint (rad)."""
        if period_s != self._step_period:
            if not (np.isfinite(period_s) and period_s > 0):
                raise ValueError(f"period_s must be > 0, got {period_s}")
            step = self.velocity_limit_rad_s * (float(period_s) * self.velocity_scale)
            step.setflags(write=False)
            self._step, self._step_period = step, period_s
        return self._step

    # --- checks -----------------------------------------------------------------------------
    def check(self, values) -> tuple[np.ndarray | None, str, str]:
        """Validate without clipping: (array, "", "") or (None, kind, reason). Pure."""
        try:
            arr = np.array(values, dtype=float)
        except (TypeError, ValueError, OverflowError) as exc:
            return None, NOT_NUMERIC, f"not a list of numbers ({type(exc).__name__}: {exc})"
        if arr.shape != (self.num_joints,):
            got = arr.size if arr.ndim == 1 else f"shape {arr.shape}"
            return None, WRONG_LENGTH, (f"expected {self.num_joints} values in joint order "
                                        f"{list(self.joint_names)}, got {got}")
        if _count(_isfinite(arr)) != self.num_joints:
            bad = [self.joint_names[i] for i in np.flatnonzero(~_isfinite(arr))]
            return None, NON_FINITE, f"non-finite value for joint(s) {bad}"
        return arr, "", ""

    # --- the filter -------------------------------------------------------------------------
    def filter(self, command, measured_q, period_s: float) -> FilterResult:
        """The command to send for ``command`` (profile order, rad), see the module docstring.

        ``measured_q`` is only read when there is no reference yet. On an output the
        reference becomes that output.
        """
        self.calls += 1
        cmd, kind, reason = self.check(command)
        if cmd is None:
            return self._reject(kind, f"command rejected: {reason}")
        ref = self._reference
        if ref is None:
            ref, kind, reason = self.check(measured_q)
            if ref is None:
                return self._reject(NO_REFERENCE, f"command rejected: no reference to step from (nothing sent "
                                                  f"yet and the measured position is unusable: {reason})")
        step = self._step if period_s == self._step_period else self.step_limit(period_s)
        low = _minimum(self.low, ref)    # the band, widened to include the reference
        high = _maximum(self.high, ref)
        inside = _minimum(_maximum(cmd, low), high)
        out = _minimum(_maximum(inside, ref - step), ref + step)
        if self.workspace_check is not None:
            why = self.workspace_check(out)
            if why:
                return self._reject(WORKSPACE, f"command rejected: outside the workspace ({why})")
        out.setflags(write=False)
        self._reference = out
        self.outputs += 1
        if not _count(out != cmd):
            self.passed += 1
            return FilterResult(out, _PASSED)
        kinds = ()
        if _count(inside != cmd):
            kinds = (POSITION_LIMIT,)
            self.counters[POSITION_LIMIT] += 1
        if _count(out != inside):
            kinds += (STEP_LIMIT,)
            self.counters[STEP_LIMIT] += 1
        self._last_clip = explain = partial(self._explain_clip, cmd, inside, out, ref, step)
        return FilterResult(out, kinds, False, "", explain)

    def _explain_clip(self, cmd, inside, out, ref, step) -> str:
        parts = []
        names = self.joint_names
        pos = np.flatnonzero(inside != cmd)
        if pos.size:
            parts.append(f"clipped to the position limits (margin {self.margin_rad:g} rad) for joint(s) "
                         f"{[names[i] for i in pos]}")
        stp = np.flatnonzero(out != inside)
        if stp.size:
            parts.append(f"step-limited to {self.velocity_scale:g} x the velocity limits for joint(s) "
                         f"{[names[i] for i in stp]} (asked {np.round(inside[stp] - ref[stp], 4).tolist()} rad, "
                         f"allowed +-{np.round(step[stp], 4).tolist()} rad)")
        return "command " + "; ".join(parts)

    def _reject(self, kind: str, reason: str) -> FilterResult:
        self.counters[kind] += 1
        self._last_clip, self._last_reason = None, reason
        return FilterResult(None, (kind,), True, reason)

    @property
    def last_intervention(self) -> str:
        """The reason of the last call that changed or rejected its command ("" if none did)."""
        if self._last_clip is not None:
            self._last_reason, self._last_clip = self._last_clip(), None
        return self._last_reason

    def counts(self) -> dict[str, int]:
        """Interventions by kind (every kind, zeros included)."""
        return {k: self.counters[k] for k in INTERVENTIONS}
