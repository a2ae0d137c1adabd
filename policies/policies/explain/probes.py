"""What the memory knows about the dynamics: linear probes and projections (scikit-learn).

For each probe time (0.5, 1, 2, 4 s) the features are the memory after that step, one row per
episode (LSTM: ``[h, c]``; MLP: its last hidden layer, which holds only the present); the labels
are the episode's sampled dynamics parameters.

* ridge: ``StandardScaler -> RidgeCV`` (alpha chosen per parameter from a log grid), the
  **held-out** R^2 of ``k``-fold cross-validated predictions (R^2 = 1 - SS_res / SS_tot; 0 = the
  mean, < 0 = worse than the mean);
* logistic: above / below the parameter's mean (as Dactyl reported), ``StandardScaler ->
  LogisticRegression(C)``, held-out accuracy of stratified ``k``-fold CV; chance = the majority
  class share;
* control: the same pipelines on labels shuffled across episodes (one permutation): a probe that
  "finds" a shuffled label is fitting noise (R^2 must stay <= ~0, accuracy near chance).

Parameters that do not vary across the recorded episodes are left out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.explain.rollout import Recording

PROBE_TIMES_S = (0.5, 1.0, 2.0, 4.0)
RIDGE_ALPHAS = np.logspace(-2, 5, 15)


@dataclass
class ProbeSettings:
    times_s: tuple[float, ...] = PROBE_TIMES_S
    folds: int = 5
    logistic_c: float = 0.1
    seed: int = 0


def probe_step(time_s: float, rate_hz: float) -> int:
    """The control step whose memory holds the first ``time_s`` seconds (step k ends at (k+1)/rate)."""
    return max(0, int(round(time_s * rate_hz)) - 1)


def varying(y: np.ndarray) -> np.ndarray:
    """Columns of ``y`` that vary across episodes (relative spread above float noise)."""
    spread = y.std(0)
    return spread > 1e-6 * np.maximum(np.abs(y).mean(0), 1e-12)


def ridge_r2(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Held-out R^2 per column of ``y`` [N, P] from ``x`` [N, F] (k-fold cross-validated predictions)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True))
    ys = (y - y.mean(0)) / y.std(0)  # per-target scale, so one alpha grid fits all
    pred = cross_val_predict(model, x, ys, cv=KFold(folds, shuffle=True, random_state=seed))
    return np.asarray(r2_score(ys, pred, multioutput="raw_values"))


def logistic_accuracy(x: np.ndarray, labels: np.ndarray, folds: int, seed: int, c: float) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(labels.astype(int), minlength=2)
    k = int(min(folds, counts.min()))
    if k < 2:
        return float("nan")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, solver="liblinear"))
    return float(cross_val_score(model, x, labels, cv=StratifiedKFold(k, shuffle=True, random_state=seed)).mean())


def probe_memory(features_at: dict[float, np.ndarray], y: np.ndarray, names: list[str],
                 settings: ProbeSettings | None = None) -> dict:
    """Probes from the memory at each time (``features_at[t]``: [N, F]) to each column of ``y`` [N, P].

    Returns ``{"parameters": [...], "times_s": [...], "ridge_r2": {name: [per time]},
    "ridge_r2_shuffled": ..., "logistic_accuracy": ..., "logistic_accuracy_shuffled": ...,
    "chance_accuracy": {name: share}}``."""
    settings = settings or ProbeSettings()
    rng = np.random.default_rng(settings.seed)
    keep = varying(y)
    y = y[:, keep]
    names = [n for n, k in zip(names, keep) if k]
    perm = rng.permutation(len(y))
    y_shuf = y[perm]
    labels = y > y.mean(0)
    labels_shuf = labels[perm]
    times = sorted(features_at)
    out = {"parameters": names, "times_s": times, "episodes": int(len(y)), "folds": settings.folds,
           "ridge_r2": {n: [] for n in names}, "ridge_r2_shuffled": {n: [] for n in names},
           "logistic_accuracy": {n: [] for n in names}, "logistic_accuracy_shuffled": {n: [] for n in names},
           "chance_accuracy": {n: float(max(labels[:, j].mean(), 1 - labels[:, j].mean()))
                               for j, n in enumerate(names)}}
    for t in times:
        x = features_at[t]
        r2 = ridge_r2(x, y, settings.folds, settings.seed)
        r2_shuf = ridge_r2(x, y_shuf, settings.folds, settings.seed)
        for j, n in enumerate(names):
            out["ridge_r2"][n].append(float(r2[j]))
            out["ridge_r2_shuffled"][n].append(float(r2_shuf[j]))
            out["logistic_accuracy"][n].append(
                logistic_accuracy(x, labels[:, j], settings.folds, settings.seed, settings.logistic_c))
            out["logistic_accuracy_shuffled"][n].append(
                logistic_accuracy(x, labels_shuf[:, j], settings.folds, settings.seed, settings.logistic_c))
    return out


def probe_recording(rec: Recording, settings: ProbeSettings | None = None, progress=None) -> dict:
    settings = settings or ProbeSettings()
    features = {t: rec.memory_at(probe_step(t, rec.control_rate_hz)) for t in settings.times_s
                if probe_step(t, rec.control_rate_hz) < rec.memory.shape[1]}
    result = probe_memory(features, rec.dynamics, list(rec.dynamics_names), settings)
    result["memory"] = rec.memory_kind
    result["features"] = int(rec.memory.shape[-1])
    if progress is not None:
        progress(1)
    return result


def probe_weights(rec: Recording, time_s: float, settings: ProbeSettings | None = None) -> np.ndarray:
    """|standardized ridge weight| per memory feature, summed over the parameters (at ``time_s``):
    which units carry the dynamics (the ablations zero the top ones)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(rec.memory_at(probe_step(time_s, rec.control_rate_hz)))
    y = rec.dynamics[:, varying(rec.dynamics)]
    y = (y - y.mean(0)) / y.std(0)
    coef = RidgeCV(alphas=RIDGE_ALPHAS).fit(x, y).coef_  # [P, F]
    return np.abs(coef).sum(0)


def summarize_probes(probes: dict, time_s: float = 2.0) -> dict:
    """Per parameter at ``time_s``: R^2, accuracy and their shuffled controls, best first."""
    ti = min(range(len(probes["times_s"])), key=lambda i: abs(probes["times_s"][i] - time_s))
    rows = [{"parameter": n, "r2": probes["ridge_r2"][n][ti], "r2_shuffled": probes["ridge_r2_shuffled"][n][ti],
             "accuracy": probes["logistic_accuracy"][n][ti],
             "accuracy_shuffled": probes["logistic_accuracy_shuffled"][n][ti],
             "chance": probes["chance_accuracy"][n]} for n in probes["parameters"]]
    return {"time_s": probes["times_s"][ti], "rows": sorted(rows, key=lambda r: -r["r2"])}


def projections(rec: Recording, *, from_s: float = 1.0, every: int = 25, max_points: int = 1500,
                seed: int = 0) -> dict:
    """PCA and t-SNE of the memory at steps from ``from_s`` on (every ``every`` steps), with the episode
    of each point (to colour by its dynamics)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    start = probe_step(from_s, rec.control_rate_hz)
    steps = np.arange(start, rec.memory.shape[1], every)
    ep, st = np.meshgrid(np.arange(rec.episodes), steps, indexing="ij")
    ep, st = ep.ravel(), st.ravel()
    ok = st < rec.lengths[ep]
    ep, st = ep[ok], st[ok]
    rng = np.random.default_rng(seed)
    if len(ep) > max_points:
        pick = np.sort(rng.choice(len(ep), max_points, replace=False))
        ep, st = ep[pick], st[pick]
    x = StandardScaler().fit_transform(rec.memory[ep, st])
    x = x[:, x.std(0) > 0] if (x.std(0) > 0).any() else x
    pca = PCA(n_components=min(10, x.shape[1], x.shape[0]), random_state=seed).fit(x)
    pc = pca.transform(x)[:, :2]
    perplexity = float(min(30.0, max(5.0, (len(x) - 1) / 4)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return {"episode": ep, "step": st, "pca": pc, "tsne": tsne,
            "pca_explained_variance": pca.explained_variance_ratio_.round(4).tolist()}
