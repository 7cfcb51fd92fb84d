"""The zero-shot head equals the paper's recipe computed by hand."""
import pytest
import torch

from wiseft_lib.core.models import ImageClassifier
from wiseft_lib.core.zeroshot import IMAGENET_TEMPLATES, SIMPLE_TEMPLATES, zeroshot_head

from helpers import tiny_clip, toy_tokenizer


def test_head_matches_direct_computation():
    model = tiny_clip()
    classes, templates = ["cat", "dog", "ankle boot"], ["a photo of a {}.", "a sketch of the {}.", "{}"]
    head = zeroshot_head(model, classes, templates, toy_tokenizer)
    with torch.no_grad():
        expected = []
        for c in classes:
            e = model.encode_text(toy_tokenizer([t.format(c) for t in templates]))
            e = e / e.norm(dim=-1, keepdim=True)
            m = e.mean(0)
            expected.append(m / m.norm())
        expected = torch.stack(expected) * model.logit_scale.exp()
    assert torch.allclose(head.weight, expected, atol=1e-6)
    assert torch.equal(head.bias, torch.zeros(3))
    # the head normalises image features: logits are cosine similarity times the logit scale
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        f = model.encode_image(x)
        logits = ImageClassifier(model.visual, head)(x)
        direct = (f / f.norm(dim=-1, keepdim=True)) @ expected.T
    assert torch.allclose(logits, direct, atol=1e-5)


def test_templates_and_errors():
    assert len(IMAGENET_TEMPLATES) == 80 and SIMPLE_TEMPLATES == ["a photo of a {}."]
    with pytest.raises(ValueError, match="placeholder"):
        zeroshot_head(tiny_clip(), ["cat"], ["a photo"], toy_tokenizer)
    with pytest.raises(ValueError, match="at least one"):
        zeroshot_head(tiny_clip(), [], ["{}"], toy_tokenizer)


def test_named_placeholders_give_the_article_and_the_plural():
    from wiseft_lib.data.templates import FMOW_TEMPLATES, fill_template, plural

    # the official FMoW prompts: 16, two of them with the name's own article and underscores as spaces
    assert len(FMOW_TEMPLATES) == 16 and len(set(FMOW_TEMPLATES)) == 16
    prompts = {name: [fill_template(t, name) for t in FMOW_TEMPLATES] for name in ("airport", "airport_hangar", "dam")}
    assert prompts["airport"][:4] == ["satellite photo of a airport.", "aerial photo of a airport.",
                                      "satellite photo of an airport.", "aerial photo of an airport."]
    assert prompts["airport_hangar"][2:4] == ["satellite photo of an airport hangar.", "aerial photo of an airport hangar."]
    assert prompts["dam"][2] == "satellite photo of a dam." and prompts["airport_hangar"][-1] == "airport_hangar."
    assert [plural(n) for n in ("bus", "box", "fly", "wolf", "mouse", "fireman", "brush", "cat")] == [
        "buses", "boxes", "flies", "wolves", "mice", "firemen", "brushes", "cats"]
    assert fill_template("many {plural} and {a} and {}", "ox") == "many oxes and an ox and ox"


@pytest.mark.parametrize("template, message", [
    ("a photo", r"has no '\{\}' placeholder for the class name; write it with one.*\{a\}"),
    ("a photo of {classname}", r"unknown placeholder\(s\) \{classname\}; the placeholders are \{\}, \{a\}, \{plural\}"),
    ("a {", r"is not a format string .*a literal brace as \{\{"),
])
def test_a_bad_template_says_what_is_wrong(template, message):
    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.params import ParamsError

    with pytest.raises(ValueError, match=message):
        zeroshot_head(tiny_clip(), ["cat"], [template], toy_tokenizer)
    with pytest.raises(ParamsError, match="parameter 'templates': .*" + message):
        CurveConfig(templates=["a photo of a {}.", template])


def test_a_head_from_article_templates_differs_per_name():
    """{a} is filled per class: 'an owl' and 'a cat' are different prompts, so the two heads differ."""
    head = zeroshot_head(tiny_clip(), ["owl", "cat"], ["a photo of {a}."], toy_tokenizer)
    plain = zeroshot_head(tiny_clip(), ["owl", "cat"], ["a photo of a {}."], toy_tokenizer)
    assert not torch.equal(head.weight[0], plain.weight[0])  # "an owl" vs "a owl"
    assert torch.equal(head.weight[1], plain.weight[1])  # "a cat" either way
