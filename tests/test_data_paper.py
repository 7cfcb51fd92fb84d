"""The paper's datasets on tiny fixture folders generated in each dataset's real layout.

One session fixture writes every dataset under one data root (a few 8x8 images per class,
empty folders for the other classes); each test checks counts, label order, subset
restriction / projection and metadata against hand-computed expectations.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wiseft_lib.data import get_dataset, list_datasets
from wiseft_lib.data._common import DatasetNotFoundError
from wiseft_lib.data.imagenet import (
    imagenet_classnames,
    imagenet_wnids,
    objectnet_classes,
    objectnet_imagenet_groups,
    subset_indices,
    subset_wnids,
)
from wiseft_lib.data.kshot import get_kshot_dataset, kshot_bundle, kshot_indices
from wiseft_lib.data.templates import IMAGENET_TEMPLATES, SIMPLE_TEMPLATES, get_templates
from wiseft_lib.data.video import ytbb_classes
from wiseft_lib.data.wilds import fmow_categories, iwildcam_classnames
from wiseft_lib.evaluate import score

WNIDS = imagenet_wnids()
R_IDX = subset_indices("imagenet-r")
A_IDX = subset_indices("imagenet-a")
ALARM = [409, 530]  # analog clock, digital clock -> ObjectNet "Alarm clock" (label 0)
PLAIN = next(i for i in range(1000) if i not in R_IDX and i not in A_IDX
             and all(i not in g for g in objectnet_imagenet_groups()))
VAL_CLASSES = sorted({R_IDX[0], R_IDX[-1], A_IDX[0], PLAIN, *ALARM})


def img(path: Path, size=(8, 8), color=(10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.new("RGB", size, color).save(path, fmt)
    return path


def class_dirs(root: Path, names, filled: dict, ext=".JPEG") -> None:
    """Create every class folder; ``filled[name] = n`` images in some of them."""
    for n in names:
        (root / n).mkdir(parents=True, exist_ok=True)
    for n, k in filled.items():
        for j in range(k):
            img(root / n / f"img_{j}{ext}")


def write_cifar(root: Path) -> None:
    rng = np.random.default_rng(0)
    c10 = root / "cifar-10-batches-py"
    c10.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(c10 / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (2, 3072), dtype=np.uint8), "labels": [1, 7]}, f)
    with open(c10 / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"]}, f)
    c100 = root / "cifar-100-python"
    c100.mkdir()
    for name in ("train", "test"):
        with open(c100 / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (3, 3072), dtype=np.uint8), "fine_labels": [0, 1, 99]}, f)
    with open(c100 / "meta", "wb") as f:
        pickle.dump({"fine_label_names": ["apple", "aquarium_fish"] + [f"c{i}" for i in range(98)]}, f)
    (root / "CIFAR-10.1").mkdir()
    np.save(root / "CIFAR-10.1" / "cifar10.1_v6_data.npy", rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8))
    np.save(root / "CIFAR-10.1" / "cifar10.1_v6_labels.npy", np.array([0, 1, 2, 3, 9]))
    (root / "CIFAR-10.2").mkdir()
    np.savez(root / "CIFAR-10.2" / "cifar102_test.npz", images=np.zeros((4, 32, 32, 3), np.uint8),
             labels=np.array([3, 3, 4, 5]))
    np.save(root / "CIFAR-10.2" / "cifar102_train.npy",  # the released pickled-dict format
            np.array({"images": np.zeros((2, 32, 32, 3), np.uint8), "labels": np.array([0, 8])}, dtype=object))


FMOW_ROWS = [  # split, category, country, timestamp -> WILDS split
    ("train", "airport", "USA", "2010-05-01T00:00:00Z"),      # train
    ("train", "zoo", "KEN", "2011-05-01T00:00:00Z"),          # train
    ("test", "airport", "USA", "2012-03-01T00:00:00Z"),       # id_test, Americas
    ("test", "barn", "FRA", "2012-03-01T00:00:00Z"),          # id_test, Europe
    ("val", "dam", "CHN", "2014-03-01T00:00:00Z"),            # ood_val
    ("seq", "dam", "CHN", "2016-03-01T00:00:00Z"),            # sequestered: never used
    ("test", "airport", "USA", "2016-06-01T00:00:00Z"),       # test, Americas
    ("test", "barn", "USA", "2017-01-01T00:00:00Z"),          # test, Americas
    ("test", "zoo", "KEN", "2016-02-01T00:00:00Z"),           # test, Africa
    ("test", "dam", "XXX", "2016-02-01T00:00:00Z"),           # test, Other (unmapped)
]


def write_wilds(root: Path) -> None:
    import pandas as pd

    f = root / "fmow_v1.1"
    (f / "images").mkdir(parents=True)
    pd.DataFrame(FMOW_ROWS, columns=["split", "category", "country_code", "timestamp"]).to_csv(
        f / "rgb_metadata.csv", index=False)
    pd.DataFrame({"alpha-3": ["USA", "KEN", "FRA", "CHN"], "region": ["Americas", "Africa", "Europe", "Asia"]}
                 ).to_csv(f / "country_code_mapping.csv", index=False)
    for i, row in enumerate(FMOW_ROWS):
        if row[0] != "seq":
            img(f / "images" / f"rgb_img_{i}.png")
    w = root / "iwildcam_v2.0"
    rows = [("train", 0, "a.jpg", 1), ("train", 5, "b.jpg", 1), ("id_test", 5, "c.jpg", 1),
            ("id_test", 7, "d.jpg", 2), ("test", 181, "e.jpg", 3), ("val", 2, "f.jpg", 4)]
    (w / "train").mkdir(parents=True)
    pd.DataFrame(rows, columns=["split", "y", "filename", "location_remapped"]).to_csv(w / "metadata.csv", index=False)
    for r in rows:
        img(w / "train" / r[2])


def write_video(root: Path) -> None:
    vid = root / "imagenet_vid_ytbb_robust" / "imagenet-vid-robust"
    index = {"0": ["n02691156", "airplane"], "1": ["n02084071", "dog"], "2": ["n02958343", "car"]}
    rev = {"n02691156": [WNIDS[404]], "n02084071": [WNIDS[151], WNIDS[152]], "n02958343": [WNIDS[817]]}
    keys = {"val/snip_a/000010.JPEG": [0], "val/snip_a/000008.JPEG": [0], "val/snip_a/000020.JPEG": [0],
            "val/snip_b/000005.JPEG": [1, 2], "val/snip_b/000006.JPEG": [1]}
    pmsets = {"val/snip_a/000010.JPEG": ["val/snip_a/000008.JPEG", "val/snip_a/000020.JPEG"],
              "val/snip_b/000005.JPEG": ["val/snip_b/000006.JPEG"]}
    for k in keys:
        img(vid / k)
    (vid / "metadata").mkdir()
    (vid / "misc").mkdir()
    (vid / "metadata" / "labels.json").write_text(json.dumps(keys))
    (vid / "metadata" / "pmsets.json").write_text(json.dumps(pmsets))
    (vid / "misc" / "imagenet_vid_class_index.json").write_text(json.dumps(index))
    (vid / "misc" / "rev_wnid_map.json").write_text(json.dumps(rev))
    yt = root / "imagenet_vid_ytbb_robust" / "ytbb-robust"
    ykeys = {"abc_1000/frame-0.jpg": [1], "abc_1000/frame-3.jpg": [1], "xyz_200/frame-0.jpg": [19]}
    for k in ykeys:
        img(yt / "ytbb_videos" / k)
    (yt / "metadata").mkdir()
    (yt / "metadata" / "labels.json").write_text(json.dumps(ykeys))
    (yt / "metadata" / "pmsets.json").write_text(json.dumps(
        {"abc_1000/frame-0.jpg": ["abc_1000/frame-3.jpg"], "xyz_200/frame-0.jpg": []}))


def write_transfer(root: Path) -> None:
    import scipy.io as sio

    d = root / "dtd"
    class_dirs(d / "images", ["banded", "zigzagged"], {"banded": 2, "zigzagged": 1}, ext=".jpg")
    (d / "labels").mkdir()
    (d / "labels" / "test1.txt").write_text("zigzagged/img_0.jpg\nbanded/img_1.jpg\n")
    fd = root / "food-101"
    class_dirs(fd / "images", ["apple_pie", "waffles"], {"apple_pie": 1, "waffles": 2}, ext=".jpg")
    (fd / "meta").mkdir()
    (fd / "meta" / "classes.txt").write_text("apple_pie\nwaffles\n")
    (fd / "meta" / "test.json").write_text(json.dumps({"apple_pie": ["apple_pie/img_0"], "waffles": ["waffles/img_1"]}))
    s = root / "SUN397"
    (s / "ClassName.txt").parent.mkdir(parents=True)
    (s / "ClassName.txt").write_text("/a/abbey\n/a/apartment_building/outdoor\n")
    img(s / "a" / "abbey" / "sun_aaa.jpg")
    img(s / "a" / "abbey" / "sun_bbb.jpg")
    img(s / "a" / "apartment_building" / "outdoor" / "sun_ccc.jpg")
    (root / "Partitions").mkdir()
    (root / "Partitions" / "Testing_01.txt").write_text(
        "/a/apartment_building/outdoor/sun_ccc.jpg\n/a/abbey/sun_bbb.jpg\n")
    c = root / "stanford_cars"
    (c / "devkit").mkdir(parents=True)
    names = np.array([["AM General Hummer SUV 2000", "smart fortwo Convertible 2012"]], dtype=object)
    sio.savemat(c / "devkit" / "cars_meta.mat", {"class_names": names})
    ann = np.array([("00001.jpg", 2), ("00002.jpg", 1)], dtype=[("fname", "O"), ("class", "O")])
    sio.savemat(c / "cars_test_annos_withlabels.mat", {"annotations": ann})
    sio.savemat(c / "devkit" / "cars_train_annos.mat", {"annotations": ann})  # images absent: skipped
    img(c / "cars_test" / "00001.jpg")
    img(c / "cars_test" / "00002.jpg")
    (c / "cars_train").mkdir()


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wiseft_data")
    inet = root / "imagenet"
    class_dirs(inet / "train", WNIDS, {WNIDS[0]: 3, WNIDS[1]: 2, WNIDS[999]: 1})
    class_dirs(inet / "val", WNIDS, {WNIDS[i]: 2 for i in VAL_CLASSES})
    (inet / "val" / WNIDS[PLAIN] / "corrupt.JPEG").write_bytes(b"not an image at all")
    v2 = root / "imagenetv2-matched-frequency-format-val"
    class_dirs(v2, [str(i) for i in range(1000)], {"2": 1, "10": 1, "999": 1}, ext=".jpeg")
    class_dirs(root / "imagenet-r", subset_wnids("imagenet-r"),
               {subset_wnids("imagenet-r")[0]: 2, subset_wnids("imagenet-r")[-1]: 1}, ext=".jpg")
    class_dirs(root / "imagenet-a", subset_wnids("imagenet-a"), {subset_wnids("imagenet-a")[5]: 1}, ext=".jpg")
    class_dirs(root / "sketch", WNIDS, {WNIDS[3]: 1, WNIDS[500]: 2})
    folders = [c["folder"] for c in objectnet_classes()]
    on = root / "objectnet-1.0" / "images"
    class_dirs(on, folders + ["squeegee"], {"alarm_clock": 1, "wok": 2, "squeegee": 2}, ext=".png")
    img(on / "wok" / "img_0.png", size=(10, 12))  # border crop: 10x12 -> 6x8
    write_cifar(root)
    write_wilds(root)
    write_video(root)
    write_transfer(root)
    return root


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
    b = get_dataset("ytbb-robust", root=data)
    assert b.dataset.targets.tolist() == [1, 1, 19] and b.metadata["pm_offset"].tolist() == [0, 3, 0]
    logits = np.full((3, 1000), -5.0)
    logits[0, 7] = logits[1, 7] = 1.0  # a bird
    logits[2, 151] = 1.0  # a dog
    out = b.project_logits(logits)
    assert np.isneginf(out[:, 22]).all()  # "none" has no ImageNet class
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
    assert cars.classnames[1] == "smart fortwo Convertible 2012" and cars.dataset.targets.tolist() == [1, 0]
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
    assert len(kshot_indices(labels, k=50, seed=0)) == 10  # small classes keep everything
    fmow = get_dataset("fmow", root=data, split="test")
    one = kshot_bundle(fmow, k=1, seed=0)  # four classes, one example each
    assert len(one) == 4 and len(one.metadata["region"]) == 4 and one.metadata["kshot_seed"] == 0
    assert one.metrics == fmow.metrics and one.name == "fmow-1shot"
    sub = get_kshot_dataset("imagenet", k=2, seed=1, root=data, split="train")
    assert np.bincount(np.array([sub.dataset[i][1] for i in range(len(sub))])).tolist()[:2] == [2, 2]
    with pytest.raises(ValueError):
        kshot_indices(labels, k=0, seed=0)
