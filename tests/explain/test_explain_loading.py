"""The actor `sim2real explain` analyses: ONNX -> torch reconstruction of the zoo policies (parity with
onnxruntime), the shipped checkpoint against its graph, and bad inputs refused with what is wrong."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from policies.explain.loading import (PARITY_TOLERANCE, ExplainError, actor_from_onnx, load_explained_policy,
                                      onnx_parity)
from policies.manifest import shipped_zoo

ZOO = shipped_zoo()


@pytest.mark.parametrize("name", ["reach_lstm", "reach_lstm_nominal", "reach_mlp"])
def test_zoo_graph_reconstructs_to_a_torch_actor_with_onnxruntime_parity(name):
    manifest = json.loads((ZOO / name / "manifest.json").read_text())
    actor = actor_from_onnx(ZOO / name / f"{name}.onnx", expected_architecture=manifest["architecture"],
                            obs_size=manifest["observation"]["size"], act_size=manifest["action"]["size"])
    assert actor.recurrent == (manifest["architecture"] == "lstm")
    worst = onnx_parity(actor, ZOO / name / f"{name}.onnx", steps=40, sequences=2, seed=3)
    assert worst < PARITY_TOLERANCE


@pytest.mark.parametrize("name", ["reach_lstm", "reach_lstm_nominal", "reach_mlp", "push_lstm", "push_mlp"])
def test_reconstructed_weights_are_the_checkpoints_weights(name):
    """The zoo ships both: the graph's initializers, re-ordered (LSTM gates iofc -> ifco, MatMul
    transposed), are exactly the checkpoint's parameters (the normalizer's variance to float
    rounding; the log-std and the normalizer's count are not in the graph)."""
    from policies.export import actor_from_checkpoint
    rebuilt = actor_from_onnx(ZOO / name / f"{name}.onnx").state_dict()
    trained = actor_from_checkpoint(ZOO / name / "checkpoint.pt")[0].state_dict()
    assert rebuilt.keys() == trained.keys()
    for key in set(rebuilt) - {"log_std", "obs_norm.count", "obs_norm.var"}:
        assert torch.equal(rebuilt[key], trained[key]), key
    np.testing.assert_allclose(rebuilt["obs_norm.var"], trained["obs_norm.var"], rtol=1e-5, atol=1e-7)


def _without_checkpoint(tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(ZOO / name, folder)
    (folder / "checkpoint.pt").unlink(missing_ok=True)
    return folder


def test_load_explained_policy_uses_the_checkpoint_when_shipped_and_the_graph_otherwise(tmp_path):
    lstm = load_explained_policy(ZOO / "reach_lstm")
    assert lstm.source == "checkpoint" and lstm.parity_max_abs_diff < PARITY_TOLERANCE
    assert load_explained_policy(ZOO / "reach_mlp").source == "checkpoint"
    mlp = load_explained_policy(_without_checkpoint(tmp_path, "reach_mlp"))  # e.g. an artifact exported elsewhere
    assert mlp.source == "onnx-reconstruction" and mlp.architecture == "mlp"
    assert mlp.task["name"] == "reach" and mlp.randomization == "default"
    nominal = load_explained_policy(_without_checkpoint(tmp_path, "reach_lstm_nominal") / "reach_lstm_nominal.onnx")
    assert nominal.randomization == "none" and "reconstructed" in nominal.notes[0]


def test_a_checkpoint_whose_architecture_does_not_match_its_manifest_is_refused(tmp_path):
    folder = tmp_path / "reach_mlp"
    shutil.copytree(ZOO / "reach_mlp", folder)
    shutil.copy(ZOO / "reach_lstm" / "checkpoint.pt", folder / "checkpoint.pt")
    with pytest.raises(ExplainError, match="does not match its manifest: architecture 'lstm'"):
        load_explained_policy(folder)


def test_a_checkpoint_that_is_not_the_graphs_is_refused(tmp_path):
    folder = tmp_path / "reach_lstm_nominal"
    shutil.copytree(ZOO / "reach_lstm_nominal", folder)
    shutil.copy(ZOO / "reach_lstm" / "checkpoint.pt", folder / "checkpoint.pt")  # same shapes, other weights
    with pytest.raises(ExplainError, match="not the checkpoint this graph was exported from"):
        load_explained_policy(folder)


def test_a_folder_without_manifest_is_refused(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"")
    with pytest.raises(ExplainError, match="no manifest.json"):
        load_explained_policy(tmp_path)


class _ReluActor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(24, 8), nn.ReLU(), nn.Linear(8, 7))

    def forward(self, obs):
        return self.net(((obs - 0.5) / 2.0).clamp(-10, 10))


def test_a_graph_of_another_architecture_is_refused_naming_the_operator(tmp_path):
    path = tmp_path / "relu.onnx"
    torch.onnx.export(_ReluActor(), (torch.zeros(1, 24),), str(path), dynamo=False, opset_version=17,
                      input_names=["obs"], output_names=["actions"])
    with pytest.raises(ExplainError, match="operator Relu"):
        actor_from_onnx(path)


def test_a_graph_whose_weights_were_edited_fails_parity(tmp_path):
    """The parity check is what guards the reconstruction: a graph the rebuilt actor does not
    reproduce (here an extra Mul in front of the actions) is caught."""
    model = onnx.load(str(ZOO / "reach_mlp" / "reach_mlp.onnx"))
    out = model.graph.output[0].name
    last = model.graph.node[-1]
    last.output[0] = "pre_scale"
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(1.5, np.float32), "scale_k"))
    model.graph.node.append(onnx.helper.make_node("Mul", ["pre_scale", "scale_k"], [out]))
    path = tmp_path / "scaled.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ExplainError, match="operator Mul"):
        actor_from_onnx(path)
    actor = actor_from_onnx(ZOO / "reach_mlp" / "reach_mlp.onnx")
    assert onnx_parity(actor, path, steps=5, sequences=1) > 1e-3
