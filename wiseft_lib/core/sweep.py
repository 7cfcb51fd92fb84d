"""The end-to-end alpha sweep that decodes each evaluation image once, on one process or under torchrun.

    from wiseft_lib.core.sweep import sweep_logits
    per_alpha = sweep_logits(model, theta_0, theta_1, [0.0, 0.5, 1.0], bundle.dataset, batch_size=256)
    logits, labels = per_alpha[0.5]

A plain sweep (``for alpha: evaluate(model(alpha), data)``) reads and decodes every image once per
alpha: at paper scale (21 alphas x 166k JPEGs) decoding, not the accelerator, bounds it. Here the
loader runs once; its batches are held, a chunk at a time (``chunk_images``), on the model's device,
and each alpha's weights are written into the one working model (``torch.lerp`` in place, see
:mod:`wiseft_lib.core.interpolate`) once per chunk, then the chunk is scored. Cost: one decode pass plus
n_alpha forward passes plus n_alpha x n_chunks interpolations (a lerp over the weights: well under 1%
of a chunk's forward passes at the default chunk size).

Under ``torchrun`` every rank takes a contiguous share of the dataset (:func:`wiseft_lib.core.device.shard_range`,
no padding), scores it on its own device, and the logits are gathered exactly (padding cut off before
concatenating), so every rank returns the same full ``[N, C]`` logits per alpha. :func:`distributed_logits`
does the same for one model (``wiseft_lib.core.evaluate.predict_logits`` uses it).
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from wiseft_lib.core import counters
from wiseft_lib.core._batches import labeled_batch, model_device
from wiseft_lib.core.device import (
    autocast_context,
    dist_info,
    gather_rows,
    is_distributed,
    resolve_precision,
    shard_range,
)
from wiseft_lib.core.interpolate import check_alpha, check_model_targets, state_on_device, write_interpolation
from wiseft_lib.core.models import ImageClassifier
from wiseft_lib.progress import progress_bar

__all__ = ["sweep_logits", "distributed_logits", "eval_loader", "DEFAULT_CHUNK_IMAGES"]

DEFAULT_CHUNK_IMAGES = 4096  # images decoded and held per chunk (on a GPU: 4096 x 3 x 224^2 fp32 = 2.5 GB)


def _rank_world() -> tuple[int, int]:
    if not is_distributed():
        return 0, 1
    rank, world, _ = dist_info()
    return rank, world


def eval_loader(dataset: Dataset, *, batch_size: int, num_workers: int, device: torch.device,
                rank: int = 0, world: int = 1) -> tuple[DataLoader, int]:
    """A loader over this rank's contiguous share of ``dataset`` (in order), and the dataset's size.

    Workers decode in parallel; pinned memory when the model is on a GPU. A ``DataLoader`` passed in
    is used as it is (one process only).
    """
    if isinstance(dataset, DataLoader):
        if world > 1:
            raise ValueError("under torchrun pass a Dataset, not a DataLoader: each rank loads its own share")
        return dataset, len(dataset.dataset)

    if not (isinstance(dataset, Dataset) or hasattr(dataset, "__getitem__")):
        raise TypeError(f"expected a DataLoader, Dataset or DatasetBundle, got {type(dataset).__name__}")
    n = len(dataset)
    share = Subset(dataset, shard_range(n, rank, world)) if world > 1 else dataset
    loader = DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False,
                        prefetch_factor=4 if num_workers > 0 else None)
    return loader, n


def _finish(per_rank: list[torch.Tensor], n: int, world: int, device: torch.device) -> torch.Tensor:
    return gather_rows(torch.cat(per_rank) if per_rank else torch.empty(0), n, world, device)


def distributed_logits(model: nn.Module, dataset: Union[Dataset, DataLoader], *, batch_size: int = 256,
                       num_workers: int = 0, device: Optional[torch.device] = None, precision: str = "auto",
                       progress: bool = True, desc: str = "predict") -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits [N, C] fp32, labels [N])`` on the CPU, in dataset order; each rank scores its share."""
    return _pass(model, None, None, [None], dataset, batch_size=batch_size, num_workers=num_workers,
                 device=device, precision=precision, chunk_images=0, progress=progress, desc=desc)[None]


def sweep_logits(model: nn.Module, theta_0: dict[str, torch.Tensor], theta_1: dict[str, torch.Tensor],
                 alphas: Iterable[float], dataset: Union[Dataset, DataLoader], *, batch_size: int = 256,
                 num_workers: int = 0, device: Optional[torch.device] = None, precision: str = "auto",
                 chunk_images: int = DEFAULT_CHUNK_IMAGES, progress: bool = True, desc: str = "sweep"
                 ) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """``{alpha: (logits [N, C] fp32 CPU, labels [N])}`` with ``model`` holding ``theta(alpha)``, one decode pass.

    ``model`` is the working model (its weights are overwritten; after the call it holds the last
    alpha); ``theta_0`` / ``theta_1`` are the endpoints' state dicts (copies, not the model's own
    tensors). ``precision`` "auto" is bf16 autocast on GPUs and fp32 on the CPU (as ``evaluate``).
    """

    grid = [check_alpha(a) for a in alphas]
    if not grid:
        raise ValueError("give at least one alpha")
    if chunk_images <= 0:
        raise ValueError(f"chunk_images must be positive, got {chunk_images}")
    return _pass(model, theta_0, theta_1, grid, dataset, batch_size=batch_size, num_workers=num_workers,
                 device=device, precision=precision, chunk_images=chunk_images, progress=progress, desc=desc)


def _pass(model: nn.Module, theta_0, theta_1, grid: list, dataset, *, batch_size: int, num_workers: int,
          device: Optional[torch.device], precision: str, chunk_images: int, progress: bool, desc: str
          ) -> dict[Any, tuple[torch.Tensor, torch.Tensor]]:
    dev = torch.device(device) if device is not None else model_device(model)
    model.to(dev)
    precision = "bf16" if precision == "auto" and dev.type == "cuda" else resolve_precision(precision, dev)
    rank, world = _rank_world()
    loader, n = eval_loader(dataset, batch_size=batch_size, num_workers=num_workers, device=dev, rank=rank,
                            world=world)
    if n == 0:
        raise ValueError("the dataset is empty: there is nothing to evaluate")
    interpolating = theta_0 is not None
    if interpolating:
        live = check_model_targets(model, theta_0, theta_1)
        t0, t1 = state_on_device(theta_0, dev), state_on_device(theta_1, dev)
    outs: dict[Any, list[torch.Tensor]] = {a: [] for a in grid}
    labels: list[torch.Tensor] = []
    chunk: list[torch.Tensor] = []
    held = 0

    kind = "eval_images" if isinstance(model, ImageClassifier) else "eval_images_other"

    def score_chunk() -> None:
        for a in grid:
            if interpolating:
                write_interpolation(live, t0, t1, a)
            with torch.inference_mode(), autocast_context(precision, dev):
                for x in chunk:
                    outs[a].append(model(x).float().cpu())
            counters.add(kind, sum(len(x) for x in chunk))

    was_training = model.training
    model.eval()
    try:
        for batch in progress_bar(loader, desc=desc, unit="batch", show=progress and rank == 0, leave=False):
            x, y = labeled_batch(batch)
            chunk.append(x.to(dev, non_blocking=True))
            labels.append(y.cpu())
            held += len(x)
            if held >= chunk_images:  # chunk_images=0: score every batch as it comes (one model)
                score_chunk()
                chunk, held = [], 0
        if chunk:
            score_chunk()
    finally:
        model.train(was_training)
    label_t = gather_rows(torch.cat(labels) if labels else torch.empty(0, dtype=torch.long), n, world, dev)
    return {a: (_finish(outs[a], n, world, dev), label_t) for a in grid}
