"""`sim2real robot import|check` as a user runs them, and the imported arm in the rest of the stack."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robot_urdfs import CONTROLLER_ORDER, URDF_ORDER, controllers_yaml, six_dof_urdf
from sim2real import robot as robot_cli
from sim2real.cli import main

SIM2REAL = str(Path(sys.executable).with_name("sim2real"))


def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([SIM2REAL, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=dict(os.environ), stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """`sim2real robot import` of the 6-DoF test arm (controller order differs from the URDF's)."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "six.urdf").write_text(six_dof_urdf())
    controllers = controllers_yaml(folder / "ros2_controllers.yaml")
    code = main(["robot", "import", "--urdf", str(folder / "six.urdf"), "--controllers", str(controllers),
                 "--name", "six", "--out", str(folder / "robots" / "six")])
    assert code == 0
    return folder / "robots" / "six"


def test_import_writes_the_robot_folder(imported, capsys):
    assert sorted(p.name for p in imported.iterdir()) == ["emulator_hidden.yaml", "six.xml", "six.yaml"]
    from sim_bridge.profile import load_profile
    assert list(load_profile(imported / "six.yaml").joint_names) == CONTROLLER_ORDER


def test_check_prints_the_table_drives_and_draws(imported, tmp_path, capsys):
    code = main(["robot", "check", str(imported), "--goals", "4", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "elbow_joint" in out and "oracle: reached" in out and "randomized episode:" in out
    assert out.rstrip().endswith("check passed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.png", "sample1.png", "sample2.png", "sample3.png"]
    assert all(p.stat().st_size > 1000 for p in tmp_path.iterdir())


def test_check_draws_the_kinematic_chain_without_opengl(imported, tmp_path, capsys, monkeypatch):
    def no_gl(*args, **kwargs):
        raise RuntimeError("an OpenGL platform library has not been loaded")
    monkeypatch.setattr(robot_cli, "_render_mujoco", no_gl)
    assert main(["robot", "check", str(imported), "--goals", "0", "--poses", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(matplotlib kinematic chain from FK; no OpenGL: an OpenGL platform library" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.png", "sample1.png"]


def test_check_fails_with_reasons_and_exit_code_1(imported, tmp_path, capsys):
    other = controllers_yaml(tmp_path / "urdf_order.yaml", URDF_ORDER)
    code = main(["robot", "check", str(imported), "--controllers", str(other), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL: joint order mismatch" in out and out.rstrip().endswith("check FAILED (1 reason(s))")


def test_check_finds_an_imported_name_in_robots_and_a_shipped_profile(imported, tmp_path, monkeypatch):
    monkeypatch.chdir(imported.parent.parent)
    assert robot_cli.resolve_robot("six") == str(Path("robots") / "six" / "six.yaml")
    assert robot_cli.resolve_robot("panda_like") == "panda_like"
    assert main(["robot", "check", "panda_like", "--goals", "3", "--poses", "0", "--out", str(tmp_path)]) == 0


def test_bad_input_exits_2_with_the_file_and_element_and_no_traceback(tmp_path):
    (tmp_path / "bad.urdf").write_text(six_dof_urdf().replace('<limit lower="-2.6"', '<limit lowr="-2.6"'))
    out = run("robot", "import", "--urdf", "bad.urdf", "--name", "bad", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "sim2real robot import: bad.urdf: field 'joint 'elbow_joint' <limit lower>': missing (the stack needs "
        "position, effort and velocity limits for every commanded joint)"), out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "robots").exists()
    controllers_yaml(tmp_path / "ctl.yaml", [*CONTROLLER_ORDER[:-1], "wrist_one_joint"])
    (tmp_path / "six.urdf").write_text(six_dof_urdf())
    out = run("robot", "import", "--urdf", "six.urdf", "--controllers", "ctl.yaml", "--name", "six", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("sim2real robot import: ctl.yaml: field "
                                 "'forward_position_controller.ros__parameters.joints': joint 'wrist_one_joint' "
                                 "is not in the URDF six.urdf"), out.stderr
    out = run("robot", "check", "no_such_robot", cwd=tmp_path)
    assert out.returncode == 2 and "no robot profile named 'no_such_robot': not shipped" in out.stderr
    assert "Traceback" not in out.stderr


def test_import_needs_exactly_one_source(capsys):
    assert main(["robot", "import", "--name", "x"]) == 2
    assert "give exactly one of --urdf FILE, --from-topic TOPIC, --from-node NODE" in capsys.readouterr().err


def test_the_policy_node_refuses_a_policy_for_another_robot(imported):
    """Shipped policies are trained on panda_like: the policy node core on the imported arm refuses them."""
    from policies.control import PolicyController, PolicyRejected
    from sim_bridge.config import package_path
    from sim_bridge.profile import load_profile

    ctl = PolicyController(load_profile(imported / "six.yaml"), package_path("policies", "zoo"))
    with pytest.raises(PolicyRejected, match="trained for robot 'panda_like'; this node runs robot profile 'six'"):
        ctl.load_policy("reach_lstm")


@pytest.mark.ros
def test_sim_runs_the_imported_arm(imported, tmp_path):
    """`sim2real sim --robot-profile PROFILE`: the sim bridge and the scripted controller over ROS."""
    out = run("sim", "--robot-profile", str(imported / "six.yaml"), "--episodes", "1", "--controller", "scripted",
              "--mode", "lockstep", "--out", str(tmp_path), "--json", str(tmp_path / "sim.json"))
    assert out.returncode == 0, out.stderr
    assert "robot 'six'" in out.stdout
    results = json.loads((tmp_path / "sim.json").read_text())
    assert len(results["episodes"]) == 1 and results["successes"] == 1, results


@pytest.mark.ros
def test_real_on_the_imported_arm_refuses_a_policy_trained_for_another_robot(imported, tmp_path):
    """`sim2real real --robot-profile PROFILE`: every node runs the imported arm; the shipped
    policy (trained on panda_like) is refused by the policy node at configure, nothing commands."""
    out = run("real", "--robot-profile", str(imported / "six.yaml"), "--emulator-hidden",
              str(imported / "emulator_hidden.yaml"), "--episodes", "1", "--seed", "1", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "arm emulator up: robot 'six' (6 joints" in out.stderr and "hidden physics from emulator_hidden.yaml" \
        in out.stderr
    assert "configured: robot 'six' (6 joints)" in out.stderr
    assert ("sim2real real: policy: configure failed: policy 'reach_lstm' rejected: trained for robot 'panda_like'; "
            "this node runs robot profile 'six'") in out.stdout + out.stderr


@pytest.mark.ros
def test_a_policy_trained_on_the_imported_arm_is_evaluated_and_deployed_on_it(imported, tmp_path):
    """train -> export -> evaluation on the arm it was trained for (not the default panda_like:
    that evaluation failed on the observation size), then `sim2real real --policy FOLDER`."""
    from policies.config import TrainConfig
    from policies.train import Trainer
    from sim2real.training import export_and_evaluate

    cfg = TrainConfig(robot_profile=str(imported / "six.yaml"), num_envs=2, num_workers=0, num_steps=20, seq_len=10,
                      total_env_steps=40, hidden=8, critic_hidden=(8,), num_minibatches=1, torch_threads=1,
                      env_kwargs={"max_episode_steps": 20, "terminate_on_success": False})
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    try:
        trainer.train()
    finally:
        trainer.close()
    results = export_and_evaluate(tmp_path / "run" / "checkpoints" / "latest.pt", tmp_path / "six_reach", 2)
    assert results["none"]["episodes"] == 2 and results["default"]["episodes"] == 2
    out = run("real", "--robot-profile", str(imported / "six.yaml"), "--emulator-hidden",
              str(imported / "emulator_hidden.yaml"), "--policy", str(tmp_path / "six_reach"), "--episodes", "1",
              "--episode-s", "1", "--seed", "1", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "policy 'six_reach'" in out.stdout and "episode 1/1" in out.stdout, out.stdout


@pytest.mark.parametrize("sub", ["import", "check"])
def test_help_documents_each_option_with_its_default_once(sub):
    out = run("robot", sub, "--help")
    assert out.returncode == 0, out.stderr
    assert f"usage: sim2real robot {sub}" in out.stdout
    text = " ".join(out.stdout.split("╭", 1)[-1].split())
    assert "(default: " in text and "(default " not in text.replace("(default: ", "")
    for option in (["--urdf", "--from-topic", "--from-node", "--controllers", "--mesh-dir", "--lock-joints"]
                   if sub == "import" else ["NAME|PROFILE", "--goals", "--controllers", "--poses"]):
        assert option in out.stdout, option
