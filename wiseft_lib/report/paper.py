"""The paper's published numbers (WiSE-FT, arXiv 2109.01903 v3), shipped as data.

    from wiseft_lib.report.paper import published, list_published
    published("table1")          # tidy DataFrame: one row per table row, one column per dataset

Dataset columns use the dataset registry's names (``imagenet``, ``imagenet-v2``,
``imagenet-r``, ``imagenet-sketch``, ``objectnet``, ``imagenet-a``, ...), so a user's results
join on them directly; ``avg_shifts`` is the mean over the five ImageNet shifts and
``avg_id_shifts`` the mean of ImageNet and ``avg_shifts``. Descriptive columns: ``model``,
``method`` (zero-shot / fine-tuned / wise-ft / ...), ``head`` (LC = linear classifier,
E2E = end-to-end), ``alpha`` (a string: ``"0"``, ``"0.5"``, ``"1"`` or ``"optimal"``, the
per-column best on the grid 0, 0.05, ..., 1). Only numbers read verbatim from two
independent copies of the paper are included. Values are percentages (Table 3: points).

:func:`testbed` reads the ImageNet robustness testbed's published accuracies (Taori et al. 2020,
MIT licence, see ``paper_data/TESTBED_LICENSE.txt``): the background models of Figures 1, 7, 8
and 21, whose logit-space fit is the effective-robustness baseline.

``published("model_soups")`` is not from this paper: the result files of github.com/mlfoundations/model-soups
(named per row in its ``source`` column), fractions times 100 rounded to two decimals; ``imagenet-2p`` is
that repository's held-out val set (2% of ImageNet train), on which the greedy soup chose its ingredients.
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

TABLES: dict[str, str] = {
    "table1": "CLIP ViT-L/14@336px on ImageNet and five shifts: zero-shot, fine-tuned (LC, E2E), WiSE-FT",
    "table2": "ID accuracy of end-to-end fine-tuning vs WiSE-FT on seven datasets (ViT-L/14@336px presumed)",
    "table3": "Optimal-alpha minus alpha=0.5 accuracy, in points",
    "table4_5_vitb16_lc": "ViT-B/16 linear-classifier alpha sweep rows alpha = 0, 0.5, 1 (Tables 4/5)",
    "table6": "Six further distribution shifts (pm-0, top-1, worst-region accuracy, macro-F1)",
    "table7": "CoOp vs WiSE-FT, ViT-B/16, 16 shots per class",
    "table8": "End-to-end results for other models (CLIP ViT-B/16, ALIGN, JFT ViT-H/14, BASIC-M/L)",
    "table13": "Output-space ensembles of zero-shot CLIP with NoisyStudent EfficientNets",
    "model_soups": "Model soups (Wortsman et al. 2022): greedy/uniform soups of 72 CLIP ViT-B/32 ImageNet fine-tunes",
}

TESTBED_FILE = "imagenet_testbed_top1.csv"
# Testbed models trained with more than ImageNet-1k (the paper's "more data" group, left out of the
# baseline fit): Instagram / semi- and weakly-supervised (swsl, ssl, IG-pretrained FixResNeXt 32x48d),
# JFT, ImageNet-21k/11k (BiT-M, timm ViTs, bninception-imagenet21k), Tencent ML-Images, NoisyStudent, CLIP.
EXTRA_DATA_PATTERNS = ("instagram", "32x48d", "swsl", "_ssl", "jft", "bit-m", "vit_", "noisystudent",
                       "imagenet21k", "imagenet11k", "tencent", "clip")
# The x axis of each per-shift plot: ImageNet restricted to the shift's classes (testbed column -> dataset).
TESTBED_ID_ON_SHIFT = {"imagenet-r": "imagenet-on-r-classes", "imagenet-a": "imagenet-on-a-classes",
                       "objectnet": "imagenet-on-objectnet-classes"}
# Column headers of the paper's tables.
SHORT_NAMES = {"imagenet": "IN", "imagenet-v2": "IN-V2", "imagenet-r": "IN-R", "imagenet-sketch": "IN-Sketch",
               "objectnet": "ObjectNet", "imagenet-a": "IN-A", "avg_shifts": "Avg", "avg_id_shifts": "Avg(r,s)"}
SHIFTS = ["imagenet-v2", "imagenet-r", "imagenet-sketch", "objectnet", "imagenet-a"]
_TEXT_COLUMNS = ("row", "model", "method", "head", "source", "alpha", "dataset", "metric", "split")


def list_published() -> list[str]:
    """Names accepted by :func:`published`."""
    return list(TABLES)


def published(name: str) -> pd.DataFrame:
    """One of the paper's tables as a tidy DataFrame (see the module docstring for columns)."""
    if name not in TABLES:
        raise KeyError(f"no published table {name!r}; known: {', '.join(TABLES)}")
    path = resources.files("wiseft_lib.report").joinpath("paper_data", f"{name}.csv")
    with path.open("r", encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    with path.open("r", encoding="utf-8") as f:
        df = pd.read_csv(f, dtype={c: "string" for c in header if c in _TEXT_COLUMNS}, keep_default_na=False)
    for col in df.columns:
        if col in _TEXT_COLUMNS:
            df[col] = df[col].astype(str)
    df.attrs["description"] = TABLES[name]
    return df


def testbed_group(model: str) -> str:
    """``"standard"`` (ImageNet-1k only: the baseline fit) or ``"more data"`` for a testbed model name."""
    name = model.lower()
    return "more data" if any(p in name for p in EXTRA_DATA_PATTERNS) else "standard"


def testbed() -> pd.DataFrame:
    """The testbed's top-1 accuracies (percent): ``model``, ``group``, one column per dataset.

    Columns are this package's dataset names (``imagenet``, ``imagenet-v2``, ...); the
    ``imagenet-on-*-classes`` columns are ImageNet restricted to a shift's classes (the x axis of
    the per-shift plots); empty cells (no published number) are NaN.
    """
    path = resources.files("wiseft_lib.report").joinpath("paper_data", TESTBED_FILE)
    with path.open("r", encoding="utf-8") as f:
        df = pd.read_csv(f)
    df.insert(1, "group", [testbed_group(m) for m in df["model"]])
    df.attrs["description"] = "ImageNet robustness testbed (Taori et al. 2020), top-1 %, MIT licence"
    return df


def published_long(name: str) -> pd.DataFrame:
    """:func:`published` melted to one row per (table row, dataset column): ``dataset``, ``value``."""
    df = published(name)
    ids = [c for c in df.columns if c in _TEXT_COLUMNS]
    if "dataset" in df.columns:  # already long (Table 6): one column per method
        return df.melt(id_vars=ids, var_name="method_column", value_name="value")
    return df.melt(id_vars=ids, var_name="dataset", value_name="value")


__all__ = ["SHIFTS", "SHORT_NAMES", "TABLES", "TESTBED_ID_ON_SHIFT", "list_published", "published", "published_long",
           "testbed", "testbed_group"]
