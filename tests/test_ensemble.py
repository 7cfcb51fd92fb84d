"""Output-space ensembles: logits and softmax probabilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from wiseft_lib.core.ensemble import ensemble_logits, ensemble_probs


@pytest.fixture()
def logits():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(7, 5, generator=gen) * 4, torch.randn(7, 5, generator=gen) * 4


def test_logit_ensemble_linear_and_exact_endpoints(logits):
    l0, l1 = logits
    assert torch.equal(ensemble_logits(l0, l1, 0), l0)
    assert torch.equal(ensemble_logits(l0, l1, 1.0), l1)
    torch.testing.assert_close(ensemble_logits(l0, l1, 0.3), 0.7 * l0 + 0.3 * l1)


def test_prob_ensemble_returns_log_of_mixed_softmax(logits):
    l0, l1 = logits
    out = ensemble_probs(l0, l1, 0.25)
    mixed = 0.75 * l0.softmax(-1) + 0.25 * l1.softmax(-1)
    torch.testing.assert_close(out.exp(), mixed)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(7))
    torch.testing.assert_close(ensemble_probs(l0, l1, 0.0), l0.log_softmax(-1))
    torch.testing.assert_close(ensemble_probs(l0, l1, 1.0), l1.log_softmax(-1))
    big = ensemble_probs(l0 * 1e4, l1 * 1e4, 0.5)  # stable for extreme logits
    assert torch.isfinite(big).any(-1).all() and not torch.isnan(big).any()


def test_numpy_in_numpy_out(logits):
    l0, l1 = (t.numpy() for t in logits)
    out = ensemble_logits(l0, l1, 0.5)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, 0.5 * l0 + 0.5 * l1, rtol=1e-6)
    assert isinstance(ensemble_probs(l0, l1, 0.5), np.ndarray)


def test_errors(logits):
    l0, l1 = logits
    with pytest.raises(ValueError, match=r"shapes \(7, 5\) and \(7, 4\)"):
        ensemble_logits(l0, l1[:, :4], 0.5)
    with pytest.raises(ValueError, match=r"shapes"):
        ensemble_probs(l0, l1[:3], 0.5)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            ensemble_logits(l0, l1, bad)
        with pytest.raises(ValueError, match="alpha"):
            ensemble_probs(l0, l1, bad)
