"""Recorded episodes next to simulated ones: the observations rebuilt from joint states, commands and
the goal are the env's own; layouts a recording cannot give, or another robot's joints, are refused."""
from __future__ import annotations

import numpy as np
import pytest

from policies.explain.gap import rebuild_observations
from policies.explain.loading import ExplainError
from sim_bridge.envs.vector import make_env
from sim_bridge.observations import Signal, action_to_joint_targets


def test_rebuilt_observations_are_the_envs():
    env = make_env("Sim2Real/Reach-v0", randomization="none", terminate_on_success=False)
    obs, _ = env.reset(seed=3)
    p = env.profile
    rng = np.random.default_rng(0)
    q, v, cmd, seen, sent = [], [], [], [], []
    for _ in range(30):
        a = rng.uniform(-0.6, 0.6, p.num_joints)
        seen.append(obs)
        sent.append(a)
        q.append(obs[:7])
        v.append(obs[7:14])
        cmd.append(action_to_joint_targets(a, obs[:7].astype(float), env.action_scale_rad,
                                           p.position_lower_rad, p.position_upper_rad))
        obs, *_ = env.step(a)
    q.append(obs[:7])
    v.append(obs[7:14])
    rebuilt, actions = rebuild_observations(env.observation_layout, np.array(q), np.array(v), np.array(cmd),
                                            env.task_state, env.action_scale_rad)
    np.testing.assert_allclose(rebuilt, np.array(seen), atol=2e-6)
    np.testing.assert_allclose(actions, np.array(sent), atol=2e-5)


def test_a_layout_the_recording_cannot_give_is_refused():
    layout = (Signal("joint_pos", 7, "rad", ""), Signal("joint_vel", 7, "rad/s", ""),
              Signal("prev_action", 7, "1", ""), Signal("object_pose", 5, "m", ""), Signal("goal_pos", 3, "m", ""))
    z = np.zeros((5, 7))
    with pytest.raises(ExplainError, match="object_pose"):
        rebuild_observations(layout, z, z, z[:4], np.zeros(3), 0.05)


def test_another_robots_joints_are_refused():
    layout = (Signal("joint_pos", 7, "rad", ""), Signal("joint_vel", 7, "rad/s", ""),
              Signal("prev_action", 7, "1", ""), Signal("target_pos", 3, "m", ""))
    z = np.zeros((5, 6))
    with pytest.raises(ExplainError, match="6 joints, the policy 7"):
        rebuild_observations(layout, z, z, z[:4], np.zeros(3), 0.05)
