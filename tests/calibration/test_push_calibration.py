"""SimOpt over the puck's physics (issue 13, item 3): episodes with the object's poses,
batched open-loop rollouts of the Push scene, and a calibration that recovers the friction
and size the synthetic "real" puck had."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from calib_helpers import ZOO, zero_noise
from calibration.episodes import EpisodeError, ReferenceEpisode, align_object_poses, emulator_episodes
from calibration.rollouts import BatchPolicy, BatchSimulator, naive_rollouts
from calibration.simopt import Calibration, load_settings
from calibration.transfer import emulator_success
from real_bridge.bagload import Episode
from real_bridge.emulator import ArmEmulator
from sim_bridge.config import ConfigError
from sim_bridge.randomization import load_randomization
from sim_bridge.simulator import ArmSimulator

PUSH_LSTM = ZOO / "push_lstm"


@pytest.fixture(scope="module")
def push_prior():
    return load_randomization("push_default")


@pytest.fixture(scope="module")
def push_eps():
    """Two push_lstm episodes on the emulator (hidden puck physics, tracker latency and dropouts)."""
    return emulator_episodes(PUSH_LSTM, 2, steps=200, seed=0)


def arm_as_emulated(names, values: np.ndarray) -> np.ndarray:
    """``values`` with the emulator's hidden arm physics (which push_eps were recorded on) and no
    noise: open-loop replays then track the recorded joints within ~1 mm and hit the puck."""
    truth = ArmEmulator(task="push").hidden_dynamics()
    values = np.array(values, dtype=float)
    for i, name in enumerate(names):
        if name in truth and not name.startswith("puck"):
            values[..., i] = truth[name]
        elif name.startswith(("obs_noise", "action_noise")):
            values[..., i] = 0.0
    return values


# --- the object's poses -----------------------------------------------------------------------
def test_align_object_poses_places_each_pose_at_its_stamp_and_counts_a_held_pose_once():
    times = np.arange(10) * 0.02
    # a tracker 40 ms late: the pose received at row t was measured at t - 2; rows 4-5 a dropout
    # (the bag's zero-order hold repeats the pose of row 3 with its stamp)
    true_x = 0.5 + 0.01 * np.arange(10)
    stamps = times - 0.04
    stamps[4:6] = stamps[3]
    x = true_x - 0.02  # the pose measured 2 rows earlier
    x[4:6] = x[3]
    poses = np.column_stack([x, np.zeros(10), np.zeros(10)])
    got = align_object_poses(times, stamps, poses)
    # every row up to the last measurement (t = 0.14 s) is the true pose, the dropout interpolated
    np.testing.assert_allclose(got[:8, 0], true_x[:8], atol=1e-12)
    np.testing.assert_allclose(got[8:, 0], x[-1])  # after the last measurement: where it was last seen


def test_align_object_poses_unwraps_yaw_and_rejects_a_tracker_that_stopped_early():
    times = np.arange(4) * 0.1
    yaw = np.array([3.1, -3.1, -3.0, -2.9])  # crossing +-pi
    got = align_object_poses(times, times, np.column_stack([np.zeros(4), np.zeros(4), yaw]))
    assert np.all(np.diff(got[:, 2]) > 0) and abs(got[1, 2] - (2 * math.pi - 3.1)) < 1e-12
    with pytest.raises(EpisodeError, match=r"cover only 20% of the episode's time.*tracker stop"):
        align_object_poses(np.arange(10) * 0.1, np.array([0.0, 0.1]), np.zeros((2, 3)), name="ep")


def test_reference_episode_checks_the_object_and_the_object_signal_needs_it():
    pos = np.zeros((3, 7))
    with pytest.raises(EpisodeError, match=r"object_pose must be \[3, 3\]"):
        ReferenceEpisode("e", pos, pos, np.zeros((2, 7)), np.zeros(3), np.zeros((2, 3)))
    with pytest.raises(EpisodeError, match="object poses are NaN"):
        ReferenceEpisode("e", pos, pos, np.zeros((2, 7)), np.zeros(3), np.full((3, 3), np.nan))
    ep = ReferenceEpisode("e", pos, pos, np.zeros((2, 7)), np.zeros(3))
    with pytest.raises(EpisodeError, match="'object' needs the object's poses"):
        ep.observed(("position", "object"))


def test_from_recorded_aligns_the_bag_s_object_poses_by_their_header_stamps():
    n, j = 6, 7
    t = 10.0 + 0.02 * np.arange(n)
    x = 0.4 + 0.01 * np.arange(n)
    held = np.column_stack([x - 0.01, np.full(n, 0.1), np.zeros(n), np.full(n, math.sin(0.3)),
                            np.full(n, math.cos(0.3))])  # one row late (a 20 ms tracker latency)
    ep = Episode(index=0, joint_names=tuple(f"joint{k}" for k in range(1, 8)), time_s=t,
                 receive_ns=(t * 1e9).astype(np.int64), position=np.zeros((n, j)), velocity=np.zeros((n, j)),
                 effort=np.zeros((n, j)), policy_command=np.zeros((n, j)), hardware_command=np.zeros((n, j)),
                 goal=np.tile([0.5, 0.0, 0.015], (n, 1)), success=True, complete=True, start_ns=0, end_ns=1,
                 object_pose=held, object_pose_age_s=np.full(n, 0.02), object_time_s=t - 0.02)
    ref = ReferenceEpisode.from_recorded(ep, "bag#0")
    # the last state comes after the last measured pose (the latency): nothing is known there
    assert ref.steps == n - 1 and ref.command.shape == (n - 2, j)
    np.testing.assert_allclose(ref.object_pose[:, 0], x[:-1], atol=1e-12)
    np.testing.assert_allclose(ref.object_pose[:, 1:], np.tile([0.1, 0.3], (n - 1, 1)), atol=1e-12)
    # a tracker that stopped after 4 of the 6 poses: the episode ends at its last pose
    stopped = dataclasses.replace(ep, object_time_s=np.where(np.arange(n) < 4, t - 0.02, t[3] - 0.02),
                                  object_pose=np.where(np.arange(n)[:, None] < 4, held, held[3]))
    assert ReferenceEpisode.from_recorded(stopped, "bag#1").steps == 3


def test_emulator_push_episodes_hold_the_puck_path_from_its_resting_start(push_eps):
    for ep in push_eps:
        assert ep.has_object and ep.object_pose.shape == (ep.steps, 3)
        # at rest at the start (the tracker's noise: 2 mm), then pushed
        assert np.linalg.norm(ep.object_pose[1, :2] - ep.object_pose[0, :2]) < 0.01
        assert np.linalg.norm(ep.goal[:2] - ep.object_pose[0, :2]) > 0.09  # 10-25 cm from the goal
    assert max(np.ptp(ep.object_pose[:, :2], axis=0).max() for ep in push_eps) > 0.03  # a push happened
    with pytest.raises(EpisodeError, match="build it with task='push'"):
        emulator_episodes(PUSH_LSTM, 1, steps=5, emulator=ArmEmulator())


def test_emulator_success_scores_push_on_the_puck():
    score = emulator_success(PUSH_LSTM, 2, seed=1, steps=60)
    assert score.episodes == 2 and 0.0 < score.mean_final_error_m < 0.4  # the puck's distance, not the tip's
    with pytest.raises(ValueError, match="is for task 'push'"):
        emulator_success(PUSH_LSTM, 1, emulator=ArmEmulator())


def test_emulator_success_with_sampled_actions_is_seeded_per_episode():
    """sample_actions: the policy's Gaussian, its noise seeded by the seed and the episode's
    index: a rerun is identical, the mean action's episodes differ, the goals are the same.
    120 steps: long enough for the pusher to reach and move the puck (in a shorter episode the
    puck never moves and its final error is the same whatever the arm did)."""
    sampled = emulator_success(PUSH_LSTM, 2, seed=1, steps=120, sample_actions=True)
    again = emulator_success(PUSH_LSTM, 2, seed=1, steps=120, sample_actions=True)
    mean = emulator_success(PUSH_LSTM, 2, seed=1, steps=120)
    assert sampled == again
    assert abs(sampled.mean_final_error_m - mean.mean_final_error_m) > 1e-4


# --- batched rollouts of the Push scene -------------------------------------------------------
def test_push_rollouts_start_the_puck_at_the_recorded_pose_on_each_sample_s_table(profile, push_prior, push_eps):
    sim = BatchSimulator(profile, push_prior, threads=2, task="push")
    try:
        names = list(sim.names)
        values = arm_as_emulated(names, np.tile(sim.randomizer.sample(np.random.default_rng(0)), (3, 1)))
        values[:, names.index("puck_friction/puck")] = [0.15, 0.4, 1.0]
        sim.set_dynamics(values)
        out = sim.rollout(push_eps, "open_loop")
        j = profile.num_joints
        for ep, o in zip(push_eps, out):
            assert o.shape == (3, ep.steps, 2 * j + 2) and np.all(np.isfinite(o))
            np.testing.assert_allclose(o[:, 0, 2 * j:], np.tile(ep.object_pose[0, :2], (3, 1)))
        # the pushed puck's path depends on its friction (the pushed episode of the two)
        pushed = int(np.argmax([np.ptp(ep.object_pose[:, :2], axis=0).max() for ep in push_eps]))
        paths = out[pushed][:, :, 2 * j:]
        assert np.linalg.norm(paths[0] - paths[2], axis=1).max() > 0.005
        bare = [ReferenceEpisode(ep.name, ep.position, ep.velocity, ep.command, ep.goal) for ep in push_eps]
        with pytest.raises(ValueError, match="hold no object poses"):
            sim.rollout(bare, "open_loop")
    finally:
        sim.close()


def test_closed_loop_push_rollouts_run_the_cartesian_policy_as_the_naive_loop_does(profile, push_prior, push_eps,
                                                                                 monkeypatch):
    """Closed loop (SimOpt): push_lstm drives each sample's simulated arm and puck from the
    recorded start, its end-effector steps turned into joint targets per row (batched kinematics)
    and the puck seen ``object_latency`` periods late. One difference from ArmSimulator is known:
    mujoco.rollout starts every call's constraint solver cold (the warm start is not carried from
    one control period to the next); with the naive loop doing the same, the two agree exactly."""
    sim = BatchSimulator(profile, push_prior, threads=2, task="push")
    try:
        names = list(sim.names)
        values = zero_noise(names, arm_as_emulated(names, sim.randomizer.sample_batch(np.random.default_rng(1), 3)))
        values[:, names.index("object_latency")] = [0.0, 1.0, 3.0]
        sim.set_dynamics(values)
        batched = sim.rollout(push_eps, "closed_loop", BatchPolicy(PUSH_LSTM))
    finally:
        sim.close()
    step = ArmSimulator.step

    def cold_step(self):
        self.data.qacc_warmstart[:] = 0.0
        return step(self)

    monkeypatch.setattr(ArmSimulator, "step", cold_step)
    naive = naive_rollouts(profile, push_prior, values, push_eps, "closed_loop", PUSH_LSTM, task="push")
    j = profile.num_joints
    for ep, b, n in zip(push_eps, batched, naive):
        assert b.shape == n.shape == (3, ep.steps, 2 * j + 2) and np.all(np.isfinite(b))
        np.testing.assert_allclose(b, n, rtol=0, atol=1e-9)
    # the comparison means something: the policy pushes the puck, and the tracker's latency
    # changes what it does
    moved = max(np.linalg.norm(b[:, -1, 2 * j:] - b[:, 0, 2 * j:], axis=1).max() for b in batched)
    assert moved > 0.02, f"the puck moved at most {moved:.4f} m"
    assert max(np.abs(b[0] - b[2]).max() for b in batched) > 1e-3


def test_closed_loop_needs_a_policy_whose_signals_the_rollouts_can_feed(profile, prior):
    """A policy that observes an object needs the object's scene; Reach rollouts refuse it."""
    sim = BatchSimulator(profile, prior, threads=1)
    try:
        sim.set_dynamics(sim.randomizer.nominal_values[None])
        ep = ReferenceEpisode("e", np.zeros((3, profile.num_joints)), np.zeros((3, profile.num_joints)),
                              np.zeros((2, profile.num_joints)), np.array([0.5, 0.0, 0.1]))
        with pytest.raises(ValueError, match="observes an object: the simulator needs its task"):
            sim.rollout([ep], "closed_loop", BatchPolicy(PUSH_LSTM))
    finally:
        sim.close()


def test_push_settings_ship_and_the_object_signal_needs_a_task(tmp_path):
    s = load_settings("push")
    assert s.task == "push" and s.mode == "closed_loop" and "object" in s.signals
    assert {"puck_mass", "puck_friction", "puck_damping", "puck_size"} <= {e.name for e in s.search}
    assert s.signal_weights["object"] > s.signal_weights["position"]  # the task object weighted highest
    path = tmp_path / "s.yaml"
    path.write_text("calibration_version: 1\nsearch: {puck_mass: {}}\ndiscrepancy: {signals: [position, object]}\n")
    with pytest.raises(ConfigError, match="'object' needs a task with an object"):
        load_settings(path)
    path.write_text("calibration_version: 1\ntask: [push]\nsearch: {puck_mass: {}}\n")
    with pytest.raises(ConfigError, match="field 'task'.*expected a task name"):
        load_settings(path)


@pytest.mark.parametrize("mode", ["closed_loop", "open_loop"])
def test_calibration_recovers_the_friction_and_size_of_a_synthetic_puck(mode, profile, push_prior, push_eps, tmp_path):
    """The "real" episodes are simulated under known object physics (closed loop: push_lstm on
    the simulated arm and puck; open loop: the emulator's commands replayed); a short REPS run
    moves the searched friction and size toward them and D drops."""
    settings = load_settings("push").with_overrides(samples=48, iterations=4, threads=2, mode=mode)
    policy = PUSH_LSTM if mode == "closed_loop" else None
    settings = type(settings)(**{**settings.__dict__, "search": tuple(
        e for e in settings.search if e.name in ("puck_friction", "puck_size", "puck_mass"))})
    truth = {"puck_friction/puck": 0.7, "puck_size/puck": 1.04}
    calib = Calibration(profile, push_prior, push_eps, settings, policy)
    try:
        names = list(calib.sim.names)
        values = calib.element_values(calib.prior.mean)[0]  # the arm as the calibration holds it
        for name, value in truth.items():
            values[names.index(name)] = value
        calib.sim.set_dynamics(values[None])
        out = calib.sim.rollout(calib.episodes, mode, calib.policy)
        j = profile.num_joints
        real = [ReferenceEpisode(f"synthetic#{k}", o[0, :, :j], o[0, :, j:2 * j], ep.command, ep.goal,
                                 np.column_stack([o[0, :, 2 * j:], ep.object_pose[:, 2]]))
                for k, (o, ep) in enumerate(zip(out, calib.episodes))]
    finally:
        calib.close()
    calib = Calibration(profile, push_prior, real, settings, policy)
    try:
        before = calib.initial_discrepancy
        calib.run(assess=False)
        fit = dict(zip(calib.search.names, calib.search.mean))
        prior = dict(zip(calib.prior.names, calib.prior.mean))
        assert calib.final_discrepancy < 0.5 * before
        assert abs(fit["puck_friction"] - 0.7) < abs(prior["puck_friction"] - 0.7)
        assert abs(fit["puck_size"] - 1.04) < abs(prior["puck_size"] - 1.04)
        spec = calib.result_spec()
        assert spec.provenance["calibration"]["mode"] == mode
        from calibration.plots import save_plots  # noqa: PLC0415

        paths = save_plots(calib, tmp_path / "plots")
        assert [p.name for p in paths][-1] == "object_paths.png" and paths[-1].stat().st_size > 10_000
    finally:
        calib.close()


def test_replayed_episodes_run_open_loop_beside_the_policys_closed_loop_ones(profile, push_prior, push_eps):
    """A recording no policy produced (ReferenceEpisode.replay: an identification strike) is
    replayed in a closed-loop calibration, each episode as its own mode would run it alone."""
    strike = dataclasses.replace(push_eps[1], replay=True)
    assert strike.truncated(50).replay
    sim = BatchSimulator(profile, push_prior, threads=2, task="push")
    try:
        names = list(sim.names)
        sim.set_dynamics(zero_noise(names, arm_as_emulated(names, sim.randomizer.sample_batch(np.random.default_rng(2), 2))))
        policy = BatchPolicy(PUSH_LSTM)
        mixed = sim.rollout([push_eps[0], strike], "closed_loop", policy)
        closed = sim.rollout([push_eps[0]], "closed_loop", policy)[0]
        replayed = sim.rollout([push_eps[1]], "open_loop")[0]
        with pytest.raises(ValueError, match="closed-loop rollouts need the policy"):
            sim.rollout([push_eps[0], strike], "closed_loop")
        assert len(sim.rollout([strike], "closed_loop")) == 1   # replays alone need no policy
    finally:
        sim.close()
    np.testing.assert_array_equal(mixed[0], closed)
    np.testing.assert_array_equal(mixed[1], replayed)
    assert np.abs(mixed[1] - sim_closed_of(profile, push_prior, push_eps[1], sim)).max() > 1e-3


def sim_closed_of(profile, prior, episode, sim):
    """``episode`` rolled out closed loop (push_lstm) under ``sim``'s dynamics, for contrast."""
    other = BatchSimulator(profile, prior, threads=2, task="push")
    try:
        other.set_dynamics(sim.dynamics)
        return other.rollout([episode], "closed_loop", BatchPolicy(PUSH_LSTM))[0]
    finally:
        other.close()


def test_strike_episodes_on_the_emulator_set_the_puck_sliding_and_are_marked_for_replay():
    from calibration.episodes import strike_episodes

    eps = strike_episodes(2, steps=150, seed=0)
    assert [ep.name for ep in eps] == ["strike#0", "strike#1"] and all(ep.replay for ep in eps)
    moved = [float(np.linalg.norm(ep.object_pose[-1, :2] - ep.object_pose[0, :2])) for ep in eps]
    assert max(moved) > 0.03, moved
    with pytest.raises(EpisodeError, match="need an object to strike"):
        strike_episodes(1, steps=10, emulator=ArmEmulator())
