"""Policies whose action is an end-effector step (ee_position_delta): manifest, runtime, swaps, export."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from policies.control import COMMAND, PolicyController  # noqa: E402
from policies.export import export_checkpoint  # noqa: E402
from policies.manifest import load_manifest, parse_manifest  # noqa: E402
from policies.runtime import PolicyRuntime  # noqa: E402
from policies.testing import dummy_manifest_dict, export_dummy_policy  # noqa: E402
from policies.train import Trainer  # noqa: E402
from sim_bridge.actions import EE_DELTA  # noqa: E402
from sim_bridge.config import ConfigError  # noqa: E402
from sim_bridge.envs.vector import make_env  # noqa: E402
from sim_bridge.profile import load_profile  # noqa: E402
from sim_bridge.simulator import make_action  # noqa: E402
from sim_bridge.tasks import make_task  # noqa: E402

from test_training import tiny_config  # noqa: E402

PROFILE = load_profile("panda_like")
JOINTS = list(PROFILE.joint_names)
Q = PROFILE.default_pose_rad.copy()
GOAL = np.array([0.5, 0.0, 0.015])
POSE = np.array([0.42, 0.05, 0.015, np.sin(0.3), np.cos(0.3)])
EE = make_action(PROFILE, make_task("push"), EE_DELTA, ee={"scale_m": 0.03, "max_joint_step_rad": 0.08})
PUSH_OBS_JOINT, PUSH_OBS_EE = 29, 31  # 7 + 7 + (7 | 3 + ee_pos 3 + ee_cmd 3) + 5 + 3


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    zoo = tmp_path_factory.mktemp("ee_zoo")
    export_dummy_policy(zoo / "push_joint", obs_size=PUSH_OBS_JOINT, task="push", name="push_joint")
    export_dummy_policy(zoo / "push_ee", obs_size=PUSH_OBS_EE, act_size=3, task="push", name="push_ee",
                        action=EE, seed=1)
    return zoo


def test_an_ee_manifest_round_trips_and_its_kinematics_must_match_the_joints():
    data = dummy_manifest_dict("push_ee", task="push", joint_names=JOINTS, action=EE)
    manifest = parse_manifest(data)
    assert manifest.action.type == EE_DELTA and manifest.action.size == 3
    assert manifest.action.max_joint_step_rad == 0.08 and manifest.action.scale_rad is None
    assert [(s.name, s.size) for s in manifest.observation.layout[:5]] == [
        ("joint_pos", 7), ("joint_vel", 7), ("prev_action", 3), ("ee_pos", 3), ("ee_cmd", 3)]
    assert parse_manifest(manifest.to_dict()) == manifest

    other = json.loads(json.dumps(data))
    other["action"]["kinematics"]["joint_names"] = JOINTS[::-1]
    with pytest.raises(ConfigError, match="action.kinematics.*must equal the manifest's"):
        parse_manifest(other)
    broken = json.loads(json.dumps(data))
    broken["action"]["kinematics"]["links"][0]["quat"] = [1, 0]
    with pytest.raises(ConfigError, match="action.kinematics.*quat must be 4 finite numbers"):
        parse_manifest(broken)
    wrong_size = json.loads(json.dumps(data))
    wrong_size["action"]["size"] = 7
    with pytest.raises(ConfigError, match="action.size.*3 values"):
        parse_manifest(wrong_size)


def test_the_controller_commands_what_the_ee_action_says_and_a_swap_changes_the_action_size(zoo):
    t = [0.0]
    ctl = PolicyController(PROFILE, zoo, clock=lambda: t[0])
    ctl.set_policy(ctl.load_policy("push_joint"))
    ctl.on_joint_state(JOINTS, list(Q), [0.0] * 7, 0.0)
    ctl.set_goal(GOAL)
    ctl.set_task_input("object_pose", POSE)
    assert ctl.cycle(0.0).status == COMMAND and ctl.prev_action.shape == (7,)
    ctl.swap("push_ee")
    t[0] = 0.02
    ctl.on_joint_state(JOINTS, list(Q), [0.0] * 7, 0.02)
    result = ctl.cycle(0.02)
    assert result.swapped_to == "push_ee" and result.status == COMMAND
    EE.reset()
    runtime = PolicyRuntime(zoo / "push_ee")  # what the node must command: zero previous action (another type)
    a = runtime.act(Q, np.zeros(7), np.zeros(3), POSE, GOAL)
    np.testing.assert_allclose(result.command, EE.targets(Q, np.clip(a.astype(float), -1, 1)), atol=1e-9)
    assert ctl.prev_action.shape == (3,)
    ctl.swap("push_joint")
    t[0] = 0.04
    ctl.on_joint_state(JOINTS, list(Q), [0.0] * 7, 0.04)
    assert ctl.cycle(0.04).swapped_to == "push_joint" and ctl.prev_action.shape == (7,)


def test_a_trained_ee_push_policy_exports_with_its_kinematics_and_the_runtime_acts_as_the_env(tmp_path):
    env_kwargs = {"max_episode_steps": 20, "terminate_on_success": False, "action_type": EE_DELTA,
                  "ee_action": {"scale_m": 0.03}}
    trainer = Trainer(tiny_config(task="push", env_kwargs=env_kwargs), tmp_path / "run", quiet=True)
    trainer.train()
    trainer.close()
    out = export_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt", tmp_path / "zoo" / "tiny_push_ee")
    manifest = load_manifest(out)
    assert manifest.action.type == EE_DELTA and manifest.action.settings["scale_m"] == 0.03
    assert manifest.action.settings["kinematics"]["site"] == "pusher_tip"
    # evaluation builds its env with the policy's own action (whatever the task's default is then)
    from policies.evaluate import policy_action_kwargs
    for path in (out, tmp_path / "run" / "checkpoints" / "latest.pt"):
        kwargs = policy_action_kwargs(str(path))
        assert kwargs["action_type"] == EE_DELTA and kwargs["ee_action"]["scale_m"] == 0.03
        rebuilt = make_env("Sim2Real/Push-v0", task="push", **kwargs).unwrapped.action
        assert rebuilt.describe() == {k: v for k, v in manifest.action.to_dict().items() if k not in ("low", "high")}
    runtime = PolicyRuntime(out)
    env = make_env("Sim2Real/Push-v0", task="push", **env_kwargs)
    obs, _ = env.reset(seed=2)
    lower, upper = PROFILE.position_lower_rad, PROFILE.position_upper_rad
    for _ in range(10):
        action = runtime.step(obs)
        q = env.unwrapped._reading.position_rad.copy()
        got = runtime.joint_targets(action, q, lower, upper)
        obs, *_ = env.step(action)  # the env's own (integrated) command for the same action
        # the runtime walks the manifest's chain in numpy, the env asks MuJoCo: equal to rounding
        np.testing.assert_allclose(got, env.unwrapped.action.last_target, rtol=0, atol=1e-10)


def test_after_a_hold_the_integrated_command_restarts_from_the_measured_joints(zoo):
    t = [0.0]
    ctl = PolicyController(PROFILE, zoo, clock=lambda: t[0], task_input_stale_s=0.25)
    ctl.set_policy(ctl.load_policy("push_ee"))
    ctl.set_goal(GOAL)
    for k in range(3):  # three commands: the command leads by three steps
        t[0] = 0.02 * k
        ctl.on_joint_state(JOINTS, list(Q), [0.0] * 7, t[0])
        ctl.set_task_input("object_pose", POSE)
        assert ctl.cycle(t[0]).status == COMMAND
    runtime = ctl.active.runtime
    assert runtime._action.last_target is not None
    t[0] = 1.0  # the tracker stopped: a hold
    ctl.on_joint_state(JOINTS, list(Q), [0.0] * 7, t[0])
    assert ctl.cycle(t[0]).status != COMMAND
    assert runtime._action.last_target is None, "the hold reset the integrated command"
    ctl.set_task_input("object_pose", POSE)
    result = ctl.cycle(t[0])
    assert result.status == COMMAND
    assert np.abs(result.command - Q).max() <= EE.settings.max_joint_step_rad + 1e-12, \
        "the first command after the hold is one step from the measured joints"
