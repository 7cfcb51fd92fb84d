"""Prompt templates for zero-shot heads, as Python format strings with one ``{}``.

``IMAGENET_TEMPLATES`` are the 80 templates of CLIP's ImageNet zero-shot evaluation (the
paper's zero-shot head averages over all of them). The per-dataset lists follow CLIP's
published prompts (``openai/CLIP`` ``data/prompts.md``) for the transfer datasets and the
official WiSE-FT code for the WILDS datasets. Use :func:`get_templates` to look one up by
dataset name (the same names as the dataset registry).

    >>> IMAGENET_TEMPLATES[0].format("goldfish")
    'a bad photo of a goldfish.'
"""
from __future__ import annotations

IMAGENET_TEMPLATES: list[str] = [
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
]

SIMPLE_TEMPLATES: list[str] = ["a photo of a {}."]

# Your own data (image folders, wiseft_lib.data.folder): a few of CLIP's ImageNet templates that fit any
# object-like class name.
GENERIC_TEMPLATES: list[str] = [
    "a photo of a {}.",
    "a photo of the {}.",
    "a blurry photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of the {}.",
    "a close-up photo of a {}.",
    "a good photo of a {}.",
    "a bad photo of a {}.",
]

CIFAR_TEMPLATES: list[str] = [
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a black and white photo of a {}.",
    "a low contrast photo of a {}.",
    "a high contrast photo of a {}.",
    "a bad photo of a {}.",
    "a good photo of a {}.",
    "a photo of a small {}.",
    "a photo of a big {}.",
    "a photo of the {}.",
    "a blurry photo of the {}.",
    "a black and white photo of the {}.",
    "a low contrast photo of the {}.",
    "a high contrast photo of the {}.",
    "a bad photo of the {}.",
    "a good photo of the {}.",
    "a photo of the small {}.",
    "a photo of the big {}.",
]

DTD_TEMPLATES: list[str] = [
    "a photo of a {} texture.",
    "a photo of a {} pattern.",
    "a photo of a {} thing.",
    "a photo of a {} object.",
    "a photo of the {} texture.",
    "a photo of the {} pattern.",
    "a photo of the {} thing.",
    "a photo of the {} object.",
]

FOOD101_TEMPLATES: list[str] = ["a photo of {}, a type of food."]

SUN397_TEMPLATES: list[str] = ["a photo of a {}.", "a photo of the {}."]

CARS_TEMPLATES: list[str] = [
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of my {}.",
    "i love my {}!",
    "a photo of my dirty {}.",
    "a photo of my clean {}.",
    "a photo of my new {}.",
    "a photo of my old {}.",
]

# The official code also has two "satellite/aerial photo of {a|an} {}." templates whose
# article depends on the class name; format strings cannot express that, so they are left
# out (for consonant-initial names they duplicate the first two templates anyway).
FMOW_TEMPLATES: list[str] = [
    "satellite photo of a {}.",
    "aerial photo of a {}.",
    "satellite photo of a {} in asia.",
    "aerial photo of a {} in asia.",
    "satellite photo of a {} in africa.",
    "aerial photo of a {} in africa.",
    "satellite photo of a {} in the americas.",
    "aerial photo of a {} in the americas.",
    "satellite photo of a {} in europe.",
    "aerial photo of a {} in europe.",
    "satellite photo of a {} in oceania.",
    "aerial photo of a {} in oceania.",
    "a photo of a {}.",
    "{}.",
]

IWILDCAM_TEMPLATES: list[str] = ["a photo of {}.", "{} in the wild."]

_BY_DATASET: dict[str, list[str]] = {
    "imagenet": IMAGENET_TEMPLATES,
    "cifar10": CIFAR_TEMPLATES,
    "cifar100": CIFAR_TEMPLATES,
    "dtd": DTD_TEMPLATES,
    "food101": FOOD101_TEMPLATES,
    "sun397": SUN397_TEMPLATES,
    "stanford-cars": CARS_TEMPLATES,
    "fmow": FMOW_TEMPLATES,
    "iwildcam": IWILDCAM_TEMPLATES,
    "simple": SIMPLE_TEMPLATES,
    "generic": GENERIC_TEMPLATES,
}

# Dataset families: every ImageNet shift is prompted like ImageNet, CIFAR-10.x like CIFAR-10.
_ALIASES: dict[str, str] = {
    "imagenet-v2": "imagenet",
    "imagenet-r": "imagenet",
    "imagenet-a": "imagenet",
    "imagenet-sketch": "imagenet",
    "objectnet": "imagenet",
    "imagenet-vid-robust": "imagenet",
    "ytbb-robust": "imagenet",
    "cifar10.1": "cifar10",
    "cifar10.2": "cifar10",
    "cars": "stanford-cars",
    "wilds-fmow": "fmow",
    "wilds-iwildcam": "iwildcam",
}


def get_templates(name: str) -> list[str]:
    """Templates for a dataset (registry name, or family name such as ``"imagenet"``).

    Names with a suffix (``"imagenet-r-subsampled"``, ``"fmow-ood"``) fall back to the
    longest known prefix. Returns a copy; unknown names raise ``KeyError``.
    """
    key = name.lower()
    candidates = sorted(set(_BY_DATASET) | set(_ALIASES), key=len, reverse=True)
    for known in [key] + [c for c in candidates if key.startswith(c + "-")]:
        if known in _ALIASES:
            known = _ALIASES[known]
        if known in _BY_DATASET:
            return list(_BY_DATASET[known])
    raise KeyError(
        f"no templates for {name!r}; known: {', '.join(sorted(set(_BY_DATASET) | set(_ALIASES)))}"
    )


__all__ = [
    "CARS_TEMPLATES",
    "CIFAR_TEMPLATES",
    "DTD_TEMPLATES",
    "FMOW_TEMPLATES",
    "FOOD101_TEMPLATES",
    "GENERIC_TEMPLATES",
    "IMAGENET_TEMPLATES",
    "IWILDCAM_TEMPLATES",
    "SIMPLE_TEMPLATES",
    "SUN397_TEMPLATES",
    "get_templates",
]
