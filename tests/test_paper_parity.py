"""The paper's setting, rule for rule as the paper's own code (mlfoundations/wise-ft), pinned.

PARITY is the table the README's "Parity with the paper's code" section shows: every rule the paper's numbers
depend on, the package's choice, the official code's, and whether they are the same (or differ on purpose, and
why). Lists are pinned as facts (count, first and last entry, a SHA-256 digest of the whole list, one entry per
line), computed once from the official code's lists and the package's and found equal; the official lists are
never copied here. A change to any list fails its row's test, which says which rule moved.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# (rule, the package, the official code, status)
PARITY: list[tuple[str, str, str, str]] = [
    ("ImageNet class names", "1000 names, `imagenet_classnames()`", "`imagenet_classnames.py` (openai)", "same"),
    ("ImageNet templates", "the 80 OpenAI templates", "`openai_imagenet_template`", "same"),
    ("Zero-shot head", "per class: embed every template, L2-normalise, average, L2-normalise, x exp(logit_scale)",
     "`get_zeroshot_classifier`", "same"),
    ("ImageNet-R classes", "200 ImageNet indices, in ImageNet order", "`imagenet_r.CLASS_SUBLIST`", "same"),
    ("ImageNet-A classes", "200 ImageNet indices, in ImageNet order", "`imagenet_a.CLASS_SUBLIST`", "same"),
    ("ImageNet-V2 labels", "folder name = ImageNet label index", "`ImageNetV2` folders", "same"),
    ("ObjectNet classes", "113 classes sorted by folder, lower-case names, 125 ImageNet indices grouped per class",
     "`objectnet.get_metadata`", "same"),
    ("ObjectNet projection", "max over each class's ImageNet logits", "`project_logits` (max)", "same"),
    ("ObjectNet images", "2-pixel border crop; images outside the 113 classes dropped", "`crop`, `ObjectNetDataset`",
     "same"),
    ("FMoW class names", "62 WILDS categories, underscores kept in {}", "`FMOW.classnames`", "same"),
    ("FMoW templates", "16, two with the name's own article ({a}: 'an airport hangar')", "`fmow_template`", "same"),
    ("FMoW metrics", "ID accuracy; OOD worst-region accuracy (regions with images, 'Other' excluded)",
     "WILDS `FMoWDataset.eval`", "same"),
    ("iWildCam class names", "182 lower-case English names (labels.csv, y < 99999)", "`IWildCam.classnames`", "same"),
    ("iWildCam templates", "'a photo of {}.', '{} in the wild.'", "`iwildcam_template`", "same"),
    ("iWildCam metric", "macro-F1 over the classes present in the labels", "WILDS `IWildCamDataset.eval`", "same"),
    ("CIFAR-10 class names", "torchvision's batches.meta (airplane ... truck)", "`cifar_classnames`", "same"),
    ("Transfer templates (CIFAR, DTD, Food-101, SUN397, Cars)", "CLIP's published prompts",
     "CLIP `data/prompts.md` (the official code has none)", "same"),
    ("Stanford Cars names", "CLIP's names, slash kept ('Ram C/V Cargo Van Minivan 2012')", "CLIP's class list",
     "same"),
    ("SUN397 names", "'/' and '_' as spaces ('apartment building outdoor')", "CLIP's class list", "same"),
    ("YTBB-Robust labels", "the official reviewed annotations (anchor and pm-k labels) with the anchors CSV's "
     "labels 22 and 23 swapped, when the files are given; else the release's labels.json with a warning",
     "`YtbbPmkDataset`", "same"),
    ("YTBB-Robust unmapped classes", "cow, giraffe, skateboard, toilet at logit 0.0", "`project_logits` (zeros)",
     "same"),
    ("YTBB-Robust 'none'", "never predicted: its logit is -inf, the caller's logits untouched",
     "`project_logits`: -1e10 subtracted in place", "differs on purpose: the same predictions without changing the "
     "caller's tensor"),
    ("YTBB-Robust missing frames", "skipped with a warning and counted (`skipped`); a missing anchor drops its group",
     "KeyError", "differs on purpose: the package's rule for unreadable files everywhere"),
    ("ImageNet-Vid-Robust unmapped classes", "logit 0.0 (the class map covers all 30 classes, so none is empty)",
     "`project_logits` (zeros)", "same"),
    ("Optimal alpha", "chosen on the evaluation sets and labelled oracle", "the paper's definition", "same"),
]


def digest(items) -> str:
    return hashlib.sha256("\n".join(map(str, items)).encode()).hexdigest()[:16]


def pinned(items, n: int, first, last, sha: str) -> None:
    assert (len(items), items[0], items[-1]) == (n, first, last)
    assert digest(items) == sha


def test_imagenet_names_templates_and_subsets():
    from wiseft_lib.data.imagenet import imagenet_classnames, subset_indices
    from wiseft_lib.data.templates import IMAGENET_TEMPLATES

    pinned(imagenet_classnames(), 1000, "tench", "toilet paper", "571ae1c583b4be7d")
    pinned(IMAGENET_TEMPLATES, 80, "a bad photo of a {}.", "a tattoo of the {}.", "4f976686fb651bb5")
    pinned(subset_indices("imagenet-r"), 200, 1, 988, "66d45f31879983bd")
    pinned(subset_indices("imagenet-a"), 200, 6, 988, "c956c2f04f2a0ba3")


def test_objectnet_classes_groups_and_projection():
    from wiseft_lib.data.common import MaxProjection
    from wiseft_lib.data.imagenet import objectnet_classes, objectnet_imagenet_groups

    classes, groups = objectnet_classes(), objectnet_imagenet_groups()
    rows = [f"{c['folder']}|{c['name'].lower()}|{sorted(g)}" for c, g in zip(classes, groups)]
    pinned(rows, 113, "alarm_clock|alarm clock|[409, 530]", "wok|wok|[909]", "3f7bb70f88071346")
    flat = [i for g in groups for i in g]
    assert len(flat) == len(set(flat)) == 125  # each ImageNet class feeds one ObjectNet class
    logits = torch.randn(4, 1000)
    projected = MaxProjection(groups)(logits)
    assert torch.equal(projected[:, 0], logits[:, groups[0]].amax(dim=1))


def test_wilds_names_and_templates():
    from wiseft_lib.data.templates import FMOW_TEMPLATES, IWILDCAM_TEMPLATES, fill_template
    from wiseft_lib.data.wilds import fmow_categories, iwildcam_classnames

    pinned(fmow_categories(), 62, "airport", "zoo", "6be43999c3199002")
    pinned(iwildcam_classnames(), 182, "empty", "central american red brocket", "1e47c0432a523bbc")
    pinned(IWILDCAM_TEMPLATES, 2, "a photo of {}.", "{} in the wild.", "41418b93c0dfff68")
    prompts = [fill_template(t, c) for c in ("airport", "airport_hangar") for t in FMOW_TEMPLATES]
    pinned(prompts, 32, "satellite photo of a airport.", "airport_hangar.", "3d52afffb5d8c41a")
    assert "aerial photo of an airport hangar." in prompts


def test_transfer_templates():
    from wiseft_lib.data import templates as t

    pinned(t.CIFAR_TEMPLATES, 18, "a photo of a {}.", "a photo of the big {}.", "9bbf912e1144ca4c")
    pinned(t.DTD_TEMPLATES, 8, "a photo of a {} texture.", "a photo of the {} object.", "1f6888d2130f62a4")
    pinned(t.FOOD101_TEMPLATES, 1, "a photo of {}, a type of food.", "a photo of {}, a type of food.",
           "77a79bac7d9cf25b")
    pinned(t.SUN397_TEMPLATES, 2, "a photo of a {}.", "a photo of the {}.", "c97a3d1ad5819800")
    pinned(t.CARS_TEMPLATES, 8, "a photo of a {}.", "a photo of my old {}.", "255ecc632c41182c")


def test_class_name_rules_of_the_transfer_sets():
    from wiseft_lib.data.transfer import clean_name

    assert clean_name("Ram C/V Cargo Van Minivan 2012", keep_slash=True) == "Ram C/V Cargo Van Minivan 2012"
    assert clean_name("apartment_building/outdoor") == "apartment building outdoor"
    assert clean_name("apple_pie") == "apple pie"


def test_ytbb_projection_is_the_official_codes():
    """cow, giraffe, skateboard, toilet keep logit 0.0 (the official code's zeros), 'none' is never predicted; the
    reviewed-annotation rules themselves are tested in test_ytbb_parity.py against a by-hand official scorer."""
    from wiseft_lib.data.video import ytbb_classes, ytbb_projection

    names, groups = ytbb_classes()
    assert (len(names), names[22], names[23]) == (24, "none", "car")  # the official class index, after its swap
    assert [n for n, g in zip(names, groups) if not g] == ["cow", "giraffe", "skateboard", "toilet", "none"]
    logits = torch.full((1, 1000), -3.0)
    projected = ytbb_projection()(logits)[0]
    assert [float(projected[names.index(n)]) for n in ("cow", "giraffe", "skateboard", "toilet")] == [0.0] * 4
    assert projected[22] == float("-inf") and int(projected.argmax()) == names.index("cow")


def test_the_readme_shows_the_parity_table():
    """The README's section lists every rule of PARITY with its status (the two cannot drift apart)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Parity with the paper's code"):]
    section = section[: section.find("\n## ", 4)] if "\n## " in section[4:] else section
    for rule, _, _, status in PARITY:
        row = re.search(rf"^\| {re.escape(rule)} \|.*\| {re.escape(status)} \|$", section, re.M)
        assert row, f"README's parity section lacks the row for {rule!r} ({status})"
    assert all(status == "same" or status.startswith("differs on purpose: ") for *_, status in PARITY)


def parity_markdown() -> str:
    """The README section's table, from PARITY (``python tests/test_paper_parity.py`` prints it)."""
    lines = ["| rule | the package | the official code | status |", "|---|---|---|---|"]
    lines += [f"| {rule} | {ours} | {theirs} | {status} |" for rule, ours, theirs, status in PARITY]
    return "\n".join(lines)


if __name__ == "__main__":
    print(parity_markdown())

