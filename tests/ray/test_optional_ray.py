"""Ray is optional: the options parse, `--backend local` is the default, and `--backend ray`
without Ray installed stops with an error that says how to install it (no traceback)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tyro

from policies.config import TrainConfig
from sim2real.calibrate import CalibrateConfig, run_calibrate
from sim2real.training import EvalConfig, TrainCommand, run_eval, run_train


def test_the_options_parse_and_local_is_the_default():
    assert TrainConfig().backend == "local" and EvalConfig("reach_mlp").backend == "local"
    cmd = tyro.cli(TrainCommand, args=["--backend", "ray", "--ray-address", "10.0.0.1:6379", "--num-workers", "8",
                                       "--ray-max-restarts", "5"])
    assert (cmd.config.backend, cmd.config.ray_address, cmd.config.num_workers, cmd.config.ray_max_restarts) == \
        ("ray", "10.0.0.1:6379", 8, 5)
    cal = tyro.cli(CalibrateConfig, args=["--bags", "b", "--prior", "default", "--out", "o.yaml", "--backend", "ray",
                                          "--num-workers", "4"])
    assert (cal.backend, cal.num_workers) == ("ray", 4)
    with pytest.raises(SystemExit):
        tyro.cli(TrainCommand, args=["--backend", "spark"])


@pytest.fixture
def no_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError


def test_train_with_the_ray_backend_but_without_ray_says_how_to_install_it(no_ray, tmp_path, capsys):
    cfg = TrainConfig(backend="ray", num_envs=2, num_workers=1, total_env_steps=10)
    assert run_train(TrainCommand(config=cfg, out=tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "sim2real train: --backend ray needs Ray, which is not installed here" in err
    assert "pip install -r requirements/ray.txt" in err


def test_calibrate_and_eval_with_the_ray_backend_but_without_ray(no_ray, tmp_path, capsys):
    args = CalibrateConfig(bags=(str(tmp_path),), prior="default", out=tmp_path / "out.yaml", backend="ray")
    assert run_calibrate(args) == 2
    assert "sim2real calibrate: --backend ray needs Ray" in capsys.readouterr().err
    assert not (tmp_path / "out.yaml").exists()
    with pytest.raises(SystemExit, match="sim2real eval: --backend ray needs Ray"):
        run_eval(EvalConfig("reach_mlp", episodes=1, backend="ray"))


def test_the_local_backend_runs_without_ray(no_ray, tmp_path):
    from policies.train import Trainer
    cfg = TrainConfig(num_envs=2, num_workers=0, num_steps=4, seq_len=2, hidden=4, critic_hidden=(4,),
                      update_epochs=1, num_minibatches=1, total_env_steps=8, torch_threads=1,
                      env_kwargs={"max_episode_steps": 4})
    trainer = Trainer(cfg, Path(tmp_path), quiet=True)
    try:
        assert trainer.train()["env_steps"] == 8
    finally:
        trainer.close()
