"""``sim2real``: the stack's single command line.

Subcommands come from the ``sim2real.commands`` entry-point group (this package's own, and
any an installed plug-in adds), and ROS nodes from the ``sim2real.nodes`` group of every
library: ``sim2real node NAME --ros-args ...`` starts one.

Most commands are *typed*: one frozen dataclass per command (``SimConfig``, ``RealConfig``,
...), whose field docstrings are its ``--help``; :func:`add_typed_command` registers it and
tyro turns the command line into the dataclass (``node`` and ``bench`` pass their arguments
through and stay plain argparse).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import signal
import sys
import threading
from pathlib import Path

DISCOVERY_ENV = "ROS_AUTOMATIC_DISCOVERY_RANGE"


def _entry_points(group: str) -> dict:
    # imported here, not at the top: it is the slowest import of a node's start (email, zipfile,
    # ...), and main() reads the entry points inside _DeferredSigint, where a launcher's early
    # SIGINT is a clean stop rather than a KeyboardInterrupt in the module's imports
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=group)}


def add_node_command(subparsers) -> None:
    nodes = sorted(_entry_points("sim2real.nodes"))
    p = subparsers.add_parser(
        "node", help="run one ROS 2 node of the stack",
        description="Run one ROS 2 node. Everything after the node name goes to ROS, e.g. "
                    "`sim2real node sim_bridge --ros-args --params-file launch/config/sim.yaml`. "
                    f"Nodes: {', '.join(nodes)}.")
    p.add_argument("name", choices=nodes, help="node to run")
    p.add_argument("ros_args", nargs=argparse.REMAINDER, help="arguments for ROS (--ros-args ...)")
    p.set_defaults(func=_run_node)


class _DeferredSigint:
    """SIGINT only sets a flag while a node process is still starting (building the parser,
    importing its commands and its node). A launcher (sim2real launch, ros2 launch) may stop a
    node that early: a KeyboardInterrupt raised inside a C extension's initialisation (NumPy's,
    MuJoCo's) surfaces as an ImportError, which the parser's loop over plug-in commands would
    report as "command unavailable" and go on: the node then started with its stop lost, and ran
    until killed (seen in a fresh-clone CI). An ignored SIGINT (a background job) stays ignored."""

    def __init__(self):
        self.stopped = False
        self._previous = None

    def __enter__(self) -> "_DeferredSigint":
        previous = signal.getsignal(signal.SIGINT)  # None: a handler not set from Python; left alone
        if previous not in (signal.SIG_IGN, None) and threading.current_thread() is threading.main_thread():
            self._previous = previous
            signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame) -> None:
        self.stopped = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _run_node(args) -> int:
    with _DeferredSigint() as deferred:  # the node's imports (main() deferred the parser's)
        main = _entry_points("sim2real.nodes")[args.name].load()
    if deferred.stopped:
        return 0
    return int(main([f"sim2real-{args.name}", *args.ros_args]) or 0)


def source_tree() -> Path | None:
    """The repository checkout this package runs from (editable install), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "bench").is_dir() else None


def add_bench_command(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="run a benchmark from bench/ (prints ratios against its baseline)",
        description="Run bench/NAME.py from the source checkout; extra arguments go to the benchmark.")
    p.add_argument("name", help="benchmark name, e.g. 'env' (bench/env.py) or 'policy-node' (bench/policy_node.py)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for the benchmark (--help)")
    p.set_defaults(func=_run_bench)


def _run_bench(args) -> int:
    root = source_tree()
    if root is None:
        print("sim2real bench: benchmarks live in the bench/ folder of a source checkout; "
              "install the packages editable from a clone (make setup)", file=sys.stderr)
        return 2
    script = root / "bench" / f"{args.name.replace('-', '_')}.py"  # policy-node -> bench/policy_node.py
    if not script.is_file():
        known = sorted(p.stem.replace("_", "-") for p in (root / "bench").glob("*.py") if not p.stem.startswith("_"))
        print(f"sim2real bench: no benchmark '{args.name}'; available: {known}", file=sys.stderr)
        return 2
    sys.argv = [str(script), *args.bench_args]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def add_typed_command(subparsers, name: str, config_cls, run, help: str, description: str | None = None) -> None:
    """Register ``sim2real NAME``: its options are the fields of ``config_cls`` (a dataclass whose
    field docstrings are the help); ``run(config) -> int`` runs it."""
    p = subparsers.add_parser(name, help=help, add_help=False)  # --help goes to tyro
    p.set_defaults(func=None, typed=(name, config_cls, run, description))


def _run_typed(typed, argv: list[str]) -> int:
    import tyro  # noqa: PLC0415

    name, config_cls, run, description = typed
    config = tyro.cli(config_cls, args=argv, prog=f"sim2real {name}", description=description,
                      config=(tyro.conf.OmitArgPrefixes,))
    return int(run(config) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sim2real", description="ROS 2 sim-to-real stack for robot arms.",
        epilog=f"DDS discovery: {DISCOVERY_ENV} defaults to LOCALHOST here; "
               "widen it (e.g. SUBNET) to reach a robot on the network.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, ep in sorted(_entry_points("sim2real.commands").items()):
        try:
            ep.load()(sub)
        except Exception as exc:  # noqa: BLE001 - one broken package must not take the CLI down
            print(f"sim2real: command '{name}' unavailable ({ep.value}: {exc})", file=sys.stderr)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault(DISCOVERY_ENV, "LOCALHOST")
    words = sys.argv[1:] if argv is None else list(argv)
    is_node = words[:1] == ["node"]
    try:
        with _DeferredSigint() if is_node else contextlib.nullcontext() as deferred:
            parser = build_parser()
            args, rest = parser.parse_known_args(argv)
        if deferred is not None and deferred.stopped:
            return 0
        typed = getattr(args, "typed", None)
        if rest and typed is None:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if typed is None and not getattr(args, "func", None):
            parser.print_help()
            return 1
        return _run_typed(typed, rest) if typed is not None else int(args.func(args) or 0)
    except KeyboardInterrupt:
        # Ctrl-C (or a launcher's SIGINT) is how a ROS node is stopped, also while it is still
        # starting: a clean exit, as rclpy nodes do; any other command was interrupted (130)
        return 0 if is_node else 130


if __name__ == "__main__":
    sys.exit(main())
