"""Figure 15: Figure 3's main rows with stronger augmentation (RandAugment) beside the same rows without it.

    wiseft run fig15_augmentation --params params/mini/fig15_augmentation.yaml

Two learning rates of Figure 3's grid (the reference and the largest) are fine-tuned with open_clip's
augmentation and with torchvision's RandAugment (2 ops, magnitude 9) before it; the plain rows are Figure 3's own runs (read from the run cache).
Outputs as Figure 3's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wiseft_lib.params import param
from wiseft_lib.studies.base import register_study
from wiseft_lib.studies.baselines import BaselineParams, BaselineResult, run_baseline_study

NAME = "fig15_augmentation"
__all__ = ["Fig15Params", "run", "mini_variants"]


def mini_variants() -> dict[str, dict[str, Any]]:
    v: dict[str, dict[str, Any]] = {}
    for augment, family in (("clip", "CLIP augmentation (Figure 3)"), ("randaugment", "RandAugment")):
        for lr in (5e-4, 2e-3):  # the reference LR and the one where fine-tuning strays furthest
            v[f"lr {lr:g}, 10 epochs" + (", RandAugment" if augment == "randaugment" else "")] = {
                "family": family, "e2e": {"lr": lr}, "augment": augment}
    return v


@dataclass
class Fig15Params(BaselineParams):
    """Figure 15's parameters: Table 1's sweep as the reference; Figure 3's learning rates with both augmentations."""

    output_dir: str = param("outputs/mini/fig15_augmentation", "where results, tables and figures go")
    modes: list[str] = param(["end-to-end"], "Figure 15 varies the end-to-end recipe")
    variants: dict[str, dict[str, Any]] = param(mini_variants(), "name -> {family, e2e, augment}")


def run(params: Fig15Params, *, progress: bool = True) -> BaselineResult:
    return run_baseline_study(params, NAME, title=f"Figure 15: stronger augmentation vs WiSE-FT, {params.model}",
                              progress=progress)


STUDY = register_study("fig15_augmentation",
                       "Figure 15: Figure 3's rows with stronger augmentation (RandAugment)",
                       Fig15Params, run,
                       covers=[("Figure 15", "")])
