"""Effective robustness: the baseline line in logit space through a group of models.

    from wiseft_lib.analysis.effective_robustness import fit_logit_line
    line = fit_logit_line(standard["id_acc"], standard["ood_avg"])   # accuracies in percent
    above = curve["ood_avg"] - line(curve["id_acc"])                  # effective robustness (pp)

Accuracies are percentages everywhere (as in Taori et al. and the paper); they are clipped to
[0.01 %, 99.99 %] before the logit transform. Drawing a line is the report layer's
(:func:`wiseft_lib.report.figures.draw_logit_line`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["logit_percent", "expit_percent", "LogitLine", "fit_logit_line"]

_EPS = 1e-4  # accuracies are clipped to [0.01 %, 99.99 %] before the logit transform


def _frac(percent: Any) -> np.ndarray:
    return np.clip(np.asarray(percent, dtype=float) / 100.0, _EPS, 1.0 - _EPS)


def logit_percent(percent: Any) -> np.ndarray:
    """The logit of accuracies in percent (clipped to [0.01 %, 99.99 %])."""
    p = _frac(percent)
    return np.log(p) - np.log1p(-p)


def expit_percent(z: Any) -> np.ndarray:
    """The inverse of :func:`logit_percent`: logits back to accuracies in percent."""
    return 100.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


class LogitLine(NamedTuple):
    """``logit(y) = slope * logit(x) + intercept`` with x, y accuracies in percent."""

    slope: float
    intercept: float

    def __call__(self, x_percent: Any) -> np.ndarray:
        """Predicted y (percent) at x (percent)."""
        return expit_percent(self.slope * logit_percent(x_percent) + self.intercept)


def fit_logit_line(x: Sequence[float], y: Sequence[float]) -> LogitLine:
    """Least-squares line in logit space through accuracies ``x``, ``y`` (percent)."""
    lx, ly = logit_percent(x), logit_percent(y)
    if lx.shape != ly.shape or lx.ndim != 1:
        raise ValueError(f"x and y must be 1-D and equally long, got shapes {lx.shape} and {ly.shape}")
    if len(lx) < 2 or np.ptp(lx) == 0:
        raise ValueError("fitting a line needs at least two points with different x accuracies")
    slope, intercept = np.polyfit(lx, ly, 1)
    return LogitLine(float(slope), float(intercept))
