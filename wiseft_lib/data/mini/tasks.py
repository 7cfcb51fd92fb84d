"""More of the embedded miniature: downstream tasks (Table 2's analogs) and further shifts scored with
their own metrics (Table 6's analogs). Same Fashion-MNIST images, splits and seeds as :mod:`wiseft_lib.data.mini`.

Downstream tasks (``train`` from the fine-tuning pool; ``val`` / ``test`` from the two halves of the test images):

===================  ==========================================  ====================================
registry name        task                                        kind of Table 2 task it stands for
===================  ==========================================  ====================================
mini-task-sketch     the ten classes, every image a sketch       a domain unlike photos (DTD, SUN397)
mini-task-rendition  the ten classes as cartoons and paintings   a domain unlike photos
mini-task-viewpoint  the ten classes in odd poses, on clutter    a harder photo task (Food-101)
mini-task-corruption the ten classes, noisy / blurred / pixel    low-resolution images (CIFAR)
mini-tops            t-shirt, pullover, coat, shirt (photos)     fine-grained (Stanford Cars)
mini-footwear        sandal, sneaker, ankle boot (photos)        fine-grained
===================  ==========================================  ====================================

Further shifts of the photo task (``val`` / ``test``), each scored with its paper analog's metric:

==================  ============================================  ==========================  =================
registry name       rendering                                     paper analog                metrics
==================  ============================================  ==========================  =================
mini-frames         6 "video frames" per image (offsets 0,2,..,10 ImageNet-Vid-Robust         pm0, pm10
                    frames: slow pose drift, video compression)
mini-frames-strong  the same with faster drift and more noise     YTBB-Robust                 pm0, pm10
mini-regions        five acquisition conditions (clear, dim,      FMoW (worst region)         top1,
                    hazy, grainy, tinted), one per image                                      worst_region_acc
mini-imbalanced     camera-trap nights (dark, flash fall-off,     iWildCam (macro-F1)         top1, macro_f1
                    noise, occluders), long-tailed classes
==================  ============================================  ==========================  =================

(CIFAR-10.1's analog, a re-collection scored by top-1, is ``mini-near``.) ``n_test`` is the number of test
images drawn from the split, as for every mini set; ``mini-frames`` has six frames per image, the class subsets
and ``mini-imbalanced`` keep only some of the drawn images.

    python -c "from wiseft_lib.data import get_dataset; print(get_dataset('mini-regions', n_test=100).metadata)"
"""
from __future__ import annotations

import functools
import zlib
from typing import Optional

import numpy as np
import torch

from wiseft_lib.data.common import class_balanced_subset
from wiseft_lib.data.fashion_mnist import CLASSNAMES, load_fashion_mnist
from wiseft_lib.data.mini import (
    EVAL_SPLITS,
    MINI_TEMPLATES,
    TEST_RENDER_SEED,
    RenderedImages,
    affine,
    blur,
    gray_to_rgb,
    lowfreq_noise,
    render,
    split_indices,
    style_loader,
    test_subset,
    uniform_draws,
)
from wiseft_lib.data.registry import DatasetBundle, register_dataset

__all__ = ["STYLE_TASKS", "CLASS_TASKS", "TRANSFER_TASKS", "FURTHER_SHIFTS", "FRAME_OFFSETS", "REGIONS",
           "TASK_KIND", "render_frames", "render_regions", "render_camera_trap", "imbalanced_keep"]

STYLE_TASKS = ("sketch", "rendition", "viewpoint", "corruption")
CLASS_TASKS: dict[str, tuple[str, ...]] = {
    "tops": ("t-shirt", "pullover", "coat", "shirt"),
    "footwear": ("sandal", "sneaker", "ankle boot"),
}
# Table 2's rows on the mini: the ID task first (ImageNet's place), then the downstream tasks.
TRANSFER_TASKS = ("mini-photo", *(f"mini-task-{s}" for s in STYLE_TASKS), *(f"mini-{c}" for c in CLASS_TASKS))
TASK_KIND = {
    "mini-photo": "the ID task (ImageNet's row)",
    "mini-task-sketch": "a domain unlike photos (as DTD, SUN397)",
    "mini-task-rendition": "a domain unlike photos (as DTD, SUN397)",
    "mini-task-viewpoint": "a harder photo task (as Food-101)",
    "mini-task-corruption": "degraded, low-resolution images (as CIFAR)",
    "mini-tops": "fine-grained: four similar tops (as Stanford Cars)",
    "mini-footwear": "fine-grained: three kinds of shoe",
}
FRAME_OFFSETS = (0, 2, 4, 6, 8, 10)  # the anchor and five neighbours, in video frames
REGIONS = ("clear", "dim", "hazy", "grainy", "tinted")
# Table 6's rows -> their mini analogs (None: no analog of its own).
FURTHER_SHIFTS = {"imagenet-vid-robust": "mini-frames", "ytbb-robust": "mini-frames-strong",
                  "cifar10.1": "mini-near", "cifar10.2": None, "fmow": "mini-regions", "iwildcam": "mini-imbalanced"}


def _generator(seed: int, name: str, start: int) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{name}/{start}".encode()))


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).byte().numpy()


# ----------------------------------------------------------------------------- renderings
def render_frames(images: np.ndarray, seed: int, strong: bool = False) -> np.ndarray:
    """Six frames per image [N * 6, 28, 28, 3], image-major: a slow random drift of pose, scale and exposure
    (frame offset t moves it t times a per-image velocity) through a video codec (down-up sampling, blur,
    noise). ``strong``: three times the velocity and more noise (YTBB-Robust's harder clips)."""
    x = torch.from_numpy(np.asarray(images)).float().div(255).unsqueeze(1)
    n = len(x)
    g = _generator(seed, "frames-strong" if strong else "frames", 0)
    speed = 3.0 if strong else 1.0
    base = (uniform_draws(g, n, -8, 8), uniform_draws(g, n, 0.9, 1.05), uniform_draws(g, n, -1, 1), uniform_draws(g, n, -1, 1))
    sign = lambda: torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)  # noqa: E731
    velocity = (sign() * uniform_draws(g, n, 0.4, 1.0) * speed, sign() * uniform_draws(g, n, 0.004, 0.012) * speed,
                sign() * uniform_draws(g, n, 0.05, 0.15) * speed, sign() * uniform_draws(g, n, 0.05, 0.15) * speed)
    exposure, exposure_v = uniform_draws(g, n, 0.85, 1.1), sign() * uniform_draws(g, n, 0.005, 0.02) * speed
    noise = (0.05, 0.11) if strong else (0.02, 0.06)
    frames = []
    for t in FRAME_OFFSETS:
        y = affine(x, *(b + t * v for b, v in zip(base, velocity)))
        y = y * (exposure + t * exposure_v).view(-1, 1, 1, 1)
        small = torch.nn.functional.interpolate(y, size=(14, 14), mode="area")  # the codec's resolution
        y = 0.5 * torch.nn.functional.interpolate(small, size=y.shape[-2:], mode="bilinear",
                                                  align_corners=False) + 0.5 * blur(y, 0.6)
        y = y + uniform_draws(g, n, *noise).view(-1, 1, 1, 1) * torch.randn(y.shape, generator=g)
        frames.append(gray_to_rgb(y.clamp(0, 1)))
    return _as_uint8(torch.stack(frames, 1).flatten(0, 1))


def render_regions(images: np.ndarray, regions: np.ndarray, seed: int) -> np.ndarray:
    """Each image under its region's acquisition condition (``regions``: indices into :data:`REGIONS`)."""
    x = torch.from_numpy(np.asarray(images)).float().div(255).unsqueeze(1)
    n = len(x)
    g = _generator(seed, "regions", 0)
    shape = lambda v: v.view(-1, 1, 1, 1)  # noqa: E731
    conditions = {
        "clear": gray_to_rgb(0.5 + (x - 0.5) * shape(uniform_draws(g, n, 0.9, 1.1))),
        "dim": gray_to_rgb(x.clamp(0, 1) ** shape(uniform_draws(g, n, 1.8, 2.6)) * shape(uniform_draws(g, n, 0.35, 0.55))),
        "hazy": gray_to_rgb(blur(x, 1.1) * shape(uniform_draws(g, n, 0.45, 0.6)) + shape(uniform_draws(g, n, 0.3, 0.45))),
        "grainy": gray_to_rgb(x + shape(uniform_draws(g, n, 0.12, 0.2)) * torch.randn(x.shape, generator=g)),
        "tinted": x * shape(uniform_draws(g, n, 0.6, 0.9)) * torch.tensor([1.0, 0.75, 0.45]).view(1, 3, 1, 1)
        + torch.tensor([0.15, 0.1, 0.0]).view(1, 3, 1, 1),
    }
    pick = torch.as_tensor(np.asarray(regions), dtype=torch.long).view(-1, 1, 1, 1)
    out = torch.zeros(n, 3, *x.shape[-2:])
    for i, name in enumerate(REGIONS):
        out = torch.where(pick == i, conditions[name], out)
    return _as_uint8(out.clamp(0, 1))


def render_camera_trap(images: np.ndarray, seed: int) -> np.ndarray:
    """Camera-trap nights: infrared-dark, a flash that falls off from a random centre, sensor noise, and
    vegetation bars in front of the object, which is off-centre and smaller."""
    x = torch.from_numpy(np.asarray(images)).float().div(255).unsqueeze(1)
    n, _, h, w = x.shape
    g = _generator(seed, "camera-trap", 0)
    x = affine(x, uniform_draws(g, n, -10, 10), uniform_draws(g, n, 0.7, 0.9), uniform_draws(g, n, -3, 3), uniform_draws(g, n, -2, 2))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    cx, cy = uniform_draws(g, n, -0.5, 0.5).view(-1, 1, 1, 1), uniform_draws(g, n, -0.5, 0.5).view(-1, 1, 1, 1)
    flash = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / uniform_draws(g, n, 0.5, 1.2).view(-1, 1, 1, 1))
    x = x * (0.25 + 0.6 * flash) + 0.08 * lowfreq_noise(g, n, h, cells=5)
    bars = (torch.sin(xx * uniform_draws(g, n, 6, 12).view(-1, 1, 1, 1) + uniform_draws(g, n, 0, 6.3).view(-1, 1, 1, 1)) > 0.8).float()
    x = x * (1 - 0.7 * bars * (torch.rand(n, generator=g) < 0.6).float().view(-1, 1, 1, 1))
    x = x + uniform_draws(g, n, 0.04, 0.1).view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g)
    return _as_uint8(gray_to_rgb(x.clamp(0, 1)))


def imbalanced_keep(labels: np.ndarray, seed: int = TEST_RENDER_SEED, decay: float = 0.7) -> np.ndarray:
    """Sorted indices of a long-tailed subset: classes in a seeded order keep 1, decay, decay^2, ... of their
    images (at least one each), as camera traps see a few species often and most rarely."""
    labels = np.asarray(labels)
    order = np.random.default_rng([seed, 1]).permutation(len(CLASSNAMES))
    keep = []
    for rank, c in enumerate(order):
        members = np.flatnonzero(labels == c)
        keep.append(members[: max(1, int(round(len(members) * decay ** rank)))])
    return np.sort(np.concatenate(keep))


# ----------------------------------------------------------------------------- loaders
def _bundle(name: str, images, labels, transform, classnames=CLASSNAMES, metrics=("top1",), **meta) -> DatasetBundle:
    return DatasetBundle(name=name, dataset=RenderedImages(images, labels, transform), classnames=list(classnames),
                         templates=list(MINI_TEMPLATES), metrics=tuple(metrics), metadata=meta)


def _register_style_task(style: str) -> None:
    name = f"mini-task-{style}"
    register_dataset(name, description=f"downstream task: the ten classes, every image in the {style!r} style "
                                       f"(train, val, test)", splits=("train", *EVAL_SPLITS),
                     val_split="val", subset_options=("n_test", "n_train", "seed"), embedded=True)(style_loader(name, style))


def _register_class_task(task: str, classes: tuple[str, ...]) -> None:
    name = f"mini-{task}"
    ids = np.array([CLASSNAMES.index(c) for c in classes])
    remap = np.full(len(CLASSNAMES), -1)
    remap[ids] = np.arange(len(ids))

    def loader(root=None, split="test", transform=None, n_test: Optional[int] = None,
               n_train: Optional[int] = None, seed: int = 0) -> DatasetBundle:
        if split in EVAL_SPLITS:
            images, labels = load_fashion_mnist("test", root)
            idx = test_subset(n_test, split)  # the same images every mini set draws, then only these classes
            idx = idx[np.isin(labels[idx], ids)]
            return _bundle(name, render(images[idx], "photo", TEST_RENDER_SEED), remap[labels[idx]], transform,
                           classnames=classes, n_test=n_test, split=split)
        images, labels = load_fashion_mnist("train", root)
        pool = split_indices()["finetune"]
        pool = pool[np.isin(labels[pool], ids)]
        idx = pool[class_balanced_subset(labels[pool], n_train, seed)]
        return _bundle(name, render(images[idx], "photo", seed), remap[labels[idx]], transform, classnames=classes,
                       n_train=n_train, seed=seed)

    register_dataset(name, description=f"downstream task: {len(classes)} classes of photos ({', '.join(classes)})",
                     splits=("train", *EVAL_SPLITS), val_split="val", subset_options=("n_test", "n_train", "seed"), embedded=True)(loader)


@functools.lru_cache(maxsize=8)
def _further_shift(name: str, n_test: Optional[int], root: Optional[str], split: str):
    images, labels = load_fashion_mnist("test", root)
    idx = test_subset(n_test, split)
    if name in ("mini-frames", "mini-frames-strong"):
        frames = render_frames(images[idx], TEST_RENDER_SEED, strong=name.endswith("strong"))
        k = len(FRAME_OFFSETS)
        anchor = np.repeat(np.arange(len(idx)) * k, k)
        offset = np.tile(np.array(FRAME_OFFSETS), len(idx))
        return frames, np.repeat(labels[idx], k), {"pm_anchor": anchor, "pm_offset": offset}
    if name == "mini-regions":
        # an image's region is fixed by the image (a seeded permutation of all 10k), whichever split draws it
        region = np.random.default_rng([TEST_RENDER_SEED, 2]).permutation(10_000)[idx] % len(REGIONS)
        return render_regions(images[idx], region, TEST_RENDER_SEED), labels[idx], {
            "region": np.array(REGIONS)[region]}
    keep = idx[imbalanced_keep(labels[idx])]
    return render_camera_trap(images[keep], TEST_RENDER_SEED), labels[keep], {}


_FURTHER_METRICS = {"mini-frames": ("pm0", "pm10"), "mini-frames-strong": ("pm0", "pm10"),
                    "mini-regions": ("top1", "worst_region_acc"), "mini-imbalanced": ("top1", "macro_f1")}
_FURTHER_DOC = {"mini-frames": render_frames.__doc__, "mini-frames-strong": render_frames.__doc__,
                "mini-regions": render_regions.__doc__, "mini-imbalanced": render_camera_trap.__doc__}


def _register_further_shift(name: str) -> None:
    def loader(root=None, split="test", transform=None, n_test: Optional[int] = None) -> DatasetBundle:
        images, labels, meta = _further_shift(name, n_test, str(root) if root else None, split)
        return _bundle(name, images, labels, transform, metrics=_FURTHER_METRICS[name], n_test=n_test, split=split,
                       **meta)

    register_dataset(name, description=_FURTHER_DOC[name].split("\n")[0].strip(), splits=EVAL_SPLITS,
                     val_split="val", subset_options=("n_test", "n_train", "seed"), embedded=True)(loader)


for _style in STYLE_TASKS:
    _register_style_task(_style)
for _task, _classes in CLASS_TASKS.items():
    _register_class_task(_task, _classes)
for _name in _FURTHER_METRICS:
    _register_further_shift(_name)
