"""Robot profile (sim_bridge.profile) and its contract with the MJCF (simulator.build_model).

Bad profiles are built from the shipped YAML: load the dict, change one thing, write it
to tmp_path. Every error must be a ConfigError whose message names the file and field.
"""
from __future__ import annotations

import copy
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml

from sim_bridge.config import ConfigError
from sim_bridge.profile import load_profile, parse_profile, shipped_profile_path
from sim_bridge.simulator import build_model

SHIPPED = shipped_profile_path("panda_like")


@pytest.fixture(scope="module")
def shipped_dict() -> dict:
    data = yaml.safe_load(SHIPPED.read_text())
    # mjcf is relative to the profile file; a copy in tmp_path needs the absolute path.
    data["mjcf"] = str((SHIPPED.parent / data["mjcf"]).resolve())
    return data


def write_profile(tmp_path: Path, data: dict, name: str = "bad_profile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def expect_error(path: Path, field: str, *, build: bool = False, contains: str | None = None) -> ConfigError:
    """Load (and optionally build) a profile; assert a ConfigError naming file and field."""
    with pytest.raises(ConfigError) as info:
        profile = load_profile(path)
        if build:
            build_model(profile)
    message = str(info.value)
    assert str(path) in message, f"error does not name the file {path}: {message}"
    assert field in message, f"error does not name the field {field!r}: {message}"
    if contains is not None:
        assert contains in message, f"error does not mention {contains!r}: {message}"
    return info.value


# --- the shipped profile ----------------------------------------------------------------

def test_shipped_profile_loads_with_consistent_shapes():
    profile = load_profile("panda_like")
    n = profile.num_joints
    assert n == 7
    assert profile.name == "panda_like"
    assert profile.mjcf_path.is_file(), profile.mjcf_path
    assert len(profile.actuator_names) == n
    for arr in (profile.position_lower_rad, profile.position_upper_rad, profile.velocity_limit_rad_s,
                profile.effort_limit_nm, profile.default_pose_rad, profile.kp, profile.kd):
        assert arr.shape == (n,)
        assert not arr.flags.writeable, "profile arrays must be read-only"
    assert np.all(profile.position_lower_rad < profile.position_upper_rad)
    assert np.all((profile.default_pose_rad >= profile.position_lower_rad)
                  & (profile.default_pose_rad <= profile.position_upper_rad))
    assert profile.decimation == 10  # 500 Hz physics / 50 Hz control
    assert profile.control_period_s == pytest.approx(0.02)
    # by name and by path give the same profile
    by_path = load_profile(SHIPPED)
    assert by_path.joint_names == profile.joint_names
    np.testing.assert_array_equal(by_path.kp, profile.kp)


def test_unknown_shipped_profile_name_is_a_config_error():
    with pytest.raises(ConfigError, match="no robot profile named 'no_such_arm': not shipped"):
        load_profile("no_such_arm")


def test_an_imported_robot_loads_by_name_from_robots_or_by_its_folder(tmp_path, monkeypatch):
    """``sim2real robot import --name arm2`` writes robots/arm2/arm2.yaml: every command then
    takes ``--robot-profile arm2`` (from the working directory it was imported in)."""
    import yaml

    data = yaml.safe_load(SHIPPED.read_text())
    data["name"] = "arm2"
    data["mjcf"] = str((SHIPPED.parent / data["mjcf"]).resolve())
    folder = tmp_path / "robots" / "arm2"
    folder.mkdir(parents=True)
    (folder / "arm2.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    assert load_profile("arm2").name == "arm2"
    assert load_profile(str(folder)).name == "arm2"
    assert load_profile("panda_like").name == "panda_like"  # a shipped name wins
    with pytest.raises(ConfigError, match=r"no robot profile named 'arm3'.*not imported \(looked for .*robots/arm3/arm3.yaml\)"):
        load_profile("arm3")


def test_build_model_writes_profile_gains_and_limits_into_model():
    profile = load_profile("panda_like")
    model = build_model(profile)
    assert model.opt.timestep == pytest.approx(1.0 / profile.physics_rate_hz)
    for j, (joint, act) in enumerate(zip(profile.joint_names, profile.actuator_names)):
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint)
        aid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, act)
        assert model.actuator_trnid[aid, 0] == jid
        assert model.actuator_gainprm[aid, 0] == profile.kp[j], f"kp of {act}"
        assert model.actuator_biasprm[aid, 1] == -profile.kp[j], f"bias kp of {act}"
        assert model.actuator_biasprm[aid, 2] == -profile.kd[j], f"kd of {act}"
        np.testing.assert_array_equal(model.actuator_forcerange[aid],
                                      [-profile.effort_limit_nm[j], profile.effort_limit_nm[j]],
                                      err_msg=f"forcerange of {act}")
        assert model.actuator_forcelimited[aid] == 1
        np.testing.assert_array_equal(model.jnt_range[jid],
                                      [profile.position_lower_rad[j], profile.position_upper_rad[j]],
                                      err_msg=f"jnt_range of {joint}")
        assert model.jnt_limited[jid] == 1
        np.testing.assert_array_equal(model.actuator_ctrlrange[aid], model.jnt_range[jid])


def test_profile_values_override_the_mjcf(tmp_path, shipped_dict):
    """The profile is the source of truth: different gains/limits in the YAML end up in the model."""
    data = copy.deepcopy(shipped_dict)
    data["gains"]["kp"] = [111.0, 222.0, 333.0, 444.0, 55.0, 66.0, 77.0]
    data["gains"]["kd"] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    data["limits"]["effort_nm"] = [10.0, 20.0, 30.0, 40.0, 5.0, 6.0, 7.0]
    data["limits"]["position_lower_rad"][0] = -1.0
    data["limits"]["position_upper_rad"][0] = 1.25
    data["physics_rate_hz"] = 1000.0
    profile = load_profile(write_profile(tmp_path, data, "custom.yaml"))
    model = build_model(profile)
    assert model.opt.timestep == pytest.approx(0.001)
    aids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, a) for a in profile.actuator_names]
    jids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in profile.joint_names]
    np.testing.assert_array_equal(model.actuator_gainprm[aids, 0], data["gains"]["kp"])
    np.testing.assert_array_equal(-model.actuator_biasprm[aids, 2], data["gains"]["kd"])
    np.testing.assert_array_equal(model.actuator_forcerange[aids, 1], data["limits"]["effort_nm"])
    np.testing.assert_array_equal(model.jnt_range[jids[0]], [-1.0, 1.25])


def test_with_rates_validates_ratio():
    profile = load_profile("panda_like")
    faster = profile.with_rates(control_rate_hz=100.0)
    assert faster.decimation == 5
    with pytest.raises(ConfigError, match="physics_rate_hz"):
        profile.with_rates(control_rate_hz=75.0)  # 500 / 75 is not an integer


# --- bad profiles -------------------------------------------------------------------------

def test_missing_field(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    del data["end_effector_site"]
    expect_error(write_profile(tmp_path, data), "end_effector_site", contains="missing")


def test_missing_nested_field(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    del data["gains"]["kd"]
    expect_error(write_profile(tmp_path, data), "gains.kd", contains="missing")


@pytest.mark.parametrize("section,key", [
    ("limits", "position_lower_rad"), ("limits", "effort_nm"), ("gains", "kp"), (None, "default_pose_rad"),
])
def test_wrong_list_length(tmp_path, shipped_dict, section, key):
    data = copy.deepcopy(shipped_dict)
    holder = data[section] if section else data
    holder[key] = holder[key][:-1]
    field = f"{section}.{key}" if section else key
    expect_error(write_profile(tmp_path, data), field, contains="expected 7 values")


def test_lower_limit_not_below_upper(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    data["limits"]["position_lower_rad"][2] = data["limits"]["position_upper_rad"][2]
    expect_error(write_profile(tmp_path, data), "limits.position_lower_rad", contains="joint3")


def test_default_pose_outside_limits(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    data["default_pose_rad"][3] = 0.5  # joint4 range is [-3.07, -0.07]
    expect_error(write_profile(tmp_path, data), "default_pose_rad", contains="joint4")


def test_non_integer_physics_control_ratio(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    data["physics_rate_hz"] = 475.0  # 9.5 physics steps per control step
    expect_error(write_profile(tmp_path, data), "physics_rate_hz", contains="integer multiple")


def test_physics_slower_than_control(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    data["physics_rate_hz"] = 25.0
    expect_error(write_profile(tmp_path, data), "physics_rate_hz")


def test_unknown_top_level_field_typo(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    data["target_bdy"] = data.pop("target_body")  # optional field, so only the typo check catches it
    expect_error(write_profile(tmp_path, data), "target_bdy", contains="unknown field")


def test_unknown_nested_field_typo(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    data["limits"]["velocity_rad_sec"] = data["limits"]["velocity_rad_s"]
    err = expect_error(write_profile(tmp_path, data), "velocity_rad_sec", contains="unknown field")
    assert err.field == "limits", f"the unknown key should be reported inside 'limits', got {err.field!r}"


def test_typo_of_required_field_names_the_expected_field(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    data["gains"]["kpp"] = data["gains"].pop("kp")
    expect_error(write_profile(tmp_path, data), "gains.kp")


def test_joint_name_not_in_mjcf(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    data["joint_names"][4] = "joint_five"
    path = write_profile(tmp_path, data)
    load_profile(path)  # the file itself is well-formed; the MJCF check happens at build time
    expect_error(path, "joint_names", build=True, contains="joint_five")


def test_actuator_name_not_in_mjcf(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    data["actuator_names"][0] = "motor1"
    expect_error(write_profile(tmp_path, data), "actuator_names", build=True, contains="motor1")


def test_actuator_drives_wrong_joint(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    acts = data["actuator_names"]
    acts[0], acts[1] = acts[1], acts[0]
    expect_error(write_profile(tmp_path, data), "actuator_names", build=True, contains="act2")


def test_link_and_site_names_checked_against_mjcf(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    data["link_names"] = ["link1", "link_8"]
    expect_error(write_profile(tmp_path, data, "links.yaml"), "link_names", build=True, contains="link_8")
    data = copy.deepcopy(shipped_dict)
    data["end_effector_site"] = "tool0"
    expect_error(write_profile(tmp_path, data, "site.yaml"), "end_effector_site", build=True, contains="tool0")


def test_missing_mjcf_file(tmp_path, shipped_dict):
    data = copy.deepcopy(shipped_dict)
    data["mjcf"] = "models/does_not_exist.xml"  # relative to the profile file
    expect_error(write_profile(tmp_path, data), "mjcf", contains=str(tmp_path / "models/does_not_exist.xml"))


def test_relative_mjcf_resolved_against_profile_folder(tmp_path, shipped_dict):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "arm.xml").write_text(Path(shipped_dict["mjcf"]).read_text())
    data = copy.deepcopy(shipped_dict)
    data["mjcf"] = "models/arm.xml"
    profile = load_profile(write_profile(tmp_path, data, "rel.yaml"))
    assert profile.mjcf_path == tmp_path / "models" / "arm.xml"
    build_model(profile)


@pytest.mark.parametrize("version", [2, 1.5])
def test_unsupported_profile_version(tmp_path, shipped_dict, version):
    data = copy.deepcopy(shipped_dict)
    data["profile_version"] = version
    expect_error(write_profile(tmp_path, data), "profile_version")


def test_missing_profile_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="file not found") as info:
        load_profile(path)
    assert str(path) in str(info.value)


def test_parse_profile_without_source_uses_field_only_messages(shipped_dict):
    data = copy.deepcopy(shipped_dict)
    data["gains"]["kp"][0] = -1.0
    with pytest.raises(ConfigError, match="gains.kp"):
        parse_profile(data)
