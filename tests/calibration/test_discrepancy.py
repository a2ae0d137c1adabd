"""SimOpt discrepancy (calibration.discrepancy): hand-computed values, vectorization,
equal-length alignment, per-dimension normalization and weights, smoothing, episodes."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from calibration.discrepancy import discrepancy, real_scale

REAL = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]])  # range per dim: (2, 4)
OFFSET = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 4.0]])


def reference(sim_one, real, weights, scale, w_l1, w_l2, smooth_std, truncate):
    """Per-sample, per-step, per-dimension loops: the definition written out."""
    steps = min(len(sim_one), len(real))
    dims = real.shape[1]
    s = np.array([[sim_one[t][d] / scale[d] for d in range(dims)] for t in range(steps)])
    r = np.array([[real[t][d] / scale[d] for d in range(dims)] for t in range(steps)])
    if smooth_std > 0:
        for d in range(dims):
            s[:, d] = gaussian_filter1d(s[:, d], smooth_std, truncate=truncate)
            r[:, d] = gaussian_filter1d(r[:, d], smooth_std, truncate=truncate)
    l1 = l2 = 0.0
    for t in range(steps):
        for d in range(dims):
            e = weights[d] * (s[t, d] - r[t, d])
            l1 += abs(e) / steps
            l2 += e * e / steps
    return w_l1 * l1 + w_l2 * l2


def test_hand_computed_tiny_example():
    # normalised errors per step: (1/2, 0), (0, 0), (0, 1)
    # mean_t L1 = (0.5 + 0 + 1) / 3 = 0.5; mean_t L2^2 = (0.25 + 0 + 1) / 3 = 5/12
    d = discrepancy((REAL + OFFSET)[None], REAL, smooth_std=0)
    assert d.shape == (1,)
    assert d[0] == pytest.approx(0.5 * 0.5 + 1.0 * 5 / 12)
    # weights (2, 1): errors (1, 0), (0, 0), (0, 1) -> L1 mean 2/3, L2 mean 2/3
    d = discrepancy((REAL + OFFSET)[None], REAL, weights=[2.0, 1.0], smooth_std=0)
    assert d[0] == pytest.approx(0.5 * 2 / 3 + 2 / 3)
    # explicit scale (1, 1) and other term weights
    d = discrepancy((REAL + OFFSET)[None], REAL, scale=[1.0, 1.0], w_l1=1.0, w_l2=0.0, smooth_std=0)
    assert d[0] == pytest.approx((1 + 0 + 4) / 3)


def test_zero_for_identical_trajectories():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 3))
    assert np.all(discrepancy(np.stack([real] * 4), real) == 0.0)
    assert discrepancy(real[None], real, smooth_std=0)[0] == 0.0


@pytest.mark.parametrize("smooth_std", [0.0, 5.0, 1.5])
def test_vectorized_equals_per_sample_loop(smooth_std):
    rng = np.random.default_rng(1)
    real = np.cumsum(rng.normal(size=(30, 3)), axis=0)
    sim = real[None] + rng.normal(scale=0.5, size=(6, 30, 3))
    weights = np.array([1.0, 0.5, 2.0])
    got = discrepancy(sim, real, weights=weights, smooth_std=smooth_std)
    scale = np.ptp(real, axis=0)
    want = [reference(sim[s], real, weights, scale, 0.5, 1.0, smooth_std, 4.0) for s in range(6)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    one_by_one = [discrepancy(sim[s:s + 1], real, weights=weights, smooth_std=smooth_std)[0] for s in range(6)]
    np.testing.assert_allclose(got, one_by_one, rtol=1e-12)


def test_truncates_sim_and_real_to_equal_length():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(25, 2))
    sim = rng.normal(size=(3, 40, 2))
    scale = real_scale(real)  # the default scale comes from the whole real trajectory
    # longer sim: only its first 25 steps count
    np.testing.assert_allclose(discrepancy(sim, real), discrepancy(sim[:, :25], real))
    # longer real: only its first 10 steps count (scale still from the whole trajectory)
    short = sim[:, :10]
    np.testing.assert_allclose(discrepancy(short, real), discrepancy(short, real[:10], scale=scale))
    want = [reference(short[s], real, np.ones(2), scale, 0.5, 1.0, 5.0, 4.0) for s in range(3)]
    np.testing.assert_allclose(discrepancy(short, real), want, rtol=1e-12)


def test_normalization_by_real_range():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(20, 2))
    sim = real[None] + rng.normal(scale=0.3, size=(4, 20, 2))
    base = discrepancy(sim, real)
    units = np.array([1000.0, 0.01])  # e.g. a dimension in mrad, one in hundreds of rad
    np.testing.assert_allclose(discrepancy(sim * units, real * units), base, rtol=1e-10)
    # an explicit scale replaces the range
    np.testing.assert_allclose(discrepancy(sim * units, real * units, scale=units * np.ptp(real, axis=0)),
                               base, rtol=1e-10)
    np.testing.assert_allclose(real_scale(real), np.ptp(real, axis=0))


def test_constant_real_dimension_is_guarded():
    real = np.zeros((10, 2))
    real[:, 0] = np.linspace(0.0, 1.0, 10)  # dim 1 constant: range 0 -> scale 1
    np.testing.assert_allclose(real_scale(real), [1.0, 1.0])
    sim = real.copy()[None]
    sim[0, :, 1] += 0.5
    d = discrepancy(sim, real, smooth_std=0)
    assert np.isfinite(d).all()
    assert d[0] == pytest.approx(0.5 * 0.5 + 0.25)


def test_smoothing_suppresses_high_frequency_noise():
    rng = np.random.default_rng(4)
    real = np.sin(np.linspace(0, 6, 200))[:, None]
    sim = real[None] + rng.normal(scale=0.05, size=(1, 200, 1))
    assert discrepancy(sim, real)[0] < 0.3 * discrepancy(sim, real, smooth_std=0)[0]


def test_multi_episode_is_mean_over_episodes():
    rng = np.random.default_rng(5)
    reals = [rng.normal(size=(30, 2)), rng.normal(size=(22, 2))]
    sims = [rng.normal(size=(4, 35, 2)), rng.normal(size=(4, 20, 2))]
    scale = real_scale(reals)
    np.testing.assert_allclose(scale, np.ptp(np.concatenate(reals), axis=0))
    got = discrepancy(sims, reals)
    want = np.mean([discrepancy(s, r, scale=scale) for s, r in zip(sims, reals)], axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # [S, E, T, D] array form
    reals_eq = [rng.normal(size=(15, 2)) for _ in range(3)]
    sim4 = rng.normal(size=(5, 3, 15, 2))
    got = discrepancy(sim4, reals_eq, weights=[1.0, 3.0])
    want = np.mean([discrepancy(sim4[:, e], reals_eq[e], weights=[1.0, 3.0], scale=real_scale(reals_eq))
                    for e in range(3)], axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_blown_up_sample_costs_inf_alone():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(20, 2))
    sim = real[None] + rng.normal(scale=0.1, size=(3, 20, 2))
    sim[1, 7, 0] = np.nan
    d = discrepancy(sim, real)
    assert np.isinf(d[1]) and np.isfinite(d[[0, 2]]).all()
    np.testing.assert_allclose(d[[0, 2]], discrepancy(sim[[0, 2]], real))


def test_bad_inputs():
    real = np.zeros((5, 2))
    with pytest.raises(ValueError, match="sim must be"):
        discrepancy(np.zeros((2, 5, 3)), real)
    with pytest.raises(ValueError, match="weights"):
        discrepancy(np.zeros((2, 5, 2)), real, weights=[1.0])
    with pytest.raises(ValueError, match="non-finite"):
        discrepancy(np.zeros((2, 5, 2)), np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="episodes"):
        discrepancy(np.zeros((2, 3, 5, 2)), [real, real])
