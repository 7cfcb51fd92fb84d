"""The paper's linear-classifier search (Figure 13): seeded draws from its distributions, the choice made on
held-out training data, the chosen recipe refit on all of it; and the curve's `linear_method: search`."""
import numpy as np
import pytest
import torch

from wiseft_lib.core.models import ClassificationHead
from wiseft_lib.finetune.lc_search import LinearSearch, sample_recipes, search_linear_head


def blobs(n=400, k=4, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 2
    y = torch.randint(0, k, (n,), generator=g)
    return centers[y] + torch.randn(n, d, generator=g), y, ClassificationHead(torch.randn(k, d, generator=g) * 5,
                                                                              torch.zeros(k))


def test_recipes_are_seeded_and_drawn_from_the_papers_ranges():
    for reg in ("none", "weight_decay", "l1", "label_smoothing"):
        search = LinearSearch(regularizer=reg, n_configs=200)
        a, b = sample_recipes(search, seed=3), sample_recipes(search, seed=3)
        assert a == b and a != sample_recipes(search, seed=4)
        lr = np.array([r["lr"] for r in a])
        assert lr.min() >= 1e-6 and lr.max() <= 1.0 and lr.min() < 1e-5 and lr.max() > 0.1  # 10^-U[0, 6]
        assert {r["batch_size"] for r in a} == {64, 128, 256}
        for field, (lo, hi) in {"weight_decay": (1e-4, 1.0), "l1": (1e-8, 1e-4), "label_smoothing": (0.0, 0.25)}.items():
            values = np.array([r[field] for r in a])
            if field == reg:
                assert values.min() >= lo and values.max() <= hi and values.std() > 0
            else:
                assert (values == 0).all()  # one regularizer at a time
    assert sample_recipes(LinearSearch(regularizer="l1", n_configs=5), 0) != \
        sample_recipes(LinearSearch(regularizer="weight_decay", n_configs=5), 0)  # a stream per regularizer


def test_the_choice_is_the_best_held_out_trial_and_it_is_refit_on_everything(monkeypatch):
    import wiseft_lib.finetune.lc_search as lcs

    x, y, head = blobs()
    calls = []
    real = lcs.train_head
    monkeypatch.setattr(lcs, "train_head", lambda f, l, h, r, **kw: calls.append(len(l)) or real(f, l, h, r, **kw))
    found = search_linear_head(x, y, head, regularizer="none", n_configs=4, epochs=3, warmup_steps=2, seed=0,
                               progress=False)
    t = found.trials
    assert len(t) == 4 and t["chosen"].sum() == 1
    assert t.loc[t["chosen"], "heldout_acc"].item() == t["heldout_acc"].max()
    assert len(set(calls[:4])) == 1 and 355 <= calls[0] <= 365 and calls[4] == 400  # ~10% held out, then all
    chosen = t[t["chosen"]].iloc[0]
    assert found.recipe["lr"] == chosen["lr"] and found.recipe["batch_size"] == chosen["batch_size"]
    assert t["heldout_acc"].max() > 80 > t["heldout_acc"].min()  # the search matters: some drawn LRs do not learn
    acc = (found.head(x).argmax(1) == y).float().mean().item()
    assert acc > 0.8


def test_bad_search_settings_are_named():
    with pytest.raises(ValueError, match="regularizer must be one of"):
        LinearSearch(regularizer="dropout")
    with pytest.raises(ValueError, match="holdout_fraction must be in"):
        LinearSearch(holdout_fraction=1.5)
    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.params import ParamsError

    with pytest.raises(ParamsError, match="parameter 'linear'.*LinearSearch fields"):
        CurveConfig(modes=["linear"], linear_method="search", linear={"regularizer": "l1", "lr": 0.1})
    with pytest.raises(ParamsError, match="linear_method.*'adamw', 'probe', 'search'"):
        CurveConfig(linear_method="lbfgs")


@pytest.mark.slow
def test_a_curve_with_a_searched_head_keeps_the_trials_and_reuses_the_run(tmp_path, fashion_mnist_root, monkeypatch):
    import pandas as pd

    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.curve import wiseft_curve
    from wiseft_lib.experiment.runs import RunCache

    from helpers import forbid

    cfg = CurveConfig(modes=["linear"], linear_method="search", n_train_linear=500, n_test=200, alphas=[0.0, 1.0],
                      linear={"regularizer": "label_smoothing", "n_configs": 2, "epochs": 2, "warmup_steps": 2})
    runs = RunCache(tmp_path / "runs")
    first = wiseft_curve(cfg, 0, runs=runs, progress=False)
    trials = pd.read_csv(next((runs.root / "linear").glob("*/trials.csv")))
    assert len(trials) == 2 and trials["label_smoothing"].between(0, 0.25).all() and trials["chosen"].sum() == 1
    forbid(monkeypatch, "wiseft_lib.finetune.lc_search.search_linear_head")
    again = wiseft_curve(cfg, 0, runs=runs, progress=False)
    pd.testing.assert_frame_equal(first, again)
