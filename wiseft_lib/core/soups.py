"""Model soups (Wortsman et al. 2022): average the weights of several fine-tunes of one zero-shot model.

A *uniform soup* is the elementwise mean of all ingredients; a *greedy soup* sorts them by held-out val
accuracy and adds each in turn only if the soup's val accuracy does not drop (the paper's Algorithm 1).

    import torch
    from wiseft_lib.core.soups import greedy_soup, uniform_soup

    states = [{k: v.clone() for k, v in torch.nn.Linear(4, 3).state_dict().items()} for _ in range(3)]
    mean = uniform_soup(states)                                  # a new state dict
    val_acc = lambda sd: -sd["weight"].abs().mean().item()       # stands in for held-out val accuracy
    soup = greedy_soup(states, [val_acc(s) for s in states], val_acc)
    soup.kept, soup.val_score, soup.trace                        # indices in the order added; one row per step

Ingredients must share keys, shapes and dtypes (checked as WiSE-FT's endpoints are, by
:func:`wiseft_lib.core.interpolate.check_compatible`). Floating tensors are averaged with fp32 (or wider)
accumulation and returned in their own dtype; non-floating tensors are not averaged: they must be equal in
every ingredient, except step counters such as BatchNorm's ``num_batches_tracked`` (``COUNTER_NAMES``), and
come from the first ingredient (for a greedy soup: the first one kept, the best by val accuracy).

The greedy soup starts from the best ingredient with its given val score (it is not scored again), so
``evaluate`` is called once per further ingredient. Its rule is the paper's ``>=``; the reference code
(mlfoundations/model-soups, ``main.py``) keeps an ingredient only on a strict gain: ``strict=True``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable, Optional

import pandas as pd
import torch

from wiseft_lib.core.interpolate import check_compatible

__all__ = ["GreedySoup", "greedy_soup", "uniform_soup"]

StateDict = Mapping[str, torch.Tensor]


def _accum_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 accumulation for fp16/bf16/fp32, fp64 stays fp64."""
    return torch.promote_types(dtype, torch.float32)


def _check_ingredients(states: Sequence[StateDict]) -> None:
    if len(states) == 0:
        raise ValueError("a soup needs at least one ingredient (state dict), got none")
    for i, sd in enumerate(states[1:], start=1):
        check_compatible(states[0], sd, names=("ingredient 0", f"ingredient {i}"))


class _Accumulator:
    """Running fp32 sums of floating tensors (non-floating ones: the first ingredient's)."""

    def __init__(self, first: StateDict):
        self.n = 1
        self.ref = first
        self.sums = {k: v.detach().to(_accum_dtype(v.dtype), copy=True)
                     for k, v in first.items() if v.is_floating_point()}

    @torch.no_grad()
    def mean_with(self, extra: Optional[StateDict] = None) -> dict[str, torch.Tensor]:
        """The mean of the ingredients so far (plus ``extra`` if given), as a new state dict."""
        n = self.n + (extra is not None)
        out: dict[str, torch.Tensor] = {}
        for key, t in self.ref.items():
            if not t.is_floating_point():
                out[key] = t.detach().clone()
                continue
            s = self.sums[key]
            if extra is not None:
                s = s + extra[key].detach().to(device=s.device, dtype=s.dtype)
            out[key] = (s / n).to(t.dtype)
        return out

    @torch.no_grad()
    def add(self, sd: StateDict) -> None:
        for key, s in self.sums.items():
            s.add_(sd[key].detach().to(device=s.device, dtype=s.dtype))
        self.n += 1


def uniform_soup(states: Sequence[StateDict]) -> dict[str, torch.Tensor]:
    """The elementwise mean of ``states`` (new tensors, each key's dtype and device kept from ``states[0]``).

    Raises ``ValueError`` for an empty list or naming the first key where an ingredient differs from
    ingredient 0 (missing key, shape, dtype, or a non-counter integer buffer).
    """
    _check_ingredients(states)
    acc = _Accumulator(states[0])
    for sd in states[1:]:
        acc.add(sd)
    return acc.mean_with()


@dataclass
class GreedySoup:
    """A greedy soup: its ``state``, the ``kept`` ingredient indices (in the order added), its ``val_score``,
    and the ``trace`` (one row per ingredient considered: ``step``, ``index``, ``name``, ``val_score`` (its own),
    ``soup_val_score`` (the soup's with it added; step 0: the first ingredient's own), ``kept``, ``soup_size``)."""

    state: dict[str, torch.Tensor]
    kept: list[int]
    val_score: float
    trace: pd.DataFrame


def greedy_soup(states: Sequence[StateDict], val_scores: Sequence[float],
                evaluate: Callable[[dict[str, torch.Tensor]], float], *,
                names: Optional[Sequence[str]] = None, strict: bool = False) -> GreedySoup:
    """The greedy soup (Wortsman et al. 2022, Algorithm 1) of ``states``.

    Ingredients are tried in descending ``val_scores`` order (ties keep the given order), starting from
    the best; each next one is added when ``evaluate`` (held-out val accuracy, higher is better) of the
    uniform average of the kept ones plus it is ``>=`` the current soup's score (``>`` with ``strict``,
    as in the reference code). The soup's val score therefore never drops.
    """
    _check_ingredients(states)
    n = len(states)
    if len(val_scores) != n:
        raise ValueError(f"val_scores has {len(val_scores)} entries for {n} ingredients; give one each")
    scores = [float(s) for s in val_scores]
    bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
    if bad:
        raise ValueError(f"val_scores[{bad[0]}] is {scores[bad[0]]}; every ingredient needs a finite val score")
    if names is None:
        names = [f"ingredient {i}" for i in range(n)]
    elif len(names) != n:
        raise ValueError(f"names has {len(names)} entries for {n} ingredients; give one each")
    order = sorted(range(n), key=lambda i: -scores[i])  # stable: ties keep the given order

    first = order[0]
    acc = _Accumulator(states[first])
    soup = acc.mean_with()
    current = scores[first]
    kept = [first]
    rows = [dict(step=0, index=first, name=str(names[first]), val_score=current, soup_val_score=current,
                 kept=True, soup_size=1)]
    for step, i in enumerate(order[1:], start=1):
        candidate = acc.mean_with(states[i])
        s = float(evaluate(candidate))
        keep = s > current if strict else s >= current  # NaN is never kept
        if keep:
            acc.add(states[i])
            soup, current = candidate, s
            kept.append(i)
        rows.append(dict(step=step, index=i, name=str(names[i]), val_score=scores[i], soup_val_score=s,
                         kept=keep, soup_size=len(kept)))
    return GreedySoup(state=soup, kept=kept, val_score=current, trace=pd.DataFrame(rows))
