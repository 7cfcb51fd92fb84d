"""What Tables 1, 3, 4, 5 and Figures 6, 7, 8, 21 share: one WiSE-FT sweep on an ID set and its shifts.

Their params files name the same model, recipe, seeds, alphas and test images, so the first of them
to run fine-tunes and scores (reusing Figure 1's fine-tunes when the recipe matches) and the others
read every number from the run cache.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple, Optional

import pandas as pd

from wiseft_lib.analysis.shift_tables import AVG, AVG_ID
from wiseft_lib.data.mini import PAPER_ANALOG
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import wiseft_curve
from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.experiment.runs import RunCache, run_key
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.paper import SHIFTS, SHORT_NAMES
from wiseft_lib.studies.base import StudyOutputs, StudyParams, UsesRuns

__all__ = ["ALPHAS_21", "ShiftSweepParams", "Sweep", "run_sweep", "paper_column_map", "column_labels", "add_table_rows"]

ALPHAS_21 = [round(0.05 * i, 2) for i in range(21)]


@dataclass
class ShiftSweepParams(CurveConfig, UsesRuns, StudyParams):
    """A WiSE-FT sweep read the paper's way: optimal alpha on the 0.05 grid, Avg, Avg(r,s), intervals."""

    alphas: list[float] = param(list(ALPHAS_21), "mixing coefficients; the paper's optimal alpha is chosen on the "
                                                 "grid 0, 0.05, ..., 1")
    id_on_shift_classes: dict[str, str] = param({}, "shift -> the ID set restricted to its classes (paper: "
                                                    "imagenet-r: imagenet-val-r, ...), scored at every alpha but "
                                                    "outside the averages; shifts not named use the ID set")

    def __post_init__(self) -> None:
        super().__post_init__()
        stray = [k for k in self.id_on_shift_classes if k not in self.ood_datasets]
        if stray:
            raise ParamsError(f"parameter 'id_on_shift_classes' names {stray}, which are not in ood_datasets "
                              f"{self.ood_datasets}")

    def eval_names(self) -> list[str]:
        names = super().eval_names()
        return names + [d for d in dict.fromkeys(self.id_on_shift_classes.values()) if d not in names]


class Sweep(NamedTuple):
    params: ShiftSweepParams  # the parameters in effect (the smoke version when smoke=True)
    tidy: pd.DataFrame  # wiseft_curve's rows, every seed
    runs: RunCache
    store: ResultsStore


def run_sweep(outputs: StudyOutputs, *, params: Optional[ShiftSweepParams] = None, progress: bool = True) -> Sweep:
    """Every seed's sweep of ``outputs.params`` (cached in ``outputs.runs``), its rows in the study's results store
    (``results.sqlite`` in ``outputs.out``). ``params``: another sweep in the same folder and cache (Table 8's models)."""
    p = outputs.params if params is None else params
    store = ResultsStore(outputs.out / "results.sqlite")
    tidy = pd.concat([wiseft_curve(p, seed, runs=outputs.runs, store=store, study=outputs.study, progress=progress)
                      for seed in p.seeds], ignore_index=True)
    return Sweep(p, tidy, outputs.runs, store)


def paper_column_map(id_dataset: str, shifts: list[str]) -> Optional[dict[str, str]]:
    """Our Table 1 columns -> the published ones: the paper's own datasets map to themselves, the mini sets
    to their analogs (:data:`wiseft_lib.data.mini.PAPER_ANALOG`); None when some set has no counterpart."""

    paper_sets = {"imagenet", *SHIFTS}
    mapping = {}
    for name in [id_dataset, *shifts]:
        target = name if name in paper_sets else PAPER_ANALOG.get(name)
        if target is None:
            return None
        mapping[name] = target
    if sorted(mapping.values()) != sorted(paper_sets) or mapping[id_dataset] != "imagenet":
        return None
    return {**mapping, AVG: AVG, AVG_ID: AVG_ID}


def column_labels(columns: list[str]) -> dict[str, str]:
    """Readable headers: the paper's short names, and a mini set's name with its paper analog."""

    out = {}
    for c in columns:
        if c in SHORT_NAMES:
            out[c] = SHORT_NAMES[c]
        elif c in PAPER_ANALOG:
            out[c] = f"{c.removeprefix('mini-')} (~{SHORT_NAMES[PAPER_ANALOG[c]]})"
    return out


def add_table_rows(store, study: str, table: str, frame: pd.DataFrame, label_col: str, columns: list[str],
                   model: str, params: dict) -> int:
    """A derived table's numbers into the results store: one row per (table row, column), run ``STUDY/TABLE``."""

    config = json.dumps(params, default=str, sort_keys=True)
    run = f"{study}/{table}/{run_key({'params': params})[:10]}"
    rows = []
    for _, r in frame.iterrows():
        alpha = r.get("alpha")
        try:
            alpha = float(alpha)
        except (TypeError, ValueError):
            alpha = None  # "optimal": a different alpha per column
        rows += [{"run": run, "model": model, "method": str(r[label_col]), "alpha": alpha, "dataset": c,
                  "metric": "top1", "value": float(r[c]), "config": config} for c in columns if pd.notna(r[c])]
    return store.add_many(rows)
