"""Zero-shot classification heads from prompt templates, built as in the paper.

Per class: embed every template filled with the class name, L2-normalise each embedding,
average, L2-normalise again, and multiply by ``exp(logit_scale)``. The head normalises image
features itself, so ``head(image_encoder(x))`` are CLIP's zero-shot logits.

    from wiseft_lib.core.models import create_model, get_tokenizer
    from wiseft_lib.core.zeroshot import zeroshot_classifier
    clip, _, eval_tf = create_model("wiseft-mini")
    clf = zeroshot_classifier(clip, "wiseft-mini", ["t-shirt", "trouser"], ["a photo of a {}."])
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn

from wiseft_lib.core.models import ClassificationHead, ImageClassifier, get_tokenizer
from wiseft_lib.data.templates import IMAGENET_TEMPLATES, SIMPLE_TEMPLATES, fill_template

__all__ = ["IMAGENET_TEMPLATES", "SIMPLE_TEMPLATES", "zeroshot_weights", "zeroshot_head", "zeroshot_classifier"]


@torch.no_grad()
def zeroshot_weights(clip_model: nn.Module, classnames: Sequence[str], templates: Sequence[str],
                     tokenizer: Callable[[list[str]], torch.Tensor],
                     device: Optional[torch.device] = None) -> torch.Tensor:
    """``[n_classes, embed_dim]`` matrix of normalised class embeddings times ``exp(logit_scale)``."""
    if not classnames or not templates:
        raise ValueError("a zero-shot head needs at least one class name and one template")
    device = device or next(clip_model.parameters()).device
    was_training = clip_model.training
    clip_model.eval()
    rows = []
    for name in classnames:
        tokens = tokenizer([fill_template(t, name) for t in templates]).to(device)
        emb = clip_model.encode_text(tokens).float()
        emb = emb / emb.norm(dim=-1, keepdim=True)
        mean = emb.mean(dim=0)
        rows.append(mean / mean.norm())
    clip_model.train(was_training)
    return torch.stack(rows) * clip_model.logit_scale.exp().float()


def zeroshot_head(clip_model: nn.Module, classnames: Sequence[str], templates: Sequence[str],
                  tokenizer: Callable[[list[str]], torch.Tensor]) -> ClassificationHead:
    """The zero-shot :class:`ClassificationHead` (zero bias, normalising its input)."""
    weights = zeroshot_weights(clip_model, classnames, templates, tokenizer).cpu()
    return ClassificationHead(weights, normalize=True)


def zeroshot_classifier(clip_model: nn.Module, model_name: str, classnames: Sequence[str],
                        templates: Sequence[str], pretrained: Optional[str] = None) -> ImageClassifier:
    """Image tower + zero-shot head, with the metadata :meth:`ImageClassifier.save` records."""
    head = zeroshot_head(clip_model, classnames, templates, get_tokenizer(model_name))
    device = next(clip_model.parameters()).device
    return ImageClassifier(clip_model.visual, head.to(device), {
        "model_name": model_name, "pretrained": pretrained,
        "classnames": list(classnames), "templates": list(templates),
    })
