"""WiSE-FT with one alpha per layer group, and a seeded search for the alphas on held-out ID val data.

The image tower's state-dict keys fall in five groups (``GROUPS``): the stem and embeddings, the
transformer blocks in three contiguous chunks (early / middle / late), and the final norm, projection and
classification head. Each group is interpolated with its own alpha: ``(1 - a_g) theta_0 + a_g theta_1``.

    import torch
    from wiseft_lib.core.layer_groups import interpolate_groups_in_place, layer_groups, search_group_alphas
    from wiseft_lib.core.models import create_model

    clip, _, _ = create_model("wiseft-mini")
    model = clip.visual
    theta_0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    theta_1 = {k: v + 0.01 * torch.randn_like(v) for k, v in theta_0.items()}
    groups = layer_groups(theta_0)                     # key -> "embedding" / "early" / ... / "head"
    alphas = {"embedding": 0.2, "early": 0.3, "middle": 0.5, "late": 0.7, "head": 0.9}
    interpolate_groups_in_place(model, theta_0, theta_1, alphas, groups)
    search = search_group_alphas(lambda a: -sum((v - 0.5) ** 2 for v in a.values()), n_trials=5)
    search.best, search.best_uniform, search.trials    # the caller's score: accuracy on ID val data

Keys are an :class:`~wiseft_lib.core.models.ImageClassifier`'s (``image_encoder.*``, ``classification_head.*``),
a CLIP model's image keys (``visual.*``) or a bare image tower's. ViTs (open_clip ``VisionTransformer``):
``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre`` -> embedding; ``transformer.resblocks.N``
-> early / middle / late as ``numpy.array_split(range(n_blocks), 3)`` (earlier chunks take the extra blocks);
``ln_post``, ``proj``, attentional pooling and the head -> head. ResNets (``ModifiedResNet``): the stem
(``conv1..3``, ``bn1..3``) -> embedding, ``layer1`` -> early, ``layer2``/``layer3`` -> middle, ``layer4`` -> late,
``attnpool`` and the head -> head. A key that fits none of these raises ``ValueError``: nothing is dropped.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn

from wiseft_lib.core.interpolate import check_alpha, check_model_targets, write_interpolation

__all__ = ["DEFAULT_GRID", "GROUPS", "GroupSearch", "interpolate_groups_in_place", "layer_groups",
           "search_group_alphas"]

StateDict = Mapping[str, torch.Tensor]

GROUPS = ("embedding", "early", "middle", "late", "head")
DEFAULT_GRID = tuple(i / 10 for i in range(11))

_TOWER_PREFIXES = ("image_encoder.", "visual.")
_HEAD_PREFIX = "classification_head."
_BLOCKS = "transformer.resblocks."
# first key component -> group, for the parts that are not blocks
_VIT_NAMES = {"conv1": "embedding", "class_embedding": "embedding", "positional_embedding": "embedding",
              "ln_pre": "embedding", "patchnorm_pre_ln": "embedding",
              "ln_post": "head", "proj": "head", "attn_pool": "head", "attn_pool_contrastive": "head"}
_RESNET_NAMES = {"conv1": "embedding", "bn1": "embedding", "conv2": "embedding", "bn2": "embedding",
                 "conv3": "embedding", "bn3": "embedding", "layer1": "early", "layer2": "middle",
                 "layer3": "middle", "layer4": "late", "attnpool": "head"}
_RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")


def _tower_keys(keys: list[str]) -> dict[str, Optional[str]]:
    """key -> the key inside the image tower (None for head keys); raises for keys outside both."""
    prefixed = any(k.startswith(_TOWER_PREFIXES) for k in keys)
    out: dict[str, Optional[str]] = {}
    for key in keys:
        if key.startswith(_HEAD_PREFIX):
            out[key] = None
        elif key.startswith(_TOWER_PREFIXES):
            out[key] = key.split(".", 1)[1]
        elif prefixed:
            raise ValueError(f"cannot place key {key!r} in a layer group: the other keys are an image tower's "
                             f"({' / '.join(_TOWER_PREFIXES)}) or the head's ({_HEAD_PREFIX}); pass only the "
                             f"image classifier's keys (e.g. not a CLIP model's text tower)")
        else:
            out[key] = key
    return out


def _block_index(key: str, tower_key: str) -> int:
    idx = tower_key[len(_BLOCKS):].split(".", 1)[0]
    if not idx.isdigit():
        raise ValueError(f"cannot place key {key!r} in a layer group: no block number after {_BLOCKS!r}")
    return int(idx)


def layer_groups(keys: Iterable[str]) -> dict[str, str]:
    """Map every state-dict key of an image classifier (ViT or ResNet CLIP tower + head) to one of ``GROUPS``."""
    keys = list(keys)
    tower = _tower_keys(keys)
    blocks = {k: _block_index(k, t) for k, t in tower.items() if t is not None and t.startswith(_BLOCKS)}
    resnet = [k for k, t in tower.items() if t is not None and t.split(".", 1)[0] in _RESNET_LAYERS + ("attnpool",)]
    if blocks and resnet:
        raise ValueError(f"cannot place key {resnet[0]!r} in a layer group: the keys mix a ViT's transformer "
                         f"blocks ({next(iter(blocks))!r}) and a ResNet's layers")
    names = _RESNET_NAMES if resnet else _VIT_NAMES
    chunk_of: dict[int, str] = {}
    if blocks:
        chunks = np.array_split(np.arange(max(blocks.values()) + 1), 3)
        chunk_of = {int(i): g for g, chunk in zip(("early", "middle", "late"), chunks) for i in chunk}
    out: dict[str, str] = {}
    for key, t in tower.items():
        if t is None:
            out[key] = "head"
        elif key in blocks:
            out[key] = chunk_of[blocks[key]]
        elif t.split(".", 1)[0] in names:
            out[key] = names[t.split(".", 1)[0]]
        else:
            raise ValueError(f"cannot place key {key!r} in a layer group: not a known part of an open_clip "
                             f"VisionTransformer or ModifiedResNet image tower, nor the classification head")
    return out


def _check_group_alphas(group_alphas: Mapping[str, float], groups: Mapping[str, str]) -> dict[str, float]:
    used = list(dict.fromkeys(groups.values()))
    missing = [g for g in used if g not in group_alphas]
    if missing:
        raise ValueError(f"group_alphas has no alpha for group(s) {', '.join(map(repr, missing))}; give one for "
                         f"each of {', '.join(map(repr, used))}")
    unknown = [g for g in group_alphas if g not in used and g not in GROUPS]
    if unknown:
        raise ValueError(f"group_alphas names unknown group(s) {', '.join(map(repr, unknown))}; the groups are "
                         f"{', '.join(map(repr, used))}")
    out = {}
    for g, a in group_alphas.items():
        try:
            out[g] = check_alpha(a)
        except ValueError as err:
            raise ValueError(f"group {g!r}: {err}") from None
    return out


def interpolate_groups_in_place(model: nn.Module, theta_0: StateDict, theta_1: StateDict,
                                group_alphas: Mapping[str, float], groups: Mapping[str, str]) -> nn.Module:
    """Write ``(1 - a_g) theta_0 + a_g theta_1`` into ``model`` in place, ``a_g`` the alpha of each key's group.

    ``groups`` maps every key to a group (from :func:`layer_groups`); ``group_alphas`` needs an alpha in
    [0, 1] for every group used. With all alphas equal this is bit for bit
    :func:`~wiseft_lib.core.interpolate.interpolate_weights`. Endpoints must not share memory with the model.
    """
    alphas = _check_group_alphas(group_alphas, groups)
    live = check_model_targets(model, theta_0, theta_1)
    by_group: dict[str, dict[str, torch.Tensor]] = {}
    for key, dst in live.items():
        if key not in groups:
            raise ValueError(f"key {key!r} has no layer group in `groups`; build it with layer_groups(theta_0)")
        by_group.setdefault(groups[key], {})[key] = dst
    for g, part in by_group.items():
        write_interpolation(part, theta_0, theta_1, alphas[g])
    return model


@dataclass
class GroupSearch:
    """The result of :func:`search_group_alphas`. ``trials``: one row per scored assignment (``trial``, one
    column per group, ``mean_alpha``, ``score``, ``phase`` in start / uniform / random / refine)."""

    best: dict[str, float]
    best_score: float
    best_uniform: float
    best_uniform_score: float
    trials: pd.DataFrame


def _mean(a: tuple[float, ...]) -> float:
    return math.fsum(a) / len(a)  # exactly rounded: the same for every order of the same alphas


class _Memo:
    """Scores assignments (tuples in group order) once each; keeps the rows and the best so far."""

    def __init__(self, score: Callable[[dict[str, float]], float], groups: tuple[str, ...]):
        self.score, self.groups = score, groups
        self.seen: dict[tuple[float, ...], float] = {}
        self.rows: list[dict] = []
        self.best: Optional[tuple[float, ...]] = None

    def better(self, a: tuple[float, ...], than: Optional[tuple[float, ...]]) -> bool:
        """Higher score, then smaller mean alpha; a full tie keeps ``than`` (the first seen)."""
        if than is None:
            return True
        s, t = self.seen[a], self.seen[than]
        return s > t or (s == t and _mean(a) < _mean(than))

    def visit(self, a: tuple[float, ...], phase: str) -> float:
        if a not in self.seen:
            alphas = dict(zip(self.groups, a))
            s = float(self.score(alphas))
            if math.isnan(s):
                raise ValueError(f"score returned NaN for alphas {alphas}")
            self.seen[a] = s
            self.rows.append({"trial": len(self.rows), **alphas, "mean_alpha": _mean(a), "score": s, "phase": phase})
            if self.better(a, self.best):
                self.best = a
        return self.seen[a]


def search_group_alphas(score: Callable[[dict[str, float]], float], *, groups: Sequence[str] = GROUPS,
                        grid: Sequence[float] = DEFAULT_GRID, n_trials: int = 30, seed: int = 0,
                        start: Optional[Mapping[str, float]] = None) -> GroupSearch:
    """Choose one alpha per group by a small seeded search maximising ``score`` (ID val accuracy).

    Phases: ``start`` (if given, scored first), every uniform assignment on ``grid`` (all groups equal: the
    single-alpha curve), ``n_trials`` random draws (each group's alpha from ``grid``, a numpy Generator seeded
    with ``seed``), then one coordinate pass from the best so far (each group in turn set to each grid value,
    the others at the current best, which moves as it improves). No assignment is scored twice (a repeated draw
    adds no row). Ties go to the smaller mean alpha (nearer the zero-shot model), then to the first seen.
    """
    groups = tuple(groups)
    if not groups or len(set(groups)) != len(groups):
        raise ValueError(f"groups must be distinct names, at least one; got {groups!r}")
    grid = tuple(dict.fromkeys(check_alpha(a) for a in grid))
    if not grid:
        raise ValueError("grid must hold at least one alpha in [0, 1]")
    if n_trials < 0:
        raise ValueError(f"n_trials must be >= 0, got {n_trials}")
    memo = _Memo(score, groups)
    if start is not None:
        if set(start) != set(groups):
            raise ValueError(f"start must give an alpha for exactly the groups {groups!r}, got {sorted(start)!r}")
        memo.visit(tuple(check_alpha(start[g]) for g in groups), "start")

    uniform: Optional[tuple[float, ...]] = None
    for a in grid:
        memo.visit((a,) * len(groups), "uniform")
        if memo.better((a,) * len(groups), uniform):
            uniform = (a,) * len(groups)

    rng = np.random.default_rng(seed)
    for _ in range(n_trials):
        memo.visit(tuple(grid[int(i)] for i in rng.integers(len(grid), size=len(groups))), "random")

    for j in range(len(groups)):
        for v in grid:
            memo.visit(memo.best[:j] + (v,) + memo.best[j + 1:], "refine")

    return GroupSearch(best=dict(zip(groups, memo.best)), best_score=memo.seen[memo.best], best_uniform=uniform[0],
                       best_uniform_score=memo.seen[uniform],
                       trials=pd.DataFrame(memo.rows, columns=["trial", *groups, "mean_alpha", "score", "phase"]))
