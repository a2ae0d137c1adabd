"""Training with the Ray backend: the batches and the curve of the local backend, bit for bit;
a worker killed mid-iteration (restart + replay), the retry budget, --resume."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from policies.config import TrainConfig
from policies.train import Trainer
from ray_helpers import assert_same_steps, kill_process

ITERATIONS = 2


def small_config(**overrides) -> TrainConfig:
    # 10-step episodes in 20-step iterations: episodes end and reset inside each iteration
    base = dict(num_envs=4, num_workers=2, num_steps=20, seq_len=10, hidden=8, critic_hidden=(16,),
                update_epochs=2, num_minibatches=2, total_env_steps=4 * 20 * ITERATIONS, torch_threads=1,
                checkpoint_every=1, seed=3, env_kwargs={"max_episode_steps": 10, "terminate_on_success": False})
    base.update(overrides)
    return TrainConfig(**base)


def run(cfg: TrainConfig, out, *, on_step=None, iterations: int | None = None, resume_from=None):
    """Train; returns (batches, history, model state, trainer). ``on_step(trainer, t)`` runs
    before step t of each iteration (t counts within the iteration)."""
    trainer = Trainer(cfg, out, quiet=True)
    batches = []
    try:
        if resume_from is not None:
            trainer.load_checkpoint(resume_from)
        collect, step = trainer.collect, trainer.venv.step
        counter = {"t": 0}

        def counting_step(actions):
            if on_step is not None:
                on_step(trainer, counter["t"])
            counter["t"] += 1
            return step(actions)

        def recording_collect():
            counter["t"] = 0
            batch, starts, stats = collect()
            batches.append((batch, starts))
            return batch, starts, stats

        trainer.venv.step = counting_step
        trainer.collect = recording_collect
        trainer.train(stop_after_iterations=iterations)
        state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        return batches, trainer.history, state, trainer
    finally:
        trainer.close()


def assert_same_run(a, b):
    batches_a, hist_a, state_a, _ = a
    batches_b, hist_b, state_b, _ = b
    assert len(batches_a) == len(batches_b) == len(hist_a) == len(hist_b)
    for (ba, sa), (bb, sb) in zip(batches_a, batches_b):
        np.testing.assert_array_equal(sa, sb)
        for name in ("obs", "priv", "actions", "logp", "advantages", "returns", "h0", "c0", "weights"):
            x, y = getattr(ba, name, None), getattr(bb, name, None)
            if x is None and y is None:
                continue
            torch.testing.assert_close(x, y, rtol=0, atol=0, msg=f"batch field {name} differs")
    timing = {"wall_time_s", "steps_per_s", "collect_s", "update_s"}

    def comparable(row):   # NaN (a rate with no episodes) compares equal to NaN here
        return {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items() if k not in timing}
    for ra, rb in zip(hist_a, hist_b):
        assert comparable(ra) == comparable(rb)
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The reference: the local backend (2 worker processes), 2 iterations."""
    return run(small_config(backend="local"), tmp_path_factory.mktemp("local"))


def test_batch_fields_are_compared(local_run):
    batch = local_run[0][0][0]
    assert batch.obs.shape[0] == 4 * 20 and batch.h0 is not None  # the LSTM's states are compared too
    assert local_run[0][0][1].sum() > 4  # episodes ended (and reset) inside the iteration


def test_ray_backend_gives_the_local_batches_and_curve(local_ray, local_run, tmp_path):
    ray_run = run(small_config(backend="ray"), tmp_path)
    assert ray_run[3].venv.num_workers == 2
    venv = ray_run[3].venv
    assert venv.attached == [True, True]    # every actor on this machine: stepping in the driver's buffers
    assert not venv.compiled_graph          # plain actor calls unless asked for (the graph's readers spin)
    assert_same_run(local_run, ray_run)


def test_plain_actor_calls_give_the_same_steps_as_the_compiled_graph(local_ray):
    from policies.ray_backend import RayVectorEnv

    kwargs = {"max_episode_steps": 5, "terminate_on_success": False}
    # two envs of 2 actors on the 2-CPU test instance: half a CPU each
    envs = [RayVectorEnv(4, 2, env_kwargs=kwargs, compiled_graph=c, cpus_per_worker=0.5) for c in (True, False)]
    try:
        assert [e.compiled_graph for e in envs] == [True, False]
        outs = [[e.reset(seed=3) for e in envs]]
        rng = np.random.default_rng(1)
        for _ in range(8):
            actions = rng.uniform(-1, 1, (4, envs[0].single_action_space.shape[0])).astype(np.float32)
            outs.append([e.step(actions) for e in envs])
    finally:
        for e in envs:
            e.close()
    assert_same_steps(outs)


def test_actors_on_the_drivers_machine_step_into_its_shared_buffers_with_the_same_steps(local_ray):
    from policies.ray_backend import RayVectorEnv

    kwargs = {"max_episode_steps": 5, "terminate_on_success": False}
    envs = [RayVectorEnv(4, 2, env_kwargs=kwargs, shared_memory=s, cpus_per_worker=0.5) for s in (True, False)]
    segment = envs[0]._segment.name
    try:
        assert envs[0].attached == [True, True] and envs[1].attached == [False, False]
        outs = [[e.reset(seed=3) for e in envs]]
        rng = np.random.default_rng(2)
        for _ in range(8):  # episodes of 5 steps end and reset inside
            actions = rng.uniform(-1, 1, (4, envs[0].single_action_space.shape[0])).astype(np.float32)
            outs.append([e.step(actions) for e in envs])
        # what crossed Ray: the answering actors' arrays; nothing for the attached ones
        assert envs[0].bytes_sent == envs[0].bytes_received == 0
        assert envs[1].bytes_sent > 0 and envs[1].bytes_received > 0
    finally:
        for e in envs:
            e.close()
    assert_same_steps(outs)
    assert not (Path("/dev/shm") / segment).exists()  # close() unlinked the segment


def test_socket_signals_give_the_plain_calls_steps_and_survive_a_death_while_serving(local_ray):
    """Attached actors take their steps over a Unix socket (one long-running serve call each);
    a worker SIGKILLed while serving is noticed on its socket, restarted and replayed."""
    from policies.ray_backend import RayVectorEnv

    kwargs = {"max_episode_steps": 5, "terminate_on_success": False}
    envs = [RayVectorEnv(4, 2, env_kwargs=kwargs, socket_signals=s, cpus_per_worker=0.5) for s in (True, False)]
    try:
        pids = [pid for pid, _ in envs[0].placement()]
        assert envs[0].attached == envs[1].attached == [True, True]
        outs = [[e.reset(seed=3) for e in envs]]
        assert envs[0].on_socket == [True, True] and envs[1].on_socket == [False, False]
        rng = np.random.default_rng(4)
        for t in range(9):
            if t == 4:
                kill_process(pids[1])  # its serve call is running: the socket closes under the driver
            actions = rng.uniform(-1, 1, (4, envs[0].single_action_space.shape[0])).astype(np.float32)
            outs.append([e.step(actions) for e in envs])
        assert envs[0].restarts == [0, 1] and envs[1].restarts == [0, 0]
        assert envs[0].on_socket == [True, True], "the restarted actor serves again after its replay"
        assert envs[0].placement()[1][0] != pids[1] and envs[0].on_socket == [False, False]
        outs.append([e.step(actions) for e in envs])  # placement() stopped the links; they reopen
    finally:
        for e in envs:
            e.close()
    assert_same_steps(outs)


def test_a_worker_killed_mid_iteration_is_restarted_and_the_iteration_replayed(local_ray, local_run, tmp_path):
    killed = []

    def kill_worker(trainer, t):
        # in the second iteration: worker 0 before step 7, worker 1 after its episodes reset (step 15)
        victim = {7: 0, 15: 1}.get(t)
        if trainer.iteration == 1 and victim is not None:
            pid, _ = trainer.venv.placement()[victim]
            kill_process(pid)
            killed.append(pid)

    ray_run = run(small_config(backend="ray"), tmp_path, on_step=kill_worker)
    assert len(killed) == 2
    assert ray_run[3].venv.restarts == [1, 1]
    assert_same_run(local_run, ray_run)


def test_the_run_stops_with_a_clear_error_after_the_retry_budget(local_ray, tmp_path):
    def kill_worker_0(trainer, t):
        if t in (3, 6):
            kill_process(trainer.venv.placement()[0][0])

    with pytest.raises(RuntimeError, match=r"Ray env worker 0 \(envs 0\.\.1\) died 2 times; its retry budget "
                                           r"\(max_restarts=1\) is spent.*--resume"):
        run(small_config(backend="ray", ray_max_restarts=1), tmp_path, on_step=kill_worker_0)


def test_resume_from_a_checkpoint_on_the_ray_backend(local_ray, local_run, tmp_path):
    """First iteration on the local backend, second on Ray from the checkpoint: the same run."""
    run(small_config(backend="local"), tmp_path, iterations=1)
    resumed = run(small_config(backend="ray"), tmp_path, resume_from=tmp_path / "checkpoints" / "latest.pt")
    assert resumed[3].iteration == ITERATIONS
    assert resumed[1] == [] or len(resumed[1]) == 1
    for key, value in local_run[2].items():
        torch.testing.assert_close(value, resumed[2][key], rtol=0, atol=0, msg=key)
