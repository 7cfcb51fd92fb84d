"""Logistic-regression probes on synthetic features (CPU, < 5 s).

    .venv/bin/pytest tests/test_probe.py -q
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from wiseft_lib.core.probe import fit_logistic_probe, held_out_split


def blobs(n_per_class: int, n_classes: int = 4, dim: int = 16, noise: float = 1.0, seed: int = 0):
    """Gaussian clusters around random directions (features of very different norms)."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(123).normal(size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centers[y] + noise * rng.normal(size=(len(y), dim))
    x *= rng.uniform(0.5, 20, size=(len(y), 1))  # norms vary: normalisation matters
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def test_probe_picks_C_on_held_out_train_data_and_beats_chance():
    xtr, ytr = blobs(60, noise=1.5)
    xte, yte = blobs(50, noise=1.5, seed=1)  # test data: never seen by the fit
    Cs = [1e-3, 1e-1, 10.0, 1e3]
    probe = fit_logistic_probe(xtr, ytr, Cs=Cs, val_fraction=0.25, seed=0)
    assert set(probe.val_accuracies) == set(Cs)
    best = max(probe.val_accuracies.values())
    assert probe.val_accuracies[probe.best_C] == best
    assert probe.best_C == min(c for c, a in probe.val_accuracies.items() if a == best)  # ties: smallest C
    assert probe.val_accuracies[1e-3] < best  # heavy regularisation is visibly worse on validation
    assert probe.n_val == 60 and probe.n_train == 240  # 25% of each class held out, then refit on all
    head = probe.to_head()
    acc = (head(xte).argmax(1) == yte).float().mean().item()
    assert acc > 0.6 > 1 / 4  # far above chance (0.25)


def test_head_reproduces_sklearn_predictions():
    xtr, ytr = blobs(30)
    for normalize in (True, False):
        probe = fit_logistic_probe(xtr, ytr, Cs=[1.0, 100.0], normalize=normalize)
        head = probe.to_head()
        assert head.normalize == normalize
        xs = xtr / xtr.norm(dim=1, keepdim=True) if normalize else xtr
        np.testing.assert_allclose(head(xtr).detach().numpy(), probe.model.decision_function(xs.double().numpy()),
                                   rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="normalised"):
        fit_logistic_probe(xtr, ytr, Cs=[1.0]).to_head(normalize=False)


def test_binary_unseen_classes_and_single_C():
    x, y = blobs(20, n_classes=2)
    probe = fit_logistic_probe(x, y, Cs=[10.0], num_classes=3)  # one C: no split; class 2 never seen
    assert probe.val_accuracies == {} and probe.n_val == 0
    head = probe.to_head()
    assert head.weight.shape == (3, 16)
    pred = head(x).argmax(1).numpy()
    np.testing.assert_array_equal(pred, probe.model.predict(x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)))
    assert (pred != 2).all()


def test_split_keeps_every_class_in_train_and_errors_without_validation():
    y = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    tr, va = held_out_split(y, 0.5, seed=0)
    assert set(y[tr]) == {0, 1, 2} and len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)
    with pytest.raises(ValueError, match="held-out"):
        fit_logistic_probe(np.random.randn(3, 4), [0, 1, 2], Cs=[0.1, 1.0])
    tr, va = held_out_split(np.array([0, 0, 0, 1, 1, 2]), 0.1, seed=0)  # 10% of each class rounds to nothing
    assert len(va) == 2 and sorted(np.array([0, 0, 0, 1, 1, 2])[va]) == [0, 1]  # classes with 2+ lend one


@pytest.mark.slow
def test_probe_on_mini_features_beats_chance(fashion_mnist_root):
    """The embedded default: wiseft-mini features of 300 fine-tuning-pool photos -> probe -> test photos."""
    from wiseft_lib.core.features import extract_features
    from wiseft_lib.core.models import create_model
    from wiseft_lib.data import get_dataset

    clip, _, eval_tf = create_model("wiseft-mini")
    train = get_dataset("mini-photo", root=fashion_mnist_root, split="train", transform=eval_tf, n_train=300)
    test = get_dataset("mini-photo", root=fashion_mnist_root, split="test", transform=eval_tf, n_test=300)
    ftr, ytr = extract_features(clip.visual, train, batch_size=100, progress=False)
    fte, yte = extract_features(clip.visual, test, batch_size=100, progress=False)
    probe = fit_logistic_probe(ftr, ytr, seed=0)
    assert probe.val_accuracies[probe.best_C] == max(probe.val_accuracies.values())
    acc = (probe.to_head()(fte).argmax(1) == yte).float().mean().item()
    assert acc > 0.5 > 1 / len(train.classnames)  # 10 classes: chance is 0.1
