"""The training loop: one optimizer step (AMP, accumulation, clipping), the step log, and ``finetune``."""
from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from wiseft_lib.core import counters
from wiseft_lib.core.device import autocast_context, barrier, resolve_precision, setup_distributed
from wiseft_lib.core.features import extract_features
from wiseft_lib.core.models import ImageClassifier
from wiseft_lib.finetune.checkpoint import (
    STATE_FORMAT,
    latest_checkpoint,
    load_resume_state,
    save_checkpoint,
    set_rng_state,
    truncate_log,
)
from wiseft_lib.finetune.config import FinetuneConfig, NonFiniteLossError, RunExistsError
from wiseft_lib.finetune.data import FeatureBatches, ImageBatches, dataset_fingerprint
from wiseft_lib.finetune.schedule import WarmupCosineSchedule
from wiseft_lib.progress import progress_bar

__all__ = ["finetune", "make_optimizer", "Trainer", "WeightEMA", "l2_to_init_penalty", "l1_penalty", "random_head_",
           "distillation_loss"]

log = logging.getLogger("wiseft_lib.finetune")


class StepLog:
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
        ips = self.images * self.world / max(time.perf_counter() - self.t0, 1e-9)
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


def l2_to_init_penalty(params: Sequence[torch.Tensor], theta_0: Sequence[torch.Tensor]) -> torch.Tensor:
    """``||theta - theta_0||^2`` summed over every tensor (the L2-toward-zero-shot regularizer, before lambda)."""
    return sum(((p.float() - p0.float()) ** 2).sum() for p, p0 in zip(params, theta_0))


def l1_penalty(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum |theta|`` over every tensor (the paper's L1 regularizer of the linear classifier, before lambda)."""
    return sum(p.float().abs().sum() for p in params)


def random_head_(head: nn.Module, seed: int) -> None:
    """Re-draw a classification head in place, seeded: weights ``U(-1/sqrt(D), 1/sqrt(D))`` (torch's
    ``nn.Linear`` scale), zero bias. The paper's "random init" against its zero-shot init (Figure 13)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = head.weight
        fresh = (torch.rand(w.shape, generator=gen, dtype=torch.float32) * 2 - 1) / math.sqrt(w.shape[1])
        w.copy_(fresh.to(w.device, w.dtype))
        if getattr(head, "bias", None) is not None:
            head.bias.zero_()


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, weight: float,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """``(1 - weight) * CE(logits, labels) + weight * CE(logits, softmax(teacher_logits))`` (batch means)."""
    ce = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    if weight == 0:
        return ce
    soft = torch.softmax(teacher_logits.float(), dim=-1)
    kd = -(soft * torch.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()
    return (1.0 - weight) * ce + weight * kd


class WeightEMA:
    """Exponential moving average of weights over the optimizer steps (the paper's EMA baselines).

    ``start="debiased"``: the average starts at zero and is read out divided by ``1 - decay**t``
    (Adam's bias correction), so it is a weighted mean of the iterates alone. ``start="zero-shot"``:
    it starts at the initial (zero-shot) weights, which keep weight ``decay**t``: biased toward them.
    """

    def __init__(self, params: Sequence[torch.Tensor], decay: float, start: str = "debiased"):
        self.decay, self.start, self.steps = float(decay), start, 0
        self.shadow = [torch.zeros_like(p, dtype=torch.float32) if start == "debiased" else p.detach().float().clone()
                       for p in params]

    @torch.no_grad()
    def update(self, params: Sequence[torch.Tensor]) -> None:
        self.steps += 1
        for s, p in zip(self.shadow, params):
            s.mul_(self.decay).add_(p.detach().float(), alpha=1.0 - self.decay)

    def weights(self) -> list[torch.Tensor]:
        """The averaged weights (fp32)."""
        if self.start == "debiased" and self.steps > 0:
            return [s / (1.0 - self.decay ** self.steps) for s in self.shadow]
        return [s.clone() for s in self.shadow]

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "shadow": {str(i): s for i, s in enumerate(self.shadow)}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = int(state["steps"])
        for i, s in enumerate(self.shadow):
            s.copy_(state["shadow"][str(i)])


@dataclass
class Trainer:
    """What one optimizer step needs; :meth:`step` is the whole hot loop body."""

    model: nn.Module  # possibly DDP-wrapped / compiled
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    params: list[nn.Parameter]
    config: FinetuneConfig
    precision: str
    device: torch.device
    ddp: bool = False
    teacher: Optional[nn.Module] = None  # frozen copy of the starting model (distillation)
    theta_0: Optional[list[torch.Tensor]] = None  # the starting weights of ``params`` (L2 toward them)

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
                if cfg.distill > 0:
                    with torch.no_grad():
                        teacher_logits = self.teacher(xc)
                    loss = distillation_loss(logits, teacher_logits, yc, cfg.distill, cfg.label_smoothing)
                else:
                    loss = F.cross_entropy(logits.float(), yc, label_smoothing=cfg.label_smoothing)
                if k > 1:
                    loss = loss * (yc.shape[0] / n)  # exact mean over the whole batch
                if cfg.l2_to_init > 0 and j == 0:  # once per optimizer step, whatever the accumulation
                    loss = loss + cfg.l2_to_init * l2_to_init_penalty(self.params, self.theta_0)
                if cfg.l1 > 0 and j == 0:
                    loss = loss + cfg.l1 * l1_penalty(self.params)
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


def make_optimizer(params: Sequence[nn.Parameter], config: FinetuneConfig, device: torch.device) -> torch.optim.Optimizer:
    """The config's optimizer with weight decay on every parameter (as the official code): AdamW (default),
    Adam without weight decay, or SGD with momentum; the fused kernel where this torch has one for
    ``device`` (CUDA, and CPU since torch 2.4, where it is many times faster than the per-tensor loop)."""
    if config.optimizer == "sgd":
        cls, kw = torch.optim.SGD, dict(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    else:
        cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        kw = dict(lr=config.lr, betas=tuple(config.betas), eps=config.eps, weight_decay=config.weight_decay)
    if device.type in ("cuda", "cpu") and all(p.dtype in (torch.float32, torch.bfloat16, torch.float16)
                                              for p in params):
        try:
            return cls(params, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError) as e:  # older torch or unsupported device
            log.info("fused %s unavailable (%s); using the default implementation", cls.__name__, e)
    return cls(params, **kw)


def _make_batches(work: ImageClassifier, train_set: Dataset, feature_set: Optional[Dataset],
                  cfg: FinetuneConfig, per_rank: int, rank: int, world: int, device: torch.device, *,
                  cache_dir, feature_key, progress: bool, train_features=None) -> tuple[Any, nn.Module]:
    """The batch source and the module that trains: images + whole classifier (end-to-end), or
    cached features + head only (linear)."""
    if cfg.mode == "linear" and train_features is not None:  # features computed elsewhere (e.g. a search)
        feats, labels = train_features
        return FeatureBatches(feats, labels, per_rank, cfg.seed, rank, world, device), work.classification_head
    if cfg.mode == "linear":
        fset = feature_set if feature_set is not None else train_set
        key = dict(feature_key) if feature_key else (dataset_fingerprint(fset) if cache_dir else None)
        feats, labels = extract_features(work.image_encoder, fset, device=device, cache_dir=cache_dir,
                                         cache_key_parts=key, precision=cfg.precision,
                                         num_workers=cfg.num_workers, progress=progress and rank == 0)
        return FeatureBatches(feats, labels, per_rank, cfg.seed, rank, world, device), work.classification_head
    if cfg.grad_checkpointing:
        if hasattr(work.image_encoder, "set_grad_checkpointing"):
            work.image_encoder.set_grad_checkpointing(True)
        else:
            log.warning("the image encoder has no set_grad_checkpointing(); training without it")
    return ImageBatches(train_set, per_rank, cfg.seed, rank, world, cfg.num_workers, device), work


@dataclass
class _Run:
    """One fine-tuning run's fixed context (what :func:`finetune` sets up before the loop)."""

    cfg: FinetuneConfig
    rank: int
    world: int
    device: torch.device
    precision: str
    out: Optional[Path]
    work: ImageClassifier
    module: nn.Module
    batches: Any
    spe: int  # steps per epoch
    total: int
    teacher: Optional[nn.Module] = None  # the starting model, frozen (distill > 0)
    theta_0: Optional[list[torch.Tensor]] = None  # the starting trained weights (l2_to_init > 0)
    ema: Optional[WeightEMA] = None  # the weights' moving average (ema_decay > 0)


def _setup(classifier: ImageClassifier, train_set: Dataset, cfg: FinetuneConfig, output_dir, resume: bool,
           device, feature_set, cache_dir, feature_key, progress: bool, train_features=None) -> _Run:
    rank, world, device = setup_distributed(None if device is None else torch.device(device))
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
                                    cache_dir=cache_dir, feature_key=feature_key, progress=progress,
                                    train_features=train_features)
    # the zero-shot start is what distillation and L2 pull toward, also when the head is re-drawn
    teacher = copy.deepcopy(module).eval().requires_grad_(False) if cfg.distill > 0 else None
    theta_0 = [p.detach().clone() for p in module.parameters() if p.requires_grad] if cfg.l2_to_init > 0 else None
    if cfg.head_init == "random":
        random_head_(work.classification_head, cfg.seed)
    ema = (WeightEMA([p for p in module.parameters() if p.requires_grad], cfg.ema_decay, cfg.ema_start)
           if cfg.ema_decay > 0 else None)
    spe = batches.steps_per_epoch()
    total = cfg.epochs * spe
    if cfg.warmup_steps >= total and rank == 0:
        log.warning("warmup_steps %d >= total steps %d: the LR never reaches %g", cfg.warmup_steps, total, cfg.lr)
    return _Run(cfg, rank, world, device, precision, out, work, module, batches, spe, total, teacher, theta_0, ema)


def _optimizer_state(run: _Run, resume: bool) -> tuple[Trainer, WarmupCosineSchedule, int, Optional[Path]]:
    """Optimizer, schedule and scaler, restored from the newest checkpoint when resuming."""
    cfg = run.cfg
    ckpt = latest_checkpoint(run.out) if (run.out is not None and resume) else None
    loaded = load_resume_state(ckpt, run.work, cfg, run.spe, run.device) if ckpt is not None else None
    step = int(loaded["step"]) if loaded is not None else 0
    if run.rank == 0 and ckpt is not None:
        log.info("resuming from %s (step %d of %d)", ckpt, step, run.total)
    params = [p for p in run.module.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg, run.device)
    schedule = WarmupCosineSchedule(optimizer, cfg.lr, cfg.warmup_steps, run.total)
    scaler = torch.amp.GradScaler(run.device.type, enabled=run.precision == "fp16")
    if loaded is not None:
        optimizer.load_state_dict(loaded["optimizer"])
        schedule.load_state_dict(loaded["scheduler"])
        scaler.load_state_dict(loaded["scaler"])
        rngs = loaded["rng"]
        if len(rngs) != run.world and run.rank == 0:
            log.warning("checkpoint was written by %d processes, now %d: model-side RNG streams differ "
                        "(data order and augmentation are unaffected)", len(rngs), run.world)
        set_rng_state(rngs[run.rank] if run.rank < len(rngs) else rngs[0])
        if run.ema is not None:
            if "ema" not in loaded:
                raise ValueError(f"cannot resume from {ckpt}: it has no weight average (ema_decay > 0 here)")
            run.ema.load_state_dict(loaded["ema"])
    model: nn.Module = run.module
    if run.world > 1:
        model = nn.parallel.DistributedDataParallel(
            run.module, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)
    trainer = Trainer(model, optimizer, scaler, params, cfg, run.precision, run.device, ddp=run.world > 1,
                      teacher=run.teacher, theta_0=run.theta_0)
    return trainer, schedule, step, ckpt


def _train_state(run: _Run, trainer: Trainer, schedule: WarmupCosineSchedule, epoch: int, step: int) -> dict:
    return {"format": STATE_FORMAT, "optimizer": trainer.optimizer.state_dict(),
            "scheduler": schedule.state_dict(), "scaler": trainer.scaler.state_dict(),
            "config": run.cfg.to_dict(), "step": step, "epoch": epoch, "batch_in_epoch": step - epoch * run.spe,
            "steps_per_epoch": run.spe, "world_size": run.world,
            **({"ema": run.ema.state_dict()} if run.ema is not None else {})}


def _loop(run: _Run, trainer: Trainer, schedule: WarmupCosineSchedule, step: int, last_good: Optional[Path],
          steplog: StepLog, pbar: Any) -> None:
    """Train from ``step`` to the end, checkpointing at epoch ends and every ``checkpoint_every`` steps."""
    cfg, spe = run.cfg, run.spe
    run.module.train()
    for epoch in range(step // spe, cfg.stop_after_epochs or cfg.epochs):  # the schedule is always `epochs` long
        for x, y in run.batches.epoch(epoch, step - epoch * spe):
            lr = schedule.set_step(step)
            loss = trainer.step(x, y)
            if cfg.mode == "end-to-end":
                counters.add("e2e_steps")
                counters.add("e2e_train_images", len(y))
            else:
                counters.add("linear_steps")
            if run.ema is not None:
                run.ema.update(trainer.params)
            step += 1
            steplog.record(step, epoch, loss, lr, int(y.shape[0]))
            pbar.update(1)
            if step % cfg.log_every == 0:
                steplog.flush(last_good)
            end_of_epoch = step % spe == 0
            if run.out is not None and (end_of_epoch or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)):
                steplog.flush(last_good)  # never checkpoint past a NaN
                state = _train_state(run, trainer, schedule, step // spe if end_of_epoch else epoch, step)
                last_good = save_checkpoint(run.out, run.work, state, step, cfg.keep_checkpoints, run.rank, run.world)
    steplog.flush(last_good)


def _open_log(run: _Run, resume: bool, step: int) -> Optional[Path]:
    if run.out is None or run.rank != 0:
        return None
    run.out.mkdir(parents=True, exist_ok=True)
    path = run.out / "log.jsonl"
    if resume:
        truncate_log(path, step)
    elif path.exists():
        path.unlink()
    return path


def finetune(classifier: ImageClassifier, train_set: Dataset, config: FinetuneConfig, *,
             output_dir: Union[str, Path, None] = None, resume: bool = False,
             device: Union[str, torch.device, None] = None, feature_set: Optional[Dataset] = None,
             cache_dir: Union[str, Path, None] = None, feature_key: Optional[Mapping[str, Any]] = None,
             progress: bool = True,
             train_features: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> ImageClassifier:
    """Fine-tune a copy of ``classifier`` (left untouched: it is the WiSE-FT zero-shot endpoint).

    ``train_set`` yields ``(augmented image tensor, int label)``. In ``linear`` mode only the head
    trains, on features of ``feature_set`` (same images, eval transform; default ``train_set``)
    extracted once through :mod:`wiseft_lib.core.features` (cached in ``cache_dir`` under
    ``feature_key``, default a fingerprint of the data). With ``output_dir`` the run writes
    checkpoints, ``log.jsonl`` and ``finetuned.safetensors``; ``resume=True`` continues from the
    newest checkpoint there (or starts fresh if there is none). ``train_features`` ``(features, labels)``
    (linear mode) trains the head on them directly, with no extraction (``train_set`` is then unused). Returns the fine-tuned model on
    ``device`` in eval mode, with the config in ``meta["finetune"]``.
    """

    run = _setup(classifier, train_set, config, output_dir, resume, device, feature_set, cache_dir,
                 feature_key, progress, train_features)
    trainer, schedule, step, last_good = _optimizer_state(run, resume)
    run.work.meta["finetune"] = {**config.to_dict(), "resolved_precision": run.precision,
                                 "world_size": run.world, "total_steps": run.total}
    log_path = _open_log(run, resume, step)
    pbar = progress_bar(total=(config.stop_after_epochs or config.epochs) * run.spe, initial=step, desc=f"finetune ({config.mode})", unit="step",
                dynamic_ncols=True, show=progress and run.rank == 0)
    try:
        _loop(run, trainer, schedule, step, last_good, StepLog(log_path, run.world, pbar), pbar)
    finally:
        pbar.close()
    run.module.eval()
    run.work.eval()
    if run.ema is not None:  # the result is the average; the last iterate is kept beside it
        if run.out is not None and run.rank == 0:
            run.work.save(run.out / "finetuned_last.safetensors")
        with torch.no_grad():
            for p, w in zip(trainer.params, run.ema.weights()):
                p.copy_(w.to(p.dtype))
    if config.grad_checkpointing and hasattr(run.work.image_encoder, "set_grad_checkpointing"):
        run.work.image_encoder.set_grad_checkpointing(False)
    if run.out is not None and run.rank == 0:
        run.work.save(run.out / "finetuned.safetensors")
    barrier(run.world)
    return run.work

