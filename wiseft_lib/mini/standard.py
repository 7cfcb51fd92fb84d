"""Standard models: classifiers trained from scratch on the ID training set only.

Figure 1 of the paper places the WiSE-FT curve against the *effective-robustness baseline*:
models trained on ImageNet alone lie on a line in logit-scaled (ID accuracy, OOD accuracy)
space (Taori et al. 2020), and zero-shot CLIP models sit far above it. For the embedded
miniature this module trains that population on the mini ID photos: a few small networks of
varied size (linear, MLP, CNNs) and training length, scored on the ID test set and every shift.

    python -c "from wiseft_lib.mini.standard import standard_points; print(standard_points(['linear-e1'], n_test=200))"
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import pandas as pd
import torch
from torch import nn
from torchvision import transforms

from wiseft_lib.core import counters
from wiseft_lib.core.evaluate import evaluate, preprocess_once
from wiseft_lib.data import eval_split as split_of
from wiseft_lib.data import get_dataset, subset_options
from wiseft_lib.data.mini import MINI_ID, MINI_OOD
from wiseft_lib.finetune.schedule import WarmupCosineSchedule
from wiseft_lib.progress import progress_bar

__all__ = ["STANDARD_ZOO", "REFERENCE_MODELS", "build_standard", "train_standard", "standard_training_data",
           "train_zoo_model", "standard_points"]

# name -> architecture, width and epochs over the ID training images. Sizes and training lengths
# vary so the population spans a range of ID accuracies, as the paper's testbed does.
# the mini's effective-robustness population (Figures 1, 7, 8, 21): the defaults of those studies and the mini preset
REFERENCE_MODELS = ["linear-e1", "mlp64-e1", "mlp256-e4", "cnn8-e1", "cnn16-e2", "cnn32-e4"]

STANDARD_ZOO: dict[str, dict[str, Any]] = {
    "linear-e1": {"arch": "linear", "width": 0, "epochs": 1},
    "mlp64-e1": {"arch": "mlp", "width": 64, "epochs": 1},
    "mlp256-e4": {"arch": "mlp", "width": 256, "epochs": 4},
    "cnn8-e1": {"arch": "cnn", "width": 8, "epochs": 1},
    "cnn16-e2": {"arch": "cnn", "width": 16, "epochs": 2},
    "cnn32-e4": {"arch": "cnn", "width": 32, "epochs": 4},
}
# the standard models' input: the image as a tensor, each channel scaled to [-1, 1]
STANDARD_TRANSFORM = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])


def build_standard(arch: str, width: int, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """A small classifier on normalised RGB images: ``linear``, ``mlp`` or ``cnn`` (two conv blocks)."""
    flat = 3 * image_size * image_size
    if arch == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(flat, num_classes))
    if arch == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(flat, width), nn.ReLU(), nn.Linear(width, num_classes))
    if arch == "cnn":
        return nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * (image_size // 4) ** 2, num_classes))
    raise ValueError(f"unknown standard architecture {arch!r}; use 'linear', 'mlp' or 'cnn'")


def train_standard(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int,
                   lr: float = 2e-3, batch_size: int = 128, weight_decay: float = 1e-4, seed: int = 0,
                   device: str | torch.device = "cpu") -> nn.Module:
    """Cross-entropy training with AdamW and a cosine schedule; returns the model in eval mode."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    g = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(images) / batch_size)
    schedule = WarmupCosineSchedule(opt, lr, warmup_steps=0, total_steps=steps)
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=g)
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            schedule.set_step(step)
            loss = nn.functional.cross_entropy(model(images[idx].to(device)), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            counters.add("standard_train_images", len(idx))
            step += 1
    return model.eval()


def standard_training_data(id_dataset: str = MINI_ID, n_train: Optional[int] = None, seed: int = 0,
                           data_root: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(images, labels, number of classes)``: the standard models' training set (``n_train`` seeded images of
    ``id_dataset``'s train split, or all of them), decoded once with :data:`STANDARD_TRANSFORM`."""
    kwargs = {"n_train": n_train, "seed": seed} if {"n_train", "seed"} <= subset_options(id_dataset) else {}
    train = get_dataset(id_dataset, root=data_root, split="train", transform=STANDARD_TRANSFORM, **kwargs)
    x, y = preprocess_once(train, progress=False).dataset.tensors
    return x, y, len(train.classnames)


def train_zoo_model(name: str, images: torch.Tensor, labels: torch.Tensor, *, num_classes: int, seed: int = 0,
                    device: str | torch.device = "cpu") -> nn.Module:
    """The zoo model ``name`` built and trained (seeded: the same weights for the same data and seed)."""
    if name not in STANDARD_ZOO:
        raise ValueError(f"unknown standard model {name!r}; known: {', '.join(STANDARD_ZOO)}")
    spec = STANDARD_ZOO[name]
    torch.manual_seed(seed)
    model = build_standard(spec["arch"], spec["width"], num_classes=num_classes, image_size=images.shape[-1])
    return train_standard(model, images, labels, epochs=spec["epochs"], seed=seed, device=device)


def standard_points(names: Optional[Sequence[str]] = None, *, id_dataset: str = MINI_ID,
                    ood_datasets: Sequence[str] = MINI_OOD, n_train: Optional[int] = None,
                    n_test: Optional[int] = 1000, seed: int = 0, data_root: Optional[str] = None,
                    device: str | torch.device = "cpu", progress: bool = True,
                    eval_split: str = "test", trained: Optional[Callable[[str], nn.Module]] = None) -> pd.DataFrame:
    """Train each named zoo model on ``id_dataset``'s train split; one row per model.

    Columns: ``group`` ("standard"), ``model``, ``id_acc``, ``ood_avg`` and one per OOD set
    (top-1, percent), ready for ``plot_id_vs_ood(..., extra=...)``. ``eval_split`` is "test"
    (reported numbers) or "val" (held out from test, for choices). ``trained(name)``, if given, supplies
    each trained model instead (e.g. from the run cache: the same weights whatever the test sets).
    """

    names = list(STANDARD_ZOO) if names is None else list(names)
    unknown = [n for n in names if n not in STANDARD_ZOO]
    if unknown:
        raise ValueError(f"unknown standard models {unknown}; known: {', '.join(STANDARD_ZOO)}")
    if trained is None:
        x, y, n_classes = standard_training_data(id_dataset, n_train, seed, data_root)

        def trained(name: str) -> nn.Module:
            return train_zoo_model(name, x, y, num_classes=n_classes, seed=seed, device=device)
    evals = {}
    for name in (id_dataset, *ood_datasets):
        bundle = get_dataset(name, root=data_root, split=split_of(name, eval_split), transform=STANDARD_TRANSFORM,
                             n_test=n_test)
        evals[name] = preprocess_once(bundle, progress=False)
    rows = []
    for name in progress_bar(names, desc="standard models", unit="model", show=progress):
        model = trained(name)
        scores = {d: evaluate(model, b, progress=False)["top1"] for d, b in evals.items()}
        ood = [scores[d] for d in ood_datasets]
        rows.append({"group": "standard", "model": name, "seed": seed, "id_acc": scores[id_dataset],
                     "ood_avg": sum(ood) / len(ood), **{d: scores[d] for d in ood_datasets}})
    return pd.DataFrame(rows)
