"""Evaluation: prediction, scoring with projections/subsets, preprocess-once, head-only scoring."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from wiseft_lib.core.evaluate import evaluate, evaluate_head, predict_logits, preprocess_once, score
from wiseft_lib.core.metrics import METRICS
from wiseft_lib.data.registry import DatasetBundle

from helpers import DecodingDataset, tiny_classifier

N, C = 20, 5


def bundle(dataset=None, **kw) -> DatasetBundle:
    return DatasetBundle(name="synthetic", dataset=dataset if dataset is not None else DecodingDataset(),
                         classnames=[f"c{i}" for i in range(C)], templates=["a {}."], **kw)


def _region_min(logits: np.ndarray, labels: np.ndarray, metadata: dict) -> float:
    right = logits.argmax(1) == labels
    regions = np.asarray(metadata["region"])
    return float(min(right[regions == r].mean() for r in np.unique(regions)) * 100)


def test_score_with_projection_subset_and_metadata(monkeypatch):
    monkeypatch.setitem(METRICS, "test_region_min", _region_min)
    # model space: 6 classes; the dataset keeps classes [4, 1, 2] (a 200-of-1000 style subset)
    logits = torch.tensor([
        [0, 0, 0, 0, 9, 0],   # -> 0 (class 4) right
        [0, 9, 0, 0, 0, 0],   # -> 1 (class 1) right
        [9, 0, 1, 0, 0, 0],   # best overall is 0, outside the subset -> 2 right after projection
        [0, 0, 0, 0, 1, 9],   # -> 0 wrong (label 1)
    ], dtype=torch.float32)
    labels = torch.tensor([0, 1, 2, 1])
    keep = [4, 1, 2]
    b = bundle(project_logits=lambda lg: lg[:, keep], metrics=("top1", "test_region_min"),
               metadata={"region": np.array([0, 0, 1, 1])})
    out = score(logits, labels, b)
    assert out == {"top1": 75.0, "test_region_min": 50.0}
    assert score(logits.numpy(), labels.numpy(), b) == out
    with pytest.raises(ValueError, match="labels range"):
        score(logits, torch.tensor([0, 1, 2, 5]), b)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        score(logits[:3], labels, b)


def test_predict_and_evaluate_tiny_dataset():
    model = tiny_classifier().train()
    b = bundle()
    logits, labels = predict_logits(model, b.dataset, batch_size=8, progress=False)
    assert logits.shape == (N, C) and logits.dtype == torch.float32
    assert labels.tolist() == [i % C for i in range(N)]
    assert model.training  # mode restored
    with torch.no_grad():
        direct = model.eval()(torch.stack([b.dataset[i][0] for i in range(N)]))
    torch.testing.assert_close(logits, direct, rtol=1e-5, atol=1e-5)
    expected = float((direct.argmax(1) == labels).float().mean() * 100)
    assert evaluate(model, b, batch_size=7, progress=False) == {"top1": pytest.approx(expected)}
    loader = DataLoader(b.dataset, batch_size=6)
    torch.testing.assert_close(predict_logits(model, loader, progress=False)[0], logits)


def test_preprocess_once_gives_identical_logits():
    model = tiny_classifier()
    ds = DecodingDataset()
    b = bundle(ds, metrics=("top1",), metadata={"x": np.arange(N)})
    pre = preprocess_once(b, batch_size=8, progress=False)
    assert ds.calls == N
    assert pre.name == b.name and pre.metadata is b.metadata and pre.classnames == b.classnames
    ref = predict_logits(model, b, batch_size=8, progress=False)
    calls = ds.calls
    for _ in range(2):  # a sweep re-runs only the model
        got = predict_logits(model, pre, batch_size=8, progress=False)
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    assert ds.calls == calls
    assert evaluate(model, pre, progress=False) == evaluate(model, b, progress=False)


def test_evaluate_head_on_features_matches_full_model():
    model = tiny_classifier()
    b = bundle()
    images = torch.stack([b.dataset[i][0] for i in range(N)])
    labels = torch.tensor([b.dataset[i][1] for i in range(N)])
    with torch.no_grad():
        feats = model.encode(images)
    full = evaluate(model, b, progress=False)
    assert evaluate_head(model.classification_head, feats, labels, b) == full
    assert evaluate_head(model.classification_head, feats, labels, b, batch_size=3) == full


def test_pil_images_are_refused_with_a_hint():
    class Raw(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros((4, 4), dtype=np.uint8).tolist(), 0

    with pytest.raises(TypeError, match="eval transform"):
        predict_logits(tiny_classifier(), DataLoader(Raw(), batch_size=2, collate_fn=lambda b: (
            [x for x, _ in b], torch.tensor([y for _, y in b]))), progress=False)
