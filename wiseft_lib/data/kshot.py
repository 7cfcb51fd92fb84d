"""k-shot training subsets (the paper's low-data experiments: k in {1, 5, 10, 25, 50} per class).

    idx = kshot_indices(labels, k=16, seed=0)          # sorted dataset indices
    small = kshot_bundle(get_dataset("imagenet", split="train"), k=16, seed=0)

The choice depends only on (labels, k, seed): per class, a seeded permutation of that
class's examples (in dataset order) is cut at ``k``. Classes with fewer than ``k`` examples
keep all of them (with a warning naming them). The bundle's metadata records ``kshot_k`` and ``kshot_seed``.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np
from torch.utils.data import Subset

from wiseft_lib.data.common import PathLike, dataset_labels
from wiseft_lib.data.registry import DatasetBundle, get_dataset


def kshot_indices(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``k`` examples per class, chosen by ``seed``."""
    if k < 1:
        raise ValueError(f"k must be a positive number of examples per class, got {k}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    picks, short = [], {}
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < k:
            short[int(c)] = len(members)
        # one generator per (seed, class): a class's pick does not depend on the other classes
        rng = np.random.default_rng([seed, int(c)])
        picks.append(members[rng.permutation(len(members))[:k]])
    if short:
        shown = ", ".join(f"class {c}: {n}" for c, n in list(short.items())[:5]) + (" ..." if len(short) > 5 else "")
        warnings.warn(f"k={k} examples per class, but {len(short)} class(es) have fewer ({shown}); they keep all "
                      f"their examples, so the subset is not {k}-shot for them. Choose k <= {min(short.values())} "
                      f"for a balanced subset.", stacklevel=2)
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


def kshot_bundle(bundle: DatasetBundle, k: int, seed: int) -> DatasetBundle:
    """The k-shot subset of a bundle; per-example metadata arrays are subset alongside."""
    idx = kshot_indices(dataset_labels(bundle.dataset), k, seed)
    n = len(bundle.dataset)
    metadata: dict[str, Any] = {
        key: (np.asarray(v)[idx] if isinstance(v, np.ndarray) and len(v) == n else v)
        for key, v in bundle.metadata.items()
    }
    metadata.update(kshot_k=k, kshot_seed=seed)
    return DatasetBundle(
        name=f"{bundle.name}-{k}shot",
        dataset=Subset(bundle.dataset, idx.tolist()),
        classnames=list(bundle.classnames),
        templates=list(bundle.templates),
        project_logits=bundle.project_logits,
        metrics=bundle.metrics,
        metadata=metadata,
        skipped=bundle.skipped,
    )


def get_kshot_dataset(name: str, k: int, seed: int, root: Optional[PathLike] = None, split: str = "train",
                      transform=None, **kwargs: Any) -> DatasetBundle:
    """``get_dataset(name, root, split, transform)`` cut to ``k`` examples per class."""
    return kshot_bundle(get_dataset(name, root=root, split=split, transform=transform, **kwargs), k, seed)


__all__ = ["get_kshot_dataset", "kshot_bundle", "kshot_indices"]
