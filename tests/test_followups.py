"""The follow-up methods as ends of a curve (wiseft_lib.experiment.followups): LP-FT, soups, per-group alphas, on
the mini CLIP and real Fashion-MNIST photos at a tiny size."""
import numpy as np
import pandas as pd
import pytest
import torch

from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.endpoints import Endpoints, finetuned_run
from wiseft_lib.experiment.runs import RunCache

E2E = {"epochs": 1, "batch_size": 32, "warmup_steps": 1, "lr": 5e-4}
SETS = ["mini-sketch"]


def _endpoints(runs: RunCache, seed: int = 0, **e2e) -> tuple[Endpoints, Endpoints]:
    cfg = CurveConfig(n_train=64, n_train_linear=64, n_test=60, ood_datasets=SETS, modes=["end-to-end"],
                      alphas=[0.5, 1.0], e2e={**E2E, **e2e})
    val = cfg.as_curve(eval_split="val", ood_datasets=[], alphas=[1.0])
    return Endpoints(cfg, seed, runs, progress=False), Endpoints(val, seed, runs, progress=False)


def test_lpft_fine_tunes_from_the_probe_head_and_is_cached(tmp_path, fashion_mnist_root, monkeypatch):
    from wiseft_lib.experiment import followups
    from wiseft_lib.experiment.followups import lpft_run

    runs = RunCache(tmp_path / "runs")
    ep, _ = _endpoints(runs, lr=1e-7)  # a step too small to move the head: LP-FT's head is the probe's
    ref = lpft_run(ep, probe={"Cs": [1.0]})
    model = ref.load_model(ep)
    probe_ep = Endpoints(ep.cfg.as_curve(modes=["linear"], linear_method="probe", linear={"Cs": [1.0]}), 0, runs,
                         progress=False)
    probe_head = finetuned_run(probe_ep, "linear").load_head(probe_ep)
    zs_head = ep.zeroshot().classification_head
    torch.testing.assert_close(model.classification_head.weight, probe_head.weight, atol=1e-4, rtol=0)
    assert not torch.allclose(model.classification_head.weight, zs_head.weight, atol=1e-2)
    assert runs.record("lpft", ref.key)["parts"]["probe"].startswith("linear/")
    monkeypatch.setattr(followups, "finetune", lambda *a, **k: pytest.fail("a cached LP-FT trained again"))
    assert lpft_run(_endpoints(runs, lr=1e-7)[0], probe={"Cs": [1.0]}) == ref


def test_soups_average_their_ingredients_and_the_greedy_one_is_chosen_on_val(tmp_path, fashion_mnist_root):
    from wiseft_lib.experiment.followups import soup_runs, val_top1

    runs = RunCache(tmp_path / "runs")
    ep, val_ep = _endpoints(runs)
    ingredients = {f"lr {lr}": finetuned_run(_endpoints(runs, lr=lr)[0], "end-to-end") for lr in (5e-4, 2e-3)}
    ingredients["the first again"] = ingredients["lr 0.0005"]  # the same run under two names counts once
    refs, trace = soup_runs(ep, val_ep, ingredients)
    states = [r.load_model(ep).state_dict() for r in list(ingredients.values())[:2]]
    uniform = refs["uniform soup"].load_model(ep).state_dict()
    for key in ("image_encoder.conv1.weight", "classification_head.weight"):
        torch.testing.assert_close(uniform[key], (states[0][key] + states[1][key]) / 2)
    assert len(trace) == 2 and trace["val_score"].iloc[0] == max(trace["val_score"])  # best ingredient first
    kept = trace[trace["kept"]]
    greedy = refs["greedy soup"].load_model(ep)
    assert val_top1(greedy, val_ep) == pytest.approx(kept["soup_val_score"].iloc[-1])
    assert val_top1(greedy, val_ep) >= trace["val_score"].max()  # the greedy rule never lowers val accuracy
    again, trace_again = soup_runs(ep, val_ep, ingredients)  # read from the cache, trace and all
    assert again == refs
    pd.testing.assert_frame_equal(trace_again, trace, check_dtype=False)


def test_group_alphas_are_searched_on_val_and_include_every_single_alpha(tmp_path, fashion_mnist_root):
    from wiseft_lib.core.layer_groups import GROUPS, interpolate_groups_in_place, layer_groups
    from wiseft_lib.experiment.followups import group_alpha_search, val_top1

    runs = RunCache(tmp_path / "runs")
    ep, val_ep = _endpoints(runs, lr=2e-3)
    run = finetuned_run(ep, "end-to-end")
    search = group_alpha_search(ep, val_ep, run, n_trials=2, grid=[0.0, 0.5, 1.0], seed=0)
    uniform = search.trials[search.trials["phase"] == "uniform"]
    assert len(uniform) == 3 and set(search.best) == set(GROUPS)
    assert search.best_score >= search.best_uniform_score == uniform["score"].max()
    tuned = run.load_model(ep)
    theta_0 = {k: v.clone() for k, v in ep.zeroshot().state_dict().items()}
    theta_1 = {k: v.clone() for k, v in tuned.state_dict().items()}
    interpolate_groups_in_place(tuned, theta_0, theta_1, search.best, layer_groups(theta_0))
    assert val_top1(tuned, val_ep) == pytest.approx(search.best_score)  # the chosen model scores what was searched
    assert np.isclose(search.trials["score"].max(), search.best_score)
