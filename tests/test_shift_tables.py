"""The paper's statistics (Tables 1, 3, 4, 5; Figures 6, 7, 8, 21), each rule pinned on hand-computed sweeps."""
import numpy as np
import pandas as pd
import pytest

from wiseft_lib.analysis.shift_tables import (
    clopper_pearson,
    optimal_alphas,
    paper_columns,
    per_shift_points,
    shape_table,
    sweep_table,
    table1,
    table3,
    weight_path_table,
    with_intervals,
)

ID, SHIFTS = "id", ["s1", "s2"]


def tidy_from(acc: dict, n: int = 100, seeds=(0,)) -> pd.DataFrame:
    """``acc[(mode, alpha)] = {dataset: top1}`` (a seed offset added: +1 per seed) -> the tidy frame."""
    rows = []
    for seed in seeds:
        for (mode, alpha), values in acc.items():
            for d, v in values.items():
                rows.append(dict(seed=seed, mode=mode, alpha=alpha, dataset=d, metric="top1", value=v + seed))
                rows.append(dict(seed=seed, mode=mode, alpha=alpha, dataset=d, metric="n_images", value=float(n)))
    return pd.DataFrame(rows)


# Per column, the best alpha differs: ID peaks at 1, s1 at 0.5, s2 at 0 (and ties 0.5 on a plateau).
E2E = {("end-to-end", 0.0): {"id": 60.0, "s1": 50.0, "s2": 40.0},
       ("end-to-end", 0.5): {"id": 70.0, "s1": 58.0, "s2": 40.0},
       ("end-to-end", 1.0): {"id": 72.0, "s1": 45.0, "s2": 30.0}}
LC = {("linear", 0.0): {"id": 60.0, "s1": 50.0, "s2": 40.0},
      ("linear", 0.5): {"id": 65.0, "s1": 52.0, "s2": 41.0},
      ("linear", 1.0): {"id": 66.0, "s1": 49.0, "s2": 38.0}}


def test_clopper_pearson_matches_the_exact_binomial_interval():
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(18.7086, abs=1e-3) and hi == pytest.approx(81.2914, abs=1e-3)
    lo, hi = clopper_pearson([0, 10], [10, 10])  # the one-sided ends
    assert lo[0] == 0.0 and hi[0] == pytest.approx(30.8497, abs=1e-3)
    assert lo[1] == pytest.approx(69.1503, abs=1e-3) and hi[1] == 100.0
    with pytest.raises(ValueError, match="0 <= correct <= n"):
        clopper_pearson(11, 10)


def test_avg_is_the_mean_of_the_shifts_and_avg_rs_the_mean_of_id_and_avg_over_seed_means():
    sweep = sweep_table(tidy_from(E2E, seeds=(0, 1, 2)), ID, SHIFTS, extra=[])
    mid = sweep[sweep["alpha"] == 0.5].iloc[0]
    assert mid["id"] == 71.0 and mid["s1"] == 59.0 and mid["s2"] == 41.0  # seed offsets 0, 1, 2: mean +1
    assert mid["avg_shifts"] == pytest.approx(50.0) and mid["avg_id_shifts"] == pytest.approx(60.5)
    assert mid["id_std"] == pytest.approx(1.0) and mid["n_seeds"] == 3 and mid["n_id"] == 100


def test_extra_sets_are_carried_but_never_averaged():
    acc = {k: {**v, "id-on-s1": v["id"] + 10} for k, v in E2E.items()}
    sweep = sweep_table(tidy_from(acc), ID, SHIFTS, extra=["id-on-s1"])
    assert "id-on-s1" in sweep.columns
    assert sweep.loc[0, "avg_shifts"] == pytest.approx(45.0)  # (50 + 40) / 2, the extra set left out


def test_optimal_alpha_is_chosen_per_column_separately_and_ties_go_to_the_smallest():
    sweep = sweep_table(tidy_from(E2E), ID, SHIFTS)
    best = optimal_alphas(sweep, paper_columns(ID, SHIFTS)).set_index("column")
    assert best.loc["id", "alpha"] == 1.0 and best.loc["s1", "alpha"] == 0.5
    assert best.loc["s2", "alpha"] == 0.0  # 40 at alpha 0 and 0.5: the smallest alpha
    assert best.loc["avg_shifts", "value"] == pytest.approx(49.0)  # alpha 0.5: (58 + 40) / 2


def test_table1_rows_values_intervals_and_the_alpha_chosen_per_column():
    t = table1(tidy_from({**E2E, **LC}), ID, SHIFTS).set_index("row")
    assert list(t.index) == ["Zero-shot", "Fine-tuned LC", "Fine-tuned E2E", "WiSE-FT LC, alpha=0.5",
                             "WiSE-FT LC, optimal alpha", "WiSE-FT E2E, alpha=0.5", "WiSE-FT E2E, optimal alpha"]
    opt = t.loc["WiSE-FT E2E, optimal alpha"]
    assert (opt["id"], opt["s1"], opt["s2"]) == (72.0, 58.0, 40.0)  # each column at its own best alpha
    assert (opt["id_alpha"], opt["s1_alpha"], opt["s2_alpha"]) == (1.0, 0.5, 0.0)
    assert t.loc["Zero-shot", "paper_row"] == "Zero-shot (PyTorch)" and t.loc["Zero-shot", "id"] == 60.0
    lo, hi = clopper_pearson(70, 100)
    assert t.loc["WiSE-FT E2E, alpha=0.5", "id_lo"] == pytest.approx(float(lo))
    assert t.loc["WiSE-FT E2E, alpha=0.5", "id_hi"] == pytest.approx(float(hi))
    assert "avg_shifts_lo" not in t.columns  # no binomial interval for an average over sets
    shown = with_intervals(t.reset_index(), [ID]).set_index("row")
    assert shown.loc["Fine-tuned E2E", "id"].startswith("72.0 [")


def test_table3_is_optimal_minus_the_midpoint():
    sweep = sweep_table(tidy_from(E2E), ID, SHIFTS)
    t3 = table3(sweep, paper_columns(ID, SHIFTS)).set_index("what")
    assert t3.loc["optimal - 0.5 (pp)", "id"] == pytest.approx(2.0)
    assert t3.loc["optimal - 0.5 (pp)", "s1"] == pytest.approx(0.0)
    assert t3.loc["optimal alpha", "id"] == 1.0


def test_shape_compares_the_midpoint_with_each_endpoint_here_and_in_the_paper():
    ours = table1(tidy_from(E2E), ID, SHIFTS)
    paper = pd.DataFrame({"row": ["Zero-shot (PyTorch)", "Fine-tuned E2E (ours)", "WiSE-FT E2E, alpha=0.5"],
                          "P": [10.0, 20.0, 15.0], "Q1": [1.0, 2.0, 3.0], "Q2": [5.0, 4.0, 6.0]})
    shape = shape_table(ours, paper, {"id": "P", "s1": "Q1", "s2": "Q2"}).set_index(["comparison", "column"])
    ft = shape.loc[("WiSE-FT 0.5 vs fine-tuned", "id")]
    assert ft["diff_pp"] == -2.0 and ft["paper_diff_pp"] == -5.0 and ft["agree"]
    zs = shape.loc[("WiSE-FT 0.5 vs zero-shot", "s2")]  # ours: 40 vs 40, not a win; paper: 6 > 5
    assert not zs["wins"] and zs["paper_wins"] and not zs["agree"]


def test_weight_path_line_and_better_endpoint():
    path = weight_path_table(sweep_table(tidy_from(E2E), ID, SHIFTS), ["id", "s1"]).set_index(["column", "alpha"])
    assert path.loc[("id", 0.5), "endpoint_line"] == pytest.approx(66.0)
    assert path.loc[("id", 0.5), "gain_over_line"] == pytest.approx(4.0)
    assert path.loc[("s1", 0.5), "best_endpoint"] == 50.0
    assert path.loc[("s1", 0.5), "gain_over_best_endpoint"] == pytest.approx(8.0)


def test_per_shift_points_use_the_id_set_on_the_shifts_classes_where_one_is_given():
    acc = {k: {**v, "id-on-s1": v["id"] + 10} for k, v in E2E.items()}
    pts = per_shift_points(tidy_from(acc), ID, SHIFTS, {"s1": "id-on-s1"}).set_index(["shift", "alpha"])
    assert pts.loc[("s1", 0.5), "x"] == 80.0 and pts.loc[("s1", 0.5), "x_dataset"] == "id-on-s1"
    assert pts.loc[("s2", 0.5), "x"] == 70.0 and pts.loc[("s2", 0.5), "y"] == 40.0
    assert pts.loc[("s1", 0.5), "x_lo"] < 80.0 < pts.loc[("s1", 0.5), "x_hi"]
    assert np.isfinite(pts[["y_lo", "y_hi"]].to_numpy()).all()
