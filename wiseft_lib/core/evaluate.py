"""Evaluation: logits for a dataset, then the dataset's own metrics on its label space.

    import torch
    from torch.utils.data import TensorDataset
    from wiseft_lib.data import DatasetBundle
    from wiseft_lib.core.evaluate import evaluate, preprocess_once

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    data = TensorDataset(torch.randn(10, 3, 2, 2), torch.arange(10) % 3)
    bundle = DatasetBundle("toy", data, ["a", "b", "c"], ["a photo of a {}."])
    bundle = preprocess_once(bundle, progress=False)    # decode + transform once per sweep
    print(evaluate(model, bundle, progress=False))      # {'top1': ...}

In a sweep: ``sweep_alphas(model, theta_0, theta_1, alphas, lambda m: evaluate(m, bundle))``.

:func:`score` applies the bundle's logit projection (e.g. ImageNet-R's 200-class subset,
ObjectNet's max over mapped ImageNet classes) and then every metric the bundle names, so no
caller branches per dataset. For the linear-classifier case, :func:`evaluate_head` scores a
head on precomputed features: a whole alpha sweep costs one feature pass.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from wiseft_lib.core._batches import checked_images, images_labels, model_device
from wiseft_lib.core.metrics import METRICS, get_metric
from wiseft_lib.core.sweep import distributed_logits
from wiseft_lib.data.registry import DatasetBundle
from wiseft_lib.progress import progress_bar

__all__ = [
    "METRICS",
    "predict_logits",
    "score",
    "evaluate",
    "preprocess_once",
    "evaluate_head",
]

Source = Union[DataLoader, Dataset, DatasetBundle]


def _loader(source: Source, batch_size: int, num_workers: int, pin: bool) -> DataLoader:
    if isinstance(source, DatasetBundle):
        source = source.dataset
    if isinstance(source, DataLoader):
        return source
    if isinstance(source, Dataset) or hasattr(source, "__getitem__"):
        return DataLoader(source, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                          pin_memory=pin)
    raise TypeError(f"expected a DataLoader, Dataset or DatasetBundle, got {type(source).__name__}")


def predict_logits(
    model: nn.Module,
    dataset_or_loader: Source,
    *,
    batch_size: int = 256,
    device: Union[str, torch.device, None] = None,
    num_workers: int = 0,
    precision: str = "auto",
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(logits [N, C] fp32 on CPU, labels [N] int64)`` in dataset order.

    Runs under ``torch.inference_mode()`` with the model in eval mode (its mode is restored);
    ``precision`` "auto" is bf16 autocast on CUDA and fp32 elsewhere (or fp32 / bf16 / fp16). ``device`` defaults to the model's device; another device
    moves the model there. Under ``torchrun`` each rank scores a contiguous share of a ``Dataset``
    and every rank gets all logits, exactly (:mod:`wiseft_lib.core.sweep`).
    """

    if isinstance(dataset_or_loader, DatasetBundle):
        dataset_or_loader = dataset_or_loader.dataset
    dev = torch.device(device) if device is not None else model_device(model)
    return distributed_logits(model, dataset_or_loader, batch_size=batch_size, num_workers=num_workers,
                              device=dev, precision=precision, progress=progress)


def score(logits: Union[torch.Tensor, np.ndarray], labels: Union[torch.Tensor, np.ndarray],
          bundle: DatasetBundle) -> dict[str, float]:
    """``{metric: percent}`` for every metric in ``bundle.metrics``.

    ``logits`` are over the model's label space; ``bundle.project_logits`` (if set) maps them
    onto the dataset's label space first. ``bundle.metadata`` goes to each metric.
    """
    logits_t = torch.as_tensor(logits).detach().cpu()
    labels_np = np.asarray(torch.as_tensor(labels).detach().cpu())
    if logits_t.ndim != 2 or logits_t.shape[0] != len(labels_np):
        raise ValueError(
            f"logits must be [N, C] with N = number of labels ({len(labels_np)}), got shape "
            f"{tuple(logits_t.shape)}"
        )
    if bundle.project_logits is None and bundle.classnames and logits_t.shape[1] != len(bundle.classnames):
        raise ValueError(
            f"{bundle.name}: the model gives {logits_t.shape[1]} logits per image but the dataset has "
            f"{len(bundle.classnames)} classes; evaluate a model whose head was built for {bundle.name}'s classes "
            f"(a zero-shot head from its class names, or a model fine-tuned on it)"
        )
    if bundle.project_logits is not None:
        logits_t = torch.as_tensor(bundle.project_logits(logits_t))
        if logits_t.shape[0] != len(labels_np):
            raise ValueError(
                f"{bundle.name}: project_logits changed the number of examples "
                f"({len(labels_np)} -> {logits_t.shape[0]}); it must map [N, C] to [N, C']"
            )
    logits_np = logits_t.float().numpy()
    if len(labels_np) and (labels_np.min() < 0 or labels_np.max() >= logits_np.shape[1]):
        raise ValueError(
            f"{bundle.name}: labels range over [{labels_np.min()}, {labels_np.max()}] but the "
            f"(projected) logits have {logits_np.shape[1]} classes; check the dataset's "
            f"project_logits and class list"
        )
    if not bundle.metrics:
        raise ValueError(f"{bundle.name}: the bundle names no metrics")
    return {name: float(get_metric(name)(logits_np, labels_np, bundle.metadata))
            for name in bundle.metrics}


def evaluate(model: nn.Module, bundle: DatasetBundle, **kwargs: Any) -> dict[str, float]:
    """:func:`predict_logits` on ``bundle.dataset`` then :func:`score`; kwargs go to the former."""
    logits, labels = predict_logits(model, bundle.dataset, **kwargs)
    return score(logits, labels, bundle)


def preprocess_once(bundle: DatasetBundle, *, batch_size: int = 256, num_workers: int = 0,
                    progress: bool = True) -> DatasetBundle:
    """Copy of ``bundle`` whose dataset is a ``TensorDataset`` of decoded, transformed images.

    Decoding and transforms then run once, not once per alpha of a sweep. The images stay in
    host memory as fp32 (N x 3 x H x W x 4 bytes: mind it for large datasets).
    """

    loader = _loader(bundle.dataset, batch_size, num_workers, pin=False)
    images, labels = [], []
    for batch in progress_bar(loader, desc=f"preprocess {bundle.name}", unit="batch", show=progress, leave=False):
        x, y = images_labels(batch)
        images.append(checked_images(x).detach().cpu())
        labels.append(y.long().cpu())
    if not images:
        raise ValueError(f"dataset {bundle.name!r} is empty: nothing to preprocess")
    return dataclasses.replace(bundle, dataset=TensorDataset(torch.cat(images), torch.cat(labels)))


def evaluate_head(head: nn.Module, features: torch.Tensor, labels: Union[torch.Tensor, np.ndarray],
                  bundle: DatasetBundle, *, batch_size: Optional[int] = None) -> dict[str, float]:
    """Score a classification head on precomputed image features ``[N, D]``.

    Runs on the head's device; ``batch_size`` bounds memory (default: all at once).
    """
    dev = model_device(head)
    features = torch.as_tensor(features)
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {tuple(features.shape)}")
    step = batch_size or max(len(features), 1)
    was_training = head.training
    head.eval()
    params = list(head.parameters())
    dtype = params[0].dtype if params else torch.float32
    try:
        with torch.inference_mode():
            chunks = [head(features[i:i + step].to(dev, dtype)).float().cpu()
                      for i in range(0, len(features), step)]
    finally:
        head.train(was_training)
    if not chunks:
        raise ValueError(f"{bundle.name}: no features given: there is nothing to evaluate")
    return score(torch.cat(chunks), labels, bundle)
