"""The pieces of the studies beyond ImageNet (Tables 2, 6, 7; Figures 5, 17-20, 26) on small real inputs."""
import numpy as np
import pandas as pd
import pytest
import torch

from wiseft_lib.params import ParamsError


def test_k_shot_curves_draw_k_per_class_per_seed(tmp_path, fashion_mnist_root):
    from wiseft_lib.data.common import dataset_labels
    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.endpoints import Endpoints
    from wiseft_lib.experiment.runs import RunCache

    cfg = CurveConfig(k_shot=3, modes=["linear"], n_test=50)
    runs = RunCache(tmp_path / "runs")
    draws = [Endpoints(cfg, seed, runs, progress=False).train_set(None, None) for seed in (0, 1)]
    for bundle in draws:
        assert np.bincount(dataset_labels(bundle.dataset)).tolist() == [3] * 10
    assert draws[0].dataset.indices != draws[1].dataset.indices  # each seed its own draw
    record = Endpoints(cfg, 0, runs, progress=False).train_record(None, "eval")
    assert record["k_shot"] == 3 and "k_shot" not in Endpoints(CurveConfig(), 0, runs).train_record(None, "eval")
    with pytest.raises(ParamsError, match="k_shot"):
        CurveConfig(k_shot=0)


def test_transfer_table_rows_and_claims():
    from wiseft_lib.studies.table2_transfer import transfer_claims, transfer_table

    rows = []
    for task, accs in {"a": [50, 70, 65], "b": [40, 60, 62]}.items():
        for split, shift in (("test", 0), ("val", 1)):
            rows += [{"task": task, "split": split, "mode": "end-to-end", "alpha": a, "acc": v + (shift if a == 1.0
                      else 0)} for a, v in zip((0.0, 0.5, 1.0), accs)]
    table = transfer_table(pd.DataFrame(rows)).set_index("row")
    assert table.loc["WiSE-FT E2E, alpha=0.5", "a"] == 70 and table.loc["fine-tuned (E2E)", "b"] == 62
    assert table.loc["  oracle alpha (E2E)", "a"] == 0.5
    assert table.loc["  val-chosen alpha (E2E)", "b"] == 1.0  # val favours the fine-tuned end for b
    claims = transfer_claims(table.reset_index(), ["a", "b"])
    assert claims.iloc[0]["holds"] is False and "1 of 2" in claims.iloc[0]["claim"]  # 1 win of 2 is not most


def test_table6_matches_the_papers_ood_rows_and_judges_headline_metrics():
    from wiseft_lib.studies.table6_further_shifts import further_claims, table6

    rows = []
    for dataset, metric, values in (("mini-photo", "top1", (70, 80, 82)), ("mini-regions", "top1", (60, 65, 68)),
                                    ("mini-regions", "worst_region_acc", (50, 52, 57)),
                                    ("mini-imbalanced", "macro_f1", (40, 38, 39))):
        rows += [{"id_set": "mini-photo", "seed": 0, "mode": "end-to-end", "dataset": dataset, "metric": metric,
                  "alpha": a, "value": v} for a, v in zip((0.0, 1.0, 0.5), values)]
    table = table6(pd.DataFrame(rows), ["mini-regions", "mini-imbalanced"],
                   {"mini-regions": "fmow", "mini-imbalanced": "iwildcam"})
    fmow = table[(table["shift"] == "mini-regions") & (table["metric"] == "worst_region_acc")].iloc[0]
    assert fmow["paper: fine-tuned"] == 46.0  # the OOD row, not FMoW's ID test row
    assert table[(table["shift"] == "mini-regions") & (table["metric"] == "top1")]["paper: fine-tuned"].isna().all()
    assert table.loc[table["shift"] == "mini-photo", "paper_analog"].item() == "ID reference"
    claims = further_claims(table).set_index("claim")["holds"]
    assert claims.filter(like="worst_region_acc): WiSE-FT 0.5").item() is True  # 57 > 52
    assert claims.filter(like="macro_f1): WiSE-FT 0.5").item() is True  # 39 > 38
    assert claims.filter(like="macro_f1): oracle").item() is False  # the best is the zero-shot end
    with pytest.raises(ParamsError, match="linear_shifts"):
        from wiseft_lib.studies.table6_further_shifts import Table6Params
        Table6Params(linear_shifts=["mini-sketch"])


def test_low_data_epochs_grow_for_small_k_and_summary_has_the_oracle():
    from wiseft_lib.studies.fig17_19_low_data import LowDataParams, low_data_claims, low_data_summary

    p = LowDataParams(min_steps=300)
    assert p.task_config("mini-photo", 1, 10).linear["epochs"] == 300  # 10 examples: one step an epoch
    assert p.task_config("mini-photo", None, 10).linear["epochs"] == 30  # the whole pool keeps the recipe
    assert p.task_config("mini-photo", 1, 10).ood_datasets == p.shifts["mini-photo"]
    assert p.task_config("mini-tops", 1, 4).ood_datasets == []
    curves = pd.DataFrame([{"task": "t", "k": "1", "seed": s, "alpha": a, "id_acc": acc}
                           for s, accs in ((0, (50, 60, 55)), (1, (50, 58, 61))) for a, acc in zip((0.0, 0.5, 1.0),
                                                                                                    accs)])
    summary = low_data_summary(curves, [0.0, 0.5, 1.0]).set_index("alpha")
    assert summary.loc["optimal", "id_acc"] == pytest.approx(60.5)  # per draw: 60 and 61
    assert summary.loc["0.5", "id_acc"] == 59 and summary.loc["0.5", "id_acc_std"] == pytest.approx(np.sqrt(2))
    claims = low_data_claims(summary.reset_index())
    assert claims["holds"].tolist() == [True, True]  # 59 > 58 (LC), 59 > 50 (zero-shot)


def test_halves_are_disjoint_stratified_and_seeded():
    from wiseft_lib.studies.fig5_complementarity import halves

    labels = torch.tensor([0] * 10 + [1] * 6 + [2] * 3)
    a, b = halves(labels, seed=0)
    assert len(np.intersect1d(a, b)) == 0 and len(a) + len(b) == len(labels)
    assert np.bincount(labels[a].numpy()).tolist() == [5, 3, 1]
    assert np.array_equal(halves(labels, 0)[0], a) and not np.array_equal(halves(labels, 1)[0], a)


def test_pair_flops_counts_the_architecture_and_samples_seen_reads_the_sidecar():
    from wiseft_lib.studies.fig20_model_scale import ScaleParams, pair_flops, samples_seen

    mini = pair_flops("wiseft-mini")
    assert 1e6 < mini < 1e9 and pair_flops("ViT-B-16") > 100 * mini
    assert samples_seen("wiseft-mini", "fmnist") == 3600 * 64 and samples_seen("wiseft-mini", "fmnist-budget5") == 180 * 64
    assert samples_seen("ViT-B-16", "openai") is None
    with pytest.raises(ParamsError, match="1.28e"):
        ScaleParams(models={"x": {"model": "RN50", "samples_seen": "12.8e9"}})


def test_objectnet_names_replace_exactly_the_mapped_imagenet_classes():
    from wiseft_lib.data.imagenet import imagenet_classnames, objectnet_classnames, objectnet_imagenet_groups
    from wiseft_lib.studies.fig26_objectnet_names import objectnet_named_classnames

    names = objectnet_named_classnames(imagenet_classnames())
    mapped = {i for g in objectnet_imagenet_groups() for i in g}
    assert len(names) == 1000
    assert all(names[i] == imagenet_classnames()[i] for i in range(1000) if i not in mapped)
    for name, group in zip(objectnet_classnames(), objectnet_imagenet_groups()):
        assert all(names[i] == name for i in group)


def test_coop_params_are_checked_before_anything_runs():
    from wiseft_lib.studies.table7_coop import Table7Params

    with pytest.raises(ParamsError, match="coop"):
        Table7Params(coop={"n_ctx": 0})
    with pytest.raises(ParamsError, match="0.5"):
        Table7Params(alphas=[0.0, 1.0])
    assert Table7Params(shots=4).curve_config(10).linear["epochs"] == 300
