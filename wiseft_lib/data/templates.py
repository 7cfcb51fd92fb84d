"""Prompt templates for zero-shot heads, as Python format strings.

A template holds ``{}`` (the class name as given) or one of the named placeholders of
:data:`PLACEHOLDERS`: ``{a}`` (the name with its article, "an airport hangar") and
``{plural}`` ("many {plural}"); :func:`fill_template` fills one, :func:`check_template` says
what is wrong with one.

``IMAGENET_TEMPLATES`` are the 80 templates of CLIP's ImageNet zero-shot evaluation (the
paper's zero-shot head averages over all of them). The per-dataset lists follow CLIP's
published prompts (``openai/CLIP`` ``data/prompts.md``) for the transfer datasets and the
official WiSE-FT code for the WILDS datasets. Use :func:`get_templates` to look one up by
dataset name (the same names as the dataset registry).

    >>> fill_template(IMAGENET_TEMPLATES[0], "goldfish")
    'a bad photo of a goldfish.'
    >>> fill_template("aerial photo of {a}.", "airport_hangar")
    'aerial photo of an airport hangar.'
"""
from __future__ import annotations

import string

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

# The official WiSE-FT code's 16 FMoW templates, in its order; the third and fourth give the name
# its own article ("an airport", "an airport hangar"): the {a} placeholder.
FMOW_TEMPLATES: list[str] = [
    "satellite photo of a {}.",
    "aerial photo of a {}.",
    "satellite photo of {a}.",
    "aerial photo of {a}.",
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


# ------------------------------------------------------------------------------ filling a template
PLACEHOLDERS: dict[str, str] = {
    "{}": "the class name as given",
    "{a}": "the class name with 'a' or 'an' (by its first letter, lower-case vowels as in the official code) and "
           "underscores as spaces: 'an airport hangar'",
    "{plural}": "the class name's plural (simple English rules, underscores as spaces): 'many boxes'",
}


def with_article(name: str) -> str:
    """``"an " + name`` for a name starting with a lower-case vowel, else ``"a " + name``; ``_`` as spaces."""
    name = name.replace("_", " ")
    return f"{'an' if name[:1] in tuple('aeiou') else 'a'} {name}"


# (ending, letters dropped, added), first match wins, else "+s": the official code's rules
_PLURAL_RULES = (("sh", 0, "es"), ("ch", 0, "es"), ("y", 1, "ies"), ("s", 0, "es"), ("x", 0, "es"),
                 ("man", 3, "men"), ("f", 1, "ves"))


def plural(name: str) -> str:
    """The plural by simple English rules (bus -> buses, box -> boxes, fly -> flies, wolf -> wolves, mouse -> mice,
    fireman -> firemen); ``_`` as spaces."""
    name = name.replace("_", " ")
    if name == "mouse":
        return "mice"
    for ending, dropped, added in _PLURAL_RULES:
        if name.endswith(ending):
            return name[: len(name) - dropped] + added
    return name + "s"


def _fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:  # an unmatched brace
        raise ValueError(f"template {template!r} is not a format string ({err}); write the class name as {{}} "
                         f"and a literal brace as {{{{ or }}}}") from None


def check_template(template: str) -> None:
    """A clear ``ValueError`` unless ``template`` is a string with a class-name placeholder and no other field."""
    if not isinstance(template, str):
        raise ValueError(f"template {template!r} is not a string")
    fields = _fields(template)
    unknown = sorted({f for f in fields if f not in ("", "a", "plural")})
    if unknown:
        raise ValueError(f"template {template!r} has unknown placeholder(s) {', '.join('{' + f + '}' for f in unknown)}"
                         f"; the placeholders are {', '.join(PLACEHOLDERS)}")
    if not fields:
        raise ValueError(f"template {template!r} has no '{{}}' placeholder for the class name; write it with one, "
                         f"e.g. 'a photo of a {{}}.' (or {{a}} for the name with its article: 'a photo of {{a}}.')")


def fill_template(template: str, classname: str) -> str:
    """The prompt for one class: ``{}`` is the name as given, ``{a}`` and ``{plural}`` as in :data:`PLACEHOLDERS`."""
    check_template(template)
    n_positional = sum(f == "" for f in _fields(template))
    return template.format(*[classname] * n_positional, a=with_article(classname), plural=plural(classname))


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
    "PLACEHOLDERS",
    "check_template",
    "fill_template",
    "get_templates",
    "plural",
    "with_article",
]
