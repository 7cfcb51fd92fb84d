"""Fisher-weighted merging (Matena & Raffel, as in the official wise-ft code): the diagonal Fisher of a
model, saved and loaded as safetensors, and the per-element weighted interpolation of two endpoints.

    from wiseft_lib.core.fisher import compute_fisher, fisher_interpolate
    f0, f1 = compute_fisher(zeroshot_model, loader), compute_fisher(finetuned_model, loader)
    merged = fisher_interpolate(theta_0, theta_1, 0.5, f0, f1)
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from wiseft_lib.core._batches import batch_inputs, model_device
from wiseft_lib.core.interpolate import (
    StateDict,
    check_alpha,
    check_compatible,
    describe_tensor,
    interpolate_weights,
    lerp_tensors,
)
from wiseft_lib.progress import progress_bar

__all__ = ["fisher_interpolate", "compute_fisher", "load_fisher"]


def fisher_interpolate(
    theta_0: StateDict,
    theta_1: StateDict,
    alpha: float,
    fisher_0: Mapping[str, torch.Tensor],
    fisher_1: Mapping[str, torch.Tensor],
    eps: float = 1e-8,
) -> dict[str, torch.Tensor]:
    """Fisher-weighted merge: per element ``(c0 * theta_0 + c1 * theta_1) / (c0 + c1)``.

    ``c0 = (1 - alpha) * max(F0, eps)`` and ``c1 = alpha * max(F1, eps)`` (``eps`` is the
    official code's ``fisher_floor``). It is computed as a lerp with the per-element weight
    ``c1 / (c0 + c1)``, which is exactly ``alpha`` wherever ``F0 == F1``, so equal Fishers
    reproduce :func:`interpolate_weights` bit for bit. Keys without a Fisher in either dict
    (buffers such as BatchNorm running statistics, and counters, which come from the nearer
    endpoint) fall back to plain interpolation; a key with a Fisher in only one dict is an error.
    """
    a = check_alpha(alpha)
    check_compatible(theta_0, theta_1)
    if eps <= 0:
        raise ValueError(f"eps (the Fisher floor) must be positive, got {eps!r}")
    for key in list(fisher_0) + list(fisher_1):
        if (key in fisher_0) != (key in fisher_1):
            have, lack = ("fisher_0", "fisher_1") if key in fisher_0 else ("fisher_1", "fisher_0")
            raise ValueError(
                f"Fisher for {key!r} is in {have} but not in {lack}; compute both Fishers with "
                f"the same parameters (compute_fisher on both models), or drop the key from both."
            )
        if key not in theta_0:
            raise ValueError(
                f"Fisher key {key!r} is not a key of the state dicts being merged (their keys look like "
                f"{next(iter(theta_0), None)!r}): the Fisher was computed for another model. Compute both "
                f"Fishers with compute_fisher on the two endpoints being merged."
            )
        for name, f in (("fisher_0", fisher_0), ("fisher_1", fisher_1)):
            if f[key].shape != theta_0[key].shape:
                raise ValueError(
                    f"{name}[{key!r}] has shape {tuple(f[key].shape)} but the parameter has shape "
                    f"{tuple(theta_0[key].shape)}"
                )
    plain = interpolate_weights(theta_0, theta_1, a)
    if a in (0.0, 1.0):
        return plain
    out = dict(plain)
    for key in fisher_0:
        t0, t1 = theta_0[key].detach(), theta_1[key].detach()
        if not t0.is_floating_point():
            continue
        f0 = fisher_0[key].detach().to(t0.device, torch.float64).clamp_min(eps)
        f1 = fisher_1[key].detach().to(t0.device, torch.float64).clamp_min(eps)
        c0, c1 = (1.0 - a) * f0, a * f1
        weight = torch.where(f0 == f1, torch.full_like(f0, a), c1 / (c0 + c1))
        out[key] = lerp_tensors(t0, t1, weight.float() if t0.dtype != torch.float64 else weight)
    return out


def load_fisher(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """A diagonal Fisher saved as safetensors (``save_file(compute_fisher(...), path)``), checked.

    The file must be readable safetensors holding floating tensors, finite and non-negative (squared
    gradients); anything else is a ``ValueError`` naming the file and what to do (never a pickle: nothing
    in the file can run).
    """

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Fisher file {path} does not exist; save one with "
                                f"safetensors.torch.save_file(compute_fisher(model, loader), path)")
    try:
        fisher = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"Fisher file {path} is not a readable safetensors file ({err}): it is corrupt, truncated "
                         f"or another format; save it again with safetensors.torch.save_file(compute_fisher(...), "
                         f"path)") from None
    for key, t in fisher.items():
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise ValueError(f"Fisher file {path}: {key!r} ({describe_tensor(t)}) is not a diagonal Fisher (floating, "
                             f"finite, >= 0); compute it again with compute_fisher")
    return fisher


def compute_fisher(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    n_batches: Optional[int] = None,
    device: Union[str, torch.device, None] = None,
    target: str = "sample",
    per_example: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher: mean squared gradient of ``log p(y | x)`` with ``y`` from the model.

    ``target="sample"`` draws ``y`` from the model's softmax (the official code),
    ``"argmax"`` uses its prediction. ``per_example`` (default, as the official batch-size-1
    code) squares each example's gradient; ``False`` squares each batch's mean gradient,
    scaled by the batch size (much faster, a biased approximation). The model runs in eval
    mode (CLIP has no dropout; a ResNet CLIP's batch norm then uses, and leaves unchanged, its
    running statistics; the official code used train mode) and its ``.grad`` fields are left
    untouched. Returns fp32 CPU tensors keyed like ``model.named_parameters()``, for trainable
    parameters that received a gradient.
    """
    if target not in ("sample", "argmax"):
        raise ValueError(f"target must be 'sample' or 'argmax', got {target!r}")

    dev = torch.device(device) if device is not None else model_device(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters; nothing to compute a Fisher for")
    params = [p for _, p in named]
    acc = [torch.zeros_like(p, dtype=torch.float32, device=dev) for p in params]
    got = [False] * len(params)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    count = 0
    was_training = model.training
    model.eval()
    try:
        total = n_batches if n_batches is not None else (len(loader) if hasattr(loader, "__len__") else None)
        for i, batch in enumerate(progress_bar(loader, total=total, desc="Fisher", unit="batch", show=progress)):
            if n_batches is not None and i >= n_batches:
                break
            x = batch_inputs(batch).to(dev)
            chunks = x.split(1) if per_example else (x,)
            for xc in chunks:
                _add_squared_gradients(model, xc, params, acc, got, target=target, gen=gen, dev=dev)
                count += len(xc)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the loader yielded no examples; cannot compute a Fisher")
    return {n: (a / count).cpu() for (n, _), a, g in zip(named, acc, got) if g}


def _add_squared_gradients(model: nn.Module, xc: torch.Tensor, params: list[torch.Tensor], acc: list[torch.Tensor],
                           got: list[bool], *, target: str, gen: torch.Generator, dev: torch.device) -> None:
    """Add to ``acc`` the squared gradient of ``log p(y | xc)`` (``y`` sampled with ``gen`` or the argmax), times
    the chunk's size, and mark in ``got`` the parameters that received one."""
    log_probs = torch.log_softmax(model(xc).float(), dim=-1)
    with torch.no_grad():
        if target == "sample":
            y = torch.multinomial(log_probs.exp().cpu(), 1, generator=gen).view(-1)
        else:
            y = log_probs.argmax(dim=-1).cpu()
    loss = -log_probs.gather(1, y.to(dev).view(-1, 1)).mean()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    scale = float(len(xc))  # batch mode: n * (mean grad)^2 estimates the sum
    for j, g in enumerate(grads):
        if g is not None:
            acc[j].add_(g.detach().float().pow(2), alpha=scale)
            got[j] = True
