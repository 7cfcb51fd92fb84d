"""Paper tables: DataFrame to CSV / Markdown / LaTeX, and our numbers beside the paper's.

    import pandas as pd
    from wiseft_lib.report.tables import beside_published, write_table

    ours = pd.DataFrame({"method": ["zero-shot", "WiSE-FT 0.5"], "IN": [68.1, 81.5]})
    paper = pd.DataFrame({"method": ["zero-shot", "WiSE-FT 0.5"], "IN": [68.3, 81.7]})
    table = beside_published(ours, paper, on="method", diff=True)   # IN_ours IN_paper IN_diff
    write_table(table, "outputs/table1")     # table1.csv, table1.md, table1.tex

Markdown and LaTeX are formatted here (no tabulate/jinja2 needed); LaTeX uses booktabs rules.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import pandas as pd

from wiseft_lib.core.files import atomic_path, atomic_write_text

__all__ = ["to_markdown", "to_latex", "write_table", "beside_published"]

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def _prepare(df: pd.DataFrame, index: Optional[bool]) -> pd.DataFrame:
    """Flatten column labels; bring a meaningful index in as columns."""
    if index is None:
        index = not isinstance(df.index, pd.RangeIndex) or df.index.name is not None
    out = df.reset_index() if index else df.copy()
    out.columns = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in out.columns]
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Number) and not isinstance(v, bool)


def _cell(v: Any, floatfmt: str, na_rep: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return na_rep
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return str(int(v))
    if _is_number(v):
        return format(float(v), floatfmt)
    return str(v)


def _numeric_columns(df: pd.DataFrame) -> list[bool]:
    return [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
            for c in df.columns]


def to_markdown(df: pd.DataFrame, *, floatfmt: str = ".1f", index: Optional[bool] = None,
                na_rep: str = "-") -> str:
    """GitHub pipe table; numbers right-aligned and formatted with ``floatfmt``.

    ``index=None`` includes the index when it is named or not a plain range.
    """
    t = _prepare(df, index)
    numeric = _numeric_columns(t)

    def esc(s: str) -> str:
        return s.replace("|", r"\|").replace("\n", " ")

    header = [esc(c) for c in t.columns]
    rows = [[esc(_cell(v, floatfmt, na_rep)) for v in r] for r in t.itertuples(index=False)]
    widths = [max([len(h), 3] + [len(r[j]) for r in rows]) for j, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
        return "| " + " | ".join(padded) + " |"

    sep = "| " + " | ".join(("-" * (w - 1) + ":") if num else (":" + "-" * (w - 1))
                            for w, num in zip(widths, numeric)) + " |"
    return "\n".join([line(header), sep] + [line(r) for r in rows]) + "\n"


def _latex_escape(s: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in s)


def to_latex(df: pd.DataFrame, *, floatfmt: str = ".1f", index: Optional[bool] = None,
             na_rep: str = "--", caption: Optional[str] = None, label: Optional[str] = None) -> str:
    """booktabs ``tabular`` (wrapped in a ``table`` float when a caption or label is given)."""
    t = _prepare(df, index)
    numeric = _numeric_columns(t)
    spec = "".join("r" if num else "l" for num in numeric)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_latex_escape(c) for c in t.columns) + r" \\", r"\midrule"]
    for r in t.itertuples(index=False):
        lines.append(" & ".join(_latex_escape(_cell(v, floatfmt, na_rep)) for v in r) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption is not None or label is not None:
        inner = [r"\begin{table}[t]", r"\centering"]
        if caption is not None:
            inner.append(rf"\caption{{{_latex_escape(caption)}}}")
        if label is not None:
            inner.append(rf"\label{{{label}}}")
        lines = inner + lines + [r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, path_stem: Union[str, Path], *, floatfmt: str = ".1f",
                index: Optional[bool] = None, caption: Optional[str] = None,
                label: Optional[str] = None, csv: Optional[pd.DataFrame] = None) -> dict[str, Path]:
    """Write ``<stem>.csv`` (full precision), ``.md`` and ``.tex`` atomically; return the paths.

    ``csv``: a fuller frame for the CSV (e.g. with the interval columns the Markdown leaves out).
    """
    stem = Path(path_stem)
    paths = {ext: stem.with_name(f"{stem.name}.{ext}") for ext in ("csv", "md", "tex")}
    t = _prepare(df, index)
    with atomic_path(paths["csv"]) as tmp:
        (t if csv is None else _prepare(csv, index)).to_csv(tmp, index=False)
    atomic_write_text(paths["md"], to_markdown(t, floatfmt=floatfmt, index=False))
    atomic_write_text(paths["tex"], to_latex(t, floatfmt=floatfmt, index=False, caption=caption,
                                             label=label))
    return paths


def beside_published(ours: pd.DataFrame, published: pd.DataFrame, *,
                     on: Union[str, Sequence[str], None] = None, diff: bool = False) -> pd.DataFrame:
    """Join our numbers with the paper's: column ``c`` becomes ``c_ours`` and ``c_paper``.

    Rows are matched on ``on`` (column names) or, when ``on`` is None, on the index; a row in
    only one frame gets NaN on the other side (ours first, then paper-only rows). With
    ``diff``, numeric columns present in both also get ``c_diff = c_ours - c_paper``.
    """
    keys = [on] if isinstance(on, str) else list(on) if on is not None else []
    for name, frame in (("ours", ours), ("published", published)):
        missing = [k for k in keys if k not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks the join column(s) {missing}; it has {list(frame.columns)}")
    a = ours.set_index(keys) if keys else ours
    b = published.set_index(keys) if keys else published
    for name, frame in (("ours", a), ("published", b)):
        if not frame.index.is_unique:
            dup = frame.index[frame.index.duplicated()][0]
            raise ValueError(f"{name} has the row key {dup!r} more than once; join keys must be unique")
    rows = list(a.index) + [i for i in b.index if i not in set(a.index)]
    a, b = a.reindex(rows), b.reindex(rows)
    cols = list(a.columns) + [c for c in b.columns if c not in set(a.columns)]
    out = pd.DataFrame(index=a.index)
    for c in cols:
        if c in a.columns:
            out[f"{c}_ours"] = a[c]
        if c in b.columns:
            out[f"{c}_paper"] = b[c]
        if diff and c in a.columns and c in b.columns and \
                pd.api.types.is_numeric_dtype(a[c]) and pd.api.types.is_numeric_dtype(b[c]):
            out[f"{c}_diff"] = a[c] - b[c]
    return out.reset_index() if keys else out
