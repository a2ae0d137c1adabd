"""sim_bridge.robot_import: URDF -> MJCF + robot profile, and the robot check (no ROS)."""
from __future__ import annotations

import hashlib
import re
import shutil
import time
import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

from robot_urdfs import (CONTROLLER_ORDER, SEVEN_ORDER, URDF_ORDER, controllers_yaml, six_dof_urdf, write_obj,
                         write_stl)
from sim_bridge.config import ConfigError
from sim_bridge.envs.task_env import TaskEnv
from sim_bridge.profile import load_profile
from sim_bridge.robot_import import (DEFAULT_LINK_MASS_KG, ImportOptions, check_robot, import_robot, parse_urdf,
                                     read_controllers, read_urdf_file)
from sim_bridge.simulator import ArmSimulator, build_model


def _import(tmp_path, text=None, *, name="six", controllers="default", **options):
    urdf_path = tmp_path / f"{name}.urdf"
    urdf_path.write_text(text if text is not None else six_dof_urdf())
    if controllers == "default":
        controllers = controllers_yaml(tmp_path / "ros2_controllers.yaml")
    opts = ImportOptions(name=name, controllers=controllers, **options)
    return import_robot(read_urdf_file(urdf_path), opts, tmp_path / "robots" / name)


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    return _import(tmp_path_factory.mktemp("six"))


# --- the 6-DoF arm, controller order differs from the URDF's -----------------------------------
def test_profile_takes_the_controller_joint_order_and_the_urdf_limits(six):
    p = six.profile
    assert list(p.joint_names) == CONTROLLER_ORDER != URDF_ORDER
    assert p.actuator_names == tuple(f"act_{j}" for j in CONTROLLER_ORDER)
    # elbow first: its limits (+-2.6 rad, 150 Nm), then shoulder lift (+-2.0), ..., wrist 1 last (28 Nm)
    np.testing.assert_allclose(p.position_lower_rad, [-2.6, -2.0, -3.14, -3.14, -3.14, -3.14])
    np.testing.assert_allclose(p.effort_limit_nm, [150, 150, 150, 28, 28, 28])
    np.testing.assert_allclose(p.velocity_limit_rad_s, 3.14)
    assert np.all((p.default_pose_rad > p.position_lower_rad) & (p.default_pose_rad < p.position_upper_rad))
    assert p.control_rate_hz == 50 and p.physics_rate_hz == 500
    assert np.all(p.kp > 0) and np.all(p.kd > 0)
    # the MJCF actuators drive the joints in the profile's order
    model = build_model(p)
    for j, a in zip(p.joint_names, p.actuator_names):
        aid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, a)
        assert model.joint(model.actuator_trnid[aid, 0]).name == j
    # commanding the first profile joint moves the URDF's elbow
    sim = ArmSimulator(p, seed=0)
    sim.reset(randomize=False)
    target = p.default_pose_rad.copy()
    target[0] += 0.3
    for _ in range(25):
        sim.command(target)
        sim.step()
    elbow = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "elbow_joint")]
    assert sim.data.qpos[elbow] == pytest.approx(target[0], abs=0.02)


def test_scene_table_target_and_end_effector(six):
    model = build_model(six.profile)
    table = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "table")
    assert model.geom_pos[table, 2] + model.geom_size[table, 2] == pytest.approx(0.0)  # table top at z = 0
    assert (model.geom_contype[table], model.geom_conaffinity[table]) == (0, 1)
    arm = [g for g in range(model.ngeom) if model.body_weldid[model.geom_bodyid[g]] != 0]
    assert arm and all(model.geom_conaffinity[g] == 0 for g in arm)  # the arm never collides with itself
    target = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "target")
    assert model.body_mocapid[target] >= 0
    site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "ee_site")
    assert model.body(model.site_bodyid[site]).name == "tool0"  # down the fixed chain wrist_3 -> flange -> tool0
    assert six.profile.provenance["end_effector_link"] == "tool0"


def test_workspace_box_is_inside_the_reach_and_above_the_table(six):
    p = six.profile
    prov = p.provenance["workspace"]
    assert 0.85 < prov["max_reach_m"] < 0.95  # 0.1625 + 0.425 + 0.392 + wrist, horizontally ~0.9 m
    assert np.all(p.reach_low_m < p.reach_high_m) and p.reach_low_m[2] >= 0.05
    assert np.linalg.norm(p.reach_high_m) < prov["max_reach_m"] + 0.2
    assert prov["coverage"] >= 0.95


def test_provenance_names_the_urdf_its_hash_and_the_controller(six, tmp_path):
    prov = six.profile.provenance
    source = prov["source"]
    assert prov["urdf_sha256"] == hashlib.sha256(open(source, "rb").read()).hexdigest()
    assert prov["controllers"]["controller"] == "forward_position_controller"
    assert prov["controllers"]["joints"] == CONTROLLER_ORDER and prov["controllers"]["update_rate_hz"] == 500
    assert any("armature" in d for d in prov["stated_defaults"])
    assert sorted(p.name for p in six.out_dir.iterdir()) == ["emulator_hidden.yaml", "six.xml", "six.yaml"]
    assert not [p for p in six.out_dir.parent.iterdir() if p.name.startswith(".")]


def test_the_arm_emulator_runs_the_imported_arm_with_the_written_hidden_physics(six):
    from real_bridge.emulator import ArmEmulator
    emulator = ArmEmulator(six.profile, six.out_dir / "emulator_hidden.yaml",
                           controller_joints=list(reversed(six.profile.joint_names)))
    target = six.profile.default_pose_rad + 0.2
    for _ in range(100):
        emulator.command(target[::-1])  # commands in the controller's order
        assert emulator.step()
    assert np.abs(emulator.sim.true_joint_positions() - target).max() < 0.05
    assert emulator.sim.dynamics_dict()["body_mass"] == pytest.approx(1.22)


def test_reach_env_on_the_imported_arm_passes_check_env(six):
    env = TaskEnv("reach", profile=six.profile, randomization="default")
    assert env.action_space.shape == (6,)
    check_env(env, skip_render_check=True)
    env.close()


def test_push_runs_on_the_imported_arm_and_the_scripted_pusher_solves_it(six):
    """The Push task adds its puck to any robot's table (add_to_scene): the imported arm's
    massless frames stay massless, the puck takes its mass from its geom."""
    from sim_bridge.oracle import PushOracle
    # joint-space actions: the scripted pusher in Push's default end-effector space solved 2/6 here
    # (a 6-joint arm has no redundancy left for the tool-down rows), not yet looked into
    env = TaskEnv("push", profile=six.profile, randomization="none", terminate_on_success=True,
                  action_type="joint_position_delta")
    check_env(env, skip_render_check=True)
    model = env.sim.model
    assert model.body("flange").mass[0] == 0.0 and model.body("upper_arm_link").mass[0] == pytest.approx(8.4)
    assert model.body("puck").mass[0] > 0
    oracle, n, successes = PushOracle(six.profile, env.task), six.profile.num_joints, 0
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        oracle.reset()
        for _ in range(env.max_episode_steps):
            pose, goal = obs[3 * n:3 * n + 5], obs[3 * n + 5:3 * n + 8]
            obs, _, terminated, truncated, info = env.step(oracle.action(obs[:n].astype(float), pose[:2], goal[:2], puck_z=float(pose[2])))
            if terminated or truncated:
                break
        successes += info["is_success"]
    env.close()
    assert successes >= 3, f"the scripted pusher succeeded in {successes}/6 episodes on the imported arm"


def test_robot_check_passes_and_reports(six):
    report = check_robot(six.profile, goals=6, seed=0)
    text = "\n".join(report.lines())
    assert report.ok, text
    assert sum(ok for _, ok, _ in report.goals) >= 5
    assert not report.episode["blowup"]
    assert "elbow_joint" in report.lines()[3]  # the table lists joints in the profile's order
    assert "upper_arm_link 8.4" in text and "check passed" in text


def test_robot_check_fails_on_a_joint_order_mismatch(six, tmp_path):
    other = controllers_yaml(tmp_path / "ros2_controllers.yaml", URDF_ORDER)
    report = check_robot(six.profile, goals=0, controllers=other)
    assert not report.ok
    assert any("joint order mismatch" in f and "forward_position_controller.ros__parameters.joints" in f
               for f in report.failures), report.failures


def test_robot_check_fails_on_an_unreachable_workspace(six, tmp_path):
    folder = tmp_path / "far"
    shutil.copytree(six.out_dir, folder)
    data = yaml.safe_load((folder / "six.yaml").read_text())
    data["reach_workspace"] = {"low": [1.6, 1.6, 1.2], "high": [1.8, 1.8, 1.4]}
    (folder / "six.yaml").write_text(yaml.safe_dump(data))
    report = check_robot(load_profile(folder / "six.yaml"), goals=3)
    assert not report.ok
    assert any(f.startswith("unreachable workspace: the scripted oracle reached 0/3") for f in report.failures)


def test_robot_check_fails_on_a_zero_mass_body(six, tmp_path):
    folder = tmp_path / "light"
    shutil.copytree(six.out_dir, folder)
    mjcf = folder / "six.xml"
    root = ET.fromstring(mjcf.read_text())
    wrist = next(b for b in root.iter("body") if b.get("name") == "wrist_3_link")
    wrist.find("inertial").set("mass", "1e-06")
    mjcf.write_text(ET.tostring(root, encoding="unicode"))
    report = check_robot(load_profile(folder / "six.yaml"), goals=0)
    assert not report.ok
    assert any("zero-mass body: 'wrist_3_link'" in f for f in report.failures), report.failures


# --- meshes -----------------------------------------------------------------------------------
def test_meshes_resolve_through_the_ament_index_and_mesh_dirs_with_fallbacks(tmp_path, monkeypatch):
    prefix = tmp_path / "install"
    share = prefix / "share" / "my_arm_description"
    write_stl(share / "meshes" / "visual" / "upper_arm.stl")
    write_obj(share / "meshes" / "collision" / "upper_arm.obj")
    (share / "meshes" / "visual" / "wrist_1.dae").write_text("<COLLADA/>")
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "my_arm_description").write_text("")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    extra = tmp_path / "extra_meshes"
    write_stl(extra / "forearm.stl")
    text = six_dof_urdf(
        visual_meshes={"upper_arm_link": "package://my_arm_description/meshes/visual/upper_arm.stl",
                       "forearm_link": "package://not_installed/meshes/forearm.stl",
                       "wrist_1_link": "package://my_arm_description/meshes/visual/wrist_1.dae"},
        collision_meshes={"upper_arm_link": "package://my_arm_description/meshes/collision/upper_arm.obj",
                          "wrist_2_link": "package://not_installed/meshes/wrist_2.stl"})
    warnings = []
    result = _import(tmp_path, text, mesh_dirs=(extra,))
    warnings = result.warnings
    assert result.meshes == 3 and result.fallbacks == 1
    assert sorted(p.name for p in (result.out_dir / "meshes").iterdir()) == ["forearm.stl", "upper_arm.obj",
                                                                            "upper_arm_2.stl"]
    assert any("wrist_1.dae' is a .dae file, which MuJoCo does not read" in w and "collision shape" in w
               for w in warnings), warnings
    assert any("link 'wrist_2_link' collision mesh 'package://not_installed/meshes/wrist_2.stl' was not found"
               in w and "replaced by a primitive cylinder" in w for w in warnings), warnings
    # the written folder is self-contained: it loads after a move
    moved = tmp_path / "moved"
    shutil.move(result.out_dir, moved)
    model = build_model(load_profile(moved / "six.yaml"))
    assert model.nmesh == 3
    meshes = {model.mesh(i).name for i in range(model.nmesh)}
    upper = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "upper_arm_link")
    used = {model.mesh(model.geom_dataid[g]).name for g in range(model.ngeom)
            if model.geom_bodyid[g] == upper and model.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH}
    assert used == {"upper_arm", "upper_arm_2"} <= meshes  # the OBJ collides, the STL is drawn


def test_a_7dof_arm_with_meshes_imports_within_10_s(tmp_path):
    for link in ("shoulder", "upper_arm", "forearm", "wrist_1", "wrist_2", "wrist_3"):
        write_stl(tmp_path / "meshes" / f"{link}.stl", 0.08)
    meshes = {f"{link}_link": f"meshes/{link}.stl" for link in ("shoulder", "upper_arm", "forearm", "wrist_1",
                                                                 "wrist_2", "wrist_3")}
    start = time.monotonic()
    result = _import(tmp_path, six_dof_urdf(seven=True, visual_meshes=meshes), name="seven", controllers=None)
    elapsed = time.monotonic() - start
    assert list(result.profile.joint_names) == SEVEN_ORDER
    assert result.meshes == 6 and result.fallbacks == 0
    assert elapsed <= 10.0, f"import took {elapsed:.1f} s"
    assert any("no controller file" in w for w in result.warnings)


# --- inertia ----------------------------------------------------------------------------------
def test_a_link_without_inertia_gets_the_stated_default_with_a_warning(tmp_path):
    result = _import(tmp_path, six_dof_urdf(no_inertia=("wrist_2_link",)))
    stated = [w for w in result.warnings if w.startswith("link 'wrist_2_link' has no <inertial>")]
    assert stated and f"{DEFAULT_LINK_MASS_KG} kg" in stated[0]
    assert stated[0] in result.profile.provenance["stated_defaults"]
    model = build_model(result.profile)
    assert model.body("wrist_2_link").mass[0] == pytest.approx(DEFAULT_LINK_MASS_KG)
    assert check_robot(result.profile, goals=0).warnings[0].startswith("stated default: link 'wrist_2_link'")


# --- bad input: clear errors naming the file and element, nothing written ----------------------
def _refused(tmp_path, text=None, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        _import(tmp_path, text, **kwargs)
    assert not (tmp_path / "robots").exists()  # nothing written, not even the parent folder
    return str(info.value)


def test_malformed_xml_names_the_file_and_line(tmp_path):
    message = _refused(tmp_path, six_dof_urdf().replace("</link>", "", 1))
    assert re.search(r"six\.urdf: not valid XML at line \d+, column \d+ \(mismatched tag\)", message), message


@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace('<robot name="six">', '<robo name="six">').replace("</robot>", "</robo>"),
     "field '<robot>': the root element is <robo>"),
    (lambda t: t.replace('<child link="forearm_link"/>', '<child link="forearm"/>'),
     "field 'joint 'elbow_joint' <child>': <child link='forearm'> names no <link>"),
    (lambda t: t.replace('effort="28" velocity="3.14"/>', 'velocity="3.14"/>', 1),
     "field 'joint 'wrist_1_joint' <limit effort>': missing"),
    (lambda t: t.replace('lower="-2.6" upper="2.6"', 'lower="2.6" upper="-2.6"'),
     "field 'joint 'elbow_joint' <limit>': lower 2.6 must be below upper -2.6"),
    (lambda t: t.replace('type="revolute"', 'type="hinge"', 1),
     "field 'joint 'shoulder_pan_joint' type': type 'hinge' is not a URDF joint type"),
    (lambda t: t.replace('"tool0"', '"target"'), "field 'link 'target'': the name is used by the stack's scene"),
    (lambda t: t.replace('<origin xyz="0 0.1 0"/>', '<origin xyz="0 0.1"/>').replace(
        '<cylinder radius="0.035" length="0.05"/>', '<mesh filename="missing.stl"/>'),
     "field 'joint 'flange_joint' <origin xyz>': expected 3 numbers, got '0 0.1'"),
])
def test_malformed_urdf_names_the_element(tmp_path, edit, expected):
    message = _refused(tmp_path, edit(six_dof_urdf()))
    assert "six.urdf" in message and expected in message, message


def test_a_xacro_file_is_refused_with_the_command_to_expand_it(tmp_path):
    text = six_dof_urdf().replace('<robot name="six">', '<robot name="six" xmlns:xacro="http://www.ros.org/wiki/'
                                  'xacro"><xacro:property name="reach" value="0.85"/>')
    message = _refused(tmp_path, text)
    assert "six.urdf: field '<robot>': this is a xacro file (<xacro:property>), not a URDF; expand it first" in message


def test_ros2_control_gazebo_and_transmission_tags_are_ignored(tmp_path):
    extra = ('  <ros2_control name="arm" type="system"><hardware><plugin>mock_components/GenericSystem</plugin>'
             '</hardware></ros2_control>\n  <gazebo reference="tool0"><material>Gazebo/Orange</material></gazebo>\n'
             '  <transmission name="t1"><type>transmission_interface/SimpleTransmission</type></transmission>\n')
    assert list(_import(tmp_path, six_dof_urdf(extra=extra)).profile.joint_names) == CONTROLLER_ORDER


def test_a_continuous_joint_needs_a_range(tmp_path):
    text = six_dof_urdf(continuous=("wrist_3_joint",))
    message = _refused(tmp_path, text)
    assert "field 'joint 'wrist_3_joint' type': a continuous joint has no position limits" in message
    assert "--continuous-range-rad" in message
    result = _import(tmp_path, text, continuous_range_rad=3.0)
    assert result.profile.position_upper_rad[CONTROLLER_ORDER.index("wrist_3_joint")] == pytest.approx(3.0)


def test_a_controller_joint_missing_from_the_urdf(tmp_path):
    controllers = controllers_yaml(tmp_path / "ctl.yaml", [*CONTROLLER_ORDER, "gripper_joint"])
    message = _refused(tmp_path, controllers=controllers)
    assert message.startswith(f"{controllers}: field 'forward_position_controller.ros__parameters.joints': "
                              "joint 'gripper_joint' is not in the URDF"), message


def test_a_urdf_joint_missing_from_the_controller_file_until_locked(tmp_path):
    controllers = controllers_yaml(tmp_path / "ctl.yaml", CONTROLLER_ORDER[:-1])  # no wrist_1_joint
    message = _refused(tmp_path, controllers=controllers)
    assert "field 'forward_position_controller.ros__parameters.joints'" in message
    assert "URDF joint(s) ['wrist_1_joint']" in message and "--lock-joints wrist_1_joint" in message
    result = _import(tmp_path, controllers=controllers, lock_joints=("wrist_1_joint",))
    assert "wrist_1_joint" not in result.profile.joint_names
    model = build_model(result.profile)
    assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "wrist_1_joint") == -1  # fixed


def test_controller_file_errors_name_the_field(tmp_path):
    path = tmp_path / "ctl.yaml"
    path.write_text(yaml.safe_dump({"a": {"ros__parameters": {"joints": ["x"]}},
                                    "b": {"ros__parameters": {"joints": ["y"]}}}))
    with pytest.raises(ConfigError, match=r"2 controllers list joints \(\['a', 'b'\]\); name the one"):
        read_controllers(path)
    assert read_controllers(path, "b").joints == ("y",)
    with pytest.raises(ConfigError, match=r"field 'c.ros__parameters': no controller 'c'"):
        read_controllers(path, "c")
    path.write_text(yaml.safe_dump({"a": {"ros__parameters": {"joints": "x"}}}))
    with pytest.raises(ConfigError, match=r"field 'a.ros__parameters.joints': expected a list of joint names"):
        read_controllers(path)


def test_controller_gains_are_used(tmp_path):
    gains = {j: {"p": 900.0, "d": 45.0} for j in CONTROLLER_ORDER[:3]}
    result = _import(tmp_path, controllers=controllers_yaml(tmp_path / "ctl.yaml", gains=gains))
    np.testing.assert_allclose(result.profile.kp[:3], 900.0)
    np.testing.assert_allclose(result.profile.kd[:3], 45.0)
    assert "controller file gains for" in result.profile.provenance["gains"]


def test_an_existing_output_is_replaced_only_with_force(tmp_path):
    first = _import(tmp_path)
    with pytest.raises(ConfigError, match="exists; choose another --out or pass --force"):
        _import(tmp_path)
    assert first.profile_path.is_file()
    urdf = read_urdf_file(tmp_path / "six.urdf")
    again = import_robot(urdf, ImportOptions(name="six", controllers=tmp_path / "ros2_controllers.yaml"),
                         first.out_dir, force=True)
    assert again.profile_path.is_file()
    assert not [p for p in first.out_dir.parent.iterdir() if p.name.startswith(".")]


def test_a_description_that_is_not_a_robot(tmp_path):
    with pytest.raises(ConfigError, match=r"topic /robot_description: field '<robot>': the root element is <sdf>"):
        parse_urdf("<sdf version='1.7'/>", label="topic /robot_description")


def test_a_massless_link_whose_fixed_child_carries_the_mass_is_left_alone(tmp_path):
    """A common URDF pattern: the joint's child is a frame, the mass sits on a link fixed to it."""
    extra = ('  <link name="wrist_3_body"><inertial><mass value="0.3"/><inertia ixx="1e-4" ixy="0" ixz="0" iyy="1e-4" '
             'iyz="0" izz="1e-4"/></inertial></link>\n  <joint name="wrist_3_body_joint" type="fixed">'
             '<parent link="wrist_3_link"/><child link="wrist_3_body"/></joint>\n')
    result = _import(tmp_path, six_dof_urdf(no_inertia=("wrist_3_link",), extra=extra))
    assert not any("wrist_3_link" in w for w in result.warnings), result.warnings
    report = check_robot(result.profile, goals=0)
    assert not any("zero-mass" in f for f in report.failures), report.failures


# --- the README's example arm -------------------------------------------------------------------
def test_the_shipped_example_arm_is_the_test_arm_and_imports(tmp_path):
    """examples/six_arm (the README's walk-through) is this module's 6-DoF arm and imports cleanly."""
    from pathlib import Path
    example = Path(__file__).resolve().parents[2] / "examples" / "six_arm"
    shipped = read_urdf_file(example / "six_arm.urdf")
    # the same robot as six_dof_urdf(name="six_arm"), the comment aside
    strip = lambda text: re.sub(r"<!--.*?-->\n?", "", text, flags=re.S)  # noqa: E731
    assert strip((example / "six_arm.urdf").read_text()) == six_dof_urdf(name="six_arm")
    result = import_robot(shipped, ImportOptions(name="six_arm", controllers=example / "ros2_controllers.yaml"),
                          tmp_path / "robots" / "six_arm")
    assert list(result.profile.joint_names) == CONTROLLER_ORDER
    assert not result.warnings, result.warnings
