"""Notebook smoke runs through papermill (the tier that runs every time)."""
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

papermill = pytest.importorskip("papermill")
ROOT = Path(__file__).resolve().parents[1]
FIG1 = ROOT / "notebooks" / "fig1_id_vs_ood.ipynb"


@pytest.mark.slow
def test_fig1_smoke_writes_figure_curve_and_results(tmp_path, fashion_mnist_root):
    out = tmp_path / "fig1"
    papermill.execute_notebook(str(FIG1), str(tmp_path / "executed.ipynb"), kernel_name="python3",
                               parameters={"smoke": True, "output_dir": str(out),
                                           "standard_models": ["linear-e1", "cnn8-e1", "cnn16-e2"],
                                           "zeroshot_pretrained": ["fmnist"]}, progress_bar=False)
    for name in ("fig1_id_vs_ood.png", "fig1_id_vs_ood.pdf", "curve.csv", "summary.md", "results.sqlite",
                 "baselines.csv", "claims.csv"):
        assert (out / name).stat().st_size > 0, name
    curve = pd.read_csv(out / "curve.csv")
    shifts = ["mini-near", "mini-sketch", "mini-rendition", "mini-viewpoint", "mini-corruption"]
    assert list(curve.columns) == ["seed", "mode", "alpha", "id_acc", "ood_avg", *shifts]
    assert len(curve) == 2 * 3 and set(curve["alpha"]) == {0.0, 0.5, 1.0}
    assert curve[["id_acc", "ood_avg", *shifts]].stack().between(0, 100).all()
    assert (curve["ood_avg"] - curve[shifts].mean(axis=1)).abs().max() < 1e-6
    zs = curve[curve["alpha"] == 0.0].set_index("mode")
    # alpha=0 is the zero-shot model in both modes: once through the model, once on cached features
    assert abs(zs.loc["end-to-end", "id_acc"] - zs.loc["linear", "id_acc"]) < 0.6
    assert zs["id_acc"].min() > 50, "the shipped wiseft-mini weights are a real zero-shot model"
    with sqlite3.connect(out / "results.sqlite") as conn:
        n = conn.execute("select count(*) from results").fetchone()[0]
    assert n == 2 * 3 * 6  # modes x alphas x datasets, one metric each
    baselines = pd.read_csv(out / "baselines.csv")
    # smoke keeps the first two standard models and the first extra zero-shot weights (plus the main ones)
    assert list(baselines["group"]) == ["standard", "standard", "zero-shot", "zero-shot"]
    assert list(baselines["model"][:2]) == ["linear-e1", "cnn8-e1"]
    zs_row = baselines[baselines["group"] == "zero-shot"].iloc[0]
    assert abs(zs_row["id_acc"] - zs.loc["end-to-end", "id_acc"]) < 1e-6, "same zero-shot model, same test images"
    assert "effective_robustness" in pd.read_csv(out / "summary.csv").columns


@pytest.mark.slow
def test_unknown_parameter_is_an_error(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="unknown notebook parameter.*n_tset.*n_test"):
        papermill.execute_notebook(str(FIG1), str(tmp_path / "x.ipynb"), kernel_name="python3",
                                   parameters={"n_tset": 5, "output_dir": str(tmp_path)}, progress_bar=False)


def test_notebooks_are_stripped_and_parameterized():
    import nbformat

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), f"{path.name} has outputs"
        assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell is not tagged"
        for name in ("output_dir", "smoke", "seeds"):
            assert f"\n{name} = " in "\n" + code[0].source, f"{path.name} lacks the {name} parameter"
        assert (ROOT / "params" / "mini" / f"{path.stem}.yaml").exists()


@pytest.mark.slow
def test_pretrain_smoke_writes_weights_that_create_model_loads(tmp_path, fashion_mnist_root):
    out = tmp_path / "pretrain"
    papermill.execute_notebook(str(ROOT / "notebooks" / "pretrain_mini_clip.ipynb"), str(tmp_path / "x.ipynb"),
                               kernel_name="python3", parameters={"smoke": True, "output_dir": str(out)},
                               progress_bar=False)
    weights = out / "wiseft-mini-fmnist-seed0.safetensors"
    assert weights.exists() and (out / "pretrain_loss.png").stat().st_size > 0
    table = pd.read_csv(out / "zeroshot.csv").set_index("weights")
    assert table.loc["shipped", "mini-photo"] > 60, "the shipped weights are a real zero-shot model"
    from wiseft_lib.models import create_model

    clip_model, _, _ = create_model("wiseft-mini", str(weights))
    from safetensors.torch import load_file

    assert all(torch_equal(clip_model.state_dict()[k], v) for k, v in load_file(str(weights)).items())


def torch_equal(a, b):
    import torch

    return torch.equal(a, b)


def test_list_parameter_given_as_text_is_a_clear_error():
    from wiseft_lib.notebook import check_list_parameters

    check_list_parameters({"seeds": [0, 1]}, ["seeds"])
    with pytest.raises(ValueError, match="'seeds' must be a list.*-y 'seeds: \\[0, 1, 2\\]'"):
        check_list_parameters({"seeds": "[0, 1, 2]"}, ["seeds"])
