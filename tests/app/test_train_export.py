"""`sim2real train` keeps the command that trained a run and exports the checkpoint asked for;
`sim2real export` evaluates under the randomizations asked for."""
from __future__ import annotations

import json
import sys

from policies.config import TrainConfig
from policies.train import load_checkpoint_file
from sim2real.training import TrainCommand, export_and_evaluate, run_train


def test_train_records_its_command_and_exports_its_best_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["sim2real", "train", "--num-envs", "2"])
    cfg = TrainConfig(num_envs=2, num_workers=0, num_steps=20, seq_len=10, total_env_steps=2 * 20 * 3, hidden=8,
                      critic_hidden=(8,), num_minibatches=1, torch_threads=1, best_window=1, eval_episodes=2,
                      env_kwargs={"max_episode_steps": 20, "terminate_on_success": False})
    run_dir, artifact = tmp_path / "run", tmp_path / "artifact"
    assert run_train(TrainCommand(config=cfg, out=run_dir, export=artifact, export_checkpoint="best")) == 0
    assert (run_dir / "command.txt").read_text() == "sim2real train --num-envs 2\n"
    best = load_checkpoint_file(run_dir / "checkpoints" / "best.pt")
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["training"]["iterations"] == best["iteration"]
    assert manifest["training"]["command"] == "sim2real train --num-envs 2"
    assert sorted(manifest["evaluation"]) == ["default", "none"]

    # a resumed run appends its command; `sim2real export` evaluates under the ones named
    (run_dir / "command.txt").write_text("sim2real train --num-envs 2\nsim2real train --num-envs 2 --resume\n")
    results = export_and_evaluate(run_dir / "checkpoints" / "latest.pt", tmp_path / "again", 2,
                                  randomizations=("none",))
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert sorted(results) == sorted(again["evaluation"]) == ["none"]
    assert again["training"]["command"] == "sim2real train --num-envs 2 && sim2real train --num-envs 2 --resume"
    assert again["training"]["iterations"] == 3
