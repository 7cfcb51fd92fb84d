"""WILDS FMoW and iWildCam, read straight from the WILDS folder layout (no ``wilds`` package).

======== ===================================== ==============================================
name     splits                                metrics
======== ===================================== ==============================================
fmow     train, id_val, id_test, ood_val, test top1, worst_region_acc (``metadata["region"]``)
iwildcam train, id_val, id_test, ood_val, test top1, macro_f1
======== ===================================== ==============================================

Splits follow WILDS' official scheme: ``id_*`` are in-distribution, ``ood_val`` and ``test``
out-of-distribution (FMoW: images from 2013-2015 and from 2016 on; iWildCam: camera traps
unseen in training). The paper reports FMoW ``id_test`` top-1 and ``test`` worst-region
accuracy, iWildCam ``id_test`` and ``test`` macro-F1. Rows keep the metadata CSV's order.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import pandas as pd

from wiseft_lib.data.common import (
    ImageFiles,
    PathLike,
    asset_path,
    find_folder,
    layout_error,
    load_asset,
    readable_mask,
)
from wiseft_lib.data.registry import DatasetBundle, register_dataset
from wiseft_lib.data.templates import FMOW_TEMPLATES, IWILDCAM_TEMPLATES

SPLITS = ("train", "id_val", "id_test", "ood_val", "test")

FMOW_SOURCE = ("WILDS fmow v1.1: https://wilds.stanford.edu/datasets/ "
               "(codalab bundle 0xaec91eb7c9d548ebb15e1b5e60f966ab), or `python -m wilds.download`")
FMOW_LAYOUT = """\
$WISEFT_DATA/fmow_v1.1/
  rgb_metadata.csv                split, category, country_code, timestamp, ... (one row per image)
  country_code_mapping.csv        alpha-3, region
  images/rgb_img_0.png ...        rgb_img_<row index in rgb_metadata.csv>.png
"""
IWILDCAM_SOURCE = ("WILDS iwildcam v2.0: https://wilds.stanford.edu/datasets/ "
                   "(codalab bundle 0x6313da2b204647e79a14b468131fcd64), or `python -m wilds.download`")
IWILDCAM_LAYOUT = """\
$WISEFT_DATA/iwildcam_v2.0/
  metadata.csv                    split, y, filename, location_remapped, ...
  train/<filename>                all images, whatever their split
"""


def fmow_categories() -> list[str]:
    """The 62 FMoW categories in label order."""
    return list(load_asset("fmow.json")["categories"])


def iwildcam_classnames() -> list[str]:
    """The 182 iWildCam-WILDS classes, by label, as the English names the WiSE-FT prompts use."""
    df = pd.read_csv(asset_path("iwildcam_classes.csv"))
    return [str(s).lower() for s in df.sort_values("y")["english"]]


def _check_split(split: str, name: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"{name} has no split {split!r}; available: {', '.join(SPLITS)}")


def _fmow_split_column(meta: pd.DataFrame, ood_year: int = 2016) -> np.ndarray:
    """WILDS' official FMoW split of each row (``""`` for sequestered rows)."""
    ts = pd.to_datetime(meta["timestamp"], utc=True, format="ISO8601")
    test_ood = np.asarray(ts >= pd.Timestamp(f"{ood_year}-01-01", tz="UTC"))
    val_ood = np.asarray(ts >= pd.Timestamp(f"{ood_year - 3}-01-01", tz="UTC")) & ~test_ood
    ood = test_ood | val_ood
    raw = meta["split"].astype(str).to_numpy()
    out = np.full(len(meta), "", dtype=object)
    out[(raw == "train") & ~ood] = "train"
    out[(raw == "val") & ~ood] = "id_val"
    out[(raw == "test") & ~ood] = "id_test"
    out[(raw == "val") & val_ood] = "ood_val"
    out[(raw == "test") & test_ood] = "test"
    return out


@register_dataset("fmow", description="WILDS FMoW satellite images, 62 classes, 5 regions", splits=SPLITS)
def load_fmow(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
              verify: str = "header") -> DatasetBundle:
    _check_split(split, "fmow")
    folder = find_folder(root, ["fmow_v1.1", "fmow_v1.0", "fmow"],
                         ["rgb_metadata.csv", "country_code_mapping.csv", "images"],
                         dataset="fmow", layout=FMOW_LAYOUT, source=FMOW_SOURCE)
    meta = pd.read_csv(folder / "rgb_metadata.csv")
    codes = pd.read_csv(folder / "country_code_mapping.csv")
    to_region = dict(zip(codes["alpha-3"], codes["region"]))
    categories = fmow_categories()
    unknown = sorted(set(meta["category"]) - set(categories))
    if unknown:
        raise layout_error("fmow", f"unknown categories in rgb_metadata.csv: {unknown[:5]}", FMOW_LAYOUT, FMOW_SOURCE)
    rows = np.flatnonzero(_fmow_split_column(meta) == split)
    paths = [folder / "images" / f"rgb_img_{i}.png" for i in rows]
    ok = readable_mask(paths, verify, what="fmow")
    rows = rows[ok]
    sub = meta.iloc[rows]
    index = {c: i for i, c in enumerate(categories)}
    labels = sub["category"].map(index).to_numpy()
    regions = np.asarray([str(to_region.get(c, "Other")) if isinstance(c, str) else "Other"
                          for c in sub["country_code"]])
    years = pd.to_datetime(sub["timestamp"], utc=True, format="ISO8601").dt.year.to_numpy()
    return DatasetBundle(
        name="fmow",
        dataset=ImageFiles([(folder / "images" / f"rgb_img_{i}.png", y) for i, y in zip(rows, labels)], transform),
        classnames=categories,
        templates=list(FMOW_TEMPLATES),
        metrics=("top1", "worst_region_acc"),
        metadata={"region": regions, "year": years},
        skipped=int((~ok).sum()),
    )


_IWILDCAM_SPLIT = {"train": "train", "id_val": "id_val", "id_test": "id_test", "ood_val": "val", "test": "test"}


@register_dataset("iwildcam", description="WILDS iWildCam camera traps, 182 classes (macro-F1)", splits=SPLITS)
def load_iwildcam(root: Optional[PathLike] = None, split: str = "test", transform: Optional[Callable] = None,
                  verify: str = "header") -> DatasetBundle:
    _check_split(split, "iwildcam")
    folder = find_folder(root, ["iwildcam_v2.0", "iwildcam"], ["metadata.csv", "train"],
                         dataset="iwildcam", layout=IWILDCAM_LAYOUT, source=IWILDCAM_SOURCE)
    meta = pd.read_csv(folder / "metadata.csv")
    missing = {"split", "y", "filename"} - set(meta.columns)
    if missing:
        raise layout_error("iwildcam", f"metadata.csv lacks columns {sorted(missing)}", IWILDCAM_LAYOUT,
                           IWILDCAM_SOURCE)
    sub = meta[meta["split"] == _IWILDCAM_SPLIT[split]]
    paths = [folder / "train" / f for f in sub["filename"]]
    ok = readable_mask(paths, verify, what="iwildcam")
    sub = sub[ok]
    location = sub["location_remapped"].to_numpy() if "location_remapped" in sub else np.zeros(len(sub), int)
    return DatasetBundle(
        name="iwildcam",
        dataset=ImageFiles([(folder / "train" / f, int(y)) for f, y in zip(sub["filename"], sub["y"])], transform),
        classnames=iwildcam_classnames(),
        templates=list(IWILDCAM_TEMPLATES),
        metrics=("top1", "macro_f1"),
        metadata={"location": location},
        skipped=int((~ok).sum()),
    )
