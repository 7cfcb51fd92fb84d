"""Complementarity measures on hand-computed cases: diversity, kappa, KL, CKA, override rates, margins."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import cohen_kappa_score

from wiseft_lib.analysis.complementarity import (
    cka_complement,
    cohen_kappa_complement,
    complementarity_table,
    kl_divergence,
    margin_difference,
    margins,
    override_rates,
    prediction_diversity,
)


def onehot(preds, n_classes=3):
    return np.eye(n_classes)[np.asarray(preds)]


# labels and two models' predictions shared by the diversity and kappa tests
Y6 = np.array([0, 1, 2, 0, 1, 2])
PA6 = [0, 1, 0, 1, 2, 2]  # right on 0, 1, 5
PB6 = [0, 2, 2, 1, 0, 1]  # right on 0, 2


def test_prediction_diversity_counts_disagreements_where_one_model_is_right():
    # at least one right: examples 0 (both), 1 (A), 2 (B), 5 (A); 3 and 4 are both wrong and left out
    # predictions differ on 1 (1 vs 2), 2 (0 vs 2), 5 (2 vs 1), not on 0 -> 3 / 4 = 75%
    # (plain disagreement would be 4 / 6: example 4 differs too, but both models are wrong there)
    assert prediction_diversity(onehot(PA6), onehot(PB6), Y6) == pytest.approx(75.0)
    assert prediction_diversity(onehot(PA6), onehot(PA6), Y6) == 0.0  # a model against itself
    # A right on 0, 1; B right on 2, 3: every example has one right model and they always differ
    assert prediction_diversity(onehot([0, 1, 0, 0]), onehot([1, 0, 2, 1]), np.array([0, 1, 2, 1])) == 100.0
    # neither model right anywhere: undefined
    assert math.isnan(prediction_diversity(onehot([1, 1]), onehot([2, 0]), np.array([0, 2])))


def test_cohen_kappa_complement_by_hand_and_against_sklearn():
    # binary: A = 0 0 0 1 1, B = 0 0 1 1 0; agree on 0, 1, 3 -> p_o = 3/5
    # P_A = (3/5, 2/5), P_B = (3/5, 2/5) -> p_e = 9/25 + 4/25 = 13/25
    # kappa = (15/25 - 13/25) / (12/25) = 1/6 -> complement 5/6
    a, b = onehot([0, 0, 0, 1, 1], 2), onehot([0, 0, 1, 1, 0], 2)
    assert cohen_kappa_complement(a, b) == pytest.approx(5 / 6)
    # three classes: p_o = 2/6 (examples 0 and 3), each model predicts every class twice -> p_e = 3 * 1/9 = 1/3,
    # kappa = 0 (agreement at chance level) -> complement 1
    assert cohen_kappa_complement(onehot(PA6), onehot(PB6)) == pytest.approx(1.0)
    assert cohen_kappa_complement(onehot(PA6), onehot(PA6)) == pytest.approx(0.0)
    # one constant model: p_o = 1/2, P_A = (1, 0), P_B = (1/2, 1/2) -> p_e = 1/2, kappa = 0 -> 1
    assert cohen_kappa_complement(onehot([0, 0, 0, 0], 2), onehot([0, 1, 0, 1], 2)) == pytest.approx(1.0)
    # systematic disagreement: A = 0 1 0 1, B = 1 0 1 0 -> p_o = 0, p_e = 1/2, kappa = -1 -> 2
    assert cohen_kappa_complement(onehot([0, 1, 0, 1], 2), onehot([1, 0, 1, 0], 2)) == pytest.approx(2.0)
    # degenerate: both predict class 2 everywhere (kappa 0/0; sklearn gives nan): identical -> 0
    assert cohen_kappa_complement(onehot([2, 2, 2]), onehot([2, 2, 2])) == 0.0
    rng = np.random.default_rng(0)
    la, lb = rng.normal(size=(200, 7)), rng.normal(size=(200, 7))
    la[:100] += 2 * lb[:100]  # correlated half
    expected = 1 - cohen_kappa_score(la.argmax(1), lb.argmax(1))
    assert cohen_kappa_complement(la, lb) == pytest.approx(expected)


def test_kl_divergence_closed_form_stability_and_direction():
    # p = softmax(0, 0) = (1/2, 1/2), q = softmax(0, ln 3) = (1/4, 3/4):
    # KL(p||q) = 1/2 ln(1/2 / 1/4) + 1/2 ln(1/2 / 3/4) = 1/2 ln(4/3)
    p, q = np.array([[0.0, 0.0]]), np.array([[0.0, math.log(3)]])
    assert kl_divergence(p, q) == pytest.approx(0.5 * math.log(4 / 3))
    # the reverse direction: 1/4 ln(1/2) + 3/4 ln(3/2)
    assert kl_divergence(q, p) == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    # mean over examples: one identical row (0) and the row above
    assert kl_divergence(np.vstack([p, p]), np.vstack([p, q])) == pytest.approx(0.25 * math.log(4 / 3))
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20, 5))
    assert kl_divergence(logits, logits) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(logits, logits + 7.0) == pytest.approx(0.0, abs=1e-12)  # softmax ignores a shift
    # huge logits: p = (1, e^-1000), log q = (-1000, 0) -> KL = 1000 (a naive softmax would give nan/inf)
    assert kl_divergence(np.array([[1000.0, 0.0]]), np.array([[0.0, 1000.0]])) == pytest.approx(1000.0)
    other = rng.normal(size=(20, 5))
    log_p, log_q = torch.log_softmax(torch.tensor(logits), 1), torch.log_softmax(torch.tensor(other), 1)
    ref = torch.nn.functional.kl_div(log_q, log_p, reduction="batchmean", log_target=True).item()  # KL(p || q)
    assert kl_divergence(logits, other) == pytest.approx(ref)
    # a class impossible under p costs nothing; possible under p but impossible under q: infinite
    assert kl_divergence(np.array([[0.0, -np.inf]]), np.array([[0.0, 5.0]])) == pytest.approx(
        math.log(1 + math.exp(5)))  # KL((1, 0) || q) = -ln q_0
    assert kl_divergence(np.array([[0.0, 0.0]]), np.array([[0.0, -np.inf]])) == math.inf


def gram_cka(x, y):
    """CKA from centred Gram matrices (the kernel form of Kornblith et al. 2019), as an independent reference."""
    h = np.eye(len(x)) - 1 / len(x)
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_))


def test_cka_complement_invariances_and_hand_case():
    # 1-D: X = (1, 2, 3) -> centred (-1, 0, 1); Y = (1, 0, 0) -> centred (2/3, -1/3, -1/3)
    # Y^T X = -2/3 - 1/3 = -1 -> 1; ||X^T X|| = 2, ||Y^T Y|| = 6/9 -> CKA = 1 / (4/3) = 3/4 -> complement 1/4
    assert cka_complement(np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [0.0], [0.0]])) == pytest.approx(0.25)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8))
    rot, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert cka_complement(x, x) == pytest.approx(0.0, abs=1e-12)
    assert cka_complement(x, 3.5 * x @ rot + 2.0) == pytest.approx(0.0, abs=1e-12)  # rotate, scale, shift
    assert cka_complement(torch.tensor(x, dtype=torch.float32), torch.tensor(x @ rot)) == pytest.approx(0.0, abs=1e-6)
    # independent features: CKA ~ D/N = 8/200 -> complement near 1
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 16))
    assert cka_complement(a, b) > 0.8
    assert cka_complement(a, b) == pytest.approx(1 - gram_cka(a, b))
    partial = np.hstack([a[:, :4], rng.normal(size=(200, 4))])  # half the directions shared
    assert 0.05 < cka_complement(a, partial) < cka_complement(a, b)


def test_cka_subsample_uses_the_same_rows_and_is_seeded():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 6))
    full = cka_complement(x, y)
    # N <= max_samples: all rows, whatever the seed
    assert cka_complement(x, y, max_samples=30, seed=5) == full
    assert cka_complement(x, y, max_samples=1000, seed=9) == full
    sub = cka_complement(x, y, max_samples=10, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(30, size=10, replace=False))
    assert sub == pytest.approx(1 - gram_cka(x[rows], y[rows]))
    assert cka_complement(x, y, max_samples=10, seed=3) == sub  # reproducible
    assert cka_complement(x, y, max_samples=10, seed=4) != sub
    # a rotation stays CKA 1 after subsampling only if both sides keep the same rows
    rot, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert cka_complement(x, x @ rot, max_samples=10, seed=3) == pytest.approx(0.0, abs=1e-12)


def test_override_rates_on_a_crafted_case():
    #            0  1  2  3  4  5  6  7
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    pz = [0, 1, 2, 1, 0, 0, 2, 2]
    pf = [0, 2, 0, 0, 1, 1, 1, 2]
    pm = [0, 1, 0, 0, 1, 2, 2, 0]
    # disagree on 1..6 (6 of 8 = 75%); the mix takes zs's class on 1, 6; ft's on 2, 3, 4; a third class on 5
    # zs right / ft wrong: 1, 2 -> mix right on 1 only (50%); ft right / zs wrong: 3, 4 -> mix right on both (100%)
    r = override_rates(onehot(pz), onehot(pf), onehot(pm), y)
    assert r == {
        "n": 8, "n_disagree": 6, "disagree_pct": 75.0,
        "n_mix_sides_with_zs": 2, "n_mix_sides_with_ft": 3, "n_mix_sides_with_neither": 1,
        "mix_sides_with_zs_pct": pytest.approx(100 / 3), "mix_sides_with_ft_pct": 50.0,
        "mix_sides_with_neither_pct": pytest.approx(100 / 6),
        "n_zs_right_ft_wrong": 2, "mix_correct_when_zs_right_ft_wrong_pct": 50.0,
        "n_ft_right_zs_wrong": 2, "mix_correct_when_ft_right_zs_wrong_pct": 100.0,
    }
    same = override_rates(onehot(pz), onehot(pz), onehot(pm), y)  # no disagreements: rates undefined
    assert same["n_disagree"] == 0 and math.isnan(same["mix_sides_with_zs_pct"])
    assert math.isnan(same["mix_correct_when_ft_right_zs_wrong_pct"])


def test_margins_and_margin_difference():
    la = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [2.0, 2.0, 0.0]])
    lb = np.array([[1.0, 2.0, 0.0], [4.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    y = np.array([0, 0, 1])
    # A: 3 - 2 = 1; 0 - 5 = -5; 2 - 2 = 0 (a tie; argmax takes class 0, so A is wrong there)
    np.testing.assert_allclose(margins(la, y), [1.0, -5.0, 0.0])
    # B: 1 - 2 = -1; 4 - 1 = 3; 3 - 1 = 2
    np.testing.assert_allclose(margins(torch.tensor(lb), torch.tensor(y)), [-1.0, 3.0, 2.0])
    # A right on 0; B right on 1, 2; A - B = (2, -8, -2)
    d = margin_difference(la, lb, y)
    assert d == {
        "mean_margin_a": pytest.approx(-4 / 3), "mean_margin_b": pytest.approx(4 / 3),
        "mean_a_minus_b": pytest.approx(-8 / 3),
        "n_a_right_b_wrong": 1, "mean_a_minus_b_where_a_right_b_wrong": 2.0,
        "n_b_right_a_wrong": 2, "mean_a_minus_b_where_b_right_a_wrong": -5.0,
    }
    assert math.isnan(margin_difference(la, la, y)["mean_a_minus_b_where_a_right_b_wrong"])


def test_complementarity_table_matches_the_single_measures():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 50)
    la, lb = rng.normal(size=(50, 4)) + 2 * np.eye(4)[y], rng.normal(size=(50, 4)) + np.eye(4)[y]
    fa, fb = rng.normal(size=(50, 6)), rng.normal(size=(50, 3))
    table = complementarity_table({"with features": (la, lb, y, fa, fb), "logits only": (la, la, y),
                                   "none features": (la, lb, y, None, None)})
    assert list(table.columns) == ["pair", "n", "acc_a", "acc_b", "prediction_diversity", "cohen_kappa_complement",
                                   "kl_divergence", "cka_complement"]
    row = table.set_index("pair").loc["with features"]
    assert row["n"] == 50
    assert row["acc_a"] == pytest.approx((la.argmax(1) == y).mean() * 100)
    assert row["prediction_diversity"] == pytest.approx(prediction_diversity(la, lb, y))
    assert row["cohen_kappa_complement"] == pytest.approx(cohen_kappa_complement(la, lb))
    assert row["kl_divergence"] == pytest.approx(kl_divergence(la, lb))
    assert row["cka_complement"] == pytest.approx(cka_complement(fa, fb))
    same = table.set_index("pair").loc["logits only"]
    assert same["prediction_diversity"] == 0 and same["kl_divergence"] == pytest.approx(0, abs=1e-12)
    assert math.isnan(same["cka_complement"]) and math.isnan(table.set_index("pair").loc["none features",
                                                                                            "cka_complement"])
    with pytest.raises(ValueError, match="expected \\(logits_a"):
        complementarity_table({"bad": (la, lb)})
    with pytest.raises(ValueError, match="both features or neither"):
        complementarity_table({"bad": (la, lb, y, fa, None)})
    with pytest.raises(ValueError, match="features have 49 rows"):
        complementarity_table({"bad": (la, lb, y, fa[:49], fb[:49])})


def test_torch_inputs_match_numpy():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 5, 40)
    la, lb, lm = (rng.normal(size=(40, 5)) for _ in range(3))
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    assert prediction_diversity(t(la), t(lb), torch.tensor(y)) == prediction_diversity(la, lb, y)
    assert cohen_kappa_complement(t(la), t(lb)) == cohen_kappa_complement(la, lb)
    assert kl_divergence(t(la), t(lb)) == pytest.approx(kl_divergence(la, lb))
    assert override_rates(t(la), t(lb), t(lm), torch.tensor(y)) == override_rates(la, lb, lm, y)
    half = torch.tensor(la).to(torch.bfloat16)  # numpy has no bfloat16: converted on the way in
    assert kl_divergence(half, half) == pytest.approx(0.0, abs=1e-12)
    assert prediction_diversity(la, lb, y.astype(float)) == prediction_diversity(la, lb, y)  # whole-number floats


@pytest.mark.parametrize("call, match", [
    (lambda: prediction_diversity(np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3, int)), "same shape"),
    (lambda: prediction_diversity(np.zeros(3), np.zeros(3), np.zeros(3, int)), "must be 2-D"),
    (lambda: prediction_diversity(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, int)), "empty"),
    (lambda: prediction_diversity(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 1), int)), "labels must be 1-D"),
    (lambda: prediction_diversity(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(4, int)), "labels has 4 entries"),
    (lambda: prediction_diversity(np.zeros((3, 2)), np.zeros((3, 2)), np.array([0, 1, 2])), "lie in \\[0, 2\\)"),
    (lambda: prediction_diversity(np.zeros((2, 2)), np.zeros((2, 2)), np.array([0.5, 1.0])), "integer class"),
    (lambda: cohen_kappa_complement(np.zeros((3, 2)), np.zeros((3, 3))), "same shape"),
    (lambda: cohen_kappa_complement(np.array([["a", "b"]]), np.zeros((1, 2))), "real numbers"),
    (lambda: kl_divergence(np.zeros((2, 2, 2)), np.zeros((2, 2, 2))), "must be 2-D"),
    (lambda: kl_divergence(np.zeros((2, 0)), np.zeros((2, 0))), "0 classes"),
    (lambda: cka_complement(np.zeros((3, 2)), np.zeros((4, 2))), "same examples"),
    (lambda: cka_complement(np.zeros(3), np.zeros(3)), "must be 2-D"),
    (lambda: cka_complement(np.zeros((0, 2)), np.zeros((0, 2))), "empty"),
    (lambda: cka_complement(np.ones((1, 2)), np.ones((1, 2))), "at least 2 examples"),
    (lambda: cka_complement(np.ones((4, 2)), np.arange(8.0).reshape(4, 2)), "features_a is constant"),
    (lambda: cka_complement(np.eye(4), np.eye(4), max_samples=1), "max_samples must be an integer >= 2"),
    (lambda: override_rates(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((2, 2)), np.zeros(3, int)), "logits_mix"),
    (lambda: margins(np.zeros((3, 1)), np.zeros(3, int)), "at least 2 classes"),
    (lambda: margin_difference(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(2, int)), "labels has 2 entries"),
])
def test_bad_input_raises_clear_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
