"""Standard (ID-only, from scratch) models: the effective-robustness baseline population."""
import pytest
import torch

from wiseft_lib.mini.standard import STANDARD_ZOO, build_standard, standard_points, train_standard


@pytest.mark.parametrize("arch,width", [("linear", 0), ("mlp", 16), ("cnn", 4)])
def test_build_standard_gives_class_logits(arch, width):
    model = build_standard(arch, width, num_classes=10, image_size=28)
    assert model(torch.randn(5, 3, 28, 28)).shape == (5, 10)


def test_unknown_architecture_and_model_are_clear_errors():
    with pytest.raises(ValueError, match="unknown standard architecture 'resnet'"):
        build_standard("resnet", 8)
    with pytest.raises(ValueError, match="unknown standard models \\['cnn99'\\]"):
        standard_points(["cnn99"])


def test_train_standard_fits_a_separable_problem():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=g)
    x = torch.randn(300, 3, 8, 8, generator=g) * 0.3
    x[torch.arange(300), 0, 0, y] += 2.0  # each class lights its own pixel
    model = train_standard(build_standard("linear", 0, num_classes=3, image_size=8), x, y, epochs=20, lr=1e-2)
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.9 and not model.training


def test_standard_points_on_real_mini_data(fashion_mnist_root):
    points = standard_points(["linear-e1", "cnn8-e1"], n_train=2000, n_test=200, progress=False)
    assert list(points["model"]) == ["linear-e1", "cnn8-e1"]
    assert {"group", "id_acc", "ood_avg", "mini-sketch", "mini-viewpoint"} <= set(points.columns)
    # trained on photos only: well above chance on ID, and the shifts cost accuracy
    assert (points["id_acc"] > 60).all()
    assert (points["ood_avg"] < points["id_acc"]).all()
    assert set(STANDARD_ZOO) >= set(points["model"])


def test_standard_weights_are_trained_once_per_cache_whatever_the_test_sets(fashion_mnist_root, tmp_path):
    """Figures 1 and 7 score the same standard models on 1,000 and 5,000 images, Table 13 ensembles them: the
    weights are kept apart from the scores, so only the first study trains, and the scores are those of the
    models trained in place (bit equal: same process, same threads)."""
    from wiseft_lib.core import counters
    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.reference import baseline_points
    from wiseft_lib.experiment.runs import RunCache

    runs = RunCache(tmp_path / "runs")
    names = ["linear-e1", "cnn8-e1"]
    kinds = ["mini-sketch"]
    small = CurveConfig(ood_datasets=kinds, n_test=100)
    start = counters.snapshot()
    first = baseline_points(small, names, n_train_standard=1000, runs=runs, progress=False)
    trained = counters.since(start)["standard_train_images"]
    assert trained == 1000 * (STANDARD_ZOO["linear-e1"]["epochs"] + STANDARD_ZOO["cnn8-e1"]["epochs"])
    assert len(list((tmp_path / "runs" / "standard").glob("*/model.safetensors"))) == 2

    start = counters.snapshot()
    larger = baseline_points(CurveConfig(ood_datasets=kinds, n_test=300), names, n_train_standard=1000, runs=runs,
                             progress=False)
    assert counters.since(start).get("standard_train_images", 0) == 0  # new test sets: scored, not retrained
    fresh = standard_points(names, ood_datasets=kinds, n_train=1000, n_test=300, progress=False)
    assert larger["id_acc"].tolist() == fresh["id_acc"].tolist()
    assert larger["mini-sketch"].tolist() == fresh["mini-sketch"].tolist()
    assert not first["id_acc"].equals(larger["id_acc"])  # 100 vs 300 test images: other numbers, same models


def test_a_standard_model_in_an_ensemble_reuses_the_cached_weights(fashion_mnist_root, tmp_path):
    from wiseft_lib.baselines.other_models import build_other_model
    from wiseft_lib.core import counters
    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.runs import RunCache
    from wiseft_lib.experiment.standard_weights import trained_standard

    runs = RunCache(tmp_path / "runs")
    cached = trained_standard("linear-e1", id_dataset="mini-photo", n_train=500, seed=1, runs=runs)
    start = counters.snapshot()
    model, _ = build_other_model("standard:linear-e1", CurveConfig(), 1, n_train=500, runs=runs)
    assert counters.since(start).get("standard_train_images", 0) == 0
    for a, b in zip(cached.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    # and the cached weights are the ones training gives (the same data and seed)
    plain, _ = build_other_model("standard:linear-e1", CurveConfig(), 1, n_train=500)
    for a, b in zip(cached.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b)
