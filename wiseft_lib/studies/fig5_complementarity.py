"""Figure 5 and Figures 27-30: why WiSE-FT works: the zero-shot model and the fine-tuned linear classifier
make different mistakes.

    wiseft run fig5_complementarity --params params/mini/fig5_complementarity.yaml
    papermill notebooks/fig5_complementarity.ipynb out.ipynb -f params/mini/fig5_complementarity.yaml

For each model: the zero-shot head and the reference linear classifier (LC, from the run cache) against a
baseline pair: two LCs trained the same way on the two halves of the LC's training images (disjoint, stratified,
seeded; the heads and their logits: :mod:`wiseft_lib.experiment.complementarity_logits`). On every evaluation
set, from cached features: prediction diversity, Cohen's kappa complement, KL divergence and CKA complement of the
pair's outputs (:mod:`wiseft_lib.analysis.complementarity`; CKA on the logits, since the LCs share the zero-shot
features); how often WiSE-FT at ``alpha`` sides with the zero-shot model when
the two disagree, and the reverse; the margins. Writes ``diversity.*``, ``overrides.*``, ``margins.*``,
``claims.*``, ``fig5_complementarity.png/.pdf``, ``fig27_30_diversity_by_model.png/.pdf``, ``study.json``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from wiseft_lib.analysis.complementarity import (
    cka_complement,
    cohen_kappa_complement,
    kl_divergence,
    margin_difference,
    override_rates,
    prediction_diversity,
)
from wiseft_lib.experiment.complementarity_logits import complementarity_logits, halves
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.endpoints import Endpoints
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.plots import attach_data, panel_grid, themed
from wiseft_lib.studies.base import StudyOutputs, StudyParams, StudyResult, UsesRuns, register_study
from wiseft_lib.studies.fig20_model_scale import MINI_MODELS, check_models

NAME = "fig5_complementarity"
__all__ = ["ComplementarityParams", "ComplementarityResult", "run", "halves", "pair_measures",
           "complementarity_claims", "MEASURES"]

MEASURES = ("prediction_diversity", "cohen_kappa_complement", "kl_divergence", "cka_complement")
ZS_LC, HALVES = "zero-shot vs LC", "LC (half A) vs LC (half B)"


@dataclass
class ComplementarityParams(CurveConfig, UsesRuns, StudyParams):
    """Figure 5's parameters: the LC recipe, the evaluation sets, the models compared in Figures 27-30 (the first
    is Figure 5's)."""

    output_dir: str = param("outputs/mini/fig5_complementarity", "where results, tables and figures go")
    modes: list[str] = param(["linear"], "the paper's analysis uses the linear classifier")
    models: dict[str, dict[str, Any]] = param(dict(MINI_MODELS), "label -> {model, pretrained}; Figure 5 uses the "
                                                                 "last, Figures 27-30 all")
    alpha: float = param(0.5, "the WiSE-FT mixture whose choices between the two models are counted")
    max_samples: int = param(10_000, "CKA uses at most this many examples (a seeded subsample)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modes != ["linear"]:
            raise ParamsError(f"parameter 'modes': the complementarity analysis uses linear classifiers, got "
                              f"{self.modes}")
        if self.linear_method != "adamw":
            raise ParamsError(f"parameter 'linear_method': the halves baseline retrains the LC with the 'adamw' "
                              f"recipe; got {self.linear_method!r}")
        check_models(self.models)

    def model_config(self, label: str) -> CurveConfig:
        return self.as_curve(model=self.models[label]["model"], pretrained=self.models[label].get("pretrained"))


@dataclass
class ComplementarityResult(StudyResult):
    params: ComplementarityParams
    diversity: pd.DataFrame  # model, seed, dataset, pair: the four measures
    overrides: pd.DataFrame  # model, seed, dataset: how WiSE-FT resolves the disagreements
    margins: pd.DataFrame  # model, seed, dataset: margins of the zero-shot model and the LC
    claims: pd.DataFrame
    figure: Any
    figure_models: Any


def pair_measures(logits_a: torch.Tensor, logits_b: torch.Tensor, labels: torch.Tensor, max_samples: int,
                  seed: int) -> dict[str, float]:
    """The four diversity measures of one pair (CKA on the logits)."""

    try:
        cka = cka_complement(logits_a, logits_b, max_samples=max_samples, seed=seed)
    except ValueError:  # fewer than two examples, or outputs constant over them: CKA is undefined
        cka = float("nan")
    return {"prediction_diversity": prediction_diversity(logits_a, logits_b, labels),
            "cohen_kappa_complement": cohen_kappa_complement(logits_a, logits_b),
            "kl_divergence": kl_divergence(logits_a, logits_b), "cka_complement": cka}


def complementarity_claims(diversity: pd.DataFrame, model: str, id_dataset: str) -> pd.DataFrame:
    """Figure 5's claim, per measure, on the ID set and on the mean over the shifts: the zero-shot model and the LC
    are more diverse than two LCs trained on different halves of the data."""
    d = diversity[diversity["model"] == model]
    mean = d.groupby(["dataset", "pair"])[list(MEASURES)].mean()
    rows = []
    shifts = [x for x in dict.fromkeys(d["dataset"]) if x != id_dataset]
    for where, sets in ((id_dataset, [id_dataset]), ("mean over shifts", shifts)):
        if not sets:
            continue
        for m in MEASURES:
            zs_lc = float(np.mean([mean.loc[(s, ZS_LC), m] for s in sets]))
            base = float(np.mean([mean.loc[(s, HALVES), m] for s in sets]))
            rows.append({"claim": f"{model}, {where}: {m} of zero-shot vs LC - of two LCs on halves",
                         "value": round(zs_lc - base, 4), "bar": "> 0", "holds": bool(zs_lc > base)})
    return pd.DataFrame(rows)


@themed
def _plot_fig5(diversity: pd.DataFrame, overrides: pd.DataFrame, model: str, title: str):
    d = diversity[diversity["model"] == model].groupby(["dataset", "pair"], sort=False)[list(MEASURES)].mean()
    sets = list(dict.fromkeys(diversity["dataset"]))
    fig, axes = panel_grid(3, 3, (4.2, 3.2))
    pos = np.arange(len(sets))
    for ax, m in zip(axes[:2], ("prediction_diversity", "cka_complement")):
        for i, pair in enumerate((ZS_LC, HALVES)):
            ax.bar(pos + (i - 0.5) * 0.38, [d.loc[(s, pair), m] for s in sets], 0.38, label=pair, color=f"C{i}")
        ax.set_xticks(pos, [s.removeprefix("mini-") for s in sets], rotation=30, fontsize=7)
        ax.set_ylabel(m.replace("_", " "), fontsize=8)
        ax.grid(True, axis="y", linewidth=0.5, alpha=0.5)
    axes[0].legend(fontsize=6)
    o = overrides[overrides["model"] == model].groupby("dataset", sort=False)[
        ["mix_sides_with_zs_pct", "mix_sides_with_ft_pct"]].mean()
    axes[2].bar(pos - 0.19, [o.loc[s, "mix_sides_with_zs_pct"] for s in sets], 0.38, label="sides with zero-shot",
                color="C2")
    axes[2].bar(pos + 0.19, [o.loc[s, "mix_sides_with_ft_pct"] for s in sets], 0.38, label="sides with the LC",
                color="C3")
    axes[2].set_xticks(pos, [s.removeprefix("mini-") for s in sets], rotation=30, fontsize=7)
    axes[2].set_ylabel("% of disagreements", fontsize=8)
    axes[2].set_title("WiSE-FT's choice where the two disagree", fontsize=8)
    axes[2].legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    drawn = [d[["prediction_diversity", "cka_complement"]].reset_index().melt(id_vars=["dataset", "pair"],
                                                                             var_name="measure"),
             o.reset_index().melt(id_vars=["dataset"], var_name="measure")]
    return attach_data(fig, pd.concat(drawn, ignore_index=True).assign(model=model))


@themed
def _plot_models(diversity: pd.DataFrame, title: str):
    models = list(dict.fromkeys(diversity["model"]))
    d = diversity.groupby(["model", "pair"], sort=False)[list(MEASURES)].mean()  # over seeds and sets
    fig, axes = panel_grid(len(MEASURES), 4, (3.2, 2.8))
    pos = np.arange(len(models))
    for ax, m in zip(axes, MEASURES):
        for i, pair in enumerate((ZS_LC, HALVES)):
            ax.plot(pos, [d.loc[(mod, pair), m] for mod in models], "-o", markersize=4, label=pair, color=f"C{i}")
        ax.set_xticks(pos, models, rotation=30, fontsize=7)
        ax.set_title(m.replace("_", " "), fontsize=9)
        ax.grid(True, linewidth=0.5, alpha=0.5)
    axes[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    return attach_data(fig, d.reset_index())


def run(params: ComplementarityParams, *, progress: bool = True) -> ComplementarityResult:
    """Per model and seed: the zero-shot head, the LC, two LCs on halves; every measure on every set."""

    outputs = StudyOutputs(NAME, params)
    p = outputs.params
    if p.smoke:
        p = dataclasses.replace(p, models=dict(list(p.models.items())[-1:]), seeds=p.seeds[:1])
    div_rows, override_rows, margin_rows = [], [], []
    for label in p.models:
        cfg = p.model_config(label)
        cfg = cfg.smoke_version() if p.smoke else cfg
        for seed in p.seeds:
            ep = Endpoints(cfg, seed, outputs.runs, progress)
            for name, logits, labels in complementarity_logits(ep, p.alpha):
                key = {"model": label, "seed": seed, "dataset": name}
                div_rows.append({**key, "pair": ZS_LC, **pair_measures(logits["zs"], logits["lc"], labels,
                                                                       p.max_samples, seed)})
                div_rows.append({**key, "pair": HALVES, **pair_measures(logits["a"], logits["b"], labels,
                                                                        p.max_samples, seed)})
                override_rows.append({**key, **override_rates(logits["zs"], logits["lc"], logits["mix"], labels)})
                margin_rows.append({**key, **margin_difference(logits["zs"], logits["lc"], labels)})
    diversity, overrides, margins = pd.DataFrame(div_rows), pd.DataFrame(override_rows), pd.DataFrame(margin_rows)
    reference = list(p.models)[-1]
    claims = complementarity_claims(diversity, reference, p.id_dataset)
    mean_over_seeds = lambda df, keys: df.groupby(keys, sort=False).mean(numeric_only=True).drop(  # noqa: E731
        columns="seed").reset_index()
    outputs.table("diversity", mean_over_seeds(diversity, ["model", "dataset", "pair"]), floatfmt=".3f",
                  csv=diversity)
    outputs.table("overrides", mean_over_seeds(overrides, ["model", "dataset"]), floatfmt=".1f", csv=overrides)
    outputs.table("margins", mean_over_seeds(margins, ["model", "dataset"]), floatfmt=".2f", csv=margins)
    outputs.table("claims", claims, floatfmt=".4f")
    figure = _plot_fig5(diversity, overrides, reference,
                        f"Zero-shot vs fine-tuned LC ({reference}), against two LCs on different halves")
    figure_models = _plot_models(diversity, "Diversity measures across models (mean over sets and seeds)")
    outputs.figure("figure", figure, NAME)
    outputs.figure("figure_models", figure_models, "fig27_30_diversity_by_model")
    return ComplementarityResult(p, diversity, overrides, margins, claims, figure, figure_models, **outputs.finish())


STUDY = register_study("fig5_complementarity", "Figures 5, 27-30: how complementary the zero-shot model and the linear classifier are (diversity, overrides, margins)",
                       ComplementarityParams, run,
                       covers=[("Figure 5, Figures 27-30", "mini: across the four pretraining budgets")])
