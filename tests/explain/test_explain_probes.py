"""Probes must find what a memory encodes and nothing in shuffled labels (the sanity checks of item 4)."""
from __future__ import annotations

import numpy as np

from policies.explain.probes import ProbeSettings, probe_memory, probe_step, summarize_probes, varying


def _synthetic(n=160, features=32, seed=0):
    """A memory that encodes ``encoded`` linearly (plus noise) and knows nothing of ``hidden``."""
    rng = np.random.default_rng(seed)
    y = np.column_stack([rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0, n), np.full(n, 1.0)])
    mix = rng.standard_normal((1, features))
    x = (y[:, :1] - 1.25) @ mix + 0.1 * rng.standard_normal((n, features))
    return x.astype(np.float32), y


def test_probe_finds_an_encoded_parameter_and_the_shuffled_control_does_not():
    x, y = _synthetic()
    out = probe_memory({1.0: x}, y, ["encoded", "hidden", "constant"], ProbeSettings(folds=4))
    assert out["parameters"] == ["encoded", "hidden"]  # a parameter that does not vary is left out
    assert out["ridge_r2"]["encoded"][0] > 0.9
    assert out["logistic_accuracy"]["encoded"][0] > 0.9
    assert out["ridge_r2_shuffled"]["encoded"][0] < 0.1
    assert out["logistic_accuracy_shuffled"]["encoded"][0] < 0.7
    assert out["ridge_r2"]["hidden"][0] < 0.15
    assert out["logistic_accuracy"]["hidden"][0] < 0.7
    rows = summarize_probes(out, 1.0)["rows"]
    assert rows[0]["parameter"] == "encoded"


def test_probe_steps_and_varying():
    assert probe_step(0.5, 50.0) == 24 and probe_step(4.0, 50.0) == 199 and probe_step(0.0, 50.0) == 0
    y = np.array([[1.0, 2.0], [1.0, 3.0]])
    assert varying(y).tolist() == [False, True]
