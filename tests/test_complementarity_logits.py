"""Figure 5's heads and their logits on a curve's evaluation sets (wiseft_lib.experiment.complementarity_logits)."""
import numpy as np
import pytest
import torch

from wiseft_lib.experiment.complementarity_logits import (
    HEADS,
    complementarity_heads,
    complementarity_logits,
    halves,
    head_logits,
)


def test_halves_are_disjoint_stratified_and_seeded():
    labels = torch.tensor([0] * 10 + [1] * 6 + [2] * 3)
    a, b = halves(labels, seed=0)
    assert len(np.intersect1d(a, b)) == 0 and len(a) + len(b) == len(labels)
    assert np.bincount(labels[a].numpy()).tolist() == [5, 3, 1] and np.bincount(labels[b].numpy()).tolist() == [5, 3, 2]
    assert np.array_equal(halves(labels, 0)[0], a) and not np.array_equal(halves(labels, 1)[0], a)


def test_head_logits_run_every_head_on_cpu_and_project_them():
    from helpers import tiny_classifier

    heads = {"x": tiny_classifier(0).classification_head, "y": tiny_classifier(1).classification_head}
    feats = torch.randn(6, 32, dtype=torch.float64)  # fp64 in: the heads see fp32
    plain = head_logits(heads, feats)
    assert set(plain) == {"x", "y"} and plain["x"].dtype == torch.float32 and not plain["x"].requires_grad
    torch.testing.assert_close(plain["y"], heads["y"](feats.float()))
    keep = lambda v: v[:, [3, 0]]  # noqa: E731  (a set scored on classes 3 and 0 of the training label space)
    projected = head_logits(heads, feats, keep)
    assert all(torch.equal(projected[k], plain[k][:, [3, 0]]) for k in heads)


@pytest.mark.slow
def test_complementarity_logits_are_the_five_heads_on_each_sets_cached_features(tmp_path, fashion_mnist_root,
                                                                               monkeypatch):
    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.endpoints import Endpoints, finetuned_run
    from wiseft_lib.experiment.runs import RunCache
    from wiseft_lib.finetune.lc_search import train_head

    from helpers import forbid

    cfg = CurveConfig(modes=["linear"], n_train_linear=300, n_test=100, ood_datasets=["mini-sketch"],
                      alphas=[0.0, 0.5, 1.0], linear={"epochs": 2, "lr": 0.01, "batch_size": 128, "warmup_steps": 2})
    ep = Endpoints(cfg, 0, RunCache(tmp_path / "runs"), progress=False)
    alpha = 0.3
    rows = list(complementarity_logits(ep, alpha))
    assert [name for name, _, _ in rows] == ["mini-photo", "mini-sketch"]

    forbid(monkeypatch, "wiseft_lib.experiment.endpoints._train_head")  # the LC is the run cache's, not trained again
    heads = complementarity_heads(ep, alpha)
    lc = finetuned_run(ep, "linear").load_head(ep)
    assert torch.equal(heads["lc"].weight, lc.weight) and torch.equal(heads["lc"].bias, lc.bias)
    x, y = ep.train_features()
    half_a, _ = halves(y, 0)
    retrained = train_head(x[half_a], y[half_a], heads["zs"], dict(cfg.linear), seed=0, device=ep.device)
    assert torch.equal(retrained.weight, heads["a"].weight)  # half A's LC: the recipe on those images only, seeded
    assert not torch.equal(heads["a"].weight, heads["b"].weight)
    assert not torch.equal(heads["a"].weight, heads["lc"].weight)

    for name, logits, labels in rows:
        feats, expected_labels = ep.features(name)
        assert torch.equal(labels, expected_labels) and tuple(logits) == HEADS
        assert all(v.shape == (len(labels), 10) for v in logits.values())
        with torch.no_grad():
            for k in HEADS:  # the heads made again (cached LC, seeded halves) give the same logits
                torch.testing.assert_close(logits[k], heads[k](feats.cpu().float()), rtol=0, atol=0)
            zs = ep.zeroshot().classification_head.cpu().float()(feats.cpu().float())
        torch.testing.assert_close(logits["zs"], zs)
        # a linear head's logits are linear in its weights: WiSE-FT at alpha is the same mix of the two logits
        torch.testing.assert_close(logits["mix"], (1 - alpha) * logits["zs"] + alpha * logits["lc"], rtol=1e-4,
                                   atol=1e-4)
        assert not torch.equal(logits["zs"], logits["lc"])  # the LC moved from the zero-shot head
