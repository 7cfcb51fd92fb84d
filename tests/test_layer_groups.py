"""Per-layer-group WiSE-FT: the key -> group map (ViT, ResNet), the in-place write, the seeded alpha search."""
from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
from open_clip.transformer import VisionTransformer

from wiseft_lib.core.interpolate import interpolate_weights
from wiseft_lib.core.layer_groups import (
    DEFAULT_GRID,
    GROUPS,
    interpolate_groups_in_place,
    layer_groups,
    search_group_alphas,
)
from wiseft_lib.core.models import ClassificationHead, ImageClassifier, create_model

from helpers import clone_sd, tiny_resnet_classifier


@pytest.fixture(scope="module")
def mini():
    """The wiseft-mini CLIP (4 blocks) and an ImageClassifier on its image tower."""
    clip, _, _ = create_model("wiseft-mini")
    head = ClassificationHead(torch.randn(10, clip.visual.output_dim))
    return clip, ImageClassifier(copy.deepcopy(clip.visual), head).eval()


@pytest.fixture(scope="module")
def thetas(mini):
    """theta_0 (the mini classifier's weights) and theta_1 (a perturbed copy)."""
    theta_0 = clone_sd(mini[1])
    g = torch.Generator().manual_seed(1)
    return theta_0, {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in theta_0.items()}


@pytest.fixture
def endpoints(mini, thetas):
    """(a working model, theta_0, theta_1)."""
    return copy.deepcopy(mini[1]), *thetas


def _block(key: str) -> int:
    return int(key.split("transformer.resblocks.")[1].split(".")[0])


def test_mini_keys_map_to_groups(mini):
    clip, clf = mini
    groups = layer_groups(clf.state_dict().keys())
    assert list(groups) == list(clf.state_dict()) and set(groups.values()) == set(GROUPS)
    assert all(Counter(groups.values())[g] > 0 for g in GROUPS)
    blocks = {_block(k): g for k, g in groups.items() if "resblocks" in k}
    assert blocks == {0: "early", 1: "early", 2: "middle", 3: "late"}  # array_split(range(4), 3)
    for key, group in {"image_encoder.conv1.weight": "embedding", "image_encoder.class_embedding": "embedding",
                       "image_encoder.positional_embedding": "embedding", "image_encoder.ln_pre.bias": "embedding",
                       "image_encoder.ln_post.weight": "head", "image_encoder.proj": "head",
                       "classification_head.weight": "head", "classification_head.bias": "head"}.items():
        assert groups[key] == group, key
    bare = layer_groups(clip.visual.state_dict())  # a bare tower: the same groups
    assert bare == {k.removeprefix("image_encoder."): g for k, g in groups.items() if k.startswith("image_")}
    visual = layer_groups(k for k in clip.state_dict() if k.startswith("visual."))  # a CLIP's image keys
    assert visual == {"visual." + k: g for k, g in bare.items()}


def test_vit_b32_shaped_tower_splits_12_blocks_4_4_4():
    # ViT-B-32's image tower has the same keys; a narrow one builds in milliseconds
    vit = VisionTransformer(image_size=32, patch_size=8, width=32, layers=12, heads=2, mlp_ratio=2.0, output_dim=16)
    keys = ["image_encoder." + k for k in vit.state_dict()] + ["classification_head.weight"]
    groups = layer_groups(keys)
    chunks = {g: sorted({_block(k) for k, v in groups.items() if v == g and "resblocks" in k})
              for g in ("early", "middle", "late")}
    assert chunks == {"early": [0, 1, 2, 3], "middle": [4, 5, 6, 7], "late": [8, 9, 10, 11]}
    assert sorted(k for k, g in groups.items() if g == "embedding") == sorted(
        "image_encoder." + k for k in ("class_embedding", "positional_embedding", "conv1.weight", "ln_pre.weight",
                                       "ln_pre.bias"))


def test_resnet_keys_map_to_groups():
    groups = layer_groups(tiny_resnet_classifier().state_dict())
    by_part = {}
    for key, g in groups.items():
        by_part.setdefault(key.split(".")[1] if key.startswith("image_encoder.") else "head", set()).add(g)
    assert by_part == {"conv1": {"embedding"}, "bn1": {"embedding"}, "conv2": {"embedding"}, "bn2": {"embedding"},
                       "conv3": {"embedding"}, "bn3": {"embedding"}, "layer1": {"early"}, "layer2": {"middle"},
                       "layer3": {"middle"}, "layer4": {"late"}, "attnpool": {"head"}, "head": {"head"}}
    assert groups["image_encoder.bn1.num_batches_tracked"] == "embedding"


def test_keys_it_cannot_place_raise(mini):
    clip, clf = mini
    keys = list(clf.state_dict())
    with pytest.raises(ValueError, match="'image_encoder.mystery.weight'"):
        layer_groups([*keys, "image_encoder.mystery.weight"])
    with pytest.raises(ValueError, match="'logit_scale'"):
        layer_groups([*keys, "logit_scale"])
    with pytest.raises(ValueError, match="text tower"):  # a whole CLIP: its text keys are not the tower's
        layer_groups(clip.state_dict())
    with pytest.raises(ValueError, match="'image_encoder.transformer.resblocks.x.ln_1.weight'"):
        layer_groups([*keys, "image_encoder.transformer.resblocks.x.ln_1.weight"])
    with pytest.raises(ValueError, match="'image_encoder.layer1.0.conv1.weight'.*mix"):
        layer_groups([*keys, "image_encoder.layer1.0.conv1.weight"])


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_equal_alphas_are_plain_wiseft_bit_for_bit(endpoints, alpha):
    model, theta_0, theta_1 = endpoints
    groups = layer_groups(theta_0)
    out = interpolate_groups_in_place(model, theta_0, theta_1, dict.fromkeys(GROUPS, alpha), groups)
    assert out is model
    ref = interpolate_weights(theta_0, theta_1, alpha)
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def test_equal_alphas_on_a_resnet_with_counters():
    zs = tiny_resnet_classifier(0)
    theta_0 = clone_sd(zs)
    g = torch.Generator().manual_seed(2)
    theta_1 = {k: v + torch.randn(v.shape, generator=g).abs() if v.is_floating_point() else v + 3  # counters differ
               for k, v in theta_0.items()}
    for alpha in (0.25, 0.75):
        interpolate_groups_in_place(zs, theta_0, theta_1, dict.fromkeys(GROUPS, alpha), layer_groups(theta_0))
        ref = interpolate_weights(theta_0, theta_1, alpha)
        assert all(torch.equal(v, ref[k]) for k, v in zs.state_dict().items())
    assert zs.state_dict()["image_encoder.bn1.num_batches_tracked"] == theta_1["image_encoder.bn1.num_batches_tracked"]


def test_each_group_gets_its_own_alpha(endpoints):
    model, theta_0, theta_1 = endpoints
    groups = layer_groups(theta_0)
    alphas = {"embedding": 0.0, "early": 0.2, "middle": 0.5, "late": 0.8, "head": 1.0}
    interpolate_groups_in_place(model, theta_0, theta_1, alphas, groups)
    live = model.state_dict()
    for key in ("image_encoder.conv1.weight", "image_encoder.transformer.resblocks.1.mlp.c_fc.weight",
                "image_encoder.transformer.resblocks.2.attn.in_proj_weight",
                "image_encoder.transformer.resblocks.3.ln_2.bias", "classification_head.weight"):
        assert torch.equal(live[key], interpolate_weights({key: theta_0[key]}, {key: theta_1[key]},
                                                          alphas[groups[key]])[key]), key
    for key, g in groups.items():  # every key is at its group's alpha
        a = alphas[g]
        expected = theta_0[key] if a == 0 else theta_1[key] if a == 1 else torch.lerp(theta_0[key], theta_1[key], a)
        assert torch.equal(live[key], expected), key


def test_bad_group_alphas_raise(endpoints):
    model, theta_0, theta_1 = endpoints
    groups = layer_groups(theta_0)
    with pytest.raises(ValueError, match="no alpha for group.*'late'"):
        interpolate_groups_in_place(model, theta_0, theta_1, {g: 0.5 for g in GROUPS if g != "late"}, groups)
    with pytest.raises(ValueError, match="group 'head'.*alpha must lie in"):
        interpolate_groups_in_place(model, theta_0, theta_1, {**dict.fromkeys(GROUPS, 0.5), "head": 1.5}, groups)
    with pytest.raises(ValueError, match="unknown group.*'lat'"):
        interpolate_groups_in_place(model, theta_0, theta_1, {**dict.fromkeys(GROUPS, 0.5), "lat": 0.5}, groups)
    partial = {k: g for k, g in groups.items() if k != "image_encoder.proj"}
    with pytest.raises(ValueError, match="'image_encoder.proj' has no layer group"):
        interpolate_groups_in_place(model, theta_0, theta_1, dict.fromkeys(GROUPS, 0.5), partial)


def _toy_target():
    return {"embedding": 0.2, "early": 0.4, "middle": 0.5, "late": 0.7, "head": 0.9}


def _counting(fn):
    calls = []

    def score(alphas):
        calls.append(tuple(alphas[g] for g in GROUPS))
        return fn(alphas)
    return score, calls


def test_search_finds_a_known_per_group_optimum_and_scores_each_assignment_once():
    target = _toy_target()
    score, calls = _counting(lambda a: -sum((a[g] - target[g]) ** 2 for g in GROUPS))
    res = search_group_alphas(score, n_trials=20, seed=3)
    assert res.best == target and res.best_score == pytest.approx(0.0)
    assert res.best_uniform == 0.5  # the grid point nearest the targets' mean 0.54
    assert res.best_uniform_score == max(res.trials.loc[res.trials["phase"] == "uniform", "score"])
    assert len(calls) == len(set(calls)) == len(res.trials)  # memoised: never scored twice
    uniform = res.trials[res.trials["phase"] == "uniform"]
    assert uniform[list(GROUPS)].values.tolist() == [[a] * 5 for a in DEFAULT_GRID]  # every uniform point, first
    assert list(res.trials["phase"].unique()) == ["uniform", "random", "refine"]
    assert list(res.trials.columns) == ["trial", *GROUPS, "mean_alpha", "score", "phase"]


def test_search_is_deterministic_per_seed():
    def score(a):
        return -abs(a["early"] - 0.3) - abs(a["head"] - 0.6) + 0.01 * a["middle"]

    one, two = search_group_alphas(score, seed=7), search_group_alphas(score, seed=7)
    assert one.trials.equals(two.trials) and one.best == two.best
    other = search_group_alphas(score, seed=8)
    random = ["phase", *GROUPS]
    assert not one.trials[random][one.trials["phase"] == "random"].reset_index(drop=True).equals(
        other.trials[random][other.trials["phase"] == "random"].reset_index(drop=True))


def test_ties_go_to_the_smaller_mean_alpha_then_the_first_seen():
    flat = search_group_alphas(lambda a: 1.0, n_trials=5)
    assert flat.best == dict.fromkeys(GROUPS, 0.0) and flat.best_uniform == 0.0
    step = search_group_alphas(lambda a: float(a["head"] >= 0.5), n_trials=10)
    assert step.best == {**dict.fromkeys(GROUPS, 0.0), "head": 0.5}  # nearest the zero-shot model
    assert step.best_uniform == 0.5
    # (1, 0) and (0, 1) tie on score and mean alpha: the first seen (start) stays best
    res = search_group_alphas(lambda a: float({a["a"], a["b"]} == {0.0, 1.0}), groups=("a", "b"),
                              grid=(0.0, 0.5, 1.0), n_trials=30, start={"a": 1.0, "b": 0.0})
    assert res.trials["phase"].iloc[0] == "start"
    assert ((res.trials["a"] == 0.0) & (res.trials["b"] == 1.0)).any()
    assert res.best == {"a": 1.0, "b": 0.0} and res.best_score == 1.0


def test_search_argument_errors():
    with pytest.raises(ValueError, match="alpha must lie in"):
        search_group_alphas(lambda a: 0.0, grid=(0.0, 1.5))
    with pytest.raises(ValueError, match="start must give"):
        search_group_alphas(lambda a: 0.0, start={"head": 0.5})
    with pytest.raises(ValueError, match="distinct"):
        search_group_alphas(lambda a: 0.0, groups=("a", "a"))
    with pytest.raises(ValueError, match="NaN"):
        search_group_alphas(lambda a: float("nan"))
