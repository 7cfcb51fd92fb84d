"""Evaluation metrics, by name. Every metric maps (logits, labels, metadata) to a percentage.

``logits`` are already projected onto the dataset's label space (see
:class:`wiseft_lib.data.DatasetBundle`); ``metadata`` holds per-example arrays the metric
needs (e.g. WILDS regions), aligned with ``labels``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sklearn.metrics import f1_score

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


@register_metric("macro_f1")
def macro_f1(logits: np.ndarray, labels: np.ndarray, metadata: dict[str, Any]) -> float:
    """Macro-averaged F1 in percent over the classes present in ``labels`` (WILDS iWildCam)."""

    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("macro-F1 of an empty dataset is undefined")
    preds = np.asarray(logits).argmax(axis=1)
    return float(f1_score(labels, preds, average="macro", labels=np.unique(labels), zero_division=0) * 100.0)


def region_accuracies(logits: np.ndarray, labels: np.ndarray, regions: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy (percent) per region name, for regions with at least one example."""
    correct = np.asarray(logits).argmax(axis=1) == np.asarray(labels)
    regions = np.asarray(regions).astype(str)
    return {str(r): float(correct[regions == r].mean() * 100.0) for r in np.unique(regions)}


@register_metric("worst_region_acc")
def worst_region_acc(logits: np.ndarray, labels: np.ndarray, metadata: dict[str, Any]) -> float:
    """Lowest per-region top-1 accuracy in percent (WILDS FMoW), ignoring the "Other" region.

    ``metadata["region"]`` holds each example's region name (Africa, Americas, Asia, Europe,
    Oceania, Other); regions without examples do not count.
    """
    if "region" not in metadata:
        raise KeyError("worst_region_acc needs metadata['region'] (one region name per example)")
    accs = {r: a for r, a in region_accuracies(logits, labels, metadata["region"]).items() if r != "Other"}
    if not accs:
        raise ValueError("worst_region_acc: no examples outside the 'Other' region")
    return min(accs.values())


def pm_k(logits: np.ndarray, labels: np.ndarray, metadata: dict[str, Any], k: int) -> float:
    """Percent of anchor frames classified correctly together with every neighbour within ``k`` frames.

    Video robustness (ImageNet-Vid-Robust, YTBB-Robust). ``metadata``:
    ``pm_anchor`` [N] - dataset index of the anchor of each example's group (anchors point
    to themselves); ``pm_offset`` [N] - frame distance to the anchor (0 for the anchor);
    optional ``correct_labels`` [N, C] bool - every label accepted for an example (frames
    can carry several), else ``labels``. ``pm0`` is plain anchor accuracy.
    """
    anchor = np.asarray(metadata["pm_anchor"], dtype=np.int64)
    offset = np.abs(np.asarray(metadata["pm_offset"], dtype=np.int64))
    preds = np.asarray(logits).argmax(axis=1)
    if "correct_labels" in metadata:
        ok = np.asarray(metadata["correct_labels"], dtype=bool)[np.arange(len(preds)), preds]
    else:
        ok = preds == np.asarray(labels)
    is_anchor = (anchor == np.arange(len(anchor))) & (offset == 0)
    if not is_anchor.any():
        raise ValueError("pm-k: no anchor frames in metadata['pm_anchor']")
    in_window = (offset <= k) & (anchor >= 0)
    wrong_in_group = np.zeros(len(anchor), dtype=bool)
    np.logical_or.at(wrong_in_group, anchor[in_window], ~ok[in_window])
    return float((~wrong_in_group[is_anchor]).mean() * 100.0)


@register_metric("pm0")
def pm0(logits: np.ndarray, labels: np.ndarray, metadata: dict[str, Any]) -> float:
    """Anchor-frame accuracy in percent (pm-0), see :func:`pm_k`."""
    return pm_k(logits, labels, metadata, 0)


@register_metric("pm10")
def pm10(logits: np.ndarray, labels: np.ndarray, metadata: dict[str, Any]) -> float:
    """Percent of anchors correct together with all neighbours within 10 frames (pm-10)."""
    return pm_k(logits, labels, metadata, 10)
