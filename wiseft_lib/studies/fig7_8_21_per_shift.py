"""Figures 7, 8 and 21: each shift on its own, against the ID accuracy on that shift's classes.

    wiseft run fig7_8_21_per_shift --params params/mini/fig7_8_21_per_shift.yaml
    papermill notebooks/fig7_8_21_per_shift.ipynb out.ipynb -f params/mini/fig7_8_21_per_shift.yaml

Per shift: x = accuracy on the ID set restricted to the shift's classes (ImageNet-R, -A and ObjectNet
cover 200, 200 and 113 classes), y = accuracy on the shift, logit axes; the zero-shot, fine-tuned and
WiSE-FT points and curves with 95% Clopper-Pearson intervals, and the standard models with their
linear fit (the effective-robustness baseline). Paper preset: the standard models are the ImageNet
robustness testbed's published accuracies (models trained with more data shown apart, outside the
fit). Mini preset: the package's standard models trained on the photos. Same sweep as Table 1.
Writes ``points.csv``, ``background.csv``, ``effective_robustness.*``, ``fig7_8_21_per_shift.png/.pdf``,
``results.sqlite`` and ``study.json``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from wiseft_lib.analysis.effective_robustness import fit_logit_line
from wiseft_lib.analysis.shift_tables import per_shift_points
from wiseft_lib.experiment.reference import baseline_points
from wiseft_lib.mini.standard import REFERENCE_MODELS
from wiseft_lib.params import param
from wiseft_lib.report.paper import TESTBED_ID_ON_SHIFT, testbed
from wiseft_lib.report.plots import plot_per_shift
from wiseft_lib.studies.base import StudyOutputs, StudyResult, register_study
from wiseft_lib.studies.shift_sweep import ShiftSweepParams, column_labels, run_sweep

NAME = "fig7_8_21_per_shift"
__all__ = ["PerShiftParams", "PerShiftResult", "run", "testbed_background", "effective_robustness_per_shift"]


@dataclass
class PerShiftParams(ShiftSweepParams):
    """Figures 7, 8, 21's parameters: Table 1's sweep plus the background models."""

    output_dir: str = param("outputs/mini/fig7_8_21_per_shift", "where results, tables and figures go")
    standard_models: list[str] = param(REFERENCE_MODELS, "wiseft_lib.mini.standard.STANDARD_ZOO names trained on the "
                                                         "ID photos (the mini's effective-robustness line; [] to "
                                                         "skip)")
    n_train_standard: Optional[int] = param(None, "their training images (None: the whole train split)")
    testbed: bool = param(False, "the ImageNet testbed's published models as the background (paper setting)")

    def smoke_version(self) -> "PerShiftParams":
        return dataclasses.replace(super().smoke_version(), standard_models=self.standard_models[:2],
                                   n_train_standard=1000)


@dataclass
class PerShiftResult(StudyResult):
    params: PerShiftParams
    points: pd.DataFrame  # per shift, mode, alpha: x, y and their intervals
    background: pd.DataFrame  # per shift: group, model, x, y
    effective_robustness: pd.DataFrame  # y above the standard models' line at x (pp), per shift and point
    figure: Any


def testbed_background(shifts: list[str]) -> pd.DataFrame:
    """The testbed's models per shift: ``x`` on ImageNet restricted to the shift's classes, ``y`` on the shift."""

    tb = testbed()
    unknown = [s for s in shifts if s not in tb.columns]
    if unknown:
        raise ValueError(f"the testbed has no accuracies on {unknown}; it covers "
                         f"{[c for c in tb.columns if c not in ('model', 'group')]}")
    parts = [pd.DataFrame({"shift": s, "group": tb["group"], "model": tb["model"],
                           "x": tb[TESTBED_ID_ON_SHIFT.get(s, "imagenet")], "y": tb[s]}) for s in shifts]
    return pd.concat(parts, ignore_index=True).dropna(subset=["x", "y"])


def _trained_background(p: PerShiftParams, runs, progress: bool) -> pd.DataFrame:
    base = baseline_points(p, p.standard_models, (), seed=p.seeds[0], n_train_standard=p.n_train_standard,
                           runs=runs, progress=progress)
    shifts = [s for s in p.ood_datasets if s not in p.id_on_shift_classes]  # x known: the ID accuracy
    parts = [pd.DataFrame({"shift": s, "group": base["group"], "model": base["model"], "x": base["id_acc"],
                           "y": base[s]}) for s in shifts]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["shift", "group", "model", "x", "y"])


def effective_robustness_per_shift(points: pd.DataFrame, background: pd.DataFrame,
                                   group: str = "standard") -> pd.DataFrame:
    """Zero-shot, fine-tuned and alpha=0.5 points per shift: y minus the ``group`` line's y at x (points)."""

    rows = []
    for shift, own in points.groupby("shift", sort=False):
        ref = background[(background["shift"] == shift) & (background["group"] == group)]
        line = fit_logit_line(ref["x"], ref["y"]) if len(ref) >= 2 else None
        for _, r in own.iterrows():
            if not any(np.isclose(r["alpha"], a) for a in (0.0, 0.5, 1.0)):
                continue
            what = "zero-shot" if r["alpha"] == 0 else ("fine-tuned" if r["alpha"] == 1 else "WiSE-FT 0.5")
            rows.append({"shift": shift, "mode": r["mode"], "point": what, "x": r["x"], "y": r["y"],
                         "effective_robustness": float(r["y"] - line(r["x"])) if line else np.nan})
    return pd.DataFrame(rows)


def run(params: PerShiftParams, *, progress: bool = True) -> PerShiftResult:
    """Compute (or reuse) the sweep and the background; write the points, the table and the figure."""

    outputs = StudyOutputs(NAME, params)
    p, tidy, runs, _ = run_sweep(outputs, progress=progress)
    points = per_shift_points(tidy, p.id_dataset, p.ood_datasets, p.id_on_shift_classes)
    parts = []
    if p.testbed:
        parts.append(testbed_background(p.ood_datasets))
    if p.standard_models:
        parts.append(_trained_background(p, runs, progress))
    background = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["shift", "group", "model", "x", "y"])
    er = effective_robustness_per_shift(points, background)
    outputs.csv("points", points.round(4))
    outputs.csv("background", background.round(4))
    outputs.table("effective_robustness", er.rename(columns=column_labels(list(er.columns))), floatfmt=".2f")
    figure = plot_per_shift(points, background, titles=column_labels(p.ood_datasets),
                            title=f"Per-shift accuracy, {p.model} ({p.eval_split} split, {len(p.seeds)} seed(s))")
    outputs.figure("figure", figure, NAME)
    return PerShiftResult(p, points, background, er, figure, **outputs.finish())


STUDY = register_study("fig7_8_21_per_shift",
                       "Figures 7, 8, 21: each shift vs. ID accuracy on its classes",
                       PerShiftParams, run,
                       covers=[("Figures 7, 8, 21", "")])
