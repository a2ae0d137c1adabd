"""policies.manifest: the manifest.json format, its validation and atomic writes (no torch)."""
import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from policies.manifest import MANIFEST_FILE, PolicyManifest, load_manifest, parse_manifest, save_manifest, sha256_file
from policies.testing import dummy_manifest_dict
from sim_bridge.config import ConfigError
from sim_bridge.tasks import ReachTask


def observation_layout(num_joints: int):
    return ReachTask().observation_layout(num_joints)


def write(tmp_path, data) -> Path:
    path = tmp_path / MANIFEST_FILE
    path.write_text(json.dumps(data))
    return path


def test_valid_manifest_loads_and_round_trips(tmp_path):
    data = dummy_manifest_dict()
    data["training"] = {"randomization": {"parameters": {"gravity": {"kind": "gravity"}}}, "seed": 3}
    path = write(tmp_path, data)
    m = load_manifest(tmp_path)  # the folder works as well as the file
    assert isinstance(m, PolicyManifest)
    assert m.source == path and m.onnx_path == tmp_path / "dummy_lstm.onnx"
    assert m.architecture == "lstm" and m.recurrent and m.recurrent_state.shape == (1, 1, 8)
    assert m.observation.size == 24 and m.observation.layout == observation_layout(7)
    assert m.action.size == 7 and m.action.scale_rad == 0.05 and m.num_joints == 7
    assert m.io.inputs == ("obs", "h_in", "c_in") and m.io.outputs == ("actions", "h_out", "c_out")
    assert m.to_dict() == data
    assert list(m.to_dict()) == list(data)  # the contract's field order

    out = save_manifest(m, tmp_path / "copy" / MANIFEST_FILE)
    assert load_manifest(out) == m
    assert json.loads(out.read_text()) == data
    assert out.read_text().startswith('{\n  "manifest_version": 1,')  # indent 2


def test_mlp_manifest_has_null_state():
    m = parse_manifest(dummy_manifest_dict("ff", "mlp"))
    assert m.recurrent_state is None and not m.recurrent
    assert m.io.inputs == ("obs",) and m.io.outputs == ("actions",)
    assert m.to_dict()["recurrent_state"] is None


def test_policy_for_other_joints_is_valid():
    m = parse_manifest(dummy_manifest_dict(joint_names=["a", "b", "c"]))
    assert m.observation.size == 12 and m.action.size == 3 and m.joint_names == ("a", "b", "c")


def _set(data, dotted, value):
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    if value is _DELETE:
        del data[last]
    else:
        data[last] = value


_DELETE = object()
BAD = [
    # (id, architecture, field path, new value, error field, message snippet)
    ("missing_field", "lstm", "robot_profile", _DELETE, "robot_profile", "missing required field"),
    ("missing_nested", "lstm", "action.scale_rad", _DELETE, "action.scale_rad", "missing required field"),
    ("wrong_type", "lstm", "control_rate_hz", "50", "control_rate_hz", "expected a number"),
    ("version", "lstm", "manifest_version", 2, "manifest_version", "unsupported version"),
    ("size_sum", "lstm", "observation.size", 25, "observation.size", "sum of the layout sizes (24)"),
    ("layout_order", "lstm", "observation.layout",
     [{"name": s.name, "size": s.size, "unit": s.unit, "description": ""}
      for s in reversed(observation_layout(7))], "observation.layout", "observation layout of task"),
    ("action_size", "lstm", "action.size", 6, "action.size", "number of joint_names (7)"),
    ("unknown_task", "lstm", "task", {"name": "juggle"}, "task", "unknown task 'juggle'; known tasks: push, reach"),
    ("task_without_name", "lstm", "task", {"settings": {}}, "task", "with the task's 'name'"),
    ("action_range", "lstm", "action.high", 2.0, "action.low", "clipped to [-1.0, 1.0]"),
    ("action_type", "lstm", "action.type", "joint_torque", "action.type", "unsupported action type"),
    ("architecture", "lstm", "architecture", "gru", "architecture", "unknown architecture 'gru'"),
    ("lstm_null_state", "lstm", "recurrent_state", None, "recurrent_state", "needs {layers, hidden}"),
    ("mlp_with_state", "mlp", "recurrent_state", {"layers": 1, "hidden": 8}, "recurrent_state", "must be null"),
    ("state_zero", "lstm", "recurrent_state.hidden", 0, "recurrent_state.hidden", "must be > 0"),
    ("io_inputs", "lstm", "io.inputs", ["x", "h_in", "c_in"], "io.inputs", "expected ['obs', 'h_in', 'c_in']"),
    ("io_mlp_outputs", "mlp", "io.outputs", ["actions", "h_out"], "io.outputs", "expected ['actions']"),
    ("sha", "lstm", "onnx_sha256", "abc", "onnx_sha256", "64 lowercase hex"),
    ("onnx_path", "lstm", "onnx_file", "../other/p.onnx", "onnx_file", "file name ending in .onnx"),
    ("pose_length", "lstm", "default_pose_rad", [0.0] * 6, "default_pose_rad", "expected 7 values"),
    ("created", "lstm", "created_utc", "yesterday", "created_utc", "ISO 8601"),
    ("training_type", "lstm", "training", [], "training", "expected an object"),
    ("unknown_top", "lstm", "extra", 1, None, "unknown field(s) ['extra']"),
    ("unknown_nested", "lstm", "action.clip", True, "action", "unknown field(s) ['clip']"),
]


@pytest.mark.parametrize("arch,path,value,field,snippet", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_invalid_manifest_names_file_and_field(tmp_path, arch, path, value, field, snippet):
    data = dummy_manifest_dict("p", arch)
    _set(data, path, value if value is _DELETE else copy.deepcopy(value))
    manifest = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_manifest(manifest)
    message = str(info.value)
    assert str(manifest) in message and snippet in message
    assert info.value.source == str(manifest) and info.value.field == field
    if field:
        assert f"field '{field}'" in message


def test_not_json_and_duplicate_keys_and_missing_file(tmp_path):
    path = tmp_path / MANIFEST_FILE
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_manifest(path)
    path.write_text('{"name": "a", "name": "b"}')
    with pytest.raises(ConfigError, match="duplicate key 'name'"):
        load_manifest(path)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_manifest(path)
    with pytest.raises(ConfigError, match="manifest file not found") as info:
        load_manifest(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_save_converts_numpy_and_rejects_nan(tmp_path):
    data = dummy_manifest_dict()
    data["evaluation"] = {"success_rate": np.float32(0.5), "returns": np.arange(3), "episodes": np.int64(4)}
    m = parse_manifest(data)
    path = save_manifest(m, tmp_path)
    assert path == tmp_path / MANIFEST_FILE
    assert load_manifest(path).evaluation == {"success_rate": 0.5, "returns": [0, 1, 2], "episodes": 4}

    data["evaluation"] = {"final_error_m": float("nan")}
    with pytest.raises(ConfigError, match="cannot write the manifest as JSON"):
        save_manifest(parse_manifest(data), tmp_path / "nan.json")
    assert not (tmp_path / "nan.json").exists()
    data["evaluation"] = {"callback": object()}
    with pytest.raises(ConfigError, match="not JSON serializable"):
        save_manifest(parse_manifest(data), tmp_path / "obj.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_FILE]  # no temp files left


def test_sha256_file(tmp_path):
    path = tmp_path / "blob"
    payload = bytes(range(256)) * 5000
    path.write_bytes(payload)
    assert sha256_file(path) == hashlib.sha256(payload).hexdigest()
