"""FLYP ("Finetune like you pretrain", Goyal et al. 2023): fine-tune CLIP with CLIP's own contrastive loss.

Each training image is paired with a caption of its class (a prompt template filled with the class name) and
both towers, and the logit scale, train on the symmetric InfoNCE loss between the batch's images and captions
(other images of the same class in the batch are negatives, as in FLYP). The classifier is then the zero-shot
head rebuilt from the fine-tuned text tower, on top of the fine-tuned image tower.

    import torch
    from wiseft_lib.core.models import create_model, get_tokenizer
    from wiseft_lib.data import get_dataset
    from wiseft_lib.finetune import FinetuneConfig
    from wiseft_lib.finetune.flyp import flyp_classifier, flyp_finetune

    clip, train_tf, eval_tf = create_model("wiseft-mini")
    train = get_dataset("mini-photo", split="train", transform=train_tf, n_train=256, seed=0)
    config = FinetuneConfig(epochs=1, lr=5e-4, batch_size=64, warmup_steps=2)
    flyp_finetune(clip, get_tokenizer("wiseft-mini"), train.dataset, train.classnames, train.templates, config,
                  device="cpu")
    clf = flyp_classifier(clip, "wiseft-mini", train.classnames, train.templates)
    x, y = train.dataset[0]
    with torch.no_grad():
        print(clf(x[None]).argmax(-1).item(), y)  # predicted and true class

Recipe: the :class:`~wiseft_lib.finetune.config.FinetuneConfig` fields epochs, lr, batch_size, weight_decay
(AdamW, on every parameter as :func:`~wiseft_lib.finetune.engine.make_optimizer`), warmup_steps (then cosine
decay, :class:`~wiseft_lib.finetune.schedule.WarmupCosineSchedule`), grad_clip, betas, eps, seed, precision
(``auto``: bf16/fp16 autocast on GPUs, fp32 on the CPU), num_workers, stop_after_epochs, grad_checkpointing.
The logit scale is clamped to ``ln(100)`` after every step, as CLIP's training does. A run is reproducible:
images and their augmentation come in the seeded order of :class:`~wiseft_lib.finetune.data.ImageBatches`
and each image's template is drawn from a generator seeded by ``config.seed``.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from wiseft_lib.core import counters
from wiseft_lib.core.device import autocast_context, default_device, is_distributed, resolve_precision
from wiseft_lib.core.models import ImageClassifier
from wiseft_lib.core.zeroshot import zeroshot_classifier
from wiseft_lib.data.templates import fill_template
from wiseft_lib.finetune.config import FinetuneConfig, NonFiniteLossError
from wiseft_lib.finetune.data import ImageBatches
from wiseft_lib.finetune.engine import make_optimizer
from wiseft_lib.finetune.schedule import WarmupCosineSchedule
from wiseft_lib.progress import progress_bar

__all__ = ["contrastive_loss", "flyp_finetune", "flyp_classifier", "MAX_LOGIT_SCALE"]

log = logging.getLogger("wiseft_lib.finetune.flyp")

MAX_LOGIT_SCALE = math.log(100)
"""CLIP clamps its (log) logit scale to this after every step: logits are at most 100 x cosine similarity."""

# Recipe fields FLYP does not implement here, with the values it runs with (a config asking for more is refused,
# never silently trained without it).
_UNSUPPORTED = {"label_smoothing": 0.0, "distill": 0.0, "l2_to_init": 0.0, "l1": 0.0, "ema_decay": 0.0,
                "head_init": "zero-shot", "grad_accum_steps": 1, "checkpoint_every": None, "compile": False}

# Decorrelates the template draws from the data order (both are seeded by config.seed).
_TEMPLATE_STREAM = 0x464C5950


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     logit_scale: Union[torch.Tensor, float]) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss of paired rows (row i of each is a positive pair, every other row a negative).

    Features are L2-normalised here; ``logit_scale`` is the multiplier (CLIP's ``logit_scale.exp()``, as
    open_clip's ``ClipLoss`` takes it). Returns the mean of the image->text and text->image cross-entropies
    of ``logit_scale * img @ txt.T`` against ``arange(n)``, in float32.
    """
    if image_features.shape != text_features.shape or image_features.ndim != 2:
        raise ValueError(f"image and text features must both be [n, dim] and of the same shape; got "
                         f"{tuple(image_features.shape)} and {tuple(text_features.shape)}")
    img = F.normalize(image_features.float(), dim=-1)
    txt = F.normalize(text_features.float(), dim=-1)
    scale = logit_scale.float() if isinstance(logit_scale, torch.Tensor) else float(logit_scale)
    logits = scale * img @ txt.T
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _check_inputs(clip_model: nn.Module, classnames: Sequence[str], templates: Sequence[str],
                  config: FinetuneConfig) -> None:
    if config.mode != "end-to-end":
        raise ValueError(f"FLYP fine-tunes end to end (both towers); config.mode is {config.mode!r}: build the "
                         f"FinetuneConfig with mode='end-to-end'")
    if not classnames or not templates:
        raise ValueError(f"FLYP needs at least one class name and one template to caption its images; got "
                         f"{len(classnames)} class names and {len(templates)} templates (e.g. templates="
                         f"['a photo of a {{}}.'])")
    missing = [a for a in ("encode_image", "encode_text", "logit_scale") if not hasattr(clip_model, a)]
    if missing:
        raise ValueError(f"FLYP trains a whole CLIP model (image and text towers); {type(clip_model).__name__} "
                         f"has no {', '.join(missing)}. Pass the clip_model of wiseft_lib.core.models.create_model, "
                         f"not an ImageClassifier or an image tower")
    if getattr(clip_model, "logit_bias", None) is not None:
        raise ValueError("this model has a logit bias (a SigLIP model, pretrained with the sigmoid loss); FLYP here "
                         "fine-tunes with CLIP's softmax contrastive loss: use a CLIP model")
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("FLYP runs on one process here (its loss needs every caption of the global batch); run it "
                         "without torchrun / outside a process group")
    bad = {k: getattr(config, k) for k, v in _UNSUPPORTED.items() if getattr(config, k) != v}
    if bad:
        raise ValueError(f"FLYP does not implement {', '.join(f'{k}={v!r}' for k, v in bad.items())}; set "
                         f"{', '.join(f'{k}={_UNSUPPORTED[k]!r}' for k in bad)} (their defaults)")
    for t in templates:
        fill_template(t, "x")  # a bad template fails now, not after the first batch


class _Captions:
    """Each image's caption: a template drawn from a seeded generator, filled with its class name and tokenized
    (each distinct caption once, on first use)."""

    def __init__(self, tokenizer: Callable[[list[str]], torch.Tensor], classnames: Sequence[str],
                 templates: Sequence[str], seed: int):
        self.tokenizer, self.classnames, self.templates = tokenizer, list(classnames), list(templates)
        self.draws = torch.Generator().manual_seed(seed * 1_000_003 + _TEMPLATE_STREAM)
        self.memo: dict[tuple[int, int], torch.Tensor] = {}

    def batch(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, where)``: the batch's distinct captions and, per image, the row of its caption."""
        n = len(self.classnames)
        if int(labels.min()) < 0 or int(labels.max()) >= n:
            raise ValueError(f"a label of the training set is outside [0, {n}) (there are {n} class names): "
                             f"labels {sorted(set(labels.tolist()))}; pass the class names of the training set")
        t = torch.randint(len(self.templates), (len(labels),), generator=self.draws)
        pairs = list(zip(labels.tolist(), t.tolist()))
        slot = {p: i for i, p in enumerate(dict.fromkeys(pairs))}  # each distinct caption through the tower once
        new = [p for p in slot if p not in self.memo]
        if new:
            ids = self.tokenizer([fill_template(self.templates[t], self.classnames[c]) for c, t in new])
            self.memo.update(zip(new, ids))
        return torch.stack([self.memo[p] for p in slot]), torch.tensor([slot[p] for p in pairs])


@dataclass
class _Step:
    """One optimizer step of FLYP: contrastive loss, clipping, AdamW, the logit scale clamped."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    config: FinetuneConfig
    precision: str
    device: torch.device

    def __call__(self, images: torch.Tensor, tokens: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        model, dev = self.model, self.device
        self.optimizer.zero_grad(set_to_none=True)
        with autocast_context(self.precision, dev):
            image_features = model.encode_image(images.to(dev, non_blocking=True))
            text_features = model.encode_text(tokens.to(dev, non_blocking=True))
        loss = contrastive_loss(image_features, text_features[where.to(dev)], model.logit_scale.exp())
        self.scaler.scale(loss).backward()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        return loss.detach()


def _flush(losses: list[tuple[int, int, float, torch.Tensor]], pbar) -> None:
    """Check the buffered losses (one host sync) and show the last; raise at the first non-finite one."""
    if not losses:
        return
    values = torch.stack([loss for *_, loss in losses]).tolist()
    for (step, epoch, lr, _), v in zip(losses, values):
        if not math.isfinite(v):
            raise NonFiniteLossError(
                f"FLYP contrastive loss is {v} at step {step} (epoch {epoch}, lr {lr:.3g}); stopping. Lower the "
                f"learning rate, keep gradient clipping on (grad_clip 1.0), or use precision bf16/fp32 instead of "
                f"fp16; check the inputs and the model's weights for NaNs")
    pbar.set_postfix(loss=f"{values[-1]:.4f}", lr=f"{losses[-1][2]:.2e}")
    losses.clear()


def flyp_finetune(clip_model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], train_set: Dataset,
                  classnames: Sequence[str], templates: Sequence[str], config: FinetuneConfig, *,
                  device: Union[str, torch.device, None] = None, progress: bool = True) -> nn.Module:
    """Fine-tune ``clip_model`` (both towers and the logit scale) in place with FLYP; return it, in eval mode.

    ``train_set`` yields ``(image tensor, label)`` (already transformed: the train transform); an image's
    caption is one of ``templates`` (drawn per image, seeded) filled with ``classnames[label]``, tokenized by
    ``tokenizer``. The model is moved to ``device`` (default: the GPU if there is one) in float32.
    """
    _check_inputs(clip_model, classnames, templates, config)
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(config.seed)  # model-side randomness (dropout); the data are seeded per example
    clip_model.float().to(device).requires_grad_(True)
    # images come on the CPU (labels are looked up there) and move to the device in the step
    batches = ImageBatches(train_set, config.batch_size, config.seed, 0, 1, config.num_workers, torch.device("cpu"))
    spe = batches.steps_per_epoch()
    total = config.epochs * spe
    if config.warmup_steps >= total:
        log.warning("warmup_steps %d >= total steps %d: the LR never reaches %g", config.warmup_steps, total, config.lr)
    optimizer = make_optimizer(list(clip_model.parameters()), config, device)
    schedule = WarmupCosineSchedule(optimizer, config.lr, config.warmup_steps, total)
    precision = resolve_precision(config.precision, device)
    step_fn = _Step(clip_model, optimizer, torch.amp.GradScaler(device.type, enabled=precision == "fp16"), config,
                    precision, device)
    captions = _Captions(tokenizer, classnames, templates, config.seed)
    checkpointing = config.grad_checkpointing and hasattr(clip_model, "set_grad_checkpointing")
    if checkpointing:
        clip_model.set_grad_checkpointing(True)
    epochs = config.stop_after_epochs or config.epochs  # the schedule is always `epochs` long
    pbar = progress_bar(total=epochs * spe, desc="finetune (flyp)", unit="step", dynamic_ncols=True, show=progress)
    losses: list[tuple[int, int, float, torch.Tensor]] = []
    step = 0
    clip_model.train()
    try:
        for epoch in range(epochs):
            for x, y in batches.epoch(epoch, 0):
                tokens, where = captions.batch(y)
                lr = schedule.set_step(step)
                losses.append((step + 1, epoch, lr, step_fn(x, tokens, where)))
                step += 1
                counters.add("flyp_steps")
                counters.add("flyp_train_images", len(y))
                pbar.update(1)
                if step % config.log_every == 0:
                    _flush(losses, pbar)
        _flush(losses, pbar)
    finally:
        pbar.close()
        if checkpointing:
            clip_model.set_grad_checkpointing(False)
    return clip_model.eval()


def flyp_classifier(clip_model: nn.Module, model_name: str, classnames: Sequence[str], templates: Sequence[str],
                    pretrained: Optional[str] = None) -> ImageClassifier:
    """The FLYP classifier: the fine-tuned image tower and the zero-shot head of the fine-tuned text tower.

    The head is :func:`~wiseft_lib.core.zeroshot.zeroshot_classifier`'s, so it is scaled by the fine-tuned
    ``exp(logit_scale)``; ``meta`` says it is FLYP's (``method`` "flyp") and records that scale.
    """
    clf = zeroshot_classifier(clip_model, model_name, classnames, templates, pretrained)
    clf.meta.update(method="flyp", flyp={"logit_scale": float(clip_model.logit_scale.detach().exp())})
    return clf
