"""``explain()``: record, attribute, probe, ablate, report (what ``sim2real explain`` runs).

The main policy gets every analysis; the compared policies (by default the other shipped
policies of the same task) are recorded on the same seeded episodes and get the attribution and
the probes, so the randomized LSTM, the nominal LSTM and the MLP sit side by side.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from policies.explain.ablation import AblationSettings, ablation_steps, run_ablations, weight_statistics
from policies.explain.attribution import AttributionSettings, attribute_recording, randomisation_check
from policies.explain.loading import ExplainedPolicy, ExplainError, load_explained_policy
from policies.explain.probes import ProbeSettings, probe_recording, probe_weights, projections, summarize_probes
from policies.explain.rollout import ActorStepper, EnvBatch, record_episodes


@dataclass
class ExplainSettings:
    episodes: int = 200
    randomization: str = "default"
    seed: int = 20_000
    probe_time_s: float = 2.0          # the time of the summary table and the unit ranking
    attribution: AttributionSettings = field(default_factory=AttributionSettings)
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    ablation: AblationSettings | None = field(default_factory=AblationSettings)   # None: skip
    projection_points: int = 1500
    torch_threads: int = 1


def comparable_zoo_policies(policy: ExplainedPolicy) -> list[Path]:
    """The other shipped policies of the same task and robot."""
    from policies.manifest import load_manifest, shipped_zoo
    zoo = shipped_zoo()
    out = []
    for folder in sorted(p for p in zoo.iterdir() if p.is_dir()) if zoo.is_dir() else []:
        if folder.resolve() == Path(policy.path).resolve() or folder.resolve() == Path(policy.path).parent.resolve():
            continue
        try:
            m = load_manifest(folder)
        except Exception:  # noqa: BLE001 - a broken zoo entry is not ours to explain
            continue
        if m.task_name == policy.task["name"] and m.robot_profile == policy.robot_profile and m.name != policy.name:
            out.append(folder)
    return out


def _task_for(policy: ExplainedPolicy, task: str | None) -> dict:
    if task is None or task == policy.task["name"]:
        return policy.task
    from sim_bridge.tasks import UnknownTaskError, get_task
    try:
        get_task(task)
    except UnknownTaskError as exc:
        raise ExplainError(str(exc)) from None
    return {"name": task}


def _check_layout(policy: ExplainedPolicy, env) -> None:
    obs_size = int(policy.actor.obs_norm.mean.numel())
    size = int(env.observation_space.shape[0])
    if size != obs_size:
        names = ", ".join(f"{s.name}[{s.size}]" for s in env.observation_layout)
        raise ExplainError(f"{policy.name} takes {obs_size} observations but task '{env.task.name}' gives {size} "
                           f"({names}); explain it on the task it was trained for ('{policy.task['name']}')")


def explain(policy_path: str | Path, out: str | Path, *, compare: list[str | Path] | None = None,
            task: str | None = None, settings: ExplainSettings | None = None, progress: bool = True,
            log=print, real: dict | None = None) -> dict:
    """Run every analysis and write the report into ``out``; returns the summary (``explain.json``).

    ``real``: recorded episodes to set beside the simulated ones (:mod:`policies.explain.gap`):
    ``{"source": text, "episodes": [{"position", "velocity", "command", "goal"}, ...],
    "hidden": {dynamics name: value} or None}``."""
    from threadpoolctl import threadpool_limits

    settings = settings or ExplainSettings()
    # BLAS / OpenMP pools at the torch thread count: OpenBLAS's spinning workers made the probes
    # 15x slower on a shared 2-core machine (measured: 10 logistic probes 3.6 s -> 0.5 s)
    with threadpool_limits(limits=settings.torch_threads):
        return _explain(policy_path, out, compare=compare, task=task, settings=settings, progress=progress, log=log,
                        real=real)


def _explain(policy_path, out, *, compare, task, settings: ExplainSettings, progress: bool, log, real) -> dict:
    from tqdm import tqdm

    from policies.explain import report
    from sim_bridge.profile import load_profile

    torch.set_num_threads(settings.torch_threads)
    started = time.monotonic()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    main = load_explained_policy(policy_path)
    task_record = _task_for(main, task)
    others = [load_explained_policy(p) for p in (comparable_zoo_policies(main) if compare is None else compare)]
    policies = [main] + [p for p in others if p.name != main.name]
    for p in policies[1:]:
        if p.task["name"] != main.task["name"] or p.robot_profile != main.robot_profile:
            raise ExplainError(f"cannot compare {p.name} (task {p.task['name']}, {p.robot_profile}) with {main.name} "
                               f"(task {main.task['name']}, {main.robot_profile}): different task or robot")
    for p in policies:
        for note in p.notes:
            log(f"sim2real explain: {p.name}: {note}")
    envs = EnvBatch(task_record, main.robot_profile, settings.randomization)
    env0 = envs.ensure(1)[0]
    for p in policies:
        _check_layout(p, env0)
    layout = env0.observation_layout
    real_obs = None
    if real is not None:  # rebuilt before the long part: a recording that does not fit fails fast
        from policies.explain.gap import rebuild_observations
        real_obs = []
        for ep in real["episodes"]:
            o, a = rebuild_observations(layout, ep["position"], ep["velocity"], ep["command"], ep["goal"],
                                        env0.action_scale_rad)
            real_obs.append({"obs": o, "actions": a})
    joint_names = list(load_profile(main.robot_profile).joint_names)
    abl = settings.ablation
    # progress ticks, roughly in proportion to the time each stage takes (an episode = 1)
    w_attr, w_probe, w_proj = max(1, settings.episodes // 8), max(1, settings.episodes // 2), max(1, settings.episodes // 20)
    total = (len(policies) * (settings.episodes + w_attr + w_probe + w_proj) + 2
             + (ablation_steps(main.actor, abl) if abl is not None else 0))
    bar = tqdm(total=total, desc="sim2real explain", unit="step", disable=not progress, dynamic_ncols=True)
    results, recordings = {}, {}
    timings: dict[str, float] = {}
    mark = [time.monotonic()]

    def lap(stage: str) -> None:
        now = time.monotonic()
        timings[stage] = round(timings.get(stage, 0.0) + now - mark[0], 2)
        mark[0] = now

    try:
        for p in policies:
            bar.set_postfix_str(f"{p.name}: episodes")
            rec = record_episodes(ActorStepper(p.actor), envs, episodes=settings.episodes, seed=settings.seed,
                                  policy=p.name, progress=bar.update)
            recordings[p.name] = rec
            lap("episodes")
            bar.set_postfix_str(f"{p.name}: attribution")
            attr = attribute_recording(rec, p.actor, layout, joint_names, settings.attribution)
            bar.update(w_attr)
            lap("attribution")
            bar.set_postfix_str(f"{p.name}: probes")
            probes = probe_recording(rec, settings.probes)
            bar.update(w_probe)
            lap("probes")
            bar.set_postfix_str(f"{p.name}: projections")
            proj = projections(rec, max_points=settings.projection_points, seed=settings.probes.seed)
            bar.update(w_proj)
            lap("projections")
            results[p.name] = {"policy": p.describe(), "architecture": p.architecture, "memory": rec.memory_kind,
                               "success_rate": float(rec.success.mean()),
                               "final_distance_m": float(np.mean(rec.distance[np.arange(rec.episodes),
                                                                              rec.lengths - 1])),
                               "attribution": attr, "probes": probes,
                               "probe_summary": summarize_probes(probes, settings.probe_time_s),
                               "projection": proj, "weights": weight_statistics(p.actor)}
        bar.set_postfix_str("sanity checks")
        sanity = {"model_randomisation": randomisation_check(main.actor, recordings[main.name])}
        bar.update(1)
        lap("sanity")
        ablations = None
        if abl is not None:
            bar.set_postfix_str(f"{main.name}: ablations")
            weights = (probe_weights(recordings[main.name], settings.probe_time_s, settings.probes)
                       if main.recurrent else None)
            ablations = run_ablations(main.actor, envs, abl, weights, progress=bar.update)
            lap("ablations")
        gap = None
        if real_obs is not None:
            bar.set_postfix_str("recorded episodes")
            gap = _reality_gap(main, real, real_obs, recordings[main.name], results[main.name], layout, joint_names,
                               settings)
            lap("reality_gap")
        bar.set_postfix_str("report")
        summary = _summary(main, policies, results, task_record, settings, sanity, ablations)
        summary["reality_gap"] = gap
        figures = _figures(summary, results, recordings, main, out)
        summary["figures"] = {k: v.name for k, v in figures.items()}
        lap("figures")
        summary["timings_s"] = timings
        summary["wall_time_s"] = round(time.monotonic() - started, 1)
        report.write_json(summary, out)
        report.write_report(summary, figures, out)
        bar.update(1)
    finally:
        bar.close()
    return summary


def _reality_gap(main, real, real_obs, sim_rec, sim_result, layout, joint_names, settings) -> dict:
    from policies.explain.gap import probe_estimates, replay
    rec, reproduction = replay(main.actor, real_obs, sim_rec.control_rate_hz, sim_rec.dynamics_names,
                               real.get("hidden"), f"{main.name} ({real['source']})")
    attr = attribute_recording(rec, main.actor, layout, joint_names, settings.attribution)
    rows = sim_result["probe_summary"]["rows"]
    chosen = [r["parameter"] for r in rows[:6]]
    if "action_latency" in sim_rec.dynamics_names and "action_latency" not in chosen:
        chosen.append("action_latency")
    estimates = probe_estimates(sim_rec, rec, settings.probes.times_s, real.get("hidden"), chosen)
    estimates["probe_r2"] = {n: sim_result["probes"]["ridge_r2"].get(n) for n in estimates["parameters"]}
    sim_attr = sim_result["attribution"]
    return {"source": real["source"], "episodes": rec.episodes, "steps": int(rec.obs.shape[1]),
            "hidden_known": bool(real.get("hidden")),
            "action_reproduction_median_abs": reproduction,
            "attribution": {"sim": sim_attr.group_shares["integrated_gradients"],
                            "real": attr.group_shares["integrated_gradients"],
                            "sim_lag_shares": sim_attr.lag_shares["integrated_gradients"],
                            "real_lag_shares": attr.lag_shares["integrated_gradients"],
                            "real_top_elements": attr.summary()["top_elements"]["integrated_gradients"]},
            "estimates": estimates}


def _summary(main, policies, results, task_record, settings, sanity, ablations) -> dict:
    per_policy = {}
    for name, r in results.items():
        attr = r["attribution"]
        per_policy[name] = {
            "policy": r["policy"], "architecture": r["architecture"], "memory": r["memory"],
            "success_rate": r["success_rate"], "final_distance_m": r["final_distance_m"],
            "attribution": {**attr.summary(), "labels": attr.labels, "groups": attr.groups,
                            "joint_groups": attr.joint_groups,
                            "maps": {m: v.round(6).tolist() for m, v in attr.maps.items()},
                            "ablation_groups": attr.ablation_groups.round(6).tolist(),
                            "ablation_joints": attr.ablation_joints.round(6).tolist(), "episode": attr.episode},
            "probes": r["probes"], "probe_summary": r["probe_summary"],
            "projection": {"pca_explained_variance": r["projection"]["pca_explained_variance"],
                           "points": int(len(r["projection"]["episode"]))},
            "weights": r["weights"]}
    return {"policy": main.describe(), "task": task_record, "randomization": settings.randomization,
            "episodes": settings.episodes, "seed": settings.seed, "probe_time_s": settings.probe_time_s,
            "probe_folds": settings.probes.folds, "attribution_settings": dict(settings.attribution.__dict__),
            "policies": per_policy, "sanity": sanity, "ablations": ablations}


def _figures(summary, results, recordings, main, out: Path) -> dict[str, Path]:
    from policies.explain import report
    name = main.name
    pol = summary["policies"]
    figs = {
        "Attribution through time (signal x lag)": report.plot_attribution_maps(
            pol[name]["attribution"], name, out / "attribution_heatmap.png"),
        "Attribution per signal group": report.plot_group_bars(pol, name, out / "attribution_groups.png"),
        "Feature ablation per group and lag": report.plot_ablation_lags(
            pol[name]["attribution"], name, out / "attribution_ablation.png"),
        "One episode over time": report.plot_episode(pol[name]["attribution"], name, out / "attribution_episode.png"),
        "Probe R^2 (parameter x policy x time)": report.plot_probe_heatmaps(pol, out / "probes_r2.png"),
        "Probe accuracy (above / below the mean)": report.plot_probe_heatmaps(
            pol, out / "probes_accuracy.png", key="logistic_accuracy"),
        "Probe scores over time, with shuffled-label controls": report.plot_probe_curves(
            pol, out / "probes_over_time.png"),
    }
    main_rows = pol[name]["probe_summary"]["rows"]
    for pname, r in results.items():
        rec = recordings[pname]
        names = list(rec.dynamics_names)
        show = [row["parameter"] for row in main_rows[:3]]
        if "action_latency" in names and "action_latency" not in show and "action_latency" in r["probes"]["parameters"]:
            show.append("action_latency")
        if show:
            figs[f"Memory projections: {pname}"] = report.plot_projection(
                r["projection"], rec.dynamics, names, show, pname, out / f"memory_projection_{pname}.png")
    if summary.get("reality_gap"):
        figs["Reality gap: simulated vs recorded episodes"] = report.plot_reality_gap(
            summary["reality_gap"], name, out / "reality_gap.png")
    if summary.get("ablations"):
        figs["Ablations"] = report.plot_ablations(summary["ablations"], name, out / "ablations.png")
    figs["Weights"] = report.plot_weights(main.actor, pol[name]["weights"], name, out / "weights.png")
    return figs
