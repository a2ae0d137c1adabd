"""SafetyFilter (pure numpy): whatever comes in, what goes out respects the limits.

Property-based with hypothesis: random commands (NaN, inf, huge, wrong length, not numbers,
valid ones) against random measured positions (inside, at, beyond the limits, NaN) and
periods, one call or a chain of calls, never produce an output outside the position band
(or further out than the reference, when the reference itself is outside it) or more than
one step from the reference, and invalid inputs never produce an output.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from real_bridge.safety import (CLIPS, INTERVENTIONS, NO_REFERENCE, NON_FINITE, NOT_NUMERIC, POSITION_LIMIT,
                                REJECTIONS, STEP_LIMIT, WORKSPACE, WRONG_LENGTH, SafetyFilter)
from sim_bridge.profile import load_profile

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROFILE = load_profile("panda_like")
N = PROFILE.num_joints
LOWER, UPPER, VEL = PROFILE.position_lower_rad, PROFILE.position_upper_rad, PROFILE.velocity_limit_rad_s
MARGIN = 0.05
LO, HI = LOWER + MARGIN, UPPER - MARGIN
PERIOD = 0.02
Q0 = PROFILE.default_pose_rad.copy()
TOL = 1e-12  # |out - ref| is computed by one subtraction after the clip: rounding only


def make(**kwargs) -> SafetyFilter:
    kwargs.setdefault("margin_rad", MARGIN)
    return SafetyFilter.from_profile(PROFILE, **kwargs)


def assert_safe(out: np.ndarray, ref: np.ndarray, period: float, scale: float = 1.0) -> None:
    """The filter's guarantee for one output against the reference it stepped from."""
    assert out.shape == (N,) and np.isfinite(out).all()
    step = VEL * period * scale
    assert np.all(np.abs(out - ref) <= step * (1 + TOL) + TOL), f"step: {out - ref} > {step}"
    assert np.all(out >= np.minimum(LO, ref)) and np.all(out <= np.maximum(HI, ref)), "further out than allowed"
    inside = (ref >= LO) & (ref <= HI)
    assert np.all(out[inside] >= LO[inside]) and np.all(out[inside] <= HI[inside]), "left the position band"


# --- strategies -------------------------------------------------------------------------
any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
huge = st.sampled_from([1e300, -1e300, 1e9, -1e9, 3.0, -3.1, 5e-324, -0.0, np.nextafter(HI[0], 10)])
near_limits = st.builds(lambda i, d: float(UPPER[i] + d if d > 0 else LOWER[i] + d),
                        st.integers(0, N - 1), st.floats(-0.2, 0.2))
value = st.one_of(any_float, huge, near_limits, st.floats(-4, 4))
valid_command = st.lists(st.floats(-4, 4), min_size=N, max_size=N)
bad_length = st.lists(value, max_size=2 * N + 3).filter(lambda v: len(v) != N)
garbage = st.one_of(st.none(), st.text(max_size=5), st.lists(st.text(min_size=1, max_size=3), min_size=N, max_size=N),
                    st.just([[0.0] * N]), st.just([1.0, [2.0]] + [0.0] * (N - 2)), st.just(10 ** 400),
                    st.just([10 ** 400] + [0] * (N - 1)))
command = st.one_of(st.lists(value, min_size=N, max_size=N), valid_command, bad_length, garbage,
                    st.builds(np.array, st.lists(value, min_size=N, max_size=N)))
measured = st.one_of(
    st.builds(lambda f: LOWER + f * (UPPER - LOWER), st.lists(st.floats(0, 1), min_size=N, max_size=N).map(np.array)),
    st.builds(lambda d: np.clip(Q0 + d, LOWER - 0.3, UPPER + 0.3),             # beyond the limits too
              st.lists(st.floats(-6, 6), min_size=N, max_size=N).map(np.array)),
    st.just(np.full(N, np.nan)), st.just(Q0[:3]), st.none())
period = st.one_of(st.just(PERIOD), st.floats(1e-4, 0.1))


def valid(values) -> bool:
    try:
        arr = np.array(values, dtype=float)
    except (TypeError, ValueError, OverflowError):
        return False
    return arr.shape == (N,) and bool(np.isfinite(arr).all())


# --- properties ---------------------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(cmd=command, q=measured, dt=period, scale=st.sampled_from([1.0, 0.5, 0.1]))
def test_one_call_never_violates_the_limits(cmd, q, dt, scale):
    f = make(velocity_scale=scale)
    result = f.filter(cmd, q, dt)
    if not valid(cmd) or not valid(q):
        assert result.command is None and result.rejected, f"invalid input produced {result.command}"
        assert len(result.interventions) == 1 and result.interventions[0] in REJECTIONS
        assert result.reason and f.reference is None
        return
    assert not result.rejected and set(result.interventions) <= set(CLIPS)
    assert_safe(result.command, np.asarray(q, dtype=float), dt, scale)
    assert f.reference is result.command and not result.command.flags.writeable


@settings(max_examples=150, deadline=None)
@given(q=measured.filter(valid), cmds=st.lists(command, min_size=1, max_size=40), dt=period)
def test_a_chain_of_calls_steps_from_the_last_output(q, cmds, dt):
    f = make()
    ref = np.asarray(q, dtype=float)
    outputs = 0
    for cmd in cmds:
        result = f.filter(cmd, q, dt)
        if result.command is None:
            assert not valid(cmd) and result.rejected
            continue
        assert valid(cmd)
        assert_safe(result.command, ref, dt)
        ref = result.command
        outputs += 1
        assert np.array_equal(f.reference, ref)
    assert f.outputs == outputs and f.calls == len(cmds)


@settings(max_examples=200, deadline=None)
@given(cmd=valid_command, q=measured.filter(valid), dt=period)
def test_the_output_is_the_closest_allowed_command(cmd, q, dt):
    """Within limits a command passes unchanged; otherwise each joint is clipped to the allowed
    interval, i.e. the output is the projection of the command on the allowed box."""
    f = make()
    result = f.filter(cmd, q, dt)
    ref, c, step = np.asarray(q, float), np.asarray(cmd, float), VEL * dt
    low = np.maximum(np.minimum(LO, ref), ref - step)
    high = np.minimum(np.maximum(HI, ref), ref + step)
    np.testing.assert_array_equal(result.command, np.minimum(np.maximum(c, low), high))
    if np.all((c >= low) & (c <= high)):
        assert result.interventions == () and result.reason == ""


# --- rules, one at a time -------------------------------------------------------------------
@pytest.mark.parametrize("bad, joint", [(np.nan, "joint3"), (np.inf, "joint3"), (-np.inf, "joint3")])
def test_non_finite_commands_are_rejected_naming_the_joint(bad, joint):
    f = make()
    cmd = Q0.copy()
    cmd[2] = bad
    result = f.filter(cmd, Q0, PERIOD)
    assert result.command is None and result.rejected and result.interventions == (NON_FINITE,)
    assert f"non-finite value for joint(s) ['{joint}']" in result.reason
    assert f.counters[NON_FINITE] == 1 and f.reference is None


@pytest.mark.parametrize("values", [[], Q0[:6], np.r_[Q0, 0.0], [Q0], np.zeros((7, 1))])
def test_wrong_length_commands_are_rejected(values):
    result = make().filter(values, Q0, PERIOD)
    assert result.command is None and result.interventions == (WRONG_LENGTH,)
    assert "expected 7 values in joint order ['joint1'" in result.reason


@pytest.mark.parametrize("values", [["a"] * N, [1.0, [2.0, 3.0]] + [0.0] * 5, [10 ** 400] * N])
def test_non_numeric_commands_are_rejected(values):
    result = make().filter(values, Q0, PERIOD)
    assert result.command is None and result.interventions == (NOT_NUMERIC,)


def test_no_reference_without_a_usable_measurement():
    f = make()
    for q in (None, np.full(N, np.nan), Q0[:3]):
        result = f.filter(Q0, q, PERIOD)
        assert result.command is None and result.interventions == (NO_REFERENCE,)
        assert "no reference" in result.reason
    assert f.filter(Q0, Q0, PERIOD).command is not None
    assert f.filter(Q0, None, PERIOD).command is not None, "after an output the last output is the reference"


def test_commands_beyond_the_limits_are_clipped_into_the_margin_band():
    f = make()
    target = Q0.copy()
    target[0] = 10.0
    target[3] = -1e9
    outs = []
    for _ in range(200):
        result = f.filter(target, Q0, PERIOD)
        outs.append(result.command)
    final = outs[-1]
    assert final[0] == pytest.approx(HI[0]) and final[3] == pytest.approx(LO[3])
    assert np.array_equal(final[[1, 2, 4, 5, 6]], Q0[[1, 2, 4, 5, 6]])
    assert result.interventions == (POSITION_LIMIT,)
    assert "position limits (margin 0.05 rad) for joint(s) ['joint1', 'joint4']" in result.reason
    # it got there at the velocity limit: one step per call, no faster
    steps = np.abs(np.diff(np.array([Q0] + outs), axis=0))
    assert np.all(steps <= VEL * PERIOD * (1 + TOL))
    assert steps[0, 0] == pytest.approx(VEL[0] * PERIOD)
    assert f.counters[POSITION_LIMIT] == 200 and f.counters[STEP_LIMIT] > 0


def test_step_limit_follows_the_velocity_limits_and_scale():
    for scale in (1.0, 0.25):
        f = make(velocity_scale=scale)
        target = Q0 + 0.5
        target[3] = Q0[3] - 0.5
        result = f.filter(target, Q0, PERIOD)
        np.testing.assert_allclose(np.abs(result.command - Q0), VEL * PERIOD * scale)
        assert result.interventions == (STEP_LIMIT,)
        assert "step-limited to" in result.reason and "'joint7'" in result.reason
        assert np.allclose(f.step_limit(PERIOD), VEL * PERIOD * scale)
    # A 500 Hz period allows a tenth of a 50 Hz one.
    assert np.allclose(make().step_limit(0.002), VEL * 0.002)


def test_a_command_within_limits_passes_unchanged():
    f = make()
    cmd = Q0 + 0.01
    result = f.filter(cmd, Q0, PERIOD)
    assert result.interventions == () and not result.rejected
    np.testing.assert_array_equal(result.command, cmd)
    assert f.passed == 1 and sum(f.counts().values()) == 0


def test_a_reference_outside_the_band_never_moves_further_out_and_is_not_moved_by_itself():
    """The arm parked inside the margin (or beyond a limit): holding it there passes unchanged,
    commands further out are clipped to where it is, commands inward move it one step."""
    f = make()
    q = Q0.copy()
    q[0] = UPPER[0] - 0.01          # inside the margin
    q[1] = UPPER[1] + 0.02          # beyond the hard limit (encoder offset, say)
    result = f.filter(q, q, PERIOD)  # hold
    np.testing.assert_array_equal(result.command, q)
    assert result.interventions == ()
    out = f.filter(q + 1.0, None, PERIOD).command
    assert out[0] == q[0] and out[1] == q[1], "never further out"
    out = f.filter(np.full(N, -5.0), None, PERIOD).command
    np.testing.assert_allclose(q[:2] - out[:2], VEL[:2] * PERIOD)


def test_reset_reference_and_workspace_check():
    f = make()
    f.filter(Q0 + 0.01, Q0, PERIOD)
    f.reset_reference()
    assert f.reference is None
    f.reset_reference(Q0)
    assert np.array_equal(f.reference, Q0)
    with pytest.raises(ValueError, match="non-finite"):
        f.reset_reference(np.full(N, np.nan))

    def below_table(q):
        return "joint2 above 1.0 rad puts the hand in the table" if q[1] > 1.0 else ""

    g = make(workspace_check=below_table)
    g.reset_reference(np.r_[0.0, 0.99, Q0[2:]])
    ok = g.filter(np.r_[0.0, 0.995, Q0[2:]], None, PERIOD)
    assert ok.command is not None
    bad = g.filter(np.r_[0.0, 1.01, Q0[2:]], None, PERIOD)
    assert bad.command is None and bad.interventions == (WORKSPACE,) and "in the table" in bad.reason
    assert np.array_equal(g.reference, ok.command), "a rejection leaves the reference alone"


def test_construction_is_checked():
    with pytest.raises(ValueError, match="no room"):
        make(margin_rad=2.0)
    with pytest.raises(ValueError, match="velocity_scale"):
        make(velocity_scale=0.0)
    with pytest.raises(ValueError, match="velocity_scale"):
        make(velocity_scale=1.5)
    with pytest.raises(ValueError, match="one value per joint"):
        SafetyFilter(["a", "b"], [0, 0], [1, 1], [1])
    with pytest.raises(ValueError, match="> 0"):
        SafetyFilter(["a"], [0], [1], [0.0])
    with pytest.raises(ValueError, match="period_s"):
        make().step_limit(0.0)
    assert set(make().counts()) == set(INTERVENTIONS)
    assert math.isclose(make().margin_rad, MARGIN)
