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

import pandas as pd

from wiseft_lib.analysis.matched_id import baseline_claims, curve_claims, curve_matched, matched_points, points_table
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import curve_table, wiseft_curve
from wiseft_lib.params import ParamsError, param
from wiseft_lib.progress import progress_bar
from wiseft_lib.report.plots import plot_baselines
from wiseft_lib.studies.base import StudyOutputs, StudyResult
from wiseft_lib.studies.shift_sweep import ShiftSweepParams, Sweep, run_sweep

__all__ = ["VARIANT_KEYS", "BaselineParams", "Variants", "variant_config", "run_variants", "run_baseline_study"]

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
    for name, spec, seed in progress_bar(jobs, desc=f"{study}: variants", unit="run", show=progress and len(jobs) > 1):
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
class BaselineResult(StudyResult):
    params: BaselineParams
    reference: pd.DataFrame  # WiSE-FT's curve: per seed and alpha, id_acc, ood_avg, each shift
    variants: pd.DataFrame  # per variant, seed and alpha: the same columns, with family
    points: pd.DataFrame  # per variant (seed means): val ID, test ID/OOD, WiSE-FT at the same ID, chosen_on_val
    matched: pd.DataFrame  # each family's configuration chosen on val, beside WiSE-FT
    claims: pd.DataFrame
    figure: Any
    extra: Optional[pd.DataFrame] = None  # other curves (output-space ensembles, random interpolation)
    extra_matched: Optional[pd.DataFrame] = None


def run_baseline_study(params: BaselineParams, study: str, *, title: str, progress: bool = True,
                       extra_curves=None) -> BaselineResult:
    """The reference sweep, every variant, the tables, claims and figure of one baseline study.

    ``extra_curves(sweep) -> tidy rows`` adds curves over alpha of the same endpoints (e.g. output-space
    ensembles), set beside WiSE-FT's curve per alpha (:func:`curve_matched`).
    """
    outputs = StudyOutputs(study, params)
    sweep = run_sweep(outputs, progress=progress)
    p = sweep.params
    reference = curve_table(sweep.tidy, id_dataset=p.id_dataset, ood_datasets=p.ood_datasets)
    reference = reference[reference["mode"] == p.modes[0]].reset_index(drop=True)
    found = run_variants(sweep, study, progress=progress)
    variants = variant_curves(found.tidy, p)
    points = points_table(reference, variants, found.val) if not variants.empty else pd.DataFrame()
    matched = matched_points(points) if not points.empty else pd.DataFrame()
    claims = baseline_claims(matched) if not matched.empty else pd.DataFrame(columns=["claim", "value_pp", "bar_pp",
                                                                                       "holds"])
    outputs.csv("reference", reference.round(4), stem="curve")
    outputs.csv("variants", variants.round(4))
    extra = extra_matched = None
    if extra_curves is not None:
        extra_tidy = extra_curves(sweep)
        store_rows(sweep.store, study, p.model, extra_tidy, p.to_dict())
        both = pd.concat([sweep.tidy[sweep.tidy["mode"] == p.modes[0]].assign(mode=REFERENCE), extra_tidy],
                         ignore_index=True)
        extra = curve_table(both, id_dataset=p.id_dataset, ood_datasets=p.ood_datasets)
        extra = extra[extra["mode"] != REFERENCE].reset_index(drop=True)
        outputs.csv("extra", extra.round(4), stem="other_curves")
        extra_matched = curve_matched(pd.concat([reference.assign(mode=REFERENCE), extra]), REFERENCE)
        outputs.table("extra_matched", extra_matched, stem="other_curves_matched", floatfmt=".2f")
        claims = pd.concat([claims, curve_claims(extra_matched)], ignore_index=True)
    if not points.empty:
        outputs.table("points", points, floatfmt=".2f")
        outputs.table("matched", matched, floatfmt=".2f")
    claims = outputs.claims(claims, p.n_test, floatfmt=".2f")
    figure = plot_baselines(reference, variants if not variants.empty else
                            pd.DataFrame(columns=["family", "variant", "alpha", "id_acc", "ood_avg"]),
                            points if not points.empty else None, title=title, extra_curves=extra,
                            reference_label=f"WiSE-FT ({p.modes[0]})")
    outputs.figure("figure", figure, study)
    return BaselineResult(p, reference, variants, points, matched, claims, figure, extra, extra_matched,
                          **outputs.finish())
