"""Output-space ensembles of a curve's two ends (Figure 10): definitions, cached logits (the matched comparison:
test_matched_id.py)."""
import pytest
import torch

from wiseft_lib.baselines.output_ensembles import output_ensemble_curve
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import curve_table, wiseft_curve
from wiseft_lib.experiment.runs import RunCache

from helpers import forbid


@pytest.mark.slow
def test_ensembles_join_the_same_endpoints_as_wiseft_and_reuse_cached_logits(tmp_path, fashion_mnist_root,
                                                                             monkeypatch):
    cfg = CurveConfig(modes=["end-to-end"], n_train=256, n_test=200, alphas=[0.0, 0.5, 1.0],
                      e2e={"epochs": 1, "warmup_steps": 2, "batch_size": 64})
    runs = RunCache(tmp_path / "runs")
    weights = curve_table(wiseft_curve(cfg, 0, runs=runs, progress=False))
    forbid(monkeypatch, "wiseft_lib.finetune.finetune")  # the ensembles use WiSE-FT's fine-tune
    ens = curve_table(output_ensemble_curve(cfg, 0, runs=runs, progress=False))
    assert set(ens["mode"]) == {"output ensemble (logit)", "output ensemble (prob)"}
    for mode, g in ens.groupby("mode"):
        g = g.set_index("alpha")
        w = weights.set_index("alpha")
        for alpha in (0.0, 1.0):  # the ends of every curve are the same two models
            assert g.loc[alpha, "id_acc"] == pytest.approx(w.loc[alpha, "id_acc"], abs=0.51), (mode, alpha)
    logits = list((runs.root / "finetune").glob("*/logits/*.safetensors"))
    assert len(logits) == 2 * 6  # two endpoints x six evaluation sets, each run once
    forbid(monkeypatch, "wiseft_lib.core.evaluate.predict_logits")  # new alphas: an argmax over cached logits
    more = output_ensemble_curve(CurveConfig(**{**cfg.to_dict(), "alphas": [0.25]}), 0, runs=runs,
                                 spaces=["logit"], progress=False)
    assert set(more["alpha"]) == {0.25} and set(more["mode"]) == {"output ensemble (logit)"}
    import wiseft_lib.baselines.output_ensembles as oe

    reads, real_load = [], oe.load_file
    monkeypatch.setattr(oe, "load_file", lambda path: reads.append(path) or real_load(path))
    forbid(monkeypatch, "wiseft_lib.core.evaluate.preprocess_once")  # scoring cached logits decodes no image
    output_ensemble_curve(CurveConfig(**{**cfg.to_dict(), "alphas": [0.1, 0.2]}), 0, runs=runs, progress=False)
    assert len(reads) == 2 * 6, "each endpoint's logits are read once per set, for every alpha and space"


def test_an_unknown_space_is_named():
    with pytest.raises(ValueError, match="unknown ensemble space.*'softmax'"):
        output_ensemble_curve(CurveConfig(), spaces=["softmax"])


def test_logit_ensemble_at_the_ends_is_each_model():
    from wiseft_lib.core.ensemble import ensemble_logits, ensemble_probs

    zs, ft = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.equal(ensemble_logits(zs, ft, 0.0), zs) and torch.equal(ensemble_logits(zs, ft, 1.0), ft)
    assert torch.allclose(ensemble_probs(zs, ft, 1.0).exp(), ft.softmax(-1))
