"""What Figures 3, 11, 12, 13 and 15 share: named fine-tuning variants, each against WiSE-FT's curve.

A study names its variants in its params: each a ``family`` (how the paper groups them, e.g. "optimizer")
and the recipe it changes (``e2e``, ``linear`` fields merged into the base recipe, or ``augment`` /
``linear_method``). Every variant is a cached fine-tune of its own (:mod:`wiseft_lib.experiment.runs`), scored on
the test sets at ``variant_alphas`` (1: the variant itself; 0.5: WiSE-FT applied to it) and on the
``val`` split's ID set at alpha 1. The reference is the study's WiSE-FT sweep (Table 1's, cached).

Choosing the best configuration of each family uses *val ID accuracy only* (what a practitioner without
OOD data would pick); the test numbers are then reported beside WiSE-FT's curve at the same test ID
accuracy. Nothing is chosen on test.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import numpy as np
import pandas as pd

from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import curve_table, wiseft_curve
from wiseft_lib.params import ParamsError, param
from wiseft_lib.studies.shift_sweep import ShiftSweepParams, Sweep, run_sweep
import time
from tqdm.auto import tqdm
from wiseft_lib.baselines.output_ensembles import ood_at_matched_id
from wiseft_lib.core.files import atomic_write_text
from wiseft_lib.report.plots import plot_baselines, save_figure
from wiseft_lib.studies.base import write_study_record
from wiseft_lib.report.tables import write_table

__all__ = ["VARIANT_KEYS", "BaselineParams", "Variants", "variant_config", "run_variants", "points_table",
           "matched_points", "curve_matched", "baseline_claims"]

VARIANT_KEYS = ("family", "e2e", "linear", "augment", "linear_method")
REFERENCE = "WiSE-FT"


@dataclass
class BaselineParams(ShiftSweepParams):
    """A WiSE-FT sweep (the reference) and named variants of its fine-tuning recipe."""

    variants: dict[str, dict[str, Any]] = param({}, "name -> {family: GROUP, e2e: {...} | linear: {...} | augment "
                                                    "| linear_method}: recipes beside WiSE-FT (fields merged into "
                                                    "the base recipe)")
    variant_alphas: list[float] = param([0.5, 1.0], "alphas scored for each variant (1: the variant itself; 0.5: "
                                                    "WiSE-FT applied to it; 0 is the shared zero-shot model)")
    chosen_alphas: list[float] = param([0.8, 0.9], "more alphas scored for each family's chosen configuration, so "
                                                   "WiSE-FT applied to it can be set beside it near its ID accuracy")
    select_on: Optional[str] = param("val", "'val': each family's configuration is chosen on the ID set's val split "
                                            "(held out from test); None: no choice, every variant is reported "
                                            "(datasets without a val split, e.g. ImageNet)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.modes) != 1:
            raise ParamsError(f"parameter 'modes': a baseline study compares one fine-tuning mode, got {self.modes}")
        if self.select_on not in ("val", None):
            raise ParamsError(f"parameter 'select_on' must be 'val' or null, got {self.select_on!r}")
        if 1.0 not in self.variant_alphas:
            raise ParamsError(f"parameter 'variant_alphas' must contain 1.0 (the variant itself), got "
                              f"{self.variant_alphas}")
        for name, spec in self.variants.items():
            if not isinstance(spec, dict) or not isinstance(spec.get("family"), str):
                raise ParamsError(f"parameter 'variants': {name!r} must be a mapping with a 'family' (a string), "
                                  f"got {spec!r}")
            unknown = [k for k in spec if k not in VARIANT_KEYS]
            if unknown:
                raise ParamsError(f"parameter 'variants': {name!r} has unknown key(s) {unknown}; a variant may set "
                                  f"{', '.join(VARIANT_KEYS)}")
            try:
                variant_config(self, spec)  # its recipe must build now, not after an hour of training
            except ParamsError as err:
                raise ParamsError(f"parameter 'variants', {name!r}: {err}") from None

    def smoke_version(self):
        """Seconds-long: tiny data and recipes (see :func:`variant_config`), at most two variants per family and two
        seeds (enough to exercise the across-seed means and intervals; each seed is a fine-tune per variant)."""
        kept: dict[str, dict[str, Any]] = {}
        for name, spec in self.variants.items():
            if sum(s["family"] == spec["family"] for s in kept.values()) < 2:
                kept[name] = spec
        return dataclasses.replace(super().smoke_version(), variants=kept, seeds=list(self.seeds[:2]),
                                   variant_alphas=[0.5, 1.0] if 0.5 in self.variant_alphas else [1.0])


def _smoke_recipe(recipe: dict[str, Any], epochs: int = 1) -> dict[str, Any]:
    out = {**recipe, "epochs": epochs, "warmup_steps": min(recipe.get("warmup_steps", 2), 2)}
    if out.get("stop_after_epochs") is not None:
        out["stop_after_epochs"] = min(out["stop_after_epochs"], epochs)
    if "n_configs" in out:  # a linear-classifier search
        out["n_configs"] = min(out["n_configs"], 2)
    return out


def variant_config(p: BaselineParams, spec: dict[str, Any], *, alphas: Optional[list[float]] = None) -> CurveConfig:
    """The :class:`CurveConfig` of one variant: the study's, with the variant's recipe changes."""
    base = {f.name: getattr(p, f.name) for f in dataclasses.fields(CurveConfig)}
    base["alphas"] = list(alphas if alphas is not None else p.variant_alphas)
    method = spec.get("linear_method", p.linear_method)
    base["e2e"] = {**p.e2e, **spec.get("e2e", {})}
    # a different linear method takes its own arguments; the same one merges into the study's
    base["linear"] = dict(spec.get("linear", {})) if method != p.linear_method else {**p.linear,
                                                                                    **spec.get("linear", {})}
    base["linear_method"] = method
    base["augment"] = spec.get("augment", p.augment)
    if p.smoke:
        base["e2e"] = _smoke_recipe(base["e2e"])
        base["linear"] = _smoke_recipe(base["linear"]) if method != "probe" else base["linear"]
    return CurveConfig(**base)


class Variants(NamedTuple):
    tidy: pd.DataFrame  # wiseft_curve rows of every variant and seed on the test sets, with `variant`, `family`
    val: pd.DataFrame  # per variant and seed: val_id_acc (alpha 1, the val split's ID set)


def run_variants(sweep: Sweep, study: str, *, progress: bool = True) -> Variants:
    """Fine-tune (or read from the cache) and score every variant of ``sweep.params`` for every seed."""

    p = sweep.params
    tidy, val = {}, []
    jobs = [(name, spec, seed) for name, spec in p.variants.items() for seed in p.seeds]
    for name, spec, seed in tqdm(jobs, desc=f"{study}: variants", disable=not progress or len(jobs) < 2):
        cfg = variant_config(p, spec)
        rows = wiseft_curve(cfg, seed, runs=sweep.runs, store=sweep.store, study=f"{study}/{name}", progress=False)
        tidy[name, seed] = rows.assign(variant=name, family=spec["family"])
        if p.select_on == "val":
            val_cfg = dataclasses.replace(cfg, eval_split="val", ood_datasets=[], alphas=[1.0])
            vrows = wiseft_curve(val_cfg, seed, runs=sweep.runs, progress=False)
            acc = vrows[(vrows["metric"] == "top1") & (vrows["dataset"] == p.id_dataset)]["value"]
            val.append({"variant": name, "family": spec["family"], "seed": seed, "val_id_acc": float(acc.iloc[0])})
    val = pd.DataFrame(val, columns=["variant", "family", "seed", "val_id_acc"])
    extra = sorted(set(p.chosen_alphas) - set(p.variant_alphas))
    if extra and not val.empty:  # WiSE-FT applied to each family's choice, near its ID accuracy
        means = val.groupby(["family", "variant"], sort=False)["val_id_acc"].mean().reset_index()
        chosen = means.loc[means.groupby("family", sort=False)["val_id_acc"].idxmax(), "variant"]
        for name in chosen:
            cfg = variant_config(p, p.variants[name], alphas=sorted(set(p.variant_alphas) | set(extra)))
            for seed in p.seeds:
                rows = wiseft_curve(cfg, seed, runs=sweep.runs, store=sweep.store, study=f"{study}/{name}",
                                    progress=False)
                tidy[name, seed] = rows.assign(variant=name, family=p.variants[name]["family"])
    return Variants(pd.concat(tidy.values(), ignore_index=True) if tidy else pd.DataFrame(), val)


def ood_at_id(reference: pd.DataFrame, id_acc: float) -> float:
    """WiSE-FT's mean OOD accuracy where its curve (seed means, alpha order) reaches ``id_acc``; NaN if never."""

    return ood_at_matched_id(reference.sort_values("alpha"), id_acc)


def reference_curve(curve: pd.DataFrame) -> pd.DataFrame:
    """Seed means of the reference sweep, one row per alpha."""
    return curve.groupby("alpha")[["id_acc", "ood_avg"]].mean().reset_index()


def points_table(ref_curve: pd.DataFrame, var_curve: pd.DataFrame, val: pd.DataFrame) -> pd.DataFrame:
    """One row per variant (seed means): its val ID accuracy; test ID and mean OOD accuracy at alpha 1 and of
    WiSE-FT applied to it (alpha 0.5); WiSE-FT's OOD at the same ID and the difference; the family's choice."""
    ref = reference_curve(ref_curve)
    mean = var_curve.groupby(["family", "variant", "alpha"], sort=False)[["id_acc", "ood_avg"]].mean().reset_index()
    vals = val.groupby("variant")["val_id_acc"].mean()
    rows = []
    for (family, variant), g in mean.groupby(["family", "variant"], sort=False):
        g = g.set_index("alpha")
        end = g.loc[1.0]
        at = ood_at_id(ref, end["id_acc"])
        # any WiSE-FT model (the reference curve, or WiSE-FT applied to this variant) at least as accurate ID
        inner = g[g.index < 1.0]
        pool = pd.concat([ref[["id_acc", "ood_avg"]], inner[["id_acc", "ood_avg"]]])
        better = pool[pool["id_acc"] >= end["id_acc"]]["ood_avg"]
        dominating = float(better.max()) if len(better) else np.nan
        ref_end = ref[np.isclose(ref["alpha"], 1.0)]
        same = not ref_end.empty and np.isclose(ref_end["id_acc"].iloc[0], end["id_acc"], atol=1e-9) and np.isclose(
            ref_end["ood_avg"].iloc[0], end["ood_avg"], atol=1e-9)
        row = {"family": family, "variant": variant, "is_reference": bool(same), "val_id_acc": vals.get(variant, np.nan),
               "id_acc": end["id_acc"], "ood_avg": end["ood_avg"], "wiseft_ood_at_same_id": at,
               "wiseft_minus_variant": at - end["ood_avg"], "wiseft_best_ood_at_least_same_id": dominating,
               "wiseft_best_minus_variant": dominating - end["ood_avg"]}
        if 0.5 in g.index:
            row.update({"id_acc_wiseft_0.5": g.loc[0.5, "id_acc"], "ood_avg_wiseft_0.5": g.loc[0.5, "ood_avg"]})
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["chosen_on_val"] = False
    if table["val_id_acc"].notna().any():
        best = table.dropna(subset=["val_id_acc"]).groupby("family", sort=False)["val_id_acc"].idxmax()  # ties: first
        table["chosen_on_val"] = table.index.isin(best.values)
    return table


def matched_points(points: pd.DataFrame) -> pd.DataFrame:
    """Each family's configuration chosen on val ID accuracy (every variant when none was chosen), beside
    WiSE-FT at its test ID accuracy."""
    cols = ["family", "variant", "is_reference", "val_id_acc", "id_acc", "ood_avg", "wiseft_ood_at_same_id",
            "wiseft_minus_variant", "wiseft_best_ood_at_least_same_id", "wiseft_best_minus_variant", "id_acc_wiseft_0.5",
            "ood_avg_wiseft_0.5"]
    rows = points[points["chosen_on_val"]] if points["chosen_on_val"].any() else points
    return rows[[c for c in cols if c in points.columns]].reset_index(drop=True)


def curve_matched(curve: pd.DataFrame, reference_mode: str) -> pd.DataFrame:
    """Per alpha of every other curve (seed means, endpoints 0 and 1 left out): its ID and mean OOD accuracy,
    the reference's OOD at the same ID and the difference (positive: the reference is better)."""
    mean = curve.groupby(["mode", "alpha"], sort=False)[["id_acc", "ood_avg"]].mean().reset_index()
    ref = mean[mean["mode"] == reference_mode]
    rows = []
    for mode, g in mean[mean["mode"] != reference_mode].groupby("mode", sort=False):
        for _, r in g.sort_values("alpha").iterrows():
            if r["alpha"] in (0.0, 1.0):
                continue
            at = ood_at_id(ref, r["id_acc"])
            rows.append({"method": mode, "alpha": r["alpha"], "id_acc": r["id_acc"], "ood_avg": r["ood_avg"],
                         "wiseft_ood_at_same_id": at, "wiseft_minus_method": at - r["ood_avg"]})
    return pd.DataFrame(rows)


def baseline_claims(matched: pd.DataFrame) -> pd.DataFrame:
    """Per family's chosen configuration: does WiSE-FT's curve beat it at the same ID accuracy, and does WiSE-FT
    applied to it (alpha 0.5) beat it OOD. A configuration beyond the curve's ID range is said to be so."""
    rows = []
    for _, r in matched.iterrows():
        if r.get("is_reference", False):  # WiSE-FT's own fine-tune: its curve passes through it, nothing to win
            rows.append({"claim": f"{r['family']}: the choice on val is the reference recipe itself ({r['variant']}); "
                                  f"WiSE-FT at its ID accuracy: {r['wiseft_minus_variant']:+.2f} pp OOD (reported)",
                         "value_pp": round(float(r["wiseft_minus_variant"]), 2), "bar_pp": "(reported)",
                         "holds": None})
            continue
        value = r["wiseft_minus_variant"]
        comparable = bool(np.isfinite(value))
        rows.append({"claim": f"WiSE-FT beats the {r['family']} configuration {r['variant']!r} at the same "
                              f"ID accuracy" + ("" if comparable else " [its ID accuracy is beyond WiSE-FT's "
                                                                       "curve: not comparable]"),
                     "value_pp": round(float(value), 2) if comparable else np.nan, "bar_pp": "> 0",
                     "holds": bool(value > 0) if comparable else None})  # not comparable: reported, not judged
        best = r.get("wiseft_best_minus_variant", np.nan)
        rows.append({"claim": f"some WiSE-FT model (the reference curve or WiSE-FT applied to {r['variant']!r}) is "
                              f"at least as accurate ID and more robust" + ("" if np.isfinite(best) else
                                                                            " [none is as accurate ID]"),
                     "value_pp": round(float(best), 2) if np.isfinite(best) else np.nan, "bar_pp": "> 0",
                     "holds": bool(best > 0) if np.isfinite(best) else None})
        if "ood_avg_wiseft_0.5" in r and np.isfinite(r.get("ood_avg_wiseft_0.5", np.nan)):
            gain = r["ood_avg_wiseft_0.5"] - r["ood_avg"]
            rows.append({"claim": f"WiSE-FT (alpha 0.5) applied to it raises its mean OOD accuracy ({r['variant']})",
                         "value_pp": round(float(gain), 2), "bar_pp": "> 0", "holds": bool(gain > 0)})
    return pd.DataFrame(rows)


def curve_claims(matched: pd.DataFrame) -> pd.DataFrame:
    """Per other curve: WiSE-FT beats it at the same ID accuracy at its alpha = 0.5 point; a curve equal to
    WiSE-FT's at every alpha (a logit ensemble of two linear heads on the same features: logits are linear in
    the weights) is reported as the identity it is, not as a claim won or lost."""
    rows = []
    for method, g in matched.groupby("method", sort=False):
        diffs = g["wiseft_minus_method"].dropna()
        if len(diffs) and np.allclose(diffs, 0.0, atol=1e-6):
            rows.append({"claim": f"the {method} equals WiSE-FT at every alpha (linear in the weights: an identity)",
                         "value_pp": 0.0, "bar_pp": "= 0", "holds": True})
            continue
        mid = g[np.isclose(g["alpha"], 0.5)]
        if mid.empty:
            continue
        value = float(mid["wiseft_minus_method"].iloc[0])
        rows.append({"claim": f"WiSE-FT beats the {method} at the same ID accuracy (alpha = 0.5 point)",
                     "value_pp": round(value, 2), "bar_pp": "> 0", "holds": bool(value > 0)})
    return pd.DataFrame(rows)


def store_rows(store, study: str, model: str, tidy: pd.DataFrame, params: dict[str, Any]) -> int:
    """Tidy rows of a curve that :func:`wiseft_curve` did not store (ensembles, Bernoulli draws)."""
    config = json.dumps(params, default=str)
    return store.add_many({"run": f"{study}/seed{r['seed']}/{r['mode']}", "model": model, "method": r["mode"],
                           "alpha": r["alpha"], "dataset": r["dataset"], "metric": r["metric"],
                           "value": r["value"], "config": config} for r in tidy.to_dict("records"))


def variant_curves(var_tidy: pd.DataFrame, p: BaselineParams) -> pd.DataFrame:
    """curve_table of the variants, keyed by ``variant`` (in ``mode``) and with their ``family``."""
    if var_tidy.empty:
        return pd.DataFrame()
    families = var_tidy.drop_duplicates("variant").set_index("variant")["family"]
    curve = curve_table(var_tidy.assign(mode=var_tidy["variant"]), id_dataset=p.id_dataset,
                        ood_datasets=p.ood_datasets)
    curve = curve.rename(columns={"mode": "variant"}).assign(family=lambda d: d["variant"].map(families))
    order = {name: i for i, name in enumerate(p.variants)}  # the params' order, not curve_table's alphabetical one
    curve = curve.sort_values(["variant", "seed", "alpha"], key=lambda c: c.map(order) if c.name == "variant" else c)
    return curve.reset_index(drop=True)


@dataclass
class BaselineResult:
    params: BaselineParams
    reference: pd.DataFrame  # WiSE-FT's curve: per seed and alpha, id_acc, ood_avg, each shift
    variants: pd.DataFrame  # per variant, seed and alpha: the same columns, with family
    points: pd.DataFrame  # per variant (seed means): val ID, test ID/OOD, WiSE-FT at the same ID, chosen_on_val
    matched: pd.DataFrame  # each family's configuration chosen on val, beside WiSE-FT
    claims: pd.DataFrame
    figure: Any
    paths: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    extra: Optional[pd.DataFrame] = None  # other curves (output-space ensembles, random interpolation)
    extra_matched: Optional[pd.DataFrame] = None


def run_baseline_study(params: BaselineParams, study: str, *, title: str, progress: bool = True,
                       extra_curves=None) -> BaselineResult:
    """The reference sweep, every variant, the tables, claims and figure of one baseline study.

    ``extra_curves(sweep) -> tidy rows`` adds curves over alpha of the same endpoints (e.g. output-space
    ensembles), set beside WiSE-FT's curve per alpha (:func:`curve_matched`).
    """


    started = time.time()
    sweep = run_sweep(params, study, progress=progress)
    p, out = sweep.params, sweep.out
    reference = curve_table(sweep.tidy, id_dataset=p.id_dataset, ood_datasets=p.ood_datasets)
    reference = reference[reference["mode"] == p.modes[0]].reset_index(drop=True)
    found = run_variants(sweep, study, progress=progress)
    variants = variant_curves(found.tidy, p)
    points = points_table(reference, variants, found.val) if not variants.empty else pd.DataFrame()
    matched = matched_points(points) if not points.empty else pd.DataFrame()
    claims = baseline_claims(matched) if not matched.empty else pd.DataFrame(columns=["claim", "value_pp", "bar_pp",
                                                                                       "holds"])
    paths = {"reference": atomic_write_text(out / "curve.csv", reference.round(4).to_csv(index=False)),
             "variants": atomic_write_text(out / "variants.csv", variants.round(4).to_csv(index=False))}
    extra = extra_matched = None
    if extra_curves is not None:
        extra_tidy = extra_curves(sweep)
        store_rows(sweep.store, study, p.model, extra_tidy, p.to_dict())
        both = pd.concat([sweep.tidy[sweep.tidy["mode"] == p.modes[0]].assign(mode=REFERENCE), extra_tidy],
                         ignore_index=True)
        extra = curve_table(both, id_dataset=p.id_dataset, ood_datasets=p.ood_datasets)
        extra = extra[extra["mode"] != REFERENCE].reset_index(drop=True)
        paths["extra"] = atomic_write_text(out / "other_curves.csv", extra.round(4).to_csv(index=False))
        extra_matched = curve_matched(pd.concat([reference.assign(mode=REFERENCE), extra]), REFERENCE)
        paths["extra_matched"] = write_table(extra_matched, out / "other_curves_matched", floatfmt=".2f")["csv"]
        claims = pd.concat([claims, curve_claims(extra_matched)], ignore_index=True)
    if not points.empty:
        paths["points"] = write_table(points, out / "points", floatfmt=".2f")["csv"]
        paths["matched"] = write_table(matched, out / "matched", floatfmt=".2f")["csv"]
    paths["claims"] = write_table(claims, out / "claims", floatfmt=".2f")["csv"]
    figure = plot_baselines(reference, variants if not variants.empty else
                            pd.DataFrame(columns=["family", "variant", "alpha", "id_acc", "ood_avg"]),
                            points if not points.empty else None, title=title, extra_curves=extra,
                            reference_label=f"WiSE-FT ({p.modes[0]})")
    paths.update({f"figure_{f.suffix[1:]}": f for f in save_figure(figure, out / study)})
    paths["record"] = write_study_record(out, study, params, started)
    return BaselineResult(p, reference, variants, points, matched, claims, figure, paths,
                          round(time.time() - started, 1), extra, extra_matched)
