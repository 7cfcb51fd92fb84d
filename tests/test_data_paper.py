"""The paper's datasets on tiny fixture folders generated in each dataset's real layout.

One session fixture writes every dataset under one data root (a few 8x8 images per class,
empty folders for the other classes); each test checks counts, label order, subset
restriction / projection and metadata against hand-computed expectations.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wiseft_lib.core.evaluate import score
from wiseft_lib.data import get_dataset, list_datasets
from wiseft_lib.data.common import DatasetNotFoundError, MaxProjection
from wiseft_lib.data.imagenet import (
    imagenet_classnames,
    objectnet_classes,
    objectnet_imagenet_groups,
    subset_wnids,
)
from wiseft_lib.data.kshot import get_kshot_dataset, kshot_bundle, kshot_indices
from wiseft_lib.data.templates import IMAGENET_TEMPLATES, SIMPLE_TEMPLATES, get_templates
from wiseft_lib.data.video import ytbb_classes, ytbb_projection
from wiseft_lib.data.wilds import fmow_categories, iwildcam_classnames

from paper_fixture import A_IDX, ALARM, PLAIN, R_IDX, VAL_CLASSES, WNIDS, img, write_paper_data


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    return write_paper_data(tmp_path_factory.mktemp("wiseft_data"))


# ------------------------------------------------------------------------------ names and templates


def test_templates_and_names_have_the_published_sizes():
    assert len(IMAGENET_TEMPLATES) == 80 == len(set(IMAGENET_TEMPLATES))
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    assert IMAGENET_TEMPLATES[0].format("goldfish") == "a bad photo of a goldfish."
    assert SIMPLE_TEMPLATES == ["a photo of a {}."]
    names = imagenet_classnames()
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet paper"
    assert len(WNIDS) == 1000 == len(set(WNIDS)) and WNIDS == sorted(WNIDS) and WNIDS[0] == "n01440764"
    a, r = subset_wnids("imagenet-a"), subset_wnids("imagenet-r")
    assert len(a) == 200 == len(r) and set(a) <= set(WNIDS) and set(r) <= set(WNIDS)
    on = objectnet_classes()
    groups = objectnet_imagenet_groups()
    flat = [i for g in groups for i in g]
    assert len(on) == 113 and len(flat) == 125 == len(set(flat))  # 125 distinct ImageNet classes
    assert on[0]["folder"] == "alarm_clock" and groups[0] == ALARM
    ytbb_names, ytbb_groups = ytbb_classes()
    assert len(ytbb_names) == 24 and sum(1 for g in ytbb_groups if not g) == 5
    assert len(fmow_categories()) == 62 and len(iwildcam_classnames()) == 182
    for name in list_datasets():
        if not name.startswith("mini"):
            assert get_templates(name), name
    assert len(get_templates("cifar10")) == 18 and get_templates("imagenet-r") == IMAGENET_TEMPLATES
    with pytest.raises(KeyError):
        get_templates("no-such-dataset")


# ------------------------------------------------------------------------------ ImageNet family


@pytest.mark.filterwarnings("ignore:.*unreadable image")
def test_imagenet_val_order_labels_and_corrupt_file(data):
    b = get_dataset("imagenet", root=data, split="test")
    assert b.skipped == 1 and len(b) == 2 * len(VAL_CLASSES)
    assert b.dataset.targets.tolist() == [c for c in VAL_CLASSES for _ in range(2)]
    paths = [p for p, _ in b.dataset.samples]
    assert paths == sorted(paths)  # wnid folders then file names, both sorted
    assert len(b.classnames) == 1000 and b.templates == IMAGENET_TEMPLATES and b.project_logits is None
    x, y = b.dataset[0]
    assert isinstance(x, Image.Image) and x.mode == "RGB" and y == VAL_CLASSES[0]
    train = get_dataset("imagenet", root=data, split="train", transform=lambda im: torch.zeros(3))
    assert train.dataset.targets.tolist() == [0, 0, 0, 1, 1, 999]
    assert train.dataset[0][0].shape == (3,)


def test_imagenet_kaggle_layout(tmp_path):
    base = tmp_path / "imagenet" / "ILSVRC" / "Data" / "CLS-LOC"
    img(base / "val" / "ILSVRC2012_val_00000002.JPEG")
    img(base / "val" / "ILSVRC2012_val_00000001.JPEG")
    (tmp_path / "imagenet" / "LOC_val_solution.csv").write_text(
        f"ImageId,PredictionString\nILSVRC2012_val_00000001,{WNIDS[65]} 1 2 3 4\n"
        f"ILSVRC2012_val_00000002,{WNIDS[970]} 1 2 3 4 {WNIDS[970]} 5 6 7 8\n")
    b = get_dataset("imagenet", root=tmp_path, split="val")
    assert b.dataset.targets.tolist() == [65, 970]
    flat = tmp_path / "plain" / "imagenet"  # the ILSVRC tarball's flat val/ + the solution file
    img(flat / "val" / "ILSVRC2012_val_00000001.JPEG")
    (flat / "LOC_val_solution.csv").write_text(
        f"ImageId,PredictionString\nILSVRC2012_val_00000001,{WNIDS[3]} 1 2 3 4\n")
    assert get_dataset("imagenet", root=tmp_path / "plain", split="val").dataset.targets.tolist() == [3]


def test_imagenet_v2_labels_follow_folder_numbers(data):
    b = get_dataset("imagenet-v2", root=data)
    assert b.dataset.targets.tolist() == [2, 10, 999]  # numeric, not "10" < "2"
    assert len(b.classnames) == 1000


def test_imagenet_r_and_a_restrict_logits_to_their_subsets(data):
    r = get_dataset("imagenet-r", root=data)
    assert r.dataset.targets.tolist() == [0, 0, 199] and len(r.classnames) == 200
    assert r.classnames[0] == imagenet_classnames()[R_IDX[0]]
    logits = torch.zeros(2, 1000)
    logits[0, R_IDX[7]] = 5.0  # the subset's 8th class
    logits[1, PLAIN] = 9.0  # outside the subset: must be ignored
    logits[1, R_IDX[199]] = 1.0
    out = r.project_logits(logits)
    assert out.shape == (2, 200) and out.argmax(1).tolist() == [7, 199]
    assert r.project_logits(np.zeros((4, 200))).shape == (4, 200)  # already projected: unchanged
    a = get_dataset("imagenet-a", root=data)
    assert a.dataset.targets.tolist() == [5] and len(a.classnames) == 200
    assert np.asarray(a.project_logits(np.eye(1000)[A_IDX[5]][None])).argmax() == 5
    with pytest.raises(ValueError, match="1000 or 200"):
        r.project_logits(torch.zeros(1, 10))


def test_imagenet_sketch(data):
    b = get_dataset("imagenet-sketch", root=data)
    assert b.dataset.targets.tolist() == [3, 500, 500] and len(b.classnames) == 1000


def test_objectnet_projection_crop_and_dropped_classes(data):
    b = get_dataset("objectnet", root=data)
    wok = [c["folder"] for c in objectnet_classes()].index("wok")
    assert b.dataset.targets.tolist() == [0, wok, wok]  # squeegee (not in ImageNet) dropped
    assert len(b.classnames) == 113 and b.classnames[0] == "alarm clock"
    assert b.dataset[1][0].size == (6, 8)  # 2-pixel border cropped off a 10x12 image
    logits = np.full((3, 1000), -1.0)
    logits[0, 530] = 4.0  # digital clock -> alarm clock
    logits[1, 409] = 2.0  # analog clock -> alarm clock ...
    logits[1, objectnet_imagenet_groups()[wok][0]] = 3.0  # ... but wok wins
    logits[2, PLAIN] = 50.0  # an unmapped ImageNet class never counts
    out = b.project_logits(logits)
    assert out.shape == (3, 113)
    assert out[0, 0] == 4.0 and out[1, 0] == 2.0 and out[1, wok] == 3.0 and out.max(axis=1)[2] == -1.0
    # row 2 is all ties (-1) after projection: argmax 0 != wok
    assert score(torch.as_tensor(logits), torch.tensor([0, wok, wok]), b) == {"top1": pytest.approx(100 * 2 / 3)}


def test_objectnet_takes_the_max_not_the_mean_of_its_mapped_classes_on_torch_logits(data):
    """The rule Table 1's ObjectNet column depends on, on the path evaluation takes (torch tensors)."""
    b = get_dataset("objectnet", root=data)
    wok = [c["folder"] for c in objectnet_classes()].index("wok")
    logits = torch.full((1, 1000), -10.0)
    logits[0, ALARM[0]], logits[0, ALARM[1]] = 5.0, -5.0  # max 5 (alarm clock wins), mean 0 (wok would win)
    logits[0, objectnet_imagenet_groups()[wok][0]] = 3.0
    projected = b.project_logits(logits)
    assert isinstance(projected, torch.Tensor) and projected.shape == (1, 113)
    assert projected[0, 0].item() == 5.0 and projected[0, wok].item() == 3.0
    assert score(logits, torch.tensor([0]), b) == {"top1": 100.0}
    assert score(logits, torch.tensor([wok]), b) == {"top1": 0.0}


def test_imagenet_r_and_a_scores_ignore_classes_outside_their_200(data):
    r = get_dataset("imagenet-r", root=data)
    logits = torch.zeros(1, 1000)
    logits[0, PLAIN] = 9.0  # the 1000-way argmax is outside ImageNet-R: it must not count
    logits[0, R_IDX[3]] = 1.0
    assert score(logits, torch.tensor([3]), r) == {"top1": 100.0}


def test_class_subsampled_imagenet_val_sets(data):
    vr = get_dataset("imagenet-val-r", root=data, verify="none")
    expected_r = [R_IDX.index(c) for c in VAL_CLASSES if c in R_IDX for _ in range(2)]
    assert expected_r[:2] == [0, 0] and expected_r[-2:] == [199, 199]
    assert vr.dataset.targets.tolist() == expected_r and vr.project_logits.indices.tolist() == R_IDX
    va = get_dataset("imagenet-val-a", root=data, verify="none")
    assert va.dataset.targets.tolist() == [A_IDX.index(c) for c in VAL_CLASSES if c in A_IDX for _ in range(2)]
    vo = get_dataset("imagenet-val-objectnet", root=data, verify="none")
    assert vo.dataset.targets.tolist() == [0, 0, 0, 0] and len(vo.classnames) == 113


# ------------------------------------------------------------------------------ errors and roots


def test_missing_and_incomplete_folders_explain_the_layout(tmp_path, data, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as err:
        get_dataset("imagenet-r", root=tmp_path)
    msg = str(err.value)
    assert "Expected layout" in msg and "n01443537" in msg and "hendrycks/imagenet-r" in msg
    img(tmp_path / "imagenet-r" / subset_wnids("imagenet-r")[0] / "x.jpg")
    with pytest.raises(DatasetNotFoundError, match="lacks 199 of its 200 class folders"):
        get_dataset("imagenet-r", root=tmp_path)
    (tmp_path / "CIFAR-10.1").mkdir()
    with pytest.raises(DatasetNotFoundError, match="incomplete: missing cifar10.1_v6_data.npy"):
        get_dataset("cifar10.1", root=tmp_path)
    monkeypatch.delenv("WISEFT_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match="WISEFT_DATA"):
        get_dataset("cifar10.1")
    monkeypatch.setenv("WISEFT_DATA", str(data))
    assert len(get_dataset("cifar10.1")) == 5  # root=None falls back to $WISEFT_DATA
    with pytest.raises(ValueError, match="no split"):
        get_dataset("imagenet-r", root=data, split="train")


# ------------------------------------------------------------------------------ CIFAR family


def test_cifar_family(data):
    c10 = get_dataset("cifar10", root=data, split="test")
    assert len(c10) == 2 and c10.dataset.targets.tolist() == [1, 7] and c10.classnames[1] == "automobile"
    assert get_dataset("cifar10", root=data, split="train").dataset.targets.tolist() == [1, 7] * 5
    assert c10.dataset[0][0].size == (32, 32)
    c100 = get_dataset("cifar100", root=data)
    assert c100.classnames[1] == "aquarium fish" and c100.dataset.targets.tolist() == [0, 1, 99]
    c101 = get_dataset("cifar10.1", root=data)
    assert c101.dataset.targets.tolist() == [0, 1, 2, 3, 9] and c101.classnames == c10.classnames
    c102 = get_dataset("cifar10.2", root=data)
    assert c102.dataset.targets.tolist() == [3, 3, 4, 5]
    assert get_dataset("cifar10.2", root=data, split="train").dataset.targets.tolist() == [0, 8]


# ------------------------------------------------------------------------------ WILDS


def test_fmow_splits_regions_and_worst_region(data):
    idt = get_dataset("fmow", root=data, split="id_test")
    cats = fmow_categories()
    assert idt.dataset.targets.tolist() == [cats.index("airport"), cats.index("barn")]
    assert idt.metadata["region"].tolist() == ["Americas", "Europe"]
    assert len(get_dataset("fmow", root=data, split="train")) == 2
    assert len(get_dataset("fmow", root=data, split="ood_val")) == 1
    ood = get_dataset("fmow", root=data, split="test")
    assert ood.metadata["region"].tolist() == ["Americas", "Americas", "Africa", "Other"]
    assert ood.metrics == ("top1", "worst_region_acc") and len(ood.classnames) == 62
    y = ood.dataset.targets
    logits = np.eye(62)[[y[0], (y[1] + 1) % 62, y[2], (y[3] + 1) % 62]]  # Americas 1/2, Africa 1/1, Other 0/1
    assert score(logits, y, ood) == {"top1": 50.0, "worst_region_acc": 50.0}


def test_iwildcam_splits_and_macro_f1(data):
    b = get_dataset("iwildcam", root=data, split="id_test")
    assert b.dataset.targets.tolist() == [5, 7] and b.metadata["location"].tolist() == [1, 2]
    assert b.metrics == ("top1", "macro_f1") and len(b.classnames) == 182
    assert get_dataset("iwildcam", root=data, split="ood_val").dataset.targets.tolist() == [2]
    assert get_dataset("iwildcam", root=data, split="test").dataset.targets.tolist() == [181]
    logits = np.eye(182)[[5, 5]]
    # class 5: precision 1/2, recall 1 -> F1 2/3; class 7: F1 0 -> macro 1/3
    assert score(logits, b.dataset.targets, b)["macro_f1"] == pytest.approx(100 / 3)


# ------------------------------------------------------------------------------ video


def test_imagenet_vid_robust_pm_metrics(data):
    b = get_dataset("imagenet-vid-robust", root=data)
    assert b.classnames == ["airplane", "dog", "car"] and b.metrics == ("pm0", "pm10")
    # anchor a (frame 10) + neighbours 8, 20; anchor b (frame 5) + neighbour 6
    assert b.metadata["pm_anchor"].tolist() == [0, 0, 0, 3, 3]
    assert b.metadata["pm_offset"].tolist() == [0, 2, 10, 0, 1]
    assert b.dataset.targets.tolist() == [0, 0, 0, 1, 1]
    logits = torch.zeros(5, 1000)
    logits[[0, 1], 404] = 1.0  # airplane
    logits[2, 817] = 1.0  # car: neighbour 20 of anchor a is wrong
    logits[3, 817] = 1.0  # car is one of anchor b's labels
    logits[4, 152] = 1.0  # dog
    assert score(logits, b.dataset.targets, b) == {"pm0": 100.0, "pm10": 50.0}
    val = get_dataset("imagenet-val-vid-robust", root=data, verify="none")
    assert len(val) == 0 and val.classnames == b.classnames  # no val images of those classes here


def test_ytbb_robust(data):
    with pytest.warns(UserWarning, match="not follow the paper's protocol.*wise-ft"):  # no wiseft-reviewed/ here
        b = get_dataset("ytbb-robust", root=data)
    assert b.dataset.targets.tolist() == [1, 1, 19] and b.metadata["pm_offset"].tolist() == [0, 3, 0]
    logits = np.full((3, 1000), -5.0)
    logits[0, 7] = logits[1, 7] = 1.0  # a bird
    logits[2, 151] = 1.0  # a dog
    out = b.project_logits(logits)
    assert np.isneginf(out[:, 22]).all()  # "none" is never predicted
    assert (out[:, [6, 8, 14, 18]] == 0.0).all()  # cow, giraffe, skateboard, toilet: 0.0 as in the official code
    assert score(logits, b.dataset.targets, b) == {"pm0": 100.0, "pm10": 100.0}
    yv = get_dataset("imagenet-val-ytbb-robust", root=data, verify="none")
    assert len(yv.classnames) == 24


# ------------------------------------------------------------------------------ transfer


def test_transfer_datasets(data):
    dtd = get_dataset("dtd", root=data)
    assert dtd.classnames == ["banded", "zigzagged"] and dtd.dataset.targets.tolist() == [1, 0]
    food = get_dataset("food101", root=data)
    assert food.classnames == ["apple pie", "waffles"] and food.dataset.targets.tolist() == [0, 1]
    sun = get_dataset("sun397", root=data)
    assert sun.classnames == ["abbey", "apartment building outdoor"] and sun.dataset.targets.tolist() == [0, 1]
    cars = get_dataset("stanford-cars", root=data)
    assert cars.dataset.targets.tolist() == [1, 0]
    # CLIP's Cars names keep the slash (SUN397's become spaces, above): the zero-shot prompt is the paper's
    assert cars.classnames == ["Ram C/V Cargo Van Minivan 2012", "smart fortwo Convertible 2012"]
    with pytest.warns(UserWarning, match="skipped 2"):
        train = get_dataset("stanford-cars", root=data, split="train")
    assert len(train) == 0 and train.skipped == 2  # listed but absent images are skipped, counted
    assert len(cars.templates) == 8 and len(dtd.templates) == 8


# ------------------------------------------------------------------------------ k-shot


def test_kshot_is_seeded_per_class_and_keeps_metadata(data):
    labels = np.array([0, 1, 0, 2, 1, 0, 0, 1, 2, 2])
    idx = kshot_indices(labels, k=2, seed=3)
    assert np.array_equal(idx, kshot_indices(labels, k=2, seed=3)) and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx]).tolist() == [2, 2, 2]
    assert not all(np.array_equal(idx, kshot_indices(labels, 2, s)) for s in range(4, 9))
    with pytest.warns(UserWarning, match="3 class.*have fewer.*keep all"):
        assert len(kshot_indices(labels, k=50, seed=0)) == 10  # small classes keep everything
    fmow = get_dataset("fmow", root=data, split="test")
    one = kshot_bundle(fmow, k=1, seed=0)  # four classes, one example each
    assert len(one) == 4 and len(one.metadata["region"]) == 4 and one.metadata["kshot_seed"] == 0
    assert one.metrics == fmow.metrics and one.name == "fmow-1shot"
    with pytest.warns(UserWarning, match=r"class 999: 1"):  # the fixture has one image of class 999
        sub = get_kshot_dataset("imagenet", k=2, seed=1, root=data, split="train")
    assert np.bincount(np.array([sub.dataset[i][1] for i in range(len(sub))])).tolist()[:2] == [2, 2]
    with pytest.raises(ValueError):
        kshot_indices(labels, k=0, seed=0)


# ------------------------------------------------------------------------------ projections: empty groups


def test_max_projection_empty_group_values():
    groups = [[0, 1], [], [2], []]
    logits = np.array([[-3.0, -2.0, -1.0, 9.0, 7.0]])  # inputs 3 and 4 belong to no class
    default = MaxProjection(groups, n_in=5)  # ObjectNet's rule: an empty group is never predicted
    assert default(logits).tolist() == [[-2.0, -np.inf, -1.0, -np.inf]]
    zero = MaxProjection(groups, n_in=5, empty=0.0)
    assert zero(logits).tolist() == [[-2.0, 0.0, -1.0, 0.0]] and zero(logits).argmax() == 1
    per_class = MaxProjection(groups, n_in=5, empty={3: 0.5}, never=[1])  # class 1 unset: -inf
    assert per_class(logits).tolist() == [[-2.0, -np.inf, -1.0, 0.5]]
    for proj in (default, zero, per_class):  # torch and numpy agree
        t = proj(torch.as_tensor(logits, dtype=torch.float32))
        assert isinstance(t, torch.Tensor) and t.tolist() == proj(logits).tolist()
    passed = np.array([[1.0, 5.0, 2.0, 0.0]])  # already 4 columns: only the never columns change
    assert per_class(passed).tolist() == [[1.0, -np.inf, 2.0, 0.0]] and passed[0, 1] == 5.0  # input not modified
    assert default(passed) is passed
    assert per_class(torch.as_tensor(passed)).tolist() == [[1.0, -np.inf, 2.0, 0.0]]
    with pytest.raises(ValueError, match="not classes with an empty group"):
        MaxProjection(groups, n_in=4, empty={0: 0.0})
    with pytest.raises(ValueError, match="never"):
        MaxProjection(groups, n_in=4, never=[4])


def test_ytbb_projection_follows_the_official_rule_objectnet_and_vid_unchanged(data):
    ytbb = ytbb_projection()
    names, groups = ytbb_classes()
    unmapped = [j for j, g in enumerate(groups) if not g]
    assert [names[j] for j in unmapped] == ["cow", "giraffe", "skateboard", "toilet", "none"]
    logits = torch.full((2, 1000), -4.0)
    logits[0, groups[names.index("dog")][0]] = -0.5  # every mapped logit negative ...
    logits[1, groups[names.index("dog")][0]] = 0.5  # ... or one positive
    out = ytbb(logits)
    assert out[:, [6, 8, 14, 18]].eq(0.0).all() and torch.isneginf(out[:, 22]).all()
    assert out.argmax(1).tolist() == [names.index("cow"), names.index("dog")]  # as the official code predicts
    own_head = torch.zeros(1, 24)
    own_head[0, 22] = 10.0  # a 24-way head: "none" still never predicted (the official code subtracts 1e10)
    assert ytbb(own_head).argmax(1).tolist() == [0] and own_head[0, 22] == 10.0
    on = get_dataset("objectnet", root=data).project_logits  # ObjectNet keeps -inf (no empty group there)
    assert on.fill == {} and on.never == [] and np.isfinite(on(np.full((1, 1000), -3.0))).all()
    assert MaxProjection([[0], []], n_in=3)(np.zeros((1, 3)))[0, 1] == -np.inf  # the default is still -inf
    vid = get_dataset("imagenet-vid-robust", root=data).project_logits  # VID: 0.0 for unmapped classes, no mask
    assert vid.never == [] and set(vid.fill.values()) <= {0.0}
    assert ytbb_projection().fill == {6: 0.0, 8: 0.0, 14: 0.0, 18: 0.0, 22: 0.0} and ytbb.never == [22]
    with pytest.warns(UserWarning, match="paper's protocol"):
        assert get_dataset("ytbb-robust", root=data).project_logits.never == [22]
    assert get_dataset("imagenet-val-ytbb-robust", root=data, verify="none").project_logits.never == [22]
