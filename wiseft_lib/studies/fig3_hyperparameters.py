"""Figure 3: is WiSE-FT just a well-tuned fine-tune? The end-to-end recipe varied, each beside WiSE-FT.

    wiseft run fig3_hyperparameters --params params/mini/fig3_hyperparameters.yaml
    papermill notebooks/fig3_hyperparameters.ipynb out.ipynb -f params/mini/fig3_hyperparameters.yaml

Families of variants (params ``variants``): learning rate x epochs, optimizers (AdamW, Adam without weight
decay, SGD with momentum), L2 toward the zero-shot weights, early stopping (the reference schedule cut
short). Each is a point; WiSE-FT applied to it a dashed curve. Each family's configuration with the best
*val* ID accuracy is set beside WiSE-FT's curve at the same *test* ID accuracy (``matched.*``). Writes
``curve.csv``, ``variants.csv``, ``points.*``, ``matched.*``, ``claims.*``, the figure, ``results.sqlite``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wiseft_lib.params import param
from wiseft_lib.studies.base import register_study
from wiseft_lib.studies.baselines import BaselineParams, BaselineResult, run_baseline_study

NAME = "fig3_hyperparameters"
LR_EPOCHS = "learning rate x epochs"
__all__ = ["Fig3Params", "run", "mini_variants"]


def mini_variants() -> dict[str, dict[str, Any]]:
    """The mini grid: 3 learning rates x 2 epoch budgets, 3 optimizers, 2 L2 strengths, 3 stopping points."""
    v: dict[str, dict[str, Any]] = {}
    for epochs in (3, 10):
        for lr in (1e-4, 5e-4, 2e-3):
            v[f"lr {lr:g}, {epochs} epochs"] = {"family": LR_EPOCHS, "e2e": {"lr": lr, "epochs": epochs}}
    v["AdamW (the reference recipe)"] = {"family": "optimizer", "e2e": {}}
    v["Adam, no weight decay"] = {"family": "optimizer", "e2e": {"optimizer": "adam", "weight_decay": 0.0}}
    v["SGD, momentum 0.9, lr 0.01"] = {"family": "optimizer", "e2e": {"optimizer": "sgd", "lr": 0.01,
                                                                     "weight_decay": 0.0}}
    for lam in (0.01, 0.1):
        v[f"L2 to zero-shot, lambda {lam:g}"] = {"family": "L2 toward the zero-shot weights",
                                                 "e2e": {"l2_to_init": lam}}
    for stop in (1, 3):
        v[f"stopped after {stop} of 10 epochs"] = {"family": "early stopping", "e2e": {"stop_after_epochs": stop}}
    v["all 10 epochs (the reference)"] = {"family": "early stopping", "e2e": {}}
    return v


@dataclass
class Fig3Params(BaselineParams):
    """Figure 3's parameters: Table 1's sweep (end-to-end) as the reference, and the recipe variants."""

    output_dir: str = param("outputs/mini/fig3_hyperparameters", "where results, tables and figures go")
    modes: list[str] = param(["end-to-end"], "Figure 3 varies the end-to-end recipe")
    variants: dict[str, dict[str, Any]] = param(mini_variants(), "name -> {family, e2e: recipe fields changed}")


def run(params: Fig3Params, *, progress: bool = True) -> BaselineResult:
    """WiSE-FT's sweep, every variant (cached), the tables, claims and figure."""
    return run_baseline_study(params, NAME, title=f"Figure 3: fine-tuning hyperparameters vs WiSE-FT, {params.model}",
                              progress=progress)


STUDY = register_study("fig3_hyperparameters",
                       "Figure 3: fine-tuning hyperparameters, optimizers, L2, early stopping vs. WiSE-FT",
                       Fig3Params, run,
                       covers=[("Figure 3", "")])
