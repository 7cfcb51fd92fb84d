"""Table 1 (with Tables 3, 4 and 5): zero-shot, fine-tuned and WiSE-FT on the ID set and each shift.

    wiseft run table1_shifts --params params/mini/table1_shifts.yaml
    papermill notebooks/table1_shifts.ipynb out.ipynb -f params/mini/table1_shifts.yaml   # the same, with prose

Writes to ``output_dir``: ``table1.*`` (CSV with every accuracy's 95% Clopper-Pearson interval and
the optimal alpha per column; Markdown; LaTeX), ``table3.*`` (optimal minus 0.5), ``table4_5_sweep_e2e.*``
and ``table4_5_sweep_lc.*`` (the full sweeps), ``published_table1.*``, and either
``beside_published.*`` (the paper's own datasets: our number, the paper's and the difference per
cell) or ``shape.*`` + ``claims.*`` (another setting, e.g. the mini: does WiSE-FT 0.5 beat the
fine-tuned and the zero-shot model per column, here and in the paper). Also ``results.sqlite`` and
``study.json``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from wiseft_lib.analysis.shift_tables import paper_columns, shape_table, sweep_table, table1, table3
from wiseft_lib.experiment.curve import alphas_on_val, val_id_curve
from wiseft_lib.params import param
from wiseft_lib.report.paper import published
from wiseft_lib.report.tables import beside_published
from wiseft_lib.studies.base import StudyOutputs, StudyResult, register_study
from wiseft_lib.studies.shift_sweep import (
    ShiftSweepParams,
    add_table_rows,
    column_labels,
    paper_column_map,
    run_sweep,
)

NAME = "table1_shifts"
__all__ = ["Table1Params", "Table1Result", "run", "SHAPE_BAR"]

SHAPE_BAR = 10  # of the 14 end-to-end comparisons, how many must agree with the paper (the bar)


@dataclass
class Table1Params(ShiftSweepParams):
    """Table 1's parameters: one sweep (both fine-tuning modes) on the ID set and its shifts."""

    output_dir: str = param("outputs/mini/table1_shifts", "where results, tables and figures go")


@dataclass
class Table1Result(StudyResult):
    """What :func:`run` computed and wrote (the notebook displays it)."""

    params: Table1Params
    sweep: pd.DataFrame  # one row per (mode, alpha): seed means, stds, Avg, Avg(r,s), images per set
    table1: pd.DataFrame  # the paper's rows, with intervals and per-column optimal alphas
    table3: pd.DataFrame  # optimal minus 0.5 per column, and the alphas chosen
    published: pd.DataFrame  # the paper's Table 1
    beside: Optional[pd.DataFrame]  # ours, paper's and the difference per cell (the paper's datasets only)
    shape: Optional[pd.DataFrame]  # per column: WiSE-FT 0.5 vs FT and ZS, here and in the paper
    claims: Optional[pd.DataFrame]  # how many comparisons agree, per head

    def display(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with readable column headers (the paper's short names, mini analogs), alphas as text."""
        return alphas_as_text(frame).rename(columns=column_labels(list(frame.columns))).round(2)


def alphas_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """A numeric ``alpha`` column as text (0.05 stays 0.05 in a table formatted to one decimal)."""
    if "alpha" in frame.columns and pd.api.types.is_numeric_dtype(frame["alpha"]):
        frame = frame.assign(alpha=[f"{a:g}" for a in frame["alpha"]])
    return frame


def shape_claims(shape: pd.DataFrame) -> pd.DataFrame:
    """Agreement counts per head; the end-to-end head is held to :data:`SHAPE_BAR` of its comparisons."""
    rows = []
    for head, g in shape.groupby("head", sort=False):
        shifts = g[g["paper_column"] != "imagenet"]  # the shifts, Avg and Avg(r,s): 14 comparisons per head
        agree = int(shifts["agree"].sum())
        bar = SHAPE_BAR if head == "E2E" else None
        rows.append({"head": head, "agree": agree, "of": len(shifts),
                     "disagree_on": ", ".join(f"{r.column} ({r.comparison.split(' vs ')[1]})"
                                              for r in shifts.itertuples() if not r.agree) or "-",
                     "bar": f">= {bar}" if bar else "(reported)", "holds": bool(agree >= bar) if bar else None})
    return pd.DataFrame(rows)


def run(params: Table1Params, *, progress: bool = True) -> Table1Result:
    """Compute (or reuse) the sweep; write Tables 1, 3, 4/5 and the comparison with the paper."""

    outputs = StudyOutputs(NAME, params)
    p, tidy, _, store = run_sweep(outputs, progress=progress)
    cols = paper_columns(p.id_dataset, p.ood_datasets)
    labels = column_labels(cols)
    sweep = sweep_table(tidy, p.id_dataset, p.ood_datasets)
    val = val_id_curve(p, p.seeds, runs=outputs.runs)  # the alpha to deploy, chosen on ID val (None: no val split)
    if val is not None:
        outputs.csv("val_curve", val.round(4))
    t1 = table1(tidy, p.id_dataset, p.ood_datasets, val_alphas=alphas_on_val(val))
    t3 = table3(sweep, cols)

    def write(frame: pd.DataFrame, stem: str, csv: Optional[pd.DataFrame] = None, **kw) -> None:
        outputs.table(stem, frame.rename(columns=labels), csv=csv, **kw)

    write(t1[["row", "alpha", *cols]], "table1", csv=t1,
          caption=f"{p.model} on {p.id_dataset} and {len(p.ood_datasets)} shifts ({p.eval_split} split, "
                  f"mean of {len(p.seeds)} seed(s)); the CSV has 95% Clopper-Pearson intervals")
    write(t3, "table3", floatfmt=".2f")
    for mode, head in (("end-to-end", "e2e"), ("linear", "lc")):
        part = sweep[sweep["mode"] == mode]
        if not part.empty:
            write(alphas_as_text(part[["alpha", *cols]]), f"table4_5_sweep_{head}", csv=part)
    paper = published("table1")
    write(paper.drop(columns=["model", "method", "head", "source"]), "published_table1")
    add_table_rows(store, NAME, "table1", t1, "row", cols, p.model, p.to_dict())

    beside = shape = claims = None
    mapping = paper_column_map(p.id_dataset, p.ood_datasets)
    if mapping is not None:
        shape = shape_table(t1, paper, mapping)
        write(shape, "shape")
        claims = shape_claims(shape)
        write(claims, "claims", floatfmt=".0f")
        if all(k == v for k, v in mapping.items()):  # the paper's own datasets: cell by cell
            ours = t1[["paper_row", *cols]].rename(columns={"paper_row": "row"})
            beside = beside_published(ours, paper[["row", *cols]], on="row", diff=True)
            write(beside, "beside_published")
    return Table1Result(p, sweep, t1, t3, paper, beside, shape, claims, **outputs.finish())


STUDY = register_study("table1_shifts", "Tables 1, 3, 4, 5: zero-shot, fine-tuned and WiSE-FT per shift, optimal alpha",
                       Table1Params, run,
                       covers=[("Table 1", ""),
                               ("Table 3, Tables 4-5", "the same sweep as Table 1")])
