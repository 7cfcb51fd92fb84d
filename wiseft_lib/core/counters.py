"""What this process computed: images through models and training steps, counted where the work happens.

``make reproduce`` (``python -m wiseft_lib.reproduce --profile``) reads each study's counts from its
``study.json`` and sets them against bare rates measured in the same run (:mod:`wiseft_lib.core.rates`):
the *compute floor* is the time the counted work would take with no overhead at all.

    from wiseft_lib.core import counters
    before = counters.snapshot()
    ...                                   # evaluate, fine-tune, pretrain
    counters.since(before)                # {"eval_images": 60000, "e2e_steps": 120, ...}

Kinds (each an integer; a kind never counted is absent):

- ``eval_images``: images scored by a CLIP classifier, once per alpha (a sweep of 11 alphas over 1,000 images
  counts 11,000); ``eval_images_other``: the same for other models (standard CNNs, timm)
- ``feature_images``: images through an image tower for cached features (linear classifiers)
- ``e2e_steps`` / ``e2e_train_images``: end-to-end fine-tuning steps and the images they trained on
- ``linear_steps``: head-only steps on cached features (cheap)
- ``pretrain_steps`` / ``pretrain_images``: the mini CLIP's contrastive pretraining
- ``standard_train_images``: the standard (non-CLIP) models' training
- ``runs_computed`` / ``scores_added``: run-cache entries made and scores written (0 and 0: all from the cache)
"""
from __future__ import annotations

from collections import Counter

__all__ = ["add", "snapshot", "since"]

_COUNTS: Counter = Counter()


def add(kind: str, n: int = 1) -> None:
    """Count ``n`` more of ``kind``."""
    _COUNTS[kind] += int(n)


def snapshot() -> dict[str, int]:
    """The counts so far."""
    return dict(_COUNTS)


def since(before: dict[str, int]) -> dict[str, int]:
    """What was counted after ``before`` (a :func:`snapshot`), kinds with a zero left out."""
    return {k: v - before.get(k, 0) for k, v in sorted(_COUNTS.items()) if v - before.get(k, 0)}
