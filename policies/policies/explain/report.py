"""The explain report: PNG figures, ``explain.json`` (every number), ``report.md`` and a
self-contained ``report.html`` (figures embedded as data URIs), with a reading generated from the
numbers at the top."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

# Dactyl (arXiv 1808.00177, sec. 6.4): the LSTM state after 5 s predicts bigger/smaller than
# average block size in 80% of cases.
DACTYL_ACCURACY = 0.80
METHOD_TITLES = {"saliency": "gradient saliency", "smoothgrad": "SmoothGrad", "vargrad": "VarGrad",
                 "integrated_gradients": "integrated gradients", "ablation": "feature ablation (mean)"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


# --- figures -----------------------------------------------------------------------------------
def plot_attribution_maps(attr: dict, name: str, path: Path) -> Path:
    """Signal x lag heat map per method (each normalized to its own total)."""
    plt = _plt()
    maps = attr["maps"]
    methods = list(maps)
    labels, lag_s = attr["labels"], attr["lag_s"]
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 0.28 * len(labels) + 1.8),
                             sharey=True)
    for ax, m in zip(np.atleast_1d(axes), methods):
        v = np.asarray(maps[m])
        v = v / max(float(v.sum()), 1e-12)
        im = ax.imshow(v, aspect="auto", cmap="magma", interpolation="nearest",
                       extent=(lag_s[0] - 0.5 * (lag_s[1] - lag_s[0]) if len(lag_s) > 1 else -0.01,
                               lag_s[-1] + 0.5 * (lag_s[1] - lag_s[0]) if len(lag_s) > 1 else 0.01,
                               len(labels) - 0.5, -0.5))
        ax.set_title(METHOD_TITLES.get(m, m), fontsize=9)
        ax.set_xlabel("lag (s before the action)")
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    ax0 = np.atleast_1d(axes)[0]
    ax0.set_yticks(range(len(labels)))
    ax0.set_yticklabels(labels, fontsize=7)
    fig.suptitle(f"{name}: attribution of the action to each observation element and lag "
                 f"(share of the method's total)", fontsize=10)
    return _save(fig, path)


def plot_group_bars(results: dict, main: str, path: Path) -> Path:
    """Per-group shares: every method for the main policy; integrated gradients for each policy."""
    plt = _plt()
    shares = results[main]["attribution"]["group_shares"]
    methods = list(shares)
    groups = list(next(iter(shares.values())))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    width = 0.8 / len(methods)
    x = np.arange(len(groups))
    for i, m in enumerate(methods):
        axes[0].bar(x + i * width - 0.4 + width / 2, [shares[m][g] for g in groups], width,
                    label=METHOD_TITLES.get(m, m))
    axes[0].set_xticks(x, groups)
    axes[0].set_ylabel("share of attribution")
    axes[0].set_title(f"{main}: per signal group (all lags)")
    axes[0].legend(fontsize=7)
    names = list(results)
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        s = results[n]["attribution"]["group_shares"]["integrated_gradients"]
        axes[1].bar(x + i * width - 0.4 + width / 2, [s.get(g, 0.0) for g in groups], width, label=n)
    axes[1].set_xticks(x, groups)
    axes[1].set_title("integrated gradients, per policy")
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def plot_ablation_lags(attr: dict, name: str, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    lag_s = attr["lag_s"]
    for ax, key, rows, title in ((axes[0], "ablation_groups", attr["groups"], "per signal group"),
                                 (axes[1], "ablation_joints", attr["joint_groups"], "per joint (pos, vel, prev action)")):
        v = np.asarray(attr[key])
        im = ax.imshow(v, aspect="auto", cmap="viridis", interpolation="nearest",
                       extent=(lag_s[0], lag_s[-1], len(rows) - 0.5, -0.5))
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xlabel("lag (s before the action)")
        ax.set_title(f"{title}: ||delta action|| when replaced by the mean", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.suptitle(f"{name}: feature ablation with the mean-observation baseline", fontsize=10)
    return _save(fig, path)


def plot_episode(attr: dict, name: str, path: Path) -> Path:
    plt = _plt()
    ep = attr["episode"]
    t = np.asarray(ep["time_s"])
    a = np.asarray(ep["attribution"])
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True, height_ratios=(2, 1))
    share = a / np.maximum(a.sum(1, keepdims=True), 1e-12)
    ax0.stackplot(t, share.T, labels=ep["groups"])
    ax0.set_ylabel("share of |IG| (0.5 s window)")
    ax0.legend(loc="upper right", fontsize=7)
    ax0.set_title(f"{name}: one episode (seed {ep['seed']}, {'success' if ep['success'] else 'no success'})")
    ax1.plot(t, np.asarray(ep["distance_m"]) * 100, color="k")
    ax1.set_ylabel("task error (cm)")
    ax1.set_xlabel("time (s)")
    ax1b = ax1.twinx()
    ax1b.plot(t, a.sum(1), color="tab:red", alpha=0.6)
    ax1b.set_ylabel("total |IG|", color="tab:red")
    return _save(fig, path)


def plot_probe_heatmaps(results: dict, path: Path, key: str = "ridge_r2") -> Path:
    """Parameters x (policy, time) of held-out R^2 (or accuracy); shuffled controls in the JSON."""
    plt = _plt()
    names = list(results)
    params = results[names[0]]["probes"]["parameters"]
    for n in names[1:]:
        params = [p for p in params if p in results[n]["probes"]["parameters"]]
    cols, data = [], []
    for n in names:
        pr = results[n]["probes"]
        for ti, t in enumerate(pr["times_s"]):
            cols.append(f"{n}\n{t:g} s")
            data.append([pr[key][p][ti] for p in params])
    data = np.asarray(data).T
    is_r2 = key == "ridge_r2"
    fig, ax = plt.subplots(figsize=(1.0 * len(cols) + 3, 0.2 * len(params) + 2))
    im = ax.imshow(data, aspect="auto", cmap="RdBu_r" if is_r2 else "viridis",
                   vmin=-1 if is_r2 else 0.3, vmax=1 if is_r2 else 1.0, interpolation="nearest")
    ax.set_yticks(range(len(params)), params, fontsize=6)
    ax.set_xticks(range(len(cols)), cols, fontsize=7, rotation=45, ha="right")
    for k in range(1, len(names)):
        ax.axvline(k * len(results[names[0]]["probes"]["times_s"]) - 0.5, color="k", lw=1)
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title("held-out R^2 of a ridge probe from the memory" if is_r2
                 else "held-out accuracy of a logistic probe (above / below the mean)", fontsize=10)
    return _save(fig, path)


def plot_probe_curves(results: dict, path: Path) -> Path:
    """Best and mean probe score over time per policy, with the shuffled-label controls."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for i, n in enumerate(results):
        pr = results[n]["probes"]
        t = pr["times_s"]
        color = f"C{i}"
        for ax, key, agg in ((axes[0], "ridge_r2", np.max), (axes[1], "logistic_accuracy", np.max)):
            real = np.array([pr[key][p] for p in pr["parameters"]])
            shuf = np.array([pr[key + "_shuffled"][p] for p in pr["parameters"]])
            ax.plot(t, agg(real, 0), "-o", color=color, label=f"{n}: best parameter")
            ax.plot(t, np.mean(real, 0), "--", color=color, label=f"{n}: mean over parameters")
            ax.plot(t, agg(shuf, 0), ":", color=color, alpha=0.7, label=f"{n}: best, shuffled labels")
    axes[0].set_ylabel("held-out R^2")
    axes[1].set_ylabel("held-out accuracy")
    axes[1].axhline(DACTYL_ACCURACY, color="grey", lw=1)
    axes[1].text(0.02, DACTYL_ACCURACY + 0.01, "Dactyl block size 80%", fontsize=7,
                 transform=axes[1].get_yaxis_transform())
    for ax in axes:
        ax.set_xlabel("memory after (s)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(t, [f"{x:g}" for x in t])
    axes[0].legend(fontsize=6)
    fig.suptitle("what the memory knows about the dynamics, over the episode", fontsize=10)
    return _save(fig, path)


def plot_projection(proj: dict, dynamics: np.ndarray, names: list[str], show: list[str], policy: str,
                    path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(2, len(show), figsize=(3.3 * len(show), 6.4), squeeze=False)
    for j, p in enumerate(show):
        c = dynamics[proj["episode"], names.index(p)]
        for i, key in enumerate(("pca", "tsne")):
            ax = axes[i, j]
            sc = ax.scatter(proj[key][:, 0], proj[key][:, 1], c=c, s=4, cmap="coolwarm")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{'PCA' if key == 'pca' else 't-SNE'}: {p}", fontsize=8)
            fig.colorbar(sc, ax=ax, fraction=0.05)
    ev = proj["pca_explained_variance"]
    fig.suptitle(f"{policy}: memory from 1 s on, coloured by the sampled parameter "
                 f"(PC1+PC2 explain {100 * (ev[0] + ev[1]):.0f}% of the variance)", fontsize=10)
    return _save(fig, path)


def plot_ablations(abl: dict, name: str, path: Path) -> Path:
    plt = _plt()
    variants = abl["variants"]
    has_units = bool(abl.get("units"))
    fig, axes = plt.subplots(1, 2 if has_units else 1, figsize=(13 if has_units else 7, 0.3 * len(variants) + 2),
                             squeeze=False)
    ax = axes[0, 0]
    labels = ["intact"] + [v["label"] for v in variants]
    rates = [abl["intact"]["success_rate"]] + [v["success_rate"] for v in variants]
    ax.barh(range(len(labels)), rates, color=["tab:green"] + ["tab:blue"] * len(variants))
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"success rate ({abl['intact']['episodes']} episodes, same seeds)")
    ax.set_title(f"{name}: ablations", fontsize=10)
    if has_units:
        ax = axes[0, 1]
        units = abl["units"]
        w = [u["probe_weight"] if u["probe_weight"] is not None else 0.0 for u in units]
        ax.scatter(w, [u["final_distance_change_m"] * 100 for u in units], s=12)
        for u, x in zip(units, w):
            ax.annotate(str(u["unit"]), (x, u["final_distance_change_m"] * 100), fontsize=6)
        ax.set_xlabel("probe weight of the unit (|ridge coef| summed over parameters, h + c)")
        ax.set_ylabel("change of the final error when zeroed (cm)")
        ax.set_title(f"single LSTM units ({abl['unit_episodes']} episodes each)", fontsize=10)
    return _save(fig, path)


def plot_weights(actor, stats: list[dict], name: str, path: Path) -> Path:
    plt = _plt()
    params = [(n, p.detach().numpy().ravel()) for n, p in actor.named_parameters() if p.dim() >= 2]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for n, w in params:
        axes[0].hist(w, bins=80, histtype="step", density=True, label=n)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("weight")
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"{name}: weight distributions", fontsize=10)
    axes[1].bar(range(len(stats)), [s["spectral_norm"] for s in stats], color="tab:purple")
    axes[1].set_xticks(range(len(stats)), [s["name"] for s in stats], rotation=30, fontsize=7, ha="right")
    axes[1].set_ylabel("spectral norm")
    return _save(fig, path)


def plot_reality_gap(gap: dict, name: str, path: Path) -> Path:
    """Attribution per group, simulated vs recorded; the memory's estimate of each parameter over the
    recorded episodes against the randomization's mean and (emulator) the hidden value."""
    plt = _plt()
    est = gap["estimates"]
    params = est["parameters"]
    ncols = min(4, 1 + len(params))
    nrows = -(-(1 + len(params)) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.3 * nrows), squeeze=False)
    axes = axes.ravel()
    for ax in axes[1 + len(params):]:
        ax.set_visible(False)
    ax = axes[0]
    groups = list(gap["attribution"]["sim"])
    x = np.arange(len(groups))
    ax.bar(x - 0.2, [gap["attribution"]["sim"][g] for g in groups], 0.4, label="simulated")
    ax.bar(x + 0.2, [gap["attribution"]["real"].get(g, 0.0) for g in groups], 0.4, label=gap["source"])
    ax.set_xticks(x, groups, rotation=30, fontsize=7, ha="right")
    ax.set_title("integrated gradients per group", fontsize=9)
    ax.legend(fontsize=7)
    t = est["times_s"]
    for j, p in enumerate(params):
        ax = axes[j + 1]
        mean, std = np.asarray(est["estimate_mean"][p]), np.asarray(est["estimate_std"][p])
        ax.errorbar(t, mean, yerr=std, fmt="-o", ms=3, label="memory's estimate")
        ax.axhline(est["sim_mean"][p], color="grey", ls="--", lw=1, label="randomization mean")
        if est["hidden"][p] is not None:
            ax.axhline(est["hidden"][p], color="tab:red", lw=1.2, label="hidden value")
        r2 = est.get("probe_r2", {}).get(p)
        r2_txt = f" (sim R^2 at 2 s {r2[2]:.2f})" if isinstance(r2, list) and len(r2) > 2 else ""
        ax.set_title(f"{p}{r2_txt}", fontsize=8)
        ax.set_xlabel("memory after (s)", fontsize=8)
        if j == 0:
            ax.legend(fontsize=6)
    fig.suptitle(f"{name}: {gap['episodes']} recorded episodes ({gap['source']}) next to the simulated ones "
                 f"(estimates: mean +- std over the episodes)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# --- text --------------------------------------------------------------------------------------
def reading(summary: dict) -> list[str]:
    """A few sentences generated from the numbers."""
    main = summary["policy"]["name"]
    res = summary["policies"]
    lines = []
    attr = res[main]["attribution"]
    ig = attr["group_shares"]["integrated_gradients"]
    order = sorted(ig, key=lambda g: -ig[g])
    abl = attr["ablation_by_group"]
    abl_top = max(abl, key=abl.get)
    lag = attr["lag_shares"]["integrated_gradients"]
    now_share = lag[0]
    past = sum(s for s, t in zip(lag, attr["lag_s"]) if t >= 0.1)
    lines.append(f"{main} relies mostly on {order[0]} ({100 * ig[order[0]]:.0f}% of the integrated gradients) "
                 f"and {order[1]} ({100 * ig[order[1]]:.0f}%); replacing one group by its mean moves the action "
                 f"most for {abl_top}. Top elements: "
                 + ", ".join(f"{lbl} ({100 * s:.0f}%)" for lbl, s in attr["top_elements"]["integrated_gradients"][:3])
                 + ".")
    lines.append(f"The current observation carries {100 * now_share:.0f}% of the attribution; observations "
                 f"0.1 s or more in the past carry {100 * past:.0f}% (through the LSTM)."
                 if res[main]["architecture"] == "lstm" else
                 "As a feed-forward policy it sees only the current observation.")
    for name, r in res.items():
        s = r["probe_summary"]
        if not s["rows"]:
            continue
        best = s["rows"][0]
        acc_best = max(s["rows"], key=lambda row: row["accuracy"])
        shuf = max(row["r2_shuffled"] for row in s["rows"])
        acc_shuf = max(row["accuracy_shuffled"] for row in s["rows"])
        lines.append(f"{name} ({r['memory']}): after {s['time_s']:g} s the memory predicts {best['parameter']} with "
                     f"held-out R^2 {best['r2']:.2f} (shuffled labels: best {shuf:.2f}); best above/below-mean "
                     f"accuracy {100 * acc_best['accuracy']:.0f}% ({acc_best['parameter']}; chance "
                     f"{100 * acc_best['chance']:.0f}%, best on shuffled labels {100 * acc_shuf:.0f}%; Dactyl's block size: 80%).")
    abl_res = summary.get("ablations")
    if abl_res:
        worst = max(abl_res["variants"], key=lambda v: v["success_drop"], default=None)
        if worst is not None:
            lines.append(f"Ablations: {worst['label']} costs the most ({100 * worst['success_drop']:.0f} points of "
                         f"success, intact {100 * abl_res['intact']['success_rate']:.0f}%).")
        tops = [v for v in abl_res["variants"] if v["kind"] == "zero_top_units"]
        rands = {v["k"]: v for v in abl_res["variants"] if v["kind"] == "zero_random_units"}
        for v in tops:
            r = rands.get(v["k"])
            if r is not None:
                lines.append(f"Zeroing the top-{v['k']} probe units: success {100 * v['success_rate']:.0f}%, final "
                             f"error {100 * v['final_distance_m']:.1f} cm; {v['k']} random units: "
                             f"{100 * r['success_rate']:.0f}%, {100 * r['final_distance_m']:.1f} cm.")
    gap = summary.get("reality_gap")
    if gap:
        sim, real = gap["attribution"]["sim"], gap["attribution"]["real"]
        moved = max(sim, key=lambda g: abs(real.get(g, 0.0) - sim[g]))
        lines.append(f"On {gap['episodes']} recorded episodes ({gap['source']}; the policy's recorded actions are "
                     f"reproduced to {gap['action_reproduction_median_abs']:.1e} median): the attribution share "
                     f"of {moved} moves from {100 * sim[moved]:.0f}% in simulation to {100 * real.get(moved, 0.0):.0f}%.")
        est = gap["estimates"]
        state = "LSTM memory" if res[main]["architecture"] == "lstm" else "last hidden layer"
        for p in est["parameters"]:
            hidden = est["hidden"][p]
            r2 = (est.get("probe_r2") or {}).get(p) or []
            if hidden is None or not est["times_s"] or (max(r2, default=0.0) < 0.1 and p != "action_latency"):
                continue  # a probe that explains nothing in simulation only ever predicts the mean
            first, last = est["estimate_mean"][p][0], est["estimate_mean"][p][-1]
            step = abs(last - first)
            if step < 0.25 * est["sim_std"][p]:
                verdict = "it does not move (less than a quarter of the randomization's std)"
            elif abs(last - hidden) < abs(first - hidden):
                verdict = "toward the hidden value"
            else:
                verdict = "away from the hidden value"
            lines.append(f"Probe estimate of {p} from the {state} (sim probe R^2 up to {max(r2, default=0.0):.2f}): {first:.3g} after "
                         f"{est['times_s'][0]:g} s, {last:.3g} after {est['times_s'][-1]:g} s (hidden {hidden:.3g}, "
                         f"randomization mean {est['sim_mean'][p]:.3g}): {verdict}.")
    check = summary.get("sanity", {}).get("model_randomisation")
    if check:
        lines.append(f"Model-randomisation check: saliency of the trained vs a re-initialised actor, Spearman "
                     f"{check['spearman_trained_vs_random']:.2f} ({'passed' if check['passed'] else 'FAILED'}: "
                     f"the maps depend on the weights).")
    return lines


def probe_table(summary: dict) -> list[str]:
    """Markdown rows: parameter | R^2 per policy at 2 s | accuracy per policy (top parameters of the main policy)."""
    res = summary["policies"]
    names = list(res)
    main = summary["policy"]["name"]
    head = ("| parameter | " + " | ".join(f"R^2 {n}" for n in names) + " | "
            + " | ".join(f"acc. {n}" for n in names) + " |")
    rows = [head, "|" + "---|" * (1 + 2 * len(names))]
    by_name = {n: {r["parameter"]: r for r in res[n]["probe_summary"]["rows"]} for n in names}
    for r in res[main]["probe_summary"]["rows"][:12]:
        p = r["parameter"]
        cells = [f"{by_name[n][p]['r2']:.2f}" if p in by_name[n] else "-" for n in names]
        cells += [f"{100 * by_name[n][p]['accuracy']:.0f}%" if p in by_name[n] else "-" for n in names]
        rows.append(f"| {p} | " + " | ".join(cells) + " |")
    return rows


def write_report(summary: dict, figures: dict[str, Path], out: Path) -> tuple[Path, Path]:
    title = f"sim2real explain: {summary['policy']['name']}"
    lines = reading(summary)
    table = probe_table(summary)
    md = [f"# {title}", "", *[f"- {line}" for line in lines], "",
          f"Task `{summary['task']['name']}`, randomization `{summary['randomization']}`, "
          f"{summary['episodes']} episodes per policy; every number is in `explain.json`.", "",
          f"## Probes (memory after {summary['probe_time_s']:g} s; held-out, {summary['probe_folds']}-fold)", "",
          *table, ""]
    for key, path in figures.items():
        md += [f"## {key}", "", f"![{key}]({path.name})", ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md))

    def img(path: Path) -> str:
        data = base64.b64encode(path.read_bytes()).decode()
        return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'

    def md_table(rows: list[str]) -> str:
        cells = [r.strip("|").split("|") for r in rows if not r.startswith("|---")]
        out_rows = ["<tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in cells[0]) + "</tr>"]
        out_rows += ["<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in cells[1:]]
        return "<table>" + "".join(out_rows) + "</table>"

    policies = "".join(f"<li>{html.escape(n)}: {html.escape(r['architecture'])}, weights from "
                       f"{html.escape(r['policy']['weights_from'])}, trained under "
                       f"{html.escape(r['policy']['trained_randomization'])}; success "
                       f"{100 * r['success_rate']:.0f}% on these episodes</li>"
                       for n, r in summary["policies"].items())
    body = [f"<h1>{html.escape(title)}</h1>", "<h2>Reading</h2><ul>",
            *[f"<li>{html.escape(line)}</li>" for line in lines], "</ul>",
            f"<p>Task <code>{html.escape(summary['task']['name'])}</code>, randomization "
            f"<code>{html.escape(summary['randomization'])}</code>, {summary['episodes']} episodes per policy. "
            f"Every number is in <code>explain.json</code>.</p><ul>{policies}</ul>",
            f"<h2>Probes (memory after {summary['probe_time_s']:g} s)</h2>", md_table(table)]
    for key, path in figures.items():
        body += [f"<h2>{html.escape(key)}</h2>", img(path)]
    style = ("body{font-family:sans-serif;max-width:1400px;margin:1em auto;padding:0 1em}"
             "img{max-width:100%;height:auto;border:1px solid #ddd}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child{text-align:left}")
    page = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{style}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    html_path = out / "report.html"
    html_path.write_text(page)
    return md_path, html_path


def write_json(summary: dict, out: Path) -> Path:
    path = out / "explain.json"
    path.write_text(json.dumps(summary, indent=1, default=_plain) + "\n")
    return path


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
