"""Fine-tuning (`sim2real train --init-from CHECKPOINT`): a run starts from another run's weights,
and a checkpoint that does not fit is refused with the reason."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from policies.config import TrainConfig
from policies.train import Trainer

TINY = TrainConfig(name="tiny", total_env_steps=256, num_envs=4, num_workers=0, num_steps=64, seq_len=16,
                   hidden=16, critic_hidden=(16,), num_minibatches=2, update_epochs=1, eval_episodes=0,
                   checkpoint_every=1, torch_threads=1)


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    trainer = Trainer(TINY, out, quiet=True)
    try:
        trainer.train()
    finally:
        trainer.close()
    return out / "checkpoints" / "latest.pt"


def test_init_from_copies_the_weights_and_starts_fresh(base_checkpoint, tmp_path):
    cfg = dataclasses.replace(TINY, init_from=str(base_checkpoint), seed=7)
    trainer = Trainer(cfg, tmp_path / "ft", quiet=True)
    try:
        saved = torch.load(base_checkpoint, weights_only=True)["model"]
        for name, value in trainer.model.state_dict().items():
            assert torch.equal(value, saved[name]), name
        assert trainer.iteration == 0 and trainer.env_steps == 0
        fresh = Trainer(dataclasses.replace(TINY, seed=7), tmp_path / "fresh", quiet=True)
        try:
            assert any(not torch.equal(v, saved[k]) for k, v in fresh.model.state_dict().items())
        finally:
            fresh.close()
    finally:
        trainer.close()


@pytest.mark.parametrize("change,match", [
    ({"hidden": 32}, "does not fit this configuration"),
    ({"randomization": "none"}, "other privileged inputs"),
])
def test_incompatible_checkpoint_is_refused(base_checkpoint, tmp_path, change, match):
    cfg = dataclasses.replace(TINY, init_from=str(base_checkpoint), **change)
    with pytest.raises(ValueError, match=match):
        Trainer(cfg, tmp_path / "bad", quiet=True)


def test_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        Trainer(dataclasses.replace(TINY, init_from=str(tmp_path / "nope.pt")), tmp_path / "x", quiet=True)
