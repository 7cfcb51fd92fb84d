"""Feature / logit cache (CPU, tiny model, < 5 s).

    .venv/bin/pytest tests/test_features.py -q
"""
from __future__ import annotations

import pytest
import torch

from wiseft_lib.core.features import CACHE_STATS, cached_logits, extract_features  # noqa: E402

from helpers import AugmentedSet, tiny_classifier  # noqa: E402

KEY = {"dataset": "synthetic", "split": "train", "preprocess": "identity", "pretrained": None}


@pytest.fixture(autouse=True)
def _reset_stats():
    CACHE_STATS.reset()


def test_features_cached_hit_then_miss_when_model_changes(tmp_path):
    clf, data = tiny_classifier(), AugmentedSet(n=13, augment=False)
    f1, l1 = extract_features(clf.image_encoder, data, cache_dir=tmp_path, cache_key_parts=KEY,
                              batch_size=4, progress=False)
    assert (CACHE_STATS.hits, CACHE_STATS.misses) == (0, 1)
    with torch.no_grad():
        expected = clf.image_encoder(data.x)
    torch.testing.assert_close(f1, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(l1, data.y) and f1.dtype == torch.float32

    f2, l2 = extract_features(clf.image_encoder, data, cache_dir=tmp_path, cache_key_parts=KEY,
                              batch_size=4, progress=False)
    assert (CACHE_STATS.hits, CACHE_STATS.misses) == (1, 1)
    assert torch.equal(f1, f2) and torch.equal(l1, l2)

    with torch.no_grad():  # a model changed in place (as interpolation does) must not reuse features
        clf.image_encoder.proj.add_(0.01)
    f3, _ = extract_features(clf.image_encoder, data, cache_dir=tmp_path, cache_key_parts=KEY,
                             batch_size=4, progress=False)
    assert CACHE_STATS.misses == 2 and not torch.allclose(f1, f3)

    extract_features(clf.image_encoder, data, cache_dir=tmp_path, cache_key_parts={**KEY, "split": "val"},
                     batch_size=4, progress=False)
    assert CACHE_STATS.misses == 3  # different data identity
    assert len(list(tmp_path.glob("features-*.safetensors"))) == 3
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporaries


def test_logits_cached_and_keyed_by_whole_classifier(tmp_path):
    clf, data = tiny_classifier(), AugmentedSet(n=9, augment=False)
    lg, lb = cached_logits(clf, data, cache_dir=tmp_path, cache_key_parts=KEY, progress=False)
    with torch.no_grad():
        torch.testing.assert_close(lg, clf(data.x), atol=1e-4, rtol=1e-5)
    cached_logits(clf, data, cache_dir=tmp_path, cache_key_parts=KEY, progress=False)
    assert (CACHE_STATS.hits, CACHE_STATS.misses) == (1, 1)
    with torch.no_grad():
        clf.classification_head.bias.add_(1.0)  # head-only change: new logits key
    lg2, _ = cached_logits(clf, data, cache_dir=tmp_path, cache_key_parts=KEY, progress=False)
    assert CACHE_STATS.misses == 2
    torch.testing.assert_close(lg2, lg + 1.0, atol=1e-4, rtol=1e-5)


def test_cache_needs_data_identity_and_ignores_corrupt_files(tmp_path):
    clf, data = tiny_classifier().train(), AugmentedSet(n=5, augment=False)
    with pytest.raises(ValueError, match="cache_key_parts"):
        extract_features(clf.image_encoder, data, cache_dir=tmp_path, progress=False)
    extract_features(clf.image_encoder, data, cache_dir=tmp_path, cache_key_parts=KEY, progress=False)
    (path,) = tmp_path.glob("features-*.safetensors")
    path.write_bytes(b"truncated")
    f, _ = extract_features(clf.image_encoder, data, cache_dir=tmp_path, cache_key_parts=KEY, progress=False)
    assert CACHE_STATS.misses == 2 and f.shape == (5, 32)
    assert clf.image_encoder.training  # extraction restores the module's mode


def test_fallback_feature_key_hashes_every_example():
    """Two datasets that differ in one example (not the first, middle or last) get different cache keys."""
    from torch.utils.data import TensorDataset

    from wiseft_lib.finetune.data import dataset_fingerprint

    x = torch.randn(10, 3, 4, 4)
    y = torch.arange(10) % 3
    other = x.clone()
    other[3, 0, 0, 0] += 1.0
    a, b = dataset_fingerprint(TensorDataset(x, y)), dataset_fingerprint(TensorDataset(other, y))
    assert a != b
    assert a == dataset_fingerprint(TensorDataset(x.clone(), y.clone()))
    relabelled = y.clone()
    relabelled[7] = (relabelled[7] + 1) % 3
    assert dataset_fingerprint(TensorDataset(x, relabelled)) != a
