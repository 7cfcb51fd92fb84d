"""The paper's datasets as tiny fixture folders in each dataset's real layout (a few 8x8 images per class).

Used by the dataset tests (counts, labels, projections) and by the paper-preset study tests, which run
the paper's notebooks end to end on these folders with a tiny open_clip architecture.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from wiseft_lib.data.imagenet import (
    imagenet_wnids,
    objectnet_classes,
    objectnet_imagenet_groups,
    subset_indices,
    subset_wnids,
)

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
    names = np.array([["Ram C/V Cargo Van Minivan 2012", "smart fortwo Convertible 2012"]], dtype=object)
    sio.savemat(c / "devkit" / "cars_meta.mat", {"class_names": names})
    ann = np.array([("00001.jpg", 2), ("00002.jpg", 1)], dtype=[("fname", "O"), ("class", "O")])
    sio.savemat(c / "cars_test_annos_withlabels.mat", {"annotations": ann})
    sio.savemat(c / "devkit" / "cars_train_annos.mat", {"annotations": ann})  # images absent: skipped
    img(c / "cars_test" / "00001.jpg")
    img(c / "cars_test" / "00002.jpg")
    (c / "cars_train").mkdir()


def write_paper_data(root: Path) -> Path:
    """Every paper dataset under ``root`` in its real layout: a few 8x8 images, empty folders for other classes."""
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
