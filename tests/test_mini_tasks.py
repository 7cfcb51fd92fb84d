"""The mini downstream tasks (Table 2's analogs) and further shifts (Table 6's) on real Fashion-MNIST images."""
import numpy as np
import pytest

from wiseft_lib.core.evaluate import score
from wiseft_lib.data import get_dataset
from wiseft_lib.data.fashion_mnist import CLASSNAMES
from wiseft_lib.data.mini import test_subset as mini_test_indices
from wiseft_lib.data.mini.tasks import FRAME_OFFSETS, REGIONS, TRANSFER_TASKS, imbalanced_keep


def _perfect_logits(labels, n_classes):
    return np.eye(n_classes)[labels] * 5


def test_style_task_trains_and_tests_in_its_style():
    train = get_dataset("mini-task-sketch", split="train", n_train=50, seed=0)
    photo = get_dataset("mini-photo", split="train", n_train=50, seed=0)
    assert len(train) == 50 and np.array_equal(train.dataset.labels, photo.dataset.labels)  # the same images ...
    assert not np.array_equal(train.dataset.images, photo.dataset.images)  # ... rendered as sketches
    test = get_dataset("mini-task-sketch", n_test=40)
    assert np.array_equal(test.dataset.images, get_dataset("mini-sketch", n_test=40).dataset.images)
    val = get_dataset("mini-task-sketch", split="val", n_test=40)
    assert not np.array_equal(val.dataset.images, test.dataset.images)


def test_class_task_keeps_its_classes_and_renumbers_them():
    tops = get_dataset("mini-tops", n_test=300)
    assert tops.classnames == ["t-shirt", "pullover", "coat", "shirt"]
    assert set(np.unique(tops.dataset.labels)) == {0, 1, 2, 3}
    full = get_dataset("mini-photo", n_test=300)
    keep = np.isin(full.dataset.labels, [CLASSNAMES.index(c) for c in tops.classnames])
    assert len(tops) == keep.sum()  # the same draw of test images, other classes dropped
    assert np.array_equal(tops.dataset.images, full.dataset.images[keep])
    train = get_dataset("mini-footwear", split="train", n_train=30, seed=1)
    assert np.bincount(train.dataset.labels).tolist() == [10, 10, 10]
    assert "mini-footwear" in TRANSFER_TASKS and TRANSFER_TASKS[0] == "mini-photo"


def test_frames_are_groups_scored_with_pm_k():
    frames = get_dataset("mini-frames", n_test=20)
    k = len(FRAME_OFFSETS)
    assert len(frames) == 20 * k and frames.metrics == ("pm0", "pm10")
    anchor, offset = frames.metadata["pm_anchor"], frames.metadata["pm_offset"]
    assert anchor.tolist()[:k] == [0] * k and offset.tolist()[:k] == list(FRAME_OFFSETS)
    labels = frames.dataset.labels
    assert all(len(set(labels[i * k:(i + 1) * k])) == 1 for i in range(20))  # a clip shows one object
    logits = _perfect_logits(labels, 10)
    logits[1] = np.roll(logits[1], 1)  # one wrong neighbour spoils its clip for pm10, not for pm0
    scores = score(logits, labels, frames)
    assert scores["pm0"] == 100.0 and scores["pm10"] == pytest.approx(95.0)
    strong = get_dataset("mini-frames-strong", n_test=20)
    first = frames.dataset.images[::k]  # anchors differ: another clip speed, other noise
    assert first.shape == strong.dataset.images[::k].shape


def test_regions_and_imbalanced_carry_their_metrics():
    regions = get_dataset("mini-regions", n_test=500)
    assert set(regions.metadata["region"]) == set(REGIONS) and len(regions.metadata["region"]) == 500
    labels = regions.dataset.labels
    logits = _perfect_logits(labels, 10)
    hazy = regions.metadata["region"] == "hazy"
    logits[np.flatnonzero(hazy)[:10]] = np.roll(logits[np.flatnonzero(hazy)[:10]], 1, axis=1)
    scores = score(logits, labels, regions)
    assert scores["worst_region_acc"] == pytest.approx(100 * (1 - 10 / hazy.sum()))
    again = get_dataset("mini-regions", n_test=50)  # an image keeps its region whatever n_test is
    small, large = mini_test_indices(50), mini_test_indices(500)
    assert np.array_equal(again.metadata["region"], regions.metadata["region"][np.searchsorted(large, small)])
    trap = get_dataset("mini-imbalanced", n_test=2000)
    counts = np.bincount(trap.dataset.labels, minlength=10)
    assert counts.min() >= 1 and counts.max() > 8 * counts.min()  # long-tailed
    assert trap.metrics == ("top1", "macro_f1")


def test_imbalanced_keep_is_seeded_and_decays():
    labels = np.repeat(np.arange(10), 100)
    keep = imbalanced_keep(labels, seed=0, decay=0.5)
    sizes = sorted(np.bincount(labels[keep], minlength=10).tolist(), reverse=True)
    assert sizes[:3] == [100, 50, 25] and min(sizes) >= 1
    assert np.array_equal(keep, imbalanced_keep(labels, seed=0, decay=0.5))
