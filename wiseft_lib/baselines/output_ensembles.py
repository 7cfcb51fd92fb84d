"""Output-space ensembles of a WiSE-FT curve's two ends, swept over alpha from cached logits (Figure 10).

The paper's closest baseline mixes *predictions* instead of weights: ``(1 - a) * logits_zs + a * logits_ft``
(``logit``), or the same on softmax probabilities (``prob``). Each endpoint runs once per evaluation set;
its logits are kept in the run cache beside the fine-tune, so every alpha of either ensemble costs an
argmax, and a later study reads the scores without a forward pass. Unlike WiSE-FT, an ensemble costs two
forward passes at inference.

    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.baselines.output_ensembles import output_ensemble_curve
    rows = output_ensemble_curve(CurveConfig(n_test=200, n_train=256, e2e={"epochs": 1}), seed=0)
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wiseft_lib.core.ensemble import ensemble_logits, ensemble_probs
from wiseft_lib.core.evaluate import predict_logits, score
from wiseft_lib.core.files import atomic_path
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import missing_scores, tidy_scores
from wiseft_lib.experiment.endpoints import Endpoints, RunRef, finetuned_run
from wiseft_lib.experiment.runs import RunCache

__all__ = ["SPACES", "ensemble_mode", "endpoint_logits", "output_ensemble_curve"]

SPACES = {"logit": ensemble_logits, "prob": ensemble_probs}


def ensemble_mode(space: str) -> str:
    return f"output ensemble ({space})"


def endpoint_logits(ep: Endpoints, run: RunRef, which: str, name: str,
                    model: Optional[Callable[[], nn.Module]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, labels)`` of the zero-shot (``which="zeroshot"``) or fine-tuned end on one set, cached.

    ``model`` returns the endpoint when the logits must be computed (default: load it), so a caller
    scoring several sets can load it once.
    """

    if which not in ("zeroshot", "finetuned"):
        raise ValueError(f"which must be 'zeroshot' or 'finetuned', got {which!r}")
    path = ep.runs.entry(run.kind, run.key) / "logits" / f"{which}-{ep.eval_key(name, 'model')}.safetensors"
    if path.is_file():
        t = load_file(str(path))
        return t["logits"], t["labels"]
    if model is None:
        model = ep.zeroshot if which == "zeroshot" else (lambda: run.load_model(ep).to(ep.device))
    logits, labels = predict_logits(model(), ep.eval_bundle(name), batch_size=ep.cfg.eval_batch_size,
                                    num_workers=ep.cfg.num_workers, progress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"logits": logits.contiguous(), "labels": labels.contiguous()}, str(tmp))
    return logits, labels


def output_ensemble_curve(cfg: CurveConfig, seed: int = 0, *, runs: Optional[RunCache] = None,
                          spaces: Sequence[str] = ("logit", "prob"), progress: bool = True) -> pd.DataFrame:
    """Tidy rows ``(seed, mode, alpha, dataset, metric, value)`` of the output-space ensembles of the
    zero-shot model and the end-to-end fine-tuned model (the same cached fine-tune WiSE-FT uses), one
    ``mode`` per space: ``output ensemble (logit)`` / ``output ensemble (prob)``."""

    unknown = [s for s in spaces if s not in SPACES]
    if unknown:
        raise ValueError(f"unknown ensemble space(s) {unknown}; known: {', '.join(SPACES)}")
    ep = Endpoints(cfg, seed, runs if runs is not None else RunCache(None), progress)
    run = finetuned_run(ep, "end-to-end")
    paths = {space: f"ensemble-{space}" for space in spaces}
    todo: dict[str, list[tuple[str, float]]] = {}  # set -> (space, alpha) pairs without a score
    for space, path in paths.items():
        for alpha, names in missing_scores(ep, run, path).items():
            for name in names:
                todo.setdefault(name, []).append((space, alpha))
    tuned: list[nn.Module] = []  # the fine-tuned model, loaded at most once

    def finetuned() -> nn.Module:
        if not tuned:
            tuned.append(run.load_model(ep).to(ep.device))
        return tuned[0]

    for name, pairs in todo.items():  # each set's logits are read (or computed) once for all its scores
        zs, labels = endpoint_logits(ep, run, "zeroshot", name)
        ft, _ = endpoint_logits(ep, run, "finetuned", name, model=finetuned)
        for space, alpha in pairs:
            metrics = {**score(SPACES[space](zs, ft, alpha), labels, ep.scoring_bundle(name)),
                       "n_images": float(len(labels))}
            ep.runs.add_scores(run.kind, run.key, ep.eval_key(name, paths[space]), alpha, metrics,
                               ep.eval_record(name))
    rows = []
    for space, path in paths.items():
        rows += tidy_scores(ep, ensemble_mode(space), run, path)
    return pd.DataFrame(rows)

