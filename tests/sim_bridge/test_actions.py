"""Action types (sim_bridge.actions) and the numpy kinematics behind the end-effector action."""
from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import sim_bridge.envs  # noqa: F401  (registers the envs)
from sim_bridge.actions import EE_DELTA, JOINT_DELTA, EndEffectorSettings, action_from_dict
from sim_bridge.kinematics import KinematicChain, jacobian_batch, site_positions
from sim_bridge.profile import load_profile
from sim_bridge.simulator import ModelChain, build_model, make_action
from sim_bridge.tasks import make_task

PROFILE = load_profile("panda_like")
PUSH = make_task("push")


def _mujoco_site(model, data, profile, site, q):
    jids = [model.joint(j).id for j in profile.joint_names]
    data.qpos[[model.jnt_qposadr[j] for j in jids]] = q
    mujoco.mj_kinematics(model, data)
    mujoco.mj_comPos(model, data)
    jp, jr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
    sid = model.site(site).id
    mujoco.mj_jacSite(model, data, jp, jr, sid)
    dofs = [model.jnt_dofadr[j] for j in jids]
    return data.site_xpos[sid].copy(), data.site_xmat[sid].reshape(3, 3).copy(), jp[:, dofs], jr[:, dofs]


@pytest.mark.parametrize("site", ["pusher_tip", PROFILE.end_effector_site])
def test_the_numpy_chain_matches_mujoco_kinematics_and_jacobian(site):
    model = build_model(PROFILE, PUSH.add_to_scene)
    data = mujoco.MjData(model)
    chain = KinematicChain.from_dict(KinematicChain.from_model(model, PROFILE.joint_names, site).to_dict())
    rng = np.random.default_rng(0)
    for _ in range(30):
        q = rng.uniform(PROFILE.position_lower_rad, PROFILE.position_upper_rad)
        want = _mujoco_site(model, data, PROFILE, site, q)
        got = chain.jacobian(q)
        for w, g in zip(want, got):
            assert np.allclose(w, g, atol=1e-10)


@pytest.mark.parametrize("site", ["pusher_tip", PROFILE.end_effector_site])
def test_the_model_chain_the_env_uses_gives_the_numpy_chain_s_numbers_and_travels_as_it(site):
    """ModelChain (MuJoCo's kinematics, in the env and the scripted pushers) against the numpy
    walk the robot computer runs from the manifest: the same site, rotation and Jacobian, the same
    manifest numbers, and a pickled copy (a vector env's worker) computes the same."""
    import pickle

    model = build_model(PROFILE, PUSH.add_to_scene)
    fast = ModelChain(model, PROFILE.joint_names, site)
    walk = KinematicChain.from_dict(fast.to_dict())
    assert fast.to_dict() == KinematicChain.from_model(model, PROFILE.joint_names, site).to_dict()
    copy = pickle.loads(pickle.dumps(fast))
    rng = np.random.default_rng(4)
    for _ in range(30):
        q = rng.uniform(PROFILE.position_lower_rad, PROFILE.position_upper_rad)
        for got, want, again in zip(fast.jacobian(q), walk.jacobian(q), copy.jacobian(q)):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
            np.testing.assert_array_equal(again, got)
        np.testing.assert_allclose(fast.site_position(q), walk.site_position(q), rtol=0, atol=1e-10)
        # the stacked form the action solves with: [Jp; Jr], the same site and rotation
        site, rot, jp, jr = fast.jacobian(q)
        for got, want in zip(fast.stacked_jacobian(q), (site, rot, np.vstack((jp, jr)))):
            np.testing.assert_array_equal(got, want)
        for got, want in zip(walk.stacked_jacobian(q), (site, rot, np.vstack((jp, jr)))):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    assert isinstance(make_action(PROFILE, PUSH, EE_DELTA).chain, ModelChain)


def test_the_batched_chain_gives_each_row_what_the_chain_gives_it():
    model = build_model(PROFILE, PUSH.add_to_scene)
    chain = KinematicChain.from_model(model, PROFILE.joint_names, "pusher_tip")
    q = np.random.default_rng(2).uniform(PROFILE.position_lower_rad, PROFILE.position_upper_rad, (16, PROFILE.num_joints))
    batch = jacobian_batch(chain, q)
    assert [b.shape for b in batch] == [(16, 3), (16, 3, 3), (16, 3, PROFILE.num_joints), (16, 3, PROFILE.num_joints)]
    for row in range(16):
        for b, one in zip(batch, chain.jacobian(q[row])):
            np.testing.assert_allclose(b[row], one, rtol=0, atol=1e-12)
    np.testing.assert_allclose(site_positions(chain, q), batch[0], rtol=0, atol=0)


@pytest.mark.parametrize("kind", [EE_DELTA, JOINT_DELTA])
def test_batched_targets_follow_each_row_s_own_command_state_as_the_single_row_action_does(kind):
    """Batched closed-loop rollouts keep one command per row (NaN = after a reset); every step
    gives each row what the per-row action gives it, resets and the lead bound included."""
    ee = {"max_lead_rad": 0.1} if kind == EE_DELTA else None
    action = make_action(PROFILE, PUSH, kind, scale_rad=0.05, ee=ee)
    one = make_action(PROFILE, PUSH, kind, scale_rad=0.05, ee=ee)
    rng = np.random.default_rng(3)
    rows, n = 12, PROFILE.num_joints
    q = PROFILE.default_pose_rad + rng.normal(0, 0.2, (rows, n))
    last = np.full((rows, n), np.nan)
    for step in range(8):
        a = rng.uniform(-1, 1, (rows, action.size))
        if kind == EE_DELTA:
            observed = action.observed_batch(q, last)
        targets = action.targets_batch(q, a, last)
        for r in range(rows):
            if kind == EE_DELTA:
                one._last = None if np.isnan(last[r, 0]) else last[r].copy()
                np.testing.assert_allclose(observed[r], one.observed(q[r]), rtol=0, atol=1e-10)
            np.testing.assert_allclose(targets[r], one.targets(q[r], a[r]), rtol=0, atol=1e-10)
        last = targets.copy()
        last[step % rows] = np.nan  # a reset row
        q = q + rng.normal(0, 0.03, q.shape)  # the arm lags its commands
    if kind == EE_DELTA:
        assert np.abs(targets - q).max() > 0.05, "the commands integrate (they lead the measured joints)"


def test_a_chain_with_a_joint_the_arm_does_not_have_is_refused():
    model = build_model(PROFILE, PUSH.add_to_scene)
    data = KinematicChain.from_model(model, PROFILE.joint_names, "pusher_tip").to_dict()
    data["links"][2]["joint"] = "elbow_of_another_arm"
    with pytest.raises(ValueError, match="elbow_of_another_arm"):
        KinematicChain.from_dict(data)
    with pytest.raises(ValueError, match="no site 'nowhere'"):
        KinematicChain.from_model(model, PROFILE.joint_names, "nowhere")


def test_joint_delta_targets_are_the_measured_position_plus_the_scaled_action_within_the_limits():
    action = make_action(PROFILE, PUSH, JOINT_DELTA, scale_rad=0.05)
    q = PROFILE.default_pose_rad.copy()
    a = np.linspace(-1, 1, PROFILE.num_joints)
    assert np.allclose(action.targets(q, a), q + 0.05 * a)
    at_limit = PROFILE.position_upper_rad.copy()
    assert np.all(action.targets(at_limit, np.ones(PROFILE.num_joints)) <= PROFILE.position_upper_rad)
    assert action.describe() == {"type": JOINT_DELTA, "size": PROFILE.num_joints, "scale_rad": 0.05}


def test_an_end_effector_step_moves_the_site_in_the_commanded_direction_within_the_step_limit():
    action = make_action(PROFILE, PUSH, EE_DELTA, ee={"scale_m": 0.01, "max_joint_step_rad": 0.08})
    assert action.size == 3 and action.chain.site == "pusher_tip"
    rng = np.random.default_rng(1)
    q = PROFILE.default_pose_rad.copy()
    for direction in np.eye(3).tolist() + (-np.eye(3)).tolist():
        a = np.array(direction)
        action.reset()
        targets = action.targets(q, a)
        assert np.all(np.abs(targets - q) <= 0.08 + 1e-12)
        moved = action.chain.site_position(targets) - action.chain.site_position(q)
        # a small step: the site moves ~scale_m along the commanded axis, little across it
        assert moved @ a == pytest.approx(0.01, rel=0.2)
        assert np.linalg.norm(moved - (moved @ a) * a) < 0.002
    for _ in range(20):  # anywhere in the limits: targets stay inside, steps within the bound
        q = rng.uniform(PROFILE.position_lower_rad, PROFILE.position_upper_rad)
        action.reset()
        targets = action.targets(q, rng.uniform(-1, 1, 3))
        assert np.all(np.isfinite(targets))
        assert np.all((targets >= PROFILE.position_lower_rad) & (targets <= PROFILE.position_upper_rad))
        assert np.all(np.abs(targets - q) <= 0.08 + 1e-12)


def test_the_end_effector_command_integrates_from_the_previous_target_within_the_lead_bound():
    """Steps add to the previous command (not to the measured joints, which sag under gravity);
    the command leads the measured joints by at most max_lead_rad; reset starts from them again."""
    action = make_action(PROFILE, PUSH, EE_DELTA, ee={"scale_m": 0.01, "max_lead_rad": 0.1})
    q = PROFILE.default_pose_rad.copy()  # the arm does not move (blocked): the command goes on
    tips = [action.chain.site_position(action.targets(q, np.array([1.0, 0.0, 0.0])))[0] for _ in range(3)]
    assert tips[1] - tips[0] == pytest.approx(0.01, rel=0.2) and tips[2] - tips[1] == pytest.approx(0.01, rel=0.2)
    for _ in range(100):
        last = action.targets(q, np.array([1.0, 0.0, 0.0]))
    assert np.abs(last - q).max() <= 0.1 + action.settings.max_joint_step_rad + 1e-12
    assert np.abs(last - q).max() > 0.1, "it leads up to the bound (plus one step)"
    action.reset()
    first = action.targets(q, np.zeros(3))
    assert np.abs(first - q).max() < 0.02, "after reset the command starts from the measured joints"


def test_an_action_rebuilt_from_its_description_gives_the_same_targets():
    action = make_action(PROFILE, PUSH, EE_DELTA, ee={"scale_m": 0.03})
    again = action_from_dict(action.describe(), num_joints=PROFILE.num_joints,
                             default_pose_rad=PROFILE.default_pose_rad, lower_rad=PROFILE.position_lower_rad,
                             upper_rad=PROFILE.position_upper_rad)
    q, a = PROFILE.default_pose_rad + 0.1, np.array([0.3, -0.7, 0.2])
    # the env's action evaluates its chain with MuJoCo (ModelChain), the rebuilt one (the robot
    # computer's) with the numpy walk: the same to float rounding
    np.testing.assert_allclose(action.targets(q, a), again.targets(q, a), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kwargs, match", [
    ({"action_type": "torque"}, "unknown action_type 'torque'"),
    ({"action_type": EE_DELTA, "ee_action": {"scale_m": -1.0}}, "scale_m must be > 0"),
    ({"action_type": EE_DELTA, "ee_action": {"speed": 1.0}}, "unknown ee_action setting"),
    ({"action_type": JOINT_DELTA, "ee_action": {"scale_m": 0.02}}, "ee_action settings"),
])
def test_bad_action_settings_are_refused_naming_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make("Sim2Real/Push-v0", **kwargs)


def test_the_push_env_with_end_effector_actions_passes_check_env_and_feeds_back_three_actions():
    from gymnasium.utils.env_checker import check_env

    env = gym.make("Sim2Real/Push-v0", action_type=EE_DELTA).unwrapped
    check_env(env, skip_render_check=True)
    assert env.action_space.shape == (3,)
    layout = {s.name: s.size for s in env.observation_layout}
    assert layout["prev_action"] == 3 and layout["joint_pos"] == PROFILE.num_joints
    obs, _ = env.reset(seed=0)
    start = env.sim.data.site_xpos[env.task_state.tip].copy()
    for _ in range(20):  # straight down: the pusher tip goes down
        obs, *_ = env.step(np.array([0.0, 0.0, -1.0]))
    n = PROFILE.num_joints
    assert np.array_equal(obs[2 * n:2 * n + 3], np.array([0, 0, -1], np.float32))
    assert env.sim.data.site_xpos[env.task_state.tip][2] < start[2] - 0.03


def test_end_effector_settings_validate():
    EndEffectorSettings().validate()
    with pytest.raises(ValueError, match="max_joint_step_rad"):
        EndEffectorSettings(max_joint_step_rad=0).validate()
    with pytest.raises(ValueError, match="down_gain"):
        EndEffectorSettings(down_gain=-1).validate()


def test_the_observation_carries_the_pusher_tip_and_its_command_by_nominal_kinematics():
    """Under nominal physics (no sensor noise) the observed ee_pos is the true pusher tip, and
    ee_cmd is the tip at the joint command the next step adds to (the measured tip after a reset)."""
    env = gym.make("Sim2Real/Push-v0", action_type=EE_DELTA, randomization="none").unwrapped
    names = [s.name for s in env.observation_layout]
    assert names[:5] == ["joint_pos", "joint_vel", "prev_action", "ee_pos", "ee_cmd"]
    n = PROFILE.num_joints
    obs, _ = env.reset(seed=4)
    np.testing.assert_array_equal(obs[2 * n + 6:2 * n + 9], obs[2 * n + 3:2 * n + 6])
    for _ in range(5):
        obs, *_ = env.step(np.array([0.5, -0.5, -1.0]))
        env.sim.forward()  # site_xpos after mj_step is one physics step old
        np.testing.assert_allclose(obs[2 * n + 3:2 * n + 6], env.sim.data.site_xpos[env.task_state.tip], atol=1e-6)
        joints = obs[:n].astype(float)
        lead = env.action.settings.max_lead_rad
        base = np.clip(env.action.last_target, joints - lead, joints + lead)
        np.testing.assert_allclose(obs[2 * n + 6:2 * n + 9], env.action.site_position(base), atol=1e-6)
    # the command leads the arm: after five steps down-and-sideways it is apart from the measured tip
    assert np.linalg.norm(obs[2 * n + 6:2 * n + 9] - obs[2 * n + 3:2 * n + 6]) > 0.005


def test_the_scripted_pusher_pushes_with_end_effector_actions():
    """The task's scripted controller in the end-effector action space (it replays its commands on a
    replica of the action) pushes the puck to the goal under nominal physics."""
    env = gym.make("Sim2Real/Push-v0", action_type=EE_DELTA, randomization="none").unwrapped
    controller = env.task.scripted_controller(env.profile, env.action)
    slices, start = {}, 0
    for signal in env.observation_layout:
        slices[signal.name] = slice(start, start + signal.size)
        start += signal.size
    successes = 0
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        controller.reset()
        for _ in range(env.max_episode_steps):
            obs, _, terminated, truncated, info = env.step(controller.act({k: obs[s] for k, s in slices.items()}))
            if terminated or truncated:
                break
        successes += bool(info["is_success"])
    assert successes >= 4, f"the scripted pusher succeeded in {successes} of 6 nominal episodes"
