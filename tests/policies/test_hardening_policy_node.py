"""Issue 12 (policy half) with real rclpy and DDS: an edited manifest and a slow graph are
refused over the parameter service; a policy that overruns at runtime raises WARN, then ERROR
and a fall-back (logged once); a new policy that outputs NaN in its first cycles reverts."""
from __future__ import annotations

import time

import numpy as np
import pytest

from rigs import ros, wait_until  # noqa: F401 (ros: autouse fixture)

pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from policies.control import FAULT_LIMIT  # noqa: E402
from test_policy_node import PERIOD, rig_factory  # noqa: E402,F401 (rig_factory: fixture)

pytestmark = pytest.mark.ros


def _slow_down(runtime, seconds: float, steps: int | None = None) -> None:
    """Make a loaded (warmed-up, fast) runtime's next ``steps`` (None: all) steps take ``seconds``
    more: a policy that passed its warm-up and then overruns at runtime (a loaded machine, a
    thermal throttle)."""
    act, left = runtime.act, [steps]

    def slow_act(*args):
        if left[0] is None or left[0] > 0:
            time.sleep(seconds)
            left[0] = None if left[0] is None else left[0] - 1
        return act(*args)
    runtime.act = slow_act


@pytest.mark.parametrize("name, why", [
    ("tampered_scale", "the manifest was edited after export"),
    ("big_scale", "action.scale_rad 10 rad per command is more than 2 x joint1's velocity limit"),
    ("pose_outside", "default_pose_rad outside the profile's position limits: joint1 9 rad"),
    ("other_robot", "trained for robot 'ur5e'; this node runs robot profile 'panda_like'"),
    ("nan_some", "outputs non-finite values during warm-up on random state"),
])
def test_refused_policies_over_the_parameter_service(rig_factory, name, why):
    rig = rig_factory(autostart=True)
    assert rig.wait_commands(5)
    result = rig.set_param("policy", name)
    assert not result.successful and why in result.reason, result.reason
    assert result.reason.endswith("; 'good_a' keeps control")
    assert rig.node.controller.active_name == "good_a" and rig.wait_commands(5)


@pytest.mark.slow
def test_a_graph_slower_than_the_period_is_refused_with_the_numbers(rig_factory):
    rig = rig_factory(autostart=True)
    assert rig.wait_commands(5)
    result = rig.set_param("policy", "slow", timeout=30.0)
    assert not result.successful, "a ~50 ms graph cannot keep a 20 ms period"
    assert "too slow for 50 Hz: warm-up inference median" in result.reason, result.reason
    assert "of the 20.0 ms control period (10.0 ms)" in result.reason, result.reason
    assert rig.node.controller.active_name == "good_a" and rig.wait_commands(5)


def test_runtime_overruns_warn_then_fall_back_to_the_previous_policy(rig_factory, capfd):
    rig = rig_factory(autostart=True)
    assert rig.wait_commands(5)
    assert rig.set_param("policy", "good_b").successful
    ctl = rig.node.controller
    assert wait_until(lambda: ctl.active_name == "good_b", 5.0) and ctl.previous.name == "good_a"
    _slow_down(ctl.active.runtime, 1.5 * PERIOD)
    assert wait_until(lambda: ctl.counters.fallbacks == 1, 10.0), ctl.counters
    assert ctl.active_name == "good_a" and "overran the 20 ms control period" in ctl.fault
    diag = rig.latest_diagnostics(since=time.monotonic())
    assert diag["level"] == DiagnosticStatus.ERROR and "FAULT: policy 'good_b' overran" in diag["message"], diag
    assert diag["fallbacks"] == "1" and int(diag["overruns"]) >= FAULT_LIMIT
    assert rig.wait_commands(10), "the previous policy commands"
    assert rig.call(rig.list_client, Trigger.Request(), timeout=5.0).success, "the node stays responsive"
    logged = capfd.readouterr().err
    assert logged.count("fell back to the previous policy 'good_a'") == 1, logged[-2000:]
    assert rig.set_param("policy", "good_c").successful
    assert wait_until(lambda: ctl.active_name == "good_c" and not ctl.fault, 5.0)
    assert rig.latest_diagnostics(since=time.monotonic())["level"] == DiagnosticStatus.OK


def test_overruns_are_a_warning_before_the_fault_limit(rig_factory):
    rig = rig_factory(autostart=True)
    assert rig.wait_commands(5)
    ctl = rig.node.controller
    since = time.monotonic()
    _slow_down(ctl.active.runtime, 1.5 * PERIOD, steps=FAULT_LIMIT - 2)  # fewer than FAULT_LIMIT: no fall-back
    assert wait_until(lambda: ctl.counters.overruns >= FAULT_LIMIT - 2, 10.0)
    assert wait_until(lambda: any(t >= since and s.level == DiagnosticStatus.WARN and "OVERRUNS" in s.message
                                  for t, s in rig.diagnostics), 10.0), [s.message for _, s in rig.diagnostics]
    assert ctl.counters.fallbacks == 0 and not ctl.disabled and ctl.active_name == "good_a"


def test_overruns_without_a_previous_policy_hold_with_an_error(rig_factory):
    rig = rig_factory(autostart=True)
    assert rig.wait_commands(5)
    ctl = rig.node.controller
    _slow_down(ctl.active.runtime, 1.5 * PERIOD)
    assert wait_until(lambda: ctl.disabled, 10.0)
    assert rig.wait_commands(5)
    held = rig.commands[-1][1]
    np.testing.assert_array_equal(held, ctl.hold_target)
    diag = rig.latest_diagnostics(since=time.monotonic())
    assert diag["level"] == DiagnosticStatus.ERROR and "no previous policy to fall back to" in diag["message"]
    assert rig.set_param("policy", "good_b").successful
    assert wait_until(lambda: ctl.active_name == "good_b" and not ctl.disabled, 5.0)


def test_a_new_policy_nan_in_its_first_cycles_reverts(rig_factory, capfd):
    rig = rig_factory(autostart=True)
    assert rig.wait_commands(5)
    ctl = rig.node.controller
    rig.qd[0] = 12.0  # nan_rare: NaN when joint1's velocity > 10 rad/s; good_a does not care
    assert rig.set_param("policy", "nan_rare").successful, "it passes warm-up"
    assert wait_until(lambda: ctl.counters.fallbacks == 1, 5.0)
    assert ctl.active_name == "good_a" and "policy 'nan_rare' output non-finite values in its first" in ctl.fault
    assert rig.wait_commands(10) and not ctl.holding, "good_a commands again"
    diag = rig.latest_diagnostics(since=time.monotonic())
    assert diag["level"] == DiagnosticStatus.ERROR and diag["policy"] == "good_a"
    assert capfd.readouterr().err.count("fell back to the previous policy 'good_a'") == 1
