"""The embedded miniature: Fashion-MNIST rendered in styles that mirror the paper's shifts.

Fashion-MNIST train is split once (fixed seed) into a *pretraining pool* (rendered in every
style, captioned, used only by :mod:`wiseft_lib.mini.pretrain`) and a *fine-tuning pool* of
plain photos (the ID task, like ImageNet). The 10k test images are rendered once per style:

==============  =====================================  ===========================
registry name   rendering                              paper analog
==============  =====================================  ===========================
mini-photo      grayscale photo (ID)                   ImageNet
mini-near       photo re-collected: small affine,      ImageNet-V2
                gamma, contrast, blur or sharpen
mini-sketch     edge strokes on paper                  ImageNet-Sketch
mini-rendition  cartoons and paintings in colour       ImageNet-R
mini-viewpoint  large rotation, flips, clutter         ObjectNet
mini-corruption noise, blur, pixelation, low contrast  (ImageNet-C style)
==============  =====================================  ===========================

Every rendering is deterministic from its seed. The 10k test images are split once into ``val``
(5,000: where recipes and hyperparameters are chosen) and ``test`` (the other 5,000: what the
notebooks report); ``n_test`` takes the first images of a split in a fixed order.

    python -c "from wiseft_lib.data import get_dataset; print(len(get_dataset('mini-sketch', n_test=100)))"
"""
from __future__ import annotations

import functools
import math
import zlib
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from wiseft_lib.data.common import class_balanced_subset
from wiseft_lib.data.fashion_mnist import CLASSNAMES, load_fashion_mnist
from wiseft_lib.data.registry import DatasetBundle, register_dataset

ID_STYLE = "photo"
OOD_SHIFTS = ("near", "sketch", "rendition", "viewpoint", "corruption")
STYLES = (ID_STYLE,) + OOD_SHIFTS
PRETRAIN_POOL = 40_000  # first part of a fixed permutation of FMNIST train; the rest fine-tunes
SPLIT_SEED = 0  # fixed: the shipped weights were pretrained on this split
TEST_RENDER_SEED = 2022
EVAL_SPLITS = ("val", "test")  # halves of the 10k test images: choose recipes on val, report test
EVAL_SPLIT_SIZE = 5000

# Caption templates per style; the zero-shot templates (the mini analog of CLIP's 80) are their union.
CAPTIONS: dict[str, tuple[str, ...]] = {
    "photo": ("a photo of a {}.", "a photo of the {}.", "a picture of a {}.", "a {}."),
    "near": ("a photo of a {}.", "a blurry photo of a {}.", "a bright photo of a {}.", "a dark photo of a {}."),
    "sketch": ("a sketch of a {}.", "a drawing of a {}.", "a pencil sketch of the {}."),
    "rendition": ("a cartoon of a {}.", "a painting of a {}.", "a rendition of a {}.", "art of the {}."),
    "viewpoint": ("a rotated photo of a {}.", "a photo of a {} from an odd angle.", "a {} on a cluttered background."),
    "corruption": ("a noisy photo of a {}.", "a blurry photo of a {}.", "a pixelated photo of a {}."),
}
MINI_TEMPLATES: list[str] = list(dict.fromkeys(t for ts in CAPTIONS.values() for t in ts))

# Groups of classes that captions confuse (noisy web text): tops and shoes.
CONFUSABLE_GROUPS = ((0, 2, 4, 6), (5, 7, 9))


# ----------------------------------------------------------------------------- rendering
def _gauss_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, H, W] with reflect padding."""
    k = _gauss_kernel(sigma)
    c, r = x.shape[1], len(k) // 2
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def affine(x: torch.Tensor, angle_deg: torch.Tensor, scale: torch.Tensor, tx: torch.Tensor,
           ty: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Rotate/scale/translate each image (translation in pixels); outside pixels get ``fill``."""
    n, _, h, w = x.shape
    a = angle_deg * math.pi / 180
    cos, sin = torch.cos(a) / scale, torch.sin(a) / scale
    theta = torch.stack([
        torch.stack([cos, -sin, -2 * tx / w], 1),
        torch.stack([sin, cos, -2 * ty / h], 1),
    ], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill


def sobel(x: torch.Tensor) -> torch.Tensor:
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(xp, kx)
    gy = F.conv2d(xp, kx.transpose(2, 3))
    return torch.sqrt(gx**2 + gy**2 + 1e-12)


def uniform_draws(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    """``n`` draws from U(lo, hi) with the generator ``g``."""
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _colors(g: torch.Generator, n: int, sat: tuple[float, float], val: tuple[float, float]) -> torch.Tensor:
    """Random RGB colours [n, 3, 1, 1] from HSV."""
    h, s, v = torch.rand(n, generator=g), uniform_draws(g, n, *sat), uniform_draws(g, n, *val)
    k = (torch.tensor([5.0, 3.0, 1.0]).view(1, 3) + h.view(-1, 1) * 6) % 6
    rgb = v.view(-1, 1) - v.view(-1, 1) * s.view(-1, 1) * torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return rgb.view(n, 3, 1, 1)


def gray_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1)


def lowfreq_noise(g: torch.Generator, n: int, size: int, cells: int = 4) -> torch.Tensor:
    coarse = torch.rand(n, 1, cells, cells, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def render_photo(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The plain grayscale photo: the ID style."""
    return gray_to_rgb(x)


def render_near(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A re-collected photo: small pose change, exposure, contrast and focus differences."""
    n = len(x)
    x = affine(x, uniform_draws(g, n, -10, 10), uniform_draws(g, n, 0.88, 1.08), uniform_draws(g, n, -1.5, 1.5), uniform_draws(g, n, -1.5, 1.5))
    x = x.clamp(0, 1) ** uniform_draws(g, n, 0.6, 1.6).view(-1, 1, 1, 1)
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = mean + (x - mean) * uniform_draws(g, n, 0.7, 1.25).view(-1, 1, 1, 1)
    soft = blur(x, 0.7)
    sharp = x + 0.8 * (x - soft)
    use_blur = (torch.rand(n, generator=g) < 0.5).view(-1, 1, 1, 1)
    return gray_to_rgb(torch.where(use_blur, soft, sharp).clamp(0, 1))


def render_sketch(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Dark pencil strokes along the object's edges on light paper."""
    n = len(x)
    edges = sobel(blur(x, 0.5))
    edges = edges / edges.flatten(1).quantile(0.98, dim=1).view(-1, 1, 1, 1).clamp_min(1e-6)
    edges = ((edges - 0.25) / 0.75).clamp(0, 1)
    strokes = (edges * uniform_draws(g, n, 0.8, 1.2).view(-1, 1, 1, 1)).clamp(0, 1)
    paper = uniform_draws(g, n, 0.85, 1.0).view(-1, 1, 1, 1)
    grain = 0.04 * torch.randn(x.shape, generator=g)
    return gray_to_rgb((paper * (1 - strokes) + grain).clamp(0, 1))


def render_rendition(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Cartoons (flat colours, dark outlines) and paintings (soft colour on a textured ground)."""
    n = len(x)
    bg, c1, c2 = (_colors(g, n, (0.3, 0.9), (0.5, 1.0)) for _ in range(3))
    light, dark = _colors(g, n, (0.1, 0.5), (0.8, 1.0)), _colors(g, n, (0.5, 1.0), (0.15, 0.5))
    levels = (x > 0.12).float() + (x > 0.5).float()
    cartoon = torch.where(levels == 0, bg, torch.where(levels == 1, c1, c2))
    outline = (sobel(x) > 0.8).float()
    cartoon = cartoon * (1 - 0.85 * outline)
    soft = blur(x, 0.7).clamp(0, 1) ** 0.6
    texture = 0.85 + 0.3 * lowfreq_noise(g, n, x.shape[-1], cells=7)
    painting = (light * (1 - soft) + dark * soft) * texture
    is_cartoon = (torch.rand(n, generator=g) < 0.5).view(-1, 1, 1, 1)
    return torch.where(is_cartoon, cartoon, painting).clamp(0, 1)


def render_viewpoint(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Unusual poses on cluttered backgrounds: large rotations, flips, off-centre, smaller."""
    n = len(x)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    flip = (torch.rand(n, generator=g) < 0.3).view(-1, 1, 1, 1)
    x = torch.where(flip, x.flip(2), x)
    x = affine(x, sign * uniform_draws(g, n, 15, 45), uniform_draws(g, n, 0.65, 0.9), uniform_draws(g, n, -3, 3), uniform_draws(g, n, -3, 3))
    clutter = 0.35 * lowfreq_noise(g, n, x.shape[-1], cells=6)
    mask = (x > 0.08).float()
    return gray_to_rgb((mask * x + (1 - mask) * clutter).clamp(0, 1))


def render_corruption(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Sensor and compression damage: blur or pixelation, low contrast, Gaussian noise."""
    n, _, h, w = x.shape
    pix = F.interpolate(F.interpolate(x, size=(h // 2, w // 2), mode="area"), size=(h, w), mode="nearest")
    use_pix = (torch.rand(n, generator=g) < 0.5).view(-1, 1, 1, 1)
    x = torch.where(use_pix, pix, blur(x, 1.0))
    x = 0.5 + (x - 0.5) * uniform_draws(g, n, 0.55, 0.85).view(-1, 1, 1, 1)
    x = x + uniform_draws(g, n, 0.03, 0.09).view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g)
    return gray_to_rgb(x.clamp(0, 1))


RENDERERS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "photo": render_photo, "near": render_near, "sketch": render_sketch,
    "rendition": render_rendition, "viewpoint": render_viewpoint, "corruption": render_corruption,
}


def render(images: np.ndarray, style: str, seed: int, chunk: int = 8192) -> np.ndarray:
    """Render uint8 [N, 28, 28] images in ``style`` as uint8 RGB [N, 28, 28, 3]."""
    if style not in RENDERERS:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(RENDERERS)}")
    out = np.empty((len(images), images.shape[1], images.shape[2], 3), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        g = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{style}/{start}".encode()))
        x = torch.from_numpy(np.array(images[start:start + chunk])).float().div(255).unsqueeze(1)
        y = RENDERERS[style](x, g)
        out[start:start + chunk] = (y.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).byte().numpy()
    return out


# ----------------------------------------------------------------------------- splits
@functools.lru_cache(maxsize=1)
def split_indices() -> dict[str, np.ndarray]:
    """Fixed split of Fashion-MNIST train into the pretraining and fine-tuning pools."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(60_000)
    return {"pretrain": np.sort(perm[:PRETRAIN_POOL]), "finetune": np.sort(perm[PRETRAIN_POOL:])}


def test_subset(n_test: Optional[int], split: str = "test") -> np.ndarray:
    """The first ``n_test`` indices of a split's fixed order (the same images for every shift).

    A fixed permutation of the 10k Fashion-MNIST test images: its first half is ``val``, its
    second half ``test``. (Before the split existed, ``n_test`` drew from the first half: every
    recipe of the embedded default was chosen there, so those images are ``val`` now.)
    """
    if split not in EVAL_SPLITS:
        raise ValueError(f"mini evaluation split must be one of {EVAL_SPLITS}, got {split!r}")
    perm = np.random.default_rng(TEST_RENDER_SEED).permutation(10_000)
    part = perm[:EVAL_SPLIT_SIZE] if split == "val" else perm[EVAL_SPLIT_SIZE:]
    if n_test is not None and not 0 < n_test <= len(part):
        raise ValueError(f"n_test must be between 1 and {len(part)} (the images of the mini {split} split) "
                         f"or None for all of them; got {n_test}")
    return np.sort(part[: (n_test or len(part))])


# ----------------------------------------------------------------------------- datasets
class RenderedImages(Dataset):
    """Uint8 RGB images [N, H, W, 3] and labels; yields ``(transform(PIL image), label)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Optional[Callable] = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, np.asarray(labels, dtype=np.int64), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i])
        return (self.transform(img) if self.transform else img), int(self.labels[i])


@functools.lru_cache(maxsize=16)
def _rendered_test(style: str, n_test: Optional[int], root: Optional[str],
                   split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_fashion_mnist("test", root)
    idx = test_subset(n_test, split)
    return render(images[idx], style, TEST_RENDER_SEED), labels[idx]


def _bundle(name: str, images: np.ndarray, labels: np.ndarray, transform, **meta) -> DatasetBundle:
    return DatasetBundle(name=name, dataset=RenderedImages(images, labels, transform),
                         classnames=list(CLASSNAMES), templates=list(MINI_TEMPLATES), metadata=meta)


def style_loader(name: str, style: str):
    """The loader of a mini set whose images are all in ``style``: the fine-tuning pool rendered in it (train,
    seeded) and the fixed test images rendered in it (val / test)."""

    def loader(root=None, split="test", transform=None, n_test: Optional[int] = None,
               n_train: Optional[int] = None, seed: int = 0) -> DatasetBundle:
        if split in EVAL_SPLITS:
            images, labels = _rendered_test(style, n_test, str(root) if root else None, split)
            return _bundle(name, images, labels, transform, style=style, n_test=n_test, split=split)
        images, labels = load_fashion_mnist("train", root)
        pool = split_indices()["finetune"]
        idx = pool[class_balanced_subset(labels[pool], n_train, seed)]
        return _bundle(name, render(images[idx], style, seed), labels[idx], transform,
                       style=style, n_train=n_train, seed=seed)

    loader.__doc__ = f"{name}: Fashion-MNIST rendered in the {style!r} style."
    return loader


def _make_loader(style: str):
    name = f"mini-{style}"
    splits = ("train", *EVAL_SPLITS) if style == ID_STYLE else EVAL_SPLITS
    loader = style_loader(name, style)
    register_dataset(name, description=(render_photo if style == ID_STYLE else RENDERERS[style]).__doc__
                     or f"Fashion-MNIST, {style} style", splits=splits, val_split="val",
                     subset_options=("n_test", "n_train", "seed"), embedded=True)(loader)


for _style in STYLES:
    _make_loader(_style)

MINI_ID = f"mini-{ID_STYLE}"
MINI_OOD = tuple(f"mini-{s}" for s in OOD_SHIFTS)
# The paper's dataset in each mini set's place, for tables set beside the published ones. The paper has no
# corruption shift: mini-corruption takes the fifth slot, ImageNet-A's (both are where zero-shot and
# fine-tuned models are weakest), and tables say so.
PAPER_ANALOG = {MINI_ID: "imagenet", "mini-near": "imagenet-v2", "mini-sketch": "imagenet-sketch",
                "mini-rendition": "imagenet-r", "mini-viewpoint": "objectnet", "mini-corruption": "imagenet-a"}
