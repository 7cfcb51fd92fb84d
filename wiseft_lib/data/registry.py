"""Dataset registry: one name per dataset, one bundle type for all of them.

Every dataset, real (ImageNet and its shifts, the transfer sets) or embedded (the mini
Fashion-MNIST shifts), is reached through :func:`get_dataset` and comes back as a
:class:`DatasetBundle`: the torch dataset plus what evaluation needs to know about it
(class names, prompt templates, how to map a model's logits onto its label space, and which
metrics it reports). Evaluation code therefore needs no per-dataset branches.

    from wiseft_lib.data import get_dataset, list_datasets
    bundle = get_dataset("mini-photo", split="test")
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch.utils.data import Dataset

LogitProjection = Callable[[torch.Tensor], torch.Tensor]
Loader = Callable[..., "DatasetBundle"]


@dataclass
class DatasetBundle:
    """A dataset and everything evaluation needs to score a model on it.

    ``project_logits`` maps logits over the *training* label space (e.g. ImageNet's 1000
    classes) onto this dataset's label space (e.g. ImageNet-R's 200); ``None`` means the
    spaces are the same. ``metrics`` names entries of :data:`wiseft_lib.core.evaluate.METRICS`;
    ``metadata`` holds per-example side information those metrics need (e.g. WILDS regions).
    """

    name: str
    dataset: Dataset
    classnames: list[str]
    templates: list[str]
    project_logits: Optional[LogitProjection] = None
    metrics: tuple[str, ...] = ("top1",)
    metadata: dict[str, Any] = field(default_factory=dict)
    skipped: int = 0  # unreadable files skipped while indexing

    def __len__(self) -> int:
        return len(self.dataset)


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset's registration: its loader, description, splits and what its loader can subset."""

    name: str
    loader: Loader
    description: str
    splits: tuple[str, ...]
    val_split: Optional[str] = None  # a split held out from the test split, for choosing recipes
    subset_options: frozenset[str] = frozenset()  # loader arguments drawing a subset: "n_test", "n_train", "seed"
    embedded: bool = False  # one of the package's own miniature sets (no data folder needed)


_REGISTRY: dict[str, DatasetEntry] = {}
# Names that are not registered but still datasets (a path is an image folder): each resolver returns
# the dataset's entry, or None when the name is not one of its kind. Registered by those modules.
_RESOLVERS: list[Callable[[str], Optional[DatasetEntry]]] = []
SUBSET_OPTIONS = frozenset({"n_test", "n_train", "seed"})


def register_dataset(name: str, *, description: str, splits: Sequence[str] = ("test",),
                     val_split: Optional[str] = None, subset_options: Sequence[str] = (), embedded: bool = False):
    """Decorator registering ``loader(root, split, transform, **kwargs) -> DatasetBundle``.

    ``val_split`` names a split disjoint from the evaluation (test) split, where recipes may be
    chosen; datasets without one can only be evaluated on their test split. ``subset_options`` are the
    loader's arguments that draw a subset (``n_test`` of an evaluation split, ``n_train`` and ``seed`` of
    the training split); ``embedded`` marks the package's own miniature sets.
    """
    unknown = set(subset_options) - SUBSET_OPTIONS
    if unknown:
        raise ValueError(f"{name}: unknown subset options {sorted(unknown)}; known: {sorted(SUBSET_OPTIONS)}")

    def wrap(loader: Loader) -> Loader:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice")
        if val_split is not None and val_split not in splits:
            raise ValueError(f"{name}: val_split {val_split!r} is not one of its splits {tuple(splits)}")
        _REGISTRY[name] = DatasetEntry(name, loader, description, tuple(splits), val_split, frozenset(subset_options),
                                 embedded)
        return loader

    return wrap


def list_datasets() -> list[str]:
    """Names accepted by :func:`get_dataset`, sorted."""
    return sorted(_REGISTRY)


def describe_dataset(name: str) -> str:
    entry = _lookup(name)
    return f"{entry.name}: {entry.description} (splits: {', '.join(entry.splits)})"


def default_eval_split(name: str) -> str:
    """The split a dataset is evaluated on: ``test`` where it has one, else ``val``."""
    splits = _lookup(name).splits
    return "test" if "test" in splits else ("val" if "val" in splits else splits[0])


EVAL_SPLITS = ("test", "val")


def eval_split(name: str, which: str = "test") -> str:
    """The split of ``name`` to evaluate on: its test split (``which="test"``: what studies report)
    or its held-out validation split (``which="val"``: where recipes and hyperparameters are chosen)."""
    if which not in EVAL_SPLITS:
        raise ValueError(f"eval_split must be 'test' (reported numbers) or 'val' (choosing recipes), got {which!r}")
    if which == "test":
        return default_eval_split(name)
    entry = _lookup(name)
    if entry.val_split is None:
        raise ValueError(
            f"dataset {name!r} has no validation split held out from its test split (splits: "
            f"{', '.join(entry.splits)}), so eval_split='val' cannot be honest there; choose recipes on a "
            f"dataset that has one (the mini sets: 5,000 val and 5,000 test images per shift)"
        )
    return entry.val_split


def has_val_split(name: str) -> bool:
    """Whether ``name`` has a validation split held out from its test split (:func:`eval_split` ``"val"``)."""
    try:
        eval_split(name, "val")
    except ValueError:
        return False
    return True


def register_resolver(resolver: Callable[[str], Optional[DatasetEntry]]) -> None:
    """Let ``resolver(name)`` answer for names that are not registered (e.g. a path: an image folder)."""
    _RESOLVERS.append(resolver)


def _resolved(name: str) -> Optional[DatasetEntry]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    return next((e for e in (r(name) for r in _RESOLVERS) if e is not None), None)


def subset_options(name: str) -> frozenset[str]:
    """The loader arguments of ``name`` that draw a subset (``n_test``, ``n_train``, ``seed``); none for a
    name that is not a dataset (its error comes from :func:`get_dataset`)."""
    entry = _resolved(name)
    return entry.subset_options if entry is not None else frozenset()


def is_embedded(name: str) -> bool:
    """Whether ``name`` is one of the package's own miniature sets."""
    entry = _resolved(name)
    return entry is not None and entry.embedded


def _lookup(name: str) -> DatasetEntry:
    entry = _resolved(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise KeyError(
            f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(list_datasets())}; or give the path of "
            f"an image folder (one sub-folder per class), e.g. /data/my_images or folder:my_images"
        )
    return entry


def get_dataset(
    name: str,
    root: Optional[str] = None,
    split: str = "test",
    transform: Optional[Callable] = None,
    **kwargs: Any,
) -> DatasetBundle:
    """Build the named dataset: a registered name, or your own image folder by path (``/data/my_images`` or
    ``folder:my_images``; layout and splits in :mod:`wiseft_lib.data.folder`).

    ``root`` is the data folder (default: ``$WISEFT_DATA``, then the usual places the
    loader knows); ``transform`` is applied to each PIL image. Extra keyword arguments go
    to the dataset's loader (e.g. ``n_test`` or ``seed`` for the mini shifts).
    """
    entry = _lookup(name)
    if split not in entry.splits:
        raise ValueError(
            f"dataset {name!r} has no split {split!r}; available: {', '.join(entry.splits)}"
        )
    return entry.loader(root=root, split=split, transform=transform, **kwargs)
