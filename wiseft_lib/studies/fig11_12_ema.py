"""Figures 11 and 12: an exponential moving average of the weights during fine-tuning, against WiSE-FT.

    wiseft run fig11_12_ema --params params/mini/fig11_12_ema.yaml

Figure 11: the debiased EMA (an average of the iterates only). Figure 12: the EMA started at the zero-shot
weights, which keep weight ``decay ** steps`` in it: biased toward the zero-shot model, the closest
training-time relative of WiSE-FT. Each decay is a cached fine-tune whose result is the average; WiSE-FT
applied to it is its dashed curve. Outputs as Figure 3's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wiseft_lib.params import param
from wiseft_lib.studies.base import register_study
from wiseft_lib.studies.baselines import BaselineParams, BaselineResult, run_baseline_study

NAME = "fig11_12_ema"
__all__ = ["EmaParams", "run", "mini_variants"]


def mini_variants() -> dict[str, dict[str, Any]]:
    v: dict[str, dict[str, Any]] = {}
    for start, family in (("debiased", "debiased EMA (Figure 11)"), ("zero-shot", "EMA from the zero-shot weights "
                                                                               "(Figure 12)")):
        for decay in (0.99, 0.999):
            v[f"{start} EMA, decay {decay:g}"] = {"family": family, "e2e": {"ema_decay": decay, "ema_start": start}}
    return v


@dataclass
class EmaParams(BaselineParams):
    """Figures 11 and 12's parameters: Table 1's sweep as the reference and the EMA variants."""

    output_dir: str = param("outputs/mini/fig11_12_ema", "where results, tables and figures go")
    modes: list[str] = param(["end-to-end"], "the EMA baselines are end-to-end")
    variants: dict[str, dict[str, Any]] = param(mini_variants(), "name -> {family, e2e: {ema_decay, ema_start}}")


def run(params: EmaParams, *, progress: bool = True) -> BaselineResult:
    return run_baseline_study(params, NAME, title=f"Figures 11, 12: weight averaging during fine-tuning vs WiSE-FT, "
                                                  f"{params.model}", progress=progress)


STUDY = register_study("fig11_12_ema",
                       "Figures 11, 12: weight averaging (EMA) during fine-tuning vs. WiSE-FT",
                       EmaParams, run,
                       covers=[("Figures 11, 12", "")])
