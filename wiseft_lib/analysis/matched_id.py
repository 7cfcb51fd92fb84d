"""Methods compared at matched ID accuracy: where a curve (e.g. WiSE-FT's over alpha) reaches another
method's ID accuracy, and its OOD accuracy there (Figures 3, 10-13, 15). Works on result frames only:
the variants' points beside WiSE-FT's curve, each family's choice on val, and the claims checked on them.

    from wiseft_lib.analysis.matched_id import ood_at_matched_id
    ood_at_matched_id(curve.sort_values("alpha"), id_acc=71.3)   # the curve's best OOD accuracy at ID 71.3
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["ood_at_matched_id", "ood_at_id", "reference_curve", "points_table", "matched_points",
           "curve_matched", "baseline_claims", "curve_claims"]


def ood_at_matched_id(curve: pd.DataFrame, id_acc: float, x: str = "id_acc", y: str = "ood_avg") -> float:
    """The best ``y`` of a curve (rows in alpha order) where it reaches ID accuracy ``id_acc``.

    Segments between consecutive points are interpolated linearly; where the curve crosses ``id_acc``
    several times the best crossing counts; NaN if it never reaches it.
    """
    xs, ys = curve[x].to_numpy(dtype=float), curve[y].to_numpy(dtype=float)
    found = [ys[i] for i in range(len(xs)) if np.isclose(xs[i], id_acc)]
    for i in range(len(xs) - 1):
        lo, hi = sorted((xs[i], xs[i + 1]))
        if lo < id_acc < hi:
            t = (id_acc - xs[i]) / (xs[i + 1] - xs[i])
            found.append(ys[i] + t * (ys[i + 1] - ys[i]))
    return float(max(found)) if found else float("nan")


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
