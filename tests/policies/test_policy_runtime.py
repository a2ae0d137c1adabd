"""policies.runtime.PolicyRuntime on tiny artifacts exported from torch in the fixtures."""
import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from policies.manifest import MANIFEST_FILE, load_manifest, parse_manifest, save_manifest, seal_artifact  # noqa: E402
from policies.runtime import (NonFiniteObservationError, NonFiniteOutputError, PolicyLoadError,  # noqa: E402
                              PolicyRuntime)
from policies.testing import dummy_module, export_dummy_policy  # noqa: E402
from sim_bridge.config import ConfigError  # noqa: E402
from sim_bridge.observations import ObservationBuilder, action_to_joint_targets  # noqa: E402
from sim_bridge.tasks import ReachTask  # noqa: E402


@pytest.fixture(scope="module")
def lstm(tmp_path_factory):
    module = dummy_module("lstm", hidden=8, seed=1)
    return export_dummy_policy(tmp_path_factory.mktemp("lstm"), module=module, name="tiny_lstm"), module


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    module = dummy_module("mlp", hidden=16, seed=2)
    return export_dummy_policy(tmp_path_factory.mktemp("mlp"), module=module, name="tiny_mlp"), module


@pytest.fixture
def lstm_copy(lstm, tmp_path):
    """A private copy of the LSTM artifact that a test may break."""
    return shutil.copytree(lstm[0], tmp_path / "artifact")


def edit_manifest(directory, **changes):
    path = directory / MANIFEST_FILE
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


def load_error(path) -> PolicyLoadError:
    with pytest.raises(PolicyLoadError) as info:
        PolicyRuntime(path)
    assert isinstance(info.value, ConfigError)
    return info.value


def torch_rollout(module, observations):
    h = torch.zeros(module.layers, 1, module.hidden)
    c = torch.zeros_like(h)
    actions = []
    with torch.inference_mode():
        for obs in observations:
            a, h, c = module(torch.from_numpy(obs)[None], h, c)
            actions.append(a[0].numpy().copy())
    return np.array(actions), (h.numpy(), c.numpy())


# --- loading and stepping -------------------------------------------------------------

def test_loads_from_directory_and_onnx_path(lstm):
    directory, _ = lstm
    for path in (directory, directory / "tiny_lstm.onnx", directory / MANIFEST_FILE):
        policy = PolicyRuntime(path)
        assert policy.name == "tiny_lstm"
        assert policy.manifest == load_manifest(directory)
        assert policy.manifest.architecture == "lstm"
        h, c = policy.state
        assert h.shape == c.shape == (1, 1, 8) and not h.any() and not c.any()


def test_pause_is_called_between_the_loading_steps(lstm, lstm_copy):
    # The policy node passes a pause that waits for the end of a control cycle: the load's
    # steps (manifest, hash, session, checks and probe) must each come after one.
    pauses = []
    policy = PolicyRuntime(lstm[0], pause=lambda: pauses.append(1))
    assert len(pauses) == 3 and policy.name == "tiny_lstm"
    onnx = lstm_copy / "tiny_lstm.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    pauses.clear()
    with pytest.raises(PolicyLoadError, match="has sha256"):
        PolicyRuntime(lstm_copy, pause=lambda: pauses.append(1))
    assert len(pauses) == 1, "a load that fails stops pausing"


def test_lstm_matches_torch_over_a_sequence_and_reset_restarts(lstm):
    directory, module = lstm
    observations = np.random.default_rng(0).normal(0, 1, (50, 24)).astype(np.float32)
    expected, (h_torch, c_torch) = torch_rollout(module, observations)
    policy = PolicyRuntime(directory)
    got = np.array([policy.step(obs) for obs in observations])
    assert got.dtype == np.float32 and got.shape == (50, 7)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.abs(expected[0] - expected[-1]).max() > 1e-3  # the state matters
    h, c = policy.state
    assert np.abs(h - h_torch).max() <= 1e-5 and np.abs(c - c_torch).max() <= 1e-5
    policy.reset()
    assert np.abs(policy.step(observations[0]) - got[0]).max() == 0.0


def test_mlp_works_without_state(mlp):
    directory, module = mlp
    policy = PolicyRuntime(directory / "tiny_mlp.onnx")
    assert policy.state is None and policy.manifest.recurrent_state is None
    observations = np.random.default_rng(1).normal(0, 1, (5, 24)).astype(np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(observations)).numpy()
    got = np.array([policy.step(obs) for obs in observations])
    assert np.abs(got - expected).max() <= 1e-5
    policy.reset()
    policy.warmup(3)
    with pytest.raises(ValueError, match="feed-forward"):
        policy.set_state(np.zeros((1, 1, 16)), np.zeros((1, 1, 16)))


def test_act_builds_the_shared_observation(lstm):
    directory, _ = lstm
    rng = np.random.default_rng(2)
    q, qd, prev = rng.normal(0, 1, 7), rng.normal(0, 1, 7), rng.uniform(-1, 1, 7)
    target = np.array([0.5, 0.1, 0.4])
    by_hand, policy = PolicyRuntime(directory), PolicyRuntime(directory)
    for _ in range(3):
        expected = by_hand.step(ObservationBuilder(ReachTask().observation_layout(7)).build(q, qd, prev, (target,)))
        assert np.array_equal(policy.act(q, qd, prev, target), expected)
        q, prev = q + 0.01, np.clip(expected, -1, 1)
    with pytest.raises(ValueError, match="expected 7 joint positions"):
        policy.act(q[:6], qd[:6], prev[:6], target)


def test_joint_targets_use_the_manifest_scale(lstm):
    policy = PolicyRuntime(lstm[0])
    action = np.array([2.0, -2.0, 0.5, 0, 0, 0, -0.5], dtype=np.float32)
    q = np.zeros(7)
    lower, upper = -np.ones(7), np.full(7, 0.01)
    targets = policy.joint_targets(action, q, lower, upper)
    assert np.allclose(targets, action_to_joint_targets(action, q, 0.05, lower, upper))
    assert np.allclose(targets, [0.01, -0.05, 0.01, 0, 0, 0, -0.025])


def test_state_round_trip_and_shape_checks(lstm):
    policy = PolicyRuntime(lstm[0])
    obs = np.full(24, 0.3, dtype=np.float32)
    policy.warmup(5)
    first = policy.step(obs)
    saved = policy.state
    second = policy.step(obs)
    policy.set_state(*saved)
    assert np.array_equal(policy.step(obs), second)
    saved[0][...] = 99.0  # a copy: changing it does not touch the runtime
    assert np.abs(policy.state[0]).max() < 1.0
    with pytest.raises(ValueError, match=r"h has shape \(8,\), expected \(1, 1, 8\)"):
        policy.set_state(np.zeros(8), np.zeros((1, 1, 8)))
    with pytest.raises(ValueError, match="c is not finite"):
        policy.set_state(np.zeros((1, 1, 8)), np.full((1, 1, 8), np.nan))
    with pytest.raises(ValueError, match=r"observation has shape \(23,\), expected \(24,\)"):
        policy.step(np.zeros(23))
    policy.reset()
    assert np.array_equal(policy.step(obs), first)


# --- bad artifacts ------------------------------------------------------------------

def test_missing_manifest_names_the_expected_path(lstm_copy):
    (lstm_copy / MANIFEST_FILE).unlink()
    for given in (lstm_copy, lstm_copy / "tiny_lstm.onnx"):
        err = load_error(given)
        assert str(lstm_copy / MANIFEST_FILE) in str(err) and "no manifest.json" in str(err)
    err = load_error(lstm_copy / "not_there")
    assert str(lstm_copy / "not_there" / MANIFEST_FILE) in str(err)


def test_manifest_with_missing_field(lstm_copy):
    path = lstm_copy / MANIFEST_FILE
    data = json.loads(path.read_text())
    del data["control_rate_hz"]
    path.write_text(json.dumps(data))
    err = load_error(lstm_copy)
    assert err.field == "control_rate_hz" and str(path) in str(err) and "missing required field" in str(err)


def test_observation_size_disagreeing_with_graph(tmp_path):
    export_dummy_policy(tmp_path, obs_size=21, act_size=7)  # graph for 6-joint observations
    err = load_error(tmp_path)
    assert err.field == "observation.size" and str(tmp_path / MANIFEST_FILE) in str(err)
    assert "'obs' has shape [1, 21], the manifest implies [1, 24]" in str(err)


def test_action_size_disagreeing_with_graph(tmp_path):
    export_dummy_policy(tmp_path, obs_size=24, act_size=6, joint_names=[f"j{i}" for i in range(7)])
    err = load_error(tmp_path)
    assert err.field == "action.size" and "[1, 6]" in str(err)


def test_hidden_size_disagreeing_with_graph(lstm_copy):
    path = lstm_copy / MANIFEST_FILE
    m = load_manifest(path)
    data = m.to_dict()
    data["recurrent_state"]["hidden"] = 16
    save_manifest(parse_manifest(data), path)
    seal_artifact(lstm_copy)  # as if exported so: the graph check, not the seal, must catch it
    err = load_error(lstm_copy)
    assert err.field == "recurrent_state" and "[1, 1, 8]" in str(err)


def test_io_names_not_matching_graph(tmp_path):
    export_dummy_policy(tmp_path, input_names=["x", "h_in", "c_in"])
    err = load_error(tmp_path)
    assert err.field == "io.inputs" and "'x'" in str(err) and str(tmp_path / MANIFEST_FILE) in str(err)


def test_policy_for_other_joints_loads_but_action_size_must_match_joints(tmp_path):
    names = [f"arm_{i}" for i in range(7)]
    policy = PolicyRuntime(export_dummy_policy(tmp_path / "other", joint_names=names))
    assert policy.manifest.joint_names == tuple(names)

    manifest = tmp_path / "other" / MANIFEST_FILE
    data = json.loads(manifest.read_text())
    data["action"]["size"] = 6
    manifest.write_text(json.dumps(data))
    err = load_error(manifest)
    assert err.field == "action.size" and "number of joint_names (7)" in str(err)


def test_truncated_onnx_is_not_a_valid_model(lstm_copy):
    onnx = lstm_copy / "tiny_lstm.onnx"
    payload = onnx.read_bytes()
    onnx.write_bytes(payload[: len(payload) // 2])
    path = lstm_copy / MANIFEST_FILE
    m = load_manifest(path)
    truncated_sha = hashlib.sha256(onnx.read_bytes()).hexdigest()
    # the sha matches, so the ONNX parse error is what is reported
    save_manifest(parse_manifest({**m.to_dict(), "onnx_sha256": truncated_sha}), path)
    seal_artifact(lstm_copy)
    err = load_error(lstm_copy)
    assert str(onnx) in str(err) and "not a valid ONNX model" in str(err)
    assert "InvalidProtobuf" in str(err)


def test_sha_mismatch(lstm_copy):
    onnx = lstm_copy / "tiny_lstm.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    err = load_error(lstm_copy)
    assert err.field == "onnx_sha256" and str(lstm_copy / MANIFEST_FILE) in str(err)


def test_missing_or_misnamed_onnx_file(lstm_copy):
    (lstm_copy / "tiny_lstm.onnx").rename(lstm_copy / "renamed.onnx")
    err = load_error(lstm_copy)
    assert err.field == "onnx_file" and "tiny_lstm.onnx" in str(err)
    err = load_error(lstm_copy / "renamed.onnx")
    assert err.field == "onnx_file" and "renamed.onnx" in str(err)


@pytest.mark.parametrize("architecture", ["lstm", "mlp"])
def test_nan_output_raises_and_keeps_the_state(tmp_path, architecture):
    policy = PolicyRuntime(export_dummy_policy(tmp_path, architecture=architecture, nan=True))
    rng = np.random.default_rng(3)
    if architecture == "lstm":
        h, c = rng.normal(0, 0.5, (2, 1, 1, 8)).astype(np.float32)
        policy.set_state(h, c)
    with pytest.raises(NonFiniteOutputError, match="output 'actions' is not finite") as info:
        policy.step(rng.normal(0, 1, 24))
    assert isinstance(info.value, RuntimeError)
    if architecture == "lstm":
        assert np.array_equal(policy.state[0], h) and np.array_equal(policy.state[1], c)


def test_non_finite_observation_is_rejected_before_running(lstm):
    # onnxruntime's LSTM kernel turns a NaN input into finite, saturated outputs (torch gives
    # NaN), so the output check alone would let a NaN sensor reading through.
    policy = PolicyRuntime(lstm[0])
    q = np.zeros(7)
    q[3] = np.nan
    with pytest.raises(NonFiniteObservationError, match=r"joint_pos\[3\]=nan") as info:
        policy.act(q, np.zeros(7), np.zeros(7), np.array([0.5, 0.0, np.inf]))
    assert "target_pos[2]=inf" in str(info.value) and isinstance(info.value, ValueError)
    h, c = policy.state
    assert not h.any() and not c.any()
    obs = np.zeros(24)
    obs[3] = np.nan
    with pytest.raises(NonFiniteObservationError):
        policy.step(obs)


def test_runtime_imports_neither_torch_nor_mujoco():
    code = ("import sys, policies.runtime, policies.manifest, policies.testing; "
            "bad = [m for m in ('torch', 'mujoco') if m in sys.modules]; "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_benchmark_runs_and_writes_json(tmp_path, mlp, capsys):
    import runpy
    from pathlib import Path

    bench = runpy.run_path(str(Path(__file__).parents[2] / "bench" / "policy.py"))  # loads main(), runs nothing
    out = tmp_path / "bench.json"
    assert bench["main"](["--policy", str(mlp[0]), "--steps", "200", "--warmup", "10", "--repeats", "1",
                          "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["name"] == "tiny_mlp" and results["onnxruntime"]["p99_us"] > 0
    assert "ratio torch / onnxruntime" in capsys.readouterr().out
