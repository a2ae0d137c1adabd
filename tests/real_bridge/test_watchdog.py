"""Watchdog (pure): command and state timeouts, hold semantics, e-stop latch, stamp ordering.

Times are made up (seconds of a monotonic clock); stamps are ns.
"""
from __future__ import annotations

import numpy as np
import pytest

from real_bridge.watchdog import (COMMAND_TIMEOUT, COMMANDS, ESTOP, HOLD, NO_COMMAND, NO_STATE, OUT_OF_ORDER,
                                  RELEASED, RUN, STATE_TIMEOUT, STOP, WAITING, Watchdog)

P = 0.02
Q = np.linspace(-1.0, 1.0, 7)


def running(t0: float = 0.0) -> Watchdog:
    """A watchdog with a fresh state and a fresh command at t0."""
    wd = Watchdog(P)
    assert wd.on_joint_state(1_000, t0)[0]
    wd.on_command(t0)
    assert wd.evaluate(t0, Q).mode == RUN
    return wd


def test_stop_until_the_first_state_then_wait_for_the_first_command():
    wd = Watchdog(P)
    d = wd.evaluate(0.0, None)
    assert (d.mode, d.cause, d.target) == (STOP, NO_STATE, None) and "not commanding" in d.reason
    wd.on_command(0.0)  # a command alone does not make the arm commandable
    assert wd.evaluate(0.001, None).mode == STOP
    wd = Watchdog(P)
    wd.on_joint_state(1, 0.0)
    d = wd.evaluate(0.001, Q)
    assert (d.mode, d.cause, d.target) == (WAITING, NO_COMMAND, None) and d.changed
    wd.on_command(0.002)
    d = wd.evaluate(0.003, Q)
    assert (d.mode, d.cause) == (RUN, COMMANDS) and d.changed


def test_hold_exactly_at_the_command_timeout():
    wd = running()
    assert wd.command_timeout_s == pytest.approx(2 * P)
    for t in (0.5 * P, P, 1.5 * P, 2 * P - 1e-6):
        assert wd.evaluate(t, Q).mode == RUN, t
    d = wd.evaluate(2 * P, Q)
    assert (d.mode, d.cause, d.changed) == (HOLD, COMMAND_TIMEOUT, True)
    assert "no valid policy command for 40 ms (limit 2 control periods = 40 ms)" in d.reason
    assert wd.command_expired(2 * P) and not wd.command_expired(2 * P - 1e-6)
    assert wd.counts()["hold:command_timeout"] == 1


def test_hold_target_is_frozen_at_hold_start():
    """A gravity-loaded arm sags while held: the target must not follow it down."""
    wd = running()
    d = wd.evaluate(0.05, Q)
    assert d.mode == HOLD and np.array_equal(d.target, Q)
    sagging = Q - 0.01
    for k in range(1, 5):
        wd.on_joint_state(1_000 + k, 0.05 + k * P)
        d = wd.evaluate(0.05 + k * P, sagging - 0.01 * k)
        assert d.mode == HOLD and np.array_equal(d.target, Q) and not d.changed
    assert not d.target.flags.writeable
    wd.on_command(0.2)  # the policy is back: run, and the next hold freezes anew
    wd.on_joint_state(2_000, 0.2)
    assert wd.evaluate(0.2, sagging).mode == RUN
    wd.on_joint_state(3_000, 0.25)
    d = wd.evaluate(0.25, sagging)
    assert d.mode == HOLD and np.array_equal(d.target, sagging)
    assert wd.counts()["hold:command_timeout"] == 2


def test_state_timeout_stops_commanding_and_a_fresh_state_resumes():
    wd = running()
    wd.on_command(0.05)
    assert wd.state_timeout_s == pytest.approx(3 * P)
    assert wd.evaluate(3 * P, Q).mode == RUN, "exactly at the limit is still fresh"
    d = wd.evaluate(3 * P + 1e-4, Q)
    assert (d.mode, d.cause, d.target) == (STOP, STATE_TIMEOUT, None)
    assert "no fresh hardware joint state for 60 ms (limit 3 control periods = 60 ms)" in d.reason
    wd.on_joint_state(2_000, 0.07)
    assert wd.evaluate(0.07, Q).mode == RUN
    assert wd.counts()["stop:state_timeout"] == 1 and wd.cycles[STOP] == 1


def test_stop_wins_over_hold_and_the_hold_target_survives_a_stop():
    wd = running()
    d = wd.evaluate(0.045, Q)
    assert d.mode == HOLD
    assert wd.evaluate(0.2, Q + 1).mode == STOP, "no fresh state: nothing is sent, not even a hold"
    wd.on_joint_state(2_000, 0.21)
    d = wd.evaluate(0.21, Q + 1)
    assert d.mode == HOLD and np.array_equal(d.target, Q), "still the position frozen at hold start"


def test_estop_latches_until_release_and_then_waits_for_a_new_command():
    wd = running()
    assert wd.estop("operator") and not wd.estop("again")
    wd.on_command(0.01)  # the policy keeps sending: ignored while latched
    d = wd.evaluate(0.01, Q + 0.1)
    assert (d.mode, d.cause) == (HOLD, ESTOP) and np.array_equal(d.target, Q + 0.1)
    assert "e-stop latched (operator)" in d.reason
    for t in np.arange(0.02, 1.0, P):
        wd.on_command(t)
        wd.on_joint_state(int(t * 1e9), t)
        assert wd.evaluate(t, Q).cause == ESTOP
    assert wd.release(1.0) and not wd.release(1.0)
    wd.on_joint_state(2 * 10**9, 1.0)
    d = wd.evaluate(1.001, Q)
    assert (d.mode, d.cause) == (HOLD, RELEASED), "a command sent before the release does not resume"
    assert np.array_equal(d.target, Q + 0.1), "the hold target stays"
    wd.on_command(1.002)
    assert wd.evaluate(1.003, Q).mode == RUN
    assert wd.counts()["estops"] == 1 and wd.counts()["releases"] == 1


def test_estop_survives_reset_and_holds_even_before_any_command():
    wd = Watchdog(P)
    wd.estop()
    wd.reset()
    wd.on_joint_state(1, 0.0)
    d = wd.evaluate(0.0, Q)
    assert (d.mode, d.cause) == (HOLD, ESTOP) and np.array_equal(d.target, Q)


def test_out_of_order_stamps_are_rejected_and_not_fresh():
    wd = running()
    ok, why = wd.on_joint_state(900, 0.01)
    assert not ok and "out-of-order stamp" in why and "older than the previous" in why
    assert wd.counts()[OUT_OF_ORDER] == 1
    assert wd.on_joint_state(1_000, 0.02)[0], "an equal stamp is accepted (one reading published twice)"
    assert wd.last_state_s == 0.02
    for k in range(10):  # only old stamps arrive: the state goes stale, the bridge stops
        assert not wd.on_joint_state(500 + k, 0.03 + k * P)[0]
    wd.on_command(0.2)
    assert wd.evaluate(0.2, Q).mode == STOP
    wd.reset()  # activation: a new time base is trusted again
    assert wd.on_joint_state(5, 0.3)[0]


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        Watchdog(0.0)
    with pytest.raises(ValueError):
        Watchdog(P, command_timeout_periods=0)
    assert Watchdog(0.002, command_timeout_periods=5).command_timeout_s == pytest.approx(0.01)
