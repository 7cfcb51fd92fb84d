"""One batch of a loader, read the same way everywhere: (images, labels) or a dict, and a model's device.

Used by :mod:`evaluate`, :mod:`sweep` and :mod:`fisher`, which before each unpacked batches their own way.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["model_device", "images_labels", "checked_images", "labeled_batch", "batch_inputs"]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def images_labels(batch: Any) -> tuple[Any, torch.Tensor]:
    """``(images, labels)`` of a batch that is ``(images, labels, ...)`` or ``{"images", "labels"}``."""
    if isinstance(batch, dict):
        return batch["images"], torch.as_tensor(batch["labels"])
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], torch.as_tensor(batch[1])
    raise ValueError(
        f"a batch must be (images, labels) or a dict with 'images' and 'labels', got "
        f"{type(batch).__name__}"
    )


def checked_images(images: Any) -> torch.Tensor:
    """``images`` if it is a tensor; else a ``TypeError`` saying how to build the dataset."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"the dataset yields {type(images).__name__} images, not tensors; build it with the "
            f"model's eval transform (get_dataset(..., transform=eval_tf))"
        )
    return images


def labeled_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image tensor, int64 labels)`` of a labelled batch, checked."""
    images, labels = images_labels(batch)
    return checked_images(images), labels.long()


def batch_inputs(batch: Any) -> torch.Tensor:
    """The inputs of a batch with or without labels: a tensor, ``(inputs, ...)`` or a dict keyed
    ``images``, ``image``, ``x`` or ``input``."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, Mapping):
        for k in ("images", "image", "x", "input"):
            if k in batch:
                return batch[k]
        raise ValueError(f"cannot find the inputs in a batch with keys {list(batch)}")
    if isinstance(batch, (tuple, list)) and batch:
        return batch[0]
    raise ValueError(f"cannot read inputs from a batch of type {type(batch).__name__}")
