"""Studies: one per paper table or figure (plus the mini pretraining and the workshop tutorial).

Each study is a parameters dataclass and a ``run`` function. The notebook (``notebooks/NAME.ipynb``,
whose ``parameters`` cell is generated from the dataclass), the params files (``params/PRESET/NAME.yaml``)
and ``wiseft run NAME`` all build the same dataclass and call the same function.

    from wiseft_lib.studies import get_study, run_study
    result = run_study("fig1_id_vs_ood", "params/mini/fig1_id_vs_ood.yaml", ["seeds=[0]"])
    python -m wiseft_lib.studies --sync-notebooks     # rewrite the notebooks' parameters cells
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from wiseft_lib.studies.base import StudyParams, resolve_path
from wiseft_lib.studies.fig1_id_vs_ood import Fig1Params
from wiseft_lib.studies.fig1_id_vs_ood import run as run_fig1
from wiseft_lib.studies.fig6_weight_path import Fig6Params
from wiseft_lib.studies.fig10_weight_vs_output_ensembles import Fig10Params
from wiseft_lib.studies.fig10_weight_vs_output_ensembles import run as run_fig10
from wiseft_lib.studies.fig6_weight_path import run as run_fig6
from wiseft_lib.studies.fig3_hyperparameters import Fig3Params
from wiseft_lib.studies.fig3_hyperparameters import run as run_fig3
from wiseft_lib.studies.fig11_12_ema import EmaParams
from wiseft_lib.studies.fig11_12_ema import run as run_ema
from wiseft_lib.studies.fig13_linear_classifier_alternatives import Fig13Params
from wiseft_lib.studies.fig13_linear_classifier_alternatives import run as run_fig13
from wiseft_lib.studies.fig15_augmentation import Fig15Params
from wiseft_lib.studies.fig15_augmentation import run as run_fig15
from wiseft_lib.studies.fig7_8_21_per_shift import PerShiftParams
from wiseft_lib.studies.fig7_8_21_per_shift import run as run_per_shift
from wiseft_lib.studies.pretrain_mini_clip import PretrainParams
from wiseft_lib.studies.pretrain_mini_clip import run as run_pretrain
from wiseft_lib.studies.table1_shifts import Table1Params
from wiseft_lib.studies.table1_shifts import run as run_table1
from wiseft_lib.studies.table8_other_models import Table8Params
from wiseft_lib.studies.table13_output_ensembles import Table13Params
from wiseft_lib.studies.table13_output_ensembles import run as run_table13
from wiseft_lib.studies.table8_other_models import run as run_table8
from wiseft_lib.studies.tutorial import TutorialParams
from wiseft_lib.studies.table2_transfer import Table2Params
from wiseft_lib.studies.table2_transfer import run as run_table2
from wiseft_lib.studies.fig17_19_low_data import LowDataParams
from wiseft_lib.studies.fig17_19_low_data import run as run_low_data
from wiseft_lib.studies.table6_further_shifts import Table6Params
from wiseft_lib.studies.table6_further_shifts import run as run_table6
from wiseft_lib.studies.table7_coop import Table7Params
from wiseft_lib.studies.table7_coop import run as run_table7
from wiseft_lib.studies.fig5_complementarity import ComplementarityParams
from wiseft_lib.studies.fig5_complementarity import run as run_fig5
from wiseft_lib.studies.fig20_model_scale import ScaleParams
from wiseft_lib.studies.fig20_model_scale import run as run_fig20
from wiseft_lib.studies.fig26_objectnet_names import Fig26Params
from wiseft_lib.studies.fig26_objectnet_names import run as run_fig26
from wiseft_lib.studies.custom_dataset import CustomDatasetParams
from wiseft_lib.studies.custom_dataset import run as run_custom_dataset
import argparse

__all__ = ["Study", "STUDIES", "get_study", "list_studies", "run_study", "sync_notebook", "StudyParams"]


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    params: type  # a StudyParams dataclass
    run: Optional[Callable[..., Any]]  # None: the notebook is the study (run it with papermill)

    @property
    def notebook(self) -> Path:
        return resolve_path(Path("notebooks") / f"{self.name}.ipynb")

    def params_file(self, preset: str) -> Path:
        return resolve_path(Path("params") / preset / f"{self.name}.yaml")


STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("00_wiseft_tutorial", "WiSE-FT step by step (workshop tutorial)", TutorialParams, None),
    Study("fig1_id_vs_ood", "Figure 1: ID vs. OOD accuracy, WiSE-FT curves", Fig1Params, run_fig1),
    Study("table1_shifts", "Tables 1, 3, 4, 5: zero-shot, fine-tuned and WiSE-FT per shift, optimal alpha",
          Table1Params, run_table1),
    Study("table8_other_models", "Table 8: the Table 1 rows (end-to-end) for other models", Table8Params,
          run_table8),
    Study("fig6_weight_path", "Figure 6: accuracy along the weight path vs. the endpoints' straight line",
          Fig6Params, run_fig6),
    Study("fig7_8_21_per_shift", "Figures 7, 8, 21: each shift vs. ID accuracy on its classes",
          PerShiftParams, run_per_shift),
    Study("fig10_weight_vs_output_ensembles", "Figure 10: WiSE-FT vs. output-space (logit, probability) ensembles",
          Fig10Params, run_fig10),
    Study("table13_output_ensembles", "Table 13: output-space ensembles of the zero-shot model with independently "
          "trained models", Table13Params, run_table13),
    Study("fig3_hyperparameters", "Figure 3: fine-tuning hyperparameters, optimizers, L2, early stopping vs. WiSE-FT",
          Fig3Params, run_fig3),
    Study("fig11_12_ema", "Figures 11, 12: weight averaging (EMA) during fine-tuning vs. WiSE-FT", EmaParams, run_ema),
    Study("fig13_linear_classifier_alternatives", "Figure 13: linear-classifier alternatives (regularizers, "
          "distillation, L2, init, ensembles, random interpolation) vs. WiSE-FT LC", Fig13Params, run_fig13),
    Study("fig15_augmentation", "Figure 15: Figure 3's rows with stronger augmentation (RandAugment)", Fig15Params,
          run_fig15),
    Study("table2_transfer", "Table 2, Figure 16: WiSE-FT on downstream tasks (ID accuracy, alpha curves)",
          Table2Params, run_table2),
    Study("fig17_19_low_data", "Figures 17-19: WiSE-FT of linear classifiers trained on k examples per class",
          LowDataParams, run_low_data),
    Study("table6_further_shifts", "Table 6, Figure 9: further shifts with their own metrics (pm-0/pm-10, top-1, "
          "worst-region accuracy, macro-F1)", Table6Params, run_table6),
    Study("table7_coop", "Table 7: CoOp (learned prompts) vs WiSE-FT on the same few shots", Table7Params,
          run_table7),
    Study("fig5_complementarity", "Figures 5, 27-30: how complementary the zero-shot model and the linear "
          "classifier are (diversity, overrides, margins)", ComplementarityParams, run_fig5),
    Study("fig20_model_scale", "Figure 20: WiSE-FT's gains against pretraining compute", ScaleParams, run_fig20),
    Study("fig26_objectnet_names", "Figure 26: ObjectNet with ImageNet vs ObjectNet class names (paper preset only)",
          Fig26Params, run_fig26),
    Study("pretrain_mini_clip", "The wiseft-mini CLIP's pretraining (the embedded default's zero-shot model)",
          PretrainParams, run_pretrain),
    Study("custom_dataset", "Your own data: WiSE-FT on an image folder, exported as an open_clip checkpoint",
          CustomDatasetParams, run_custom_dataset),
)}


def list_studies() -> list[str]:
    return list(STUDIES)


def get_study(name: str) -> Study:
    if name not in STUDIES:
        close = difflib.get_close_matches(name, list(STUDIES), n=3, cutoff=0.75)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown study {name!r}.{hint} Studies: {', '.join(STUDIES)}")
    return STUDIES[name]


def run_study(name: str, params_file: Optional[str] = None, overrides: Sequence[str] = (), *,
              progress: bool = True) -> Any:
    """Build the study's parameters from a params file and ``KEY=VALUE`` overrides, then run it."""
    study = get_study(name)
    params = study.params.from_yaml(params_file, overrides)
    if study.run is None:
        return _run_notebook(study, params)
    return study.run(params, progress=progress)


def _run_notebook(study: Study, params: StudyParams) -> Path:
    """Execute a notebook-only study with papermill into its output folder."""
    import papermill  # the [studies] extra

    out = params.output_path()
    executed = out / f"{study.name}.ipynb"
    papermill.execute_notebook(str(study.notebook), str(executed), parameters=params.to_dict(),
                               kernel_name="python3", progress_bar=False)
    return executed


def sync_notebook(study: Study) -> bool:
    """Rewrite the notebook's ``parameters`` cell from the dataclass; True if it changed."""
    import nbformat  # the [studies] extra

    nb = nbformat.read(study.notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    text = study.params.parameters_cell()
    if cell.source == text:
        return False
    cell.source = text
    nbformat.write(nb, study.notebook)
    return True


def main(argv: Optional[Sequence[str]] = None) -> int:

    p = argparse.ArgumentParser(prog="python -m wiseft_lib.studies", description=__doc__.splitlines()[0])
    p.add_argument("--sync-notebooks", action="store_true", help="regenerate every notebook's parameters cell")
    a = p.parse_args(argv)
    for study in STUDIES.values():
        if a.sync_notebooks and study.notebook.exists():
            print(f"{study.notebook}: {'rewritten' if sync_notebook(study) else 'up to date'}")
        elif not a.sync_notebooks:
            print(f"{study.name:24s} {study.title}")
    return 0
