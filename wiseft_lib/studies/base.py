"""What every study shares: the parameters every notebook takes, the run cache, the outputs record."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from wiseft_lib.params import Params, ParamsError, param
from wiseft_lib import __version__
from wiseft_lib.core.files import atomic_write_json

__all__ = ["StudyParams", "UsesRuns", "Launches", "resolve_path", "write_study_record"]


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

    processes: int = param(1, "processes for fine-tunes and sweeps: 1 (this one), N (torchrun on N, one per GPU), "
                              "0 (one per GPU found)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.processes < 0:
            raise ParamsError(f"parameter 'processes' must be 0 (one per GPU found) or a positive count, "
                              f"got {self.processes}")
