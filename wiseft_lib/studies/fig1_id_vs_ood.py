"""Figure 1: ID accuracy vs. accuracy under distribution shift, the WiSE-FT curves and their references.

    wiseft run fig1_id_vs_ood --params params/mini/fig1_id_vs_ood.yaml --set 'seeds=[0, 1, 2]'
    papermill notebooks/fig1_id_vs_ood.ipynb out.ipynb -f params/mini/fig1_id_vs_ood.yaml   # the same, with prose

Both call :func:`run`, which writes ``curve.csv``, ``data.csv``, ``baselines.csv``, ``summary.*``, ``claims.*``,
``seed_spread.*``, ``fig1_id_vs_ood.png/.pdf`` (95% Clopper-Pearson bars on the ID accuracy; the mean over
the shifts has none), ``fig1_per_set.png/.pdf`` (one panel per shift, bars on both axes), ``results.sqlite``
and ``study.json`` to ``output_dir``. Fine-tunes,
scores and reference models come from the run cache when an earlier run (of any study) made them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import pandas as pd

from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import (
    alphas_on_val,
    check_claims,
    curve_table,
    data_table,
    summary_table,
    val_id_curve,
    wiseft_curve,
)
from wiseft_lib.experiment.reference import baseline_points, effective_robustness
from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.mini.standard import REFERENCE_MODELS
from wiseft_lib.params import param
from wiseft_lib.report.fig1_plots import plot_fig1, plot_fig1_per_set, seed_spread
from wiseft_lib.report.paper import testbed
from wiseft_lib.studies.base import Launches, StudyOutputs, StudyParams, StudyResult, UsesRuns, register_study
from wiseft_lib.studies.launch import distributable
from wiseft_lib.studies.shift_sweep import column_labels

NAME = "fig1_id_vs_ood"
__all__ = ["Fig1Params", "Fig1Result", "run"]


@dataclass
class Fig1Params(CurveConfig, Launches, UsesRuns, StudyParams):
    """Figure 1's parameters: the curve's, plus its reference populations."""

    output_dir: str = param("outputs/mini/fig1_id_vs_ood", "where results, tables and figures go")
    standard_models: list[str] = param(REFERENCE_MODELS, "wiseft_lib.mini.standard.STANDARD_ZOO names, trained from "
                                                         "scratch on the ID photos only: the effective-robustness "
                                                         "line ([] to skip)")
    n_train_standard: Optional[int] = param(None, "their training images (None: the whole train split)")
    zeroshot_pretrained: list[str] = param(["fmnist-budget5", "fmnist-budget12", "fmnist-budget25"],
                                           "other pretrained tags or weight files of `model`, scored zero-shot: "
                                           "the zero-shot line ([] to skip)")
    testbed: bool = param(False, "the ImageNet testbed's published models as the standard models (paper setting: "
                                 "ImageNet-only ones fitted, more-data ones shown apart)")

    def smoke_version(self) -> "Fig1Params":
        return dataclasses.replace(super().smoke_version(), standard_models=self.standard_models[:2],
                                   zeroshot_pretrained=self.zeroshot_pretrained[:1], n_train_standard=1000)


@dataclass
class Fig1Result(StudyResult):
    """What :func:`run` computed and wrote (the notebook displays it)."""

    params: Fig1Params
    curve: pd.DataFrame  # one row per (seed, mode, alpha): id_acc, ood_avg, one column per shift (%)
    baselines: pd.DataFrame  # the reference models (standard, zero-shot budgets)
    summary: pd.DataFrame  # zero-shot, fine-tuned, alpha=0.5 and oracle-alpha rows, mean over seeds
    claims: Optional[pd.DataFrame]  # the paper's claims checked on this run
    figure: Any  # matplotlib Figure
    data: Optional[pd.DataFrame] = None  # per evaluation set: images scored, unreadable files skipped
    figure_per_set: Any = None  # one panel per shift: ID vs that shift, intervals on both axes
    seed_spread: Optional[pd.DataFrame] = None  # per mode, alpha and column: n_seeds, mean, min, max over seeds


def testbed_points(id_dataset: str, shifts: list[str]) -> pd.DataFrame:
    """The testbed's models as Figure 1 points: ID accuracy and the mean over the shifts (models with all of them)."""

    tb = testbed()
    missing = [d for d in [id_dataset, *shifts] if d not in tb.columns]
    if missing:
        raise ValueError(f"testbed=True needs the paper's datasets; the testbed has no {missing}")
    tb = tb.dropna(subset=[id_dataset, *shifts])
    return pd.DataFrame({"group": tb["group"], "model": tb["model"], "seed": None, "id_acc": tb[id_dataset],
                         "ood_avg": tb[shifts].mean(axis=1), **{s: tb[s] for s in shifts}})


@distributable(NAME)
def run(params: Fig1Params, *, progress: bool = True) -> Fig1Result:
    """Compute (or reuse) the curves and reference models; write tables, figure and results store."""

    outputs = StudyOutputs(NAME, params)
    p, runs = outputs.params, outputs.runs
    store = ResultsStore(outputs.out / "results.sqlite")
    tidy = pd.concat([wiseft_curve(p, seed, runs=runs, store=store, study=NAME, progress=progress)
                      for seed in p.seeds])
    curve = curve_table(tidy, id_dataset=p.id_dataset, ood_datasets=p.ood_datasets)
    outputs.csv("curve", curve.round(4))
    data = data_table(tidy)
    outputs.csv("data", data)
    baselines = baseline_points(p, p.standard_models, p.zeroshot_pretrained, seed=p.seeds[0],
                                n_train_standard=p.n_train_standard, runs=runs, progress=progress)
    if p.testbed:
        baselines = pd.concat([baselines, testbed_points(p.id_dataset, p.ood_datasets)], ignore_index=True)
    if not baselines.empty:
        outputs.csv("baselines", baselines.round(4))
    val = val_id_curve(p, p.seeds, runs=runs)  # the alpha to deploy, chosen on ID val (None: no val split)
    if val is not None:
        outputs.csv("val_curve", val.round(4))
    summary = summary_table(curve, alphas_on_val(val))
    if (baselines["group"] == "standard").sum() >= 2:  # OOD accuracy above the standard models' line (pp)
        summary = effective_robustness(summary, baselines)
    outputs.table("summary", summary)
    claims = None
    if {0.0, 0.5, 1.0} <= set(curve["alpha"]):
        claims = outputs.claims(check_claims(curve), p.n_test)
    figures, spread = _figures(p, outputs, curve, baselines, data)
    return Fig1Result(p, curve, baselines, summary, claims, figures[0], data, figures[1], spread,
                      **outputs.finish())


def _figures(p: Fig1Params, outputs: StudyOutputs, curve: pd.DataFrame, baselines: pd.DataFrame,
             data: pd.DataFrame) -> tuple[tuple[Any, Any], pd.DataFrame]:
    """Figure 1, its per-set companion (95% Clopper-Pearson intervals on each set's images) and the seed spread."""

    n_images = {d: float(n) for d, n in zip(data["dataset"], data["images"]) if n > 0}
    seeds = f"{len(p.seeds)} seed{'s' if len(p.seeds) > 1 else ''}"
    title = f"WiSE-FT, {p.model}: {p.id_dataset} vs. {len(p.ood_datasets)} shifts ({p.eval_split} split, {seeds})"
    fitted = [g for g in pd.unique(baselines["group"]) if g != "more data"]  # extra-data models: not a baseline
    figure = plot_fig1(curve, n_images.get(p.id_dataset), extra=baselines if not baselines.empty else None,
                       fit=fitted, title=title)
    per_set = plot_fig1_per_set(curve, n_images, p.id_dataset, p.ood_datasets, baselines=baselines,
                                titles=column_labels(p.ood_datasets),
                                title=f"Per set, {p.model} ({p.eval_split} split, {seeds}): "
                                      "95% Clopper-Pearson intervals on each set's test images")
    outputs.figure("figure", figure, NAME)
    outputs.figure("figure_per_set", per_set, "fig1_per_set")
    spread = seed_spread(curve, p.ood_datasets)
    outputs.table("seed_spread", spread, floatfmt=".2f")
    return (figure, per_set), spread


STUDY = register_study("fig1_id_vs_ood",
                       "Figure 1: ID vs. OOD accuracy, WiSE-FT curves",
                       Fig1Params, run,
                       covers=[("Figure 1", "")])
