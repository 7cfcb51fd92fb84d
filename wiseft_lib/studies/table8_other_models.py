"""Table 8: the Table 1 rows (end-to-end) for several models: does WiSE-FT help whatever the model?

    wiseft run table8_other_models --params params/mini/table8_other_models.yaml
    papermill notebooks/table8_other_models.ipynb out.ipynb -f params/mini/table8_other_models.yaml

One sweep per model (``model``/``pretrained`` first, then each of ``other_models``, written
``NAME`` or ``NAME:TAG``). Rows per model: zero-shot, fine-tuned, WiSE-FT at 0.5 and at the optimal
alpha per column. Paper preset: open_clip's ViT-B/16 and ViT-L/14@336px (OpenAI weights) beside the
published rows, plus LAION / DataComp models the paper does not have. Mini preset: the shipped
pretraining budgets. Writes ``table8.*``, ``gains.*`` (ours and the paper's), ``published_table8.*``,
``beside_published.*`` (models with published rows), ``results.sqlite`` and ``study.json``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from wiseft_lib.analysis.shift_tables import AVG, paper_columns, table1
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.paper import published
from wiseft_lib.report.tables import beside_published
from wiseft_lib.studies.base import StudyOutputs, StudyResult, register_study
from wiseft_lib.studies.shift_sweep import ShiftSweepParams, add_table_rows, column_labels, run_sweep

NAME = "table8_other_models"
__all__ = ["Table8Params", "Table8Result", "run", "gains_table"]

_METHOD = {"Zero-shot": ("zero-shot", "0"), "Fine-tuned E2E": ("fine-tuned", "1"),
           "WiSE-FT E2E, alpha=0.5": ("wise-ft", "0.5"), "WiSE-FT E2E, optimal alpha": ("wise-ft", "optimal")}


@dataclass
class Table8Params(ShiftSweepParams):
    """Table 8's parameters: Table 1's sweep (end-to-end) for several models."""

    output_dir: str = param("outputs/mini/table8_other_models", "where results, tables and figures go")
    modes: list[str] = param(["end-to-end"], "Table 8 is end-to-end only")
    other_models: list[str] = param(["wiseft-mini:fmnist-budget25", "wiseft-mini:fmnist-budget12",
                                         "wiseft-mini:fmnist-budget5"], "more models, each NAME or NAME:TAG (open_clip name and pretrained tag, "
                                        "or wiseft-mini and one of its shipped tags)")
    published_names: dict[str, str] = param({}, "NAME:TAG -> the model's name in the paper's Table 8, for the "
                                                "side-by-side table (e.g. 'ViT-B-16:openai': 'CLIP ViT-B/16')")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modes != ["end-to-end"]:
            raise ParamsError(f"parameter 'modes': Table 8 is end-to-end only, got {self.modes}")
        for entry in self.other_models:
            if not isinstance(entry, str) or not entry.split(":", 1)[0]:
                raise ParamsError(f"parameter 'other_models': {entry!r} is not NAME or NAME:TAG")

    def model_entries(self) -> list[tuple[str, Optional[str]]]:
        """``(model, pretrained)`` per row group, the study's own model first, duplicates dropped."""
        entries = [(self.model, self.pretrained)]
        for entry in self.other_models:
            name, _, tag = entry.partition(":")
            entries.append((name, tag or None))
        return list(dict.fromkeys(entries))

    def smoke_version(self) -> "Table8Params":
        return dataclasses.replace(super().smoke_version(), other_models=self.other_models[:1])


@dataclass
class Table8Result(StudyResult):
    params: Table8Params
    table8: pd.DataFrame  # per model: zero-shot, fine-tuned, WiSE-FT 0.5 and optimal rows
    gains: pd.DataFrame  # per model (ours and the paper's): FT's ID gain, WiSE-FT 0.5's gains
    published: pd.DataFrame
    beside: Optional[pd.DataFrame]


def _label(model: str, tag: Optional[str]) -> str:
    return f"{model}:{tag}" if tag else model


def gains_table(table8: pd.DataFrame, id_col: str, source: str) -> pd.DataFrame:
    """Per model: fine-tuning's ID gain, and WiSE-FT 0.5's Avg gain over the better endpoint and ID change vs FT."""

    rows = []
    for model, g in table8.groupby("model", sort=False):
        by = {(r["method"], str(r["alpha"])): r for _, r in g.iterrows()}
        zs, ft, mid = by.get(("zero-shot", "0")), by.get(("fine-tuned", "1")), by.get(("wise-ft", "0.5"))
        if zs is None or ft is None or mid is None:
            continue
        rows.append({"source": source, "model": model, "ft_id_gain": ft[id_col] - zs[id_col],
                     "mid_avg_vs_best_endpoint": mid[AVG] - max(zs[AVG], ft[AVG]),
                     "mid_id_vs_ft": mid[id_col] - ft[id_col]})
    return pd.DataFrame(rows)


def run(params: Table8Params, *, progress: bool = True) -> Table8Result:
    """One cached sweep per model; write Table 8, the gains and the comparison with the paper."""

    outputs = StudyOutputs(NAME, params)
    p = outputs.params
    cols = paper_columns(p.id_dataset, p.ood_datasets)
    parts = []
    for model, tag in p.model_entries():
        _, tidy, _, store = run_sweep(outputs, params=dataclasses.replace(p, model=model, pretrained=tag, smoke=False),
                                      progress=progress)
        t = table1(tidy, p.id_dataset, p.ood_datasets)
        t = t[t["row"].isin(list(_METHOD))].copy()
        t.insert(0, "model", _label(model, tag))
        t["method"] = [_METHOD[r][0] for r in t["row"]]
        parts.append(t)
    t8 = pd.concat(parts, ignore_index=True)
    add_table_rows(store, NAME, "table8", t8.assign(label=t8["model"] + " " + t8["row"]), "label", cols,
                   p.model, p.to_dict())
    labels = column_labels(cols)
    shown = t8[["model", "method", "alpha", *cols]]
    outputs.table("table8", shown.rename(columns=labels), csv=t8)
    paper = published("table8")
    outputs.table("published_table8", paper)
    gains = gains_table(t8, p.id_dataset, "ours")
    if set(cols) <= set(paper.columns):
        gains = pd.concat([gains, gains_table(paper, "imagenet", "paper")], ignore_index=True)
    else:  # another setting (the mini): the paper's gains on its own columns
        gains = pd.concat([gains, gains_table(paper.rename(columns={"imagenet": p.id_dataset}), p.id_dataset,
                                              "paper")], ignore_index=True)
    outputs.table("gains", gains, floatfmt=".2f")
    beside = None
    named = {k: v for k, v in p.published_names.items() if k in set(t8["model"])}
    if named and set(cols) <= set(paper.columns):
        ours = t8[t8["model"].isin(list(named))].assign(model=lambda d: d["model"].map(named))
        beside = beside_published(ours[["model", "method", "alpha", *cols]],
                                  paper[paper["model"].isin(list(named.values()))][["model", "method", "alpha", *cols]],
                                  on=["model", "method", "alpha"], diff=True)
        outputs.table("beside_published", beside)
    return Table8Result(p, t8, gains, paper, beside, **outputs.finish())


STUDY = register_study("table8_other_models",
                       "Table 8: the Table 1 rows (end-to-end) for other models",
                       Table8Params, run,
                       covers=[("Table 8", "")])
