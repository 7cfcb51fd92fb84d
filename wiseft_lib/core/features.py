"""Feature and logit extraction with an on-disk cache keyed by model weights + data identity.

    from wiseft_lib.core.features import extract_features
    feats, labels = extract_features(classifier.image_encoder, bundle.dataset, cache_dir="cache",
                                     cache_key_parts={"dataset": "mini-photo", "split": "train",
                                                      "pretrained": "fmnist", "preprocess": repr(eval_tf)})

The cache key hashes the encoder's *current* weights (:func:`wiseft_lib.core.models.state_dict_hash`,
recomputed on every call, so a model changed in place - e.g. by interpolation - never reuses
old features), the extraction precision, ``len(dataset)`` and every entry of
``cache_key_parts`` (the caller states the data identity: dataset name, split, preprocessing,
pretrained tag, k-shot seed, ...). Linear probes, linear-classifier fine-tuning and the whole
linear-classifier alpha sweep all reuse one feature pass.

A cache file (its format: :mod:`wiseft_lib.core.feature_file`) is one safetensors file ``{kind}-{key}.safetensors`` holding ``labels`` (N,) int64
and ``values`` (N, D) float32 (save_file's layout: labels first). It is built for ImageNet scale:

* **reading** never loads the file: the returned tensors are copy-on-write memory maps of its
  data section (CPU, float32 / int64; pages are read on first touch, in-place edits stay private).
  Files are replaced atomically, never edited in place: do not truncate or rewrite a cache file
  while a process holds its tensors (the kernel would kill it with SIGBUS).
* **writing** streams rows to a temporary file batch by batch, then renames it; memory holds one
  batch, not the whole tensor. The result is an ordinary safetensors file (``load_file`` reads it).

Under ``torchrun`` without ``cache_dir`` every rank extracts a strided shard and the shards are
all-gathered in memory (every rank gets the full tensors). With ``cache_dir`` rank ``r`` extracts
the contiguous rows ``r*N//W`` to ``(r+1)*N//W``, streams them to a part file in ``cache_dir``,
rank 0 assembles the final file by chunked copies, and every rank memory-maps it. This needs
``cache_dir`` on a filesystem every rank sees: on several nodes, a shared folder (NFS, Lustre, ...).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from wiseft_lib.core import counters
from wiseft_lib.core.device import (
    all_ranks_agree,
    autocast_context,
    dist_info,
    is_distributed,
    resolve_precision,
    shard_range,
)
from wiseft_lib.core.feature_file import assemble, open_cache, write_rows
from wiseft_lib.core.models import state_dict_hash
from wiseft_lib.progress import progress_bar

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


def _part_file(path: Path, rank: int, world: int) -> Path:
    """Rank ``rank``'s shard file next to the final cache file ``path``."""
    return path.with_name(f".{path.stem}.rank{rank}of{world}.part")


def _cache_metadata(meta: Mapping[str, Any]) -> dict[str, str]:
    return {"format": CACHE_FORMAT, "key_parts": json.dumps(meta, sort_keys=True, default=repr)}


# ---------------------------------------------------------------- cache files (wiseft_lib.core.feature_file)
def _read_cache(path: Path, n: int) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    if not path.exists():
        return None
    try:
        values, labels = open_cache(path)
    except Exception as e:  # a truncated or foreign file: recompute rather than fail
        log.warning("ignoring unreadable cache file %s (%s); recomputing", path, e)
        return None
    if values.shape[0] != n or labels.shape[0] != n:
        log.warning("cache file %s holds %d rows, expected %d; recomputing", path, values.shape[0], n)
        return None
    return values, labels


def _write_cache(path: Path, values: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
    """Write whole tensors as a cache file (the streaming writer with one block)."""
    write_rows(path, iter([(values, labels)]), values.shape[0], _cache_metadata(meta))


# ---------------------------------------------------------------- the batched pass
def _label_tensor(labels: Any) -> torch.Tensor:
    return labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels)


@contextlib.contextmanager
def _on_device(module: nn.Module, device: torch.device) -> Iterator[None]:
    """Move ``module`` to ``device`` for the block, then back where the caller had it."""
    home = next(module.parameters()).device
    module.to(device)
    try:
        yield
    finally:
        module.to(home)


@torch.no_grad()
def _batches(fn: Callable[[torch.Tensor], torch.Tensor], module: nn.Module, dataset: Dataset, *,
             batch_size: int, device: torch.device, precision: str, num_workers: int,
             show: bool, desc: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(fn(images) as float32, labels as int64)`` per batch of ``dataset``, on ``device``, in order."""

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    was_training = module.training
    module.eval()
    try:
        for images, labels in progress_bar(loader, desc=desc, unit="batch", show=show, leave=False):
            with autocast_context(precision, device):
                out = fn(images.to(device, non_blocking=True))
            counters.add("feature_images", len(images))
            yield out.float(), _label_tensor(labels).long().to(device)
    finally:
        module.train(was_training)


def _run(fn: Callable[[torch.Tensor], torch.Tensor], module: nn.Module, dataset: Dataset, *,
         batch_size: int, device: torch.device, precision: str, num_workers: int,
         progress: bool, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """In memory: run ``fn`` over this rank's strided shard; gather all shards; return CPU fp32."""
    rank, world, _ = dist_info()
    world = world if is_distributed() else 1
    rank = rank if world > 1 else 0
    n = len(dataset)
    shard = Subset(dataset, range(rank, n, world)) if world > 1 else dataset
    outs, labs = [], []
    for out, lab in _batches(fn, module, shard, batch_size=batch_size, device=device, precision=precision,
                             num_workers=num_workers, show=progress and rank == 0, desc=desc):
        outs.append(out)
        labs.append(lab)
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
    if values.shape[0]:  # a rank with no rows holds a 1-D empty tensor: nothing to copy
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


def _agree_or_raise(err: Optional[BaseException], what: str) -> None:
    """Raise on every rank if ``err`` happened on any rank (so no rank waits forever on the others)."""
    if all_ranks_agree(err is None):
        return
    if err is not None:
        raise err
    raise RuntimeError(f"{what} failed on another rank; see that rank's log")


def _write_sharded(path: Path, rows_of: Callable[[Dataset], Iterator[tuple[torch.Tensor, torch.Tensor]]],
                   dataset: Dataset, metadata: Mapping[str, str]) -> None:
    """Every rank streams its contiguous shard to a part file; rank 0 joins them into ``path``."""
    rank, world, _ = dist_info()
    n = len(dataset)
    part = _part_file(path, rank, world)
    err: Optional[BaseException] = None
    try:
        shard = shard_range(n, rank, world)
        write_rows(part, rows_of(Subset(dataset, shard)), len(shard), metadata)
    except Exception as e:
        err = e
    try:
        _agree_or_raise(err, "feature extraction")
        if rank == 0:
            try:
                assemble(path, [(_part_file(path, r, world), len(shard_range(n, r, world))) for r in range(world)],
                          n, metadata)
            except Exception as e:
                err = e
        _agree_or_raise(err, f"assembling {path.name}")
    finally:
        part.unlink(missing_ok=True)


def _cached_pass(kind: str, module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset,
                 *, cache_dir, cache_key_parts, batch_size, device, precision, num_workers,
                 progress) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(dataset, "dataset") and hasattr(dataset, "classnames"):  # a DatasetBundle
        cache_key_parts = {"dataset": getattr(dataset, "name", None), **(cache_key_parts or {})}
        dataset = dataset.dataset
    device = torch.device(device) if device is not None else next(module.parameters()).device
    precision = resolve_precision(precision, device)
    n = len(dataset)
    if cache_dir is None:
        CACHE_STATS.misses += 1
        with _on_device(module, device):
            return _run(fn, module, dataset, batch_size=batch_size, device=device, precision=precision,
                        num_workers=num_workers, progress=progress, desc=kind)
    if not cache_key_parts:
        raise ValueError(
            "cache_dir is set but cache_key_parts is empty: say what the data is, e.g. "
            "cache_key_parts={'dataset': 'imagenet', 'split': 'train', 'preprocess': repr(eval_tf), "
            "'pretrained': 'openai'}, or pass cache_dir=None"
        )
    key = feature_cache_key(module, cache_key_parts, kind=kind, n=n, precision=precision)
    path = _cache_file(cache_dir, kind, key)
    hit = _read_cache(path, n)
    if all_ranks_agree(hit is not None):
        CACHE_STATS.hits += 1
        log.info("%s cache hit: %s", kind, path)
        return hit
    del hit  # drop a stale map before the file is replaced
    CACHE_STATS.misses += 1
    metadata = _cache_metadata({"kind": kind, "n": n, "precision": precision,
                                **{str(k): v for k, v in cache_key_parts.items()}})
    show = progress and dist_info()[0] == 0

    def rows_of(data: Dataset) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return _batches(fn, module, data, batch_size=batch_size, device=device, precision=precision,
                        num_workers=num_workers, show=show, desc=kind)

    with _on_device(module, device):
        if is_distributed():
            _write_sharded(path, rows_of, dataset, metadata)
        else:
            write_rows(path, rows_of(dataset), n, metadata)
    out = _read_cache(path, n)
    if not all_ranks_agree(out is not None):
        raise RuntimeError(f"the cache file {path} was written but cannot be read back on every rank: with several "
                           f"nodes, cache_dir must be on a filesystem every rank sees (or pass cache_dir=None)")
    return out


def extract_features(image_encoder: nn.Module, dataset: Dataset, *, cache_dir: Union[str, Path, None] = None,
                     cache_key_parts: Optional[Mapping[str, Any]] = None, batch_size: int = 256,
                     device: Union[str, torch.device, None] = None, precision: str = "auto",
                     num_workers: int = 0, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Image features ``(N, D)`` (float32, CPU, not normalised) and labels ``(N,)`` for ``dataset``.

    ``dataset`` yields ``(image tensor, label)`` with the *eval* transform (or is a
    ``DatasetBundle``, whose name joins the key). With ``cache_dir`` the result is read from /
    streamed to ``cache_dir`` under a key of the encoder's weights hash, ``precision``, ``len``
    and ``cache_key_parts``, and returned memory-mapped from that file. Runs under ``no_grad``
    with autocast on GPUs (``precision``).
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
