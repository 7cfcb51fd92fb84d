"""Shared pieces of ``bench/run_all.py`` and its subprocess workers (``bench/bench_worker.py``).

The timing helpers (``timed``, ``clock``, ``paired``) and the ViT builder come from
``bench/finetune_step.py``, so every ratio uses the same method: back-to-back pairs, order
alternating, median of the per-pair ratios; this process's CPU time on the CPU (one thread), wall
time on GPUs.
"""
from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path
from typing import Optional

import torch
from finetune_step import build, clock, fastest, paired, timed  # noqa: F401  (bench/ is sys.path[0] here)
from torch.utils.data import Dataset, TensorDataset

N_CLASSES = 10


def vit_args(width: int, layers: int, image_size: int, patch: int) -> argparse.Namespace:
    """The arguments ``finetune_step.build`` reads."""
    return argparse.Namespace(width=width, layers=layers, image_size=image_size, patch=patch)


def build_vit(cfg: dict, seed: int = 0):
    """An ``ImageClassifier`` (open_clip ViT image tower + head) from ``cfg`` (width/layers/image/patch), eval mode.

    ``finetune_step.build`` seeds with 0; ``seed`` != 0 then redraws every floating tensor from that seed
    (a second model of the same architecture).
    """
    model = build(vit_args(cfg["width"], cfg["layers"], cfg["image"], cfg["patch"]), N_CLASSES).eval()
    if seed:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for t in model.state_dict().values():
                if t.is_floating_point():
                    t.add_(torch.randn(t.shape, generator=g) * 0.02)
    return model


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers (its state dict)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def tensor_dataset(n: int, image_size: int, seed: int = 0) -> TensorDataset:
    """``n`` pre-decoded images (standard normal, like normalised pixels) with labels in 0..9."""
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, image_size, image_size, generator=g),
                         torch.randint(0, N_CLASSES, (n,), generator=g))


def clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def per_class_counts(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Correct predictions and examples per class, and the total: what two evaluations must agree on."""
    labels = labels.long()
    hit = logits.argmax(1) == labels
    return {"correct": torch.bincount(labels[hit], minlength=N_CLASSES).tolist(),
            "total": torch.bincount(labels, minlength=N_CLASSES).tolist(),
            "n": int(labels.numel())}


def median(xs) -> float:
    return statistics.median(xs)


# ---------------------------------------------------------------- a dataset that decodes JPEG files
def write_jpegs(folder: Path, n: int, size: int, seed: int = 0) -> tuple[list[Path], list[int]]:
    """``n`` ``size``x``size`` JPEGs (a colour gradient plus noise, quality 90) and their labels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    files, labels = [], []
    for i in range(n):
        c = rng.uniform(0.2, 1.0, 3).astype(np.float32)
        base = (ramp[None, :, None] * c + ramp[:, None, None] * (1 - c)) / 2
        img = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(img).save(path, quality=90)
        files.append(path)
        labels.append(int(rng.integers(0, N_CLASSES)))
    return files, labels


class JpegFolder(Dataset):
    """Opens and decodes a JPEG with PIL per item and applies open_clip's eval transform
    (Resize bicubic, CenterCrop, RGB, ToTensor, Normalize with the OpenAI mean/std)."""

    def __init__(self, files: list[Path], labels: list[int], image_size: int, transform: Optional[object] = None):
        import open_clip

        self.files, self.labels = [str(f) for f in files], labels
        self.transform = transform or open_clip.image_transform(image_size, is_train=False)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.files[i]) as im:
            x = self.transform(im)
        return x, self.labels[i]


# ---------------------------------------------------------------- process memory (Linux /proc)
def proc_status_kb(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in kB (from /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_hwm() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return proc_status_kb("VmHWM") <= proc_status_kb("VmRSS") + 64


def malloc_trim() -> None:
    """Give freed heap pages back to the OS so a later allocation shows in the RSS."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def worker_env(**extra: str) -> dict[str, str]:
    """This process's environment without torchrun variables, one OpenMP thread, no GPU, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env
