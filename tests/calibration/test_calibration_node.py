"""The calibration node with real rclpy: background runs, progress on /diagnostics, the result
(written atomically, versioned) pushed into a running sim bridge, and bad input that fails
the run with the reason while the node keeps running and the previous output stays."""
from __future__ import annotations

import json

import pytest

from rigs import ros, spin_until, wait_for_match  # noqa: F401 (ros: autouse fixture)

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from calib_bags import write_episode_bag  # noqa: E402
from calibration.node import STATUS_NAME, CalibrationNode  # noqa: E402
from sim_bridge import interface  # noqa: E402
from sim_bridge.node import SimBridgeNode  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture
def settings_file(tmp_path):
    path = tmp_path / "simopt.yaml"
    path.write_text("calibration_version: 1\nsearch:\n  actuator_kp: {shared: true}\n  action_latency: {}\n"
                    "samples: 12\niterations: 2\nmax_steps: 30\n")
    return path


class Harness:
    def __init__(self, node: CalibrationNode, *others):
        self.node = node
        self.probe = rclpy.create_node("calibration_probe", namespace=node.get_namespace())
        self.results: list[dict] = []
        self.diagnostics: list = []
        endpoints = [
            self.probe.create_subscription(String, "calibration/result",
                                           lambda m: self.results.append(json.loads(m.data)), interface.LATCHED_QOS),
            self.probe.create_subscription(DiagnosticArray, interface.DIAGNOSTICS, self._on_diag,
                                           interface.DIAGNOSTICS_QOS)]
        self.new_bag = self.probe.create_publisher(String, "calibration/new_bag", 10)
        # DDS discovery before a test publishes on ~/new_bag (a message before the match is lost)
        assert wait_for_match(*endpoints, self.new_bag, timeout=30.0), "the probe and the node never matched"
        self.calibrate = self.probe.create_client(Trigger, "calibration/calibrate")
        self.executor = MultiThreadedExecutor(num_threads=3)
        for n in (node, self.probe, *others):
            self.executor.add_node(n)

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name == STATUS_NAME:
                self.diagnostics.append((status.level, status.message, {kv.key: kv.value for kv in status.values}))

    def spin(self, seconds: float, until=None) -> bool:
        return spin_until(self.executor, seconds, until, step_s=0.02)

    def trigger(self) -> Trigger.Response:
        assert self.calibrate.wait_for_service(timeout_sec=30.0), "service discovery"
        future = self.calibrate.call_async(Trigger.Request())
        assert self.spin(10.0, future.done)
        return future.result()

    def wait_result(self, count: int, timeout: float = 120.0) -> dict:
        assert self.spin(timeout, lambda: len(self.results) >= count), f"no result: {self.node.status}"
        return self.results[count - 1]

    def close(self) -> None:
        self.executor.shutdown()
        self.probe.destroy_node()


def test_run_writes_versions_pushes_to_the_sim_bridge_and_survives_bad_bags(tmp_path, settings_file, emulator_eps,
                                                                          profile):
    bag = tmp_path / "bag"
    write_episode_bag(bag, emulator_eps, profile.joint_names)
    out = tmp_path / "calib" / "calibrated.yaml"
    bridge = SimBridgeNode(namespace="/cal_test", parameter_overrides=[
        Parameter("mode", value="lockstep"), Parameter("randomization_dir", value=str(out.parent))])
    node = CalibrationNode(namespace="/cal_test", parameter_overrides=[
        # (issue 12: every path is confined to data_dir / output_dir)
        Parameter("data_dir", value=str(tmp_path)), Parameter("output_dir", value=str(out.parent)),
        Parameter("output", value=str(out)), Parameter("settings_file", value=str(settings_file)),
        Parameter("push_to", value="sim_bridge"), Parameter("plots", value=False)])
    h = Harness(node, bridge)
    try:
        assert node.push_target() == "/cal_test/sim_bridge"
        # no bags yet: refused with the reason
        response = h.trigger()
        assert not response.success and "no bags" in response.message
        # a bag arrives on ~/new_bag; ~/calibrate starts a background run
        h.new_bag.publish(String(data=str(bag)))
        assert h.spin(10.0, lambda: node.bags() == [str(bag)])
        response = h.trigger()
        assert response.success, response.message
        assert not h.trigger().success  # one run at a time
        first = h.wait_result(1)
        assert first["state"] == "done" and first["version"] == "v0001.yaml", first
        assert first["discrepancy_after"] < first["discrepancy_before"]
        assert out.is_file() and (out.parent / "calibrated.history" / "v0001.yaml").is_file()
        # pushed: the running sim bridge now samples from the calibrated file
        assert h.spin(15.0, lambda: bridge.get_parameter("randomization_file").value == str(out.resolve()))
        assert h.spin(15.0, lambda: node.status.get("push", "").startswith("ok"))
        # progress and outcome on /diagnostics
        assert h.spin(15.0, lambda: any(d[2].get("state") == "done" for d in h.diagnostics))  # 1 Hz
        assert any(d[2].get("iteration") == "2" for d in h.diagnostics)
        done = [d[2] for d in h.diagnostics if d[2].get("state") == "done"][-1]
        # the fit's quality: two episodes, so no parameter can be said to rest on one of them
        assert done["rests_on_one_episode"] == "none" and "kept_prior" in done and "noise_floor" in done

        # a corrupt bag: the run fails with the reason, the output stays, the node keeps going
        before = out.read_bytes()
        corrupt = tmp_path / "corrupt"
        corrupt.mkdir()
        (corrupt / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 5, storage_identifier: sqlite3")
        (corrupt / "corrupt.db3").write_bytes(b"not a database")
        node.set_parameters([Parameter("bags", Parameter.Type.STRING_ARRAY, [str(corrupt)])])
        # the run's thread publishes its result, then logs and pushes: a new run is accepted once
        # it has ended (on a busy machine that tail can outlast the test's first request)
        assert h.spin(10.0, lambda: not node.running)
        assert h.trigger().success
        failed = h.wait_result(2)
        assert failed["state"] == "failed" and "corrupt" in failed["error"], failed
        assert out.read_bytes() == before
        assert not (out.parent / "calibrated.history" / "v0002.yaml").exists()
        assert h.spin(15.0, lambda: any(d[0] == DiagnosticStatus.ERROR and d[2].get("state") == "failed"
                                        for d in h.diagnostics))
        # and the next good run works again (a new version)
        node.set_parameters([Parameter("bags", Parameter.Type.STRING_ARRAY, [str(bag)])])
        assert h.spin(10.0, lambda: not node.running)
        assert h.trigger().success
        assert h.wait_result(3)["version"] == "v0002.yaml"
        assert h.spin(10.0, lambda: node.status.get("push", "").startswith("ok"))  # pushed again
        assert node.runs == 2 and node.failures == 1
    finally:
        h.close()
        node.destroy_node()
        bridge.destroy_node()


def test_invalid_settings_file_is_rejected_at_set_time(tmp_path):
    node = CalibrationNode(parameter_overrides=[Parameter("data_dir", value=str(tmp_path))])
    try:
        bad = tmp_path / "bad.yaml"
        bad.write_text("calibration_version: 1\nsearch: {no_such_parameter: {}}\nmethod: gradient\n")
        result = node.set_parameters([Parameter("settings_file", value=str(bad))])[0]
        assert not result.successful and "method" in result.reason
        assert node.get_parameter("settings_file").value == ""
        result = node.set_parameters([Parameter("iterations", value=-1)])[0]
        assert not result.successful and ">= 0" in result.reason
    finally:
        node.destroy_node()
