"""Studies: one per paper table or figure (plus the mini pretraining and the workshop tutorial).

Each study is a module here with a parameters dataclass and a ``run`` function, registered once at the
module's end (:func:`~wiseft_lib.studies.base.register_study`: name, title, params, run, the paper items it
covers). The notebook (``notebooks/NAME.ipynb``, whose ``parameters`` cell is generated from the dataclass),
the params files (``params/PRESET/NAME.yaml``) and ``wiseft run NAME`` all build the same dataclass and call
the same function; ``make reproduce`` and its index's coverage table read the registration.

    from wiseft_lib.studies import get_study, run_study
    result = run_study("fig1_id_vs_ood", "params/mini/fig1_id_vs_ood.yaml", ["seeds=[0]"])
    python -m wiseft_lib.studies --sync-notebooks     # rewrite the notebooks' parameters cells
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import pkgutil
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from wiseft_lib.progress import progress_env
from wiseft_lib.studies.base import (
    Study,
    StudyParams,
    quiet_papermill_about_hidden_parameters,
    register_study,
    registered_studies,
)

__all__ = ["Study", "STUDIES", "get_study", "list_studies", "run_study", "sync_notebook", "StudyParams",
           "register_study"]


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _discover() -> dict[str, Study]:
    """Import every module of this package; each study module registers itself (``STUDY = register_study(...)``)."""
    for module in pkgutil.iter_modules(__path__):
        if module.name != "__main__":
            importlib.import_module(f"{__name__}.{module.name}")
    return {name: study for name, study in sorted(registered_studies().items(), key=lambda kv: _natural(kv[0]))}


STUDIES: dict[str, Study] = _discover()


def list_studies() -> list[str]:
    return list(STUDIES)


def get_study(name: str) -> Study:
    if name not in STUDIES:
        close = difflib.get_close_matches(name, list(STUDIES), n=3, cutoff=0.75)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown study {name!r}.{hint} Studies: {', '.join(STUDIES)}")
    return STUDIES[name]


def run_study(name: str, params_file: Optional[str] = None, overrides: Sequence[str] = (), *,
              progress: bool = True, notebook: bool = False) -> Any:
    """Build the study's parameters from a params file and ``KEY=VALUE`` overrides, then run it: its ``run``
    function (returns its result), or with ``notebook`` (and for notebook-only studies) its notebook through
    papermill (returns the executed notebook's path; ``progress`` streams the notebook's output)."""
    study = get_study(name)
    params = study.params.from_yaml(params_file, overrides)
    if notebook or study.run is None:
        return _run_notebook(study, params, log_output=progress and notebook)
    return study.run(params, progress=progress)


def _run_notebook(study: Study, params: StudyParams, *, log_output: bool = False) -> Path:
    """Execute the study's notebook with papermill into its output folder, with every parameter of ``params``."""
    import papermill  # the [studies] extra

    quiet_papermill_about_hidden_parameters()
    log = logging.getLogger("papermill")
    if log_output and not log.handlers and not logging.getLogger().handlers:  # show the notebook's output
        log.addHandler(logging.StreamHandler())
        log.setLevel(logging.INFO)
    out = params.output_path()
    executed = out / f"{study.name}.ipynb"
    with progress_env(log_output):  # the kernel's bars: in the streamed output when asked, else none
        papermill.execute_notebook(str(study.notebook), str(executed), parameters=params.to_dict(),
                                   kernel_name="python3", progress_bar=False, log_output=log_output,
                                   cwd=str(study.notebook.parent.parent))
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
