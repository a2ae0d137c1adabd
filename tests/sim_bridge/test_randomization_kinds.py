"""The kind registry of sim_bridge.randomization: a kind registered from outside the module
(here: from this test module) is parsed, sampled and applied like a built-in one, and the
nominal model is restored on the next apply."""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
import pytest

from sim_bridge.config import ConfigError
from sim_bridge.profile import load_profile
from sim_bridge.randomization import (BODY, BUILTIN_KINDS, GEOM, KINDS, NO_TARGET, ApplyContext,
                                      DynamicsRandomizer, Kind, ModelField, NominalModel,
                                      apply_operation, parse_randomization, register_kind, unregister_kind)
from sim_bridge.simulator import ArmSimulator, build_model


# A toy object kind: sliding friction of one named geom (the table), as a scale factor.
TABLE_FRICTION = ModelField(GEOM, "sliding friction of the table geom (scale factor)",
                            path="geom_friction", column=0, operations=("scale",), default_targets=("table",))

# A body targeted by name that is not one of the profile's links: height offset of link0, m.
BASE_HEIGHT = ModelField(BODY, "height offset of a body in its parent frame, m", path="body_pos", column=2,
                         operations=("add",), nonnegative=False)


@dataclass(frozen=True)
class GeomColourScale(Kind):
    """A kind written as its own class: the colour (rgba, float32) of a geom times one factor.
    ``geom_rgba`` is a field no built-in kind writes."""

    @property
    def writes(self) -> tuple[str, ...]:
        return ("geom_rgba",)

    def nominal(self, nominal: NominalModel, ids: np.ndarray) -> np.ndarray:
        return np.ones(len(ids))  # a factor of 1 leaves the size unchanged

    def apply(self, ctx: ApplyContext, ids: np.ndarray, operation: str, value: float) -> None:
        ctx.model.geom_rgba[ids] = apply_operation(operation, ctx.nominal.arrays["geom_rgba"][ids], value, nonneg=True)


GEOM_SIZE = GeomColourScale(GEOM, "colour of a geom, scale factor (a field no built-in kind writes)", operations=("scale",))


@pytest.fixture(scope="module")
def profile():
    return load_profile("panda_like")


@pytest.fixture
def model(profile):
    return build_model(profile)


@pytest.fixture
def toy_kinds():
    """Register the toy kinds for one test, and remove them again (KINDS is process-wide)."""
    names = {"table_friction": TABLE_FRICTION, "base_height": BASE_HEIGHT, "geom_rgba_scale": GEOM_SIZE}
    for name, kind in names.items():
        register_kind(name, kind)
    try:
        yield names
    finally:
        for name in names:
            unregister_kind(name)
    assert tuple(KINDS) == BUILTIN_KINDS


def spec_of(parameters: dict):
    return parse_randomization({"randomization_version": 1, "parameters": parameters})


def geom_id(model, name: str) -> int:
    return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)


def test_registered_geom_kind_samples_applies_and_restores(toy_kinds, profile, model):
    spec = spec_of({"table_friction": {"operation": "scale", "distribution": "uniform", "low": 0.5, "high": 2.0}})
    r = DynamicsRandomizer(spec, model, profile)
    assert r.names == ("table_friction/table",)  # the kind's default target, by geom name
    np.testing.assert_array_equal(r.nominal_values, [1.0])
    table = geom_id(model, "table")
    fresh = model.geom_friction.copy()

    first = r.sample(np.random.default_rng(0))
    assert 0.5 <= first[0] <= 2.0 and first[0] != 1.0
    r.apply(model, first)
    assert model.geom_friction[table, 0] == fresh[table, 0] * first[0]
    others = np.arange(model.ngeom) != table
    np.testing.assert_array_equal(model.geom_friction[others], fresh[others])
    np.testing.assert_array_equal(model.geom_friction[table, 1:], fresh[table, 1:])

    # the next apply starts from the nominal model: no compounding
    second = r.sample(np.random.default_rng(1))
    r.apply(model, second)
    assert model.geom_friction[table, 0] == fresh[table, 0] * second[0]
    r.apply(model, r.nominal_values)
    np.testing.assert_array_equal(model.geom_friction, fresh)


def test_registered_kind_targets_a_named_body_outside_the_profile(toy_kinds, profile, model):
    assert "link0" not in profile.link_names
    spec = spec_of({"base_height": {"targets": ["link0"], "operation": "add", "distribution": "uniform",
                                    "low": -0.05, "high": 0.05}})
    r = DynamicsRandomizer(spec, model, profile)
    assert r.names == ("base_height/link0",)
    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "link0")
    fresh = model.body_pos.copy()
    r.apply(model, np.array([0.03]))
    assert model.body_pos[body, 2] == fresh[body, 2] + 0.03
    r.apply(model, r.nominal_values)
    np.testing.assert_array_equal(model.body_pos, fresh)


def test_unknown_name_for_a_registered_kind_names_the_field(toy_kinds, profile, model):
    spec = spec_of({"table_friction": {"targets": ["tabel"], "operation": "scale", "distribution": "uniform",
                                       "low": 0.5, "high": 2.0}})
    with pytest.raises(ConfigError, match=r"parameters\.table_friction\.targets.*unknown geom 'tabel'"):
        DynamicsRandomizer(spec, model, profile)


def test_kind_registered_after_the_simulator_was_built(profile):
    """The simulator's NominalModel predates the registration: it saves the new kind's field
    (geom_rgba) when the randomizer is built, so the nominal size comes back on reset."""
    sim = ArmSimulator(profile, seed=3)
    assert "geom_rgba" not in sim.nominal.arrays
    register_kind("geom_rgba_scale", GEOM_SIZE)
    try:
        fresh = sim.model.geom_rgba.copy()
        palm = geom_id(sim.model, "hand_palm")
        sim.set_randomization(spec_of({"geom_rgba_scale": {"targets": ["hand_palm"], "operation": "scale",
                                                           "distribution": "uniform", "low": 0.8, "high": 1.2}}))
        assert "geom_rgba" in sim.nominal.arrays
        for _ in range(3):
            sim.reset()
            np.testing.assert_allclose(sim.model.geom_rgba[palm], fresh[palm] * sim.dynamics[0], rtol=1e-6)
        sim.reset(dynamics=sim.randomizer.nominal_values)
        np.testing.assert_array_equal(sim.model.geom_rgba, fresh)
    finally:
        unregister_kind("geom_rgba_scale")


def test_registered_kind_with_other_parameters_keeps_their_order(toy_kinds, profile, model):
    spec = spec_of({
        "gravity": {"targets": ["z"], "operation": "add", "distribution": "uniform", "low": -0.1, "high": 0.1},
        "table_friction": {"operation": "scale", "distribution": "uniform", "low": 0.5, "high": 2.0},
        "action_latency": {"operation": "abs", "distribution": "uniform", "low": 0.0, "high": 2.0},
    })
    r = DynamicsRandomizer(spec, model, profile)
    assert r.names == ("gravity/z", "table_friction/table", "action_latency")
    values = np.array([0.05, 1.5, 1.0])
    gravity0 = model.opt.gravity.copy()
    effects = r.apply(model, values)
    assert model.opt.gravity[2] == gravity0[2] + 0.05
    assert model.geom_friction[geom_id(model, "table"), 0] == pytest.approx(1.5 * 1.0)
    assert effects.action_latency_steps == 1.0


# --- registry rules ---------------------------------------------------------------------

def test_registry_rules(toy_kinds):
    with pytest.raises(ValueError, match="already registered"):
        register_kind("table_friction", TABLE_FRICTION)
    assert register_kind("table_friction", TABLE_FRICTION, replace=True) is TABLE_FRICTION
    for name in ("body_mass", "gravity"):
        with pytest.raises(ValueError, match="built-in"):
            register_kind(name, TABLE_FRICTION, replace=True)
        with pytest.raises(ValueError, match="built-in"):
            unregister_kind(name)
    for bad in ("", "obj/friction", "object friction", 3):
        with pytest.raises(ValueError, match="identifier"):
            register_kind(bad, TABLE_FRICTION)
    with pytest.raises(TypeError):
        register_kind("not_a_kind", {"target": "geom"})
    with pytest.raises(KeyError):
        unregister_kind("never_registered")


def test_kind_checks_its_own_settings():
    with pytest.raises(ValueError, match="subset"):
        ModelField(GEOM, "x", path="geom_friction", operations=("multiply",))
    with pytest.raises(ValueError, match="subset"):
        ModelField(GEOM, "x", path="geom_friction", operations=())
    with pytest.raises(ValueError, match="default_targets"):
        GeomColourScale(NO_TARGET, "x", default_targets=("table",))


def test_unregistered_kind_is_unknown_to_files():
    register_kind("table_friction", TABLE_FRICTION)
    body = {"table_friction": {"operation": "scale", "distribution": "uniform", "low": 0.5, "high": 2.0}}
    spec_of(body)
    unregister_kind("table_friction")
    with pytest.raises(ConfigError, match="unknown parameter kind 'table_friction'"):
        spec_of(body)


def test_builtin_table_is_consistent():
    """Every built-in kind writes only fields NominalModel saves, and documents itself."""
    for name in BUILTIN_KINDS:
        kind = KINDS[name]
        assert kind.doc and kind.operations, name
        assert set(kind.writes) <= set(NominalModel.FIELDS), name
