"""Table 7: CoOp (learned prompt context) against WiSE-FT on the same few shots.

    wiseft run table7_coop --params params/mini/table7_coop.yaml
    papermill notebooks/table7_coop.ipynb out.ipynb -f params/mini/table7_coop.yaml

Each seed draws ``shots`` training examples per class (:mod:`wiseft_lib.data.kshot`). On them: CoOp
(:mod:`wiseft_lib.baselines.coop`: the CLIP stays frozen, only the prompt context is learned, on cached image features),
the linear classifier and the end-to-end fine-tune, each with WiSE-FT at alpha 0.5. The paper (ViT-B/16, 16 shots)
finds both WiSE-FT rows above CoOp on ImageNet and on average over its four shifts. Writes ``table7.*`` (one row
per method, ID, each shift and their mean), ``published_table7.*``, ``claims.*``, ``results.sqlite``, ``study.json``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from safetensors.torch import load_file, save_file

from wiseft_lib.baselines.coop import CoOpConfig, train_coop
from wiseft_lib.core.evaluate import evaluate_head
from wiseft_lib.core.models import ClassificationHead, create_model, text_context_length
from wiseft_lib.data import get_dataset
from wiseft_lib.data.registry import default_eval_split
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import wiseft_curve
from wiseft_lib.experiment.endpoints import Endpoints, eval_bundle_kwargs
from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.experiment.runs import RunCache, run_key
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.paper import published
from wiseft_lib.studies.base import StudyOutputs, StudyParams, StudyResult, UsesRuns, register_study

NAME = "table7_coop"
__all__ = ["Table7Params", "Table7Result", "run", "coop_scores", "table7", "table7_claims"]


@dataclass
class Table7Params(CurveConfig, UsesRuns, StudyParams):
    """Table 7's parameters: shots per class, CoOp's settings, the LC and E2E recipes on the same shots."""

    output_dir: str = param("outputs/mini/table7_coop", "where results, tables and figures go")
    shots: int = param(16, "training examples per class (a seeded draw per seed)")
    alphas: list[float] = param([0.0, 0.5, 1.0], "WiSE-FT alphas scored (Table 7 reports 0.5)")
    coop: dict[str, Any] = param({"n_ctx": 8, "epochs": 50, "lr": 0.002, "batch_size": 32},
                                 "CoOp settings: wiseft_lib.baselines.coop.CoOpConfig fields (CoOp's ImageNet recipe, but 8 "
                                 "context vectors: the mini's 16-token context holds no more beside the class names; "
                                 "16 for CLIP's 77 tokens)")
    e2e: dict[str, Any] = param({"epochs": 40, "lr": 5e-4, "batch_size": 64, "weight_decay": 0.1, "warmup_steps": 10},
                                "end-to-end recipe on the few shots (the reference recipe run 40 epochs: 160 images "
                                "give 3 steps an epoch)")
    min_linear_steps: int = param(300, "the LC trains at least this many steps on the few shots")

    def __post_init__(self) -> None:
        super().__post_init__()

        try:
            CoOpConfig(**self.coop)
        except (TypeError, ValueError) as err:
            raise ParamsError(f"parameter 'coop': {err} (its keys are CoOpConfig fields: n_ctx, ctx_init, epochs, "
                              f"lr, batch_size, momentum, weight_decay, warmup_epochs, ...)") from None
        self._check_context_fits()
        if self.shots < 1:
            raise ParamsError(f"parameter 'shots' must be a positive number of examples per class, got {self.shots}")
        if 0.5 not in self.alphas:
            raise ParamsError("parameter 'alphas' must include 0.5 (Table 7's WiSE-FT rows)")

    def _check_context_fits(self) -> None:
        """CoOp's context, CLIP's start and end tokens and at least one name token plus '.' must fit the text
        tower's context, checked before anything runs (the full check per class name comes in train_coop)."""

        n_ctx, length = CoOpConfig(**self.coop).n_ctx, text_context_length(self.model)
        if length is not None and n_ctx + 4 > length:
            raise ParamsError(
                f"parameter 'coop': n_ctx={n_ctx} context vectors do not fit {self.model}'s {length}-token text "
                f"context beside a class name (start and end tokens, a name and '.' need 4 more); use n_ctx <= "
                f"{length - 4}, e.g. coop: {{n_ctx: {min(8, length - 4)}, ...}} (params/mini uses 8), or a model with "
                f"a longer context (CLIP's 77 tokens take CoOp's 16)")

    def curve_config(self, n_classes: int) -> CurveConfig:
        linear = dict(self.linear)
        if self.linear_method == "adamw":
            steps_per_epoch = math.ceil(self.shots * n_classes / linear.get("batch_size", 256))
            linear["epochs"] = max(linear.get("epochs", 30), math.ceil(self.min_linear_steps / steps_per_epoch))
        return self.as_curve(k_shot=self.shots, linear=linear, n_train=None, n_train_linear=None)


@dataclass
class Table7Result(StudyResult):
    params: Table7Params
    scores: pd.DataFrame  # seed, method, dataset: top1
    table: pd.DataFrame
    claims: pd.DataFrame
    published: pd.DataFrame


def coop_scores(cfg: CurveConfig, seed: int, coop: dict[str, Any], runs: RunCache, progress: bool) -> pd.DataFrame:
    """CoOp trained on the seed's k-shot features, scored on every evaluation set (its head kept in the run cache:
    kind "coop", keyed by the zero-shot model, the training images, the settings and the seed)."""

    ep = Endpoints(cfg, seed, runs, progress)
    config = CoOpConfig(**coop)
    parts = {"zeroshot": ep.zeroshot_hash(), "train": ep.train_feature_key(), "coop": config.to_dict(), "seed": seed}
    key = run_key(parts)
    with runs.lock("coop", key):
        if not runs.has("coop", key):
            x, y = ep.train_features()
            clip, _, _ = create_model(cfg.model, cfg.pretrained, device=ep.device)
            classnames = ep.zeroshot().meta["classnames"]
            result = train_coop(clip, classnames, x, y, config, seed=seed, device=ep.device, progress=progress,
                                tokenizer=cfg.model)
            work = runs.work_dir("coop", key)
            save_file({"weight": result.head.weight.detach().cpu().contiguous(),
                       "ctx": result.ctx.detach().cpu().contiguous()}, str(work / "head.safetensors"))
            (work / "log.csv").write_text(result.log.to_csv(index=False))
            runs.commit("coop", key, work, {"parts": parts})
    weights = load_file(str(runs.entry("coop", key) / "head.safetensors"))
    head = ClassificationHead(weights["weight"], normalize=True).to(ep.device)
    rows = []
    for name in cfg.eval_names():
        feats, labels = ep.features(name)
        rows.append({"seed": seed, "method": "CoOp", "dataset": name,
                     "top1": evaluate_head(head, feats, labels, ep.scoring_bundle(name))["top1"]})
    return pd.DataFrame(rows)


def table7(scores: pd.DataFrame, id_dataset: str, shifts: list[str]) -> pd.DataFrame:
    """One row per method (seed means): the ID set, each shift, and the mean over the shifts."""
    wide = scores.pivot_table(index="method", columns="dataset", values="top1", sort=False)
    wide = wide[[id_dataset, *shifts]]
    wide["avg_shifts"] = wide[shifts].mean(axis=1)
    order = ["zero-shot", "CoOp", "fine-tuned LC", "WiSE-FT LC, alpha=0.5", "fine-tuned E2E", "WiSE-FT E2E, alpha=0.5"]
    wide = wide.reindex([m for m in order if m in wide.index] + [m for m in wide.index if m not in order])
    return wide.reset_index()


def table7_claims(table: pd.DataFrame, id_dataset: str) -> pd.DataFrame:
    """The paper's claim: WiSE-FT (LC and E2E, alpha 0.5) beats CoOp on the ID set and on the mean over shifts."""
    t = table.set_index("method")
    rows = []
    for method in ("WiSE-FT LC, alpha=0.5", "WiSE-FT E2E, alpha=0.5"):
        if method not in t.index:
            continue
        for col, where in ((id_dataset, "ID"), ("avg_shifts", "mean over shifts")):
            diff = float(t.loc[method, col] - t.loc["CoOp", col])
            rows.append({"claim": f"{method} - CoOp ({where})", "value_pp": round(diff, 2), "bar_pp": "> 0",
                         "holds": bool(diff > 0)})
    return pd.DataFrame(rows)


def run(params: Table7Params, *, progress: bool = True) -> Table7Result:
    """CoOp, LC and E2E on each seed's shots (all cached); write Table 7 beside the paper's."""

    outputs = StudyOutputs(NAME, params)
    p, runs = outputs.params, outputs.runs
    if p.smoke:
        p = dataclasses.replace(p, seeds=p.seeds[:1], shots=min(p.shots, 4), alphas=[0.0, 0.5, 1.0],
                                coop={**p.coop, "epochs": 2, "warmup_epochs": 1, "batch_size": 8})
    store = ResultsStore(outputs.out / "results.sqlite")
    n_classes = len(get_dataset(p.id_dataset, root=p.data_root, split=default_eval_split(p.id_dataset),
                                **eval_bundle_kwargs(p.id_dataset, 1)).classnames)
    cfg = p.curve_config(n_classes)
    cfg = dataclasses.replace(cfg.smoke_version(), alphas=p.alphas) if p.smoke else cfg
    frames = []
    labels = {("linear", 0.0): "zero-shot", ("linear", 1.0): "fine-tuned LC", ("linear", 0.5): "WiSE-FT LC, alpha=0.5",
              ("end-to-end", 1.0): "fine-tuned E2E", ("end-to-end", 0.5): "WiSE-FT E2E, alpha=0.5"}
    for seed in p.seeds:
        tidy = wiseft_curve(cfg, seed, runs=runs, store=store, study=NAME, progress=progress)
        tidy = tidy[tidy["metric"] == "top1"]
        tidy = tidy.assign(method=[labels.get((m, a)) for m, a in zip(tidy["mode"], tidy["alpha"])]).dropna(
            subset=["method"])
        frames.append(tidy.rename(columns={"value": "top1"})[["seed", "method", "dataset", "top1"]])
        coop = coop_scores(cfg, seed, p.coop, runs, progress)
        store.add_many({"run": f"{NAME}/seed{seed}/coop", "model": p.model, "method": "coop", "alpha": None,
                        "dataset": r["dataset"], "metric": "top1", "value": r["top1"],
                        "config": json.dumps({**p.to_dict(), "seed": seed}, default=str)} for _, r in coop.iterrows())
        frames.append(coop)
    scores = pd.concat(frames, ignore_index=True)
    table = table7(scores, p.id_dataset, p.ood_datasets)
    claims = table7_claims(table, p.id_dataset)
    paper = published("table7")
    outputs.table("table7", table.rename(columns=lambda c: c.removeprefix("mini-")), floatfmt=".2f", csv=table,
                  caption=f"{p.model}, {p.shots} shots per class ({p.eval_split} split, mean of {len(p.seeds)} "
                          f"draw(s))")
    outputs.table("published", paper, "published_table7", floatfmt=".2f")
    claims = outputs.claims(claims, p.n_test, floatfmt=".2f")
    return Table7Result(p, scores, table, claims, paper, **outputs.finish())


STUDY = register_study("table7_coop", "Table 7: CoOp (learned prompts) vs WiSE-FT on the same few shots",
                       Table7Params, run,
                       covers=[("Table 7", "")])
