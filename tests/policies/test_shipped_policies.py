"""The policies the stack ships: valid artifacts, recorded results, and a quick re-evaluation."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from policies.evaluate import evaluate, runtime_policy
from policies.runtime import PolicyRuntime

ZOO = Path(__file__).resolve().parents[2] / "policies" / "policies" / "zoo"
SHIPPED = {  # name -> (architecture, randomization it was trained under)
    "reach_lstm": ("lstm", "default"),
    "reach_lstm_nominal": ("lstm", "none"),
    "reach_mlp": ("mlp", "default"),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_artifact_loads_and_records_its_training(name):
    runtime = PolicyRuntime(ZOO / name)
    m = runtime.manifest
    architecture, randomization = SHIPPED[name]
    assert m.architecture == architecture
    assert m.training["randomization_name"] == randomization
    assert m.training["config"]["seed"] == 0 and "sim2real train" in m.training["command"]
    assert m.training["export_parity_max_abs_diff"] <= 1e-5
    for setting in ("none", "default"):
        result = m.evaluation[setting]
        assert result["episodes"] >= 500, f"{name}: evaluated on {result['episodes']} episodes"


def test_shipped_reach_lstm_meets_its_target_in_the_manifest():
    evaluation = PolicyRuntime(ZOO / "reach_lstm").manifest.evaluation
    assert evaluation["default"]["success_rate"] >= 0.95
    assert evaluation["none"]["success_rate"] >= 0.95


@pytest.mark.slow
def test_shipped_reach_lstm_passes_a_quick_randomized_eval():
    result = evaluate(partial(runtime_policy, str(ZOO / "reach_lstm")), episodes=20, randomization="default",
                      seed=777)
    assert result.success_rate >= 0.9, result.line()
