"""Devices, precision and torchrun/DDP helpers shared by fine-tuning, feature extraction and evaluation.

    from wiseft_lib.core.device import default_device, resolve_precision, autocast_context
    device = default_device()                      # cuda:LOCAL_RANK if CUDA is available, else the CPU
    precision = resolve_precision("auto", device)  # bf16 / fp16 on GPUs, fp32 on the CPU
    with autocast_context(precision, device):
        ...

Under ``torchrun`` :func:`setup_distributed` initialises the process group (NCCL on GPUs, gloo
on CPUs) and puts each rank on its own device; outside it everything is one process.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Optional

import torch

__all__ = [
    "dist_info",
    "is_distributed",
    "default_device",
    "resolve_precision",
    "autocast_context",
    "setup_distributed",
    "cleanup_distributed",
    "barrier",
    "gather_objects",
    "all_ranks_agree",
    "shard_range",
    "gather_rows",
    "broadcast_from_rank0",
    "is_writer",
    "barrier_all",
]

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def dist_info() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the initialised process group or torchrun env."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return rank, world, int(os.environ.get("LOCAL_RANK", 0))


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def default_device() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", dist_info()[2] % torch.cuda.device_count())
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    """Map ``auto`` to bf16 on GPUs that support it, fp16 on other GPUs, fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision != "auto":
        if precision != "fp32" and device.type == "cpu":
            log.warning("precision %s on CPU is slow and inexact; fp32 is the CPU default", precision)
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast_context(precision: str, device: torch.device):
    """An autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def setup_distributed(device: Optional[torch.device] = None) -> tuple[int, int, torch.device]:
    """Init the process group under torchrun (nccl on GPUs, gloo on CPUs); return rank, world, device."""
    dist = torch.distributed
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda" and device.index is None:  # one GPU per local rank
        device = torch.device("cuda", dist_info()[2] % torch.cuda.device_count())
    if env_world > 1 and dist.is_available() and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        log.info("initialised process group (%s), world size %d", dist.get_backend(), dist.get_world_size())
    rank, world, _ = dist_info()
    if not (dist.is_available() and dist.is_initialized()):
        rank, world = 0, 1
    return rank, world, device


def cleanup_distributed() -> None:
    """Destroy the default process group if one is initialised (end of a torchrun script)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def gather_objects(obj: Any, world: int) -> list[Any]:
    """Every rank's ``obj`` (a list of one outside a process group)."""
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def all_ranks_agree(flag: bool) -> bool:
    """``flag`` on every rank (logical AND over the process group)."""
    if not is_distributed():
        return flag
    on = default_device() if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([int(flag)], device=on)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return bool(t.item())


def shard_range(n: int, rank: int, world: int) -> range:
    """Rank ``rank``'s contiguous share of ``n`` items: rows ``rank*n//world`` to ``(rank+1)*n//world``.

    Shares differ by at most one item and cover every item exactly once (no padding, no duplicates).
    """
    return range(rank * n // world, (rank + 1) * n // world)


def gather_rows(local: torch.Tensor, n: int, world: int, device: torch.device) -> torch.Tensor:
    """Every rank's :func:`shard_range` rows (``local``, ``[n_r, ...]``) concatenated in dataset order.

    Exact: shares are padded to the longest for the collective and the padding is cut off before
    concatenating, so nothing is counted twice. All ranks get the result (on the CPU).
    """
    if world == 1:
        return local.cpu()
    dist = torch.distributed
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    sizes = [len(shard_range(n, r, world)) for r in range(world)]
    if local.shape[0] != sizes[dist.get_rank()]:
        raise ValueError(f"rank {dist.get_rank()} holds {local.shape[0]} rows, its share of {n} is "
                         f"{sizes[dist.get_rank()]}")
    # a rank with no rows cannot know the row shape (e.g. the number of classes): take a non-empty rank's
    shapes = gather_objects((tuple(local.shape[1:]), local.dtype) if local.shape[0] else None, world)
    row_shape, dtype = next(s for s in shapes if s is not None)
    longest = max(sizes)
    pad = torch.zeros((longest, *row_shape), dtype=dtype, device=comm)
    if local.shape[0]:
        pad[: local.shape[0]] = local.to(comm)
    parts = [torch.empty_like(pad) for _ in range(world)]
    dist.all_gather(parts, pad)
    return torch.cat([p[:k].cpu() for p, k in zip(parts, sizes)])


def broadcast_from_rank0(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself outside a process group): decisions all ranks must share."""
    if not is_distributed():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def is_writer() -> bool:
    """True in the process that writes files: rank 0 under torchrun, the only process otherwise."""
    return not is_distributed() or torch.distributed.get_rank() == 0


def barrier_all() -> None:
    """Wait for every rank of the process group (a no-op outside one)."""
    if is_distributed():
        torch.distributed.barrier()
