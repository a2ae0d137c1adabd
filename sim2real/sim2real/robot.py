"""``sim2real robot``: bring your own arm.

``sim2real robot import`` builds the simulation (MJCF) and the robot profile from the robot's
URDF: a file (``--urdf``), the latched ``/robot_description`` topic a running
robot_state_publisher publishes (``--from-topic``), or its ``robot_description`` parameter
(``--from-node``). The joint order comes from the ros2_control controller file
(``--controllers``). The core is :mod:`sim_bridge.robot_import` (no ROS); this module reads the
live description and prints.

``sim2real robot check NAME|PROFILE`` loads the result, prints its table (joints, limits, gains,
masses, reach), drives the scripted reach oracle to random goals and one randomized episode,
draws the arm at the default pose and a few sampled poses (PNG; MuJoCo's renderer, or a
matplotlib drawing of the kinematic chain where there is no OpenGL), and fails with reasons.
Exit codes: 0 passed, 1 check failed, 2 bad input (the message names the file and field).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Union

import tyro

DEFAULT_ROBOTS_DIR = Path("robots")
DESCRIPTION_PARAMETER = "robot_description"


@dataclass(frozen=True)
class ImportConfig:
    """``sim2real robot import``: build the MJCF and robot profile of an arm from its URDF."""

    name: str
    """robot name: names the files and the profile (policies record it as robot_profile)"""
    urdf: Path | None = None
    """URDF file (xacro output: run xacro first)"""
    from_topic: str | None = None
    """read the URDF from this latched std_msgs/String topic instead, e.g. /robot_description"""
    from_node: str | None = None
    """read the URDF from this node's robot_description parameter instead, e.g. /robot_state_publisher"""
    controllers: Path | None = None
    """ros2_control controllers YAML: the joint order (and gains, update rate) of the commanded controller"""
    controller: str | None = None
    """controller in --controllers whose joints the policy commands (None: the only one that lists joints)"""
    out: Path | None = None
    """output folder, replaced atomically (None: robots/NAME)"""
    mesh_dir: tuple[Path, ...] = ()
    """folders searched for meshes after the ament index (package://PKG/REL -> DIR/PKG/REL, DIR/REL, DIR/NAME)"""
    ee_link: str | None = None
    """end-effector link (None: the last commanded joint's link, down its chain of fixed joints, e.g. tool0)"""
    lock_joints: tuple[str, ...] = ()
    """URDF joints to hold fixed at 0 (a gripper, joints no controller commands)"""
    continuous_range_rad: float | None = None
    """position range [-R, R] given to continuous joints (None: a continuous joint is an error)"""
    control_rate_hz: float = 50.0
    """policy control rate written to the profile"""
    physics_rate_hz: float = 500.0
    """physics rate (an integer multiple of the control rate)"""
    timeout_s: float = 10.0
    """how long to wait for --from-topic / --from-node"""
    force: bool = False
    """replace an existing output folder"""
    seed: int = 0
    """seed of the forward-kinematics sampling (workspace, default pose)"""


@dataclass(frozen=True)
class CheckConfig:
    """``sim2real robot check``: load a robot, print its table, drive it, draw it, and fail with reasons."""

    robot: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="NAME|PROFILE")]
    """robot: a name imported into robots/NAME, a profile YAML or its folder, or a shipped profile name"""
    goals: int = 10
    """random reach goals for the scripted oracle (nominal physics)"""
    seed: int = 0
    """seed of the goals, the sampled poses and the randomized episode"""
    controllers: Path | None = None
    """controller file to compare the joint order with (None: the one recorded at import)"""
    controller: str | None = None
    """controller in --controllers (None: the recorded one, or the only one that lists joints)"""
    poses: int = 3
    """sampled poses drawn besides the default pose"""
    out: Path | None = None
    """folder for the PNGs (None: runs/robot_check/NAME)"""


RobotCommand = Union[Annotated[ImportConfig, tyro.conf.subcommand("import")],
                     Annotated[CheckConfig, tyro.conf.subcommand("check")]]


def add_robot_command(subparsers) -> None:
    from sim2real.cli import add_typed_command  # noqa: PLC0415

    add_typed_command(subparsers, "robot", RobotCommand, run_robot, description=__doc__,
                      help="bring your own arm: import its URDF (robot import), check it (robot check)")


def run_robot(config: ImportConfig | CheckConfig) -> int:
    return run_import(config) if isinstance(config, ImportConfig) else run_check(config)


# --- import -----------------------------------------------------------------------------------
def run_import(args: ImportConfig) -> int:
    from sim_bridge.robot_import import ImportOptions, import_robot, parse_urdf, read_urdf_file  # noqa: PLC0415

    sources = [s for s in (args.urdf, args.from_topic, args.from_node) if s is not None]
    if len(sources) != 1:
        return _fail("robot import", "give exactly one of --urdf FILE, --from-topic TOPIC, --from-node NODE")
    out = args.out if args.out is not None else DEFAULT_ROBOTS_DIR / args.name
    start = time.monotonic()
    try:
        if args.urdf is not None:
            urdf = read_urdf_file(args.urdf)
        elif args.from_topic is not None:
            urdf = parse_urdf(read_description_topic(args.from_topic, args.timeout_s),
                              label=f"topic {args.from_topic}")
        else:
            urdf = parse_urdf(read_description_parameter(args.from_node, args.timeout_s),
                              label=f"parameter {args.from_node.rstrip('/')}/{DESCRIPTION_PARAMETER}")
        options = ImportOptions(
            name=args.name, controllers=args.controllers, controller=args.controller,
            mesh_dirs=tuple(Path(d) for d in args.mesh_dir), ee_link=args.ee_link,
            lock_joints=tuple(args.lock_joints), continuous_range_rad=args.continuous_range_rad,
            control_rate_hz=args.control_rate_hz, physics_rate_hz=args.physics_rate_hz, seed=args.seed)
        result = import_robot(urdf, options, out, force=args.force,
                              log=lambda message: print(f"warning: {message}", file=sys.stderr))
    except ValueError as exc:  # ConfigError: names the file or topic and the element
        return _fail("robot import", str(exc))
    except OSError as exc:
        return _fail("robot import", f"{exc.filename or out}: {exc.strerror or exc}")
    p = result.profile
    print(f"imported '{p.name}' from {urdf.label} in {time.monotonic() - start:.2f} s: {p.num_joints} joints "
          f"{list(p.joint_names)}, {result.meshes} mesh file(s), {result.fallbacks} primitive fallback(s), "
          f"{len(result.warnings)} warning(s)")
    print(f"  profile  {result.profile_path}")
    print(f"  MJCF     {result.mjcf_path}")
    print(f"  reach workspace low {p.reach_low_m.tolist()} high {p.reach_high_m.tolist()} m; default pose "
          f"{p.default_pose_rad.tolist()} rad")
    print(f"next: sim2real robot check {result.out_dir}   then   sim2real train --robot-profile {result.profile_path}")
    return 0


def _ros_context():
    import rclpy  # noqa: PLC0415

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(context=context)
    return context


def read_description_topic(topic: str, timeout_s: float) -> str:
    """The first std_msgs/String on ``topic`` (transient local, as robot_state_publisher
    latches it); ConfigError naming the topic when none arrives within ``timeout_s``."""
    import rclpy  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: PLC0415
    from std_msgs.msg import String  # noqa: PLC0415

    from sim_bridge.config import ConfigError  # noqa: PLC0415

    context = _ros_context()
    node = rclpy.create_node("sim2real_robot_import", context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        executor.add_node(node)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        received: list[str] = []
        node.create_subscription(String, topic, lambda msg: received.append(msg.data), latched)
        end = time.monotonic() + timeout_s
        while not received and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        if not received:
            publishers = node.get_publishers_info_by_topic(topic)
            found = (f"{len(publishers)} publisher(s) of {sorted({p.topic_type for p in publishers})}, none "
                     "delivered a latched std_msgs/String" if publishers else "nobody publishes it")
            raise ConfigError(f"no robot description within {timeout_s:g} s ({found}); is robot_state_publisher "
                              "running, in this ROS_DOMAIN_ID?", source=f"topic {topic}")
        return received[0]
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


def read_description_parameter(node_name: str, timeout_s: float) -> str:
    """The string parameter ``robot_description`` of ``node_name`` (robot_state_publisher's)."""
    import rclpy  # noqa: PLC0415
    from rcl_interfaces.msg import ParameterType  # noqa: PLC0415
    from rcl_interfaces.srv import GetParameters  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

    from sim_bridge.config import ConfigError  # noqa: PLC0415

    name = "/" + node_name.strip("/")
    where = f"parameter {name}/{DESCRIPTION_PARAMETER}"
    context = _ros_context()
    node = rclpy.create_node("sim2real_robot_import", context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        executor.add_node(node)
        client = node.create_client(GetParameters, f"{name}/get_parameters")
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise ConfigError(f"node {name} did not answer within {timeout_s:g} s (no get_parameters service)",
                              source=where)
        future = client.call_async(GetParameters.Request(names=[DESCRIPTION_PARAMETER]))
        executor.spin_until_future_complete(future, timeout_sec=timeout_s)
        if not future.done() or future.result() is None:
            raise ConfigError(f"node {name} did not answer within {timeout_s:g} s", source=where)
        values = future.result().values
        if not values or values[0].type != ParameterType.PARAMETER_STRING or not values[0].string_value:
            raise ConfigError(f"node {name} has no string parameter '{DESCRIPTION_PARAMETER}'", source=where)
        return values[0].string_value
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


# --- check ------------------------------------------------------------------------------------
def resolve_robot(text: str) -> str:
    """A profile path or shipped name for ``robot check NAME|PROFILE`` (see CheckConfig.robot)."""
    path = Path(text)
    if path.is_dir():
        return str(path / f"{path.name}.yaml")
    if path.suffix in (".yaml", ".yml") or os.sep in text:
        return str(path)
    imported = DEFAULT_ROBOTS_DIR / text / f"{text}.yaml"
    return str(imported) if imported.is_file() else text


def run_check(args: CheckConfig) -> int:
    from sim_bridge.config import ConfigError  # noqa: PLC0415
    from sim_bridge.profile import load_profile  # noqa: PLC0415
    from sim_bridge.robot_import import check_robot  # noqa: PLC0415

    try:
        profile = load_profile(resolve_robot(args.robot))
        report = check_robot(profile, goals=args.goals, seed=args.seed, controllers=args.controllers,
                             controller=args.controller)
    except ConfigError as exc:
        return _fail("robot check", str(exc))
    for line in report.lines()[:-1]:
        print(line)
    out = args.out if args.out is not None else Path("runs/robot_check") / profile.name
    try:
        paths, how = draw_poses(profile, out, poses=args.poses, seed=args.seed)
        print(f"drew {len(paths)} pose(s) ({how}) in {out}/: {', '.join(p.name for p in paths)}")
    except Exception as exc:  # noqa: BLE001 - a drawing problem must not hide the check's verdict
        print(f"warning: no drawing ({type(exc).__name__}: {exc})", file=sys.stderr)
    print(report.lines()[-1])
    return 0 if report.ok else 1


RENDER_TIMEOUT_S = 120.0


def draw_poses(profile, out: Path, *, poses: int = 3, seed: int = 0) -> tuple[list[Path], str]:
    """PNGs of the arm at the default pose and ``poses`` sampled poses: MuJoCo's offscreen
    renderer where OpenGL works, else a matplotlib drawing of the kinematic chain (from FK)."""
    from sim_bridge.robot_import import sample_valid_poses  # noqa: PLC0415
    from sim_bridge.simulator import build_model  # noqa: PLC0415

    model = build_model(profile)
    named = [("default", profile.default_pose_rad)]
    named += [(f"sample{i + 1}", q) for i, q in enumerate(sample_valid_poses(model, profile, poses, seed=seed))]
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _render_mujoco(profile, named, out), "MuJoCo renderer"
    except Exception as exc:  # noqa: BLE001 - no OpenGL here (EGL/OSMesa/GLFW): draw the chain instead
        reason = str(exc).strip().splitlines()[-1][:120] if str(exc).strip() else type(exc).__name__
    return _draw_chain(profile, model, named, out), f"matplotlib kinematic chain from FK; no OpenGL: {reason}"


def _render_mujoco(profile, named, out: Path) -> list[Path]:
    """Render in a child process: an OpenGL context that cannot be made may abort the process
    that tries (GLFW without a display), and MUJOCO_GL only counts before mujoco is imported."""
    import json  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    if profile.source is None:
        raise RuntimeError("the profile has no file to hand to the renderer")
    env = dict(os.environ)
    if not env.get("MUJOCO_GL") and not env.get("DISPLAY"):
        env["MUJOCO_GL"] = "egl"  # headless
    job = {"profile": str(Path(profile.source).resolve()), "out": str(out.resolve()),
           "poses": [[name, [float(v) for v in q]] for name, q in named]}
    proc = subprocess.run([sys.executable, "-c", "from sim2real.robot import _render_child; _render_child()"],
                          input=json.dumps(job), capture_output=True, text=True, env=env,
                          timeout=RENDER_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"renderer exited with {proc.returncode}")
    return [out / f"{name}.png" for name, _ in named]


def _render_child() -> None:
    """The renderer process of :func:`_render_mujoco` (job as JSON on stdin)."""
    import json  # noqa: PLC0415

    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import mujoco  # noqa: PLC0415

    from sim_bridge.profile import load_profile  # noqa: PLC0415
    from sim_bridge.robot_import import full_qpos  # noqa: PLC0415
    from sim_bridge.simulator import build_model  # noqa: PLC0415

    job = json.loads(sys.stdin.read())
    profile = load_profile(job["profile"])
    model = build_model(profile)
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, 480, 640)
    camera = mujoco.MjvCamera()
    camera.lookat[:] = (profile.reach_low_m + profile.reach_high_m) / 2 * [0.5, 0.5, 1.0]
    camera.distance = 2.5 * float(max(profile.reach_high_m.max(), 0.5))
    camera.azimuth, camera.elevation = 135.0, -25.0
    for name, q in job["poses"]:
        data.qpos[:] = full_qpos(model, profile.joint_names, q)
        mujoco.mj_forward(model, data)
        renderer.update_scene(data, camera=camera)
        plt.imsave(Path(job["out"]) / f"{name}.png", renderer.render())
    renderer.close()


def _draw_chain(profile, model, named, out: Path) -> list[Path]:
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from sim_bridge.robot_import import chain_points  # noqa: PLC0415

    low, high = profile.reach_low_m, profile.reach_high_m
    corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
    paths = []
    for name, q in named:
        pts = chain_points(profile, model, q)
        fig = plt.figure(figsize=(6, 5))
        ax = fig.add_subplot(projection="3d")
        ax.plot(pts[:, 0], pts[:, 1], pts[:, 2], "-o", color="0.3", lw=3, ms=5, label="joints (tree order)")
        ax.scatter(*pts[-1], color="tab:orange", s=60, label="end effector")
        for a, b in edges:
            ax.plot(*zip(corners[a], corners[b]), color="tab:green", lw=0.8)
        span = max(0.5, float(np.abs(pts).max()), float(np.abs(corners).max()))
        xx, yy = np.meshgrid([-span, span], [-span, span])
        ax.plot_surface(xx, yy, np.zeros_like(xx), color="tan", alpha=0.25)
        ax.set_xlim(-span, span), ax.set_ylim(-span, span), ax.set_zlim(0, span)
        ax.set_box_aspect((2, 2, 1))
        ax.set_xlabel("x (m)"), ax.set_ylabel("y (m)"), ax.set_zlabel("z (m)")
        ax.set_title(f"{profile.name}: {name} pose ({np.round(q, 2).tolist()} rad)", fontsize=8)
        ax.legend(loc="upper left", fontsize=7)
        path = out / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def _fail(command: str, message: str) -> int:
    print(f"sim2real {command}: {message}", file=sys.stderr)
    return 2
