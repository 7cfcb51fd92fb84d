"""Transfer datasets of the paper's Table 2 (with ImageNet and CIFAR-10/100 from their modules).

torchvision's dataset classes read the standard layouts (``download=False``); this module
turns their file lists into bundles, skipping unreadable images.

=============  ================  =========================================================
name           splits            layout under the data root (torchvision's)
=============  ================  =========================================================
dtd            train, val, test  ``dtd/dtd/{images,labels}`` or ``dtd/{images,labels}``;
                                 ``partition=1..10`` (default 1)
food101        train, test       ``food-101/{images,meta}``
sun397         train, test       ``SUN397/`` + ``Partitions/{Training,Testing}_01.txt``
                                 (``partition=1..10``)
stanford-cars  train, test       ``stanford_cars/{devkit,cars_train,cars_test,
                                 cars_test_annos_withlabels.mat}``
=============  ================  =========================================================

Class names are torchvision's with ``_`` turned into spaces, and ``/`` too except for Stanford Cars: CLIP's
names (SUN397's ``apartment_building/outdoor`` is ``apartment building outdoor``, while Cars keeps
``Ram C/V Cargo Van Minivan 2012``); templates are CLIP's per-dataset prompts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from torchvision import datasets as tvd

from wiseft_lib.data.common import (
    ImageFiles,
    PathLike,
    data_root,
    drop_unreadable,
    find_folder,
    layout_error,
)
from wiseft_lib.data.registry import DatasetBundle, register_dataset
from wiseft_lib.data.templates import CARS_TEMPLATES, DTD_TEMPLATES, FOOD101_TEMPLATES, SUN397_TEMPLATES


def clean_name(name: str, keep_slash: bool = False) -> str:
    """CLIP's class name for a torchvision one: ``_`` (and ``/`` unless ``keep_slash``) as spaces."""
    name = name.replace("_", " ")
    return " ".join((name if keep_slash else name.replace("/", " ")).split())


def _tv_root(folder: Path, expected: str, dataset: str, layout: str, source: str) -> str:
    """The parent folder torchvision wants, which must hold the dataset under ``expected``."""
    if folder.name != expected:
        raise layout_error(dataset, f"torchvision reads this dataset from a folder named {expected}/, "
                           f"found {folder}", layout, source)
    return str(folder.parent)


def _bundle(name: str, files: Sequence, labels: Sequence[int], classes: Sequence[str], templates: list[str],
            transform: Optional[Callable], verify: str, keep_slash: bool = False) -> DatasetBundle:
    kept, skipped = drop_unreadable(list(zip(files, labels)), verify, what=name)
    return DatasetBundle(name, ImageFiles(kept, transform), [clean_name(c, keep_slash) for c in classes],
                         list(templates),
                         skipped=skipped)


# ------------------------------------------------------------------------------ DTD

DTD_SOURCE = "https://www.robots.ox.ac.uk/~vgg/data/dtd/ (dtd-r1.0.1.tar.gz)"
DTD_LAYOUT = """\
$WISEFT_DATA/dtd/                 the extracted tarball (torchvision's dtd/dtd/ also works)
  images/banded/banded_0002.jpg ...   47 texture folders
  labels/train1.txt, val1.txt, test1.txt ... (10 partitions)
"""


@register_dataset("dtd", description="Describable Textures, 47 classes", splits=("train", "val", "test"))
def load_dtd(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
             partition: int = 1, verify: str = "header") -> DatasetBundle:
    base = data_root(root)
    if (base / "dtd" / "dtd" / "images").is_dir():  # torchvision's own layout
        ds = tvd.DTD(str(base), split=split, partition=partition, download=False)
        return _bundle("dtd", ds._image_files, ds._labels, ds.classes, DTD_TEMPLATES, transform, verify)
    folder = find_folder(root, ["dtd"], ["images", f"labels/{split}{partition}.txt"], dataset="dtd",
                         layout=DTD_LAYOUT, source=DTD_SOURCE)
    classes = sorted(p.name for p in (folder / "images").iterdir() if p.is_dir())
    index = {c: i for i, c in enumerate(classes)}
    rels = [line.strip() for line in (folder / "labels" / f"{split}{partition}.txt").read_text().splitlines()]
    rels = [r for r in rels if r]
    files = [folder / "images" / r for r in rels]
    labels = [index[r.split("/")[0]] for r in rels]
    return _bundle("dtd", files, labels, classes, DTD_TEMPLATES, transform, verify)


# ------------------------------------------------------------------------------ Food-101

FOOD_SOURCE = "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (food-101.tar.gz)"
FOOD_LAYOUT = """\
$WISEFT_DATA/food-101/
  images/apple_pie/1005649.jpg ...    101 food folders
  meta/classes.txt, train.json, test.json
"""


@register_dataset("food101", description="Food-101, 101 classes", splits=("train", "test"))
def load_food101(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                 verify: str = "header") -> DatasetBundle:
    folder = find_folder(root, ["food-101"], ["images", f"meta/{split}.json"], dataset="food101",
                         layout=FOOD_LAYOUT, source=FOOD_SOURCE)
    ds = tvd.Food101(_tv_root(folder, "food-101", "food101", FOOD_LAYOUT, FOOD_SOURCE), split=split, download=False)
    return _bundle("food101", ds._image_files, ds._labels, ds.classes, FOOD101_TEMPLATES, transform, verify)


# ------------------------------------------------------------------------------ SUN397

SUN_SOURCE = "https://vision.princeton.edu/projects/2010/SUN/ (SUN397.tar.gz and Partitions.zip)"
SUN_LAYOUT = """\
$WISEFT_DATA/SUN397/
  ClassName.txt                       /a/abbey ... (397 lines)
  a/abbey/sun_aaalbzqrimafwbiv.jpg ...
$WISEFT_DATA/Partitions/              (or SUN397/Partitions/)
  Training_01.txt, Testing_01.txt ... /a/abbey/sun_....jpg per line
"""


@register_dataset("sun397", description="SUN397 scenes, 397 classes", splits=("train", "test"))
def load_sun397(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                partition: int = 1, verify: str = "header") -> DatasetBundle:
    folder = find_folder(root, ["SUN397", "sun397/SUN397"], ["ClassName.txt"], dataset="sun397",
                         layout=SUN_LAYOUT, source=SUN_SOURCE)
    name = f"{'Training' if split == 'train' else 'Testing'}_{partition:02d}.txt"
    part = next((p for p in (folder.parent / "Partitions" / name, folder / "Partitions" / name, folder / name)
                 if p.is_file()), None)
    if part is None:
        raise layout_error("sun397", f"partition file {name} not found next to {folder}", SUN_LAYOUT, SUN_SOURCE)
    ds = tvd.SUN397(_tv_root(folder, "SUN397", "sun397", SUN_LAYOUT, SUN_SOURCE), download=False)
    wanted = {line.strip().lstrip("/") for line in part.read_text().splitlines() if line.strip()}
    pairs = sorted((Path(f), y) for f, y in zip(ds._image_files, ds._labels)
                   if Path(f).relative_to(folder).as_posix() in wanted)
    if len(pairs) < len(wanted):
        raise layout_error("sun397", f"{len(wanted) - len(pairs)} of the {len(wanted)} images listed in "
                           f"{part.name} are missing under {folder}", SUN_LAYOUT, SUN_SOURCE)
    return _bundle("sun397", [p for p, _ in pairs], [y for _, y in pairs], ds.classes, SUN397_TEMPLATES,
                   transform, verify)


# ------------------------------------------------------------------------------ Stanford Cars

CARS_SOURCE = ("the Stanford Cars release (cars_train.tgz, cars_test.tgz, car_devkit.tgz, "
               "cars_test_annos_withlabels.mat), e.g. via Kaggle mirrors; the original site is offline")
CARS_LAYOUT = """\
$WISEFT_DATA/stanford_cars/
  devkit/cars_meta.mat, devkit/cars_train_annos.mat
  cars_train/00001.jpg ...
  cars_test/00001.jpg ...
  cars_test_annos_withlabels.mat
"""


@register_dataset("stanford-cars", description="Stanford Cars, 196 classes", splits=("train", "test"))
def load_stanford_cars(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                       verify: str = "header") -> DatasetBundle:
    ann = "devkit/cars_train_annos.mat" if split == "train" else "cars_test_annos_withlabels.mat"
    images = "cars_train" if split == "train" else "cars_test"
    folder = find_folder(root, ["stanford_cars"], ["devkit/cars_meta.mat", ann, images], dataset="stanford-cars",
                         layout=CARS_LAYOUT, source=CARS_SOURCE)
    ds = tvd.StanfordCars(_tv_root(folder, "stanford_cars", "stanford-cars", CARS_LAYOUT, CARS_SOURCE),
                            split=split, download=False)
    files, labels = zip(*ds._samples) if ds._samples else ((), ())
    return _bundle("stanford-cars", files, labels, ds.classes, CARS_TEMPLATES, transform, verify,
                   keep_slash=True)  # CLIP's Cars names keep the slash: "Ram C/V Cargo Van Minivan 2012"
