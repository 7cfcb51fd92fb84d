"""The figures' shared machinery: logit-scaled axes with percent ticks, panel grids, saving, notebook display.

    from wiseft_lib.report.figures import logit_axes, new_figure, save_figure
    fig = new_figure((6.0, 5.0))
    ax = fig.add_subplot()
    logit_axes(ax, [68.3, 81.3], [53.8, 63.0])   # accuracies in percent; data on the axes are fractions
    save_figure(fig, "outputs/figure")           # figure.png and figure.pdf

Figures are built with :func:`new_figure` (a :class:`NotebookFigure` on the Agg canvas), never pyplot, so they
work headless and do not touch a notebook's backend; a notebook cell that ends in a figure shows it as a PNG
image (in JupyterLab, in papermill's executed notebook, in an ipywidgets ``Output``) whatever the matplotlib
backend, because the figure renders itself. The study plots built on these are in :mod:`wiseft_lib.report.plots`.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from wiseft_lib.analysis.effective_robustness import LogitLine, expit_percent, logit_percent
from wiseft_lib.core.files import atomic_path

__all__ = ["NotebookFigure", "new_figure", "draw_logit_line", "logit_axes", "panel_grid", "save_figure"]

_TICK_TIERS = (  # coarse to fine; the finest tier with at most max_ticks ticks in range wins
    (0.1, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9),
    (0.1, 0.5, 1, 2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95,
     98, 99, 99.5, 99.9),
    (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90,
     92, 94, 95, 96, 97, 98, 99, 99.5, 99.8, 99.9),
)


class NotebookFigure(Figure):
    """A ``Figure`` that IPython displays as a PNG image.

    A bare ``matplotlib.figure.Figure`` has no image formatter unless pyplot's inline backend has
    been loaded (and papermill, ``MPLBACKEND=Agg`` or a kernel that never imported pyplot leave
    it unloaded), so a notebook cell ending in one printed ``<Figure size ... with N Axes>``.
    This one answers IPython's rich-display protocol itself: ``image/png`` (drawn like the
    saved file, at ``display_dpi``) and a text alternative naming the files it was saved to.
    """

    display_dpi = 100

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
    """An empty :class:`NotebookFigure` on the Agg canvas (``layout="constrained"`` unless given)."""
    kwargs.setdefault("layout", "constrained")
    fig = NotebookFigure(figsize=figsize, **kwargs)
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
    """A new figure with ``n`` axes in rows of ``ncols`` (``panel`` inches each); the spare axes hidden."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = new_figure((panel[0] * ncols, panel[1] * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def save_figure(fig: Figure, path_without_ext: Union[str, Path],
                formats: Sequence[str] = ("png", "pdf"), dpi: int = 200) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` and ``<path>.pdf`` (atomically); return the paths."""
    base = Path(path_without_ext)
    if fig.canvas is None or not hasattr(fig.canvas, "print_figure"):
        FigureCanvasAgg(fig)
    paths = []
    for fmt in formats:
        path = base.with_name(f"{base.name}.{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    fig.saved_to = paths  # named in the text form a notebook shows beside the image
    return paths
