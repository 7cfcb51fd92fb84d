"""Figures 3, 11-13, 15: variants of the fine-tuning recipe beside WiSE-FT; the choice on val, the report on test."""
import pandas as pd
import pytest

from wiseft_lib.params import ParamsError
from wiseft_lib.studies.fig3_hyperparameters import Fig3Params
from wiseft_lib.studies.fig3_hyperparameters import run as run_fig3
from wiseft_lib.studies.fig13_linear_classifier_alternatives import Fig13Params
from wiseft_lib.studies.fig13_linear_classifier_alternatives import run as run_fig13

from helpers import forbid


def test_variants_are_checked_when_the_params_are_built(tmp_path):
    base = dict(output_dir=str(tmp_path / "o"))
    with pytest.raises(ParamsError, match="'x' must be a mapping with a 'family'"):
        Fig3Params(**base, variants={"x": {"e2e": {"lr": 1e-3}}})
    with pytest.raises(ParamsError, match="'x' has unknown key\\(s\\) \\['lr'\\]"):
        Fig3Params(**base, variants={"x": {"family": "f", "lr": 1e-3}})
    with pytest.raises(ParamsError, match="parameter 'variants', 'x'.*'e2e'.*optimiser"):
        Fig3Params(**base, variants={"x": {"family": "f", "e2e": {"optimiser": "sgd"}}})
    with pytest.raises(ParamsError, match="'variant_alphas' must contain 1.0"):
        Fig3Params(**base, variant_alphas=[0.5])
    with pytest.raises(ParamsError, match="Figure 13 is linear only"):
        Fig13Params(**base, modes=["end-to-end"])


@pytest.mark.slow
def test_fig3_reuses_the_reference_fine_tune_and_chooses_on_val(tmp_path, fashion_mnist_root, monkeypatch):
    variants = {"reference": {"family": "optimizer", "e2e": {}},
                "SGD": {"family": "optimizer", "e2e": {"optimizer": "sgd", "lr": 0.01, "weight_decay": 0.0}},
                "stopped": {"family": "early stopping", "e2e": {"stop_after_epochs": 1}}}
    params = Fig3Params(output_dir=str(tmp_path / "fig3"), runs_dir=str(tmp_path / "runs"), smoke=True, seeds=[0, 1],
                        variants=variants)
    result = run_fig3(params, progress=False)
    runs = list((tmp_path / "runs" / "finetune").iterdir())
    assert len(runs) == 2 * 2  # per seed: the reference (shared with its variant) and SGD; "stopped" at 1 of 1
    # epochs in smoke is the reference run itself
    pts = result.points.set_index("variant")
    assert pts.loc["reference", "id_acc"] == pytest.approx(
        result.reference.groupby("alpha")["id_acc"].mean().loc[1.0])
    opt = pts[pts["family"] == "optimizer"]
    assert opt["chosen_on_val"].sum() == 1 and opt.loc[opt["chosen_on_val"], "val_id_acc"].item() == opt["val_id_acc"].max()
    assert set(result.matched["family"]) == {"optimizer", "early stopping"}
    for stem in ("points", "matched", "claims"):
        assert (tmp_path / "fig3" / f"{stem}.md").exists()
    assert (tmp_path / "fig3" / "fig3_hyperparameters.png").exists()
    assert set(pd.read_csv(tmp_path / "fig3" / "variants.csv")["variant"]) == set(variants)

    forbid(monkeypatch, "wiseft_lib.finetune.finetune", "wiseft_lib.core.evaluate.evaluate")  # all cached
    again = run_fig3(params, progress=False)
    pd.testing.assert_frame_equal(result.points, again.points)


@pytest.mark.slow
def test_fig13_runs_its_variants_and_curves_on_cached_features(tmp_path, fashion_mnist_root):
    variants = {"search, l1": {"family": "regularizer", "linear_method": "search",
                               "linear": {"regularizer": "l1", "n_configs": 3, "epochs": 2}},
                "random init": {"family": "init", "linear": {"head_init": "random"}}}
    result = run_fig13(Fig13Params(output_dir=str(tmp_path / "fig13"), runs_dir=str(tmp_path / "runs"), smoke=True,
                                   variants=variants, bernoulli_draws=2), progress=False)
    assert set(result.points["variant"]) == set(variants)
    assert set(result.extra["mode"]) == {"output ensemble (logit)", "output ensemble (prob)",
                                         "random interpolation (Bernoulli)"}
    assert len(result.extra_matched) == 3 * 1  # smoke alphas 0, 0.5, 1: one inner point per curve
    assert any("Bernoulli" in c for c in result.claims["claim"])
    trials = list((tmp_path / "runs" / "linear").glob("*/trials.csv"))
    assert len(trials) == 1 and len(pd.read_csv(trials[0])) == 2  # smoke: 2 drawn recipes


def test_table13_params_name_their_models(tmp_path):
    from wiseft_lib.studies.table13_output_ensembles import Table13Params

    base = dict(output_dir=str(tmp_path / "o"))
    with pytest.raises(ParamsError, match="'others'.*standard:NAME.*timm:NAME"):
        Table13Params(**base, others=["efficientnet_b6"])
    with pytest.raises(ParamsError, match="unknown standard model; known: linear-e1"):
        Table13Params(**base, others=["standard:resnet50"])
    with pytest.raises(ParamsError, match="must contain 0, 1 and report_alpha=0.5"):
        Table13Params(**base, alphas=[0.0, 1.0])
    with pytest.raises(ParamsError, match="'published_names' names \\['timm:x'\\]"):
        Table13Params(**base, published_names={"timm:x": "NoisyStudent EfficientNet-B6"})


@pytest.mark.slow
def test_table13_ensembles_a_standard_model_and_caches_every_logit(tmp_path, fashion_mnist_root, monkeypatch):
    from wiseft_lib.studies.table13_output_ensembles import Table13Params
    from wiseft_lib.studies.table13_output_ensembles import run as run_table13

    params = Table13Params(output_dir=str(tmp_path / "t13"), runs_dir=str(tmp_path / "runs"), smoke=True,
                           others=["standard:linear-e1"])
    result = run_table13(params, progress=False)
    curve = result.curve.groupby(["mode", "alpha"])["id_acc"].mean()
    assert curve[("standard:linear-e1 (logit)", 0.0)] == curve[("standard:linear-e1 (prob)", 0.0)]  # zero-shot
    assert curve[("standard:linear-e1 (logit)", 1.0)] == curve[("standard:linear-e1 (prob)", 1.0)]  # the other
    assert result.table["row"].tolist() == ["zero-shot", "standard:linear-e1 alone",
                                            "ensemble with standard:linear-e1 (logit), alpha 0.5",
                                            "ensemble with standard:linear-e1 (prob), alpha 0.5"]
    assert len(list((tmp_path / "runs").glob("*/*/logits/*.safetensors"))) == 2 * 6  # two models x six sets
    forbid(monkeypatch, "wiseft_lib.core.evaluate.predict_logits", "wiseft_lib.mini.standard.train_standard")
    again = run_table13(params, progress=False)
    pd.testing.assert_frame_equal(result.table, again.table)
    assert (tmp_path / "t13" / "table13_output_ensembles.png").exists()


def test_a_variant_merges_its_recipe_into_the_studys_and_smoke_keeps_two_per_family(tmp_path):
    from wiseft_lib.studies.baselines import variant_config

    variants = {f"v{i}": {"family": "lr", "e2e": {"lr": 10.0 ** -i}} for i in range(2, 6)}
    variants["ra"] = {"family": "augment", "augment": "randaugment"}
    p = Fig3Params(output_dir=str(tmp_path / "o"), variants=variants,
                   e2e={"epochs": 10, "lr": 5e-4, "batch_size": 64, "weight_decay": 0.1, "warmup_steps": 30})
    cfg = variant_config(p, variants["v3"])
    assert cfg.e2e == {"epochs": 10, "lr": 1e-3, "batch_size": 64, "weight_decay": 0.1, "warmup_steps": 30}
    assert cfg.alphas == [0.5, 1.0] and cfg.augment == "clip"
    assert variant_config(p, variants["ra"]).augment == "randaugment"
    search = {"family": "reg", "linear_method": "search", "linear": {"regularizer": "l1", "n_configs": 5}}
    lc = variant_config(Fig13Params(output_dir=str(tmp_path / "o13")), search)
    assert lc.linear == {"regularizer": "l1", "n_configs": 5}  # another method: its own arguments, not merged
    smoke = p.smoke_version()
    assert list(smoke.variants) == ["v2", "v3", "ra"]
    assert variant_config(smoke, variants["v5"]).e2e["epochs"] == 1
