"""Evaluation metrics, by name. Every metric maps (logits, labels, metadata) to a percentage.

``logits`` are already projected onto the dataset's label space (see
:class:`wiseft_lib.data.DatasetBundle`); ``metadata`` holds per-example arrays the metric
needs (e.g. WILDS regions), aligned with ``labels``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray, dict[str, Any]], float]
METRICS: dict[str, Metric] = {}


def register_metric(name: str) -> Callable[[Metric], Metric]:
    def wrap(fn: Metric) -> Metric:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = fn
        return fn

    return wrap


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
    return METRICS[name]


@register_metric("top1")
def top1(logits: np.ndarray, labels: np.ndarray, metadata: dict[str, Any]) -> float:
    """Top-1 accuracy in percent."""
    if len(labels) == 0:
        raise ValueError("top1 accuracy of an empty dataset is undefined")
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean() * 100.0)
