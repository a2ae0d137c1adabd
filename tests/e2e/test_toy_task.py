"""A new task through the registry alone: defined in a few lines here, trained for a few
iterations, exported, evaluated, and run by the policy node over real rclpy and DDS, without
editing any shared module."""
from __future__ import annotations

import threading
from functools import partial

import numpy as np
import pytest

from sim_bridge.tasks import ReachTask, get_task, register_task, task_names


# --- the toy task: the whole definition -------------------------------------------------
class ToyReachTask(ReachTask):
    """Reach a small box in front of the arm, with a 5 cm success radius."""

    name = "toy_reach"
    env_id = "Sim2Real/ToyReach-v0"

    def __init__(self, **settings):
        settings.setdefault("success_radius_m", 0.05)
        settings.setdefault("region_m", ((0.40, -0.10, 0.30), (0.50, 0.10, 0.40)))
        settings.setdefault("max_episode_steps", 20)
        super().__init__(**settings)


register_task(ToyReachTask, replace=True)
# -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_policy(tmp_path_factory):
    """Trained for 3 tiny iterations, exported to an artifact folder (parity-checked)."""
    from policies.config import TrainConfig
    from policies.export import export_checkpoint
    from policies.train import Trainer

    root = tmp_path_factory.mktemp("toy")
    cfg = TrainConfig(name="toy_lstm", task="toy_reach", num_envs=4, num_workers=0, num_steps=20, seq_len=10,
                      hidden=8, critic_hidden=(16,), update_epochs=2, num_minibatches=2,
                      total_env_steps=4 * 20 * 3, torch_threads=1, checkpoint_every=1,
                      env_kwargs={"terminate_on_success": False})
    trainer = Trainer(cfg, root / "run", quiet=True)
    stats = trainer.train()
    trainer.close()
    artifact = export_checkpoint(root / "run" / "checkpoints" / "latest.pt", root / "zoo" / "toy_lstm")
    return artifact, stats


def test_the_registry_lists_the_toy_task_and_builds_its_env():
    import gymnasium as gym

    from sim_bridge.envs import register_envs
    assert "toy_reach" in task_names() and get_task("toy_reach") is ToyReachTask
    register_envs()
    env = gym.make("Sim2Real/ToyReach-v0").unwrapped
    for seed in range(5):
        _, info = env.reset(seed=seed)
        assert np.all(info["target_pos"] >= (0.40, -0.10, 0.30)) and np.all(info["target_pos"] <= (0.50, 0.10, 0.40))
    assert env.success.radius_m == 0.05 and env.max_episode_steps == 20


@pytest.mark.slow
def test_toy_task_trains_exports_and_evaluates(toy_policy):
    from policies.evaluate import evaluate, policy_task, runtime_policy
    from policies.manifest import load_manifest

    artifact, _ = toy_policy
    m = load_manifest(artifact)
    assert m.task_name == "toy_reach"
    assert [s.name for s in m.observation.layout] == ["joint_pos", "joint_vel", "prev_action", "target_pos"]
    record = policy_task(str(artifact))
    assert record["success"]["radius_m"] == 0.05 and record["max_episode_steps"] == 20
    res = evaluate(partial(runtime_policy, str(artifact)), episodes=6, randomization="none", workers=1,
                   task=record)
    assert res.episodes == 6 and 0.0 <= res.success_rate <= 1.0
    # the episodes ran on the toy task: at most its 20 steps, not Reach's 200
    assert res.median_steps_to_success is None or res.median_steps_to_success <= 20


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_policy_node_runs_the_toy_policy(toy_policy):
    import rclpy
    from geometry_msgs.msg import PointStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from policies.node import PolicyNode
    from policies.runtime import PolicyRuntime
    from rigs import wait_for_match, wait_until
    from sim_bridge import interface
    from sim_bridge.executor import ControlExecutor
    from sim_bridge.profile import load_profile

    artifact, _ = toy_policy
    profile = load_profile("panda_like")
    q, qd, goal = profile.default_pose_rad.copy(), np.zeros(7), np.array([0.45, 0.0, 0.35])
    rclpy.init()
    node = PolicyNode(autostart=True, parameter_overrides=[
        Parameter("policy_dir", value=str(artifact.parent)), Parameter("policy", value="toy_lstm")])
    probe = rclpy.create_node("toy_probe")
    commands: list[np.ndarray] = []
    state_pub = probe.create_publisher(JointState, interface.JOINT_STATES, interface.STATE_QOS)
    goal_pub = probe.create_publisher(PointStamped, interface.CURRENT_GOAL, interface.LATCHED_QOS)
    commands_sub = probe.create_subscription(Float64MultiArray, interface.JOINT_COMMANDS,
                                             lambda m: commands.append(np.array(m.data)), 10)

    def publish_state():
        msg = JointState()
        msg.name, msg.position, msg.velocity = list(profile.joint_names), q.tolist(), qd.tolist()
        state_pub.publish(msg)

    probe.create_timer(0.02, publish_state)
    executors = [ControlExecutor(num_threads=4), SingleThreadedExecutor()]
    executors[0].add_node(node)
    executors[1].add_node(probe)
    threads = [threading.Thread(target=e.spin, daemon=True) for e in executors]
    try:
        assert node.lifecycle_state == "active", node.last_error
        for t in threads:
            t.start()
        # wait for discovery both ways (matched endpoints, not just a publisher in the graph)
        # before publishing the latched goal and counting commands
        assert wait_for_match(state_pub, goal_pub, commands_sub, timeout=30.0), "the probe and the node never matched"
        msg = PointStamped()
        msg.point.x, msg.point.y, msg.point.z = (float(v) for v in goal)
        goal_pub.publish(msg)
        assert wait_until(lambda: len(commands) >= 5, 20.0), "the policy node sent no commands"
        runtime = PolicyRuntime(artifact)
        expected = runtime.joint_targets(runtime.act(q, qd, np.zeros(7), goal), q, profile.position_lower_rad,
                                         profile.position_upper_rad)
        # the first command after the goal is the policy's first step from zero state
        assert any(np.allclose(c, expected, atol=1e-5) for c in commands[:5]), (commands[:5], expected)
    finally:
        for e in executors:
            e.shutdown(timeout_sec=2.0)
        for t in threads:
            t.join(timeout=2.0)
        node.destroy_node()
        probe.destroy_node()
        rclpy.try_shutdown()


@pytest.mark.slow
def test_a_policy_node_refuses_a_policy_of_another_task(toy_policy):
    """The first policy fixes the node's task (its ROS inputs): a swap to another task's policy
    is refused with the reason and the running policy kept."""
    import shutil

    from policies.control import PolicyController, PolicyRejected
    from policies.manifest import shipped_zoo
    from sim_bridge.profile import load_profile

    artifact, _ = toy_policy
    if not (artifact.parent / "reach_lstm").exists():
        shutil.copytree(shipped_zoo() / "reach_lstm", artifact.parent / "reach_lstm")
    ctl = PolicyController(load_profile("panda_like"), artifact.parent)
    ctl.set_policy(ctl.load_policy("toy_lstm"))
    assert ctl.task.name == "toy_reach" and ctl.task_signals == (("target_pos", 3),)
    with pytest.raises(PolicyRejected, match="trained for task 'reach'; this node runs task 'toy_reach'"):
        ctl.load_policy("reach_lstm")
    assert ctl.active_name == "toy_lstm"
