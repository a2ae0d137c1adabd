"""The PPO runner end to end on small budgets: exact resume, learning, EPOpt, safe loading."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import yaml

from policies.config import TrainConfig
from policies.train import Trainer, contended_update, load_checkpoint_file
from sim_bridge.profile import shipped_profile_path


def tiny_config(**overrides) -> TrainConfig:
    base = dict(num_envs=4, num_workers=0, num_steps=20, seq_len=10, hidden=8, critic_hidden=(16,),
                update_epochs=2, num_minibatches=2, total_env_steps=4 * 20 * 3, torch_threads=1,
                checkpoint_every=1, env_kwargs={"max_episode_steps": 20, "terminate_on_success": False})
    base.update(overrides)
    return TrainConfig(**base)


def test_resume_from_a_checkpoint_is_exact(tmp_path):
    straight = Trainer(tiny_config(), tmp_path / "a", quiet=True)
    straight.train()
    straight.close()

    first = Trainer(tiny_config(), tmp_path / "b", quiet=True)
    first.train(stop_after_iterations=2)
    first.close()
    resumed = Trainer(tiny_config(), tmp_path / "b", quiet=True)
    resumed.load_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt")
    assert resumed.iteration == 2
    resumed.train()
    resumed.close()

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{key} differs after resume")
    assert straight.env_steps == resumed.env_steps == 240


def test_best_checkpoint_follows_the_windowed_training_success_and_snapshots_are_kept(tmp_path):
    trainer = Trainer(tiny_config(snapshot_every=1, best_window=2), tmp_path, quiet=True)
    trainer.train()
    trainer.close()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["best.pt", "iter_00001.pt", "iter_00002.pt", "iter_00003.pt", "latest.pt"]
    rows = trainer.history

    def weighted(window):
        return sum(r["success_rate"] * r["episodes"] for r in window) / sum(r["episodes"] for r in window)

    windows = [weighted(rows[i - 1:i + 1]) for i in (1, 2)]   # the first full window ends at iteration 2
    best = load_checkpoint_file(tmp_path / "checkpoints" / "best.pt")
    assert best["best_success"] == pytest.approx(max(windows))
    assert best["iteration"] == 2 + int(np.argmax(windows))
    assert load_checkpoint_file(tmp_path / "checkpoints" / "iter_00002.pt")["iteration"] == 2
    # episode-weighted; an iteration that finished no episode adds nothing
    trainer.history = [{"episodes": 2, "success_rate": 1.0}, {"episodes": 6, "success_rate": 0.5},
                       {"episodes": 0, "success_rate": float("nan")}]
    assert trainer.windowed_success() == pytest.approx(0.5)
    trainer.cfg.best_window = 3
    assert trainer.windowed_success() == pytest.approx(5 / 8)
    trainer.cfg.best_window = 4
    assert trainer.windowed_success() is None     # fewer iterations than the window
    with pytest.raises(ValueError, match="snapshot_every must be >= 0"):
        tiny_config(snapshot_every=-1).validate()


@pytest.fixture
def easy_profile(tmp_path):
    """The shipped arm with a (nearly) fixed target: a task PPO improves on within seconds."""
    data = yaml.safe_load(shipped_profile_path().read_text())
    data["mjcf"] = str((shipped_profile_path().parent / data["mjcf"]).resolve())
    data["reach_workspace"] = {"low": [0.45, 0.2, 0.3], "high": [0.451, 0.201, 0.301]}
    path = tmp_path / "easy_profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.slow
def test_training_improves_return_on_an_easy_setting(tmp_path, easy_profile):
    iterations = 40
    cfg = tiny_config(num_envs=16, num_steps=50, seq_len=25, hidden=32, critic_hidden=(64,),
                      total_env_steps=16 * 50 * iterations, update_epochs=4, num_minibatches=4,
                      learning_rate=3e-3, randomization="none", robot_profile=easy_profile,
                      env_kwargs={"max_episode_steps": 50, "terminate_on_success": False})
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    trainer.train()
    trainer.close()
    returns = [row["mean_return"] for row in trainer.history]
    first, last = np.mean(returns[:3]), np.mean(returns[-3:])
    assert last > first + 1.5, f"return did not improve: first {first:.2f}, last {last:.2f}"
    rows = (tmp_path / "run" / "progress.csv").read_text().strip().splitlines()
    assert len(rows) == iterations + 1  # header + one row per iteration


def test_epopt_keeps_the_worst_fraction_of_complete_episodes(tmp_path):
    trainer = Trainer(tiny_config(epopt_epsilon=0.5, epopt_warmup_iterations=0), tmp_path, quiet=True)
    trainer.close()
    T, N = 6, 2
    starts = np.zeros((T, N), bool)
    starts[0] = True
    starts[3, 0] = True  # env 0: episodes [0..2] and [3..5] (the last one is cut: not complete)
    dones = np.zeros((T, N))
    dones[2, 0] = 1.0
    dones[4, 1] = 1.0  # env 1: one complete episode [0..4], step 5 starts a cut one
    starts[5, 1] = True
    rewards = np.zeros((T, N))
    rewards[:3, 0] = -1.0  # env 0 first episode: return -3 (worst)
    rewards[:5, 1] = 1.0  # env 1 episode: return +5
    weights = trainer._epopt_weights(rewards, starts, dones)
    np.testing.assert_array_equal(weights[:, 0], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(weights[:, 1], [0, 0, 0, 0, 0, 0])


def test_checkpoints_never_unpickle_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    with path.open("wb") as handle:
        pickle.dump({"checkpoint_version": 1, "payload": Evil()}, handle, protocol=2)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint_file(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint_file(tmp_path / "missing.pt")


def test_push_training_smoke_run_with_tensorboard_and_object_physics_for_the_critic(tmp_path):
    """A short Push run: the critic's privileged inputs hold the object physics and the puck's
    true velocity; the curve goes to progress.csv and to TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = Trainer(tiny_config(task="push", env_kwargs={"max_episode_steps": 20, "terminate_on_success": False}),
                      tmp_path / "push", quiet=True)
    names = trainer.priv_names
    assert {"puck_mass/puck", "puck_friction/puck", "object_vel/x", "pusher_to_object/z"} <= set(names)
    last = trainer.train()
    trainer.close()
    assert last["iteration"] == 3 and np.isfinite(last["mean_return"])
    events = EventAccumulator(str(tmp_path / "push" / "tensorboard"))
    events.Reload()
    returns = events.Scalars("train/mean_return")
    assert [e.step for e in returns] == [80, 160, 240]
    assert returns[-1].value == pytest.approx(last["mean_return"], rel=1e-5)


def test_an_update_far_slower_than_the_runs_earlier_ones_is_reported_as_contended_cpu():
    """Several torch threads and an update > 5x the median of at least 5 earlier ones: a warning
    that names the figures and the way out (--torch-threads 1); otherwise nothing."""
    earlier = [1.0, 1.1, 0.9, 1.0, 1.05]
    warning = contended_update(earlier, 44.5, torch_threads=2)
    assert warning is not None
    assert "44.5 s" in warning and "median of 1.00 s" in warning and "--torch-threads 1" in warning
    assert contended_update(earlier, 4.9, torch_threads=2) is None          # within 5x
    assert contended_update(earlier[:4], 44.5, torch_threads=2) is None     # too few to judge
    assert contended_update(earlier, 44.5, torch_threads=1) is None         # one thread waits for no one
