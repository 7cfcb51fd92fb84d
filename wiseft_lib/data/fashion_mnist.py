"""Fashion-MNIST discovery and loading (the raw IDX files, gzipped or not).

Looked for, in order: an explicit ``root``; ``$WISEFT_DATA`` (the folder itself, or its
``fashion-mnist``/``FashionMNIST/raw`` subfolder); the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``); the user cache, where
:func:`download_fashion_mnist` puts the files when online.

    python -c "from wiseft_lib.data.fashion_mnist import load_fashion_mnist as f; print(f('test')[0].shape)"
"""
from __future__ import annotations

import argparse
import functools
import gzip
import os
import shutil
import subprocess
import sys
import urllib.request
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

CLASSNAMES = [
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
MIRROR = "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


def cache_dir() -> Path:
    return Path(os.environ.get("WISEFT_CACHE", Path.home() / ".cache" / "wiseft")) / "fashion-mnist"


class FashionMNISTNotFound(FileNotFoundError):
    pass


def _has_files(folder: Path) -> bool:
    return all(
        (folder / name).exists() or (folder / f"{name}.gz").exists()
        for pair in FILES.values() for name in pair
    )


def candidate_dirs(root: Optional[str | Path] = None) -> list[Path]:
    dirs: list[Path] = []
    for base in [root, os.environ.get("WISEFT_DATA")]:
        if base:
            base = Path(base).expanduser()
            dirs += [base, base / "fashion-mnist", base / "FashionMNIST" / "raw"]
    return dirs + [DEBIAN_DIR, cache_dir()]


def find_fashion_mnist(root: Optional[str | Path] = None) -> Path:
    """The first folder holding all four Fashion-MNIST files, or a clear error."""
    tried = candidate_dirs(root)
    for folder in tried:
        if _has_files(folder):
            return folder
    raise FashionMNISTNotFound(
        "Fashion-MNIST was not found. Tried: " + ", ".join(str(d) for d in tried) + ".\n"
        "Provide it in one of three ways:\n"
        "  1. as root: `apt-get install dataset-fashion-mnist` (files land in /usr/share/datasets/fashion-mnist);\n"
        "  2. point WISEFT_DATA (or the `data_root` parameter) at a folder holding "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz;\n"
        "  3. when online: `python -m wiseft_lib.data.fashion_mnist --ensure` downloads them into " + str(cache_dir()) + "."
    )


_REFETCH = ("delete it and install the files again (`wiseft data --ensure`, or reinstall the Debian package "
            "dataset-fashion-mnist)")


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:  # a cut download, or not gzip at all
        raise ValueError(f"{path} is truncated or not a gzip file ({err}); {_REFETCH}") from None
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    if len(data) < 4 or magic >> 8 != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {magic:#x}); {_REFETCH}")
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header ends after {len(data)} bytes; {_REFETCH}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {np.prod(shape)} values, found {arr.size}; {_REFETCH}")
    return arr.reshape(shape)


@functools.lru_cache(maxsize=4)
def _load(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for name in FILES[split]:
        path = Path(folder) / name
        out.append(_read_idx(path if path.exists() else path.with_name(name + ".gz")))
    images, labels = out
    if len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST {split} in {folder}: {len(images)} images but {len(labels)} labels")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_fashion_mnist(split: str, root: Optional[str | Path] = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 28, 28], labels int64 [N])`` for split ``train`` or ``test``."""
    if split not in FILES:
        raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', not {split!r}")
    images, labels = _load(str(find_fashion_mnist(root)), split)
    return images, labels.astype(np.int64)


def download_fashion_mnist(dest: Optional[Path] = None) -> Path:
    """Download the four files into ``dest`` (default: the user cache)."""
    dest = Path(dest or cache_dir())
    dest.mkdir(parents=True, exist_ok=True)
    for pair in FILES.values():
        for name in pair:
            target = dest / f"{name}.gz"
            if not target.exists():
                tmp = target.with_suffix(".part")
                urllib.request.urlretrieve(MIRROR + target.name, tmp)
                os.replace(tmp, target)
    return dest


def ensure_fashion_mnist(root: Optional[str | Path] = None, allow_apt: bool = True,
                         allow_download: bool = True) -> Path:
    """Find Fashion-MNIST, else install the Debian package (as root), else download it."""

    try:
        return find_fashion_mnist(root)
    except FashionMNISTNotFound:
        pass
    if allow_apt and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing the Debian package dataset-fashion-mnist ...", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(cmd, env=env, capture_output=True)
        try:
            return find_fashion_mnist(root)
        except FashionMNISTNotFound:
            pass
    if allow_download:
        try:
            download_fashion_mnist()
        except OSError as err:  # offline
            print(f"download failed: {err}", file=sys.stderr)
    return find_fashion_mnist(root)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Locate, install or download Fashion-MNIST.")
    parser.add_argument("--root", default=None, help="a folder holding the four IDX files")
    parser.add_argument("--ensure", action="store_true",
                        help="if not found: apt-get install dataset-fashion-mnist (as root), else download")
    ns = parser.parse_args(argv)
    try:
        print(ensure_fashion_mnist(ns.root) if ns.ensure else find_fashion_mnist(ns.root))
    except FashionMNISTNotFound as err:
        raise SystemExit(str(err))


if __name__ == "__main__":
    main()
