"""``sim2real real``: the real-deployment graph, against the arm emulator or a ros2_control arm.

One process, one :class:`~sim_bridge.executor.ControlExecutor`, the nodes a deployment runs,
each configured from its parameter file ``<params-dir>/<node>.yaml`` (``/**/<node>:
ros__parameters``, loaded by rcl exactly as ``--ros-args --params-file`` loads it for
``sim2real node <node>``; the few CLI flags below override single values on top):

  arm_emulator  (``--emulator``, the default) the hardware stand-in with hidden physics, at the
                root: ``/joint_states`` out, ``/forward_position_controller/commands`` in.
                With ``--no-emulator`` the graph expects a real ros2_control arm there
                (joint_state_broadcaster + forward position controller) and never homes it.
  real_bridge   hardware side absolute (as above); policy side in ``--namespace``
                (default ``/sim2real``): joint_states, joint_commands, current_goal, reset
  policy        the ONNX policy node (``--policy`` overrides policy.yaml's ``policy``), in
                the namespace. The ``policies`` package is imported lazily inside
                :func:`run_real`: real_bridge does not depend on it at module level (its
                other modules and nodes work without it); only this command needs it.
  recorder      (``--record DIR``) records the namespace's topics and the hardware command
                into a rosbag2 bag with one start/end marker pair per episode (success flag)

Episode protocol (what an operator does on a real arm): the policy is deactivated
(lifecycle) and the bridge too, so nothing commands the arm; the emulator homes the arm
(``/arm_emulator/reset``; skipped with ``--no-emulator``: home a real arm with its own
tools); the bridge's ``reset`` samples the next goal (seeded, so the goal sequence is the
same for every policy run with the same ``--seed``); the bridge is activated (its step limit
starts from the measured position); the policy's ``~/reset`` zeroes its recurrent state;
the recorder's ``~/start_episode`` opens the episode; the policy is activated. The episode
ends at success or after ``--episode-s`` wall-clock seconds: the policy is deactivated (the
bridge holds the measured position) and the marker is closed with the outcome.

Push (``--task push``): the emulator also simulates a puck with hidden object physics
(``real_bridge/config/emulator_push_hidden.yaml``) and publishes its tracked pose on
``/mocap/puck/pose``; the bridge relays it (checked) to the namespace's ``object_pose``, which
the policy reads and the recorder records. The episode protocol then resets the bridge
first (the new goal) and homes the emulator after it has heard that goal: the homing places
the puck ``push_distance_m`` from it (on a real arm, ``--no-emulator``, a person places the
object: the command prints the goal and waits for Enter on a terminal). Success
is the task's criterion on the tracked pose the bridge relays (puck centre within 5 cm of
the goal in the table plane for 10 consecutive control steps), not on the hidden truth.

Success is judged from what can be measured on a real arm: the joint positions the bridge
relays to the policy (one per control cycle), through the forward kinematics of the
NOMINAL robot model (:meth:`sim_bridge.oracle.ReachOracle.end_effector`), within 2 cm of
the goal for 10 consecutive control steps (the sim's criterion). On the emulator the
measured joints are quantized, noisy and lagging, and the hidden link geometry equals the
nominal one, so the nominal FK is exact up to the encoder and its noise. Time to goal is wall-clock time
from the policy's activation to the first of the 10 steps.

``--compare A B`` runs the whole graph once per policy (fresh nodes, same seed: same
goal sequence, same emulator) and prints the success rates side by side with the sim
evaluation recorded in each policy's manifest: the sim-to-real gap.
"""
from __future__ import annotations

import gc
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from sim_bridge.episode import EpisodeResult, EpisodeSummary, EpisodeTracker, SuccessCriterion, episode_line
from sim_bridge.tasks import Task, task_from_record
from sim_bridge.episode import summary_line as episodes_summary_line

MEASURED_BY = "nominal FK of the measured joints"
MEASURED_BY_OBJECT = "the tracked object pose the bridge relayed"


def needs_object(task: Task) -> bool:
    """Whether the task's policy reads a streamed object pose (Push)."""
    return any(i.topic == "object_pose" and not i.latched for i in task.inputs)


def measured_by(task: Task) -> str:
    return MEASURED_BY_OBJECT if needs_object(task) else MEASURED_BY
DEFAULT_NAMESPACE = "/sim2real"
EMULATOR_RESET = "/arm_emulator/reset"
SERVICE_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 15.0
EXECUTOR_THREADS = 8  # policy (4) + bridge (4) groups; emulator, recorder, monitor share them


class DeployError(RuntimeError):
    """The graph cannot be built or driven; the message says why."""


@dataclass(frozen=True)
class RealConfig:
    """``sim2real real``: a policy on the arm emulator (or a real ros2_control arm) through the real bridge."""

    policy: str | None = None
    """policy name in policy_dir, or an artifact folder (None: policy.yaml's 'policy')"""
    task: str | None = None
    """task the real bridge runs (None: real_bridge.yaml's 'task'); it must be the policy's task"""
    controller: Literal["policy", "scripted", "strike"] = "policy"
    """policy: the policy node; scripted: the task's scripted controller instead (IK reach, or the scripted pusher), a baseline with no policy; strike (push): scripted identification strikes that make the puck slide free, recorded for calibration (sim2real calibrate --replay-bags)"""
    strike_steps: int = 8
    """--controller strike: control steps of the fast push before the arm stops"""
    compare: tuple[str, str] | None = None
    """two policies: run both on the same goal sequence and print the gap table"""
    episodes: int = 3
    """episodes per policy"""
    episode_s: float = 4.0
    """wall-clock time limit per episode (4.0 = the training episode, 200 steps)"""
    seed: int | None = None
    """seed of the goal sequence (real_bridge 'seed'; None: real_bridge.yaml's; -1 there: drawn here and printed)"""
    params_dir: Path | None = None
    """folder of the parameter files <node>.yaml (None: launch/config of the checkout)"""
    policy_dir: Path | None = None
    """the policy node's policy_dir, the folder of policy artifacts --policy names (None: policy.yaml's; '' there = the shipped zoo)"""
    namespace: str = DEFAULT_NAMESPACE
    """namespace of the policy side"""
    robot_profile: Annotated[str | None, tyro.conf.arg(aliases=("--robot",))] = None
    """robot profile of every node (shipped name or YAML path, e.g. robots/NAME/NAME.yaml; None: the parameter files')"""
    emulator_hidden: str | None = None
    """the arm emulator's hidden physics file (robot import writes robots/NAME/emulator_hidden.yaml; None: arm_emulator.yaml's)"""
    emulator_object_hidden: str | None = None
    """push: the emulator's hidden object physics file (None: arm_emulator.yaml's; '' there = the shipped emulator_push_hidden.yaml)"""
    emulator: bool = True
    """run the arm emulator as the hardware (--no-emulator: a real ros2_control arm must publish /joint_states and take /<controller>/commands; it is not homed)"""
    record: Path | None = None
    """record a rosbag2 bag to this folder (must not exist; with --compare: DIR/<policy>)"""
    json: Path | None = None
    """also write the results as JSON to this path"""
    sample_actions: bool = False
    """the policy node acts with samples of the policy's trained Gaussian (its manifest's action_std; the node's sample_actions parameter, seeded with --seed) instead of its mean"""


def add_real_command(subparsers) -> None:
    from sim2real.cli import add_typed_command  # noqa: PLC0415

    add_typed_command(subparsers, "real", RealConfig, run_real, description=__doc__,
                      help="run a policy on the arm emulator (or a real ros2_control arm) through the real bridge")


# --- results ------------------------------------------------------------------------------
@dataclass
class RunResult:
    policy: str
    onnx_sha256: str
    seed: int
    episodes: list[EpisodeResult]
    sim_evaluation: dict[str, dict]   # the policy manifest's evaluation (sim), by randomization
    bag: str | None = None
    success: SuccessCriterion = field(default_factory=SuccessCriterion)  # the policy's task's criterion
    task: str = "reach"
    measured_by: str = MEASURED_BY

    @property
    def summary(self) -> EpisodeSummary:
        return EpisodeSummary.of(self.episodes)

    def to_dict(self) -> dict:
        return {"policy": self.policy, "task": self.task, "measured_by": self.measured_by,
                "onnx_sha256": self.onnx_sha256, "seed": self.seed,
                **self.summary.to_dict(), "episodes": [e.to_dict() for e in self.episodes],
                "sim_evaluation": {k: {f: v.get(f) for f in ("episodes", "success_rate", "success_ci95")}
                                   for k, v in self.sim_evaluation.items() if isinstance(v, dict)},
                "bag": self.bag}


# --- parameter files ----------------------------------------------------------------------
def default_params_dir() -> Path:
    from sim2real.cli import source_tree  # noqa: PLC0415

    root = source_tree()
    return root / "launch" / "config" if root is not None else Path("launch/config")


def params_file_args(params_dir: Path, node: str) -> list[str]:
    """``cli_args`` that make rcl load ``<params_dir>/<node>.yaml`` for the node (its
    ``/**/<node>`` key), as ``--ros-args --params-file`` does; missing file -> DeployError."""
    path = (params_dir / f"{node}.yaml").expanduser()
    if not path.is_file():
        raise DeployError(f"parameter file {path} not found (--params-dir {params_dir})")
    return ["--ros-args", "--params-file", str(path.resolve())]


def file_parameters(node: str, namespace: str, cli_args: list[str]) -> dict:
    """The values rcl resolves from the parameter file for a node of this name and namespace
    (a short-lived plain node with the same name, cli_args and namespace)."""
    from rclpy.node import Node  # noqa: PLC0415

    probe = Node(node, namespace=namespace, cli_args=cli_args, start_parameter_services=False,
                 automatically_declare_parameters_from_overrides=True)
    try:
        return {name: p.value for name, p in probe.get_parameters_by_prefix("").items()}
    finally:
        probe.destroy_node()


# --- the monitor: episode outcome from the relayed joint states ---------------------------
class EpisodeMonitor:
    """Measures the episode from the policy side: relayed joint states + current goal.

    A plain node in the namespace with its own callback group; it also holds the service
    clients the episode loop calls."""

    def __init__(self, profile, task: Task, namespace: str, *, emulator: bool, recording: bool, policy: bool = True):
        import rclpy  # noqa: PLC0415
        from geometry_msgs.msg import PointStamped  # noqa: PLC0415
        from rclpy.callback_groups import MutuallyExclusiveCallbackGroup  # noqa: PLC0415
        from sensor_msgs.msg import JointState  # noqa: PLC0415
        from std_srvs.srv import Trigger  # noqa: PLC0415

        from sim_bridge import interface  # noqa: PLC0415
        from sim_bridge.joints import JointMapper  # noqa: PLC0415
        from sim_bridge.oracle import ReachOracle  # noqa: PLC0415

        self.node = rclpy.create_node("real_deploy", namespace=namespace)
        self.profile = profile
        self.period_s = profile.control_period_s
        self._fk = ReachOracle(profile)  # nominal model: FK only
        self.tracker = EpisodeTracker(task.success, profile.control_period_s)  # the task's ONE criterion
        self._joints = JointMapper.for_profile(profile)
        self._lock = threading.Lock()
        self.done = threading.Event()
        self.state_count = 0
        self.goal_count = 0
        self.goal: np.ndarray | None = None
        self._goal_event = threading.Condition(self._lock)
        self._state_event = threading.Condition(self._lock)
        self._active = False
        self.object_pose: np.ndarray | None = None   # the latest relayed (x, y, z, sin yaw, cos yaw)
        self.object_count = 0
        group = MutuallyExclusiveCallbackGroup()
        self.node.create_subscription(JointState, interface.JOINT_STATES, self._on_state, interface.STATE_QOS,
                                      callback_group=group)
        self.measures_object = needs_object(task)
        if self.measures_object:
            from geometry_msgs.msg import PoseStamped  # noqa: PLC0415

            from sim_bridge.task_messages import read_planar_pose  # noqa: PLC0415

            self._read_pose = read_planar_pose
            self.node.create_subscription(PoseStamped, "object_pose", self._on_object_pose, interface.STATE_QOS,
                                          callback_group=group)
        self.node.create_subscription(PointStamped, interface.CURRENT_GOAL, self._on_goal, interface.LATCHED_QOS,
                                      callback_group=group)
        client_group = MutuallyExclusiveCallbackGroup()

        def client(name: str):
            return self.node.create_client(Trigger, name, callback_group=client_group)

        self.bridge_reset = client(interface.RESET)
        self.policy_reset = client("policy/reset") if policy else None
        self.emulator_reset = client(EMULATOR_RESET) if emulator else None
        self.start_episode = client("recorder/start_episode") if recording else None
        self.end_success = client("recorder/end_episode_success") if recording else None
        self.end_failure = client("recorder/end_episode_failure") if recording else None

    # callbacks (executor threads)
    def _on_goal(self, msg) -> None:
        with self._lock:
            self.goal = np.array([msg.point.x, msg.point.y, msg.point.z], dtype=float)
            self.goal_count += 1
            self._goal_event.notify_all()

    def _on_object_pose(self, msg) -> None:
        pose = np.array(self._read_pose(msg), dtype=float)
        with self._lock:
            self.object_count += 1
            if np.isfinite(pose).all():
                self.object_pose = pose

    def _error_m(self, q: np.ndarray, goal: np.ndarray) -> float | None:
        """The task's error as measured: the tracked puck to the goal in the table plane (push),
        or the nominal FK of the joints to the goal (reach); None: nothing to measure yet."""
        if self.measures_object:
            pose = self.object_pose
            return None if pose is None else float(np.linalg.norm(pose[:2] - goal[:2]))
        return float(np.linalg.norm(self._fk.end_effector(q) - goal))

    def _on_state(self, msg) -> None:
        arrival = time.monotonic()
        q = self._joints.lookup(msg.name).take_if_complete(msg.position)
        if q is None:  # not this arm's joints (or a malformed state the bridge would not relay)
            return
        with self._lock:
            self.state_count += 1
            self._state_event.notify_all()
            if not self._active or self.done.is_set():
                return
            goal = self._goal
        dist = self._error_m(q, goal)
        if dist is None:
            return
        with self._lock:
            if not self._active:
                return
            if self.tracker.step(dist, time_s=arrival):
                self.done.set()

    # main thread
    def wait_goal_after(self, count: int, timeout: float) -> np.ndarray:
        with self._lock:
            if not self._goal_event.wait_for(lambda: self.goal_count > count, timeout):
                raise DeployError("the bridge published no new goal on current_goal after its reset")
            return self.goal.copy()

    def wait_state_after(self, count: int, timeout: float) -> None:
        with self._lock:
            if not self._state_event.wait_for(lambda: self.state_count > count, timeout):
                raise DeployError("the bridge relays no joint states (no fresh hardware state on its "
                                  "hardware_joint_states topic?)")

    def wait_object_after(self, count: int, timeout: float) -> None:
        with self._lock:
            end = time.monotonic() + timeout
            while self.object_count <= count:
                if time.monotonic() > end:
                    raise DeployError("the bridge relays no object poses on object_pose (is the tracker publishing "
                                      "on the bridge's object_pose_topic, in its frame_id? see its /diagnostics)")
                self._state_event.wait(0.01)

    def begin(self, goal: np.ndarray, t0: float) -> None:
        with self._lock:
            self._goal = np.asarray(goal, float)
            self.object_pose = None   # only poses of this episode count
            self.tracker.begin(t0)
            self.done.clear()
            self._active = True

    def finish(self, episode: int, **extra) -> EpisodeResult:
        with self._lock:
            self._active = False
            return self.tracker.result(episode, **extra)

    def destroy(self) -> None:
        self.node.destroy_node()


def call(client, timeout: float = SERVICE_TIMEOUT_S, *, must_succeed: bool = True):
    """Call a std_srvs/Trigger service from the main thread (the executor spins elsewhere)."""
    from std_srvs.srv import Trigger  # noqa: PLC0415

    if not client.wait_for_service(timeout_sec=timeout):
        raise DeployError(f"service {client.srv_name} not available")
    future = client.call_async(Trigger.Request())
    end = time.monotonic() + timeout
    while not future.done():
        if time.monotonic() > end:
            raise DeployError(f"service {client.srv_name} did not answer within {timeout:g} s")
        time.sleep(0.002)
    response = future.result()
    if must_succeed and not response.success:
        raise DeployError(f"{client.srv_name} failed: {response.message}")
    return response


# --- the graph ----------------------------------------------------------------------------
class DeploymentGraph:
    """The nodes of one deployment in one process, spun by one ControlExecutor on a thread."""

    def __init__(self, *, policy: str | None, seed: int, params_dir: Path, namespace: str, emulator: bool,
                 record: Path | None, policy_dir: Path | None = None, task: str | None = None,
                 robot_profile: str | None = None, emulator_hidden: str | None = None,
                 emulator_object_hidden: str | None = None, scripted: bool = False, strike_steps: int = 0,
                 sample_actions: bool = False):
        from rclpy.exceptions import ParameterException  # noqa: PLC0415
        from rclpy.lifecycle import TransitionCallbackReturn  # noqa: PLC0415
        from rclpy.parameter import Parameter  # noqa: PLC0415

        from sim_bridge.config import ConfigError  # noqa: PLC0415

        from sim_bridge.executor import ControlExecutor  # noqa: PLC0415
        from real_bridge.node import RealBridgeNode  # noqa: PLC0415
        try:  # lazily: real_bridge does not import policies at module level
            from policies.node import PolicyNode  # noqa: PLC0415
        except ImportError as exc:
            raise DeployError(f"sim2real real needs the policies package ({exc})") from None

        self.nodes: list = []
        self.emulator = self.recorder = self.monitor = self.policy = self.scripted = None
        self.sampling = False
        self.executor = None
        self._spinner = None
        self._success = TransitionCallbackReturn.SUCCESS
        robot = [Parameter("robot_profile", value=robot_profile)] if robot_profile else []  # overrides every node's
        try:
            emulator_args = params_file_args(params_dir, "arm_emulator") if emulator else []  # its file first
            bridge_overrides = [Parameter("seed", value=int(seed)), *robot] + (
                [Parameter("task", value=task)] if task else [])
            self.bridge = RealBridgeNode(namespace=namespace, cli_args=params_file_args(params_dir, "real_bridge"),
                                         parameter_overrides=bridge_overrides)
            self.nodes.append(self.bridge)
            self.task_name = self.bridge.get_parameter("task").value  # --task, else real_bridge.yaml's
            if emulator:
                from real_bridge.emulator_node import ArmEmulatorNode  # noqa: PLC0415

                # the emulator's scene follows the bridge's task (push: the puck, placed for the
                # bridge's goal, which it hears on the namespace's current_goal)
                self.emulator = ArmEmulatorNode(
                    cli_args=emulator_args + ["-r", f"current_goal:={namespace.rstrip('/')}/current_goal"],
                    parameter_overrides=robot + [Parameter("task", value=self.task_name)] + (
                        [Parameter("hidden_params_file", value=emulator_hidden)] if emulator_hidden else []) + (
                        [Parameter("object_hidden_params_file", value=emulator_object_hidden)]
                        if emulator_object_hidden else []))
                self.nodes.insert(0, self.emulator)
            if scripted:
                from sim_bridge.controller import scripted_controller  # noqa: PLC0415
                from sim_bridge.tasks import make_task  # noqa: PLC0415

                if self.bridge.trigger_configure() != self._success:
                    raise DeployError(f"real_bridge: configure failed: {self.bridge.last_error}")
                self.task = make_task(self.task_name)
                try:  # a plain node: it commands whenever it has a goal, a state (and an object pose)
                    self.policy = None
                    self.scripted = scripted_controller(self.task, self.bridge.profile, strike_steps=strike_steps,
                                                        namespace=namespace)
                except ValueError as exc:
                    raise DeployError(str(exc)) from None
                self.nodes.append(self.scripted)
                self.policy_name = f"strike_{self.task.name}" if strike_steps else f"scripted_{self.task.name}"
                self.onnx_sha256, self.sim_evaluation = "", {}
            else:
                folder = Path(policy).expanduser() if policy else None
                if folder is not None and policy_dir is None and folder.is_dir() and (folder / "manifest.json").is_file():
                    # an artifact folder given as a path (as sim takes it): the node's policy_dir is its
                    # parent (the node itself only takes names inside its policy_dir)
                    policy, policy_dir = folder.resolve().name, folder.resolve().parent
                policy_overrides = ([Parameter("policy", value=policy)] if policy else []) + robot
                if sample_actions:  # seeded like the goal sequence: a rerun draws the same noise
                    policy_overrides += [Parameter("sample_actions", value=True),
                                         Parameter("sample_seed", value=int(seed))]
                if policy_dir is not None:
                    policy_overrides.append(Parameter("policy_dir",
                                                      value=str(Path(policy_dir).expanduser().resolve())))
                self.policy = PolicyNode(namespace=namespace, cli_args=params_file_args(params_dir, "policy"),
                                         parameter_overrides=policy_overrides)
                self.nodes.append(self.policy)
                self.policy_name = self.policy.get_parameter("policy").value
                if self.bridge.trigger_configure() != self._success:
                    raise DeployError(f"real_bridge: configure failed: {self.bridge.last_error}")
                if self.policy.trigger_configure() != self._success:
                    raise DeployError(f"policy: configure failed: {self.policy.last_error}")
                loaded = self.policy.controller.active
                self.sampling = loaded.runtime.sampling  # what the node does, not what was asked
                self.onnx_sha256 = loaded.sha256
                self.sim_evaluation = dict(loaded.runtime.manifest.evaluation or {})
                self.task = task_from_record(loaded.runtime.manifest.task)
                bridge_task = self.bridge.core.task.name
                if bridge_task != self.task.name:
                    raise DeployError(f"policy '{self.policy_name}' was trained for task '{self.task.name}', the "
                                      f"real bridge runs task '{bridge_task}' (its 'task' parameter; --task)")
            if record is not None:  # after the policy's configure: the bag records its exact hash
                from real_bridge.recorder_node import RecorderNode  # noqa: PLC0415

                self.recorder = RecorderNode(
                    namespace=namespace, cli_args=params_file_args(params_dir, "recorder"),
                    parameter_overrides=[Parameter("output", value=str(record)),
                                         Parameter("task", value=self.task.name),
                                         Parameter("policy_name", value=self.policy_name),
                                         Parameter("policy_sha256", value=self.onnx_sha256), *robot])
                self.nodes.append(self.recorder)
                if self.recorder.recorder is None:
                    raise DeployError(f"recorder: {self.recorder.error}")
            self.profile = self.bridge.profile
            self.monitor = EpisodeMonitor(self.profile, self.task, namespace, emulator=emulator,
                                          recording=record is not None, policy=self.policy is not None)
            self.executor = ControlExecutor(num_threads=EXECUTOR_THREADS)
            for node in [*self.nodes, self.monitor.node]:
                self.executor.add_node(node)
            self._spinner = threading.Thread(target=self.executor.spin, name="executor", daemon=True)
            self._spinner.start()
        except (ConfigError, ParameterException) as exc:
            self.close()
            raise DeployError(f"invalid configuration: {exc}") from None
        except BaseException:
            self.close()
            raise

    # lifecycle helpers
    def _set_active(self, node, active: bool) -> None:
        if node is None:
            return
        if active and node.lifecycle_state == "inactive":
            if node.trigger_activate() != self._success:
                raise DeployError(f"{node.get_name()}: activation failed: {node.last_error}")
        elif not active and node.lifecycle_state == "active":
            node.trigger_deactivate()

    def wait_for_hardware(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        end = time.monotonic() + timeout
        topic = self.bridge.get_parameter("hardware_joint_states").value
        while self.bridge.counters["hardware_states"] == 0:
            if time.monotonic() > end:
                hint = "" if self.emulator else " (--no-emulator: is the ros2_control arm running?)"
                raise DeployError(f"no joint states from the hardware on {topic} within {timeout:g} s{hint}")
            time.sleep(0.01)
        for client in (self.monitor.bridge_reset, self.monitor.policy_reset, self.monitor.emulator_reset,
                       self.monitor.start_episode):
            if client is not None and not client.wait_for_service(timeout_sec=timeout):
                raise DeployError(f"service {client.srv_name} not available")

    def run_episode(self, index: int, episode_s: float) -> EpisodeResult:
        m = self.monitor
        # Nothing commands the arm while it is homed and the goal changes.
        self._set_active(self.policy, False)
        self._set_active(self.bridge, False)
        if m.measures_object:
            # the goal first, then the homing places the object for it (a person, on a real arm)
            goals = m.goal_count
            call(m.bridge_reset)
            goal = m.wait_goal_after(goals, SERVICE_TIMEOUT_S)
            if m.emulator_reset is not None:
                self._wait_emulator_goal(goal)
                call(m.emulator_reset)
            else:
                self._operator_places_object(index, goal)
        else:
            if m.emulator_reset is not None:
                call(m.emulator_reset)
            goals = m.goal_count
            call(m.bridge_reset)
            goal = m.wait_goal_after(goals, SERVICE_TIMEOUT_S)
        objects = m.object_count
        states = m.state_count
        self._set_active(self.bridge, True)
        m.wait_state_after(states, STARTUP_TIMEOUT_S)  # the bridge relays the (homed) arm again
        if m.measures_object:
            m.wait_object_after(objects, STARTUP_TIMEOUT_S)  # and the object's pose after the homing
        if m.policy_reset is not None:
            call(m.policy_reset)
        elif self.scripted is not None:
            self.scripted.reset()
        if m.start_episode is not None:
            call(m.start_episode)
        before = Counter(self.bridge.filter.counts())
        t0 = time.monotonic()
        m.begin(goal, t0)
        self._set_active(self.policy, True)
        m.done.wait(timeout=episode_s)
        result = m.finish(index, goal_m=[round(float(v), 4) for v in goal], wall_s=time.monotonic() - t0)
        result.safety_interventions = {k: v for k, v in (Counter(self.bridge.filter.counts()) - before).items() if v}
        self._set_active(self.policy, False)  # the bridge holds the measured position from here
        if self.scripted is not None:
            self._set_active(self.bridge, False)  # the scripted controller keeps commanding: stop forwarding
        if m.start_episode is not None:
            call(m.end_success if result.success else m.end_failure)
        if not result.steps:
            result.note = "no joint states relayed during the episode"
        return result

    def _operator_places_object(self, index: int, goal: np.ndarray) -> None:
        """A real arm: a person puts the object back. Asks on a terminal and waits for Enter;
        without one (a script, a test) it says so and goes on."""
        low, high = getattr(self.task, "push_distance", (0.10, 0.25))
        text = (f"episode {index}: goal ({goal[0]:.3f}, {goal[1]:.3f}) m in {self.bridge.core.base_frame}: place the "
                f"object {100 * low:.0f}-{100 * high:.0f} cm from it, hands off the table")
        if sys.stdin is not None and sys.stdin.isatty():
            input(text + ", then press Enter ")
        else:
            print(text + " (no terminal: not waiting)", flush=True)

    def _wait_emulator_goal(self, goal: np.ndarray, timeout: float = SERVICE_TIMEOUT_S) -> None:
        """Until the emulator has heard the bridge's new goal (it places the puck for it)."""
        end = time.monotonic() + timeout
        while self.emulator.goal is None or not np.allclose(self.emulator.goal, goal):
            if time.monotonic() > end:
                raise DeployError("the arm emulator did not hear the bridge's goal on current_goal (it places the "
                                  "puck for it)")
            time.sleep(0.002)

    def close(self):
        """Stop commanding, close the bag, stop the executor, destroy the nodes. Returns the
        recorder's final stats (or None)."""
        stats = None
        for node in (getattr(self, "policy", None), getattr(self, "bridge", None)):
            if node is not None and getattr(node, "lifecycle_state", "") == "active":
                try:
                    node.trigger_deactivate()
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
        if self.recorder is not None:
            stats = self.recorder.close_bag()
        monitor_node = [self.monitor.node] if self.monitor is not None else []
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=2.0)
            if self._spinner is not None:
                self._spinner.join(timeout=2.0)
            for node in [*self.nodes, *monitor_node]:
                self.executor.remove_node(node)  # no references left: the nodes are finalized now
        if self.monitor is not None:
            self.monitor.destroy()
        for node in reversed(self.nodes):
            node.destroy_node()
        self.nodes = []
        self.executor = None
        return stats


# --- the command --------------------------------------------------------------------------
def _fmt_rate(ok: int, n: int) -> str:
    return f"{ok}/{n} ({100 * ok / n:.0f}%)" if n else "0/0"


def _pct(rate) -> str:
    return f"{100 * rate:.1f}%" if isinstance(rate, (int, float)) else "-"


def _sim_rates(evaluation: dict) -> str:
    parts = []
    for key, label in (("none", "nominal"), ("default", "randomized")):
        r = evaluation.get(key)
        if isinstance(r, dict) and "success_rate" in r:
            parts.append(f"{label} {100 * r['success_rate']:.1f}% ({r.get('episodes', '?')} ep.)")
    return ", ".join(parts) if parts else "no evaluation in the manifest"


def summary_line(run: RunResult) -> str:
    return (episodes_summary_line(run.episodes, run.success, who=f"policy '{run.policy}'", measured_by=run.measured_by)
            + f"\n  in sim (manifest): {_sim_rates(run.sim_evaluation)}")


def gap_table(runs: list[RunResult], hardware: str, label: str) -> str:
    n = max(len(r.episodes) for r in runs)
    seed = runs[0].seed
    width = max(len(r.policy) for r in runs) + 2
    lines = [f"sim-to-real gap on {hardware}: seed {seed}, {n} episodes per policy, the same goal sequence",
             f"  {'policy':<{width}}{label + ' success':<19}{'95% CI':<12}{'sim nominal':<13}{'sim randomized':<16}"
             f"{'time to goal':<14}final error"]
    for r in runs:
        s = r.summary
        lo, hi = s.ci95
        sim_nominal, sim_randomized = (_pct(r.sim_evaluation.get(k, {}).get("success_rate"))
                                       for k in ("none", "default"))
        ci = f"{100 * lo:.0f}-{100 * hi:.0f}%"
        ttg = f"{s.mean_time_to_goal_s:.2f} s" if s.mean_time_to_goal_s is not None else "-"
        final = f"{100 * s.mean_final_error_m:.2f} cm" if s.mean_final_error_m is not None else "-"
        lines.append(f"  {r.policy:<{width}}{_fmt_rate(s.successes, s.episodes):<19}{ci:<12}{sim_nominal:<13}"
                     f"{sim_randomized:<16}{ttg:<14}{final}")
    return "\n".join(lines)


def run_policy(args: RealConfig, policy: str | None, seed: int, params_dir: Path, record: Path | None) -> RunResult:
    graph = DeploymentGraph(policy=policy, seed=seed, params_dir=params_dir, namespace=args.namespace, task=args.task,
                            emulator=args.emulator, record=record, policy_dir=args.policy_dir,
                            robot_profile=args.robot_profile, emulator_hidden=args.emulator_hidden,
                            emulator_object_hidden=args.emulator_object_hidden,
                            scripted=args.controller != "policy", sample_actions=args.sample_actions,
                            strike_steps=args.strike_steps if args.controller == "strike" else 0)
    run = RunResult(graph.policy_name, graph.onnx_sha256, seed, [], graph.sim_evaluation,
                    str(graph.recorder.output) if graph.recorder is not None else None, success=graph.task.success,
                    task=graph.task.name, measured_by=measured_by(graph.task))
    stats = None
    try:
        graph.wait_for_hardware()
        if args.emulator:
            e = graph.emulator
            obj = e.emulator.object
            hardware = (f"arm emulator ({e.mode}, hidden physics from "
                        f"{e.emulator.hidden.source.name if e.emulator.hidden.source else 'memory'}"
                        + (f"; a {e.emulator.task.name} object from "
                           f"{obj.source.name if obj.source else 'memory'}, tracked on {e.object_pose_topic}"
                           if obj is not None else "") + ")")
        else:
            hardware = "the ros2_control arm (NOT homed between episodes)"
        print(f"sim2real real: {args.episodes} episode(s) of {args.episode_s:g} s, policy '{run.policy}' "
              f"({run.onnx_sha256[:12]}{', sampled actions' if graph.sampling else ''}), {hardware}; hardware "
              f"{graph.bridge.get_parameter('hardware_joint_states').value} -> {graph.bridge.hardware_topic}, "
              f"policy side in {args.namespace}; parameters from {params_dir}; seed {seed}", flush=True)
        for ep in range(1, args.episodes + 1):
            result = graph.run_episode(ep, args.episode_s)
            run.episodes.append(result)
            print(episode_line(result, args.episodes), flush=True)
    finally:
        stats = graph.close()
    print(summary_line(run), flush=True)
    if record is not None:
        if stats is None:
            print(f"bag: nothing recorded to {record}", flush=True)
        else:
            print(f"bag: {stats.path} ({stats.state}): {stats.written} messages, {stats.episodes} episode(s), "
                  f"{stats.dropped} dropped, {stats.failed} failed" + (f"; {stats.error}" if stats.error else ""),
                  flush=True)
    return run


def run_real(args: RealConfig) -> int:
    import rclpy  # noqa: PLC0415

    if args.episodes < 1 or args.episode_s <= 0:
        print("sim2real real: --episodes must be >= 1 and --episode-s > 0", file=sys.stderr)
        return 2
    policies = list(args.compare) if args.compare else [args.policy]
    if args.compare and args.policy:
        print("sim2real real: use either --policy or --compare", file=sys.stderr)
        return 2
    if args.controller != "policy" and (args.compare or args.policy):
        print(f"sim2real real: --controller {args.controller} runs no policy: drop --policy / --compare", file=sys.stderr)
        return 2
    if args.controller == "strike" and args.strike_steps < 1:
        print("sim2real real: --strike-steps must be >= 1", file=sys.stderr)
        return 2
    if args.controller != "policy" and args.sample_actions:
        print("sim2real real: --sample-actions applies to the policy node (--controller policy)", file=sys.stderr)
        return 2
    params_dir = (args.params_dir or default_params_dir()).expanduser()
    records = [None] * len(policies)
    if args.record is not None:
        records = [args.record / p for p in policies] if args.compare else [args.record]
        for path in records:
            if path.exists():
                print(f"sim2real real: {path} exists (a new bag needs a new folder)", file=sys.stderr)
                return 2
    rclpy.init()
    runs: list[RunResult] = []
    try:
        seed = args.seed
        if seed is None:
            seed = int(file_parameters("real_bridge", args.namespace,
                                       params_file_args(params_dir, "real_bridge")).get("seed", -1))
        if seed < 0:
            seed = random.SystemRandom().randrange(2**31)
            print(f"sim2real real: seed -1 in the parameter file: using seed {seed} (repeat with --seed {seed})")
        for policy, record in zip(policies, records):
            runs.append(run_policy(args, policy, seed, params_dir, record))
            gc.collect()  # finalize the destroyed nodes (reference cycles) before the next graph reuses their names
    except DeployError as exc:
        print(f"sim2real real: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sim2real real: interrupted", file=sys.stderr)
        return 130
    finally:
        rclpy.try_shutdown()
    if len(runs) > 1:
        print(gap_table(runs, *(("the arm emulator", "emulator") if args.emulator else ("the real arm", "real"))),
              flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": "sim2real real", "hardware": "arm_emulator" if args.emulator else "ros2_control",
            "namespace": args.namespace, "params_dir": str(params_dir.resolve()),
            "seed": runs[0].seed if runs else None,
            "episode_s": args.episode_s, "sample_actions": args.sample_actions,
            "success_criterion": {**(runs[0].success.to_dict() if runs else {}),
                                  "measured_by": (runs[0].measured_by if runs and runs[0].measured_by != MEASURED_BY
                                                  else "nominal forward kinematics of the joint states relayed by "
                                                       "the bridge")},
            "runs": [r.to_dict() for r in runs]}, indent=2))
        print(f"results: {args.json.resolve()}")
    return 0 if runs and all(r.episodes for r in runs) else 1
