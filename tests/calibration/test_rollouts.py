"""Batched rollouts (calibration.rollouts): the batched native path reproduces the naive
ArmSimulator + batch-1 PolicyRuntime loop, latency included; the ONNX policy batches (and its
row-by-row fallback agrees); blow-ups become NaN rows and inf costs; bad inputs are refused."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from calib_helpers import REACH_LSTM, REACH_MLP, element_index, zero_noise
from calibration.discrepancy import discrepancy
from calibration.episodes import ReferenceEpisode
from calibration.rollouts import BatchPolicy, BatchSimulator, naive_rollouts
from policies.manifest import seal_artifact
from policies.runtime import PolicyRuntime

LATENCIES = [0.0, 0.45, 0.7, 2.0]  # control steps: none, half-up rounding, fractional, two whole steps


@pytest.fixture(scope="module")
def lstm():
    return BatchPolicy(REACH_LSTM)


@pytest.fixture
def sim(profile, prior):
    s = BatchSimulator(profile, prior, threads=2)
    yield s
    s.close()


def dynamics_samples(sim, latencies, seed=0):
    """Prior samples (noise elements zero) with the given action latencies."""
    values = zero_noise(sim.names, sim.randomizer.sample_batch(np.random.default_rng(seed), len(latencies)))
    values[:, sim.names.index("action_latency")] = latencies
    return values


def moved_start(ep: ReferenceEpisode, dq: float, v0: float) -> ReferenceEpisode:
    """The episode starting elsewhere and moving (not the emulator's resting home pose)."""
    pos, vel = ep.position.copy(), ep.velocity.copy()
    pos[0] += dq
    vel[0] = v0 * np.linspace(-1.0, 1.0, ep.num_joints)
    return ReferenceEpisode(ep.name + "/moved", pos, vel, ep.command, ep.goal)


@pytest.mark.parametrize("mode", ["closed_loop", "open_loop"])
def test_batched_rollouts_equal_the_naive_loop(mode, sim, lstm, profile, prior, emulator_eps):
    episodes = [emulator_eps[0], moved_start(emulator_eps[1], 0.05, 0.3)]  # 30 and 24 steps
    values = dynamics_samples(sim, LATENCIES)
    sim.set_dynamics(values)
    batched = sim.rollout(episodes, mode, lstm)
    naive = naive_rollouts(profile, prior, values, episodes, mode, REACH_LSTM)
    for ep, b, n in zip(episodes, batched, naive):
        assert b.shape == n.shape == (len(values), ep.steps, 2 * profile.num_joints)
        assert np.all(np.isfinite(b))
        np.testing.assert_allclose(b, n, atol=1e-6, rtol=0)
        # Row 0 is the episode's initial state (clipped to the limits).
        np.testing.assert_allclose(b[:, 0, :profile.num_joints], np.repeat(ep.position[:1], len(values), 0))
    # The comparison means something: the arm moves, and latency changes the trajectory.
    traj = batched[0][:, :, :profile.num_joints]
    assert np.ptp(traj[0], axis=0).max() > 0.05
    for a in range(len(LATENCIES) - 1):
        assert np.abs(traj[a] - traj[a + 1]).max() > 1e-4, "latency values gave identical trajectories"


def test_open_loop_replays_the_recorded_commands(sim, emulator_eps):
    """Open-loop rollouts at zero latency track the recorded commands (a PD arm lags them)."""
    values = dynamics_samples(sim, [0.0, 0.0])
    sim.set_dynamics(values)
    ep = emulator_eps[0]
    out = sim.rollout([ep], "open_loop")[0]
    err = np.abs(out[:, 1:, :ep.num_joints] - ep.command).max()
    assert err < 0.2
    other = ReferenceEpisode("other commands", ep.position, ep.velocity, ep.command[::-1].copy(), ep.goal)
    assert np.abs(sim.rollout([other], "open_loop")[0] - out).max() > 1e-3


@pytest.mark.parametrize("path", [REACH_LSTM, REACH_MLP], ids=["lstm", "mlp"])
def test_shipped_policies_batch_and_the_row_fallback_agrees(path):
    policy = BatchPolicy(path)
    assert policy.batched, "the shipped policies must run batched"
    assert policy.recurrent == (path == REACH_LSTM)
    rng = np.random.default_rng(1)
    batch = 5
    obs = rng.normal(size=(batch, policy.manifest.observation.size)).astype(np.float32)
    state = policy.initial_state(batch)
    if state is not None:
        state = tuple(rng.normal(size=s.shape).astype(np.float32) for s in state)
    actions, nxt = policy.step(obs, state)
    assert actions.shape == (batch, policy.manifest.action.size)
    policy.batched = False  # force the row-by-row path on the same inputs
    rows, rows_nxt = policy.step(obs, state)
    np.testing.assert_allclose(actions, rows, atol=1e-5)
    if state is not None:
        for a, b in zip(nxt, rows_nxt):
            np.testing.assert_allclose(a, b, atol=1e-5)
    # And each row is what the deployed batch-1 runtime computes.
    rt = PolicyRuntime(path)
    for b in range(batch):
        if state is not None:
            rt.set_state(state[0][:, b:b + 1], state[1][:, b:b + 1])
        np.testing.assert_allclose(rt.step(obs[b]), actions[b], atol=1e-5)


def test_a_graph_that_does_not_batch_falls_back_to_rows(tmp_path):
    """An exported graph that reshapes to a hard-coded batch of 1: still usable, row by row."""
    folder = tmp_path / "reach_mlp"
    shutil.copytree(REACH_MLP, folder)
    graph = onnx.load(folder / "reach_mlp.onnx")
    graph.graph.node[-1].output[0] = "actions_raw"
    graph.graph.initializer.append(helper.make_tensor("fixed_shape", TensorProto.INT64, [2], [1, 7]))
    graph.graph.node.append(helper.make_node("Reshape", ["actions_raw", "fixed_shape"], ["actions"]))
    data = graph.SerializeToString()
    (folder / "reach_mlp.onnx").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["onnx_sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    seal_artifact(folder)  # a deliberate edit is resealed (the seal covers graph + manifest)

    policy = BatchPolicy(folder)
    assert not policy.batched
    obs = np.random.default_rng(2).normal(size=(4, 24)).astype(np.float32)
    actions, state = policy.step(obs, None)
    want, _ = BatchPolicy(REACH_MLP).step(obs, None)
    assert state is None
    np.testing.assert_allclose(actions, want, atol=1e-5)


def test_blowup_gives_nan_rows_and_infinite_cost_not_an_exception(sim, profile, prior, emulator_eps):
    ep = emulator_eps[0]
    values = dynamics_samples(sim, [0.0, 0.0, 1.0, 0.0])
    g = element_index(sim.names, "gravity")
    values[1, g] = 1e5   # NaN at once
    values[3, g] = 3e4   # MuJoCo resets the data on its bad-QACC warning instead of NaN
    sim.set_dynamics(values)
    for mode in ("open_loop", "closed_loop"):
        out = sim.rollout([ep], mode, BatchPolicy(REACH_LSTM))[0]
        ok = np.isfinite(out).all(axis=(1, 2))
        assert ok.tolist() == [True, False, True, False]
        # From the blow-up on every row is NaN (the first bad step, as ArmSimulator reports it).
        naive = naive_rollouts(profile, prior, values, [ep], mode, REACH_LSTM)[0]
        for s in (1, 3):
            assert np.isnan(out[s, 1:]).all(), f"sample {s}: rows after the blow-up must be NaN"
            np.testing.assert_array_equal(np.isnan(out[s]), np.isnan(naive[s]))
        np.testing.assert_allclose(out[[0, 2]], naive[[0, 2]], atol=1e-6)
        cost = discrepancy(out[:, :, :profile.num_joints], ep.position)
        assert np.isinf(cost[[1, 3]]).all() and np.isfinite(cost[[0, 2]]).all()


def test_bad_inputs_are_refused_with_a_clear_message(sim, tmp_path, emulator_eps, lstm):
    ep = emulator_eps[0]
    with pytest.raises(ValueError, match="call set_dynamics"):
        sim.rollout([ep], "open_loop")
    with pytest.raises(ValueError, match=r"expected dynamics vectors of \d+ values"):
        sim.set_dynamics(np.zeros((2, len(sim.names) - 1)))
    nan_row = dynamics_samples(sim, [0.0])
    nan_row[0, 0] = np.nan
    with pytest.raises(ValueError, match="dynamics values must be finite"):
        sim.set_dynamics(nan_row)
    sim.set_dynamics(dynamics_samples(sim, [0.0]))
    six = ReferenceEpisode("six joints", ep.position[:, :6], ep.velocity[:, :6], ep.command[:, :6], ep.goal)
    with pytest.raises(ValueError, match="six joints: 6 joints, the profile has 7"):
        sim.rollout([ep, six], "open_loop")
    with pytest.raises(ValueError, match="mode must be one of"):
        sim.rollout([ep], "sideways", lstm)
    with pytest.raises(ValueError, match="closed-loop rollouts need the policy"):
        sim.rollout([ep], "closed_loop")
    with pytest.raises(ValueError, match="no episodes"):
        sim.rollout([], "open_loop")

    folder = tmp_path / "other_arm"
    shutil.copytree(REACH_MLP, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["joint_names"] = [f"elbow{i}" for i in range(7)]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    seal_artifact(folder)
    with pytest.raises(ValueError, match=r"policy reach_mlp is for joints \['elbow0'.*the profile has \['joint1'"):
        sim.rollout([ep], "closed_loop", BatchPolicy(folder))
