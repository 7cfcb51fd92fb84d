"""Figure 10: WiSE-FT (mixing weights) against output-space ensembles (mixing logits or probabilities).

    wiseft run fig10_weight_vs_output_ensembles --params params/mini/fig10_weight_vs_output_ensembles.yaml
    papermill notebooks/fig10_weight_vs_output_ensembles.ipynb out.ipynb -f params/mini/fig10_weight_vs_output_ensembles.yaml

The same two endpoints (the zero-shot model and the end-to-end fine-tuned one, from the run cache) are
combined three ways over alpha: in weight space (WiSE-FT), and in output space on logits and on
probabilities. Each ensemble point is set beside the WiSE-FT curve at the same ID accuracy. Writes
``curve.csv``, ``matched.*``, ``claims.*``, ``fig10_weight_vs_output_ensembles.png/.pdf``,
``results.sqlite`` and ``study.json``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from wiseft_lib.analysis.matched_id import curve_claims, curve_matched
from wiseft_lib.baselines.output_ensembles import SPACES, output_ensemble_curve
from wiseft_lib.experiment.curve import curve_table
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.plots import plot_id_vs_ood
from wiseft_lib.studies.base import StudyOutputs, StudyResult, register_study
from wiseft_lib.studies.baselines import store_rows
from wiseft_lib.studies.shift_sweep import ShiftSweepParams, run_sweep

NAME = "fig10_weight_vs_output_ensembles"
WEIGHTS = "WiSE-FT (weights)"
__all__ = ["Fig10Params", "Fig10Result", "run", "matched_table"]


@dataclass
class Fig10Params(ShiftSweepParams):
    """Figure 10's parameters: Table 1's sweep (end-to-end) plus the output-space ensembles."""

    output_dir: str = param("outputs/mini/fig10_weight_vs_output_ensembles", "where results, tables and figures go")
    modes: list[str] = param(["end-to-end"], "Figure 10 is end-to-end")
    spaces: list[str] = param(["logit", "prob"], "output-space ensembles: of logits and/or of probabilities")

    def __post_init__(self) -> None:
        super().__post_init__()

        if self.modes != ["end-to-end"]:
            raise ParamsError(f"parameter 'modes': Figure 10 is end-to-end only, got {self.modes}")
        if not self.spaces or any(s not in SPACES for s in self.spaces):
            raise ParamsError(f"parameter 'spaces' must be a non-empty subset of {list(SPACES)}, got {self.spaces}")


@dataclass
class Fig10Result(StudyResult):
    params: Fig10Params
    curve: pd.DataFrame  # per seed, method and alpha: id_acc, ood_avg, each shift
    matched: pd.DataFrame  # each ensemble point beside WiSE-FT at the same ID accuracy
    claims: pd.DataFrame
    figure: Any


def matched_table(curve: pd.DataFrame) -> pd.DataFrame:
    """Per ensemble and alpha (seed means): its ID and mean OOD accuracy, WiSE-FT's mean OOD accuracy at the
    same ID accuracy (interpolated along its curve) and the difference (points; positive: WiSE-FT is better)."""
    return curve_matched(curve, WEIGHTS).rename(columns={"wiseft_minus_method": "wiseft_minus_ensemble"})


def _claims(matched: pd.DataFrame) -> pd.DataFrame:
    return curve_claims(matched.rename(columns={"wiseft_minus_ensemble": "wiseft_minus_method"}))


def run(params: Fig10Params, *, progress: bool = True) -> Fig10Result:
    """WiSE-FT's sweep and the ensembles' (both from cached runs and logits); the matched table and figure."""

    outputs = StudyOutputs(NAME, params)
    p, tidy, runs, store = run_sweep(outputs, progress=progress)
    ens = pd.concat([output_ensemble_curve(p, seed, runs=runs, spaces=p.spaces, progress=progress)
                     for seed in p.seeds], ignore_index=True)
    store_rows(store, NAME, p.model, ens, p.to_dict())
    both = pd.concat([tidy.assign(mode=WEIGHTS), ens], ignore_index=True)
    curve = curve_table(both, id_dataset=p.id_dataset, ood_datasets=p.ood_datasets)
    outputs.csv("curve", curve.round(4))
    matched = matched_table(curve)
    outputs.table("matched", matched, floatfmt=".2f")
    claims = _claims(matched)
    claims = outputs.claims(claims, p.n_test, floatfmt=".2f")
    figure = plot_id_vs_ood(curve, curve_label="{mode}", finetuned_label="fine-tuned (end-to-end)",
                            title=f"Weight- vs output-space ensembles, {p.model} ({p.eval_split} split)")
    outputs.figure("figure", figure, NAME)
    return Fig10Result(p, curve, matched, claims, figure, **outputs.finish())


STUDY = register_study("fig10_weight_vs_output_ensembles",
                       "Figure 10: WiSE-FT vs. output-space (logit, probability) ensembles",
                       Fig10Params, run,
                       covers=[("Figure 10", "")])
