"""Video robustness sets (Shankar et al., 2021): ImageNet-Vid-Robust and YTBB-Robust.

==========================  =====  =========================================================
name                        split  what
==========================  =====  =========================================================
imagenet-vid-robust         test   30 ImageNet-VID classes; metrics pm0, pm10
ytbb-robust                 test   24 YouTube-BB classes; metrics pm0, pm10
imagenet-val-vid-robust     test   ImageNet val of the classes mapped to the 30 VID classes
imagenet-val-ytbb-robust    test   ImageNet val of the classes mapped to the 24 YTBB classes
==========================  =====  =========================================================

``pm0`` is the accuracy on anchor frames; ``pm10`` counts an anchor only if it and every
neighbour within 10 frames are classified correctly (a prediction is correct if it is any of
the frame's labels). Items are ordered anchor by anchor (sorted keys), each anchor followed
by its neighbours; ``metadata`` holds ``pm_anchor``, ``pm_offset`` and ``correct_labels`` for
:func:`wiseft_lib.core.metrics.pm_k`.

**Anchors and labels.** ImageNet-Vid-Robust uses the release's ``metadata/labels.json`` and
``metadata/pmsets.json``, as the official WiSE-FT evaluation does. For YTBB-Robust the paper
scored the authors' *reviewed* annotations (:mod:`wiseft_lib.data.ytbb_annotations`): put the
three files from the official code's ``src/datasets/ytbb-robust_metadata/`` into
``ytbb-robust/wiseft-reviewed/`` (or pass ``reviewed=<folder>``) and the loader selects anchors,
labels and neighbours exactly by its rules (a neighbour is scored with its anchor's labels).
Without them it falls back to the release's ``metadata/`` with a warning: those numbers are
not the paper's protocol.

**Projection.** 1000-way ImageNet logits become the max over the ImageNet classes mapped to
each video class. Chosen on purpose to match the paper's numbers, which the official code
computed this way: a class with no ImageNet class gets logit ``0.0`` (YTBB's cow, giraffe,
skateboard, toilet; the official ImageNet-Vid-Robust code does the same, though the release
maps all 30 VID classes), and YTBB's "none" is never predicted (``-inf``; the official code
subtracts 1e10), also for logits that already have 24 columns. So when every mapped logit is
negative, an unmapped YTBB class (the first: cow) is predicted, as in the paper's evaluation.
ObjectNet and the ImageNet testbed use ``-inf`` for unmapped classes instead.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from wiseft_lib.data.common import (
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
from wiseft_lib.data.ytbb_annotations import FILES, OFFICIAL_SOURCE, REVIEWED_FOLDER, load_reviewed, reviewed_folder

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
YTBB_LAYOUT = f"""\
$WISEFT_DATA/ytbb-robust/                (or imagenet_vid_ytbb_robust/ytbb-robust/)
  ytbb_videos/<youtube id>_<ms>/frame-0.jpg ...
  {REVIEWED_FOLDER}/                       the paper's protocol (reviewed annotations), copied from
    {FILES[0]}                   {OFFICIAL_SOURCE}
    {FILES[1]}
    {FILES[2]}
  metadata/labels.json                   {{"<key>": [class, ...], ...}}  (24 YTBB classes; fallback)
  metadata/pmsets.json                   {{"<anchor key>": ["<neighbour key>", ...], ...}}  (fallback)
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


# A pm-k group: the anchor's key, then (key, frame offset, accepted labels) for the anchor
# itself (offset 0, first) and each of its neighbours.
Group = tuple[str, list[tuple[str, int, list[int]]]]


def _pm_bundle(name: str, groups: list[Group], paths: dict[str, Path], n_classes: int, classnames: list[str],
               projection: MaxProjection, transform: Optional[Callable], verify: str) -> DatasetBundle:
    """A pm-k bundle from groups; unreadable frames are skipped (an unreadable anchor drops its group)."""
    keys = sorted(paths)
    ok = dict(zip(keys, readable_mask([paths[k] for k in keys], verify, what=name)))
    samples, anchor_of, offsets, valid = [], [], [], []
    for anchor, members in groups:
        if not ok[anchor]:
            continue
        a_index = len(samples)
        for key, offset, labels in members:
            if not ok[key]:
                continue
            row = np.zeros(n_classes, dtype=bool)
            row[labels] = True
            valid.append(row)
            anchor_of.append(a_index)
            offsets.append(offset)
            samples.append((paths[key], labels[0]))
    return DatasetBundle(
        name=name,
        dataset=ImageFiles(samples, transform),
        classnames=classnames,
        templates=list(IMAGENET_TEMPLATES),
        project_logits=projection,
        metrics=("pm0", "pm10"),
        metadata={
            "pm_anchor": np.asarray(anchor_of, dtype=np.int64),
            "pm_offset": np.asarray(offsets, dtype=np.int64),
            "correct_labels": np.asarray(valid, dtype=bool).reshape(len(samples), n_classes),
        },
        skipped=sum(not good for good in ok.values()),
    )


def video_bundle(name: str, folder: Path, frames: str, classnames: list[str], projection: MaxProjection,
                 transform: Optional[Callable], verify: str, layout: str) -> DatasetBundle:
    """A pm-k bundle from the release's ``metadata/labels.json`` and ``metadata/pmsets.json``.

    Each frame keeps its own labels (its anchor's when it has none); neighbours follow their
    anchor in sorted key order, with the frame-number distance as offset (1 if unknown).
    """
    labels = _read_json(folder / "metadata" / "labels.json", name, layout)
    pmsets = _read_json(folder / "metadata" / "pmsets.json", name, layout)
    groups: list[Group] = []
    for anchor in sorted(pmsets):
        if anchor not in labels:
            raise layout_error(name, f"anchor {anchor} has no entry in metadata/labels.json", layout, SOURCE)
        a_frame = _frame_number(anchor)
        members = []
        for key in [anchor, *sorted(set(pmsets[anchor]) - {anchor})]:
            frame = _frame_number(key)
            offset = 0 if key == anchor else (abs(frame - a_frame) if None not in (frame, a_frame) else 1)
            members.append((key, offset, [int(c) for c in labels.get(key, labels[anchor])]))
        groups.append((anchor, members))
    paths = {key: _resolve(folder, frames, key) for _, members in groups for key, _, _ in members}
    return _pm_bundle(name, groups, paths, len(classnames), classnames, projection, transform, verify)


def reviewed_ytbb_bundle(folder: Path, reviewed: Path, transform: Optional[Callable], verify: str) -> DatasetBundle:
    """YTBB-Robust as the official evaluation scores it, from its reviewed annotations in ``reviewed``.

    Anchors in sorted key order, each followed by its valid neighbours in frame order (offsets
    -10..10, stored as distances); every frame of a group accepts the anchor's labels. Frames are
    ``ytbb_videos/<key>``.
    """
    names, _ = ytbb_classes()
    review = load_reviewed(reviewed, names, k=10)
    groups: list[Group] = []
    for anchor in sorted(review.labels):
        labels = sorted(review.labels[anchor])
        members = [(anchor, 0, labels)]
        members += [(key, abs(off), labels) for off, key in sorted(review.neighbours[anchor].items())]
        groups.append((anchor, members))
    paths = {key: folder / "ytbb_videos" / key for _, members in groups for key, _, _ in members}
    return _pm_bundle("ytbb-robust", groups, paths, len(names), names, ytbb_projection(), transform, verify)


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


def vid_projection(groups: list[list[int]]) -> MaxProjection:
    """Max over each VID class's ImageNet classes; an unmapped class gets 0.0 (the official rule)."""
    return MaxProjection(groups, empty=0.0)


def ytbb_classes() -> tuple[list[str], list[list[int]]]:
    """(24 YTBB class names, ImageNet label indices per YTBB class) - shipped with the package."""
    position = {w: i for i, w in enumerate(imagenet_wnids())}
    classes = load_asset("ytbb_robust.json")["classes"]
    return [c["name"] for c in classes], [[position[w] for w in c["imagenet_wnids"]] for c in classes]


def ytbb_projection() -> MaxProjection:
    """Max over each YTBB class's ImageNet classes; cow, giraffe, skateboard, toilet get 0.0 and
    "none" is never predicted (the official rule, see the module docstring)."""
    names, groups = ytbb_classes()
    return MaxProjection(groups, empty=0.0, never=[names.index("none")])


def _inverse(groups: list[list[int]]) -> dict[int, int]:
    return {i: j for j, g in enumerate(groups) for i in g}


# ------------------------------------------------------------------------------ loaders


@register_dataset("imagenet-vid-robust", description="ImageNet-Vid-Robust, 30 classes (pm0/pm10)")
def load_imagenet_vid_robust(root: Optional[PathLike] = None, split: str = "test",
                             transform: Optional[Callable] = None, verify: str = "header") -> DatasetBundle:
    folder = _vid_folder(root)
    names, groups = vid_classes(root)
    return video_bundle("imagenet-vid-robust", folder, "val", names, vid_projection(groups), transform, verify,
                        VID_LAYOUT)


_YTBB_CANDIDATES = ["ytbb-robust", "imagenet_vid_ytbb_robust/ytbb-robust"]


@register_dataset("ytbb-robust", description="YTBB-Robust, 24 classes (pm0/pm10)")
def load_ytbb_robust(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                     verify: str = "header", reviewed: Optional[PathLike] = None) -> DatasetBundle:
    """YTBB-Robust from the reviewed annotations (``<folder>/wiseft-reviewed/`` or ``reviewed=``) when
    present - the paper's protocol - else from the release's ``metadata/``, with a warning."""
    folder = find_folder(root, _YTBB_CANDIDATES, ["ytbb_videos"], dataset="ytbb-robust", layout=YTBB_LAYOUT,
                         source=SOURCE)
    where = reviewed_folder(folder, None if reviewed is None else Path(reviewed))
    if where is not None:
        return reviewed_ytbb_bundle(folder, where, transform, verify)
    folder = find_folder(root, _YTBB_CANDIDATES, ["metadata/labels.json", "metadata/pmsets.json", "ytbb_videos"],
                         dataset="ytbb-robust", layout=YTBB_LAYOUT, source=SOURCE)
    warnings.warn(
        f"ytbb-robust: no reviewed annotations in {folder / REVIEWED_FOLDER}, so anchors, labels and "
        f"neighbours come from the release's metadata/ and pm0/pm10 will not follow the paper's protocol. "
        f"Copy {', '.join(FILES)} from {OFFICIAL_SOURCE} into that folder for the paper's numbers.",
        UserWarning, stacklevel=2)
    names, _ = ytbb_classes()
    return video_bundle("ytbb-robust", folder, "ytbb_videos", names, ytbb_projection(), transform, verify,
                        YTBB_LAYOUT)


@register_dataset("imagenet-val-vid-robust", description="ImageNet val of the VID-mapped classes, 30-way")
def load_imagenet_val_vid(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                          verify: str = "header") -> DatasetBundle:
    names, groups = vid_classes(root)
    return subsampled_val("imagenet-val-vid-robust", root, transform, class_map=_inverse(groups),
                          classnames=names, project_logits=vid_projection(groups), verify=verify)


@register_dataset("imagenet-val-ytbb-robust", description="ImageNet val of the YTBB-mapped classes, 24-way")
def load_imagenet_val_ytbb(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                           verify: str = "header") -> DatasetBundle:
    names, groups = ytbb_classes()
    return subsampled_val("imagenet-val-ytbb-robust", root, transform, class_map=_inverse(groups),
                          classnames=names, project_logits=ytbb_projection(), verify=verify)
