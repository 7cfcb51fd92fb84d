"""Figures 17-19: WiSE-FT of a linear classifier trained on k examples per class.

    wiseft run fig17_19_low_data --params params/mini/fig17_19_low_data.yaml
    papermill notebooks/fig17_19_low_data.ipynb out.ipynb -f params/mini/fig17_19_low_data.yaml

Per task and k (examples per class; None: the whole train split) each seed draws its own k-shot subset
(:func:`wiseft_lib.data.kshot.kshot_indices`: seeded per class) and trains the linear classifier on it from the
zero-shot head; the alpha sweep runs on cached features. Few examples give few steps per epoch, so the number of
epochs grows until the run has at least ``min_steps`` steps. Writes ``low_data.csv`` (every task, k, alpha: mean
and spread over draws), ``low_data_table.*`` (the paper's alphas 0, 0.25, 0.5, 0.75, 1 and the oracle),
``claims.*``, ``fig17_19_low_data.png/.pdf``, ``results.sqlite`` and ``study.json``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from wiseft_lib.data import get_dataset
from wiseft_lib.data.mini import MINI_OOD
from wiseft_lib.data.mini.tasks import TRANSFER_TASKS
from wiseft_lib.data.registry import default_eval_split
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import curve_table, wiseft_curve
from wiseft_lib.experiment.endpoints import eval_bundle_kwargs
from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.plots import attach_data, panel_grid, themed
from wiseft_lib.studies.base import StudyOutputs, StudyParams, StudyResult, UsesRuns, register_study
from wiseft_lib.studies.shift_sweep import ALPHAS_21

NAME = "fig17_19_low_data"
__all__ = ["LowDataParams", "LowDataResult", "run", "low_data_table", "low_data_claims", "ALL"]

ALL = "all"  # the label of k = None (the whole train split)


@dataclass
class LowDataParams(CurveConfig, UsesRuns, StudyParams):
    """Figures 17-19's parameters: tasks, k, the LC recipe (``id_dataset`` / ``ood_datasets``: see ``tasks`` and
    ``shifts``)."""

    output_dir: str = param("outputs/mini/fig17_19_low_data", "where results, tables and figures go")
    tasks: list[str] = param(list(TRANSFER_TASKS), "the ID tasks (datasets with a train split)")
    shifts: dict[str, list[str]] = param({"mini-photo": list(MINI_OOD)}, "task -> shifts scored with it (their "
                                                                         "mean is the task's OOD accuracy)")
    ks: list[Optional[int]] = param([1, 5, 10, 25, 50, None], "examples per class (None: the whole train split)")
    modes: list[str] = param(["linear"], "the paper's low-data runs are linear classifiers")
    alphas: list[float] = param(list(ALPHAS_21), "mixing coefficients; the oracle alpha is chosen on this grid")
    report_alphas: list[float] = param([0.0, 0.25, 0.5, 0.75, 1.0], "alphas shown in the table and figure")
    min_steps: int = param(300, "each LC trains at least this many steps (more epochs for small k)")
    n_train_linear: Optional[int] = param(None, "the pool k-shot subsets are drawn from (None: the whole split)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modes != ["linear"]:
            raise ParamsError(f"parameter 'modes': the low-data study trains linear classifiers only, got "
                              f"{self.modes}")
        if not self.ks or any(k is not None and k < 1 for k in self.ks):
            raise ParamsError(f"parameter 'ks' must list positive integers (or null for all), got {self.ks}")
        missing = [a for a in self.report_alphas if a not in self.alphas]
        if missing:
            raise ParamsError(f"parameter 'report_alphas' {missing} must be among 'alphas'")

    def smoke_version(self) -> "LowDataParams":
        """The curve's smoke version (alphas 0, 0.5, 1), two tasks, two small k, short runs."""
        small = dataclasses.replace(self, report_alphas=[0.0, 0.5, 1.0], tasks=self.tasks[:2], seeds=self.seeds[:1],
                                    min_steps=10, ks=[k for k in self.ks if k is not None][:2] or [1])
        return CurveConfig.smoke_version(small)

    def task_config(self, task: str, k: Optional[int], n_classes: int) -> CurveConfig:
        """The curve of one (task, k): its LC runs long enough to take ``min_steps`` steps."""
        linear = dict(self.linear)
        if k is not None and self.linear_method == "adamw":
            steps_per_epoch = math.ceil(k * n_classes / linear.get("batch_size", 256))
            linear["epochs"] = max(linear.get("epochs", 30), math.ceil(self.min_steps / steps_per_epoch))
        return self.as_curve(id_dataset=task, ood_datasets=list(self.shifts.get(task, [])), k_shot=k, linear=linear)


@dataclass
class LowDataResult(StudyResult):
    params: LowDataParams
    curves: pd.DataFrame  # task, k, alpha, seed: id_acc, ood_avg
    summary: pd.DataFrame  # task, k, alpha label: mean and std over draws
    table: pd.DataFrame
    claims: pd.DataFrame
    figure: Any


def _label(k: Optional[int]) -> str:
    return ALL if k is None else str(int(k))


def low_data_summary(curves: pd.DataFrame, report_alphas: list[float]) -> pd.DataFrame:
    """Per (task, k): the report alphas and the oracle (per draw, the alpha with the best ID accuracy on these
    test images), mean and std of ID (and OOD) accuracy over draws."""
    value_cols = [c for c in ("id_acc", "ood_avg") if c in curves.columns]
    rows = []
    for (task, k), g in curves.groupby(["task", "k"], sort=False):
        per_alpha = g.groupby("alpha")[value_cols]
        mean, std = per_alpha.mean(), per_alpha.std(ddof=1)
        for a in report_alphas:
            rows.append({"task": task, "k": k, "alpha": f"{a:g}",
                         **{c: mean.loc[a, c] for c in value_cols}, **{f"{c}_std": std.loc[a, c] for c in value_cols}})
        oracle = g.loc[g.groupby("seed")["id_acc"].idxmax()]
        rows.append({"task": task, "k": k, "alpha": "optimal", **{c: oracle[c].mean() for c in value_cols},
                     **{f"{c}_std": oracle[c].std(ddof=1) for c in value_cols}})
    return pd.DataFrame(rows)


def low_data_table(summary: pd.DataFrame, value: str = "id_acc") -> pd.DataFrame:
    """Rows (task, alpha), one column per k: mean ``value`` over draws."""
    wide = summary.pivot_table(index=["task", "alpha"], columns="k", values=value, sort=False)
    ks = list(dict.fromkeys(summary["k"]))
    return wide[ks].reset_index()


def low_data_claims(summary: pd.DataFrame) -> pd.DataFrame:
    """Per k, mean over tasks of ID accuracy: WiSE-FT 0.5 beats the fine-tuned LC and the zero-shot model (the
    paper: WiSE-FT improves on both in the low-data regime)."""
    mean = summary.groupby(["k", "alpha"], sort=False)["id_acc"].mean()
    rows = []
    for k in dict.fromkeys(summary["k"]):
        mid, ft, zs = mean[(k, "0.5")], mean[(k, "1")], mean[(k, "0")]
        rows.append({"claim": f"k={k}: WiSE-FT 0.5 - fine-tuned LC (ID, mean over tasks)",
                     "value_pp": round(mid - ft, 2), "bar_pp": "> 0", "holds": bool(mid > ft)})
        rows.append({"claim": f"k={k}: WiSE-FT 0.5 - zero-shot (ID, mean over tasks)",
                     "value_pp": round(mid - zs, 2), "bar_pp": "> 0", "holds": bool(mid > zs)})
    return pd.DataFrame(rows)


@themed
def plot_low_data(summary: pd.DataFrame, *, title: Optional[str] = None, ncols: int = 4):
    """One panel per task (and per task with shifts, its OOD mean): accuracy vs k, a line per alpha."""

    panels = [(t, "id_acc") for t in dict.fromkeys(summary["task"])]
    panels += [(t, "ood_avg") for t in dict.fromkeys(summary["task"])
               if "ood_avg" in summary and summary.loc[summary["task"] == t, "ood_avg"].notna().any()]
    fig, axes = panel_grid(len(panels), ncols, (3.3, 2.8))
    ks = list(dict.fromkeys(summary["k"]))
    pos = np.arange(len(ks))
    for ax, (task, value) in zip(axes, panels):
        part = summary[summary["task"] == task]
        for i, (alpha, g) in enumerate(part.groupby("alpha", sort=False)):
            g = g.set_index("k").reindex(ks)
            style = "k--" if alpha == "optimal" else "-"
            ax.errorbar(pos, g[value], yerr=g[f"{value}_std"], fmt=style, marker="o", markersize=3, capsize=2,
                        linewidth=1, color=None if alpha == "optimal" else f"C{i}",
                        label="oracle alpha" if alpha == "optimal" else f"alpha={alpha}")
        ax.set_xticks(pos, ks)
        ax.set_xlabel("examples per class (k)", fontsize=8)
        ax.set_ylabel("ID accuracy (%)" if value == "id_acc" else "mean OOD accuracy (%)", fontsize=8)
        ax.set_title(f"{task}" + ("" if value == "id_acc" else " (its shifts)"), fontsize=9)
        ax.grid(True, linewidth=0.5, alpha=0.5)
    axes[0].legend(fontsize=6, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    return attach_data(fig, summary)


def run(params: LowDataParams, *, progress: bool = True) -> LowDataResult:
    """Train and sweep every (task, k, draw) (cached); write the tables and the figure."""

    outputs = StudyOutputs(NAME, params)
    p, runs = outputs.params, outputs.runs
    store = ResultsStore(outputs.out / "results.sqlite")
    frames = []
    for task in p.tasks:
        n_classes = len(get_dataset(task, root=p.data_root, split=default_eval_split(task),
                                    **eval_bundle_kwargs(task, 1)).classnames)
        for k in p.ks:
            cfg = p.task_config(task, k, n_classes)
            cfg = cfg.smoke_version() if p.smoke else cfg
            for seed in p.seeds:
                tidy = wiseft_curve(cfg, seed, runs=runs, store=store, study=f"{NAME}/{task}/k{_label(k)}",
                                    progress=progress)
                table = curve_table(tidy, id_dataset=task, ood_datasets=cfg.ood_datasets)
                frames.append(table.assign(task=task, k=_label(k)))
    curves = pd.concat(frames, ignore_index=True)
    summary = low_data_summary(curves, p.report_alphas)
    table = low_data_table(summary)
    claims = low_data_claims(summary)
    outputs.csv("curves", curves.round(4), "low_data")
    outputs.csv("summary", summary.round(4), "low_data_summary")
    outputs.table("table", table, "low_data_table", floatfmt=".1f",
                  caption=f"{p.model} LC: ID accuracy by examples per class (mean over {len(p.seeds)} draw(s))")
    claims = outputs.claims(claims, p.n_test, floatfmt=".2f")
    figure = plot_low_data(summary, title=f"Low data: WiSE-FT of a linear classifier, {p.model} "
                                          f"({len(p.seeds)} draw(s) per k; bars: std)")
    outputs.figure("figure", figure, NAME)
    return LowDataResult(p, curves, summary, table, claims, figure, **outputs.finish())


STUDY = register_study("fig17_19_low_data", "Figures 17-19: WiSE-FT of linear classifiers trained on k examples per class",
                       LowDataParams, run,
                       covers=[("Figures 17-19", "")])
