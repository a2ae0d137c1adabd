"""One calibration run end to end (calibration.job) and `sim2real calibrate`: bags in, a
randomization file out (atomic, with provenance, versioned, plotted); every failure is a
JobError / a one-line reason and leaves the previous output byte-identical."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from calib_bags import write_episode_bag
from calib_helpers import REACH_LSTM
from calibration import job as job_module
from calibration.job import CalibrationJob, Cancelled, JobError, history_dir, plots_dir
from calibration.simopt import CalibrationSettings, SearchEntry
from sim2real.cli import main as sim2real_main
from sim_bridge.randomization import load_randomization
from sim_bridge.simulator import ArmSimulator

SIM2REAL = Path(sys.executable).with_name("sim2real")
SEARCH = (SearchEntry("body_mass", True), SearchEntry("actuator_kp", True), SearchEntry("action_latency"))
PREVIOUS = b"# the previous calibrated file\nrandomization_version: 1\nparameters: {}\n"


def small_settings(**changes):
    base = dict(search=SEARCH, mode="closed_loop", samples=8, iterations=2, max_steps=30, seed=1)
    base.update(changes)
    return CalibrationSettings(**base)


@pytest.fixture(scope="module")
def bag(tmp_path_factory, profile, emulator_eps):
    path = tmp_path_factory.mktemp("bags") / "emulator_run"
    write_episode_bag(path, emulator_eps, profile.joint_names, policy="reach_lstm")
    return path


@pytest.fixture(scope="module")
def corrupt_bag(tmp_path_factory, profile, emulator_eps):
    path = tmp_path_factory.mktemp("bags") / "corrupt_run"
    write_episode_bag(path, emulator_eps, profile.joint_names)
    db = next(path.glob("*.db3"))
    with open(db, "r+b") as f:
        f.write(np.random.default_rng(0).bytes(100))
    return path


def settings_file(folder: Path, text: str = "") -> Path:
    path = folder / "settings.yaml"
    path.write_text("calibration_version: 1\nsearch: {body_mass: {shared: true}, actuator_kp: {shared: true}}\n"
                    "samples: 8\niterations: 1\nmax_steps: 30\n" + text)
    return path


def test_job_writes_the_result_with_provenance_history_and_plots(tmp_path, bag, profile):
    out = tmp_path / "calibrated.yaml"
    stages = []
    result = CalibrationJob([bag], "default", out, settings=small_settings(), note="first").run(
        progress=lambda stage, info: stages.append((stage, info)))
    assert [s for s, _ in stages] == ["loading", "calibrating", "iteration", "iteration", "iteration",
                                      "quality", "plotting", "done"]
    assert stages[1][1]["policy"] == os.fspath(REACH_LSTM)  # the policy the bag names
    assert result.out == out and result.version == history_dir(out) / "v0001.yaml"
    assert result.episodes == ["emulator_run#1", "emulator_run#2"] and result.skipped == []
    assert len(result.history) == 2
    assert result.discrepancy_after < result.discrepancy_before and 0 < result.reduction < 1
    assert [p.name for p in result.plots] == ["trajectories.png", "discrepancy.png", "parameters.png"]
    for p in result.plots:
        assert p.parent == plots_dir(out) and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibrated.history", "calibrated.plots",
                                                         "calibrated.yaml"], "no temporary files left"

    # What the sim bridge does with it.
    spec = load_randomization(out)
    assert spec == result.spec
    assert out.read_text() == result.version.read_text()
    prov = spec.provenance["calibration"]
    assert prov["bags"] == [os.path.abspath(bag)]
    assert prov["iterations"] == 2 and prov["method"] == "reps" and prov["mode"] == "closed_loop"
    assert prov["discrepancy_before"] == pytest.approx(result.discrepancy_before)
    assert prov["discrepancy_after"] == pytest.approx(result.discrepancy_after)
    assert prov["kl_from_prior"] > 0
    assert prov["policy"] == "reach_lstm" and prov["robot_profile"] == "panda_like" and prov["note"] == "first"
    assert prov["episodes"] == result.episodes and prov["settings"]["samples"] == 8
    assert set(prov["search"]) == {"body_mass", "actuator_kp", "action_latency"}
    g = spec.joint_gaussian
    assert g is not None and g.names[0] == "body_mass/link1" and "action_latency" in g.names
    sim = ArmSimulator(profile, spec)
    sim.reset(seed=0)
    assert len(set(np.round(sim.dynamics[:8], 6))) == 1  # tied body masses

    # A second run: a new version, the log grows.
    second = CalibrationJob([bag], "default", out, settings=small_settings(method="cem", iterations=1),
                            plots=False).run()
    assert second.version == history_dir(out) / "v0002.yaml" and second.plots == []
    assert sorted(p.name for p in history_dir(out).iterdir()) == ["log.jsonl", "v0001.yaml", "v0002.yaml"]
    assert load_randomization(out).provenance["calibration"]["method"] == "cem"
    assert (history_dir(out) / "v0001.yaml").read_text() == result.version.read_text()  # kept as it was
    lines = [json.loads(line) for line in (history_dir(out) / "log.jsonl").read_text().splitlines()]
    assert [e["version"] for e in lines] == ["v0001.yaml", "v0002.yaml"]
    assert [len(e["iterations"]) for e in lines] == [2, 1]
    assert lines[0]["discrepancy_before"] == pytest.approx(result.discrepancy_before)
    assert lines[1]["discrepancy_after"] == pytest.approx(second.discrepancy_after)


def test_open_loop_job_needs_no_policy(tmp_path, profile, emulator_eps):
    path = tmp_path / "anonymous"
    write_episode_bag(path, emulator_eps, profile.joint_names, policy=None)
    result = CalibrationJob([path], "default", tmp_path / "out.yaml", plots=False,
                            settings=small_settings(mode="open_loop", iterations=1)).run()
    assert result.spec.provenance["calibration"]["policy"] is None
    with pytest.raises(JobError, match="closed-loop calibration needs the policy .* pass --policy"):
        CalibrationJob([path], "default", tmp_path / "out.yaml", settings=small_settings(), plots=False).run()


def test_a_scripted_controllers_bag_is_replayed_beside_the_policys(tmp_path, bag, profile, emulator_eps):
    """A bag recorded by a scripted controller (sim2real real --controller strike/scripted) names
    it as its policy: closed-loop calibration refuses it in --bags (it cannot re-run it) and
    replays it with --replay-bags, alone (no policy needed) or beside the policy's bags."""
    strikes = tmp_path / "strikes"
    write_episode_bag(strikes, emulator_eps[:2], profile.joint_names, policy="strike_push")
    out = tmp_path / "out.yaml"
    with pytest.raises(JobError, match=r"recorded by a scripted controller \(strike_push\).*--replay-bags"):
        CalibrationJob([strikes], "default", out, settings=small_settings(), plots=False).run()
    assert not out.exists()
    alone = CalibrationJob([], "default", out, replay_bags=[strikes], settings=small_settings(iterations=1),
                           plots=False).run()
    assert alone.spec.provenance["calibration"]["policy"] is None and len(alone.episodes) == 2
    both = CalibrationJob([bag], "default", tmp_path / "both.yaml", replay_bags=[strikes],
                          settings=small_settings(iterations=1), plots=False).run()
    prov = both.spec.provenance["calibration"]
    assert prov["replay_bags"] == [str(strikes.resolve())] and prov["policy"]
    assert len(both.episodes) == len(emulator_eps) + 2
    with pytest.raises(JobError, match="no bags given"):
        CalibrationJob([], "default", out, settings=small_settings(), plots=False).run()


def _bad_prior_files(folder: Path) -> dict[str, Path]:
    data = load_randomization("default").to_dict()
    non_psd = dict(data, joint_gaussian={"names": ["body_mass/link1", "body_mass/link2"], "mean": [1.0, 1.0],
                                         "cov": [[0.01, 0.02], [0.02, 0.01]]})
    other_robot = json.loads(json.dumps(data))
    other_robot["parameters"]["body_mass"]["targets"] = ["link1", "gripper_finger"]
    unstable = json.loads(json.dumps(data))
    unstable["parameters"]["gravity"] = {"operation": "abs", "distribution": "uniform", "low": 1e5, "high": 2e5}
    files = {}
    for name, content in (("non_psd", non_psd), ("other_robot", other_robot), ("unstable", unstable)):
        files[name] = folder / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump(content))
    return files


@pytest.mark.parametrize("case, message", [
    ("corrupt bag", r"corrupt_run/.*\.db3: corrupt or truncated bag"),
    ("missing bag", "no_such_run: no such bag"),
    ("non-PSD prior", "invalid input: .*not positive semi-definite"),
    ("missing prior", "invalid input: .*missing_prior.yaml"),
    ("unknown prior name", "invalid input: no shipped randomization named 'defualt'"),
    ("parameter the robot lacks", "cannot set up the calibration: .*'tendon_stiffness' is neither"),
    ("body the robot lacks", "cannot set up the calibration: .*gripper_finger"),
    # (issue 12: an implausible prior (gravity 2e5 m/s^2) is now refused at load, before any rollout)
    ("everything blows up", "gravity abs value .* is outside the plausible range"),
    ("unknown policy", r"no policy 'reach_gru'"),
    ("no output folder", "output folder .* does not exist"),
])
def test_failures_raise_job_error_and_leave_the_previous_file_untouched(case, message, tmp_path, bag,
                                                                       corrupt_bag):
    out = tmp_path / "calibrated.yaml"
    out.write_bytes(PREVIOUS)
    hist = history_dir(out)
    hist.mkdir()
    (hist / "v0001.yaml").write_bytes(PREVIOUS)
    priors = _bad_prior_files(tmp_path)
    kwargs = dict(bags=[bag], prior="default", out=out, settings=small_settings(), plots=False)
    if case == "corrupt bag":
        kwargs["bags"] = [bag, corrupt_bag]
    elif case == "missing bag":
        kwargs["bags"] = [tmp_path / "no_such_run"]
    elif case == "non-PSD prior":
        kwargs["prior"] = priors["non_psd"]
    elif case == "missing prior":
        kwargs["prior"] = tmp_path / "missing_prior.yaml"
    elif case == "unknown prior name":
        kwargs["prior"] = "defualt"
    elif case == "parameter the robot lacks":
        kwargs["settings"] = small_settings(search=(SearchEntry("tendon_stiffness"),))
    elif case == "body the robot lacks":
        kwargs["prior"] = priors["other_robot"]
    elif case == "everything blows up":
        kwargs["prior"] = priors["unstable"]
        kwargs["settings"] = small_settings(search=(SearchEntry("gravity", True),), mode="open_loop")
    elif case == "unknown policy":
        kwargs["policy"] = "reach_gru"
    elif case == "no output folder":
        kwargs["out"] = tmp_path / "nowhere" / "calibrated.yaml"
    with pytest.raises(JobError, match=message):
        CalibrationJob(**kwargs).run()
    assert out.read_bytes() == PREVIOUS
    assert sorted(p.name for p in hist.iterdir()) == ["v0001.yaml"]
    assert not plots_dir(out).exists()


def test_a_write_failure_is_a_job_error_and_the_output_stays(tmp_path, bag, monkeypatch):
    out = tmp_path / "calibrated.yaml"
    out.write_bytes(PREVIOUS)

    def disk_full(path, text):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(job_module, "write_text_atomic", disk_full)
    with pytest.raises(JobError, match="cannot write the result to .*No space left on device"):
        CalibrationJob([bag], "default", out, settings=small_settings(iterations=1), plots=False).run()
    assert out.read_bytes() == PREVIOUS


def test_a_cancelled_job_writes_nothing(tmp_path, bag):
    out = tmp_path / "calibrated.yaml"
    out.write_bytes(PREVIOUS)
    stop = threading.Event()

    def progress(stage, info):
        if stage == "iteration" and info["iteration"] == 1:
            stop.set()

    with pytest.raises(Cancelled, match="cancelled"):
        CalibrationJob([bag], "default", out, settings=small_settings(), plots=False).run(progress, stop)
    assert out.read_bytes() == PREVIOUS and not history_dir(out).exists()


# --- sim2real calibrate ---------------------------------------------------------------------
def test_cli_calibrates_in_process(tmp_path, bag, capsys):
    out = tmp_path / "cal.yaml"
    rc = sim2real_main(["calibrate", "--bags", str(bag), "--prior", "default", "--out", str(out),
                        "--settings", str(settings_file(tmp_path)), "--samples", "6", "--mode", "open_loop",
                        "--no-plots", "--note", "from the cli"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"wrote {out} (version v0001.yaml)" in captured.out
    assert "iteration 1: D at mean" in captured.out
    spec = load_randomization(out)
    prov = spec.provenance["calibration"]
    assert prov["note"] == "from the cli" and prov["samples_per_iteration"] == 6 and prov["mode"] == "open_loop"
    assert not plots_dir(out).exists()


def test_cli_bad_input_exits_non_zero_with_a_one_line_reason(tmp_path, bag, corrupt_bag, capsys):
    out = tmp_path / "cal.yaml"
    out.write_bytes(PREVIOUS)
    rc = sim2real_main(["calibrate", "--bags", str(corrupt_bag), "--prior", "default", "--out", str(out),
                        "--settings", str(settings_file(tmp_path))])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("sim2real calibrate: ") and err.count("\n") == 1, err
    assert f"{corrupt_bag}/" in err and "corrupt or truncated bag" in err
    rc = sim2real_main(["calibrate", "--bags", str(bag), "--prior", "default", "--out", str(out),
                        "--settings", str(settings_file(tmp_path, "method: sgd\n"))])
    err = capsys.readouterr().err
    assert rc == 2 and "field 'method'" in err and err.count("\n") == 1, err
    assert out.read_bytes() == PREVIOUS


def test_cli_subprocess_reports_a_bad_bag(tmp_path, corrupt_bag):
    assert SIM2REAL.is_file(), f"{SIM2REAL} is not installed (make setup)"
    out = tmp_path / "cal.yaml"
    proc = subprocess.run([str(SIM2REAL), "calibrate", "--bags", str(corrupt_bag), "--prior", "default",
                           "--out", str(out), "--settings", str(settings_file(tmp_path))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("sim2real calibrate: ") and "corrupt or truncated bag" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not out.exists()


def test_widen_refits_on_a_wider_prior_when_the_fit_ends_at_its_bound(tmp_path, profile, emulator_eps):
    """The "real" arm is 1.4x heavier than nominal; the prior allows at most 1.1x. Without
    --widen the fit sits at 1.1 with a bound warning; with --widen 2 the range grows to 1.7 on
    that side, the refit lands near 1.4, and the output carries the widened range."""
    from calib_helpers import synthetic_real
    from calibration.simopt import Calibration

    data = load_randomization("default").to_dict()
    data["parameters"]["body_mass"].update(low=0.5, high=1.1)
    prior_path = tmp_path / "narrow.yaml"
    prior_path.write_text(yaml.safe_dump(data))
    prior = load_randomization(prior_path)
    settings = small_settings(search=(SearchEntry("body_mass", True),), mode="open_loop", samples=24,
                              iterations=6, stop_factor=0.0)
    calib = Calibration(profile, prior, emulator_eps, settings)
    truth = calib.element_values(np.array([[1.4]]))[0]
    real = synthetic_real(profile, prior, calib.episodes, truth, "open_loop")
    calib.close()
    path = tmp_path / "heavy"
    write_episode_bag(path, real, profile.joint_names, policy=None)

    plain = CalibrationJob([path], prior_path, tmp_path / "plain.yaml", plots=False, settings=settings).run()
    assert plain.assessment.at_bound == {"body_mass": "upper"}
    assert any("upper bound 1.1" in w and "--widen" in w for w in plain.assessment.warnings)

    result = CalibrationJob([path], prior_path, tmp_path / "wide.yaml", plots=False, settings=settings,
                            widen=2.0).run()
    prov = result.spec.provenance["calibration"]
    assert list(prov["widened"]) == ["body_mass"]
    assert prov["widened"]["body_mass"]["high"] == pytest.approx([1.1, 1.7])
    assert prov["widened"]["body_mass"]["low"] == pytest.approx([0.5, 0.5])
    assert result.assessment.at_bound == {}
    assert abs(prov["search"]["body_mass"]["mean"] - 1.4) < 0.05, prov["search"]
    doc = yaml.safe_load((tmp_path / "wide.yaml").read_text())
    assert doc["parameters"]["body_mass"]["high"] == pytest.approx(1.7)
    assert yaml.safe_load(prior_path.read_text())["parameters"]["body_mass"]["high"] == 1.1  # the prior file stays
