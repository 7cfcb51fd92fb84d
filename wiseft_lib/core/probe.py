"""Linear probes: scikit-learn L-BFGS logistic regression on cached features (the CLIP paper's LC).

    from wiseft_lib.core.features import extract_features
    from wiseft_lib.core.probe import fit_logistic_probe
    feats, labels = extract_features(encoder, train_set, cache_dir="cache", cache_key_parts={...})
    probe = fit_logistic_probe(feats, labels)          # C chosen on a held-out part of TRAIN
    head = probe.to_head()                             # a ClassificationHead: interpolate / evaluate it

The regularisation strength C is swept (ascending, each fit warm-started from the previous
solution) on a stratified held-out split of the *training* data, never on test data; the best C
is then refit on all training data, warm-started from its split solution. Features are
L2-normalised before fitting by default, exactly as :class:`ClassificationHead` normalises them,
so ``to_head()`` reproduces ``decision_function`` and can be interpolated with the zero-shot
head (WiSE-FT LC). Classes never seen in training get zero weights and a very low bias.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from wiseft_lib.core.models import ClassificationHead

__all__ = ["DEFAULT_CS", "ProbeResult", "fit_logistic_probe", "held_out_split"]

log = logging.getLogger(__name__)
DEFAULT_CS: np.ndarray = np.logspace(-2, 4, 7)  # suits L2-normalised features (|x| = 1)
UNSEEN_BIAS = -1e4

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]


@dataclass
class ProbeResult:
    """A fitted probe: the sklearn model (refit on all training data at ``best_C``), the
    validation accuracy of every C tried, and how features were normalised for fitting."""

    model: LogisticRegression
    best_C: float
    val_accuracies: dict[float, float]
    normalize: bool
    num_classes: int
    n_train: int  # examples in the final refit (all training data)
    n_val: int  # of which held out while choosing C
    converged: dict[float, bool] = field(default_factory=dict)

    def to_head(self, normalize: Optional[bool] = None) -> ClassificationHead:
        """The probe as a ``ClassificationHead`` over ``num_classes`` classes.

        ``normalize`` defaults to (and must equal) the normalisation used when fitting, so the
        head's logits equal ``model.decision_function`` on the same (normalised) features.
        """
        if normalize is not None and normalize != self.normalize:
            raise ValueError(
                f"the probe was fitted on {'L2-normalised' if self.normalize else 'raw'} features; "
                f"to_head(normalize={normalize}) would not reproduce its predictions. Refit with "
                f"fit_logistic_probe(..., normalize={normalize}) instead."
            )
        coef = np.asarray(self.model.coef_, dtype=np.float64)
        intercept = np.asarray(self.model.intercept_, dtype=np.float64)
        classes = np.asarray(self.model.classes_)
        if coef.shape[0] == 1 and len(classes) == 2:  # binary: sklearn keeps one row for class 1
            coef = np.concatenate([-coef / 2, coef / 2])
            intercept = np.concatenate([-intercept / 2, intercept / 2])
        weight = np.zeros((self.num_classes, coef.shape[1]))
        bias = np.full(self.num_classes, UNSEEN_BIAS)
        weight[classes] = coef
        bias[classes] = intercept
        return ClassificationHead(torch.from_numpy(weight).float(), torch.from_numpy(bias).float(),
                                  normalize=self.normalize)


def _as_numpy(x: ArrayLike, dtype=None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def held_out_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train_idx, val_idx): per class ``floor(n_c * val_fraction)`` held out, but
    always at least one example left for training, so the split's train part sees every class. When
    that holds out nothing (tiny data), each class with two or more examples lends one."""
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    ks = [min(int(len(idx) * val_fraction), len(idx) - 1) for idx in perms]
    if val_fraction > 0 and sum(ks) == 0:  # too few examples for the fraction: one from each class that can lend one
        ks = [1 if len(idx) >= 2 else 0 for idx in perms]
    val = [idx[:k] for idx, k in zip(perms, ks)]
    train = [idx[k:] for idx, k in zip(perms, ks)]
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_logistic_probe(train_features: ArrayLike, train_labels: ArrayLike, *,
                       Cs: Sequence[float] = DEFAULT_CS, val_fraction: float = 0.2, seed: int = 0,
                       max_iter: int = 1000, normalize: bool = True, num_classes: Optional[int] = None,
                       tol: float = 1e-4) -> ProbeResult:
    """Fit an L2 logistic regression (L-BFGS), choosing C on a held-out split of the training data.

    ``Cs`` are tried in ascending order, each warm-started from the last; the best by held-out
    accuracy (ties: the smallest C, i.e. the most regularised) is refit on all training data. With
    a single C no split is made. ``num_classes`` defaults to ``max(label) + 1``.
    """
    X = _as_numpy(train_features, np.float64)
    y = _as_numpy(train_labels).astype(np.int64)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"features must be (N, D) and labels (N,); got {X.shape} and {y.shape}")
    if normalize:
        X = _normalise(X)
    num_classes = int(num_classes if num_classes is not None else y.max() + 1)
    Cs = sorted(float(c) for c in Cs)
    if not Cs:
        raise ValueError("Cs is empty: give at least one regularisation strength")

    def new_model(C: float) -> LogisticRegression:
        return LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, tol=tol, warm_start=True)

    val_acc: dict[float, float] = {}
    converged: dict[float, bool] = {}
    n_val = 0
    best_C, init = Cs[0], None
    if len(Cs) > 1:
        tr, va = held_out_split(y, val_fraction, seed)
        if len(va) == 0:
            raise ValueError(
                f"no held-out examples for choosing C (val_fraction={val_fraction}, "
                f"{len(y)} examples over {len(np.unique(y))} classes: a class needs >= 2 examples to "
                f"lend one to validation). Pass a single C, e.g. Cs=[1.0], or more training data."
            )
        n_val = len(va)
        m = new_model(Cs[0])
        solutions = {}
        for C in Cs:
            m.set_params(C=C)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                m.fit(X[tr], y[tr])
            converged[C] = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            val_acc[C] = float((m.predict(X[va]) == y[va]).mean())
            solutions[C] = (m.coef_.copy(), m.intercept_.copy())
            log.info("probe C=%g: held-out accuracy %.4f", C, val_acc[C])
        best_C = max(Cs, key=lambda c: (val_acc[c], -c))
        init = solutions[best_C]
    final = new_model(best_C)
    if init is not None:  # warm start the refit from the split solution at best_C
        final.coef_, final.intercept_ = init[0].copy(), init[1].copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        final.fit(X, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("L-BFGS did not converge in %d iterations at C=%g; raise max_iter", max_iter, best_C)
    return ProbeResult(model=final, best_C=best_C, val_accuracies=val_acc, normalize=normalize,
                       num_classes=num_classes, n_train=len(y), n_val=n_val, converged=converged)
