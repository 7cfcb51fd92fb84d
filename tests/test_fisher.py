"""Fisher-weighted merging (wiseft_lib.core.fisher): equal Fishers reduce to plain WiSE-FT, unequal ones pull toward
the confident endpoint, compute_fisher's shapes and batch invariance, Fisher files, ResNet counters."""
from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from wiseft_lib.core.fisher import compute_fisher, fisher_interpolate, load_fisher
from wiseft_lib.core.interpolate import interpolate_weights

from helpers import (
    clone_sd,
    resnet_endpoints_states,
    tiny_classifier,
    with_buffers,
)


@pytest.fixture(scope="module")
def endpoints():
    return clone_sd(tiny_classifier(0)), clone_sd(tiny_classifier(1))


@pytest.fixture(scope="module")
def resnet_endpoints():
    """(zero-shot model, theta_0, theta_1): "pre-training" advances the counters to 2, fine-tuning to 5."""
    return resnet_endpoints_states()


def test_fisher_reduces_to_plain_with_equal_fishers(endpoints):
    t0, t1 = with_buffers(endpoints[0]), with_buffers(endpoints[1])
    gen = torch.Generator().manual_seed(0)
    fisher = {k: torch.rand(v.shape, generator=gen) * 10 ** float(i % 7 - 4)
              for i, (k, v) in enumerate(t0.items()) if v.is_floating_point()}
    fisher[next(iter(fisher))].zero_()  # zero Fishers hit the floor on both sides
    for alpha in (0.0, 0.1, 1 / 3, 0.5, 0.7, 1.0):
        plain = interpolate_weights(t0, t1, alpha)
        merged = fisher_interpolate(t0, t1, alpha, fisher, {k: v.clone() for k, v in fisher.items()})
        for k in plain:
            assert torch.equal(merged[k], plain[k]), (alpha, k)
    # keys without Fishers fall back to plain interpolation
    some = dict(list(fisher.items())[:3])
    merged = fisher_interpolate(t0, t1, 0.4, some, some)
    plain = interpolate_weights(t0, t1, 0.4)
    assert all(torch.equal(merged[k], plain[k]) for k in plain)


def test_fisher_weights_pull_toward_the_confident_endpoint():
    t0, t1 = {"w": torch.zeros(3)}, {"w": torch.ones(3)}
    f0, f1 = {"w": torch.tensor([1.0, 1.0, 9.0])}, {"w": torch.tensor([1.0, 9.0, 1.0])}
    out = fisher_interpolate(t0, t1, 0.5, f0, f1)["w"]
    torch.testing.assert_close(out, torch.tensor([0.5, 0.9, 0.1]))
    with pytest.raises(ValueError, match="in fisher_0 but not in fisher_1"):
        fisher_interpolate(t0, t1, 0.5, f0, {})
    with pytest.raises(ValueError, match="shape"):
        fisher_interpolate(t0, t1, 0.5, {"w": torch.ones(2)}, {"w": torch.ones(2)})


def test_compute_fisher_shapes_and_batch_invariance():
    model = tiny_classifier(0)
    before = clone_sd(model)
    x = torch.randn(4, 3, 16, 16)
    loader = [(x[:2], torch.zeros(2)), (x[2:], torch.zeros(2))]
    fisher = compute_fisher(model, loader, target="argmax", progress=False)
    names = {n for n, _ in model.named_parameters()}
    assert set(fisher) == names
    assert all(fisher[n].shape == p.shape and (fisher[n] >= 0).all()
               for n, p in model.named_parameters())
    assert sum(f.sum() for f in fisher.values()) > 0
    # per-example Fisher does not depend on how examples are batched
    regrouped = compute_fisher(model, [(x, None)], target="argmax", progress=False)
    for n in fisher:
        torch.testing.assert_close(fisher[n], regrouped[n], rtol=1e-4, atol=1e-10)
    one = compute_fisher(model, loader, n_batches=1, progress=False)
    assert set(one) == names
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_compute_fisher_reads_dict_batches_and_round_trips_through_a_file(tmp_path):
    model = tiny_classifier(0)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    from_tuples = compute_fisher(model, [(x[:2], torch.zeros(2)), (x[2:], torch.zeros(2))], target="argmax",
                                 progress=False)
    from_dicts = compute_fisher(model, [{"images": x[:2], "labels": [0, 0]}, {"images": x[2:], "labels": [0, 0]}],
                                target="argmax", progress=False)
    assert set(from_dicts) == set(from_tuples)
    for n in from_tuples:
        assert torch.equal(from_dicts[n], from_tuples[n]), n
    path = tmp_path / "f0.safetensors"
    save_file(from_tuples, str(path))
    loaded = load_fisher(path)
    assert set(loaded) == set(from_tuples) and all(torch.equal(loaded[n], from_tuples[n]) for n in loaded)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_fisher(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="no examples"):
        compute_fisher(model, [], progress=False)


def test_fisher_on_resnet_endpoints_accepts_differing_counters(resnet_endpoints):
    _, t0, t1 = resnet_endpoints
    gen = torch.Generator().manual_seed(0)
    fisher = {k: torch.rand(v.shape, generator=gen) for k, v in t0.items() if v.is_floating_point()}
    for alpha in (0.0, 0.3, 0.5, 1.0):
        plain = interpolate_weights(t0, t1, alpha)
        merged = fisher_interpolate(t0, t1, alpha, fisher, {k: v.clone() for k, v in fisher.items()})
        assert all(torch.equal(merged[k], plain[k]) for k in plain), alpha


@pytest.mark.parametrize("name", ["image_encoder.pos_ids", "image_encoder.bn1.num_batches_tracked_total"])
def test_fisher_on_resnet_differing_non_counter_integer_buffer_still_raises(resnet_endpoints, name):
    _, t0, t1 = resnet_endpoints
    t0 = {**t0, name: torch.arange(4)}
    t1 = {**t1, name: torch.arange(4) + 1}
    pattern = rf"non-floating tensor {re.escape(repr(name))}.*must be equal"
    with pytest.raises(ValueError, match=pattern):
        fisher_interpolate(t0, t1, 0.5, {}, {})
