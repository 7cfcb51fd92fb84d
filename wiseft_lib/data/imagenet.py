"""ImageNet and its five distribution shifts, in the folder layouts they are distributed in.

Registered names (``get_dataset(name, root, split, transform)``; ``root`` defaults to
``$WISEFT_DATA``, which holds one folder per dataset):

=========================  ===========  ======================================================
name                       splits       what
=========================  ===========  ======================================================
imagenet                   train, val,  ILSVRC-2012, 1000 classes (``test`` is ``val``)
                           test
imagenet-v2                test         ImageNet-V2 matched-frequency (``variant=`` for others)
imagenet-r                 test         ImageNet-R, 200 classes: 1000-way logits restricted
imagenet-a                 test         ImageNet-A, 200 classes: 1000-way logits restricted
imagenet-sketch            test         ImageNet-Sketch, 1000 classes
objectnet                  test         ObjectNet, 113 classes: max over the mapped ImageNet
                                        classes, 2-pixel border crop, other classes dropped
imagenet-val-r             test         ImageNet val restricted to ImageNet-R's 200 classes
imagenet-val-a             test         ImageNet val restricted to ImageNet-A's 200 classes
imagenet-val-objectnet     test         ImageNet val images of the 125 classes mapped to
                                        ObjectNet, labelled and scored in ObjectNet's 113
=========================  ===========  ======================================================

The ``imagenet-val-*`` sets are the class-subsampled ImageNet x-axes of the per-shift plots.
Labels follow sorted WordNet ids (the torchvision/ImageFolder order); class names are the
ones CLIP's zero-shot evaluation uses; templates are the 80 CLIP ImageNet templates. Every
loader takes ``verify="header" | "full" | "none"`` (see ``drop_unreadable``).
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from wiseft_lib.data.common import (
    ImageFiles,
    MaxProjection,
    PathLike,
    SubsetProjection,
    border_crop,
    class_folder_samples,
    data_root,
    drop_unreadable,
    find_folder,
    layout_error,
    list_images,
    load_asset,
    readable_mask,
)
from wiseft_lib.data.registry import DatasetBundle, register_dataset
from wiseft_lib.data.templates import IMAGENET_TEMPLATES

# ------------------------------------------------------------------------------- public facts


def imagenet_wnids() -> list[str]:
    """The 1000 ILSVRC-2012 WordNet ids in label order (sorted)."""
    return list(load_asset("imagenet.json")["wnids"])


def imagenet_classnames() -> list[str]:
    """The 1000 class names CLIP's zero-shot ImageNet evaluation uses, in label order."""
    return list(load_asset("imagenet.json")["classnames"])


def subset_wnids(name: str) -> list[str]:
    """The 200 wnids of ``"imagenet-a"`` or ``"imagenet-r"``, sorted (their label order)."""
    subsets = load_asset("imagenet_subsets.json")
    if name not in ("imagenet-a", "imagenet-r"):
        raise KeyError(f"no class subset {name!r}; known: imagenet-a, imagenet-r")
    return list(subsets[name])


def subset_indices(name: str) -> list[int]:
    """ImageNet label indices of a 200-class subset, in the subset's label order."""
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    return [index[w] for w in subset_wnids(name)]


def objectnet_classes() -> list[dict]:
    """The 113 ObjectNet classes overlapping ImageNet, in label order (sorted by folder).

    Each entry: ``folder`` (directory name in the release), ``name`` (ObjectNet label) and
    ``imagenet_wnids`` (the ImageNet classes it corresponds to).
    """
    return [dict(c) for c in load_asset("objectnet.json")["classes"]]


def objectnet_imagenet_groups() -> list[list[int]]:
    """For each ObjectNet class, the ImageNet label indices whose logits it takes the max of."""
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    return [[index[w] for w in c["imagenet_wnids"]] for c in objectnet_classes()]


def objectnet_classnames() -> list[str]:
    return [c["name"].lower() for c in objectnet_classes()]


# ------------------------------------------------------------------------------- layouts

IMAGENET_SOURCE = "https://image-net.org/download (ILSVRC 2012), or the Kaggle 'ImageNet Object Localization Challenge'"
IMAGENET_LAYOUT = """\
$WISEFT_DATA/imagenet/            (or ILSVRC2012/)
  train/n01440764/*.JPEG          1000 WordNet-id folders
  val/n01440764/*.JPEG            validation images sorted into the same 1000 folders
or the Kaggle layout:
$WISEFT_DATA/imagenet/
  ILSVRC/Data/CLS-LOC/train/n01440764/*.JPEG
  ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000001.JPEG ...
  LOC_val_solution.csv
(a flat val/ folder needs LOC_val_solution.csv next to it, or sorting into class folders,
e.g. with the widely used valprep.sh)
"""
V2_SOURCE = "https://github.com/modestyachts/ImageNetV2 (imagenetv2-matched-frequency.tar.gz)"
V2_LAYOUT = """\
$WISEFT_DATA/imagenetv2-matched-frequency-format-val/
  0/*.jpeg ... 999/*.jpeg         folders named by ImageNet label index
"""
R_SOURCE = "https://github.com/hendrycks/imagenet-r (imagenet-r.tar)"
A_SOURCE = "https://github.com/hendrycks/natural-adv-examples (imagenet-a.tar)"
SUBSET_LAYOUT = """\
$WISEFT_DATA/{folder}/
  n01443537/*.jpg ...             200 WordNet-id folders
"""
SKETCH_SOURCE = "https://github.com/HaohanWang/ImageNet-Sketch (Google Drive or Kaggle)"
SKETCH_LAYOUT = """\
$WISEFT_DATA/sketch/              (or imagenet-sketch/sketch/)
  n01440764/*.JPEG ...            1000 WordNet-id folders
"""
OBJECTNET_SOURCE = "https://objectnet.dev/download.html (objectnet-1.0.zip)"
OBJECTNET_LAYOUT = """\
$WISEFT_DATA/objectnet-1.0/
  images/alarm_clock/*.png ...    313 class folders (the 113 that overlap ImageNet are used)
"""


def _require_dirs(folder: Path, names: Sequence[str], dataset: str, layout: str, source: str) -> None:
    missing = [n for n in names if not (folder / n).is_dir()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise layout_error(
            dataset, f"{folder} lacks {len(missing)} of its {len(names)} class folders ({shown})", layout, source
        )


def _bundle(name: str, samples, transform, *, classnames: list[str], verify: str, **kw) -> DatasetBundle:
    pre = kw.pop("pre", None)
    checked = kw.pop("checked", None)  # samples already checked: (kept, skipped)
    kept, skipped = checked if checked is not None else drop_unreadable(samples, verify, what=name)
    return DatasetBundle(
        name=name,
        dataset=ImageFiles(kept, transform, pre=pre),
        classnames=classnames,
        templates=list(IMAGENET_TEMPLATES),
        skipped=skipped,
        **kw,
    )


# ------------------------------------------------------------------------------- ImageNet


def _imagenet_split_samples(root: Optional[PathLike], split: str) -> list[tuple[Path, int]]:
    """``(path, label)`` for ImageNet ``train`` or ``val`` in either supported layout."""
    wnids = imagenet_wnids()
    base = data_root(root)
    for cand in ("imagenet", "ILSVRC2012", "ilsvrc2012", "imagenet-object-localization-challenge", "."):
        folder = base / cand if cand != "." else base
        if (folder / split).is_dir():  # plain layout
            if split == "val" and not (folder / split / wnids[0]).is_dir() and list_images(folder / split):
                return _kaggle_val(folder, folder / split, wnids)  # flat val/ + LOC_val_solution.csv
            _require_dirs(folder / split, wnids, "imagenet", IMAGENET_LAYOUT, IMAGENET_SOURCE)
            return class_folder_samples(folder / split, wnids)
        kaggle = folder / "ILSVRC" / "Data" / "CLS-LOC" / split
        if kaggle.is_dir():
            if split == "train":
                _require_dirs(kaggle, wnids, "imagenet", IMAGENET_LAYOUT, IMAGENET_SOURCE)
                return class_folder_samples(kaggle, wnids)
            return _kaggle_val(folder, kaggle, wnids)
    raise layout_error("imagenet", f"no {split}/ folder found under {base}", IMAGENET_LAYOUT, IMAGENET_SOURCE)


def _kaggle_val(folder: Path, val_dir: Path, wnids: list[str]) -> list[tuple[Path, int]]:
    solution = folder / "LOC_val_solution.csv"
    if not solution.exists():
        raise layout_error("imagenet", f"{solution} is missing (labels of the flat val/ folder)",
                           IMAGENET_LAYOUT, IMAGENET_SOURCE)
    index = {w: i for i, w in enumerate(wnids)}
    labels: dict[str, int] = {}
    with open(solution, newline="") as f:
        for row in csv.DictReader(f):
            labels[row["ImageId"]] = index[row["PredictionString"].split()[0]]
    samples = [(p, labels[p.stem]) for p in list_images(val_dir) if p.stem in labels]
    if not samples:
        raise layout_error("imagenet", f"no labelled images in {val_dir}", IMAGENET_LAYOUT, IMAGENET_SOURCE)
    return samples


@lru_cache(maxsize=4)
def _checked_split(root: str, split: str, verify: str) -> tuple[tuple[tuple[str, int], ...], np.ndarray]:
    """ImageNet ``split`` samples and their readability, computed once per process for val.

    The ``imagenet`` loader and every class-subsampled ``imagenet-val-*`` set share it, so
    the 50,000 validation files are checked once per session, not once per loader (files
    added to the folder during a session are not seen until the next one).
    """
    samples = tuple((str(p), y) for p, y in _imagenet_split_samples(root, split))
    return samples, readable_mask([p for p, _ in samples], verify, what=f"imagenet {split}")


def _imagenet_checked(root: Optional[PathLike], split: str, verify: str, class_map: Optional[dict] = None):
    """``(kept samples, skipped count)``, optionally restricted to and relabelled by ``class_map``."""
    if split == "val":
        samples, ok = _checked_split(str(data_root(root)), split, verify)
    else:  # train is read once per run; caching its 1.28M paths is not worth the memory
        samples, ok = _checked_split.__wrapped__(str(data_root(root)), split, verify)
    kept, skipped = [], 0
    for (path, y), good in zip(samples, ok):
        if class_map is not None:
            if y not in class_map:
                continue
            y = class_map[y]
        if good:
            kept.append((path, y))
        else:
            skipped += 1
    return kept, skipped


@register_dataset("imagenet", description="ILSVRC-2012, 1000 classes (test = val)", splits=("train", "val", "test"))
def load_imagenet(root: Optional[PathLike] = None, split: str = "val", transform: Optional[Callable] = None,
                  verify: str = "header") -> DatasetBundle:
    split = "val" if split == "test" else split
    checked = _imagenet_checked(root, split, verify)
    return _bundle("imagenet", None, transform, classnames=imagenet_classnames(), verify=verify, checked=checked)


# ------------------------------------------------------------------------------- shifts

_V2_FOLDERS = {
    "matched-frequency": ["imagenetv2-matched-frequency-format-val", "imagenetv2-matched-frequency",
                          "ImageNetV2-matched-frequency"],
    "threshold0.7": ["imagenetv2-threshold0.7-format-val", "imagenetv2-threshold0.7"],
    "top-images": ["imagenetv2-top-images-format-val", "imagenetv2-top-images"],
}


@register_dataset("imagenet-v2", description="ImageNet-V2 (matched-frequency), 1000 classes")
def load_imagenet_v2(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                     variant: str = "matched-frequency", verify: str = "header") -> DatasetBundle:
    if variant not in _V2_FOLDERS:
        raise ValueError(f"unknown ImageNet-V2 variant {variant!r}; known: {', '.join(_V2_FOLDERS)}")
    folder = find_folder(root, _V2_FOLDERS[variant], ["0", "999"], dataset="imagenet-v2",
                         layout=V2_LAYOUT, source=V2_SOURCE)
    _require_dirs(folder, [str(i) for i in range(1000)], "imagenet-v2", V2_LAYOUT, V2_SOURCE)
    samples = [(p, i) for i in range(1000) for p in list_images(folder / str(i))]
    return _bundle("imagenet-v2", samples, transform, classnames=imagenet_classnames(), verify=verify)


def _load_subset_shift(name: str, folders: list[str], source: str, root, transform, verify: str) -> DatasetBundle:
    wnids = subset_wnids(name)
    layout = SUBSET_LAYOUT.format(folder=folders[0])
    folder = find_folder(root, folders, [wnids[0]], dataset=name, layout=layout, source=source)
    _require_dirs(folder, wnids, name, layout, source)
    all_names = imagenet_classnames()
    idx = subset_indices(name)
    return _bundle(name, class_folder_samples(folder, wnids), transform, verify=verify,
                   classnames=[all_names[i] for i in idx], project_logits=SubsetProjection(idx))


@register_dataset("imagenet-r", description="ImageNet-R renditions, 200 classes (logits restricted)")
def load_imagenet_r(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                    verify: str = "header") -> DatasetBundle:
    return _load_subset_shift("imagenet-r", ["imagenet-r", "imagenet_r", "ImageNet-R"], R_SOURCE, root,
                              transform, verify)


@register_dataset("imagenet-a", description="ImageNet-A adversarial photos, 200 classes (logits restricted)")
def load_imagenet_a(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                    verify: str = "header") -> DatasetBundle:
    return _load_subset_shift("imagenet-a", ["imagenet-a", "imagenet_a", "ImageNet-A"], A_SOURCE, root,
                              transform, verify)


@register_dataset("imagenet-sketch", description="ImageNet-Sketch, 1000 classes")
def load_imagenet_sketch(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                         verify: str = "header") -> DatasetBundle:
    wnids = imagenet_wnids()
    folder = find_folder(root, ["sketch", "imagenet-sketch/sketch", "imagenet-sketch/data/sketch",
                                "imagenet-sketch", "ImageNet-Sketch/sketch"], [wnids[0]],
                         dataset="imagenet-sketch", layout=SKETCH_LAYOUT, source=SKETCH_SOURCE)
    _require_dirs(folder, wnids, "imagenet-sketch", SKETCH_LAYOUT, SKETCH_SOURCE)
    return _bundle("imagenet-sketch", class_folder_samples(folder, wnids), transform,
                   classnames=imagenet_classnames(), verify=verify)


@register_dataset("objectnet", description="ObjectNet, 113 ImageNet-overlapping classes (max-projected logits)")
def load_objectnet(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                   verify: str = "header") -> DatasetBundle:
    classes = objectnet_classes()
    folders = [c["folder"] for c in classes]
    folder = find_folder(root, ["objectnet-1.0/images", "objectnet/images", "ObjectNet/images", "images"],
                         [folders[0]], dataset="objectnet", layout=OBJECTNET_LAYOUT, source=OBJECTNET_SOURCE)
    _require_dirs(folder, folders, "objectnet", OBJECTNET_LAYOUT, OBJECTNET_SOURCE)
    # Only the 113 mapped folders are indexed: images of the other 200 classes are dropped.
    return _bundle("objectnet", class_folder_samples(folder, folders), transform, verify=verify,
                   classnames=objectnet_classnames(), project_logits=MaxProjection(objectnet_imagenet_groups()),
                   pre=border_crop(2))


# ------------------------------------------------------------------------------- class-subsampled val


def subsampled_val(name: str, root: Optional[PathLike], transform: Optional[Callable], *,
                   class_map: dict[int, int], classnames: list[str], project_logits, verify: str) -> DatasetBundle:
    """ImageNet val images whose label is a key of ``class_map``, relabelled by it."""
    checked = _imagenet_checked(root, "val", verify, class_map)
    return _bundle(name, None, transform, classnames=classnames, project_logits=project_logits, verify=verify,
                   checked=checked)


def _val_subset(name: str, shift: str, root, transform, verify: str) -> DatasetBundle:
    idx = subset_indices(shift)
    names = imagenet_classnames()
    return subsampled_val(name, root, transform, class_map={c: j for j, c in enumerate(idx)},
                          classnames=[names[i] for i in idx], project_logits=SubsetProjection(idx), verify=verify)


@register_dataset("imagenet-val-r", description="ImageNet val restricted to ImageNet-R's 200 classes")
def load_imagenet_val_r(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                        verify: str = "header") -> DatasetBundle:
    return _val_subset("imagenet-val-r", "imagenet-r", root, transform, verify)


@register_dataset("imagenet-val-a", description="ImageNet val restricted to ImageNet-A's 200 classes")
def load_imagenet_val_a(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                        verify: str = "header") -> DatasetBundle:
    return _val_subset("imagenet-val-a", "imagenet-a", root, transform, verify)


@register_dataset("imagenet-val-objectnet", description="ImageNet val of the ObjectNet-mapped classes, 113-way")
def load_imagenet_val_objectnet(root: Optional[PathLike] = None, split: str = "test",
                                transform: Optional[Callable] = None, verify: str = "header") -> DatasetBundle:
    groups = objectnet_imagenet_groups()
    class_map = {i: j for j, g in enumerate(groups) for i in g}
    return subsampled_val("imagenet-val-objectnet", root, transform, class_map=class_map,
                          classnames=objectnet_classnames(), project_logits=MaxProjection(groups), verify=verify)


__all__ = [
    "imagenet_classnames", "imagenet_wnids", "objectnet_classes", "objectnet_classnames",
    "objectnet_imagenet_groups", "subset_indices", "subset_wnids", "subsampled_val",
]
