"""The calibration node: SimOpt runs in the background, driven over ROS.

A thin shell over :class:`calibration.job.CalibrationJob` (the code path of
``sim2real calibrate``). One run at a time, in a worker thread: the executor keeps
serving services and diagnostics while MuJoCo rolls out (its threads release the GIL).

Paths are confined (any DDS peer can set parameters and call services): every path a
parameter or ~/new_bag sets must lie inside ``data_dir`` (inputs) or ``output_dir`` (what the
node writes); a relative path is taken inside that folder, and '..', absolute paths elsewhere
and symlinks leaving the folder are refused with the reason, at set time and again when a run
starts. Nothing is written or created outside ``output_dir``, also when a run fails.

Parameters:
  output_dir (str, read-only)  the only folder the node writes into (created when a run
                          starts; default runs/calibration, relative to the working directory)
  data_dir (str, read-only)    the folder inputs are read from: bags, and prior / policy /
                          robot_profile / settings_file when given as paths ('' = the working
                          directory). Shipped names (no '/', no .yaml) are always allowed.
  prior (str)             distribution the policy was trained under (shipped name or YAML path)
  output (str)            calibrated file to write, inside output_dir (default calibrated.yaml);
                          versions in <stem>.history/, plots in <stem>.plots/ next to it
  bags (str[])            bags to calibrate from; ~/new_bag appends to it (bags a scripted controller
                          recorded, e.g. identification strikes, are replayed open loop)
  policy (str)            '' = the policy the bags name
  robot_profile (str)     '' = the profile the bags name
  settings_file (str)     '' = calibration/config/simopt.yaml
  iterations (int)        0 = the settings' value
  samples (int)           0 = the settings' value
  auto_calibrate (bool)   start a run at startup when ``bags`` is set, and whenever a bag
                          arrives on ~/new_bag
  push_to (str, read-only) node whose ``randomization_file`` is set to the output after a run
                          ('' = none; a relative name is in this node's namespace, e.g.
                          sim_bridge -> /sim2real/sim_bridge; applies at its next reset)
  plots (bool)            write the PNG plots
Services:
  ~/calibrate (std_srvs/Trigger)  start a run on ``bags`` (refused while one runs)
  ~/cancel    (std_srvs/Trigger)  stop the running run between iterations (nothing written)
Topics:
  ~/new_bag  (std_msgs/String, in)           a recorded bag folder to add
  ~/result   (std_msgs/String JSON, latched) summary of the last finished or failed run
  /diagnostics (diagnostic_msgs/DiagnosticArray, 1 Hz) status 'calibration: simopt':
             state (idle/running/done/failed/cancelled), iteration, D at prior/current mean,
             KL, output, version, last error; ERROR level after a failed run.

Bad input (a corrupt bag, NaN trajectories, a bad prior, a diverging run) ends the run with
the reason on /diagnostics, ~/result and the log; the previous output file is untouched and
the node keeps running. Parameter replies and service responses name paths, fields and the
kind of an error, never a file's contents (those go to the node's log).
"""
from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import rclpy
import rclpy.executors
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, ParameterValue, SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import String
from std_srvs.srv import Trigger

from calibration.job import CalibrationJob, Cancelled, JobError, history_dir, plots_dir, scripted_bags
from calibration.simopt import load_settings
from sim_bridge import interface
from sim_bridge.config import ConfigError, confine_path

DEFAULT_OUTPUT_DIR = "runs/calibration"
DEFAULT_OUTPUT = "calibrated.yaml"
INPUT_PATHS = ("prior", "policy", "robot_profile", "settings_file")  # a shipped name, or a path in data_dir
STATUS_NAME = "calibration: simopt"
PUSH_TIMEOUT_S = 5.0


def _describe(text: str, read_only: bool = False, **kwargs) -> ParameterDescriptor:
    return ParameterDescriptor(description=text, read_only=read_only, **kwargs)


class CalibrationNode(Node):
    def __init__(self, **kwargs):
        super().__init__("calibration", **kwargs)
        self.declare_parameter("output_dir", DEFAULT_OUTPUT_DIR, _describe(
            "the only folder the node writes into", read_only=True))
        self.declare_parameter("data_dir", "", _describe(
            "the folder bags and input files are read from ('' = the working directory)", read_only=True))
        self.declare_parameter("prior", "default", _describe("distribution the policy was trained under"))
        self.declare_parameter("output", "", _describe("calibrated randomization file inside output_dir "
                                                       f"('' = {DEFAULT_OUTPUT})"))
        self.declare_parameter("bags", Parameter.Type.STRING_ARRAY, _describe("bag folders to calibrate from"))
        self.declare_parameter("policy", "", _describe("policy that ran on the robot ('' = the one the bags name)"))
        self.declare_parameter("robot_profile", "", _describe("robot profile ('' = the one the bags name)"))
        self.declare_parameter("settings_file", "", _describe("calibration settings YAML ('' = shipped)"))
        self.declare_parameter("iterations", 0, _describe("SimOpt iterations (0 = the settings' value)"))
        self.declare_parameter("samples", 0, _describe("parameter samples per iteration (0 = the settings')"))
        self.declare_parameter("auto_calibrate", False, _describe("start a run when a bag arrives on ~/new_bag"))
        self.declare_parameter("push_to", "", _describe("node whose randomization_file gets the output",
                                                        read_only=True))
        self.declare_parameter("plots", True, _describe("write PNG plots next to the output"))
        self.declare_parameter("widen", 0.0, _describe("> 1: a fit at a bound of the prior widens that parameter's "
                                                        "range by this factor and fits again (0 = only warn)"))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._status: dict = {"state": "idle"}
        self._level = DiagnosticStatus.OK
        self.runs = 0
        self.failures = 0
        self._diag_pub = self.create_publisher(DiagnosticArray, interface.DIAGNOSTICS, interface.DIAGNOSTICS_QOS)
        self._result_pub = self.create_publisher(String, "~/result", interface.LATCHED_QOS)
        self.create_subscription(String, "~/new_bag", self._on_new_bag, 10)
        self.create_service(Trigger, "~/calibrate", self._on_calibrate)
        self.create_service(Trigger, "~/cancel", self._on_cancel)
        self._push_client = None
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info("calibration node ready: ~/calibrate runs SimOpt on the 'bags' parameter")
        if self.get_parameter("auto_calibrate").value and self.bags():
            self._start_timer = self.create_timer(0.1, self._start_once)

    def _start_once(self) -> None:
        self._start_timer.cancel()
        self.destroy_timer(self._start_timer)
        ok, message = self.start()
        (self.get_logger().info if ok else self.get_logger().error)(message)

    # --- parameters -------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            if p.name in ("iterations", "samples") and p.value < 0:
                return SetParametersResult(successful=False, reason=f"{p.name} must be >= 0, got {p.value}")
            try:
                if p.name == "output":
                    self.output_path(p.value)
                elif p.name in INPUT_PATHS and p.value:
                    self.input_path(p.value, p.name)
                elif p.name == "bags":
                    for bag in p.value or []:
                        self.input_path(bag, "bags", shipped_names=False)
                if p.name == "settings_file" and p.value:
                    load_settings(self.input_path(p.value, "settings_file"))
            except ConfigError as exc:
                self.get_logger().error(f"{p.name} rejected: {exc}")
                return SetParametersResult(successful=False, reason=f"{p.name} rejected: {exc.public()}")
        return SetParametersResult(successful=True)

    # --- confined paths ------------------------------------------------------------------
    def output_dir(self) -> Path:
        return Path(self.get_parameter("output_dir").value or DEFAULT_OUTPUT_DIR).expanduser().resolve()

    def data_dir(self) -> Path:
        return Path(self.get_parameter("data_dir").value or os.getcwd()).expanduser().resolve()

    def output_path(self, value: str) -> Path:
        """The output file for parameter value ``value`` ('' = the default), inside
        output_dir together with its history and plot folders; ConfigError otherwise."""
        out = confine_path(value or DEFAULT_OUTPUT, self.output_dir(), what="output")
        for sibling in (history_dir(out), plots_dir(out)):  # a symlinked sibling must not lead out
            confine_path(sibling, self.output_dir(), what="output")
        if out == self.output_dir():
            raise ConfigError("output: a file name is needed, not the folder itself",
                              kind="output: a file name is needed")
        return out

    def input_path(self, value: str, what: str, *, shipped_names: bool = True) -> str:
        """An input as the job takes it: a shipped name as is, a path confined to data_dir."""
        text = str(value)
        if shipped_names and os.sep not in text and not text.endswith((".yaml", ".yml", ".onnx")):
            return text
        return str(confine_path(text, self.data_dir(), what=what))

    def bags(self) -> list[str]:
        try:
            return list(self.get_parameter("bags").value or [])
        except ParameterUninitializedException:
            return []

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    @property
    def status(self) -> dict:
        with self._lock:
            return dict(self._status)

    # --- ROS interface ----------------------------------------------------------------
    def _on_new_bag(self, msg: String) -> None:
        path = msg.data.strip()
        try:
            path = self.input_path(path, "~/new_bag", shipped_names=False)
        except ConfigError as exc:
            self.get_logger().error(f"~/new_bag: {exc}; ignored")
            return
        if not Path(path).is_dir():
            self.get_logger().error(f"~/new_bag: '{path}' is not a bag folder; ignored")
            return
        bags = self.bags()
        if path not in bags:
            self.set_parameters([Parameter("bags", Parameter.Type.STRING_ARRAY, bags + [path])])
            self.get_logger().info(f"bag added: {path} ({len(bags) + 1} in all)")
        if self.get_parameter("auto_calibrate").value:
            ok, message = self.start()
            (self.get_logger().info if ok else self.get_logger().warning)(message)

    def _on_calibrate(self, request, response):
        response.success, response.message = self.start()
        return response

    def _on_cancel(self, request, response):
        if not self.running:
            response.success, response.message = False, "no calibration is running"
        else:
            self._stop.set()
            response.success, response.message = True, "cancelling after the current iteration"
        return response

    # --- runs -------------------------------------------------------------------------
    def start(self) -> tuple[bool, str]:
        """Start a run in the background on the current parameters; (started?, why)."""
        if self.running:
            return False, "a calibration is already running"
        bags = self.bags()
        if not bags:
            return False, "no bags: set the 'bags' parameter or publish a bag folder on ~/new_bag"
        # Startup values never passed the set-time check: every path is confined again here.
        value = self.get_parameter
        try:
            bags = [self.input_path(b, "bags", shipped_names=False) for b in bags]
            inputs = {name: self.input_path(value(name).value, name) if value(name).value else None
                      for name in INPUT_PATHS}
            out = self.output_path(value("output").value)
            settings = load_settings(inputs["settings_file"])
            out_dir = self.output_dir()
            if not out.parent.is_dir():  # only output_dir itself is created; a subfolder must exist
                if out.parent != out_dir:
                    raise ConfigError(f"output: folder {out.parent} does not exist", kind="output: no such folder")
                out_dir.mkdir(parents=True, exist_ok=True)
        except ConfigError as exc:
            self.get_logger().error(f"calibration not started: {exc}")
            return False, f"not started: {exc.public()}"
        except OSError as exc:
            return False, f"not started: cannot create {self.output_dir()} ({exc.strerror})"
        settings = settings.with_overrides(iterations=value("iterations").value or None,
                                           samples=value("samples").value or None)
        replay = scripted_bags(bags)  # recorded by a scripted controller (identification strikes): replayed
        job = CalibrationJob(bags=[b for b in bags if os.fspath(b) not in replay], replay_bags=replay,
                             prior=inputs["prior"] or "default", out=out, policy=inputs["policy"],
                             settings=settings, profile=inputs["robot_profile"], plots=value("plots").value,
                             widen=float(value("widen").value))
        out = str(out)
        self._stop.clear()
        with self._lock:
            self._status = {"state": "running", "bags": len(bags), "output": out,
                            "iterations": settings.iterations, "iteration": 0}
            self._level = DiagnosticStatus.OK
        self._worker = threading.Thread(target=self._run, args=(job,), name="calibration", daemon=True)
        self._worker.start()
        return True, f"calibrating from {len(bags)} bag(s) into {out}"

    def _run(self, job: CalibrationJob) -> None:
        log = self.get_logger()
        try:
            result = job.run(progress=self._progress, stop=self._stop)
        except Cancelled as exc:
            self._finish("cancelled", DiagnosticStatus.WARN, {"error": str(exc)})
            log.warning(str(exc))
            return
        except JobError as exc:  # ~/result and /diagnostics get the content-free reason, the log all
            self.failures += 1
            self._finish("failed", DiagnosticStatus.ERROR, {"error": exc.public})
            log.error(f"calibration failed, previous output untouched: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the node; report it
            self.failures += 1
            self._finish("failed", DiagnosticStatus.ERROR, {"error": f"crashed: {type(exc).__name__} (see the log)"})
            log.error(f"calibration crashed, previous output untouched: {type(exc).__name__}: {exc}")
            return
        self.runs += 1
        summary = {"output": str(result.out), "version": result.version.name,
                   "discrepancy_before": result.discrepancy_before, "discrepancy_after": result.discrepancy_after,
                   "reduction": result.reduction, "episodes": result.episodes, "skipped": result.skipped,
                   "plots": [str(p) for p in result.plots], "elapsed_s": round(result.elapsed_s, 2),
                   "distribution": result.spec.provenance["calibration"]["search"] if result.history else {},
                   "quality": result.assessment.to_dict() if result.assessment else {}}
        # a fit that did not converge, cannot fix a parameter or sits at a bound: done, with a WARN
        warn = bool(result.assessment and result.assessment.warnings)
        self._finish("done", DiagnosticStatus.WARN if warn else DiagnosticStatus.OK, summary)
        log.info(f"calibration done: {result.out} ({result.version.name}), D {result.discrepancy_before:.4g} -> "
                 f"{result.discrepancy_after:.4g}")
        target = self.push_target()
        if target:
            self.push(target, str(Path(result.out).resolve()))

    def push_target(self) -> str:
        """The fully qualified name of the ``push_to`` node ('' = none)."""
        target = self.get_parameter("push_to").value.strip()
        if not target or target.startswith("/"):
            return target
        return f"{self.get_namespace().rstrip('/')}/{target}"

    def _progress(self, stage: str, info: dict) -> None:
        if stage == "warnings":
            for reason in info["skipped"]:
                self.get_logger().warning(f"skipped episode {reason}")
            for text in info["warnings"]:
                self.get_logger().warning(text)
        if stage == "quality":  # the fit's own warnings: not converged, not identifiable, at a bound
            for text in info["warnings"]:
                self.get_logger().warning(f"calibration: {text}")
            with self._lock:
                self._status["noise_floor"] = info["noise_floor"]
                self._status["stop_reason"] = info["stop_reason"]
                self._status["kept_prior"] = ", ".join(info["kept_prior"]) or "none"
                self._status["weakly_identified"] = ", ".join(info.get("weakly_identified", ())) or "none"
                self._status["rests_on_one_episode"] = ", ".join(
                    f"{k} ({v})" for k, v in info.get("rests_on_one_episode", {}).items()) or "none"
                self._status["fit_warnings"] = len(info["warnings"])
                if info["warnings"]:
                    self._status["fit_warning"] = info["warnings"][0]
        with self._lock:
            self._status["stage"] = stage
            if stage == "iteration":
                self._status["iteration"] = info["iteration"]
                self._status["discrepancy_at_mean"] = info["discrepancy_at_mean"]
                if info["iteration"] == 0:
                    self._status["discrepancy_at_prior"] = info["discrepancy_at_mean"]
                else:
                    self._status["kl"] = info["kl"]
                    self._status["iteration_s"] = info["elapsed_s"]

    def _finish(self, state: str, level: int, info: dict) -> None:
        with self._lock:
            self._status.update(state=state, **{k: v for k, v in info.items() if not isinstance(v, (list, dict))})
            self._level = level
        self._result_pub.publish(String(data=json.dumps({"state": state, **info})))
        self._publish_diagnostics()

    # --- pushing the result -------------------------------------------------------------
    def push(self, target: str, path: str) -> None:
        """Set ``target``'s randomization_file to ``path`` (asynchronously; logged)."""
        if self._push_client is None or self._push_client.srv_name != f"{target}/set_parameters":
            self._push_client = self.create_client(SetParameters, f"{target}/set_parameters")
        client = self._push_client
        if not client.wait_for_service(timeout_sec=PUSH_TIMEOUT_S):
            self.get_logger().error(f"push: {target} offers no set_parameters service; not pushed")
            self._set_push_status(f"failed: {target} not reachable")
            return
        future = client.call_async(_set_request(path))

        def done(fut):
            ok, message = _push_outcome(fut)
            (self.get_logger().info if ok else self.get_logger().error)(f"push to {target}: {message}")
            self._set_push_status(("ok: " if ok else "failed: ") + message)

        future.add_done_callback(done)

    def _set_push_status(self, text: str) -> None:
        with self._lock:
            self._status["push"] = text

    def _publish_diagnostics(self) -> None:
        with self._lock:
            status, level = dict(self._status), self._level
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        diag = DiagnosticStatus(name=STATUS_NAME, hardware_id="simopt", level=level,
                                message=status.get("error") or status["state"])
        status.update(runs=self.runs, failures=self.failures)
        diag.values = [KeyValue(key=k, value=f"{v:.6g}" if isinstance(v, float) else str(v))
                       for k, v in status.items()]
        msg.status = [diag]
        self._diag_pub.publish(msg)

    def destroy_node(self):
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=60.0)
        return super().destroy_node()


def _set_request(path: str) -> SetParameters.Request:
    req = SetParameters.Request()
    req.parameters = [ParameterMsg(name="randomization_file",
                                   value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=path))]
    return req


def _push_outcome(future) -> tuple[bool, str]:
    if future.exception() is not None:
        return False, f"call failed: {future.exception()}"
    results = future.result().results
    if not results:
        return False, "no result"
    if results[0].successful:
        return True, ("randomization_file accepted: the node validates the file in the background and uses it from "
                      "its next reset if valid (its log and /diagnostics say)")
    return False, f"rejected: {results[0].reason}"


def push_randomization(target: str, path: str | os.PathLike, timeout_s: float = PUSH_TIMEOUT_S) -> tuple[bool, str]:
    """Set ``target``'s randomization_file to ``path`` from outside a running node
    (``sim2real calibrate --push``): (accepted?, message)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("calibration_push", context=context)
        client = node.create_client(SetParameters, f"{target}/set_parameters")
        if not client.wait_for_service(timeout_sec=timeout_s):
            return False, f"{target} offers no set_parameters service (is it running?)"
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        future = client.call_async(_set_request(str(Path(path).resolve())))
        executor.spin_until_future_complete(future, timeout_sec=timeout_s)
        if not future.done():
            return False, f"{target} did not answer within {timeout_s:g} s"
        return _push_outcome(future)
    finally:
        rclpy.try_shutdown(context=context)


def main(args: list[str] | None = None) -> int:
    """Entry point for ``ros2 run calibration calibration_node`` and ``sim2real node calibration``."""
    from sim_bridge.executor import run_node  # noqa: PLC0415

    return run_node("calibration", CalibrationNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
