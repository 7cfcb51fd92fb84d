"""What every study shares: its registration, the parameters every notebook takes, and the frame of one run.

A study module declares itself once, at its end::

    STUDY = register_study("fig6_weight_path", "Figure 6: accuracy along the weight path ...", Fig6Params, run,
                           covers=[("Figure 6", "")])

and its ``run`` writes through a :class:`StudyOutputs`, which times the run, makes the output folder, opens
the run cache, writes tables, CSVs and figures (remembering their paths) and ends with ``study.json``::

    def run(params: Fig6Params, *, progress: bool = True) -> Fig6Result:
        outputs = StudyOutputs(NAME, params)            # params.smoke: outputs.params is the smoke version
        ...
        outputs.table("path_summary", summary, floatfmt=".2f")
        outputs.figure("figure", figure, NAME)
        return Fig6Result(outputs.params, path, summary, figure, **outputs.finish())
"""
from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Sequence

import pandas as pd

from wiseft_lib import __version__
from wiseft_lib.analysis.claim_noise import with_test_noise
from wiseft_lib.core import counters
from wiseft_lib.core.files import atomic_write_json, atomic_write_text
from wiseft_lib.experiment.runs import RunCache
from wiseft_lib.params import Params, ParamsError, param
from wiseft_lib.report.plots import save_figure
from wiseft_lib.report.tables import write_table

__all__ = ["Study", "register_study", "registered_studies", "quiet_papermill_about_hidden_parameters", "StudyParams", "UsesRuns", "Launches", "StudyOutputs",
           "StudyResult", "resolve_path", "write_study_record"]


@dataclass(frozen=True)
class Study:
    """A registered study: its name (= its notebook's and params files' name), title, parameters dataclass,
    ``run`` function (None: the notebook is the study) and the paper items it covers, each with a note."""

    name: str
    title: str
    params: type  # a StudyParams dataclass
    run: Optional[Callable[..., Any]]
    covers: tuple[tuple[str, str], ...] = ()  # (paper item, note), e.g. ("Table 2, Figure 16", "mini: ...")

    @property
    def notebook(self) -> Path:
        return resolve_path(Path("notebooks") / f"{self.name}.ipynb")

    def params_file(self, preset: str) -> Path:
        return resolve_path(Path("params") / preset / f"{self.name}.yaml")


_STUDIES: dict[str, Study] = {}


class _HiddenParameters(logging.Filter):
    """Drops papermill's "Passed unknown parameter" warning: papermill calls every parameter the notebook's
    ``parameters`` cell does not show unknown, and the short cells show only what a user changes. The notebook
    checks every name itself (``Params.from_notebook``): a misspelt parameter still stops the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passed unknown parameter")


def quiet_papermill_about_hidden_parameters() -> None:
    """Install :class:`_HiddenParameters` on papermill's logger (once)."""
    log = logging.getLogger("papermill")
    if not any(isinstance(f, _HiddenParameters) for f in log.filters):
        log.addFilter(_HiddenParameters())


def register_study(name: str, title: str, params: type, run: Optional[Callable[..., Any]],
                   covers: Sequence[tuple[str, str]] = ()) -> Study:
    """Register a study (once, in its module); ``wiseft run``, ``make reproduce`` and the index read it here."""
    if name in _STUDIES and _STUDIES[name].params is not params:
        raise ValueError(f"study {name!r} is registered twice")
    study = Study(name, title, params, run, tuple((item, note) for item, note in covers))
    _STUDIES[name] = study
    return study


def registered_studies() -> dict[str, Study]:
    """The registered studies (those of the modules imported so far; :mod:`wiseft_lib.studies` imports all)."""
    return dict(_STUDIES)


def resolve_path(path: str | Path) -> Path:
    """A relative path is taken from the project root (the folder with pyproject.toml) when there is one."""
    path = Path(path)
    if path.is_absolute():
        return path
    here = Path.cwd()
    root = next((p for p in [here, *here.parents] if (p / "pyproject.toml").exists()), here)
    return root / path


@dataclass
class StudyParams(Params):
    """The parameters every study notebook takes."""

    NOTEBOOK_FIELDS: ClassVar[tuple[str, ...]] = ("output_dir", "smoke", "seeds")

    output_dir: str = param("outputs/study", "where results, tables and figures go")
    smoke: bool = param(False, "a tiny, seconds-long run (tests and CI)")
    seeds: list[int] = param([0], "one run per seed; tables and figures show their mean")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ParamsError(f"parameter 'seeds' must be a non-empty list of distinct integers, got {self.seeds}")

    def output_path(self) -> Path:
        path = resolve_path(self.output_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ParamsError(f"parameter 'output_dir': cannot create {path} ({err.strerror}); choose a folder "
                              f"you can write to") from None
        return path


@dataclass
class UsesRuns(Params):
    """Studies that fine-tune or pretrain keep their runs in a cache other studies reuse."""

    runs_dir: Optional[str] = param(None, "run cache shared by a preset's studies (None: runs/ beside output_dir)")

    def runs_path(self) -> Path:
        if self.runs_dir is not None:
            return resolve_path(self.runs_dir)
        return self.output_path().parent / "runs"  # type: ignore[attr-defined]


def write_study_record(out: Path, study: str, params: Params, started: float, **extra: Any) -> Path:
    """``study.json`` in the output folder: the study, its parameters, runtime and library version."""

    record = {"study": study, "library_version": __version__, "seconds": round(time.time() - started, 1),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "params": params.to_dict(), **extra}
    return atomic_write_json(out / "study.json", json.loads(json.dumps(record, default=str)))


@dataclass
class Launches(Params):
    """Studies that can put their fine-tunes and sweeps on several processes (see :mod:`wiseft_lib.studies.launch`)."""

    NOTEBOOK_FIELDS: ClassVar[tuple[str, ...]] = ("processes",)

    processes: int = param(1, "processes for fine-tunes and sweeps: 1 (this one), N (torchrun on N, one per GPU), "
                              "0 (one per GPU found)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.processes < 0:
            raise ParamsError(f"parameter 'processes' must be 0 (one per GPU found) or a positive count, "
                              f"got {self.processes}")


@dataclass(kw_only=True)
class StudyResult:
    """What every study's result ends with: the files it wrote (by role) and its runtime."""

    paths: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


class StudyOutputs:
    """One run of a study: the parameters it runs with (the smoke version when ``smoke``), its output folder,
    its run cache, the files it writes (``paths``, by role) and, at the end, ``study.json``."""

    def __init__(self, study: str, params: Params):
        self.study, self.given, self.started = study, params, time.time()
        self.counted = counters.snapshot()
        smoke = getattr(params, "smoke", False) and hasattr(params, "smoke_version")
        self.params = params.smoke_version() if smoke else params
        self.out = self.params.output_path()
        self.paths: dict[str, Path] = {}

    @functools.cached_property
    def runs(self) -> RunCache:
        """The preset's run cache (``runs_dir``, default ``runs/`` beside the output folder)."""
        return RunCache(self.params.runs_path())

    def csv(self, role: str, frame: pd.DataFrame, stem: Optional[str] = None) -> Path:
        """``frame`` as ``STEM.csv`` (default stem: the role), without its index."""
        path = atomic_write_text(self.out / f"{stem or role}.csv", frame.to_csv(index=False))
        self.paths[role] = path
        return path

    def table(self, role: str, frame: pd.DataFrame, stem: Optional[str] = None, **fmt: Any) -> Path:
        """``frame`` as ``STEM.csv``, ``.md`` and ``.tex`` (:func:`~wiseft_lib.report.tables.write_table`)."""
        path = write_table(frame, self.out / (stem or role), **fmt)["csv"]
        self.paths[role] = path
        return path

    def claims(self, frame: pd.DataFrame, n_images: Optional[int], **fmt: Any) -> pd.DataFrame:
        """The claims table with how much the test sample can move each value (``noise_pp``, ``within_noise``:
        :mod:`~wiseft_lib.analysis.claim_noise`; ``n_images`` per set), written as ``claims.*``."""
        frame = with_test_noise(frame, n_images)
        self.table("claims", frame, **fmt)
        return frame

    def figure(self, role: str, figure: Any, stem: str, **kwargs: Any) -> list[Path]:
        """``figure`` as ``STEM.png`` and ``.pdf``, remembered as ``ROLE_png``, ``ROLE_pdf``."""
        files = save_figure(figure, self.out / stem, **kwargs)
        self.paths.update({f"{role}_{f.suffix[1:]}": f for f in files})
        return files

    def finish(self, **record: Any) -> dict[str, Any]:
        """Write ``study.json`` (the given parameters, runtime, the work this run did (:mod:`~wiseft_lib.core.counters`),
        ``record``); the result's ``paths`` and ``seconds``."""
        self.paths["record"] = write_study_record(self.out, self.study, self.given, self.started,
                                                  work=counters.since(self.counted), **record)
        return {"paths": self.paths, "seconds": round(time.time() - self.started, 1)}
