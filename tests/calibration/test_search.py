"""SimOpt search distribution (calibration.search): initial moments from a randomization
file, bounded sampling, closed-form KL, and writing back a loadable distribution file."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from calibration.search import GaussianSearch, distribution_moments, gaussian_kl
from sim_bridge.profile import load_profile
from sim_bridge.randomization import (Distribution, DynamicsRandomizer, load_randomization,
                                      parse_randomization)
from sim_bridge.simulator import build_model


@pytest.fixture(scope="module")
def profile():
    return load_profile("panda_like")


@pytest.fixture(scope="module")
def model(profile):
    return build_model(profile)


@pytest.fixture(scope="module")
def default_spec():
    return load_randomization("default")


def spec_of(parameters: dict, **extra):
    return parse_randomization({"randomization_version": 1, "parameters": parameters, **extra})


def search_3d(mean=(0.0, 1.0, -1.0), low=-5.0, high=5.0):
    a = np.array([[1.0, 0.3, 0.0], [0.0, 0.5, 0.2], [0.1, 0.0, 0.8]])
    return GaussianSearch(("a", "b", "c"), np.array(mean), a @ a.T, np.full(3, low), np.full(3, high))


def test_distribution_moments_match_scipy():
    m, v = distribution_moments(Distribution("uniform", low=0.5, high=1.5))
    assert (m, v) == pytest.approx((1.0, 1.0 / 12))
    m, v = distribution_moments(Distribution("loguniform", low=0.3, high=3.0))
    ref = stats.loguniform(0.3, 3.0)
    assert (m, v) == pytest.approx((ref.mean(), ref.var()), rel=1e-10)
    m, v = distribution_moments(Distribution("normal", mean=0.1, std=0.4, low=-1.2, high=1.2))
    assert (m, v) == pytest.approx((0.1, 0.16))


def test_from_spec_initial_moments(default_spec, model, profile):
    randomizer = DynamicsRandomizer(default_spec, model, profile)
    names = ("body_mass/link3", "joint_damping/joint2", "gravity/z", "action_latency")
    search = GaussianSearch.from_spec(default_spec, randomizer, names)
    ref = stats.loguniform(0.3, 3.0)
    np.testing.assert_allclose(search.mean, [1.0, ref.mean(), 0.0, 1.0])
    np.testing.assert_allclose(search.cov, np.diag([1 / 12, ref.var(), 0.16, 4 / 12]))
    np.testing.assert_allclose(search.low, [0.5, 0.3, -1.2, 0.0])
    np.testing.assert_allclose(search.high, [1.5, 3.0, 1.2, 2.0])
    assert search.names == names
    everything = GaussianSearch.from_spec(default_spec, randomizer)
    assert everything.names == randomizer.names
    with pytest.raises(ValueError, match="not in the randomization"):
        GaussianSearch.from_spec(default_spec, randomizer, ["body_mass/nope"])


def test_from_spec_takes_the_joint_gaussian(model, profile):
    spec = spec_of({"body_mass": {"operation": "scale", "distribution": "uniform", "low": 0.5, "high": 1.5},
                    "gravity": {"operation": "add", "distribution": "normal", "mean": 0.0, "std": 0.4,
                                "low": -1.2, "high": 1.2}},
                   joint_gaussian={"names": ["body_mass/link2", "gravity/z"], "mean": [1.1, 0.2],
                                   "cov": [[0.01, 0.004], [0.004, 0.04]]})
    randomizer = DynamicsRandomizer(spec, model, profile)
    search = GaussianSearch.from_spec(spec, randomizer, ["gravity/z", "body_mass/link1", "body_mass/link2"])
    np.testing.assert_allclose(search.mean, [0.2, 1.0, 1.1])
    np.testing.assert_allclose(search.cov, [[0.04, 0.0, 0.004], [0.0, 1 / 12, 0.0], [0.004, 0.0, 0.01]])


def test_sampling_respects_bounds():
    rng = np.random.default_rng(0)
    search = search_3d(mean=(4.5, 0.0, -4.8))  # much of the mass outside [-5, 5]
    x = search.sample(rng, 5000)
    assert x.shape == (5000, 3)
    assert np.all(x >= -5.0) and np.all(x <= 5.0)
    assert x[:, 0].mean() < 4.5  # truncation, not clipping: no pile-up at the bound
    assert np.mean(x[:, 0] == 5.0) < 0.001
    # far outside: rejection fails, clipping keeps the samples inside
    far = search_3d(mean=(50.0, 0.0, 0.0))
    y = far.sample(rng, 100)
    assert np.all(y >= -5.0) and np.all(y <= 5.0)
    # inside and untruncated in effect: the moments match
    z = search_3d(low=-100, high=100).sample(rng, 40000)
    np.testing.assert_allclose(z.mean(0), search_3d().mean, atol=0.03)
    np.testing.assert_allclose(np.cov(z.T), search_3d().cov, atol=0.03)


def test_kl_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(1)
    p = search_3d()
    b = np.array([[0.8, 0.0, 0.1], [0.2, 0.9, 0.0], [0.0, 0.3, 0.6]])
    q = GaussianSearch(p.names, [0.3, 0.8, -1.2], b @ b.T, p.low, p.high)
    x = rng.multivariate_normal(p.mean, p.cov, 200000)
    log_ratio = (stats.multivariate_normal(p.mean, p.cov).logpdf(x)
                 - stats.multivariate_normal(q.mean, q.cov).logpdf(x))
    se = log_ratio.std() / math.sqrt(len(x))
    assert p.kl(q) == pytest.approx(log_ratio.mean(), abs=4 * se)
    assert p.kl(p) == pytest.approx(0.0, abs=1e-12)
    assert p.kl(q) != pytest.approx(q.kl(p))  # not symmetric
    # 1-D closed form: log(s1/s0) + (s0^2 + (m0 - m1)^2) / (2 s1^2) - 1/2
    assert gaussian_kl(np.array([0.0]), np.array([[4.0]]), np.array([1.0]), np.array([[1.0]])) == \
        pytest.approx(math.log(1 / 2) + (4 + 1) / 2 - 0.5)


def test_invalid_parameters_raise():
    with pytest.raises(ValueError, match="symmetric"):
        GaussianSearch(("a", "b"), [0, 0], [[1, 0.5], [0, 1]], [-1, -1], [1, 1])
    with pytest.raises(ValueError, match="positive semi-definite"):
        GaussianSearch(("a", "b"), [0, 0], [[1, 2], [2, 1]], [-1, -1], [1, 1])
    with pytest.raises(ValueError, match="duplicate"):
        GaussianSearch(("a", "a"), [0, 0], np.eye(2), [-1, -1], [1, 1])
    s = search_3d()
    with pytest.raises(ValueError):
        s.mean[0] = 1.0  # immutable


def test_embed_into_full_vector(default_spec, model, profile):
    randomizer = DynamicsRandomizer(default_spec, model, profile)
    search = GaussianSearch.from_spec(default_spec, randomizer, ["gravity/z", "body_mass/link1"])
    x = search.sample(np.random.default_rng(2), 4)
    full = search.embed(x, randomizer.names, randomizer.nominal_values)
    assert full.shape == (4, randomizer.size)
    names = list(randomizer.names)
    np.testing.assert_array_equal(full[:, names.index("gravity/z")], x[:, 0])
    np.testing.assert_array_equal(full[:, names.index("body_mass/link1")], x[:, 1])
    other = [i for i, n in enumerate(names) if n not in search.names]
    np.testing.assert_array_equal(full[:, other], np.broadcast_to(randomizer.nominal_values[other], (4, len(other))))


def test_to_spec_round_trip_loads_with_randomizer(default_spec, model, profile, tmp_path):
    randomizer = DynamicsRandomizer(default_spec, model, profile)
    names = ("body_mass/link3", "joint_damping/joint2", "actuator_kp/joint4", "gravity/z")
    start = GaussianSearch.from_spec(default_spec, randomizer, names)
    cov = np.array([[0.004, 0.001, 0.0, 0.0], [0.001, 0.02, 0.002, 0.0],
                    [0.0, 0.002, 0.01, 0.0], [0.0, 0.0, 0.0, 0.01]])
    calibrated = start.replace(mean=[1.2, 0.8, 1.1, -0.3], cov=cov)
    spec = calibrated.to_spec(default_spec, provenance={"calibration": {"method": "simopt", "iterations": 3}})
    assert spec.parameters == default_spec.parameters
    assert spec.description == default_spec.description
    path = tmp_path / "calibrated.yaml"
    spec.save(path)
    loaded = load_randomization(path)
    assert loaded == spec
    assert loaded.joint_gaussian.names == names
    np.testing.assert_allclose(loaded.joint_gaussian.mean, calibrated.mean)
    np.testing.assert_allclose(loaded.joint_gaussian.cov, calibrated.cov)
    assert loaded.provenance["calibration"]["method"] == "simopt"
    # loads against the real model, and samples the calibrated Gaussian
    r2 = DynamicsRandomizer(loaded, model, profile)
    assert r2.names == randomizer.names
    batch = r2.sample_batch(np.random.default_rng(3), 20000)
    cols = [r2.names.index(n) for n in names]
    np.testing.assert_allclose(batch[:, cols].mean(0), calibrated.mean, atol=0.01)
    np.testing.assert_allclose(np.cov(batch[:, cols].T), calibrated.cov, atol=0.002)
    sample = batch[0]
    r2.apply(build_model(profile), sample)  # applies without error
    # and reading it back gives the same search distribution
    again = GaussianSearch.from_spec(loaded, r2, names)
    np.testing.assert_allclose(again.mean, calibrated.mean)
    np.testing.assert_allclose(again.cov, calibrated.cov)


def test_to_spec_keeps_other_gaussian_elements(model, profile):
    spec = spec_of({"gravity": {"operation": "add", "distribution": "normal", "mean": 0.0, "std": 0.4,
                                "low": -1.2, "high": 1.2}},
                   joint_gaussian={"names": ["gravity/x", "gravity/z"], "mean": [0.1, 0.2],
                                   "cov": [[0.01, 0.004], [0.004, 0.04]]})
    randomizer = DynamicsRandomizer(spec, model, profile)
    search = GaussianSearch.from_spec(spec, randomizer, ["gravity/z", "gravity/y"]).replace(mean=[0.5, -0.1])
    out = search.to_spec(spec)
    g = out.joint_gaussian
    assert g.names == ("gravity/z", "gravity/y", "gravity/x")
    np.testing.assert_allclose(g.mean, [0.5, -0.1, 0.1])
    np.testing.assert_allclose(g.cov, [[0.04, 0, 0], [0, 0.16, 0], [0, 0, 0.01]])
    DynamicsRandomizer(out, model, profile)
