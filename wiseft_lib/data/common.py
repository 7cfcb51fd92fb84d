"""Shared pieces of the real-dataset loaders: data roots, layout errors, image lists, projections.

Every loader finds its folder under the data root (``root`` argument, else ``$WISEFT_DATA``),
indexes its files in sorted order, skips files that are not readable images (counted in
``DatasetBundle.skipped``) and returns ``(PIL image -> transform, int label)`` items.
"""
from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
PathLike = Union[str, Path]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder is missing or incomplete; the message shows the expected layout."""


# ---------------------------------------------------------------------------- roots and layouts


def data_root(root: Optional[PathLike]) -> Path:
    """``root`` if given, else ``$WISEFT_DATA``; an error naming both when neither is set."""
    if root is None:
        root = os.environ.get("WISEFT_DATA")
        if not root:
            raise DatasetNotFoundError(
                "no data folder: pass root=... (data_root in a study's params) or set WISEFT_DATA "
                "to the folder that holds the datasets"
            )
    return Path(root).expanduser()


def find_folder(
    root: Optional[PathLike],
    candidates: Sequence[str],
    required: Sequence[str],
    *,
    dataset: str,
    layout: str,
    source: str,
) -> Path:
    """The first of ``root/<candidate>`` (or ``root`` itself) that holds every ``required`` entry.

    ``required`` are paths relative to the dataset folder (files or folders). On failure the
    error names what is missing, shows ``layout`` (a short tree) and where to get the data.
    """
    base = data_root(root)
    tried = [base / c for c in candidates] + [base]
    for folder in tried:
        if folder.is_dir() and all((folder / r).exists() for r in required):
            return folder
    partial = next((f for f in tried if f.is_dir() and f != base), None)
    if partial is not None:
        missing = [r for r in required if not (partial / r).exists()]
        what = f"{dataset} folder {partial} is incomplete: missing {', '.join(missing)}"
    else:
        what = f"{dataset} not found under {base} (looked for {', '.join(candidates)})"
    raise DatasetNotFoundError(f"{what}.\nExpected layout:\n{layout.rstrip()}\nGet it from: {source}")


def layout_error(dataset: str, problem: str, layout: str, source: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{dataset}: {problem}.\nExpected layout:\n{layout.rstrip()}\nGet it from: {source}"
    )


# ---------------------------------------------------------------------------- assets


@lru_cache(maxsize=None)
def load_asset(name: str) -> Any:
    """A JSON file from ``wiseft_lib/data/assets`` (class names, wnids, class maps)."""
    text = resources.files("wiseft_lib.data").joinpath("assets", name).read_text(encoding="utf-8")
    return json.loads(text)


def asset_path(name: str) -> Path:
    return Path(str(resources.files("wiseft_lib.data").joinpath("assets", name)))


# ---------------------------------------------------------------------------- image files


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())


def class_folder_samples(root: Path, class_dirs: Sequence[str]) -> list[tuple[Path, int]]:
    """``(path, label)`` for images in ``root/<class_dirs[label]>/``, in label then name order."""
    samples: list[tuple[Path, int]] = []
    for label, name in enumerate(class_dirs):
        samples.extend((p, label) for p in list_images(root / name))
    return samples


def _readable(path: Path, full: bool) -> bool:
    try:
        with Image.open(path) as img:
            if full:
                img.load()
            else:
                img.verify()  # cheap structural check (PNG chunks/CRCs); no pixel decoding
        return True
    except Exception:  # noqa: BLE001 - any decoding failure means "skip this file"
        return False


def readable_mask(paths: Sequence[PathLike], verify: str = "header", *, what: str = "") -> np.ndarray:
    """Boolean mask of the ``paths`` that are readable images (warns once about the others).

    ``verify``: ``"header"`` (default) opens each file and checks its structure without
    decoding pixels, which catches empty, missing and non-image files cheaply; ``"full"``
    decodes every image (slow on ImageNet); ``"none"`` trusts the files.
    """
    if verify not in ("header", "full", "none"):
        raise ValueError(f"verify must be 'header', 'full' or 'none', not {verify!r}")
    if verify == "none" or len(paths) == 0:
        return np.ones(len(paths), dtype=bool)
    full = verify == "full"
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 2) * 2)) as pool:
        ok = np.fromiter(pool.map(lambda p: _readable(Path(p), full), paths, chunksize=256), dtype=bool,
                         count=len(paths))
    if not ok.all():
        bad = [str(paths[i]) for i in np.flatnonzero(~ok)[:3]]
        warnings.warn(
            f"{what or 'dataset'}: skipped {int((~ok).sum())} unreadable image file(s), e.g. {', '.join(bad)}",
            stacklevel=3,
        )
    return ok


def drop_unreadable(
    samples: Sequence[tuple[PathLike, Any]], verify: str = "header", *, what: str = ""
) -> tuple[list[tuple[PathLike, Any]], int]:
    """Drop samples whose file is not a readable image; returns (kept, number skipped)."""
    ok = readable_mask([s[0] for s in samples], verify, what=what)
    kept = [s for s, good in zip(samples, ok) if good]
    return kept, len(samples) - len(kept)


def pil_rgb(path: PathLike) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


class ImageFiles(Dataset):
    """Images on disk with integer labels; items are ``(transform(image), label)``.

    ``pre`` runs on the PIL image before ``transform`` (e.g. ObjectNet's border crop) and is
    part of the dataset, not of the user's preprocessing.
    """

    def __init__(
        self,
        samples: Sequence[tuple[PathLike, int]],
        transform: Optional[Callable] = None,
        pre: Optional[Callable[[Image.Image], Image.Image]] = None,
    ) -> None:
        self.samples = [(str(p), int(y)) for p, y in samples]
        self.targets = np.asarray([y for _, y in self.samples], dtype=np.int64)
        self.transform = transform
        self.pre = pre

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        img = pil_rgb(path)
        if self.pre is not None:
            img = self.pre(img)
        return (self.transform(img) if self.transform is not None else img), label


class ImageArrays(Dataset):
    """In-memory uint8 images ``[N, H, W, 3]`` (e.g. CIFAR-10.1) with integer labels."""

    def __init__(self, images: np.ndarray, labels: Iterable[int], transform: Optional[Callable] = None):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected images of shape [N, H, W, 3], got {images.shape}")
        self.images = images.astype(np.uint8, copy=False)
        self.targets = np.asarray(list(labels), dtype=np.int64)
        if len(self.targets) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.targets)} labels")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i])
        return (self.transform(img) if self.transform is not None else img), int(self.targets[i])


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Integer labels of a dataset without decoding images where the dataset allows it."""
    if isinstance(dataset, torch.utils.data.Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices)]
    for attr in ("targets", "labels", "_labels"):
        if hasattr(dataset, attr):
            return np.asarray(getattr(dataset, attr), dtype=np.int64)
    if hasattr(dataset, "samples"):
        return np.asarray([y for _, y in dataset.samples], dtype=np.int64)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def border_crop(pixels: int) -> Callable[[Image.Image], Image.Image]:
    """A picklable function cropping ``pixels`` from every side of a PIL image."""
    return _BorderCrop(pixels)


class _BorderCrop:
    def __init__(self, pixels: int) -> None:
        self.pixels = pixels

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        p = self.pixels
        return img.crop((p, p, w - p, h - p))

    def __repr__(self) -> str:
        return f"BorderCrop({self.pixels})"


# ---------------------------------------------------------------------------- logit projections


def _take(logits, index: np.ndarray):
    if isinstance(logits, torch.Tensor):
        return logits.index_select(1, torch.as_tensor(index, device=logits.device))
    return np.asarray(logits)[:, index]


class SubsetProjection:
    """Restrict ``n_in``-way logits to a class subset (ImageNet-R/-A: 1000 -> 200 columns).

    Logits that already have ``len(indices)`` columns pass through unchanged, so a head built
    from the dataset's own class names works too. Accepts torch tensors or numpy arrays.
    """

    def __init__(self, indices: Sequence[int], n_in: int = 1000) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.n_in = n_in

    def __call__(self, logits):
        width = logits.shape[1]
        if width == len(self.indices):
            return logits
        if width != self.n_in:
            raise ValueError(f"expected logits with {self.n_in} or {len(self.indices)} columns, got {width}")
        return _take(logits, self.indices)

    def __repr__(self) -> str:
        return f"SubsetProjection({len(self.indices)} of {self.n_in})"


class MaxProjection:
    """Project ``n_in``-way logits onto classes that each own a group of input classes.

    Output column ``j`` is the max over ``groups[j]`` (ObjectNet: 113 classes from 125 ImageNet
    classes). A class with an empty group gets ``empty``: one value for all of them, or a
    ``{class: value}`` mapping (classes left out get ``-inf``). The default ``-inf`` means such a
    class can never be predicted (ObjectNet, the ImageNet testbed). The official WiSE-FT video
    evaluation leaves them at ``0.0`` instead (see :mod:`wiseft_lib.data.video`). Classes in
    ``never`` are set to ``-inf`` on every path (YTBB-Robust's "none"). Logits that already
    have ``len(groups)`` columns pass through, with only the ``never`` columns changed.
    """

    def __init__(self, groups: Sequence[Sequence[int]], n_in: int = 1000,
                 empty: Union[float, Mapping[int, float]] = float("-inf"), never: Iterable[int] = ()) -> None:
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups]
        self.n_in = n_in
        self.fill = self._fill_values(empty)
        self.never = sorted({int(j) for j in never})
        if any(not 0 <= j < len(self.groups) for j in self.never):
            raise ValueError(f"never={self.never}: class indices must lie in [0, {len(self.groups)})")

    def _fill_values(self, empty: Union[float, Mapping[int, float]]) -> dict[int, float]:
        """Value of each class whose group is empty."""
        unmapped = [j for j, g in enumerate(self.groups) if len(g) == 0]
        if not isinstance(empty, Mapping):
            return {j: float(empty) for j in unmapped}
        wrong = sorted(set(int(j) for j in empty) - set(unmapped))
        if wrong:
            raise ValueError(f"empty={dict(empty)} sets classes {wrong}, which are not classes with an empty "
                             f"group (those are {unmapped}); give values only for classes with no input class")
        return {j: float(empty.get(j, float("-inf"))) for j in unmapped}

    def __call__(self, logits):
        width = logits.shape[1]
        if width == len(self.groups):
            return self._mask_never(logits, copy=True)
        if width != self.n_in:
            raise ValueError(f"expected logits with {self.n_in} or {len(self.groups)} columns, got {width}")
        if isinstance(logits, torch.Tensor):
            cols = [
                _take(logits, g).amax(dim=1) if len(g) else
                torch.full((logits.shape[0],), self.fill[j], dtype=logits.dtype, device=logits.device)
                for j, g in enumerate(self.groups)
            ]
            return self._mask_never(torch.stack(cols, dim=1), copy=False)
        arr = np.asarray(logits)
        out = np.full((arr.shape[0], len(self.groups)), -np.inf, dtype=np.result_type(arr.dtype, np.float32))
        for j, g in enumerate(self.groups):
            out[:, j] = arr[:, g].max(axis=1) if len(g) else self.fill[j]
        return self._mask_never(out, copy=False)

    def _mask_never(self, logits, copy: bool):
        if not self.never:
            return logits
        if isinstance(logits, torch.Tensor):
            out = logits.clone() if copy else logits
        else:
            out = np.array(logits, dtype=np.result_type(np.asarray(logits).dtype, np.float32)) if copy else logits
        out[:, self.never] = float("-inf")
        return out

    def __repr__(self) -> str:
        extra = ""
        if any(v != float("-inf") for v in self.fill.values()):
            extra += f", empty groups -> {self.fill}"
        if self.never:
            extra += f", never predicted {self.never}"
        return f"MaxProjection({len(self.groups)} classes from {self.n_in}{extra})"


def class_balanced_subset(labels: np.ndarray, n: Optional[int], seed: int) -> np.ndarray:
    """Seeded, class-balanced subset of ``n`` indices (all if ``n`` is None)."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = n // len(classes)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per] for c in classes]
    rest = np.setdiff1d(np.arange(len(labels)), np.concatenate(picks))
    extra = rng.permutation(rest)[: n - per * len(classes)]
    return np.sort(np.concatenate(picks + [extra]))
