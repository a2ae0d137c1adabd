"""ArmSimulator (sim_bridge.simulator): latency, commands, decimation, blow-ups, noise.

Randomization is pinned by passing an explicit ``dynamics`` vector to reset().
"""
from __future__ import annotations

import mujoco
import numpy as np
import pytest

from sim_bridge.config import ConfigError
from sim_bridge.profile import load_profile
from sim_bridge.randomization import load_randomization, parse_randomization
from sim_bridge.simulator import ArmSimulator

STEP_RAD = 0.2  # size of the test step command on joint1 (vertical axis: no gravity load)


@pytest.fixture(scope="module")
def profile():
    return load_profile("panda_like")


def spec_of(parameters: dict):
    return parse_randomization({"randomization_version": 1, "parameters": parameters})


@pytest.fixture(scope="module")
def latency_spec():
    return spec_of({"action_latency": {"operation": "abs", "distribution": "uniform", "low": 0.0, "high": 5.0}})


@pytest.fixture
def latency_sim(profile, latency_spec):
    return ArmSimulator(profile, latency_spec, seed=0)


def step_target(profile, delta=STEP_RAD):
    target = profile.default_pose_rad.copy()
    target[0] += delta
    return target


# --- latency ------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [0, 1, 2])
def test_latency_delays_command_by_k_control_steps(latency_sim, profile, k):
    sim = latency_sim
    sim.reset(dynamics=np.array([float(k)]))
    assert sim.effects.action_latency_steps == k
    before = sim.applied_command()
    np.testing.assert_array_equal(before, profile.default_pose_rad)
    target = step_target(profile)
    sim.command(target)
    for i in range(k):
        assert sim.step()
        np.testing.assert_array_equal(sim.applied_command(), before,
                                      err_msg=f"latency {k}: command applied after only {i + 1} step(s)")
        assert abs(sim.true_joint_positions()[0] - before[0]) < 1e-5, "joint moved before the command arrived"
    assert sim.step()
    np.testing.assert_array_equal(sim.applied_command(), target,
                                  err_msg=f"latency {k}: command not applied after {k + 1} step(s)")


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_latency_shifts_a_command_stream(latency_sim, profile, k):
    """Commanding every step: the actuator target after step t is the command of step t - k."""
    sim = latency_sim
    sim.reset(dynamics=np.array([float(k)]))
    q0 = profile.default_pose_rad
    commands = [step_target(profile, 0.01 * (t + 1)) for t in range(8)]
    applied = []
    for cmd in commands:
        sim.command(cmd)
        sim.step()
        applied.append(sim.applied_command())
    for t, got in enumerate(applied):
        want = commands[t - k] if t >= k else q0
        np.testing.assert_array_equal(got, want, err_msg=f"latency {k}, step {t}")


def _displacement_after_one_step(sim, profile, latency):
    sim.reset(dynamics=np.array([latency]))
    q0 = sim.true_joint_positions()[0]
    sim.command(step_target(profile))
    sim.step()
    return sim.true_joint_positions()[0] - q0


def test_fractional_latency_applies_after_physics_substeps(latency_sim, profile):
    sim = latency_sim
    d0 = _displacement_after_one_step(sim, profile, 0.0)
    d_half = _displacement_after_one_step(sim, profile, 0.5)
    # with latency 0.5 the new target is already active at the end of the first control step
    np.testing.assert_array_equal(sim.applied_command(), step_target(profile))
    d1 = _displacement_after_one_step(sim, profile, 1.0)
    assert abs(d1) < 1e-5, f"latency 1 must not move the joint within one step, moved {d1}"
    assert d0 > d_half > 10 * abs(d1), f"expected d(0)={d0} > d(0.5)={d_half} > d(1)={d1}"
    # half the time under a torque-saturated step gives about a quarter of the displacement
    assert 0.15 < d_half / d0 < 0.6, f"d(0.5)/d(0) = {d_half / d0}"


def test_fractional_latency_substep_timing(latency_sim, profile, monkeypatch):
    """Latency 0.5 at decimation 10: the target switches after exactly 5 physics sub-steps."""
    sim = latency_sim
    assert sim.decimation == 10
    sim.reset(dynamics=np.array([0.5]))
    target = step_target(profile)
    ctrl_seen = []
    real_step = mujoco.mj_step

    def recording_step(m, d, nstep=1):
        for _ in range(nstep):
            ctrl_seen.append(d.ctrl[sim._act[0]])
            real_step(m, d)

    monkeypatch.setattr(mujoco, "mj_step", recording_step)
    sim.command(target)
    sim.step()
    monkeypatch.undo()
    assert len(ctrl_seen) == 10, f"one control step must be 10 physics steps, got {len(ctrl_seen)}"
    np.testing.assert_array_equal(ctrl_seen[:5], profile.default_pose_rad[0])
    np.testing.assert_array_equal(ctrl_seen[5:], target[0])


def test_latency_is_cleared_by_reset(latency_sim, profile):
    sim = latency_sim
    sim.reset(dynamics=np.array([3.0]))
    sim.command(step_target(profile))
    sim.step()
    sim.reset(dynamics=np.array([0.0]))
    for _ in range(5):
        sim.step()
    np.testing.assert_array_equal(sim.applied_command(), profile.default_pose_rad,
                                  err_msg="a command queued before reset leaked into the next episode")


# --- commands -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.zeros(6), np.zeros(8), np.zeros((7, 1)), "nan", "inf"])
def test_command_rejects_bad_input_and_queues_nothing(latency_sim, profile, bad):
    sim = latency_sim
    sim.reset(dynamics=np.array([0.0]))
    if isinstance(bad, str):
        value = profile.default_pose_rad.copy()
        value[2] = float(bad)
        bad = value
    with pytest.raises(ValueError):
        sim.command(bad)
    sim.step()
    np.testing.assert_array_equal(sim.applied_command(), profile.default_pose_rad,
                                  err_msg="a rejected command still reached the actuators")
    assert np.all(np.isfinite(sim.data.qpos))
    assert sim.commands_clipped == 0


def test_out_of_range_commands_are_clipped_and_counted(latency_sim, profile):
    sim = latency_sim
    sim.reset(dynamics=np.array([0.0]))
    clipped_before = sim.commands_clipped
    target = profile.default_pose_rad.copy()
    target[0] = profile.position_upper_rad[0] + 1.0
    target[3] = profile.position_lower_rad[3] - 0.5
    sim.command(target)
    sim.step()
    applied = sim.applied_command()
    assert applied[0] == profile.position_upper_rad[0]
    assert applied[3] == profile.position_lower_rad[3]
    np.testing.assert_array_equal(np.delete(applied, [0, 3]), np.delete(target, [0, 3]))
    assert sim.commands_clipped == clipped_before + 1
    sim.command(profile.default_pose_rad)  # in range: not counted
    sim.step()
    assert sim.commands_clipped == clipped_before + 1


def test_action_noise_perturbs_commands(profile):
    spec = spec_of({"action_noise_std": {"operation": "abs", "distribution": "uniform", "low": 0.0, "high": 0.1}})
    sim = ArmSimulator(profile, spec, seed=0)
    for std in (0.0, 0.05):
        sim.reset(dynamics=np.array([std]))
        errors = []
        for _ in range(40):
            sim.command(profile.default_pose_rad)
            sim.step()
            errors.append(sim.applied_command() - profile.default_pose_rad)
        errors = np.array(errors)
        if std == 0:
            np.testing.assert_array_equal(errors, 0.0)
        else:
            # joint6 default pose is close to no limit, joint4 etc. are interior: nearly unclipped noise
            assert errors.std() == pytest.approx(std, rel=0.2)


# --- decimation -----------------------------------------------------------------------------

def test_time_advances_by_control_period(profile):
    sim = ArmSimulator(profile, None, seed=0)
    assert sim.time_s == 0.0
    sim.step()
    assert sim.time_s == pytest.approx(1.0 / profile.control_rate_hz, abs=1e-12)
    for _ in range(9):
        sim.step()
    assert sim.time_s == pytest.approx(10.0 / profile.control_rate_hz, abs=1e-9)
    assert sim.control_steps == 10
    sim.reset()
    assert sim.time_s == 0.0 and sim.control_steps == 0


def test_decimation_follows_profile_rates(profile):
    fast = profile.with_rates(control_rate_hz=100.0)
    sim = ArmSimulator(fast, None, seed=0)
    assert sim.decimation == 5
    assert sim.model.opt.timestep == pytest.approx(0.002)
    sim.step()
    assert sim.time_s == pytest.approx(0.01, abs=1e-12)


# --- blow-up ---------------------------------------------------------------------------------

@pytest.mark.parametrize("poison", [1e9, np.nan])
def test_blowup_is_detected_and_reset_recovers(profile, poison):
    sim = ArmSimulator(profile, load_randomization("default"), seed=0)
    assert sim.step() and not sim.blew_up
    sim.data.qvel[:] = poison
    assert sim.step() is False
    assert sim.blew_up
    reading = sim.reset()
    assert not sim.blew_up
    assert np.all(np.isfinite(reading.position_rad)) and np.all(np.isfinite(reading.velocity_rad_s))
    for _ in range(5):
        assert sim.step(), "simulation did not recover after reset"
    assert np.all(np.isfinite(sim.data.qpos)) and np.abs(sim.data.qvel).max() < 10


def test_blowup_from_extreme_dynamics_sample(profile):
    """A dynamics sample the integrator cannot handle (gravity -1e6 m/s^2) is reported, not hidden.
    (A file cannot sample it any more, issue 12: the value is forced through reset(dynamics=).)"""
    spec = spec_of({"gravity": {"targets": ["z"], "operation": "abs", "distribution": "uniform",
                                "low": -30.0, "high": 30.0}})
    sim = ArmSimulator(profile, spec, seed=0)
    sim.reset(dynamics=np.array([-1e6]))
    results = [sim.step() for _ in range(3)]
    assert results[0] is False and sim.blew_up
    assert results == [False] * 3, "blew_up must stay set until the next reset"
    sim.reset(dynamics=sim.randomizer.nominal_values)
    assert not sim.blew_up
    assert all(sim.step() for _ in range(10))


# --- observation noise ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def noise_spec():
    return spec_of({
        "pos_noise": {"kind": "obs_noise_std", "targets": ["joint_pos"], "operation": "abs",
                      "distribution": "uniform", "low": 0.0, "high": 0.1},
        "vel_noise": {"kind": "obs_noise_std", "targets": ["joint_vel"], "operation": "abs",
                      "distribution": "uniform", "low": 0.0, "high": 0.5},
    })


def test_observation_noise_present_when_std_positive(profile, noise_spec):
    sim = ArmSimulator(profile, noise_spec, seed=0)
    sim.reset(dynamics=np.array([0.02, 0.3]))
    true_q, true_qd = sim.true_joint_positions(), sim.true_joint_velocities()
    readings = [sim.read() for _ in range(300)]
    pos_err = np.array([r.position_rad for r in readings]) - true_q
    vel_err = np.array([r.velocity_rad_s for r in readings]) - true_qd
    assert pos_err.std() == pytest.approx(0.02, rel=0.1)
    assert vel_err.std() == pytest.approx(0.3, rel=0.1)
    assert abs(pos_err.mean()) < 0.005 and abs(vel_err.mean()) < 0.05
    # the noise is only in the reading, never in the state
    np.testing.assert_array_equal(sim.true_joint_positions(), true_q)


def test_observation_noise_absent_when_std_zero(profile, noise_spec):
    sim = ArmSimulator(profile, noise_spec, seed=0)
    sim.reset(dynamics=np.array([0.0, 0.0]))
    sim.step()
    for _ in range(3):
        r = sim.read()
        np.testing.assert_array_equal(r.position_rad, sim.true_joint_positions())
        np.testing.assert_array_equal(r.velocity_rad_s, sim.true_joint_velocities())


def test_only_configured_signal_is_noisy(profile, noise_spec):
    sim = ArmSimulator(profile, noise_spec, seed=0)
    sim.reset(dynamics=np.array([0.0, 0.3]))
    r = sim.read()
    np.testing.assert_array_equal(r.position_rad, sim.true_joint_positions())
    assert not np.array_equal(r.velocity_rad_s, sim.true_joint_velocities())


# --- reset / configuration ------------------------------------------------------------------

def test_reset_pose_and_dynamics_vector(profile, latency_spec):
    sim = ArmSimulator(profile, latency_spec, seed=0)
    pose = profile.default_pose_rad + 0.05
    reading = sim.reset(joint_pos=pose, dynamics=np.array([1.0]))
    np.testing.assert_allclose(reading.position_rad, pose)
    np.testing.assert_allclose(sim.applied_command(), pose)
    np.testing.assert_array_equal(reading.velocity_rad_s, 0.0)
    assert sim.dynamics_dict() == {"action_latency": 1.0}
    # an out-of-range start pose is clipped to the limits
    reading = sim.reset(joint_pos=profile.position_upper_rad + 1.0)
    np.testing.assert_allclose(reading.position_rad, profile.position_upper_rad)
    # randomize=False gives the nominal vector
    sim.reset(randomize=False)
    np.testing.assert_array_equal(sim.dynamics, sim.randomizer.nominal_values)


def test_reset_rejects_wrong_dynamics_vector(profile, latency_spec):
    sim = ArmSimulator(profile, latency_spec, seed=0)
    with pytest.raises(ValueError):
        sim.reset(dynamics=np.array([1.0, 2.0]))


def test_set_randomization_with_bad_spec_keeps_old_randomizer(profile):
    spec = load_randomization("default")
    sim = ArmSimulator(profile, spec, seed=0)
    old = sim.randomizer
    bad = spec_of({"body_mass": {"targets": ["no_such_link"], "operation": "scale",
                                 "distribution": "uniform", "low": 0.5, "high": 1.5}})
    with pytest.raises(ConfigError, match="no_such_link"):
        sim.set_randomization(bad)
    assert sim.randomizer is old
    sim.reset()
    assert len(sim.dynamics) == len(old.names)


def test_set_randomization_takes_effect_at_next_reset(profile, latency_spec):
    sim = ArmSimulator(profile, load_randomization("default"), seed=0)
    before = sim.dynamics_dict()
    sim.set_randomization(latency_spec)
    assert sim.dynamics_dict() == before, "the running episode keeps its names and values until reset"
    sim.reset()
    assert sim.randomizer.names == ("action_latency",)
    assert 0.0 <= sim.dynamics[0] <= 5.0
