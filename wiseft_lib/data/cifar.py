"""CIFAR-10, CIFAR-100 and the CIFAR-10 reproductions CIFAR-10.1 and CIFAR-10.2.

=========  ============  ===================================================================
name       splits        layout under the data root
=========  ============  ===================================================================
cifar10    train, test   ``cifar-10-batches-py/`` (the python tarball; torchvision reads it)
cifar100   train, test   ``cifar-100-python/``
cifar10.1  test          ``CIFAR-10.1/cifar10.1_v6_{data,labels}.npy`` (``version="v4"`` too)
cifar10.2  train, test   ``CIFAR-10.2/cifar102_{train,test}.npz`` (or the released ``.npy``)
=========  ============  ===================================================================

All four are scored in CIFAR-10's (or CIFAR-100's) own label space; class names follow CLIP
(underscores become spaces) and the templates are CLIP's 18 CIFAR templates.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100

from wiseft_lib.data._common import ImageArrays, PathLike, data_root, find_folder, layout_error
from wiseft_lib.data.registry import DatasetBundle, register_dataset
from wiseft_lib.data.templates import CIFAR_TEMPLATES

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_TV_LAYOUT = """\
$WISEFT_DATA/{folder}/            the extracted python-version tarball
  {files}
"""
_TV_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-{n} python version)"


class _NoMd5(object):
    """Mixin: check that the files exist instead of hashing them (download is off; a
    truncated file still fails when it is unpickled)."""

    def _check_integrity(self) -> bool:  # type: ignore[override]
        base = Path(self.root) / self.base_folder
        return all((base / name).is_file() for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:  # type: ignore[override]
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
            data = pickle.load(f, encoding="latin1")  # the CIFAR release format (as torchvision)
        self.classes = data[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _CIFAR10(_NoMd5, CIFAR10):
    pass


class _CIFAR100(_NoMd5, CIFAR100):
    pass


def _torchvision_cifar(cls, n: int, root, split: str) -> tuple[np.ndarray, list[int], list[str]]:
    files = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    layout = _TV_LAYOUT.format(folder=cls.base_folder, files=", ".join(files))
    folder = find_folder(root, [cls.base_folder, f"cifar{n}/{cls.base_folder}", f"CIFAR-{n}/{cls.base_folder}"],
                         files, dataset=f"cifar{n}", layout=layout, source=_TV_SOURCE.format(n=n))
    ds = cls(str(folder.parent), train=split == "train", download=False)
    classes = [c.replace("_", " ") for c in ds.classes]
    return ds.data, list(ds.targets), classes


@register_dataset("cifar10", description="CIFAR-10 (torchvision layout)", splits=("train", "test"))
def load_cifar10(root: Optional[PathLike] = None, split: str = "test",
                 transform: Optional[Callable] = None) -> DatasetBundle:
    data, targets, classes = _torchvision_cifar(_CIFAR10, 10, root, split)
    return DatasetBundle("cifar10", ImageArrays(data, targets, transform), classes, list(CIFAR_TEMPLATES))


@register_dataset("cifar100", description="CIFAR-100 (torchvision layout)", splits=("train", "test"))
def load_cifar100(root: Optional[PathLike] = None, split: str = "test",
                  transform: Optional[Callable] = None) -> DatasetBundle:
    data, targets, classes = _torchvision_cifar(_CIFAR100, 100, root, split)
    return DatasetBundle("cifar100", ImageArrays(data, targets, transform), classes, list(CIFAR_TEMPLATES))


_C101_SOURCE = "https://github.com/modestyachts/CIFAR-10.1 (datasets/cifar10.1_v6_data.npy and _labels.npy)"
_C101_LAYOUT = """\
$WISEFT_DATA/CIFAR-10.1/
  cifar10.1_v6_data.npy           uint8 [2000, 32, 32, 3]
  cifar10.1_v6_labels.npy         int [2000]
"""


@register_dataset("cifar10.1", description="CIFAR-10.1 reproduction test set, CIFAR-10 classes")
def load_cifar10_1(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                   version: str = "v6") -> DatasetBundle:
    files = [f"cifar10.1_{version}_data.npy", f"cifar10.1_{version}_labels.npy"]
    folder = find_folder(root, ["CIFAR-10.1", "cifar10.1", "CIFAR-10.1/datasets"], files, dataset="cifar10.1",
                         layout=_C101_LAYOUT, source=_C101_SOURCE)
    images = np.load(folder / files[0], allow_pickle=False)
    labels = np.load(folder / files[1], allow_pickle=False)
    return DatasetBundle("cifar10.1", ImageArrays(images, labels, transform), list(CIFAR10_CLASSES),
                         list(CIFAR_TEMPLATES))


_C102_SOURCE = "https://github.com/modestyachts/cifar-10.2 (cifar102_train and cifar102_test)"
_C102_LAYOUT = """\
$WISEFT_DATA/CIFAR-10.2/
  cifar102_test.npz   (or .npy)   arrays 'images' uint8 [N, 32, 32, 3] and 'labels' [N]
  cifar102_train.npz  (or .npy)
"""


def _read_cifar102(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return z["images"], z["labels"]
    # The released .npy files hold one pickled dict {'images', 'labels'} (numpy object array).
    obj = np.load(path, allow_pickle=True)
    d = obj.item() if obj.dtype == object and obj.shape == () else None
    if not isinstance(d, dict) or "images" not in d or "labels" not in d:
        raise layout_error("cifar10.2", f"{path} does not hold a dict with 'images' and 'labels'",
                           _C102_LAYOUT, _C102_SOURCE)
    return np.asarray(d["images"]), np.asarray(d["labels"])


@register_dataset("cifar10.2", description="CIFAR-10.2 reproduction, CIFAR-10 classes", splits=("train", "test"))
def load_cifar10_2(root: Optional[PathLike] = None, split: str = "test",
                   transform: Optional[Callable] = None) -> DatasetBundle:
    base = data_root(root)
    for folder in (base / "CIFAR-10.2", base / "cifar10.2", base):
        for ext in (".npz", ".npy"):
            path = folder / f"cifar102_{split}{ext}"
            if path.is_file():
                images, labels = _read_cifar102(path)
                return DatasetBundle("cifar10.2", ImageArrays(images, labels, transform), list(CIFAR10_CLASSES),
                                     list(CIFAR_TEMPLATES))
    raise layout_error("cifar10.2", f"cifar102_{split}.npz/.npy not found under {base}", _C102_LAYOUT, _C102_SOURCE)
