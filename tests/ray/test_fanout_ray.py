"""Calibration samples as Ray chunks: the local results, exactly; a calibration worker killed
in the middle of its chunk (restart + re-run), the retry budget."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import policies
from calibration.episodes import emulator_episodes
from calibration.ray_backend import CalibrationWorker, RayCostPool
from calibration.simopt import Calibration, CalibrationError, CalibrationSettings, SearchEntry
from sim_bridge.profile import load_profile
from sim_bridge.randomization import load_randomization

ZOO = Path(policies.__file__).resolve().parent / "zoo"
REACH_LSTM = ZOO / "reach_lstm"


class SelfKillingWorker(CalibrationWorker):
    """Kills its own process in the middle of a chunk while a kill token is left in ``tokens``
    (a folder; taking a token is removing its file, which only one process can do)."""

    def __init__(self, *args, tokens: str = ""):
        super().__init__(*args)
        self.tokens = Path(tokens)

    def costs(self, group_values):
        for token in sorted(self.tokens.iterdir()):
            try:
                token.unlink()
            except FileNotFoundError:  # another worker took it
                continue
            os.kill(os.getpid(), signal.SIGKILL)
        return super().costs(group_values)


def kill_tokens(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        (folder / f"kill-{i:04d}").touch()
    return folder


def settings(**changes) -> CalibrationSettings:
    base = dict(search=(SearchEntry("body_mass", shared=True), SearchEntry("actuator_kp", shared=True)),
                mode="closed_loop", method="reps", samples=8, iterations=2, max_steps=20, seed=5, threads=1,
                workers=2)
    base.update(changes)
    return CalibrationSettings(**base)


@pytest.fixture(scope="module")
def setup():
    episodes = emulator_episodes(REACH_LSTM, 2, steps=20, seed=3)
    return load_profile("panda_like"), load_randomization("default"), episodes


def calibrate(setup, **changes):
    profile, prior, episodes = setup
    calib = Calibration(profile, prior, episodes, settings(**changes), REACH_LSTM)
    try:
        calib.run()
        return calib.initial_discrepancy, [r.to_dict() for r in calib.history], calib.result_spec().to_dict()
    finally:
        calib.close()


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in ("elapsed_s", "rollout_s")} for r in records]


def test_calibration_on_ray_gives_the_local_result(local_ray, setup):
    d0_local, local, spec_local = calibrate(setup, backend="local")
    d0_ray, on_ray, spec_ray = calibrate(setup, backend="ray")
    assert d0_local == d0_ray
    assert without_timing(local) == without_timing(on_ray)
    assert spec_local == spec_ray


def test_a_worker_killed_in_its_chunk_is_restarted_and_the_chunk_rerun(local_ray, setup, tmp_path):
    profile, prior, episodes = setup
    s = settings(mode="open_loop")  # no policy to load: quicker (re)starts
    calib = Calibration(profile, prior, episodes, s, REACH_LSTM)
    tokens = kill_tokens(tmp_path / "kills", 1)  # the first chunk that starts dies with its worker
    from ray import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    pool = RayCostPool(profile, prior, calib.episodes, s, REACH_LSTM,
                       worker_class=partial_class(SelfKillingWorker, tokens=str(tokens)))
    try:
        samples = calib.search.sample(np.random.default_rng(0), 8)
        pids = [pid for pid, _ in pool.placement()]
        np.testing.assert_array_equal(pool.costs(samples), calib.costs(samples))
        assert not any(tokens.iterdir())
        assert [pid for pid, _ in pool.placement()] != pids  # restarted processes answered
    finally:
        pool.close()
        calib.close()


def test_calibration_stops_with_a_clear_error_after_the_retry_budget(local_ray, setup, tmp_path):
    profile, prior, episodes = setup
    s = settings(workers=1, mode="open_loop")  # one worker, no policy: quick (re)starts
    tokens = kill_tokens(tmp_path / "kills", 100)
    from ray import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    pool = RayCostPool(profile, prior, episodes, s, REACH_LSTM, max_restarts=1,
                       worker_class=partial_class(SelfKillingWorker, tokens=str(tokens)))
    try:
        with pytest.raises(CalibrationError, match=r"calibration worker 0 died and its chunk \(8 samples\) was "
                                                   r"lost after 1 restart\(s\) and re-runs \(the retry budget\)"):
            pool.costs(np.tile([[1.0, 1.0]], (8, 1)))
    finally:
        pool.close()


def partial_class(cls, **kwargs):
    """``cls`` with keyword arguments bound (an actor class must be a class)."""
    return type(cls.__name__, (cls,), {"__init__": lambda self, *a: cls.__init__(self, *a, **kwargs)})


def test_the_calibrate_command_on_ray_writes_the_local_result(local_ray, setup, tmp_path, capsys):
    """`sim2real calibrate --backend ray` end to end (bag in, file out): the local fit."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calibration"))  # its bag writer
    try:
        from calib_bags import write_episode_bag
    finally:
        sys.path.pop(0)
    from sim2real.cli import main as sim2real_main
    from sim_bridge.randomization import load_randomization

    profile, _, episodes = setup
    bag = tmp_path / "bag"
    write_episode_bag(bag, episodes, profile.joint_names, policy="reach_lstm")
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("calibration_version: 1\nsearch: {body_mass: {shared: true}}\n"
                             "samples: 6\niterations: 1\nmax_steps: 20\nthreads: 1\n")
    fits = {}
    for backend in ("local", "ray"):
        out = tmp_path / f"{backend}.yaml"
        rc = sim2real_main(["calibrate", "--bags", str(bag), "--prior", "default", "--out", str(out),
                            "--settings", str(settings_file), "--no-plots", "--backend", backend,
                            "--num-workers", "2"])
        assert rc == 0, capsys.readouterr().err
        fits[backend] = load_randomization(out).joint_gaussian
    assert fits["local"].names == fits["ray"].names
    np.testing.assert_array_equal(fits["local"].mean, fits["ray"].mean)
    np.testing.assert_array_equal(fits["local"].cov, fits["ray"].cov)
