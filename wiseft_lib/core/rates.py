"""Bare rates of this machine: how fast the mini CLIP scores, fine-tunes and pretrains with no overhead at all.

A bare rate is a plain PyTorch loop over tensors already in memory: no data loading, no run cache, no
bookkeeping. Set against the work a study counted (:mod:`wiseft_lib.core.counters`) it gives the study's
*compute floor*, the time its work needs at least; wall time over floor says how much is overhead.

    python -c "from wiseft_lib.core.rates import bare_rates; print(bare_rates())"
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from wiseft_lib.core.models import ClassificationHead, ImageClassifier, create_model

__all__ = ["BareRates", "bare_rates", "compute_floor"]


@dataclass(frozen=True)
class BareRates:
    """Images per second of the bare loops (one process, this machine's threads)."""

    eval_images: float  # classifier forward, inference mode (also used for feature extraction)
    e2e_train_images: float  # forward + backward + fused AdamW step of the image tower and head
    pretrain_images: float  # contrastive step of both towers (the mini's pretraining)

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 1) for k, v in asdict(self).items()}

    def best(self, other: "BareRates") -> "BareRates":
        """The faster of two measurements of each rate (a shared machine's speed drifts over a long run)."""
        return BareRates(*(max(a, b) for a, b in zip(asdict(self).values(), asdict(other).values())))


def _images_per_second(step: Callable[[], None], images_per_step: int, seconds: float, windows: int = 5) -> float:
    """The best rate over ``windows`` timing windows of ``seconds / windows`` each (a bare rate is what the
    machine can do: the fastest window, as benchmarks take the minimum time, not the mean of a noisy machine)."""
    step()  # warm-up (allocations, kernels, thread pools)
    step()
    best = 0.0
    for _ in range(windows):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / windows or done == 0:
            step()
            done += images_per_step
        best = max(best, done / (time.perf_counter() - start))
    return best


def _adamw(params: list[torch.nn.Parameter], fused: bool) -> torch.optim.Optimizer:
    """The AdamW the measured work uses; the fused kernel falls back to the default where this torch lacks it."""
    if fused:
        try:
            return torch.optim.AdamW(params, lr=1e-5, fused=True)
        except (RuntimeError, TypeError, ValueError):  # older torch: no fused CPU kernel
            pass
    return torch.optim.AdamW(params, lr=1e-5)


def bare_rates(model: str = "wiseft-mini", *, eval_batch: int = 256, train_batch: int = 64,
               pretrain_batch: int = 64, seconds: float = 5.0, n_classes: int = 10) -> BareRates:
    """Measure the three bare rates of ``model`` on the CPU (each loop runs about ``seconds``)."""
    torch.manual_seed(0)
    clip, _, _ = create_model(model)
    size = clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    head = ClassificationHead(torch.randn(n_classes, clip.text_projection.shape[1]))
    classifier = ImageClassifier(clip.visual, head, {"model_name": model}).eval()
    x_eval = torch.randn(eval_batch, 3, size, size)

    def forward() -> None:
        with torch.inference_mode():
            classifier(x_eval)

    x, y = torch.randn(train_batch, 3, size, size), torch.randint(0, n_classes, (train_batch,))
    optimizer = _adamw(list(classifier.parameters()), fused=True)  # as the engine: fused where this torch has it

    def train() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(classifier(x), y).backward()
        optimizer.step()

    images = torch.randn(pretrain_batch, 3, size, size)
    text = torch.randint(1, 40, (pretrain_batch, clip.context_length))
    clip_optimizer, loss_fn = _adamw(list(clip.parameters()), fused=False), ClipLoss()  # as the mini's pretraining

    def pretrain() -> None:
        clip_optimizer.zero_grad(set_to_none=True)
        loss_fn(clip.encode_image(images, normalize=True), clip.encode_text(text, normalize=True),
                clip.logit_scale.exp()).backward()
        clip_optimizer.step()

    scoring = _images_per_second(forward, eval_batch, seconds)
    classifier.train()
    return BareRates(scoring, _images_per_second(train, train_batch, seconds),
                     _images_per_second(pretrain, pretrain_batch, seconds))


def compute_floor(work: dict[str, int], rates: BareRates) -> float:
    """Seconds the counted ``work`` needs at the bare rates: every CLIP image scored or encoded, fine-tuned
    end to end or pretrained. Head-only steps and the small standard models are left out (cheap next to these)."""
    return ((work.get("eval_images", 0) + work.get("feature_images", 0)) / rates.eval_images
            + work.get("e2e_train_images", 0) / rates.e2e_train_images
            + work.get("pretrain_images", 0) / rates.pretrain_images)
