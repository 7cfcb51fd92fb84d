"""The figures' one theme (seaborn's, applied only around the package's own calls), the seaborn line plots, and
the tidy data each figure carries and ``save_figure`` writes beside its images: checked on what was drawn."""
from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.scale import LogitTransform

from wiseft_lib.analysis.shift_tables import weight_path_table
from wiseft_lib.report.figures import figure_theme, new_figure, save_figure, theme_palette, theme_rc
from wiseft_lib.report.plots import (
    plot_alpha_step,
    plot_baselines,
    plot_id_vs_ood,
    plot_metric_curves,
    plot_per_shift,
    plot_weight_path,
    show_images,
)

COLORBLIND = [to_hex(c) for c in sns.color_palette("colorblind")]
ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]


def _hex(color) -> str:
    return to_hex(color)


def _visible(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def _curves(seeds: int = 2) -> pd.DataFrame:
    rows = []
    for mode, (ix, oy) in {"end-to-end": (81.3, 53.8), "linear classifier": (79.9, 57.2)}.items():
        for seed in range(seeds):
            for a in ALPHAS:
                rows.append(dict(mode=mode, seed=seed, alpha=a,
                                 id_acc=(1 - a) * 68.3 + a * ix + 10 * a * (1 - a) + 0.3 * seed,
                                 ood_avg=(1 - a) * 58.1 + a * oy + 8 * a * (1 - a) - 0.2 * seed))
    return pd.DataFrame(rows)


def _metric_curves() -> pd.DataFrame:
    """Two panels, two modes; x (ID accuracy) turns back after alpha 0.75, so alpha order is not x order."""
    rows = []
    for panel, shift in (("A: pm10", 0.0), ("B: f1", 5.0)):
        for i, mode in enumerate(["end-to-end", "linear"]):
            for a in [1.0, 0.0, 0.5, 0.75, 0.25]:  # shuffled: the plot orders by alpha itself
                rows.append(dict(panel=panel, mode=mode, alpha=a, x=70 + 20 * a - 15 * a * a + i,
                                 y=40 + shift + 30 * a * (1 - a) - 3 * i))
    return pd.DataFrame(rows)


def test_the_theme_is_seaborns_and_stays_inside_the_package_calls():
    rc = theme_rc()
    assert rc["axes.labelsize"] == sns.plotting_context("notebook")["axes.labelsize"] == 12
    assert rc["axes.grid"] is True and rc["grid.color"] == sns.axes_style("whitegrid")["grid.color"]
    assert [_hex(c) for c in rc["axes.prop_cycle"].by_key()["color"]] == COLORBLIND == [_hex(c) for c in theme_palette()]
    user = {"axes.labelsize": 7, "xtick.labelsize": 6, "axes.grid": False, "axes.prop_cycle": mpl.cycler(color=["red"])}
    with mpl.rc_context(user):
        before = dict(mpl.rcParams)
        fig = plot_metric_curves(_metric_curves())
        own = Figure().add_subplot()  # the user's own figure, made after the package's
        assert dict(mpl.rcParams) == before, "a package call leaves the global matplotlib settings as they were"
    ax = fig.axes[0]
    assert ax.xaxis.label.get_fontsize() == 12 and ax.get_xticklabels()[0].get_fontsize() == 11
    assert ax.title.get_fontsize() == 12 and fig.legends[0].get_texts()[0].get_fontsize() == 11
    grid = ax.yaxis.get_gridlines()
    assert grid and all(g.get_visible() for g in grid) and _hex(grid[0].get_color()) == _hex(".8")
    assert own.xaxis.label.get_fontsize() == 7 and not any(g.get_visible() for g in own.yaxis.get_gridlines())
    assert _hex(own.plot([0, 1])[0].get_color()) == _hex("red")


def test_a_package_figure_keeps_its_theme_for_axes_added_later_and_when_drawn():
    """new_figure's axes are themed outside any theme block, and "C0" resolves to the theme's blue at drawing."""
    fig = new_figure((2.0, 2.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="C0", linewidth=10)
    assert ax.xaxis.label.get_fontsize() == 12 and all(g.get_visible() for g in ax.xaxis.get_gridlines())
    assert ax.xaxis.label.get_fontsize() != FontProperties(size=mpl.rcParams["axes.labelsize"]).get_size_in_points()
    fig.canvas.draw()
    pixels = {tuple(p) for p in np.asarray(fig.canvas.buffer_rgba())[..., :3].reshape(-1, 3)}
    assert (0x01, 0x73, 0xB2) in pixels, "the colour-blind palette's blue"
    assert (0x1F, 0x77, 0xB4) not in pixels, "not matplotlib's default blue"
    with figure_theme(theme_rc(font_scale=2.0)):  # a caller's own variant of the theme reaches new figures
        assert new_figure((2.0, 2.0)).add_subplot().xaxis.label.get_fontsize() == 24


def test_id_vs_ood_stays_on_logit_axes_in_the_theme_and_carries_its_points():
    extra = pd.DataFrame({"group": ["standard"] * 4 + ["zero-shot CLIP"] * 3, "model": list("abcdefg"),
                          "id_acc": [70, 74, 78, 80, 55, 62, 68.3], "ood_avg": [35, 39, 44, 46, 45, 52, 58.1]})
    curves = _curves()
    fig = plot_id_vs_ood(curves, extra=extra, title="Figure 1")
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "logit"
    assert isinstance(ax.xaxis.get_transform(), LogitTransform)
    assert {"70", "80"} <= {t.get_text() for t in ax.get_xticklabels()}
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}  # not caps
    assert set(lines) == {"linear fit (standard)", "linear fit (zero-shot CLIP)", "WiSE-FT (end-to-end)",
                          "WiSE-FT (linear classifier)"}
    means = curves.groupby(["mode", "alpha"])[["id_acc", "ood_avg"]].mean()
    e2e = lines["WiSE-FT (end-to-end)"]
    np.testing.assert_allclose(e2e.get_xdata(), means.loc["end-to-end", "id_acc"].to_numpy() / 100)
    np.testing.assert_allclose(e2e.get_ydata(), means.loc["end-to-end", "ood_avg"].to_numpy() / 100)
    assert _hex(e2e.get_color()) == COLORBLIND[0] and _hex(lines["WiSE-FT (linear classifier)"].get_color()) == COLORBLIND[1]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sorted(len(c.get_offsets()) for c in scatters if len(c.get_offsets()) > 1) == [3, 4]  # the extra groups
    assert sum(c.get_sizes()[0] == 220 for c in scatters) == 2  # a zero-shot star per mode
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend.count("zero-shot model (α=0)") == 1 and {"WiSE-FT (end-to-end)", "fine-tuned (linear classifier)", "standard",
                                                "linear fit (standard)"} <= set(legend)
    assert ax.get_legend().get_texts()[0].get_fontsize() == pytest.approx(10.0, abs=0.01)  # "small" of the theme's 12
    assert ax.title.get_fontsize() == 12 and ax.get_xticklabels()[0].get_fontsize() == 11
    data = fig.data
    assert len(data) == 2 * len(ALPHAS) + len(extra)
    curve_rows = data.dropna(subset=["mode"]).set_index(["mode", "alpha"])
    np.testing.assert_allclose(curve_rows.loc[means.index, "id_acc"], means["id_acc"])
    assert set(curve_rows["n"]) == {2}
    pd.testing.assert_frame_equal(data.dropna(subset=["group"])[list(extra.columns)].reset_index(drop=True), extra)


def test_metric_curves_are_seaborn_lines_in_alpha_order_with_marked_ends_and_one_legend():
    curves = _metric_curves()
    fig = plot_metric_curves(curves, ylabels={"A: pm10": "pm-10 (%)"}, titles={"B: f1": "macro F1"}, title="Fig 9")
    axes = _visible(fig)
    assert [ax.get_title() for ax in axes] == ["A: pm10", "macro F1"]
    assert [ax.get_ylabel() for ax in axes] == ["pm-10 (%)", "y"] and axes[0].get_xlabel() == "ID accuracy (%)"
    for ax, panel in zip(axes, ["A: pm10", "B: f1"]):
        lines = ax.get_lines()
        assert len(lines) == 2 and [_hex(line.get_color()) for line in lines] == COLORBLIND[:2]
        for line, mode in zip(lines, ["end-to-end", "linear"]):
            want = curves[(curves["panel"] == panel) & (curves["mode"] == mode)].sort_values("alpha")
            np.testing.assert_allclose(line.get_xdata(), want["x"])  # alpha order, though x turns back
            np.testing.assert_allclose(line.get_ydata(), want["y"])
            assert line.get_marker() == "o"
        (ends,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(ends.get_offsets()) == 3 * 2 and sorted(set(ends.get_sizes())) == [45, 55, 220]
        assert not [c for c in ax.collections if isinstance(c, PolyCollection)], "one row per alpha: no band"
        assert ax.get_legend() is None
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "WiSE-FT (end-to-end)", "WiSE-FT (linear)", "zero-shot (alpha 0)", "fine-tuned (alpha 1)", "alpha 0.5"]
    assert fig._suptitle.get_text() == "Fig 9" and fig._suptitle.get_fontsize() == pytest.approx(14.4)
    assert list(fig.data.columns) == ["panel", "mode", "alpha", "x", "y", "n"] and len(fig.data) == len(curves)
    assert list(fig.data["alpha"][:5]) == sorted(ALPHAS) and set(fig.data["n"]) == {1}


def test_metric_curves_over_alpha_average_seeds_and_shade_their_range():
    rows = [dict(panel="ID", mode="end-to-end", seed=s, alpha=a, id_acc=60 + 20 * a + 2 * s)
            for s in range(3) for a in ALPHAS]
    curves = pd.DataFrame(rows)
    fig = plot_metric_curves(curves, x="alpha", y="id_acc", xlabel="alpha", ncols=1)
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_xdata(), ALPHAS)
    np.testing.assert_allclose(line.get_ydata(), [62 + 20 * a for a in ALPHAS])  # the mean over seeds
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(60.0) and ys.max() == pytest.approx(84.0)  # min of seed 0 to max of seed 2
    assert len(fig.data) == len(curves) and list(fig.data.columns) == ["panel", "mode", "alpha", "id_acc"]


def test_weight_path_is_seaborn_hue_by_mode_style_by_line():
    sweep = pd.DataFrame([dict(mode=m, alpha=a, id=70 + 10 * a + 5 * a * (1 - a) + i, near=50 + 20 * a * (1 - a) - i)
                          for i, m in enumerate(["end-to-end", "linear"]) for a in ALPHAS])
    path = weight_path_table(sweep, ["id", "near"])
    fig = plot_weight_path(path, titles={"near": "Near"}, title="Figure 6")
    axes = _visible(fig)
    assert [ax.get_title() for ax in axes] == ["id", "Near"] and axes[0].get_xlabel() == "alpha"
    for ax, column in zip(axes, ["id", "near"]):
        lines = ax.get_lines()
        assert len(lines) == 2 * 3 and ax.get_legend() is None
        solid = [line for line in lines if line.get_linestyle() == "-"]
        assert len(solid) == 2 and all(line.get_linewidth() == 2.0 for line in solid)
        assert all(line.get_linewidth() == 1.3 for line in lines if line not in solid)
        (dots,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(dots.get_offsets()) == 2 * len(ALPHAS)  # the alphas evaluated, on the paths
        for line, mode in zip(solid, ["end-to-end", "linear"]):
            assert _hex(line.get_color()) == COLORBLIND[["end-to-end", "linear"].index(mode)]
            want = path[(path["mode"] == mode) & (path["column"] == column)].sort_values("alpha")
            np.testing.assert_allclose(line.get_ydata(), want["accuracy"])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "mode", "end-to-end", "linear", "line", "weight path", "endpoint line", "better endpoint"]
    assert list(fig.data.columns) == ["mode", "column", "alpha", "line", "accuracy"] and len(fig.data) == 2 * 2 * 5 * 3


def _per_shift_points() -> pd.DataFrame:
    rows = []
    for shift, dy in (("near", 0.0), ("sketch", -12.0)):
        for mode in ("end-to-end", "linear"):
            for a in ALPHAS:
                x, y = 68 + 14 * a, 55 + dy + 10 * a * (1 - a)
                rows.append(dict(shift=shift, x_dataset="photo", mode=mode, alpha=a, x=x, y=y, x_lo=x - 1, x_hi=x + 1,
                                 y_lo=y - 2, y_hi=y + 2))
    return pd.DataFrame(rows)


def test_per_shift_panels_stay_logit_with_intervals_and_share_one_legend():
    points = _per_shift_points()
    background = pd.DataFrame({"shift": ["near"] * 4 + ["sketch"] * 3, "group": ["standard"] * 3 + ["zero-shot"] * 1
                               + ["standard"] * 3, "model": list("abczabc"),
                               "x": [60, 70, 80, 50, 60, 70, 80], "y": [40, 48, 56, 45, 30, 36, 42]})
    fig = plot_per_shift(points, background, titles={"near": "Near"})
    axes = _visible(fig)
    assert [ax.get_title() for ax in axes] == ["Near", "sketch"]
    for ax in axes:
        assert ax.get_xscale() == ax.get_yscale() == "logit" and ax.get_legend() is None
        assert len([c for c in ax.containers if isinstance(c, ErrorbarContainer)]) == 1
        assert [line.get_label() for line in ax.get_lines()].count("linear fit (standard)") == 1
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert {"WiSE-FT (linear)", "standard", "linear fit (standard)"} <= set(texts)
    assert texts.count("zero-shot") == texts.count("zero-shot model (α=0)") == 1  # other zero-shot models; the star
    assert texts.count("standard") == 1
    data = fig.data
    assert data.columns[0] == "shift" and list(dict.fromkeys(data["shift"])) == ["near", "sketch"]
    assert len(data) == len(points) + len(background) and {"x_lo", "y_hi", "group", "model"} <= set(data.columns)
    curve = data.dropna(subset=["mode"]).sort_values(["shift", "mode", "alpha"]).reset_index(drop=True)
    want = points.sort_values(["shift", "mode", "alpha"]).reset_index(drop=True)
    np.testing.assert_allclose(curve[["x", "y", "x_lo", "y_hi"]], want[["x", "y", "x_lo", "y_hi"]])


def test_baselines_panels_per_family_with_their_data():
    reference = pd.DataFrame({"alpha": ALPHAS * 2, "id_acc": [68, 75, 79, 81, 81.5] * 2,
                              "ood_avg": [58, 61, 62, 59, 54] * 2})
    variants = pd.DataFrame({"family": ["lr"] * 4 + ["wd"] * 2, "variant": ["v1", "v1", "v2", "v2", "v3", "v3"],
                             "alpha": [0.5, 1.0] * 3, "id_acc": [76, 80, 77, 82, 75, 79],
                             "ood_avg": [60, 52, 61, 55, 59, 53]})
    points = pd.DataFrame({"variant": ["v1", "v2", "v3"], "chosen_on_val": [False, True, False]})
    extra = pd.DataFrame({"mode": ["output space"] * 3, "alpha": [0.0, 0.5, 1.0], "id_acc": [68, 78, 81.5],
                          "ood_avg": [58, 60, 54]})
    fig = plot_baselines(reference, variants, points, extra_curves=extra, title="Figure 3")
    axes = _visible(fig)
    assert [ax.get_title() for ax in axes] == ["lr", "wd", "output space and random interpolation"]
    assert all(ax.get_xscale() == "logit" and ax.get_yscale() == "logit" for ax in axes)
    lr = axes[0]
    assert [line.get_linestyle() for line in lr.get_lines()] == ["-", "--", "--"]  # WiSE-FT, then each variant
    assert {"WiSE-FT (alpha 0 to 1)", "zero-shot", "v1", "v2 (chosen on val)"} == {
        t.get_text() for t in lr.get_legend().get_texts()}
    assert lr.xaxis.label.get_fontsize() == 12
    data = fig.data
    assert list(data.columns) == ["family", "series", "alpha", "id_acc", "ood_avg", "chosen_on_val"]
    assert len(data) == 5 + len(variants) + len(extra)
    assert set(data.loc[data["chosen_on_val"], "series"]) == {"v2"}
    np.testing.assert_allclose(data[data["series"] == "WiSE-FT"]["id_acc"], [68, 75, 79, 81, 81.5])


def test_save_figure_writes_png_pdf_and_the_tidy_data(tmp_path):
    from IPython.core.formatters import DisplayFormatter

    fig = plot_metric_curves(_metric_curves())
    paths = save_figure(fig, tmp_path / "out" / "fig9", dpi=50)
    assert [p.name for p in paths] == ["fig9.png", "fig9.pdf", "fig9.data.csv"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    pd.testing.assert_frame_equal(pd.read_csv(paths[2]), fig.data)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fig9.data.csv", "fig9.pdf", "fig9.png"]
    assert "fig9.data.csv" in DisplayFormatter().format(fig)[0]["text/plain"]

    plain = new_figure((2.0, 2.0))
    plain.add_subplot().plot([0, 1], [1, 2])
    frame = pd.DataFrame({"x": [0, 1], "y": [1.0, 2.0], "label": ["a", "b"]})
    paths = save_figure(plain, tmp_path / "given", formats=("png",), data=frame)
    assert [p.name for p in paths] == ["given.png", "given.data.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(paths[1]), frame)
    assert [p.name for p in save_figure(new_figure((2.0, 2.0)), tmp_path / "none")] == ["none.png", "none.pdf"]


def test_alpha_step_and_image_grids_are_themed_figures_and_the_step_carries_its_curve():
    curve = _curves(seeds=1)[lambda d: d["mode"] == "end-to-end"]
    images = [np.full((8, 8), 40 * i, dtype=np.uint8) for i in range(4)]
    predictions = {0.0: [0, 1, 1, 0], 0.5: [0, 0, 1, 1], 1.0: [0, 0, 0, 1]}
    fig = plot_alpha_step(curve, 0.5, images, [0, 0, 1, 0], predictions, ["cat", "dog"], max_images=4)
    left = fig.subfigs[0].axes[0]
    assert left.get_xscale() == "logit" and left.get_title() == "alpha = 0.5"
    assert len(fig.data) == len(ALPHAS) and list(fig.data["alpha"]) == ALPHAS
    grid = show_images(images, list("abcd"), ncols=2, title="images")
    assert grid.data is None and grid.axes[0].get_title() == "a"
    assert _hex(grid.get_facecolor()) == _hex(theme_rc()["figure.facecolor"])
