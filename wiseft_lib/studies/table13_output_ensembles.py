"""Table 13: output-space ensembles of the zero-shot model with independently trained models.

    wiseft run table13_output_ensembles --params params/mini/table13_output_ensembles.yaml

Is the zero-shot model's robustness something any strong model gains by ensembling with it? The paper ensembles
zero-shot CLIP with NoisyStudent EfficientNets (B6, L2: strong ImageNet models trained with far more data) in
output space, ``(1 - alpha) * zero-shot + alpha * other``, and finds the ensemble far more robust than the other
model alone at about its ImageNet accuracy. Here every model's logits on each evaluation set are computed once
(cached) and the ensembles swept over alpha, on logits and on probabilities (the two models' logits have
different scales: CLIP's carry its temperature). Writes ``table13.*`` (the zero-shot model, each model alone, each
ensemble at ``report_alpha``), ``curve.csv``, ``claims.*``, ``beside_published.*`` (models named in
``published_names``), the figure, ``results.sqlite``, ``study.json``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from wiseft_lib.baselines.other_models import check_other_name, other_model_logits, zeroshot_logits
from wiseft_lib.baselines.output_ensembles import SPACES
from wiseft_lib.core.evaluate import score
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import curve_table
from wiseft_lib.experiment.endpoints import Endpoints
from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.params import ParamsError, param
from wiseft_lib.progress import progress_bar
from wiseft_lib.report.paper import published
from wiseft_lib.report.plots import plot_id_vs_ood
from wiseft_lib.studies.base import StudyOutputs, StudyParams, StudyResult, UsesRuns, register_study

NAME = "table13_output_ensembles"
__all__ = ["Table13Params", "Table13Result", "run", "ensemble_rows", "table13"]


@dataclass
class Table13Params(CurveConfig, UsesRuns, StudyParams):
    """The zero-shot model (CurveConfig's model and evaluation sets) and the models ensembled with it."""

    output_dir: str = param("outputs/mini/table13_output_ensembles", "where results, tables and figures go")
    modes: list[str] = param(["end-to-end"], "unused here (nothing is fine-tuned); kept for CurveConfig")
    others: list[str] = param(["standard:cnn32-e4", "standard:mlp256-e4"],
                              "models ensembled with the zero-shot one: standard:NAME (the package's zoo, trained "
                              "here on the ID photos) or timm:NAME (pretrained ImageNet weights)")
    others_pretrained: bool = param(True, "timm models with their pretrained weights (False: random weights, for "
                                          "checking the code path offline)")
    n_train_other: Optional[int] = param(None, "ID training images for standard:NAME models (None: the whole split)")
    alphas: list[float] = param([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                                "weights of the other model (0: the zero-shot model alone, 1: the other alone)")
    report_alpha: float = param(0.5, "the ensemble row of table13 (the paper's: 0.5)")
    spaces: list[str] = param(["logit", "prob"], "ensembles of logits and/or of probabilities")
    published_names: dict[str, str] = param({}, "other model -> the paper's Table 13 model it is (paper preset)")

    def __post_init__(self) -> None:
        super().__post_init__()

        if not self.others:
            raise ParamsError("parameter 'others': name at least one model to ensemble with the zero-shot one")
        for name in self.others:
            try:
                check_other_name(name)
            except ValueError as err:
                raise ParamsError(f"parameter 'others': {err}") from None
        if not self.spaces or any(s not in SPACES for s in self.spaces):
            raise ParamsError(f"parameter 'spaces' must be a non-empty subset of {list(SPACES)}, got {self.spaces}")
        if not any(np.isclose(a, self.report_alpha) for a in self.alphas) or not {0.0, 1.0} <= set(self.alphas):
            raise ParamsError(f"parameter 'alphas' must contain 0, 1 and report_alpha={self.report_alpha}, got "
                              f"{self.alphas}")
        stray = [k for k in self.published_names if k not in self.others]
        if stray:
            raise ParamsError(f"parameter 'published_names' names {stray}, which are not in 'others'")

    def smoke_version(self):
        return dataclasses.replace(super().smoke_version(), alphas=sorted({0.0, self.report_alpha, 1.0}),
                                   n_train_other=256 if self.n_train_other is None else min(self.n_train_other, 256))


@dataclass
class Table13Result(StudyResult):
    params: Table13Params
    curve: pd.DataFrame  # per seed, model, space and alpha: id_acc, ood_avg, each shift
    table: pd.DataFrame  # table13: zero-shot, each model alone, each ensemble at report_alpha (seed means)
    claims: pd.DataFrame
    beside: Optional[pd.DataFrame]
    figure: Any


def ensemble_rows(p: Table13Params, seed: int, runs, progress: bool = False) -> pd.DataFrame:
    """Tidy rows ``(seed, mode, alpha, dataset, metric, value)``: mode ``OTHER (SPACE)`` per model and space."""

    ep = Endpoints(p, seed, runs, progress)
    models: dict = {}
    rows = []
    for name in p.eval_names():
        zs, labels = zeroshot_logits(ep, name)
        bundle = ep.scoring_bundle(name)
        for other in p.others:
            logits, other_labels = other_model_logits(other, name, ep, pretrained=p.others_pretrained,
                                                      n_train=p.n_train_other, models=models)
            if logits.shape != zs.shape or not bool((other_labels == labels).all()):
                raise ValueError(f"{other} on {name}: logits {tuple(logits.shape)} and labels do not line up with the "
                                 f"zero-shot model's {tuple(zs.shape)}; both must classify {p.id_dataset}'s classes "
                                 f"in the same order")
            for space in p.spaces:
                for alpha in p.alphas:
                    metrics = {**score(SPACES[space](zs, logits, alpha), labels, bundle), "n_images": float(len(labels))}
                    rows += [{"seed": seed, "mode": f"{other} ({space})", "alpha": alpha, "dataset": name,
                              "metric": k, "value": v} for k, v in metrics.items()]
    return pd.DataFrame(rows)


def table13(curve: pd.DataFrame, p: Table13Params) -> pd.DataFrame:
    """Seed means: the zero-shot model, each other model alone, each ensemble at ``report_alpha``; columns the
    ID set, each shift, ``avg_shifts`` and ``avg_id_shifts``."""
    mean = curve.groupby(["mode", "alpha"], sort=False).mean(numeric_only=True).reset_index()
    cols = ["id_acc", *p.ood_datasets]
    out = []

    def row(label: str, model: str, space: str, alpha: float, r: pd.Series) -> dict:
        values = {c: r[c] for c in cols}
        avg = float(np.mean([r[c] for c in p.ood_datasets]))
        return {"row": label, "model": model, "space": space, "alpha": alpha, **values, "avg_shifts": avg,
                "avg_id_shifts": (r["id_acc"] + avg) / 2}

    first = mean[np.isclose(mean["alpha"], 0.0)].iloc[0]
    out.append(row("zero-shot", p.model, "", 0.0, first))
    for other in p.others:
        alone = mean[(mean["mode"] == f"{other} ({p.spaces[0]})") & np.isclose(mean["alpha"], 1.0)].iloc[0]
        out.append(row(f"{other} alone", other, "", 1.0, alone))
        for space in p.spaces:
            r = mean[(mean["mode"] == f"{other} ({space})") & np.isclose(mean["alpha"], p.report_alpha)].iloc[0]
            out.append(row(f"ensemble with {other} ({space}), alpha {p.report_alpha:g}", other, space,
                           p.report_alpha, r))
    return pd.DataFrame(out).rename(columns={"id_acc": p.id_dataset})


def _claims(table: pd.DataFrame, p: Table13Params) -> pd.DataFrame:
    rows = []
    zs = table[table["row"] == "zero-shot"].iloc[0]
    for other in p.others:
        alone = table[table["row"] == f"{other} alone"].iloc[0]
        for _, r in table[(table["model"] == other) & (table["space"] != "")].iterrows():
            gain = r["avg_shifts"] - alone["avg_shifts"]
            rows.append({"claim": f"the ensemble ({r['space']}) is more robust than {other} alone (Avg)",
                         "value_pp": round(float(gain), 2), "bar_pp": "> 0", "holds": bool(gain > 0)})
            best = max(alone["avg_id_shifts"], zs["avg_id_shifts"])
            gain = r["avg_id_shifts"] - best
            rows.append({"claim": f"the ensemble ({r['space']}) beats both models on Avg(r,s) ({other})",
                         "value_pp": round(float(gain), 2), "bar_pp": "> 0", "holds": bool(gain > 0)})
    return pd.DataFrame(rows)


def _beside(table: pd.DataFrame, p: Table13Params) -> Optional[pd.DataFrame]:
    if not p.published_names:
        return None
    pub = published("table13")
    rows = []
    for other, paper_name in p.published_names.items():
        ours = table[table["model"] == other]
        theirs = pub[pub["model"] == paper_name]
        for label, mine, method in (("alone", ours[ours["space"] == ""], "standalone"),
                                    *((f"ensemble ({s})", ours[ours["space"] == s],
                                       "output-space ensemble with zero-shot CLIP") for s in p.spaces)):
            paper_row = theirs[theirs["method"] == method]
            if mine.empty or paper_row.empty:
                continue
            r = {"model": other, "paper_model": paper_name, "row": label}
            for col, pcol in ((p.id_dataset, "imagenet"), ("avg_shifts", "avg_shifts"), ("avg_id_shifts", "avg_id_shifts")):
                r[f"{pcol}_ours"] = float(mine[col].iloc[0])
                r[f"{pcol}_paper"] = float(paper_row[pcol].iloc[0])
                r[f"{pcol}_diff"] = r[f"{pcol}_ours"] - r[f"{pcol}_paper"]
            rows.append(r)
    return pd.DataFrame(rows)


def run(params: Table13Params, *, progress: bool = True) -> Table13Result:
    """Every model's logits (cached) and the ensembles over alpha; write Table 13, the curve, claims and figure."""

    outputs = StudyOutputs(NAME, params)
    p, runs = outputs.params, outputs.runs
    tidy = pd.concat([ensemble_rows(p, seed, runs, progress) for seed in progress_bar(p.seeds, desc=NAME, unit="seed",
                                                                             show=progress)],
                     ignore_index=True)
    store = ResultsStore(outputs.out / "results.sqlite")
    config = json.dumps(p.to_dict(), default=str)
    store.add_many({"run": f"{NAME}/seed{r['seed']}/{r['mode']}", "model": p.model, "method": r["mode"],
                    "alpha": r["alpha"], "dataset": r["dataset"], "metric": r["metric"], "value": r["value"],
                    "config": config} for r in tidy.to_dict("records"))
    curve = curve_table(tidy, id_dataset=p.id_dataset, ood_datasets=p.ood_datasets)
    outputs.csv("curve", curve.round(4))
    table = table13(curve, p)
    outputs.table("table13", table, floatfmt=".2f")
    claims = _claims(table, p)
    claims = outputs.claims(claims, p.n_test, floatfmt=".2f")
    beside = _beside(table, p)
    if beside is not None:
        outputs.table("beside_published", beside, floatfmt=".1f")
    figure = plot_id_vs_ood(curve, curve_label="ensemble with {mode}", finetuned_label="{mode} alone",
                            title=f"Output-space ensembles with zero-shot {p.model} ({p.eval_split} split)")
    outputs.figure("figure", figure, NAME)
    return Table13Result(p, curve, table, claims, beside, figure, **outputs.finish())


STUDY = register_study("table13_output_ensembles", "Table 13: output-space ensembles of the zero-shot model with independently trained models",
                       Table13Params, run,
                       covers=[("Table 13", "")])
