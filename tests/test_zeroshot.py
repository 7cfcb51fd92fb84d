"""The zero-shot head equals the paper's recipe computed by hand."""
import pytest
import torch
from conftest import tiny_clip, toy_tokenizer

from wiseft_lib.models import ImageClassifier
from wiseft_lib.zeroshot import IMAGENET_TEMPLATES, SIMPLE_TEMPLATES, zeroshot_head


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
