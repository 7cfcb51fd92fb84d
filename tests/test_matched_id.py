"""Methods compared at matched ID accuracy (analysis/matched_id.py): a curve's OOD accuracy at an ID accuracy."""
import numpy as np
import pandas as pd
import pytest

from wiseft_lib.analysis.matched_id import baseline_claims, matched_points, ood_at_matched_id, points_table


def test_ood_at_matched_id_interpolates_and_takes_the_best_crossing():
    curve = pd.DataFrame({"id_acc": [60.0, 70.0, 80.0, 75.0], "ood_avg": [50.0, 60.0, 55.0, 40.0]})
    assert ood_at_matched_id(curve, 65.0) == pytest.approx(55.0)
    assert ood_at_matched_id(curve, 70.0) == 60.0
    assert ood_at_matched_id(curve, 77.5) == pytest.approx(56.25)  # crossed twice: 56.25 and 47.5
    assert pd.isna(ood_at_matched_id(curve, 90.0))


def frame(rows, cols):
    return pd.DataFrame(rows, columns=cols)


def test_points_choose_each_familys_best_val_configuration_and_match_it_on_test():
    ref = frame([(0, 0.0, 70.0, 60.0), (0, 0.5, 80.0, 66.0), (0, 1.0, 84.0, 60.0)], ["seed", "alpha", "id_acc", "ood_avg"])
    cols = ["family", "variant", "seed", "alpha", "id_acc", "ood_avg"]
    var = frame([("lr", "small", 0, 0.5, 78.0, 64.0), ("lr", "small", 0, 1.0, 82.0, 58.0),
                 ("lr", "large", 0, 0.5, 79.0, 62.0), ("lr", "large", 0, 1.0, 86.0, 55.0),
                 ("opt", "sgd", 0, 1.0, 75.0, 61.0)], cols)
    val = frame([("small", "lr", 0, 85.0), ("large", "lr", 0, 81.0), ("sgd", "opt", 0, 70.0)],
                ["variant", "family", "seed", "val_id_acc"])
    points = points_table(ref, var, val).set_index("variant")
    # "large" has the better *test* ID accuracy, but the choice is made on val: "small"
    assert points["chosen_on_val"].to_dict() == {"small": True, "large": False, "sgd": True}
    assert points.loc["small", "wiseft_ood_at_same_id"] == pytest.approx(63.0)  # 80 -> 84 : 66 -> 60, at 82
    assert points.loc["small", "wiseft_minus_variant"] == pytest.approx(5.0)
    assert np.isnan(points.loc["large", "wiseft_ood_at_same_id"])  # beyond the curve's ID range
    assert points.loc["small", "ood_avg_wiseft_0.5"] == 64.0
    matched = matched_points(points.reset_index())
    assert matched["variant"].tolist() == ["small", "sgd"]
    claims = baseline_claims(matched)
    # small: +5 at the same ID; the alpha-1 point (84, 60) is more accurate and 2 more robust; WiSE-FT on it +6.
    # sgd: 63 vs 61 at the same ID; the alpha-0.5 point (80, 66) is more accurate and 5 more robust.
    assert claims["value_pp"].tolist() == [5.0, 2.0, 6.0, 2.0, 5.0]
    assert claims["holds"].all()
    assert np.isnan(points.loc["large", "wiseft_best_ood_at_least_same_id"])  # no WiSE-FT model reaches 86 ID
    assert points.loc["small", "wiseft_best_minus_variant"] == pytest.approx(2.0)
