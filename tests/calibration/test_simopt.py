"""SimOpt core (calibration.simopt): settings files, the search space with tied groups, and
calibration runs on synthetic "real" data from the simulator itself with known dynamics
(D falls, the mean approaches the truth, REPS stays within its KL bound), and the ways a
calibration fails: every sample blows up, the covariance collapses."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from calib_helpers import REACH_LSTM, element_index, synthetic_real
from calibration import simopt
from calibration.search import GaussianSearch
from calibration.simopt import (Calibration, CalibrationError, CalibrationSettings, SearchEntry, SearchSpace,
                                load_settings)
from sim_bridge.config import ConfigError
from sim_bridge.randomization import (DynamicsRandomizer, Distribution, load_randomization, parse_randomization)
from sim_bridge.simulator import ArmSimulator, build_model

TIED = (SearchEntry("body_mass", shared=True), SearchEntry("actuator_kp", shared=True))
TRUTH = np.array([1.4, 0.85])  # body mass factor, kp factor (prior means: 1.0, 1.08)


def settings(**changes):
    base = dict(search=TIED, mode="open_loop", method="reps", samples=32, iterations=3, max_steps=30, seed=0,
                threads=2)
    base.update(changes)
    return CalibrationSettings(**base)


# --- settings -----------------------------------------------------------------------------
def write(tmp_path, text, name="simopt.yaml"):
    path = tmp_path / name
    path.write_text("calibration_version: 1\nsearch: {body_mass: {shared: true}, action_latency: {}}\n" + text)
    return path


def test_shipped_settings_load():
    s = load_settings()
    assert s.mode == "closed_loop" and s.method == "reps" and s.samples == 256 and s.iterations == 5
    assert SearchEntry("body_mass", True) in s.search and SearchEntry("action_latency", False) in s.search
    assert s.signals == ("position", "velocity") and s.signal_weights == {"position": 1.0, "velocity": 0.1}
    assert s.with_overrides(samples=8, method=None).samples == 8


@pytest.mark.parametrize("text, field, message", [
    ("samplez: 8\n", None, r"unknown field\(s\) \['samplez'\]"),
    ("method: sgd\n", "method", r"must be one of \['reps', 'cem'\], got 'sgd'"),
    ("mode: replay\n", "mode", r"must be one of \['closed_loop', 'open_loop'\]"),
    ("samples: 1\n", "samples", "invalid value 1"),
    ("epsilon: 0\n", "epsilon", "invalid value 0"),
    ("elite_fraction: 1.5\n", "elite_fraction", "invalid value 1.5"),
    ("discrepancy: {signals: [position, torque]}\n", "discrepancy.signals", "non-empty subset"),
    ("discrepancy: {w_l3: 1}\n", "discrepancy", r"unknown field\(s\) \['w_l3'\]"),
    ("samples: many\n", "samples", "expected an integer, got 'many'"),
    ("discrepancy: {signals: position}\n", "discrepancy.signals", "expected a list of strings"),
])
def test_bad_settings_raise_config_error_naming_the_field(tmp_path, text, field, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path)
    assert info.value.field == field
    text = str(info.value)
    assert text.startswith(str(path))
    if field:
        assert text.count(f"field '{field}'") == 1, text


def test_bad_search_entries_and_versions(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("calibration_version: 1\nsearch: {body_mass: {shared: maybe}}\n")
    with pytest.raises(ConfigError, match="expected true or false") as info:
        load_settings(path)
    assert info.value.field == "search.body_mass.shared"
    path.write_text("calibration_version: 1\nsearch: {body_mass: {tied: true}}\n")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['tied'\]"):
        load_settings(path)
    path.write_text("calibration_version: 1\nsearch: {}\n")
    with pytest.raises(ConfigError, match="non-empty mapping") as info:
        load_settings(path)
    assert info.value.field == "search"
    path.write_text("calibration_version: 2\nsearch: {body_mass: {}}\n")
    with pytest.raises(ConfigError, match="unsupported version 2"):
        load_settings(path)


# --- search space -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def randomizer(profile, prior):
    return DynamicsRandomizer(prior, build_model(profile), profile)


def test_unknown_or_repeated_search_names_are_config_errors(randomizer, prior):
    params = {p.name: p for p in prior.parameters}
    with pytest.raises(ConfigError, match="'tendon_stiffness' is neither a parameter nor an element") as info:
        SearchSpace(randomizer.names, [SearchEntry("tendon_stiffness")], params)
    assert info.value.field == "search.tendon_stiffness"
    with pytest.raises(ConfigError, match="'body_mass/link99' is neither") as info:
        SearchSpace(randomizer.names, [SearchEntry("body_mass/link99")], params)
    with pytest.raises(ConfigError, match="'body_mass/link3' is searched twice"):
        SearchSpace(randomizer.names, [SearchEntry("body_mass", True), SearchEntry("body_mass/link3")], params)


def test_tied_groups_expand_to_equal_values_and_sim_bridge_samples_them_tied(randomizer, prior, profile):
    params = {p.name: p for p in prior.parameters}
    space = SearchSpace(randomizer.names, [SearchEntry("body_mass", shared=True), SearchEntry("actuator_kp"),
                                           SearchEntry("action_latency")], params)
    assert space.names[0] == "body_mass" and space.names[1:8] == tuple(f"actuator_kp/joint{i}" for i in range(1, 8))
    assert space.size == 1 + 7 + 1
    assert space.members("body_mass") == [n for n in randomizer.names if n.startswith("body_mass/")]
    base = randomizer.nominal_values
    values = np.arange(1, 1 + 2 * space.size, dtype=float).reshape(2, space.size) / 10
    full = space.expand(values, base)
    mass = element_index(randomizer.names, "body_mass")
    kp = element_index(randomizer.names, "actuator_kp")
    latency = randomizer.names.index("action_latency")
    np.testing.assert_array_equal(full[:, mass], np.repeat(values[:, :1], len(mass), axis=1))
    np.testing.assert_array_equal(full[:, kp], values[:, 1:8])
    np.testing.assert_array_equal(full[:, latency], values[:, 8])
    untouched = [i for i in range(len(base)) if i not in mass + kp + [latency]]
    np.testing.assert_array_equal(full[:, untouched], np.repeat(base[None, untouched], 2, axis=0))

    # Written back as the file's joint_gaussian: sim_bridge accepts it and samples tied values.
    element_prior = GaussianSearch.from_spec(prior, randomizer)
    group = space.initial(element_prior)
    fitted = group.replace(mean=np.r_[1.2, np.full(7, 1.1), 0.5], cov=np.diag(np.r_[0.01, np.full(7, 0.004), 0.05]))
    spec = space.element_gaussian(fitted, element_prior).to_spec(prior)
    reparsed = parse_randomization(spec.to_dict())
    sim = ArmSimulator(profile)
    sim.set_randomization(reparsed)
    draws = []
    for seed in range(6):
        sim.reset(seed=seed)
        draws.append(sim.dynamics.copy())
    draws = np.array(draws)
    # Equal up to the rounding in sim_bridge's factor of the rank-deficient covariance (~1e-9).
    assert np.ptp(draws[:, mass], axis=1).max() < 1e-7, "tied elements must be sampled equal"
    assert np.ptp(draws[:, mass[0]]) > 0, "and still vary between episodes"
    assert np.ptp(draws[:, kp], axis=1).min() > 0, "untied elements vary independently"
    assert np.all((draws[:, mass] >= 0.5) & (draws[:, mass] <= 1.5))


# --- calibration on synthetic data --------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic(profile, prior, emulator_eps):
    """Per mode: "real" episodes simulated at the known TRUTH (other elements at the prior mean)."""
    out = {}
    for mode in ("open_loop", "closed_loop"):
        calib = Calibration(profile, prior, emulator_eps, settings(mode=mode), REACH_LSTM)
        truth = calib.element_values(TRUTH[None])[0]
        out[mode] = synthetic_real(profile, prior, calib.episodes, truth, mode, calib.policy)
        calib.close()
    return out


@pytest.mark.parametrize("mode, method", [("open_loop", "reps"), ("closed_loop", "reps"), ("open_loop", "cem")])
def test_calibration_recovers_known_dynamics(mode, method, synthetic, profile, prior):
    s = settings(mode=mode, method=method, epsilon=1.0, stop_factor=0.0)  # a fixed number of iterations
    calib = Calibration(profile, prior, synthetic[mode], s, REACH_LSTM if mode == "closed_loop" else None)
    try:
        assert [e.steps for e in calib.episodes] == [30, 24]  # episodes of different lengths together
        assert calib.discrepancy_at(TRUTH) == pytest.approx(0.0, abs=1e-9)
        d0 = calib.initial_discrepancy
        assert d0 > 0.05
        err0 = np.abs(calib.prior.mean - TRUTH)
        history = calib.run()
        assert len(history) == 3
        assert calib.final_discrepancy < 0.3 * d0
        err = np.abs(calib.search.mean - TRUTH)
        assert np.all(err < err0) and np.all(err < 0.1), (calib.search.mean, TRUTH)
        assert np.all(calib.search.std < calib.prior.std)
        for record in history:
            assert record.failed_samples == 0
            assert record.cost_min <= record.cost_mean
            if method == "reps":
                assert record.kl <= s.epsilon * (1 + 1e-9)
        searches = [calib.prior] + [r.search for r in history]
        for old, new, record in zip(searches, searches[1:], history):
            assert new.kl(old) == pytest.approx(record.kl)
        # prior mean + TRUTH above, then per iteration the samples and the new mean
        # the prior mean, TRUTH, 3 x (samples + the new mean), then the assessment's probes (mean +- each variable)
        assert calib.rollouts == (2 + 3 * (s.samples + 1) + 1 + 2 * calib.space.size) * len(calib.episodes)
        assert calib.assessment.kept_prior == []  # both are identifiable from these episodes

        spec = calib.result_spec({"note": "synthetic"})
        prov = spec.provenance["calibration"]
        assert prov["iterations"] == 3 and prov["method"] == method and prov["mode"] == mode
        assert prov["discrepancy_before"] == pytest.approx(d0)
        assert prov["discrepancy_after"] == pytest.approx(calib.final_discrepancy)
        assert prov["kl_from_prior"] == pytest.approx(calib.search.kl(calib.prior))
        assert prov["note"] == "synthetic" and prov["episodes"] == ["synthetic#0", "synthetic#1"]
        assert spec.parameters == prior.parameters
    finally:
        calib.close()


@pytest.mark.parametrize("epsilon", [0.1, 0.5])
def test_reps_iterations_respect_the_kl_bound(epsilon, synthetic, profile, prior):
    calib = Calibration(profile, prior, synthetic["open_loop"], settings(epsilon=epsilon, samples=16), None)
    try:
        history = calib.run()
        assert all(r.kl <= epsilon * (1 + 1e-9) for r in history), [r.kl for r in history]
        assert any(r.info["kl_limited"] or r.kl > 0.5 * epsilon for r in history), "the bound was never active"
        assert calib.final_discrepancy < calib.initial_discrepancy
    finally:
        calib.close()


def test_callback_stops_early(synthetic, profile, prior):
    calib = Calibration(profile, prior, synthetic["open_loop"], settings(samples=8, iterations=5))
    try:
        seen = []
        calib.run(callback=lambda r: seen.append(r.iteration) or r.iteration == 2)
        assert seen == [1, 2] and len(calib.history) == 2
    finally:
        calib.close()


def test_closed_loop_needs_the_policy_and_episodes_are_needed(synthetic, profile, prior):
    with pytest.raises(CalibrationError, match="closed-loop calibration needs the policy"):
        Calibration(profile, prior, synthetic["closed_loop"], settings(mode="closed_loop"))
    with pytest.raises(CalibrationError, match="no real episodes"):
        Calibration(profile, prior, [], settings())
    with pytest.raises(ConfigError, match="'tendon_stiffness' is neither"):
        Calibration(profile, prior, synthetic["open_loop"], settings(search=(SearchEntry("tendon_stiffness"),)))


# --- failures -----------------------------------------------------------------------------
def test_every_sample_blowing_up_raises_calibration_error(emulator_eps, profile, prior):
    data = prior.to_dict()
    data["parameters"]["gravity"] = {"operation": "abs", "distribution": "uniform", "low": 10.0, "high": 20.0}
    parsed = parse_randomization(data)
    # A file can no longer ask for gravity 1e5 m/s^2 (plausibility limits, issue 12); the
    # calibration must still survive a distribution whose every sample blows up, so the
    # spec is built past the parser.
    unstable = dataclasses.replace(parsed, parameters=tuple(
        dataclasses.replace(p, distribution=Distribution("uniform", low=1e5, high=2e5)) if p.name == "gravity" else p
        for p in parsed.parameters))
    calib = Calibration(profile, unstable, emulator_eps, settings(search=(SearchEntry("gravity", True),), samples=8))
    try:
        assert calib.initial_discrepancy == np.inf  # a blow-up at the prior mean is a cost, not an exception
        before = calib.search
        with pytest.raises(CalibrationError, match="8 of 8 simulated samples blew up"):
            calib.step()
        assert calib.search is before and calib.history == []
    finally:
        calib.close()


def test_covariance_collapse_raises_calibration_error(synthetic, profile, prior):
    """CEM with two elites on noise-free data shrinks the spread ~100x per iteration."""
    s = settings(search=(SearchEntry("actuator_kp", True),), method="cem", elite_fraction=0.01, samples=32,
                 iterations=12)
    calib = Calibration(profile, prior, synthetic["open_loop"], s)
    try:
        with pytest.raises(CalibrationError, match=r"the covariance collapsed for \['actuator_kp'\]"):
            calib.run()
        assert 1 <= len(calib.history) < 12
        assert calib.search is calib.history[-1].search  # the collapsed update was not taken
        assert calib.search.std[0] >= simopt.COLLAPSE_RATIO * calib.prior.std[0]
    finally:
        calib.close()


def test_a_non_finite_update_raises_calibration_error(synthetic, profile, prior, monkeypatch):
    calib = Calibration(profile, prior, synthetic["open_loop"], settings(samples=8))

    class Broken:
        mean = np.array([np.nan, 1.0])
        cov = np.eye(2)
        std = np.ones(2)
        names = ("body_mass", "actuator_kp")

    monkeypatch.setattr(simopt, "reps_update", lambda *a, **k: (Broken(), {}))
    try:
        with pytest.raises(CalibrationError, match="non-finite mean or covariance"):
            calib.step()
        assert calib.history == []
    finally:
        calib.close()


def test_prior_with_a_non_psd_joint_gaussian_is_refused():
    data = load_randomization("default").to_dict()
    data["joint_gaussian"] = {"names": ["body_mass/link1", "body_mass/link2"], "mean": [1.0, 1.0],
                              "cov": [[0.01, 0.02], [0.02, 0.01]]}
    with pytest.raises(ConfigError, match="not positive semi-definite") as info:
        parse_randomization(data)
    assert info.value.field == "joint_gaussian.cov"


# --- when to trust a fit: noise floor, identifiability, bounds -----------------------------
def test_the_run_stops_at_the_noise_floor_and_says_so(synthetic, profile, prior):
    calib = Calibration(profile, prior, synthetic["open_loop"], settings(iterations=10, stop_factor=2.0))
    try:
        assert calib.noise_floor > 0
        history = calib.run()
        assert len(history) < 10 and calib.final_discrepancy <= 2.0 * calib.noise_floor
        assert calib.stop_reason.startswith(f"reached the noise floor after {len(history)} iteration(s)")
        spec = calib.result_spec()
        quality = spec.provenance["calibration"]["quality"]
        assert quality["stop_reason"] == calib.stop_reason and quality["kept_prior"] == []
        assert not any(w.startswith("not converged") for w in quality["warnings"])
    finally:
        calib.close()


def test_an_unconverged_run_and_a_parameter_the_data_cannot_fix_are_reported(synthetic, profile, prior):
    """joint_damping barely changes these short reach episodes: its D rise stays under the noise
    floor, so the fit keeps the prior for it; one iteration does not reach the floor."""
    s = settings(search=TIED + (SearchEntry("joint_damping", True),), iterations=1, stop_factor=2.0)
    calib = Calibration(profile, prior, synthetic["open_loop"], s)
    try:
        calib.run()
        a = calib.assessment
        rise = a.sensitivity
        assert rise["body_mass"] > a.noise_floor and rise["actuator_kp"] > a.noise_floor
        # measured here: floor 0.010, rises 0.20 (mass), 0.24 (kp), 0.0055 (damping); D 10x the floor
        assert rise["joint_damping"] <= a.noise_floor and a.kept_prior == ["joint_damping"]
        i = list(calib.search.names).index("joint_damping")
        assert calib.search.mean[i] == calib.prior.mean[i] and calib.search.std[i] == calib.prior.std[i]
        assert any(w.startswith("joint_damping: not identifiable") for w in a.warnings)
        assert calib.final_discrepancy > 2.0 * a.noise_floor
        assert any(w.startswith("not converged: iteration limit (1)") for w in a.warnings)
    finally:
        calib.close()


def test_a_fit_at_the_prior_bound_is_a_warning():
    from calibration.quality import bound_warnings

    lines = bound_warnings(["body_mass", "actuator_kp"], np.array([1.499, 1.0]), np.array([1e-4, 0.1]),
                           np.array([0.29, 0.2]), np.array([0.5, 0.75]), np.array([1.5, 1.5]))
    assert len(lines) == 1 and lines[0].startswith("body_mass: fitted mean 1.499 is at the prior's upper bound 1.5")
    assert "collapsed spread" in lines[0] and "widen its range" in lines[0]


def test_widen_prior_grows_the_hit_side_in_the_range_s_own_scale_within_the_plausible_limits():
    from calibration.quality import widen_prior

    prior = load_randomization("default")
    params = {p.name: p for p in prior.parameters}
    assert params["actuator_kd"].distribution.type == "loguniform"  # 0.5-2.0
    wider, changes = widen_prior(prior, {"actuator_kd": "lower", "body_mass/link3": "upper", "gravity/z": "upper"},
                                 2.0)
    after = {p.name: p.distribution for p in wider.parameters}
    assert after["actuator_kd"].low == pytest.approx(0.125) and after["actuator_kd"].high == 2.0  # 0.5 / 4
    assert after["body_mass"].low == 0.5 and after["body_mass"].high == pytest.approx(2.5)
    assert after["gravity"].high == pytest.approx(3.6) and after["gravity"].low == -1.2  # a normal's bounds
    assert set(changes) == {"actuator_kd", "body_mass", "gravity"}
    assert after["joint_damping"] == params["joint_damping"].distribution  # untouched
    # never past the kind's plausible range; a range already at it stays (and is not listed)
    from sim_bridge.randomization import SCALE_RANGE

    lowest, changes = widen_prior(wider, {"body_mass": "lower"}, 2.0)
    assert {p.name: p for p in lowest.parameters}["body_mass"].distribution.low == SCALE_RANGE[0]
    _, none = widen_prior(lowest, {"body_mass": "lower"}, 2.0)
    assert none == {}
    with pytest.raises(ValueError, match="must be > 1"):
        widen_prior(prior, {"body_mass": "upper"}, 1.0)


def test_noise_floor_grows_with_the_recordings_noise():
    from calibration.quality import noise_floor

    t = np.linspace(0, 2, 100)[:, None]
    clean = np.hstack([np.sin(t), np.cos(2 * t)])
    rng = np.random.default_rng(1)
    floors = [noise_floor([clean + rng.normal(0, sd, clean.shape)], weights=np.ones(2), scale=np.ones(2),
                          w_l1=0.5, w_l2=1.0, smooth_std=5.0, truncate=4.0) for sd in (0.001, 0.01, 0.05)]
    assert floors[0] < floors[1] < floors[2]


def probe_costs(rises, episodes: int, shares=None):
    """A stand-in for Calibration.episode_costs at the identifiability probes: D = 1 in every
    episode at the mean and one step down; one step up, variable i rises by ``rises[i]`` on the
    mean over episodes, split over the episodes by ``shares[i]`` (default: evenly)."""
    n = len(rises)
    shares = np.full((n, episodes), 1.0 / episodes) if shares is None else np.asarray(shares, dtype=float)

    def costs(vectors):
        assert vectors.shape == (2 * n + 1, n)
        d = np.ones((2 * n + 1, episodes))
        d[1:n + 1] += np.asarray(rises, dtype=float)[:, None] * shares * episodes
        return d
    return costs


def test_a_parameter_barely_above_the_noise_floor_is_weakly_identified_and_kept(synthetic, profile, prior,
                                                                                monkeypatch):
    """Three tiers of the D rise against the noise floor: below it the prior is kept; up to
    WEAK_FACTOR x it the fit is kept with a 'weakly identified' warning (Push's puck mass); above
    it, nothing is said. The rises are set here (the probe itself is tested above)."""
    from calibration.quality import WEAK_FACTOR

    s = settings(search=TIED + (SearchEntry("joint_damping", True),), iterations=1, stop_factor=0.0)
    calib = Calibration(profile, prior, synthetic["open_loop"], s)
    try:
        calib.run()
        floor = calib.noise_floor
        rises = {"body_mass": 10.0 * floor, "actuator_kp": 0.5 * (1.0 + WEAK_FACTOR) * floor, "joint_damping": 0.5 * floor}
        names = list(calib.search.names)
        monkeypatch.setattr(calib, "episode_costs", probe_costs([rises[n] for n in names], len(calib.episodes)))
        fitted = calib.search.mean.copy()
        a = calib.assess()
        assert a.kept_prior == ["joint_damping"] and a.weak == ["actuator_kp"]
        kp = names.index("actuator_kp")
        assert calib.search.mean[kp] == fitted[kp]  # the weak fit is kept, not replaced by the prior
        weak = [w for w in a.warnings if w.startswith("actuator_kp: weakly identified")]
        assert len(weak) == 1 and "distrust it" in weak[0] and f"{0.5 * (1.0 + WEAK_FACTOR):.1f} x the noise floor" in weak[0]
        assert not any(w.startswith("body_mass") for w in a.warnings)
        assert a.to_dict()["weakly_identified"] == ["actuator_kp"]
        assert calib.result_spec().provenance["calibration"]["quality"]["weakly_identified"] == ["actuator_kp"]
    finally:
        calib.close()


def test_evidence_shares_say_how_much_of_a_rise_one_episode_carries():
    from calibration.quality import evidence_shares

    share, top = evidence_shares(np.array([[0.1, 0.1, 0.1, 0.1],     # every episode alike: 1/E
                                           [0.0, 0.9, 0.05, 0.05],   # one decides
                                           [-0.5, 0.2, 0.2, 0.0],    # an episode preferring the move counts 0
                                           [0.0, -0.1, np.inf, 0.0],  # a blow-up is not evidence; none left
                                           ]))
    np.testing.assert_allclose(share[:3], [0.25, 0.9, 0.5])
    assert list(top[:3]) == [0, 1, 1] and np.isnan(share[3])


def test_a_fit_that_rests_on_one_episode_is_kept_with_a_warning(synthetic, profile, prior, monkeypatch):
    """Push's puck friction in one loop run: 93% of its D rise came from one long push and the
    fit (0.27) was half the hidden 0.55. The probes per episode say so; with three or more
    episodes a share above DOMINANT_SHARE is a warning naming the episode (the fit is kept)."""
    from dataclasses import replace

    from calibration.quality import DOMINANT_SHARE

    episodes = list(synthetic["open_loop"])
    episodes.append(replace(episodes[0], name="third"))
    calib = Calibration(profile, prior, episodes, settings(iterations=1, stop_factor=0.0))
    try:
        calib.run()
        floor = calib.noise_floor
        names = list(calib.search.names)   # body_mass, actuator_kp
        dominant = 0.5 * (1.0 + DOMINANT_SHARE)
        shares = [[0.5 * (1 - dominant), dominant, 0.5 * (1 - dominant)], [0.4, 0.3, 0.3]]
        monkeypatch.setattr(calib, "episode_costs", probe_costs([10.0 * floor, 10.0 * floor], 3, shares))
        fitted = calib.search.mean.copy()
        a = calib.assess()
        assert a.one_episode == {"body_mass": episodes[1].name}
        assert a.evidence_share["body_mass"] == pytest.approx(dominant) and a.evidence_share["actuator_kp"] == pytest.approx(0.4)
        lines = [w for w in a.warnings if w.startswith("body_mass: the fit rests on one episode")]
        # the share as computed (87.5% exactly on paper: its float rounds either way when printed)
        share = a.evidence_share["body_mass"]
        assert len(lines) == 1 and f"{share:.0%}" in lines[0] and episodes[1].name in lines[0]
        assert not any(w.startswith("actuator_kp") for w in a.warnings)
        np.testing.assert_array_equal(calib.search.mean, fitted)   # kept, not replaced by the prior
        quality = calib.result_spec().provenance["calibration"]["quality"]
        assert quality["rests_on_one_episode"] == {"body_mass": episodes[1].name}
    finally:
        calib.close()
    two = Calibration(profile, prior, synthetic["open_loop"], settings(iterations=1, stop_factor=0.0))
    try:   # with two episodes every fit rests on one of them: nothing to compare, no warning
        two.run()
        monkeypatch.setattr(two, "episode_costs", probe_costs([10.0 * two.noise_floor] * 2, 2, [[0.0, 1.0], [0.5, 0.5]]))
        assert two.assess().one_episode == {}
    finally:
        two.close()
