"""Export a WiSE-FT model as an open_clip checkpoint that ``open_clip`` loads unchanged.

    wiseft export --finetuned runs/ft/finetuned.safetensors --alpha 0.5 --output exported/model.safetensors

writes three files, each atomically (an error leaves none of them behind):

* ``model.safetensors``: the **full** CLIP state dict: the image tower interpolated at ``alpha`` between the
  zero-shot model's (the pretrained CLIP's) and the fine-tuned one's, and the pretrained text tower,
  ``logit_scale`` and the rest unchanged. ``open_clip`` loads it like any pretrained file::

      model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-16", pretrained="model.safetensors",
                                                                   force_quick_gelu=True)  # OpenAI weights

  (``open_clip_kwargs`` in the sidecar lists what a model needs beyond its name: QuickGELU for OpenAI weights,
  the package model's preprocessing; :func:`load_export` passes them for you). The package's own
  ``wiseft-mini`` needs its open_clip config registered first (:func:`register_configs`).
* ``model.head.safetensors``: the interpolated classification head, ``weight`` ``[classes, embed_dim]`` and
  ``bias``: ``logits = normalize(model.encode_image(x)) @ weight.T + bias`` (the logit scale is folded into
  ``weight``, as in the zero-shot head).
* ``model.json``: class names, templates, alpha, model name and pretrained tag, the loading kwargs, and the
  SHA-256 of the files it was made from.

:func:`wiseft_lib.experiment.hub.export_hub_folder` (``wiseft export --hub-dir DIR``) writes the same weights as an
open_clip hub folder with a model card instead, which ``open_clip.create_model_and_transforms("local-dir:DIR")`` loads
without any kwargs or registered configs.

Nothing is pickled (compare open_clip issue 602: the reference code's WiSE-FT checkpoints pickle whole
modules and cannot be loaded elsewhere).

    from wiseft_lib.experiment.export import export_wiseft, load_export
    export_wiseft("runs/ft/finetuned.safetensors", "exported/model.safetensors", alpha=0.5)
    model, head, meta, preprocess = load_export("exported/model.safetensors")
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import open_clip
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wiseft_lib import __version__
from wiseft_lib.core.files import atomic_path
from wiseft_lib.core.interpolate import check_alpha, interpolate_weights
from wiseft_lib.core.models import (
    PACKAGE_MODELS,
    PACKAGE_PREPROCESS,
    RANDOM_INIT,
    ClassificationHead,
    ImageClassifier,
    create_model,
    register_package_configs,
    resolve_pretrained,
    tag_overrides,
)
from wiseft_lib.core.zeroshot import zeroshot_classifier
from wiseft_lib.experiment.runs import file_digest

__all__ = ["EXPORT_FORMAT", "ExportResult", "ExportState", "build_export", "write_export", "load_wiseft_endpoints",
           "export_classifiers", "export_wiseft", "export_paths", "load_export", "exported_logits", "register_configs",
           "open_clip_kwargs", "save_export_tensors", "check_export_target"]

EXPORT_FORMAT = "wiseft.OpenCLIPExport/1"
PathLike = Union[str, Path]


@dataclass
class ExportResult:
    """The files written and what they hold."""

    model: Path  # the full open_clip state dict
    head: Path  # weight, bias
    sidecar: Path  # JSON metadata
    meta: dict[str, Any] = field(default_factory=dict)

    def paths(self) -> list[Path]:
        return [self.model, self.head, self.sidecar]


@dataclass
class ExportState:
    """An export in memory (:func:`build_export`): what :func:`write_export` and the hub folder
    (:mod:`wiseft_lib.experiment.hub`) write, whatever the file layout."""

    full: dict[str, torch.Tensor]  # the full open_clip state dict
    head: dict[str, torch.Tensor]  # weight, bias
    meta: dict[str, Any]  # the sidecar's metadata, less the file names
    tensor_meta: dict[str, str]  # the checkpoint's safetensors metadata
    finetuned_meta: dict[str, Any] = field(default_factory=dict)  # the fine-tuned checkpoint's own (its recipe)


def register_configs() -> None:
    """Register the package's open_clip configs (``wiseft-mini``, ``$WISEFT_MODEL_CONFIGS``) with open_clip, so that
    ``open_clip.create_model_and_transforms("wiseft-mini", pretrained=PATH)`` finds the architecture."""

    register_package_configs()


def export_paths(output: PathLike) -> tuple[Path, Path, Path]:
    """``(model.safetensors, model.head.safetensors, model.json)`` for an output path (``.safetensors`` added)."""
    path = Path(output)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    return path, path.with_suffix(".head.safetensors"), path.with_suffix(".json")


def open_clip_kwargs(model_name: str, pretrained: Optional[str]) -> dict[str, Any]:
    """What ``open_clip.create_model_and_transforms(model_name, pretrained=PATH, **kwargs)`` needs besides the name
    to rebuild the model exactly (QuickGELU of OpenAI weights, preprocessing of the tag or of a package model)."""

    kwargs = {**PACKAGE_PREPROCESS.get(model_name, {}), **tag_overrides(model_name, pretrained)}
    return json.loads(json.dumps(kwargs))  # tuples as lists: what the JSON sidecar gives back


def _check_writable(paths: tuple[Path, ...]) -> None:
    """Fail before any work if the outputs cannot be written (a clear message, no partial files)."""
    for path in paths:
        if path.is_dir():
            raise ValueError(f"cannot export to {path}: it is a folder; give a file path such as "
                             f"{path}/model.safetensors")
    parent = paths[0].parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot export to {paths[0]}: cannot create the folder {parent} "
                         f"({err.strerror or err}); choose a folder you can write to") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot export to {paths[0]}: the folder {parent} is not writable; choose a folder you can "
                         f"write to")


def check_export_target(output: PathLike) -> None:
    """Raise ``ValueError`` unless the flat files of ``output`` can be written (before any work is done)."""
    _check_writable(export_paths(output))


def _sha256(path: PathLike) -> str:
    return file_digest(path)


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> Optional[str]:
    """The first key where two state dicts differ (keys, shapes or values), or None."""
    if list(a) != list(b):
        extra = sorted(set(a) ^ set(b))
        return extra[0] if extra else "key order"
    for k in a:
        if a[k].shape != b[k].shape or not torch.equal(a[k].detach().cpu(), b[k].detach().cpu()):
            return k
    return None


def export_classifiers(zeroshot: ImageClassifier, finetuned: ImageClassifier, clip_model: nn.Module, alpha: float,
                       output: PathLike, *, sources: Optional[dict[str, Any]] = None,
                       extra_meta: Optional[dict[str, Any]] = None) -> ExportResult:
    """Write ``clip_model`` with its image tower replaced by the WiSE-FT interpolation of ``zeroshot`` and
    ``finetuned`` at ``alpha``, the interpolated head beside it, and the sidecar (see the module docstring).

    ``clip_model`` is the pretrained CLIP the zero-shot classifier was made from: its image tower must equal
    ``zeroshot.image_encoder`` exactly (else the text tower written would not belong to the image tower), and
    ``finetuned`` must be the same architecture with the same head shape.
    """

    alpha = check_alpha(alpha)
    _check_writable(export_paths(output))
    return write_export(build_export(zeroshot, finetuned, clip_model, alpha, sources=sources, extra_meta=extra_meta),
                        output)


def build_export(zeroshot: ImageClassifier, finetuned: ImageClassifier, clip_model: nn.Module, alpha: float, *,
                 sources: Optional[dict[str, Any]] = None, extra_meta: Optional[dict[str, Any]] = None) -> ExportState:
    """What :func:`export_classifiers` writes, in memory (checked and interpolated the same way)."""

    alpha = check_alpha(alpha)
    _check_exportable(zeroshot, finetuned, clip_model)
    theta = interpolate_weights(zeroshot.state_dict(), finetuned.state_dict(), alpha)
    full, head = _open_clip_state_and_head(clip_model, theta)
    meta, tensor_meta = _export_metadata(zeroshot, finetuned, alpha, head, sources, extra_meta)
    return ExportState(full, head, meta, tensor_meta, dict(finetuned.meta))


def write_export(state: ExportState, output: PathLike) -> ExportResult:
    """Write an :class:`ExportState` as the three flat files of ``output`` (see the module docstring)."""

    paths = export_paths(output)
    _check_writable(paths)
    meta = {**state.meta, "files": {"model": paths[0].name, "head": paths[1].name}}
    _write_export_files(paths, state, meta)
    return ExportResult(*paths, meta=meta)


def _check_exportable(zeroshot: ImageClassifier, finetuned: ImageClassifier, clip_model: nn.Module) -> None:
    """Raise ``ValueError`` unless both classifiers are one architecture made from ``clip_model``'s image tower,
    with heads of one shape that agree on normalizing their input."""
    zs_name, ft_name = zeroshot.meta.get("model_name"), finetuned.meta.get("model_name")
    if zs_name and ft_name and zs_name != ft_name:
        raise ValueError(f"the fine-tuned checkpoint is a {ft_name!r} model, the zero-shot model a {zs_name!r} model: "
                         f"WiSE-FT interpolates two models of one architecture")
    zs_visual = zeroshot.image_encoder.state_dict()
    where = _same_state(dict(clip_model.visual.state_dict()), dict(zs_visual))
    if where is not None:
        raise ValueError(f"the pretrained CLIP's image tower differs from the zero-shot model's (first at "
                         f"visual.{where}): the exported text tower would not match; give the model and pretrained "
                         f"weights the zero-shot model was built from")
    zs_head, ft_head = zeroshot.classification_head, finetuned.classification_head
    if zs_head.weight.shape != ft_head.weight.shape:
        raise ValueError(f"the fine-tuned head is {tuple(ft_head.weight.shape)}, the zero-shot head "
                         f"{tuple(zs_head.weight.shape)}: they must classify the same classes")
    if bool(zs_head.normalize) != bool(ft_head.normalize):
        raise ValueError("one head normalizes its input features and the other does not; they cannot be "
                         "interpolated into one head")


def _open_clip_state_and_head(clip_model: nn.Module, theta: dict[str, torch.Tensor]
                              ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``clip_model``'s state dict (on the CPU) with its image tower replaced by ``theta``'s, and ``theta``'s head."""
    full = {k: v.detach().cpu().clone().contiguous() for k, v in clip_model.state_dict().items()}
    prefix = "image_encoder."
    visual = {k[len(prefix):]: v for k, v in theta.items() if k.startswith(prefix)}
    missing = sorted(set(f"visual.{k}" for k in visual) ^ set(k for k in full if k.startswith("visual.")))
    if missing:
        raise ValueError(f"the image tower's keys do not match the CLIP model's (first: {missing[0]})")
    for k, v in visual.items():
        full[f"visual.{k}"] = v.detach().cpu().clone().contiguous()
    head = {"weight": theta["classification_head.weight"].detach().cpu().contiguous(),
            "bias": theta["classification_head.bias"].detach().cpu().contiguous()}
    return full, head


def _export_metadata(zeroshot: ImageClassifier, finetuned: ImageClassifier, alpha: float,
                     head: dict[str, torch.Tensor], sources: Optional[dict[str, Any]],
                     extra_meta: Optional[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """The JSON sidecar's metadata (model, pretrained tag, alpha, class names and templates, head, files, sources)
    and the checkpoint's safetensors metadata."""
    zs_name, ft_name = zeroshot.meta.get("model_name"), finetuned.meta.get("model_name")
    zs_head = zeroshot.classification_head
    meta = {k: v for k, v in finetuned.meta.items() if k in ("classnames", "templates")}
    meta.update({k: v for k, v in zeroshot.meta.items() if k in ("classnames", "templates") and k not in meta})
    model_name = ft_name or zs_name
    pretrained = _normalized_tag(model_name, zeroshot.meta.get("pretrained", finetuned.meta.get("pretrained")))
    meta = {
        "format": EXPORT_FORMAT,
        "library_version": __version__,
        "model_name": model_name,
        "pretrained": pretrained,
        "alpha": alpha,
        "method": "wiseft",
        **meta,
        "head_shape": list(head["weight"].shape),
        "head_normalize": bool(zs_head.normalize),
        "open_clip_kwargs": open_clip_kwargs(model_name, pretrained),
        "logits": "normalize(model.encode_image(x)) @ head.weight.T + head.bias"
                  if zs_head.normalize else "model.encode_image(x) @ head.weight.T + head.bias",
        "sources": sources or {},
        **(extra_meta or {}),
    }
    tensor_meta = {"format": "open_clip", "wiseft_export": EXPORT_FORMAT, "model_name": str(model_name),
                   "alpha": repr(alpha)}
    return meta, tensor_meta


def save_export_tensors(state: ExportState, model_path: PathLike, head_path: PathLike) -> None:
    """Save the checkpoint and the head as safetensors (plain writes: the callers write to temporary paths)."""
    save_file(state.full, str(model_path), metadata=state.tensor_meta)
    save_file(state.head, str(head_path), metadata={"format": EXPORT_FORMAT,
                                                    "normalize": str(state.meta["head_normalize"])})


def _write_export_files(paths: tuple[Path, Path, Path], state: ExportState, meta: dict[str, Any]) -> None:
    """Write the checkpoint, the head and the sidecar atomically together (none of them left on a failed rename)."""
    written = False
    try:
        with contextlib.ExitStack() as stack:  # all three written to temporaries first, then renamed
            tmp_model = stack.enter_context(atomic_path(paths[0]))
            tmp_head = stack.enter_context(atomic_path(paths[1]))
            tmp_side = stack.enter_context(atomic_path(paths[2]))
            save_export_tensors(state, tmp_model, tmp_head)
            tmp_side.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
            written = True
    except OSError as err:
        if written:  # a rename failed half-way: leave no mixed export behind
            for p in paths:
                p.unlink(missing_ok=True)
        raise ValueError(f"cannot write the export to {paths[0]}: {err.strerror or err}") from None


def _normalized_tag(model_name: str, pretrained: Optional[str]) -> Optional[str]:
    if model_name in PACKAGE_MODELS and pretrained is None:
        return next(iter(PACKAGE_MODELS[model_name]))
    return pretrained


def export_wiseft(finetuned: PathLike, output: PathLike, *, alpha: float = 0.5, model: Optional[str] = None,
                  pretrained: Optional[str] = None, zeroshot: Optional[PathLike] = None, seed: int = 0,
                  device: Union[str, torch.device] = "cpu") -> ExportResult:
    """Export the WiSE-FT model of a fine-tuned checkpoint (``finetuned.safetensors`` of ``wiseft finetune`` or the
    run cache) at ``alpha``; ``alpha=1`` exports the fine-tuned model itself.

    ``model`` and ``pretrained`` default to the checkpoint's own (its JSON sidecar); given, they must agree with it.
    The zero-shot end is ``zeroshot`` (a zero-shot classifier checkpoint, e.g. the ``zeroshot.safetensors`` that
    ``wiseft finetune`` writes beside its output) or, without it, rebuilt from the pretrained CLIP with the
    checkpoint's class names and templates. ``seed`` seeds a ``pretrained="random"`` model as the studies do.
    """

    alpha = check_alpha(alpha)
    _check_writable(export_paths(output))
    zs, ft, clip_model, sources = load_wiseft_endpoints(finetuned, model=model, pretrained=pretrained,
                                                        zeroshot=zeroshot, seed=seed, device=device)
    return export_classifiers(zs, ft, clip_model, alpha, output, sources=sources)


def load_wiseft_endpoints(finetuned: PathLike, *, model: Optional[str] = None, pretrained: Optional[str] = None,
                          zeroshot: Optional[PathLike] = None, seed: int = 0, device: Union[str, torch.device] = "cpu"
                          ) -> tuple[ImageClassifier, ImageClassifier, nn.Module, dict[str, Any]]:
    """``(zeroshot, finetuned, clip_model, sources)`` of :func:`export_wiseft` (same arguments, same checks): the two
    classifiers WiSE-FT interpolates, the pretrained CLIP, and where each came from (paths and SHA-256)."""

    ft_path = Path(finetuned)
    if ft_path.suffix != ".safetensors":
        ft_path = ft_path.with_suffix(".safetensors")
    ft = ImageClassifier.load(ft_path, device=device)
    ft_model, ft_tag = ft.meta.get("model_name"), ft.meta.get("pretrained")
    if model is not None and model != ft_model:
        raise ValueError(f"--finetuned {ft_path} is a {ft_model!r} model (its {ft_path.with_suffix('.json').name}), "
                         f"not {model!r}: WiSE-FT needs the zero-shot and fine-tuned models of one architecture; "
                         f"leave out --model to use the checkpoint's")
    model = ft_model
    if pretrained is not None and _normalized_tag(model, pretrained) != _normalized_tag(model, ft_tag):
        raise ValueError(f"--finetuned {ft_path} was fine-tuned from pretrained={ft_tag!r}, not {pretrained!r}; "
                         f"leave out --pretrained to use the checkpoint's")
    pretrained = ft_tag if pretrained is None else pretrained
    sources: dict[str, Any] = {"finetuned": {"path": str(ft_path), "sha256": _sha256(ft_path)}}

    zs = None
    if zeroshot is not None:  # checked before any weights are loaded
        zs_path = Path(zeroshot).with_suffix(".safetensors")
        zs = ImageClassifier.load(zs_path, device=device)
        if zs.meta.get("model_name") != model:
            raise ValueError(f"--zeroshot {zs_path} is a {zs.meta.get('model_name')!r} model, --finetuned a {model!r} "
                             f"model: WiSE-FT interpolates two models of one architecture")
        if "classnames" in zs.meta and "classnames" in ft.meta and list(zs.meta["classnames"]) != list(
                ft.meta["classnames"]):
            raise ValueError(f"--zeroshot {zs_path} and --finetuned {ft_path} have different class names")
        sources["zeroshot"] = {"path": str(zs_path), "sha256": _sha256(zs_path)}
    elif not ft.meta.get("classnames") or not ft.meta.get("templates"):
        raise ValueError(f"--finetuned {ft_path} does not record its class names and templates, so its zero-shot "
                         f"end cannot be rebuilt: pass --zeroshot (the zeroshot.safetensors written beside it)")

    if pretrained == RANDOM_INIT:
        torch.manual_seed(seed)  # as the studies build a random-init zero-shot model
    clip_model, _, _ = create_model(model, pretrained, device=device)
    weights = _weights_file(model, pretrained)
    sources["pretrained"] = {"model": model, "tag": pretrained,
                             **({"path": str(weights), "sha256": _sha256(weights)} if weights else {})}
    if zs is None:
        zs = zeroshot_classifier(clip_model, model, ft.meta["classnames"], ft.meta["templates"], pretrained)
        sources["zeroshot"] = {"built_from": "pretrained CLIP + the checkpoint's class names and templates"}
    return zs, ft, clip_model, sources


def _weights_file(model: str, pretrained: Optional[str]) -> Optional[Path]:
    """The local weights file of (model, pretrained), where there is one (package tags and paths)."""

    if pretrained in (RANDOM_INIT, ""):
        return None
    if model in PACKAGE_MODELS or (pretrained and Path(pretrained).is_file()):
        resolved = resolve_pretrained(model, pretrained)
        return Path(resolved) if resolved else None
    return None


def load_export(path: PathLike, device: Union[str, torch.device] = "cpu"):
    """``(clip_model, head, meta, preprocess)`` of an export: the model through
    ``open_clip.create_model_and_transforms(name, pretrained=path, **meta["open_clip_kwargs"])``, the head as a
    :class:`~wiseft_lib.core.models.ClassificationHead`."""

    model_path, head_path, side = export_paths(path)
    for p in (model_path, head_path, side):
        if not p.is_file():
            raise FileNotFoundError(f"export {model_path} is incomplete: {p} is missing")
    meta = json.loads(side.read_text())
    if meta.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{side} is not a wiseft export sidecar (format={meta.get('format')!r})")
    register_configs()
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("open_clip_kwargs", {}).items()}
    model, _, preprocess = open_clip.create_model_and_transforms(meta["model_name"], pretrained=str(model_path),
                                                                 device=device, **kwargs)
    model.eval()
    t = load_file(str(head_path), device=str(device))
    head = ClassificationHead(t["weight"], t["bias"], normalize=meta.get("head_normalize", True)).to(device).eval()
    return model, head, meta, preprocess


@torch.no_grad()
def exported_logits(clip_model: nn.Module, head: dict[str, torch.Tensor] | nn.Module, images: torch.Tensor,
                    normalize: bool = True) -> torch.Tensor:
    """``normalize(clip_model.encode_image(images)) @ weight.T + bias``: the exported model's class logits."""
    weight, bias = (head["weight"], head["bias"]) if isinstance(head, dict) else (head.weight, head.bias)
    features = clip_model.encode_image(images)
    if normalize:
        features = features / features.norm(dim=-1, keepdim=True)
    return torch.nn.functional.linear(features, weight.to(features.dtype), bias.to(features.dtype))
