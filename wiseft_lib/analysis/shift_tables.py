"""The paper's statistics over a WiSE-FT sweep on an ID set and its shifts (Tables 1, 3, 4, 5; Figures 6-8, 21).

Input is the tidy frame of :func:`wiseft_lib.experiment.curve.wiseft_curve` (``seed, mode, alpha, dataset,
metric, value``; metrics ``top1`` and ``n_images``). The paper's rules, each pinned by a test:

- ``avg_shifts`` is the mean over the shifts; ``avg_id_shifts`` ("Avg(r,s)") the mean of the ID
  accuracy and ``avg_shifts``.
- The *optimal alpha* is chosen per column separately on the grid evaluated (the paper: 0, 0.05, ..., 1);
  ties go to the smallest alpha. It is an oracle on the evaluation sets, labelled as such.
- Accuracies are means over seeds; every per-dataset accuracy carries its 95% Clopper-Pearson
  interval for the ``n_images`` test images (the test-set sampling of one model; the seed-to-seed
  spread is the separate ``*_std``). Averages over datasets of different sizes have no binomial
  interval and get none.

    from wiseft_lib.analysis.shift_tables import sweep_table, table1
    sweep = sweep_table(tidy, "mini-photo", ["mini-near", "mini-sketch"])   # Tables 4 and 5
    t1 = table1(tidy, "mini-photo", ["mini-near", "mini-sketch"])            # Table 1 with intervals
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy.stats import beta

__all__ = ["AVG", "AVG_ID", "HEADS", "clopper_pearson", "sweep_table", "optimal_alphas", "table1", "table3",
           "shape_table", "weight_path_table", "per_shift_points", "paper_columns", "with_intervals"]

AVG, AVG_ID = "avg_shifts", "avg_id_shifts"
HEADS = {"linear": "LC", "end-to-end": "E2E"}  # the paper's names of the two fine-tuning modes
MODE_OF = {v: k for k, v in HEADS.items()}


def clopper_pearson(correct: Sequence[float] | float, n: Sequence[float] | float,
                    level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial interval for ``correct`` successes out of ``n``, in percent: ``(low, high)``."""

    k, n = np.asarray(correct, dtype=float), np.asarray(n, dtype=float)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError(f"Clopper-Pearson needs 0 <= correct <= n and n > 0, got correct={k}, n={n}")
    tail = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):
        low = np.where(k > 0, beta.ppf(tail, k, n - k + 1), 0.0)
        high = np.where(k < n, beta.ppf(1.0 - tail, k + 1, n - k), 1.0)
    return 100.0 * low, 100.0 * high


def count_interval(accuracy: float, n: Optional[float], level: float) -> Optional[tuple[float, float]]:
    """The Clopper-Pearson interval of an accuracy (percent) on ``n`` images; None without a count."""
    if n is None or pd.isna(n):
        return None
    lo, hi = clopper_pearson(round(accuracy / 100.0 * n), n, level)
    return float(lo), float(hi)


def _metric(tidy: pd.DataFrame, metric: str) -> pd.DataFrame:
    sub = tidy[tidy["metric"] == metric]
    if sub.empty:
        raise ValueError(f"the results have no {metric!r} rows; metrics present: {sorted(set(tidy['metric']))}")
    return sub.pivot_table(index=["mode", "alpha", "seed"], columns="dataset", values="value")


def sweep_table(tidy: pd.DataFrame, id_dataset: str, shifts: Sequence[str], *, extra: Sequence[str] = (),
                metric: str = "top1") -> pd.DataFrame:
    """One row per (mode, alpha): the seed-mean accuracy on each set, ``avg_shifts``, ``avg_id_shifts``,
    the seed standard deviation of each (``*_std``), ``n_seeds``, and the images per set (``n_<set>``).

    ``extra`` sets (e.g. ImageNet on a shift's classes) are carried along, outside the averages.
    """
    wide = _metric(tidy, metric)
    columns = [id_dataset, *shifts, *extra]
    missing = [c for c in columns if c not in wide.columns]
    if missing:
        raise ValueError(f"no {metric} results for {missing}; evaluated: {list(wide.columns)}")
    wide = wide[columns].copy()
    wide[AVG] = wide[list(shifts)].mean(axis=1)
    wide[AVG_ID] = (wide[id_dataset] + wide[AVG]) / 2.0
    g = wide.groupby(level=["mode", "alpha"])
    out = g.mean()
    std = g.std(ddof=1).fillna(0.0).add_suffix("_std")
    out = pd.concat([out, std], axis=1)
    out["n_seeds"] = g.size()
    if "n_images" in set(tidy["metric"]):
        sizes = _metric(tidy, "n_images").groupby(level=["mode", "alpha"]).max()
        for c in [id_dataset, *shifts, *extra]:
            out[f"n_{c}"] = sizes[c]
    out.columns.name = None
    return out.reset_index().sort_values(["mode", "alpha"]).reset_index(drop=True)


def paper_columns(id_dataset: str, shifts: Sequence[str]) -> list[str]:
    """The accuracy columns of the paper's tables, in order: ID, each shift, Avg, Avg(r,s)."""
    return [id_dataset, *shifts, AVG, AVG_ID]


def optimal_alphas(sweep: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Per mode and column: the alpha with the best accuracy (ties: the smallest) and that accuracy."""
    rows = []
    for mode, g in sweep.groupby("mode", sort=False):
        g = g.sort_values("alpha")
        for c in columns:
            best = g.loc[g[c].idxmax()]
            rows.append({"mode": mode, "column": c, "alpha": float(best["alpha"]), "value": float(best[c])})
    return pd.DataFrame(rows)


def _row(sweep: pd.DataFrame, mode: str, alpha: float) -> Optional[pd.Series]:
    hit = sweep[(sweep["mode"] == mode) & np.isclose(sweep["alpha"], alpha)]
    return None if hit.empty else hit.iloc[0]


def table1(tidy: pd.DataFrame, id_dataset: str, shifts: Sequence[str], *, level: float = 0.95,
           val_alphas: Optional[Mapping[str, float]] = None) -> pd.DataFrame:
    """The paper's Table 1 rows for whichever modes ``tidy`` holds.

    Rows: zero-shot (alpha 0 of the end-to-end sweep, else the linear one), fine-tuned LC and E2E
    (alpha 1), WiSE-FT at alpha 0.5, at the alpha chosen on the ID set's val split (``val_alphas``, per mode: the
    one to deploy; not in the paper) and at the optimal alpha per column (the paper's oracle). Columns: ``row``,
    ``paper_row`` (the published row it corresponds to), ``head``, ``alpha``, the accuracies of
    :func:`paper_columns`, and ``<set>_lo`` / ``<set>_hi`` (the Clopper-Pearson interval) and
    ``<column>_alpha`` (optimal rows: the alpha chosen for that column).
    """
    sweep = sweep_table(tidy, id_dataset, shifts)
    cols = paper_columns(id_dataset, shifts)
    sets = [id_dataset, *shifts]
    modes = [m for m in ("linear", "end-to-end") if m in set(sweep["mode"])]
    if not modes:
        raise ValueError(f"no linear or end-to-end results in the sweep (modes: {sorted(set(sweep['mode']))})")
    rows: list[dict] = []

    def add(label: str, paper_row: str, head: str, alpha: object, values: Mapping[str, float],
            sizes: Mapping[str, float], chosen: Optional[Mapping[str, float]] = None) -> None:
        row = {"row": label, "paper_row": paper_row, "head": head, "alpha": alpha}
        row.update({c: float(values[c]) for c in cols})
        for s in sets:
            interval = count_interval(values[s], sizes.get(s), level)
            if interval is not None:
                row[f"{s}_lo"], row[f"{s}_hi"] = interval
        if chosen is not None:
            row.update({f"{c}_alpha": chosen[c] for c in cols})
        rows.append(row)

    def sizes_of(r: pd.Series) -> dict[str, float]:
        return {s: r.get(f"n_{s}") for s in sets}

    zs_mode = "end-to-end" if "end-to-end" in modes else "linear"
    zs = _row(sweep, zs_mode, 0.0)
    if zs is not None:
        add("Zero-shot", "Zero-shot (PyTorch)", "", "0", zs, sizes_of(zs))
    for mode in modes:
        ft = _row(sweep, mode, 1.0)
        if ft is not None:
            add(f"Fine-tuned {HEADS[mode]}", f"Fine-tuned {HEADS[mode]} (ours)", HEADS[mode], "1", ft, sizes_of(ft))
    for mode in modes:
        head = HEADS[mode]
        mid = _row(sweep, mode, 0.5)
        if mid is not None:
            add(f"WiSE-FT {head}, alpha=0.5", f"WiSE-FT {head}, alpha=0.5", head, "0.5", mid, sizes_of(mid))
        chosen = (val_alphas or {}).get(mode)
        on_val = None if chosen is None else _row(sweep, mode, chosen)
        if on_val is not None:
            add(f"WiSE-FT {head}, alpha={chosen:g} chosen on ID val", f"WiSE-FT {head}, alpha chosen on ID val", head,
                f"{chosen:g}", on_val, sizes_of(on_val))
        best = optimal_alphas(sweep[sweep["mode"] == mode], cols).set_index("column")
        values = {c: best.loc[c, "value"] for c in cols}
        sizes = {s: sizes_of(_row(sweep, mode, best.loc[s, "alpha"]))[s] for s in sets}
        add(f"WiSE-FT {head}, optimal alpha", f"WiSE-FT {head}, optimal alpha", head, "optimal", values, sizes,
            chosen={c: float(best.loc[c, "alpha"]) for c in cols})
    return pd.DataFrame(rows)


def table3(sweep: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Table 3: optimal-alpha minus alpha=0.5 accuracy (points) per mode and column, and the alphas chosen."""
    best = optimal_alphas(sweep, columns)
    rows = []
    for mode, g in best.groupby("mode", sort=False):
        mid = _row(sweep, mode, 0.5)
        if mid is None:
            raise ValueError(f"Table 3 needs alpha=0.5 in the {mode} sweep")
        g = g.set_index("column")
        rows.append({"head": HEADS.get(mode, mode), "what": "optimal - 0.5 (pp)",
                     **{c: float(g.loc[c, "value"] - mid[c]) for c in columns}})
        rows.append({"head": HEADS.get(mode, mode), "what": "optimal alpha", **{c: float(g.loc[c, "alpha"])
                                                                                 for c in columns}})
    return pd.DataFrame(rows)


def shape_table(ours: pd.DataFrame, paper: pd.DataFrame, column_map: Mapping[str, str]) -> pd.DataFrame:
    """Per head, column and comparison: does WiSE-FT at 0.5 beat the fine-tuned / zero-shot model here and
    in the paper, and do the two agree?

    ``ours`` and ``paper`` are Table 1 frames (ours from :func:`table1`, the paper's from
    ``wiseft_lib.report.paper.published("table1")``, matched on ``paper_row`` / ``row``); ``column_map`` maps
    our columns to the paper's (e.g. ``{"mini-sketch": "imagenet-sketch"}``).
    """
    ours = ours.set_index("paper_row")
    paper = paper.set_index("row")
    rows = []
    for head in ("E2E", "LC"):
        mid = f"WiSE-FT {head}, alpha=0.5"
        if mid not in ours.index:
            continue
        for other, label in ((f"Fine-tuned {head} (ours)", "vs fine-tuned"), ("Zero-shot (PyTorch)", "vs zero-shot")):
            if other not in ours.index:
                continue
            for ours_col, paper_col in column_map.items():
                d_ours = float(ours.loc[mid, ours_col] - ours.loc[other, ours_col])
                d_paper = float(paper.loc[mid, paper_col] - paper.loc[other, paper_col])
                rows.append({"head": head, "comparison": f"WiSE-FT 0.5 {label}", "column": ours_col,
                             "paper_column": paper_col, "diff_pp": d_ours, "paper_diff_pp": d_paper,
                             "wins": d_ours > 0, "paper_wins": d_paper > 0, "agree": (d_ours > 0) == (d_paper > 0)})
    return pd.DataFrame(rows)


def weight_path_table(sweep: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Figure 6's data: per mode, column and alpha, the accuracy along the weight path, the straight line
    between the endpoint accuracies, the better endpoint, and the path's gain over each (points)."""
    rows = []
    for mode, g in sweep.groupby("mode", sort=False):
        g = g.sort_values("alpha")
        a0, a1 = _row(g, mode, 0.0), _row(g, mode, 1.0)
        if a0 is None or a1 is None:
            raise ValueError(f"Figure 6 needs alpha 0 and 1 in the {mode} sweep")
        for c in columns:
            for _, r in g.iterrows():
                line = (1.0 - r["alpha"]) * a0[c] + r["alpha"] * a1[c]
                best_end = max(a0[c], a1[c])
                rows.append({"mode": mode, "column": c, "alpha": float(r["alpha"]), "accuracy": float(r[c]),
                             "endpoint_line": float(line), "best_endpoint": float(best_end),
                             "gain_over_line": float(r[c] - line), "gain_over_best_endpoint": float(r[c] - best_end)})
    return pd.DataFrame(rows)


def per_shift_points(tidy: pd.DataFrame, id_dataset: str, shifts: Sequence[str],
                     id_on_shift: Optional[Mapping[str, str]] = None, *, level: float = 0.95) -> pd.DataFrame:
    """Figures 7, 8, 21's data: per shift, mode and alpha, ``x`` = accuracy on the ID set restricted to the
    shift's classes (``id_on_shift[shift]``; the ID set itself when the shift has the ID classes) and
    ``y`` = accuracy on the shift, seed means with Clopper-Pearson intervals (``x_lo`` ... ``y_hi``)."""
    id_on_shift = dict(id_on_shift or {})
    extra = sorted({v for k, v in id_on_shift.items() if k in shifts})
    sweep = sweep_table(tidy, id_dataset, shifts, extra=extra)
    rows = []
    for shift in shifts:
        x_set = id_on_shift.get(shift, id_dataset)
        for _, r in sweep.iterrows():
            row = {"shift": shift, "x_dataset": x_set, "mode": r["mode"], "alpha": float(r["alpha"]),
                   "x": float(r[x_set]), "y": float(r[shift])}
            for axis, name in (("x", x_set), ("y", shift)):
                interval = count_interval(r[name], r.get(f"n_{name}"), level)
                if interval is not None:
                    row[f"{axis}_lo"], row[f"{axis}_hi"] = interval
            rows.append(row)
    return pd.DataFrame(rows)


def with_intervals(table: pd.DataFrame, sets: Sequence[str], *, label: str = "row", digits: int = 1) -> pd.DataFrame:
    """Table 1 for reading: each per-set accuracy as ``"73.5 [72.2, 74.7]"`` (its 95% interval)."""
    out = table[[label]].copy()
    for s in sets:
        if f"{s}_lo" in table.columns:
            out[s] = [f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
                      for v, lo, hi in zip(table[s], table[f"{s}_lo"], table[f"{s}_hi"])]
        else:
            out[s] = table[s].round(digits)
    return out
