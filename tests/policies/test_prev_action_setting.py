"""The task setting ``observe_prev_action``: a policy may be trained and deployed without its
previous action in the observation (the ``prev_action`` signal stays in the layout with size 0).

Why it exists: the Push LSTM trained with sampled actions saw a noisy previous action; its
exported mean action, fed its own noise-free previous action, stalled at the puck. Measured
on 120 randomized episodes of the shipped push_lstm (same seeds): mean action 67, mean action
with the observed previous action replaced by a sampled one 82, zeros 78, sampled actions 82
(docs/push_training.md). The setting has to reach every place that builds or checks a layout:
the env, the manifest, the runtime, the policy node's controller and the training config.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from policies.control import COMMAND, PolicyController
from policies.manifest import MANIFEST_FILE, load_manifest
from policies.runtime import PolicyLoadError, PolicyRuntime
from policies.testing import export_dummy_policy
from sim_bridge.envs.task_env import TaskEnv
from sim_bridge.observations import ObservationBuilder
from sim_bridge.profile import load_profile
from sim_bridge.tasks import ReachTask

PROFILE = load_profile("panda_like")
Q = PROFILE.default_pose_rad.copy()
TARGET = np.array([0.5, 0.1, 0.4])
WITHOUT = {"observe_prev_action": False}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    zoo = tmp_path_factory.mktemp("zoo")
    export_dummy_policy(zoo / "no_prev", obs_size=7 + 7 + 3, name="no_prev", task_settings=WITHOUT, seed=4)
    return zoo


def test_the_layout_keeps_the_signal_with_size_0_and_the_builder_ignores_the_previous_action():
    layout = ReachTask(observe_prev_action=False).observation_layout(7)
    assert [(s.name, s.size) for s in layout[:3]] == [("joint_pos", 7), ("joint_vel", 7), ("prev_action", 0)]
    builder = ObservationBuilder(layout)
    a = builder.build(Q, np.zeros(7), np.ones(7), (TARGET,))
    b = builder.build(Q, np.zeros(7), -np.ones(7), (TARGET,))
    assert a.shape == (17,) and np.array_equal(a, b)
    np.testing.assert_array_equal(a[14:], TARGET.astype(np.float32))   # the target right after the joints
    assert ObservationBuilder(ReachTask().observation_layout(7)).size == 24   # the default observes it


def test_the_push_env_without_the_previous_action_gives_the_same_observation_whatever_it_was():
    env = TaskEnv(task="push", randomization="none", observe_prev_action=False)
    assert env.observation_space.shape == (28,) and env.task.settings == WITHOUT
    obs, _ = env.reset(seed=1)
    env._prev_action = np.array([0.9, -0.9, 0.5])   # what the builder would have copied in
    assert np.array_equal(env._observation(), obs)
    with pytest.raises(ValueError, match="observe_prev_action must be true or false"):
        TaskEnv(task="push", observe_prev_action="no")


def test_the_manifest_records_the_setting_and_the_runtime_ignores_the_previous_action(zoo):
    manifest = load_manifest(zoo / "no_prev")
    assert manifest.task["settings"] == WITHOUT and manifest.observation.size == 17
    one, two = PolicyRuntime(zoo / "no_prev"), PolicyRuntime(zoo / "no_prev")
    for k in range(3):
        q = Q + 0.01 * k
        np.testing.assert_array_equal(one.act(q, np.zeros(7), np.ones(7), TARGET),
                                      two.act(q, np.zeros(7), -np.ones(7), TARGET))
    with pytest.raises(ValueError, match="7 previous actions"):   # still the action's size
        one.act(Q, np.zeros(7), np.ones(3), TARGET)


def _edit_task(directory, settings) -> None:
    path = directory / MANIFEST_FILE
    data = json.loads(path.read_text())
    data["task"]["settings"] = settings
    data.pop("artifact_sha256", None)
    path.write_text(json.dumps(data))


def test_a_manifest_whose_settings_disagree_with_its_layout_is_refused_naming_the_field(zoo, tmp_path):
    import shutil
    for settings, match in (({"observe_prev_action": True}, "layout"),
                            ({"observe_prev_action": "yes"}, "observe_prev_action must be true or false"),
                            ({"observe_previous": False}, "observe_previous")):
        copy = shutil.copytree(zoo / "no_prev", tmp_path / f"c{len(list(tmp_path.iterdir()))}")
        _edit_task(copy, settings)
        with pytest.raises(PolicyLoadError, match=match):
            PolicyRuntime(copy)


def test_the_policy_controller_loads_it_and_commands(zoo):
    ctl = PolicyController(PROFILE, zoo)
    ctl.set_policy(ctl.load_policy("no_prev"))
    ctl.on_joint_state(list(PROFILE.joint_names), list(Q), [0.0] * 7, 0.0)
    ctl.set_goal(TARGET)
    result = ctl.cycle(0.0)
    assert result.status == COMMAND and np.all(np.isfinite(result.command))


def test_the_training_config_puts_the_setting_into_the_env_and_the_exported_layout():
    from policies.config import TrainConfig
    from policies.export import observation_size_for, trained_task
    from policies.train import record_action

    cfg = TrainConfig(task="push", observe_prev_action=False)
    record_action(cfg)
    assert cfg.env_kwargs["observe_prev_action"] is False
    assert trained_task(cfg).settings == WITHOUT and observation_size_for(cfg) == 28
    default = TrainConfig(task="push")
    record_action(default)
    assert "observe_prev_action" not in default.env_kwargs and observation_size_for(default) == 31
