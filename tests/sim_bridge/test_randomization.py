"""Dynamics randomization (sim_bridge.randomization): distributions, application, YAML format.

The key properties: samples follow the declared distributions and bounds; every sample
is applied from the nominal model (no compounding); sampling is seeded; the YAML file
is validated with errors that name the file and the field; load/save round-trips.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml
from scipy import stats

from sim_bridge import config as sb_config
from sim_bridge.config import ConfigError
from sim_bridge.profile import load_profile
from sim_bridge.randomization import (BUILTIN_KINDS, OBJECT_KINDS, DynamicsRandomizer, NominalModel, RandomizationSpec,
                                      load_randomization, parse_randomization,
                                      shipped_randomization_path)
from sim_bridge.simulator import ArmSimulator, build_model

N_STAT = 20000


@pytest.fixture(scope="module")
def profile():
    return load_profile("panda_like")


@pytest.fixture
def model(profile):
    return build_model(profile)


def spec_of(parameters: dict, **extra) -> RandomizationSpec:
    return parse_randomization({"randomization_version": 1, "parameters": parameters, **extra})


def one_param(kind: str, operation: str, low: float, high: float, targets=None, **extra) -> RandomizationSpec:
    body = {"operation": operation, "distribution": "uniform", "low": low, "high": high, **extra}
    if targets is not None:
        body["targets"] = targets
    return spec_of({kind: body})


def ids(model, obj, names):
    return np.array([mujoco.mj_name2id(model, obj, n) for n in names])


def model_arrays(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    """Every numeric array of an MjModel, plus the option struct values we randomize."""
    out = {}
    for name in dir(model):
        if name.startswith("_"):
            continue
        value = getattr(model, name)
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
            out[name] = np.array(value, copy=True)
    out["opt.gravity"] = np.array(model.opt.gravity, copy=True)
    out["opt.timestep"] = np.array(model.opt.timestep)
    return out


# --- shipped files ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["default", "none"])
def test_shipped_files_load_and_resolve(name, profile, model):
    spec = load_randomization(name)
    assert spec.source == shipped_randomization_path(name)
    randomizer = DynamicsRandomizer(spec, model, profile)
    assert len(randomizer.names) == len(set(randomizer.names)), "element names must be unique"
    assert randomizer.nominal_values.shape == (randomizer.size,)
    if name == "none":
        assert randomizer.size == 0
    else:
        kinds = {p.kind for p in spec.parameters}
        # every arm quantity is randomized by the default file (object kinds: push_default)
        arm_kinds = set(BUILTIN_KINDS) - set(OBJECT_KINDS)
        assert kinds == arm_kinds, f"default file misses kinds {arm_kinds - kinds}"
        assert "body_mass/link3" in randomizer.names and "gravity/z" in randomizer.names


def test_unknown_shipped_name():
    with pytest.raises(ConfigError, match="no shipped randomization named 'nosuch'"):
        load_randomization("nosuch")


# --- distributions ----------------------------------------------------------------------

def test_uniform_statistics_and_bounds(profile, model):
    low, high = 0.5, 1.5
    r = DynamicsRandomizer(one_param("body_mass", "scale", low, high, targets=["link3"]), model, profile)
    x = r.sample_batch(np.random.default_rng(0), N_STAT)[:, 0]
    assert x.min() >= low and x.max() <= high
    mean, std = (low + high) / 2, (high - low) / math.sqrt(12)
    assert abs(x.mean() - mean) < 5 * std / math.sqrt(N_STAT), f"uniform mean {x.mean()} != {mean}"
    assert x.std() == pytest.approx(std, rel=0.03), "uniform std"
    # and the shape: Kolmogorov-Smirnov against U(low, high)
    assert stats.kstest(x, stats.uniform(low, high - low).cdf).pvalue > 1e-3


def test_loguniform_log_values_are_uniform(profile, model):
    low, high = 0.3, 3.0
    spec = spec_of({"joint_damping": {"targets": ["joint2"], "operation": "scale",
                                      "distribution": "loguniform", "low": low, "high": high}})
    r = DynamicsRandomizer(spec, model, profile)
    x = r.sample_batch(np.random.default_rng(1), N_STAT)[:, 0]
    assert x.min() >= low and x.max() <= high
    logs = np.log(x)
    a, b = math.log(low), math.log(high)
    assert stats.kstest(logs, stats.uniform(a, b - a).cdf).pvalue > 1e-3, "log-values are not uniform"
    assert abs(logs.mean() - (a + b) / 2) < 5 * (b - a) / math.sqrt(12 * N_STAT)
    # the geometric mean is sqrt(low*high), the arithmetic mean is not (a plain uniform would fail this)
    assert np.exp(logs.mean()) == pytest.approx(math.sqrt(low * high), rel=0.02)
    assert np.median(x) == pytest.approx(math.sqrt(low * high), rel=0.03)


@pytest.mark.parametrize("mean,std,low,high", [
    (0.0, 0.15, -0.45, 0.45),   # symmetric, 3 std (the shipped joint_limit_offset)
    (0.2, 0.5, -0.1, 1.0),      # asymmetric, heavy truncation on the low side
])
def test_truncated_normal_statistics_and_bounds(profile, model, mean, std, low, high):
    spec = spec_of({"gravity": {"targets": ["x"], "operation": "add", "distribution": "normal",
                                "mean": mean, "std": std, "low": low, "high": high}})
    r = DynamicsRandomizer(spec, model, profile)
    x = r.sample_batch(np.random.default_rng(2), N_STAT)[:, 0]
    assert x.min() >= low and x.max() <= high, "truncated normal left its bounds"
    ref = stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)
    assert abs(x.mean() - ref.mean()) < 5 * ref.std() / math.sqrt(N_STAT), \
        f"mean {x.mean():.4f} != truncated-normal mean {ref.mean():.4f}"
    assert x.std() == pytest.approx(ref.std(), rel=0.03), "std differs from the truncated normal's"
    assert stats.kstest(x, ref.cdf).pvalue > 1e-3, "shape differs from a truncated normal (clipping?)"
    # rejection, not clipping: no probability mass piles up on the bounds
    assert np.mean((x == low) | (x == high)) < 1e-3


def test_untruncated_normal(profile, model):
    spec = spec_of({"gravity": {"targets": ["y"], "operation": "add", "distribution": "normal",
                                "mean": 0.3, "std": 0.4}})
    r = DynamicsRandomizer(spec, model, profile)
    assert (r.low[0], r.high[0]) == (-math.inf, math.inf)
    x = r.sample_batch(np.random.default_rng(3), N_STAT)[:, 0]
    assert abs(x.mean() - 0.3) < 5 * 0.4 / math.sqrt(N_STAT)
    assert x.std() == pytest.approx(0.4, rel=0.03)


def test_default_file_samples_stay_within_declared_bounds(profile, model):
    r = DynamicsRandomizer(load_randomization("default"), model, profile)
    x = r.sample_batch(np.random.default_rng(4), 5000)
    assert np.all(np.isfinite(x))
    below, above = x < r.low, x > r.high
    assert not below.any() and not above.any(), \
        f"out of bounds: {[r.names[i] for i in np.flatnonzero(below.any(0) | above.any(0))]}"
    # every element actually varies (no element is accidentally constant)
    assert np.all(x.std(axis=0) > 0), [n for n, s in zip(r.names, x.std(axis=0)) if s == 0]


# --- seeding ----------------------------------------------------------------------------

def test_same_seed_same_sample_different_seed_different(profile, model):
    r = DynamicsRandomizer(load_randomization("default"), model, profile)
    a = r.sample(np.random.default_rng(123))
    b = r.sample(np.random.default_rng(123))
    c = r.sample(np.random.default_rng(124))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c), "different seeds gave the same sample"
    # consecutive samples from one generator differ
    rng = np.random.default_rng(123)
    assert not np.allclose(r.sample(rng), r.sample(rng))


def test_simulator_seed_reproduces_dynamics(profile):
    spec = load_randomization("default")
    a = ArmSimulator(profile, spec, seed=7)
    b = ArmSimulator(profile, spec, seed=7)
    c = ArmSimulator(profile, spec, seed=8)
    for _ in range(3):
        a.reset(), b.reset(), c.reset()
        np.testing.assert_array_equal(a.dynamics, b.dynamics)
        assert not np.allclose(a.dynamics, c.dynamics)
    np.testing.assert_array_equal(a.model.body_mass, b.model.body_mass)
    a.reset(seed=99), c.reset(seed=99)
    np.testing.assert_array_equal(a.dynamics, c.dynamics)


# --- no compounding ---------------------------------------------------------------------

def test_no_compounding_after_1000_resets(profile):
    """1000 random resets, then the nominal vector: the model equals a freshly built one, bit for bit."""
    spec = load_randomization("default")
    sim = ArmSimulator(profile, spec, seed=11)
    fresh = model_arrays(build_model(profile))
    seen_mass = set()
    for _ in range(1000):
        sim.reset()
        seen_mass.add(float(sim.model.body_mass[mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_BODY, "link3")]))
    assert len(seen_mass) > 900, "resets did not actually randomize the model"
    sim.reset(dynamics=sim.randomizer.nominal_values)
    after = model_arrays(sim.model)
    touched = list(NominalModel.FIELDS) + ["opt.gravity"]
    for name in touched:
        np.testing.assert_array_equal(after[name], fresh[name], err_msg=f"{name} drifted (compounding)")
    differing = [n for n in fresh if not np.array_equal(after[n], fresh[n], equal_nan=True)]
    assert not differing, f"model fields differ from a fresh build after nominal reset: {differing}"


def test_apply_twice_equals_apply_once(profile, model):
    r = DynamicsRandomizer(load_randomization("default"), model, profile)
    values = r.sample(np.random.default_rng(5))
    r.apply(model, values)
    once = model_arrays(model)
    r.apply(model, values)
    r.apply(model, values)
    twice = model_arrays(model)
    for name in NominalModel.FIELDS:
        np.testing.assert_array_equal(twice[name], once[name], err_msg=name)
    np.testing.assert_array_equal(twice["opt.gravity"], once["opt.gravity"])


def test_shared_abs_with_differing_nominals_is_rejected(profile, model):
    """A shared 'abs' element gives all targets one value; no single value means 'unchanged'
    when the targets' nominal values differ, so the file is rejected (naming the field)."""
    spec = spec_of({"body_mass": {"shared": True, "targets": ["link1", "link2"], "operation": "abs",
                                  "distribution": "uniform", "low": 0.1, "high": 6.0}})
    with pytest.raises(ConfigError, match=r"parameters\.body_mass\.shared"):
        DynamicsRandomizer(spec, model, profile)


def test_shared_abs_nominal_vector_restores_nominal_model(profile, model):
    """nominal_values must mean 'unchanged' for every element, also for shared 'abs' parameters."""
    spec = spec_of({"geom_friction": {"shared": True, "operation": "abs",  # all geoms: friction 1.0
                                      "distribution": "uniform", "low": 0.1, "high": 2.0}})
    r = DynamicsRandomizer(spec, model, profile)
    assert r.names == ("geom_friction",)
    before = model.geom_friction.copy()
    r.apply(model, np.array([0.4]))
    assert not np.array_equal(model.geom_friction, before)
    r.apply(model, r.nominal_values)
    np.testing.assert_array_equal(model.geom_friction, before,
                                  err_msg="applying nominal_values of a shared abs parameter changed the model")


# --- joint Gaussian ---------------------------------------------------------------------

GAUSS_MEAN = [0.1, -0.2, 0.3]
GAUSS_COV = [[1.0, 0.5, 0.2], [0.5, 2.0, -0.3], [0.2, -0.3, 0.5]]


def gaussian_spec(low: float, high: float) -> RandomizationSpec:
    return spec_of(
        {"gravity": {"operation": "add", "distribution": "uniform", "low": low, "high": high}},
        joint_gaussian={"names": ["gravity/x", "gravity/y", "gravity/z"], "mean": GAUSS_MEAN, "cov": GAUSS_COV})


def test_joint_gaussian_reproduces_mean_and_covariance(profile, model):
    # (the widest bounds gravity's plausible range allows: +-30 m/s^2)
    r = DynamicsRandomizer(gaussian_spec(-30.0, 30.0), model, profile)
    x = r.sample_batch(np.random.default_rng(6), N_STAT)
    mean, cov = np.array(GAUSS_MEAN), np.array(GAUSS_COV)
    se = np.sqrt(np.diag(cov) / N_STAT)
    assert np.all(np.abs(x.mean(0) - mean) < 5 * se), f"mean {x.mean(0)} != {mean}"
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.06, err_msg="covariance not reproduced")
    corr = np.corrcoef(x.T)
    assert corr[0, 1] == pytest.approx(0.5 / math.sqrt(2.0), abs=0.03)
    assert corr[1, 2] == pytest.approx(-0.3 / math.sqrt(1.0), abs=0.03)
    # without the joint Gaussian the same elements would be independent uniforms
    plain = DynamicsRandomizer(spec_of({"gravity": {"operation": "add", "distribution": "uniform",
                                                    "low": -30.0, "high": 30.0}}), model, profile)
    y = plain.sample_batch(np.random.default_rng(6), 2000)
    assert y.std(0).min() > 15, "sanity: the uniform parameter itself is wide"


def test_joint_gaussian_respects_narrow_bounds(profile, model):
    low, high = -1.0, 1.0
    r = DynamicsRandomizer(gaussian_spec(low, high), model, profile)
    x = r.sample_batch(np.random.default_rng(7), N_STAT)
    assert x.min() >= low and x.max() <= high, "joint Gaussian left the elements' bounds"
    # truncated by rejection: compare with a reference obtained by rejecting plain MVN draws
    ref = np.random.default_rng(8).multivariate_normal(GAUSS_MEAN, GAUSS_COV, 400000)
    ref = ref[np.all((ref >= low) & (ref <= high), axis=1)]
    assert len(ref) > 20000
    np.testing.assert_allclose(x.mean(0), ref.mean(0), atol=0.02)
    np.testing.assert_allclose(np.cov(x.T), np.cov(ref.T), atol=0.02)
    assert np.mean(np.any((x == low) | (x == high), axis=1)) < 1e-3, "samples pile up on the bounds"


def test_joint_gaussian_only_overrides_named_elements(profile, model):
    spec = spec_of(
        {"gravity": {"operation": "add", "distribution": "uniform", "low": 5.0, "high": 6.0},
         "joint_damping": {"targets": ["joint1"], "operation": "scale", "distribution": "uniform",
                           "low": 2.0, "high": 3.0}},
        joint_gaussian={"names": ["gravity/z", "joint_damping/joint1"], "mean": [5.5, 2.5],
                        "cov": [[0.01, 0.0], [0.0, 0.01]]})
    r = DynamicsRandomizer(spec, model, profile)
    x = r.sample_batch(np.random.default_rng(9), 5000)
    named = [r.names.index("gravity/z"), r.names.index("joint_damping/joint1")]
    others = [r.names.index("gravity/x"), r.names.index("gravity/y")]
    assert x[:, named].std(0) == pytest.approx([0.1, 0.1], rel=0.1)
    assert x[:, others].std(0) == pytest.approx([1 / math.sqrt(12)] * 2, rel=0.1)


# --- applying: each operation on model fields -------------------------------------------

def test_mass_scale_rescales_inertia(profile, model):
    links = list(profile.link_names)
    bids = ids(model, mujoco.mjtObj.mjOBJ_BODY, links)
    r = DynamicsRandomizer(one_param("body_mass", "scale", 0.5, 1.5), model, profile)
    assert r.names == tuple(f"body_mass/{n}" for n in links)
    nominal_mass = model.body_mass[bids].copy()
    nominal_inertia = model.body_inertia[bids].copy()
    values = np.linspace(0.5, 1.5, len(links))
    r.apply(model, values)
    np.testing.assert_allclose(model.body_mass[bids], nominal_mass * values, rtol=1e-12)
    ratio = model.body_inertia[bids] / nominal_inertia
    expected = np.broadcast_to((model.body_mass[bids] / nominal_mass)[:, None], ratio.shape)
    np.testing.assert_allclose(ratio, expected, rtol=1e-12, err_msg="inertia not rescaled with mass")


def test_mass_abs_rescales_inertia(profile, model):
    bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "link4")
    m0, i0 = model.body_mass[bid], model.body_inertia[bid].copy()
    r = DynamicsRandomizer(one_param("body_mass", "abs", 0.5, 10.0, targets=["link4"]), model, profile)
    r.apply(model, np.array([7.0]))
    assert model.body_mass[bid] == 7.0
    np.testing.assert_allclose(model.body_inertia[bid], i0 * 7.0 / m0, rtol=1e-12)


def test_mass_randomization_updates_derived_quantities(profile):
    """ArmSimulator.reset recomputes constants (subtree mass) for the new sample."""
    spec = one_param("body_mass", "scale", 0.5, 2.0, targets=["hand"])
    sim = ArmSimulator(profile, spec, seed=0)
    bid = mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_BODY, "hand")
    sim.reset(dynamics=np.array([1.0]))
    nominal_subtree = sim.model.body_subtreemass[bid]
    sim.reset(dynamics=np.array([2.0]))
    assert sim.model.body_subtreemass[bid] == pytest.approx(2 * nominal_subtree)


@pytest.mark.parametrize("operation,value,expected", [
    ("scale", 2.5, lambda x0, v: x0 * v),
    ("add", 0.7, lambda x0, v: x0 + v),
    ("abs", 0.3, lambda x0, v: np.full_like(x0, v)),
])
def test_operations_on_joint_damping(profile, model, operation, value, expected):
    dofs = model.jnt_dofadr[ids(model, mujoco.mjtObj.mjOBJ_JOINT, profile.joint_names)]
    x0 = model.dof_damping[dofs].copy()
    assert np.ptp(x0) > 0, "sanity: nominal damping differs between joints"
    r = DynamicsRandomizer(one_param("joint_damping", operation, 0.1, 5.0), model, profile)
    r.apply(model, np.full(r.size, value))
    np.testing.assert_allclose(model.dof_damping[dofs], expected(x0, value), rtol=1e-12)
    r.apply(model, r.nominal_values)
    np.testing.assert_array_equal(model.dof_damping[dofs], x0, err_msg="nominal values must restore")


def test_add_is_clipped_at_zero_for_nonnegative_quantities(profile, model):
    dofs = model.jnt_dofadr[ids(model, mujoco.mjtObj.mjOBJ_JOINT, profile.joint_names)]
    r = DynamicsRandomizer(one_param("joint_frictionloss", "add", -1.0, 1.0), model, profile)
    r.apply(model, np.full(r.size, -1.0))
    np.testing.assert_array_equal(model.dof_frictionloss[dofs], 0.0)


def test_per_joint_values_go_to_the_right_dof(profile, model):
    dofs = model.jnt_dofadr[ids(model, mujoco.mjtObj.mjOBJ_JOINT, ["joint2", "joint6"])]
    r = DynamicsRandomizer(one_param("joint_armature", "abs", 0.0, 1.0, targets=["joint6", "joint2"]),
                           model, profile)
    assert r.names == ("joint_armature/joint6", "joint_armature/joint2")
    r.apply(model, np.array([0.6, 0.2]))
    assert model.dof_armature[dofs[1]] == 0.6 and model.dof_armature[dofs[0]] == 0.2
    others = np.setdiff1d(np.arange(model.nv), dofs)
    np.testing.assert_array_equal(model.dof_armature[others], 0.1)  # MJCF default armature


def test_geom_friction_shared_scale(profile, model):
    r = DynamicsRandomizer(load_randomization("default"), model, profile)
    i = r.names.index("geom_friction")
    named = [g for g in range(model.ngeom) if model.geom(g).name]
    nominal = model.geom_friction.copy()
    values = r.nominal_values.copy()
    values[i] = 1.2
    r.apply(model, values)
    np.testing.assert_allclose(model.geom_friction[named, 0], nominal[named, 0] * 1.2, rtol=1e-12)
    # only the sliding coefficient changes
    np.testing.assert_array_equal(model.geom_friction[:, 1:], nominal[:, 1:])


def test_actuator_kp_changes_gain_and_bias_consistently(profile, model):
    aids = ids(model, mujoco.mjtObj.mjOBJ_ACTUATOR, profile.actuator_names)
    kp0 = model.actuator_gainprm[aids, 0].copy()
    kd0 = -model.actuator_biasprm[aids, 2].copy()
    r = DynamicsRandomizer(one_param("actuator_kp", "scale", 0.5, 2.0), model, profile)
    values = np.linspace(0.5, 2.0, r.size)
    r.apply(model, values)
    np.testing.assert_allclose(model.actuator_gainprm[aids, 0], kp0 * values, rtol=1e-12)
    np.testing.assert_array_equal(model.actuator_biasprm[aids, 1], -model.actuator_gainprm[aids, 0],
                                  err_msg="biasprm[:,1] must be -kp so the actuator stays a PD around ctrl")
    np.testing.assert_array_equal(-model.actuator_biasprm[aids, 2], kd0, err_msg="kd must not change")


def test_actuator_kd_add(profile, model):
    aids = ids(model, mujoco.mjtObj.mjOBJ_ACTUATOR, profile.actuator_names)
    kd0 = -model.actuator_biasprm[aids, 2].copy()
    kp0 = model.actuator_gainprm[aids, 0].copy()
    r = DynamicsRandomizer(one_param("actuator_kd", "add", -5.0, 5.0), model, profile)
    r.apply(model, np.full(r.size, 3.0))
    np.testing.assert_allclose(-model.actuator_biasprm[aids, 2], kd0 + 3.0)
    np.testing.assert_array_equal(model.actuator_gainprm[aids, 0], kp0)


def test_actuator_gain_physically_changes_the_response(profile):
    """Higher kp -> the same position error gives a larger actuator force."""
    spec = one_param("actuator_kp", "scale", 0.5, 2.0, targets=["joint1"])
    sim = ArmSimulator(profile, spec, seed=0)
    forces = []
    for scale in (0.5, 1.0):
        sim.reset(dynamics=np.array([scale]))
        q = sim.true_joint_positions()
        q[0] += 0.01
        sim.data.ctrl[sim._act] = q
        mujoco.mj_forward(sim.model, sim.data)
        forces.append(sim.data.actuator_force[sim._act[0]])
    assert forces[1] == pytest.approx(2 * forces[0], rel=1e-6)


@pytest.mark.parametrize("operation,value,expected_z", [("add", 0.5, -9.81 + 0.5), ("abs", -3.7, -3.7)])
def test_gravity_changes_opt_gravity(profile, model, operation, value, expected_z):
    g0 = model.opt.gravity.copy()
    assert g0[2] == pytest.approx(-9.81)
    spec = spec_of({"gravity": {"targets": ["z"], "operation": operation, "distribution": "uniform",
                                "low": -20.0, "high": 20.0}})
    r = DynamicsRandomizer(spec, model, profile)
    r.apply(model, np.array([value]))
    assert model.opt.gravity[2] == pytest.approx(expected_z)
    np.testing.assert_array_equal(model.opt.gravity[:2], g0[:2])
    r.apply(model, r.nominal_values)
    np.testing.assert_array_equal(model.opt.gravity, g0)


def test_joint_limit_offset_shifts_range(profile, model):
    jids = ids(model, mujoco.mjtObj.mjOBJ_JOINT, profile.joint_names)
    range0 = model.jnt_range[jids].copy()
    spec = spec_of({"joint_limit_offset": {"operation": "add", "distribution": "normal", "mean": 0.0,
                                           "std": 0.15, "low": -0.45, "high": 0.45}})
    r = DynamicsRandomizer(spec, model, profile)
    offsets = np.linspace(-0.3, 0.3, r.size)
    r.apply(model, offsets)
    np.testing.assert_allclose(model.jnt_range[jids], range0 + offsets[:, None], rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.diff(model.jnt_range[jids], axis=1), np.diff(range0, axis=1), atol=1e-12)


def test_scalar_effects(profile, model):
    spec = load_randomization("default")
    r = DynamicsRandomizer(spec, model, profile)
    values = r.nominal_values.copy()
    values[r.names.index("action_latency")] = 1.5
    values[r.names.index("obs_noise_joint_pos/joint_pos")] = 0.004
    values[r.names.index("obs_noise_joint_vel/joint_vel")] = 0.03
    values[r.names.index("action_noise_std")] = 0.002
    effects = r.apply(model, values)
    assert effects.action_latency_steps == 1.5
    assert effects.obs_noise_std == {"joint_pos": 0.004, "joint_vel": 0.03}
    assert effects.action_noise_std == 0.002
    nominal_effects = r.apply(model, r.nominal_values)
    assert nominal_effects.action_latency_steps == 0.0
    assert nominal_effects.obs_noise_std == {"joint_pos": 0.0, "joint_vel": 0.0}
    assert nominal_effects.action_noise_std == 0.0


def test_apply_rejects_wrong_shape_and_nan(profile, model):
    r = DynamicsRandomizer(load_randomization("default"), model, profile)
    before = model_arrays(model)
    with pytest.raises(ValueError, match="expected"):
        r.apply(model, np.ones(r.size - 1))
    bad = r.nominal_values.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        r.apply(model, bad)
    for name in NominalModel.FIELDS:
        np.testing.assert_array_equal(model_arrays(model)[name], before[name], err_msg=name)


# --- YAML round trip and save ------------------------------------------------------------

FULL_SPEC = {
    "randomization_version": 1,
    "description": "round-trip test",
    "parameters": {
        "body_mass": {"targets": ["link2", "link3"], "operation": "scale", "distribution": "uniform",
                      "low": 0.5, "high": 1.5},
        "geom_friction": {"shared": True, "operation": "scale", "distribution": "loguniform",
                          "low": 0.7, "high": 1.3},
        "gravity": {"operation": "add", "distribution": "normal", "mean": 0.0, "std": 0.4,
                    "low": -1.2, "high": 1.2},
        "kp_wrist": {"kind": "actuator_kp", "targets": ["joint7"], "operation": "scale",
                     "distribution": "normal", "mean": 1.0, "std": 0.1, "low": 0.5},
        "action_latency": {"operation": "abs", "distribution": "uniform", "low": 0.0, "high": 2.0},
    },
    "joint_gaussian": {"names": ["body_mass/link2", "gravity/z"], "mean": [1.0, 0.1],
                       "cov": [[0.01, 0.002], [0.002, 0.04]]},
    "provenance": {"method": "simopt", "iterations": 12, "real_logs": ["a.mcap", "b.mcap"],
                   "nested": {"seed": 3, "score": 0.25}},
}


def test_yaml_round_trip_preserves_everything():
    spec = parse_randomization(copy.deepcopy(FULL_SPEC))
    assert spec.to_dict() == FULL_SPEC, "to_dict must reproduce the parsed file"
    text = spec.to_yaml()
    again = parse_randomization(yaml.safe_load(text))
    assert again.to_dict() == spec.to_dict()
    assert again.joint_gaussian is not None
    np.testing.assert_array_equal(again.joint_gaussian.cov, spec.joint_gaussian.cov)


def test_shipped_default_round_trips():
    spec = load_randomization("default")
    assert parse_randomization(yaml.safe_load(spec.to_yaml())).to_dict() == spec.to_dict()


def test_save_writes_a_file_that_loads_back(tmp_path, profile, model):
    spec = parse_randomization(copy.deepcopy(FULL_SPEC))
    path = tmp_path / "sub" / "fitted.yaml"
    spec.save(path)
    loaded = load_randomization(path)
    assert loaded.source == path
    assert loaded.to_dict() == spec.to_dict()
    # the loaded file behaves the same: same names, same samples for the same seed
    a, b = DynamicsRandomizer(spec, model, profile), DynamicsRandomizer(loaded, model, profile)
    assert a.names == b.names
    np.testing.assert_array_equal(a.sample(np.random.default_rng(0)), b.sample(np.random.default_rng(0)))
    leftovers = [p.name for p in path.parent.iterdir() if p.name != path.name]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def test_save_is_atomic(tmp_path, monkeypatch):
    """If the final rename fails, the old file is intact and no temporary file is left."""
    path = tmp_path / "dist.yaml"
    old = parse_randomization({"randomization_version": 1, "description": "old", "parameters": {}})
    old.save(path)
    old_text = path.read_text()
    writes = []
    real_replace = sb_config.os.replace

    def failing_replace(src, dst):
        writes.append(Path(src).read_text())
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(sb_config.os, "replace", failing_replace)
    new = parse_randomization(copy.deepcopy(FULL_SPEC))
    with pytest.raises(OSError, match="simulated crash"):
        new.save(path)
    monkeypatch.setattr(sb_config.os, "replace", real_replace)
    assert path.read_text() == old_text, "a failed save damaged the existing file"
    assert writes and writes[0] == new.to_yaml(), "the full content must be written before the rename"
    assert [p.name for p in tmp_path.iterdir()] == ["dist.yaml"], "temporary file left behind"


# --- bad files ------------------------------------------------------------------------------

def write_spec(tmp_path: Path, data, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def expect_error(path: Path, *needles: str, model=None, profile=None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        spec = load_randomization(path)
        if model is not None:
            DynamicsRandomizer(spec, model, profile)
    message = str(info.value)
    assert str(path) in message, f"error does not name the file: {message}"
    for needle in needles:
        assert needle in message, f"error does not mention {needle!r}: {message}"
    return info.value


def base() -> dict:
    return {"randomization_version": 1, "parameters": {
        "body_mass": {"operation": "scale", "distribution": "uniform", "low": 0.5, "high": 1.5},
        "gravity": {"operation": "add", "distribution": "normal", "mean": 0.0, "std": 0.4,
                    "low": -1.2, "high": 1.2},
    }}


def test_base_case_is_valid(tmp_path, profile, model):
    spec = load_randomization(write_spec(tmp_path, base(), "ok.yaml"))
    DynamicsRandomizer(spec, model, profile)


def test_unknown_parameter_kind(tmp_path):
    data = base()
    data["parameters"]["body_mas"] = data["parameters"].pop("body_mass")
    expect_error(write_spec(tmp_path, data), "parameters.body_mas", "unknown parameter kind 'body_mas'")


def test_unknown_explicit_kind(tmp_path):
    data = base()
    data["parameters"]["wrist"] = {"kind": "actuator_kpp", "operation": "scale", "distribution": "uniform",
                                   "low": 0.5, "high": 1.5}
    expect_error(write_spec(tmp_path, data), "parameters.wrist.kind", "actuator_kpp")


def test_unknown_field_in_parameter(tmp_path):
    data = base()
    data["parameters"]["gravity"]["hihg"] = data["parameters"]["gravity"].pop("high")
    err = expect_error(write_spec(tmp_path, data), "hihg", "unknown field")
    assert err.field == "parameters.gravity"


def test_typo_of_required_bound_names_the_field(tmp_path):
    data = base()
    data["parameters"]["body_mass"]["hihg"] = data["parameters"]["body_mass"].pop("high")
    expect_error(write_spec(tmp_path, data), "parameters.body_mass.high", "missing")


def test_unknown_top_level_field(tmp_path):
    data = base()
    data["paramters"] = {}
    expect_error(write_spec(tmp_path, data), "paramters", "unknown field")


@pytest.mark.parametrize("low,high", [(1.5, 1.5), (1.5, 0.5)])
def test_low_not_below_high(tmp_path, low, high):
    data = base()
    data["parameters"]["body_mass"].update(low=low, high=high)
    expect_error(write_spec(tmp_path, data), "parameters.body_mass.high", "low < high")


def test_normal_low_not_below_high(tmp_path):
    data = base()
    data["parameters"]["gravity"].update(low=1.0, high=-1.0)
    expect_error(write_spec(tmp_path, data), "parameters.gravity.high", "low < high")


@pytest.mark.parametrize("low", [0.0, -0.5])
def test_loguniform_low_not_positive(tmp_path, low):
    data = base()
    data["parameters"]["joint_damping"] = {"operation": "add", "distribution": "loguniform",
                                           "low": low, "high": 2.0}
    expect_error(write_spec(tmp_path, data), "parameters.joint_damping.low", "loguniform")


@pytest.mark.parametrize("dist", [
    {"distribution": "uniform", "low": 0.0, "high": 1.5},
    {"distribution": "uniform", "low": -0.5, "high": 1.5},
    {"distribution": "normal", "mean": 1.0, "std": 0.1},  # unbounded below
])
def test_scale_with_nonpositive_low(tmp_path, dist):
    data = base()
    data["parameters"]["body_mass"] = {"operation": "scale", **dist}
    expect_error(write_spec(tmp_path, data), "parameters.body_mass.low", "scale")


def test_abs_negative_for_nonnegative_kind(tmp_path):
    data = base()
    data["parameters"]["joint_damping"] = {"operation": "abs", "distribution": "uniform", "low": -1.0, "high": 1.0}
    expect_error(write_spec(tmp_path, data), "parameters.joint_damping.low", "negative")


@pytest.mark.parametrize("kind,operation", [("action_latency", "scale"), ("joint_limit_offset", "scale"),
                                            ("gravity", "scale"), ("obs_noise_std", "add")])
def test_operation_not_allowed_for_kind(tmp_path, kind, operation):
    data = {"randomization_version": 1, "parameters": {
        kind: {"operation": operation, "distribution": "uniform", "low": 0.5, "high": 1.0}}}
    expect_error(write_spec(tmp_path, data), f"parameters.{kind}.operation", f"'{operation}' not allowed")


def test_unknown_operation_and_distribution(tmp_path):
    data = base()
    data["parameters"]["body_mass"]["operation"] = "multiply"
    expect_error(write_spec(tmp_path, data, "op.yaml"), "parameters.body_mass.operation", "multiply")
    data = base()
    data["parameters"]["body_mass"]["distribution"] = "gaussian"
    expect_error(write_spec(tmp_path, data, "dist.yaml"), "parameters.body_mass.distribution", "gaussian")


def test_normal_bounds_without_mass(tmp_path):
    data = base()
    data["parameters"]["gravity"].update(mean=0.0, std=0.1, low=5.0, high=6.0)
    expect_error(write_spec(tmp_path, data), "parameters.gravity", "normal")


def with_gaussian(names, mean, cov) -> dict:
    data = base()
    data["joint_gaussian"] = {"names": names, "mean": mean, "cov": cov}
    return data


def test_valid_gaussian_passes(tmp_path, profile, model):
    path = write_spec(tmp_path, with_gaussian(["gravity/x", "gravity/y"], [0, 0], [[1, 0.5], [0.5, 1]]), "ok.yaml")
    DynamicsRandomizer(load_randomization(path), model, profile)


def test_non_psd_covariance(tmp_path):
    path = write_spec(tmp_path, with_gaussian(["gravity/x", "gravity/y"], [0, 0], [[1.0, 2.0], [2.0, 1.0]]))
    expect_error(path, "joint_gaussian.cov", "positive semi-definite")


def test_non_symmetric_covariance(tmp_path):
    path = write_spec(tmp_path, with_gaussian(["gravity/x", "gravity/y"], [0, 0], [[1.0, 0.5], [0.0, 1.0]]))
    expect_error(path, "joint_gaussian.cov", "symmetric")


@pytest.mark.parametrize("cov", [
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],  # 3x3 for 2 names
    [[1.0, 0.0], [0.0]],                                  # ragged
    [[1.0, 0.0]],                                         # 1 row
    "identity",
])
def test_wrong_covariance_shape(tmp_path, cov):
    path = write_spec(tmp_path, with_gaussian(["gravity/x", "gravity/y"], [0, 0], cov))
    expect_error(path, "joint_gaussian.cov", "2")


def test_wrong_gaussian_mean_length(tmp_path):
    path = write_spec(tmp_path, with_gaussian(["gravity/x", "gravity/y"], [0, 0, 0], [[1, 0], [0, 1]]))
    expect_error(path, "joint_gaussian.mean", "expected 2 values")


def test_gaussian_name_of_unknown_parameter(tmp_path):
    path = write_spec(tmp_path, with_gaussian(["gravity/x", "damping/joint1"], [0, 0], [[1, 0], [0, 1]]))
    expect_error(path, "joint_gaussian.names", "damping/joint1")


def test_gaussian_name_not_an_element(tmp_path, profile, model):
    # 'gravity' is a parameter but 'gravity/w' is not one of its elements: needs the model to tell
    path = write_spec(tmp_path, with_gaussian(["gravity/x", "gravity/w"], [0, 0], [[1, 0], [0, 1]]))
    load_randomization(path)
    expect_error(path, "joint_gaussian.names", "gravity/w", model=model, profile=profile)


def test_joint_gaussian_without_mass_inside_bounds_is_rejected(tmp_path, profile, model):
    """Like a scalar normal whose bounds hold < 1% of its mass, a joint Gaussian far outside its
    elements' bounds cannot be sampled by rejection; it must be an error, not silently clipped
    (here every sample would be exactly the upper bound)."""
    data = {"randomization_version": 1, "parameters": {
        "gravity": {"operation": "add", "distribution": "uniform", "low": -1.0, "high": 1.0}}}
    data["joint_gaussian"] = {"names": ["gravity/x", "gravity/y"], "mean": [10.0, 10.0],
                              "cov": [[1.0, 0.0], [0.0, 1.0]]}
    path = write_spec(tmp_path, data)
    expect_error(path, "joint_gaussian", model=model, profile=profile)


def test_unknown_field_in_gaussian(tmp_path):
    data = with_gaussian(["gravity/x", "gravity/y"], [0, 0], [[1, 0], [0, 1]])
    data["joint_gaussian"]["covariance"] = data["joint_gaussian"]["cov"]
    expect_error(write_spec(tmp_path, data), "covariance", "unknown field")


@pytest.mark.parametrize("kind,target,what", [
    ("body_mass", "link99", "body"),
    ("joint_damping", "elbow", "joint"),
    ("joint_limit_offset", "elbow", "joint"),
    ("geom_friction", "gripper_pad", "geom"),
    ("actuator_kp", "elbow", "joint"),
])
def test_unknown_target_name(tmp_path, profile, model, kind, target, what):
    operation = "add"
    data = {"randomization_version": 1, "parameters": {
        kind: {"targets": [target], "operation": operation, "distribution": "uniform", "low": 0.0, "high": 0.1}}}
    path = write_spec(tmp_path, data)
    load_randomization(path)  # name checks need the model
    expect_error(path, f"parameters.{kind}.targets", f"unknown {what} '{target}'", model=model, profile=profile)


@pytest.mark.parametrize("kind,target", [("gravity", "w"), ("obs_noise_std", "joint_torque")])
def test_unknown_axis_or_signal(tmp_path, kind, target):
    op = "add" if kind == "gravity" else "abs"
    data = {"randomization_version": 1, "parameters": {
        kind: {"targets": [target], "operation": op, "distribution": "uniform", "low": 0.0, "high": 0.1}}}
    expect_error(write_spec(tmp_path, data), f"parameters.{kind}.targets", target)


@pytest.mark.parametrize("kind", ["action_latency", "action_noise_std"])
def test_targets_for_scalar_kind(tmp_path, kind):
    data = {"randomization_version": 1, "parameters": {
        kind: {"targets": ["joint1"], "operation": "abs", "distribution": "uniform", "low": 0.0, "high": 1.0}}}
    expect_error(write_spec(tmp_path, data), f"parameters.{kind}.targets", "takes no targets")


def test_empty_targets(tmp_path):
    data = base()
    data["parameters"]["body_mass"]["targets"] = []
    expect_error(write_spec(tmp_path, data), "parameters.body_mass.targets", "empty")


@pytest.mark.parametrize("version", [2, 0])
def test_unsupported_version(tmp_path, version):
    data = base()
    data["randomization_version"] = version
    expect_error(write_spec(tmp_path, data), "randomization_version", f"unsupported version {version}")


def test_fractional_version_is_rejected(tmp_path):
    """1.5 is not version 1: the version must not be truncated to an integer."""
    data = base()
    data["randomization_version"] = 1.5
    expect_error(write_spec(tmp_path, data), "randomization_version")


def test_missing_version(tmp_path):
    data = base()
    del data["randomization_version"]
    expect_error(write_spec(tmp_path, data), "randomization_version", "missing")


@pytest.mark.parametrize("text", ["- body_mass\n- gravity\n", "just a string\n", ""])
def test_not_a_mapping(tmp_path, text):
    expect_error(write_spec(tmp_path, text), "mapping")


def test_parameters_not_a_mapping(tmp_path):
    data = base()
    data["parameters"] = ["body_mass"]
    expect_error(write_spec(tmp_path, data), "parameters", "mapping")


def test_invalid_yaml_syntax(tmp_path):
    expect_error(write_spec(tmp_path, "randomization_version: 1\nparameters: {body_mass: [\n"), "not valid YAML")


def test_missing_file(tmp_path):
    expect_error(tmp_path / "absent.yaml", "file not found")


def test_non_numeric_bound(tmp_path):
    data = base()
    data["parameters"]["body_mass"]["low"] = "half"
    expect_error(write_spec(tmp_path, data), "parameters.body_mass.low", "number")


def test_error_from_dict_without_source_names_field():
    data = base()
    data["parameters"]["body_mass"]["low"] = 2.0
    with pytest.raises(ConfigError, match=r"parameters\.body_mass\.high"):
        parse_randomization(data)


def test_duplicate_yaml_key_is_rejected(tmp_path):
    text = ("randomization_version: 1\nparameters:\n"
            "  body_mass: {operation: scale, distribution: uniform, low: 0.5, high: 1.5}\n"
            "  body_mass: {operation: scale, distribution: uniform, low: 0.9, high: 1.1}\n")
    expect_error(write_spec(tmp_path, text), "duplicate key 'body_mass'")


def test_two_parameters_on_the_same_element_are_rejected(tmp_path, profile, model):
    data = base()
    data["parameters"]["heavy_hand"] = {"kind": "body_mass", "targets": ["hand"], "operation": "scale",
                                        "distribution": "uniform", "low": 1.0, "high": 2.0}
    expect_error(write_spec(tmp_path, data), "parameters.heavy_hand.targets", "both randomize the same body",
                 model=model, profile=profile)


def test_spec_equality_with_a_joint_gaussian():
    a = parse_randomization(copy.deepcopy(FULL_SPEC))
    b = parse_randomization(copy.deepcopy(FULL_SPEC))
    assert a == b
    changed = copy.deepcopy(FULL_SPEC)
    changed["joint_gaussian"]["mean"][0] += 0.01
    assert a != parse_randomization(changed)
