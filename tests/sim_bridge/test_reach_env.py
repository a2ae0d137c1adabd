"""The gymnasium env Sim2Real/Reach-v0 (sim_bridge.envs.task_env.TaskEnv with the reach task)."""
from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim_bridge  # noqa: F401  (registers Sim2Real/Reach-v0)
from sim_bridge.envs import REACH_ID
from sim_bridge.observations import layout_size
from sim_bridge.tasks import ReachTask
from sim_bridge.oracle import ReachOracle
from sim_bridge.simulator import build_model


def make(**kwargs):
    return gym.make(REACH_ID, **kwargs)


def test_env_is_registered_on_import():
    assert REACH_ID == "Sim2Real/Reach-v0"
    assert REACH_ID in gym.registry


def test_gymnasium_env_checker_passes():
    env = make()
    with warnings.catch_warnings():
        # the checker only *warns* about unbounded Box observations, which are intended here
        warnings.filterwarnings("ignore", message=".*Box observation space (minimum|maximum) value.*")
        check_env(env.unwrapped)
    env.close()


def test_observation_layout_and_dtype():
    env = make()
    u = env.unwrapped
    n = u.profile.num_joints
    layout = ReachTask().observation_layout(n)
    assert [s.name for s in layout] == ["joint_pos", "joint_vel", "prev_action", "target_pos"]
    assert env.observation_space.shape == (layout_size(layout),) == (3 * n + 3,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.shape == (n,)
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape
    assert env.observation_space.contains(obs)
    action = np.linspace(-0.5, 0.5, n).astype(np.float32)
    obs, *_ , info = env.step(action)
    offsets = np.cumsum([0] + [s.size for s in layout])
    sl = {s.name: obs[offsets[i]:offsets[i + 1]] for i, s in enumerate(layout)}
    # noise on positions is at most a few mrad in the default file
    np.testing.assert_allclose(sl["joint_pos"], u.sim.true_joint_positions(), atol=0.03)
    np.testing.assert_allclose(sl["joint_vel"], u.sim.true_joint_velocities(), atol=0.3)
    np.testing.assert_array_equal(sl["prev_action"], action)
    np.testing.assert_array_equal(sl["target_pos"], info["target_pos"].astype(np.float32))
    lo, hi = u.profile.reach_low_m, u.profile.reach_high_m
    assert np.all(info["target_pos"] >= lo) and np.all(info["target_pos"] <= hi)
    env.close()


def test_dynamics_info_changes_between_resets_under_default():
    env = make(randomization="default")
    u = env.unwrapped
    _, info1 = env.reset(seed=0)
    _, info2 = env.reset()
    assert len(info1["dynamics"]) == len(u.dynamics_names) > 0
    assert info1["dynamics"].dtype == np.float32
    assert not np.allclose(info1["dynamics"], info2["dynamics"]), "dynamics did not change between resets"
    nominal = u.sim.randomizer.nominal_values
    assert not np.allclose(info1["dynamics"], nominal)
    # step info carries the same vector as the reset info
    *_, step_info = env.step(np.zeros(7, np.float32))
    np.testing.assert_array_equal(step_info["dynamics"], info2["dynamics"])
    env.close()


def test_dynamics_info_is_nominal_under_none():
    env = make(randomization="none")
    u = env.unwrapped
    fresh = build_model(u.profile)
    for seed in (0, 1):
        _, info = env.reset(seed=seed)
        assert len(info["dynamics"]) == len(u.dynamics_names) == 0
        np.testing.assert_array_equal(u.sim.model.body_mass, fresh.body_mass)
        np.testing.assert_array_equal(u.sim.model.dof_damping, fresh.dof_damping)
        np.testing.assert_array_equal(u.sim.model.opt.gravity, fresh.opt.gravity)
    env.close()


def test_dynamics_option_pins_the_vector():
    env = make(randomization="default")
    u = env.unwrapped
    nominal = u.sim.randomizer.nominal_values
    _, info = env.reset(seed=0, options={"dynamics": nominal})
    np.testing.assert_array_equal(info["dynamics"], nominal.astype(np.float32))
    env.close()


def test_same_seed_same_first_observation_and_dynamics():
    env_a, env_b = make(), make()
    obs_a, info_a = env_a.reset(seed=42)
    obs_b, info_b = env_b.reset(seed=42)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(info_a["dynamics"], info_b["dynamics"])
    np.testing.assert_array_equal(info_a["target_pos"], info_b["target_pos"])
    step_a = env_a.step(np.full(7, 0.3, np.float32))
    step_b = env_b.step(np.full(7, 0.3, np.float32))
    np.testing.assert_array_equal(step_a[0], step_b[0])
    assert step_a[1] == step_b[1]
    obs_c, info_c = env_a.reset(seed=43)
    assert not np.array_equal(obs_a, obs_c)
    assert not np.allclose(info_a["dynamics"], info_c["dynamics"])
    # re-seeding the same env reproduces its own first episode
    obs_d, info_d = env_a.reset(seed=42)
    np.testing.assert_array_equal(obs_a, obs_d)
    np.testing.assert_array_equal(info_a["dynamics"], info_d["dynamics"])
    env_a.close(), env_b.close()


def test_oracle_reaches_targets_in_nominal_physics():
    env = make(randomization="none")
    u = env.unwrapped
    oracle = ReachOracle(u.profile, action_scale_rad=u.action_scale_rad)
    n = u.profile.num_joints
    results = []
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        oracle.reset()
        success = False
        for _ in range(200):
            obs, reward, terminated, truncated, info = env.step(oracle.action(obs[:n], info["target_pos"]))
            if terminated or truncated:
                success = bool(terminated and info["is_success"])
                break
        results.append((seed, success, round(float(info["distance"]), 4)))
    successes = sum(ok for _, ok, _ in results)
    assert successes >= 9, f"oracle succeeded in {successes}/10 episodes: {results}"
    env.close()


def test_episode_truncates_after_max_steps():
    env = make(randomization="none", max_episode_steps=5)
    env.reset(seed=0, options={"target": [0.6, 0.3, 0.6]})
    flags = [env.step(np.zeros(7, np.float32))[2:4] for _ in range(5)]
    assert flags[:4] == [(False, False)] * 4
    assert flags[4] == (False, True)
    env.close()


def test_blowup_truncates_and_next_reset_works():
    env = make()
    u = env.unwrapped
    env.reset(seed=0)
    u.sim.data.qvel[:] = np.nan
    obs, reward, terminated, truncated, info = env.step(np.zeros(7, np.float32))
    assert truncated is True and terminated is False
    assert info["physics_blowup"] is True
    assert np.all(np.isfinite(obs)), "the observation after a blow-up must still be finite"
    assert np.isfinite(reward)
    obs, info = env.reset(seed=1)
    assert np.all(np.isfinite(obs)) and info["physics_blowup"] is False
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(np.zeros(7, np.float32))
        assert not info["physics_blowup"] and not truncated
        assert np.all(np.isfinite(obs))
    env.close()


def test_reward_matches_documented_formula():
    """reward = -d + w * (1 - tanh(d / s)) + success_bonus * [d < radius] - action_cost * mean(a^2)."""
    env = make(randomization="none", success_bonus=1.0, action_cost=0.01, precision_weight=0.5,
               precision_scale_m=0.05)
    kernel = lambda d: 0.5 * (1.0 - np.tanh(d / 0.05))  # noqa: E731
    u = env.unwrapped
    # far target: no bonus
    env.reset(seed=0, options={"target": [0.6, 0.3, 0.6]})
    a = np.array([0.5, -1.0, 0.25, 0.0, 1.0, -0.5, 0.75], np.float32)
    _, reward, _, _, info = env.step(a)
    dist = np.linalg.norm(info["ee_pos"] - info["target_pos"])
    assert info["distance"] == pytest.approx(dist, abs=1e-12)
    assert dist > u.success.radius_m
    expected = -dist + kernel(dist) - 0.01 * np.mean(a.astype(float) ** 2)
    assert reward == pytest.approx(expected, abs=1e-9)
    # target at the end effector: bonus applies; out-of-range actions are clipped to [-1, 1] first
    pose = u.profile.default_pose_rad
    env.reset(seed=0, options={"joint_pos": pose, "target": [0.0, 0.0, 0.0]})
    ee = u.sim.end_effector_position()
    env.reset(seed=0, options={"joint_pos": pose, "target": ee})
    big = np.full(7, 3.0, np.float32)
    big[1] = 0.0
    # unwrapped: the passive checker would (rightly) warn about an out-of-bounds action
    _, reward, _, _, info = env.unwrapped.step(big)
    assert info["distance"] < u.success.radius_m + 0.05  # sanity: still near the target after one step
    clipped = np.clip(big.astype(float), -1, 1)
    bonus = 1.0 if info["distance"] < u.success.radius_m else 0.0
    expected = -info["distance"] + kernel(info["distance"]) + bonus - 0.01 * np.mean(clipped ** 2)
    assert reward == pytest.approx(expected, abs=1e-9)
    env.close()


def test_reward_bonus_when_holding_at_target():
    env = make(randomization="none", success_hold_steps=3, precision_weight=0.0)
    u = env.unwrapped
    pose = u.profile.default_pose_rad
    env.reset(seed=0, options={"joint_pos": pose, "target": [0.0, 0.0, 0.0]})
    ee = u.sim.end_effector_position()
    env.reset(seed=0, options={"joint_pos": pose, "target": ee})
    terminated = False
    for i in range(3):
        _, reward, terminated, truncated, info = env.step(np.zeros(7, np.float32))
        assert info["distance"] < u.success.radius_m, "holding still near the default pose left the target"
        assert reward == pytest.approx(-info["distance"] + 1.0, abs=1e-9)
    assert terminated and info["is_success"], "3 steps inside the radius must terminate with success"
    env.close()


def test_success_is_sticky_without_termination():
    """Training keeps the episode running at the goal; is_success stays True once reached."""
    env = make(randomization="none", success_hold_steps=3, terminate_on_success=False)
    u = env.unwrapped
    pose = u.profile.default_pose_rad
    env.reset(seed=0, options={"joint_pos": pose, "target": [0.0, 0.0, 0.0]})
    ee = u.sim.end_effector_position()
    env.reset(seed=0, options={"joint_pos": pose, "target": ee})
    for _ in range(3):
        _, _, terminated, _, info = env.step(np.zeros(7, np.float32))
        assert not terminated
    assert info["is_success"]
    u.sim.set_target_marker(ee)
    u._state = ee + np.array([0.3, 0.0, 0.0])  # move the goal away: no longer inside
    _, _, terminated, _, info = env.step(np.zeros(7, np.float32))
    assert not terminated and info["distance"] > u.success.radius_m and info["is_success"]
    env.close()
