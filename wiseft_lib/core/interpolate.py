"""WiSE-FT weight-space interpolation: ``theta(alpha) = (1 - alpha) * theta_0 + alpha * theta_1``.

``theta_0`` is the zero-shot model's state dict, ``theta_1`` the fine-tuned one's. Plain
interpolation returns a new state dict; an alpha sweep instead writes each interpolation into
one existing model in place, so it needs the two endpoints and one working model, never a copy
per alpha. Fisher-weighted merging (Matena & Raffel, as in the official wise-ft code) is in
:mod:`wiseft_lib.core.fisher`.

    import torch
    from wiseft_lib.core.interpolate import interpolate_weights, sweep_alphas

    zs = torch.nn.Linear(4, 3)
    ft = torch.nn.Linear(4, 3)
    theta_0 = {k: v.clone() for k, v in zs.state_dict().items()}
    theta_1 = {k: v.clone() for k, v in ft.state_dict().items()}
    half = interpolate_weights(theta_0, theta_1, 0.5)          # a new state dict
    norms = sweep_alphas(zs, theta_0, theta_1, [0, 0.5, 1],    # writes into ``zs``
                         lambda m: m.weight.norm().item(), progress=False)

Endpoints are exact: ``alpha == 0`` gives ``theta_0`` and ``alpha == 1`` gives ``theta_1``
bit for bit. Floating tensors in half precision are interpolated in fp32 and returned in
their own dtype; floating buffers (BatchNorm ``running_mean`` / ``running_var`` of ResNet
CLIPs) are interpolated like weights. Non-floating tensors (integer/bool buffers such as
position ids or masks) cannot be interpolated: they must be equal in both endpoints, and are
taken from the endpoint nearer to ``alpha``.

The one exception is BatchNorm's step counter ``num_batches_tracked`` (any key whose last
component is in ``COUNTER_NAMES``): end-to-end fine-tuning of a ResNet CLIP advances it, so it
differs between the endpoints. It is allowed to differ and, like every non-floating tensor,
is taken whole from the nearer endpoint: ``theta_0``'s for ``alpha < 0.5``, else
``theta_1``'s (so ``alpha`` 0 and 1 still give the endpoints exactly). The counter only sets
the averaging factor when ``momentum`` is ``None`` and only in train mode; it has no effect on
an eval-mode forward pass, and averaging counts would invent a step count neither model had.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Callable, TypeVar, Union

import torch
from torch import nn

from wiseft_lib.core._batches import model_device
from wiseft_lib.progress import progress_bar

__all__ = [
    "COUNTER_NAMES",
    "check_alpha",
    "check_compatible",
    "interpolate_weights",
    "bernoulli_interpolate",
    "interpolate_in_place",
    "iter_alphas",
    "check_model_targets",
    "write_interpolation",
    "state_on_device",
    "sweep_alphas",
]

StateDict = Mapping[str, torch.Tensor]
T = TypeVar("T")

_LOW_PRECISION = (torch.float16, torch.bfloat16)

# Last key components of integer counters that may differ between the endpoints (see the module docstring).
COUNTER_NAMES = frozenset({"num_batches_tracked"})


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` as a float, or raise ``ValueError`` unless it lies in [0, 1]."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if math.isnan(a) or not 0.0 <= a <= 1.0:
        raise ValueError(
            f"alpha must lie in [0, 1] (0 = zero-shot weights theta_0, 1 = fine-tuned weights "
            f"theta_1), got {alpha!r}"
        )
    return a


def describe_tensor(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)} {str(t.dtype).replace('torch.', '')}"


def _is_counter(key: str) -> bool:
    """Whether ``key`` names a step counter (e.g. ``visual.bn1.num_batches_tracked``) allowed to differ."""
    return key.rsplit(".", 1)[-1] in COUNTER_NAMES


def _nearer(t0: torch.Tensor, t1: torch.Tensor, a: float) -> torch.Tensor:
    """The endpoint nearer to ``alpha`` (``theta_0`` below 0.5, else ``theta_1``): for non-floating tensors."""
    return t0 if a < 0.5 else t1


def check_compatible(theta_0: StateDict, theta_1: StateDict,
                     names: tuple[str, str] = ("theta_0", "theta_1")) -> None:
    """Raise ``ValueError`` naming the first key where the two state dicts differ.

    Keys are walked in ``theta_0``'s order, then ``theta_1``'s extra keys. Shapes and dtypes
    must match; non-floating tensors must also be equal (they are copied, not interpolated),
    except step counters such as BatchNorm's ``num_batches_tracked`` (``COUNTER_NAMES``).
    """
    n0, n1 = names
    for key, t0 in theta_0.items():
        if key not in theta_1:
            raise ValueError(
                f"state dicts differ at key {key!r}: present in {n0} ({describe_tensor(t0)}) but "
                f"missing from {n1}. Both endpoints must come from the same architecture "
                f"(check the model name and head size)."
            )
        t1 = theta_1[key]
        if t0.shape != t1.shape:
            raise ValueError(
                f"state dicts differ at key {key!r}: {n0} has shape {tuple(t0.shape)}, {n1} has "
                f"shape {tuple(t1.shape)}. Both endpoints must come from the same architecture "
                f"and class count."
            )
        if t0.dtype != t1.dtype:
            raise ValueError(
                f"state dicts differ at key {key!r}: {n0} is {t0.dtype}, {n1} is {t1.dtype}. "
                f"Cast one endpoint first, e.g. {{k: v.to(torch.float32) for k, v in sd.items()}}."
            )
        if not t0.is_floating_point() and not _is_counter(key) and not torch.equal(t0, t1.to(t0.device)):
            raise ValueError(
                f"non-floating tensor {key!r} ({describe_tensor(t0)}) differs between {n0} and {n1}; "
                f"integer/bool buffers cannot be interpolated and must be equal in both endpoints."
            )
    for key, t1 in theta_1.items():
        if key not in theta_0:
            raise ValueError(
                f"state dicts differ at key {key!r}: present in {n1} ({describe_tensor(t1)}) but "
                f"missing from {n0}. Both endpoints must come from the same architecture."
            )


def lerp_tensors(t0: torch.Tensor, t1: torch.Tensor, weight: Union[float, torch.Tensor]) -> torch.Tensor:
    """``t0 + weight * (t1 - t0)`` in at least fp32, returned in ``t0``'s dtype and device."""
    t1 = t1.to(t0.device)
    if t0.dtype in _LOW_PRECISION:
        w = weight.float() if isinstance(weight, torch.Tensor) else weight
        return torch.lerp(t0.float(), t1.float(), w).to(t0.dtype)
    if isinstance(weight, torch.Tensor):
        weight = weight.to(t0.dtype)
    return torch.lerp(t0, t1, weight)


def interpolate_weights(theta_0: StateDict, theta_1: StateDict, alpha: float) -> dict[str, torch.Tensor]:
    """Return the state dict ``(1 - alpha) * theta_0 + alpha * theta_1`` (new tensors).

    Floating tensors are interpolated (fp32 compute for fp16/bf16); other tensors are
    copied from the endpoint nearer to ``alpha`` (they are equal in both, except counters such
    as ``num_batches_tracked``). ``alpha`` 0 and 1 return exact copies of the endpoints.
    """
    a = check_alpha(alpha)
    check_compatible(theta_0, theta_1)
    out: dict[str, torch.Tensor] = {}
    for key, t0 in theta_0.items():
        t1 = theta_1[key]
        if not t0.is_floating_point():
            out[key] = _nearer(t0, t1, a).detach().to(t0.device).clone()
        elif a == 0.0:
            out[key] = t0.detach().clone()
        elif a == 1.0:
            out[key] = t1.detach().to(t0.device).clone()
        else:
            out[key] = lerp_tensors(t0.detach(), t1.detach(), a)
    return out


def bernoulli_interpolate(theta_0: StateDict, theta_1: StateDict, alpha: float, seed: int = 0, *,
                          per: str = "tensor") -> dict[str, torch.Tensor]:
    """The paper's "random interpolation" baseline: each tensor (``per="tensor"``) or each single weight
    (``per="element"``) taken from ``theta_1`` with probability ``alpha``, else from ``theta_0``; seeded draws
    in key order; new tensors.

    Its expected weights equal WiSE-FT's ``(1 - alpha) * theta_0 + alpha * theta_1``; any one draw is a
    patchwork of the two models. Per element suits a linear classifier, whose two tensors would otherwise
    give only four models. ``alpha`` 0 and 1 return exact copies of the endpoints. Per tensor, a counter
    such as ``num_batches_tracked`` follows its own draw like every tensor; per element, non-floating tensors
    draw nothing and come from the endpoint nearer to ``alpha``, as in :func:`interpolate_weights`.
    """
    a = check_alpha(alpha)
    check_compatible(theta_0, theta_1)
    if per not in ("tensor", "element"):
        raise ValueError(f"per must be 'tensor' or 'element', got {per!r}")
    gen = torch.Generator().manual_seed(seed)
    if per == "element":
        out = {}
        for key, t0 in theta_0.items():
            t1 = theta_1[key].detach().to(t0.device)
            if not t0.is_floating_point():  # integer buffers: equal in both (check_compatible) but counters
                out[key] = _nearer(t0.detach(), t1, a).clone()
                continue
            mask = (torch.rand(t0.shape, generator=gen) < a).to(t0.device)
            out[key] = torch.where(mask, t1, t0.detach())
        return out
    draws = torch.rand(len(theta_0), generator=gen)
    return {key: (theta_1[key].detach().to(t0.device) if draws[i] < a else t0.detach()).clone()
            for i, (key, t0) in enumerate(theta_0.items())}


def _storage_ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def check_model_targets(model: nn.Module, theta_0: StateDict, theta_1: StateDict) -> dict[str, torch.Tensor]:
    """Validate endpoints against the model once; return the model's live state tensors."""
    check_compatible(theta_0, theta_1)
    live = model.state_dict(keep_vars=True)
    for key, t in live.items():
        if key not in theta_0:
            raise ValueError(
                f"the model has key {key!r} ({describe_tensor(t)}) that the endpoints lack; the model "
                f"must have the endpoints' architecture"
            )
        if t.shape != theta_0[key].shape:
            raise ValueError(
                f"state dicts differ at key {key!r}: the model has shape {tuple(t.shape)}, the "
                f"endpoints have {tuple(theta_0[key].shape)}"
            )
    for key, t in theta_0.items():
        if key not in live:
            raise ValueError(
                f"endpoint key {key!r} ({describe_tensor(t)}) is missing from the model; the model must "
                f"have the endpoints' architecture"
            )
    ptrs = {}
    for key, t in live.items():
        if t.numel():
            ptrs.setdefault(_storage_ptr(t), key)
    for name, theta in (("theta_0", theta_0), ("theta_1", theta_1)):
        for key, t in theta.items():
            if t.numel() and _storage_ptr(t) in ptrs:
                raise ValueError(
                    f"{name}[{key!r}] shares memory with the model's {ptrs[_storage_ptr(t)]!r}: "
                    f"writing into the model would overwrite the endpoint. Pass a copy, e.g. "
                    f"{{k: v.detach().clone() for k, v in model.state_dict().items()}}."
                )
    return {k: v.data if isinstance(v, nn.Parameter) else v for k, v in live.items()}


@torch.no_grad()
def write_interpolation(live: Mapping[str, torch.Tensor], theta_0: StateDict, theta_1: StateDict, a: float) -> None:
    """Write ``theta(a)`` into the model's live tensors (from :func:`check_model_targets`) in place."""
    for key, dst in live.items():
        t0 = theta_0[key]
        if not dst.is_floating_point():  # counters (num_batches_tracked) may differ: the nearer endpoint's
            dst.copy_(_nearer(t0, theta_1[key], a))
        elif a == 0.0:
            dst.copy_(t0)
        elif a == 1.0:
            dst.copy_(theta_1[key])
        else:
            t1 = theta_1[key]
            same = (t0.dtype == t1.dtype == dst.dtype and t0.device == t1.device == dst.device
                    and dst.dtype not in _LOW_PRECISION and dst.is_contiguous())
            if same:
                torch.lerp(t0, t1, a, out=dst)
            else:
                dst.copy_(lerp_tensors(t0.to(dst.device), t1.to(dst.device), a))


def interpolate_in_place(model: nn.Module, theta_0: StateDict, theta_1: StateDict, alpha: float,
                         *, check: bool = True) -> nn.Module:
    """Write ``theta(alpha)`` into ``model``'s own parameters and buffers; return ``model``.

    No new model or state dict is allocated (non-floating buffers are copied from the nearer
    endpoint, as in :func:`interpolate_weights`). Endpoints must not share memory with the model
    (pass clones). ``check=False`` skips validation (for loops that validated once).
    """
    a = check_alpha(alpha)
    if check:
        live = check_model_targets(model, theta_0, theta_1)
    else:
        live = {k: v.data if isinstance(v, nn.Parameter) else v
                for k, v in model.state_dict(keep_vars=True).items()}
    write_interpolation(live, theta_0, theta_1, a)
    return model


def state_on_device(theta: StateDict, device: torch.device) -> dict[str, torch.Tensor]:
    """The state dict's tensors, detached, on ``device`` (moved only where they are elsewhere)."""
    return {k: (v.detach() if v.device == device else v.detach().to(device)) for k, v in theta.items()}


def iter_alphas(model: nn.Module, theta_0: StateDict, theta_1: StateDict, alphas: Iterable[float],
                *, progress: bool = True) -> Iterator[tuple[float, nn.Module]]:
    """Yield ``(alpha, model)`` with ``theta(alpha)`` written into ``model`` in place.

    Alphas and keys/shapes are validated once, when called; endpoints are moved to the model's
    device once. After the loop the model holds the last alpha's weights.
    """
    grid = [check_alpha(a) for a in alphas]
    live = check_model_targets(model, theta_0, theta_1)
    dev = model_device(model)
    t0, t1 = state_on_device(theta_0, dev), state_on_device(theta_1, dev)
    return _sweep(model, live, t0, t1, grid, progress)


def _sweep(model: nn.Module, live: Mapping[str, torch.Tensor], t0: StateDict, t1: StateDict,
           grid: list[float], progress: bool) -> Iterator[tuple[float, nn.Module]]:
    for a in progress_bar(grid, desc="alpha sweep", unit="alpha", show=progress):
        write_interpolation(live, t0, t1, a)
        yield a, model


def sweep_alphas(model: nn.Module, theta_0: StateDict, theta_1: StateDict, alphas: Iterable[float],
                 fn: Callable[[nn.Module], T], *, progress: bool = True) -> dict[float, T]:
    """Return ``{alpha: fn(model)}`` with the model holding ``theta(alpha)`` during each call.

    One working model is reused (weights written with ``torch.lerp`` in place).
    """
    return {a: fn(m) for a, m in iter_alphas(model, theta_0, theta_1, alphas, progress=progress)}
