"""The heads Figure 5 compares and their logits on a curve's evaluation sets, from cached features.

For one (config, seed), on the frozen zero-shot encoder: the zero-shot head (``zs``), the reference linear classifier
of the run cache (``lc``, the one WiSE-FT LC uses), WiSE-FT of the two at ``alpha`` (``mix``) and a baseline pair,
two LCs trained with the same recipe (``cfg.linear``) on the two halves of the LC's training images (``a``, ``b``:
:func:`halves`, disjoint, stratified, seeded). :func:`complementarity_logits` yields each evaluation set's logits of
the five (projected onto the set's label space where it has its own, e.g. ObjectNet's); the measures on them are
:mod:`wiseft_lib.analysis.complementarity`'s.

    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.endpoints import Endpoints
    from wiseft_lib.experiment.runs import RunCache
    from wiseft_lib.experiment.complementarity_logits import complementarity_logits

    ep = Endpoints(CurveConfig(modes=["linear"], n_test=200), 0, RunCache("outputs/runs"), progress=False)
    for name, logits, labels in complementarity_logits(ep, alpha=0.5):
        print(name, {k: tuple(v.shape) for k, v in logits.items()})
"""
from __future__ import annotations

import copy
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from wiseft_lib.core.interpolate import interpolate_weights
from wiseft_lib.experiment.endpoints import Endpoints, finetuned_run
from wiseft_lib.finetune.lc_search import train_head

__all__ = ["HEADS", "halves", "complementarity_heads", "head_logits", "complementarity_logits"]

HEADS = ("zs", "lc", "mix", "a", "b")  # zero-shot, LC, WiSE-FT at alpha, the LCs on half A and on half B


def halves(labels: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of a training set, each with half of every class (seeded)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 5])
    a, b = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        a.append(members[: len(members) // 2])
        b.append(members[len(members) // 2:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def complementarity_heads(ep: Endpoints, alpha: float) -> dict[str, nn.Module]:
    """The heads of :data:`HEADS` on CPU in fp32: the zero-shot head, the cached linear classifier (trained when
    missing), their WiSE-FT at ``alpha`` and two LCs of ``ep.cfg.linear`` trained (not cached) from the zero-shot
    head on :func:`halves` of the LC's training features (seed ``ep.seed``)."""
    zs_head = copy.deepcopy(ep.zeroshot().classification_head).cpu().float()  # the classifier stays put
    lc_head = finetuned_run(ep, "linear").load_head(ep).cpu().float()
    mix = type(lc_head)(lc_head.weight, lc_head.bias, normalize=lc_head.normalize)
    mix.load_state_dict(interpolate_weights(zs_head.state_dict(), lc_head.state_dict(), alpha))
    x, y = ep.train_features()
    half_a, half_b = halves(y, ep.seed)
    recipe = dict(ep.cfg.linear)
    head_a, head_b = [train_head(x[idx], y[idx], zs_head, recipe, seed=ep.seed, device=ep.device)
                      for idx in (half_a, half_b)]
    return {"zs": zs_head, "lc": lc_head, "mix": mix, "a": head_a, "b": head_b}


def head_logits(heads: dict[str, nn.Module], features: torch.Tensor,
                project: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> dict[str, torch.Tensor]:
    """Each head's logits on ``features`` (on CPU, fp32, no gradients), mapped by ``project`` when given (a
    dataset's ``project_logits``: the training label space onto the set's)."""
    features = features.cpu().float()
    with torch.no_grad():
        logits = {k: h(features) for k, h in heads.items()}
        if project is not None:
            logits = {k: project(v) for k, v in logits.items()}
    return logits


def complementarity_logits(ep: Endpoints, alpha: float) -> Iterator[tuple[str, dict[str, torch.Tensor],
                                                                          torch.Tensor]]:
    """Per evaluation set of ``ep.cfg`` (ID first): its name, the logits of :func:`complementarity_heads` (by
    :data:`HEADS` key, scored in the set's label space) and its labels, from the set's cached features. The heads are
    made on the first step, once."""
    heads = complementarity_heads(ep, alpha)
    for name in ep.cfg.eval_names():
        feats, labels = ep.features(name)
        yield name, head_logits(heads, feats, ep.scoring_bundle(name).project_logits), labels
