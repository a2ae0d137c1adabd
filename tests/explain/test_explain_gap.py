"""Recorded episodes next to simulated ones: the observations rebuilt from joint states, commands and
the goal are the env's own; layouts a recording cannot give, or another robot's joints, are refused."""
from __future__ import annotations

import numpy as np
import pytest

from policies.explain.gap import rebuild_observations
from policies.explain.loading import ExplainError
from sim_bridge.envs.vector import make_env
from sim_bridge.observations import Signal, action_to_joint_targets


@pytest.mark.parametrize("observe_prev_action", [True, False])
def test_rebuilt_observations_are_the_envs(observe_prev_action):
    env = make_env("Sim2Real/Reach-v0", randomization="none", terminate_on_success=False,
                   observe_prev_action=observe_prev_action)
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


def test_bag_episodes_replay_to_the_recorded_actions(tmp_path):
    """--bags: emulator episodes of reach_lstm written as `sim2real real --record` writes them, read back
    (calibration's loader), rebuilt and replayed: the actor reproduces the commands it sent."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calibration"))
    from calib_bags import write_episode_bag

    from calibration.episodes import emulator_episodes
    from policies.explain.gap import replay
    from policies.explain.loading import load_explained_policy
    from policies.manifest import shipped_zoo
    from sim2real.explain import ExplainConfig, _recorded_episodes
    from sim_bridge.profile import load_profile

    zoo = shipped_zoo() / "reach_lstm"
    bag = tmp_path / "bag"
    write_episode_bag(bag, emulator_episodes(zoo, 2, steps=40, seed=1), load_profile("panda_like").joint_names)
    real = _recorded_episodes(ExplainConfig(policy="reach_lstm", bags=(bag,)), zoo)
    assert real["source"] == "1 bag(s)" and real["hidden"] is None and len(real["episodes"]) == 2
    policy = load_explained_policy(zoo)
    env = make_env("Sim2Real/Reach-v0", randomization="none")
    obs = [dict(zip(("obs", "actions"), rebuild_observations(env.observation_layout, e["position"], e["velocity"],
                                                             e["command"], e["goal"], env.action_scale_rad)))
           for e in real["episodes"]]
    rec, reproduction = replay(policy.actor, obs, 50.0, env.dynamics_names, None, "bag")
    assert rec.obs.shape == (2, 39, 24) and reproduction < 1e-4
