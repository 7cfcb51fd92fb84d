"""Figure 26: ObjectNet along the WiSE-FT curve, zero-shot head from ImageNet vs ObjectNet class names.

    wiseft run fig26_objectnet_names --params params/paper/fig26_objectnet_names.yaml

ObjectNet's 113 classes are scored by taking, per class, the max of the logits of its mapped ImageNet classes.
With ImageNet class names (the paper's default, Table 1's "ObjectNet*") the zero-shot head is the ImageNet head.
With ObjectNet's own names, every ImageNet class mapped to an ObjectNet class gets the text embedding of the
ObjectNet name instead (so the max picks that class's prompt); the other ImageNet classes keep theirs. The
fine-tuned end is the same model either way (fine-tuned from the ImageNet-names head, from the run cache); only
the zero-shot end of the interpolation changes. The mini has no ObjectNet and no second set of class names, so
this study has a paper preset only (its test runs on the ObjectNet fixture layout). Writes ``objectnet_names.*``,
``fig26_objectnet_names.png/.pdf``, ``results.sqlite`` and ``study.json``.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import pandas as pd

from wiseft_lib.core.evaluate import evaluate_head, score
from wiseft_lib.core.interpolate import iter_alphas
from wiseft_lib.core.models import create_model, get_tokenizer
from wiseft_lib.core.sweep import sweep_logits
from wiseft_lib.core.zeroshot import zeroshot_head
from wiseft_lib.data.common import DatasetNotFoundError, data_root
from wiseft_lib.data.imagenet import objectnet_classnames, objectnet_imagenet_groups
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import curve_table, wiseft_curve
from wiseft_lib.experiment.endpoints import Endpoints, finetuned_run
from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.experiment.runs import RunCache
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.plots import plot_id_vs_ood
from wiseft_lib.studies.base import StudyOutputs, StudyParams, StudyResult, UsesRuns, register_study
from wiseft_lib.studies.baselines import store_rows

NAME = "fig26_objectnet_names"
__all__ = ["Fig26Params", "Fig26Result", "run", "objectnet_named_classnames", "IMAGENET_NAMES", "OBJECTNET_NAMES"]

IMAGENET_NAMES, OBJECTNET_NAMES = "ImageNet class names", "ObjectNet class names"


@dataclass
class Fig26Params(CurveConfig, UsesRuns, StudyParams):
    """Figure 26's parameters: Table 1's model and recipes, scored on ObjectNet."""

    output_dir: str = param("outputs/paper/fig26_objectnet_names", "where results, tables and figures go")
    id_dataset: str = param("imagenet", "the fine-tuning set (ImageNet: ObjectNet's classes map onto its own)")
    ood_datasets: list[str] = param(["objectnet"], "ObjectNet")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.id_dataset != "imagenet" or self.ood_datasets != ["objectnet"]:
            raise ParamsError(f"Figure 26 fine-tunes on imagenet and scores objectnet; got id_dataset="
                              f"{self.id_dataset!r}, ood_datasets={self.ood_datasets}")


@dataclass
class Fig26Result(StudyResult):
    params: Fig26Params
    curves: pd.DataFrame  # names, seed, mode, alpha: imagenet and objectnet top-1
    table: pd.DataFrame
    figure: Any


def objectnet_named_classnames(imagenet_names: list[str]) -> list[str]:
    """ImageNet's class names with each class mapped to ObjectNet renamed to its ObjectNet class."""

    names = list(imagenet_names)
    for name, group in zip(objectnet_classnames(), objectnet_imagenet_groups()):
        for i in group:
            names[i] = name
    return names


def _objectnet_named_zeroshot(ep, cfg: CurveConfig):
    """The zero-shot classifier with the ObjectNet-named head (the same image tower)."""

    zs = ep.zeroshot()
    clip, _, _ = create_model(cfg.model, cfg.pretrained, device=ep.device)
    names = objectnet_named_classnames(list(zs.meta["classnames"]))
    head = zeroshot_head(clip, names, ep.templates(), get_tokenizer(cfg.model)).to(ep.device)
    named = copy.deepcopy(zs)
    named.classification_head = head
    return named


def _named_rows(cfg: CurveConfig, seed: int, runs: RunCache, progress: bool) -> list[dict[str, Any]]:
    """ObjectNet top-1 along each mode's curve with the ObjectNet-named zero-shot end."""

    ep = Endpoints(cfg, seed, runs, progress)
    named = _objectnet_named_zeroshot(ep, cfg)
    rows = []
    for mode in cfg.modes:
        run = finetuned_run(ep, mode)
        if mode == "end-to-end":
            tuned = run.load_model(ep).to(ep.device)
            theta_0 = {k: v.detach().clone() for k, v in named.state_dict().items()}
            theta_1 = {k: v.detach().clone() for k, v in tuned.state_dict().items()}
            bundle = ep.eval_bundle("objectnet")  # decoded once for every alpha
            per_alpha = sweep_logits(tuned, theta_0, theta_1, cfg.alphas, bundle.dataset,
                                     batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers, device=ep.device,
                                     progress=progress, desc="sweep objectnet")
            for alpha, (logits, labels) in per_alpha.items():
                value = score(logits, labels, bundle)["top1"]
                rows.append({"seed": seed, "mode": mode, "alpha": alpha, "dataset": "objectnet", "value": value})
        else:
            tuned_head = run.load_head(ep).to(ep.device)
            zero_head = named.classification_head
            feats, labels = ep.features("objectnet")
            theta_0 = {k: v.detach().clone() for k, v in zero_head.state_dict().items()}
            theta_1 = {k: v.detach().clone() for k, v in tuned_head.state_dict().items()}
            head = copy.deepcopy(tuned_head)
            for alpha, h in iter_alphas(head, theta_0, theta_1, cfg.alphas, progress=False):
                value = evaluate_head(h, feats, labels, ep.scoring_bundle("objectnet"))["top1"]
                rows.append({"seed": seed, "mode": mode, "alpha": alpha, "dataset": "objectnet", "value": value})
    return rows


def run(params: Fig26Params, *, progress: bool = True) -> Fig26Result:
    """Table 1's curves (cached) and the same fine-tunes with the ObjectNet-named zero-shot end."""

    try:  # paper only: say so before any work starts or any folder is made (Run All without data stops here)
        data_root(params.data_root)
    except DatasetNotFoundError as err:
        raise DatasetNotFoundError(f"Figure 26 needs ImageNet and ObjectNet (paper preset only): {err}; see "
                                   "params/paper/fig26_objectnet_names.yaml") from None
    outputs = StudyOutputs(NAME, params)
    p, runs = outputs.params, outputs.runs
    if params.smoke:
        p = dataclasses.replace(p, seeds=params.seeds[:1])
    store = ResultsStore(outputs.out / "results.sqlite")
    frames = []
    for seed in p.seeds:
        standard = curve_table(wiseft_curve(p, seed, runs=runs, store=store, study=NAME, progress=progress),
                               id_dataset=p.id_dataset, ood_datasets=["objectnet"])
        frames.append(standard.assign(names=IMAGENET_NAMES))
        named = pd.DataFrame(_named_rows(p, seed, runs, progress))
        store_rows(store, NAME, p.model, named.assign(mode="objectnet-names-" + named["mode"], metric="top1"),
                   p.to_dict())
        ids = standard[["seed", "mode", "alpha", "id_acc"]]
        named = named.rename(columns={"value": "objectnet"}).drop(columns="dataset").merge(ids, on=["seed", "mode",
                                                                                                  "alpha"])
        frames.append(named.assign(names=OBJECTNET_NAMES, ood_avg=named["objectnet"]))
    curves = pd.concat(frames, ignore_index=True)
    mean = curves.groupby(["names", "mode", "alpha"], sort=False)[["id_acc", "objectnet"]].mean().reset_index()
    table = mean.pivot_table(index=["mode", "alpha"], columns="names", values="objectnet").reset_index()
    table.columns.name = None
    table["gain_from_objectnet_names"] = table[OBJECTNET_NAMES] - table[IMAGENET_NAMES]
    outputs.table("table", table, "objectnet_names", floatfmt=".2f",
                  caption="ObjectNet top-1 along WiSE-FT, by the class names of the zero-shot end")
    plot_frame = mean.assign(mode=mean["mode"] + ", " + mean["names"]).rename(columns={"objectnet": "ood_avg"})
    figure = plot_id_vs_ood(plot_frame, x="id_acc", y="ood_avg", xlabel="ImageNet top-1 (%)", fit=False,
                            ylabel="ObjectNet top-1 (%)", show_range=False,
                            title="Figure 26: ObjectNet with ImageNet vs ObjectNet class names")
    outputs.figure("figure", figure, NAME)
    return Fig26Result(p, curves, table, figure, **outputs.finish())


STUDY = register_study("fig26_objectnet_names",
                       "Figure 26: ObjectNet with ImageNet vs ObjectNet class names (paper preset only)",
                       Fig26Params, run,
                       covers=[("Figure 26", "paper preset only: the mini has no ObjectNet and one set of class names")])
