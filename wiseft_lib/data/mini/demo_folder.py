"""The embedded miniature written as an image folder (the custom-dataset notebook's stand-in for your own data).

    from wiseft_lib.data.mini.demo_folder import write_demo_folder
    write_demo_folder("outputs/fashion", 40)                                   # train/ and test/, photo style
    write_demo_folder("outputs/fashion-sketch", 40, style="sketch", train=False)  # a shift folder: test/ only

The folders are in :mod:`wiseft_lib.data.folder`'s layout and load with ``get_dataset(path)``.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from wiseft_lib.data.common import class_balanced_subset
from wiseft_lib.data.fashion_mnist import CLASSNAMES, load_fashion_mnist
from wiseft_lib.data.mini import STYLES, render, split_indices, test_subset

__all__ = ["DEMO_MARKER", "write_demo_folder", "demo_style"]

DEMO_MARKER = ".wiseft-demo.json"


def write_demo_folder(path: str | Path, n_per_class: int, *, style: str = "photo",
                      n_test_per_class: Optional[int] = None, train: bool = True, root: Optional[str] = None,
                      seed: int = 0, force: bool = False) -> Path:
    """Write an image folder made from the embedded Fashion-MNIST data, in this module's layout.

    ``train=True``: ``train/CLASS/*.png`` with ``n_per_class`` images per class from the mini's fine-tuning pool
    (no ``val/``: the loader holds 10% out) and ``test/CLASS/*.png`` with ``n_test_per_class`` (default
    ``n_per_class // 2``) of the mini's ``test`` images; ``train=False``: ``test/`` only (a shift folder). Images
    are 28 px RGB PNGs rendered in a mini ``style`` (``photo``, ``sketch``, ``rendition``, ...); class folders are
    named ``t-shirt``, ``ankle_boot``, ... A marker file records what was written: an existing demo folder with the
    same settings is kept, one with other settings is rewritten; a folder that is not a demo folder is never
    touched (``force`` rewrites a demo folder anyway).
    """

    path = Path(path)
    n_test_per_class = n_per_class // 2 if n_test_per_class is None else n_test_per_class
    if n_per_class < 1 or n_test_per_class < 1:
        raise ValueError(f"a demo folder needs at least one image per class, got n_per_class={n_per_class}, "
                         f"n_test_per_class={n_test_per_class}")
    spec = {"n_per_class": n_per_class, "n_test_per_class": n_test_per_class, "style": style, "train": train,
            "seed": seed}
    marker = path / DEMO_MARKER
    if path.exists():
        if not marker.is_file():
            raise FileExistsError(f"{path} exists and is not a demo folder written by write_demo_folder; "
                                  f"not touching it")
        if json.loads(marker.read_text()) == spec and not force:
            return path
        shutil.rmtree(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    dirs = [d.replace(" ", "_") for d in CLASSNAMES]

    def write(split: str, images: np.ndarray, labels: np.ndarray) -> None:
        for d in dirs:
            (tmp / split / d).mkdir(parents=True, exist_ok=True)
        for i, (img, y) in enumerate(zip(render(images, style, seed), labels)):
            Image.fromarray(img).save(tmp / split / dirs[int(y)] / f"{i:05d}.png")

    if train:
        images, labels = load_fashion_mnist("train", root)
        pool = split_indices()["finetune"]
        idx = pool[class_balanced_subset(labels[pool], n_per_class * len(CLASSNAMES), seed)]
        write("train", images[idx], labels[idx])
    images, labels = load_fashion_mnist("test", root)
    part = test_subset(None, "test")
    idx = part[class_balanced_subset(labels[part], n_test_per_class * len(CLASSNAMES), seed)]
    write("test", images[idx], labels[idx])
    (tmp / DEMO_MARKER).write_text(json.dumps(spec, sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)
    return path


def demo_style(path: str | Path, default: str = "viewpoint") -> str:
    """The mini style named in a shift folder's name (``.../fashion-sketch`` -> ``sketch``), else ``default``."""

    stem = Path(path).name.lower()
    return next((s for s in STYLES if s != "photo" and s in stem), default)
