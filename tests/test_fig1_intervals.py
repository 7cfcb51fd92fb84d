"""Figure 1's 95% Clopper-Pearson bars (ID only on the main figure, both axes per set) and the seed-spread table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.container import ErrorbarContainer

from wiseft_lib.analysis.shift_tables import clopper_pearson
from wiseft_lib.report.fig1_plots import id_intervals, plot_fig1, plot_fig1_per_set, seed_spread

SHIFTS = ["near", "sketch"]


def _curve(seeds: int = 2) -> pd.DataFrame:
    rows = []
    for mode, (ix, oy) in {"end-to-end": (86.3, 51.8), "linear": (82.9, 57.2)}.items():
        for seed in range(seeds):
            for a in np.round(np.linspace(0, 1, 11), 2):
                near = (1 - a) * 70.0 + a * (oy + 5) + 6 * a * (1 - a) - 0.4 * seed
                sketch = (1 - a) * 50.0 + a * (oy - 5) + 9 * a * (1 - a) + 0.3 * seed
                rows.append(dict(seed=seed, mode=mode, alpha=a, id_acc=(1 - a) * 68.3 + a * ix + 10 * a * (1 - a)
                                 + 0.3 * seed, ood_avg=(near + sketch) / 2, near=near, sketch=sketch))
    return pd.DataFrame(rows)


def _marked_means(curve: pd.DataFrame, column: str) -> pd.Series:
    marked = curve[curve["alpha"].isin([0.0, 0.5, 1.0])]
    return marked.groupby(["mode", "alpha"])[column].mean()


def _expected(means: pd.Series, n: int) -> np.ndarray:
    """shift_tables' rule: the seed-mean accuracy's interval as round(accuracy * n) correct out of n (percent)."""
    lo, hi = clopper_pearson(np.round(means.to_numpy() / 100.0 * n), n)
    return np.sort(np.stack([lo, hi], axis=1), axis=0)


def _errorbars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _segments(container: ErrorbarContainer, horizontal: bool) -> np.ndarray:
    segs = [s for lc in container.lines[2] for s in lc.get_segments()]
    keep = [s for s in segs if np.isclose(s[0, 1], s[1, 1]) == horizontal and np.isclose(s[0, 0], s[1, 0]) != horizontal]
    return np.array(keep)


def _logit(p):
    p = np.asarray(p, dtype=float)
    return np.log(p / (1 - p))


def test_figure1_draws_clopper_pearson_bars_on_the_id_accuracy_only():
    curve, n = _curve(seeds=2), 1000
    fig = plot_fig1(curve, n)
    ax = fig.axes[0]
    bars = _errorbars(ax)
    assert len(bars) == 1 and bars[0].has_xerr and not bars[0].has_yerr  # no min/max-over-seeds bars any more
    for lc in (c for c in ax.collections if isinstance(c, LineCollection)):  # nothing vertical anywhere
        for s in lc.get_segments():
            assert np.isclose(s[0, 1], s[1, 1]), f"a non-horizontal bar {s}"
    segs = _segments(bars[0], horizontal=True)
    assert len(segs) == 2 * 3  # zero-shot, alpha=0.5 and fine-tuned of each mode
    drawn = np.sort(np.sort(segs[:, :, 0], axis=1), axis=0) * 100.0  # data coordinates are fractions
    expected = _expected(_marked_means(curve, "id_acc"), n)
    np.testing.assert_allclose(drawn, expected, atol=1e-9)
    # on the logit-scaled axes a bar's drawn width is its interval's width in logit space
    x0, x1 = ax.get_xlim()
    px_per_logit = ax.bbox.width / (_logit(x1) - _logit(x0))
    for seg in segs:
        (left, _), (right, _) = ax.transData.transform(seg)
        assert abs(right - left) == pytest.approx(abs(_logit(seg[1, 0]) - _logit(seg[0, 0])) * px_per_logit, rel=1e-6)
    lo, hi = np.min(expected) / 100.0, np.max(expected) / 100.0
    assert x0 < lo and hi < x1, "the axes show the whole intervals"
    assert ax.get_legend() is None and len(fig.legends) == 1  # right of the axes, off the background models
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "95% Clopper-Pearson on ID (1,000 test images)" in legend and "none on the mean over shifts" in legend


def test_figure1_without_image_counts_draws_no_bars_and_intervals_follow_shift_tables():
    assert _errorbars(plot_fig1(_curve(), None).axes[0]) == []
    points = id_intervals(_curve(seeds=3), 500)
    assert set(points["n_seeds"]) == {3} and len(points) == 6
    np.testing.assert_allclose(np.sort(points[["id_lo", "id_hi"]].to_numpy(), axis=0),
                               _expected(_marked_means(_curve(seeds=3), "id_acc"), 500))


def test_per_set_figure_has_one_axes_per_shift_with_intervals_on_both_axes():
    curve = _curve()
    n_images = {"photo": 1000, "near": 400, "sketch": 2500}  # different sizes: each axis uses its own set's count
    fig = plot_fig1_per_set(curve, n_images, "photo", SHIFTS, ncols=3)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == SHIFTS
    for ax, shift in zip(axes, SHIFTS):
        assert ax.get_xscale() == "logit" and ax.get_yscale() == "logit"
        (bars,) = _errorbars(ax)
        assert bars.has_xerr and bars.has_yerr
        x = np.sort(np.sort(_segments(bars, horizontal=True)[:, :, 0], axis=1), axis=0) * 100.0
        y = np.sort(np.sort(_segments(bars, horizontal=False)[:, :, 1], axis=1), axis=0) * 100.0
        np.testing.assert_allclose(x, _expected(_marked_means(curve, "id_acc"), 1000), atol=1e-9)
        np.testing.assert_allclose(y, _expected(_marked_means(curve, shift), n_images[shift]), atol=1e-9)
        assert ax.get_ylim()[0] < y.min() / 100.0 and y.max() / 100.0 < ax.get_ylim()[1]
    baselines = pd.DataFrame({"group": "standard", "model": ["a", "b", "c"], "id_acc": [60.0, 70.0, 80.0],
                              "near": [50.0, 58.0, 66.0], "sketch": [30.0, 36.0, 42.0]})
    fig = plot_fig1_per_set(curve, n_images, "photo", SHIFTS, baselines=baselines, titles={"near": "Near"})
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["Near", "sketch"]
    assert fig._repr_png_()[:4] == b"\x89PNG"  # shows inline in a notebook like the others


def test_seed_spread_per_mode_alpha_and_column():
    curve = _curve(seeds=3)
    spread = seed_spread(curve, SHIFTS)
    assert list(spread.columns) == ["mode", "alpha", "column", "n_seeds", "mean", "min", "max", "spread_pp"]
    assert len(spread) == 2 * 3 * 4 and set(spread["alpha"]) == {0.0, 0.5, 1.0}
    assert list(spread["column"][:4]) == ["id_acc", "ood_avg", *SHIFTS] and set(spread["n_seeds"]) == {3}
    row = spread[(spread["mode"] == "linear") & (spread["alpha"] == 0.5) & (spread["column"] == "id_acc")].iloc[0]
    values = curve[(curve["mode"] == "linear") & (curve["alpha"] == 0.5)]["id_acc"]
    assert (row["mean"], row["min"], row["max"]) == pytest.approx((values.mean(), values.min(), values.max()))
    assert row["spread_pp"] == pytest.approx(0.6)
    one = seed_spread(curve[curve["seed"] == 0], SHIFTS)  # one seed: the table stays, zero-width
    assert set(one["n_seeds"]) == {1} and (one["min"] == one["max"]).all() and (one["spread_pp"] == 0).all()
    assert len(seed_spread(curve, SHIFTS, alphas=None)) == 2 * 11 * 4
