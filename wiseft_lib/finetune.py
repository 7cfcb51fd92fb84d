"""Fine-tuning engine: end-to-end or linear-classifier ("LC (ours)"), the paper's recipe by default.

    from wiseft_lib.finetune import FinetuneConfig, finetune
    ft = finetune(zeroshot_classifier, train_set, FinetuneConfig(epochs=10), output_dir="runs/e2e")

    # the same from a shell, on one process, or on 8 GPUs with torchrun:
    python -m wiseft_lib.finetune --model ViT-B-16 --pretrained openai --train-dataset imagenet \\
        --data-root /data --output-dir runs/b16-e2e
    torchrun --nproc_per_node 8 -m wiseft_lib.finetune ...same flags... [--resume]

Recipe (paper, Settings): AdamW (0.9, 0.999, eps 1e-8) with weight decay 0.1 on every parameter
(as the official code), LR 3e-5 with 500 linear warm-up steps then cosine decay to zero over all
steps, grad-norm clip 1.0, 10 epochs, global batch 512, cross-entropy with optional label
smoothing. The head starts from the zero-shot head and image features are L2-normalised by it.

Engineering: bf16 autocast on GPUs that support it (fp16 + grad scaler otherwise), fp32 on
CPU; fused AdamW (GPU and CPU) where available; optional ``torch.compile`` and gradient checkpointing;
gradient accumulation; DDP under ``torchrun`` (NCCL on GPUs, gloo on CPUs) with rank-0-only
writes; ``batch_size`` is the *global* batch, so 1 process and N processes consume the same
global batches. Checkpoints (every ``checkpoint_every`` steps and at each epoch end) are
written atomically as ``checkpoints/step_XXXXXXXX/`` holding ``model.safetensors`` +
``model.json`` (the :meth:`ImageClassifier.save` format) and ``train_state.pt`` (plain tensors
and dicts: optimizer, scheduler, scaler, config, step, epoch, data position, RNG states; read
with ``weights_only=True``). Data augmentation is seeded per (seed, epoch, example), so a run
resumed mid-epoch replays exactly the batches and augmentations of the uninterrupted run.
Per-step loss / LR / images-per-second go to ``log.jsonl``; a NaN or inf loss stops the run
naming the step. The final model is ``finetuned.safetensors`` (+ ``.json``).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from wiseft_lib._io import atomic_write_text
from wiseft_lib.features import (
    autocast_context,
    default_device,
    dist_info,
    extract_features,
    resolve_precision,
)
from wiseft_lib.models import ImageClassifier

__all__ = [
    "FinetuneConfig",
    "NonFiniteLossError",
    "RunExistsError",
    "finetune",
    "cosine_lr",
    "WarmupCosineSchedule",
    "latest_checkpoint",
    "add_finetune_arguments",
    "run_finetune_from_args",
    "build_finetune_parser",
    "main",
]

log = logging.getLogger(__name__)
STATE_FORMAT = "wiseft.finetune-state/1"
MODES = ("end-to-end", "linear")


# ====================================================================== configuration
@dataclass
class FinetuneConfig:
    """Every training knob; the defaults are the paper's recipe (end-to-end, ViT-B/16)."""

    mode: str = "end-to-end"  # or "linear": frozen encoder, head trained on cached features
    epochs: int = 10
    lr: float = 3e-5
    batch_size: int = 512  # global batch (over all processes and accumulation steps)
    weight_decay: float = 0.1
    warmup_steps: int = 500
    label_smoothing: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    num_workers: int = 0
    checkpoint_every: Optional[int] = None  # steps; epoch ends always checkpoint
    compile: bool = False
    grad_checkpointing: bool = False
    log_every: int = 10
    grad_accum_steps: int = 1  # micro-batches per optimizer step (same maths, less memory)
    keep_checkpoints: int = 2  # step checkpoints kept on disk (oldest deleted first)

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # JSON round trips give lists
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {self.mode!r}")
        for name in ("epochs", "batch_size", "log_every", "grad_accum_steps", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.lr <= 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0, warmup_steps and weight_decay >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError("checkpoint_every must be >= 1 or None")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be one of auto, fp32, bf16, fp16; got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FinetuneConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# Fields that may change between a run and its resumption (they do not change the maths).
RESUMABLE_CHANGES = {"num_workers", "checkpoint_every", "compile", "grad_checkpointing", "log_every",
                     "keep_checkpoints", "grad_accum_steps"}


class NonFiniteLossError(FloatingPointError, ValueError):
    """The training loss became NaN or inf; the message names the step. (A ValueError too, so
    CLIs that report ValueErrors as clean messages report this one.)"""


class RunExistsError(FileExistsError, ValueError):
    """``output_dir`` holds checkpoints of another run and ``resume`` was not asked for."""


# ====================================================================== LR schedule
def cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """LR for 0-based update ``step``: linear warm-up ``base_lr * (step+1)/warmup_steps``, then
    ``0.5 * (1 + cos(pi * (step - warmup) / (total - warmup))) * base_lr`` (the official code)."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    e, es = step - warmup_steps, max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * e / es)) * base_lr


class WarmupCosineSchedule:
    """Sets every param group's LR from :func:`cosine_lr`; its state is just the step."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup_steps: int, total_steps: int):
        self.optimizer, self.base_lr = optimizer, base_lr
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.step_index = 0

    def set_step(self, step: int) -> float:
        self.step_index = step
        lr = cosine_lr(step, self.base_lr, self.warmup_steps, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_index, "base_lr": self.base_lr, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.set_step(int(state["step"]))


# ====================================================================== data
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


class _ImageBatches:
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


class _FeatureBatches:
    """Mini-batches of cached features (no DataLoader: plain indexing is faster)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, batch: int, seed: int, rank: int,
                 world: int, device: torch.device):
        on_device = features.numel() * features.element_size() < 2 * 2**30
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


# ====================================================================== RNG state (plain tensors)
def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(_tuplify(state["python"]))
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["key"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


# ====================================================================== distributed
def _setup_distributed(device: Optional[torch.device]) -> tuple[int, int, torch.device]:
    """Init the process group under torchrun (nccl on GPUs, gloo on CPUs); return rank, world, device."""
    dist = torch.distributed
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    if device is None:
        device = default_device()
    device = torch.device(device)
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


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def _gather_objects(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


# ====================================================================== checkpoints
def _ckpt_root(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def latest_checkpoint(output_dir: Union[str, Path]) -> Optional[Path]:
    """The newest complete ``checkpoints/step_*`` folder under ``output_dir`` (or None).

    A folder only gets its ``step_*`` name once fully written, so any such folder is complete.
    """
    root = _ckpt_root(Path(output_dir))
    steps = sorted(p for p in root.glob("step_*") if p.is_dir() and (p / "train_state.pt").exists())
    return steps[-1] if steps else None


def _save_checkpoint(output_dir: Path, model: ImageClassifier, state: dict[str, Any], step: int,
                     keep: int, rank: int, world: int) -> None:
    rngs = _gather_objects(_rng_state(), world)  # every rank's RNG, so each resumes its own
    if rank == 0:
        root = _ckpt_root(output_dir)
        name = f"step_{step:08d}"
        final, tmp = root / name, root / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save(tmp / "model.safetensors")
        torch.save({**state, "rng": rngs}, tmp / "train_state.pt")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # the folder appears complete or not at all
        for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier(world)


def _check_resumable(saved: Mapping[str, Any], config: FinetuneConfig, where: Path) -> None:
    now = config.to_dict()
    diffs = [f"{k}: checkpoint {saved.get(k)!r} vs now {now[k]!r}" for k in now
             if k not in RESUMABLE_CHANGES and k in saved and saved[k] != now[k]]
    if diffs:
        raise ValueError(
            f"cannot resume from {where}: the training config changed ({'; '.join(diffs)}). "
            f"Resume with the original settings, or start a new run in another output directory."
        )


# ====================================================================== logging
class _StepLog:
    """Buffers per-step losses on device; every ``log_every`` steps syncs once, checks for
    NaN/inf (averaged over ranks, so all ranks agree), and appends rows to ``log.jsonl``."""

    def __init__(self, path: Optional[Path], world: int, pbar: Any):
        self.path, self.world, self.pbar = path, world, pbar
        self.losses: list[torch.Tensor] = []
        self.rows: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()
        self.images = 0

    def record(self, step: int, epoch: int, loss: torch.Tensor, lr: float, images: int) -> None:
        self.losses.append(loss)
        self.rows.append({"step": step, "epoch": epoch, "lr": lr})
        self.images += images

    def flush(self, last_good: Optional[Path]) -> None:
        if not self.losses:
            return
        losses = torch.stack(self.losses).float()
        if self.world > 1:
            torch.distributed.all_reduce(losses)
            losses /= self.world
        values = losses.tolist()  # the one host sync per flush
        dt = max(time.perf_counter() - self.t0, 1e-9)
        ips = self.images * self.world / dt
        for row, v in zip(self.rows, values):
            row.update(loss=v, images_per_s=ips, time=time.time())
        bad = next((r for r in self.rows if not math.isfinite(r["loss"])), None)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in self.rows if bad is None or r["step"] <= bad["step"])
        if self.pbar is not None:
            self.pbar.set_postfix(loss=f"{values[-1]:.4f}", lr=f"{self.rows[-1]['lr']:.2e}", img_s=f"{ips:.0f}")
        self.losses, self.rows, self.images, self.t0 = [], [], 0, time.perf_counter()
        if bad is not None:
            hint = (f"The last good checkpoint is {last_good}; resuming would repeat the same settings, so rerun "
                    f"with changed settings in a new output directory" if last_good else "No checkpoint was written")
            raise NonFiniteLossError(
                f"training loss is {bad['loss']} at step {bad['step']} (epoch {bad['epoch']}, lr {bad['lr']:.3g}); "
                f"stopping. Lower the learning rate (--lr), keep gradient clipping on (--grad-clip 1.0), or use "
                f"--precision bf16/fp32 instead of fp16; check the inputs for NaNs. {hint}."
            )


def _truncate_log(path: Path, step: int) -> None:
    """Drop rows after ``step`` (written by a run killed after its last checkpoint)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


# ====================================================================== the training step
@dataclass
class _Trainer:
    """What one optimizer step needs; :meth:`step` is the whole hot loop body."""

    model: nn.Module  # possibly DDP-wrapped / compiled
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    params: list[nn.Parameter]
    config: FinetuneConfig
    precision: str
    device: torch.device
    ddp: bool = False

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cfg, n = self.config, y.shape[0]
        self.optimizer.zero_grad(set_to_none=True)
        k = min(cfg.grad_accum_steps, n)
        chunks = zip(x.tensor_split(k), y.tensor_split(k)) if k > 1 else ((x, y),)
        total = None
        for j, (xc, yc) in enumerate(chunks):
            sync_off = self.ddp and j < k - 1
            with (self.model.no_sync() if sync_off else _null()), autocast_context(self.precision, self.device):
                logits = self.model(xc)
                loss = F.cross_entropy(logits.float(), yc, label_smoothing=cfg.label_smoothing)
                if k > 1:
                    loss = loss * (yc.shape[0] / n)  # exact mean over the whole batch
            self.scaler.scale(loss).backward()
            total = loss.detach() if total is None else total + loss.detach()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return total


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def make_optimizer(params: Sequence[nn.Parameter], config: FinetuneConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the config's hyper-parameters and weight decay on every parameter (as the
    official code); the fused kernel where this torch has one for ``device`` (CUDA, and CPU since
    torch 2.4, where it is many times faster than the per-tensor loop), else the default."""
    kw = dict(lr=config.lr, betas=tuple(config.betas), eps=config.eps, weight_decay=config.weight_decay)
    if device.type in ("cuda", "cpu") and all(p.dtype in (torch.float32, torch.bfloat16, torch.float16)
                                              for p in params):
        try:
            return torch.optim.AdamW(params, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError) as e:  # older torch or unsupported device
            log.info("fused AdamW unavailable (%s); using the default implementation", e)
    return torch.optim.AdamW(params, **kw)


# ====================================================================== data fingerprint
def _dataset_fingerprint(ds: Dataset) -> dict[str, Any]:
    """Cheap identity of a dataset for the feature cache when the caller gives none:
    type, length, and a hash of three examples (first, middle, last)."""
    n = len(ds)
    h = hashlib.sha256()
    for i in sorted({0, n // 2, n - 1} if n else set()):
        x, y = ds[i]
        t = torch.as_tensor(x).detach().cpu().contiguous().float()
        h.update(t.numpy().tobytes())
        h.update(str(int(y)).encode())
    return {"dataset_type": type(ds).__qualname__, "n": n, "sample_hash": h.hexdigest()[:16]}


def _make_batches(work: ImageClassifier, train_set: Dataset, feature_set: Optional[Dataset],
                  cfg: FinetuneConfig, per_rank: int, rank: int, world: int, device: torch.device, *,
                  cache_dir, feature_key, progress: bool) -> tuple[Any, nn.Module]:
    """The batch source and the module that trains: images + whole classifier (end-to-end), or
    cached features + head only (linear)."""
    if cfg.mode == "linear":
        fset = feature_set if feature_set is not None else train_set
        key = dict(feature_key) if feature_key else (_dataset_fingerprint(fset) if cache_dir else None)
        feats, labels = extract_features(work.image_encoder, fset, device=device, cache_dir=cache_dir,
                                         cache_key_parts=key, precision=cfg.precision,
                                         num_workers=cfg.num_workers, progress=progress and rank == 0)
        return _FeatureBatches(feats, labels, per_rank, cfg.seed, rank, world, device), work.classification_head
    if cfg.grad_checkpointing:
        if hasattr(work.image_encoder, "set_grad_checkpointing"):
            work.image_encoder.set_grad_checkpointing(True)
        else:
            log.warning("the image encoder has no set_grad_checkpointing(); training without it")
    return _ImageBatches(train_set, per_rank, cfg.seed, rank, world, cfg.num_workers, device), work


def _load_resume_state(ckpt: Path, work: ImageClassifier, cfg: FinetuneConfig, spe: int,
                       device: torch.device) -> dict[str, Any]:
    """Check a checkpoint fits this run, load its weights into ``work``; return its train state."""
    loaded = torch.load(ckpt / "train_state.pt", map_location="cpu", weights_only=True)
    if loaded.get("format") != STATE_FORMAT:
        raise ValueError(f"{ckpt / 'train_state.pt'} is not a wiseft fine-tuning state file")
    _check_resumable(loaded["config"], cfg, ckpt)
    if loaded["steps_per_epoch"] != spe:
        raise ValueError(
            f"cannot resume from {ckpt}: it has {loaded['steps_per_epoch']} steps per epoch, this run "
            f"{spe}; the training set size or batch size changed"
        )
    work.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(device)))
    return loaded


# ====================================================================== the engine
def finetune(classifier: ImageClassifier, train_set: Dataset, config: FinetuneConfig, *,
             output_dir: Union[str, Path, None] = None, resume: bool = False,
             device: Union[str, torch.device, None] = None, feature_set: Optional[Dataset] = None,
             cache_dir: Union[str, Path, None] = None, feature_key: Optional[Mapping[str, Any]] = None,
             progress: bool = True) -> ImageClassifier:
    """Fine-tune a copy of ``classifier`` (left untouched: it is the WiSE-FT zero-shot endpoint).

    ``train_set`` yields ``(augmented image tensor, int label)``. In ``linear`` mode only the head
    trains, on features of ``feature_set`` (same images, eval transform; default ``train_set``)
    extracted once through :mod:`wiseft_lib.features` (cached in ``cache_dir`` under
    ``feature_key``, default a fingerprint of the data). With ``output_dir`` the run writes
    checkpoints, ``log.jsonl`` and ``finetuned.safetensors``; ``resume=True`` continues from the
    newest checkpoint there (or starts fresh if there is none). Returns the fine-tuned model on
    ``device`` in eval mode, with the config in ``meta["finetune"]``.
    """
    from tqdm.auto import tqdm

    cfg = config
    rank, world, device = _setup_distributed(None if device is None else torch.device(device))
    precision = resolve_precision(cfg.precision, device)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} (global) must be divisible by the {world} processes")
    per_rank = cfg.batch_size // world
    if per_rank < cfg.grad_accum_steps:
        raise ValueError(f"per-process batch {per_rank} is smaller than grad_accum_steps {cfg.grad_accum_steps}")
    out = Path(output_dir) if output_dir is not None else None
    if out is not None and not resume and latest_checkpoint(out) is not None:
        raise RunExistsError(
            f"{out} already holds checkpoints of an earlier run ({latest_checkpoint(out).name}); pass "
            f"resume=True (--resume) to continue it, or choose another output directory"
        )

    torch.manual_seed(cfg.seed + rank)  # model-side randomness (dropout); data is seeded per example
    random.seed(cfg.seed + rank)
    np.random.seed((cfg.seed + rank) % 2**32)

    work: ImageClassifier = copy.deepcopy(classifier).float().to(device)
    work.meta = dict(work.meta)

    batches, module = _make_batches(work, train_set, feature_set, cfg, per_rank, rank, world, device,
                                    cache_dir=cache_dir, feature_key=feature_key, progress=progress)
    spe = batches.steps_per_epoch()
    total = cfg.epochs * spe
    if cfg.warmup_steps >= total and rank == 0:
        log.warning("warmup_steps %d >= total steps %d: the LR never reaches %g", cfg.warmup_steps, total, cfg.lr)

    # ---------------------------------------------------------------- resume
    ckpt = latest_checkpoint(out) if (out is not None and resume) else None
    loaded = _load_resume_state(ckpt, work, cfg, spe, device) if ckpt is not None else None
    step = int(loaded["step"]) if loaded is not None else 0
    if rank == 0 and ckpt is not None:
        log.info("resuming from %s (step %d of %d)", ckpt, step, total)
    elif rank == 0 and resume and out is not None:
        log.info("no checkpoint under %s; starting from scratch", out)

    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg, device)
    schedule = WarmupCosineSchedule(optimizer, cfg.lr, cfg.warmup_steps, total)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    if loaded is not None:
        optimizer.load_state_dict(loaded["optimizer"])
        schedule.load_state_dict(loaded["scheduler"])
        scaler.load_state_dict(loaded["scaler"])
        rngs = loaded["rng"]
        if len(rngs) != world and rank == 0:
            log.warning("checkpoint was written by %d processes, now %d: model-side RNG streams differ "
                        "(data order and augmentation are unaffected)", len(rngs), world)
        _set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])

    model: nn.Module = module
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)
    trainer = _Trainer(model, optimizer, scaler, params, cfg, precision, device, ddp=world > 1)

    meta_cfg = {**cfg.to_dict(), "resolved_precision": precision, "world_size": world, "total_steps": total}
    work.meta["finetune"] = meta_cfg

    def state(epoch: int, step: int) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
                "scaler": scaler.state_dict(), "config": cfg.to_dict(), "step": step, "epoch": epoch,
                "batch_in_epoch": step - epoch * spe, "steps_per_epoch": spe, "world_size": world}

    log_path = None
    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        log_path = out / "log.jsonl"
        if resume:
            _truncate_log(log_path, step)
        elif log_path.exists():
            log_path.unlink()
    pbar = tqdm(total=total, initial=step, desc=f"finetune ({cfg.mode})", dynamic_ncols=True,
                disable=not progress or rank != 0)
    steplog = _StepLog(log_path, world, pbar)
    last_good = ckpt

    # ---------------------------------------------------------------- train
    module.train()
    try:
        for epoch in range(step // spe, cfg.epochs):
            for x, y in batches.epoch(epoch, step - epoch * spe):
                lr = schedule.set_step(step)
                loss = trainer.step(x, y)
                step += 1
                steplog.record(step, epoch, loss, lr, int(y.shape[0]))
                pbar.update(1)
                if step % cfg.log_every == 0:
                    steplog.flush(last_good)
                end_of_epoch = step % spe == 0
                if out is not None and (end_of_epoch or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)):
                    steplog.flush(last_good)  # never checkpoint past a NaN
                    _save_checkpoint(out, work, state(step // spe if end_of_epoch else epoch, step), step,
                                     cfg.keep_checkpoints, rank, world)
                    last_good = _ckpt_root(out) / f"step_{step:08d}"
        steplog.flush(last_good)
    finally:
        pbar.close()

    module.eval()
    work.eval()
    if cfg.grad_checkpointing and hasattr(work.image_encoder, "set_grad_checkpointing"):
        work.image_encoder.set_grad_checkpointing(False)
    if out is not None and rank == 0:
        work.save(out / "finetuned.safetensors")
    _barrier(world)
    return work


# ====================================================================== CLI
def add_finetune_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``wiseft finetune`` flags (model, data, output, every recipe value) to ``parser``."""
    d = FinetuneConfig()
    g = parser.add_argument_group("model and data")
    g.add_argument("--model", required=True, help="open_clip model name, e.g. ViT-B-16, or wiseft-mini")
    g.add_argument("--pretrained", default=None, help="pretrained tag (openai, ...) or weights file")
    g.add_argument("--train-dataset", required=True, help="dataset registry name (wiseft_lib.data.list_datasets())")
    g.add_argument("--train-split", default="train", help="split of the training dataset (default: train)")
    g.add_argument("--data-root", default=None, help="data folder (default: $WISEFT_DATA)")
    g.add_argument("--output-dir", required=True, help="checkpoints, log.jsonl, zeroshot/finetuned models")
    g.add_argument("--cache-dir", default=None, help="feature cache folder for linear mode (default: OUTPUT_DIR/cache)")
    g.add_argument("--k-shot", type=int, default=None, help="train on k examples per class (seeded by --seed)")
    g.add_argument("--n-train", type=int, default=None, help="dataset loader's n_train (e.g. the mini pool size)")
    g.add_argument("--device", default=None, help="torch device (default: cuda:LOCAL_RANK if available, else cpu)")
    r = parser.add_argument_group("recipe (defaults: the paper's)")
    r.add_argument("--mode", choices=MODES, default=d.mode)
    r.add_argument("--epochs", type=int, default=d.epochs)
    r.add_argument("--lr", type=float, default=d.lr)
    r.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch over all processes")
    r.add_argument("--weight-decay", type=float, default=d.weight_decay)
    r.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    r.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    r.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max grad norm; 0 disables")
    r.add_argument("--beta1", type=float, default=d.betas[0])
    r.add_argument("--beta2", type=float, default=d.betas[1])
    r.add_argument("--eps", type=float, default=d.eps)
    r.add_argument("--seed", type=int, default=d.seed)
    e = parser.add_argument_group("engineering")
    e.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=d.precision)
    e.add_argument("--num-workers", type=int, default=d.num_workers)
    e.add_argument("--grad-accum-steps", type=int, default=d.grad_accum_steps)
    e.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps (epoch ends always)")
    e.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints)
    e.add_argument("--log-every", type=int, default=d.log_every)
    e.add_argument("--compile", action="store_true", help="torch.compile the model")
    e.add_argument("--grad-checkpointing", action="store_true", help="trade compute for memory (large models)")
    e.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def build_finetune_parser() -> argparse.ArgumentParser:
    return add_finetune_arguments(argparse.ArgumentParser(
        prog="wiseft finetune", description="Fine-tune a zero-shot CLIP classifier (end-to-end or linear)."))


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(
        mode=args.mode, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, label_smoothing=args.label_smoothing,
        grad_clip=args.grad_clip, betas=(args.beta1, args.beta2), eps=args.eps, seed=args.seed,
        precision=args.precision, num_workers=args.num_workers, checkpoint_every=args.checkpoint_every,
        compile=args.compile, grad_checkpointing=args.grad_checkpointing, log_every=args.log_every,
        grad_accum_steps=args.grad_accum_steps, keep_checkpoints=args.keep_checkpoints,
    )


def run_finetune_from_args(args: argparse.Namespace) -> ImageClassifier:
    """Build the zero-shot classifier from ``args`` and fine-tune it (what ``wiseft finetune`` runs).

    Writes ``OUTPUT_DIR/zeroshot.safetensors`` (the WiSE-FT alpha=0 endpoint) and
    ``OUTPUT_DIR/finetuned.safetensors`` (alpha=1), both loadable by ``ImageClassifier.load``.
    """
    from torch.utils.data import Subset

    from wiseft_lib.data import get_dataset
    from wiseft_lib.data._common import dataset_labels
    from wiseft_lib.data.kshot import kshot_indices
    from wiseft_lib.models import create_model
    from wiseft_lib.zeroshot import zeroshot_classifier

    config = config_from_args(args)
    rank, world, device = _setup_distributed(torch.device(args.device) if args.device else None)
    out = Path(args.output_dir)
    clip_model, train_tf, eval_tf = create_model(args.model, args.pretrained, device=device)
    extra = {"n_train": args.n_train} if args.n_train else {}

    def load(transform):
        return get_dataset(args.train_dataset, root=args.data_root, split=args.train_split,
                           transform=transform, **extra)

    train = load(train_tf)
    train_ds = train.dataset
    feat_ds = load(eval_tf).dataset if config.mode == "linear" else None
    if args.k_shot:
        idx = kshot_indices(dataset_labels(train_ds), args.k_shot, args.seed).tolist()
        train_ds = Subset(train_ds, idx)
        feat_ds = Subset(feat_ds, idx) if feat_ds is not None else None
    classifier = zeroshot_classifier(clip_model, args.model, train.classnames, train.templates, args.pretrained)
    classifier.meta.update(train_dataset=args.train_dataset, train_split=args.train_split,
                           k_shot=args.k_shot, n_train=args.n_train)
    del clip_model
    if rank == 0 and not (out / "zeroshot.safetensors").exists():
        classifier.save(out / "zeroshot.safetensors")
    feature_key = {"dataset": args.train_dataset, "split": args.train_split, "data_root": str(args.data_root),
                   "pretrained": args.pretrained, "model": args.model, "preprocess": repr(eval_tf),
                   "n_train": args.n_train, "k_shot": args.k_shot, "k_shot_seed": args.seed if args.k_shot else None}
    try:
        return finetune(classifier, train_ds, config, output_dir=out, resume=args.resume, device=device,
                        feature_set=feat_ds, cache_dir=args.cache_dir or out / "cache", feature_key=feature_key,
                        progress=not args.no_progress)
    finally:
        cleanup_distributed()


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = build_finetune_parser().parse_args(argv)
    try:
        model = run_finetune_from_args(args)
    except (ValueError, FileNotFoundError, KeyError) as err:  # includes NaN loss and existing runs
        print(f"wiseft finetune: error: {err}", file=sys.stderr)
        return 2
    if dist_info()[0] == 0:
        print(f"fine-tuned model: {Path(args.output_dir) / 'finetuned.safetensors'} "
              f"({model.meta['finetune']['total_steps']} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
