"""Video robustness sets (Shankar et al., 2021): ImageNet-Vid-Robust and YTBB-Robust.

==========================  =====  =========================================================
name                        split  what
==========================  =====  =========================================================
imagenet-vid-robust         test   30 ImageNet-VID classes; metrics pm0, pm10
ytbb-robust                 test   24 YouTube-BB classes; metrics pm0, pm10
imagenet-val-vid-robust     test   ImageNet val of the classes mapped to the 30 VID classes
imagenet-val-ytbb-robust    test   ImageNet val of the classes mapped to the 24 YTBB classes
==========================  =====  =========================================================

Each anchor frame comes with neighbouring frames (``metadata/pmsets.json``); ``pm0`` is the
accuracy on anchors, ``pm10`` counts an anchor only if it and every neighbour within 10
frames are classified correctly. A frame is correct if the prediction is any of its labels
(``metadata/labels.json``; frames can have several). 1000-way ImageNet logits are projected
by the max over the ImageNet classes mapped to each video class. Items are ordered anchor
by anchor (sorted keys), each anchor followed by its sorted neighbours; ``metadata`` holds
``pm_anchor``, ``pm_offset`` and ``correct_labels`` for :func:`wiseft_lib.metrics.pm_k`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from wiseft_lib.data._common import (
    ImageFiles,
    MaxProjection,
    PathLike,
    find_folder,
    layout_error,
    load_asset,
    readable_mask,
)
from wiseft_lib.data.imagenet import imagenet_wnids, subsampled_val
from wiseft_lib.data.registry import DatasetBundle, register_dataset
from wiseft_lib.data.templates import IMAGENET_TEMPLATES

SOURCE = ("https://modestyachts.github.io/natural-perturbations-website/ "
          "(imagenet_vid_ytbb_robust.tar.gz)")
VID_LAYOUT = """\
$WISEFT_DATA/imagenet-vid-robust/        (or imagenet_vid_ytbb_robust/imagenet-vid-robust/)
  val/ILSVRC2015_val_00000000/000000.JPEG ...
  metadata/labels.json                   {"val/<snippet>/<frame>.JPEG": [class, ...], ...}
  metadata/pmsets.json                   {"<anchor key>": ["<neighbour key>", ...], ...}
  misc/imagenet_vid_class_index.json     {"0": ["n02691156", "airplane"], ...}
  misc/rev_wnid_map.json                 {"<VID wnid>": ["<ImageNet wnid>", ...], ...}
"""
YTBB_LAYOUT = """\
$WISEFT_DATA/ytbb-robust/                (or imagenet_vid_ytbb_robust/ytbb-robust/)
  ytbb_videos/<youtube id>_<ms>/frame-0.jpg ...
  metadata/labels.json                   {"<key>": [class, ...], ...}  (24 YTBB classes)
  metadata/pmsets.json                   {"<anchor key>": ["<neighbour key>", ...], ...}
"""


def _read_json(path: Path, dataset: str, layout: str):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise layout_error(dataset, f"cannot read {path} ({err})", layout, SOURCE) from err


def _frame_number(key: str) -> Optional[int]:
    digits = re.findall(r"\d+", Path(key).stem)
    return int(digits[-1]) if digits else None


def _resolve(folder: Path, frames: str, key: str) -> Path:
    """A key is relative to the dataset folder, or to its frames folder."""
    direct = folder / key
    return direct if direct.exists() else folder / frames / key


def video_bundle(name: str, folder: Path, frames: str, n_classes: int, groups: list[list[int]],
                 classnames: list[str], transform: Optional[Callable], verify: str, layout: str) -> DatasetBundle:
    """Build a pm-k bundle from ``metadata/labels.json`` and ``metadata/pmsets.json``."""
    labels = _read_json(folder / "metadata" / "labels.json", name, layout)
    pmsets = _read_json(folder / "metadata" / "pmsets.json", name, layout)
    keys = sorted({k for a, ns in pmsets.items() for k in [a, *ns]})
    ok = dict(zip(keys, readable_mask([_resolve(folder, frames, k) for k in keys], verify, what=name)))
    samples, anchor_of, offsets, valid = [], [], [], []
    for anchor in sorted(pmsets):
        if anchor not in labels:
            raise layout_error(name, f"anchor {anchor} has no entry in metadata/labels.json", layout, SOURCE)
        if not ok[anchor]:
            continue
        a_index, a_frame = len(samples), _frame_number(anchor)
        for key in [anchor, *sorted(set(pmsets[anchor]) - {anchor})]:
            if not ok[key]:
                continue
            key_labels = [int(c) for c in labels.get(key, labels[anchor])]
            frame = _frame_number(key)
            offsets.append(0 if key == anchor else (abs(frame - a_frame) if None not in (frame, a_frame) else 1))
            row = np.zeros(n_classes, dtype=bool)
            row[key_labels] = True
            valid.append(row)
            anchor_of.append(a_index)
            samples.append((_resolve(folder, frames, key), key_labels[0]))
    n_skipped = sum(not good for good in ok.values())
    return DatasetBundle(
        name=name,
        dataset=ImageFiles(samples, transform),
        classnames=classnames,
        templates=list(IMAGENET_TEMPLATES),
        project_logits=MaxProjection(groups),
        metrics=("pm0", "pm10"),
        metadata={
            "pm_anchor": np.asarray(anchor_of, dtype=np.int64),
            "pm_offset": np.asarray(offsets, dtype=np.int64),
            "correct_labels": np.asarray(valid, dtype=bool).reshape(len(samples), n_classes),
        },
        skipped=n_skipped,
    )


# ------------------------------------------------------------------------------ class maps


def _vid_folder(root: Optional[PathLike]) -> Path:
    return find_folder(root, ["imagenet-vid-robust", "imagenet_vid_ytbb_robust/imagenet-vid-robust"],
                       ["metadata/labels.json", "metadata/pmsets.json", "misc/imagenet_vid_class_index.json",
                        "misc/rev_wnid_map.json"], dataset="imagenet-vid-robust", layout=VID_LAYOUT, source=SOURCE)


def vid_classes(root: Optional[PathLike]) -> tuple[list[str], list[list[int]]]:
    """(30 VID class names, ImageNet label indices per VID class), from the release's misc/."""
    folder = _vid_folder(root)
    index = _read_json(folder / "misc" / "imagenet_vid_class_index.json", "imagenet-vid-robust", VID_LAYOUT)
    rev = _read_json(folder / "misc" / "rev_wnid_map.json", "imagenet-vid-robust", VID_LAYOUT)
    position = {w: i for i, w in enumerate(imagenet_wnids())}
    order = sorted(index, key=int)
    names = [str(index[k][1]).replace("_", " ") for k in order]
    groups = [[position[w] for w in rev.get(index[k][0], [])] for k in order]
    return names, groups


def ytbb_classes() -> tuple[list[str], list[list[int]]]:
    """(24 YTBB class names, ImageNet label indices per YTBB class) - shipped with the package."""
    position = {w: i for i, w in enumerate(imagenet_wnids())}
    classes = load_asset("ytbb_robust.json")["classes"]
    return [c["name"] for c in classes], [[position[w] for w in c["imagenet_wnids"]] for c in classes]


def _inverse(groups: list[list[int]]) -> dict[int, int]:
    return {i: j for j, g in enumerate(groups) for i in g}


# ------------------------------------------------------------------------------ loaders


@register_dataset("imagenet-vid-robust", description="ImageNet-Vid-Robust, 30 classes (pm0/pm10)")
def load_imagenet_vid_robust(root: Optional[PathLike] = None, split: str = "test",
                             transform: Optional[Callable] = None, verify: str = "header") -> DatasetBundle:
    folder = _vid_folder(root)
    names, groups = vid_classes(root)
    return video_bundle("imagenet-vid-robust", folder, "val", len(names), groups, names, transform, verify,
                        VID_LAYOUT)


@register_dataset("ytbb-robust", description="YTBB-Robust, 24 classes (pm0/pm10)")
def load_ytbb_robust(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                     verify: str = "header") -> DatasetBundle:
    folder = find_folder(root, ["ytbb-robust", "imagenet_vid_ytbb_robust/ytbb-robust"],
                         ["metadata/labels.json", "metadata/pmsets.json", "ytbb_videos"], dataset="ytbb-robust",
                         layout=YTBB_LAYOUT, source=SOURCE)
    names, groups = ytbb_classes()
    return video_bundle("ytbb-robust", folder, "ytbb_videos", len(names), groups, names, transform, verify,
                        YTBB_LAYOUT)


@register_dataset("imagenet-val-vid-robust", description="ImageNet val of the VID-mapped classes, 30-way")
def load_imagenet_val_vid(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                          verify: str = "header") -> DatasetBundle:
    names, groups = vid_classes(root)
    return subsampled_val("imagenet-val-vid-robust", root, transform, class_map=_inverse(groups),
                          classnames=names, project_logits=MaxProjection(groups), verify=verify)


@register_dataset("imagenet-val-ytbb-robust", description="ImageNet val of the YTBB-mapped classes, 24-way")
def load_imagenet_val_ytbb(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                           verify: str = "header") -> DatasetBundle:
    names, groups = ytbb_classes()
    return subsampled_val("imagenet-val-ytbb-robust", root, transform, class_map=_inverse(groups),
                          classnames=names, project_logits=MaxProjection(groups), verify=verify)
