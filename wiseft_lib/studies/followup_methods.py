"""Beyond the paper: the methods that followed WiSE-FT (LP-FT, FLYP, model soups, one alpha per layer group),
beside it under one protocol: the same model, training images, seeds, shifts and test images.

    wiseft run followup_methods --params params/mini/followup_methods.yaml
    papermill notebooks/followup_methods.ipynb out.ipynb -f params/mini/followup_methods.yaml

Per seed: the fine-tune (the reference: WiSE-FT's curve over ``alphas``), LP-FT, FLYP, the uniform and greedy soups
of ``soup_ingredients`` (fine-tunes of the same zero-shot model; Figure 3's grid, so its cache serves), each scored
at ``method_alphas`` (1: the method; 0.5: WiSE-FT of it), and per-group alphas searched on the ID val split. Every
choice (the deployed alpha, the greedy soup, the per-group alphas, the soup family's pick) looks at the ID val
split only; the tables report test. Writes ``methods.*`` (the table with 95% intervals over seeds), ``matched.*``
(each method beside WiSE-FT at its ID accuracy), ``soup_trace.csv``, ``group_search.csv``, ``claims.*``, the
figure, ``published_model_soups.*`` (mlfoundations/model-soups' ImageNet numbers), ``results.sqlite``, ``study.json``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd
from scipy import stats

from wiseft_lib.analysis.matched_id import baseline_claims, curve_claims, curve_matched, matched_points, points_table
from wiseft_lib.data.registry import has_val_split
from wiseft_lib.experiment.curve import alphas_on_val, curve_table, run_curve, val_id_curve
from wiseft_lib.experiment.endpoints import Endpoints, finetuned_run
from wiseft_lib.experiment.flyp_run import flyp_run
from wiseft_lib.experiment.followups import group_alpha_curve, lpft_run, soup_runs
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.paper import published
from wiseft_lib.report.plots import plot_baselines
from wiseft_lib.studies.base import StudyOutputs, StudyResult, register_study
from wiseft_lib.studies.baselines import store_rows
from wiseft_lib.studies.shift_sweep import ShiftSweepParams, run_sweep

NAME = "followup_methods"
METHODS = ("lp-ft", "flyp", "soups", "group-alpha")
BEST_INGREDIENT = "best soup ingredient (on val)"
SINGLE_ALPHA = "single alpha chosen by the group search (on val)"
REFERENCE = "WiSE-FT"
ORDER = ("LP-FT", "FLYP", BEST_INGREDIENT, "uniform soup", "greedy soup", SINGLE_ALPHA, "per-group alpha")
# Figure 3's learning-rate x epochs grid and its L2-toward-zero-shot fine-tunes (params/mini/fig3_hyperparameters.yaml)
FIG3_INGREDIENTS = {
    "lr 0.0005, 10 epochs (the reference)": {}, "lr 0.0001, 3 epochs": {"epochs": 3, "lr": 0.0001},
    "lr 0.0005, 3 epochs": {"epochs": 3, "lr": 0.0005}, "lr 0.002, 3 epochs": {"epochs": 3, "lr": 0.002},
    "lr 0.0001, 10 epochs": {"epochs": 10, "lr": 0.0001}, "lr 0.002, 10 epochs": {"epochs": 10, "lr": 0.002},
    "L2 to zero-shot, lambda 0.01": {"l2_to_init": 0.01}, "L2 to zero-shot, lambda 0.1": {"l2_to_init": 0.1}}
__all__ = ["FollowupParams", "FollowupResult", "run", "methods_table", "METHODS"]


@dataclass
class FollowupParams(ShiftSweepParams):
    """The reference WiSE-FT sweep (end-to-end) and the follow-up methods, each on the same data and seeds."""

    output_dir: str = param("outputs/mini/followup_methods", "where results, tables and figures go")
    modes: list[str] = param(["end-to-end"], "the follow-ups are end-to-end methods")
    methods: list[str] = param(list(METHODS), "which follow-ups: lp-ft, flyp, soups, group-alpha")
    method_alphas: list[float] = param([0.5, 1.0], "alphas scored for each method (1: the method; 0.5: WiSE-FT "
                                                   "between the zero-shot model and it)")
    lpft: dict[str, Any] = param({"probe": {}, "e2e": {}}, "LP-FT: probe (fit_logistic_probe arguments, e.g. Cs) "
                                                           "and e2e (FinetuneConfig fields over the e2e recipe)")
    flyp: dict[str, Any] = param({}, "FLYP: FinetuneConfig fields over the e2e recipe")
    soup_ingredients: dict[str, dict[str, Any]] = param(dict(FIG3_INGREDIENTS), "name -> FinetuneConfig fields "
                                                        "over the e2e recipe: the fine-tunes souped ({}: the reference)")
    group_search: dict[str, Any] = param({"n_trials": 20}, "per-group alpha search: n_trials (random assignments "
                                                           "after the 11 uniform ones), grid")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modes != ["end-to-end"]:
            raise ParamsError(f"parameter 'modes': the follow-up methods are end-to-end, got {self.modes}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ParamsError(f"parameter 'methods': unknown {unknown}; choose from {list(METHODS)}")
        if 1.0 not in self.method_alphas:
            raise ParamsError(f"parameter 'method_alphas' must contain 1.0 (the method itself), got "
                              f"{self.method_alphas}")
        if set(self.lpft) - {"probe", "e2e"}:
            raise ParamsError(f"parameter 'lpft' takes 'probe' and 'e2e', got {sorted(self.lpft)}")
        if "soups" in self.methods and len(self.soup_ingredients) < 2:
            raise ParamsError("parameter 'soup_ingredients': a soup needs at least two fine-tunes")
        for name, recipe in {**self.soup_ingredients, "(lpft.e2e)": self.lpft.get("e2e", {}),
                             "(flyp)": self.flyp}.items():
            try:
                self.as_curve(e2e={**self.e2e, **recipe}).finetune_config("end-to-end", 0)
            except ParamsError as err:
                raise ParamsError(f"recipe {name!r}: {err}") from None

    def has_val(self) -> bool:
        return has_val_split(self.id_dataset)

    def smoke_version(self):
        """Seconds-long: one seed, one epoch, two shifts of 100 images, two soup ingredients (different learning
        rates), one probe C, a short group search on a coarse grid: the code path, not the numbers."""
        small = super().smoke_version()
        one_epoch = {"epochs": 1, "warmup_steps": 2}
        soups = {name: {**recipe, **one_epoch, "lr": recipe.get("lr", self.e2e.get("lr", 1e-3)) * (1 + i)}
                 for i, (name, recipe) in enumerate(list(self.soup_ingredients.items())[:2])}
        shifts = list(self.ood_datasets[:2])
        return dataclasses.replace(
            small, seeds=list(self.seeds[:1]), n_test=100, n_train_linear=256, ood_datasets=shifts,
            id_on_shift_classes={k: v for k, v in self.id_on_shift_classes.items() if k in shifts},
            soup_ingredients=soups, flyp={**self.flyp, **one_epoch},
            lpft={"probe": {**self.lpft.get("probe", {}), "Cs": [1.0]}, "e2e": {**self.lpft.get("e2e", {}), **one_epoch}},
            group_search={**self.group_search, "n_trials": 2, "grid": [0.0, 0.5, 1.0]})


@dataclass
class FollowupResult(StudyResult):
    params: FollowupParams
    reference: pd.DataFrame  # WiSE-FT's curve: per seed and alpha, id_acc, ood_avg, each shift
    methods: pd.DataFrame  # per method and seed (alpha 1 and method_alphas), the same columns
    table: pd.DataFrame  # the table: per row, seed mean and 95% interval half-width of each column
    matched: pd.DataFrame  # each method (the soups: the one chosen on val) beside WiSE-FT at its ID accuracy
    matched_wiseft: pd.DataFrame  # WiSE-FT of each method (its alphas below 1) beside WiSE-FT's curve at the same ID
    soup_trace: pd.DataFrame
    group_search: pd.DataFrame
    claims: pd.DataFrame
    published: pd.DataFrame
    figure: Any


# ---------------------------------------------------------------- per seed
def _endpoints(p: FollowupParams, seed: int, runs, progress: bool) -> tuple[Endpoints, Optional[Endpoints]]:
    test_ep = Endpoints(p.as_curve(alphas=list(p.method_alphas)), seed, runs, progress)
    val_ep = Endpoints(p.as_curve(eval_split="val", ood_datasets=[], alphas=[1.0]), seed, runs, False) \
        if p.has_val() else None
    return test_ep, val_ep


def _group_rows(p: FollowupParams, ep: Endpoints, val_ep: Endpoints) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-group alphas searched on val and their choice scored on test; beside it, the best single alpha of the
    same search (its uniform phase: the fair comparison) scored on test (the fine-tune's own cached sweep)."""
    reference = finetuned_run(ep, "end-to-end")
    search, rows = group_alpha_curve(ep, val_ep, reference, seed=ep.seed, **p.group_search)
    single = Endpoints(p.as_curve(alphas=[search.best_uniform]), ep.seed, ep.runs, False)
    rows = pd.concat([rows, run_curve(single, reference, SINGLE_ALPHA).assign(alpha=1.0)], ignore_index=True)
    trials = search.trials.assign(seed=ep.seed, best=lambda d: d.index == d["score"].idxmax())
    summary = {"seed": ep.seed, **{f"alpha_{g}": a for g, a in search.best.items()}, "val_score": search.best_score,
               "best_uniform_alpha": search.best_uniform, "best_uniform_val_score": search.best_uniform_score}
    return rows, pd.concat([trials, pd.DataFrame([summary]).assign(phase="chosen")], ignore_index=True)


def _method_rows(p: FollowupParams, seed: int, runs, progress: bool) -> tuple[pd.DataFrame, dict[str, float],
                                                                                  pd.DataFrame, pd.DataFrame]:
    """One seed's tidy rows of every method, the val ID accuracy of each method's end, the soups' trace and the
    group search's trials."""
    ep, val_ep = _endpoints(p, seed, runs, progress)
    ends = {}
    if "lp-ft" in p.methods:
        ends["LP-FT"] = lpft_run(ep, probe=p.lpft.get("probe"), e2e=p.lpft.get("e2e"))
    if "flyp" in p.methods:
        ends["FLYP"] = flyp_run(ep, p.flyp)
    trace = search = pd.DataFrame()
    if "soups" in p.methods:
        ingredients = {n: finetuned_run(Endpoints(p.as_curve(e2e={**p.e2e, **r}), seed, runs, progress), "end-to-end")
                       for n, r in p.soup_ingredients.items()}
        soups, trace = soup_runs(ep, val_ep, ingredients)  # no val split: the uniform soup only
        ends.update(soups)
    rows = [run_curve(ep, ref, label) for label, ref in ends.items()]
    if not trace.empty:  # the soups' fair opponent: the single ingredient with the best val ID accuracy, on test
        best = ingredients[trace.sort_values("step")["name"].iloc[0]]
        rows.append(run_curve(Endpoints(p.as_curve(alphas=[1.0]), seed, runs, progress), best, BEST_INGREDIENT))
    if "group-alpha" in p.methods and val_ep is not None:
        group, search = _group_rows(p, ep, val_ep)
        rows.append(group)
    val = {}
    if val_ep is not None:  # each end's ID accuracy on val (cached scores): the soups' family picks one on it
        for label, ref in ends.items():
            rows_val = run_curve(val_ep, ref, label)
            val[label] = float(rows_val[(rows_val["metric"] == "top1")]["value"].iloc[0])
    return pd.concat(rows, ignore_index=True), val, trace, search


# ---------------------------------------------------------------- tables
def _interval(values: pd.Series) -> float:
    """Half-width of the 95% t-interval of the seed mean (0 for one seed)."""
    n = values.notna().sum()
    return float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0


def methods_table(reference: pd.DataFrame, methods: pd.DataFrame, shifts: list[str],
                  val_alpha: Optional[float]) -> pd.DataFrame:
    """The table: one row per method (zero-shot, fine-tuned, WiSE-FT at 0.5 and at the alpha chosen on val, each
    follow-up at alpha 1 and WiSE-FT of it at 0.5), columns ``id_acc``, ``ood_avg`` and each shift as the seed mean,
    each with ``COLUMN_ci``: the half-width of its 95% t-interval over seeds."""
    picks = [("zero-shot", reference, "end-to-end", 0.0), ("fine-tuned (FT)", reference, "end-to-end", 1.0),
             ("WiSE-FT, alpha=0.5", reference, "end-to-end", 0.5)]
    if val_alpha is not None:
        picks.append((f"WiSE-FT, alpha={val_alpha:g} chosen on ID val", reference, "end-to-end", val_alpha))
    found = list(dict.fromkeys(methods["mode"]))
    for method in [m for m in ORDER if m in found] + [m for m in found if m not in ORDER]:
        picks.append((method, methods, method, 1.0))
        if method not in ("per-group alpha", BEST_INGREDIENT, SINGLE_ALPHA):
            picks.append((f"WiSE-FT({method}), alpha=0.5", methods, method, 0.5))
    rows = []
    columns = ["id_acc", "ood_avg", *shifts]
    for label, frame, mode, alpha in picks:
        sel = frame[(frame["mode"] == mode) & np.isclose(frame["alpha"], alpha)]
        if sel.empty:
            continue
        row = {"method": label, "seeds": len(sel)}
        for c in columns:
            row[c], row[f"{c}_ci"] = float(sel[c].mean()), _interval(sel[c])
        rows.append(row)
    return pd.DataFrame(rows)


def _readable(table: pd.DataFrame, shifts: list[str]) -> pd.DataFrame:
    out = table[["method"]].copy()
    for c in ["id_acc", "ood_avg", *shifts]:
        out[c] = [f"{v:.1f} ± {ci:.1f}" for v, ci in zip(table[c], table[f"{c}_ci"])]
    return out


# The follow-ups' own published claims, as (claim, source, row, other row, column): row - other > 0 in the paper
PUBLISHED_CLAIMS = (
    ("LP-FT is more robust than fine-tuning from the zero-shot head (mean OOD)", "Kumar et al. 2022", "LP-FT",
     "fine-tuned (FT)", "ood_avg"),
    ("LP-FT is at least as accurate ID as fine-tuning", "Kumar et al. 2022", "LP-FT", "fine-tuned (FT)", "id_acc"),
    ("FLYP is more robust than fine-tuning (mean OOD)", "Goyal et al. 2023", "FLYP", "fine-tuned (FT)", "ood_avg"),
    ("FLYP is more accurate ID than fine-tuning", "Goyal et al. 2023", "FLYP", "fine-tuned (FT)", "id_acc"),
    ("WiSE-FT of FLYP beats WiSE-FT of the fine-tune OOD (alpha 0.5)", "Goyal et al. 2023", "WiSE-FT(FLYP), alpha=0.5",
     "WiSE-FT, alpha=0.5", "ood_avg"),
    ("the greedy soup is more accurate ID than its best ingredient", "model-soups: 81.03 vs 80.39", "greedy soup",
     BEST_INGREDIENT, "id_acc"),
    ("the greedy soup is more robust than its best ingredient (mean OOD)", "model-soups: 50.86 vs 47.97",
     "greedy soup", BEST_INGREDIENT, "ood_avg"),
    ("the uniform soup is more robust than the best ingredient (mean OOD)", "model-soups: 51.58 vs 47.97",
     "uniform soup", BEST_INGREDIENT, "ood_avg"),
    ("one alpha per layer group beats the single alpha chosen on val (mean OOD)", "none: this package's question",
     "per-group alpha", SINGLE_ALPHA, "ood_avg"),
    ("one alpha per layer group beats the single alpha chosen on val (ID)", "none: this package's question",
     "per-group alpha", SINGLE_ALPHA, "id_acc"),
)


def published_claims(table: pd.DataFrame) -> pd.DataFrame:
    """The follow-ups' published claims (:data:`PUBLISHED_CLAIMS`) checked on this run's table (test, seed means):
    ``value_pp`` = row - other row. A row named by its end (``chosen on ID val``) matches by suffix."""
    by_name = table.set_index("method")
    rows = []
    for claim, source, row, other, column in PUBLISHED_CLAIMS:
        found = [m for m in by_name.index if m == other or m.endswith(other)]
        if row not in by_name.index or not found:
            continue
        value = float(by_name.loc[row, column] - by_name.loc[found[0], column])
        rows.append({"claim": claim, "source": source, "value_pp": round(value, 2), "bar_pp": "> 0",
                     "holds": bool(value > 0)})
    return pd.DataFrame(rows, columns=["claim", "source", "value_pp", "bar_pp", "holds"])


def _points(reference: pd.DataFrame, curves: pd.DataFrame, val: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each method's end (alpha 1) beside WiSE-FT's curve at the same ID accuracy; the soups are one family."""
    family = {"uniform soup": "model soups", "greedy soup": "model soups"}
    variants = curves[~curves["mode"].isin([BEST_INGREDIENT, SINGLE_ALPHA])].rename(columns={"mode": "variant"}).assign(
        family=lambda d: d["variant"].map(lambda v: family.get(v, v)))
    val_frame = pd.DataFrame([{"variant": k, "family": family.get(k, k), "seed": s, "val_id_acc": a}
                              for s, per in val.items() for k, a in per.items()],
                             columns=["variant", "family", "seed", "val_id_acc"])
    points = points_table(reference, variants, val_frame)
    return variants, points


def _wiseft_of_each(reference: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """WiSE-FT applied to each method (its alphas between 0 and 1) beside the reference WiSE-FT curve at the same
    ID accuracy: the comparison left when a method is more accurate ID than any point of WiSE-FT's curve."""
    methods = curves[curves["mode"].isin(["LP-FT", "FLYP", "uniform soup", "greedy soup"])]
    if methods.empty:
        return pd.DataFrame()
    both = pd.concat([reference.assign(mode=REFERENCE), methods.assign(mode="WiSE-FT(" + methods["mode"] + ")")],
                     ignore_index=True)
    return curve_matched(both, REFERENCE)


def run(params: FollowupParams, *, progress: bool = True) -> FollowupResult:
    """The reference sweep and every follow-up per seed; the table, the matched comparison, claims and figure."""
    outputs = StudyOutputs(NAME, params)
    sweep = run_sweep(outputs, progress=progress)
    p, runs = sweep.params, sweep.runs
    reference = curve_table(sweep.tidy, id_dataset=p.id_dataset, ood_datasets=p.ood_datasets)
    val_alpha = alphas_on_val(val_id_curve(p, p.seeds, runs=runs)).get("end-to-end")
    tidy, val, traces, searches = [], {}, [], []
    for seed in p.seeds:
        rows, val[seed], trace, search = _method_rows(p, seed, runs, progress)
        tidy.append(rows)
        traces.append(trace)
        searches.append(search)
    tidy = pd.concat(tidy, ignore_index=True)
    store_rows(sweep.store, NAME, p.model, tidy, p.to_dict())
    curves = curve_table(tidy, id_dataset=p.id_dataset, ood_datasets=p.ood_datasets)
    outputs.csv("reference", reference.round(4), stem="curve")
    outputs.csv("methods", curves.round(4), stem="method_points")
    table = methods_table(reference, curves, p.ood_datasets, val_alpha)
    outputs.table("table", _readable(table, p.ood_datasets), stem="methods", csv=table.round(4))
    soup_trace, group = pd.concat(traces, ignore_index=True), pd.concat(searches, ignore_index=True)
    outputs.csv("soup_trace", soup_trace)
    outputs.csv("group_search", group)
    variants, points = _points(reference, curves, val)
    matched = matched_points(points) if not points.empty else pd.DataFrame()
    outputs.table("matched", matched, floatfmt=".2f")
    matched_wiseft = _wiseft_of_each(reference, curves)
    outputs.table("matched_wiseft", matched_wiseft, floatfmt=".2f")
    matched_claims = pd.concat([baseline_claims(matched) if not matched.empty else pd.DataFrame(),
                                curve_claims(matched_wiseft) if not matched_wiseft.empty else pd.DataFrame()],
                               ignore_index=True)
    claims = outputs.claims(pd.concat([published_claims(table), matched_claims.assign(
        source="WiSE-FT at matched ID (this package)")], ignore_index=True), p.n_test, floatfmt=".2f")
    soups_published = published("model_soups")
    outputs.table("published", soups_published, stem="published_model_soups", floatfmt=".2f")
    figure = plot_baselines(reference, variants, points if not points.empty else None, reference_label="WiSE-FT",
                            title=f"Follow-up methods beside WiSE-FT, {p.model} ({p.eval_split} split, "
                                  f"{len(p.seeds)} seed(s))")
    outputs.figure("figure", figure, NAME)
    return FollowupResult(p, reference, curves, table, matched, matched_wiseft, soup_trace, group, claims,
                          soups_published, figure, **outputs.finish())


STUDY = register_study(NAME, "Beyond the paper: LP-FT, FLYP, model soups and per-layer alphas beside WiSE-FT",
                       FollowupParams, run, covers=[])
