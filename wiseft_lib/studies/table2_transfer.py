"""Table 2 and Figure 16: WiSE-FT on downstream tasks: does mixing in the zero-shot weights help ID too?

    wiseft run table2_transfer --params params/mini/table2_transfer.yaml
    papermill notebooks/table2_transfer.ipynb out.ipynb -f params/mini/table2_transfer.yaml

Each task is its own ID set: the zero-shot model is fine-tuned end to end on its train split and the
interpolation scored on its test split (no shift). The paper (ViT-L/14@336px, seven datasets) finds WiSE-FT
at alpha 0.5 above the fine-tuned model on every one. Beside the oracle alpha (best on the test images, the
paper's "optimal"), ``select_split: val`` also picks alpha on the held-out val split and reports its test
accuracy. Writes ``table2.*`` (rows: zero-shot, fine-tuned, WiSE-FT 0.5, oracle, val-chosen; one column per
task), ``published_table2.*``, ``claims.*``, ``curves.csv``, ``fig16_transfer_curves.png/.pdf``,
``results.sqlite`` and ``study.json``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import pandas as pd

from wiseft_lib.data.mini.tasks import TASK_KIND, TRANSFER_TASKS
from wiseft_lib.experiment.config import ALPHAS_11, CurveConfig
from wiseft_lib.experiment.curve import wiseft_curve
from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.paper import published
from wiseft_lib.report.plots import plot_metric_curves
from wiseft_lib.studies.base import StudyOutputs, StudyParams, StudyResult, UsesRuns, register_study

NAME = "table2_transfer"
__all__ = ["Table2Params", "Table2Result", "run", "transfer_table", "transfer_claims"]


@dataclass
class Table2Params(CurveConfig, UsesRuns, StudyParams):
    """Table 2's parameters: the reference recipe, run on each task as its own ID set (``id_dataset`` and
    ``ood_datasets`` are not used: ``tasks`` are the ID sets, scored alone)."""

    output_dir: str = param("outputs/mini/table2_transfer", "where results, tables and figures go")
    tasks: list[str] = param(list(TRANSFER_TASKS), "downstream tasks (datasets with a train split), each "
                                                  "fine-tuned and scored on its own")
    modes: list[str] = param(["end-to-end"], "fine-tuning modes (the paper's Table 2: end-to-end)")
    ood_datasets: list[str] = param([], "not used: each task is scored on its own test split")
    alphas: list[float] = param(list(ALPHAS_11), "mixing coefficients; the oracle alpha is chosen on this grid")
    select_split: Optional[str] = param("val", "'val': also choose alpha on each task's val split (held out from "
                                               "test) and report it; None: the tasks have no such split")
    n_val: Optional[int] = param(1000, "images of each task's val split for choosing alpha (mini sets)")
    task_kind: dict[str, str] = param(dict(TASK_KIND), "task -> what it stands for in the paper (shown in tables)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.tasks:
            raise ParamsError("parameter 'tasks' must name at least one dataset with a train split")
        if self.select_split not in (None, "val"):
            raise ParamsError(f"parameter 'select_split' must be 'val' or None, got {self.select_split!r}")

    def task_config(self, task: str, split: str = "test") -> CurveConfig:
        return self.as_curve(id_dataset=task, ood_datasets=[], eval_split=split,
                             n_test=self.n_val if split == "val" else self.n_test)


@dataclass
class Table2Result(StudyResult):
    params: Table2Params
    curves: pd.DataFrame  # task, split, mode, alpha: mean and std over seeds of ID accuracy
    table: pd.DataFrame  # the paper's rows x tasks
    claims: pd.DataFrame
    published: pd.DataFrame
    figure: Any


def transfer_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Rows zero-shot, fine-tuned, WiSE-FT 0.5, oracle alpha (best test accuracy) and, where a val curve exists,
    the alpha chosen on val (its test accuracy); one column per task, plus the alphas used."""
    test, val = curves[curves["split"] == "test"], curves[curves["split"] == "val"]
    rows: dict[str, dict[str, Any]] = {}

    def put(row: str, task: str, value: Any) -> None:
        rows.setdefault(row, {"row": row})[task] = value

    for (task, mode), g in test.groupby(["task", "mode"], sort=False):
        g = g.set_index("alpha")["acc"]
        head = "E2E" if mode == "end-to-end" else "LC"
        put("zero-shot", task, g.get(0.0))
        put(f"fine-tuned ({head})", task, g.get(1.0))
        put(f"WiSE-FT {head}, alpha=0.5", task, g.get(0.5))
        best = g.idxmax()
        put(f"WiSE-FT {head}, oracle alpha (best on test)", task, g[best])
        put(f"  oracle alpha ({head})", task, best)
        v = val[(val["task"] == task) & (val["mode"] == mode)]
        if not v.empty:
            chosen = v.set_index("alpha")["acc"].idxmax()
            put(f"WiSE-FT {head}, alpha chosen on val", task, g.get(chosen))
            put(f"  val-chosen alpha ({head})", task, chosen)
    return pd.DataFrame(list(rows.values()))


def transfer_claims(table: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """The paper's claim per head: WiSE-FT 0.5 beats the fine-tuned model's ID accuracy on most tasks (the paper:
    7 of 7); each task's difference is listed, and the alpha chosen on val is reported beside it."""
    t = table.set_index("row")
    rows = []
    for head in ("E2E", "LC"):
        ft, mid = f"fine-tuned ({head})", f"WiSE-FT {head}, alpha=0.5"
        if ft not in t.index:
            continue
        diff = (t.loc[mid, tasks] - t.loc[ft, tasks]).astype(float)
        wins = int((diff > 0).sum())
        rows.append({"claim": f"WiSE-FT {head} 0.5 beats fine-tuning ID on most tasks ({wins} of {len(tasks)}: "
                              + ", ".join(f"{k.removeprefix('mini-')} {v:+.2f}" for k, v in diff.items()) + ")",
                     "value_pp": round(float(diff.mean()), 2), "bar_pp": f"wins > {len(tasks) / 2:g}",
                     "holds": bool(wins > len(tasks) / 2)})
        val_row = f"WiSE-FT {head}, alpha chosen on val"
        if val_row in t.index:
            gain = (t.loc[val_row, tasks] - t.loc[ft, tasks]).astype(float)
            rows.append({"claim": f"WiSE-FT {head} with alpha chosen on val - fine-tuned (mean over tasks; "
                                  f"reported)", "value_pp": round(float(gain.mean()), 2), "bar_pp": "", "holds": None})
    return pd.DataFrame(rows)


def run(params: Table2Params, *, progress: bool = True) -> Table2Result:
    """Fine-tune and sweep each task (cached), on test and on val; write Table 2 and Figure 16."""

    outputs = StudyOutputs(NAME, params)
    p, runs = outputs.params, outputs.runs
    if p.smoke:
        p = dataclasses.replace(p, tasks=p.tasks[:2], seeds=p.seeds[:1], n_val=min(p.n_val or 200, 200))
    store = ResultsStore(outputs.out / "results.sqlite")
    frames = []
    splits = ["test"] + ([p.select_split] if p.select_split else [])
    for task in p.tasks:
        for split in splits:
            cfg = p.task_config(task, split)
            cfg = cfg.smoke_version() if p.smoke else cfg
            for seed in p.seeds:
                tidy = wiseft_curve(cfg, seed, runs=runs, store=store if split == "test" else None, study=NAME,
                                    progress=progress)
                frames.append(tidy.assign(task=task, split=split))
    tidy = pd.concat(frames, ignore_index=True)
    top1 = tidy[(tidy["metric"] == "top1") & (tidy["dataset"] == tidy["task"])]
    curves = (top1.groupby(["task", "split", "mode", "alpha"], sort=False)["value"].agg(["mean", "std"])
              .reset_index().rename(columns={"mean": "acc", "std": "acc_std"}))
    table = transfer_table(curves)
    claims = transfer_claims(table, p.tasks)
    labels = {t: f"{t} ({p.task_kind[t]})" if t in p.task_kind else t for t in p.tasks}
    paper = published("table2")
    outputs.table("table2", table.rename(columns=lambda c: c.removeprefix("mini-")), floatfmt=".2f", csv=table,
                  caption=f"{p.model}: ID accuracy per task ({len(p.seeds)} seed(s), test split)")
    outputs.table("published", paper, "published_table2")
    claims = outputs.claims(claims, p.n_test, floatfmt=".2f")
    outputs.csv("curves", curves.round(4))
    test_curves = curves[curves["split"] == "test"].assign(x=lambda d: d["alpha"], y=lambda d: d["acc"])
    figure = plot_metric_curves(test_curves, panel="task", xlabel="alpha", titles=labels, ncols=4,
                                ylabels={t: "test accuracy (%)" for t in p.tasks},
                                title=f"WiSE-FT on downstream tasks, {p.model} ({len(p.seeds)} seed(s))")
    outputs.figure("figure", figure, "fig16_transfer_curves")
    return Table2Result(p, curves, table, claims, paper, figure, **outputs.finish())


STUDY = register_study("table2_transfer", "Table 2, Figure 16: WiSE-FT on downstream tasks (ID accuracy, alpha curves)",
                       Table2Params, run,
                       covers=[("Table 2, Figure 16", "mini: tasks built from the mini's styles and class subsets")])
