"""How much the test sample alone can move a claim's value: which claims a run of this size can decide.

A claim compares accuracies measured on a finite test set (``n`` images per set). Drawing another ``n`` images
would move each accuracy by its binomial standard error, and the difference of two by up to
``sqrt(2 p (1 - p) / n)``. ``noise_pp`` is twice that at the worst case ``p = 0.5`` (unpaired: two models
scored on the same images disagree on few of them, so the real noise of a paired difference is smaller):
an upper bound on the test sample's share, in percentage points. The same images serve every seed, so
averaging seeds does not shrink it. A claim whose value is within ``noise_pp`` of its bar is marked
``within_noise``: at this size the run cannot tell it from the bar, whichever way ``holds`` says.

    from wiseft_lib.analysis.claim_noise import sample_noise_pp, with_test_noise
    sample_noise_pp(1000)   # 4.47: the workshop tier's 1,000 images per set
    sample_noise_pp(5000)   # 2.0:  the mini's 5,000
"""
from __future__ import annotations

import math
import re
from typing import Optional

import pandas as pd

__all__ = ["sample_noise_pp", "bar_threshold", "with_test_noise"]

_BAR = re.compile(r"^\s*(>=|<=|>|<|=)\s*(-?\d+(?:\.\d+)?)\s*$")


def sample_noise_pp(n_images: int) -> float:
    """Twice the worst-case standard error (pp) of a difference of two accuracies, each on ``n_images`` images."""
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    return 200.0 * math.sqrt(0.5 / n_images)


def bar_threshold(bar: object) -> Optional[float]:
    """The number in a claim's bar (``"> 0"``, ``">= 8"``, ``"= 0"``); None for a bar that is not a threshold
    (``"(reported)"``, ``"wins > 2.5"``, empty)."""
    match = _BAR.match(str(bar)) if isinstance(bar, str) else None
    return float(match.group(2)) if match else None


def with_test_noise(claims: pd.DataFrame, n_images: Optional[int]) -> pd.DataFrame:
    """``claims`` (columns ``value_pp``, ``bar_pp``) plus ``noise_pp`` and ``within_noise`` (None where the bar
    is not a threshold, or the value is missing). ``n_images``: the test images behind each accuracy (the
    smallest set's, to be safe); None (unknown) returns ``claims`` unchanged."""
    if n_images is None or claims.empty or not {"value_pp", "bar_pp"} <= set(claims.columns):
        return claims
    noise = round(sample_noise_pp(n_images), 2)
    within = []
    for value, bar in zip(claims["value_pp"], claims["bar_pp"]):
        threshold = bar_threshold(bar)
        judged = threshold is not None and value is not None and not pd.isna(value)
        within.append(bool(abs(float(value) - threshold) <= noise) if judged else None)
    out = claims.copy()
    out["noise_pp"] = [noise if w is not None else None for w in within]
    out["within_noise"] = within
    return out
