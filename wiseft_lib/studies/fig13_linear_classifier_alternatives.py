"""Figure 13: alternatives to WiSE-FT for the linear classifier, each beside WiSE-FT LC.

    wiseft run fig13_linear_classifier_alternatives --params params/mini/fig13_linear_classifier_alternatives.yaml

Variants (each a cached linear classifier on the frozen zero-shot features; WiSE-FT applied to each its dashed
curve): the paper's random search of recipes per regularizer (none, weight decay, L1, label smoothing;
chosen on held-out *training* data, :mod:`wiseft_lib.finetune.lc_search`), distillation toward the zero-shot model,
L2 toward the zero-shot head, a random vs the zero-shot initialisation. Curves of the same two heads
WiSE-FT LC mixes (:mod:`wiseft_lib.baselines.head_baselines`): output-space ensembles of logits and probabilities,
and random (Bernoulli) interpolation. Outputs as Figure 3's, plus ``other_curves.csv`` and
``other_curves_matched.*``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pandas as pd

from wiseft_lib.baselines.head_baselines import head_baseline_curves
from wiseft_lib.baselines.output_ensembles import SPACES
from wiseft_lib.params import ParamsError, param
from wiseft_lib.studies.base import register_study
from wiseft_lib.studies.baselines import BaselineParams, BaselineResult, run_baseline_study
from wiseft_lib.studies.shift_sweep import Sweep

NAME = "fig13_linear_classifier_alternatives"
__all__ = ["Fig13Params", "run", "mini_variants"]


def mini_variants(n_configs: int = 6, epochs: int = 10) -> dict[str, dict[str, Any]]:
    v: dict[str, dict[str, Any]] = {}
    for reg in ("none", "weight_decay", "l1", "label_smoothing"):
        v[f"search: {reg.replace('_', ' ')}"] = {
            "family": "regularizer (random search, chosen on held-out training data)", "linear_method": "search",
            "linear": {"regularizer": reg, "n_configs": n_configs, "epochs": epochs, "warmup_steps": 50}}
    for a in (0.25, 0.5, 0.75):
        v[f"distillation, a {a:g}"] = {"family": "distillation toward the zero-shot model", "linear": {"distill": a}}
    for lam in (1e-4, 1e-3):
        v[f"L2 to zero-shot head, lambda {lam:g}"] = {"family": "L2 toward the zero-shot head",
                                                      "linear": {"l2_to_init": lam}}
    v["zero-shot head init (the reference)"] = {"family": "initialisation", "linear": {}}
    v["random head init"] = {"family": "initialisation", "linear": {"head_init": "random"}}
    return v


@dataclass
class Fig13Params(BaselineParams):
    """Figure 13's parameters: Table 1's linear-classifier sweep as the reference, the variants, the curves."""

    output_dir: str = param("outputs/mini/fig13_linear_classifier_alternatives", "where results, tables and figures go")
    modes: list[str] = param(["linear"], "Figure 13 is about the linear classifier")
    variants: dict[str, dict[str, Any]] = param(mini_variants(), "name -> {family, linear: recipe fields changed | "
                                                                 "linear_method: search, linear: LinearSearch fields}")
    spaces: list[str] = param(["logit", "prob"], "output-space ensembles of the zero-shot and LC heads")
    bernoulli_draws: int = param(5, "random-interpolation draws averaged per alpha (0: none)")

    def __post_init__(self) -> None:
        super().__post_init__()

        if self.modes != ["linear"]:
            raise ParamsError(f"parameter 'modes': Figure 13 is linear only, got {self.modes}")
        if any(s not in SPACES for s in self.spaces):
            raise ParamsError(f"parameter 'spaces' must be a subset of {list(SPACES)}, got {self.spaces}")
        if self.bernoulli_draws < 0:
            raise ParamsError(f"parameter 'bernoulli_draws' must be >= 0, got {self.bernoulli_draws}")

    def smoke_version(self):
        return dataclasses.replace(super().smoke_version(), bernoulli_draws=min(self.bernoulli_draws, 2))


def run(params: Fig13Params, *, progress: bool = True) -> BaselineResult:
    def curves(sweep: Sweep) -> pd.DataFrame:
        p = sweep.params
        return pd.concat([head_baseline_curves(p, seed, runs=sweep.runs, spaces=p.spaces,
                                               bernoulli_draws=p.bernoulli_draws) for seed in p.seeds],
                         ignore_index=True)

    return run_baseline_study(params, NAME, title=f"Figure 13: linear-classifier alternatives vs WiSE-FT LC, "
                                                  f"{params.model}", progress=progress, extra_curves=curves)


STUDY = register_study("fig13_linear_classifier_alternatives",
                       "Figure 13: linear-classifier alternatives (regularizers, distillation, L2, init, ensembles, "
                       "random interpolation) vs. WiSE-FT LC",
                       Fig13Params, run,
                       covers=[("Figure 13", "")])
