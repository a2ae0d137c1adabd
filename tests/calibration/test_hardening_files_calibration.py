"""Issue 12, calibration side, with real rclpy and real files: a DDS peer cannot make the
calibration node write or create anything outside its output_dir nor read inputs outside its
data_dir; replies never quote a file; ``sim2real calibrate`` refuses an alias-bomb prior with
a clear error; a calibrate never modifies its input bags."""
from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calib_bags import write_episode_bag
from calibration.job import CalibrationJob
from calibration.simopt import CalibrationSettings, SearchEntry
from hostile_files import alias_bomb
from rigs import ros, spin_until  # noqa: F401 (ros: autouse fixture)

rclpy = pytest.importorskip("rclpy")
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from calibration.node import CalibrationNode  # noqa: E402

SECRET = "hunter2-do-not-echo"
SIM2REAL = Path(sys.executable).with_name("sim2real")


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


class Remote:
    """The calibration node (spun here) and a second node calling it over DDS."""

    def __init__(self, node: CalibrationNode):
        self.node = node
        self.peer = rclpy.create_node("hostile_peer")
        self.set_client = self.peer.create_client(SetParameters, "/calibration/set_parameters")
        self.calibrate_client = self.peer.create_client(Trigger, "/calibration/calibrate")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self.executor.add_node(self.peer)
        assert self.set_client.wait_for_service(timeout_sec=20.0)
        assert self.calibrate_client.wait_for_service(timeout_sec=20.0)

    def call(self, client, request):
        future = client.call_async(request)
        assert spin_until(self.executor, 20.0, future.done), "no answer"
        return future.result()

    def set(self, name: str, value: str):
        req = SetParameters.Request()
        req.parameters = [ParameterMsg(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                                       string_value=value))]
        return self.call(self.set_client, req).results[0]

    def calibrate(self) -> Trigger.Response:
        return self.call(self.calibrate_client, Trigger.Request())

    def close(self) -> None:
        self.executor.shutdown()
        self.peer.destroy_node()
        self.node.destroy_node()


@pytest.fixture
def dirs(tmp_path):
    out_dir, data_dir, outside = tmp_path / "out", tmp_path / "data", tmp_path / "outside"
    for d in (out_dir, data_dir, outside):
        d.mkdir()
    (outside / "victim.txt").write_text("precious\n")
    (out_dir / "leak").symlink_to(outside, target_is_directory=True)  # a symlink leading out
    return out_dir, data_dir, outside


def make_remote(out_dir: Path, data_dir: Path, **params) -> Remote:
    overrides = [Parameter("output_dir", value=str(out_dir)), Parameter("data_dir", value=str(data_dir)),
                 Parameter("plots", value=False)] + [Parameter(k, value=v) for k, v in params.items()]
    return Remote(CalibrationNode(parameter_overrides=overrides))


def test_a_remote_peer_cannot_point_output_outside_output_dir(dirs):
    out_dir, data_dir, outside = dirs
    bag = data_dir / "bag"  # not a real bag: a run fails; it must still create nothing outside
    bag.mkdir()
    before = tree(outside.parent)
    victim_bytes = (outside / "victim.txt").read_bytes()
    r = make_remote(out_dir, data_dir)
    try:
        for value in (str(outside / "victim.txt"), str(outside / "new" / "deep" / "x.yaml"), "../outside/victim.txt",
                      "leak/victim.txt", "/etc/passwd"):
            result = r.set("output", value)
            assert not result.successful, value
            assert "outside the allowed folder" in result.reason and str(out_dir) in result.reason, result.reason
            assert r.node.get_parameter("output").value == ""
        for name, value in (("output_dir", str(outside)), ("data_dir", "/"), ("push_to", "/other/node")):
            result = r.set(name, value)
            assert not result.successful and "read-only" in result.reason.lower(), (name, result.reason)
        # a bag outside data_dir is refused too, and a run then creates nothing outside
        assert not r.set("prior", str(outside / "victim.txt")).successful
        node_bags = Parameter("bags", Parameter.Type.STRING_ARRAY, [str(outside)])
        assert not r.node.set_parameters([node_bags])[0].successful
        r.node.set_parameters([Parameter("bags", Parameter.Type.STRING_ARRAY, [str(bag)])])
        assert r.calibrate().success
        assert spin_until(r.executor, 60.0, lambda: r.node.status["state"] in ("failed", "done"))
        assert r.node.status["state"] == "failed"
    finally:
        r.close()
    assert tree(outside.parent) == before, "something was created outside output_dir"
    assert (outside / "victim.txt").read_bytes() == victim_bytes


def test_startup_values_outside_the_folders_are_refused_when_a_run_starts(dirs):
    """Values from a parameter file never passed the set-time check: ~/calibrate checks again
    and creates no directory."""
    out_dir, data_dir, outside = dirs
    bag = data_dir / "bag"
    bag.mkdir()
    before = tree(outside.parent)
    r = make_remote(out_dir, data_dir, output=str(outside / "made" / "here.yaml"))
    try:
        r.node.set_parameters([Parameter("bags", Parameter.Type.STRING_ARRAY, [str(bag)])])
        response = r.calibrate()
        assert not response.success and "outside the allowed folder" in response.message, response.message
    finally:
        r.close()
    assert tree(outside.parent) == before


def test_a_settings_file_error_is_not_quoted_back_to_the_remote_caller(dirs):
    out_dir, data_dir, _ = dirs
    bad = data_dir / "settings.yaml"
    bad.write_text(f"calibration_version: 1\nsecret: {SECRET}\n  broken: [\n")
    r = make_remote(out_dir, data_dir)
    try:
        result = r.set("settings_file", str(bad))
        assert not result.successful and SECRET not in result.reason
        assert "not valid YAML at line" in result.reason and str(bad) in result.reason, result.reason
    finally:
        r.close()


def _limit_memory():  # the child may not take the machine down if the defect comes back
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def test_calibrate_refuses_an_alias_bomb_prior_with_a_clear_error(tmp_path):
    prior = alias_bomb(tmp_path / "prior.yaml")
    t0 = time.monotonic()
    proc = subprocess.run([str(SIM2REAL), "calibrate", "--bags", str(tmp_path / "no_bag"), "--prior", str(prior),
                           "--out", str(tmp_path / "out.yaml")], capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_memory)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert "invalid input" in proc.stderr and str(prior) in proc.stderr and "alias" in proc.stderr, proc.stderr
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "out.yaml").exists()


def digest(folder: Path) -> dict[str, tuple[str, int]]:
    """name -> (sha256, mtime in ns) of every file under ``folder``."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_calibrate_never_modifies_an_unclosed_input_bag(tmp_path, emulator_eps, profile):
    bag = tmp_path / "bag"
    write_episode_bag(bag, emulator_eps, profile.joint_names)
    sidecar = bag / "sim2real_metadata.yaml"
    sidecar.write_text(sidecar.read_text().replace("state: closed", "state: recording"))  # a crashed recorder
    (bag / "metadata.yaml").unlink()  # rosbag2 writes it only at a clean close
    os.utime(sidecar, ns=(1_000_000_000, 1_000_000_000))  # an mtime a rewrite could not keep by accident
    before = digest(bag)
    settings = CalibrationSettings(search=(SearchEntry("actuator_kp", True),), samples=6, iterations=1,
                                   max_steps=20, seed=1)
    out = tmp_path / "out" / "calibrated.yaml"
    out.parent.mkdir()
    result = CalibrationJob(bags=[bag], prior="default", out=out, settings=settings, plots=False).run()
    assert result.out.is_file() and result.episodes, "the unclosed bag was read (from a recovered copy)"
    assert digest(bag) == before, "an input bag was modified"
    assert not (bag / "metadata.yaml").exists()
