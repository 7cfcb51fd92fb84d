"""WiSE-FT weight interpolation: exact endpoints, linearity, dtypes, errors, in-place sweeps (Fisher merging:
test_fisher.py)."""
from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn

from wiseft_lib.core.interpolate import (
    bernoulli_interpolate,
    check_compatible,
    interpolate_in_place,
    interpolate_weights,
    iter_alphas,
    sweep_alphas,
)

from helpers import (
    clone_sd,
    resnet_endpoints_states,
    tiny_classifier,
    with_buffers,
)


@pytest.fixture(scope="module")
def endpoints():
    return clone_sd(tiny_classifier(0)), clone_sd(tiny_classifier(1))


def test_endpoints_are_bit_exact(endpoints):
    t0, t1 = endpoints
    # values where lerp(a, b, 1.0) is not b when computed naively: huge/tiny mixes, inf
    t0 = {**t0, "odd": torch.tensor([1e30, -3.3e-7, 0.1, float("inf")])}
    t1 = {**t1, "odd": torch.tensor([-2e-30, 7.7e12, 0.3, 1.0])}
    for alpha, ref in ((0.0, t0), (1.0, t1), (0, t0), (1, t1)):
        out = interpolate_weights(t0, t1, alpha)
        assert list(out) == list(ref)
        for k in ref:
            assert out[k].dtype == ref[k].dtype
            assert torch.equal(out[k].view(torch.uint8), ref[k].view(torch.uint8)), k
            assert out[k].data_ptr() != ref[k].data_ptr()  # copies, not aliases


@pytest.mark.parametrize("alpha", [0.1, 0.25, 0.5, 0.75, 0.9])
def test_linear_at_several_alphas(endpoints, alpha):
    t0, t1 = endpoints
    out = interpolate_weights(t0, t1, alpha)
    for k in t0:
        expected = (1 - alpha) * t0[k].double() + alpha * t1[k].double()
        torch.testing.assert_close(out[k].double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_preserved_and_computed_in_fp32(endpoints, dtype):
    t0 = {k: v.to(dtype) for k, v in endpoints[0].items()}
    t1 = {k: v.to(dtype) for k, v in endpoints[1].items()}
    out = interpolate_weights(t0, t1, 0.3)
    for k in t0:
        assert out[k].dtype == dtype
        expected = torch.lerp(t0[k].float(), t1[k].float(), 0.3).to(dtype)
        if dtype == torch.float64:
            expected = torch.lerp(t0[k], t1[k], 0.3)
        assert torch.equal(out[k], expected), k
    for a, ref in ((0.0, t0), (1.0, t1)):
        o = interpolate_weights(t0, t1, a)
        assert all(torch.equal(o[k], ref[k]) and o[k].dtype == dtype for k in ref)


def test_non_float_buffers_copied_from_theta_0(endpoints):
    t0, t1 = with_buffers(endpoints[0]), with_buffers(endpoints[1])
    out = interpolate_weights(t0, t1, 0.5)
    for k in ("bn.num_batches_tracked", "pos_ids", "mask"):
        assert out[k].dtype == t0[k].dtype and torch.equal(out[k], t0[k])
    t1["pos_ids"] = torch.arange(4) + 1
    with pytest.raises(ValueError, match=r"non-floating tensor 'pos_ids'.*must be equal"):
        interpolate_weights(t0, t1, 0.5)


def test_mismatched_keys_and_shapes_name_the_first(endpoints):
    t0, t1 = endpoints
    keys = list(t0)
    bad = dict(t1)
    bad[keys[3]] = torch.zeros(2, 2)
    bad[keys[7]] = torch.zeros(3)
    with pytest.raises(ValueError) as err:
        interpolate_weights(t0, bad, 0.5)
    msg = str(err.value)
    assert repr(keys[3]) in msg and repr(keys[7]) not in msg
    assert str(tuple(t0[keys[3]].shape)) in msg and "(2, 2)" in msg

    missing = {k: v for k, v in t1.items() if k != keys[5]}
    with pytest.raises(ValueError, match=rf"{keys[5]!r}.*present in theta_0.*missing from theta_1"):
        interpolate_weights(t0, missing, 0.5)
    extra = {**t1, "zz.extra": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"'zz.extra'.*present in theta_1.*missing from theta_0"):
        interpolate_weights(t0, extra, 0.5)
    half = {k: v.half() for k, v in t1.items()}
    with pytest.raises(ValueError, match=rf"{keys[0]!r}.*float32.*float16"):
        interpolate_weights(t0, half, 0.5)


@pytest.mark.parametrize("alpha", [-0.01, 1.0001, float("nan"), float("inf"), "half", None])
def test_alpha_out_of_range(endpoints, alpha):
    with pytest.raises(ValueError, match="alpha"):
        interpolate_weights(*endpoints, alpha)


def test_in_place_matches_out_of_place_without_new_models(endpoints):
    t0, t1 = endpoints
    model = tiny_classifier(2)
    ptrs = {k: v.data_ptr() for k, v in model.state_dict().items()}
    params = [id(p) for p in model.parameters()]
    seen = []

    def fn(m: nn.Module) -> dict[str, torch.Tensor]:
        seen.append(id(m))
        assert {k: v.data_ptr() for k, v in m.state_dict().items()} == ptrs
        return clone_sd(m)

    alphas = [0.0, 0.05, 0.3, 0.5, 0.95, 1.0]
    got = sweep_alphas(model, t0, t1, alphas, fn, progress=False)
    assert list(got) == alphas
    assert set(seen) == {id(model)} and [id(p) for p in model.parameters()] == params
    for a in alphas:
        ref = interpolate_weights(t0, t1, a)
        for k in ref:
            assert torch.equal(got[a][k], ref[k]), (a, k)
    # the endpoints are untouched
    assert all(torch.equal(t0[k], clone_sd(tiny_classifier(0))[k]) for k in t0)


def test_in_place_fp32_and_bf16_and_validation(endpoints):
    t0, t1 = endpoints
    model = tiny_classifier(3)
    interpolate_in_place(model, t0, t1, 0.25)
    ref = interpolate_weights(t0, t1, 0.25)
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())
    h0 = {k: v.bfloat16() for k, v in t0.items()}
    h1 = {k: v.bfloat16() for k, v in t1.items()}
    half = tiny_classifier(3).bfloat16()
    interpolate_in_place(half, h0, h1, 0.25)
    ref = interpolate_weights(h0, h1, 0.25)
    assert all(v.dtype == torch.bfloat16 and torch.equal(v, ref[k]) for k, v in half.state_dict().items())

    live = model.state_dict()  # shares memory with the model: must be refused
    with pytest.raises(ValueError, match="shares memory with the model"):
        interpolate_in_place(model, live, t1, 0.5)
    bad = dict(t1)
    key = list(bad)[2]
    bad[key] = torch.zeros(1)
    with pytest.raises(ValueError, match=repr(key)):
        iter_alphas(model, t0, bad, [0.5], progress=False)  # validated when called
    with pytest.raises(ValueError, match="alpha"):
        iter_alphas(model, t0, t1, [0.5, 2.0], progress=False)
    other = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="missing from the model|the endpoints lack"):
        interpolate_in_place(other, t0, t1, 0.5)


def test_bernoulli_interpolation_takes_whole_tensors_and_returns_the_endpoints_at_0_and_1():
    from wiseft_lib.core.interpolate import bernoulli_interpolate

    theta_0 = {f"w{i}": torch.zeros(3) for i in range(200)}
    theta_1 = {f"w{i}": torch.ones(3) for i in range(200)}
    for alpha, expected in ((0.0, 0.0), (1.0, 1.0)):
        out = bernoulli_interpolate(theta_0, theta_1, alpha)
        assert all(torch.equal(t, torch.full((3,), expected)) for t in out.values())
    mixed = bernoulli_interpolate(theta_0, theta_1, 0.3, seed=1)
    taken = [t[0].item() for t in mixed.values()]
    assert all(t.unique().numel() == 1 for t in mixed.values()), "each tensor comes whole from one endpoint"
    assert 0.2 < sum(taken) / len(taken) < 0.4  # about alpha of the tensors from theta_1
    assert mixed.keys() == theta_0.keys() and bernoulli_interpolate(theta_0, theta_1, 0.3, seed=1).keys() == mixed.keys()
    assert [t[0].item() for t in bernoulli_interpolate(theta_0, theta_1, 0.3, seed=1).values()] == taken  # seeded
    assert mixed["w0"].data_ptr() != theta_0["w0"].data_ptr()  # new tensors


# ResNet CLIPs (tiny_resnet_classifier) have BatchNorm buffers: float running statistics, interpolated like weights,
# and an int64 num_batches_tracked counter that fine-tuning advances.
@pytest.fixture(scope="module")
def resnet_endpoints():
    """(zero-shot model, theta_0, theta_1): "pre-training" advances the counters to 2, fine-tuning to 5."""
    return resnet_endpoints_states()


def test_resnet_batchnorm_buffers_interpolate(resnet_endpoints):
    _, t0, t1 = resnet_endpoints
    counters = [k for k in t0 if k.endswith("num_batches_tracked")]
    stats = [k for k in t0 if k.endswith(("running_mean", "running_var"))]
    assert counters and len(stats) == 2 * len(counters)
    assert all(t0[k].dtype == torch.int64 and t0[k].item() == 2 and t1[k].item() == 5 for k in counters)
    assert all(not torch.equal(t0[k], t1[k]) for k in stats)
    check_compatible(t0, t1)  # counters may differ
    for alpha, ref in ((0.0, t0), (1.0, t1)):
        out = interpolate_weights(t0, t1, alpha)
        assert all(out[k].dtype == ref[k].dtype and torch.equal(out[k], ref[k]) for k in ref)
    half = interpolate_weights(t0, t1, 0.5)
    for k in stats:
        torch.testing.assert_close(half[k], (t0[k] + t1[k]) / 2)
    for alpha, ref in ((0.3, t0), (0.49, t0), (0.5, t1), (0.7, t1)):
        out = interpolate_weights(t0, t1, alpha)
        for k in counters:
            assert out[k].dtype == torch.int64 and torch.equal(out[k], ref[k]), (alpha, k)
            assert out[k].data_ptr() != ref[k].data_ptr()


def test_resnet_other_paths_accept_differing_counters(resnet_endpoints):
    """Bernoulli merging (Fisher merging: test_fisher.py) accepts the differing counters."""
    _, t0, t1 = resnet_endpoints
    counters = [k for k in t0 if k.endswith("num_batches_tracked")]
    for alpha in (0.0, 0.3, 0.5, 1.0):
        plain = interpolate_weights(t0, t1, alpha)
        by_element = bernoulli_interpolate(t0, t1, alpha, seed=3, per="element")
        by_tensor = bernoulli_interpolate(t0, t1, alpha, seed=3)
        for k in counters:
            assert torch.equal(by_element[k], plain[k])
            assert torch.equal(by_tensor[k], t0[k]) or torch.equal(by_tensor[k], t1[k])
        if alpha in (0.0, 1.0):
            ref = t0 if alpha == 0.0 else t1
            assert all(torch.equal(by_tensor[k], ref[k]) and torch.equal(by_element[k], ref[k]) for k in ref)


def test_resnet_in_place_sweep_matches_loading_interpolated_weights(resnet_endpoints):
    zs, t0, t1 = resnet_endpoints
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    counter = "image_encoder.bn1.num_batches_tracked"

    def logits(m: nn.Module) -> tuple[torch.Tensor, int]:
        assert not m.training
        with torch.no_grad():
            return m(x), int(m.state_dict()[counter])

    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    work = copy.deepcopy(zs)
    got = sweep_alphas(work, t0, t1, alphas, logits, progress=False)
    for a in alphas:
        fresh = copy.deepcopy(zs)
        fresh.load_state_dict(interpolate_weights(t0, t1, a))
        ref = logits(fresh)
        assert torch.equal(got[a][0], ref[0]) and got[a][1] == ref[1] == (2 if a < 0.5 else 5), a
    assert not torch.allclose(got[0.5][0], got[0.0][0]) and not torch.allclose(got[0.5][0], got[1.0][0])
    work2 = copy.deepcopy(zs)
    for a, m in iter_alphas(work2, t0, t1, [0.3, 0.6], progress=False):
        ref = interpolate_weights(t0, t1, a)
        assert all(torch.equal(v, ref[k]) for k, v in m.state_dict().items()), a
    interpolate_in_place(work2, t0, t1, 0.4)
    assert int(work2.state_dict()[counter]) == 2


@pytest.mark.parametrize("name", ["image_encoder.pos_ids", "image_encoder.bn1.num_batches_tracked_total"])
def test_resnet_differing_non_counter_integer_buffer_still_raises(resnet_endpoints, name):
    zs, t0, t1 = resnet_endpoints
    t0 = {**t0, name: torch.arange(4)}
    t1 = {**t1, name: torch.arange(4) + 1}
    pattern = rf"non-floating tensor {re.escape(repr(name))}.*must be equal"
    with pytest.raises(ValueError, match=pattern):
        check_compatible(t0, t1)
    with pytest.raises(ValueError, match=pattern):
        interpolate_weights(t0, t1, 0.5)
    with pytest.raises(ValueError, match=pattern):
        bernoulli_interpolate(t0, t1, 0.5, per="element")
    model = copy.deepcopy(zs)
    owner, _, attr = name.rpartition(".")
    model.get_submodule(owner).register_buffer(attr, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match=pattern):
        interpolate_in_place(model, t0, t1, 0.5)
    with pytest.raises(ValueError, match=pattern):
        iter_alphas(model, t0, t1, [0.5], progress=False)
