"""The paper's linear-classifier search (Figure 13): per regularizer, a seeded random search of recipes.

For one regularizer (none, weight decay, L1, label smoothing) draw ``n_configs`` recipes from the paper's
distributions: batch size from {64, 128, 256}, learning rate 10^-U[0, 6] and the regularizer's strength
(weight decay 10^-U[0, 4], L1 10^-U[4, 8], label smoothing U[0, 0.25]). Each trains the head (AdamW, cosine
schedule, from the zero-shot head or a random one) on frozen features of the training split minus a
stratified held-out part, and is scored on that held-out part. The best (ties: the first drawn) is refit on
all training features. Test sets are never seen: the choice is made on held-out *training* data.

    from wiseft_lib.finetune.lc_search import search_linear_head
    result = search_linear_head(features, labels, zeroshot_head, regularizer="l1", n_configs=8, seed=0)
    result.trials          # one row per drawn recipe, with its held-out accuracy
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, Optional, Union

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import TensorDataset

from wiseft_lib.core.models import ImageClassifier
from wiseft_lib.core.probe import held_out_split
from wiseft_lib.finetune import FinetuneConfig, finetune
from wiseft_lib.progress import progress_bar

__all__ = ["REGULARIZERS", "LinearSearch", "SearchResult", "sample_recipes", "train_head", "search_linear_head"]

REGULARIZERS = ("none", "weight_decay", "l1", "label_smoothing")


@dataclass
class LinearSearch:
    """A linear-classifier search's settings (the ``linear`` params of ``linear_method: search``)."""

    regularizer: str = "none"
    n_configs: int = 64  # the paper's, per regularizer
    epochs: int = 10
    warmup_steps: int = 50
    holdout_fraction: float = 0.1  # of the training split, stratified, for choosing the recipe
    head_init: str = "zero-shot"  # or "random"
    batch_sizes: tuple[int, ...] = (64, 128, 256)
    lr_exponents: tuple[float, float] = (0.0, 6.0)  # lr = 10^-U[a, b]
    weight_decay_exponents: tuple[float, float] = (0.0, 4.0)
    l1_exponents: tuple[float, float] = (4.0, 8.0)
    smoothing_range: tuple[float, float] = (0.0, 0.25)

    def __post_init__(self) -> None:
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer must be one of {list(REGULARIZERS)}, got {self.regularizer!r}")
        if self.n_configs < 1 or self.epochs < 1 or self.warmup_steps < 0:
            raise ValueError(f"n_configs and epochs must be >= 1 and warmup_steps >= 0; got {self.n_configs}, "
                             f"{self.epochs}, {self.warmup_steps}")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.head_init not in ("zero-shot", "random"):
            raise ValueError(f"head_init must be 'zero-shot' or 'random', got {self.head_init!r}")
        self.batch_sizes = tuple(int(b) for b in self.batch_sizes)
        for name in ("lr_exponents", "weight_decay_exponents", "l1_exponents", "smoothing_range"):
            setattr(self, name, tuple(float(v) for v in getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def sample_recipes(search: LinearSearch, seed: int) -> list[dict[str, Any]]:
    """``n_configs`` recipes (FinetuneConfig fields) of ``search.regularizer``, drawn from ``seed`` alone."""
    rng = np.random.default_rng([seed, REGULARIZERS.index(search.regularizer)])
    out = []
    for _ in range(search.n_configs):
        r = {"batch_size": int(rng.choice(search.batch_sizes)), "lr": float(10 ** -rng.uniform(*search.lr_exponents)),
             "weight_decay": 0.0, "l1": 0.0, "label_smoothing": 0.0}
        if search.regularizer == "weight_decay":
            r["weight_decay"] = float(10 ** -rng.uniform(*search.weight_decay_exponents))
        elif search.regularizer == "l1":
            r["l1"] = float(10 ** -rng.uniform(*search.l1_exponents))
        elif search.regularizer == "label_smoothing":
            r["label_smoothing"] = float(rng.uniform(*search.smoothing_range))
        out.append(r)
    return out


def train_head(features: torch.Tensor, labels: torch.Tensor, start_head: nn.Module, recipe: dict[str, Any], *,
               seed: int, device: Union[str, torch.device, None] = None) -> nn.Module:
    """A copy of ``start_head`` trained on ``features`` by the fine-tuning engine (linear mode, given the
    features), with ``recipe``'s FinetuneConfig fields."""

    cfg = FinetuneConfig(mode="linear", seed=seed, precision="fp32", **recipe)
    shell = ImageClassifier(nn.Identity(), copy.deepcopy(start_head).float())  # only the head trains
    pairs = (features.float(), labels.long())
    trained = finetune(shell, TensorDataset(*pairs), cfg, device=device, progress=False, train_features=pairs)
    return trained.classification_head.cpu()


class SearchResult(NamedTuple):
    head: nn.Module  # the chosen recipe refit on all training features
    recipe: dict[str, Any]  # the chosen recipe
    trials: pd.DataFrame  # one row per drawn recipe: its fields, heldout_acc, chosen


@torch.no_grad()
def _accuracy(head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((head(x.float()).argmax(1) == y).float().mean() * 100)


def search_linear_head(features: torch.Tensor, labels: torch.Tensor, start_head: nn.Module,
                       search: Optional[LinearSearch] = None, *, seed: int = 0,
                       device: Union[str, torch.device, None] = None, progress: bool = True,
                       **settings: Any) -> SearchResult:
    """Random search of ``search`` (or a :class:`LinearSearch` of ``settings``) on held-out training data."""

    search = search or LinearSearch(**settings)
    y = labels.long()
    fit, held = held_out_split(y.numpy(), search.holdout_fraction, seed)
    if len(held) == 0:
        raise ValueError(f"no held-out examples for the search (holdout_fraction={search.holdout_fraction}, "
                         f"{len(y)} examples): give more training data or a larger holdout_fraction")
    fit_t, held_t = torch.as_tensor(fit), torch.as_tensor(held)
    common = {"epochs": search.epochs, "warmup_steps": search.warmup_steps, "head_init": search.head_init}
    rows = []
    recipes = sample_recipes(search, seed)
    for i, recipe in enumerate(progress_bar(recipes, desc=f"LC search ({search.regularizer})", unit="recipe", show=progress)):
        head = train_head(features[fit_t], y[fit_t], start_head, {**common, **recipe}, seed=seed, device=device)
        rows.append({"trial": i, **recipe, "heldout_acc": _accuracy(head, features[held_t], y[held_t])})
    trials = pd.DataFrame(rows)
    best = int(trials["heldout_acc"].to_numpy().argmax())  # ties: the first drawn
    trials["chosen"] = trials.index == best
    chosen = {**common, **recipes[best]}
    return SearchResult(train_head(features, y, start_head, chosen, seed=seed, device=device), chosen, trials)
