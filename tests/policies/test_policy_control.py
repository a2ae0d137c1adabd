"""policies.control.PolicyController without ROS: policy folder rules, validation, the cycle's guards, swaps."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from policies.control import (COMMAND, HOLD, STALE, WAITING, LatencyWindow, PolicyController, PolicyRejected,
                              list_policies, resolve_policy)
from policies.runtime import PolicyRuntime
from sim_bridge.profile import load_profile

PROFILE = load_profile("panda_like")
JOINTS = list(PROFILE.joint_names)
Q = PROFILE.default_pose_rad.copy()
QD = np.linspace(-0.1, 0.1, 7)
GOAL = np.array([0.5, 0.1, 0.4])


@pytest.fixture
def make(policy_zoo, clock):
    def make(policy="good_a", **kwargs):
        ctl = PolicyController(PROFILE, policy_zoo, clock=clock, **kwargs)
        ctl.set_policy(ctl.load_policy(policy))
        return ctl
    return make


def feed(ctl, t, q=Q, qd=QD, names=JOINTS):
    return ctl.on_joint_state(names, list(q), list(qd), t)


def rollout(path, steps, q=Q, qd=QD, goal=GOAL, prev=None):
    """What the node must command for a constant state: (targets, clipped actions)."""
    runtime = PolicyRuntime(path)
    prev = np.zeros(7) if prev is None else prev
    targets, actions = [], []
    for _ in range(steps):
        a = runtime.act(q, qd, prev, goal)
        targets.append(runtime.joint_targets(a, q, PROFILE.position_lower_rad, PROFILE.position_upper_rad))
        prev = np.clip(a.astype(float), -1, 1)
        actions.append(prev)
    return np.array(targets), np.array(actions)


# --- the policy folder ---------------------------------------------------------------

def test_available_policies_lists_artifacts_inside_the_folder_only(policy_zoo):
    names = list_policies(policy_zoo)
    assert {"good_a", "good_b", "slow", "nan_some", "alias_a"} <= set(names)
    assert "no_manifest" not in names, "a folder without manifest.json is not a policy"
    assert "escape" not in names, "a symlink to a folder outside policy_dir is not listed"
    assert list_policies(policy_zoo / "does_not_exist") == []


@pytest.mark.parametrize("name, why", [
    ("../outside", "is a path"),
    ("/etc", "is a path"),
    (os.path.join("good_a", ".."), "is a path"),
    ("..", "is a path"),
    ("", "empty"),
    ("escape", "resolves outside policy_dir"),
    ("no_manifest", "not a policy artifact (no manifest.json)"),
    ("nope", "no policy 'nope'"),
])
def test_names_outside_the_folder_or_unknown_are_refused(policy_zoo, name, why):
    with pytest.raises(PolicyRejected, match=why.replace("(", r"\(").replace(")", r"\)")):
        resolve_policy(policy_zoo, name)


def test_resolving_a_name_does_not_scan_the_folder(policy_zoo, monkeypatch):
    # A swap resolves its name in the parameter thread; a scan of the whole folder (a dozen
    # file-system calls per entry) held the GIL for up to 3 ms there and stalled a 500 Hz loop.
    import policies.control as control

    def scan(*args):
        raise AssertionError("resolve_policy listed the whole folder")

    monkeypatch.setattr(control, "list_policies", scan)
    assert resolve_policy(policy_zoo, "good_a") == (policy_zoo / "good_a").resolve()
    assert resolve_policy(policy_zoo, "alias_a") == (policy_zoo / "good_a").resolve()
    with pytest.raises(PolicyRejected, match="not a policy artifact"):
        resolve_policy(policy_zoo, "no_manifest")


def test_absolute_path_of_a_valid_artifact_is_refused(policy_zoo):
    with pytest.raises(PolicyRejected, match="is a path"):
        resolve_policy(policy_zoo, str(policy_zoo / "good_a"))
    assert resolve_policy(policy_zoo, "alias_a") == (policy_zoo / "good_a").resolve(), \
        "a symlink that stays inside the folder is fine"


# --- loading and validation ----------------------------------------------------------

@pytest.mark.parametrize("name, why", [
    ("missing_onnx", "cannot read ONNX file"),
    ("no_manifest", "no manifest.json"),
    ("truncated", "has sha256"),
    ("corrupt", "not a valid ONNX model"),
    ("wrong_io", "the graph's inputs are ['observation', 'h0', 'c0']"),
    ("other_joints", "trained for joints ['arm_joint_1'"),
    ("reordered_joints", "same joints in another order"),
    ("nan_always", "non-finite values on a zero observation during warm-up"),
    ("rate_100", "trained at 100 Hz, the node runs at 50 Hz (set allow_rate_mismatch"),
    ("../outside", "is a path"),
])
def test_bad_policies_are_rejected_with_the_reason(make, name, why):
    ctl = make("good_a")
    with pytest.raises(PolicyRejected) as info:
        ctl.load_policy(name)
    message = str(info.value)
    assert message.startswith(f"policy '{name}' rejected: ") and why in message, message
    assert ctl.counters.rejections["policy"] == 1 and ctl.counters.last_rejection == message
    assert ctl.active_name == "good_a"


def test_rate_mismatch_can_be_allowed(make):
    ctl = make("good_a", allow_rate_mismatch=True)
    loaded = ctl.load_policy("rate_100")
    assert loaded.warnings and "allowed by allow_rate_mismatch" in loaded.warnings[0]
    with pytest.raises(PolicyRejected, match="trained at 100 Hz"):
        ctl.swap("rate_100", allow_rate_mismatch=False)
    assert make("good_a").swap("rate_100", allow_rate_mismatch=True).name == "rate_100"


def test_first_policy_sets_the_rate_unless_given(make):
    assert make("good_a").control_rate_hz == 50.0
    with pytest.raises(PolicyRejected, match="trained at 50 Hz, the node runs at 100 Hz"):
        make("good_a", control_rate_hz=100.0)


def test_a_policy_that_is_nan_only_on_inputs_warmup_cannot_reach_passes_warmup(make):
    # (nan_some, NaN for joint1 > 1 rad, passed the zero-observation warm-up before issue 12;
    # the representative warm-up refuses it: tests/policies/test_hardening_policy_runtime.py)
    loaded = make("nan_rare").active
    assert loaded.name == "nan_rare" and len(loaded.short_sha) == 12


# --- the cycle -----------------------------------------------------------------------

def test_cycle_runs_the_policy_and_feeds_back_the_clipped_action(make, policy_zoo, clock):
    ctl = make("good_a")
    assert ctl.cycle(0.0).status == WAITING
    feed(ctl, 0.0)
    result = ctl.cycle(0.0)
    assert result.status == WAITING and "current_goal" in result.reason
    assert ctl.set_goal(GOAL) == (True, "")
    expected, actions = rollout(policy_zoo / "good_a", 5)
    for i in range(5):
        clock.t = t = 0.02 * (i + 1)
        feed(ctl, t)
        result = ctl.cycle(t)
        assert result.status == COMMAND
        np.testing.assert_allclose(result.command, expected[i], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(ctl.prev_action, actions[i])
    assert not np.allclose(expected[0], expected[-1]), "the recurrent state matters"
    assert ctl.counters.commands == 5 and len(ctl.inference) == 5 and len(ctl.loop_latency) == 5


def test_joint_states_are_mapped_by_name(make, policy_zoo):
    ctl = make("good_a")
    ctl.set_goal(GOAL)
    order = [3, 0, 6, 1, 5, 2, 4]
    names = ["gripper"] + [JOINTS[i] for i in order]
    ok, _ = feed(ctl, 0.0, q=[0.04] + [Q[i] for i in order], qd=[0.0] + [QD[i] for i in order], names=names)
    assert ok
    np.testing.assert_array_equal(ctl.q, Q)
    np.testing.assert_array_equal(ctl.qd, QD)
    np.testing.assert_allclose(ctl.cycle(0.0).command, rollout(policy_zoo / "good_a", 1)[0][0], atol=1e-12)


def test_bad_joint_states_are_rejected_and_the_last_good_one_kept(make):
    ctl = make("good_a")
    feed(ctl, 0.0)
    ok, reason = feed(ctl, 0.01, names=JOINTS[:6] + ["elbow"])
    assert not ok and "lacks joint(s) ['joint7']" in reason and "kept the last good state" in reason
    bad = Q.copy()
    bad[2] = np.nan
    ok, reason = feed(ctl, 0.02, q=bad)
    assert not ok and "non-finite position/velocity for joint(s) ['joint3']" in reason
    ok, reason = feed(ctl, 0.03, qd=np.full(7, np.inf))
    assert not ok and "non-finite" in reason
    ok, reason = ctl.on_joint_state(JOINTS, list(Q), [], 0.04)
    assert not ok and "7 positions and 0 velocities" in reason
    assert ctl.counters.rejections["joint_state"] == 4
    np.testing.assert_array_equal(ctl.q, Q)
    assert ctl.state_arrival_s == 0.0, "a rejected message does not refresh the state"


def test_non_finite_goal_is_rejected(make):
    ctl = make("good_a")
    ctl.set_goal(GOAL)
    ok, reason = ctl.set_goal([np.nan, 0, 0])
    assert not ok and "goal rejected" in reason
    np.testing.assert_array_equal(ctl.goal, GOAL)


def test_stale_state_sends_nothing_until_a_new_state_arrives(make):
    ctl = make("good_a", stale_after_periods=5)
    ctl.set_goal(GOAL)
    feed(ctl, 0.0)
    assert ctl.cycle(0.1).status == COMMAND, "exactly 5 periods old is still fresh"
    result = ctl.cycle(0.12)
    assert result.status == STALE and result.command is None and ctl.stale
    assert "last one arrived 120 ms ago (limit 5 periods = 100 ms)" in result.reason
    assert ctl.counters.stale_cycles == 1
    feed(ctl, 0.13)
    assert ctl.cycle(0.14).status == COMMAND and not ctl.stale


def test_nan_output_holds_the_latched_measured_position(make, policy_zoo):
    ctl = make("nan_rare")
    ctl.set_goal(GOAL)
    feed(ctl, 0.0)
    assert ctl.cycle(0.0).status == COMMAND
    state = ctl.active.runtime.state
    q_nan, qd_nan = Q.copy(), QD.copy()
    q_nan[0] = 1.2
    qd_nan[0] = 12.0  # nan_rare outputs NaN when joint1's velocity > 10 rad/s
    feed(ctl, 0.02, q=q_nan, qd=qd_nan)
    result = ctl.cycle(0.02)
    assert result.status == HOLD and "non_finite_output" in result.reason and "not finite" in result.reason
    np.testing.assert_array_equal(result.command, q_nan)
    np.testing.assert_array_equal(ctl.prev_action, np.zeros(7))
    for got, want in zip(ctl.active.runtime.state, state):
        np.testing.assert_array_equal(got, want)  # the recurrent state was not advanced
    sagged = q_nan.copy()
    sagged[1] -= 0.05
    feed(ctl, 0.04, q=sagged, qd=qd_nan)
    held = ctl.cycle(0.04)
    assert held.status == HOLD
    np.testing.assert_array_equal(held.command, q_nan)  # latched, not re-targeted to the sag
    assert ctl.holding and ctl.counters.holds["non_finite_output"] == 2
    feed(ctl, 0.06)
    assert ctl.cycle(0.06).status == COMMAND and not ctl.holding


def test_hold_target_is_clipped_to_the_limits(make):
    ctl = make("nan_rare")
    ctl.set_goal(GOAL)
    q, qd = Q.copy(), QD.copy()
    q[0], q[3], qd[0] = 1.2, 0.01, 12.0  # joint4's upper limit is -0.0698; NaN for qd[0] > 10
    feed(ctl, 0.0, q=q, qd=qd)
    command = ctl.cycle(0.0).command
    assert command[3] == PROFILE.position_upper_rad[3] and command[0] == 1.2


def test_reset_zeroes_recurrent_state_and_previous_action(make):
    ctl = make("good_a")
    ctl.set_goal(GOAL)
    for i in range(3):
        feed(ctl, 0.02 * i)
        ctl.cycle(0.02 * i)
    h, _ = ctl.active.runtime.state
    assert np.abs(h).max() > 0 and np.abs(ctl.prev_action).max() > 0
    ctl.reset()
    h, c = ctl.active.runtime.state
    assert not h.any() and not c.any() and not ctl.prev_action.any()


# --- swaps ---------------------------------------------------------------------------

def test_swap_is_applied_at_the_next_cycle_with_zero_state(make, policy_zoo):
    ctl = make("good_a")
    ctl.set_goal(GOAL)
    feed(ctl, 0.0)
    first = ctl.cycle(0.0)
    loaded = ctl.swap("good_b")
    assert ctl.active_name == "good_a" and ctl.pending_name == "good_b"
    with pytest.raises(PolicyRejected, match="another swap is in progress \\(policy 'good_b' takes control"):
        ctl.swap("good_c")
    with pytest.raises(PolicyRejected, match="another swap is in progress"):
        ctl.request_swap(ctl.load_policy("good_c"))
    feed(ctl, 0.02)
    result = ctl.cycle(0.02)
    assert result.swapped_to == "good_b" and ctl.active is loaded and ctl.counters.swaps == 1
    prev = np.clip((first.command - Q) / 0.05, -1, 1)  # the previous action stays
    expected, _ = rollout(policy_zoo / "good_b", 1, prev=prev)
    np.testing.assert_allclose(result.command, expected[0], atol=1e-9)
    assert ctl.pending_name == "" and ctl.swap("good_c").name == "good_c", "the slot is free again"


def test_a_rejected_swap_leaves_the_slot_free(make):
    ctl = make("good_a")
    with pytest.raises(PolicyRejected):
        ctl.swap("corrupt")
    assert ctl.pending_name == "" and ctl.swap("good_b").name == "good_b"


def test_swap_while_another_is_loading_is_refused(make, monkeypatch):
    ctl = make("good_a")
    loading, release = threading.Event(), threading.Event()
    real_load = ctl.load_policy

    def slow_load(name, **kwargs):
        loading.set()
        release.wait(10)
        return real_load(name, **kwargs)

    monkeypatch.setattr(ctl, "load_policy", slow_load)
    results = []
    worker = threading.Thread(target=lambda: results.append(ctl.swap("good_b")))
    worker.start()
    assert loading.wait(10)
    with pytest.raises(PolicyRejected, match="policy 'good_c' rejected: another swap is in progress "
                                             "\\(policy 'good_b' is loading\\)"):
        ctl.swap("good_c")
    release.set()
    worker.join(10)
    assert results[0].name == "good_b" and ctl.pending_name == "good_b"


# --- timing --------------------------------------------------------------------------

def test_missed_cycles_and_overruns(make, clock):
    ctl = make("good_a")
    ctl.set_goal(GOAL)
    for t in (0.0, 0.02, 0.041, 0.1):  # 0.041: jitter, not a miss; 0.1: skipped 2 periods
        feed(ctl, t)
        clock.t = t
        ctl.cycle(t)
    assert ctl.counters.missed_cycles == 2 and ctl.counters.overruns == 0
    feed(ctl, 0.12)
    clock.t = 0.12 + 0.025  # the cycle's work "took" 25 ms
    ctl.cycle(0.12)
    assert ctl.counters.overruns == 1
    assert ctl.achieved_rate_hz() == pytest.approx(4 / 0.12)


def test_state_triggered_controller_counts_no_missed_cycles(make):
    ctl = make("good_a", periodic=False)
    ctl.set_goal(GOAL)
    for t in (0.0, 0.5, 1.0):
        feed(ctl, t)
        ctl.cycle(t)
    assert ctl.counters.missed_cycles == 0


def test_latency_window_percentiles():
    window = LatencyWindow(size=100)
    assert np.isnan(window.p50())
    for v in range(1, 201):
        window.add(v * 1e-6)
    assert len(window) == 100
    assert window.p50() == pytest.approx(150.5e-6) and window.p99() == pytest.approx(199.01e-6)


def test_swapping_back_reuses_the_loaded_runtime_unless_the_files_changed(tmp_path):
    from policies.control import PolicyController
    from policies.testing import export_dummy_policy
    from sim_bridge.profile import load_profile
    for name, seed in (("a", 1), ("b", 2)):
        export_dummy_policy(tmp_path / name, architecture="lstm", hidden=8, seed=seed, name=name)
    ctl = PolicyController(load_profile("panda_like"), tmp_path)
    ctl.set_policy(ctl.load_policy("a"))
    assert ctl.preload(["b", "missing"]) and "missing" in ctl.preload(["missing"])[0]
    first_b = ctl.load_policy("b").runtime
    assert ctl.load_policy("b").runtime is first_b, "an unchanged artifact is not loaded again"
    assert ctl.load_policy("a").runtime is not ctl.active.runtime, "the active runtime is never handed out"
    export_dummy_policy(tmp_path / "b", architecture="lstm", hidden=8, seed=3, name="b")  # files change
    assert ctl.load_policy("b").runtime is not first_b


def test_a_reused_runtime_takes_over_with_zero_state_and_no_new_warmup(make, policy_zoo, monkeypatch):
    ctl = make("good_a")
    ctl.set_goal(GOAL)
    feed(ctl, 0.0)
    ctl.cycle(0.0)
    runtime_a = ctl.active.runtime
    ctl.swap("good_b")
    feed(ctl, 0.02)
    previous = ctl.cycle(0.02)  # good_b takes over; good_a's runtime stays cached with its state
    assert previous.swapped_to == "good_b" and np.any(runtime_a.state[0])
    warmups = []
    monkeypatch.setattr(PolicyRuntime, "warmup", lambda self, n=10: warmups.append(n))
    loaded = ctl.swap("good_a")
    assert loaded.runtime is runtime_a and not warmups, "reused as it is: it passed its warm-up before"
    feed(ctl, 0.04)
    result = ctl.cycle(0.04)
    assert result.swapped_to == "good_a"
    prev = np.clip((previous.command - Q) / 0.05, -1, 1)
    expected, _ = rollout(policy_zoo / "good_a", 1, prev=prev)
    np.testing.assert_allclose(result.command, expected[0], atol=1e-9,
                               err_msg="the reused runtime starts from zero recurrent state")


# --- pacing loads by the control loop -------------------------------------------------

def test_without_a_running_control_loop_a_load_does_not_wait(make, clock):
    ctl = make("good_a")
    assert ctl.yield_to_control() is False, "no cycle has ended yet"
    ctl.end_cycle()
    clock.t = 3 * ctl.period_s + 0.001  # the last cycle ended more than 3 periods ago
    assert ctl.yield_to_control() is False
    assert ctl.swap("good_b").name == "good_b" and ctl.cycles_ended == 1


def test_a_loop_that_stops_delays_a_load_once(make, clock):
    # E.g. a single-threaded executor: the thread that loads would be the one to run the
    # cycles. The first wait times out (2 periods); later steps go on without waiting.
    ctl = make("good_a")
    ctl.end_cycle()  # the fake clock stands still: the loop seems to run, but no cycle ends
    waits = []
    real_wait = ctl._cycle_end.wait_for
    ctl._cycle_end.wait_for = lambda predicate, timeout: waits.append(timeout) or real_wait(predicate, timeout)
    assert ctl.swap("good_b").name == "good_b"
    assert waits == [2 * ctl.period_s], waits
    ctl.end_cycle()  # a cycle ends: the loop runs again and waits resume
    assert ctl.yield_to_control() is False and len(waits) == 2


def test_a_load_takes_each_step_right_after_a_control_cycle(policy_zoo, clock, monkeypatch):
    import policies.control as control

    # A period of 10 s: with the fake clock at 0 the loop counts as running throughout, and
    # no wait can time out (20 s) before this test's "control loop" ends a cycle.
    ctl = PolicyController(PROFILE, policy_zoo, clock=clock, control_rate_hz=0.1, allow_rate_mismatch=True)
    ctl.set_policy(ctl.load_policy("good_a"))
    events = []
    real_yield, real_runtime, real_resolve = ctl.yield_to_control, control.PolicyRuntime, control.resolve_policy
    monkeypatch.setattr(ctl, "yield_to_control", lambda: events.append(("yield", real_yield())) or events[-1][1])
    monkeypatch.setattr(control, "resolve_policy", lambda *a: events.append(("resolve",)) or real_resolve(*a))
    monkeypatch.setattr(control, "PolicyRuntime", lambda *a, **k: events.append(("session",)) or real_runtime(*a, **k))
    real_warmup = PolicyRuntime.warmup
    monkeypatch.setattr(PolicyRuntime, "warmup", lambda self, n=10: events.append(("warmup",)) or real_warmup(self, n))

    ctl.end_cycle()  # the control loop runs
    results = []
    worker = threading.Thread(target=lambda: results.append(ctl.swap("good_b")))
    worker.start()
    ended = 0
    while worker.is_alive():  # the control loop: a cycle ends every millisecond
        ctl.end_cycle()
        ended += 1
        worker.join(0.001)
    assert results and results[0].name == "good_b"
    steps = [i for i, e in enumerate(events) if e[0] != "yield"]
    assert [events[i][0] for i in steps] == ["resolve", "session", "warmup"]
    for i in steps:
        assert events[i - 1] == ("yield", True), f"{events[i][0]} did not wait for the end of a cycle: {events}"
    waited = sum(1 for e in events if e == ("yield", True))
    assert waited >= 6 and ended >= waited, "name check, session (3 steps inside), warm-up: each after a cycle"
