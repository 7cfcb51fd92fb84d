"""Your own data: any image folder with one sub-folder per class is a dataset, named by its path.

    from wiseft_lib.data import get_dataset
    bundle = get_dataset("/data/my_flowers", split="train")        # an existing folder
    bundle = get_dataset("folder:/data/my_flowers", split="test")  # the same, explicitly

Studies resolve datasets through :func:`get_dataset`, so ``id_dataset: /data/my_flowers`` and
``ood_datasets: [/data/my_flowers_at_night]`` work in every study and in
``wiseft run STUDY --set id_dataset=/data/my_flowers``.

Layout (``FOLDER_LAYOUT``)::

    my_flowers/
      train/                 (optional: without it the folder itself holds the class folders)
        daisy/  img001.jpg img002.png ...     one sub-folder per class (nested folders are searched too)
        red_rose/ ...                        class name "red rose" (underscores become spaces)
      val/                   (optional) the same class folders
      test/                  (optional) the same class folders
      classnames.txt         (optional) one class name per line, in the sorted order of the class folders

Splits:

* ``train``: ``train/`` (or the folder itself), less the ``val`` images when there is no ``val/``.
* ``val``: ``val/`` if present, else a seeded, class-stratified 10% of the training images
  (``val_fraction``, ``holdout_seed``; the same images for every study seed, never trained on).
* ``test``: ``test/`` if present, else the ``val`` images. Without ``test/`` the reported numbers are
  therefore on the images where a recipe would be chosen: give a ``test/`` folder for honest numbers
  when you tune anything. A shift folder (``ood_datasets``) is only ever evaluated: put its class
  folders under ``test/`` to score all of its images (a folder with only ``val/`` and/or ``test/`` is
  evaluation-only: its ``val`` and ``test`` are the same images when it has one of them, and it has no
  ``train`` split; a folder of bare class folders is split 90/10 like a training folder and scored on its
  10%).

Class names come from ``classnames.txt`` when present, else from the folder names of ``train/``.
``val/`` and ``test/`` may lack classes, but a class folder there that ``train/`` lacks is an error.
Files that are not readable images are skipped and counted (``DatasetBundle.skipped``, with a
warning), as in every loader of the package; files without an image extension are ignored.
Templates are generic CLIP prompts (:data:`wiseft_lib.data.templates.GENERIC_TEMPLATES`).

:func:`write_demo_folder` writes such a folder from the embedded Fashion-MNIST data (the
``custom_dataset`` study's mini preset uses it).
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from wiseft_lib.data.common import (
    IMG_EXTENSIONS,
    DatasetNotFoundError,
    ImageFiles,
    class_balanced_subset,
    drop_unreadable,
)
from wiseft_lib.data.registry import DatasetBundle, DatasetEntry, register_resolver
from wiseft_lib.data.templates import GENERIC_TEMPLATES

__all__ = ["FOLDER_PREFIX", "FOLDER_LAYOUT", "FOLDER_SPLITS", "is_folder_name", "folder_path", "folder_fingerprint",
           "load_image_folder"]

FOLDER_PREFIX = "folder:"
FOLDER_SPLITS = ("train", "val", "test")
CLASSNAMES_FILE = "classnames.txt"
FOLDER_LAYOUT = """\
PATH/
  train/                 optional: without it PATH itself holds the class folders
    CLASS_A/ 001.jpg 002.png ...   one sub-folder per class (folder name = class name, _ -> space)
    CLASS_B/ ...
  val/                   optional, same class folders (else a seeded 10% of train is held out)
  test/                  optional, same class folders (else test = val); a shift folder may hold test/ only
  classnames.txt         optional: one class name per line, in sorted class-folder order
"""


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "~", "/")) or "/" in name or os.sep in name


def is_folder_name(name: str) -> bool:
    """Whether a dataset name means an image folder: ``folder:PATH``, or a path to an existing folder.

    A name that looks like a path (has a ``/``, or starts with ``.`` or ``~``) also counts, so that
    a missing folder gets an error showing the layout rather than "unknown dataset".
    """
    if name.startswith(FOLDER_PREFIX):
        return True
    return Path(name).expanduser().is_dir() or _looks_like_path(name)


def folder_path(name: str) -> Path:
    """The folder a dataset name points at (``folder:`` stripped, ``~`` expanded)."""
    raw = name[len(FOLDER_PREFIX):] if name.startswith(FOLDER_PREFIX) else name
    return Path(raw).expanduser()


def _error(path: Path, problem: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"image folder {path}: {problem}.\nExpected layout:\n{FOLDER_LAYOUT.rstrip()}")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_under(folder: Path) -> list[Path]:
    """Image files anywhere under ``folder`` (hidden files and folders skipped), sorted by relative path."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in filenames
                   if not f.startswith(".") and Path(f).suffix.lower() in IMG_EXTENSIONS)
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def folder_fingerprint(name: str) -> str:
    """A cheap content key of a folder dataset (every file's relative path, size and modification time):
    run-cache keys include it, so changing the images invalidates cached fine-tunes and scores."""
    root = folder_path(name)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for f in sorted(filenames):
            p = Path(dirpath) / f
            try:
                st = p.stat()
            except OSError:
                continue
            h.update(f"{p.relative_to(root).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _class_names(root: Path, class_source: Path, names: list[str]) -> list[str]:
    """``classnames.txt`` (in the folder or its class source) when present, else the folder names (_ -> space)."""
    listed = next((p for p in (root / CLASSNAMES_FILE, class_source / CLASSNAMES_FILE) if p.is_file()), None)
    if listed is None:
        return [" ".join(n.replace("_", " ").split()) for n in names]
    lines = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) != len(names):
        raise _error(root, f"{listed} lists {len(lines)} class names but there are {len(names)} class folders "
                           f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); give one name per "
                           f"line, in sorted folder order")
    return lines


@functools.lru_cache(maxsize=32)
def _index(root_str: str, fingerprint: str, verify: str, val_fraction: float, holdout_seed: int) -> dict:
    """Class names and ``(path, label)`` samples of every split, skipped counts per split (cached per content).

    Three layouts: ``train/`` (+ optional ``val/``, ``test/``); class folders directly in the folder (split
    90/10); only ``val/`` and/or ``test/`` (an evaluation-only folder, e.g. a shift: no train split).
    """
    root = Path(root_str)
    has = {s: (root / s).is_dir() for s in FOLDER_SPLITS}
    eval_only, class_source, names = _layout_and_class_folders(root, has)
    classnames = _class_names(root, class_source, names)
    label = {n: i for i, n in enumerate(names)}
    out: dict = {"classnames": classnames, "class_dirs": names, "skipped": {}, "source": {}, "train": None}
    for split in ("val", "test"):
        if has[split]:
            out[split], out["skipped"][split] = _split_samples(root, root / split, class_source, names, label, verify)
            _check_split_classes(root, out[split], root / split, names, all_needed=False)
            out["source"][split] = f"{split}/"
    if not eval_only:
        train, out["skipped"]["train"] = _split_samples(root, class_source, class_source, names, label, verify)
        _check_split_classes(root, train, class_source, names, all_needed=True)
        out["source"]["train"] = "train/" if has["train"] else "the folder"
        if has["val"]:
            out["train"] = train
        else:  # a seeded, class-stratified holdout of the training images
            out["train"], out["val"] = _hold_out_val(train, len(names), val_fraction, holdout_seed)
            out["skipped"]["val"] = 0
            out["source"]["val"] = f"{val_fraction:g} of {out['source']['train']} held out (seed {holdout_seed})"
            out["source"]["train"] += " less the val images"
    _fill_in_missing_splits(root, out, has, eval_only)
    return out


def _layout_and_class_folders(root: Path, has: dict[str, bool]) -> tuple[bool, Path, list[str]]:
    """Whether the folder is evaluation-only, the folder whose sub-folders name the classes, and those names."""
    eval_only = not has["train"] and (has["val"] or has["test"])
    if eval_only:
        sources = [root / s for s in ("val", "test") if has[s]]
        names = sorted({d.name for src in sources for d in _visible_dirs(src)})
        class_source, where = sources[-1], " and ".join(f"{src.name}/" for src in sources)
    else:
        class_source = root / "train" if has["train"] else root
        names = [d.name for d in _visible_dirs(class_source)]
        where = "train/" if has["train"] else "the folder"
    if not names:
        raise _error(root, f"no class sub-folders in {where}; put each class's images in a sub-folder named after "
                           f"the class")
    return eval_only, class_source, names


def _split_samples(root: Path, split_dir: Path, class_source: Path, names: list[str], label: dict[str, int],
                   verify: str) -> tuple[list, int]:
    """The readable ``(path, label)`` images of ``split_dir``'s class folders and the count of skipped files."""
    unknown = [d.name for d in _visible_dirs(split_dir) if d.name not in label]
    if unknown:
        raise _error(root, f"{split_dir.name}/ has class folders that {class_source.name}/ lacks: "
                           f"{', '.join(unknown[:5])}")
    samples = [(p, label[n]) for n in names if (split_dir / n).is_dir() for p in _images_under(split_dir / n)]
    return drop_unreadable(samples, verify, what=f"image folder {root}/{split_dir.relative_to(root)}")


def _check_split_classes(root: Path, samples: list, split_dir: Path, names: list[str], all_needed: bool) -> None:
    """Raise when a class folder of ``split_dir`` (every class when ``all_needed``) has no readable image."""
    counts = np.bincount([y for _, y in samples], minlength=len(names))
    present = {n for n in names if (split_dir / n).is_dir()}
    empty = [names[i] for i in np.flatnonzero(counts == 0) if all_needed or names[i] in present]
    if empty:
        where = f"{split_dir.name}/" if split_dir != root else "the folder"
        raise _error(root, f"class folder(s) with no readable images in {where}: {', '.join(empty[:5])}"
                           f"{', ...' if len(empty) > 5 else ''} (image files end in {', '.join(IMG_EXTENSIONS)})")


def _hold_out_val(train: list, n_classes: int, val_fraction: float, holdout_seed: int) -> tuple[list, list]:
    """The training images less a seeded, class-stratified ``val_fraction`` of them, and those held-out images."""
    rng = np.random.default_rng(holdout_seed)
    labels = np.asarray([y for _, y in train])
    held: list[int] = []
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        k = max(int(round(val_fraction * len(idx))), 1) if len(idx) > 1 else 0
        held.extend(rng.permutation(idx)[:k].tolist())
    held_set = set(held)
    val = [train[i] for i in sorted(held_set)]
    return [s for i, s in enumerate(train) if i not in held_set], val


def _fill_in_missing_splits(root: Path, out: dict, has: dict[str, bool], eval_only: bool) -> None:
    """Test falls back to the val images, val (evaluation-only folders) to the test images; raise on an empty split."""
    if not has["test"]:
        out["test"], out["skipped"]["test"] = out["val"], out["skipped"]["val"]
        out["source"]["test"] = "the val images (no test/ folder)"
    if eval_only and not has["val"]:
        out["val"], out["skipped"]["val"] = out["test"], out["skipped"]["test"]
        out["source"]["val"] = "the test images (no val/ folder)"
    for split in ("val", "test", *(() if eval_only else ("train",))):
        if not out[split]:
            raise _error(root, f"its {split} split is empty ({out['source'][split]})")


def load_image_folder(name: str, root: Optional[str] = None, split: str = "test",
                      transform: Optional[Callable] = None, *, n_train: Optional[int] = None, seed: int = 0,
                      n_test: Optional[int] = None,
                      val_fraction: float = 0.1, holdout_seed: int = 0, verify: str = "header") -> DatasetBundle:
    """The :class:`DatasetBundle` of an image folder (``name``: its path or ``folder:PATH``; ``root`` is unused:
    the path says where the data is).

    ``n_train`` keeps a seeded, class-balanced subset of the train split (``seed``); ``n_test`` the first
    ``n_test`` images of a fixed shuffle of an evaluation split. See the module docstring for the layout.
    """

    path = folder_path(name)
    if split not in FOLDER_SPLITS:
        raise ValueError(f"image folder {path} has no split {split!r}; available: {', '.join(FOLDER_SPLITS)}")
    if not path.exists():
        raise _error(path, "does not exist")
    if not path.is_dir():
        raise _error(path, "is not a folder")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    index = _index(str(path.resolve()), folder_fingerprint(name), verify, float(val_fraction), int(holdout_seed))
    samples = index[split]
    if samples is None:
        raise _error(path, "it has no train/ folder, only val/ or test/: it can be evaluated (e.g. as a shift "
                           "folder) but not trained on")
    if split == "train" and n_train is not None:
        labels = np.asarray([y for _, y in samples])
        samples = [samples[i] for i in class_balanced_subset(labels, n_train, seed)]
    elif split != "train" and n_test is not None and n_test < len(samples):
        keep = np.sort(np.random.default_rng(holdout_seed).permutation(len(samples))[:n_test])
        samples = [samples[i] for i in keep]
    metadata = {"path": str(path), "split": split, "split_source": index["source"][split],
                "class_dirs": list(index["class_dirs"])}
    return DatasetBundle(name=name, dataset=ImageFiles(samples, transform), classnames=list(index["classnames"]),
                         templates=list(GENERIC_TEMPLATES), metadata=metadata, skipped=index["skipped"][split])


def _folder_entry(name: str) -> Optional[DatasetEntry]:
    if not is_folder_name(name):
        return None
    return DatasetEntry(name, functools.partial(load_image_folder, name), f"image folder {folder_path(name)}",
                        FOLDER_SPLITS, val_split="val", subset_options=frozenset({"n_train", "seed"}))


register_resolver(_folder_entry)  # get_dataset("/path/to/images") reads an image folder
