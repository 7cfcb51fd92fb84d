"""Running a study on several processes: under ``torchrun``, or launched through it from a notebook.

    torchrun --nproc_per_node 8 -m wiseft_lib.cli run fig1_id_vs_ood --params params/paper/fig1_id_vs_ood.yaml
    # or, from a notebook (one process): params with ``processes: 0`` (one per GPU found) or ``processes: 8``

Under ``torchrun`` every rank runs the whole study: fine-tunes are DDP (:mod:`wiseft_lib.finetune`),
feature extraction and evaluation give each rank a share of the images (:mod:`wiseft_lib.core.sweep`,
:mod:`wiseft_lib.core.features`), and the run cache lets rank 0 alone decide and write
(:mod:`wiseft_lib.experiment.runs`). Ranks other than 0 write their tables and figures into a throwaway folder;
rank 0's are the study's outputs.

A notebook runs on one process. With ``processes`` other than 1, a study's ``run`` first launches
``torchrun`` on itself with the same parameters (it fills the run cache: the fine-tunes and sweeps),
then runs in the notebook's process, where every fine-tune and score is a cache hit and only tables
and figures are made.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import yaml

from wiseft_lib.core.device import barrier_all, cleanup_distributed, setup_distributed
from wiseft_lib.studies.base import resolve_path

__all__ = ["in_torchrun", "processes_to_launch", "distributable", "launch_torchrun"]


def in_torchrun() -> bool:
    """True in a process started by torchrun (or its environment) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def processes_to_launch(processes: int) -> int:
    """How many processes ``processes`` asks for: 0 means one per GPU found (1 without GPUs)."""
    if processes < 0:
        raise ValueError(f"parameter 'processes' must be 0 (one per GPU) or a positive count, got {processes}")
    if processes == 0:
        return max(torch.cuda.device_count(), 1)
    return processes


def launch_torchrun(study: str, params: Any, nproc: int, *, progress: bool = True,
                    extra_args: Optional[list[str]] = None) -> None:
    """Run ``wiseft run STUDY`` with ``params`` under ``torchrun --nproc_per_node nproc`` (this machine).

    The params are written to a temporary YAML file with ``processes: 1``; paths are made absolute.
    Fails with the workers' last output lines if they fail.
    """

    values = params.to_dict()
    values["processes"] = 1
    for key in ("output_dir", "runs_dir"):
        if values.get(key) is not None:
            values[key] = str(_absolute(params, key))
    if values.get("runs_dir") is None and hasattr(params, "runs_path"):
        values["runs_dir"] = str(params.runs_path())
    with tempfile.TemporaryDirectory(prefix="wiseft-launch-") as tmp:
        path = Path(tmp) / f"{study}.yaml"
        path.write_text(yaml.safe_dump(values, sort_keys=False))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "wiseft_lib.cli", "run", study, "--params", str(path), *(extra_args or [])]
        if not progress:
            cmd.append("--no-progress")
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=str(Path.cwd()))
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-40:])
        raise RuntimeError(f"torchrun with {nproc} processes failed (exit {done.returncode}) running {study}; "
                           f"its last lines:\n{tail}")


def _absolute(params: Any, key: str) -> Path:
    return resolve_path(getattr(params, key))


def distributable(study: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a study's ``run(params, *, progress)`` so it runs under torchrun and launches torchrun."""

    def wrap(run: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(run)
        def wrapper(params: Any, *args: Any, progress: bool = True, **kwargs: Any) -> Any:
            if in_torchrun():
                return _run_as_rank(run, params, *args, progress=progress, **kwargs)
            nproc = processes_to_launch(getattr(params, "processes", 1))
            if nproc > 1:  # fill the run cache on nproc processes; below, this process finds it all cached
                launch_torchrun(study, params, nproc, progress=progress)
            return run(params, *args, progress=progress, **kwargs)

        return wrapper

    return wrap


def _run_as_rank(run: Callable[..., Any], params: Any, *args: Any, progress: bool, **kwargs: Any) -> Any:
    """One rank's part: the process group is set up; ranks other than 0 write outputs to a throwaway folder."""

    rank, _, _ = setup_distributed()
    throwaway = None
    if rank != 0:
        throwaway = tempfile.mkdtemp(prefix=f"wiseft-rank{rank}-")
        changes = {"output_dir": throwaway}
        if hasattr(params, "runs_path"):
            changes["runs_dir"] = str(params.runs_path())  # the shared cache, not one beside the throwaway
        params = dataclasses.replace(params, **changes)
    try:
        result = run(params, *args, progress=progress and rank == 0, **kwargs)
        barrier_all()
        return result
    finally:
        if throwaway is not None:
            shutil.rmtree(throwaway, ignore_errors=True)
        cleanup_distributed()
