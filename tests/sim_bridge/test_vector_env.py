"""The batched multi-process vector env: same results as in-process, auto-reset, errors."""
from __future__ import annotations

import numpy as np
import pytest

from sim_bridge.envs.vector import VectorTaskEnv


def rollout(num_workers: int, steps: int = 250):
    rng = np.random.default_rng(0)
    with VectorTaskEnv(4, num_workers, env_kwargs={"max_episode_steps": 100}) as venv:
        obs, info = venv.reset(seed=123)
        out = [(obs, info["privileged"])]
        dones = 0
        for _ in range(steps):
            actions = rng.uniform(-1, 1, (4, 7)).astype(np.float32)
            obs, rew, term, trunc, info = venv.step(actions)
            done = term | trunc
            dones += int(done.sum())
            if done.any():
                np.testing.assert_array_equal(info["final_observation"][done].shape, (done.sum(), 24))
            out.append((obs, rew, info["privileged"], info["final_observation"][done]))
        assert dones >= 8, "episodes of 100 steps must end and reset within 250 steps"
    return out


def test_workers_reproduce_the_in_process_result():
    local, remote = rollout(0), rollout(2)
    assert len(local) == len(remote)
    for a, b in zip(local, remote):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_shapes_and_privileged_layout():
    with VectorTaskEnv(3, 1) as venv:
        obs, info = venv.reset(seed=0)
        assert obs.shape == (3, 24) and obs.dtype == np.float32
        assert info["privileged"].shape == (3, len(venv.privileged_names))
        assert venv.privileged_names[-3:] == ("target_error/x", "target_error/y", "target_error/z")
        np.testing.assert_array_equal(info["privileged"][:, :-3], info["dynamics"])
        with pytest.raises(ValueError, match="expected actions of shape"):
            venv.step(np.zeros((2, 7)))


def test_a_failing_worker_is_reported():
    with pytest.raises(Exception, match="no shipped randomization named 'nope'"):
        VectorTaskEnv(2, 2, env_kwargs={"randomization": "nope"})
