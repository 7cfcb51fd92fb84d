"""Figure 6: accuracy along the weight path against the straight line between the endpoints' accuracies.

    wiseft run fig6_weight_path --params params/mini/fig6_weight_path.yaml
    papermill notebooks/fig6_weight_path.ipynb out.ipynb -f params/mini/fig6_weight_path.yaml

If the loss landscape between the zero-shot and fine-tuned weights were unremarkable, accuracy along
the path would follow the straight line between the endpoint accuracies; the paper finds it above the
line, and often above the better endpoint, on ImageNet and every shift. Same sweep as Table 1 (its runs
are reused). Writes ``weight_path.csv``, ``path_summary.*``, ``fig6_weight_path.png/.pdf``,
``results.sqlite`` and ``study.json``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from wiseft_lib.analysis.shift_tables import paper_columns, sweep_table, weight_path_table
from wiseft_lib.params import param
from wiseft_lib.report.plots import plot_weight_path
from wiseft_lib.studies.base import StudyOutputs, StudyResult, register_study
from wiseft_lib.studies.shift_sweep import ShiftSweepParams, column_labels, run_sweep

NAME = "fig6_weight_path"
__all__ = ["Fig6Params", "Fig6Result", "run", "path_summary"]


@dataclass
class Fig6Params(ShiftSweepParams):
    """Figure 6's parameters: Table 1's sweep."""

    output_dir: str = param("outputs/mini/fig6_weight_path", "where results, tables and figures go")


@dataclass
class Fig6Result(StudyResult):
    params: Fig6Params
    path: pd.DataFrame  # per mode, column, alpha: accuracy, endpoint line, better endpoint, gains
    summary: pd.DataFrame  # per mode and column: how far above the line and the better endpoint the path goes
    figure: Any


def path_summary(path: pd.DataFrame) -> pd.DataFrame:
    """Per mode and column, over the interior alphas (0 < alpha < 1): the smallest and largest gain over
    the endpoint line, the largest gain over the better endpoint and where it is."""
    inner = path[(path["alpha"] > 0) & (path["alpha"] < 1)]
    rows = []
    for (mode, column), g in inner.groupby(["mode", "column"], sort=False):
        best = g.loc[g["gain_over_best_endpoint"].idxmax()]
        rows.append({"mode": mode, "column": column, "min_gain_over_line": g["gain_over_line"].min(),
                     "max_gain_over_line": g["gain_over_line"].max(),
                     "max_gain_over_best_endpoint": best["gain_over_best_endpoint"], "at_alpha": best["alpha"],
                     "above_line_everywhere": bool((g["gain_over_line"] > 0).all())})
    return pd.DataFrame(rows)


def run(params: Fig6Params, *, progress: bool = True) -> Fig6Result:
    """Compute (or reuse) the sweep; write the weight-path table, its summary and the figure."""

    outputs = StudyOutputs(NAME, params)
    p, tidy = outputs.params, run_sweep(outputs, progress=progress).tidy
    cols = paper_columns(p.id_dataset, p.ood_datasets)
    path = weight_path_table(sweep_table(tidy, p.id_dataset, p.ood_datasets), cols)
    outputs.csv("weight_path", path.round(4))
    summary = path_summary(path)
    outputs.table("path_summary", summary, floatfmt=".2f")
    figure = plot_weight_path(path, titles=column_labels(cols),
                              title=f"WiSE-FT weight path, {p.model} ({p.eval_split} split, {len(p.seeds)} seed(s))")
    outputs.figure("figure", figure, NAME)
    return Fig6Result(p, path, summary, figure, **outputs.finish())


STUDY = register_study("fig6_weight_path", "Figure 6: accuracy along the weight path vs. the endpoints' straight line",
                       Fig6Params, run,
                       covers=[("Figure 6", "")])
