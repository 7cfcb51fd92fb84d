"""Synthetic ImageNet and its shifts, in the real folder layouts the package's loaders read.

    .venv/bin/python bench/synthetic_imagenet.py OUT_DIR [--per-class K] [--classes C] [--size S]
    WISEFT_DATA=OUT_DIR wiseft run fig1_id_vs_ood --params params/paper/fig1_id_vs_ood.yaml --set smoke=true ...

First every paper dataset's fixture (``tests/paper_fixture.write_paper_data``: every class folder, a few
8x8 images), then ``K`` patterned RGB images of ``S`` x ``S`` pixels (a class-dependent colour and
stripes, plus noise) per class in ``C`` classes of ImageNet ``train/`` and ``val/``, and ``max(1, K // 2)``
per class in ``C`` classes of each of ImageNet-V2, -R, -Sketch, -A and ObjectNet. The defaults (K=8, C=32,
S=64) give about 300 training and 300 validation images (a smoke run trains on 256) and 130 to 150 per shift.
The fixture's deliberately unreadable ImageNet val file is removed (a clean run logs no warning). The images
carry no signal a pretrained model would know: they exercise the data path and the study at speed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from wiseft_lib.data.imagenet import objectnet_classes, subset_wnids  # noqa: E402

from paper_fixture import VAL_CLASSES, WNIDS, write_paper_data  # noqa: E402


def pattern(label: int, j: int, size: int) -> Image.Image:
    """A class-dependent colour and stripe frequency, with per-image noise (deterministic)."""
    rng = np.random.default_rng(label * 10_007 + j)
    colour = np.random.default_rng(label).integers(40, 216, 3)
    freq = 1 + label % 7
    ramp = np.sin(np.linspace(0, 2 * np.pi * freq, size))[None, :, None] * 40
    pixels = colour[None, None, :] + ramp + rng.normal(0, 25, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_images(folder: Path, label: int, k: int, size: int, ext: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for j in range(k):
        path = folder / f"syn_{j:04d}{ext}"
        pattern(label, j, size).save(path, "PNG" if ext == ".png" else "JPEG", quality=85)
    return k


def spread(names: list, c: int) -> list[tuple[int, object]]:
    """``c`` (index, name) pairs spread evenly over ``names``."""
    c = min(c, len(names))
    return [(i, names[i]) for i in sorted({round(t * len(names) / c) for t in range(c)})]


def write_synthetic_imagenet(root: Path, per_class: int = 8, classes: int = 32, size: int = 64) -> dict[str, int]:
    """Write the fixture and the synthetic images under ``root``; return the images added per folder."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty; give a new folder")
    write_paper_data(root)
    for bad in (root / "imagenet" / "val").glob("*/corrupt.JPEG"):  # the fixture's unreadable file (a loader test)
        bad.unlink()
    ids = sorted(set(VAL_CLASSES) | {i for i, _ in spread(WNIDS, classes)})
    shift_k = max(1, per_class // 2)
    added = {"imagenet/train": 0, "imagenet/val": 0}
    for i in ids:
        added["imagenet/train"] += write_images(root / "imagenet" / "train" / WNIDS[i], i, per_class, size, ".JPEG")
        added["imagenet/val"] += write_images(root / "imagenet" / "val" / WNIDS[i], i, per_class, size, ".JPEG")
    shifts = {  # folder, class folders (name, ImageNet-ish label for the pattern), extension
        "imagenetv2-matched-frequency-format-val": ([(i, str(i)) for i in ids], ".jpeg"),
        "sketch": ([(i, WNIDS[i]) for i in ids], ".JPEG"),
        "imagenet-r": (spread(subset_wnids("imagenet-r"), classes), ".jpg"),
        "imagenet-a": (spread(subset_wnids("imagenet-a"), classes), ".jpg"),
        "objectnet-1.0/images": (spread([c["folder"] for c in objectnet_classes()], classes), ".png"),
    }
    for folder, (pairs, ext) in shifts.items():
        added[folder] = sum(write_images(root / folder / name, i, shift_k, size, ext) for i, name in pairs)
    return added


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", help="a new (or empty) folder; use it as data_root / $WISEFT_DATA")
    p.add_argument("--per-class", type=int, default=8, help="images per class in ImageNet train and val (default 8)")
    p.add_argument("--classes", type=int, default=32, help="classes that get images, in each dataset (default 32)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    a = p.parse_args(argv)
    if a.per_class < 1 or a.classes < 1 or a.size < 8:
        p.error("--per-class and --classes must be >= 1, --size >= 8")
    added = write_synthetic_imagenet(Path(a.out_dir), a.per_class, a.classes, a.size)
    for folder, n in added.items():
        print(f"{folder}: {n} synthetic images")
    print(f"wrote {sum(added.values())} synthetic {a.size}x{a.size} images (plus the fixture) under {a.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
