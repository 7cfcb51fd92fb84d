"""The fine-tuning recipe as one dataclass, and the errors the engine raises."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

from wiseft_lib.params import check_fields

MODES = ("end-to-end", "linear")


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
    # The paper's baselines (Figures 3 and 13): other optimizers, regularizers toward the zero-shot model.
    optimizer: str = "adamw"  # adamw | adam (the paper's "Adam without weight decay") | sgd (with momentum)
    momentum: float = 0.9  # sgd only
    l2_to_init: float = 0.0  # lambda of lambda * ||theta - theta_0||^2 over every trained weight (theta_0: start)
    distill: float = 0.0  # a of (1 - a) * CE(labels) + a * CE(softmax(zero-shot logits)): distillation toward theta_0
    ema_decay: float = 0.0  # > 0: the result is the EMA of the weights over the steps (Figures 11, 12)
    ema_start: str = "debiased"  # debiased (from zero, divided by 1 - decay^t) | zero-shot (from theta_0: biased to it)
    stop_after_epochs: Optional[int] = None  # early stopping: end after this many epochs of the `epochs` schedule
    l1: float = 0.0  # lambda of lambda * sum |theta| over every trained weight (the paper's LC L1 regularizer)
    head_init: str = "zero-shot"  # zero-shot (the paper's) | random (the head re-drawn, seeded, before training)

    def __post_init__(self) -> None:
        check_fields(self, where="FinetuneConfig")  # types first: a string lr is named, not compared
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
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}")
        if self.optimizer == "adam" and self.weight_decay > 0:
            raise ValueError(f"optimizer 'adam' is the paper's Adam without weight decay: set weight_decay 0 (got "
                             f"{self.weight_decay}), or use 'adamw'")
        if not 0 <= self.ema_decay < 1 or self.ema_start not in ("debiased", "zero-shot"):
            raise ValueError(f"ema_decay must be in [0, 1) and ema_start 'debiased' or 'zero-shot'; got "
                             f"{self.ema_decay}, {self.ema_start!r}")
        if self.l2_to_init < 0 or not 0 <= self.distill <= 1 or not 0 <= self.momentum < 1:
            raise ValueError(f"l2_to_init must be >= 0, distill in [0, 1], momentum in [0, 1); got "
                             f"{self.l2_to_init}, {self.distill}, {self.momentum}")
        if self.stop_after_epochs is not None and not 1 <= self.stop_after_epochs <= self.epochs:
            raise ValueError(f"stop_after_epochs must be in [1, epochs={self.epochs}] or None; got "
                             f"{self.stop_after_epochs}")
        if self.l1 < 0 or self.head_init not in ("zero-shot", "random"):
            raise ValueError(f"l1 must be >= 0 and head_init 'zero-shot' or 'random'; got {self.l1}, "
                             f"{self.head_init!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be one of auto, fp32, bf16, fp16; got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FinetuneConfig":
        """Build from a dict that may hold extra keys (e.g. a checkpoint's ``resolved_precision``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def recipe(self) -> dict[str, Any]:
        """The fields that change the trained weights (what a run cache keys on).

        Fields added after runs were cached (:data:`LATER_FIELDS`) count only when set away from their
        default, so a run made before they existed keeps its key.
        """
        d = self.to_dict()
        if d["stop_after_epochs"] == self.epochs:  # stopping at the end is no early stopping: the same run
            d["stop_after_epochs"] = None
        return {k: v for k, v in d.items()
                if k not in RESUMABLE_CHANGES and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}


OPTIMIZERS = ("adamw", "adam", "sgd")
# Recipe fields added after the run cache existed, with their defaults (see FinetuneConfig.recipe).
LATER_FIELDS = {"optimizer": "adamw", "momentum": 0.9, "l2_to_init": 0.0, "distill": 0.0, "ema_decay": 0.0,
                "ema_start": "debiased", "stop_after_epochs": None, "l1": 0.0, "head_init": "zero-shot"}

# Fields that may change between a run and its resumption (they do not change the maths).
RESUMABLE_CHANGES = {"num_workers", "checkpoint_every", "compile", "grad_checkpointing", "log_every",
                     "keep_checkpoints", "grad_accum_steps"}


class NonFiniteLossError(FloatingPointError, ValueError):
    """The training loss became NaN or inf; the message names the step. (A ValueError too, so
    CLIs that report ValueErrors as clean messages report this one.)"""


class RunExistsError(FileExistsError, ValueError):
    """``output_dir`` holds checkpoints of another run and ``resume`` was not asked for."""
