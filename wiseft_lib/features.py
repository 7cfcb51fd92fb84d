"""Feature and logit extraction with an on-disk cache keyed by model weights + data identity.

    from wiseft_lib.features import extract_features
    feats, labels = extract_features(classifier.image_encoder, bundle.dataset, cache_dir="cache",
                                     cache_key_parts={"dataset": "mini-photo", "split": "train",
                                                      "pretrained": "fmnist", "preprocess": repr(eval_tf)})

The cache key hashes the encoder's *current* weights (:func:`wiseft_lib.models.state_dict_hash`,
recomputed on every call, so a model changed in place - e.g. by interpolation - never reuses
old features), the extraction precision, ``len(dataset)`` and every entry of
``cache_key_parts`` (the caller states the data identity: dataset name, split, preprocessing,
pretrained tag, k-shot seed, ...). Files are safetensors written atomically; features are
returned as float32 on the CPU. Linear probes, linear-classifier fine-tuning and the whole
linear-classifier alpha sweep all reuse one feature pass.

Under ``torchrun`` every rank extracts a strided shard, the shards are all-gathered (every rank
gets the full tensors), and only rank 0 writes the cache file.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from wiseft_lib._io import atomic_path
from wiseft_lib.device import all_ranks_agree, autocast_context, dist_info, is_distributed, resolve_precision
from wiseft_lib.models import state_dict_hash

__all__ = [
    "CACHE_STATS",
    "CacheStats",
    "cached_logits",
    "extract_features",
    "feature_cache_key",
]

log = logging.getLogger(__name__)
CACHE_FORMAT = "wiseft.features/1"


@dataclass
class CacheStats:
    """Counts of cache hits and misses in this process (tests and logs read it)."""

    hits: int = 0
    misses: int = 0

    def reset(self) -> None:
        self.hits = self.misses = 0


CACHE_STATS = CacheStats()


# ---------------------------------------------------------------- cache keys and files
def feature_cache_key(model: nn.Module, cache_key_parts: Mapping[str, Any], *, kind: str = "features",
                      n: Optional[int] = None, precision: str = "fp32") -> str:
    """Hash of (kind, the model's current weights, precision, n, caller's key parts)."""
    parts = {
        "format": CACHE_FORMAT,
        "kind": kind,
        "model": state_dict_hash(model.state_dict()),
        "precision": precision,
        "n": n,
        "parts": {str(k): v for k, v in cache_key_parts.items()},
    }
    blob = json.dumps(parts, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _cache_file(cache_dir: Union[str, Path], kind: str, key: str) -> Path:
    return Path(cache_dir) / f"{kind}-{key}.safetensors"


def _read_cache(path: Path, n: int) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    if not path.exists():
        return None
    try:
        t = load_file(str(path))
        values, labels = t["values"], t["labels"]
    except Exception as e:  # a truncated or foreign file: recompute rather than fail
        log.warning("ignoring unreadable cache file %s (%s); recomputing", path, e)
        return None
    if values.shape[0] != n or labels.shape[0] != n:
        log.warning("cache file %s holds %d rows, expected %d; recomputing", path, values.shape[0], n)
        return None
    return values, labels


def _write_cache(path: Path, values: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
    with atomic_path(path) as tmp:
        save_file({"values": values.contiguous(), "labels": labels.contiguous()}, str(tmp),
                  metadata={"format": CACHE_FORMAT, "key_parts": json.dumps(meta, sort_keys=True, default=repr)})


# ---------------------------------------------------------------- the batched pass
def _label_tensor(labels: Any) -> torch.Tensor:
    return labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels)


@torch.no_grad()
def _run(fn: Callable[[torch.Tensor], torch.Tensor], module: nn.Module, dataset: Dataset, *,
         batch_size: int, device: torch.device, precision: str, num_workers: int,
         progress: bool, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``fn`` over this rank's shard of ``dataset``; gather all shards; return CPU fp32."""
    from tqdm.auto import tqdm

    rank, world, _ = dist_info()
    world = world if is_distributed() else 1
    rank = rank if world > 1 else 0
    n = len(dataset)
    shard = Subset(dataset, range(rank, n, world)) if world > 1 else dataset
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    was_training = module.training
    module.eval()
    outs, labs = [], []
    try:
        for images, labels in tqdm(loader, desc=desc, disable=not progress or rank != 0, leave=False):
            with autocast_context(precision, device):
                out = fn(images.to(device, non_blocking=True))
            outs.append(out.float())
            labs.append(_label_tensor(labels).long().to(device))
    finally:
        module.train(was_training)
    values = torch.cat(outs) if outs else torch.empty(0)
    labels_t = torch.cat(labs) if labs else torch.empty(0, dtype=torch.long)
    if world > 1:
        values, labels_t = _gather_strided(values, labels_t, n, world, device)
    return values.cpu(), labels_t.cpu()


def _gather_strided(values: torch.Tensor, labels: torch.Tensor, n: int, world: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather rank r's rows for indices r, r+world, ... and restore dataset order."""
    dist = torch.distributed
    per = (n + world - 1) // world
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    dim = torch.tensor([values.shape[-1] if values.numel() else 0], device=comm)
    dist.all_reduce(dim, op=dist.ReduceOp.MAX)  # ranks with no rows learn the width
    pad_v = torch.zeros(per, int(dim.item()), device=comm)
    pad_l = torch.full((per,), -1, dtype=torch.long, device=comm)
    pad_v[: values.shape[0]] = values.to(comm)
    pad_l[: labels.shape[0]] = labels.to(comm)
    all_v = [torch.empty_like(pad_v) for _ in range(world)]
    all_l = [torch.empty_like(pad_l) for _ in range(world)]
    dist.all_gather(all_v, pad_v)
    dist.all_gather(all_l, pad_l)
    # row j of rank r is dataset index r + j*world: interleave, then trim the padding
    v = torch.stack(all_v, dim=1).reshape(per * world, -1)[:n]
    l = torch.stack(all_l, dim=1).reshape(per * world)[:n]
    return v, l


def _cached_pass(kind: str, module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset,
                 *, cache_dir, cache_key_parts, batch_size, device, precision, num_workers,
                 progress) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(dataset, "dataset") and hasattr(dataset, "classnames"):  # a DatasetBundle
        cache_key_parts = {"dataset": getattr(dataset, "name", None), **(cache_key_parts or {})}
        dataset = dataset.dataset
    device = torch.device(device) if device is not None else next(module.parameters()).device
    precision = resolve_precision(precision, device)
    n = len(dataset)
    path = None
    if cache_dir is not None:
        if not cache_key_parts:
            raise ValueError(
                f"cache_dir is set but cache_key_parts is empty: say what the data is, e.g. "
                f"cache_key_parts={{'dataset': 'imagenet', 'split': 'train', 'preprocess': repr(eval_tf), "
                f"'pretrained': 'openai'}}, or pass cache_dir=None"
            )
        key = feature_cache_key(module, cache_key_parts, kind=kind, n=n, precision=precision)
        path = _cache_file(cache_dir, kind, key)
        hit = _read_cache(path, n)
        if all_ranks_agree(hit is not None):
            CACHE_STATS.hits += 1
            log.info("%s cache hit: %s", kind, path)
            return hit
    CACHE_STATS.misses += 1
    home = next(module.parameters()).device
    module.to(device)
    try:
        values, labels = _run(fn, module, dataset, batch_size=batch_size, device=device,
                              precision=precision, num_workers=num_workers, progress=progress, desc=kind)
    finally:
        module.to(home)  # leave the caller's module where it was
    if path is not None:
        if dist_info()[0] == 0 or not is_distributed():
            _write_cache(path, values, labels, {"kind": kind, "n": n, "precision": precision,
                                                **{str(k): v for k, v in cache_key_parts.items()}})
        if is_distributed():
            torch.distributed.barrier()
    return values, labels


def extract_features(image_encoder: nn.Module, dataset: Dataset, *, cache_dir: Union[str, Path, None] = None,
                     cache_key_parts: Optional[Mapping[str, Any]] = None, batch_size: int = 256,
                     device: Union[str, torch.device, None] = None, precision: str = "auto",
                     num_workers: int = 0, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Image features ``(N, D)`` (float32, CPU, not normalised) and labels ``(N,)`` for ``dataset``.

    ``dataset`` yields ``(image tensor, label)`` with the *eval* transform (or is a
    ``DatasetBundle``, whose name joins the key). With ``cache_dir`` the result is read from /
    written to ``cache_dir`` under a key of the encoder's weights hash, ``precision``, ``len``
    and ``cache_key_parts``. Runs under ``no_grad`` with autocast on GPUs (``precision``).
    """
    return _cached_pass("features", image_encoder, image_encoder, dataset, cache_dir=cache_dir,
                        cache_key_parts=cache_key_parts, batch_size=batch_size, device=device,
                        precision=precision, num_workers=num_workers, progress=progress)


def cached_logits(classifier: nn.Module, dataset: Dataset, *, cache_dir: Union[str, Path, None] = None,
                  cache_key_parts: Optional[Mapping[str, Any]] = None, batch_size: int = 256,
                  device: Union[str, torch.device, None] = None, precision: str = "auto",
                  num_workers: int = 0, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, C)`` of ``classifier`` (any image -> logits module) and labels, cached like
    :func:`extract_features` but keyed by the whole classifier's weights (for output-space ensembles)."""
    return _cached_pass("logits", classifier, classifier, dataset, cache_dir=cache_dir,
                        cache_key_parts=cache_key_parts, batch_size=batch_size, device=device,
                        precision=precision, num_workers=num_workers, progress=progress)
