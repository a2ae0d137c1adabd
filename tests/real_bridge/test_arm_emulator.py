"""ArmEmulator (real_bridge.emulator): the hidden physics, sensors, stiction, latency, and the
sim-to-real gap against the nominal simulator. No ROS."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from real_bridge.emulator import (ArmEmulator, load_hidden_parameters, parse_hidden_parameters,
                                  shipped_hidden_path)
from sim_bridge.config import ConfigError, load_yaml_mapping
from sim_bridge.profile import load_profile
from sim_bridge.randomization import load_randomization
from sim_bridge.simulator import ArmSimulator

RESOLUTION = 2 * math.pi / 2 ** 16
SETTLE_STEPS = 150  # 3 s at 50 Hz: the arm comes to rest at the default pose under gravity


@pytest.fixture(scope="module")
def profile():
    return load_profile("panda_like")


@pytest.fixture
def emu(profile):
    return ArmEmulator(profile)


def nominal_sim(profile) -> ArmSimulator:
    sim = ArmSimulator(profile, None, seed=0)
    sim.reset(randomize=False)
    return sim


def hidden_with(latency=None, **emulator_block):
    """The shipped hidden file with another latency and/or emulator-block settings."""
    data = load_yaml_mapping(shipped_hidden_path())
    if latency is not None:
        data["parameters"]["action_latency"]["mean"] = float(latency)
    data["emulator"].update(emulator_block)
    return parse_hidden_parameters(data, source="test-hidden.yaml")


def settle(sim, steps=SETTLE_STEPS):
    for _ in range(steps):
        assert sim.step()


# --- the hidden file ------------------------------------------------------------------------

def test_hidden_file_loads_and_every_value_differs_from_nominal(emu, profile):
    hidden = load_hidden_parameters()
    assert hidden.source == shipped_hidden_path()
    assert hidden.settings.encoder_bits == 16 and hidden.settings.velocity == "finite_difference"
    values = emu.hidden_dynamics()
    names = emu.sim.randomizer.names
    nominal = dict(zip(names, emu.sim.randomizer.nominal_values))
    same = [n for n in names if values[n] == pytest.approx(nominal[n])]
    assert not same, f"hidden values equal to nominal: {same}"
    # Spot checks in the model itself: the physics really are different.
    nom = ArmSimulator(profile, None).model
    link4 = emu.sim.model.body("link4").id
    assert emu.sim.model.body_mass[link4] == pytest.approx(1.28 * nom.body_mass[link4])
    assert emu.sim.model.dof_damping[0] == pytest.approx(1.8 * nom.dof_damping[0])
    assert emu.sim.model.actuator_gainprm[0, 0] == pytest.approx(0.85 * profile.kp[0])
    assert emu.sim.model.dof_frictionloss[0] == pytest.approx(0.45)
    assert emu.sim.model.dof_frictionloss[6] == pytest.approx(0.40)
    assert values["action_latency"] == pytest.approx(1.3)
    assert values["encoder_resolution_rad"] == pytest.approx(RESOLUTION)


def test_hidden_values_use_training_names_and_lie_inside_training_ranges_except_stiction(emu):
    training = load_randomization("default")
    check = emu.training_range_check(training)
    missing = [n for n, (_, lo, _, _) in check.items() if lo is None]
    assert not missing, f"hidden elements the training vector does not have: {missing}"
    outside = sorted(n for n, (_, _, _, inside) in check.items() if not inside)
    assert outside == [f"joint_frictionloss/joint{i}" for i in range(1, 8)], outside
    # ...and away from the centre of the training distribution (>= 5% of its range).
    dists = {p.name: p.distribution for p in training.parameters}
    for name, (value, lo, hi, _) in check.items():
        d = dists[name.split("/", 1)[0]]
        centre = (d.mean if d.type == "normal" else math.sqrt(lo * hi) if d.type == "loguniform"
                  else (lo + hi) / 2)
        assert abs(value - centre) >= 0.05 * (hi - lo), f"{name} = {value} is at the training centre {centre}"


def test_describe_lists_every_hidden_value(emu):
    text = emu.describe()
    for name in emu.sim.randomizer.names:
        assert name in text
    assert "OUTSIDE" in text and "16 bits" in text and "finite difference" in text and "26 ms" in text


def test_invalid_hidden_files_are_rejected_with_the_field(tmp_path):
    data = load_yaml_mapping(shipped_hidden_path())
    with pytest.raises(ConfigError, match="emulator.encoder_bits"):
        parse_hidden_parameters({**data, "emulator": {**data["emulator"], "encoder_bits": 64}})
    with pytest.raises(ConfigError, match="emulator.velocity"):
        parse_hidden_parameters({**data, "emulator": {**data["emulator"], "velocity": "tachometer"}})
    with pytest.raises(ConfigError, match="emulator.*typo"):
        parse_hidden_parameters({**data, "emulator": {**data["emulator"], "typo": 1}})
    no_block = {k: v for k, v in data.items() if k != "emulator"}
    with pytest.raises(ConfigError, match="'emulator'"):
        parse_hidden_parameters(no_block)
    bad = tmp_path / "bad.yaml"
    text = shipped_hidden_path().read_text()
    bad.write_text(text.replace("mean: 1.18, std: 0.0, low: 0.5", "mean: 1.18, std: 0.0, low: 1.5"))
    with pytest.raises(ConfigError, match="bad.yaml.*body_mass/link1"):
        ArmEmulator(hidden=bad)


# --- sensors --------------------------------------------------------------------------------

def test_positions_are_quantized_to_the_encoder_resolution(emu, profile):
    target = profile.default_pose_rad + np.array([0.2, -0.1, 0.1, 0.1, -0.2, 0.1, 0.3])
    emu.command(target)
    for _ in range(30):
        emu.step()
        q = emu.joint_state().position_rad[:7]
        counts = q / RESOLUTION
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)
        # noise std 0.0005 rad: the reading stays within a few mrad of the truth
        assert np.abs(q - emu.true_joint_positions()).max() < 0.004
    unquantized = ArmEmulator(profile, hidden_with(encoder_bits=0))
    unquantized.command(target)
    unquantized.step()
    counts = unquantized.joint_state().position_rad[:7] / RESOLUTION
    assert np.abs(counts - np.round(counts)).max() > 0.01, "encoder_bits 0 must not quantize"


def test_velocity_is_the_finite_difference_of_reported_positions(emu, profile):
    target = profile.default_pose_rad.copy()
    target[0] += 0.3
    emu.command(target)
    prev = emu.joint_state()
    assert not prev.velocity_rad_s.any(), "no previous reading at homing: velocity 0"
    peak = 0.0
    for _ in range(20):
        emu.step()
        s = emu.joint_state()
        np.testing.assert_allclose(s.velocity_rad_s, (s.position_rad - prev.position_rad) / 0.02, atol=1e-9)
        assert s.stamp_s == pytest.approx(prev.stamp_s + 0.02)
        prev = s
        peak = max(peak, s.velocity_rad_s[0])
    assert peak > 0.3, "joint1 moved toward +0.3 rad"


def test_joint_state_is_latched_per_control_period(emu):
    a, b = emu.joint_state(), emu.joint_state()
    assert a is b, "one sensor read per control period, like a hardware interface's read()"


# --- stiction -------------------------------------------------------------------------------

@pytest.mark.parametrize("joint, step_rad", [(0, 3e-4), (6, 1.5e-3)])
def test_a_command_step_below_stiction_does_not_move_the_joint_while_nominal_moves(profile, joint, step_rad):
    """kp * step is below the emulator's friction torque (0.45 / 0.40 N m) but well above the
    nominal 0.05 N m: the emulator's joint sticks, the nominal one follows the command."""
    emu, nom = ArmEmulator(profile), nominal_sim(profile)
    settle(emu)
    settle(nom)
    assert emu.sim.model.actuator_gainprm[joint, 0] * step_rad < emu.sim.model.dof_frictionloss[joint]
    for sim, command in ((emu, emu.last_command), (nom, nom.applied_command())):
        before = sim.true_joint_positions()
        target = command.copy()
        target[joint] += step_rad
        sim.command(target)
        settle(sim, 50)
        sim.moved = sim.true_joint_positions()[joint] - before[joint]
    assert abs(emu.moved) < 0.1 * step_rad, f"emulator joint moved {emu.moved:.2e} rad for a {step_rad} step"
    assert nom.moved > 0.8 * step_rad, f"nominal joint moved {nom.moved:.2e} rad for a {step_rad} step"
    # Above the friction torque the emulator's joint moves, short by the dead band.
    target = emu.last_command.copy()
    target[joint] += 10 * step_rad
    before = emu.true_joint_positions()[joint]
    emu.command(target)
    settle(emu, 50)
    assert emu.true_joint_positions()[joint] - before > 5 * step_rad


# --- latency --------------------------------------------------------------------------------

def test_latency_delays_the_response_by_the_hidden_steps(profile):
    emu = ArmEmulator(profile)
    assert emu.latency_substeps == 13, "1.3 control steps at 10 physics steps per control step"
    prompt = ArmEmulator(profile, hidden_with(latency=0.0))
    assert prompt.latency_substeps == 0
    moved = {}
    for name, sim in (("hidden", emu), ("prompt", prompt)):
        settle(sim)
        start = sim.true_joint_positions()[0]
        before = sim.sim.applied_command()
        target = sim.last_command.copy()
        target[0] += 0.2
        sim.command(target)
        trace = []
        for _ in range(3):
            sim.step()
            trace.append((sim.sim.applied_command()[0] != before[0], sim.true_joint_positions()[0] - start))
        moved[name] = trace
    # Without latency the joint moves within the first control step.
    assert moved["prompt"][0][0] and moved["prompt"][0][1] > 1e-4
    # With 13 physics steps of latency nothing happens in the first step (10 physics steps),
    # the command arrives 3 physics steps into the second, and the joint then lags behind.
    (applied1, moved1), (applied2, moved2), (_, moved3) = moved["hidden"]
    assert not applied1 and abs(moved1) < 1e-6
    assert applied2 and moved2 > 1e-5
    assert moved2 < moved["prompt"][1][1] and moved3 < moved["prompt"][2][1]


def test_latency_is_kept_in_time_at_another_control_rate(profile):
    fast = ArmEmulator(profile, control_rate_hz=100.0)
    assert fast.profile.decimation == 5
    assert fast.latency_substeps == 13  # still 26 ms
    assert fast.hidden_dynamics()["action_latency"] == pytest.approx(1.3), "reported at the profile's rate"


# --- the gap --------------------------------------------------------------------------------

def chirp_commands(profile, steps=200):
    """Joint targets: every joint swings around the default pose, 0.25 rad at 0.2..0.8 Hz."""
    t = np.arange(1, steps + 1)[:, None] / profile.control_rate_hz
    freq_hz = 0.2 + 0.1 * np.arange(profile.num_joints)
    return profile.default_pose_rad + 0.25 * np.sin(2 * math.pi * freq_hz * t)


def test_the_same_commands_give_different_but_stable_trajectories_than_the_nominal_sim(profile):
    emu, nom = ArmEmulator(profile), nominal_sim(profile)
    commands = chirp_commands(profile)
    q_emu, q_nom = [], []
    for target in commands:
        emu.command(target)
        nom.command(target)
        assert emu.step() and nom.step(), "no blow-up on either"
        q_emu.append(emu.true_joint_positions())
        q_nom.append(nom.true_joint_positions())
    q_emu, q_nom = np.array(q_emu), np.array(q_nom)
    gap = np.abs(q_emu - q_nom).max(axis=0)
    assert gap.max() > 0.02, f"no sim-to-real gap: max joint difference {gap.max():.4f} rad"
    assert emu.faults == 0
    for q in (q_emu, q_nom):  # both track the commands (stable, bounded error)
        assert np.all(np.isfinite(q))
        assert np.abs(q[-50:] - commands[-50:]).max() < 0.15
    vel = emu.joint_state().velocity_rad_s[:7]
    assert np.all(np.abs(vel) < 5.0)


# --- driving --------------------------------------------------------------------------------

def test_bad_commands_are_refused_and_the_previous_command_held(emu, profile):
    target = profile.default_pose_rad.copy()
    target[0] += 0.1
    emu.command(target)
    with pytest.raises(ValueError, match="expected 7 joint targets"):
        emu.command([0.0, 1.0])
    with pytest.raises(ValueError, match=r"non-finite target for joint\(s\) \['joint3'\]"):
        emu.command(np.where(np.arange(7) == 2, np.nan, target))
    np.testing.assert_array_equal(emu.last_command, target)
    settle(emu, 100)
    assert emu.true_joint_positions()[0] == pytest.approx(target[0], abs=0.01)


def test_reset_homes_the_arm_and_keeps_the_hidden_physics(emu, profile):
    hidden = emu.hidden_dynamics()
    target = profile.default_pose_rad + 0.2 * np.sign(np.arange(7) % 2 - 0.5)
    emu.command(target)
    settle(emu, 50)
    assert np.abs(emu.true_joint_positions() - profile.default_pose_rad).max() > 0.1
    stamp = emu.joint_state().stamp_s
    state = emu.reset()
    assert state.stamp_s == stamp, "emulator time does not jump back at homing"
    assert not state.velocity_rad_s.any()
    np.testing.assert_allclose(emu.true_joint_positions(), profile.default_pose_rad)
    np.testing.assert_allclose(emu.last_command, profile.default_pose_rad)
    assert np.abs(state.position_rad[:7] - profile.default_pose_rad).max() < 0.003
    assert emu.hidden_dynamics() == hidden
    settle(emu, 50)
    assert np.abs(emu.true_joint_positions() - profile.default_pose_rad).max() < 0.05, "stays home"


def test_controller_joint_order_and_extra_joints(profile):
    order = list(reversed(profile.joint_names))
    emu = ArmEmulator(profile, controller_joints=order, extra_joints=["finger_joint"])
    state = emu.joint_state()
    assert state.names == tuple(profile.joint_names) + ("finger_joint",)
    target = profile.default_pose_rad.copy()
    target[0] += 0.3  # joint1 is the last entry in controller order
    emu.command(target[::-1])
    settle(emu, 60)
    state = emu.joint_state()
    assert state.position_rad[0] == pytest.approx(target[0], abs=0.02)
    assert state.position_rad[7] == state.velocity_rad_s[7] == state.effort_nm[7] == 0.0
    with pytest.raises(ConfigError, match="controller_joints"):
        ArmEmulator(profile, controller_joints=["joint1"] * 7)
    with pytest.raises(ConfigError, match="extra_joints"):
        ArmEmulator(profile, extra_joints=["joint3"])


def test_same_seed_same_readings_other_seed_other_noise(profile):
    readings = []
    for seed in (1, 1, 2):
        emu = ArmEmulator(profile, seed=seed)
        settle(emu, 10)
        readings.append(emu.joint_state().position_rad)
    np.testing.assert_array_equal(readings[0], readings[1])
    assert not np.array_equal(readings[0], readings[2])


# --- the point of it all ------------------------------------------------------------------

def reach_episodes(policy_dir, emu, episodes=20, seed=0):
    """Reach episodes of a shipped policy on the emulator, as the env scores them: goal in
    the profile's workspace, success = within 2 cm for 10 steps, within 200 steps."""
    from policies.runtime import PolicyRuntime

    runtime = PolicyRuntime(policy_dir)
    runtime.warmup()
    p, n = emu.profile, emu.profile.num_joints
    rng = np.random.default_rng(seed)
    successes = 0
    for _ in range(episodes):
        goal = rng.uniform(p.reach_low_m, p.reach_high_m)
        emu.reset()
        runtime.reset()
        prev, held = np.zeros(n), 0
        for _ in range(200):
            s = emu.joint_state()
            q, qd = s.position_rad[:n], s.velocity_rad_s[:n]
            action = runtime.act(q, qd, prev, goal)
            emu.command(runtime.joint_targets(action, q, p.position_lower_rad, p.position_upper_rad))
            assert emu.step()
            prev = np.clip(action, -1.0, 1.0)
            held = held + 1 if np.linalg.norm(emu.end_effector_position() - goal) < 0.02 else 0
            if held >= 10:
                successes += 1
                break
    return successes / episodes


def test_the_shipped_policy_still_reaches_on_the_emulator(profile):
    """The hidden physics are harder than training, not out of reach: reach_lstm, trained
    under the default randomization, must succeed in >= 70% of 20 episodes."""
    pytest.importorskip("onnxruntime")
    policies = pytest.importorskip("policies")

    policy = Path(policies.__file__).resolve().parent / "zoo" / "reach_lstm"
    if not (policy / "manifest.json").is_file():
        pytest.skip("reach_lstm is not shipped")
    assert reach_episodes(policy, ArmEmulator(profile)) >= 0.7
