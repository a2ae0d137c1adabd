"""``sim2real sim``: bring up the sim bridge and drive it through ROS for a few episodes.

By default the arm is driven by the policy node (``policies.node.PolicyNode``) running a
shipped ONNX policy (``--policy``, default ``reach_lstm``); ``--swap-to NAME`` switches the
running node to another policy through its ``policy`` parameter halfway through, as an
operator's ``ros2 param set`` would. ``--controller scripted`` uses the scripted reach
controller (:class:`sim_bridge.oracle.ReachOracle`) instead. Either way the controller
sees only ``joint_states`` and ``current_goal`` and publishes ``joint_commands``. Each
episode starts with the bridge's ``reset`` service (new dynamics sample and goal) and,
for a policy, the policy's ``~/reset`` (zero recurrent state). One line per episode, a
summary, and a plot.

In real time the bridge and the policy node are composed as ``sim2real node sim_policy``
composes them (sim2real/composed.py): the bridge hands each state to the policy node
intra-process and the policy's cycle runs on it (trigger 'state'); the topics are still
published for recorders. ``SIM2REAL_COMPOSED_TRANSPORT=dds`` keeps them on DDS (the
policy node then runs on its own timer), as does lockstep mode.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

import numpy as np

from sim2real import composed
from sim_bridge.episode import EpisodeResult, EpisodeSummary, EpisodeTracker, episode_line, summary_line
from sim_bridge.tasks import Task, UnknownTaskError, make_task, task_from_record


@dataclass(frozen=True)
class SimConfig:
    """``sim2real sim``: the sim bridge and a controller for a few randomized episodes."""

    episodes: int = 3
    """number of episodes"""
    episode_s: float | None = None
    """time limit per episode in sim seconds (None: the task's episode length, reach 4 s, push 6 s)"""
    task: str | None = None
    """registered task (sim_bridge.tasks); None: the policy's own task (reach for the scripted controller)"""
    randomization: str = "default"
    """dynamics randomization: shipped name or YAML path"""
    robot_profile: Annotated[str, tyro.conf.arg(aliases=("--robot",))] = "panda_like"
    """robot profile: shipped name, an imported robot's name (robots/NAME) or a YAML path"""
    mode: Literal["realtime", "lockstep"] = "realtime"
    """realtime: stepped by a timer at the control rate; lockstep: one step per command"""
    seed: int = 0
    """seed for dynamics and goals (-1: random)"""
    controller: Literal["policy", "scripted"] = "policy"
    """policy: the policy node with a shipped policy; scripted: the task's scripted controller (IK reach, or the scripted pusher)"""
    policy: str | None = None
    """shipped policy name (policies/policies/zoo) or an artifact folder; None: the task's shipped LSTM (TASK_lstm; reach_lstm without --task)"""
    swap_to: str | None = None
    """switch the running policy node to this policy before the second half of the episodes"""
    sample_actions: bool = False
    """the policy node acts with samples of the policy's trained Gaussian (its manifest's action_std; the node's sample_actions parameter) instead of its mean"""
    gui: bool = False
    """open the MuJoCo viewer on the simulation (where a display exists; else headless)"""
    out: Path = Path("runs/sim")
    """folder for the plot and results"""
    json: Path | None = None
    """also write results as JSON to this path"""


def add_sim_command(subparsers) -> None:
    from sim2real.cli import add_typed_command  # noqa: PLC0415

    add_typed_command(subparsers, "sim", SimConfig, run_sim,
                      help="run the sim bridge with a controller for a few randomized episodes", description=__doc__)


@dataclass
class EpisodeTrace:
    time_s: list[float] = field(default_factory=list)
    distance_m: list[float] = field(default_factory=list)
    joint_pos: list[list[float]] = field(default_factory=list)
    command: list[list[float]] = field(default_factory=list)
    object_xy: list[list[float]] = field(default_factory=list)  # tasks with an object (Push): its true x, y
    goal_xy: list[float] | None = None


# Parameter groups shown in the one-line episode summary (all are in the JSON output):
# label, number format ("x" = scale factor, "+" = offset), unit suffix.
SUMMARY_GROUPS = {"body_mass": ("mass", "x{:.2f}", ""), "joint_damping": ("damping", "x{:.2f}", ""),
                  "actuator_kp": ("kp", "x{:.2f}", ""), "joint_frictionloss": ("stiction", "{:+.2f}", " Nm"),
                  "action_latency": ("latency", "{:.2f}", " steps"), "gravity": ("gravity", "{:+.2f}", " m/s^2"),
                  "puck_mass": ("puck", "{:.2f}", " kg"), "puck_friction": ("friction", "{:.2f}", ""),
                  "puck_damping": ("puck damping", "{:.3f}", " Ns/m"), "puck_size": ("size", "x{:.3f}", ""),
                  "table_height": ("table", "{:+.3f}", " m")}


def summarize_dynamics(dynamics: dict[str, float]) -> str:
    """A short summary of a dynamics sample: the range of the main parameter groups."""
    groups: dict[str, list[float]] = {}
    for name, value in dynamics.items():
        groups.setdefault(name.split("/")[0], []).append(value)
    parts = []
    for name, (label, fmt, unit) in SUMMARY_GROUPS.items():
        values = groups.pop(name, None)
        if values is None:
            continue
        text = fmt.format(values[0]) if len(values) == 1 else \
            f"{fmt.format(min(values))}..{fmt.format(max(values))}"
        parts.append(f"{label} {text}{unit}")
    if groups:
        parts.append(f"+{len(groups)} more groups")
    return ", ".join(parts) if parts else "nominal"


def _call(client, timeout_s: float = 5.0) -> None:
    """Call a std_srvs/Trigger service and wait (the executor spins in another thread)."""
    from std_srvs.srv import Trigger
    if not client.wait_for_service(timeout_sec=timeout_s):
        raise RuntimeError(f"service {client.srv_name} not available")
    future = client.call_async(Trigger.Request())
    end = time.monotonic() + timeout_s
    while not future.done() and time.monotonic() < end:
        time.sleep(0.001)


class EpisodeRecorder:
    """Records every control step of one episode (called in the sim's stepping thread)."""

    def __init__(self, task: Task, control_period_s: float, episode_s: float):
        self.period = control_period_s
        self.max_steps = int(round(episode_s / control_period_s))
        self.tracker = EpisodeTracker(task.success, control_period_s)  # the task's ONE criterion
        self.done = threading.Event()
        self.done.set()
        self._episode = -1

    def arm(self, episode: int) -> None:
        """Record the steps of session episode number ``episode`` (the next reset's)."""
        self.trace = EpisodeTrace()
        self.tracker.begin()
        self.dynamics: dict[str, float] = {}
        self._episode = episode
        self.done.clear()

    def on_tick(self, session) -> None:
        if self.done.is_set():
            return
        if session.counters.episodes != self._episode:
            if self.trace.time_s:  # the episode was reset under us (e.g. a physics blow-up)
                self.done.set()
            return
        if not self.dynamics:
            self.dynamics = session.sim.dynamics_dict()
        dist = session.task_error()
        self.trace.time_s.append((len(self.trace.time_s) + 1) * self.period)
        self.trace.distance_m.append(dist)
        self.trace.joint_pos.append(session.sim.true_joint_positions().tolist())
        self.trace.command.append(session.last_command.tolist())
        info = session.task.info(session.sim, session.task_state)
        if "object_pos" in info:
            self.trace.object_xy.append([float(v) for v in info["object_pos"][:2]])
            self.trace.goal_xy = [float(v) for v in session.goal[:2]]
        if self.tracker.step(dist) or self.tracker.steps >= self.max_steps:
            self.done.set()


def resolve_policy(args: SimConfig) -> str:
    """``--policy``, else the task's shipped LSTM (``push`` -> ``push_lstm``), else ``reach_lstm``."""
    return args.policy or f"{args.task or 'reach'}_lstm"


def resolve_task(args: SimConfig) -> Task:
    """``--task``, else the task of the policy that drives the arm (its manifest), else Reach.
    A policy trained for another task than ``--task`` is refused (ValueError, naming both)."""
    task = make_task(args.task) if args.task is not None else None  # an unknown task first
    policy_task = None
    if args.controller == "policy":
        from policies.manifest import find_policy, load_manifest  # noqa: PLC0415

        name = resolve_policy(args)
        try:
            policy_task = task_from_record(load_manifest(find_policy(name)).task)
        except FileNotFoundError:
            if args.task is not None and args.policy is None:
                raise ValueError(f"no shipped policy '{name}' for task '{args.task}' (the zoo has "
                                 f"{shipped_policies()}); give one with --policy, or use --controller scripted") from None
        except ValueError:
            pass  # the policy node says what is wrong with the policy when it loads it
    if task is None:
        return policy_task or make_task("reach")
    if policy_task is not None and policy_task.name != task.name:
        raise ValueError(f"policy '{resolve_policy(args)}' was trained for task '{policy_task.name}', not "
                         f"'{task.name}'; give a {task.name} policy with --policy, or use --controller scripted")
    return task


def shipped_policies() -> list[str]:
    from policies.control import list_policies  # noqa: PLC0415
    from policies.manifest import shipped_zoo  # noqa: PLC0415

    return list_policies(shipped_zoo())


def run_sim(args: SimConfig) -> int:
    import rclpy
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    from sim_bridge import interface
    from sim_bridge.controller import scripted_controller
    from sim_bridge.executor import ControlExecutor
    from sim_bridge.node import SimBridgeNode

    try:
        task = resolve_task(args)
    except (UnknownTaskError, ValueError) as exc:
        print(f"sim2real sim: {exc}", file=sys.stderr)
        return 2
    if args.sample_actions and args.controller != "policy":
        print("sim2real sim: --sample-actions applies to the policy node (--controller policy)", file=sys.stderr)
        return 2
    if args.controller == "scripted" and task.name not in ("reach", "push"):
        print(f"sim2real sim: no scripted controller for task '{task.name}'; use --controller policy", file=sys.stderr)
        return 2
    try:  # the policy in real time: composed with the bridge, intra-process unless the env asks for DDS
        intra = args.controller == "policy" and args.mode == "realtime" and composed.transport() == "intra"
    except ValueError as exc:
        print(f"sim2real sim: {exc}", file=sys.stderr)
        return 2
    rclpy.init()
    bridge = SimBridgeNode(task=task, intra_process=intra, parameter_overrides=[
        Parameter("robot_profile", value=args.robot_profile),
        Parameter("randomization_file", value=args.randomization),
        Parameter("mode", value=args.mode), Parameter("seed", value=args.seed)])
    if args.controller == "policy":
        # an artifact folder given as a path: the node's policy_dir is its parent (the node itself
        # only takes names inside its policy_dir)
        folder = Path(resolve_policy(args))
        where = ([Parameter("policy_dir", value=str(folder.resolve().parent)), Parameter("policy", value=folder.name)]
                 if folder.is_dir() else [Parameter("policy", value=resolve_policy(args))])
        # one cycle per state in lockstep (a command steps the sim) and intra-process (the bridge's
        # tick runs the policy's cycle); else the policy's own timer
        controller = composed.linked_policy(bridge, {"parameter_overrides": [
            *where, Parameter("robot_profile", value=args.robot_profile),
            Parameter("sample_actions", value=args.sample_actions), Parameter("sample_seed", value=max(args.seed, 0)),
            Parameter("trigger", value="state" if args.mode == "lockstep" or intra else "timer")]})
        if controller.lifecycle_state != "active":
            print(f"sim2real sim: policy node did not start: {controller.last_error}")
            return 2
        policy_reset = controller.create_client(Trigger, "~/reset")
    else:
        controller = scripted_controller(task, bridge.profile)
        policy_reset = None
    client = controller.create_client(Trigger, interface.RESET)
    executor = ControlExecutor(num_threads=4)
    executor.add_node(bridge)
    executor.add_node(controller)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    session = bridge.session
    episode_s = args.episode_s or task.max_episode_steps * bridge.profile.control_period_s
    recorder = EpisodeRecorder(task, bridge.profile.control_period_s, episode_s)
    session.tick_observers.append(recorder.on_tick)
    viewer = None
    if args.gui:
        from sim_bridge.viewer import SimViewer  # noqa: PLC0415

        viewer = SimViewer.open(session.sim)
        if viewer is not None:
            session.tick_observers.append(viewer.on_tick)
    results, traces = [], []
    try:
        client.wait_for_service(timeout_sec=10.0)
        driver = (f"policy '{resolve_policy(args)}' ({'intra-process' if intra else 'over DDS'}"
                  f"{', sampled actions' if args.sample_actions else ''})" if policy_reset
                  else f"scripted {task.name} controller")
        print(f"sim2real sim: {args.episodes} episode(s) of task '{task.name}', robot '{bridge.profile.name}', "
              f"randomization '{args.randomization}', {args.mode} mode, {driver}")
        for ep in range(1, args.episodes + 1):
            if policy_reset is not None and args.swap_to and ep == args.episodes // 2 + 1:
                result = controller.set_parameters([Parameter("policy", value=args.swap_to)])[0]
                print(f"swap to '{args.swap_to}': " + ("accepted (takes over at the next control cycle)"
                      if result.successful else f"refused: {result.reason}"), flush=True)
            if policy_reset is None:
                controller.reset()
            else:
                _call(policy_reset)
            recorder.arm(session.counters.episodes + 1)
            future = client.call_async(Trigger.Request())
            # Generous wall-clock guard: realtime runs 1x, lockstep faster.
            if not recorder.done.wait(timeout=episode_s * 5 + 10):
                print(f"episode {ep}: no progress from the sim bridge; stopping", flush=True)
                break
            end = time.monotonic() + 5.0
            while not future.done() and time.monotonic() < end:  # the reply may trail the first steps
                time.sleep(0.001)
            result = recorder.tracker.result(ep, goal_m=[round(float(v), 4) for v in session.goal],
                                             dynamics=recorder.dynamics)
            results.append(result)
            traces.append(recorder.trace)
            print(episode_line(result, args.episodes, extra=f"dynamics: {summarize_dynamics(result.dynamics)}"),
                  flush=True)
    finally:
        session.tick_observers.remove(recorder.on_tick)
        if viewer is not None:
            session.tick_observers.remove(viewer.on_tick)
            viewer.close()
        executor.remove_node(controller)  # stop dispatching before the nodes go away
        executor.remove_node(bridge)
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=2.0)
        bridge.destroy_node()
        controller.destroy_node()
        rclpy.try_shutdown()

    print(summary_line(results, task.success))
    args.out.mkdir(parents=True, exist_ok=True)
    plot = args.out / "episodes.png"
    plot_episodes(traces, results, bridge.profile.joint_names, plot, task.success.radius_m,
                  error_name=task.success.error_name)
    print(f"plot: {plot.resolve()}")
    if any(t.object_xy for t in traces):
        paths = args.out / "object_paths.png"
        plot_object_paths(traces, results, paths, task.success.radius_m)
        print(f"object paths: {paths.resolve()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"task": task.describe(), "success_criterion": task.success.to_dict(),
                                         **EpisodeSummary.of(results).to_dict(),
                                         "episodes": [r.to_dict() for r in results]}, indent=2))
        print(f"results: {args.json.resolve()}")
    return 0 if results else 1


def plot_object_paths(traces: list[EpisodeTrace], results: list[EpisodeResult], path: Path,
                      success_radius_m: float) -> None:
    """Top view of each episode: the object's path from its start (circle) to its end (x),
    the goal and the success radius."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 6))
    for trace, result in zip(traces, results):
        if not trace.object_xy:
            continue
        xy = np.array(trace.object_xy)
        line, = ax.plot(xy[:, 1], xy[:, 0], lw=1.5,
                        label=f"episode {result.episode} ({'success' if result.success else 'failed'}, "
                              f"final {100 * result.final_error_m:.1f} cm)")
        ax.plot(xy[0, 1], xy[0, 0], "o", color=line.get_color(), mfc="none")
        ax.plot(xy[-1, 1], xy[-1, 0], "x", color=line.get_color())
        gy, gx = trace.goal_xy[1], trace.goal_xy[0]
        ax.add_patch(plt.Circle((gy, gx), success_radius_m, color=line.get_color(), alpha=0.2))
        ax.plot(gy, gx, "*", color=line.get_color(), ms=10)
    ax.set_xlabel("y [m] (robot base frame)")
    ax.set_ylabel("x [m] (forward)")
    ax.invert_xaxis()  # seen from above with the robot at the bottom
    ax.set_aspect("equal")
    ax.set_title("object paths: start (o), end (x), goal (*) with the success radius")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_episodes(traces: list[EpisodeTrace], results: list[EpisodeResult], joint_names, path: Path,
                  success_radius_m: float, error_name: str = "end effector to goal") -> None:
    """Distance to goal vs time for every episode; joints vs commands for the first one."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(joint_names)
    fig, axes = plt.subplots(1 + (n + 1) // 2, 2, figsize=(11, 2.2 * (1 + (n + 1) // 2)), squeeze=False)
    top = fig.add_subplot(axes.shape[0], 1, 1)
    axes[0, 0].remove()
    axes[0, 1].remove()
    for trace, result in zip(traces, results):
        top.plot(trace.time_s, 100 * np.array(trace.distance_m),
                 label=f"episode {result.episode} ({'success' if result.success else 'failed'})")
    top.axhline(100 * success_radius_m, color="k", ls="--", lw=0.8, label="success radius")
    top.set_xlabel("time [s]")
    top.set_ylabel(f"{error_name} [cm]")
    top.set_yscale("log")
    top.legend(fontsize=8)
    top.set_title(f"sim2real sim: {error_name}")
    if traces and traces[0].time_s:
        t = traces[0].time_s
        q, cmd = np.array(traces[0].joint_pos), np.array(traces[0].command)
        for j in range(n):
            ax = axes[1 + j // 2, j % 2]
            ax.plot(t, q[:, j], label="joint position")
            ax.plot(t, cmd[:, j], ls="--", label="command")
            ax.set_ylabel(f"{joint_names[j]} [rad]", fontsize=8)
            if j == 0:
                ax.legend(fontsize=7)
                ax.set_title("episode 1: joints vs commands", fontsize=9)
        if n % 2:
            axes[-1, 1].remove()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
