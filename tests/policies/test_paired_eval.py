"""Paired evaluation: two policies on the same seeded episodes, compared with McNemar's exact
test (``sim2real eval A --against B``). Two success rates from the same 200-500 episodes have
overlapping Wilson intervals for differences of 5-10 points; pairing the episodes removes the
spread the episodes themselves put into both rates."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from policies.evaluate import EvalResult, paired_comparison

SIM2REAL = str(Path(sys.executable).with_name("sim2real"))


def _result(successes, randomization="default"):
    n = len(successes)
    return EvalResult(n, randomization, sum(successes) / n, (0.0, 1.0), 0.0, (0.0, 0.0), 0.0, (0.0, 0.0), None,
                      tuple(successes))


def test_the_paired_comparison_counts_the_discordant_episodes_and_tests_them_exactly():
    # 20 episodes: both solve 6, only A 10, only B 2, neither 2
    a = [True] * 6 + [True] * 10 + [False] * 2 + [False] * 2
    b = [True] * 6 + [False] * 10 + [True] * 2 + [False] * 2
    cmp = paired_comparison(_result(a), _result(b))
    assert (cmp["a_successes"], cmp["b_successes"], cmp["only_a"], cmp["only_b"], cmp["both"]) == (16, 8, 10, 2, 6)
    # two-sided exact binomial on 12 discordant pairs, 2 or fewer of one kind: 2 (1 + 12 + 66) / 2^12
    assert cmp["mcnemar_exact_p"] == pytest.approx(2 * (1 + 12 + 66) / 4096)
    same = paired_comparison(_result(a), _result(a))
    assert same["only_a"] == same["only_b"] == 0 and same["mcnemar_exact_p"] == 1.0
    with pytest.raises(ValueError, match="needs the same episodes"):
        paired_comparison(_result(a), _result(a[:10]))
    with pytest.raises(ValueError, match="needs the same episodes"):
        paired_comparison(_result(a), _result(a, randomization="none"))
    # the summary a manifest records leaves the per-episode list out
    assert "successes" not in _result(a).to_dict()


def test_eval_against_runs_both_on_the_same_episodes_and_reports_the_paired_test(tmp_path):
    out = subprocess.run([SIM2REAL, "eval", "reach_mlp", "--against", "reach_mlp", "--episodes", "4",
                          "--randomization", "default", "--workers", "1", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "<- reach_mlp" in out.stdout and "McNemar exact p = 1" in out.stdout, out.stdout
    result = json.loads((tmp_path / "r.json").read_text())["default"]
    paired = result["against"]["paired"]
    # a deterministic policy against itself: the same episodes solved, nothing discordant
    assert paired["episodes"] == 4 and paired["only_a"] == paired["only_b"] == 0
    assert paired["a_successes"] == round(4 * result["success_rate"]) == paired["b_successes"]
    bad = subprocess.run([SIM2REAL, "eval", "reach_mlp", "--against", "push_mlp", "--episodes", "2"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "needs the same episodes" in bad.stderr and "'push'" in bad.stderr, bad.stderr
