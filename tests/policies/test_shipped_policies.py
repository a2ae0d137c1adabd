"""The policies the stack ships: valid artifacts, recorded results, and a quick re-evaluation."""
from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pytest

from policies.evaluate import evaluate, runtime_policy
from policies.runtime import PolicyRuntime
from policies.train import load_checkpoint_file

ZOO = Path(__file__).resolve().parents[2] / "policies" / "policies" / "zoo"
SHIPPED = {  # name -> (architecture, randomization it was trained under)
    "reach_lstm": ("lstm", "default"),
    "reach_lstm_nominal": ("lstm", "none"),
    "reach_mlp": ("mlp", "default"),
    "push_lstm": ("lstm", "push_default"),
    "push_lstm_nominal": ("lstm", "none"),
    "push_mlp": ("mlp", "push_default"),
    "push_mlp_history": ("mlp_history", "push_default"),
}
PUSH = sorted(name for name in SHIPPED if name.startswith("push_"))
README = ZOO.parents[2] / "README.md"


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


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_policy_ships_its_training_weights(name):
    """Fine-tuning (`sim2real loop`, `--init-from`) and `sim2real explain` start from them."""
    m = PolicyRuntime(ZOO / name).manifest
    weights = load_checkpoint_file(ZOO / name / "checkpoint.pt")
    assert "optimizer" not in weights and weights["env_steps"] == m.training["env_steps"]


@pytest.mark.parametrize("name", PUSH)
def test_push_policies_ship_a_held_out_evaluation(name):
    m = PolicyRuntime(ZOO / name).manifest
    assert m.task["name"] == "push"
    assert m.evaluation["push_hard"]["episodes"] >= 500   # the held-out column of the README's table


def _readme_rows(prefix: str, text: str) -> dict[str, str]:
    """The README table rows of the shipped policies named ``prefix...``, by name."""
    return {m.group(1): m.group(2) for m in re.finditer(rf"^\| `({prefix}[a-z_]+)` \|(.*)$", text, re.M)}


def _success_cells_match(row: str, evaluation: dict, columns: tuple[str, ...]) -> bool:
    """Whether the row quotes, in order, each column's success % and Wilson interval
    (one decimal; an upper bound of 100.0 written as 100)."""
    quoted = re.findall(r"([0-9.]+)% \[([0-9.]+), ([0-9.]+)\]", row)
    expected = [(f"{100 * evaluation[c]['success_rate']:.1f}",
                 *(f"{100 * v:.1f}".replace("100.0", "100") for v in evaluation[c]["success_ci95"]))
                for c in columns]
    return quoted == expected


def test_the_readme_reach_table_is_the_manifests_evaluations():
    """The README's table of shipped Reach policies quotes each manifest: success % and its
    Wilson interval on nominal and randomized physics, and the training wall time."""
    reach = sorted(name for name in SHIPPED if name.startswith("reach_"))
    text = README.read_text()
    rows = _readme_rows("reach_", text[text.index("| policy | actor | trained under | nominal physics | "
                                                  "randomized physics |"):].split("\n\n")[0])
    assert sorted(rows) == reach
    for name in reach:
        m = PolicyRuntime(ZOO / name).manifest
        assert _success_cells_match(rows[name], m.evaluation, ("none", "default")), name
        assert f"| {m.training['wall_time_s']:.0f} s" in rows[name], name


def test_the_readme_push_table_is_the_manifests_evaluations():
    """The README's side-by-side table quotes each push policy's manifest (success % and its
    Wilson interval on nominal, randomized and held-out physics), not numbers typed by hand."""
    rows = _readme_rows("push_", README.read_text())
    assert sorted(rows) == PUSH
    for name in PUSH:
        evaluation = PolicyRuntime(ZOO / name).manifest.evaluation
        assert _success_cells_match(rows[name], evaluation, ("none", "default", "push_hard")), name


def test_shipped_reach_lstm_meets_its_target_in_the_manifest():
    evaluation = PolicyRuntime(ZOO / "reach_lstm").manifest.evaluation
    assert evaluation["default"]["success_rate"] >= 0.95
    assert evaluation["none"]["success_rate"] >= 0.95


@pytest.mark.slow
def test_shipped_reach_lstm_passes_a_quick_randomized_eval():
    result = evaluate(partial(runtime_policy, str(ZOO / "reach_lstm")), episodes=20, randomization="default",
                      seed=777)
    assert result.success_rate >= 0.9, result.line()
