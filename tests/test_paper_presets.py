"""The paper presets' notebooks end to end on CPU: a real open_clip architecture at a tiny size (random weights,
asked for by name) and fixture folders in the real dataset layouts, so the code path a GPU user takes runs here.

Each notebook gets its ``params/paper/*.yaml`` with only these changes: the tiny model, ``pretrained: random``,
the fixture data root, one prompt template (the 80 would only cost time), CPU, no loader workers, smoke mode.
"""
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from paper_fixture import write_paper_data

papermill = pytest.importorskip("papermill")
ROOT = Path(__file__).resolve().parents[1]
TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def paper_setting(tmp_path_factory):
    """Fixture datasets, two tiny open_clip configs (found by the notebooks' kernels through the environment)."""
    base = tmp_path_factory.mktemp("paper")
    configs = base / "configs"
    configs.mkdir()
    (configs / "wiseft-paper-tiny.json").write_text(json.dumps(TINY))
    wider = {**TINY, "vision_cfg": {**TINY["vision_cfg"], "width": 48}}
    (configs / "wiseft-paper-tiny-wide.json").write_text(json.dumps(wider))
    old = os.environ.get("WISEFT_MODEL_CONFIGS")
    os.environ["WISEFT_MODEL_CONFIGS"] = str(configs)
    yield {"data": write_paper_data(base / "data"), "runs": base / "runs"}
    if old is None:
        os.environ.pop("WISEFT_MODEL_CONFIGS", None)
    else:
        os.environ["WISEFT_MODEL_CONFIGS"] = old


def run_paper_notebook(name: str, setting: dict, out: Path, **extra) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    parameters = yaml.safe_load((ROOT / "params" / "paper" / f"{name}.yaml").read_text())
    parameters.update(smoke=True, model="wiseft-paper-tiny", pretrained="random", data_root=str(setting["data"]),
                      output_dir=str(out), runs_dir=str(setting["runs"]), templates=["a photo of a {}."],
                      device="cpu", num_workers=0, **extra)
    papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out / f"{name}.ipynb"),
                               parameters=parameters, kernel_name="python3", progress_bar=False, cwd=str(ROOT))
    return out


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*unreadable image")
def test_table1_and_figures_1_6_7_8_10_21_paper_presets(paper_setting, tmp_path):
    t1 = run_paper_notebook("table1_shifts", paper_setting, tmp_path / "t1")
    beside = pd.read_csv(t1 / "beside_published.csv")
    assert {"imagenet_ours", "imagenet_paper", "imagenet_diff", "objectnet_diff"} <= set(beside.columns)
    assert "WiSE-FT E2E, optimal alpha" in set(beside["row"]) and "Zero-shot (CLIP paper)" in set(beside["row"])
    table = pd.read_csv(t1 / "table1.csv")
    assert {"imagenet-a_lo", "objectnet_hi", "avg_id_shifts_alpha"} <= set(table.columns)
    assert (t1 / "table4_5_sweep_lc.tex").exists() and (t1 / "shape.csv").exists()

    f7 = run_paper_notebook("fig7_8_21_per_shift", paper_setting, tmp_path / "f7")
    points = pd.read_csv(f7 / "points.csv")
    x_sets = points.groupby("shift")["x_dataset"].first().to_dict()
    assert x_sets == {"imagenet-v2": "imagenet", "imagenet-sketch": "imagenet", "imagenet-r": "imagenet-val-r",
                      "imagenet-a": "imagenet-val-a", "objectnet": "imagenet-val-objectnet"}
    background = pd.read_csv(f7 / "background.csv")
    assert set(background["group"]) == {"standard", "more data"} and set(background["shift"]) == set(x_sets)
    assert (f7 / "fig7_8_21_per_shift.pdf").exists()

    f6 = run_paper_notebook("fig6_weight_path", paper_setting, tmp_path / "f6")
    assert set(pd.read_csv(f6 / "weight_path.csv")["column"]) >= {"imagenet", "objectnet", "avg_id_shifts"}

    f10 = run_paper_notebook("fig10_weight_vs_output_ensembles", paper_setting, tmp_path / "f10")
    assert set(pd.read_csv(f10 / "matched.csv")["method"]) == {"output ensemble (logit)", "output ensemble (prob)"}

    f1 = run_paper_notebook("fig1_id_vs_ood", paper_setting, tmp_path / "f1")
    baselines = pd.read_csv(f1 / "baselines.csv")
    assert (baselines["group"] == "standard").sum() > 250 and (baselines["group"] == "more data").sum() > 30
    assert "effective_robustness" in pd.read_csv(f1 / "summary.csv").columns


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*unreadable image")
def test_table8_paper_preset_sets_named_models_beside_the_published_rows(paper_setting, tmp_path):
    out = run_paper_notebook("table8_other_models", paper_setting, tmp_path / "t8",
                             other_models=["wiseft-paper-tiny-wide:random"],
                             published_names={"wiseft-paper-tiny:random": "CLIP ViT-B/16"})
    table = pd.read_csv(out / "table8.csv")
    assert set(table["model"]) == {"wiseft-paper-tiny:random", "wiseft-paper-tiny-wide:random"}
    beside = pd.read_csv(out / "beside_published.csv")
    named = beside[beside["model"] == "CLIP ViT-B/16"]
    assert len(named) == 4 and named["imagenet_diff"].notna().sum() == 4


def test_paper_presets_name_weights_open_clip_knows():
    """Every model:tag a paper preset downloads is one open_clip lists (a typo would fail only on the GPU)."""
    import open_clip

    known = set(map(tuple, open_clip.list_pretrained()))
    for path in sorted((ROOT / "params" / "paper").glob("*.yaml")):
        p = yaml.safe_load(path.read_text())
        entries = [(p["model"], p.get("pretrained"))] if "model" in p else []
        entries += [tuple(e.split(":", 1)) for e in p.get("other_models", [])]
        entries += [(p["model"], tag) for tag in p.get("zeroshot_pretrained", [])]
        entries += [(m["model"], m.get("pretrained")) for m in p.get("models", {}).values()]
        for entry in entries:
            assert entry in known, f"{path.name}: {entry} is not in open_clip.list_pretrained()"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*unreadable image")
def test_baseline_figures_3_11_12_13_15_paper_presets(paper_setting, tmp_path):
    """ViT-B/16's baseline studies on the fixture: no val split on ImageNet, so every configuration is reported."""
    f3 = run_paper_notebook("fig3_hyperparameters", paper_setting, tmp_path / "f3")
    points = pd.read_csv(f3 / "points.csv")
    assert set(points["family"]) == {"learning rate x epochs", "optimizer", "L2 toward the zero-shot weights",
                                     "early stopping"}
    assert not points["chosen_on_val"].any() and points["val_id_acc"].isna().all()
    assert len(pd.read_csv(f3 / "matched.csv")) == len(points)  # nothing chosen: every variant beside WiSE-FT
    f13 = run_paper_notebook("fig13_linear_classifier_alternatives", paper_setting, tmp_path / "f13")
    assert {"random interpolation (Bernoulli)", "output ensemble (logit)"} <= set(
        pd.read_csv(f13 / "other_curves_matched.csv")["method"])
    for name in ("fig11_12_ema", "fig15_augmentation"):
        out = run_paper_notebook(name, paper_setting, tmp_path / name)
        assert (out / f"{name}.png").exists() and len(pd.read_csv(out / "points.csv")) == 4


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*unreadable image")
def test_table13_paper_preset_with_a_timm_model(paper_setting, tmp_path):
    """The paper preset's timm path on timm's own tiny test EfficientNet (random weights, asked for by name);
    the real run names the NoisyStudent models and sets their published rows beside."""
    preset = yaml.safe_load((ROOT / "params" / "paper" / "table13_output_ensembles.yaml").read_text())
    assert preset["others"] == ["timm:tf_efficientnet_b6.ns_jft_in1k", "timm:tf_efficientnet_l2.ns_jft_in1k"]
    import timm

    for name in preset["others"]:  # both names are timm's own, with pretrained weights
        assert timm.list_models(name.removeprefix("timm:").split(".")[0], pretrained=True)
    out = run_paper_notebook("table13_output_ensembles", paper_setting, tmp_path / "t13",
                             others=["timm:test_efficientnet"], others_pretrained=False,
                             published_names={"timm:test_efficientnet": "NoisyStudent EfficientNet-B6"})
    table = pd.read_csv(out / "table13.csv")
    assert table["row"].tolist()[:2] == ["zero-shot", "timm:test_efficientnet alone"]
    beside = pd.read_csv(out / "beside_published.csv")
    assert {"imagenet_ours", "imagenet_paper", "avg_id_shifts_diff"} <= set(beside.columns)
    assert beside.loc[beside["row"] == "alone", "imagenet_paper"].item() == 86.5


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*unreadable image")
def test_beyond_imagenet_paper_presets(paper_setting, tmp_path):
    """Tables 2, 6, 7 and Figures 5, 17-19, 20, 26 in the paper's datasets' layouts (fixture), tiny model."""
    tiny = {"model": "wiseft-paper-tiny", "pretrained": "random"}
    t2 = run_paper_notebook("table2_transfer", paper_setting, tmp_path / "t2")
    assert {"imagenet", "cifar10"} <= set(pd.read_csv(t2 / "table2.csv").columns)  # smoke: the first two tasks
    t6 = run_paper_notebook("table6_further_shifts", paper_setting, tmp_path / "t6")
    table = pd.read_csv(t6 / "table6.csv")
    assert set(table["shift"]) == {"imagenet", "imagenet-vid-robust", "ytbb-robust", "cifar10", "cifar10.1",
                                   "cifar10.2", "fmow", "iwildcam"}
    assert table.loc[table["metric"] == "worst_region_acc", "paper: fine-tuned"].item() == 46.0
    t7 = run_paper_notebook("table7_coop", paper_setting, tmp_path / "t7", coop={"n_ctx": 1, "epochs": 2})
    assert "CoOp" in set(pd.read_csv(t7 / "table7.csv")["method"])
    low = run_paper_notebook("fig17_19_low_data", paper_setting, tmp_path / "low")
    assert set(pd.read_csv(low / "low_data.csv")["task"]) == {"imagenet", "cifar10"}
    f20 = run_paper_notebook("fig20_model_scale", paper_setting, tmp_path / "f20",
                             models={"a": {**tiny, "samples_seen": 1.28e10}, "b": {**tiny, "samples_seen": 2.56e10}})
    gains = pd.read_csv(f20 / "gains.csv")
    assert (gains.groupby("model")["pretraining_flops"].first().diff().dropna() > 0).all()
    f5 = run_paper_notebook("fig5_complementarity", paper_setting, tmp_path / "f5", models={"tiny": tiny})
    assert set(pd.read_csv(f5 / "diversity.csv")["dataset"]) >= {"imagenet", "objectnet"}
    f26 = run_paper_notebook("fig26_objectnet_names", paper_setting, tmp_path / "f26")
    names = pd.read_csv(f26 / "objectnet_names.csv")
    assert {"ImageNet class names", "ObjectNet class names"} <= set(names.columns) and len(names) == 6


@pytest.mark.slow
def test_followup_methods_paper_preset(paper_setting, tmp_path):
    """LP-FT, FLYP and the uniform soup in the paper's setting; ImageNet has no val split held out from its test
    images, so nothing chosen on val (greedy soup, per-group alphas, the deployed alpha) is there to report."""
    out = run_paper_notebook("followup_methods", paper_setting, tmp_path / "followups")
    methods = set(pd.read_csv(out / "methods.csv")["method"])
    assert {"zero-shot", "LP-FT", "WiSE-FT(LP-FT), alpha=0.5", "FLYP", "uniform soup",
            "WiSE-FT(uniform soup), alpha=0.5"} <= methods
    assert not any("greedy" in m or "chosen on ID val" in m for m in methods)
    published = pd.read_csv(out / "published_model_soups.csv").set_index("method")
    assert published.loc["greedy soup", "imagenet"] == 81.03 and published.loc["uniform soup", "imagenet-a"] == 29.17
