"""Tables 1, 3, 4, 5, 8 and Figures 6, 7, 8, 21 on the mini (smoke-sized): outputs, intervals, the run cache.

The studies share one sweep: Table 1 reuses Figure 1's fine-tunes, and Figures 6 and 7/8/21 then score nothing.
"""
import pandas as pd
import pytest

from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.studies.fig1_id_vs_ood import Fig1Params
from wiseft_lib.studies.fig1_id_vs_ood import run as run_fig1
from wiseft_lib.studies.fig6_weight_path import Fig6Params
from wiseft_lib.studies.fig6_weight_path import run as run_fig6
from wiseft_lib.studies.fig7_8_21_per_shift import PerShiftParams
from wiseft_lib.studies.fig7_8_21_per_shift import run as run_per_shift
from wiseft_lib.studies.table1_shifts import Table1Params
from wiseft_lib.studies.table1_shifts import run as run_table1
from wiseft_lib.studies.table8_other_models import Table8Params
from wiseft_lib.studies.table8_other_models import run as run_table8

from helpers import forbid, patch_everywhere

SETS = ["mini-photo", "mini-near", "mini-sketch", "mini-rendition", "mini-viewpoint", "mini-corruption"]


@pytest.mark.slow
def test_table1_and_its_figures_reuse_figure1_and_each_other(tmp_path, fashion_mnist_root, monkeypatch):
    common = dict(smoke=True, runs_dir=str(tmp_path / "runs"))
    run_fig1(Fig1Params(output_dir=str(tmp_path / "fig1"), standard_models=[], zeroshot_pretrained=[], **common),
             progress=False)
    forbid(monkeypatch, "wiseft_lib.finetune.finetune")  # Figure 1's fine-tunes, same recipe and seed
    t1 = run_table1(Table1Params(output_dir=str(tmp_path / "t1"), **common), progress=False)
    out = tmp_path / "t1"
    for stem in ("table1", "table3", "table4_5_sweep_e2e", "table4_5_sweep_lc", "shape", "claims",
                 "published_table1"):
        for ext in ("csv", "md", "tex"):
            assert (out / f"{stem}.{ext}").exists(), f"{stem}.{ext}"
    table = pd.read_csv(out / "table1.csv")
    for s in SETS:  # every accuracy inside its 95% interval
        assert ((table[f"{s}_lo"] <= table[s]) & (table[s] <= table[f"{s}_hi"])).all(), s
    assert (table.loc[table["alpha"] == "optimal", "avg_shifts_alpha"].notna()).all()
    assert "photo (~IN)" in (out / "table1.md").read_text()
    assert len(t1.shape) == 2 * 2 * 8 and t1.claims["of"].tolist() == [14, 14] and t1.beside is None
    stored = ResultsStore(out / "results.sqlite").to_frame()
    assert {"WiSE-FT E2E, optimal alpha", "wiseft-end-to-end"} <= set(stored["method"])

    forbid(monkeypatch, "wiseft_lib.core.evaluate.evaluate", "wiseft_lib.core.evaluate.evaluate_head")  # the same sweep
    fig6 = run_fig6(Fig6Params(output_dir=str(tmp_path / "fig6"), **common), progress=False)
    assert (tmp_path / "fig6" / "fig6_weight_path.png").exists() and (tmp_path / "fig6" / "fig6_weight_path.pdf").exists()
    assert set(fig6.summary["mode"]) == {"end-to-end", "linear"} and len(fig6.summary) == 2 * 8
    path = fig6.path.set_index(["mode", "column", "alpha"])
    zs, ft = path.loc[("end-to-end", "mini-photo", 0.0), "accuracy"], path.loc[("end-to-end", "mini-photo", 1.0), "accuracy"]
    assert path.loc[("end-to-end", "mini-photo", 0.5), "endpoint_line"] == pytest.approx((zs + ft) / 2)

    monkeypatch.undo()  # the standard models are trained here (Figure 1 above had none)
    fig7 = run_per_shift(PerShiftParams(output_dir=str(tmp_path / "fig7"), standard_models=["linear-e1", "mlp64-e1"],
                                        **common), progress=False)
    assert set(fig7.points["shift"]) == set(SETS[1:]) and (fig7.points["x_dataset"] == "mini-photo").all()
    assert len(fig7.background) == 5 * 2 and set(fig7.background["group"]) == {"standard"}
    assert fig7.effective_robustness["effective_robustness"].notna().all()
    assert (tmp_path / "fig7" / "fig7_8_21_per_shift.png").exists()


@pytest.mark.slow
def test_table8_sweeps_each_model_and_reuses_the_main_models_fine_tune(tmp_path, fashion_mnist_root, monkeypatch):
    import wiseft_lib.finetune as ft

    common = dict(smoke=True, runs_dir=str(tmp_path / "runs"))
    run_fig1(Fig1Params(output_dir=str(tmp_path / "fig1"), modes=["end-to-end"], standard_models=[],
                        zeroshot_pretrained=[], **common), progress=False)
    calls = []
    real = ft.finetune
    patch_everywhere(monkeypatch, "wiseft_lib.finetune.finetune", lambda *a, **k: calls.append(1) or real(*a, **k))
    t8 = run_table8(Table8Params(output_dir=str(tmp_path / "t8"), other_models=["wiseft-mini:fmnist-budget5"],
                                 **common), progress=False)
    assert len(calls) == 1, "only the new model is fine-tuned; the main one is Figure 1's"
    assert t8.table8.groupby("model").size().to_dict() == {"wiseft-mini": 4, "wiseft-mini:fmnist-budget5": 4}
    assert set(t8.gains["source"]) == {"ours", "paper"} and len(t8.gains) == 2 + 5
    assert (tmp_path / "t8" / "table8.tex").exists() and t8.beside is None


def test_table1_params_name_the_id_on_shift_sets_as_shifts():
    from wiseft_lib.params import ParamsError

    with pytest.raises(ParamsError, match="id_on_shift_classes.*not in ood_datasets"):
        Table1Params(id_on_shift_classes={"imagenet-r": "imagenet-val-r"})
    with pytest.raises(ParamsError, match="end-to-end only"):
        Table8Params(modes=["linear"])
