"""A policy folder full of tiny artifacts, good and broken, for the policy controller and node tests.

Built once per test session (about 10 s: torch exports) by :func:`build_policy_zoo`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

# Names in the zoo (folder name = policy name) -> what is special about them.
GOOD = ("good_a", "good_b", "good_c")
SLOW_ROWS, SLOW_ITERS = 256, 100  # ~50 ms per step on one core: slower than a 20 ms period
NAN_TRIGGER_RAD = 1.0             # nan_some: NaN actions when joint1 > this (warm-up samples it)
NAN_RARE_TRIGGER_RAD_S = 10.0     # nan_rare: NaN actions when joint1's velocity > this (beyond the
                                  # profile's limit, which warm-up samples within)


def _nan_some_module(seed: int, index: int = 0, threshold: float = NAN_TRIGGER_RAD):
    """Finite on a zero observation, NaN actions when ``obs[index] > threshold`` (default:
    joint_pos[0] > 1 rad; index 7 is joint_vel[0] for 7 joints)."""
    import torch
    from torch import nn

    from policies.testing import dummy_module

    class NanSome(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = dummy_module("lstm", seed=seed)
            self.architecture, self.hidden, self.layers = "lstm", self.inner.hidden, self.inner.layers

        def forward(self, obs, h, c):
            actions, h, c = self.inner(obs, h, c)
            return actions + 0.0 * torch.log(threshold - obs[:, index:index + 1]), h, c  # log(<0) = NaN

        def example_inputs(self):
            return self.inner.example_inputs()

    return NanSome().eval()


def _slow_module(seed: int):
    """A dummy LSTM plus SLOW_ITERS x ([SLOW_ROWS, 512] @ [512, 512]) matmuls feeding into the actions."""
    import torch
    from torch import nn

    from policies.testing import dummy_module

    class Slow(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = dummy_module("lstm", seed=seed)
            self.architecture, self.hidden, self.layers = "lstm", self.inner.hidden, self.inner.layers
            g = torch.Generator().manual_seed(seed)
            self.proj = nn.Parameter(0.1 * torch.randn(self.inner.obs_size, 512, generator=g))
            self.weight = nn.Parameter(torch.randn(512, 512, generator=g) / 512 ** 0.5)

        def forward(self, obs, h, c):
            actions, h, c = self.inner(obs, h, c)
            z = torch.tanh(obs @ self.proj).expand(SLOW_ROWS, 512)
            for _ in range(SLOW_ITERS):
                z = torch.tanh(z @ self.weight)
            return actions + 1e-9 * z.mean(), h, c

        def example_inputs(self):
            return self.inner.example_inputs()

    return Slow().eval()


def _edit_manifest(folder: Path, *, seal: bool = True, **changes) -> None:
    """Change manifest fields; ``seal``: re-seal (as if exported so), else leave it tampered."""
    from policies.manifest import seal_artifact

    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2))
    if seal:
        seal_artifact(folder)


def build_policy_zoo(root: Path) -> Path:
    """Write the test zoo into ``root/zoo`` (plus ``root/outside`` for escape attempts)."""
    from policies.manifest import sha256_file
    from policies.testing import export_dummy_policy

    zoo = root / "zoo"
    for seed, name in enumerate(GOOD, start=1):
        export_dummy_policy(zoo / name, name=name, seed=seed)
    export_dummy_policy(zoo / "nan_always", name="nan_always", nan=True, seed=4)
    export_dummy_policy(zoo / "nan_some", name="nan_some", module=_nan_some_module(5))
    export_dummy_policy(zoo / "nan_rare", name="nan_rare", module=_nan_some_module(11, 7, NAN_RARE_TRIGGER_RAD_S))
    export_dummy_policy(zoo / "other_joints", name="other_joints", seed=6,
                        joint_names=[f"arm_joint_{i}" for i in range(1, 8)])
    export_dummy_policy(zoo / "reordered_joints", name="reordered_joints", seed=7,
                        joint_names=[f"joint{i}" for i in (2, 1, 3, 4, 5, 6, 7)])
    export_dummy_policy(zoo / "wrong_io", name="wrong_io", seed=8, input_names=["observation", "h0", "c0"])
    export_dummy_policy(zoo / "slow", name="slow", module=_slow_module(9))

    good = zoo / "good_a"
    truncated = shutil.copytree(good, zoo / "truncated")       # sha256 no longer matches
    onnx = truncated / "good_a.onnx"
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    corrupt = shutil.copytree(truncated, zoo / "corrupt")       # truncated, manifest re-hashed
    _edit_manifest(corrupt, onnx_sha256=sha256_file(corrupt / "good_a.onnx"))
    missing_onnx = shutil.copytree(good, zoo / "missing_onnx")
    (missing_onnx / "good_a.onnx").unlink()
    no_manifest = shutil.copytree(good, zoo / "no_manifest")
    (no_manifest / "manifest.json").unlink()
    rate_100 = shutil.copytree(good, zoo / "rate_100")   # as exported at 100 Hz (a smaller action scale)
    _edit_manifest(rate_100, control_rate_hz=100.0,
                   action={"type": "joint_position_delta", "size": 7, "scale_rad": 0.02, "low": -1.0, "high": 1.0})
    # Manifest edits after export (integrity) and values the robot profile refuses (each sealed,
    # as if exported so, so that the profile check is what refuses them).
    shutil.copytree(good, zoo / "tampered_scale")
    _edit_manifest(zoo / "tampered_scale", seal=False,
                   action={"type": "joint_position_delta", "size": 7, "scale_rad": 10.0, "low": -1.0, "high": 1.0})
    shutil.copytree(good, zoo / "big_scale")
    _edit_manifest(zoo / "big_scale",
                   action={"type": "joint_position_delta", "size": 7, "scale_rad": 10.0, "low": -1.0, "high": 1.0})
    shutil.copytree(good, zoo / "pose_outside")
    _edit_manifest(zoo / "pose_outside", default_pose_rad=[9.0, 0.0, 0.0, -2.0, 0.0, 2.0, 0.8])
    shutil.copytree(good, zoo / "other_robot")
    _edit_manifest(zoo / "other_robot", robot_profile="ur5e")
    unsealed = shutil.copytree(good, zoo / "unsealed")
    data = json.loads((unsealed / "manifest.json").read_text())
    del data["artifact_sha256"]
    (unsealed / "manifest.json").write_text(json.dumps(data, indent=2))

    outside = root / "outside"                                  # a valid artifact outside the zoo
    export_dummy_policy(outside / "evil", name="evil", seed=10)
    (zoo / "escape").symlink_to(outside / "evil", target_is_directory=True)
    (zoo / "alias_a").symlink_to(good, target_is_directory=True)  # a symlink inside the zoo is fine
    return zoo


@pytest.fixture(scope="session")
def policy_zoo(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    return build_policy_zoo(tmp_path_factory.mktemp("policy_zoo"))


class FakeClock:
    """The controller's clock in the pure-core tests: time moves only when a test sets ``t``."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return FakeClock()
