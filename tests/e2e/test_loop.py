"""`sim2real loop`, scaled down: deploy on the emulator through ROS and record, calibrate,
retrain on the calibrated distribution (a few thousand steps), score both on the emulator.

The full-size run (8M training steps) is what the README's transfer table reports; here the
plumbing is checked end to end with the real commands: every step's product exists, loads,
and feeds the next step.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.e2e]


def test_loop_round_produces_bag_calibration_and_retrained_policy(tmp_path):
    out = tmp_path / "loop"
    cmd = [sys.executable, "-m", "sim2real.cli", "loop", "--episodes", "2", "--episode-s", "1.5",
           "--train-steps", "2048", "--eval-episodes", "3", "--out", str(out),
           "--train-args=--eval-episodes 2 --num-envs 4 --num-workers 1 --num-steps 64",
           "--calibrate-args=--samples 12 --iterations 1 --no-plots"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-5000:]
    round1 = out / "round1"
    # deploy + record: a bag with both episodes
    from real_bridge.bagload import load_episodes  # noqa: PLC0415

    assert len(load_episodes(round1 / "bag")) == 2
    # calibrate: the prior with a fitted joint_gaussian, provenance naming that bag
    doc = yaml.safe_load((round1 / "calibrated.yaml").read_text())
    assert doc["provenance"]["calibration"]["bags"] == [str((round1 / "bag").resolve())]
    assert doc["joint_gaussian"]["names"]
    # retrain: trained under the calibrated file, exported, loadable by the deployed runtime
    from policies.runtime import PolicyRuntime  # noqa: PLC0415

    runtime = PolicyRuntime(round1 / "policy")
    training = runtime.manifest.training
    assert training["randomization_name"].endswith("calibrated.yaml")
    assert training["randomization"]["joint_gaussian"] == doc["joint_gaussian"]  # trained on exactly that
    # scored side by side on the emulator
    assert "before (reach_lstm)" in proc.stdout and "round 1 retrained" in proc.stdout
    assert "round 1:" in proc.stdout.splitlines()[-1]
