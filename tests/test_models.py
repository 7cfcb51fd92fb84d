"""Models: the package's wiseft-mini through open_clip's code path, save/load, tokenizer."""
import json

import pytest
import torch

from wiseft_lib.core.models import ClassificationHead, ImageClassifier, create_model, list_models
from wiseft_lib.mini.pretrain import CONFIG_PATH, MiniTokenizer, caption_corpus


def test_mini_model_is_an_open_clip_model_with_transforms():
    clip_model, train_tf, eval_tf = create_model("wiseft-mini", pretrained="random")
    assert "wiseft-mini" in list_models()
    x = torch.rand(2, 3, 28, 28)
    assert clip_model.encode_image(x).shape == (2, 128)
    from PIL import Image

    img = Image.new("RGB", (28, 28))
    assert eval_tf(img).shape == train_tf(img).shape == (3, 28, 28)


def test_shipped_weights_load_by_default():
    clip_model, _, _ = create_model("wiseft-mini")
    random_model, _, _ = create_model("wiseft-mini", pretrained="random")
    a, b = clip_model.state_dict(), random_model.state_dict()
    assert a.keys() == b.keys()
    assert not torch.equal(a["visual.conv1.weight"], b["visual.conv1.weight"])


def test_unknown_model_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown model name 'ViT-B-61'.*ViT-B-16"):
        create_model("ViT-B-61")


def test_unknown_pretrained_tag_for_package_model():
    with pytest.raises(ValueError, match="known tags: fmnist"):
        create_model("wiseft-mini", pretrained="laion2b")


def test_save_load_round_trip_gives_identical_logits(tmp_path):
    clip_model, _, _ = create_model("wiseft-mini", pretrained="random")
    head = ClassificationHead(torch.randn(10, 128), torch.randn(10))
    clf = ImageClassifier.from_clip(clip_model, head, model_name="wiseft-mini", classnames=list("abcdefghij"))
    x = torch.rand(4, 3, 28, 28)
    with torch.no_grad():
        before = clf.eval()(x)
    path = clf.save(tmp_path / "clf")
    assert path.suffix == ".safetensors" and path.with_suffix(".json").exists()
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["head_shape"] == [10, 128] and side["classnames"] == list("abcdefghij")
    loaded = ImageClassifier.load(path)
    with torch.no_grad():
        assert torch.equal(loaded(x), before)
    assert not list(tmp_path.glob(".*.tmp")), "atomic writes leave no temporary files"


def test_load_missing_checkpoint_names_both_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="needs both"):
        ImageClassifier.load(tmp_path / "nothing.safetensors")


def test_image_tower_loads_into_open_clip(tmp_path):
    """The image-tower weights are open_clip's `visual.*` under an `image_encoder.` prefix."""
    clip_model, _, _ = create_model("wiseft-mini", pretrained="random")
    clf = ImageClassifier.from_clip(clip_model, ClassificationHead(torch.randn(3, 128)), model_name="wiseft-mini")
    fresh, _, _ = create_model("wiseft-mini", pretrained="random")
    visual = {k.removeprefix("image_encoder."): v for k, v in clf.state_dict().items() if k.startswith("image_encoder.")}
    fresh.visual.load_state_dict(visual)
    x = torch.rand(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(fresh.encode_image(x), clip_model.encode_image(x))


def test_tokenizer_covers_every_caption_and_pools_at_end_of_text():
    tok = MiniTokenizer()
    config = json.loads(CONFIG_PATH.read_text())
    assert config["text_cfg"]["vocab_size"] == tok.vocab_size
    tokens = tok(caption_corpus())
    assert not (tokens == tok.UNK).any(), "every caption word is in the frozen vocabulary"
    assert (tokens.argmax(dim=1) == (tokens != 0).sum(dim=1) - 1).all(), "end-of-text is the largest id"
    assert tok(["a bad photo of a dog."])[0].tolist().count(tok.UNK) == 2


def test_systematic_caption_noise_renames_a_fixed_coherent_share_within_groups():
    from wiseft_lib.data.mini import CONFUSABLE_GROUPS
    from wiseft_lib.mini.pretrain import systematic_names

    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat(40)
    x = torch.rand(len(y), 1, 28, 28, generator=g) * (1 + y.view(-1, 1, 1, 1) % 3)
    torch.manual_seed(0)
    named = systematic_names(x, y, 0.25)
    torch.manual_seed(0)
    assert torch.equal(named, systematic_names(x, y, 0.25)), "the same seed gives the same captions"
    grouped = {c for grp in CONFUSABLE_GROUPS for c in grp}
    for c in range(10):
        renamed = named[y == c] != c
        if c in grouped:
            assert renamed.sum().item() == 10  # 25% of 40
            grp = next(g for g in CONFUSABLE_GROUPS if c in g)
            assert set(named[y == c][renamed].tolist()) == {grp[(grp.index(c) + 1) % len(grp)]}
        else:
            assert not renamed.any()


def test_pretraining_budget_tags_load_and_more_pretraining_is_a_better_zero_shot_model(fashion_mnist_root):
    from wiseft_lib.core.models import list_pretrained
    from wiseft_lib.experiment.reference import zeroshot_scores, zeroshot_scores_many

    tags = [t for _, t in list_pretrained("wiseft-mini")]
    assert tags == ["fmnist", "fmnist-budget5", "fmnist-budget12", "fmnist-budget25"]
    scores = zeroshot_scores_many("wiseft-mini", tags, datasets=("mini-photo",), n_test=1000)
    acc = {t: s["mini-photo"] for t, s in zip(tags, scores)}
    assert zeroshot_scores("wiseft-mini", "fmnist-budget5", datasets=("mini-photo",), n_test=1000) == scores[1]
    assert acc["fmnist-budget5"] < acc["fmnist-budget25"] < acc["fmnist"], acc
    assert acc["fmnist-budget5"] > 30, "even the smallest budget is a real zero-shot model"


def test_open_clip_models_get_random_weights_only_when_asked_by_name():
    with pytest.raises(ValueError, match="pretrained is unset.*'random'"):
        create_model("ViT-B-32")
    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.params import ParamsError

    with pytest.raises(ParamsError, match="pretrained.*no default weights"):
        CurveConfig(model="ViT-B-32")
    assert CurveConfig(model="ViT-B-32", pretrained="random").pretrained == "random"


def test_an_openai_tag_builds_the_quickgelu_architecture_its_weights_were_trained_with(monkeypatch):
    """open_clip 3 builds ViT-B-16 with GELU for pretrained="openai" and only warns; those weights (and the paper's
    code, through open_clip 1.x's load_openai_model) use QuickGELU. create_model asks for it (no download here)."""
    import open_clip

    from wiseft_lib.core import models

    seen = {}

    def fake(name, pretrained=None, **kwargs):
        seen.update(kwargs, name=name, pretrained=pretrained)
        return torch.nn.Identity(), None, None

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake)
    models.create_model("ViT-B-16", "openai")
    assert seen["force_quick_gelu"] is True and seen["pretrained"] == "openai"
    seen.clear()
    models.create_model("ViT-B-16", "laion2b_s34b_b88k")  # a tag trained with GELU: left as it is
    assert "force_quick_gelu" not in seen


def test_runs_of_quickgelu_tags_are_keyed_apart_from_those_made_with_gelu():
    """Runs cached before create_model used QuickGELU for OpenAI tags hold a GELU tower's numbers: their key changes
    (and only theirs: the mini's and GELU tags' runs stay valid)."""
    from wiseft_lib.experiment.endpoints import weights_identity

    assert weights_identity("ViT-B-16", "openai", 0) == {"tag": "openai", "activation": "quick_gelu"}
    assert weights_identity("ViT-B-16", "laion2b_s34b_b88k", 0) == {"tag": "laion2b_s34b_b88k"}
    assert set(weights_identity("wiseft-mini", None, 0)) == {"tag", "sha256"}
