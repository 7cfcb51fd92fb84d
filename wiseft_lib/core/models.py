"""Models: open_clip CLIP models (any name) and the package's own ``wiseft-mini``.

    from wiseft_lib.core.models import create_model, ImageClassifier
    clip, train_tf, eval_tf = create_model("wiseft-mini")            # shipped weights
    clip, train_tf, eval_tf = create_model("ViT-B-32", "openai")     # real weights (downloads)

An :class:`ImageClassifier` is CLIP's image tower plus a :class:`ClassificationHead`; it is
what fine-tuning trains and what WiSE-FT interpolates. It saves as safetensors weights plus a
JSON sidecar (never a pickled module), so checkpoints survive code moves.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import open_clip
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from wiseft_lib import __version__
from wiseft_lib.core.files import atomic_path, atomic_write_json
from wiseft_lib.core.mini_tokenizer import MiniTokenizer

__all__ = [
    "create_model",
    "create_architecture",
    "list_models",
    "list_pretrained",
    "get_tokenizer",
    "ClassificationHead",
    "ImageClassifier",
    "state_dict_hash",
]

MINI_FILES = Path(__file__).resolve().parent.parent / "mini"  # the embedded miniature's configs and weights
ASSETS = MINI_FILES / "assets"
WEIGHTS = MINI_FILES / "weights"

# Models defined by this package: open_clip configs under assets/, weights under weights/.
# name -> {pretrained tag -> weights file name}; the first tag is the default.
PACKAGE_MODELS: dict[str, dict[str, str]] = {
    "wiseft-mini": {
        "fmnist": "wiseft-mini-fmnist.safetensors",
        # the same recipe with 5%, 12% and 25% of the steps: Figure 1's zero-shot line
        "fmnist-budget5": "wiseft-mini-fmnist-budget5.safetensors",
        "fmnist-budget12": "wiseft-mini-fmnist-budget12.safetensors",
        "fmnist-budget25": "wiseft-mini-fmnist-budget25.safetensors",
    },
}
# Preprocessing of package models (open_clip configs cannot carry it for built-in names).
PACKAGE_PREPROCESS: dict[str, dict[str, Any]] = {
    "wiseft-mini": {"image_mean": (0.5,) * 3, "image_std": (0.5,) * 3, "aug_cfg": {"scale": (0.8, 1.0)}},
}
RANDOM_INIT = "random"

_registered = False


MODEL_CONFIGS_ENV = "WISEFT_MODEL_CONFIGS"


def register_package_configs() -> None:
    """Register the package's model configs, and every ``*.json`` open_clip config in the folders (or files)
    listed in ``$WISEFT_MODEL_CONFIGS`` (os.pathsep-separated): your own architectures, by file name."""
    global _registered
    if not _registered:
        for name in PACKAGE_MODELS:
            open_clip.add_model_config(ASSETS / f"{name}.json")
        for entry in filter(None, os.environ.get(MODEL_CONFIGS_ENV, "").split(os.pathsep)):
            if not Path(entry).exists():
                raise FileNotFoundError(f"${MODEL_CONFIGS_ENV} names {entry}, which does not exist; give folders "
                                        f"or files of open_clip model configs (NAME.json)")
            open_clip.add_model_config(entry)
        _registered = True


def list_models() -> list[str]:
    """Every model name :func:`create_model` accepts (open_clip's and the package's)."""
    register_package_configs()
    return open_clip.list_models()


def list_pretrained(name: Optional[str] = None) -> list[tuple[str, str]]:
    """(model, tag) pairs with known weights, optionally for one model."""
    pairs = [(m, t) for m, tags in PACKAGE_MODELS.items() for t in tags]
    pairs += [tuple(p) for p in open_clip.list_pretrained()]
    return [p for p in pairs if name is None or p[0] == name]


def _check_name(name: str) -> None:
    names = list_models()
    if name in names or name.startswith(("hf-hub:", "local-dir:")):
        return
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise ValueError(
        f"unknown model name {name!r}.{hint} See wiseft_lib.core.models.list_models() for all "
        f"{len(names)} names (open_clip's plus {', '.join(PACKAGE_MODELS)})."
    )


def package_weights_path(name: str, tag: str) -> Path:
    """Where the package keeps (or caches) the weights for a package model tag."""
    fname = PACKAGE_MODELS[name][tag]
    shipped = WEIGHTS / fname
    if shipped.exists():
        return shipped
    cache = Path(os.environ.get("WISEFT_CACHE", Path.home() / ".cache" / "wiseft")) / "weights"
    return cache / fname


def resolve_pretrained(name: str, pretrained: Optional[str]) -> Optional[str]:
    """Map a package tag to a weights file; pass open_clip tags and paths through."""
    if pretrained in (RANDOM_INIT, ""):
        return None
    if name in PACKAGE_MODELS:
        tags = PACKAGE_MODELS[name]
        tag = pretrained or next(iter(tags))
        if tag in tags:
            path = package_weights_path(name, tag)
            if not path.exists():
                raise FileNotFoundError(
                    f"weights for {name!r} tag {tag!r} are not at {path}. Pretrain them with "
                    f"`wiseft pretrain-mini` (or the notebook notebooks/pretrain_mini_clip.ipynb)."
                )
            return str(path)
        if not Path(tag).exists():
            raise ValueError(
                f"unknown pretrained tag {tag!r} for {name!r}; known tags: {', '.join(tags)}, "
                f"{RANDOM_INIT!r}, or a path to a weights file"
            )
        return tag
    if pretrained is None and not name.startswith(("hf-hub:", "local-dir:")):  # random weights only by name
        tags = open_clip.list_pretrained_tags_by_model(name) if hasattr(open_clip, "list_pretrained_tags_by_model") else []
        known = f"its open_clip tags: {', '.join(tags)}; " if tags else ""
        raise ValueError(
            f"model {name!r} needs its weights named: pretrained is unset. Give {known}a weights file, or "
            f"pretrained={RANDOM_INIT!r} for random initialisation (used only when asked for by name)."
        )
    return pretrained


def create_model(
    name: str,
    pretrained: Optional[str] = None,
    device: Union[str, torch.device] = "cpu",
    precision: str = "fp32",
) -> tuple[nn.Module, Callable, Callable]:
    """Return ``(clip_model, train_transform, eval_transform)``.

    ``pretrained`` is an open_clip tag (``"openai"``), a weights file, ``"random"`` for random
    initialisation, or ``None``: the default tag for package models (``wiseft-mini`` ships
    trained weights); an open_clip model without a tag is an error (random weights only by name).
    """
    register_package_configs()
    _check_name(name)
    weights = resolve_pretrained(name, pretrained)
    # the tag's architecture too: open_clip 3 builds ViT-B-16 with GELU even for the "openai" tag (trained with
    # QuickGELU) and only warns; the reference code (open_clip 1.x, load_openai_model) used QuickGELU
    kwargs: dict[str, Any] = {**PACKAGE_PREPROCESS.get(name, {}), **tag_overrides(name, pretrained)}
    model, train_tf, eval_tf = open_clip.create_model_and_transforms(
        name, pretrained=weights, device=device, precision=precision, **kwargs
    )
    model.eval()
    return model, train_tf, eval_tf


def tag_overrides(name: str, pretrained: Optional[str]) -> dict[str, Any]:
    """open_clip kwargs that make a weight-less model match a pretrained tag (QuickGELU, preprocessing)."""
    if name in PACKAGE_MODELS or not pretrained or pretrained == RANDOM_INIT or Path(pretrained).exists():
        return {}
    cfg = open_clip.get_pretrained_cfg(name, pretrained) or {}
    kwargs: dict[str, Any] = {"force_quick_gelu": True} if cfg.get("quick_gelu") else {}
    for src, dst in (("mean", "image_mean"), ("std", "image_std"), ("interpolation", "image_interpolation"),
                     ("resize_mode", "image_resize_mode")):
        if cfg.get(src) is not None:
            kwargs[dst] = cfg[src]
    return kwargs


class _quiet_random_init(logging.Filter):
    """Drop open_clip's "No pretrained weights loaded" warning while active."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    def __enter__(self) -> None:
        logging.getLogger().addFilter(self)

    def __exit__(self, *exc) -> None:
        logging.getLogger().removeFilter(self)


def create_architecture(name: str, pretrained: Optional[str] = None,
                        device: Union[str, torch.device] = "cpu") -> tuple[nn.Module, Callable, Callable]:
    """What :func:`create_model` returns for ``(name, pretrained)``, with random weights and no download.

    The architecture and transforms follow the tag (e.g. OpenAI weights use QuickGELU and their
    own normalisation), so weights saved from such a model load into it exactly.
    """
    register_package_configs()
    _check_name(name)
    kwargs = {**PACKAGE_PREPROCESS.get(name, {}), **tag_overrides(name, pretrained)}
    with _quiet_random_init():  # random weights are the point here; the caller loads its own
        model, train_tf, eval_tf = open_clip.create_model_and_transforms(name, pretrained=None, device=device,
                                                                         **kwargs)
    model.eval()
    return model, train_tf, eval_tf


def text_context_length(name: str) -> Optional[int]:
    """The text tower's context length (tokens) from the model's open_clip config, None if it has no text tower
    config (a model name open_clip does not know: checked elsewhere)."""

    register_package_configs()
    config = open_clip.get_model_config(name) or {}
    length = (config.get("text_cfg") or {}).get("context_length")
    return int(length) if length is not None else (77 if config else None)


def get_tokenizer(name: str) -> Callable[[list[str]], torch.Tensor]:
    """Tokenizer matching the model's text tower."""
    if name in PACKAGE_MODELS:
        return MiniTokenizer()
    return open_clip.get_tokenizer(name)


class ClassificationHead(nn.Linear):
    """Linear head on L2-normalised features (the zero-shot head's form)."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                 normalize: bool = True):
        out_features, in_features = weight.shape
        super().__init__(in_features, out_features, bias=True)
        self.normalize = normalize
        with torch.no_grad():
            self.weight.copy_(weight)
            self.bias.copy_(bias if bias is not None else torch.zeros(out_features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            features = features / features.norm(dim=-1, keepdim=True)
        return super().forward(features)


def state_dict_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """Content hash of a state dict (keys, shapes, dtypes, values): a cache key for features."""

    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(f"{k}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- checkpoint checks (ImageClassifier.load)
_RESAVE = "save the model again with ImageClassifier.save (it writes both files), or copy both files again"


def _read_sidecar(side: Path, fmt: str) -> dict[str, Any]:
    """A checkpoint's JSON sidecar, checked: a mapping of ``fmt`` naming the model and the head shape."""
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"checkpoint sidecar {side} is not valid JSON ({err}); it is the .json file "
                         f"ImageClassifier.save writes next to the weights: {_RESAVE}") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{side} is not a wiseft ImageClassifier sidecar (format={found!r}); {_RESAVE}")
    shape = meta.get("head_shape")
    if not isinstance(meta.get("model_name"), str) or not (
            isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise ValueError(f"sidecar {side} lacks a 'model_name' (got {meta.get('model_name')!r}) or a 'head_shape' "
                         f"[classes, width] (got {shape!r}); {_RESAVE}")
    return meta


def _read_weights(path: Path, device: Union[str, torch.device]) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as err:  # SafetensorError is no ValueError: say what it means
        raise ValueError(f"{path} is not a readable safetensors file ({err}): it is corrupt or truncated (an "
                         f"interrupted copy or write?); {_RESAVE}") from None


def _check_weights(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path, meta: dict[str, Any]) -> None:
    """The weights file holds exactly the tensors of the model its sidecar describes, all finite."""
    expected = model.state_dict()

    def shown(keys: list[str]) -> str:
        return ", ".join(repr(k) for k in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    problems = ([f"it lacks {shown(missing)}"] if missing else []) + (
        [f"it has unexpected {shown(extra)}"] if extra else []) + [
        f"{k!r} is {tuple(tensors[k].shape)}, the sidecar's model needs {tuple(expected[k].shape)}" for k in wrong[:3]]
    if problems:
        raise ValueError(f"{path.name} does not match its sidecar {path.with_suffix('.json').name} (model "
                         f"{meta['model_name']!r}, head {meta['head_shape']}): {'; '.join(problems)}. The two files "
                         f"come from different models, or one was replaced: {_RESAVE}")
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"{path} holds non-finite weights (NaN or Inf) in {shown(bad)}: the run that wrote it "
                         f"diverged (train again with a lower learning rate) or the file is damaged; use an earlier "
                         f"checkpoint")


class ImageClassifier(nn.Module):
    """CLIP image tower + classification head, with safetensors save/load.

    ``meta`` records what rebuilds it: ``model_name``, ``pretrained``, ``classnames``,
    ``templates`` and anything else JSON-serialisable (e.g. the training config).
    """

    FORMAT = "wiseft.ImageClassifier/1"

    def __init__(self, image_encoder: nn.Module, classification_head: ClassificationHead,
                 meta: Optional[dict[str, Any]] = None):
        super().__init__()
        self.image_encoder = image_encoder
        self.classification_head = classification_head
        self.meta = dict(meta or {})

    @classmethod
    def from_clip(cls, clip_model: nn.Module, head: ClassificationHead, **meta: Any) -> "ImageClassifier":
        return cls(clip_model.visual, head, meta)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classification_head(self.image_encoder(images))

    def save(self, path: Union[str, Path]) -> Path:
        """Write ``path`` (.safetensors) and ``path`` with .json (the sidecar), atomically."""
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

        head = self.classification_head
        sidecar = {
            "format": self.FORMAT,
            "library_version": __version__,
            "head_shape": list(head.weight.shape),
            "head_normalize": head.normalize,
            **self.meta,
        }
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": self.FORMAT})
        atomic_write_json(path.with_suffix(".json"), sidecar)
        return path

    @classmethod
    def load(cls, path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> "ImageClassifier":
        """Rebuild from :meth:`save` output; weights load with no download."""
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        side = path.with_suffix(".json")
        if not path.exists() or not side.exists():
            raise FileNotFoundError(
                f"checkpoint {path} needs both {path.name} and {side.name}; found "
                f"{[p.name for p in (path, side) if p.exists()] or 'neither'}; pass the .safetensors file that "
                f"ImageClassifier.save or `wiseft finetune` wrote (its .json sidecar sits next to it)"
            )
        meta = _read_sidecar(side, cls.FORMAT)
        tensors = _read_weights(path, device)
        clip_model, _, _ = create_architecture(meta["model_name"], meta.get("pretrained"), device=device)
        out_f, in_f = meta["head_shape"]
        head = ClassificationHead(torch.zeros(out_f, in_f), normalize=meta.get("head_normalize", True))
        keep = {k: v for k, v in meta.items()
                if k not in ("format", "library_version", "head_shape", "head_normalize")}
        model = cls(clip_model.visual, head, keep)
        _check_weights(model, tensors, path, meta)
        model.load_state_dict(tensors)
        return model.to(device).eval()
