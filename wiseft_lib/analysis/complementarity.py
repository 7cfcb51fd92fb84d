"""How complementary two classifiers are, from logits and features already computed (Figure 5, Figures 27-30).

WiSE-FT works best when the zero-shot and fine-tuned models make different mistakes. This module measures that
on cached outputs, without a forward pass: four diversity measures of the paper's appendix (prediction diversity,
Cohen's kappa complement, KL divergence, CKA complement), how a mixed model (e.g. WiSE-FT at alpha=0.5) resolves
the disagreements of its two ends, and the margins of both models. Inputs are numpy arrays or torch tensors
(logits ``[N, C]``, labels ``[N]``, features ``[N, D]``); outputs are floats, small dicts or a DataFrame.
Percentages are in [0, 100]; an undefined percentage (an empty denominator) is NaN.

    import numpy as np
    from wiseft_lib.analysis.complementarity import complementarity_table, override_rates, prediction_diversity

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    logits_zs = rng.normal(size=(500, 10)) + 2 * np.eye(10)[labels]
    logits_ft = rng.normal(size=(500, 10)) + 3 * np.eye(10)[labels]
    print(prediction_diversity(logits_zs, logits_ft, labels))  # percent
    print(override_rates(logits_zs, logits_ft, (logits_zs + logits_ft) / 2, labels))
    feats_zs, feats_ft = rng.normal(size=(500, 32)), rng.normal(size=(500, 32))
    print(complementarity_table({"zs vs ft": (logits_zs, logits_ft, labels, feats_zs, feats_ft)}))
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from scipy.special import log_softmax

__all__ = [
    "prediction_diversity",
    "cohen_kappa_complement",
    "kl_divergence",
    "cka_complement",
    "override_rates",
    "margins",
    "margin_difference",
    "complementarity_table",
]

Array = Union[np.ndarray, torch.Tensor]


# ---------------------------------------------------------------------------------------------- input checks


def _to_numpy(x: Array, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.to(torch.float64)  # also covers float16 / bfloat16, which numpy cannot take directly
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as err:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to an array: {err}") from err


def _logits(x: Array, name: str) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, C] (examples x classes), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 examples)")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 classes")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _features(x: Array, name: str) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D] (examples x dimensions), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _labels(y: Array, n: int, n_classes: int) -> np.ndarray:
    arr = _to_numpy(y, "labels")
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D [N], got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(f"labels has {len(arr)} entries but the logits have {n} examples")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
            raise ValueError(f"labels must be integer class indices, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}) (the logits' classes), "
                         f"got values in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64, copy=False)


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape [N, C], got {a.shape} and {b.shape}")


def _pct(num: int, den: int) -> float:
    return float(100.0 * num / den) if den else float("nan")


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


# -------------------------------------------------------------------------------------- diversity measures


def prediction_diversity(logits_a: Array, logits_b: Array, labels: Array) -> float:
    """Percent of examples on which the two models' top-1 predictions differ, among those where at least one is right.

    The prediction-diversity measure the WiSE-FT appendix takes from Gontijo-Lopes et al. 2022 ("No one
    representation to rule them all"). Implemented from that description: the paper's exact wording could not
    be retrieved to confirm it. Examples both models get wrong are left out (they cannot be fixed by combining
    the two). NaN when neither model is right on any example.
    """
    a, b = _logits(logits_a, "logits_a"), _logits(logits_b, "logits_b")
    _same_shape(a, b, "logits_a", "logits_b")
    y = _labels(labels, *a.shape)
    pa, pb = a.argmax(1), b.argmax(1)
    some_right = (pa == y) | (pb == y)
    return _pct(int((pa != pb)[some_right].sum()), int(some_right.sum()))


def cohen_kappa_complement(logits_a: Array, logits_b: Array) -> float:
    """``1 - kappa``: Cohen's kappa between the two models' top-1 predictions (agreement corrected for chance).

    ``kappa = (p_o - p_e) / (1 - p_e)`` with ``p_o`` the fraction of examples where the predictions agree and
    ``p_e = sum_k P_a(k) P_b(k)`` the agreement expected from each model's predicted-class frequencies
    (the same as ``sklearn.metrics.cohen_kappa_score``). 0 for identical predictions, 1 for chance-level
    agreement, up to 2 for systematic disagreement. When both models predict one and the same class everywhere
    (``p_e = 1``, kappa undefined) the predictions are identical and the result is 0.
    """
    a, b = _logits(logits_a, "logits_a"), _logits(logits_b, "logits_b")
    _same_shape(a, b, "logits_a", "logits_b")
    pa, pb = a.argmax(1), b.argmax(1)
    n_classes = a.shape[1]
    p_o = float((pa == pb).mean())
    freq_a = np.bincount(pa, minlength=n_classes) / len(pa)
    freq_b = np.bincount(pb, minlength=n_classes) / len(pb)
    p_e = float(freq_a @ freq_b)
    if p_e >= 1.0 - 1e-12:  # one shared constant prediction: identical predictions
        return 0.0
    return float(1.0 - (p_o - p_e) / (1.0 - p_e))


def kl_divergence(logits_a: Array, logits_b: Array) -> float:
    """Mean over examples of ``KL(softmax(a) || softmax(b))`` in nats, from log-softmax (no overflow).

    Classes with zero probability under ``a`` contribute nothing; a class possible under ``a`` but impossible
    under ``b`` (a ``-inf`` logit in ``b`` only) makes the divergence infinite.
    """
    a, b = _logits(logits_a, "logits_a"), _logits(logits_b, "logits_b")
    _same_shape(a, b, "logits_a", "logits_b")
    log_p, log_q = log_softmax(a, axis=1), log_softmax(b, axis=1)
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (log_p - log_q), 0.0)
    return float(terms.sum(axis=1).mean())


def _linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    norm_x = np.linalg.norm(x.T @ x)  # Frobenius
    norm_y = np.linalg.norm(y.T @ y)
    if norm_x == 0 or norm_y == 0:
        which = "features_a" if norm_x == 0 else "features_b"
        raise ValueError(f"{which} is constant across the examples used; CKA is undefined")
    return float(np.linalg.norm(y.T @ x) ** 2 / (norm_x * norm_y))


def cka_complement(features_a: Array, features_b: Array, max_samples: int = 10_000, seed: int = 0) -> float:
    """``1 - CKA``: linear centred kernel alignment (Kornblith et al. 2019) between two representations.

    With column-centred ``X`` and ``Y`` (same examples, any widths),
    ``CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``, in float64. CKA is invariant to orthogonal
    transforms and isotropic scaling of either representation, so the complement is 0 for such pairs.
    When there are more than ``max_samples`` examples, the same ``max_samples`` rows of both are drawn at
    random (``seed``) without replacement.
    """
    x, y = _features(features_a, "features_a"), _features(features_b, "features_b")
    if len(x) != len(y):
        raise ValueError(f"features_a and features_b must describe the same examples, got {len(x)} and {len(y)} rows")
    if isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer)) or max_samples < 2:
        raise ValueError(f"max_samples must be an integer >= 2, got {max_samples!r}")
    if len(x) < 2:
        raise ValueError(f"CKA needs at least 2 examples, got {len(x)}")
    if len(x) > max_samples:
        rows = np.sort(np.random.default_rng(seed).choice(len(x), size=int(max_samples), replace=False))
        x, y = x[rows], y[rows]
    return 1.0 - _linear_cka(x, y)


# ------------------------------------------------------------------------------- mixed model, margins, table


def override_rates(logits_zs: Array, logits_ft: Array, logits_mix: Array, labels: Array) -> dict[str, float]:
    """How a mixed model resolves the disagreements of the zero-shot and fine-tuned models.

    Keys (``*_pct`` in percent, ``n_*`` counts):

    - ``n``, ``n_disagree``, ``disagree_pct``: examples, and those where zero-shot and fine-tuned predict
      different classes;
    - ``n_mix_sides_with_zs`` / ``mix_sides_with_zs_pct``, the same for ``ft`` and for ``neither``: among the
      disagreements, how often the mix predicts the zero-shot class, the fine-tuned class, or a third one
      (the three percentages sum to 100);
    - ``n_zs_right_ft_wrong`` / ``mix_correct_when_zs_right_ft_wrong_pct``: examples only zero-shot gets right,
      and how often the mix is right on them; ``n_ft_right_zs_wrong`` /
      ``mix_correct_when_ft_right_zs_wrong_pct``: the reverse.
    """
    zs, ft, mix = _logits(logits_zs, "logits_zs"), _logits(logits_ft, "logits_ft"), _logits(logits_mix, "logits_mix")
    _same_shape(zs, ft, "logits_zs", "logits_ft")
    _same_shape(zs, mix, "logits_zs", "logits_mix")
    y = _labels(labels, *zs.shape)
    pz, pf, pm = zs.argmax(1), ft.argmax(1), mix.argmax(1)
    disagree = pz != pf
    n_dis = int(disagree.sum())
    n_zs = int((disagree & (pm == pz)).sum())
    n_ft = int((disagree & (pm == pf)).sum())
    n_neither = n_dis - n_zs - n_ft
    zs_only = (pz == y) & (pf != y)
    ft_only = (pf == y) & (pz != y)
    return {
        "n": len(y),
        "n_disagree": n_dis,
        "disagree_pct": _pct(n_dis, len(y)),
        "n_mix_sides_with_zs": n_zs,
        "n_mix_sides_with_ft": n_ft,
        "n_mix_sides_with_neither": n_neither,
        "mix_sides_with_zs_pct": _pct(n_zs, n_dis),
        "mix_sides_with_ft_pct": _pct(n_ft, n_dis),
        "mix_sides_with_neither_pct": _pct(n_neither, n_dis),
        "n_zs_right_ft_wrong": int(zs_only.sum()),
        "mix_correct_when_zs_right_ft_wrong_pct": _pct(int((pm[zs_only] == y[zs_only]).sum()), int(zs_only.sum())),
        "n_ft_right_zs_wrong": int(ft_only.sum()),
        "mix_correct_when_ft_right_zs_wrong_pct": _pct(int((pm[ft_only] == y[ft_only]).sum()), int(ft_only.sum())),
    }


def margins(logits: Array, labels: Array) -> np.ndarray:
    """Per-example margin: the true class's logit minus the largest logit of any other class (float64 array).

    Positive when the example is classified correctly with no tie; needs at least two classes.
    """
    x = _logits(logits, "logits")
    if x.shape[1] < 2:
        raise ValueError(f"margins need at least 2 classes, got logits of shape {x.shape}")
    y = _labels(labels, *x.shape)
    rows = np.arange(len(y))
    true = x[rows, y].copy()
    others = x.copy()
    others[rows, y] = -np.inf
    return true - others.max(axis=1)


def margin_difference(logits_a: Array, logits_b: Array, labels: Array) -> dict[str, float]:
    """Margins of model A against model B (see :func:`margins`); "right" means top-1 correct.

    Keys: ``mean_margin_a``, ``mean_margin_b``, ``mean_a_minus_b`` (all examples);
    ``n_a_right_b_wrong`` and ``mean_a_minus_b_where_a_right_b_wrong``; ``n_b_right_a_wrong`` and
    ``mean_a_minus_b_where_b_right_a_wrong`` (always A minus B, so usually negative there). NaN on no examples.
    """
    a, b = _logits(logits_a, "logits_a"), _logits(logits_b, "logits_b")
    _same_shape(a, b, "logits_a", "logits_b")
    y = _labels(labels, *a.shape)
    ma, mb = margins(a, y), margins(b, y)
    ra, rb = a.argmax(1) == y, b.argmax(1) == y
    diff = ma - mb
    return {
        "mean_margin_a": _mean(ma),
        "mean_margin_b": _mean(mb),
        "mean_a_minus_b": _mean(diff),
        "n_a_right_b_wrong": int((ra & ~rb).sum()),
        "mean_a_minus_b_where_a_right_b_wrong": _mean(diff[ra & ~rb]),
        "n_b_right_a_wrong": int((rb & ~ra).sum()),
        "mean_a_minus_b_where_b_right_a_wrong": _mean(diff[rb & ~ra]),
    }


def complementarity_table(pairs: Mapping[str, Sequence[Optional[Array]]], max_samples: int = 10_000,
                          seed: int = 0) -> pd.DataFrame:
    """One row per model pair with its accuracies and the four diversity measures (Figures 27-30).

    ``pairs`` maps a name to ``(logits_a, logits_b, labels, features_a, features_b)``; the features may be
    ``None`` (or the tuple cut to three entries), which leaves ``cka_complement`` NaN. Columns: ``pair``, ``n``,
    ``acc_a``, ``acc_b``, ``prediction_diversity``, ``cohen_kappa_complement``, ``kl_divergence``,
    ``cka_complement``.
    """
    rows = []
    for name, entry in pairs.items():
        if len(entry) not in (3, 5):
            raise ValueError(f"pair {name!r}: expected (logits_a, logits_b, labels[, features_a, features_b]), "
                             f"got {len(entry)} entries")
        logits_a, logits_b, labels = entry[:3]
        feats = tuple(entry[3:]) if len(entry) == 5 else (None, None)
        if (feats[0] is None) != (feats[1] is None):
            raise ValueError(f"pair {name!r}: give both features or neither")
        a, b = _logits(logits_a, "logits_a"), _logits(logits_b, "logits_b")
        _same_shape(a, b, "logits_a", "logits_b")
        y = _labels(labels, *a.shape)
        cka = float("nan")
        if feats[0] is not None:
            fa = _features(feats[0], "features_a")
            if len(fa) != len(y):
                raise ValueError(f"pair {name!r}: features have {len(fa)} rows but there are {len(y)} labels")
            cka = cka_complement(fa, feats[1], max_samples=max_samples, seed=seed)
        rows.append({
            "pair": name,
            "n": len(y),
            "acc_a": float((a.argmax(1) == y).mean() * 100.0),
            "acc_b": float((b.argmax(1) == y).mean() * 100.0),
            "prediction_diversity": prediction_diversity(a, b, y),
            "cohen_kappa_complement": cohen_kappa_complement(a, b),
            "kl_divergence": kl_divergence(a, b),
            "cka_complement": cka,
        })
    columns = ["pair", "n", "acc_a", "acc_b", "prediction_diversity", "cohen_kappa_complement", "kl_divergence",
               "cka_complement"]
    return pd.DataFrame(rows, columns=columns)
