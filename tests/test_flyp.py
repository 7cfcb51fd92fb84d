"""FLYP (fine-tune like you pretrain): the contrastive loss by hand, training both towers of wiseft-mini on a few
real mini images, reproducibility, the rebuilt zero-shot head, the run cache and the refused inputs (CPU, seconds).

    .venv/bin/pytest tests/test_flyp.py -q
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import Dataset

from wiseft_lib.core.models import create_model, get_tokenizer
from wiseft_lib.core.zeroshot import zeroshot_classifier
from wiseft_lib.data.templates import fill_template
from wiseft_lib.finetune import FinetuneConfig, NonFiniteLossError
from wiseft_lib.finetune.flyp import MAX_LOGIT_SCALE, contrastive_loss, flyp_classifier, flyp_finetune

from helpers import forbid, threads

MODEL = "wiseft-mini"


def cfg(**kw) -> FinetuneConfig:
    base = dict(epochs=2, batch_size=32, lr=5e-4, warmup_steps=1, precision="auto", seed=0)
    return FinetuneConfig(**{**base, **kw})


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def mini(fashion_mnist_root):
    """64 mini training images (seeded draw), with the model's train and eval transforms."""
    from wiseft_lib.data import get_dataset

    _, train_tf, eval_tf = create_model(MODEL)
    train = get_dataset("mini-photo", split="train", transform=train_tf, n_train=64, seed=0)
    plain = get_dataset("mini-photo", split="train", transform=eval_tf, n_train=64, seed=0)
    return train, plain


@pytest.fixture(scope="module")
def trained(mini):
    """wiseft-mini before and after FLYP on the 64 images (2 epochs of 2 steps)."""
    train, _ = mini
    clip, _, _ = create_model(MODEL)
    before = state(clip)
    out = flyp_finetune(clip, get_tokenizer(MODEL), train.dataset, train.classnames, train.templates, cfg(),
                        device="cpu", progress=False)
    assert out is clip and not clip.training
    return before, clip


def batch_loss(clip, plain, template: str) -> float:
    """The contrastive loss of all 64 (eval-transformed) images against their class captions."""
    x = torch.stack([plain.dataset[i][0] for i in range(len(plain.dataset))])
    y = [plain.dataset[i][1] for i in range(len(plain.dataset))]
    tokens = get_tokenizer(MODEL)([fill_template(template, plain.classnames[c]) for c in y])
    with torch.no_grad():
        return contrastive_loss(clip.encode_image(x), clip.encode_text(tokens), clip.logit_scale.exp()).item()


def test_contrastive_loss_matches_a_hand_computation():
    img = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0], [3.0, 0.0, 1.0]])
    txt = torch.tensor([[2.0, 1.0, 1.0], [0.5, 0.0, -2.0], [1.0, -1.0, 0.0]])
    scale = 2.5

    def unit(rows):
        return [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in rows]

    a, b = unit(img.tolist()), unit(txt.tolist())
    s = [[scale * sum(p * q for p, q in zip(a[i], b[j])) for j in range(3)] for i in range(3)]
    rows = [-s[i][i] + math.log(sum(math.exp(s[i][j]) for j in range(3))) for i in range(3)]
    cols = [-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(3))) for j in range(3)]
    expected = (sum(rows) / 3 + sum(cols) / 3) / 2
    assert contrastive_loss(img, txt, scale).item() == pytest.approx(expected, rel=1e-6)
    assert contrastive_loss(img, txt, torch.tensor(scale)).item() == pytest.approx(expected, rel=1e-6)
    # the features are normalised inside: their lengths do not matter
    assert contrastive_loss(img * 7, txt * 0.1, scale).item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_loss_is_near_zero_when_pairs_align():
    feats = torch.eye(4) * 3
    aligned = contrastive_loss(feats, feats.clone(), 100.0).item()
    assert 0 <= aligned < 1e-6
    swapped = contrastive_loss(feats, feats[[1, 0, 2, 3]], 100.0).item()
    assert swapped > 40  # two of four rows and columns pick the wrong caption by a margin of 100
    # same-class rows (identical captions) are negatives too: the loss cannot go below log(2) for them
    twins = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert contrastive_loss(twins, twins, 100.0).item() == pytest.approx(math.log(2), rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        contrastive_loss(torch.ones(3, 4), torch.ones(2, 4), 1.0)


def test_flyp_trains_both_towers_and_lowers_the_contrastive_loss(mini, trained):
    _, plain = mini
    before, clip = trained
    after = clip.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("visual.") for k in changed), "the image tower did not train"
    assert any(k.startswith(("transformer.", "token_embedding", "text_projection", "ln_final")) for k in changed), \
        "the text tower did not train"
    assert 0 <= clip.logit_scale.item() <= MAX_LOGIT_SCALE
    start, _, _ = create_model(MODEL)
    for template in ("a photo of a {}.", "a sketch of a {}."):
        assert batch_loss(clip, plain, template) < batch_loss(start, plain, template) - 0.05


def test_same_seed_gives_bitwise_identical_weights(mini):
    train, _ = mini
    config = cfg(epochs=1)

    def run(config):
        clip, _, _ = create_model(MODEL)
        return state(flyp_finetune(clip, get_tokenizer(MODEL), train.dataset, train.classnames, train.templates,
                                   config, device="cpu", progress=False))

    with threads(1):
        a, b, c = run(config), run(config), run(cfg(epochs=1, seed=1))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)  # another seed: other order, crops and templates


def test_classifier_is_the_zero_shot_head_of_the_fine_tuned_towers(mini, trained):
    train, _ = mini
    _, clip = trained
    clf = flyp_classifier(clip, MODEL, train.classnames, train.templates)
    zs = zeroshot_classifier(clip, MODEL, train.classnames, train.templates)
    assert clf.image_encoder is clip.visual
    assert torch.equal(clf.classification_head.weight, zs.classification_head.weight)
    assert torch.equal(clf.classification_head.bias, torch.zeros(len(train.classnames)))
    scale = clip.logit_scale.exp().item()  # the fine-tuned scale, not the pretrained one
    torch.testing.assert_close(clf.classification_head.weight.norm(dim=-1), torch.full((10,), scale))
    assert clf.meta["method"] == "flyp" and clf.meta["flyp"]["logit_scale"] == pytest.approx(scale)
    assert clf.meta["classnames"] == list(train.classnames) and clf.meta["model_name"] == MODEL
    start, _, _ = create_model(MODEL)
    pretrained_head = zeroshot_classifier(start, MODEL, train.classnames, train.templates).classification_head
    assert not torch.allclose(pretrained_head.weight, clf.classification_head.weight)


def test_flyp_run_is_cached_and_keyed_by_its_recipe(tmp_path, fashion_mnist_root, monkeypatch):
    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.endpoints import Endpoints, RunRef
    from wiseft_lib.experiment.flyp_run import flyp_run
    from wiseft_lib.experiment.runs import RunCache

    config = CurveConfig(n_train=64, n_test=50, device="cpu",
                         e2e={"epochs": 1, "lr": 5e-4, "batch_size": 32, "warmup_steps": 1})
    runs = RunCache(tmp_path / "runs")
    ep = Endpoints(config, 0, runs, progress=False)
    ref = flyp_run(ep)
    assert ref == RunRef("flyp", ref.key, "end-to-end")
    entry = runs.entry("flyp", ref.key)
    assert sorted(p.name for p in entry.iterdir()) == ["entry.json", "finetuned.json", "finetuned.safetensors"]
    record = runs.record("flyp", ref.key)
    assert record["parts"]["mode"] == "flyp" and record["parts"]["templates"] == ep.templates()
    assert record["parts"]["recipe"]["epochs"] == 1 and record["parts"]["recipe"]["precision"] == "fp32"
    model = ref.load_model(ep)
    zs = ep.zeroshot()
    assert model.meta["method"] == "flyp" and model.meta["finetune"]["method"] == "flyp"
    assert model.classification_head.weight.shape == zs.classification_head.weight.shape
    assert not torch.allclose(model.classification_head.weight, zs.classification_head.weight)
    assert any(not torch.equal(a, b) for a, b in zip(model.image_encoder.state_dict().values(),
                                                     zs.image_encoder.state_dict().values()))
    stamp = (entry / "finetuned.safetensors").stat().st_mtime_ns

    forbid(monkeypatch, "wiseft_lib.finetune.flyp.flyp_finetune")  # from here on, any training fails the test
    again = flyp_run(Endpoints(config, 0, runs, progress=False))  # a new process's view of the same run
    assert again == ref and (entry / "finetuned.safetensors").stat().st_mtime_ns == stamp
    assert flyp_run(ep, {"epochs": 1, "batch_size": 32}) == ref  # the same recipe spelled out: the same run
    with pytest.raises(pytest.fail.Exception, match="ran again"):  # another recipe is another run
        flyp_run(ep, {"lr": 1e-4})
    with pytest.raises(ValueError, match="not FinetuneConfig fields"):
        flyp_run(ep, {"learning_rate": 1e-4})


class Images(Dataset):
    """``n`` random 28 px images with labels ``i % n_classes`` (or all ``label``)."""

    def __init__(self, n: int = 8, n_classes: int = 10, label: int | None = None):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 3, 28, 28, generator=g)
        self.y = [label if label is not None else i % n_classes for i in range(n)]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


@pytest.mark.parametrize("change,match", [
    (dict(config=FinetuneConfig(mode="linear")), "mode is 'linear'.*mode='end-to-end'"),
    (dict(classnames=[]), "at least one class name and one template.*0 class names"),
    (dict(templates=[]), "at least one class name and one template.*0 templates"),
    (dict(model="visual"), "has no encode_image, encode_text, logit_scale.*create_model"),
    (dict(config=FinetuneConfig(label_smoothing=0.1)), "does not implement label_smoothing=0.1.*label_smoothing=0.0"),
    (dict(data=Images(label=12)), r"outside \[0, 10\)"),
])
def test_bad_inputs_are_refused(change, match):
    clip, _, _ = create_model(MODEL)
    args = dict(model=clip, classnames=NAMES, templates=["a photo of a {}."], config=cfg(), data=Images())
    args.update(change)
    model = clip.visual if args["model"] == "visual" else args["model"]
    with pytest.raises(ValueError, match=match):
        flyp_finetune(model, get_tokenizer(MODEL), args["data"], args["classnames"], args["templates"],
                      args["config"], device="cpu", progress=False)


def test_refuses_to_run_under_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    clip, _, _ = create_model(MODEL)
    with pytest.raises(ValueError, match="FLYP runs on one process here"):
        flyp_finetune(clip, get_tokenizer(MODEL), Images(), NAMES, ["a {}."], cfg(), device="cpu", progress=False)


def test_non_finite_loss_names_the_step():
    clip, _, _ = create_model(MODEL)
    with torch.no_grad():
        clip.visual.proj.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 1 "):
        flyp_finetune(clip, get_tokenizer(MODEL), Images(), NAMES, ["a {}."], cfg(epochs=1), device="cpu",
                      progress=False)
