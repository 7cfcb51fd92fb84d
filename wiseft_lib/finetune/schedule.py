"""The one learning-rate schedule: linear warm-up, then cosine decay to zero.

    from wiseft_lib.finetune.schedule import WarmupCosineSchedule, warmup_cosine_lr
    schedule = WarmupCosineSchedule(optimizer, base_lr=3e-5, warmup_steps=500, total_steps=25_000)
    for step in range(total_steps):
        schedule.set_step(step)     # before the optimizer step that uses it
        ...

Fine-tuning (the paper's official code), the mini pretraining and the standard models all use it.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch

__all__ = ["warmup_cosine_lr", "WarmupCosineSchedule"]


def warmup_cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int, *,
                     decay_during_warmup: bool = False) -> float:
    """LR of 0-based update ``step``.

    Default (the official WiSE-FT code): ``base_lr * (step+1)/warmup_steps`` during warm-up, then
    ``0.5 * (1 + cos(pi * (step - warmup) / (total - warmup))) * base_lr``. With
    ``decay_during_warmup`` the cosine runs over all steps from step 0 and the warm-up ramp
    multiplies it, ``base_lr * min(1, (step+1)/warmup) * 0.5 * (1 + cos(pi * step / total))``:
    the form the shipped ``wiseft-mini`` weights were pretrained with (kept so they stay reproducible).
    """
    if decay_during_warmup:
        ramp = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        return base_lr * (ramp * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    e, es = step - warmup_steps, max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * e / es)) * base_lr


class WarmupCosineSchedule:
    """Sets every param group's LR from :func:`warmup_cosine_lr`; its state is just the step."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup_steps: int, total_steps: int,
                 *, decay_during_warmup: bool = False):
        self.optimizer, self.base_lr = optimizer, base_lr
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.decay_during_warmup = decay_during_warmup
        self.step_index = 0

    def set_step(self, step: int) -> float:
        self.step_index = step
        lr = warmup_cosine_lr(step, self.base_lr, self.warmup_steps, self.total_steps,
                              decay_during_warmup=self.decay_during_warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_index, "base_lr": self.base_lr, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.set_step(int(state["step"]))
