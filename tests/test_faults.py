"""Faults, measured: SIGKILL at random points of a fine-tune (and in the middle of checkpoint writes), a study
killed during its sweep, a full disk, four notebooks writing one results store at once.

    .venv/bin/pytest tests/test_faults.py -q -s      # -s prints the fault table

Each fine-tune attempt is a forked child (no interpreter start: a dozen kills cost seconds) training with one
thread, like the uninterrupted reference, so "resumed" and "uninterrupted" are compared bit for bit.
"""
from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from test_finetune import cfg

from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.finetune import finetune, latest_checkpoint
from wiseft_lib.finetune.checkpoint import load_resume_state

from helpers import AugmentedSet, tiny_classifier

ROOT = Path(__file__).resolve().parents[1]
FORK = multiprocessing.get_context("fork")
CONFIG = dict(epochs=8, checkpoint_every=1, keep_checkpoints=2)  # 40 steps, a checkpoint after each


def _train(out: str, die_in_write: str = "") -> None:
    """A child's fine-tune (resuming whatever ``out`` holds). ``die_in_write``: SIGKILL itself half-way through
    the first write of that checkpoint file after the first checkpoint ("model" or "state")."""
    torch.set_num_threads(1)
    if die_in_write:
        import wiseft_lib.core.models as models_module
        import wiseft_lib.finetune.checkpoint as ckpt_module

        calls = {"n": 0}

        def half_then_die(write):
            def wrapped(obj, path, *args, **kwargs):
                calls["n"] += 1
                if calls["n"] >= 2:  # the first checkpoint completes; the second dies in the middle
                    write(obj, path, *args, **kwargs)
                    size = os.path.getsize(path)
                    with open(path, "r+b") as f:
                        f.truncate(size // 2)
                    os.kill(os.getpid(), signal.SIGKILL)
                return write(obj, path, *args, **kwargs)
            return wrapped

        if die_in_write == "state":
            ckpt_module.torch.save = half_then_die(torch.save)
        else:
            models_module.save_file = half_then_die(models_module.save_file)
    finetune(tiny_classifier(), AugmentedSet(), cfg(**CONFIG), output_dir=out, resume=True, progress=False)


def _start(out: Path, die_in_write: str = "") -> multiprocessing.Process:
    p = FORK.Process(target=_train, args=(str(out), die_in_write))
    p.start()
    return p


def _reached(out: Path, step: int) -> bool:
    ckpt = latest_checkpoint(out)
    return ckpt is not None and int(ckpt.name.removeprefix("step_")) >= step


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "finetuned.safetensors"))


def test_sigkill_at_random_points_resumes_bit_for_bit(tmp_path, capsys):
    ref = _start(tmp_path / "ref")
    started = time.perf_counter()
    ref.join(120)
    assert ref.exitcode == 0
    full_seconds = time.perf_counter() - started
    reference = _weights(tmp_path / "ref")

    out = tmp_path / "killed"
    rng = random.Random(0)
    kills, attempts, steps_at_kill = 0, 0, []
    # two kills in the middle of a checkpoint write: the model file, then the training state
    for part in ("model", "state"):
        p = _start(out, die_in_write=part)
        p.join(120)
        attempts += 1
        assert p.exitcode == -signal.SIGKILL
        kills += 1
        ckpt = latest_checkpoint(out)
        assert ckpt is not None and not (out / "finetuned.safetensors").exists()
        # the checkpoint before the interrupted write loads and fits the run
        state = load_resume_state(ckpt, tiny_classifier(), cfg(**CONFIG), 5, torch.device("cpu"))
        assert state["step"] >= 1
        steps_at_kill.append(f"{part} write at step {state['step'] + 1}")
    # then SIGKILL at 10 random points spread over the run: wait for a random step's checkpoint, then a random
    # fraction of a step more (so some kills land inside the next step's checkpoint write)
    step_seconds = full_seconds / 40
    for target in sorted(rng.sample(range(4, 39), 10)):
        p = _start(out)
        attempts += 1
        while p.is_alive() and not _reached(out, target):
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, step_seconds))
        assert p.is_alive(), f"the run finished before the kill at step {target}"
        os.kill(p.pid, signal.SIGKILL)
        p.join(30)
        kills += 1
        steps_at_kill.append(latest_checkpoint(out).name)
    p = _start(out)
    attempts += 1
    p.join(120)
    assert p.exitcode == 0
    resumed = _weights(out)
    assert resumed.keys() == reference.keys()
    identical = all(torch.equal(resumed[k], reference[k]) for k in reference)
    log_steps = [json.loads(ln)["step"] for ln in (out / "log.jsonl").read_text().splitlines() if ln.strip()]
    assert log_steps == sorted(set(log_steps)), "the step log has duplicated or unordered rows"
    with capsys.disabled():
        print(f"\nfault table: uninterrupted run {full_seconds:.2f} s; kills {kills} ({attempts} attempts; 2 inside checkpoint writes), "
              f"resumed bit-for-bit identical: {identical}, checkpoints at the kills: {steps_at_kill}")
    assert kills >= 12
    assert identical


def test_full_disk_during_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    import wiseft_lib.finetune.checkpoint as ckpt_module

    out = tmp_path / "run"
    calls = {"n": 0}
    real_save = torch.save

    def save_until_full(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(ckpt_module.torch, "save", save_until_full)
    with pytest.raises(OSError, match=r"no space left on the device.*step_00000003.*previous checkpoint "
                                      r".*step_00000002 is intact.*resume=True"):
        finetune(tiny_classifier(), AugmentedSet(), cfg(**CONFIG), output_dir=out, resume=True, progress=False)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000001", "step_00000002"]  # no temp left
    monkeypatch.setattr(ckpt_module.torch, "save", real_save)
    resumed = finetune(tiny_classifier(), AugmentedSet(), cfg(**CONFIG), output_dir=out, resume=True,
                       progress=False)
    torch.set_num_threads(torch.get_num_threads())
    assert resumed is not None and (out / "finetuned.safetensors").exists()


def test_full_disk_during_a_results_or_table_write_keeps_what_was_there(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "results.sqlite")
    row = dict(run="r", model="m", method="wiseft", dataset="d", metric="top1", config={})
    store.add_many([{**row, "alpha": a / 10, "value": float(a)} for a in range(5)])
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:  # a real "disk full": cap the file's pages
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    big = [{**row, "alpha": None, "dataset": f"d{i}", "value": 1.0, "config": {"pad": "x" * 4000}} for i in range(200)]
    real_connect = sqlite3.connect

    def capped(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        return conn

    monkeypatch.setattr(sqlite3, "connect", capped)
    with pytest.raises(OSError, match="no space left.*rolled back.*keeps every row"):
        store.add_many(big)
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    assert len(store.to_frame()) == 5  # the earlier rows, none of the failed batch

    from wiseft_lib.core import files as _io

    target = tmp_path / "curve.csv"
    _io.atomic_write_text(target, "old\n")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match="no space left.*curve.csv keeps its previous content"):
        _io.atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------- a study killed during its sweep
STUDY_KILL = textwrap.dedent("""
    import os, signal, sys
    from wiseft_lib.experiment.runs import RunCache
    real, calls = RunCache.add_scores, []
    def add_then_maybe_die(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == {kill_after}:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-sweep: {kill_after} scores are written
    RunCache.add_scores = add_then_maybe_die
    from wiseft_lib.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_a_study_killed_in_its_sweep_continues_and_loses_no_rows(tmp_path):
    from test_launch import SETTINGS, TINY

    from paper_fixture import write_paper_data

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "wiseft-paper-tiny.json").write_text(json.dumps(TINY))
    data = write_paper_data(tmp_path / "data")
    env = {**os.environ, "WISEFT_MODEL_CONFIGS": str(tmp_path / "configs"), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    script = tmp_path / "kill_in_sweep.py"
    script.write_text(STUDY_KILL.format(kill_after=7))

    def study(prog: list[str], where: str) -> subprocess.CompletedProcess:
        sets = [f"data_root={data}", f"output_dir={tmp_path / where / 'out'}", f"runs_dir={tmp_path / where / 'runs'}",
                *SETTINGS]
        return subprocess.run([*prog, "run", "fig1_id_vs_ood", "--params", str(ROOT / "params/paper/fig1_id_vs_ood.yaml"),
                               "--no-progress", *[a for x in sets for a in ("--set", x)]], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)

    killed = study([sys.executable, str(script)], "killed")
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:]
    scores = list((tmp_path / "killed" / "runs" / "finetune").glob("*/scores/*.json"))
    kept = {p.name: json.loads(p.read_text())["scores"] for p in scores}
    assert sum(len(v) for v in kept.values()) == 7  # every score finished before the kill is on disk
    assert not (tmp_path / "killed" / "out" / "curve.csv").exists()

    rerun = study([sys.executable, "-m", "wiseft_lib.cli"], "killed")
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    reference = study([sys.executable, "-m", "wiseft_lib.cli"], "reference")
    assert reference.returncode == 0, reference.stdout[-3000:]
    for name, values in kept.items():  # the finished scores were reused, not recomputed
        path = next(p for p in scores if p.name == name)
        assert {k: json.loads(path.read_text())["scores"][k] for k in values} == values
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "killed" / "out" / "curve.csv"),
                                  pd.read_csv(tmp_path / "reference" / "out" / "curve.csv"))
    rows = ResultsStore(tmp_path / "killed" / "out" / "results.sqlite").to_frame()
    expected = ResultsStore(tmp_path / "reference" / "out" / "results.sqlite").to_frame()
    key = ["run", "model", "method", "alpha", "dataset", "metric"]
    assert len(rows) == len(expected) and not rows.duplicated(key).any()  # no row lost, none twice


# ---------------------------------------------------------------- four notebooks, one results store
WRITER = {
    "cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
         "source": "store_path = ''\nstudy = ''\nrows_per_run = 400\nruns = 3"},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ("from wiseft_lib.experiment.results import ResultsStore\n"
                    "store = ResultsStore(store_path)\n"
                    "for r in range(runs):\n"
                    "    rows = [dict(run=f'{study}/run{r}', model='m', method='wiseft', alpha=i / rows_per_run,\n"
                    "                 dataset='d', metric='top1', value=float(i), config={'study': study})\n"
                    "            for i in range(rows_per_run)]\n"
                    "    store.add_many(rows)  # one run = one transaction, as wiseft_curve writes a mode\n"
                    "    store.add_many(rows)  # a rerun replaces its rows, never duplicates them")},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.mark.slow
def test_four_notebooks_write_one_results_store(tmp_path):
    pytest.importorskip("papermill")
    notebook = tmp_path / "writer.ipynb"
    notebook.write_text(json.dumps(WRITER))
    store_path = tmp_path / "results.sqlite"
    ResultsStore(store_path)  # created once; the writers open it
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    writers = [subprocess.Popen([sys.executable, "-m", "papermill", str(notebook), str(tmp_path / f"out{i}.ipynb"),
                                 "-p", "store_path", str(store_path), "-p", "study", f"study{i}", "-k", "python3",
                                 "--no-progress-bar"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT) for i in range(4)]
    reader, partial, reads = ResultsStore(store_path), [], 0
    while any(w.poll() is None for w in writers):  # a reader meanwhile: every run it sees is whole
        counts = reader.to_frame().groupby("run").size()
        partial += [(run, n) for run, n in counts.items() if n != 400]
        reads += 1
        time.sleep(0.05)
    for w in writers:
        assert w.wait(120) == 0, w.stdout.read().decode()[-3000:]
    rows = reader.to_frame()
    key = ["run", "model", "method", "alpha", "dataset", "metric"]
    print(f"\nconcurrency: 4 writers, rows expected {4 * 3 * 400}, rows found {len(rows)}, "
          f"duplicates {int(rows.duplicated(key).sum())}, reads during writing {reads}, partial runs seen {len(partial)}")
    assert len(rows) == 4 * 3 * 400 and not rows.duplicated(key).any()
    assert set(rows["run"]) == {f"study{i}/run{r}" for i in range(4) for r in range(3)}
    assert not partial, partial[:5]
    assert reads > 0
