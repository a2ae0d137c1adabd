"""Interpretability of trained policies: ``sim2real explain`` (training extras: torch, Captum,
scikit-learn; never imported by the deployed runtime).

* :mod:`~policies.explain.loading`: the actor of a checkpoint or artifact (ONNX -> torch
  reconstruction, parity-checked, when the artifact ships no checkpoint);
* :mod:`~policies.explain.rollout`: batched seeded episodes recording observations, actions,
  memory and the sampled dynamics;
* :mod:`~policies.explain.attribution`: attribution through time (Captum: saliency, SmoothGrad,
  VarGrad, integrated gradients, feature ablation with the mean-observation baseline);
* :mod:`~policies.explain.probes`: ridge / logistic probes from the memory to the dynamics with
  shuffled-label controls, PCA / t-SNE (scikit-learn);
* :mod:`~policies.explain.ablation`: zeroed units and layers, re-initialised layers, weight statistics;
* :mod:`~policies.explain.report`: figures, JSON, markdown and self-contained HTML;
* :mod:`~policies.explain.pipeline`: :func:`explain`, all of it.
"""
from policies.explain.loading import ExplainedPolicy, ExplainError, actor_from_onnx, load_explained_policy, onnx_parity
from policies.explain.pipeline import ExplainSettings, explain

__all__ = ["ExplainError", "ExplainSettings", "ExplainedPolicy", "actor_from_onnx", "explain",
           "load_explained_policy", "onnx_parity"]
