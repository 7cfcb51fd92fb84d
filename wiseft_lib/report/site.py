"""An offline gallery of a reproduce run: ``site/index.html`` (a card per study) and each executed notebook as HTML.

Nothing is fetched from the network: the notebook pages are nbconvert's ``basic`` template (the cells only, their
images inline as base64) inside a page with inline CSS, and the cards show the PNGs of the study folders by
relative path, so the site opens from disk (``xdg-open outputs/mini/site/index.html``). No JavaScript.
``python -m wiseft_lib.reproduce`` builds it after ``index.md``; by hand:

    import tempfile
    from pathlib import Path
    from types import SimpleNamespace
    from wiseft_lib.report.site import build_site

    base = Path(tempfile.mkdtemp())  # an outputs folder, here with one study that failed before writing anything
    run = SimpleNamespace(name="fig1_id_vs_ood", status="failed", seconds=3.0, output_dir=base / "fig1_id_vs_ood",
                          notebook=base / "fig1_id_vs_ood" / "fig1_id_vs_ood.ipynb", error="RuntimeError: no data",
                          figures=[], source="-")
    print(build_site([run], base, "mini", titles={"fig1_id_vs_ood": "Figure 1"}))  # BASE/site/index.html
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any, Optional, Protocol
from urllib.parse import quote

import nbformat
import pandas as pd
from nbconvert import HTMLExporter
from pygments.formatters import HtmlFormatter

from wiseft_lib.core.files import atomic_write_text

__all__ = ["SiteRun", "build_site", "notebook_page"]

PAPER = "https://arxiv.org/abs/2109.01903"  # the one external link: an <a>, never loaded by the page itself
# outputs that need a JavaScript runtime: a widget's is dropped (its text is its first state, e.g. a tqdm bar at
# 0%), a script's leaves its other forms
_WIDGET, _SCRIPT = "application/vnd.jupyter.widget-view+json", "application/javascript"

CSS = """
body{font:20px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d1d1f;
 background:#f5f5f2;margin:0 auto;max-width:1800px;padding:1rem 2rem 3rem}
h1{font-size:2rem;margin:.5rem 0} h2{font-size:1.35rem;margin:.2rem 0 .4rem} a{color:#0b57d0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(30rem,100%),1fr));gap:1.25rem}
.study-card{background:#fff;border:1px solid #d8d8d4;border-radius:10px;padding:1rem 1.25rem;
 box-shadow:0 1px 3px rgba(0,0,0,.08);overflow-wrap:anywhere}
.study-card img{display:block;width:100%;height:auto;border:1px solid #eee;margin:.5rem 0}
.name{color:#666;font-size:.8em} .meta{margin:.3rem 0}
.badge{display:inline-block;padding:0 .45em;border-radius:.35em;font-weight:600;font-size:.85em}
.ok,.holds{background:#d8f0dc;color:#145a27} .failed,.fails{background:#f9d6d6;color:#861b1b}
.noise{background:#fdefc3;color:#5f4800} .reported{background:#e6e6e6;color:#333}
.claims{padding-left:0;list-style:none;font-size:.85em} .claims li{margin:.25rem 0}
.error{white-space:pre-wrap;background:#fbeeee;border-left:4px solid #c33;padding:.5rem;font-size:.8em}
.scroll{overflow-x:auto} table{border-collapse:collapse;font-size:.8em;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top} th{background:#ecece8}
pre{white-space:pre-wrap;font-size:.8em} .input_area{background:#f7f7f7;border:1px solid #e0e0e0;border-radius:4px}
.cell{margin:.8rem 0} .prompt{color:#888;font-size:.75em} .output_area img{max-width:100%;height:auto}
.anchor-link{display:none} .ansi-red-fg{color:#c33} .ansi-green-fg{color:#282} .ansi-yellow-fg{color:#a60}
.ansi-blue-fg{color:#26b} .ansi-cyan-fg{color:#088} .ansi-magenta-fg{color:#a3a} .ansi-bold{font-weight:bold}
"""


class SiteRun(Protocol):
    """What the site reads of a study's run (:class:`wiseft_lib.reproduce.StudyRun` has it)."""

    name: str
    status: str
    seconds: float
    output_dir: Path
    notebook: Path
    error: str
    figures: list[Path]

    @property
    def source(self) -> str: ...


def _page(title: str, body: str, style: str = "") -> str:
    """A whole HTML page: ``body`` (HTML) with the inline CSS, nothing loaded from elsewhere."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{escape(title)}</title>'
            f"<style>{CSS}{style}</style></head>\n<body>\n{body}\n</body></html>\n")


def _write(path: Path, html: str) -> Path:
    """Write ``html`` atomically, non-ASCII as character references (the file reads the same in any locale)."""
    return atomic_write_text(path, html.encode("ascii", "xmlcharrefreplace").decode("ascii"))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def html_exporter() -> HTMLExporter:
    """nbconvert's body-only exporter, quiet: it warns on every page that plot images lack alt text."""
    exporter = HTMLExporter(template_name="basic")
    quiet = logging.getLogger("wiseft_lib.report.site.nbconvert")
    quiet.setLevel(logging.ERROR)
    exporter.log = quiet
    return exporter


def notebook_page(notebook: Path, title: str, exporter: Optional[HTMLExporter] = None) -> str:
    """An executed notebook as one offline HTML page (nbconvert's ``basic`` body, images inline)."""
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            outputs = [o for o in cell.get("outputs", []) if _WIDGET not in o.get("data", {})]
            for output in outputs:
                output.get("data", {}).pop(_SCRIPT, None)
            cell.outputs = [o for o in outputs if "data" not in o or o["data"]]
    body, _ = (exporter or html_exporter()).from_notebook_node(nb)
    nav = f'<nav><a href="index.html#{escape(notebook.stem)}">&larr; all studies</a></nav>'
    return _page(title, f"{nav}\n<h1>{escape(title)}</h1>\n{body}\n{nav}",
                 HtmlFormatter(style="default").get_style_defs(".highlight"))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def _truth(value: Any) -> Optional[bool]:
    if _missing(value):
        return None
    return str(value).strip().lower() in ("true", "1", "1.0")


_CLAIM_NUMBERS = ("holds", "value_pp", "value", "bar_pp", "bar", "noise_pp", "within_noise")


def _claim_text(row: Mapping[str, Any]) -> str:
    """A claim in words: its ``claim`` (after its ``mode``), or (a table without one) its other columns."""
    if not _missing(row.get("claim")):
        return (f"{row['mode']}: " if not _missing(row.get("mode")) else "") + str(row["claim"])
    cells = [(k, str(v)) for k, v in row.items() if k not in _CLAIM_NUMBERS and not _missing(v)]
    return ", ".join(f"{k} {v if len(v) <= 80 else v[:77] + '...'}" for k, v in cells)


def _claim_detail(row: Mapping[str, Any]) -> str:
    """Its value (pp where it has one) and bar: ``+2.5 pp (bar >= 2)``."""
    value = next((row[k] for k in ("value_pp", "value") if k in row and not _missing(row[k])), None)
    unit = not _missing(row.get("value_pp"))
    text = "" if not isinstance(value, (int, float)) else f"{value:+.1f} pp" if unit else f"{value:+.4g}"
    bar = next((row[k] for k in ("bar_pp", "bar") if k in row and not _missing(row[k])), None)
    return text + (f" (bar {bar})" if bar is not None and not str(bar).startswith("(") else "")  # not "(reported)"


def _claims(out: Path) -> str:
    """The study's ``claims.csv``: a count, then each claim as holds / fails (within noise) with its value."""
    try:
        table = pd.read_csv(out / "claims.csv")
    except (OSError, ValueError):
        return ""
    if "holds" not in table:
        return ""
    items, held, judged, noisy = [], 0, 0, 0
    for row in table.to_dict("records"):
        holds, noise = _truth(row.get("holds")), _truth(row.get("within_noise"))
        label = "reported" if holds is None else ("holds" if holds else "fails")
        judged, held, noisy = judged + (holds is not None), held + bool(holds), noisy + bool(noise)
        badges = f'<span class="badge {label}">{label}</span>'
        badges += ' <span class="badge noise">within noise</span>' if noise else ""
        items.append(f"<li>{badges} {escape(_claim_text(row))} <small>{escape(_claim_detail(row))}</small></li>")
    count = f"{held} of {judged} claims hold" + (f", {noisy} within noise" if noisy else "")
    return f'<p class="meta"><strong>{escape(count)}</strong></p><ul class="claims">{"".join(items)}</ul>'


def _card(run: SiteRun, title: str, site: Path, page: Optional[str], page_error: str = "") -> str:
    """One study's card: title, status, runtime, source, claims, first figure, its notebook page, its error."""
    source = {"computed": "computed", "cache": "from the run cache"}.get(run.source, "source not recorded")
    parts = [f'<section class="study-card" id="{escape(run.name)}">', f"<h2>{escape(title)}</h2>",
             f'<div class="name">{escape(run.name)}</div>',
             f'<p class="meta"><span class="badge {escape(run.status)}">{escape(run.status)}</span> '
             f"{escape(_duration(run.seconds))} &middot; {escape(source)}</p>"]
    if run.error:
        parts.append(f'<div class="error">{escape(run.error)}</div>')
    parts.append(_claims(run.output_dir))
    if run.figures:
        src = quote(Path(os.path.relpath(run.figures[0], site)).as_posix())
        alt = f"{title}: {run.figures[0].stem}"
        parts.append(f'<img src="{escape(src)}" alt="{escape(alt)}">')
    if page is not None:
        parts.append(f'<p><a href="{escape(page)}">the executed notebook &rarr;</a></p>')
    elif page_error:
        parts.append(f'<div class="error">notebook page not rendered: {escape(page_error)}</div>')
    return "\n".join([*parts, "</section>"])


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table; ``rows`` hold HTML (escaped by the caller)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _profile(base: Path) -> str:
    """``profile.csv``, if the run was profiled."""
    try:
        table = pd.read_csv(base / "profile.csv", keep_default_na=False)
    except (OSError, ValueError):
        return ""
    rows = [[escape(str(v)) for v in row] for row in table.itertuples(index=False)]
    return ('<h2 id="profile">Profile</h2><p>Wall time against the compute floor (the counted work at this '
            "machine's bare rates):</p>" + _table(list(table.columns), rows))


def _coverage(coverage: Sequence[tuple[str, Optional[str], str]], runs: Sequence[SiteRun]) -> str:
    """The paper's tables and figures, each with the study that reproduces it (linked to its card) or why not."""
    ran = {r.name: r for r in runs}
    rows = []
    for item, study, note in coverage:
        if study is None:
            cell = "none"
        elif study in ran:
            cell = f'<a href="#{escape(study)}">{escape(study)}</a> ({escape(ran[study].status)})'
        else:
            cell = f"{escape(study)} (not in this run)"
        rows.append([escape(item), cell, escape(note)])
    return '<h2 id="coverage">Paper coverage</h2>' + _table(["paper", "notebook", "note"], rows) if rows else ""


def build_site(runs: Sequence[SiteRun], base: Path | str, preset: str, *, smoke: bool = False,
               coverage: Sequence[tuple[str, Optional[str], str]] = (),
               titles: Optional[Mapping[str, str]] = None) -> Path:
    """Write ``base/site/STUDY.html`` (each executed notebook) and ``base/site/index.html``; return the index.

    ``coverage``: ``(item, study or None, note)`` rows (``reproduce.PAPER_COVERAGE``); ``titles``: each study's
    title (its name where missing). A notebook nbconvert cannot render gets a card without a page."""
    base, titles = Path(base), titles or {}
    site = base / "site"
    exporter, cards = html_exporter(), []
    for run in runs:
        title, page, page_error = titles.get(run.name, run.name), None, ""
        if run.notebook.exists():
            try:
                _write(site / f"{run.name}.html", notebook_page(run.notebook, title, exporter))
                page = f"{quote(run.name)}.html"
            except Exception as err:  # one unreadable notebook must not cost the others their pages
                page_error = f"{type(err).__name__}: {err}"[:300]
        cards.append(_card(run, title, site, page, page_error))
    failed = sum(r.status != "ok" for r in runs)
    heading = f"wiseft: the {preset} preset" + (" (smoke run)" if smoke else "")
    links = ['<a href="#coverage">paper coverage</a>'] if coverage else []
    links += ['<a href="#profile">profile</a>'] if (base / "profile.csv").exists() else []
    links += ['<a href="../index.md">index.md</a>'] if (base / "index.md").exists() else []
    intro = (f'<p>WiSE-FT, robust fine-tuning of zero-shot models (<a href="{PAPER}">arXiv:2109.01903</a>): '
             f"{len(runs)} studies, {len(runs) - failed} ok, {failed} failed; generated "
             f"{escape(time.strftime('%Y-%m-%d %H:%M'))}. "
             f"{' &middot; '.join(links)}</p>")
    body = "\n".join([f"<h1>{escape(heading)}</h1>", intro, '<div class="grid">', *cards, "</div>",
                      _profile(base), _coverage(coverage, runs)])
    return _write(site / "index.html", _page(heading, body))
