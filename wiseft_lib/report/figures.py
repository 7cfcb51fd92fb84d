"""The figures' shared machinery: one theme, logit-scaled axes with percent ticks, panel grids, saving, display.

    from wiseft_lib.report.figures import logit_axes, new_figure, save_figure
    fig = new_figure((6.0, 5.0))
    ax = fig.add_subplot()
    logit_axes(ax, [68.3, 81.3], [53.8, 63.0])   # accuracies in percent; data on the axes are fractions
    save_figure(fig, "outputs/figure", data=df)  # figure.png, figure.pdf and figure.data.csv (df, the tidy data)

Every figure the package draws wears one theme (:func:`theme_rc`: seaborn's ``whitegrid`` style, its ``notebook``
context's font sizes, the colour-blind-safe ``colorblind`` palette), applied only around the package's own calls
(:func:`figure_theme`, :func:`themed`, and a :class:`NotebookFigure` adding axes or drawing itself) through
``matplotlib.rc_context``: the user's global matplotlib settings are never changed. The plotting functions attach the
tidy frame they drew to the figure (:func:`attach_data`, ``fig.data``) and :func:`save_figure` writes it beside
the images.

Figures are built with :func:`new_figure` (a :class:`NotebookFigure` on the Agg canvas), never pyplot, so they
work headless and do not touch a notebook's backend; a notebook cell that ends in a figure shows it as a PNG
image (in JupyterLab, in papermill's executed notebook, in an ipywidgets ``Output``) whatever the matplotlib
backend, because the figure renders itself. The study plots built on these are in :mod:`wiseft_lib.report.plots`.
"""
from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar, Union

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import cycler
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from wiseft_lib.analysis.effective_robustness import LogitLine, expit_percent, logit_percent
from wiseft_lib.core.files import atomic_path, atomic_write_text

__all__ = ["NotebookFigure", "new_figure", "draw_logit_line", "logit_axes", "panel_grid", "save_figure",
           "THEME", "theme_rc", "theme_palette", "figure_theme", "themed", "attach_data", "figure_data",
           "figure_legend", "outside_legend"]

# The one theme of every figure: seaborn's style, plotting context (font sizes and line widths) and palette
THEME: dict[str, Any] = {"style": "whitegrid", "context": "notebook", "font_scale": 1.0, "palette": "colorblind"}
_THEME_RC = {  # on top of seaborn's: legends on a light frame, figure titles a step above the axes titles
    "legend.frameon": True, "legend.framealpha": 0.85, "legend.edgecolor": "0.8", "figure.titlesize": "large",
}
F = TypeVar("F", bound=Callable[..., Any])
_ACTIVE: list[dict[str, Any]] = []  # the themes of the figure_theme blocks now open, innermost last

_TICK_TIERS = (  # coarse to fine; the finest tier with at most max_ticks ticks in range wins
    (0.1, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9),
    (0.1, 0.5, 1, 2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95,
     98, 99, 99.5, 99.9),
    (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90,
     92, 94, 95, 96, 97, 98, 99, 99.5, 99.8, 99.9),
)


def theme_rc(style: Optional[str] = None, context: Optional[str] = None, font_scale: Optional[float] = None,
             palette: Optional[str] = None) -> dict[str, Any]:
    """The theme's matplotlib rc parameters (defaults: :data:`THEME`), built from ``seaborn.axes_style``,
    ``seaborn.plotting_context`` and ``seaborn.color_palette``; nothing global is changed."""
    rc = {**sns.axes_style(style or THEME["style"]),
          **sns.plotting_context(context or THEME["context"],
                                 font_scale=THEME["font_scale"] if font_scale is None else font_scale)}
    rc["axes.prop_cycle"] = cycler(color=theme_palette(palette=palette))
    rc.update(_THEME_RC)
    return rc


def theme_palette(n: Optional[int] = None, palette: Optional[str] = None) -> list[tuple[float, float, float]]:
    """``n`` colours of the theme's palette (its own length, 10, when ``n`` is None), repeating past its end."""
    return list(sns.color_palette(palette or THEME["palette"], n))


@contextlib.contextmanager
def figure_theme(rc: Optional[Mapping[str, Any]] = None) -> Iterator[dict[str, Any]]:
    """Draw under the theme (``rc``, default :func:`theme_rc`) for the ``with`` block only::

        with figure_theme():
            fig = new_figure((4, 3)); ax = fig.add_subplot(); ax.set_title("themed")
    """
    rc = dict(theme_rc() if rc is None else rc)
    _ACTIVE.append(rc)
    try:
        with mpl.rc_context(rc):
            yield rc
    finally:
        _ACTIVE.pop()


def themed(function: F) -> F:
    """Decorate a function that builds a figure so that it runs under :func:`figure_theme` (the theme of an
    enclosing ``figure_theme`` block if there is one, else :func:`theme_rc`)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with figure_theme(_ACTIVE[-1] if _ACTIVE else None):
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def attach_data(fig: Any, frame: Optional[pd.DataFrame]) -> Any:
    """Keep ``frame`` (the tidy data ``fig`` was drawn from) on ``fig``'s root figure as ``data``, for
    :func:`save_figure` to write beside it; returns ``fig``."""
    root = getattr(fig, "figure", None) or fig  # a subfigure's data belongs to the figure that is saved
    root.data = frame
    return fig


def figure_data(fig: Any) -> Optional[pd.DataFrame]:
    """The tidy frame attached to ``fig`` (or its root figure) by :func:`attach_data`, else None."""
    root = getattr(fig, "figure", None) or fig
    return getattr(root, "data", None)


class NotebookFigure(Figure):
    """A ``Figure`` that IPython displays as a PNG image.

    A bare ``matplotlib.figure.Figure`` has no image formatter unless pyplot's inline backend has
    been loaded (and papermill, ``MPLBACKEND=Agg`` or a kernel that never imported pyplot leave
    it unloaded), so a notebook cell ending in one printed ``<Figure size ... with N Axes>``.
    This one answers IPython's rich-display protocol itself: ``image/png`` (drawn like the
    saved file, at ``display_dpi``) and a text alternative naming the files it was saved to.

    It also keeps its ``theme`` (rc parameters, set by :func:`new_figure`): axes added to it and every drawing of
    it (the PNG shown, the files saved) happen under that theme, so the figure looks the same whatever the
    global matplotlib settings are when it is drawn. ``data`` is the tidy frame it was drawn from, if any.
    """

    display_dpi = 100
    theme: Optional[dict[str, Any]] = None
    data: Optional[pd.DataFrame] = None

    def _theme(self) -> contextlib.AbstractContextManager[Any]:
        return mpl.rc_context(self.theme) if self.theme else contextlib.nullcontext()

    def add_subplot(self, *args: Any, **kwargs: Any) -> Any:
        with self._theme():
            return super().add_subplot(*args, **kwargs)

    def add_axes(self, *args: Any, **kwargs: Any) -> Any:
        with self._theme():
            return super().add_axes(*args, **kwargs)

    def draw(self, renderer: Any) -> None:
        with self._theme():  # colours named "C0".."C9" and ticks made while drawing follow the theme too
            super().draw(renderer)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"image/png": self.to_png(), "text/plain": self._describe()}

    def _repr_png_(self) -> bytes:
        return self.to_png()

    def to_png(self, dpi: Optional[int] = None) -> bytes:
        """The figure as PNG bytes (``bbox_inches="tight"``, as :func:`save_figure` writes it)."""

        if self.canvas is None or not hasattr(self.canvas, "print_figure"):
            FigureCanvasAgg(self)
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=dpi or self.display_dpi, bbox_inches="tight")
        return buffer.getvalue()

    def _describe(self) -> str:
        width, height = (self.get_size_inches() * self.display_dpi).round().astype(int)
        saved = getattr(self, "saved_to", None)
        where = f"; saved as {', '.join(str(p) for p in saved)}" if saved else ""
        return f"[figure: {width}x{height} px, {len(self.axes)} axes{where}]"


def new_figure(figsize: tuple[float, float], **kwargs: Any) -> NotebookFigure:
    """An empty :class:`NotebookFigure` on the Agg canvas (``layout="constrained"`` unless given), in the theme
    (:func:`theme_rc`; the one in force when called inside :func:`figure_theme`)."""
    kwargs.setdefault("layout", "constrained")
    rc = _ACTIVE[-1] if _ACTIVE else theme_rc()
    with mpl.rc_context(rc):
        fig = NotebookFigure(figsize=figsize, **kwargs)
    fig.theme = rc
    FigureCanvasAgg(fig)
    return fig


def draw_logit_line(ax: Axes, line: LogitLine, x_range: Optional[tuple[float, float]] = None,
                    **kwargs: Any) -> None:
    """Draw ``line`` over ``x_range`` (percent; default: the axes' current x limits)."""
    lo, hi = x_range if x_range is not None else tuple(100.0 * v for v in ax.get_xlim())
    xs = expit_percent(np.linspace(logit_percent(lo), logit_percent(hi), 100))
    kwargs.setdefault("color", "0.4")
    kwargs.setdefault("linestyle", "--")
    kwargs.setdefault("linewidth", 1.0)
    ax.plot(xs / 100.0, line(xs) / 100.0, **kwargs)


def _nice_ticks(lo: float, hi: float, max_ticks: int = 9) -> list[float]:
    tiers = [[t for t in tier if lo <= t <= hi] for tier in _TICK_TIERS]
    fitting = [t for t in tiers if 3 <= len(t) <= max_ticks]
    if fitting:
        return [float(t) for t in fitting[-1]]
    if len(tiers[0]) > max_ticks:  # thin the coarsest tier evenly in logit space
        z = logit_percent(tiers[0])
        targets = np.linspace(z[0], z[-1], max_ticks)
        return sorted({float(tiers[0][int(np.argmin(np.abs(z - t)))]) for t in targets})
    step = max((hi - lo) / 6.0, 0.01)  # a narrow range: evenly spaced round numbers
    mag = 10 ** np.floor(np.log10(step))
    step = min(m * mag for m in (1, 2, 5, 10) if m * mag >= step)
    start = np.ceil(lo / step) * step
    return [round(float(v), 6) for v in np.arange(start, hi + 1e-9, step)]


def _format_percent(v: float, _pos: Any = None) -> str:
    return f"{100.0 * v:.4g}"


def logit_axes(ax: Axes, x_percent: Sequence[float], y_percent: Sequence[float],
               pad: float = 0.08) -> None:
    """Logit-scale both axes of ``ax`` around the given accuracies, with percent ticks.

    Data on these axes are fractions (percent / 100).
    """
    for axis, vals, set_scale, set_lim in (
        (ax.xaxis, x_percent, ax.set_xscale, ax.set_xlim),
        (ax.yaxis, y_percent, ax.set_yscale, ax.set_ylim),
    ):
        z = logit_percent(np.asarray(vals, dtype=float))
        z_lo, z_hi = float(np.min(z)), float(np.max(z))
        span = max(z_hi - z_lo, 0.2)
        z_lo, z_hi = z_lo - pad * span, z_hi + pad * span
        lo, hi = float(expit_percent(z_lo)), float(expit_percent(z_hi))
        set_scale("logit")
        set_lim(lo / 100.0, hi / 100.0)
        axis.set_major_locator(FixedLocator([t / 100.0 for t in _nice_ticks(lo, hi)]))
        axis.set_minor_locator(NullLocator())
        axis.set_major_formatter(FuncFormatter(_format_percent))
        axis.set_minor_formatter(FuncFormatter(lambda *_: ""))


def panel_grid(n: int, ncols: int, panel: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    """A new themed figure with ``n`` axes in rows of ``ncols`` (``panel`` inches each); the spare axes hidden."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = new_figure((panel[0] * ncols, panel[1] * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def figure_legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend for ``fig``, right of its panels, in place of the ``axes``' own: the first axes' entries, then
    those of the others with a label not seen yet (a seaborn legend keeps its section titles, e.g. ``mode``, as
    entries without a marker)."""
    entries: list[tuple[Any, str]] = []
    for ax in axes:
        legend = ax.get_legend()
        if legend is not None:
            pairs = zip(legend.legend_handles, (t.get_text() for t in legend.get_texts()))
            legend.remove()
        else:
            pairs = zip(*ax.get_legend_handles_labels())
        seen = {label for _, label in entries}
        entries += [(handle, label) for handle, label in pairs if label not in seen]
        for line in [line for line in ax.get_lines() if len(line.get_xdata()) == 0]:
            line.remove()  # seaborn's legend proxies (empty lines): the figure legend has their look
    if entries:
        outside_legend(fig, [handle for handle, _ in entries], [label for _, label in entries])


def outside_legend(fig: Figure, handles: Sequence[Any], labels: Sequence[str]) -> Any:
    """A figure legend right of the panels (constrained layout); the figure widens by the legend's width, so the
    panels keep their size. Returns the legend."""
    legend = fig.legend(handles, labels, loc="outside right upper")
    get_renderer = getattr(fig.canvas, "get_renderer", None)
    if get_renderer is not None:
        width, height = fig.get_size_inches()
        fig.set_size_inches(width + legend.get_window_extent(get_renderer()).width / fig.dpi + 0.1, height)
    return legend


def save_figure(fig: Figure, path_without_ext: Union[str, Path], formats: Sequence[str] = ("png", "pdf"),
                dpi: int = 200, *, data: Optional[pd.DataFrame] = None) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` and ``<path>.pdf`` and, when it has its tidy data (``data``, else the
    frame a plotting function attached: :func:`figure_data`), that as ``<path>.data.csv``; each file atomically.
    Returns the paths written (the images in ``formats`` order, then the CSV)."""
    base = Path(path_without_ext)
    frame = data if data is not None else figure_data(fig)
    if fig.canvas is None or not hasattr(fig.canvas, "print_figure"):
        FigureCanvasAgg(fig)
    paths = []
    for fmt in formats:
        path = base.with_name(f"{base.name}.{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    if frame is not None:
        frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
        paths.append(atomic_write_text(base.with_name(f"{base.name}.data.csv"), frame.to_csv(index=False)))
    fig.saved_to = paths  # named in the text form a notebook shows beside the image
    return paths
