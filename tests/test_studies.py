"""Studies: params files, the run cache across runs and studies, checkpoints from elsewhere, killed sweeps.

Integration on the mini data with smoke-sized runs (seconds each).
"""
from pathlib import Path

import pandas as pd
import pytest

from wiseft_lib.studies import STUDIES, get_study
from wiseft_lib.studies.fig1_id_vs_ood import Fig1Params, run

from helpers import forbid

ROOT = Path(__file__).resolve().parents[1]


def test_every_params_file_loads_with_its_study_dataclass():
    files = sorted((ROOT / "params").glob("*/*.yaml"))
    assert {f.parent.name for f in files} == {"mini", "paper", "workshop"}
    for f in files:
        params = get_study(f.stem).params.from_yaml(f)  # an unknown study or key, a wrong type: fails here
        assert params.output_dir == f"outputs/{f.parent.name}/{f.stem}", f
    for name in STUDIES:  # Figure 26 needs ObjectNet and its class names: a paper preset only
        preset = "paper" if name == "fig26_objectnet_names" else "mini"
        assert (ROOT / "params" / preset / f"{name}.yaml").exists(), f"{name} has no {preset} preset"


def test_the_workshop_tier_is_the_mini_study_at_workshop_size():
    """params/workshop: every mini notebook, the same study (model, data, recipe keys) at a size that runs in
    minutes: one seed, at most 1,000 test images per set, at most 11 alphas (the runtimes: README, make reproduce)."""
    import yaml

    mini = {f.stem for f in (ROOT / "params" / "mini").glob("*.yaml")}
    workshop = {f.stem for f in (ROOT / "params" / "workshop").glob("*.yaml")}
    assert workshop == mini
    for name in sorted(workshop):
        small = yaml.safe_load((ROOT / "params" / "workshop" / f"{name}.yaml").read_text())
        full = yaml.safe_load((ROOT / "params" / "mini" / f"{name}.yaml").read_text())
        assert set(full) <= set(small), name  # every parameter the mini sets, at another value (or the same)
        assert small.get("seeds", [0]) == [0], name
        assert small.get("n_test") is None or small["n_test"] <= 1000, name
        assert len(small.get("alphas", [])) <= 11, name
        for key in ("model", "id_dataset", "e2e", "linear", "linear_method"):
            mini_value = str(full.get(key)).replace("outputs/mini/", "outputs/workshop/")  # own demo folders
            assert str(small.get(key)) == mini_value, (name, key)  # the mini's recipe, not a new one


def results(path: Path) -> pd.DataFrame:
    from wiseft_lib.experiment.results import ResultsStore

    return ResultsStore(path).to_frame()


def smoke(tmp_path, **kw) -> Fig1Params:
    values = dict(smoke=True, output_dir=str(tmp_path / "fig1"), standard_models=["linear-e1"],
                  zeroshot_pretrained=["fmnist-budget5"])
    return Fig1Params(**{**values, **kw})


@pytest.mark.slow
def test_a_second_run_reuses_every_fine_tune_score_and_reference_model(tmp_path, fashion_mnist_root, monkeypatch):
    first = run(smoke(tmp_path), progress=False)
    curve_csv = (tmp_path / "fig1" / "curve.csv").read_bytes()
    rows = len(results(tmp_path / "fig1" / "results.sqlite"))
    forbid(monkeypatch, "wiseft_lib.finetune.finetune", "wiseft_lib.core.evaluate.evaluate",
           "wiseft_lib.core.evaluate.evaluate_head", "wiseft_lib.core.evaluate.preprocess_once",
           "wiseft_lib.mini.standard.standard_points", "wiseft_lib.experiment.reference.zeroshot_scores_many",
           "wiseft_lib.core.zeroshot.zeroshot_classifier")
    second = run(smoke(tmp_path), progress=False)
    assert (tmp_path / "fig1" / "curve.csv").read_bytes() == curve_csv
    pd.testing.assert_frame_equal(first.baselines, second.baselines)
    # same settings: the results store's rows are replaced, not duplicated
    assert len(results(tmp_path / "fig1" / "results.sqlite")) == rows


@pytest.mark.slow
def test_other_settings_add_results_and_another_study_reuses_the_fine_tunes(tmp_path, fashion_mnist_root,
                                                                            monkeypatch):
    run(smoke(tmp_path, modes=["linear"], standard_models=[], zeroshot_pretrained=[]), progress=False)
    store = tmp_path / "fig1" / "results.sqlite"
    rows = len(results(store))
    forbid(monkeypatch, "wiseft_lib.finetune.finetune")  # the LC head is reused; only new images are scored
    run(smoke(tmp_path, modes=["linear"], standard_models=[], zeroshot_pretrained=[], n_test=150), progress=False)
    table = results(store)
    assert len(table) == 2 * rows and table["run"].nunique() == 2
    # a second study with its own output folder, same preset: same run cache, nothing trained or scored
    forbid(monkeypatch, "wiseft_lib.core.evaluate.evaluate_head")
    run(smoke(tmp_path, modes=["linear"], standard_models=[], zeroshot_pretrained=[], n_test=150,
              output_dir=str(tmp_path / "table1")), progress=False)
    assert (tmp_path / "table1" / "curve.csv").read_bytes() == (tmp_path / "fig1" / "curve.csv").read_bytes()


@pytest.mark.slow
def test_val_and_test_splits_are_different_images(tmp_path, fashion_mnist_root):
    common = dict(modes=["linear"], standard_models=[], zeroshot_pretrained=[], alphas=[0.0])
    test = run(smoke(tmp_path, **common), progress=False).curve
    val = run(smoke(tmp_path, eval_split="val", output_dir=str(tmp_path / "val"), **common), progress=False).curve
    assert not test[["id_acc", "ood_avg"]].equals(val[["id_acc", "ood_avg"]])


@pytest.mark.slow
def test_checkpoints_from_elsewhere_replace_fine_tuning(tmp_path, fashion_mnist_root, monkeypatch, tiny_registered):
    from wiseft_lib.cli import main
    from wiseft_lib.core.evaluate import evaluate
    from wiseft_lib.core.models import ImageClassifier, create_model
    from wiseft_lib.data import get_dataset

    for mode in ("end-to-end", "linear"):  # what `torchrun -m wiseft_lib.finetune` writes, on one process here
        assert main(["finetune", "--model", "wiseft-mini", "--train-dataset", "mini-photo", "--k-shot", "5",
                     "--mode", mode, "--output-dir", str(tmp_path / mode), "--epochs", "1", "--batch-size", "25",
                     "--lr", "1e-4", "--warmup-steps", "1", "--no-progress"]) == 0
    e2e, lc = (tmp_path / m / "finetuned.safetensors" for m in ("end-to-end", "linear"))
    forbid(monkeypatch, "wiseft_lib.finetune.finetune")
    result = run(smoke(tmp_path, standard_models=[], zeroshot_pretrained=[], e2e_checkpoint=str(e2e),
                       linear_checkpoint=str(lc)), progress=False)
    ft_row = result.curve.set_index(["mode", "alpha"]).loc[("end-to-end", 1.0)]
    _, _, eval_tf = create_model("wiseft-mini")
    direct = evaluate(ImageClassifier.load(e2e), get_dataset("mini-photo", transform=eval_tf, n_test=200),
                      progress=False)["top1"]
    assert ft_row["id_acc"] == pytest.approx(direct), "alpha=1 is the checkpoint itself"

    with pytest.raises(ValueError, match="linear_checkpoint .* image encoder differs from the zero-shot"):
        run(smoke(tmp_path, modes=["linear"], linear_checkpoint=str(e2e)), progress=False)
    from helpers import tiny_classifier

    tiny_classifier(n_classes=10).save(tmp_path / "tiny.safetensors")
    with pytest.raises(ValueError, match="e2e_checkpoint .* is a 'wiseft-test-tiny' model, this study uses "
                                         "'wiseft-mini'; its head is \\(10, 32\\)"):
        run(smoke(tmp_path, modes=["end-to-end"], e2e_checkpoint=str(tmp_path / "tiny.safetensors")), progress=False)
    (tmp_path / "tiny.json").write_text("{}")
    with pytest.raises(ValueError, match="e2e_checkpoint .* cannot be loaded: .* not a wiseft ImageClassifier"):
        run(smoke(tmp_path, modes=["end-to-end"], e2e_checkpoint=str(tmp_path / "tiny.safetensors")), progress=False)


@pytest.mark.slow
def test_a_killed_sweep_continues_where_it_stopped(tmp_path, fashion_mnist_root, monkeypatch):
    from wiseft_lib.experiment.runs import RunCache

    real, calls = RunCache.add_scores, {"n": 0}

    class Killed(BaseException):
        pass

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 8:
            raise Killed
        return real(*a, **k)

    params = smoke(tmp_path, modes=["end-to-end"], standard_models=[], zeroshot_pretrained=[])
    monkeypatch.setattr(RunCache, "add_scores", dying)
    with pytest.raises(Killed):
        run(params, progress=False)
    calls["n"] = -10**6  # no more deaths; count what the rerun scores
    run(params, progress=False)
    # 3 alphas x 6 test sets, and the ID val split at each alpha (the alpha to deploy), less the 7 kept
    assert calls["n"] + 10**6 == 3 * 6 + 3 - 7, "the 7 scores written before the kill are not recomputed"


@pytest.mark.slow
def test_fig1_writes_clopper_pearson_figures_and_the_seed_spread(tmp_path, fashion_mnist_root):
    import numpy as np
    from matplotlib.container import ErrorbarContainer

    from wiseft_lib.analysis.shift_tables import clopper_pearson

    result = run(smoke(tmp_path, modes=["linear"], standard_models=[], zeroshot_pretrained=[], seeds=[0, 1]),
                 progress=False)
    out, shifts = tmp_path / "fig1", result.params.ood_datasets
    for name in ("fig1_id_vs_ood.png", "fig1_per_set.png", "fig1_per_set.pdf", "seed_spread.csv", "seed_spread.md"):
        assert (out / name).stat().st_size > 0, name
    spread = pd.read_csv(out / "seed_spread.csv")
    assert list(spread.columns) == ["mode", "alpha", "column", "n_seeds", "mean", "min", "max", "spread_pp"]
    assert set(spread["column"]) == {"id_acc", "ood_avg", *shifts} and set(spread["n_seeds"]) == {2}
    assert len(spread) == 3 * (2 + len(shifts))  # alphas 0, 0.5, 1 of the one mode
    panels = [ax for ax in result.figure_per_set.axes if ax.get_visible()]  # one per shift
    assert [ax.get_ylabel() for ax in panels] == [f"{s} accuracy (%)" for s in shifts]
    (bars,) = [c for c in result.figure.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert bars.has_xerr and not bars.has_yerr
    n_id = int(pd.read_csv(out / "data.csv").set_index("dataset").loc[result.params.id_dataset, "images"])
    zs = result.curve[result.curve["alpha"] == 0.0]["id_acc"].mean()
    lo, hi = clopper_pearson(round(zs / 100 * n_id), n_id)
    drawn = [sorted(s[:, 0] * 100) for lc in bars.lines[2] for s in lc.get_segments()]
    assert any(np.allclose(d, [lo, hi]) for d in drawn), (drawn, lo, hi)


def test_run_study_with_notebook_executes_the_notebook_with_every_parameter_and_no_unknown_warning(
        tmp_path, monkeypatch, caplog):
    """``wiseft run STUDY --notebook`` (what ``make demo`` runs): papermill gets the study's notebook and all its
    parameters, hidden ones included, and its "Passed unknown parameter" warning for those is dropped."""
    import logging

    import papermill

    from wiseft_lib.studies import run_study

    calls = []

    def execute(notebook, executed, *, parameters, **kwargs):
        logging.getLogger("papermill").warning("Passed unknown parameter: n_train")  # what papermill logs
        logging.getLogger("papermill").warning("something else")
        calls.append((Path(notebook).name, Path(executed), parameters, kwargs))

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    out = tmp_path / "fig1"
    with caplog.at_level(logging.WARNING, logger="papermill"):
        executed = run_study("fig1_id_vs_ood", str(ROOT / "params/mini/fig1_id_vs_ood.yaml"),
                             [f"output_dir={out}", "smoke=true"], progress=False, notebook=True)
    (name, path, parameters, kwargs), = calls
    assert name == "fig1_id_vs_ood.ipynb" and path == executed == out / "fig1_id_vs_ood.ipynb"
    assert parameters == Fig1Params.from_yaml(ROOT / "params/mini/fig1_id_vs_ood.yaml",
                                              [f"output_dir={out}", "smoke=true"]).to_dict()
    assert "n_train" in parameters and "n_train" not in Fig1Params.notebook_fields()  # a hidden field, passed
    assert [r.getMessage() for r in caplog.records] == ["something else"]
