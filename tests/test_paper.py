"""The published numbers shipped with the package: shapes, columns, internal consistency."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wiseft_lib.report.paper import SHIFTS, list_published, published, published_long

IN_COLS = ["imagenet", *SHIFTS, "avg_shifts", "avg_id_shifts"]


def test_every_table_loads_with_the_expected_shape():
    shapes = {"table1": (9, 14), "table2": (3, 11), "table3": (4, 10), "table4_5_vitb16_lc": (3, 11),
              "table6": (8, 8), "table7": (3, 10), "table8": (21, 11), "table13": (4, 6), "model_soups": (4, 13)}
    assert sorted(list_published()) == sorted(shapes)
    for name, shape in shapes.items():
        df = published(name)
        assert isinstance(df, pd.DataFrame) and df.shape == shape, name
        assert df.attrs["description"]
    with pytest.raises(KeyError, match="known"):
        published("table99")


def test_table1_values_and_columns():
    t1 = published("table1")
    assert list(t1.columns[-8:]) == IN_COLS
    row = t1.set_index("row").loc["WiSE-FT E2E, optimal alpha"]
    assert row["imagenet"] == 87.1 and row["imagenet-a"] == 81.0 and row["alpha"] == "optimal"
    assert set(t1["method"]) == {"zero-shot", "fine-tuned", "wise-ft"}
    assert published("table2").set_index("alpha").loc["0.5", "food101"] == 96.1


@pytest.mark.parametrize("name", ["table1", "table4_5_vitb16_lc", "table8"])
def test_averages_are_consistent_with_the_per_shift_numbers(name):
    df = published(name)
    fixed = df[df["alpha"] != "optimal"]  # "optimal" picks each column separately
    avg = fixed[SHIFTS].mean(axis=1)
    assert np.allclose(avg, fixed["avg_shifts"], atol=0.11)
    assert np.allclose((fixed["imagenet"] + avg) / 2, fixed["avg_id_shifts"], atol=0.11)


def test_table6_and_long_format():
    t6 = published("table6")
    fmow = t6[(t6["dataset"] == "fmow") & (t6["metric"] == "worst_region_acc")].iloc[0]
    assert fmow["split"] == "test" and fmow["wise-ft optimal alpha"] == 49.7
    long = published_long("table1")
    assert len(long) == 9 * 8 and set(long["dataset"]) == set(IN_COLS)
    assert len(published_long("table6")) == 8 * 4
