"""The whole study in one command: every notebook of a preset, shared runs computed once, one index page.

    python -m wiseft_lib.reproduce --preset mini          # what `make reproduce` runs
    python -m wiseft_lib.reproduce --preset mini --smoke  # every notebook in smoke mode (minutes)
    python -m wiseft_lib.reproduce --preset paper         # on a GPU machine with WISEFT_DATA

Each notebook with a params file ``params/PRESET/NAME.yaml`` is executed by papermill into
``outputs/PRESET/NAME/NAME.ipynb``; the studies share the preset's run cache (``outputs/PRESET/runs``),
so a fine-tune made by one is reused by the next. A notebook that fails is listed as failed with its
error and the others still run. ``outputs/PRESET/index.md`` then shows, per study: its figures,
tables and checked claims, its runtime, and a link to the executed notebook; ``outputs/PRESET/site/index.html``
is the same as an offline HTML gallery, a card per study and each executed notebook as a page
(:mod:`wiseft_lib.report.site`).
"""
from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
import yaml
from tqdm.auto import tqdm

from wiseft_lib.core.files import atomic_write_text
from wiseft_lib.core.rates import BareRates, bare_rates, compute_floor
from wiseft_lib.progress import progress_env
from wiseft_lib.report.site import build_site
from wiseft_lib.report.tables import write_table
from wiseft_lib.studies import STUDIES
from wiseft_lib.studies.base import quiet_papermill_about_hidden_parameters

__all__ = ["PAPER_COVERAGE", "paper_coverage", "StudyRun", "profile_table", "write_profile", "FigureOutputs", "figure_outputs", "reproduce", "write_index", "main"]

# a cell whose last line is one of these shows a figure (``fig``, ``result.figure``, ``result.figure_models``)
_FIGURE_EXPRESSION = re.compile(r"^(fig\w*|\w+\.figure\w*)$")


@dataclass
class StudyRun:
    name: str
    status: str  # "ok" or "failed"
    seconds: float
    output_dir: Path
    notebook: Path
    error: str = ""
    figures: list[Path] = field(default_factory=list)
    shown: Optional["FigureOutputs"] = None
    work: Optional[dict[str, int]] = None  # what the study computed (its study.json); None: not recorded

    @property
    def source(self) -> str:
        """``computed`` (it trained or scored something), ``cache`` (all read from the run cache) or ``-``."""
        if self.work is None:
            return "-"
        return "computed" if any(self.work.values()) else "cache"


@dataclass(frozen=True)
class FigureOutputs:
    """What an executed notebook shows of its figures: ``with_image`` of its ``cells`` figure cells have a
    PNG output; ``as_text`` lists the cells that printed a figure as ``<Figure ...>`` text instead."""

    with_image: int
    cells: int
    as_text: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"{self.with_image}/{self.cells}"


def figure_outputs(notebook: Path | str) -> FigureOutputs:
    """Count the figure cells of an executed notebook and those that show an image.

    A figure cell ends in a figure expression (``fig``, ``result.figure``) or has an image or a
    ``<Figure ...>`` text among its outputs. Cell numbers count code cells from 0."""
    import nbformat  # the [studies] extra

    nb = nbformat.read(str(notebook), as_version=4)
    with_image, cells, as_text = 0, 0, []
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        lines = [line.strip() for line in cell.source.splitlines() if line.strip()]
        datas = [o.get("data", {}) for o in cell.get("outputs", [])]
        image = any("image/png" in d for d in datas)
        text = any(str(d.get("text/plain", "")).startswith("<Figure") and "image/png" not in d for d in datas)
        if image or text or (lines and _FIGURE_EXPRESSION.match(lines[-1])):
            cells += 1
            with_image += image
            if text:
                as_text.append(i)
    return FigureOutputs(with_image, cells, tuple(as_text))


def _execute(notebook: Path, params_file: Path, out: Path, smoke: bool, kernel: str, log_output: bool,
             cell_timeout: Optional[int] = None, own_cache: bool = False, progress: bool = False) -> None:
    import papermill  # the [studies] extra

    quiet_papermill_about_hidden_parameters()
    parameters = dict(yaml.safe_load(params_file.read_text()) or {})
    parameters["output_dir"] = str(out.resolve())
    if own_cache and notebook.stem in STUDIES and "runs_dir" in STUDIES[notebook.stem].params.__dataclass_fields__:
        parameters["runs_dir"] = str((out / "runs").resolve())
    if smoke:
        parameters["smoke"] = True
    with progress_env(progress):  # the kernel inherits it: no bars in the executed notebook or the log unless asked
        papermill.execute_notebook(str(notebook), str(out / notebook.name), parameters=parameters,
                                   kernel_name=kernel, progress_bar=False, log_output=log_output,
                                   cwd=str(notebook.parent.parent), execution_timeout=cell_timeout)


def _error_text(err: BaseException) -> str:
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(err).__name__}: {err}"
    return " ".join(text.split())[:600]


def reproduce(preset: str = "mini", *, root: Path | str = ".", outputs: Optional[Path | str] = None,
              smoke: bool = False, only: Sequence[str] = (), kernel: str = "python3",
              log_output: bool = False, cell_timeout: Optional[int] = None, profile: bool = False,
              own_cache: bool = False, progress: bool = False) -> list[StudyRun]:
    """Execute every notebook of ``preset`` (those with a params file), then write ``index.md`` and the site
    (``site/index.html``, :func:`~wiseft_lib.report.site.build_site`).

    ``cell_timeout`` (seconds) fails a notebook whose cell runs longer, e.g. a kernel that stopped answering
    (seen once with Jupyter's messaging): the others still run. None: no limit (paper runs take hours).
    ``profile`` first measures this machine's bare rates (:mod:`wiseft_lib.core.rates`), then writes
    ``profile.csv/.md``: per study its wall time, the work it counted, its compute floor and wall / floor.
    ``own_cache`` gives every study its own run cache (``STUDY/runs``) instead of the preset's shared one: with a
    new ``outputs`` folder, each notebook's time from an empty cache, as a user running only that notebook sees it.
    ``progress`` shows the studies' own progress bars (fine-tunes, sweeps) in the executed notebooks and, with
    ``log_output``, in the log; without it they are off there (:mod:`wiseft_lib.progress`), and the bar over the
    notebooks shows only on a terminal.
    """

    root = Path(root)
    params_dir = root / "params" / preset
    if not params_dir.is_dir():
        presets = sorted(p.name for p in (root / "params").iterdir() if p.is_dir()) if (root / "params").is_dir() else []
        raise ValueError(f"no preset {preset!r}: {params_dir} does not exist (presets: {', '.join(presets) or 'none'})")
    base = Path(outputs) if outputs is not None else root / "outputs" / preset
    notebooks = [nb for nb in sorted((root / "notebooks").glob("*.ipynb"))
                 if (params_dir / f"{nb.stem}.yaml").exists() and (not only or nb.stem in only)]
    unknown = sorted(set(only) - {nb.stem for nb in notebooks})
    if unknown:
        raise ValueError(f"no notebook with a {preset} params file for {unknown}")
    rates = bare_rates() if profile else None
    expected, began, runs = _last_profile(base), time.time(), []
    for i, nb in enumerate(tqdm(notebooks, desc=f"reproduce {preset}", unit="notebook", disable=None if not progress else False), 1):
        hint = f", {expected[nb.stem]:.0f} s in the last profile" if nb.stem in expected else ""
        tqdm.write(f"[{i}/{len(notebooks)}] {nb.stem}: running ({_minutes(time.time() - began)} elapsed{hint})")
        runs.append(_run_one(nb, params_dir / f"{nb.stem}.yaml", base / nb.stem, smoke, kernel, log_output,
                             cell_timeout, own_cache, progress))
        r = runs[-1]
        tqdm.write(f"[{i}/{len(notebooks)}] {nb.stem}: {r.status} in {r.seconds:.0f} s ({r.source})")
    if rates is not None:  # measured again at the end: the faster of the two is the machine's bare rate
        write_profile(runs, base, rates, rates.best(bare_rates()))
    write_index(runs, base, preset, smoke)
    build_site(runs, base, preset, smoke=smoke, coverage=PAPER_COVERAGE,
               titles={name: study.title for name, study in STUDIES.items()})
    return runs


def _run_one(notebook: Path, params_file: Path, out: Path, smoke: bool, kernel: str, log_output: bool,
             cell_timeout: Optional[int], own_cache: bool = False, progress: bool = False) -> StudyRun:
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    try:
        _execute(notebook, params_file, out, smoke, kernel, log_output, cell_timeout, own_cache, progress)
        status, error = "ok", ""
    except Exception as err:  # one failed study must not stop the others
        status, error = "failed", _error_text(err)
    executed = out / notebook.name
    return StudyRun(notebook.stem, status, round(time.time() - start, 1), out, executed, error,
                    sorted(out.glob("*.png")), figure_outputs(executed) if executed.exists() else None,
                    _work_since(out / "study.json", start) if status == "ok" else None)


def _work_since(record: Path, start: float) -> Optional[dict[str, int]]:
    """The ``work`` a study recorded in ``study.json``, if this run wrote it (not a leftover of an earlier one)."""
    try:
        if record.stat().st_mtime < start:
            return None
        work = json.loads(record.read_text()).get("work")
    except (OSError, ValueError):
        return None
    return {k: int(v) for k, v in work.items()} if isinstance(work, dict) else None


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


# ---------------------------------------------------------------- the profile
PROFILE_WORK = ("eval_images", "feature_images", "e2e_steps", "e2e_train_images", "pretrain_steps",
                "runs_computed", "scores_added")


def profile_table(runs: Sequence[StudyRun], rates: BareRates) -> pd.DataFrame:
    """Per study: wall time, the work it counted, its compute floor at the bare ``rates`` and wall / floor;
    a last row sums them."""
    rows = []
    for r in runs:
        work = r.work or {}
        rows.append({"study": r.name, "status": r.status, "source": r.source, "wall_s": r.seconds,
                     **{k: work.get(k, 0) for k in PROFILE_WORK}, "floor_s": round(compute_floor(work, rates), 1)})
    table = pd.DataFrame(rows, columns=["study", "status", "source", "wall_s", *PROFILE_WORK, "floor_s"])
    total = {"study": "total", "status": "", "source": "", **table[["wall_s", *PROFILE_WORK, "floor_s"]].sum()}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True).astype({k: int for k in PROFILE_WORK})
    table["wall_over_floor"] = (table["wall_s"] / table["floor_s"].where(table["floor_s"] > 0)).round(2)
    return table


def write_profile(runs: Sequence[StudyRun], base: Path, first: BareRates, rates: BareRates) -> Path:
    """``profile.csv/.md/.tex`` (the table, against ``rates``) and ``rates.json`` (``rates``, and the ``first``
    measurement, taken before the studies)."""
    record = {**rates.to_dict(), "measured_before_the_studies": first.to_dict()}
    atomic_write_text(base / "rates.json", json.dumps(record, indent=1) + "\n")
    return write_table(profile_table(runs, rates), base / "profile", floatfmt=".1f")["csv"]


def _last_profile(base: Path) -> dict[str, float]:
    """Each study's wall time in the outputs folder's last profile (for the progress lines), if there is one."""
    try:
        table = pd.read_csv(base / "profile.csv")
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in zip(table["study"], table["wall_s"]) if k != "total"}


def _claims_summary(out: Path) -> str:
    path = out / "claims.csv"
    if not path.exists():
        return ""
    holds = pd.read_csv(path)["holds"].dropna()  # rows without a bar (reported only) are not claims
    return f"{int(holds.astype(str).str.lower().eq('true').sum())} of {len(holds)} claims hold"


# The paper's items (arXiv 2109.01903 v3) that no study reproduces, and why. The others are declared by the
# studies that reproduce them (``register_study(..., covers=...)``).
NOT_REPRODUCED: tuple[tuple[str, str], ...] = (
    ("Figure 4", "BASIC-L, JFT ViT-H/14 and ALIGN weights are not public; table8_other_models runs the same rows "
                 "for any open_clip model"),
)
UNCHECKED = ("Figures 2, 14, 22-25; Tables 9-12", "not reproduced: the items above were checked against the paper "
                                                 "(v3) item by item; these were not, so no notebook claims them")


def _paper_order(item: str) -> tuple[int, int]:
    """Where an item ("Table 3, Tables 4-5") comes in the paper: by its first number, a figure before a table."""
    found = re.search(r"(Figure|Table)s? (\d+)", item)
    return (int(found.group(2)), found.group(1) == "Table") if found else (10**6, True)


def paper_coverage() -> tuple[tuple[str, Optional[str], str], ...]:
    """Every table and figure of the paper: ``(item, study or None, note)``, in the paper's order. index.md and
    the README show this table, so a user reads the coverage in words the package ships."""
    rows = [(item, study.name, note) for study in STUDIES.values() for item, note in study.covers]
    rows += [(item, None, note) for item, note in NOT_REPRODUCED]
    return tuple(sorted(rows, key=lambda row: _paper_order(row[0]))) + ((UNCHECKED[0], None, UNCHECKED[1]),)


PAPER_COVERAGE = paper_coverage()

# The tables a study's section of index.md shows, when the study wrote them (its Markdown version).
INDEX_TABLES = ("summary", "table1", "table2", "table6", "table7", "table8", "table13", "matched", "claims", "gains",
                "path_summary", "zeroshot", "low_data_table", "objectnet_names")


def write_index(runs: Sequence[StudyRun], base: Path, preset: str, smoke: bool = False) -> Path:
    """``index.md``: a status table, then per study its figures, tables, claims and notebook."""

    def rel(p: Path) -> str:
        return p.relative_to(base).as_posix()

    lines = [f"# wiseft: the {preset} preset" + (" (smoke run)" if smoke else ""), "",
             f"Generated by `python -m wiseft_lib.reproduce --preset {preset}` on {time.strftime('%Y-%m-%d %H:%M')}.",
             "", "| study | status | runtime | computed or cached | claims | figures shown | notebook |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:
        nb = f"[{r.notebook.name}]({rel(r.notebook)})" if r.notebook.exists() else "-"
        lines.append(f"| [{r.name}](#{r.name.replace('_', '-')}) | {r.status} | {r.seconds:.0f} s | {r.source} | "
                     f"{_claims_summary(r.output_dir)} | {r.shown or '-'} | {nb} |")
    if (base / "profile.md").exists():
        lines += ["", "## Profile", "", "Wall time against the compute floor (the counted work at this machine's bare "
                  "rates, `rates.json`; [csv](profile.csv)):", "", (base / "profile.md").read_text().strip()]
    lines += ["", "## Paper coverage", "", "| paper | notebook | note |", "|---|---|---|"]
    ran = {r.name: r for r in runs}
    for item, notebook, note in PAPER_COVERAGE:
        if notebook is None:
            cell = "none"
        elif notebook in ran:
            cell = f"[{notebook}](#{notebook.replace('_', '-')}) ({ran[notebook].status})"
        else:
            cell = f"`{notebook}` (not in this run)"
        lines.append(f"| {item} | {cell} | {note} |")
    for r in runs:
        lines += ["", f"## {r.name}", "", f"Status: **{r.status}** in {r.seconds:.0f} s."]
        if r.error:
            lines += ["", "```", r.error, "```"]
        lines += [f"![{f.stem}]({rel(f)})" for f in r.figures]
        for table in INDEX_TABLES:
            md = r.output_dir / f"{table}.md"
            if md.exists():
                lines += ["", f"**{table}** ([csv]({rel(md.with_suffix('.csv'))}))", "", md.read_text().strip()]
    return atomic_write_text(base / "index.md", "\n".join(lines) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wiseft_lib.reproduce", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="mini", help="params/PRESET (mini: the embedded default; paper: a GPU machine)")
    p.add_argument("--smoke", action="store_true", help="run every notebook in smoke mode")
    p.add_argument("--only", nargs="*", default=(), metavar="STUDY", help="run only these notebooks")
    p.add_argument("--outputs", default=None, help="outputs folder (default: outputs/PRESET)")
    p.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    p.add_argument("--progress", action="store_true",
                   help="the studies' progress bars in the executed notebooks (and the log); off without it")
    p.add_argument("--profile", action="store_true",
                   help="measure this machine's bare rates and write profile.csv (wall vs compute floor per study)")
    p.add_argument("--cell-timeout", type=int, default=None, metavar="SECONDS",
                   help="fail a notebook whose cell runs longer (default: no limit)")
    p.add_argument("--own-cache", action="store_true",
                   help="every study with its own run cache (STUDY/runs), not the preset's shared one: with a new "
                        "--outputs folder, each notebook's time from an empty cache")
    a = p.parse_args(argv)
    try:
        runs = reproduce(a.preset, smoke=a.smoke, only=a.only, outputs=a.outputs, log_output=a.log_output,
                         progress=a.progress, cell_timeout=a.cell_timeout, profile=a.profile, own_cache=a.own_cache)
    except ValueError as err:
        print(f"reproduce: error: {err}")
        return 2
    base = Path(a.outputs) if a.outputs else Path("outputs") / a.preset
    for r in runs:
        shown = f"  figures shown {r.shown}" if r.shown and r.shown.cells else ""
        print(f"{r.status:6s} {r.seconds:7.0f} s  {r.name}{shown}" + (f"  ({r.error[:120]})" if r.error else ""))
    print(f"index: {base / 'index.md'}")
    print(f"site:  {base / 'site' / 'index.html'} (offline; open it in a browser)")
    return 0 if all(r.status == "ok" for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
