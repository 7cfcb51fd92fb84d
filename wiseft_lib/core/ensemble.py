"""Output-space ensembles: the paper's baselines that mix predictions instead of weights.

    import torch
    from wiseft_lib.core.ensemble import ensemble_logits, ensemble_probs

    zs, ft = torch.randn(8, 10), torch.randn(8, 10)      # logits of the two models
    mixed = ensemble_logits(zs, ft, 0.5)                  # (1 - a) * zs + a * ft
    logp = ensemble_probs(zs, ft, 0.5)                    # log of the mixed softmax

Both take torch tensors or numpy arrays and return the same kind. ``ensemble_probs`` returns
*log*-probabilities so its output can be scored like logits (argmax, logit projections by max).
Further baselines (e.g. Bernoulli random interpolation of weights) belong here too.
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch

from wiseft_lib.core.interpolate import check_alpha

__all__ = ["ensemble_logits", "ensemble_probs"]

Array = Union[torch.Tensor, np.ndarray]


def _as_tensors(logits_0: Array, logits_1: Array) -> tuple[torch.Tensor, torch.Tensor, bool]:
    as_numpy = isinstance(logits_0, np.ndarray) and isinstance(logits_1, np.ndarray)
    l0, l1 = torch.as_tensor(logits_0), torch.as_tensor(logits_1)
    if l0.shape != l1.shape:
        raise ValueError(
            f"cannot ensemble logits of shapes {tuple(l0.shape)} and {tuple(l1.shape)}: both "
            f"models must be evaluated on the same examples with the same class list "
            f"(project logits onto the dataset's classes first if one model has more)"
        )
    if not (l0.is_floating_point() and l1.is_floating_point()):
        l0, l1 = l0.double(), l1.double()
    return l0, l1.to(l0.device), as_numpy


def _out(t: torch.Tensor, as_numpy: bool) -> Array:
    return t.cpu().numpy() if as_numpy else t


def ensemble_logits(logits_0: Array, logits_1: Array, alpha: float) -> Array:
    """Logit ensemble ``(1 - alpha) * logits_0 + alpha * logits_1`` (exact at 0 and 1)."""
    a = check_alpha(alpha)
    l0, l1, as_numpy = _as_tensors(logits_0, logits_1)
    if a == 0.0:
        return _out(l0.clone(), as_numpy)
    if a == 1.0:
        return _out(l1.clone(), as_numpy)
    return _out((1.0 - a) * l0 + a * l1, as_numpy)


def ensemble_probs(logits_0: Array, logits_1: Array, alpha: float) -> Array:
    """Softmax-probability ensemble, as log-probabilities over the last axis.

    Returns ``log((1 - alpha) * softmax(logits_0) + alpha * softmax(logits_1))``, computed
    stably; ``exp`` of the result gives the mixed probabilities.
    """
    a = check_alpha(alpha)
    l0, l1, as_numpy = _as_tensors(logits_0, logits_1)
    lp0, lp1 = torch.log_softmax(l0, dim=-1), torch.log_softmax(l1, dim=-1)
    if a == 0.0:
        return _out(lp0, as_numpy)
    if a == 1.0:
        return _out(lp1, as_numpy)
    return _out(torch.logaddexp(lp0 + math.log1p(-a), lp1 + math.log(a)), as_numpy)
