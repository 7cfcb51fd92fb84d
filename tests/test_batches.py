"""One batch of a loader, read the same way everywhere (wiseft_lib.core._batches): tuple, list and dict batches,
labels as int64 tensors, the errors, and a model's device."""
from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from wiseft_lib.core._batches import batch_inputs, checked_images, images_labels, labeled_batch, model_device

X = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)


@pytest.mark.parametrize("batch", [
    (X, torch.tensor([3, 1])),
    [X, torch.tensor([3, 1])],
    (X, torch.tensor([3, 1]), {"region": ["a", "b"]}),  # extra items after (images, labels) are ignored
    {"images": X, "labels": torch.tensor([3, 1]), "metadata": "kept out"},
], ids=["tuple", "list", "tuple-with-metadata", "dict"])
def test_images_labels_and_labeled_batch_read_every_batch_shape(batch):
    images, labels = images_labels(batch)
    assert images is X
    assert isinstance(labels, torch.Tensor) and labels.tolist() == [3, 1]
    images, labels = labeled_batch(batch)
    assert images is X
    assert labels.dtype == torch.int64 and labels.tolist() == [3, 1]


@pytest.mark.parametrize("batch", [(X, [4, 0]), [X, (4, 0)], {"images": X, "labels": [4, 0]}],
                         ids=["tuple", "list", "dict"])
def test_labels_as_python_sequences_become_int64_tensors(batch):
    _, labels = images_labels(batch)
    assert isinstance(labels, torch.Tensor) and labels.tolist() == [4, 0]
    _, labels = labeled_batch(batch)
    assert labels.dtype == torch.int64 and labels.tolist() == [4, 0]


def test_float_and_int32_labels_become_int64():
    for raw in (torch.tensor([2.0, 1.0]), torch.tensor([2, 1], dtype=torch.int32)):
        _, labels = labeled_batch((X, raw))
        assert labels.dtype == torch.int64 and labels.tolist() == [2, 1]


@pytest.mark.parametrize("batch", [X, (X,), [X], "images", None, 3],
                         ids=["bare-tensor", "1-tuple", "1-list", "str", "None", "int"])
def test_a_batch_that_is_neither_pairs_nor_dict_is_an_error(batch):
    with pytest.raises(ValueError, match=r"a batch must be \(images, labels\) or a dict with 'images' and 'labels'"):
        images_labels(batch)
    with pytest.raises(ValueError, match=type(batch).__name__):
        labeled_batch(batch)


def test_a_dict_batch_without_labels_is_a_key_error():
    with pytest.raises(KeyError, match="labels"):
        images_labels({"images": X})


def test_pil_images_instead_of_tensors_say_to_use_the_eval_transform():
    pil = [Image.new("RGB", (4, 4)), Image.new("RGB", (4, 4))]
    with pytest.raises(TypeError, match=r"yields list images, not tensors.*eval transform.*transform=eval_tf"):
        checked_images(pil)
    with pytest.raises(TypeError, match=r"yields Image images, not tensors.*eval transform"):
        labeled_batch((pil[0], [0]))
    with pytest.raises(TypeError, match="eval transform"):
        labeled_batch({"images": pil, "labels": [0, 1]})
    assert checked_images(X) is X


def test_batch_inputs_of_tensors_tuples_lists_and_dicts():
    assert batch_inputs(X) is X
    assert batch_inputs((X, torch.tensor([0, 1]))) is X
    assert batch_inputs([X]) is X
    for key in ("images", "image", "x", "input"):
        assert batch_inputs({key: X, "labels": [0, 1]}) is X, key
    # "images" wins over the other keys
    other = torch.zeros(1)
    assert batch_inputs({"x": other, "images": X}) is X


@pytest.mark.parametrize("batch, message", [
    ({"pixels": X}, r"cannot find the inputs in a batch with keys \['pixels'\]"),
    ((), "cannot read inputs from a batch of type tuple"),
    ([], "cannot read inputs from a batch of type list"),
    (None, "cannot read inputs from a batch of type NoneType"),
])
def test_batch_inputs_errors(batch, message):
    with pytest.raises(ValueError, match=message):
        batch_inputs(batch)


def test_model_device():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.Sequential(nn.ReLU(), nn.Identity())) == torch.device("cpu")  # no parameters
    meta = nn.Linear(2, 2, device="meta")
    assert model_device(meta) == torch.device("meta")  # the first parameter's device, not always CPU
