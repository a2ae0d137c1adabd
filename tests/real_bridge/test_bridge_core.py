"""The real bridge's core (pure, no ROS): every guarantee the README and docs/architecture.md
state about the real bridge, driven with made-up times.

README "What the bridge guarantees" (whatever the policy sends):
  G1 every hardware command passes the safety filter: position limits with a 0.05 rad
     margin, a per-cycle step limit from the velocity limits, NaN/inf/wrong-length commands
     rejected                                          -> test_g1_*
  G2 no command for 2 periods -> hold the measured position        -> test_g2_*
  G3 no fresh joint state for 3 periods -> send nothing            -> test_g3_*
  G4 ~/estop latches a hold                                        -> test_g4_*
  G5 reset only samples a goal (no physics resampling, no arm motion) -> test_g5_*
  G6 every intervention is counted on /diagnostics                 -> test_g6_*
docs/architecture.md (real_bridge) and the node's interface:
  A1 the step reference is the last command sent (the measured position before the first,
     and after an activation; after a stop it stays the last command sent);
     a hold far from the last command ramps there at the velocity limit; a late cycle does
     not widen the step; a joint parked outside the band never goes further out
  A2 hold = the measured position frozen when the hold starts; stop = send nothing
  A3 the hold starts at the command timeout, not at the next tick (hold_due)
  A4 timeouts use arrival times; stamps only order readings (older -> rejected; a clock
     that jumps back stops the bridge until re-activation)
  A5 bursts: a cycle uses only the latest command, the others are counted as superseded;
     every command received is in exactly one counter
  A6 joint_states relayed once per control cycle: the latest state, profile order,
     hardware stamp; none during a stop
  A7 e-stop release: hold until a command newer than the release
  A8 hardware states mapped by name (any order, extra joints ignored); missing joints =
     not ready; another device's states are ignored; velocity estimated when the hardware
     has none; commands go out in controller_joints order
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from real_bridge.core import (ERROR, FOREIGN, LENGTH, MISSING_JOINTS, NON_FINITE_STATE, OK, OUT_OF_ORDER, WARN,
                              BridgeCore)
from real_bridge.safety import NON_FINITE, NOT_NUMERIC, POSITION_LIMIT, STEP_LIMIT, WRONG_LENGTH
from real_bridge.watchdog import COMMAND_TIMEOUT, ESTOP, HOLD, NO_STATE, RELEASED, RUN, STATE_TIMEOUT, STOP, WAITING
from sim_bridge.config import ConfigError
from sim_bridge.profile import load_profile

PROFILE = load_profile("panda_like")
JOINTS = list(PROFILE.joint_names)
N = len(JOINTS)
PERIOD = PROFILE.control_period_s                  # 50 Hz
PERIOD_NS = int(round(PERIOD * 1e9))
MARGIN = 0.05
LO, HI = PROFILE.position_lower_rad + MARGIN, PROFILE.position_upper_rad - MARGIN
STEP = PROFILE.velocity_limit_rad_s * PERIOD
EPS = 1e-12
Q = PROFILE.default_pose_rad.copy()                # where the arm is (inside the band)
DELTA = np.array([0.02, -0.01, 0.015, 0.0, 0.01, -0.02, 0.03])  # within one step of Q
# The broadcaster's own order: reordered, with joints the profile does not know.
HW_NAMES = ["finger_joint1", "joint7", "joint3", "joint1", "finger_joint2", "joint6", "joint2", "joint5", "joint4"]
FAR = np.array([10.0, -1e9, 1e308, -5.0, 4.0, 100.0, -3.5])   # beyond every limit


class Rig:
    """A core fed like the bridge node feeds it: hardware states in the broadcaster's order,
    policy commands, cycles, all on a made-up monotonic clock (s) and hardware stamps (ns)."""

    def __init__(self, core: BridgeCore | None = None, *, q=Q, t: float = 100.0, **kwargs):
        self.core = core or BridgeCore(PROFILE, seed=7, **kwargs)
        self.core.activate()
        self.q = np.array(q, dtype=float)
        self.t = t
        self.stamp_ns = 5_000_000_000_000

    def state(self, q=None, *, names=HW_NAMES, velocity=True, stamp_ns: int | None = None, arrival=None):
        """A hardware joint state (profile joints from ``q``, extra joints at 0.04 rad)."""
        q = self.q if q is None else np.asarray(q, dtype=float)
        names = list(names)
        position = [float(q[JOINTS.index(n)]) if n in JOINTS else 0.04 for n in names]
        vel = [0.0] * len(names) if velocity else []
        effort = [float(JOINTS.index(n)) if n in JOINTS else -1.0 for n in names]
        if stamp_ns is None:
            self.stamp_ns += PERIOD_NS
            stamp_ns = self.stamp_ns
        return self.core.on_joint_state(names, position, vel, effort, stamp_ns=stamp_ns,
                                        arrival_s=self.t if arrival is None else arrival)

    def command(self, values):
        return self.core.on_command(values, self.t)

    def cycle(self, relay: bool = True):
        return self.core.cycle(self.t, relay=relay)

    def advance(self, periods: float = 1.0) -> None:
        self.t += periods * PERIOD

    def period(self, command=None, *, state: bool = True, relay: bool = True):
        """One control period: a state (unless ``state`` is False), a command (if given), a cycle,
        then the clock moves on by one period. Returns the cycle's output."""
        if state:
            assert self.state().accepted
        if command is not None:
            self.command(command)
        out = self.cycle(relay)
        self.advance()
        return out

    def sent(self, commands, **kwargs) -> list[np.ndarray | None]:
        """Run one period per command (None: no command that period); what each cycle sent."""
        return [self.period(c, **kwargs).command for c in commands]


def values(core: BridgeCore, **kwargs) -> dict:
    return core.health("active", active=True, **kwargs).values


def expected_filter(command, reference):
    """What the safety filter must put out for ``command`` from ``reference`` (the docs' rule)."""
    low, high = np.minimum(LO, reference), np.maximum(HI, reference)
    return np.clip(np.clip(command, low, high), reference - STEP, reference + STEP)


def assert_counters_add_up(core: BridgeCore) -> None:
    """Every command received is in exactly one counter (the core's docstring)."""
    v = values(core)
    total = v["commands_used"] + v["commands_superseded"] + v["commands_rejected"] + v["commands_discarded"] + \
        v["commands_pending"]
    assert v["commands_received"] == total, v


# --- G1: every hardware command passes the safety filter ----------------------------------------

def test_g1_defaults_are_the_documented_ones():
    core = BridgeCore(PROFILE)
    assert core.filter.margin_rad == MARGIN and core.filter.velocity_scale == 1.0
    np.testing.assert_allclose(core.filter.step_limit(core.period_s), STEP)
    assert core.watchdog.command_timeout_periods == 2 and core.watchdog.state_timeout_periods == 3
    assert core.period_s == PERIOD


def test_g1_commands_beyond_the_limits_are_clipped_to_the_margin_band_at_the_velocity_limit():
    rig = Rig()
    sent = rig.sent([FAR] * 200)
    assert all(c is not None for c in sent)
    previous = Q
    for c in sent:
        assert np.all(c >= LO - EPS) and np.all(c <= HI + EPS), "outside the margin band"
        assert np.all(np.abs(c - previous) <= STEP + EPS), "faster than the velocity limit"
        previous = c
    np.testing.assert_allclose(sent[0], np.clip(FAR, Q - STEP, Q + STEP), rtol=0, atol=EPS)
    # it gets to the band's edge (the margin is the bound, no more, no less) and stays there
    np.testing.assert_allclose(sent[-1], np.clip(FAR, LO, HI), rtol=0, atol=EPS)
    assert rig.core.filter.counters[POSITION_LIMIT] == 200 and rig.core.filter.counters[STEP_LIMIT] > 20


@pytest.mark.parametrize("bad, kind", [
    (np.r_[np.nan, Q[1:]], NON_FINITE), (np.r_[Q[:3], np.inf, Q[4:]], NON_FINITE), (np.r_[Q[:6], -np.inf], NON_FINITE),
    (Q[:6], WRONG_LENGTH), (np.r_[Q, 0.0], WRONG_LENGTH), ([], WRONG_LENGTH), ([Q, Q], WRONG_LENGTH),
    (["a"] * N, NOT_NUMERIC), ([None] * N, NON_FINITE),
])
def test_g1_nan_inf_wrong_length_commands_are_rejected_and_never_sent(bad, kind):
    rig = Rig()
    good = Q + DELTA
    assert rig.period(good).command is not None
    result = rig.command(bad)
    assert not result.accepted and result.kind == kind
    assert "joint_commands rejected" in result.reason and "the last valid command stays in force" in result.reason
    out = rig.period()
    np.testing.assert_array_equal(out.command, good, err_msg="the previous command stays in force")
    assert rig.core.counters[f"commands_rejected:{kind}"] == 1 and rig.core.counters["commands"] == 1


def test_g1_the_rejection_message_says_what_really_happens():
    """Issue 12: the message said "kept the previous command" although the bridge holds 40 ms
    later. It now says both, with the timeout, and the cycles do exactly that."""
    rig = Rig()
    assert "no valid command yet: nothing is sent" in rig.command([np.nan] * N).reason
    rig.period(Q + DELTA)
    rig.state()
    reason = rig.command([np.nan] * N).reason
    assert reason == ("joint_commands rejected: non-finite value for joint(s) " + str(JOINTS) + "; the last valid "
                      "command stays in force until the command timeout (2 periods = 40 ms after it), then the "
                      "bridge holds the measured position")
    outs = [rig.period(np.r_[np.nan, Q[1:]]) for _ in range(4)]
    modes = [o.decision.mode for o in outs]
    assert modes[0] == RUN and modes[-1] == HOLD and outs[-1].decision.cause == COMMAND_TIMEOUT, modes
    for o in outs:   # in force until the timeout, then the measured position
        np.testing.assert_array_equal(o.command, Q + DELTA if o.decision.mode == RUN else Q)
    assert "the bridge keeps holding (command_timeout)" in rig.command([np.nan] * N).reason
    rig.advance(5)
    rig.cycle()
    assert "the bridge is stopped" in rig.command([np.nan] * N).reason


def test_g1_rejected_commands_are_not_commands_the_watchdog_holds_through_them():
    rig = Rig()
    rig.period(Q + DELTA)
    modes = [rig.period(np.r_[np.nan, Q[1:]]).decision.mode for _ in range(5)]
    assert modes[0] == RUN and modes[-1] == HOLD, modes
    assert rig.core.watchdog.cause == COMMAND_TIMEOUT


def test_g1_any_input_sequence_produces_only_filtered_commands():
    """Random commands (valid, far out, NaN, wrong length, not numbers), random states (good,
    NaN, missing joints, out of order, pauses), e-stops and irregular cycle times: every
    command sent is within the band and one step of the previous one (across stops too), a run
    cycle sends exactly the filtered latest valid command, and the command counters add up."""
    rng = np.random.default_rng(0)
    rig = Rig()
    core = rig.core
    measured, reference, latest, checked = None, None, None, 0
    for _ in range(3000):
        rig.advance(rng.uniform(0.2, 2.5))
        r = rng.random()
        if r < 0.75:  # a good state: the arm wanders inside the band
            rig.q = np.clip(rig.q + rng.normal(0, 0.02, N), LO, HI)
            if rig.state().accepted:
                measured = rig.q.copy()
        elif r < 0.8:
            bad = rig.q.copy()
            bad[rng.integers(N)] = np.nan
            assert not rig.state(bad).accepted
        elif r < 0.85:
            assert not rig.state(names=HW_NAMES[:-1]).accepted
        elif r < 0.88:
            assert not rig.state(stamp_ns=rig.stamp_ns - 10**9).accepted
        for _ in range(rng.integers(0, 3) if rng.random() < 0.85 else 0):
            kind = rng.random()
            if kind < 0.6:
                c = rng.uniform(LO - 1.0, HI + 1.0)
            elif kind < 0.7:
                c = rng.uniform(-1e6, 1e6, N)
            elif kind < 0.8:
                c = rng.uniform(LO, HI)
                c[rng.integers(N)] = rng.choice([np.nan, np.inf, -np.inf])
            elif kind < 0.9:
                c = rng.uniform(-1.0, 1.0, rng.choice([0, 1, N - 1, N + 1]))
            else:
                c = ["x"] * N
            if rig.command(c).accepted:
                latest = np.asarray(c, dtype=float)
        if rng.random() < 0.01:
            core.estop("test")
        if rng.random() < 0.01:
            core.release(rig.t)
        out = rig.cycle(relay=bool(rng.random() < 0.8))
        mode = out.decision.mode
        if mode in (STOP, WAITING):
            assert out.command is None and out.hardware_command is None
            continue
        c = out.command
        assert c is not None and c.shape == (N,) and np.isfinite(c).all()
        ref = measured if reference is None else reference
        assert np.all(np.abs(c - ref) <= STEP + EPS), "step limit broken"
        assert np.all(c >= np.minimum(LO, ref) - EPS) and np.all(c <= np.maximum(HI, ref) + EPS), "band broken"
        assert np.all(c >= LO - EPS) and np.all(c <= HI + EPS)
        if mode == RUN:
            np.testing.assert_allclose(c, expected_filter(latest, ref), rtol=0, atol=EPS)
            checked += 1
        reference = c
        assert_counters_add_up(core)
    assert checked > 300 and core.counters["hardware_commands"] > 500


# --- G2: no command for 2 periods -> hold the measured position ---------------------------------

def test_g2_hold_starts_two_periods_after_the_last_command_at_the_measured_position():
    rig = Rig()
    t_last = rig.t
    rig.period(Q + DELTA)
    # a cycle just before 2 periods after the last command still forwards it
    rig.t = t_last + 2 * PERIOD - 1e-6
    rig.state()
    out = rig.cycle()
    assert out.decision.mode == RUN
    np.testing.assert_array_equal(out.command, Q + DELTA)
    rig.t = t_last + 2 * PERIOD + 1e-9
    rig.state()
    out = rig.cycle()
    assert (out.decision.mode, out.decision.cause, out.decision.changed) == (HOLD, COMMAND_TIMEOUT, True)
    np.testing.assert_array_equal(out.command, Q, err_msg="holds the measured position")
    assert rig.core.last_hold_latency_s == pytest.approx(2 * PERIOD)
    assert rig.core.watchdog.counts()["hold:command_timeout"] == 1


def test_g2_a_new_command_ends_the_hold():
    rig = Rig()
    rig.period(Q + DELTA)
    assert [c for c in rig.sent([None] * 4)][-1] is not None and rig.core.watchdog.mode == HOLD
    out = rig.period(Q - DELTA)
    assert out.decision.mode == RUN
    np.testing.assert_allclose(out.command, Q - DELTA)


# --- A2: hold frozen, stop sends nothing ---------------------------------------------------------

def test_a2_the_hold_target_is_frozen_when_the_hold_starts():
    """A gravity-loaded arm sags under a hold: re-targeting the live measurement every cycle
    would let it creep down; the hold keeps commanding where it was when the hold started."""
    rig = Rig()
    rig.period(Q)
    outputs, measured = [], []
    for k in range(1, 21):
        rig.q = Q - 0.002 * k   # sagging
        measured.append(rig.q.copy())
        outputs.append(rig.period())
    start = next(k for k, out in enumerate(outputs) if out.decision.mode == HOLD)
    assert start <= 2 and all(out.decision.mode == HOLD for out in outputs[start:])
    frozen = measured[start]
    for out in outputs[start:]:
        np.testing.assert_array_equal(out.command, frozen)
    assert np.all(measured[-1] < frozen - 0.03), "the arm sagged, the hold did not follow"


# --- A3: the hold deadline ----------------------------------------------------------------------

def test_a3_hold_due_at_the_command_timeout_and_an_extra_cycle_sends_the_hold_at_once():
    rig = Rig()
    t_last = rig.t
    rig.period(Q + DELTA)
    assert not rig.core.hold_due(t_last + 2 * PERIOD - 1e-6)
    assert rig.core.hold_due(t_last + 2 * PERIOD + 1e-9)
    rig.t = t_last + 2 * PERIOD + 1e-9
    out = rig.cycle(relay=False)  # what the node's deadline timer runs
    assert out.decision.mode == HOLD and out.relay is None
    np.testing.assert_array_equal(out.command, Q)
    assert rig.core.last_hold_latency_s == pytest.approx(2 * PERIOD)
    assert not rig.core.hold_due(rig.t + 1.0), "only while running"


# --- G3: no fresh joint state for 3 periods -> send nothing -------------------------------------

def test_g3_no_state_yet_sends_nothing_even_with_commands():
    rig = Rig()
    rig.command(Q + DELTA)
    out = rig.cycle()
    assert (out.decision.mode, out.decision.cause) == (STOP, NO_STATE)
    assert out.command is None and out.relay is None


def test_g3_stale_states_stop_the_commands_until_fresh_ones_arrive():
    rig = Rig()
    t_state = rig.t
    rig.period(Q + DELTA)
    sent = []
    for dt in (PERIOD, 2 * PERIOD, 3 * PERIOD - 1e-9, 3 * PERIOD + 1e-9, 4 * PERIOD, 10 * PERIOD):
        rig.t = t_state + dt  # commands keep coming, states do not
        rig.command(Q + DELTA)
        out = rig.cycle()
        sent.append(out.command)
        assert (out.relay is None) == (out.decision.mode == STOP)
    # fresh up to 3 periods after the last state (<=), stale beyond
    assert [c is not None for c in sent] == [True, True, True, False, False, False]
    assert (rig.core.watchdog.mode, rig.core.watchdog.cause) == (STOP, STATE_TIMEOUT)
    rig.advance()
    assert rig.period(Q + DELTA).command is not None, "commands resume with fresh states"


@pytest.mark.parametrize("bad", ["nan", "missing", "length", "out_of_order"])
def test_g3_rejected_states_are_not_fresh(bad):
    rig = Rig()
    rig.period(Q + DELTA)
    for _ in range(5):
        rig.command(Q + DELTA)
        if bad == "nan":
            q = Q.copy()
            q[2] = np.nan
            result = rig.state(q)
        elif bad == "missing":
            result = rig.state(names=[n for n in HW_NAMES if n != "joint7"])
        elif bad == "length":
            result = rig.core.on_joint_state(HW_NAMES, [0.0] * 3, (), (), stamp_ns=rig.stamp_ns + 1, arrival_s=rig.t)
        else:
            result = rig.state(stamp_ns=rig.stamp_ns - 10**9)
        assert not result.accepted
        out = rig.cycle()
        rig.advance()
    assert out.decision.mode == STOP and out.command is None
    health = rig.core.health("active", active=True)
    assert health.level == ERROR and "hardware joint_states rejected" in health.message


def stop_with_the_arm_behind(rig):
    """Run towards FAR at the step limit while the arm lags 2 steps behind each command (as a
    position-controlled arm does), then lose the hardware states until the bridge STOPs.
    Returns the last command sent."""
    sent = None
    for c in rig.sent([FAR] * 10):
        sent = c
        rig.q = Q + (c - Q) * 0.6            # the measured position lags the command
    for _ in range(5):                       # no states: RUN until the state timeout, then STOP
        rig.command(FAR)
        out = rig.cycle()
        sent = sent if out.command is None else out.command
        rig.advance()
    assert rig.core.watchdog.mode == STOP
    return sent


def test_g3_after_a_stop_the_step_limit_continues_from_the_last_command_sent():
    """Issue 12, defect 6: STOP -> RUN used to step from the measured position (1.2-6.5 steps
    from what the controller held). Now every command, the first after the stop included, is
    within one step of the previous one sent."""
    rig = Rig()
    last = stop_with_the_arm_behind(rig)
    rig.q = last - 2 * STEP * np.sign(last - Q)   # where the arm got to meanwhile: 2 steps behind
    out = rig.period(FAR)
    assert out.decision.mode == RUN and out.decision.changed
    np.testing.assert_allclose(out.command, expected_filter(FAR, last), rtol=0, atol=EPS)
    assert np.all(np.abs(out.command - last) <= STEP + EPS), "more than one step from the held command"
    assert not out.resume, "within RESUME_WARN_STEPS: no warning"
    assert float(values(rig.core)["last_resume_offset_rad"]) == pytest.approx(np.max(np.abs(rig.q - last)))
    previous = out.command
    for c in rig.sent([FAR] * 5):
        assert np.all(np.abs(c - previous) <= STEP + EPS)
        previous = c


def test_g3_after_a_stop_a_hold_ramps_from_the_last_command_sent():
    rig = Rig()
    last = stop_with_the_arm_behind(rig)
    rig.advance(3)
    out = rig.period()                       # states again, the policy's command timed out: hold
    assert (out.decision.mode, out.decision.cause) == (HOLD, COMMAND_TIMEOUT)
    np.testing.assert_allclose(out.command, expected_filter(rig.q, last), rtol=0, atol=EPS)


def test_g3_an_arm_moved_while_stopped_is_ramped_from_the_held_command_with_a_warning():
    """Moved by hand far from the held command while the bridge was stopped: the bridge ramps
    from the held command at the step limit (never a jump to the measurement) and says so."""
    rig = Rig()
    last = stop_with_the_arm_behind(rig)
    rig.q = last - 10 * STEP * np.sign(np.arange(N) - 3)   # 10 steps away, joint4 (index 3) not moved
    rig.q[3] = last[3]
    out = rig.period(Q)
    assert out.decision.mode == RUN
    np.testing.assert_allclose(out.command, expected_filter(Q, last), rtol=0, atol=EPS)
    assert "resuming after a stop" in out.resume and "'joint4'" not in out.resume and "'joint1'" in out.resume
    assert "ramping from the command the controller holds" in out.resume
    v = values(rig.core)
    assert v["resumes_far_from_command"] == 1 and float(v["last_resume_offset_rad"]) == pytest.approx(
        np.max(10 * STEP * (np.arange(N) != 3)))
    assert not rig.period(Q).resume, "said once, at the resume"


def test_activation_starts_the_step_limit_from_the_measured_position():
    rig = Rig()
    rig.sent([FAR] * 5)
    rig.core.activate()
    out = rig.period(FAR)
    np.testing.assert_allclose(out.command, np.clip(FAR, Q - STEP, Q + STEP), rtol=0, atol=EPS)


# --- A4: arrival times for timeouts, stamps only for ordering -----------------------------------

def test_a4_freshness_follows_arrival_times_not_stamps():
    rig = Rig()
    rig.period(Q + DELTA)
    # stamps from a hardware clock far ahead: still ordered, fresh by arrival
    for k in range(10):
        assert rig.state(stamp_ns=rig.stamp_ns + 3600 * 10**9 + k).accepted
        rig.command(Q + DELTA)
        assert rig.cycle().decision.mode == RUN
        rig.advance()
    # an equal stamp is accepted (a broadcaster may publish one reading twice)
    assert rig.state(stamp_ns=rig.core.state.stamp_ns).accepted
    # recent stamps but nothing arrives: stale
    rig.advance(5)
    assert rig.cycle().decision.mode == STOP


def test_a4_an_older_stamp_is_rejected_and_a_clock_jump_back_stops_until_reactivation():
    rig = Rig()
    rig.period(Q + DELTA)
    result = rig.state(Q + 0.3, stamp_ns=rig.stamp_ns - 10**9)
    assert not result.accepted and result.kind == OUT_OF_ORDER and "out-of-order stamp" in result.reason
    np.testing.assert_array_equal(rig.core.state.position_rad, Q, err_msg="the last good state is kept")
    past = rig.stamp_ns - 5 * 10**9
    for k in range(6):  # the hardware clock jumped back for good
        rig.command(Q + DELTA)
        assert not rig.state(stamp_ns=past + k).accepted
        out = rig.cycle()
        rig.advance()
    assert out.decision.mode == STOP
    assert "out-of-order stamp" in rig.core.health("active", active=True).message
    rig.core.activate()
    assert rig.state(stamp_ns=past + 100).accepted
    assert rig.period(Q + DELTA).decision.mode == RUN


# --- A1: the step reference and the band ---------------------------------------------------------

def test_a1_a_hold_far_from_the_last_command_ramps_back_at_the_velocity_limit():
    rig = Rig()
    ramp = rig.sent([FAR] * 10)
    far_out = ramp[-1]
    hold = rig.sent([None] * 20)
    assert rig.core.watchdog.mode == HOLD
    previous = far_out
    for c in hold:
        assert np.all(np.abs(c - previous) <= STEP + EPS)
        previous = c
    np.testing.assert_array_equal(hold[-1], Q, err_msg="arrives at the measured position")


def test_a1_a_late_cycle_does_not_widen_the_step():
    rig = Rig()
    rig.period(FAR)
    previous = rig.core.filter.reference
    for gap in (1.4, 1.9, 1.0, 1.5):  # late cycles, inside both timeouts
        rig.advance(gap - 1.0)
        out = rig.period(FAR)
        assert np.all(np.abs(out.command - previous) <= STEP + EPS)
        previous = out.command


def test_a1_a_joint_parked_outside_the_band_never_goes_further_out():
    parked = Q.copy()
    parked[0] = PROFILE.position_upper_rad[0] - 0.01   # inside the margin
    rig = Rig(q=parked)
    out = rig.period(np.r_[10.0, Q[1:]])
    assert out.command[0] == parked[0], "never further out, and not moved by the filter itself"
    inward = rig.sent([np.r_[0.0, Q[1:]]] * 3)
    np.testing.assert_allclose([c[0] for c in inward], parked[0] - STEP[0] * np.arange(1, 4), rtol=0, atol=EPS)
    later = rig.sent([np.r_[10.0, Q[1:]]] * 5 + [None] * 5)   # outward again, then a hold
    assert all(c[0] <= HI[0] + EPS for c in later), "back inside the band, it stays inside"
    # a hold at the parked position stays a hold there
    rig = Rig(q=parked)
    held = rig.sent([parked] + [None] * 5)
    assert rig.core.watchdog.mode == HOLD
    for c in held:
        np.testing.assert_array_equal(c, parked)


# --- G4 / A7: the e-stop --------------------------------------------------------------------------

def test_g4_estop_latches_a_hold_that_ignores_the_policy_until_released():
    rig = Rig()
    rig.period(Q + DELTA)
    assert rig.core.estop("test")
    assert not rig.core.estop("again"), "already latched"
    sent = rig.sent([Q - DELTA] * 50)  # the policy keeps commanding
    assert rig.core.watchdog.cause == ESTOP
    for c in sent:
        np.testing.assert_array_equal(c, Q)
    rig.core.activate()
    assert rig.period(Q - DELTA).decision.cause == ESTOP, "the latch survives a re-activation"


def test_g4_an_estop_holds_at_once_on_an_extra_cycle():
    rig = Rig()
    rig.period(Q + DELTA)
    rig.core.estop("~/estop service")
    out = rig.cycle(relay=False)  # the node runs one right away
    assert (out.decision.mode, out.decision.cause) == (HOLD, ESTOP)
    np.testing.assert_array_equal(out.command, Q)


def test_a7_after_a_release_the_bridge_holds_until_a_newer_command():
    rig = Rig()
    rig.period(Q + DELTA)
    rig.core.estop("test")
    rig.period(Q + DELTA)
    rig.command(Q - DELTA)           # sent during the e-stop
    rig.advance(0.5)
    assert rig.core.release(rig.t)
    assert not rig.core.release(rig.t), "nothing to release"
    for _ in range(3):
        out = rig.period()
        assert (out.decision.mode, out.decision.cause) == (HOLD, RELEASED)
        np.testing.assert_array_equal(out.command, Q)
    out = rig.period(Q + DELTA)
    assert out.decision.mode == RUN
    np.testing.assert_array_equal(out.command, Q + DELTA)


# --- G5: reset only samples a goal --------------------------------------------------------------

def test_g5_reset_samples_a_seeded_goal_in_the_reach_workspace():
    core = BridgeCore(PROFILE, seed=7)
    rng = np.random.default_rng(7)
    np.testing.assert_allclose(core.goal, rng.uniform(PROFILE.reach_low_m, PROFILE.reach_high_m))
    goals = []
    for _ in range(20):
        message = core.reset()
        assert "cannot resample physics and does not move the arm" in message
        goals.append(core.goal.copy())
        np.testing.assert_allclose(core.goal, rng.uniform(PROFILE.reach_low_m, PROFILE.reach_high_m))
    goals = np.array(goals)
    assert np.all(goals >= PROFILE.reach_low_m) and np.all(goals <= PROFILE.reach_high_m)
    assert len(np.unique(goals, axis=0)) == 20 and core.counters["resets"] == 20
    assert not np.allclose(BridgeCore(PROFILE, seed=-1).goal, BridgeCore(PROFILE, seed=-1).goal)


def test_g5_reset_does_not_move_the_arm_or_touch_the_control():
    """Two bridges fed the same inputs, one reset every few cycles: the same commands go to
    the hardware, in the same modes; only the goal and the reset count differ."""
    plain, resetting = Rig(), Rig()
    script = [Q + DELTA] * 5 + [None] * 5 + [FAR] * 5 + [None] * 5
    for k, c in enumerate(script):
        a = plain.period(c)
        if k % 3 == 0:
            core = resetting.core
            reference, mode, state = core.filter.reference, core.watchdog.mode, core.state
            core.reset()
            assert core.filter.reference is reference and core.watchdog.mode == mode and core.state is state
        b = resetting.period(c)
        assert (a.decision.mode, a.decision.cause) == (b.decision.mode, b.decision.cause)
        assert (a.command is None) == (b.command is None)
        if a.command is not None:
            np.testing.assert_array_equal(a.command, b.command)
    assert plain.core.counters["hardware_commands"] > 10
    diff = {k for k in set(plain.core.counters) | set(resetting.core.counters)
            if plain.core.counters[k] != resetting.core.counters[k]}
    assert diff == {"resets"}


def test_g5_goals_are_taken_or_rejected_with_the_reason():
    core = BridgeCore(PROFILE, seed=1)
    kept = core.goal.copy()
    result = core.set_goal([0.5, np.nan, 0.3])
    assert not result.accepted and "expected 3 finite numbers" in result.reason and "kept" in result.reason
    np.testing.assert_array_equal(core.goal, kept)
    assert core.set_goal([0.4, 0.0, 0.3]).accepted
    np.testing.assert_array_equal(core.goal, [0.4, 0.0, 0.3])
    assert core.counters["goals_rejected"] == 1


# --- G6: every intervention is counted on /diagnostics -----------------------------------------

def test_g6_every_intervention_is_counted_in_the_diagnostics():
    rig = Rig()
    core = rig.core
    before = values(core)
    rig.cycle()                                          # stop: no state yet
    rig.advance()
    rig.period(FAR)                                      # position and step limits
    rig.command([np.nan] * N)
    rig.command(Q[:3])
    rig.command(["x"] * N)
    rig.command(Q + DELTA)
    rig.command(Q + DELTA)                               # the first of the two is dropped
    rig.state(names=HW_NAMES[:-1])                       # missing joint4
    assert core.missing_joints == ["joint4"]
    assert "clipped to the position limits (margin 0.05 rad)" in core.filter.last_intervention
    rig.core.on_joint_state(HW_NAMES, [0.0], (), (), stamp_ns=rig.stamp_ns + 1, arrival_s=rig.t)
    rig.state(np.full(N, np.nan))
    rig.state(stamp_ns=rig.stamp_ns - 10**9)
    rig.sent([None] * 4)                                 # command timeout -> hold
    core.estop("test")
    rig.period()
    core.release(rig.t)
    rig.period()
    rig.advance(5)
    rig.cycle()                                          # state timeout -> stop
    after = values(core)
    for key in ("filter_position_limit", "filter_step_limit", "rejected_command_non_finite",
                "rejected_command_wrong_length", "rejected_command_not_numeric", "commands_rejected",
                "commands_superseded", "commands_received", "commands_used", "rejected_state_missing_joints", "rejected_state_length_mismatch",
                "rejected_state_non_finite", "rejected_state_out_of_order", "hardware_states_rejected",
                "hold_command_timeout", "hold_estop", "hold_released", "stop_no_state", "stop_state_timeout",
                "out_of_order", "estops", "releases", "hardware_commands", "hardware_states", "commands"):
        assert int(after[key]) > int(before[key]), key
    assert after["commands_rejected"] == 3 and after["hardware_states_rejected"] == 4
    assert "out-of-order stamp" in after["last_rejection"]


def test_g6_levels_and_messages_name_the_mode_and_the_cause():
    rig = Rig()
    core = rig.core
    rig.cycle()
    health = core.health("active", active=True)
    assert (health.level, health.values["cause"]) == (ERROR, NO_STATE)   # no state yet: stop
    rig.period(Q + DELTA)
    health = core.health("active", active=True, hardware_topic="/c/commands")
    assert (health.level, health.values["mode"], health.values["hardware_topic"]) == (OK, RUN, "/c/commands")
    rig.sent([None] * 3)
    health = core.health("active", active=True)
    assert health.level == WARN and "no valid policy command" in health.message
    core.estop("~/estop service")
    rig.period()
    health = core.health("active", active=True)
    assert health.level == WARN and "E-STOP latched" in health.message and health.values["estop"] is True
    core.record_fault(RuntimeError("boom"))
    health = core.health("active", active=True)
    assert health.level == ERROR and "FAULT" in health.message and health.values["fault"] == "RuntimeError: boom"
    assert core.health("inactive", active=False).values["mode"] == "inactive"


def test_g6_transition_texts_say_the_cause():
    rig = Rig()
    rig.period(Q + DELTA)
    outputs = [rig.period() for _ in range(4)]
    hold = next(out.decision for out in outputs if out.decision.changed)
    text = rig.core.describe_transition(hold)
    assert text.startswith("HOLD (command_timeout): no valid policy command") and "ms after the last command" in text
    rig.state(np.full(N, np.nan))
    rig.advance(5)
    stop = rig.core.cycle(rig.t).decision
    assert rig.core.describe(stop).startswith("STOP (state_timeout): no fresh hardware joint state")
    assert "; last hardware joint_states rejected: non-finite" in rig.core.describe_transition(stop)


# --- A5: bursts ----------------------------------------------------------------------------------

def test_a5_a_cycle_uses_only_the_latest_command_and_counts_the_others_superseded():
    rig = Rig()
    rig.state()
    burst = [Q + DELTA * k / 10 for k in range(12)]
    for c in burst:
        assert rig.command(c).accepted
    out = rig.cycle()
    np.testing.assert_array_equal(out.command, burst[-1])
    assert rig.core.counters["commands_superseded"] == 11 and rig.core.counters["commands"] == 12
    assert rig.core.counters["commands_used"] == 1
    rig.advance()
    rig.command(Q)
    rig.period()
    assert rig.core.counters["commands_superseded"] == 11, "a command used by a cycle is not superseded"
    assert rig.core.counters["commands_used"] == 2
    assert_counters_add_up(rig.core)


# --- A6: relaying the state -----------------------------------------------------------------------

def test_a6_the_latest_state_is_relayed_once_per_periodic_cycle_in_profile_order():
    rig = Rig()
    first = rig.state()
    assert first.accepted
    out = rig.cycle()
    assert out.decision.mode == WAITING and out.command is None, "nothing sent before the policy commands"
    state = out.relay
    np.testing.assert_array_equal(state.position_rad, Q)
    np.testing.assert_array_equal(state.effort, np.arange(N, dtype=float))   # mapped by name
    assert state.stamp_ns == rig.stamp_ns, "the hardware stamp"
    rig.state(Q + DELTA)
    assert rig.cycle(relay=False).relay is None, "extra cycles (deadline, e-stop) do not relay"
    latest = rig.cycle().relay
    np.testing.assert_array_equal(latest.position_rad, Q + DELTA)


# --- A8: mapping, readiness, velocity, controller order ------------------------------------------

def test_a8_missing_joints_mean_not_ready_and_the_last_good_state_is_kept():
    rig = Rig()
    assert rig.state().accepted
    result = rig.state(Q + 0.1, names=[n for n in HW_NAMES if n not in ("joint7", "joint2")])
    assert not result.accepted and result.kind == MISSING_JOINTS
    assert ("lacks joint(s) ['joint2', 'joint7'] of robot profile 'panda_like' (hardware not ready)"
            in result.reason and "kept the last good state" in result.reason)
    assert rig.core.missing_joints == ["joint2", "joint7"]
    np.testing.assert_array_equal(rig.core.state.position_rad, Q)
    assert rig.state().accepted and rig.core.missing_joints == []


def test_a8_another_devices_states_are_ignored():
    rig = Rig()
    rig.state(names=HW_NAMES[:-1])
    result = rig.state(names=["gripper_left", "gripper_right"])
    assert not result.accepted and result.kind == FOREIGN and result.reason == ""
    assert rig.core.counters["hardware_states_foreign"] == 1
    assert rig.core.counters["hardware_states_rejected:missing_joints"] == 1
    assert rig.core.missing_joints == ["joint4"], "a foreign state says nothing about this arm"


def test_a8_length_mismatch_and_non_finite_velocity_are_rejected_with_the_reason():
    rig = Rig()
    result = rig.core.on_joint_state(HW_NAMES, [0.0] * 7, (), (), stamp_ns=1, arrival_s=rig.t)
    assert result.kind == LENGTH and "has 9 names but 7 positions" in result.reason
    names = JOINTS
    vel = [0.0] * N
    vel[3] = np.inf
    result = rig.core.on_joint_state(names, Q, vel, (), stamp_ns=1, arrival_s=rig.t)
    assert result.kind == NON_FINITE_STATE and "['joint4']" in result.reason
    assert rig.core.state is None


def test_a8_velocity_is_estimated_from_positions_when_the_hardware_reports_none():
    rig = Rig()
    slope = np.linspace(-0.5, 0.5, N)   # rad/s
    base = rig.stamp_ns
    rig.state(Q, velocity=False, stamp_ns=base)
    np.testing.assert_array_equal(rig.core.state.velocity_rad_s, np.zeros(N), err_msg="first state: zeros")
    for k in range(1, 5):
        rig.state(Q + slope * 0.01 * k, velocity=False, stamp_ns=base + k * 10_000_000)
        np.testing.assert_allclose(rig.core.state.velocity_rad_s, slope, atol=1e-9)
    rig.state(Q + slope * 0.5, velocity=False, stamp_ns=base + 4 * 10_000_000)   # same stamp
    np.testing.assert_allclose(rig.core.state.velocity_rad_s, slope, atol=1e-9)
    reported = np.full(N, 0.25)
    rig.core.on_joint_state(JOINTS, Q, reported, (), stamp_ns=base + 10**9, arrival_s=rig.t)
    np.testing.assert_array_equal(rig.core.state.velocity_rad_s, reported, err_msg="the hardware's when it has one")
    assert rig.core.state.effort is None


def test_a8_commands_go_out_in_the_controller_joint_order():
    order = JOINTS[::-1]
    rig = Rig(controller_joints=order)
    out = rig.period(Q + DELTA)
    np.testing.assert_array_equal(out.command, Q + DELTA)
    np.testing.assert_array_equal(out.hardware_command, (Q + DELTA)[::-1])
    assert rig.core.controller_joints == tuple(order)


@pytest.mark.parametrize("joints, why", [
    (JOINTS[:6], "missing ['joint7']"), (JOINTS + ["joint8"], "unknown ['joint8']"),
    (JOINTS[:6] + ["joint1"], "each once"),
])
def test_a8_controller_joints_must_name_the_profile_joints_once(joints, why):
    with pytest.raises(ConfigError, match="controller_joints") as info:
        BridgeCore(PROFILE, controller_joints=joints)
    assert why in str(info.value)


# --- faults and activation --------------------------------------------------------------------

def test_a_fault_stops_commanding_until_reactivation():
    rig = Rig()
    rig.period(Q + DELTA)
    assert rig.core.record_fault(RuntimeError("broken")) == "RuntimeError: broken"
    assert rig.period(Q + DELTA) is None and rig.core.counters["faults"] == 1
    rig.core.activate()
    assert rig.core.fault == ""
    assert rig.period(Q + DELTA).command is not None


def test_activation_forgets_old_commands_and_steps_from_the_measured_position():
    rig = Rig()
    rig.sent([FAR] * 5)
    rig.core.activate()
    out = rig.period()
    assert out.decision.mode == WAITING and out.command is None, "an old command does not count"
    out = rig.period(FAR)
    np.testing.assert_allclose(out.command, np.clip(FAR, Q - STEP, Q + STEP), rtol=0, atol=EPS)


def test_the_rate_meter_counts_the_control_timer():
    core = BridgeCore(PROFILE)
    for k in range(60):
        core.rate.tick(10.0 + k * PERIOD)
    assert core.achieved_rate_hz() == pytest.approx(50.0)
    assert values(core)["achieved_rate_hz"] == "50.00"


def test_the_core_imports_no_ros():
    code = ("import sys, real_bridge.core; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py') "
            "or m.split('.')[0].endswith('_msgs') or m.split('.')[0].endswith('_srvs')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
