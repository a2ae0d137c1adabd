"""launch/*.launch.py, launch/graphs/*.yaml and `sim2real launch`.

`launch` / `launch_ros` are not installable in the venv (no ros-jazzy-launch* wheels on the
configured indexes), so `ros2 launch` itself is not run here. Instead:
  * the launch files are parsed (ast) and every file they reference must exist;
  * they are executed against minimal stand-ins for the launch / launch_ros classes they
    use, and the nodes they create must equal what sim2real.launch_graph.resolve returns,
    which is also what `sim2real launch` starts (one code path);
  * (slow) a colcon build must install the launch files, graphs and config into
    share/sim2real/launch/ and every graph node's executable into lib/<package>/;
  * (ros, slow) `sim2real launch sim|real --emulator|calibrate` run, log that their nodes are up, and stop cleanly on SIGINT.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import types
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from rigs import run_until_logged

from sim2real import launch_graph
from sim2real.cli import main as sim2real_main
from sim2real.launch_graph import GraphError, load_graph, node_command, resolve

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
GRAPHS = {g: LAUNCH / "graphs" / f"{g}.yaml" for g in ("sim", "real", "calibrate")}
LAUNCH_FILES = {g: LAUNCH / f"{g}.launch.py" for g in GRAPHS}
COMMON_ARGS = {"robot_profile", "policy", "namespace", "use_sim_time", "record", "params_dir"}
EXPECTED_ARGS = {"sim": COMMON_ARGS | {"randomization_file", "task", "randomization_dir", "composed"},
                 "real": COMMON_ARGS | {"emulator", "task", "composed"},
                 "calibrate": {"bags", "prior", "output", "policy", "robot_profile", "randomization_file",
                               "namespace", "params_dir", "data_dir", "output_dir"}}


# --- static: the launch files -------------------------------------------------------------
@pytest.mark.parametrize("graph", sorted(LAUNCH_FILES))
def test_launch_file_parses_and_references_existing_files(graph):
    path = LAUNCH_FILES[graph]
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    imported = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    # one implementation for every launch file: launch_graph.launch_description (which builds the
    # launch / launch_ros actions from launch_graph.resolve, see the stand-in test below)
    assert ("sim2real.launch_graph", "launch_description") in imported
    # every string literal that looks like a file of ours must exist next to the launch file
    literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    referenced = [s for s in literals if s.endswith((".yaml", ".py")) and "\n" not in s]
    assert f"{graph}.yaml" in referenced
    for name in referenced:
        assert (path.parent / "graphs" / name).is_file() or (path.parent / name).is_file(), name


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_graph_arguments_and_references(graph):
    g = load_graph(GRAPHS[graph])
    assert set(g.arguments) == EXPECTED_ARGS[graph]
    assert all(a.description for a in g.arguments.values())
    assert g.arguments["namespace"].default == "sim2real"
    console = {ep.name for ep in entry_points(group="console_scripts")}
    nodes = {ep.name for ep in entry_points(group="sim2real.nodes")}
    for node in g.nodes:
        assert all((LAUNCH / "config" / f).is_file() for f in node.params_files), node.params_files
        assert node.entry_point in nodes, f"{node.entry_point} is no sim2real.nodes entry point"
        assert node.executable in console, f"{node.executable} is no console script"
        setup_py = (REPO / node.package / "setup.py").read_text()
        assert f'"{node.executable} = ' in setup_py, f"{node.executable} not a console script of {node.package}"
        # each parameter file's key matches its node's name in any namespace (a composed
        # process: one file per node it holds, in the same order)
        names = node.composes or (node.name,)
        assert len(names) == len(node.params_files), node
        for name, file in zip(names, node.params_files):
            assert f"/**/{name}:" in (LAUNCH / "config" / file).read_text(), (name, file)
    lifecycle = {n.name for n in g.nodes if n.lifecycle}
    assert lifecycle == {"sim": {"policy"}, "real": {"policy", "real_bridge"}, "calibrate": set()}[graph]
    assert all(g.nodes[[n.name for n in g.nodes].index(x)].parameters.get("autostart") is True for x in lifecycle)


def test_resolve_conditions_namespaces_and_overrides(tmp_path):
    sim = load_graph(GRAPHS["sim"])
    assert [n.name for n in resolve(sim)] == ["sim_bridge", "policy"]
    nodes = {n.name: n for n in resolve(sim, {"record": str(tmp_path / "bag"), "policy": "reach_mlp",
                                              "namespace": "arm1/", "use_sim_time": "true",
                                              "randomization_file": "none"})}
    assert list(nodes) == ["sim_bridge", "policy", "recorder"]
    assert {n.namespace for n in nodes.values()} == {"/arm1"}
    assert nodes["policy"].parameters == {"autostart": True, "policy": "reach_mlp", "use_sim_time": True}
    assert nodes["sim_bridge"].parameters == {"randomization_file": "none"}
    assert nodes["recorder"].parameters["output"] == str((tmp_path / "bag").resolve())
    assert nodes["recorder"].parameters["policy_name"] == "reach_mlp"
    assert nodes["policy"].params_files == ((LAUNCH / "config" / "policy.yaml").resolve(),)

    real = load_graph(GRAPHS["real"])
    assert [n.name for n in resolve(real)] == ["real_bridge", "policy"]
    nodes = {n.name: n for n in resolve(real, {"emulator": "true"})}
    assert list(nodes) == ["arm_emulator", "real_bridge", "policy"]
    assert nodes["arm_emulator"].namespace == "/" and nodes["real_bridge"].namespace == "/sim2real"
    assert nodes["real_bridge"].ros_args() == [
        "--ros-args", "-r", "__node:=real_bridge", "-r", "__ns:=/sim2real",
        "--params-file", str((LAUNCH / "config" / "real_bridge.yaml").resolve()),
        "-p", "autostart:=true", "-p", "use_sim_time:=false"]
    assert resolve(real, {"policy": "true"})[1].ros_args()[-4:-2] == ["-p", "policy:='true'"]  # stays a string

    # composed: one process holding both nodes under their own names (no __node remap), both
    # parameter files, and every parameter passed to the process (each node takes its own)
    for graph, process, held in (("sim", "sim_policy", ("sim_bridge", "policy")),
                                 ("real", "real_policy", ("real_bridge", "policy"))):
        g = load_graph(GRAPHS[graph])
        (composed,) = resolve(g, {"composed": "true", "policy": "reach_mlp"})
        assert (composed.name, composed.composes, composed.node_name, composed.lifecycle) == (process, held, None, False)
        assert composed.fqn == f"/sim2real/{process}"
        assert composed.parameters == {"autostart": True, "trigger": "state", "policy": "reach_mlp"} | (
            {"use_sim_time": False} if graph == "real" else {})  # real: every node follows use_sim_time
        args = composed.ros_args()
        assert "__node:=" not in " ".join(args) and args[:3] == ["--ros-args", "-r", "__ns:=/sim2real"]
        assert [args[i + 1] for i, a in enumerate(args) if a == "--params-file"] == \
            [str((LAUNCH / "config" / f"{n}.yaml").resolve()) for n in held]
    assert [n.name for n in resolve(real, {"composed": "true", "emulator": "true"})] == ["arm_emulator", "real_policy"]

    cal = load_graph(GRAPHS["calibrate"])
    nodes = {n.name: n for n in resolve(cal, {"bags": f"{tmp_path}/a, {tmp_path}/b", "namespace": "arm2"})}
    assert list(nodes) == ["sim_bridge", "calibration"]
    assert nodes["calibration"].parameters == {"push_to": "sim_bridge", "auto_calibrate": True,
                                               "bags": [str(tmp_path / "a"), str(tmp_path / "b")]}
    assert nodes["calibration"].ros_args()[-2:] == ["-p", f"bags:=['{tmp_path / 'a'}', '{tmp_path / 'b'}']"]
    assert "bags" not in resolve(cal)[1].parameters  # no bags: the node waits for ~/new_bag

    with pytest.raises(GraphError, match="unknown arguments"):
        resolve(real, {"randomization_file": "none"})
    with pytest.raises(GraphError, match="true or false"):
        resolve(real, {"emulator": "maybe"})
    with pytest.raises(GraphError, match="not found"):
        resolve(real, {"params_dir": str(tmp_path)})


def test_graph_file_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("graph_version: 1\narguments: {}\nnodes:\n  - {name: a, package: p, executable: e, "
                   "entry_point: e, namespace: '{ns}', params_file: a.yaml}\n")
    with pytest.raises(GraphError, match=r"nodes\[0\].*undeclared arguments \['ns'\]"):
        load_graph(bad)
    bad.write_text("graph_version: 2\n")
    with pytest.raises(GraphError, match="graph_version"):
        load_graph(bad)
    bad.write_text("graph_version: 1\narguments: {}\nnodes:\n  - {name: a, package: p, executable: e, "
                   "entry_point: e, namespace: /, params_file: [a.yaml, b.yaml], composes: [x, y], "
                   "lifecycle: true}\n")
    with pytest.raises(GraphError, match=r"nodes\[0\] \(a\): a composed process is not one lifecycle node"):
        load_graph(bad)
    bad.write_text("graph_version: 1\narguments: {}\nnodes:\n  - {name: a, package: p, executable: e, "
                   "entry_point: e, namespace: /, params_file: a.yaml, unless: composed}\n")
    with pytest.raises(GraphError, match=r"nodes\[0\] \(a\): undeclared arguments \['composed'\]"):
        load_graph(bad)


# --- the launch files, run against stand-ins for launch / launch_ros ------------------------
class _Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _fake_launch_modules() -> dict:
    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    mods = {name: types.ModuleType(name) for name in
            ("launch", "launch.actions", "launch.substitutions", "launch.event_handlers", "launch.events",
             "launch_ros", "launch_ros.actions")}
    mods["launch"].LaunchDescription = lambda actions: list(actions)
    for name in ("DeclareLaunchArgument", "OpaqueFunction", "RegisterEventHandler", "EmitEvent"):
        setattr(mods["launch.actions"], name, type(name, (_Action,), {}))
    mods["launch.event_handlers"].OnProcessExit = type("OnProcessExit", (_Action,), {})
    mods["launch.events"].Shutdown = type("Shutdown", (_Action,), {})
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["launch_ros.actions"].Node = type("Node", (_Action,), {})
    mods["launch_ros.actions"].LifecycleNode = type("LifecycleNode", (_Action,), {})
    return mods


def _run_launch_file(path: Path, monkeypatch, arguments: dict) -> tuple[list, list]:
    """(DeclareLaunchArgument kwargs, node actions) of a launch file for these arguments."""
    for name, module in _fake_launch_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    namespace = {"__file__": str(path), "__name__": path.stem.replace(".", "_")}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 - our own launch file
    description = namespace["generate_launch_description"]()
    declared = [a.kwargs | {"name": a.args[0]} for a in description if type(a).__name__ == "DeclareLaunchArgument"]
    opaque = [a for a in description if type(a).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    context = {d["name"]: d["default_value"] for d in declared} | arguments
    return declared, opaque[0].kwargs["function"](context)


@pytest.mark.parametrize("graph,arguments", [
    ("sim", {}),
    ("sim", {"record": "/nonexistent-sim2real-test/bag", "policy": "reach_mlp", "namespace": "arm1"}),
    ("sim", {"composed": "true", "policy": "reach_mlp"}),
    ("real", {"composed": "true", "emulator": "true"}),
    ("real", {}),
    ("real", {"emulator": "true", "record": "/nonexistent-sim2real-test/bag", "use_sim_time": "false"}),
    ("calibrate", {}),
    ("calibrate", {"bags": "/nonexistent-sim2real-test/b1,/nonexistent-sim2real-test/b2", "prior": "none"}),
])
def test_launch_file_starts_what_the_graph_and_the_cli_start(graph, arguments, monkeypatch, capsys):
    declared, actions = _run_launch_file(LAUNCH_FILES[graph], monkeypatch, arguments)
    g = load_graph(GRAPHS[graph])
    assert [(d["name"], d["default_value"], d["description"]) for d in declared] == \
        [(a.name, a.default, a.description) for a in g.arguments.values()]
    expected = resolve(g, arguments)
    # each node is followed by a handler: its process exiting shuts the graph down, as
    # `sim2real launch` stops the graph when a node exits (a failed policy node exits with 2)
    nodes, handlers = actions[0::2], actions[1::2]
    assert len(nodes) == len(handlers) == len(expected)
    for node, handler, n in zip(nodes, handlers, expected):
        assert type(handler).__name__ == "RegisterEventHandler"
        (on_exit,) = handler.args
        assert type(on_exit).__name__ == "OnProcessExit" and on_exit.kwargs["target_action"] is node
        (emit,) = on_exit.kwargs["on_exit"](types.SimpleNamespace(returncode=2), {})
        (shutdown,) = [emit.kwargs["event"]]
        assert type(shutdown).__name__ == "Shutdown" and f"{n.fqn} exited with code 2" in shutdown.kwargs["reason"]
    got = [(type(a).__name__, a.kwargs) for a in nodes]
    assert got == [("LifecycleNode" if n.lifecycle else "Node",
                    {"package": n.package, "executable": n.executable, "name": n.node_name, "namespace": n.namespace,
                     "parameters": [*map(str, n.params_files), n.parameters], "remappings": list(n.remappings),
                     "output": "screen", "emulate_tty": True}) for n in expected]

    # `sim2real launch` resolves the same graph file into the same nodes and commands
    flags = []
    for key, value in arguments.items():
        if g.arguments[key].type == "bool":
            flags.append(("--" if value == "true" else "--no-") + key.replace("_", "-"))
        elif g.arguments[key].type == "paths":
            flags += ["--" + key.replace("_", "-"), *value.split(",")]
        else:
            flags += ["--" + key.replace("_", "-"), value]
    assert sim2real_main(["launch", graph, *flags, "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    import shlex  # noqa: PLC0415

    assert lines == [f"{n.fqn}: {shlex.join(node_command(n))}" for n in expected]


def test_cli_finds_the_graphs_of_the_checkout():
    assert launch_graph.launch_dir() == LAUNCH


# --- install layout (colcon) --------------------------------------------------------------
@pytest.mark.slow
def test_colcon_installs_launch_files_config_and_executables(tmp_path):
    from test_colcon_build import COLCON, WS_SRC, _tail  # noqa: PLC0415 - tests/ is on sys.path (rootdir conftest)

    if not COLCON.is_file():
        pytest.fail(f"colcon not found next to {sys.executable} (run `make setup`)")
    env = {k: v for k, v in os.environ.items() if k not in ("COLCON_DEFAULTS_FILE", "COLCON_PREFIX_PATH",
                                                             "AMENT_PREFIX_PATH")}
    env["COLCON_HOME"] = str(tmp_path / "colcon_home")
    graphs = [load_graph(p) for p in GRAPHS.values()]
    packages = sorted({n.package for g in graphs for n in g.nodes} | {"sim2real"})
    install = tmp_path / "install"
    proc = subprocess.run(
        [str(COLCON), "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(WS_SRC),
         "--build-base", str(tmp_path / "build"), "--install-base", str(install),
         "--packages-select", *packages, "--event-handlers", "console_cohesion+"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=240)
    assert proc.returncode == 0, _tail(proc.stdout)

    share = install / "sim2real" / "share" / "sim2real" / "launch"
    for source in [*LAUNCH.glob("*.launch.py"), *LAUNCH.glob("graphs/*.yaml"), *LAUNCH.glob("config/*.yaml")]:
        installed = share / source.relative_to(LAUNCH)
        assert installed.is_file(), f"{installed.relative_to(install)} not installed"
        assert installed.read_bytes() == source.read_bytes()
    for g in graphs:
        for n in g.nodes:
            exe = install / n.package / "lib" / n.package / n.executable
            assert exe.is_file() and os.access(exe, os.X_OK), f"{exe.relative_to(install)} missing"
    # what `ros2 launch sim2real sim.launch.py` imports: the installed helper, and it resolves
    # the installed graph against the installed config
    site = next((install / "sim2real" / "lib").glob("python3*/site-packages"))
    check = subprocess.run(
        [sys.executable, "-I", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
         "import sim2real.launch_graph as lg; assert lg.__file__.startswith(sys.argv[1]), lg.__file__; "
         "g = lg.load_graph(Path(sys.argv[2]) / 'graphs' / 'real.yaml'); "
         "print([str(f) for n in lg.resolve(g, {'emulator': 'true'}, base_dir=Path(sys.argv[2])) for f in n.params_files])",
         str(site), str(share)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert str(share / "config" / "arm_emulator.yaml") in check.stdout


# --- sim2real launch, for real ------------------------------------------------------------
@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize("graph,flags,started,marker", [
    ("sim", [], 2, "active: policy"),   # the lifecycle policy node reached active
    ("real", ["--emulator"], 3, "active: policy"),
    ("sim", ["--composed"], 1, "active: policy"),   # one process: bridge + policy (sim_policy)
    ("real", ["--emulator", "--composed"], 2, "active: policy"),   # emulator + real_policy
    ("calibrate", [], 2, "calibration node ready"),
])
def test_sim2real_launch_runs_and_stops_cleanly(graph, flags, started, marker):
    """Started until Ctrl-C; SIGINT once every line the graph must log has appeared (not after a
    fixed time: a fresh-clone CI on a loaded machine once stopped the calibrate graph after 5 s,
    before its calibration node had logged that it was ready)."""
    wanted = [marker]
    if graph == "real":
        wanted += ["arm emulator up", "/sim2real/real_policy" if "--composed" in flags else "/sim2real/real_bridge"]
    if "--composed" in flags:  # the graph's fixed parameters reached the policy node inside the process
        wanted += ["trigger 'state'", "composed with the policy node intra-process"]
    # the launcher stops its nodes within --stop-timeout-s of SIGINT (a margin for a busy machine:
    # the fresh-clone CI once saw the real bridge miss the default 10 s); one that never stops fails
    cmd = [sys.executable, "-m", "sim2real.cli", "launch", graph, *flags, "--stop-timeout-s", "30"]
    logged, returncode, out = run_until_logged(cmd, wanted)
    assert logged, ([w for w in wanted if w not in out], out[-4000:])
    assert returncode == 0, out[-4000:]
    assert f"all {started} node(s) stopped cleanly" in out, out[-4000:]
