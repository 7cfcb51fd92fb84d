"""Table 6 and Figure 9: six further distribution shifts, each scored with its own metric.

    wiseft run table6_further_shifts --params params/mini/table6_further_shifts.yaml
    papermill notebooks/table6_further_shifts.ipynb out.ipynb -f params/mini/table6_further_shifts.yaml

As the paper: the video sets (pm-0 / pm-10: an anchor frame counts only when it and its neighbours are all
right) are scored with the linear classifier, the others (top-1, worst-region accuracy, macro-F1) end to end.
The fine-tunes are the reference recipe's (Table 1's, reused from the run cache); only the new sets are scored.
Writes ``table6.*`` (zero-shot, fine-tuned, WiSE-FT 0.5 and oracle alpha per shift and metric, the paper's row
beside), ``claims.*``, ``fig9_further_shifts.png/.pdf``, ``curves.csv``, ``results.sqlite`` and ``study.json``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pandas as pd

from wiseft_lib.experiment.config import COUNT_METRICS, CurveConfig
from wiseft_lib.experiment.curve import wiseft_curve
from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.paper import published
from wiseft_lib.report.plots import plot_metric_curves
from wiseft_lib.studies.base import StudyOutputs, StudyParams, StudyResult, UsesRuns, register_study
from wiseft_lib.studies.shift_sweep import ALPHAS_21

NAME = "table6_further_shifts"
__all__ = ["Table6Params", "Table6Result", "run", "table6", "further_claims", "HEADLINE"]

# The metric a shift's row is judged by (the paper's Table 6 column), by metric set.
HEADLINE = {"pm0": "pm0", "worst_region_acc": "worst_region_acc", "macro_f1": "macro_f1", "top1": "top1"}
MINI_ANALOG = {"mini-frames": "imagenet-vid-robust", "mini-frames-strong": "ytbb-robust", "mini-near": "cifar10.1",
               "mini-regions": "fmow", "mini-imbalanced": "iwildcam"}


@dataclass
class Table6Params(CurveConfig, UsesRuns, StudyParams):
    """Table 6's parameters: the reference recipe, the further shifts, which are scored with the LC."""

    output_dir: str = param("outputs/mini/table6_further_shifts", "where results, tables and figures go")
    alphas: list[float] = param(list(ALPHAS_21), "mixing coefficients; the oracle alpha is chosen on this grid")
    ood_datasets: list[str] = param(["mini-frames", "mini-frames-strong", "mini-near", "mini-regions",
                                     "mini-imbalanced"], "the further shifts (each scored with its own metrics)")
    linear_shifts: list[str] = param(["mini-frames", "mini-frames-strong"], "shifts scored with the linear "
                                     "classifier (the paper: the video sets); the others end to end")
    paper_analog: dict[str, str] = param(dict(MINI_ANALOG), "shift -> the paper's Table 6 dataset it stands for "
                                         "(the paper's own names map to themselves)")
    id_for: dict[str, str] = param({}, "shift -> the ID set fine-tuned for it (paper: cifar10.1: cifar10, fmow: fmow, "
                                       "...); shifts not named use id_dataset")

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("linear_shifts", "id_for"):
            stray = [d for d in getattr(self, key) if d not in self.ood_datasets]
            if stray:
                raise ParamsError(f"parameter {key!r} names {stray}, which are not in ood_datasets "
                                  f"{self.ood_datasets}")

    def curve_configs(self) -> list[CurveConfig]:
        """One curve per (ID set, fine-tuning mode), each on its shifts; a shift that is its own ID set (WILDS:
        fine-tuned on its train split, scored on its OOD test split) is that curve's ID set alone."""
        groups: dict[tuple[str, str], list[str]] = {}
        for shift in self.ood_datasets:
            mode = "linear" if shift in self.linear_shifts else "end-to-end"
            groups.setdefault((self.id_for.get(shift, self.id_dataset), mode), []).append(shift)
        return [self.as_curve(id_dataset=id_set, modes=[mode], ood_datasets=[s for s in shifts if s != id_set])
                for (id_set, mode), shifts in groups.items()]


@dataclass
class Table6Result(StudyResult):
    params: Table6Params
    tidy: pd.DataFrame  # wiseft_curve rows of both curves, every seed
    table: pd.DataFrame  # one row per (shift, metric): ZS, FT, WiSE-FT 0.5, oracle alpha, the paper's row
    claims: pd.DataFrame
    curves: pd.DataFrame  # per shift, mode, alpha: ID top-1 (x) and the shift's headline metric (y)
    figure: Any


def _means(tidy: pd.DataFrame) -> pd.DataFrame:
    keep = tidy[~tidy["metric"].isin(COUNT_METRICS)]
    return keep.groupby(["id_set", "mode", "dataset", "metric", "alpha"], sort=False)["value"].mean().reset_index()


def table6(tidy: pd.DataFrame, shifts: list[str], paper_analog: dict[str, str]) -> pd.DataFrame:
    """Per (shift, metric) and the ID reference of each mode: zero-shot, fine-tuned, WiSE-FT 0.5 and the
    oracle alpha (best on these very images, as the paper's "optimal"), seed means; the paper's numbers beside.
    ``tidy`` has an ``id_set`` column (the curve's ID set); sets not in ``shifts`` are the ID references."""

    paper = published("table6")
    means = _means(tidy)
    rows = []
    for (id_set, mode, dataset, metric), g in means.groupby(["id_set", "mode", "dataset", "metric"], sort=False):
        g = g.set_index("alpha")["value"]
        best = g.idxmax()
        analog = paper_analog.get(dataset, dataset) if dataset in shifts else "ID reference"
        row = {"shift": dataset, "id_set": id_set, "paper_analog": analog, "metric": metric,
               "head": "LC" if mode == "linear" else "E2E", "zero-shot": g.get(0.0), "fine-tuned": g.get(1.0),
               "wise-ft alpha=0.5": g.get(0.5), "wise-ft optimal alpha": g[best], "optimal alpha": best}
        match = paper[(paper["dataset"] == analog) & (paper["metric"] == metric) & (paper["split"] == "test")]
        if not match.empty:
            m = match.iloc[0]
            row.update({"paper: zero-shot": m["zero-shot"], "paper: fine-tuned": m["fine-tuned"],
                        "paper: wise-ft 0.5": m["wise-ft alpha=0.5"], "paper: optimal": m["wise-ft optimal alpha"]})
        rows.append(row)
    return pd.DataFrame(rows)


def further_claims(table: pd.DataFrame) -> pd.DataFrame:
    """Per shift, on its headline metric (pm-0, top-1, worst-region accuracy or macro-F1): WiSE-FT 0.5 beats
    the fine-tuned model (the paper: all six), and an interior alpha beats both ends (the paper: all six)."""
    rows = []
    for shift, g in table[table["paper_analog"] != "ID reference"].groupby("shift", sort=False):
        metrics = list(g["metric"])
        metric = next((m for m in ("pm0", "worst_region_acc", "macro_f1", "top1") if m in metrics), metrics[0])
        r = g[g["metric"] == metric].iloc[0]
        label = f"{shift} ({metric})" if r["paper_analog"] == shift else f"{shift} (~{r['paper_analog']}, {metric})"
        rows.append({"claim": f"{label}: WiSE-FT 0.5 - fine-tuned", "value_pp": round(r["wise-ft alpha=0.5"]
                                                                                      - r["fine-tuned"], 2),
                     "bar_pp": "> 0", "holds": bool(r["wise-ft alpha=0.5"] > r["fine-tuned"])})
        best_end = max(r["zero-shot"], r["fine-tuned"])
        rows.append({"claim": f"{label}: oracle alpha ({r['optimal alpha']:g}) - better endpoint",
                     "value_pp": round(r["wise-ft optimal alpha"] - best_end, 2), "bar_pp": "> 0",
                     "holds": bool(r["wise-ft optimal alpha"] > best_end)})
    return pd.DataFrame(rows)


def metric_curves(tidy: pd.DataFrame, shifts: list[str]) -> pd.DataFrame:
    """Figure 9's points: per shift, mode and alpha, its curve's ID top-1 (x) and each of its metrics (y)."""
    means = _means(tidy)
    first_metric = means.groupby("dataset")["metric"].first()
    ids = means[(means["dataset"] == means["id_set"])]
    ids = ids[ids["metric"] == ids["dataset"].map(first_metric)][["id_set", "mode", "alpha", "value"]]
    out = means[means["dataset"].isin(shifts)].merge(ids.rename(columns={"value": "x"}), on=["id_set", "mode", "alpha"])
    out = out.rename(columns={"value": "y"})
    out["panel"] = out["dataset"] + ": " + out["metric"]
    return out[["panel", "id_set", "dataset", "metric", "mode", "alpha", "x", "y"]]


def run(params: Table6Params, *, progress: bool = True) -> Table6Result:
    """Score the further shifts along both curves (fine-tunes from the run cache); write Table 6 and Figure 9."""

    outputs = StudyOutputs(NAME, params)
    p, runs = outputs.params, outputs.runs
    if params.smoke:
        p = dataclasses.replace(p, seeds=params.seeds[:1])
    store = ResultsStore(outputs.out / "results.sqlite")
    frames = []
    for cfg in p.curve_configs():
        cfg = cfg.smoke_version() if p.smoke else cfg
        frames += [wiseft_curve(cfg, seed, runs=runs, store=store, study=NAME, progress=progress)
                   .assign(id_set=cfg.id_dataset) for seed in p.seeds]
    tidy = pd.concat(frames, ignore_index=True)
    table = table6(tidy, p.ood_datasets, p.paper_analog)
    claims = further_claims(table)
    curves = metric_curves(tidy, p.ood_datasets)
    outputs.table("table6", table, floatfmt=".1f", caption=f"{p.model}: further shifts ({p.eval_split} split, mean "
                                                         f"of {len(p.seeds)} seed(s)); optimal alpha is an oracle")
    outputs.table("claims", claims, floatfmt=".2f")
    outputs.csv("curves", curves.round(4))
    ylabels = {r.panel: f"{r.dataset} {r.metric}" for r in curves.drop_duplicates("panel").itertuples()}
    titles = {k: f"{k} (~{p.paper_analog.get(k.split(':')[0], '')})" for k in ylabels}
    figure = plot_metric_curves(curves, ylabels=ylabels, titles=titles, xlabel="ID set's first metric, top-1 (%)",
                                title=f"Further shifts along WiSE-FT, {p.model} ({len(p.seeds)} seed(s))")
    outputs.figure("figure", figure, "fig9_further_shifts")
    return Table6Result(p, tidy, table, claims, curves, figure, **outputs.finish())


STUDY = register_study("table6_further_shifts",
                       "Table 6, Figure 9: further shifts with their own metrics (pm-0/pm-10, top-1, worst-region "
                       "accuracy, macro-F1)",
                       Table6Params, run,
                       covers=[("Table 6, Figure 9", "mini: an analog of each shift, scored with its metric")])
