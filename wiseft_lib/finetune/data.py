"""Batches for the engine: seeded, resumable image batches (end-to-end) and cached-feature batches (linear).

Augmentation is seeded per (seed, epoch, example) and the shuffle is torch's DistributedSampler
order, so 1 process and N processes consume the same global batches, and a run resumed
mid-epoch replays exactly the batches of the uninterrupted run.
"""
from __future__ import annotations

import hashlib
import math
import random
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["ImageBatches", "FeatureBatches", "dataset_fingerprint"]


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    return ((((seed & 0xFFFFFFFF) * 65537 + epoch) & 0x7FFFFFFF) << 32) + (index & 0xFFFFFFFF)


class _SeededSamples(Dataset):
    """Fetch ``dataset[i]`` with torch's and Python's RNGs seeded from (seed, epoch, i).

    Keys are ``(epoch, i)`` pairs (yielded by the sampler), so augmentation is identical
    whatever the worker count, process count or resume point. The caller's RNG state is
    restored afterwards (once per batch: DataLoader fetches through ``__getitems__``).
    Transforms must draw from torch or ``random`` (torchvision's do).
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> list:
        gen = torch.random.default_generator
        torch_state, py_state = gen.get_state(), random.getstate()
        try:
            out = []
            for epoch, i in keys:
                s = _sample_seed(self.seed, epoch, i)
                gen.manual_seed(s)
                random.seed(s)
                out.append(self.dataset[i])
            return out
        finally:
            gen.set_state(torch_state)
            random.setstate(py_state)


def _epoch_indices(n: int, epoch: int, seed: int, rank: int, world: int) -> list[int]:
    """This rank's shuffled indices for ``epoch``: torch's DistributedSampler order.

    Rank r's j-th index is ``perm[r + j*world]``, so per-rank batches of ``B/world`` together
    form exactly the global batches ``perm[b*B:(b+1)*B]`` of a 1-process run.
    """
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


class ImageBatches:
    """Per-epoch DataLoaders over seeded images, starting at any batch of the epoch."""

    def __init__(self, dataset: Dataset, batch: int, seed: int, rank: int, world: int,
                 num_workers: int, device: torch.device):
        self.dataset, self.batch, self.seed = _SeededSamples(dataset, seed), batch, seed
        self.rank, self.world, self.num_workers, self.device = rank, world, num_workers, device
        self.n = len(dataset)

    def steps_per_epoch(self) -> int:
        return math.ceil(math.ceil(self.n / self.world) / self.batch)

    def epoch(self, epoch: int, start_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = _epoch_indices(self.n, epoch, self.seed, self.rank, self.world)[start_batch * self.batch:]
        loader = DataLoader(self.dataset, batch_size=self.batch, sampler=[(epoch, i) for i in idx],
                            num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=False)
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), torch.as_tensor(y).to(self.device, non_blocking=True)


DEVICE_FEATURE_BYTES = 2 * 2**30
"""Features smaller than this move to the training device once; larger ones stay on the CPU."""


class FeatureBatches:
    """Mini-batches of cached features (no DataLoader: plain indexing is faster).

    Features under :data:`DEVICE_FEATURE_BYTES` are moved to ``device`` once; larger ones stay
    where they are on the CPU - a memory-mapped cache stays mapped (``.to("cpu")`` does not copy),
    so each batch reads only its own rows from the file.
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, batch: int, seed: int, rank: int,
                 world: int, device: torch.device):
        on_device = features.numel() * features.element_size() < DEVICE_FEATURE_BYTES
        store = device if on_device else torch.device("cpu")
        self.features, self.labels = features.to(store), labels.long().to(store)
        self.batch, self.seed, self.rank, self.world, self.device = batch, seed, rank, world, device
        self.n = features.shape[0]

    def steps_per_epoch(self) -> int:
        return math.ceil(math.ceil(self.n / self.world) / self.batch)

    def epoch(self, epoch: int, start_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = torch.tensor(_epoch_indices(self.n, epoch, self.seed, self.rank, self.world),
                           dtype=torch.long)[start_batch * self.batch:].to(self.features.device)
        for b in range(0, idx.numel(), self.batch):
            j = idx[b:b + self.batch]
            yield (self.features.index_select(0, j).to(self.device, non_blocking=True),
                   self.labels.index_select(0, j).to(self.device, non_blocking=True))


def dataset_fingerprint(ds: Dataset) -> dict[str, Any]:
    """Identity of a dataset for the feature cache when the caller gives no key: a hash of every example.

    Every image tensor (as the dataset yields it: after its transform) and every label goes into
    the hash, so two datasets share cached features only if they yield the same data. It reads the
    whole dataset once (as cheap as the features it guards are not: pass ``feature_key`` to skip it).
    """
    n = len(ds)
    h = hashlib.sha256()
    for i in range(n):
        x, y = ds[i]
        t = torch.as_tensor(x).detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        h.update(str(int(y)).encode())
    return {"dataset_type": type(ds).__qualname__, "n": n, "content_hash": h.hexdigest()[:24]}
