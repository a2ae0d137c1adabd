"""JointMapper: a message's joint names -> the profile's order, cached, with clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from sim_bridge import joints as joints_module
from sim_bridge.joints import JointMapper, JointMappingError
from sim_bridge.profile import load_profile

PROFILE = load_profile("panda_like")
JOINTS = PROFILE.joint_names
HW = ("finger_joint1", "joint7", "joint3", "joint1", "finger_joint2", "joint6", "joint2", "joint5", "joint4")


def in_order(names, per_joint: dict) -> list[float]:
    return [per_joint.get(n, -99.0) for n in names]


def test_maps_reordered_names_with_extra_joints_to_the_profile_order():
    mapper = JointMapper.for_profile(PROFILE)
    values = {j: float(k) for k, j in enumerate(JOINTS)}
    out = mapper.take(list(HW), in_order(HW, values), "positions")
    np.testing.assert_array_equal(out, np.arange(len(JOINTS), dtype=float))
    m = mapper.lookup(HW)
    assert m.complete and not m.foreign and m.missing == () and m.missing_reason() == ""
    np.testing.assert_array_equal(m.index, [HW.index(j) for j in JOINTS])
    assert not m.index.flags.writeable, "the cached index cannot be changed by a caller"


def test_the_map_is_built_once_per_name_tuple(monkeypatch):
    mapper = JointMapper(JOINTS)
    builds = []
    real_build = mapper._build
    monkeypatch.setattr(mapper, "_build", lambda names: builds.append(names) or real_build(names))
    first = mapper.lookup(list(HW))
    for _ in range(100):
        assert mapper.lookup(list(HW)) is first and mapper.lookup(HW) is first
    other = mapper.lookup(JOINTS)
    assert mapper.lookup(HW) is first and mapper.lookup(JOINTS) is other
    assert builds == [HW, tuple(JOINTS)]


def test_the_cache_is_bounded_and_stays_correct():
    mapper = JointMapper(["a", "b"])
    for k in range(3 * joints_module.MAX_CACHED):
        names = ("b", f"extra{k}", "a")
        np.testing.assert_array_equal(mapper.take(names, [2.0, 0.0, 1.0]), [1.0, 2.0])
    assert len(mapper._cache) <= joints_module.MAX_CACHED


def test_missing_joints_are_named_in_the_error():
    mapper = JointMapper.for_profile(PROFILE)
    names = [n for n in HW if n not in ("joint2", "joint7")]
    m = mapper.lookup(names)
    assert not m.complete and not m.foreign and m.index is None and m.missing == ("joint2", "joint7")
    with pytest.raises(JointMappingError, match=r"lacks joint\(s\) \['joint2', 'joint7'\] of robot profile "
                                                r"'panda_like'"):
        m.take([0.0] * len(names))
    with pytest.raises(JointMappingError, match="joint2"):
        mapper.index(names)
    assert issubclass(JointMappingError, ValueError)
    # the joints that are there: where they go and where they come from (a bag fills the rest with NaN)
    present = [j for j in JOINTS if j in names]
    np.testing.assert_array_equal(m.target_columns, [JOINTS.index(j) for j in present])
    np.testing.assert_array_equal(m.source_columns, [names.index(j) for j in present])


def test_a_source_without_any_target_joint_is_foreign():
    m = JointMapper(JOINTS).lookup(["gripper_left", "gripper_right"])
    assert m.foreign and not m.complete and m.target_columns.size == 0
    assert not JointMapper(JOINTS).lookup([]).complete


def test_wrong_lengths_are_errors_and_optional_fields_are_none():
    mapper = JointMapper(JOINTS, owner="robot profile 'x'")
    with pytest.raises(JointMappingError, match="has 9 names but 7 positions"):
        mapper.take(HW, [0.0] * 7, "positions")
    m = mapper.lookup(HW)
    assert m.take_if_complete([]) is None and m.take_if_complete([0.0] * 3) is None
    np.testing.assert_array_equal(m.take_if_complete([1.0] * 9), np.ones(7))
    assert mapper.lookup(HW[:3]).take_if_complete([1.0] * 3) is None, "incomplete: nothing to take"


def test_non_finite_values_are_passed_through_for_the_caller_to_judge():
    out = JointMapper(["a", "b"]).take(["b", "a"], [np.nan, np.inf])
    assert np.isinf(out[0]) and np.isnan(out[1])


def test_a_repeated_source_name_maps_to_its_last_occurrence():
    np.testing.assert_array_equal(JointMapper(["a", "b"]).take(["a", "b", "a"], [1.0, 2.0, 3.0]), [3.0, 2.0])


@pytest.mark.parametrize("names, why", [([], "at least one"), (["a", "b", "a"], r"\['a'\] occur more than once")])
def test_the_target_order_must_be_unique_and_non_empty(names, why):
    with pytest.raises(ValueError, match=why):
        JointMapper(names)
