"""SimOpt distribution updates (calibration.updates): REPS keeps KL(new || old) within
the bound, solves its dual, moves toward low cost and converges on a quadratic; CEM too."""
from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.search import GaussianSearch
from calibration.updates import cem_update, reps_dual, reps_update, reps_weights

X_STAR = np.array([0.3, -0.5, 1.2])


def random_search(rng, dim, spread=1.0):
    a = rng.normal(size=(dim, dim)) * spread
    cov = a @ a.T + 0.05 * np.eye(dim)
    names = tuple(f"p{i}" for i in range(dim))
    return GaussianSearch(names, rng.normal(size=dim), cov, np.full(dim, -np.inf), np.full(dim, np.inf))


def random_costs(rng, kind, x):
    n = len(x)
    if kind == "uniform":
        return rng.uniform(0, 10, n)
    if kind == "heavy":
        return rng.exponential(size=n) ** 3 * 100
    if kind == "quadratic":
        return np.sum((x - rng.normal(size=x.shape[1])) ** 2, axis=1)
    if kind == "tiny":
        return 1e-6 * rng.uniform(size=n)
    if kind == "some_inf":
        c = rng.uniform(0, 1, n)
        c[rng.uniform(size=n) < 0.3] = np.inf
        return c
    raise ValueError(kind)


def start_3d():
    return GaussianSearch(("a", "b", "c"), np.zeros(3), np.eye(3), np.full(3, -5.0), np.full(3, 5.0))


@pytest.mark.parametrize("epsilon", [0.05, 0.3, 1.0, 3.0])
def test_reps_kl_never_exceeds_epsilon(epsilon):
    rng = np.random.default_rng(int(epsilon * 100))
    limited = 0
    for trial in range(30):
        dim = int(rng.integers(1, 6))
        search = random_search(rng, dim)
        n = int(rng.choice([4, 8, 32, 256]))
        x = search.sample(rng, n)
        costs = random_costs(rng, ["uniform", "heavy", "quadratic", "tiny", "some_inf"][trial % 5], x)
        if np.isfinite(costs).sum() < 2:
            continue
        new, info = reps_update(search, x, costs, epsilon=epsilon)
        assert new.kl(search) <= epsilon * (1 + 1e-9)
        assert info["kl"] == pytest.approx(new.kl(search))
        assert info["sample_kl"] <= epsilon * (1 + 1e-6)
        assert info["eta"] >= 1e-3
        assert 1.0 <= info["effective_sample_size"] <= n + 1e-9
        assert np.all(np.linalg.eigvalsh(new.cov) > 0)
        limited += info["kl_limited"]
    assert limited > 0  # the Gaussian fit did exceed the bound at times and was shrunk


def test_reps_step_is_shrunk_when_the_fit_exceeds_the_bound():
    rng = np.random.default_rng(0)
    search = random_search(rng, 5)
    x = search.sample(rng, 8)  # 8 samples in 5-D: the weighted fit is nearly degenerate
    new, info = reps_update(search, x, rng.uniform(size=8), epsilon=0.5)
    assert info["kl_limited"] and 0.0 <= info["step"] < 1.0
    assert info["unlimited_kl"] > 0.5
    assert new.kl(search) <= 0.5


def test_reps_eta_minimises_the_dual_and_uses_the_budget():
    rng = np.random.default_rng(1)
    costs = rng.uniform(0, 5, 200)
    search = GaussianSearch(("a",), [0.0], [[1.0]], [-np.inf], [np.inf])
    x = rng.normal(size=(200, 1))
    _, info = reps_update(search, x, costs, epsilon=0.5)
    eta = info["eta"]
    grid = np.exp(np.linspace(math.log(1e-3), math.log(1e3), 2000))
    assert info["dual"] <= min(reps_dual(e, costs, 0.5) for e in grid) + 1e-9
    assert info["sample_kl"] == pytest.approx(0.5, rel=1e-4)  # stationarity: KL(w || uniform) = epsilon
    w = reps_weights(costs, eta)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(np.diff(w[np.argsort(costs)]) <= 0)  # lower cost, higher weight


def test_reps_eta_floor():
    rng = np.random.default_rng(2)
    search = start_3d()
    x = search.sample(rng, 64)
    _, info = reps_update(search, x, 1e-7 * rng.uniform(size=64), epsilon=1.0, min_eta=1e-3)
    assert info["eta"] == pytest.approx(1e-3)
    _, info = reps_update(search, x, 1e-7 * rng.uniform(size=64), epsilon=1.0, min_eta=1e-9)
    assert 1e-9 <= info["eta"] < 1e-6
    # equal costs: uniform weights
    _, info = reps_update(search, x, np.ones(64))
    assert info["effective_sample_size"] == pytest.approx(64)


def test_reps_moves_toward_low_cost_and_converges_on_a_quadratic():
    rng = np.random.default_rng(3)
    search = start_3d()
    dist = [np.linalg.norm(search.mean - X_STAR)]
    for _ in range(8):
        x = search.sample(rng, 256)
        search, info = reps_update(search, x, np.sum((x - X_STAR) ** 2, axis=1), epsilon=1.0)
        assert info["kl"] <= 1.0
        dist.append(np.linalg.norm(search.mean - X_STAR))
    assert dist[1] < 0.5 * dist[0]
    assert dist[-1] < 0.02
    assert np.all(search.std < 0.1)  # and the distribution concentrates


def test_reps_failed_rollouts_get_no_weight():
    rng = np.random.default_rng(4)
    search = start_3d()
    x = search.sample(rng, 100)
    costs = rng.uniform(size=100)
    costs[:50] = np.inf
    new_a, _ = reps_update(search, x, costs)
    x2 = x.copy()
    x2[:50] = 4.9  # moving zero-weight samples changes nothing
    new_b, info = reps_update(search, x2, costs)
    np.testing.assert_allclose(new_a.mean, new_b.mean)
    np.testing.assert_allclose(new_a.cov, new_b.cov)
    assert info["n_finite"] == 50
    with pytest.raises(ValueError, match="at least 2"):
        reps_update(search, x[:3], [np.inf, np.inf, 1.0])
    with pytest.raises(ValueError, match="finite or"):
        reps_update(search, x[:3], [np.nan, 0.0, 1.0])


def test_updates_are_pure_and_repeatable_on_the_same_data():
    rng = np.random.default_rng(5)
    search = start_3d()
    x = search.sample(rng, 128)
    costs = np.sum((x - X_STAR) ** 2, axis=1)
    mean0, cov0 = search.mean.copy(), search.cov.copy()
    a, info_a = reps_update(search, x, costs, epsilon=0.5)
    b, info_b = reps_update(search, x, costs, epsilon=0.5)
    np.testing.assert_array_equal(a.mean, b.mean)
    assert info_a == info_b
    np.testing.assert_array_equal(search.mean, mean0)
    np.testing.assert_array_equal(search.cov, cov0)
    # several updates on the same rollouts, each within its bound
    current = search
    for _ in range(3):
        nxt, info = reps_update(current, x, costs, epsilon=0.5)
        assert nxt.kl(current) <= 0.5
        current = nxt


def test_cem_converges_on_the_quadratic():
    rng = np.random.default_rng(6)
    search = start_3d()
    for _ in range(8):
        x = search.sample(rng, 256)
        search, info = cem_update(search, x, np.sum((x - X_STAR) ** 2, axis=1), elite_frac=0.1)
        assert info["n_elite"] == 26
    assert np.linalg.norm(search.mean - X_STAR) < 0.02


def test_cem_elites_and_smoothing():
    rng = np.random.default_rng(7)
    search = start_3d()
    x = search.sample(rng, 50)
    costs = np.arange(50.0)
    new, info = cem_update(search, x, costs, elite_frac=0.2)
    np.testing.assert_allclose(new.mean, x[:10].mean(0))
    smooth, _ = cem_update(search, x, costs, elite_frac=0.2, smoothing=0.5)
    np.testing.assert_allclose(smooth.mean, 0.5 * search.mean + 0.5 * new.mean)
    np.testing.assert_allclose(smooth.cov, 0.5 * search.cov + 0.5 * new.cov)
    costs[:5] = np.inf  # failed rollouts are never elite
    _, info = cem_update(search, x, costs, elite_frac=0.2)
    assert info["elite_cost_max"] == 14.0
