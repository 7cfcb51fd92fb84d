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

from wiseft_lib.data.common import ImageArrays, PathLike, data_root, find_folder, layout_error
from wiseft_lib.data.registry import DatasetBundle, register_dataset
from wiseft_lib.data.templates import CIFAR_TEMPLATES

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_TV_LAYOUT = """\
$WISEFT_DATA/{folder}/            the extracted python-version tarball
  {files}
"""
_TV_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-{n} python version)"


# The CIFAR python-version files are pickles (and so is the CIFAR-10.2 .npy release): read them with an
# unpickler that builds only dicts, lists, strings, numbers and numpy arrays. A pickle asking for anything else
# (e.g. ``os.system``: a pickle can call any function while it loads) is refused, never run.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"), ("builtins", "bytearray"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        canonical = module.replace("numpy.core.", "numpy._core.", 1)  # numpy 1.x names numpy.core
        if (canonical, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"it asks to load {module}.{name}, which a data file never holds: refused "
                                         f"(loading it could run code)")
        try:
            return super().find_class(canonical, name)
        except ImportError:  # numpy 1.x has no numpy._core
            return super().find_class(canonical.replace("numpy._core.", "numpy.core.", 1), name)


def safe_unpickle(f, what: str, fix: str):
    """Unpickle data (dicts, lists, strings, numbers, numpy arrays) from the open file ``f``; ValueError otherwise."""
    try:
        return _SafeUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise ValueError(f"{what} is not a readable data pickle ({err or type(err).__name__}); {fix}") from None


def _read_batch(path: Path, keys: tuple[str, ...], n: int) -> dict:
    fix = f"it is damaged or not the CIFAR-{n} python version: download it again from {_TV_SOURCE.format(n=n)}"
    with open(path, "rb") as f:
        entry = safe_unpickle(f, str(path), fix)
    if not isinstance(entry, dict) or not any(k in entry for k in keys):
        found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise ValueError(f"{path} holds {found}, not a CIFAR batch with {' or '.join(keys)}; {fix}")
    return entry


def _torchvision_cifar(cls, n: int, root, split: str) -> tuple[np.ndarray, list[int], list[str]]:
    """torchvision's CIFAR layout (``cls`` names the files), read with :func:`safe_unpickle`."""
    files = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    layout = _TV_LAYOUT.format(folder=cls.base_folder, files=", ".join(files))
    folder = find_folder(root, [cls.base_folder, f"cifar{n}/{cls.base_folder}", f"CIFAR-{n}/{cls.base_folder}"],
                         files, dataset=f"cifar{n}", layout=layout, source=_TV_SOURCE.format(n=n))
    data, targets = [], []
    for name, _ in cls.train_list if split == "train" else cls.test_list:
        entry = _read_batch(folder / name, ("data",), n)
        data.append(np.asarray(entry["data"], dtype=np.uint8))
        targets.extend(int(y) for y in entry.get("labels", entry.get("fine_labels", [])))
    meta = _read_batch(folder / cls.meta["filename"], (cls.meta["key"],), n)
    images = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
    return images, targets, [str(c).replace("_", " ") for c in meta[cls.meta["key"]]]


@register_dataset("cifar10", description="CIFAR-10 (torchvision layout)", splits=("train", "test"))
def load_cifar10(root: Optional[PathLike] = None, split: str = "test",
                 transform: Optional[Callable] = None) -> DatasetBundle:
    data, targets, classes = _torchvision_cifar(CIFAR10, 10, root, split)
    return DatasetBundle("cifar10", ImageArrays(data, targets, transform), classes, list(CIFAR_TEMPLATES))


@register_dataset("cifar100", description="CIFAR-100 (torchvision layout)", splits=("train", "test"))
def load_cifar100(root: Optional[PathLike] = None, split: str = "test",
                  transform: Optional[Callable] = None) -> DatasetBundle:
    data, targets, classes = _torchvision_cifar(CIFAR100, 100, root, split)
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
    # The released .npy files hold one pickled dict {'images', 'labels'} (numpy object array): read its header,
    # then the pickle with the safe unpickler (np.load(allow_pickle=True) would run whatever the pickle asks).
    fix = f"it is damaged or not the CIFAR-10.2 release: download it again from {_C102_SOURCE}"
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, dtype = read_header(f)
        except ValueError as err:
            raise ValueError(f"{path} is not a readable .npy file ({err}); {fix}") from None
        if dtype.hasobject:
            obj = np.asarray(safe_unpickle(f, str(path), fix), dtype=object)
        else:
            obj = None
    d = obj.item() if obj is not None and obj.shape == () else None
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
