"""Paper figures: Figure 1's ID-vs-OOD accuracy plot on logit-scaled axes, and the other study plots.

    import pandas as pd
    from wiseft_lib.report.plots import plot_id_vs_ood, save_figure

    curve = pd.DataFrame({"mode": ["end-to-end"] * 3, "alpha": [0, 0.5, 1],
                          "id_acc": [68.3, 81.7, 81.3], "ood_avg": [58.1, 63.0, 53.8]})
    fig = plot_id_vs_ood(curve)
    save_figure(fig, "outputs/figure1")          # figure1.png, figure1.pdf and figure1.data.csv (the points drawn)

Accuracies are percentages everywhere; the ID-vs-OOD axes are logit-scaled (as in Taori et al. and the
paper) with percent tick labels. :func:`fit_logit_line` (from
:mod:`wiseft_lib.analysis.effective_robustness`) fits the effective-robustness baseline, a straight
line in logit space through a group of models. The lines over alpha (:func:`plot_metric_curves`,
:func:`plot_weight_path`) are drawn by seaborn straight from tidy frames; the logit-scaled plots stay matplotlib
(their axes transforms and per-point markers), in the same theme. Every function here draws under the package's
theme (:func:`~wiseft_lib.report.figures.figure_theme`) and attaches the tidy frame it drew (``fig.data``), which
:func:`save_figure` writes as ``STEM.data.csv``. The shared machinery (:func:`new_figure`,
:class:`NotebookFigure`, :func:`logit_axes`, :func:`panel_grid`, :func:`save_figure`, :func:`themed`,
:func:`attach_data`) is in :mod:`wiseft_lib.report.figures` and importable from here too.
"""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any, Optional, Union

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D

from wiseft_lib.analysis.effective_robustness import LogitLine, fit_logit_line, logit_percent
from wiseft_lib.report.figures import (
    NotebookFigure,
    attach_data,
    draw_logit_line,
    figure_data,
    figure_legend,
    figure_theme,
    logit_axes,
    new_figure,
    outside_legend,
    panel_grid,
    save_figure,
    theme_palette,
    themed,
)

__all__ = ["plot_baselines", "plot_metric_curves", "LogitLine", "fit_logit_line", "draw_logit_line", "logit_axes",
           "plot_id_vs_ood", "show_images", "plot_alpha_step", "plot_weight_path", "plot_per_shift", "save_figure",
           "new_figure", "panel_grid", "NotebookFigure", "attach_data", "figure_data", "figure_theme", "themed"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
# plot_metric_curves' marked points: name -> (alpha, marker, area in points^2)
_ENDS = {"zero-shot (alpha 0)": (0.0, "*", 220), "fine-tuned (alpha 1)": (1.0, "s", 55), "alpha 0.5": (0.5, "D", 45)}
# plot_weight_path's three lines per mode: column of weight_path_table -> name, and each line's look
_PATH_LINES = {"accuracy": "weight path", "endpoint_line": "endpoint line", "best_endpoint": "better endpoint"}
_PATH_STYLE = {"dashes": {"weight path": "", "endpoint line": (4, 2), "better endpoint": (1, 2)},
               "sizes": {"weight path": 2.0, "endpoint line": 1.3, "better endpoint": 1.3}}


def _aggregate(df: pd.DataFrame, keys: list[str], x: str, y: str) -> pd.DataFrame:
    """Mean with min/max over repeated rows (e.g. seeds) per key."""
    g = df.groupby(keys, sort=True, dropna=False)
    out = g[[x, y]].mean()
    out[[f"{x}_min", f"{y}_min"]] = g[[x, y]].min().to_numpy()
    out[[f"{x}_max", f"{y}_max"]] = g[[x, y]].max().to_numpy()
    out["n"] = g.size()
    return out.reset_index()


def _point(ax: Axes, row: pd.Series, x: str, y: str, show_range: bool, **kwargs: Any) -> None:
    px, py = row[x] / 100.0, row[y] / 100.0
    if show_range and row["n"] > 1:
        # clipped at 0: the mean of equal values can exceed their max by a rounding error
        xerr = [[max(px - row[f"{x}_min"] / 100.0, 0.0)], [max(row[f"{x}_max"] / 100.0 - px, 0.0)]]
        yerr = [[max(py - row[f"{y}_min"] / 100.0, 0.0)], [max(row[f"{y}_max"] / 100.0 - py, 0.0)]]
        ax.errorbar(px, py, xerr=xerr, yerr=yerr, fmt="none", ecolor=kwargs.get("color", "k"),
                    elinewidth=0.8, capsize=2, zorder=kwargs.get("zorder", 3) - 0.5)
    ax.scatter([px], [py], **kwargs)


@themed
def plot_id_vs_ood(
    df: pd.DataFrame,
    ax: Optional[Axes] = None,
    *,
    x: str = "id_acc",
    y: str = "ood_avg",
    mode_col: str = "mode",
    alpha_col: str = "alpha",
    label_alpha: Optional[float] = 0.5,
    extra: Optional[pd.DataFrame] = None,
    group_col: str = "group",
    fit: Union[bool, Sequence[str]] = True,
    show_range: bool = True,
    xlabel: str = "ID accuracy (%)",
    ylabel: str = "Avg. accuracy under distribution shift (%)",
    title: Optional[str] = None,
    palette: Optional[Sequence[Any]] = None,
    figsize: tuple[float, float] = (6.0, 5.0),
    curve_label: str = "WiSE-FT ({mode})",
    finetuned_label: str = "fine-tuned ({mode})",
    span: tuple[Sequence[float], Sequence[float]] = ((), ()),
) -> Figure:
    """Figure 1: the WiSE-FT curve of each fine-tuning mode on logit-scaled ID/OOD axes.

    ``df`` has one row per (mode, alpha[, seed]) with accuracies in percent; alpha 0 is the
    zero-shot model (a star), alpha 1 the fine-tuned model (a large marker), and the points
    between are joined in alpha order. Repeated rows (seeds) are averaged, with min/max bars
    when ``show_range``. The ``label_alpha`` point of each curve is marked and labelled.
    ``extra`` adds scatter groups (columns ``group_col``, ``x``, ``y``; e.g. other zero-shot
    models, standard ImageNet models), each with a fitted logit-space line when ``fit`` is
    True or names the group. ``curve_label`` and ``finetuned_label`` format the legend entries
    (an entry that repeats, e.g. one fine-tuned model shared by several curves, is shown once). ``span``: more x
    and y accuracies the axes must show (e.g. interval ends). Returns the Figure (drawn on ``ax`` if given), with the
    points drawn attached (``fig.data``: per mode and alpha the mean accuracies, their min, max and row count ``n``;
    then the ``extra`` points).
    """
    _check_curve_frame(df, (mode_col, alpha_col, x, y))
    fig, ax = _figure_and_axes(ax, figsize)
    agg = _aggregate(df, [mode_col, alpha_col], x, y)
    modes = list(dict.fromkeys(df[mode_col]))
    colors = list(palette) if palette is not None else theme_palette()
    has_extra = extra is not None and not extra.empty
    _logit_axes_around_points(ax, agg, extra if has_extra else None, span, x, y)
    if has_extra:
        _draw_extra_groups(ax, extra, x, y, group_col, fit, first_color=len(modes) + 2)
    _draw_mode_curves(ax, agg, modes, colors, x=x, y=y, mode_col=mode_col, alpha_col=alpha_col,
                      show_range=show_range, label_alpha=label_alpha, curve_label=curve_label,
                      finetuned_label=finetuned_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="major")  # the theme's grid, also on axes the caller made
    ax.legend(loc="best", fontsize="small")
    return attach_data(fig, _drawn_points(agg, extra if has_extra else None, group_col, x, y))


def _drawn_points(agg: pd.DataFrame, extra: Optional[pd.DataFrame], group_col: str, x: str, y: str) -> pd.DataFrame:
    """The points a curve plot drew, as one tidy frame: the curves' means (with min, max, ``n``), then ``extra``'s."""
    if extra is None:
        return agg
    keep = [c for c in dict.fromkeys([group_col, "model", x, y]) if c in extra.columns]
    return pd.concat([agg, extra[keep]], ignore_index=True).astype({"n": "Int64"})  # a count, blank for extra


def _check_curve_frame(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise ``ValueError`` when ``df`` lacks one of ``columns`` or has no rows."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"plot_id_vs_ood needs columns {missing}; the frame has {list(df.columns)}")
    if df.empty:
        raise ValueError("plot_id_vs_ood got an empty frame: nothing to plot")


def _figure_and_axes(ax: Optional[Axes], figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure of ``figsize`` with one axes."""
    if ax is None:
        fig = new_figure(figsize)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    return fig, ax


def _logit_axes_around_points(ax: Axes, agg: pd.DataFrame, extra: Optional[pd.DataFrame],
                              span: tuple[Sequence[float], Sequence[float]], x: str, y: str) -> None:
    """:func:`logit_axes` around the curves' points, the ``extra`` points and the ``span`` accuracies."""
    all_x, all_y = list(agg[x]) + list(span[0]), list(agg[y]) + list(span[1])
    if extra is not None:
        all_x += list(extra[x])
        all_y += list(extra[y])
    logit_axes(ax, all_x, all_y)


def _draw_extra_groups(ax: Axes, extra: pd.DataFrame, x: str, y: str, group_col: str,
                       fit: Union[bool, Sequence[str]], first_color: int) -> None:
    """Scatter each ``group_col`` group of ``extra`` (the theme's colours from ``first_color`` on), with its logit-space
    linear fit when ``fit`` is True or names the group (and its x accuracies differ)."""
    palette = theme_palette()
    for i, (group, sub) in enumerate(extra.groupby(group_col, sort=False)):
        color = palette[(first_color + i) % len(palette)]
        ax.scatter(sub[x] / 100.0, sub[y] / 100.0, s=24, color=color, alpha=0.75,
                   label=str(group), zorder=2)
        do_fit = fit is True or (not isinstance(fit, bool) and group in fit)
        if do_fit and len(sub) >= 2 and np.ptp(logit_percent(sub[x])) > 0:
            line = fit_logit_line(sub[x], sub[y])
            draw_logit_line(ax, line, color=color, label=f"linear fit ({group})")


# the star: the zero-shot end of the curves (alpha 0), apart from other zero-shot models drawn as a group
ZERO_SHOT_LABEL = "zero-shot model (α=0)"


def _draw_mode_curves(ax: Axes, agg: pd.DataFrame, modes: Sequence[Any], colors: Sequence[Any], *, x: str, y: str,
                      mode_col: str, alpha_col: str, show_range: bool, label_alpha: Optional[float],
                      curve_label: str, finetuned_label: str) -> None:
    """Each mode's curve in alpha order: its zero-shot star and fine-tuned marker (each legend entry once), its
    marked and labelled ``label_alpha`` point, and the seed ranges of the other points when ``show_range``."""
    zero_shot_drawn, finetuned_drawn = False, set()
    for i, mode in enumerate(modes):
        color = colors[i % len(colors)]
        curve = agg[agg[mode_col] == mode].sort_values(alpha_col)
        ax.plot(curve[x] / 100.0, curve[y] / 100.0, "-", color=color, marker=".", markersize=6,
                label=curve_label.format(mode=mode), zorder=3)
        for _, row in curve.iterrows():
            a = row[alpha_col]
            if a == 0:
                _point(ax, row, x, y, show_range, marker="*", s=220, color="gold", edgecolor="k",
                       zorder=5, label=None if zero_shot_drawn else ZERO_SHOT_LABEL)
                zero_shot_drawn = True
            elif a == 1:
                label = finetuned_label.format(mode=mode)
                _point(ax, row, x, y, show_range, marker=_MARKERS[i % len(_MARKERS)], s=70, color=color,
                       edgecolor="k", zorder=5, label=None if label in finetuned_drawn else label)
                finetuned_drawn.add(label)
            elif label_alpha is not None and np.isclose(a, label_alpha):
                _point(ax, row, x, y, show_range, marker="D", s=45, color=color, edgecolor="k",
                       zorder=5)
                ax.annotate(f"α={label_alpha:g}", (row[x] / 100.0, row[y] / 100.0),
                            textcoords="offset points", xytext=(4, 6), fontsize="small", color=color)
            elif show_range and row["n"] > 1:
                _point(ax, row, x, y, show_range, marker=".", s=1, color=color, zorder=4)


def _image_grid(axes: Sequence[Axes], images: Sequence[Any], titles: Sequence[str], fontsize: int = 7) -> None:
    for ax in axes:
        ax.axis("off")
    for ax, image, title in zip(axes, images, titles):
        arr = np.asarray(image)
        ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(title, fontsize=fontsize)


@themed
def show_images(images: Sequence[Any], titles: Sequence[str], ncols: int = 6, *, title: Optional[str] = None,
                size: float = 1.4) -> Figure:
    """A grid of images (PIL images or uint8 arrays, e.g. a dataset built without a transform)."""
    if len(images) != len(titles):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    if not len(images):
        raise ValueError("show_images got no images")
    nrows = -(-len(images) // ncols)
    fig = new_figure((size * ncols, size * nrows + (0.4 if title else 0)))
    _image_grid(fig.subplots(nrows, ncols, squeeze=False).ravel(), images, titles)
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


@themed
def plot_alpha_step(curve: pd.DataFrame, alpha: float, images: Sequence[Any], labels: Sequence[int],
                    predictions: dict[float, Sequence[int]], classnames: Sequence[str], *, max_images: int = 8,
                    dataset: str = "") -> Figure:
    """One step of an alpha slider: the curve with the point at ``alpha`` (left) and the images whose
    prediction at ``alpha`` differs from the zero-shot model's (right), right ones first.

    ``predictions`` maps each alpha of ``curve`` to the predicted labels of ``images``. ``fig.data``: the curve's
    points (:func:`plot_id_vs_ood`'s).
    """
    if alpha not in predictions or 0.0 not in predictions:
        raise ValueError(f"predictions must hold alpha 0 and {alpha}; it has {sorted(predictions)}")
    zero, now, labels = np.asarray(predictions[0.0]), np.asarray(predictions[alpha]), np.asarray(labels)
    changed = np.flatnonzero(zero != now)
    fixed, broken = changed[now[changed] == labels[changed]], changed[now[changed] != labels[changed]]
    shown = np.concatenate([fixed, broken])[:max_images]
    fig = new_figure((11.0, 4.2))
    left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.15])
    ax = left.subplots()
    plot_id_vs_ood(curve, ax=ax, title=f"alpha = {alpha:g}")
    point = curve[np.isclose(curve["alpha"], alpha)].mean(numeric_only=True)
    ax.scatter([point["id_acc"] / 100.0], [point["ood_avg"] / 100.0], s=260, facecolors="none",
               edgecolors="red", linewidths=2, zorder=6)
    grid = right.subplots(2, max(1, -(-max_images // 2)), squeeze=False).ravel()
    titles = [f"{'fixed' if i in fixed else 'broken'}: {classnames[zero[i]]}\n-> {classnames[now[i]]} "
              f"(is {classnames[labels[i]]})" for i in shown]
    _image_grid(grid, [images[i] for i in shown], titles, fontsize=6)
    right.suptitle(f"{dataset}: {len(fixed)} predictions fixed, {len(broken)} broken vs. zero-shot",
                   fontsize="medium")
    return fig


@themed
def plot_weight_path(path: pd.DataFrame, *, titles: Optional[dict[str, str]] = None, ncols: int = 4,
                     title: Optional[str] = None) -> Figure:
    """Figure 6: accuracy along the weight path vs alpha, one panel per dataset column.

    ``path`` is :func:`wiseft_lib.analysis.shift_tables.weight_path_table`'s frame; each mode's path is a
    solid line (dots: the alphas evaluated), the straight line between its endpoint accuracies dashed, the better
    endpoint dotted. Drawn by ``seaborn.lineplot`` (hue: the mode, style: the line) from the tidy ``mode, column, alpha, line, accuracy``
    frame, attached as ``fig.data``; one legend for the figure, right of the panels.
    """
    tidy = (path.rename(columns=_PATH_LINES)
            .melt(id_vars=["mode", "column", "alpha"], value_vars=list(_PATH_LINES.values()), var_name="line",
                  value_name="accuracy"))
    modes, columns = list(dict.fromkeys(path["mode"])), list(dict.fromkeys(path["column"]))
    colors = dict(zip(modes, theme_palette(len(modes))))
    fig, axes = panel_grid(len(columns), ncols, (3.2, 2.7))
    titles = titles or {}
    for ax, column in zip(axes, columns):
        own = tidy[tidy["column"] == column]
        sns.lineplot(data=own, x="alpha", y="accuracy", hue="mode", hue_order=modes, palette=colors, style="line",
                     size="line", style_order=list(_PATH_LINES.values()), size_order=list(_PATH_LINES.values()),
                     estimator=None, legend=ax is axes[0], ax=ax, **_PATH_STYLE)
        sns.scatterplot(data=own[own["line"] == "weight path"], x="alpha", y="accuracy", hue="mode", hue_order=modes,
                        palette=colors, s=20, zorder=3, legend=False, ax=ax)  # the alphas evaluated
        ax.set(title=_fitted(titles.get(column, column), 3.2), xlabel="alpha", ylabel="accuracy (%)")
    figure_legend(fig, axes[:1])
    if title:
        fig.suptitle(title)
    return attach_data(fig, tidy)


@themed
def plot_per_shift(points: pd.DataFrame, background: Optional[pd.DataFrame] = None, *,
                   titles: Optional[dict[str, str]] = None, fit_group: str = "standard", ncols: int = 3,
                   title: Optional[str] = None, whole_intervals: bool = False) -> Figure:
    """Figures 7, 8, 21: per shift, ID accuracy on the shift's classes (x) vs accuracy on the shift (y).

    ``points`` is :func:`wiseft_lib.analysis.shift_tables.per_shift_points`'s frame (the WiSE-FT curves; the
    zero-shot, fine-tuned and alpha=0.5 points get their Clopper-Pearson intervals when the frame has
    ``x_lo`` ... ``y_hi``); ``background`` has ``shift, group, model, x, y`` (e.g. standard models),
    and the ``fit_group`` models get a logit-space linear fit; ``whole_intervals`` widens the axes to the interval ends.
    Each panel is :func:`plot_id_vs_ood`'s; one legend for the figure; ``fig.data``: every panel's points, by shift.
    """
    shifts = list(dict.fromkeys(points["shift"]))
    fig, axes = panel_grid(len(shifts), ncols, (4.2, 3.6))
    titles = titles or {}
    frames = []
    for ax, shift in zip(axes, shifts):
        own = points[points["shift"] == shift]
        extra = None
        if background is not None and not background.empty:
            extra = background[(background["shift"] == shift)].dropna(subset=["x", "y"])
        marked = own[np.isclose(own["alpha"], 0.0) | np.isclose(own["alpha"], 0.5) | np.isclose(own["alpha"], 1.0)]
        has_intervals = {"x_lo", "x_hi", "y_lo", "y_hi"} <= set(own.columns)
        span = [[*marked[f"{a}_lo"].dropna(), *marked[f"{a}_hi"].dropna()] for a in "xy"] \
            if has_intervals and whole_intervals else ((), ())
        plot_id_vs_ood(own, ax=ax, x="x", y="y", extra=extra, fit=[fit_group], show_range=False,
                       xlabel=f"ID accuracy on {own['x_dataset'].iloc[0]} (%)", ylabel=f"{shift} accuracy (%)",
                       title=titles.get(shift, shift), span=span)
        frames.append(_with_intervals(figure_data(fig), own if has_intervals else None).assign(shift=shift))
        if has_intervals:
            ax.errorbar(marked["x"] / 100.0, marked["y"] / 100.0,
                        xerr=[(marked["x"] - marked["x_lo"]) / 100.0, (marked["x_hi"] - marked["x"]) / 100.0],
                        yerr=[(marked["y"] - marked["y_lo"]) / 100.0, (marked["y_hi"] - marked["y"]) / 100.0],
                        fmt="none", ecolor="0.3", elinewidth=0.8, capsize=2, zorder=4)
    figure_legend(fig, axes)
    if title:
        fig.suptitle(title)
    data = pd.concat(frames, ignore_index=True)
    return attach_data(fig, data[["shift", *(c for c in data.columns if c != "shift")]])


def _with_intervals(drawn: pd.DataFrame, own: Optional[pd.DataFrame]) -> pd.DataFrame:
    """A panel's drawn points with the Clopper-Pearson interval columns of ``own`` (its points), if it has them."""
    if own is None:
        return drawn
    cols = ["x_lo", "x_hi", "y_lo", "y_hi"]
    intervals = own.groupby(["mode", "alpha"], sort=False)[cols].first().reset_index()
    return drawn.merge(intervals, on=["mode", "alpha"], how="left")


@themed
def plot_baselines(reference: pd.DataFrame, variants: pd.DataFrame, points: Optional[pd.DataFrame] = None, *,
                   reference_label: str = "WiSE-FT", ncols: int = 2, title: Optional[str] = None,
                   extra_curves: Optional[pd.DataFrame] = None) -> Figure:
    """Figures 3, 11-13, 15: one panel per family of baselines, each beside WiSE-FT's curve.

    ``reference`` has ``alpha, id_acc, ood_avg`` (rows per seed are averaged); ``variants`` has ``family,
    variant, alpha, id_acc, ood_avg``: each variant is a point (alpha 1) and WiSE-FT applied to it a dashed
    line from the zero-shot model through its other alphas. Rows of ``points`` with ``chosen_on_val`` get a
    black edge. ``extra_curves`` (``mode, alpha, id_acc, ood_avg``; e.g. output-space ensembles) get a panel
    of their own. Accuracies in percent, logit-scaled axes. ``fig.data``: the means drawn (``family, series,
    alpha, id_acc, ood_avg, chosen_on_val``; the reference's family is ``every panel``).
    """
    ref = reference.groupby("alpha")[["id_acc", "ood_avg"]].mean().reset_index().sort_values("alpha")
    var = variants.groupby(["family", "variant", "alpha"], sort=False)[["id_acc", "ood_avg"]].mean().reset_index()
    ext = None
    if extra_curves is not None and not extra_curves.empty:
        ext = extra_curves.groupby(["mode", "alpha"], sort=False)[["id_acc", "ood_avg"]].mean().reset_index()
    ext_family = "output space and random interpolation"
    families = list(dict.fromkeys(var["family"])) + ([ext_family] if ext is not None else [])
    chosen = set(points.loc[points["chosen_on_val"], "variant"]) if points is not None and "chosen_on_val" in points \
        else set()
    fig, axes = panel_grid(max(len(families), 1), ncols, (4.6, 3.9))
    for ax, family in zip(axes, families):
        own = var[var["family"] == family] if ext is None or family in set(var["family"]) else ext
        _baseline_panel(ax, ref, own, chosen, reference_label)
        ax.set_title(family)
    if title:
        fig.suptitle(title)
    parts = [ref.assign(family="every panel", series=reference_label), var.rename(columns={"variant": "series"})]
    if ext is not None:
        parts.append(ext.rename(columns={"mode": "series"}).assign(family=ext_family))
    data = pd.concat(parts, ignore_index=True)[["family", "series", "alpha", "id_acc", "ood_avg"]]
    return attach_data(fig, data.assign(chosen_on_val=data["series"].isin(chosen)))


def _baseline_panel(ax: Axes, ref: pd.DataFrame, own: pd.DataFrame, chosen: set[Any], reference_label: str) -> None:
    """One family's panel: the reference curve (black) and zero-shot star, then each variant (its point and its
    dashed WiSE-FT line from the zero-shot model) or each extra curve (solid, its points)."""
    zs = ref[np.isclose(ref["alpha"], 0.0)]
    logit_axes(ax, list(ref["id_acc"]) + list(own["id_acc"]), list(ref["ood_avg"]) + list(own["ood_avg"]))
    ax.plot(ref["id_acc"] / 100, ref["ood_avg"] / 100, "-", color="k", linewidth=1.8, marker=".", markersize=4,
            label=f"{reference_label} (alpha 0 to 1)", zorder=3)
    if not zs.empty:
        ax.scatter(zs["id_acc"] / 100, zs["ood_avg"] / 100, marker="*", s=160, color="k", zorder=5,
                   label="zero-shot")
    key = "variant" if "variant" in own.columns else "mode"
    palette = theme_palette()
    for i, (name, g) in enumerate(own.groupby(key, sort=False)):
        g = g.sort_values("alpha")
        color = palette[i % len(palette)]
        line = pd.concat([zs[["id_acc", "ood_avg"]], g[["id_acc", "ood_avg"]]]) if key == "variant" else g
        ax.plot(line["id_acc"] / 100, line["ood_avg"] / 100, "--" if key == "variant" else "-", color=color,
                linewidth=1.1, zorder=2)
        if key == "variant":
            end = g[np.isclose(g["alpha"], 1.0)]
            ax.scatter(end["id_acc"] / 100, end["ood_avg"] / 100, s=60 if name in chosen else 34, color=color,
                       edgecolors="k" if name in chosen else color, linewidths=1.5, zorder=4,
                       label=f"{name}" + (" (chosen on val)" if name in chosen else ""))
        else:
            ax.scatter(g["id_acc"] / 100, g["ood_avg"] / 100, s=14, color=color, zorder=4, label=name)
    ax.set_xlabel("ID accuracy (%)")
    ax.set_ylabel("mean OOD accuracy (%)")
    ax.grid(True, which="major")
    ax.legend(fontsize="small", loc="best")


@themed
def plot_metric_curves(curves: pd.DataFrame, *, x: str = "x", y: str = "y", panel: str = "panel",
                       hue: str = "mode", xlabel: str = "ID accuracy (%)", ylabels: Optional[dict[str, str]] = None,
                       titles: Optional[dict[str, str]] = None, ncols: int = 3, panel_size: tuple[float, float] = (3.6, 3.0),
                       title: Optional[str] = None) -> Figure:
    """WiSE-FT curves on plain axes, one panel per ``panel`` value: ``x`` against ``y`` along alpha per ``hue``
    (a metric that can reach 0 or 100, e.g. pm-10 or macro-F1, rules out logit axes), drawn by ``seaborn.lineplot``
    in alpha order. With ``x="alpha"`` seaborn averages repeated rows (e.g. seeds) and shades their min-max range;
    otherwise repeated rows are averaged per alpha first. The zero-shot end (alpha 0) is a star, the fine-tuned end
    (alpha 1) a square, alpha 0.5 a diamond; one legend for the figure. ``fig.data``: the frame seaborn drew."""
    panels, hues = list(dict.fromkeys(curves[panel])), list(dict.fromkeys(curves[hue]))
    colors = dict(zip(hues, theme_palette(len(hues))))
    along_alpha = x == "alpha"
    data = _metric_frame(curves, x, y, panel, hue, along_alpha)
    spread = along_alpha and bool(data.duplicated([panel, hue, "alpha"]).any())
    ends = _alpha_ends(data, x, y, panel, hue)
    fig, axes = panel_grid(len(panels), ncols, panel_size)
    ylabels, titles = ylabels or {}, titles or {}
    for ax, name in zip(axes, panels):
        sns.lineplot(data=data[data[panel] == name], x=x, y=y, hue=hue, hue_order=hues, palette=colors,
                     estimator="mean" if along_alpha else None, errorbar=("pi", 100) if spread else None,
                     sort=along_alpha, marker="o", markersize=4, markeredgewidth=0, legend=False, ax=ax)
        sns.scatterplot(data=ends[ends[panel] == name], x=x, y=y, hue=hue, hue_order=hues, palette=colors,
                        style="point", style_order=list(_ENDS), markers={k: v[1] for k, v in _ENDS.items()},
                        size="point", size_order=list(_ENDS), sizes={k: v[2] for k, v in _ENDS.items()},
                        edgecolor="black", linewidth=0.6, zorder=4, legend=False, ax=ax)
        ax.set(title=_fitted(titles.get(name, name), panel_size[0]), xlabel=xlabel, ylabel=ylabels.get(name, y))
    handles = [Line2D([], [], color=colors[h], marker="o", markersize=4, label=f"WiSE-FT ({h})") for h in hues]
    handles += [Line2D([], [], linestyle="none", marker=marker, markersize=np.sqrt(size), markerfacecolor="0.8",
                       markeredgecolor="black", label=name) for name, (_, marker, size) in _ENDS.items()]
    outside_legend(fig, handles, [h.get_label() for h in handles])
    if title:
        fig.suptitle(title)
    return attach_data(fig, data)


def _fitted(title: str, width: float) -> str:
    """``title`` broken into lines that fit over the axes of a panel ``width`` inches wide (less ~0.8 inch of tick
    labels) at the theme's title size (~0.62 em a character)."""
    size = FontProperties(size=mpl.rcParams["axes.titlesize"]).get_size_in_points()
    return textwrap.fill(str(title), max(12, int((width - 0.8) * 72 / (0.62 * size))), break_long_words=False,
                         break_on_hyphens=False)


def _metric_frame(curves: pd.DataFrame, x: str, y: str, panel: str, hue: str, along_alpha: bool) -> pd.DataFrame:
    """The rows :func:`plot_metric_curves` hands seaborn: ``panel, hue, alpha, x, y`` as given when ``x`` is alpha
    (seaborn averages them), else their means per alpha (and the row count ``n``), in panel, hue and alpha order."""
    if along_alpha:
        return curves[list(dict.fromkeys([panel, hue, "alpha", y]))].reset_index(drop=True)
    g = curves.groupby([panel, hue, "alpha"], sort=False)
    means = g[[x, y]].mean().assign(n=g.size()).reset_index()
    order = [means[c].map({k: i for i, k in enumerate(dict.fromkeys(curves[c]))}) for c in (panel, hue)]
    keys = pd.DataFrame({"p": order[0], "h": order[1], "a": means["alpha"]})
    return means.loc[keys.sort_values(["p", "h", "a"]).index].reset_index(drop=True)


def _alpha_ends(data: pd.DataFrame, x: str, y: str, panel: str, hue: str) -> pd.DataFrame:
    """Per panel and hue, the mean point at each alpha of :data:`_ENDS`, named in a ``point`` column."""
    parts = [data[np.isclose(data["alpha"], alpha)].groupby([panel, hue], sort=False)[list(dict.fromkeys([x, y]))]
             .mean().reset_index().assign(point=name) for name, (alpha, _, _) in _ENDS.items()]
    return pd.concat(parts, ignore_index=True)
