"""The `sim2real` command line as a user runs it (subprocesses of the installed script)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SIM2REAL = str(Path(sys.executable).with_name("sim2real"))
REPO = Path(__file__).resolve().parents[2]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([SIM2REAL, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ), stdin=subprocess.DEVNULL)


def test_help_lists_the_subcommands():
    out = run("--help")
    assert out.returncode == 0, out.stderr
    for command in ("node", "sim", "bench"):
        assert command in out.stdout
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE" in out.stdout


@pytest.mark.parametrize("command", ["sim", "real", "record", "train", "eval", "export", "calibrate", "loop"])
def test_every_typed_command_documents_each_option_with_its_default_once(command):
    out = run(command, "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split("╭", 1)[-1].split())  # the option boxes; tyro wraps long lines
    assert f"usage: sim2real {command}" in out.stdout
    assert "(default: " in text or "(required)" in text
    assert "(default " not in text.replace("(default: ", ""), "a default printed twice"


def test_sim_options_come_from_its_config_dataclass():
    from sim2real.sim import SimConfig
    out = run("sim", "--help")
    for name in SimConfig.__dataclass_fields__:
        assert f"--{name.replace('_', '-')}" in out.stdout, name


def test_an_unknown_task_is_refused_with_the_known_ones():
    out = run("sim", "--task", "juggle")
    assert out.returncode == 2
    assert "unknown task 'juggle'; known tasks: push, reach" in out.stderr


def test_an_unknown_option_is_refused():
    out = run("sim", "--episodez", "3")
    assert out.returncode != 0 and "--episodez" in out.stdout + out.stderr


def test_node_help_lists_the_sim_bridge():
    out = run("node", "--help")
    assert out.returncode == 0 and "sim_bridge" in out.stdout


def test_unknown_benchmark_is_reported_with_the_available_ones():
    out = run("bench", "no_such_bench")
    assert out.returncode == 2
    assert "no benchmark 'no_such_bench'" in out.stderr and "'env'" in out.stderr


@pytest.mark.ros
def test_node_with_a_bad_robot_profile_exits_with_a_clear_error(tmp_path):
    out = run("node", "sim_bridge", "--ros-args", "-p", f"robot_profile:={tmp_path / 'missing.yaml'}")
    assert out.returncode == 2
    assert "invalid configuration" in out.stderr and "missing.yaml: file not found" in out.stderr


@pytest.mark.ros
@pytest.mark.slow
def test_sim_runs_episodes_and_writes_plot_and_json(tmp_path):
    out = run("sim", "--episodes", "2", "--mode", "lockstep", "--out", str(tmp_path), "--swap-to", "reach_mlp",
              "--json", str(tmp_path / "results.json"), timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert sum(line.startswith("episode ") for line in lines) == 2, out.stdout
    assert "policy 'reach_lstm'" in lines[0]
    assert "swap to 'reach_mlp': accepted" in out.stdout, "the running policy node takes the new policy"
    assert any(line.startswith("summary: ") for line in lines)
    png = tmp_path / "episodes.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["episodes"]) == 2
    # The shipped policies reach the goal under the default randomization (seed 0).
    assert results["success_rate"] == 1.0, out.stdout
    assert "body_mass/link1" in results["episodes"][0]["dynamics"]
    assert results["episodes"][0]["dynamics"] != results["episodes"][1]["dynamics"]


@pytest.mark.ros
@pytest.mark.slow
def test_sim_in_real_time_composes_the_policy_intra_process_and_swaps(tmp_path):
    """Real time: the bridge hands each state to the policy node in the same process (the
    composed deployment's path); the policy still swaps, and the episodes run through it."""
    out = run("sim", "--episodes", "2", "--episode-s", "2", "--out", str(tmp_path), "--swap-to", "reach_mlp",
              "--json", str(tmp_path / "results.json"), timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "realtime mode, policy 'reach_lstm' (intra-process)" in lines[0], lines[0]
    assert "swap to 'reach_mlp': accepted" in out.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    # each episode driven by the policy: the arm left its start (the error fell well below the goal's distance)
    assert [e["steps"] > 0 for e in results["episodes"]] == [True, True], results["episodes"]
    assert all(e["final_error_m"] < 0.10 for e in results["episodes"]), out.stdout
    bad = subprocess.run([SIM2REAL, "sim", "--episodes", "1"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SIM2REAL_COMPOSED_TRANSPORT": "shm"}, stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and "SIM2REAL_COMPOSED_TRANSPORT='shm'" in bad.stderr, bad.stderr


@pytest.mark.ros
@pytest.mark.slow
def test_sim_with_sampled_actions_runs_the_policy_node_sampling(tmp_path):
    """`--sample-actions`: the policy node samples the policy's trained Gaussian (manifest
    action_std); the episodes run through it. With the scripted controller it is refused."""
    out = run("sim", "--episodes", "1", "--episode-s", "2", "--sample-actions", "--out", str(tmp_path),
              "--json", str(tmp_path / "results.json"), timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "policy 'reach_lstm' (intra-process, sampled actions)" in out.stdout.splitlines()[0], out.stdout
    (episode,) = json.loads((tmp_path / "results.json").read_text())["episodes"]
    assert episode["steps"] > 0 and episode["final_error_m"] < 0.10, out.stdout
    bad = run("sim", "--episodes", "1", "--sample-actions", "--controller", "scripted")
    assert bad.returncode == 2 and "--sample-actions applies to the policy node" in bad.stderr, bad.stderr


@pytest.mark.ros
@pytest.mark.slow
def test_sim_with_the_scripted_controller(tmp_path):
    out = run("sim", "--episodes", "1", "--mode", "lockstep", "--controller", "scripted", "--out", str(tmp_path),
              timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "scripted reach controller" in out.stdout and "summary: 1/1 reached the goal" in out.stdout


@pytest.mark.ros
@pytest.mark.slow
def test_sim_pushes_the_puck_over_ros_with_the_scripted_pusher(tmp_path):
    """The Push graph through ROS: the bridge's object_pose feeds the scripted pusher; the
    episode line names the object physics; a top-view plot of the puck's path is written."""
    out = run("sim", "--task", "push", "--episodes", "2", "--mode", "lockstep", "--controller", "scripted",
              "--randomization", "none", "--seed", "1", "--out", str(tmp_path), "--json", str(tmp_path / "r.json"),
              timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "task 'push'" in out.stdout and "scripted push controller" in out.stdout
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["task"]["name"] == "push" and results["success_criterion"]["radius_m"] == 0.05
    assert len(results["episodes"]) == 2 and results["successes"] >= 1, out.stdout
    assert (tmp_path / "object_paths.png").stat().st_size > 10_000


def test_loop_dry_run_prints_the_rounds_commands_on_the_policys_task(tmp_path):
    out = subprocess.run([SIM2REAL, "loop", "--dry-run"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ), stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    commands = [line for line in out.stdout.splitlines() if line.startswith("$ ")]
    assert len(commands) == 3 and all("--task reach" in c for c in commands if " real " in c or " train " in c)
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_loop_on_push_calibrates_the_puck_and_compare_adds_the_prior_fine_tune(tmp_path):
    out = subprocess.run([SIM2REAL, "loop", "--policy", "push_lstm", "--prior", "push_default", "--compare",
                          "--train-steps", "1000", "--dry-run"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ), stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    commands = [line for line in out.stdout.splitlines() if line.startswith("$ ")]
    real, calibrate, train, prior_train = commands
    assert "--task push" in real and "--episode-s 8 " in real  # the Push training episode: 400 steps
    assert calibrate.endswith("--settings push")
    assert "--randomization push_default" in prior_train and "--total-env-steps 1000" in prior_train
    init = train.split("--init-from ")[1].split()[0]
    assert init.endswith("push_lstm/checkpoint.pt") and f"--init-from {init}" in prior_train  # the same start
    assert "--sample-actions" not in real
    assert not (tmp_path / "runs").exists()
    out = subprocess.run([SIM2REAL, "loop", "--policy", "push_lstm", "--prior", "push_default", "--sample-actions",
                          "--dry-run"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ), stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    real = next(line for line in out.stdout.splitlines() if line.startswith("$ ") and " real " in line)
    assert real.endswith("--sample-actions")   # the deployment (and the scores) act as the robot will


def test_loop_with_strikes_records_them_and_calibrates_them_replayed(tmp_path):
    def dry(*extra):
        return subprocess.run([SIM2REAL, "loop", *extra, "--dry-run"], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ), stdin=subprocess.DEVNULL, cwd=tmp_path)

    out = dry("--policy", "push_lstm", "--prior", "push_default", "--strikes", "3")
    assert out.returncode == 0, out.stdout + out.stderr
    real, strikes, calibrate, _ = [line for line in out.stdout.splitlines() if line.startswith("$ ")]
    assert "--controller strike" in strikes and "--episodes 3" in strikes and "--policy" not in strikes
    strike_bag = strikes.split("--record ")[1].split()[0]
    assert strike_bag.endswith("round1/strike_bag") and f"--replay-bags {strike_bag}" in calibrate
    assert "--controller" not in real and "--replay-bags" not in real
    out = dry("--strikes", "2")   # reach_lstm: nothing to strike
    assert out.returncode == 2 and "--strikes needs an object to strike (push)" in out.stderr, out.stderr


@pytest.mark.ros
def test_transfer_table_scores_every_row_on_the_same_goals_with_and_without_ros(tmp_path):
    from sim2real.loop import LoopConfig, transfer_table

    args = LoopConfig(policy="push_lstm", prior="push_default", eval_episodes=3, ros_episodes=1, out=tmp_path,
                      episode_s=2.0, seed=4)
    zoo = REPO / "policies" / "policies" / "zoo"
    rows = transfer_table(args, [("nominal", str(zoo / "push_lstm_nominal")), ("prior", str(zoo / "push_lstm"))],
                          "push", paired=(("prior", "nominal"), ("prior", "no such row")))
    assert [r["label"] for r in rows] == ["nominal", "prior"]
    for row in rows:
        assert row["emulator"]["episodes"] == 3 and row["ros"]["episodes"] == 1, row
    table = (tmp_path / "transfer.md").read_text()
    assert "| nominal |" in table and "| prior |" in table and "/3)" in table and "/1)" in table, table
    saved = json.loads((tmp_path / "transfer.json").read_text())
    assert saved["seed"] == 1004 and saved["sample_actions"] is False
    # the paired test on the same goals (a pair naming a missing row is left out)
    per = {r["label"]: r["emulator"]["per_episode"] for r in rows}
    assert [len(v) for v in per.values()] == [3, 3] and all(sum(per[r["label"]]) == r["emulator"]["successes"]
                                                           for r in rows)
    (cmp,) = saved["paired"]
    assert (cmp["a"], cmp["b"], cmp["episodes"]) == ("prior", "nominal", 3)
    assert cmp["only_a"] == sum(a and not b for a, b in zip(per["prior"], per["nominal"]))
    assert "- prior: " in table and "McNemar" in table, table


def test_sim_refuses_a_policy_of_another_task():
    out = run("sim", "--task", "push", "--policy", "reach_mlp", "--episodes", "1")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "policy 'reach_mlp' was trained for task 'reach', not 'push'" in out.stderr, out.stderr


@pytest.mark.ros
def test_sim_task_push_runs_the_shipped_push_lstm(tmp_path):
    """`make sim SIM_ARGS="--task push"`: the task's shipped LSTM drives the arm over ROS."""
    out = run("sim", "--task", "push", "--episodes", "1", "--mode", "lockstep", "--out", str(tmp_path), timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "task 'push'" in out.stdout and "policy 'push_lstm'" in out.stdout, out.stdout
    assert "episode 1/1" in out.stdout and (tmp_path / "object_paths.png").is_file()


@pytest.mark.ros
@pytest.mark.parametrize("delay_s", [0.2, 0.5, 1.5])
def test_a_node_stopped_by_sigint_while_it_starts_exits_cleanly(delay_s):
    """A launcher (sim2real launch, ros2 launch) stops nodes with SIGINT, maybe before they are
    up: that is a normal stop (exit 0), not a failure (KeyboardInterrupt, 130). Early delays land
    in the imports (a KeyboardInterrupt inside MuJoCo's initialisation was an ImportError, seen in
    bench flaky), later ones in the node's start-up."""
    import signal
    import time

    # as a launcher does: the node starts with SIGINT at its default (a test run started from a
    # background shell job inherits SIGINT ignored, and Python then keeps it ignored), in its own
    # namespace (a node that outlived a failed test must not talk to other tests' graphs)
    ns = f"/sigint_{os.getpid()}_{int(delay_s * 10)}"
    proc = subprocess.Popen([sys.executable, "-m", "sim2real.cli", "node", "sim_bridge", "--ros-args", "-r",
                             f"__ns:={ns}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ), process_group=0, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:  # never leave a node running
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


def test_a_sigint_while_the_parser_imports_a_c_extension_still_stops_the_node(monkeypatch):
    """SIGINT during the parser's imports: a KeyboardInterrupt inside a C extension's
    initialisation (NumPy's) surfaces as an ImportError, which the loop over plug-in commands
    reports and skips. The stop must not be lost with it (a fresh-clone CI saw the node then run
    until killed): during start-up SIGINT only sets a flag."""
    import signal

    from sim2real import cli

    started = []

    class CExtensionCommand:  # a plug-in command whose import is interrupted in C code
        name, value = "ext", "ext:add"

        def load(self):
            try:
                os.kill(os.getpid(), signal.SIGINT)
                sum(range(1000))  # Python code: a pending handler runs here
            except KeyboardInterrupt:
                raise ImportError("initialization failed") from None
            return lambda subparsers: None

    class NodeCommand:
        name, value = "node", "sim2real.cli:add_node_command"

        def load(self):
            return cli.add_node_command

    class Node:
        name, value = "fake_node", "fake:main"

        def load(self):
            return lambda argv: started.append(argv) or 0

    groups = {"sim2real.commands": {"node": NodeCommand(), "ext": CExtensionCommand()},
              "sim2real.nodes": {"fake_node": Node()}}
    monkeypatch.setattr(cli, "_entry_points", lambda group: groups[group])
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a launcher starts a node
    try:
        assert cli.main(["node", "fake_node"]) == 0
    finally:
        signal.signal(signal.SIGINT, previous)
    assert started == [], "the node started although SIGINT arrived while the command line was being built"


@pytest.mark.parametrize("command", ["sim", "real", "train", "calibrate"])
def test_the_robot_option_is_spelled_alike_everywhere(command):
    out = run(command, "--help")
    assert out.returncode == 0, out.stderr
    assert "--robot " in out.stdout and "--robot-profile" in out.stdout, out.stdout


@pytest.mark.ros
@pytest.mark.slow
def test_sim_runs_a_push_policy_given_as_an_artifact_folder(tmp_path):
    """A push policy from a folder outside the zoo drives the push scene over ROS: the task comes
    from its manifest, the policy node reads object_pose (an untrained policy: no success asked)."""
    pytest.importorskip("torch")
    from policies.testing import export_dummy_policy

    art = export_dummy_policy(tmp_path / "zoo" / "dummy_push", obs_size=29, task="push", name="dummy_push")
    out = run("sim", "--policy", str(art), "--episodes", "1", "--mode", "lockstep", "--episode-s", "1",
              "--out", str(tmp_path / "sim"), "--json", str(tmp_path / "r.json"), timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "task 'push'" in out.stdout and f"policy '{art}'" in out.stdout
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["task"]["name"] == "push" and results["episodes"][0]["steps"] == 50
