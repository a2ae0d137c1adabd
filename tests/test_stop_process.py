"""The node-process tests stop a node as a launcher does (SIGINT). One that does not stop is
asked for every thread's stack (SIGUSR1: run_node registers faulthandler for it) before it is
killed, so a hung shutdown in CI comes with where it hung. A composed process hung once in a
fresh-clone CI (2026-12-07) and left nothing but its exit code -9."""
from __future__ import annotations

import subprocess
import sys

from rigs import stop_process

HANGS_ON_SIGINT = """
import faulthandler, signal, sys, time
faulthandler.register(signal.SIGUSR1, all_threads=True)
signal.signal(signal.SIGINT, signal.SIG_IGN)
print("up", flush=True)
def stuck_in_shutdown():
    time.sleep(60)
stuck_in_shutdown()
"""


def test_a_process_that_ignores_sigint_is_killed_with_its_stacks_in_the_output():
    proc = subprocess.Popen([sys.executable, "-c", HANGS_ON_SIGINT], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout.readline().strip() == "up"
    out = stop_process(proc, 1.0)
    assert proc.returncode == -9
    assert "stuck_in_shutdown" in out and "thread 0x" in out, out


def test_run_node_registers_the_stack_dump_signal():
    """The node processes' main() (sim_bridge.executor.run_node) does the registering."""
    import inspect

    from sim_bridge.executor import run_node
    assert "faulthandler.register(signal.SIGUSR1" in inspect.getsource(run_node)
