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
