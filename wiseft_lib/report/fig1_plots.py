"""Figure 1 with 95% Clopper-Pearson intervals, its per-set companion, and the seed spread as a table.

    from wiseft_lib.report.fig1_plots import plot_fig1, plot_fig1_per_set, seed_spread
    fig = plot_fig1(curve, n_id=5000)                                   # the main figure
    per_set = plot_fig1_per_set(curve, {"mini-photo": 5000, "mini-sketch": 5000}, "mini-photo", ["mini-sketch"])
    spread = seed_spread(curve, ["mini-sketch"])                        # mean, min, max over seeds

``curve`` is :func:`wiseft_lib.experiment.curve.curve_table`'s frame (one row per seed, mode and alpha; accuracies in %).
The rule is :mod:`wiseft_lib.analysis.shift_tables`'s: the zero-shot (alpha 0), fine-tuned (alpha 1) and alpha=0.5
points are seed means, and a seed-mean accuracy ``a`` on a set of ``n`` test images gets the exact binomial
interval of ``round(a / 100 * n)`` correct out of ``n``: the test-set sampling of one model, not the
seed-to-seed spread (that is :func:`seed_spread`). The mean over the shifts averages test sets of different
sizes and difficulty, so it has no binomial interval: the main figure draws the ID interval only.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from wiseft_lib.analysis.shift_tables import count_interval
from wiseft_lib.report.figures import outside_legend
from wiseft_lib.report.plots import plot_id_vs_ood, plot_per_shift

__all__ = ["MARKED_ALPHAS", "id_intervals", "plot_fig1", "per_set_points", "plot_fig1_per_set", "seed_spread"]

MARKED_ALPHAS = (0.0, 0.5, 1.0)  # zero-shot, WiSE-FT's midpoint, fine-tuned: the points with intervals


def _at(alphas: pd.Series, wanted: Sequence[float]) -> np.ndarray:
    return np.isclose(alphas.to_numpy(dtype=float)[:, None], np.asarray(wanted, dtype=float)[None, :]).any(axis=1)


def id_intervals(curve: pd.DataFrame, n_id: Optional[float], *, level: float = 0.95) -> pd.DataFrame:
    """The marked points of each mode (seed means of ``id_acc`` and ``ood_avg``, ``n_seeds``) with the
    Clopper-Pearson interval ``id_lo``, ``id_hi`` of the ID accuracy on ``n_id`` images (NaN without a count)."""
    marked = curve[_at(curve["alpha"], MARKED_ALPHAS)]
    g = marked.groupby(["mode", "alpha"], sort=False)
    out = g[["id_acc", "ood_avg"]].mean()
    out["n_seeds"] = g.size()
    out = out.reset_index()
    intervals = [count_interval(a, n_id, level) or (np.nan, np.nan) for a in out["id_acc"]]
    out["id_lo"] = [lo for lo, _ in intervals]
    out["id_hi"] = [hi for _, hi in intervals]
    return out


def plot_fig1(curve: pd.DataFrame, n_id: Optional[float], *, extra: Optional[pd.DataFrame] = None,
              fit: Union[bool, Sequence[str]] = True, title: Optional[str] = None, level: float = 0.95,
              figsize: tuple[float, float] = (6.5, 5.2)) -> Figure:
    """Figure 1 (:func:`wiseft_lib.report.plots.plot_id_vs_ood`, seed means) with a horizontal ``level`` Clopper-Pearson
    bar on the ID accuracy of the zero-shot, fine-tuned and alpha=0.5 points (``n_id`` test images; no bars
    without it) and no bar on the mean over the shifts, which has no binomial interval (the legend says so)."""
    points = id_intervals(curve, n_id, level=level).dropna(subset=["id_lo", "id_hi"])
    fig = plot_id_vs_ood(curve, extra=extra, fit=fit, title=title, show_range=False, figsize=figsize,
                         span=([*points["id_lo"], *points["id_hi"]], []))
    ax = fig.axes[0]
    if not points.empty:
        x, y = points["id_acc"] / 100.0, points["ood_avg"] / 100.0
        # clipped at 0: a seed mean sits within half an image of round(a * n) / n, inside its interval
        xerr = [np.maximum(x - points["id_lo"] / 100.0, 0.0), np.maximum(points["id_hi"] / 100.0 - x, 0.0)]
        ax.errorbar(x, y, xerr=xerr, fmt="none", ecolor="0.15", elinewidth=1.1, capsize=3, capthick=1.1,
                    zorder=6, label=f"{level:.0%} Clopper-Pearson on ID ({int(n_id):,} test images);\n"
                                    "none on the mean over shifts (several test sets)")
    ax.get_legend().remove()  # right of the axes: inside, it covers the background models
    outside_legend(fig, *ax.get_legend_handles_labels())
    return fig


def per_set_points(curve: pd.DataFrame, n_images: Mapping[str, float], id_dataset: str, shifts: Sequence[str],
                   *, level: float = 0.95) -> pd.DataFrame:
    """:func:`wiseft_lib.report.plots.plot_per_shift`'s frame from a Figure 1 curve: per shift, mode and alpha,
    ``x`` = the seed-mean ID accuracy, ``y`` = the seed-mean accuracy on the shift, each with its
    Clopper-Pearson interval (``x_lo`` ... ``y_hi``) on that set's ``n_images`` (none for a set without a count)."""
    means = curve.groupby(["mode", "alpha"], sort=False)[["id_acc", *shifts]].mean().reset_index()
    rows = []
    for shift in shifts:
        for _, r in means.iterrows():
            row = {"shift": shift, "x_dataset": id_dataset, "mode": r["mode"], "alpha": float(r["alpha"]),
                   "x": float(r["id_acc"]), "y": float(r[shift])}
            for axis, name, column in (("x", id_dataset, "id_acc"), ("y", shift, shift)):
                interval = count_interval(r[column], n_images.get(name), level)
                if interval is not None:
                    row[f"{axis}_lo"], row[f"{axis}_hi"] = interval
            rows.append(row)
    return pd.DataFrame(rows)


def plot_fig1_per_set(curve: pd.DataFrame, n_images: Mapping[str, float], id_dataset: str, shifts: Sequence[str],
                      *, baselines: Optional[pd.DataFrame] = None, titles: Optional[dict[str, str]] = None,
                      title: Optional[str] = None, level: float = 0.95, ncols: int = 3) -> Figure:
    """One panel per shift: ID accuracy vs that shift's accuracy along the curves, Clopper-Pearson intervals on
    both axes for the marked points, and the ``baselines`` models (columns ``group``, ``id_acc``, one per shift;
    the ``standard`` ones with their logit-space fit). Drawn by :func:`wiseft_lib.report.plots.plot_per_shift`."""
    points = per_set_points(curve, n_images, id_dataset, shifts, level=level)
    background = None
    if baselines is not None and not baselines.empty:
        background = pd.concat([pd.DataFrame({"shift": s, "group": baselines["group"], "model": baselines["model"],
                                              "x": baselines["id_acc"], "y": baselines[s]})
                                for s in shifts if s in baselines.columns], ignore_index=True)
    return plot_per_shift(points, background, titles=titles, ncols=ncols, title=title, whole_intervals=True)


def seed_spread(curve: pd.DataFrame, shifts: Sequence[str], alphas: Optional[Sequence[float]] = MARKED_ALPHAS
                ) -> pd.DataFrame:
    """Per mode, alpha (those of ``alphas`` in the curve; None or none of them: every alpha) and column
    (``id_acc``, ``ood_avg``, each shift): ``n_seeds`` and the mean, min, max and ``spread_pp`` (max - min) of
    the accuracy over seeds. With one seed, min = max = mean and the spread is 0."""
    keep = curve if alphas is None else curve[_at(curve["alpha"], alphas)]
    keep = curve if keep.empty else keep
    rows: list[dict[str, Any]] = []
    for (mode, alpha), g in keep.groupby(["mode", "alpha"], sort=True):
        for column in ["id_acc", "ood_avg", *shifts]:
            v = g[column].dropna()
            rows.append({"mode": mode, "alpha": float(alpha), "column": column, "n_seeds": int(v.size),
                         "mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
                         "spread_pp": float(v.max() - v.min())})
    return pd.DataFrame(rows, columns=["mode", "alpha", "column", "n_seeds", "mean", "min", "max", "spread_pp"])
