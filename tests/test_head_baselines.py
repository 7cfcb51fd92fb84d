"""Random (Bernoulli) interpolation and the linear classifier's curves computed on cached features (Figure 13)."""
import pytest
import torch

from wiseft_lib.core.interpolate import bernoulli_interpolate


def test_bernoulli_per_element_mixes_single_weights_and_keeps_the_ends():
    t0 = {"w": torch.zeros(100, 100), "b": torch.zeros(100), "n": torch.tensor(3)}
    t1 = {"w": torch.ones(100, 100), "b": torch.ones(100), "n": torch.tensor(3)}
    mixed = bernoulli_interpolate(t0, t1, 0.3, seed=1, per="element")
    assert set(mixed["w"].unique().tolist()) == {0.0, 1.0}  # every weight whole from one end
    assert mixed["w"].mean().item() == pytest.approx(0.3, abs=0.02)  # expected weights: WiSE-FT's
    assert torch.equal(mixed["w"], bernoulli_interpolate(t0, t1, 0.3, seed=1, per="element")["w"])
    assert not torch.equal(mixed["w"], bernoulli_interpolate(t0, t1, 0.3, seed=2, per="element")["w"])
    for a, ref in ((0.0, t0), (1.0, t1)):
        ends = bernoulli_interpolate(t0, t1, a, per="element")
        assert all(torch.equal(ends[k], ref[k]) for k in ref)
    assert bernoulli_interpolate(t0, t1, 0.3, per="element")["n"].item() == 3  # integer buffers: copied
    per_tensor = bernoulli_interpolate(t0, t1, 0.5, seed=0)
    assert all(v.unique().numel() == 1 for k, v in per_tensor.items() if k != "n")
    with pytest.raises(ValueError, match="per must be 'tensor' or 'element'"):
        bernoulli_interpolate(t0, t1, 0.5, per="layer")


@pytest.mark.slow
def test_head_curves_share_wiseft_lcs_ends_and_train_nothing(tmp_path, fashion_mnist_root, monkeypatch):
    from wiseft_lib.baselines.head_baselines import BERNOULLI, head_baseline_curves
    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.curve import curve_table, wiseft_curve
    from wiseft_lib.experiment.runs import RunCache

    from helpers import forbid

    cfg = CurveConfig(modes=["linear"], n_train_linear=500, n_test=200, alphas=[0.0, 0.5, 1.0],
                      linear={"epochs": 2, "lr": 0.01, "batch_size": 128, "warmup_steps": 2})
    runs = RunCache(tmp_path / "runs")
    wiseft = curve_table(wiseft_curve(cfg, 0, runs=runs, progress=False)).set_index("alpha")
    forbid(monkeypatch, "wiseft_lib.finetune.finetune")  # the same cached LC
    curves = curve_table(head_baseline_curves(cfg, 0, runs=runs, bernoulli_draws=2))
    assert set(curves["mode"]) == {"output ensemble (logit)", "output ensemble (prob)", BERNOULLI}
    for mode, g in curves.groupby("mode"):
        g = g.set_index("alpha")
        for alpha in (0.0, 1.0):  # every curve joins the same two heads
            assert g.loc[alpha, "id_acc"] == pytest.approx(wiseft.loc[alpha, "id_acc"], abs=1e-6), (mode, alpha)
    # a linear head's logits are linear in its weights: the logit ensemble IS WiSE-FT LC, at every alpha
    logit = curves[curves["mode"] == "output ensemble (logit)"].set_index("alpha")
    for alpha in (0.0, 0.5, 1.0):
        assert logit.loc[alpha, "id_acc"] == pytest.approx(wiseft.loc[alpha, "id_acc"], abs=0.51)
        assert logit.loc[alpha, "ood_avg"] == pytest.approx(wiseft.loc[alpha, "ood_avg"], abs=0.51)
    with pytest.raises(ValueError, match="bernoulli_draws must be >= 0"):
        head_baseline_curves(cfg, 0, runs=runs, bernoulli_draws=-1)
