"""A two-node Ray cluster simulated on this machine (ray.cluster_utils.Cluster, 1 CPU per
node): the env actors, the calibration workers and the evaluation tasks land on every node,
and the results are the local backend's."""
from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from ray_helpers import OBJECT_STORE_BYTES, assert_same_steps, wait_for_free_cpus

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

import policies  # noqa: E402
from calibration.episodes import emulator_episodes  # noqa: E402
from calibration.ray_backend import RayCostPool  # noqa: E402
from calibration.simopt import Calibration, CalibrationSettings, SearchEntry  # noqa: E402
from policies.evaluate import evaluate, runtime_policy  # noqa: E402
from policies.ray_backend import RayVectorEnv, map_chunks, node_id  # noqa: E402
from sim_bridge.envs.vector import VectorTaskEnv  # noqa: E402
from sim_bridge.profile import load_profile  # noqa: E402
from sim_bridge.randomization import load_randomization  # noqa: E402

ZOO = Path(policies.__file__).resolve().parent / "zoo"
NODE = dict(num_cpus=1, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False)


@pytest.fixture(scope="module")
def cluster():
    os.environ.pop("RAY_ADDRESS", None)
    c = Cluster(initialize_head=True, head_node_args=dict(NODE))
    try:
        c.add_node(**{k: v for k, v in NODE.items() if k != "include_dashboard"})
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False, configure_logging=False)
        yield {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        c.shutdown()


def test_the_cluster_has_two_nodes(cluster):
    assert len(cluster) == 2


def test_env_actors_on_every_node_step_the_local_envs(cluster):
    kwargs = {"max_episode_steps": 5, "terminate_on_success": False}
    remote = RayVectorEnv(4, 2, env_kwargs=kwargs, compiled_graph=True)
    try:
        assert {node for _, node in remote.placement()} == cluster
        assert not remote.compiled_graph   # actors on other nodes: plain actor calls
        # mixed: the actor on the driver's node steps in the driver's buffers, the other answers with its rows
        assert sorted(remote.attached) == [False, True]
        local = VectorTaskEnv(4, 0, env_kwargs=kwargs)
        try:
            outs = [(local.reset(seed=11), remote.reset(seed=11))]
            rng = np.random.default_rng(0)
            for _ in range(8):  # episodes end and reset at step 5
                actions = rng.uniform(-1, 1, (4, local.single_action_space.shape[0])).astype(np.float32)
                outs.append((local.step(actions), remote.step(actions)))
        finally:
            local.close()
    finally:
        remote.close()
    assert_same_steps(outs)


def test_calibration_workers_on_every_node_give_the_local_costs(cluster):
    episodes = emulator_episodes(ZOO / "reach_lstm", 1, steps=15, seed=2)
    s = CalibrationSettings(search=(SearchEntry("body_mass", shared=True),), mode="closed_loop", samples=6,
                            max_steps=15, threads=1, workers=2)
    calib = Calibration(load_profile("panda_like"), load_randomization("default"), episodes, s, ZOO / "reach_lstm")
    pool = RayCostPool(calib.profile, calib.prior_spec, calib.episodes, s, ZOO / "reach_lstm")
    try:
        assert {node for _, node in pool.placement()} == cluster
        samples = calib.search.sample(np.random.default_rng(1), 6)
        np.testing.assert_array_equal(pool.costs(samples), calib.costs(samples))
    finally:
        pool.close()
        calib.close()


def test_tasks_spread_over_every_node_and_evaluation_matches(cluster):
    wait_for_free_cpus(ray)   # the earlier tests' actors may still hold a node
    # each task holds its slot a while (0.2 s), so one node cannot run them all in turn
    nodes = map_chunks(lambda _: time.sleep(0.2) or node_id(), range(8), cpus_per_task=0.5)
    assert set(nodes) == cluster
    factory = partial(runtime_policy, str(ZOO / "reach_mlp"))
    local = evaluate(factory, episodes=2, randomization="none", workers=1, seed=3)
    assert evaluate(factory, episodes=2, randomization="none", workers=2, seed=3, backend="ray").to_dict() == \
        local.to_dict()
