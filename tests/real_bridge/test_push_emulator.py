"""The arm emulator with a hidden puck (task 'push'): the object physics differ from nominal as
emulator_push_hidden.yaml says (heavier, stickier, more damped, larger, on a tilted table no
training sample has), the tracker stand-in delays, perturbs and drops poses as configured, and
the node publishes the poses on /mocap/puck/pose and places the puck for the bridge's goal.
"""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from rigs import ros, wait_for_match, wait_until  # noqa: F401 (ros: autouse fixture)

from real_bridge.emulator import (ArmEmulator, load_hidden_object, parse_hidden_object,
                                  shipped_object_hidden_path)
from sim_bridge.config import ConfigError, load_yaml_mapping
from sim_bridge.profile import load_profile
from sim_bridge.simulator import ArmSimulator
from sim_bridge.tasks import make_task

PROFILE = load_profile("panda_like")
TASK = make_task("push")
G = 9.81


@pytest.fixture(scope="module")
def emulator() -> ArmEmulator:
    return ArmEmulator(PROFILE, task="push")


def puck_ids(model):
    return model.body("puck").id, model.geom("puck").id, model.joint("puck_joint").id


def test_hidden_object_file_values_reach_the_model(emulator):
    hidden = load_hidden_object()
    assert hidden.source == shipped_object_hidden_path()
    m = emulator.sim.model
    body, geom, joint = puck_ids(m)
    dof = m.jnt_dofadr[joint]
    assert m.body_mass[body] == pytest.approx(0.30)                    # nominal 0.2
    assert m.geom_friction[geom, 0] == pytest.approx(0.55)             # nominal 0.4
    assert m.geom_size[geom, 0] == pytest.approx(0.042)                # nominal 0.04 m
    assert m.dof_damping[dof:dof + 3] == pytest.approx([0.08] * 3)     # nominal 0.05 N s/m
    fx = emulator.sim.effects
    assert fx.object_latency_steps == 2.0 and fx.object_dropout_prob == pytest.approx(0.05)
    assert fx.object_noise_std == pytest.approx({"position": 0.002, "yaw": 0.02})
    # the arm's hidden physics are still the arm file's; its geom_friction left the puck alone
    table = m.geom("table").id
    assert m.geom_friction[table, 0] == pytest.approx(0.9 * emulator.sim.nominal.arrays["geom_friction"][table, 0])
    truth = emulator.hidden_dynamics()
    assert truth["puck_mass/puck"] == pytest.approx(0.3) and truth["table_tilt_deg"] == 1.5
    inside = emulator.training_range_check()   # push_default.yaml for a push emulator
    assert all(inside[k][3] for k in ("puck_mass/puck", "puck_friction/puck", "puck_size/puck", "object_latency"))
    text = emulator.describe()
    assert "table tilt" in text and "emulator_push_hidden.yaml" in text


def _slide(sim, velocity_xy, steps: int = 40) -> np.ndarray:
    """Launch the puck (at rest on the table, arm away) with this planar velocity; its displacement (m)."""
    m, d = sim.model, sim.data
    _, _, joint = puck_ids(m)
    q, v = m.jnt_qposadr[joint], m.jnt_dofadr[joint]
    start = d.qpos[q:q + 2].copy()
    d.qvel[v:v + 2] = velocity_xy
    for _ in range(steps):
        sim.step()
    return d.qpos[q:q + 2] - start


def _distances(sim, reset, step, direction, speed):
    """Sliding distance (m) along +direction and along -direction from the same start."""
    out = {}
    for sign in (+1, -1):
        reset()
        for _ in range(5):
            step()
        out[sign] = float(_slide(sim, sign * speed * direction) @ (sign * direction))
    return out


def test_puck_slides_shorter_than_nominal_and_the_tilt_makes_it_direction_dependent(emulator):
    import dataclasses

    from real_bridge.emulator import ObjectSettings

    speed = 0.6
    downhill = np.array([math.cos(math.radians(60)), math.sin(math.radians(60))])
    nominal = ArmSimulator(PROFILE, None, seed=0, scene=TASK.add_to_scene)

    def reset_nominal():
        nominal.reset(randomize=False)
        TASK.reset(nominal, np.random.default_rng(0), np.array([0.5, 0.0, 0.015]),
                   {"object_start": [0.45, 0.0], "object_yaw": 0.0})

    hidden = load_hidden_object()
    level = ArmEmulator(PROFILE, task="push", hidden_object=dataclasses.replace(
        hidden, settings=ObjectSettings(hidden.settings.seed, 0.0, 60.0)))   # the same puck, a level table

    def emulator_reset(e):
        return lambda: e.reset(object_start=[0.45, 0.0], object_yaw=0.0)

    nom = _distances(nominal, reset_nominal, nominal.step, downhill, speed)
    tilted = _distances(emulator.sim, emulator_reset(emulator), emulator.step, downhill, speed)
    flat = _distances(level.sim, emulator_reset(level), level.step, downhill, speed)
    # nominal: level table, mu 0.4: the same distance both ways (5.7 cm measured; v^2 / (2 mu g) = 4.6 cm
    # for pure sliding from the start)
    assert nom[1] == pytest.approx(nom[-1], rel=0.02)
    assert nom[1] == pytest.approx(speed ** 2 / (2 * 0.4 * G), rel=0.3)
    # the hidden puck (mu 0.55, more damping, heavier): about 0.4 / 0.55 of the nominal distance
    mean_flat = 0.5 * (flat[1] + flat[-1])
    assert mean_flat < 0.8 * nom[1], (flat, nom)
    assert mean_flat / nom[1] == pytest.approx(0.4 / 0.55, rel=0.1)
    # the tilt alone: downhill the deceleration is (mu - sin 1.5 deg) g, uphill (mu + sin 1.5 deg) g
    tilt = math.sin(math.radians(1.5))
    expected = (0.55 + tilt) / (0.55 - tilt)                      # 1.10
    asymmetry = (tilted[1] / tilted[-1]) / (flat[1] / flat[-1])   # the level table's own asymmetry divided out
    assert asymmetry == pytest.approx(expected, rel=0.05), (tilted, flat, expected)


def test_tracker_stand_in_has_the_hidden_latency_noise_and_dropouts(emulator):
    emulator.reset(goal=[0.5, 0.0, 0.015])
    steps, dropped, errors, truths = 1500, 0, [], []
    latency = 2
    for _ in range(steps):
        emulator.step()
        truths.append(emulator.true_object_pose())
        reading = emulator.object_pose()
        if reading is None:
            dropped += 1
            continue
        assert reading.age_s == pytest.approx(latency * PROFILE.control_period_s)
        if len(truths) > latency:
            errors.append(reading.pose[:3] - truths[-1 - latency][:3])
    # dropouts: 5% of the samples (binomial, 1500 draws: 3 sigma = 1.7%)
    assert abs(dropped / steps - 0.05) < 0.017, dropped
    errors = np.array(errors)
    assert np.abs(errors.mean(axis=0)).max() < 0.0005                      # unbiased
    assert errors.std(axis=0) == pytest.approx([0.002] * 3, rel=0.1)       # the hidden 2 mm


def test_reset_places_the_puck_for_the_goal_seeded(emulator):
    a = ArmEmulator(PROFILE, task="push")
    goals = [np.array([0.45, 0.1, 0.015]), np.array([0.52, -0.15, 0.015])]
    starts = []
    for goal in goals:
        a.reset(goal=goal)
        x, y, z, _ = a.true_object_pose()
        assert 0.10 - 1e-6 <= math.hypot(x - goal[0], y - goal[1]) <= 0.25 + 1e-6
        assert a.object_error_m() == pytest.approx(math.hypot(x - goal[0], y - goal[1]))
        starts.append((x, y))
    b = ArmEmulator(PROFILE, task="push")   # the same hidden seed: the same placements
    for goal, start in zip(goals, starts):
        b.reset(goal=goal)
        assert b.true_object_pose()[:2] == pytest.approx(start)
    assert a.object_pose() is not None   # a homing delivers a pose at once


def test_reach_emulator_has_no_puck():
    e = ArmEmulator(PROFILE)
    assert e.object is None and e.object_pose() is None and e.true_object_pose() is None
    with pytest.raises(KeyError):
        e.sim.model.body("puck")


def test_hidden_object_file_errors_name_the_field(tmp_path):
    data = load_yaml_mapping(shipped_object_hidden_path())
    bad = dict(data, emulator={**data["emulator"], "table_tilt_deg": 30})
    with pytest.raises(ConfigError, match="table_tilt_deg"):
        parse_hidden_object(bad, source="x.yaml")
    with pytest.raises(ConfigError, match="emulator"):
        parse_hidden_object({k: v for k, v in data.items() if k != "emulator"}, source="x.yaml")


# --- the node: the tracker stand-in on /mocap/puck/pose -------------------------------------------
rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PointStamped, PoseStamped  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from real_bridge.emulator_node import ArmEmulatorNode  # noqa: E402
from sim_bridge import interface  # noqa: E402
from sim_bridge.executor import ControlExecutor  # noqa: E402


@pytest.mark.ros
def test_node_publishes_tracked_poses_with_latency_and_dropouts_and_places_the_puck_for_the_goal():
    topic = "/push_emulator_test/mocap/puck/pose"
    node = ArmEmulatorNode(parameter_overrides=[Parameter("task", value="push"),
                                                Parameter("object_pose_topic", value=topic)],
                           cli_args=["--ros-args", "-r", "current_goal:=/push_emulator_test/current_goal"])
    probe = rclpy.create_node("push_emulator_probe")
    received = []
    lock = threading.Lock()

    def on_pose(msg):
        now = probe.get_clock().now().nanoseconds
        with lock:
            received.append((now, msg))

    sub = probe.create_subscription(PoseStamped, topic, on_pose, 100)
    goal_pub = probe.create_publisher(PointStamped, "/push_emulator_test/current_goal", interface.LATCHED_QOS)
    reset = probe.create_client(Trigger, "/arm_emulator/reset")
    executor = ControlExecutor(num_threads=2)
    executor.add_node(node)
    executor.add_node(probe)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        assert wait_for_match(sub, goal_pub), "DDS discovery did not finish"
        assert wait_until(lambda: len(received) >= 100, 20.0), len(received)
        with lock:
            window = list(received)
        frames = {m.header.frame_id for _, m in window}
        assert frames == {"base_link"}
        # latency: each pose is stamped 40 ms before it was published (plus delivery)
        ages = np.array([(t - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)) * 1e-9 for t, m in window])
        assert ages.min() >= 0.040 - 1e-3, ages.min()
        assert np.median(ages) < 0.040 + 0.05, np.median(ages)
        # dropouts: the node counts the periods without a pose (the rate, 5%, is checked on 1500
        # periods above); every period is either published or dropped
        published, dropped = node.object_poses_published, node.object_pose_dropouts
        assert published >= len(window) and dropped / (published + dropped) < 0.15, (published, dropped)
        assert published + dropped >= node.emulator.control_steps

        goal = PointStamped()
        goal.header.frame_id = "base_link"
        goal.point.x, goal.point.y, goal.point.z = 0.48, -0.1, 0.015
        goal_pub.publish(goal)
        assert wait_until(lambda: node.goal is not None, 10.0)
        assert reset.wait_for_service(timeout_sec=10.0)
        future = reset.call_async(Trigger.Request())
        assert wait_until(future.done, 10.0)
        response = future.result()
        assert response.success and "puck placed at" in response.message, response.message
        x, y, _, _ = node.emulator.true_object_pose()
        assert 0.10 - 1e-6 <= math.hypot(x - 0.48, y + 0.1) <= 0.25 + 1e-6
        assert node.emulator.goal == pytest.approx([0.48, -0.1, 0.015])
    finally:
        executor.shutdown(timeout_sec=2.0)
        thread.join(timeout=2.0)
        node.destroy_node()
        probe.destroy_node()
