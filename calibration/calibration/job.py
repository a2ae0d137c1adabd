"""One calibration run, end to end: bags in, a new randomization file out (no ROS).

Shared by ``sim2real calibrate`` and the calibration node, so both do exactly the same:

1. load the prior (a shipped name or a YAML path) and the settings, resolve the robot
   profile and the policy (default: the ones recorded in the bags' metadata);
2. load every usable episode of the bags (:func:`calibration.episodes.load_reference_episodes`);
3. run the SimOpt iterations (:class:`calibration.simopt.Calibration`), reporting progress;
4. check that the result loads as a randomization file on this robot (what the sim bridge
   will do with it), then write it **atomically** to ``out`` with provenance, keep every
   written version in ``<out stem>.history/`` (``v0001.yaml``, ... and ``log.jsonl``),
   and save the plots next to it (``<out stem>.plots/``).

Any failure raises :class:`JobError` with the reason before anything is written: the
previous file at ``out`` stays untouched.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


from calibration.episodes import EpisodeError, EpisodeList, load_reference_episodes
from calibration.quality import Assessment, widen_prior
from calibration.simopt import (Calibration, CalibrationError, CalibrationSettings, IterationRecord,
                                load_settings)
from policies.manifest import find_policy
from sim_bridge.config import ConfigError, load_yaml_file, write_text_atomic
from sim_bridge.profile import RobotProfile, load_profile
from sim_bridge.randomization import DynamicsRandomizer, NominalModel, RandomizationSpec, load_randomization
from sim_bridge.simulator import build_model

__all__ = ["JobError", "JobResult", "CalibrationJob", "resolve_policy_path", "history_dir", "plots_dir"]

WIDEN_ROUNDS = 2  # --widen: at most this many refits on a widened prior


class JobError(RuntimeError):
    """The calibration run failed; nothing was written. The message says why.

    ``public`` is the reason without file contents, for remote callers (the node's
    ``~/result`` and /diagnostics): for a file error, the path, the field and the kind."""

    def __init__(self, message: str, public: str | None = None):
        super().__init__(message)
        self.public = public if public is not None else message

    @classmethod
    def from_config(cls, prefix: str, exc: ConfigError) -> "JobError":
        """Wrap a file error: the message has its detail, ``public`` only :meth:`ConfigError.public`."""
        return cls(f"{prefix}{exc}", f"{prefix}{exc.public()}")


class Cancelled(JobError):
    """The run was stopped on request; nothing was written."""


def history_dir(out: Path) -> Path:
    return out.with_name(out.stem + ".history")


def plots_dir(out: Path) -> Path:
    return out.with_name(out.stem + ".plots")


def resolve_policy_path(text: str) -> Path:
    """A policy artifact folder/ONNX path, or the name of a shipped policy."""
    try:
        return find_policy(text)
    except FileNotFoundError as exc:
        raise JobError(str(exc)) from None


@dataclass
class JobResult:
    out: Path
    version: Path                     # the copy in the history folder
    spec: RandomizationSpec
    history: list[IterationRecord]
    discrepancy_before: float
    discrepancy_after: float
    plots: list[Path] = field(default_factory=list)
    episodes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    assessment: Assessment | None = None  # noise floor, identifiability, bound warnings

    @property
    def reduction(self) -> float:
        """Relative drop of the discrepancy at the distribution mean (0.8 = 80 % lower)."""
        if not self.discrepancy_before > 0:
            return 0.0
        return 1.0 - self.discrepancy_after / self.discrepancy_before


@dataclass
class CalibrationJob:
    bags: Sequence[str | os.PathLike]
    prior: str | os.PathLike
    out: str | os.PathLike
    policy: str | os.PathLike | None = None         # None: the policy named in the bags
    settings: CalibrationSettings | str | os.PathLike | None = None  # None: the shipped settings
    profile: RobotProfile | str | None = None       # None: the profile named in the bags
    plots: bool = True
    note: str = ""
    #: > 1: when a fit ends at a bound of the prior, widen that parameter's range by this factor
    #: beyond the bound (calibration.quality.widen_prior) and fit again, at most WIDEN_ROUNDS times
    widen: float = 0.0
    #: bags replayed open loop whatever the settings' mode (ReferenceEpisode.replay): recordings of a
    #: scripted controller calibration cannot re-run, e.g. identification strikes (sim2real real
    #: --controller strike)
    replay_bags: Sequence[str | os.PathLike] = ()

    def run(self, progress: Callable[[str, dict[str, Any]], None] | None = None,
            stop: threading.Event | None = None) -> JobResult:
        """Run it; ``progress(stage, info)`` is called at each stage and iteration."""
        t0 = time.perf_counter()
        report = progress or (lambda stage, info: None)
        out = Path(self.out).expanduser()
        try:
            settings = (self.settings if isinstance(self.settings, CalibrationSettings)
                        else load_settings(self.settings))
            prior = load_randomization(self.prior)
        except ConfigError as exc:
            raise JobError.from_config("invalid input: ", exc) from None
        except OSError as exc:
            raise JobError(f"invalid input: {exc}") from None
        except MemoryError:  # the safe reader's limits should make this unreachable
            raise JobError("invalid input: out of memory while reading the prior or the settings") from None
        if not out.parent.is_dir():
            raise JobError(f"output folder {out.parent} does not exist")
        every_bag = [*self.bags, *self.replay_bags]
        report("loading", {"bags": [os.fspath(b) for b in every_bag]})
        recorded = sorted({str(t) for t in (_recorded_metadata(b).get("task") for b in every_bag) if t})
        if [t for t in recorded if t != (settings.task or "reach")]:
            raise JobError(f"the bags were recorded on task(s) {recorded}, the settings calibrate "
                           f"{settings.task or 'the bare arm (reach)'}: "
                           + ("use --settings push (the puck's physics)" if "push" in recorded
                              else "use settings without a task"))
        profile = self._profile()
        if settings.mode == "closed_loop":
            scripted = scripted_bags(self.bags)
            if scripted:
                raise JobError(f"{scripted} were recorded by a scripted controller ({_recorded_policy(scripted[0])}), "
                               "which closed-loop calibration cannot re-run: pass them with --replay-bags "
                               "(replayed open loop)")
        if not self.bags and not self.replay_bags:
            raise JobError("no bags given")
        try:
            episodes = load_reference_episodes(self.bags, profile, max_steps=settings.max_steps) if self.bags \
                else EpisodeList()
            if self.replay_bags:
                replayed = load_reference_episodes(self.replay_bags, profile, max_steps=settings.max_steps, replay=True)
                episodes.extend(replayed)
                episodes.skipped.extend(replayed.skipped)
                episodes.warnings.extend(replayed.warnings)
        except (ValueError, OSError) as exc:  # BagLoadError and EpisodeError are ValueErrors
            raise JobError(str(exc)) from None
        if episodes.skipped or episodes.warnings:
            report("warnings", {"skipped": list(episodes.skipped), "warnings": list(episodes.warnings)})
        closed = settings.mode == "closed_loop" and any(not ep.replay for ep in episodes)
        policy = self._policy(episodes) if closed else None
        report("calibrating", {"episodes": len(episodes), "iterations": settings.iterations,
                               "samples": settings.samples, "policy": os.fspath(policy) if policy else None})
        def setup(prior_spec):
            try:
                return Calibration(profile, prior_spec, episodes, settings, policy)
            except ConfigError as exc:
                raise JobError.from_config("cannot set up the calibration: ", exc) from None
            except (EpisodeError, CalibrationError, ValueError) as exc:
                raise JobError(f"cannot set up the calibration: {exc}") from None

        def fit(c: Calibration) -> Assessment:
            report("iteration", {"iteration": 0, "discrepancy_at_mean": c.initial_discrepancy,
                                 "noise_floor": c.noise_floor})
            c.stop_reason = f"iteration limit ({settings.iterations})"
            for _ in range(settings.iterations):
                if stop is not None and stop.is_set():
                    raise Cancelled("calibration cancelled; nothing written")
                record = c.step()
                report("iteration", record.to_dict())
                if c.converged(record):
                    break
            quality = c.assess()  # parameters the data cannot fix keep the prior
            report("quality", quality.to_dict())
            return quality

        calib = setup(prior)
        widened: dict[str, dict] = {}
        try:
            assessment = fit(calib)
            for _ in range(WIDEN_ROUNDS if self.widen > 1.0 else 0):
                if not assessment.at_bound:
                    break
                wider, changes = widen_prior(prior, assessment.at_bound, self.widen)
                if not changes:  # at the kinds' plausible limits already
                    break
                for name, change in changes.items():
                    old = widened.get(name, change)
                    widened[name] = {k: [old[k][0], change[k][1]] for k in ("low", "high")}
                report("widening", {"changes": changes})
                calib.close()
                prior = wider
                calib = setup(prior)
                assessment = fit(calib)
            spec = calib.result_spec({
                "bags": [os.path.abspath(os.fspath(b)) for b in self.bags],
                **({"replay_bags": [os.path.abspath(os.fspath(b)) for b in self.replay_bags]} if self.replay_bags else {}),
                "prior": os.fspath(prior.source or self.prior), "robot_profile": profile.name,
                "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "note": self.note, "settings": settings.to_dict(),
                **({"widened": widened} if widened else {})})
            _check_loads(spec, profile, settings.task)
            try:
                version = _write_versioned(spec, out, calib)
            except OSError as exc:  # disk full, no permission, ...: a reason, not a traceback
                raise JobError(f"cannot write the result to {out}: {exc}") from None
            plots = []
            if self.plots:
                report("plotting", {})
                from calibration.plots import save_plots  # noqa: PLC0415 - matplotlib is slow to import
                plots = save_plots(calib, plots_dir(out))
        except CalibrationError as exc:
            raise JobError(f"calibration failed: {exc}") from None
        finally:
            calib.close()
        result = JobResult(out, version, spec, list(calib.history), calib.initial_discrepancy,
                           calib.final_discrepancy, plots, [e.name for e in episodes], list(episodes.skipped),
                           time.perf_counter() - t0, assessment)
        report("done", {"out": str(out), "version": str(version), "reduction": result.reduction})
        return result

    def _profile(self) -> RobotProfile:
        if isinstance(self.profile, RobotProfile):
            return self.profile
        name = self.profile
        if name is None:
            name = _recorded_profile([*self.bags, *self.replay_bags]) or "panda_like"
        try:
            return load_profile(name)
        except ConfigError as exc:
            raise JobError.from_config("robot profile: ", exc) from None
        except OSError as exc:
            raise JobError(f"robot profile: {exc}") from None

    def _policy(self, episodes) -> Path:
        if self.policy is not None:
            return resolve_policy_path(os.fspath(self.policy))
        names = sorted({_recorded_policy(b) for b in self.bags} - {None})
        if len(names) != 1:
            raise JobError("closed-loop calibration needs the policy that ran on the robot: pass --policy "
                           f"(the bags name {names or 'none'})")
        return resolve_policy_path(names[0])


#: the recorded "policy" of a bag driven by a scripted controller (sim2real real --controller scripted/strike)
SCRIPTED_PREFIXES = ("scripted_", "strike_")


def scripted_bags(bags) -> list[str]:
    """The bags whose recorder metadata names a scripted controller as the policy (to replay)."""
    return [os.fspath(b) for b in bags if str(_recorded_policy(b) or "").startswith(SCRIPTED_PREFIXES)]


def _recorded_metadata(bag) -> dict:
    from real_bridge.recorder import SIDECAR_NAME  # noqa: PLC0415

    try:
        data = load_yaml_file(Path(bag) / SIDECAR_NAME)
    except ConfigError:
        return {}
    return data.get("metadata", {}) if isinstance(data, dict) else {}


def _recorded_profile(bags) -> str | None:
    for bag in bags:
        prof = _recorded_metadata(bag).get("robot_profile")
        name = prof.get("name") if isinstance(prof, dict) else prof
        if name:
            return str(name)
    return None


def _recorded_policy(bag) -> str | None:
    pol = _recorded_metadata(bag).get("policy")
    name = pol.get("name") if isinstance(pol, dict) else pol
    return str(name) if name else None


def _check_loads(spec: RandomizationSpec, profile: RobotProfile, task: str | None = None) -> None:
    """What the sim bridge does with the file: parse it and resolve it on the robot's model
    (with the task's scene: Push's puck)."""
    from sim_bridge.randomization import parse_randomization  # noqa: PLC0415
    from sim_bridge.tasks import make_task  # noqa: PLC0415

    try:
        reparsed = parse_randomization(json.loads(json.dumps(spec.to_dict())))
        model = build_model(profile, make_task(task).add_to_scene if task else None)
        DynamicsRandomizer(reparsed, model, profile, NominalModel(model))
    except ConfigError as exc:
        raise CalibrationError(f"the result is not a valid randomization file for {profile.name}: {exc}") from None


def _write_versioned(spec: RandomizationSpec, out: Path, calib: Calibration) -> Path:
    hist = history_dir(out)
    hist.mkdir(parents=True, exist_ok=True)
    existing = sorted(hist.glob("v*.yaml"))
    number = 1 + max((int(p.stem[1:]) for p in existing if p.stem[1:].isdigit()), default=0)
    version = hist / f"v{number:04d}.yaml"
    text = spec.to_yaml()
    write_text_atomic(out, text)  # first: a failure here leaves no stray version behind
    write_text_atomic(version, text)
    entry = {"version": version.name, "written_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "discrepancy_before": calib.initial_discrepancy, "discrepancy_after": calib.final_discrepancy,
             "iterations": [r.to_dict() for r in calib.history]}
    with open(hist / "log.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, allow_nan=True) + "\n")
    return version
