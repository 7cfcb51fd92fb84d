"""Baselines of a linear classifier that need no training: computed on cached features (Figure 13).

Given a curve's two heads (the zero-shot head and the fine-tuned linear classifier, both on the frozen
zero-shot encoder), each alpha of these costs a matrix product on the evaluation sets' cached features:

- output-space ensembles: ``(1 - a) * logits_zs + a * logits_lc`` (``logit``), or the same on softmax
  probabilities (``prob``);
- random ("Bernoulli") interpolation: each weight of the head from the LC with probability ``a``, else from
  the zero-shot head, averaged over ``draws`` seeded draws.

    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.baselines.head_baselines import head_baseline_curves
    rows = head_baseline_curves(CurveConfig(modes=["linear"], n_test=200), seed=0, bernoulli_draws=3)
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import pandas as pd
import torch

from wiseft_lib.baselines.output_ensembles import SPACES, ensemble_mode
from wiseft_lib.core.evaluate import evaluate_head, score
from wiseft_lib.core.interpolate import bernoulli_interpolate
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.endpoints import Endpoints, finetuned_run
from wiseft_lib.experiment.runs import RunCache

__all__ = ["BERNOULLI", "head_baseline_curves"]

BERNOULLI = "random interpolation (Bernoulli)"


def head_baseline_curves(cfg: CurveConfig, seed: int = 0, *, runs: Optional[RunCache] = None,
                         spaces: Sequence[str] = ("logit", "prob"), bernoulli_draws: int = 5,
                         progress: bool = False) -> pd.DataFrame:
    """Tidy rows ``(seed, mode, alpha, dataset, metric, value)`` at ``cfg.alphas`` of the output-space ensembles
    (one ``mode`` per space) and of random interpolation (mean over ``bernoulli_draws``; 0: none) of the
    zero-shot head and the cached linear classifier of ``cfg`` (the one WiSE-FT LC uses)."""

    unknown = [s for s in spaces if s not in SPACES]
    if unknown:
        raise ValueError(f"unknown ensemble space(s) {unknown}; known: {', '.join(SPACES)}")
    if bernoulli_draws < 0:
        raise ValueError(f"bernoulli_draws must be >= 0, got {bernoulli_draws}")
    ep = Endpoints(cfg, seed, runs if runs is not None else RunCache(None), progress)
    run = finetuned_run(ep, "linear")
    zs_head = copy.deepcopy(ep.zeroshot().classification_head).cpu().eval()
    lc_head = run.load_head(ep).cpu().eval()
    theta_0, theta_1 = zs_head.state_dict(), lc_head.state_dict()
    work = copy.deepcopy(zs_head)
    rows = []

    def add(mode: str, alpha: float, name: str, metrics: dict, n: int) -> None:
        rows.extend({"seed": seed, "mode": mode, "alpha": alpha, "dataset": name, "metric": k, "value": v}
                    for k, v in {**metrics, "n_images": float(n)}.items())

    for name in cfg.eval_names():
        x, y = ep.features(name)
        bundle = ep.scoring_bundle(name)
        with torch.no_grad():
            zs, lc = zs_head(x.float()), lc_head(x.float())
        for alpha in cfg.alphas:
            for space in spaces:
                add(ensemble_mode(space), alpha, name, score(SPACES[space](zs, lc, alpha), y, bundle), len(y))
            if bernoulli_draws:
                draws = []
                for d in range(bernoulli_draws):
                    work.load_state_dict(bernoulli_interpolate(theta_0, theta_1, alpha, seed=1000 * seed + d,
                                                               per="element"))
                    draws.append(evaluate_head(work, x, y, bundle))
                add(BERNOULLI, alpha, name, {k: sum(m[k] for m in draws) / len(draws) for k in draws[0]}, len(y))
    return pd.DataFrame(rows)
