"""CoOp: a context equal to real words reproduces encode_text; training moves only the context."""
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

from wiseft_lib.baselines.coop import CoOpConfig, PromptLearner, coop_head, coop_lr, text_features, train_coop
from wiseft_lib.core.evaluate import evaluate_head
from wiseft_lib.core.models import create_model, get_tokenizer
from wiseft_lib.core.zeroshot import zeroshot_head
from wiseft_lib.data.fashion_mnist import CLASSNAMES
from wiseft_lib.data.registry import DatasetBundle

from helpers import TINY_CFG, tiny_clip, toy_tokenizer

TOY_CLASSES = ["cat", "dog", "bird", "fish", "horse", "frog", "ship", "truck"]  # one toy token each


def _check_equivalence(clip, tokenizer, classes, prefix="a photo of a"):
    """ctx := token embeddings of ``prefix``'s words (set by hand and via ctx_init) == encode_text."""
    prompts = [f"{prefix} {c}." for c in classes]
    real = tokenizer(prompts)
    with torch.no_grad():
        expected = F.normalize(clip.encode_text(real).float(), dim=-1)
    by_init = PromptLearner(clip, classes, tokenizer, ctx_init=prefix)
    words = tokenizer([prefix])[0, 1:1 + by_init.n_ctx]
    by_hand = PromptLearner(clip, classes, tokenizer, n_ctx=by_init.n_ctx)
    with torch.no_grad():
        by_hand.ctx.copy_(clip.token_embedding(words))
    for learner in (by_init, by_hand):
        assert torch.allclose(text_features(clip, learner), expected, atol=1e-5, rtol=0)
        # the spliced ids are the real prompt's except at the placeholders, so pooling is where open_clip pools
        ids, n = learner.tokenized, learner.n_ctx
        assert torch.equal(ids[:, :1], real[:, :1]) and torch.equal(ids[:, 1 + n:], real[:, 1 + n:])
        assert torch.equal(ids.argmax(-1), real.argmax(-1))
    return by_init


def test_real_words_reproduce_encode_text_tiny():
    _check_equivalence(tiny_clip(), toy_tokenizer, TOY_CLASSES)


@pytest.mark.parametrize("variant", ["custom_text", "eos_pool_linear_proj", "fp16", "bf16"])
def test_real_words_reproduce_encode_text_tower_variants(variant):
    """CustomTextCLIP's TextTransformer, 'eos' pooling with an nn.Linear projection, and cast_dtype paths."""
    torch.manual_seed(0)
    if variant == "custom_text":
        clip = open_clip.model.CustomTextCLIP(**TINY_CFG)
    elif variant == "eos_pool_linear_proj":
        text_cfg = dict(TINY_CFG["text_cfg"], pool_type="eos", eos_id=39, proj_bias=True)
        clip = open_clip.model.CLIP(**dict(TINY_CFG, text_cfg=text_cfg))
        assert isinstance(clip.text_projection, torch.nn.Linear)
    else:
        dtype = torch.float16 if variant == "fp16" else torch.bfloat16
        clip = open_clip.model.CLIP(**TINY_CFG, cast_dtype=dtype)
        open_clip.model.convert_weights_to_lp(clip, dtype=dtype)
    clip.eval()
    classes = TOY_CLASSES[:3]
    learner = PromptLearner(clip, classes, toy_tokenizer, ctx_init="a photo of a")
    with torch.no_grad():  # bit-exact: the same ops as encode_text, normalised in float32 as zeroshot does
        expected = F.normalize(clip.encode_text(toy_tokenizer([f"a photo of a {c}." for c in classes])).float(), dim=-1)
    assert torch.equal(text_features(clip, learner), expected)


def test_real_words_reproduce_encode_text_wiseft_mini():
    clip, _, _ = create_model("wiseft-mini")
    tok = get_tokenizer("wiseft-mini")
    learner = _check_equivalence(clip, tok, CLASSNAMES)
    assert learner.n_ctx == 4 and learner.name_lens[CLASSNAMES.index("ankle boot")] == 3  # ankle, boot, "."
    with pytest.warns(UserWarning, match="outside the tokenizer's vocabulary"):  # closed vocabulary: "zebra"
        assert PromptLearner(clip, CLASSNAMES, tok, ctx_init="a photo of a zebra").n_ctx == 5
    # so CoOp started from "a photo of a" is exactly the single-template zero-shot head
    zs = zeroshot_head(clip, CLASSNAMES, ["a photo of a {}."], tok)
    head = coop_head(clip, learner)
    assert head.normalize and torch.equal(head.bias, torch.zeros(len(CLASSNAMES)))
    assert torch.allclose(head.weight, zs.weight, atol=1e-5, rtol=0)


def test_open_clip_tokenizer():
    """open_clip's own BPE tokenizer (77 tokens, multi-token class names) on a CLIP with its vocabulary."""
    torch.manual_seed(0)
    text_cfg = dict(TINY_CFG["text_cfg"], context_length=77, vocab_size=49408)
    clip = open_clip.model.CLIP(**dict(TINY_CFG, text_cfg=text_cfg)).eval()
    learner = _check_equivalence(clip, open_clip.get_tokenizer("ViT-B-32"), ["ankle boot", "t-shirt", "cat"])
    assert learner.n_ctx == 4 and learner.name_lens == [3, 4, 2]


def _separable(clip, n_per=8, noise=0.3):
    """Features whose classes are the text features of a different (target) context, plus noise."""
    target = PromptLearner(clip, TOY_CLASSES, toy_tokenizer, n_ctx=4, ctx_std=1.0, seed=123)
    with torch.no_grad():
        w = text_features(clip, target)
    g = torch.Generator().manual_seed(1)
    y = torch.arange(len(TOY_CLASSES)).repeat(n_per)
    x = 3.0 * (w[y] + noise * torch.randn(len(y), w.shape[1], generator=g) / math.sqrt(w.shape[1]))
    return x, y


CFG = CoOpConfig(n_ctx=4, epochs=40, batch_size=16)  # CoOp's lr, momentum, weight decay and warm-up


def test_training_lowers_loss_and_moves_only_ctx():
    clip = tiny_clip()
    x, y = _separable(clip)
    clip.train()
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    flags = {k: p.requires_grad for k, p in clip.named_parameters()}
    init = PromptLearner.from_config(clip, TOY_CLASSES, toy_tokenizer, CFG, seed=0)
    start = coop_head(clip, init)
    result = train_coop(clip, TOY_CLASSES, x, y, CFG, seed=0, progress=False, tokenizer=toy_tokenizer)

    with torch.no_grad():
        loss0, loss1 = F.cross_entropy(start(x), y), F.cross_entropy(result.head(x), y)
        acc0 = (start(x).argmax(1) == y).float().mean()
        acc1 = (result.head(x).argmax(1) == y).float().mean()
    assert loss1 < loss0 - 0.2 and acc1 > acc0 + 0.1
    log = result.log
    assert list(log.columns) == ["epoch", "lr", "loss", "acc"] and len(log) == CFG.epochs
    assert log["loss"].iloc[-1] < log["loss"].iloc[0] and log["lr"].iloc[0] == CFG.warmup_lr
    # only ctx changed: CLIP bit-identical, its flags and mode restored
    assert all(torch.equal(before[k], v) for k, v in clip.state_dict().items())
    assert {k: p.requires_grad for k, p in clip.named_parameters()} == flags and clip.training
    assert result.ctx.shape == (4, TINY_CFG["text_cfg"]["width"])
    assert not torch.equal(result.ctx, init.ctx.detach()) and torch.equal(result.prompt_learner.ctx, result.ctx)
    # the head is the trained prompts' text features times exp(logit_scale), and plugs into evaluate_head
    with torch.no_grad():
        expected = text_features(clip, result.prompt_learner) * clip.logit_scale.exp()
    assert torch.allclose(result.head.weight, expected, atol=1e-6)
    bundle = DatasetBundle("toy", None, TOY_CLASSES, ["{}."])
    assert evaluate_head(result.head, x, y, bundle)["top1"] == pytest.approx(float(acc1) * 100)


def test_seeded_runs_are_bit_identical():
    clip = tiny_clip()
    x, y = _separable(clip, n_per=4)
    cfg = CoOpConfig(n_ctx=4, epochs=3, batch_size=8)
    a, b, c = (train_coop(clip, TOY_CLASSES, x, y, cfg, seed=s, progress=False, tokenizer=toy_tokenizer)
               for s in (0, 0, 1))
    assert torch.equal(a.head.weight, b.head.weight) and torch.equal(a.ctx, b.ctx)
    assert a.log.equals(b.log)
    assert not torch.equal(a.ctx, c.ctx)


def test_schedule_is_coops():
    cfg = CoOpConfig()
    assert (cfg.n_ctx, cfg.epochs, cfg.lr, cfg.batch_size) == (16, 50, 0.002, 32)
    assert coop_lr(0, cfg) == 1e-5 and coop_lr(1, cfg) == 0.002
    assert coop_lr(49, cfg) == pytest.approx(0.001 * (1 + math.cos(math.pi * 48 / 50)))


def test_context_too_long():
    # toy: context 8 = SOT + n_ctx + "cat." + EOT, so 6 context tokens do not fit
    with pytest.raises(ValueError, match=r"class 'cat' does not fit.*at most 0 name tokens.*n_ctx.*at most 5"):
        PromptLearner(tiny_clip(), ["cat"], toy_tokenizer, n_ctx=6)
    PromptLearner(tiny_clip(), ["cat"], toy_tokenizer, n_ctx=5)
    # wiseft-mini: context 16, "t-shirt." takes 4 tokens (t - shirt .) -> at most 10 context tokens
    clip, _, _ = create_model("wiseft-mini")
    with pytest.raises(ValueError, match=r"'t-shirt' does not fit.*take 4 tokens.*at most 3 name tokens.*at most 10"):
        PromptLearner(clip, CLASSNAMES, "wiseft-mini", n_ctx=11)
    assert PromptLearner(clip, CLASSNAMES, "wiseft-mini", n_ctx=10).tokenized.argmax(-1).max() == 15


@pytest.mark.parametrize("field,value,match", [
    ("n_ctx", 0, "n_ctx"), ("n_ctx", 2.5, "n_ctx"), ("epochs", 0, "epochs"), ("batch_size", 0, "batch_size"),
    ("lr", 0.0, "lr"), ("lr", float("nan"), "lr"), ("momentum", 1.0, "momentum"),
    ("weight_decay", -1e-4, "weight_decay"), ("warmup_epochs", -1, "warmup_epochs"),
    ("warmup_epochs", 50, "never leave"), ("ctx_init", "  ", "ctx_init"),
    ("class_token_position", "middle", "not implemented"),
])
def test_bad_config(field, value, match):
    with pytest.raises(ValueError, match=match):
        CoOpConfig(**{field: value})


def test_bad_inputs():
    clip = tiny_clip()
    cfg = CoOpConfig(n_ctx=4, epochs=2)
    x, y = torch.randn(6, TINY_CFG["embed_dim"]), torch.arange(6) % 3
    with pytest.raises(ValueError, match="labels must be in"):
        train_coop(clip, TOY_CLASSES[:2], x, y, cfg, progress=False, tokenizer=toy_tokenizer)
    with pytest.raises(ValueError, match="dimension 7"):
        train_coop(clip, TOY_CLASSES[:3], torch.randn(6, 7), y, cfg, progress=False, tokenizer=toy_tokenizer)
    with pytest.raises(ValueError, match="context length 16 differs"):
        PromptLearner(clip, ["cat"], "wiseft-mini", n_ctx=2)
    with pytest.raises(ValueError, match="at least one class"):
        PromptLearner(clip, [], toy_tokenizer)
