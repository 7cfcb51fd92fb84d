"""The curve's tables, claims and config checks (the runner itself: test_studies.py and the notebook smoke tests)."""
import pandas as pd
import pytest

from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import curve_table, summary_table
from wiseft_lib.params import ParamsError


def tidy_rows():
    rows = []
    for seed in (0, 1):
        for mode in ("end-to-end", "linear"):
            for alpha in (0.0, 0.5, 1.0):
                rows.append((seed, mode, alpha, "mini-photo", 70 + 20 * alpha + seed))
                rows.append((seed, mode, alpha, "mini-sketch", 60 + 10 * alpha * (1 - alpha) - 5 * alpha))
                rows.append((seed, mode, alpha, "mini-near", 65.0))
    return pd.DataFrame(rows, columns=["seed", "mode", "alpha", "dataset", "value"]).assign(metric="top1")


def test_curve_table_has_one_row_per_seed_mode_alpha():
    curve = curve_table(tidy_rows())
    assert list(curve.columns) == ["seed", "mode", "alpha", "id_acc", "ood_avg", "mini-sketch", "mini-near"]
    assert len(curve) == 12
    row = curve[(curve["seed"] == 1) & (curve["mode"] == "linear") & (curve["alpha"] == 0.5)].iloc[0]
    assert row["id_acc"] == 81 and row["ood_avg"] == pytest.approx((65 + 60 + 2.5 - 2.5) / 2)


def test_summary_picks_endpoints_midpoint_and_best_alpha():
    summary = summary_table(curve_table(tidy_rows())).set_index("method")
    assert summary.loc["zero-shot", "id_acc"] == 70.5
    assert summary.loc["fine-tuned (end-to-end)", "id_acc"] == 90.5
    assert "WiSE-FT linear, alpha=0.5" in summary.index
    assert any(m.startswith("WiSE-FT end-to-end, oracle alpha=") for m in summary.index)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="alpha"):
        CurveConfig(alphas=[0.0, 1.5])
    with pytest.raises(ValueError, match="modes"):
        CurveConfig(modes=["e2e"])
    with pytest.raises(ValueError, match="n_test"):
        CurveConfig(n_test=0)
    with pytest.raises(ParamsError, match="'e2e.lr' must be a number"):
        CurveConfig(e2e={"lr": "fast"})
    with pytest.raises(ParamsError, match="'linear'.*unexpected keyword argument 'lrr'"):
        CurveConfig(linear={"lrr": 1e-3})
    with pytest.raises(ParamsError, match="eval_split"):
        CurveConfig(eval_split="train")
    with pytest.raises(ParamsError, match="e2e_checkpoint.*does not exist"):
        CurveConfig(e2e_checkpoint="/nonexistent/finetuned.safetensors")
    small = CurveConfig().smoke_version()
    assert small.alphas == [0.0, 0.5, 1.0] and small.e2e["epochs"] == 1 and small.n_test == 200


def test_check_claims_reads_the_papers_claims_off_a_curve():
    from wiseft_lib.experiment.curve import check_claims

    rows = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        for mode, (zs, mid, ft) in {"end-to-end": ((70, 60), (80, 63), (81, 55)),
                                    "linear": ((70, 60), (75, 59), (78, 58))}.items():
            for alpha, (i, o) in zip((0.0, 0.5, 1.0), (zs, mid, ft)):
                rows.append({"seed": seed, "mode": mode, "alpha": alpha, "id_acc": i + shift, "ood_avg": o + shift})
    table = check_claims(pd.DataFrame(rows)).set_index(["mode", "bar_pp"])
    assert table.loc[("end-to-end", ">= 8"), "value_pp"] == 11 and table.loc[("end-to-end", ">= 8"), "holds"]
    assert table.loc[("end-to-end", ">= 2"), "value_pp"] == 3
    assert table.loc[("end-to-end", ">= -1"), "holds"]  # exactly at the bar
    assert table.loc[("linear", "> 0"), "value_pp"] == -1 and not table.loc[("linear", "> 0"), "holds"]
    with pytest.raises(ValueError, match="lacks alpha \\[0.5\\]"):
        check_claims(pd.DataFrame(rows).query("alpha != 0.5"))


def test_randaugment_is_torchvisions_before_open_clips_transform_and_keys_its_own_fine_tune(fashion_mnist_root):
    from torchvision import transforms as T

    from wiseft_lib.experiment.endpoints import Endpoints
    from wiseft_lib.experiment.runs import RunCache

    plain = Endpoints(CurveConfig(n_train=64), 0, RunCache(None), progress=False)
    strong = Endpoints(CurveConfig(n_train=64, augment="randaugment"), 0, RunCache(None), progress=False)
    tf = strong.train_transform()
    assert isinstance(tf.transforms[0], T.RandAugment) and tf.transforms[1] is strong.transforms()[0]
    assert plain.train_transform() is plain.transforms()[0]
    x, _ = strong.train_set(64, tf).dataset[0]  # the mini's PIL images go through it
    assert x.shape == plain.train_set(64, plain.train_transform()).dataset[0][0].shape
    assert plain.train_record(64, "train") != strong.train_record(64, "train+randaugment")
    with pytest.raises(ParamsError, match="augment"):
        CurveConfig(augment="autoaugment")


def test_the_alpha_to_deploy_is_chosen_on_id_val_and_gets_its_own_summary_row():
    from wiseft_lib.experiment.curve import alphas_on_val, summary_table

    val = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1] * 2, "mode": ["end-to-end"] * 6 + ["linear"] * 6,
                        "alpha": [0.0, 0.5, 1.0] * 4,
                        "val_id_acc": [60, 80, 79, 60, 78, 81, 50, 70, 70, 50, 70, 70]})
    # end-to-end: seed means 60, 79, 80 -> 1.0; linear: a tie between 0.5 and 1 -> the smaller alpha
    assert alphas_on_val(val) == {"end-to-end": 1.0, "linear": 0.5}
    assert alphas_on_val(None) == {}
    curve = pd.DataFrame({"seed": 0, "mode": ["end-to-end"] * 3, "alpha": [0.0, 0.5, 1.0],
                          "id_acc": [60.0, 75.0, 80.0], "ood_avg": [50.0, 58.0, 45.0]})
    table = summary_table(curve, {"end-to-end": 1.0})
    row = table[table["method"].str.contains("chosen on ID val")]
    assert row["method"].tolist() == ["WiSE-FT end-to-end, alpha=1 chosen on ID val (held out)"]
    assert row[["id_acc", "ood_avg"]].values.tolist() == [[80.0, 45.0]]  # the test numbers at the val-chosen alpha
    assert table["method"].tolist()[-1].startswith("WiSE-FT end-to-end, oracle alpha=0.5")
