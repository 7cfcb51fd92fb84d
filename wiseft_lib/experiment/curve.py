"""The WiSE-FT curve: zero-shot -> fine-tuned, interpolated over alpha, scored ID and OOD.

One call per seed does the paper's core experiment for both fine-tuning modes: build the
zero-shot classifier, fine-tune it end-to-end and/or as a linear classifier (or take checkpoints
made elsewhere, e.g. by ``torchrun -m wiseft_lib.finetune``), sweep alpha with one working model
(end-to-end) or on cached features (linear), and score every evaluation set. Every piece goes
through the run cache (:mod:`wiseft_lib.experiment.runs`): a fine-tune, or an alpha already scored, is
reused by any later study that asks for the same thing.

    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.curve import wiseft_curve, curve_table
    from wiseft_lib.experiment.runs import RunCache
    tidy = wiseft_curve(CurveConfig(n_test=200, n_train=256, e2e={"epochs": 1}), seed=0,
                        runs=RunCache("outputs/mini/runs"))
    print(curve_table(tidy))
"""
from __future__ import annotations

import copy
import json
from typing import Any, Callable, Optional

import pandas as pd
from torch import nn

from wiseft_lib.core.evaluate import evaluate_head, score
from wiseft_lib.core.interpolate import iter_alphas
from wiseft_lib.core.sweep import sweep_logits
from wiseft_lib.data.mini import MINI_ID
from wiseft_lib.data.registry import has_val_split
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.endpoints import Endpoints, RunRef, finetuned_run
from wiseft_lib.experiment.runs import RunCache, alpha_key, run_key

__all__ = ["wiseft_curve", "run_curve", "curve_table", "summary_table", "data_table", "val_id_curve", "alphas_on_val",
           "CLAIMS", "claim_values", "check_claims"]

# ---------------------------------------------------------------- the sweeps
def missing_scores(ep: Endpoints, run: RunRef, path: str) -> dict[float, list[str]]:
    """``{alpha: [evaluation sets without a score]}`` of one run under ``path`` (how its logits are made)."""
    out: dict[float, list[str]] = {}
    for name in ep.cfg.eval_names():
        done = ep.runs.scores(run.kind, run.key, ep.eval_key(name, path))
        for alpha in ep.cfg.alphas:
            if alpha_key(alpha) not in done:
                out.setdefault(alpha, []).append(name)
    return out


def _sweep(ep: Endpoints, run: RunRef, path: str, endpoints: Callable[[], tuple[nn.Module, nn.Module]],
           score: Callable[[nn.Module, str], dict[str, float]]) -> None:
    """Interpolate one working copy of ``endpoints()`` in place over the missing alphas; score each set."""

    missing = missing_scores(ep, run, path)
    if not missing:
        return
    zero, tuned = endpoints()
    theta_0 = {k: v.detach().clone() for k, v in zero.state_dict().items()}
    theta_1 = {k: v.detach().clone() for k, v in tuned.state_dict().items()}
    alphas = [a for a in ep.cfg.alphas if a in missing]
    for alpha, model in iter_alphas(tuned, theta_0, theta_1, alphas, progress=ep.progress):
        for name in missing[alpha]:
            ep.runs.add_scores(run.kind, run.key, ep.eval_key(name, path), alpha, score(model, name),
                               ep.eval_record(name))


def _sweep_end_to_end(ep: Endpoints, run: RunRef) -> None:
    """Each evaluation set is decoded once and scored under every missing alpha (:func:`sweep_logits`)."""

    missing = missing_scores(ep, run, "model")
    if not missing:
        return
    by_set: dict[str, list[float]] = {}
    for alpha in ep.cfg.alphas:
        for name in missing.get(alpha, []):
            by_set.setdefault(name, []).append(alpha)
    zero, tuned = ep.zeroshot(), run.load_model(ep).to(ep.device)
    theta_0 = {k: v.detach().clone() for k, v in zero.state_dict().items()}
    theta_1 = {k: v.detach().clone() for k, v in tuned.state_dict().items()}
    for name, alphas in by_set.items():
        bundle = ep.eval_bundle(name)
        per_alpha = sweep_logits(tuned, theta_0, theta_1, alphas, bundle.dataset, batch_size=ep.cfg.eval_batch_size,
                                 num_workers=ep.cfg.num_workers, device=ep.device, precision=ep.eval_precision("model"),
                                 progress=ep.progress, desc=f"sweep {name}")
        for alpha, (logits, labels) in per_alpha.items():
            ep.runs.add_scores(run.kind, run.key, ep.eval_key(name, "model"), alpha,
                               {**score(logits, labels, bundle), "n_images": float(len(labels)),
                                "n_skipped": float(bundle.skipped)},
                               ep.eval_record(name))


def _sweep_linear(ep: Endpoints, run: RunRef) -> None:
    def endpoints() -> tuple[nn.Module, nn.Module]:
        return copy.deepcopy(ep.zeroshot().classification_head), run.load_head(ep).to(ep.device)

    def score(head: nn.Module, name: str) -> dict[str, float]:
        x, y = ep.features(name)
        bundle = ep.scoring_bundle(name)
        return {**evaluate_head(head, x, y, bundle), "n_images": float(len(y)), "n_skipped": float(bundle.skipped)}

    _sweep(ep, run, "features", endpoints, score)


def tidy_scores(ep: Endpoints, mode: str, run: RunRef, path: str) -> list[dict[str, Any]]:
    """The cached scores of ``run`` under ``path`` as tidy rows labelled ``mode``, one per alpha, set and metric."""
    rows = []
    scores = {n: ep.runs.scores(run.kind, run.key, ep.eval_key(n, path)) for n in ep.cfg.eval_names()}
    for alpha in ep.cfg.alphas:
        for name in ep.cfg.eval_names():
            values = scores[name][alpha_key(alpha)]
            if "n_images" not in values:  # scored before the count was kept: the set's size
                values = {**values, "n_images": float(ep.eval_set_size(name))}
            if "n_skipped" not in values:  # scored before skipped files were counted: the set's count
                values = {**values, "n_skipped": float(ep.scoring_bundle(name).skipped)}
            rows.extend({"seed": ep.seed, "mode": mode, "alpha": alpha, "dataset": name, "metric": k, "value": v}
                        for k, v in values.items())
    return rows


def run_curve(ep: Endpoints, run: RunRef, label: str) -> pd.DataFrame:
    """WiSE-FT between ``ep``'s zero-shot model and any end-to-end end ``run`` (a fine-tune, LP-FT, FLYP, a soup):
    its scores at ``ep.cfg.alphas`` on every evaluation set (cached per run), as tidy rows with ``mode=label``."""
    _sweep_end_to_end(ep, run)
    return pd.DataFrame(tidy_scores(ep, label, run, "model"))


def wiseft_curve(cfg: CurveConfig, seed: int = 0, *, runs: Optional[RunCache] = None, store=None,
                 study: str = "curve", progress: bool = True) -> pd.DataFrame:
    """Tidy results ``(seed, mode, alpha, dataset, metric, value)`` of one seed.

    Fine-tunes and scores come from ``runs`` when it holds them and are added to it otherwise
    (``runs=None``: a throwaway cache). With ``store`` (a :class:`ResultsStore`) the rows are also
    written there, under a run name ``STUDY/seedS/HASH`` whose hash covers the fine-tune and the
    evaluation sets: a rerun with other settings adds rows, one with the same settings replaces them.
    """
    ep = Endpoints(cfg, seed, runs if runs is not None else RunCache(None), progress)
    rows: list[dict[str, Any]] = []
    for mode in cfg.modes:
        run = finetuned_run(ep, mode)
        path = "model" if mode == "end-to-end" else "features"
        (_sweep_end_to_end if mode == "end-to-end" else _sweep_linear)(ep, run)
        mode_rows = tidy_scores(ep, mode, run, path)
        rows.extend(mode_rows)
        if store is not None:
            label = f"{study}/seed{seed}/" + run_key({"run": run.key, "eval": [ep.eval_key(n, path)
                                                                                 for n in cfg.eval_names()]})[:10]
            config = json.dumps({**cfg.to_dict(), "seed": seed, "run": f"{run.kind}/{run.key}"}, default=str)
            store.add_many({"run": label, "model": cfg.model, "method": f"wiseft-{r['mode']}", "alpha": r["alpha"],
                            "dataset": r["dataset"], "metric": r["metric"], "value": r["value"], "config": config}
                           for r in mode_rows)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- alpha chosen on held-out ID data
def val_id_curve(cfg: CurveConfig, seeds: list[int], *, runs: Optional[RunCache] = None) -> Optional[pd.DataFrame]:
    """ID accuracy on the ID set's *val* split (held out from test) at every alpha of ``cfg``, per seed and mode:
    columns ``seed, mode, alpha, val_id_acc``. The same fine-tunes as the test curve (the run cache's), scored on
    images nothing reported is measured on. None when the ID set has no val split (e.g. ImageNet)."""
    if not has_val_split(cfg.id_dataset):
        return None
    val_cfg = cfg.as_curve(eval_split="val", ood_datasets=[])
    rows = pd.concat([wiseft_curve(val_cfg, seed, runs=runs, progress=False) for seed in seeds], ignore_index=True)
    rows = rows[(rows["metric"] == "top1") & (rows["dataset"] == cfg.id_dataset)]
    return rows.rename(columns={"value": "val_id_acc"})[["seed", "mode", "alpha", "val_id_acc"]].reset_index(drop=True)


def alphas_on_val(val: Optional[pd.DataFrame]) -> dict[str, float]:
    """Per mode, the alpha a user would deploy without looking at any shift: the best seed-mean ID accuracy on the
    val split (ties: the smallest alpha, nearer the zero-shot model). ``{}`` without val scores."""
    if val is None or val.empty:
        return {}
    mean = val.groupby(["mode", "alpha"])["val_id_acc"].mean().reset_index().sort_values(["mode", "alpha"])
    return {mode: float(g.loc[g["val_id_acc"].idxmax(), "alpha"]) for mode, g in mean.groupby("mode", sort=False)}


# ---------------------------------------------------------------- tables
def data_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per evaluation set: images scored and unreadable image files skipped while indexing (first seed/mode/alpha).

    A non-zero ``skipped`` means the data folder has broken files: the accuracies are over the readable ones.
    """
    counts = tidy[tidy["metric"].isin(["n_images", "n_skipped"])]
    if counts.empty:
        return pd.DataFrame(columns=["dataset", "images", "skipped"])
    first = counts[(counts["seed"] == counts["seed"].iloc[0]) & (counts["mode"] == counts["mode"].iloc[0])
                   & (counts["alpha"] == counts["alpha"].iloc[0])]
    wide = first.pivot_table(index="dataset", columns="metric", values="value", sort=False).reset_index()
    wide = wide.rename(columns={"n_images": "images", "n_skipped": "skipped"})
    for col in ("images", "skipped"):
        wide[col] = wide[col].fillna(0).astype(int) if col in wide else 0
    wide.columns.name = None
    return wide[["dataset", "images", "skipped"]]


def curve_table(tidy: pd.DataFrame, id_dataset: str = MINI_ID, metric: str = "top1",
                ood_datasets: Optional[list[str]] = None) -> pd.DataFrame:
    """One row per (seed, mode, alpha): ``id_acc``, ``ood_avg`` and one column per OOD set.

    ``ood_datasets`` (default: every other dataset, in evaluation order) are the sets averaged
    into ``ood_avg``; other evaluated sets (e.g. ImageNet on a shift's classes) are left out.
    """
    sub = tidy[tidy["metric"] == metric]
    wide = sub.pivot_table(index=["seed", "mode", "alpha"], columns="dataset", values="value").reset_index()
    ood = ood_datasets if ood_datasets is not None else [d for d in pd.unique(sub["dataset"]) if d != id_dataset]
    wide = wide.rename(columns={id_dataset: "id_acc"})
    wide["ood_avg"] = wide[ood].mean(axis=1)
    wide.columns.name = None
    return wide[["seed", "mode", "alpha", "id_acc", "ood_avg", *ood]].sort_values(["seed", "mode", "alpha"])


def summary_table(curve: pd.DataFrame, val_alphas: Optional[dict[str, float]] = None) -> pd.DataFrame:
    """Zero-shot, fine-tuned, alpha=0.5, alpha chosen on ID val and oracle-alpha rows per mode, averaged over seeds.

    ``val_alphas`` (:func:`alphas_on_val`): per mode the alpha chosen on the ID set's val split, the one to deploy.
    The oracle row's alpha is the one with the best mean OOD accuracy *on these evaluation sets*
    (as the paper's "optimal alpha"): it is labelled as such, not a held-out choice.
    """
    mean = curve.groupby(["mode", "alpha"]).mean(numeric_only=True).drop(columns="seed").reset_index()
    out = []
    for mode, g in mean.groupby("mode"):
        g = g.set_index("alpha")
        if 0.0 in g.index:
            out.append({"method": "zero-shot", **g.loc[0.0].to_dict()})
        if 1.0 in g.index:
            out.append({"method": f"fine-tuned ({mode})", **g.loc[1.0].to_dict()})
        if 0.5 in g.index:
            out.append({"method": f"WiSE-FT {mode}, alpha=0.5", **g.loc[0.5].to_dict()})
        chosen = (val_alphas or {}).get(mode)
        if chosen is not None and chosen in g.index:
            out.append({"method": f"WiSE-FT {mode}, alpha={chosen:g} chosen on ID val (held out)",
                        **g.loc[chosen].to_dict()})
        best = g["ood_avg"].idxmax()
        out.append({"method": f"WiSE-FT {mode}, oracle alpha={best:g} (best mean OOD)", **g.loc[best].to_dict()})
    table = pd.DataFrame(out).drop_duplicates(subset=["method"]).drop(columns="mode").reset_index(drop=True)
    return table.round(2)


# ---------------------------------------------------------------- claims
# The paper's claims as checks on a curve (means over seeds), with the margins the embedded default aims for.
CLAIMS = (
    ("end-to-end", "fine-tuning gains ID accuracy: FT ID - ZS ID", "ft_id_gain", ">=", 8.0),
    ("end-to-end", "WiSE-FT beats both endpoints OOD: a=0.5 OOD - max(ZS, FT) OOD", "mid_ood_gain", ">=", 2.0),
    ("end-to-end", "WiSE-FT keeps the ID gain: a=0.5 ID - FT ID", "mid_id_vs_ft", ">=", -1.0),
    ("linear", "WiSE-FT beats both endpoints OOD: a=0.5 OOD - max(ZS, FT) OOD", "mid_ood_gain", ">", 0.0),
)


def claim_values(curve: pd.DataFrame, mode: str) -> dict[str, float]:
    """ID/OOD differences (pp) between alpha 0, 0.5 and 1 of one mode, averaged over seeds."""
    g = curve[curve["mode"] == mode].groupby("alpha")[["id_acc", "ood_avg"]].mean()
    missing = [a for a in (0.0, 0.5, 1.0) if a not in g.index]
    if missing:
        raise ValueError(f"the {mode} curve lacks alpha {missing}; the claims need alphas 0, 0.5 and 1")
    zs, mid, ft = g.loc[0.0], g.loc[0.5], g.loc[1.0]
    return {"ft_id_gain": ft["id_acc"] - zs["id_acc"],
            "mid_ood_gain": mid["ood_avg"] - max(zs["ood_avg"], ft["ood_avg"]),
            "mid_id_vs_ft": mid["id_acc"] - ft["id_acc"]}


def check_claims(curve: pd.DataFrame) -> pd.DataFrame:
    """One row per claim of :data:`CLAIMS` whose mode is in ``curve``: value (pp), bar, holds."""
    rows = []
    for mode, claim, key, op, bar in CLAIMS:
        if mode in set(curve["mode"]):
            value = claim_values(curve, mode)[key]
            holds = value >= bar if op == ">=" else value > bar
            rows.append({"mode": mode, "claim": claim, "value_pp": round(value, 2), "bar_pp": f"{op} {bar:g}",
                         "holds": bool(holds)})
    return pd.DataFrame(rows)
