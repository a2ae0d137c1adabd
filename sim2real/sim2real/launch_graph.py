"""One description of each launch graph, read by the launch files and by ``sim2real launch``.

``launch/graphs/<graph>.yaml`` lists the graph's launch arguments and nodes; both
``launch/<graph>.launch.py`` (``ros2 launch sim2real sim.launch.py`` after a colcon build)
and ``sim2real launch <graph>`` resolve it here, with :func:`resolve`, into the same
:class:`ResolvedNode` list (names, namespaces, parameter files, parameter overrides,
remappings), so the two launchers cannot drift apart. Pure Python + PyYAML: no ``launch``
or ``launch_ros`` import (they are not installable in the venv; the launch files import
them, this module does not).

Graph format (``graph_version: 1``)::

    description: one line
    arguments:                    # launch arguments = sim2real launch flags (--robot-profile ...)
      NAME: {default: "", description: "...", type: str|bool|paths}
                                  # paths: comma-separated (launch) or several values (CLI)
                                  # file paths, made absolute; a string-array parameter
    nodes:
      - name: policy              # node name (-r __node:=)
        package: policies         # ros2 launch: package + executable under lib/<package>/
        executable: policy_node
        entry_point: policy       # sim2real launch: `sim2real node <entry_point>` (sim2real.nodes)
        namespace: "{namespace}"  # "{ARG}" is replaced by an argument's value; "/" = root
        params_file: policy.yaml  # in params_dir (default: launch/config next to the graphs); or a
                                  # list of files, applied in order
        lifecycle: true           # a lifecycle node (activated through `parameters: {autostart: true}`)
        condition: record         # optional: started only if this argument is true / non-empty
        unless: composed          # optional: started only if this argument is false / empty
        composes: [sim_bridge, policy]   # optional: one process holding these nodes (their own
                                  # names; `name` only labels the process, no __node remap, which
                                  # would rename every node in it); parameters and overrides reach
                                  # each node that declares them
        parameters: {autostart: true}              # fixed values on top of the parameter file
        overrides: {policy: policy}                # parameter <- argument, when the argument is not ''
        remappings: [["from", "to"]]               # optional, "{ARG}" substituted

Parameter precedence (same in both launchers): parameter file(s), then ``parameters``, then
``overrides``.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sim_bridge.config import ConfigError, load_yaml_file

GRAPH_VERSION = 1
PACKAGE = "sim2real"            # the package whose share/ holds launch/, launch/graphs/, launch/config/
GRAPHS = ("sim", "real", "calibrate")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
_NODE_KEYS = {"name", "package", "executable", "entry_point", "namespace", "params_file", "lifecycle",
              "condition", "unless", "parameters", "overrides", "remappings", "composes"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class GraphError(ValueError):
    """A graph file or an argument value is invalid; the message names the file and field."""


@dataclass(frozen=True)
class Argument:
    name: str
    default: str
    description: str
    type: str = "str"          # str | bool | paths

    def parse(self, value) -> str | bool | list:
        if self.type == "paths":
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            return [str(Path(v.strip()).expanduser().resolve()) for v in map(str, items) if v.strip()]
        text = str(value).strip() if not isinstance(value, bool) else ("true" if value else "false")
        if self.type == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise GraphError(f"argument '{self.name}': expected true or false, got {value!r}")
        return text


@dataclass(frozen=True)
class NodeSpec:
    name: str
    package: str
    executable: str
    entry_point: str
    namespace: str
    params_files: tuple        # file names in params_dir, applied in order
    lifecycle: bool = False
    condition: str | None = None
    unless: str | None = None
    parameters: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)
    remappings: tuple = ()
    composes: tuple = ()       # node names of a composed process (empty: one node, `name`)


@dataclass(frozen=True)
class Graph:
    name: str
    path: Path
    description: str
    arguments: dict            # name -> Argument (file order)
    nodes: tuple               # NodeSpec, file order = start order


@dataclass(frozen=True)
class ResolvedNode:
    """One node to start, with everything either launcher needs."""
    name: str
    package: str
    executable: str
    entry_point: str
    namespace: str             # absolute ("/" or "/sim2real")
    params_files: tuple        # absolute paths, applied in order
    parameters: dict           # fixed parameters + overrides (typed), applied after the files
    remappings: tuple          # ((from, to), ...)
    lifecycle: bool
    composes: tuple = ()       # the nodes of a composed process (their names are their own)

    @property
    def fqn(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.name}"

    @property
    def node_name(self) -> str | None:
        """The ``__node`` remap: the node's name, or None for a composed process (a remap
        would give every node in it the same name)."""
        return None if self.composes else self.name

    def ros_args(self) -> list[str]:
        """``--ros-args`` for ``sim2real node <entry_point>`` (or ``ros2 run``): the same name,
        namespace, files, parameters and remappings the launch file gives launch_ros."""
        args = ["--ros-args"] + (["-r", f"__node:={self.node_name}"] if self.node_name else [])
        args += ["-r", f"__ns:={self.namespace}"]
        for path in self.params_files:
            args += ["--params-file", str(path)]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_param_text(value)}"]
        for src, dst in self.remappings:
            args += ["-r", f"{src}:={dst}"]
        return args


def _param_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # YAML-quote strings so '' , 'true' or '1' stay strings for rcl's parser
        return yaml.safe_dump(value, default_style="'").strip().removesuffix("\n...")
    if isinstance(value, list):
        return "[" + ", ".join(_param_text(v) for v in value) + "]"
    return str(value)


# --- where the files are ------------------------------------------------------------------
def launch_dir() -> Path:
    """The folder holding ``*.launch.py``, ``graphs/`` and ``config/``: the source checkout's
    ``launch/`` (editable install), else ``<prefix>/share/sim2real/launch`` (colcon or pip
    install; data_files of sim2real/setup.py), else the ament index."""
    from sim2real.cli import source_tree  # noqa: PLC0415

    candidates = []
    root = source_tree()
    if root is not None:
        candidates.append(root / "launch")
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / "launch")
    try:
        from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415

        candidates.append(Path(get_package_share_directory(PACKAGE)) / "launch")
    except Exception:  # noqa: BLE001 - not in an ament prefix
        pass
    for path in candidates:
        if (path / "graphs").is_dir():
            return path
    raise GraphError("launch graphs not found (looked in: " + ", ".join(str(p) for p in candidates) + ")")


# --- loading ------------------------------------------------------------------------------
def load_graph(graph: str | Path, graphs_dir: Path | None = None) -> Graph:
    """``graph``: a name (``sim``, ``real``: ``<graphs_dir>/<name>.yaml``) or a YAML path."""
    path = Path(graph)
    if path.suffix not in (".yaml", ".yml"):
        path = (graphs_dir if graphs_dir is not None else launch_dir() / "graphs") / f"{graph}.yaml"
    try:
        data = load_yaml_file(path)  # the stack's one safe reader (regular files, size and alias limits)
    except ConfigError as exc:
        raise GraphError(str(exc)) from None
    if not isinstance(data, dict) or data.get("graph_version") != GRAPH_VERSION:
        raise GraphError(f"{path}: graph_version must be {GRAPH_VERSION}")
    unknown = set(data) - {"graph_version", "description", "arguments", "nodes"}
    if unknown:
        raise GraphError(f"{path}: unknown keys {sorted(unknown)}")
    arguments = {}
    for name, spec in (data.get("arguments") or {}).items():
        if not isinstance(spec, dict) or set(spec) - {"default", "description", "type"}:
            raise GraphError(f"{path}: arguments.{name}: expected {{default, description, type}}")
        if spec.get("type", "str") not in ("str", "bool", "paths"):
            raise GraphError(f"{path}: arguments.{name}.type must be str, bool or paths")
        if not spec.get("description"):
            raise GraphError(f"{path}: arguments.{name}: a description is required")
        arguments[name] = Argument(name, str(spec.get("default", "")), str(spec["description"]),
                                   spec.get("type", "str"))
    nodes, names = [], set()
    for i, spec in enumerate(data.get("nodes") or []):
        where = f"{path}: nodes[{i}]"
        if not isinstance(spec, dict):
            raise GraphError(f"{where}: expected a mapping")
        unknown = set(spec) - _NODE_KEYS
        missing = {"name", "package", "executable", "entry_point", "namespace", "params_file"} - set(spec)
        if unknown or missing:
            raise GraphError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
        files = spec["params_file"] if isinstance(spec["params_file"], list) else [spec["params_file"]]
        composes = spec.get("composes") or []
        if not files or not isinstance(composes, list):
            raise GraphError(f"{where}: params_file must name a file (or a list of files), composes a list")
        node = NodeSpec(
            name=str(spec["name"]), package=str(spec["package"]), executable=str(spec["executable"]),
            entry_point=str(spec["entry_point"]), namespace=str(spec["namespace"]),
            params_files=tuple(map(str, files)), lifecycle=bool(spec.get("lifecycle", False)),
            condition=spec.get("condition"), unless=spec.get("unless"),
            parameters=dict(spec.get("parameters") or {}), overrides=dict(spec.get("overrides") or {}),
            remappings=tuple((str(a), str(b)) for a, b in (spec.get("remappings") or [])),
            composes=tuple(map(str, composes)))
        if node.composes and node.lifecycle:
            raise GraphError(f"{where} ({node.name}): a composed process is not one lifecycle node "
                             "(its nodes start through their autostart parameter); drop lifecycle")
        used = set(node.overrides.values()) | set(_PLACEHOLDER.findall(node.namespace))
        used |= {a for pair in node.remappings for s in pair for a in _PLACEHOLDER.findall(s)}
        used |= {a for a in (node.condition, node.unless) if a is not None}
        if used - set(arguments):
            raise GraphError(f"{where} ({node.name}): undeclared arguments {sorted(used - set(arguments))}")
        if (node.namespace, node.name) in names:
            raise GraphError(f"{where}: duplicate node {node.name}")
        names.add((node.namespace, node.name))
        nodes.append(node)
    return Graph(path.stem, path, str(data.get("description", "")), arguments, tuple(nodes))


# --- resolving ----------------------------------------------------------------------------
def argument_values(graph: Graph, values: dict | None = None) -> dict:
    """Typed argument values: the defaults, updated by ``values`` (strings as launch gives them,
    or Python values); unknown names -> GraphError."""
    values = dict(values or {})
    unknown = set(values) - set(graph.arguments)
    if unknown:
        raise GraphError(f"graph '{graph.name}': unknown arguments {sorted(unknown)} "
                         f"(known: {sorted(graph.arguments)})")
    return {name: arg.parse(values.get(name, arg.default)) for name, arg in graph.arguments.items()}


def _namespace(text: str) -> str:
    text = text.strip().strip("/")
    return "/" + text if text else "/"


def _slashes(name: str) -> str:
    """One '/' between name parts ("/{namespace}/x" with namespace '/sim2real' is /sim2real/x)."""
    return re.sub(r"/{2,}", "/", name)


def resolve(graph: Graph, values: dict | None = None, *, base_dir: Path | None = None) -> list[ResolvedNode]:
    """The nodes to start for these argument values, in start order. ``base_dir``: the folder
    whose ``config/`` holds the parameter files when ``params_dir`` is '' (default: the graph
    file's parent's parent, i.e. ``launch/``)."""
    args = argument_values(graph, values)
    params_dir = Path(args["params_dir"]).expanduser() if args.get("params_dir") else \
        (base_dir if base_dir is not None else graph.path.parent.parent) / "config"

    def sub(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: str(args[m.group(1)]), text)

    out = []
    for node in graph.nodes:
        if (node.condition is not None and not args[node.condition]) or (node.unless is not None and args[node.unless]):
            continue
        params_files = tuple((params_dir / name).resolve() for name in node.params_files)
        for path in params_files:
            if not path.is_file():
                raise GraphError(f"node {node.name}: parameter file {path} not found")
        parameters = dict(node.parameters)
        for param, arg in node.overrides.items():
            value = args[arg]
            if value == "" or value == []:
                continue       # '' (or no paths) = keep the parameter file's value
            parameters[param] = str(Path(value).expanduser().resolve()) if param == "output" else value
        out.append(ResolvedNode(
            name=node.name, package=node.package, executable=node.executable, entry_point=node.entry_point,
            namespace=_namespace(sub(node.namespace)), params_files=params_files, parameters=parameters,
            remappings=tuple((_slashes(sub(a)), _slashes(sub(b))) for a, b in node.remappings),
            lifecycle=node.lifecycle, composes=node.composes))
    return out


# --- ros2 launch --------------------------------------------------------------------------
def launch_description(graph_file: str | Path):
    """The ``LaunchDescription`` of a graph file, for ``launch/<graph>.launch.py``: one
    DeclareLaunchArgument per argument, and an OpaqueFunction that resolves the graph with
    the arguments' values (:func:`resolve`, as ``sim2real launch`` does) into launch_ros
    ``Node`` / ``LifecycleNode`` actions. ``launch`` and ``launch_ros`` are imported here,
    only when a launch file calls this (they exist on a ROS 2 install, not in the venv).

    Lifecycle nodes are brought to active by their own ``autostart: true`` parameter (see
    the graphs), which configures and activates them at construction exactly as
    ``sim2real node`` does; no ChangeState events are emitted (they would be rejected: the
    node is already active), and launch_ros' LifecycleNode(autostart=...) is not used
    (only launch_ros >= 0.26.7 has it).

    A node whose process exits (a policy node that fails to configure exits with 2) shuts the
    whole graph down, as ``sim2real launch`` stops every node when one exits: a sim bridge
    or a real bridge must not keep running with nothing commanding it.
    """
    from launch import LaunchDescription  # noqa: PLC0415
    from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler  # noqa: PLC0415
    from launch.event_handlers import OnProcessExit  # noqa: PLC0415
    from launch.events import Shutdown  # noqa: PLC0415
    from launch.substitutions import LaunchConfiguration  # noqa: PLC0415
    from launch_ros.actions import LifecycleNode, Node  # noqa: PLC0415

    def shutdown_when_it_exits(fqn: str):
        def on_exit(event, context):
            return [EmitEvent(event=Shutdown(
                reason=f"{fqn} exited with code {event.returncode}: the graph stops (as sim2real launch does)"))]
        return on_exit

    path = Path(graph_file).resolve()
    graph = load_graph(path)
    base = path.parent.parent  # launch/ (or share/sim2real/launch/): holds config/

    def nodes(context, *args, **kwargs):
        values = {name: LaunchConfiguration(name).perform(context) for name in graph.arguments}
        actions = []
        for node in resolve(graph, values, base_dir=base):
            action = (LifecycleNode if node.lifecycle else Node)(
                package=node.package, executable=node.executable, name=node.node_name, namespace=node.namespace,
                parameters=[*map(str, node.params_files), node.parameters], remappings=list(node.remappings),
                output="screen", emulate_tty=True)
            actions += [action, RegisterEventHandler(OnProcessExit(target_action=action,
                                                                   on_exit=shutdown_when_it_exits(node.fqn)))]
        return actions

    return LaunchDescription([
        *(DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description)
          for arg in graph.arguments.values()),
        OpaqueFunction(function=nodes),
    ])


# --- sim2real launch ----------------------------------------------------------------------
def add_launch_command(subparsers) -> None:
    import argparse  # noqa: PLC0415

    p = subparsers.add_parser(
        "launch", help="start a launch graph (sim | real | calibrate) as one process per node, like ros2 launch",
        description="Start the nodes of launch/graphs/<graph>.yaml, the description launch/<graph>.launch.py "
                    "reads too, each as `sim2real node <name> --ros-args ...` in its own process. Ctrl-C or "
                    "--duration-s stops them (SIGINT, then SIGTERM after --stop-timeout-s).")
    sub = p.add_subparsers(dest="graph", metavar="GRAPH", required=True)
    try:
        directory = launch_dir()
        graphs = {name: load_graph(name, directory / "graphs") for name in GRAPHS}
    except GraphError as exc:
        message = str(exc)  # `exc` is unbound after the except block; the lambda runs later
        p.set_defaults(func=lambda _args: _fail(message))
        return
    for name, graph in graphs.items():
        g = sub.add_parser(name, help=graph.description, description=graph.description)
        for arg in graph.arguments.values():
            flag = "--" + arg.name.replace("_", "-")
            if arg.type == "bool":
                g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{arg.description} (default {arg.default})")
            elif arg.type == "paths":
                g.add_argument(flag, nargs="+", default=None, metavar="PATH", help=arg.description)
            else:
                g.add_argument(flag, default=None, metavar=arg.name.upper(),
                               help=f"{arg.description} (default {arg.default!r})")
        g.add_argument("--duration-s", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
        g.add_argument("--stop-timeout-s", type=float, default=10.0,
                       help="after SIGINT, wait this long for each node before SIGTERM (default 10)")
        g.add_argument("--dry-run", action="store_true", help="print the node commands and exit")
        g.set_defaults(func=run_launch, graph_obj=graph, launch_base=directory)


def _fail(message: str) -> int:
    print(f"sim2real launch: {message}", file=sys.stderr)
    return 2


def node_command(node: ResolvedNode) -> list[str]:
    """The process for one node: ``sim2real node <entry_point> --ros-args ...`` with this interpreter."""
    return [sys.executable, "-m", "sim2real.cli", "node", node.entry_point, *node.ros_args()]


def run_launch(args) -> int:
    import os  # noqa: PLC0415
    import shlex  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import time  # noqa: PLC0415

    graph: Graph = args.graph_obj
    values = {name: getattr(args, name) for name in graph.arguments if getattr(args, name, None) is not None}
    try:
        nodes = resolve(graph, values, base_dir=args.launch_base)
    except GraphError as exc:
        return _fail(str(exc))
    record = argument_values(graph, values).get("record")
    if record and Path(record).expanduser().exists():
        return _fail(f"{record} exists (a new bag needs a new folder)")
    if args.duration_s < 0:
        return _fail("--duration-s must be >= 0")
    commands = [node_command(n) for n in nodes]
    if args.dry_run:
        for node, cmd in zip(nodes, commands):
            print(f"{node.fqn}: {shlex.join(cmd)}")
        return 0

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: list[tuple[ResolvedNode, subprocess.Popen]] = []
    failed: list[str] = []
    until = f"for {args.duration_s:g} s" if args.duration_s > 0 else "until Ctrl-C"
    print(f"sim2real launch {graph.name}: {len(nodes)} node(s) from {graph.path} {until}: "
          + ", ".join(n.fqn for n in nodes), flush=True)
    try:
        for node, cmd in zip(nodes, commands):
            # own process group: a terminal Ctrl-C reaches only this process, which then stops
            # the nodes once each (a second SIGINT would interrupt a node's clean shutdown)
            procs.append((node, subprocess.Popen(cmd, stdin=subprocess.DEVNULL, process_group=0, env=os.environ)))
        end = time.monotonic() + args.duration_s if args.duration_s > 0 else float("inf")
        while stop["signal"] is None and time.monotonic() < end:
            exited = [(n, p.returncode) for n, p in procs if p.poll() is not None]
            if exited:
                failed += [f"{n.fqn} exited early with code {rc}" for n, rc in exited]
                break
            time.sleep(0.1)
    finally:
        for _node, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for node, proc in reversed(procs):
            try:
                rc = proc.wait(timeout=args.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=3.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                failed.append(f"{node.fqn} did not stop within {args.stop_timeout_s:g} s of SIGINT")
                continue
            if rc != 0 and not any(f.startswith(node.fqn + " ") for f in failed):
                failed.append(f"{node.fqn} exited with code {rc} after SIGINT")
        for s, handler in previous.items():
            signal.signal(s, handler)
    for line in failed:
        print(f"sim2real launch: {line}", file=sys.stderr)
    if failed:
        return 1
    print(f"sim2real launch {graph.name}: all {len(procs)} node(s) stopped cleanly", flush=True)
    return 0
