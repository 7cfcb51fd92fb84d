"""Results store: replace-not-duplicate, NULL alpha keys, foreign files, concurrent writers."""
from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

from wiseft_lib.experiment.results import ResultsStore

BASE = dict(run="r0", model="wiseft-mini", method="wise-ft", dataset="mini-photo", metric="top1")


def test_rerun_replaces_instead_of_duplicating(tmp_path):
    store = ResultsStore(tmp_path / "sub" / "results.sqlite")
    store.add(**BASE, alpha=0.5, value=70.0, config={"lr": 1e-5})
    store.add(**BASE, alpha=0.5, value=71.5, config={"lr": 3e-5})
    store.add(**BASE, alpha=0.1 + 0.05, value=60.0)
    store.add(**BASE, alpha=0.15, value=61.0)        # same key as 0.1 + 0.05
    store.add(**{**BASE, "metric": "macro_f1"}, alpha=0.5, value=40.0)
    df = store.to_frame()
    assert len(df) == len(store) == 3
    row = df[(df.alpha == 0.5) & (df.metric == "top1")].iloc[0]
    assert row.value == 71.5 and row.config == '{"lr": 3e-05}'
    assert df[df.alpha == 0.15].value.tolist() == [61.0]
    assert list(df.columns) == ["run", "model", "method", "alpha", "dataset", "metric", "value",
                                "config", "timestamp"]
    # reopening sees the same rows; a frame round-trips through add_many
    again = ResultsStore(store.path)
    assert again.add_many(again.to_frame()) == 3 and len(again) == 3


def test_null_alpha_is_a_key_that_replaces(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    std = {**BASE, "method": "standard"}
    store.add(**std, alpha=None, value=50.0)
    store.add(**std, alpha=None, value=52.0)
    store.add_many([{**std, "alpha": float("nan"), "value": 53.0},   # pandas' missing alpha
                    {**std, "alpha": 0.0, "value": 10.0}])
    df = store.to_frame(method="standard")
    assert len(df) == 2
    assert df[df.alpha.isna()].value.tolist() == [53.0]
    assert store.to_frame(alpha=None).value.tolist() == [53.0]
    assert store.to_frame(alpha=[0.0, None]).shape[0] == 2
    assert store.to_frame(method="nope").empty


def test_bad_rows_and_filters_are_rejected_before_writing(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match="'dataset' must be a non-empty string"):
        store.add_many([{**BASE, "alpha": 0.5, "value": 1.0}, {**BASE, "dataset": "", "value": 2.0}])
    assert len(store) == 0
    with pytest.raises(ValueError, match="unknown result field"):
        store.add_many([{**BASE, "value": 1.0, "seed": 3}])
    with pytest.raises(ValueError, match="cannot filter on 'seed'"):
        store.to_frame(seed=1)


def test_foreign_files_are_refused(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="not a SQLite file"):
        ResultsStore(junk)
    assert junk.read_bytes()[:4] == b"\x89PNG"

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE results (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="another application.*tables/indexes: results"):
        ResultsStore(other)
    conn = sqlite3.connect(other)
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    conn.close()
    assert names == ["results"]  # nothing was added to someone else's database

    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\xff" * 300)
    with pytest.raises(ValueError, match="SQLite cannot read it"):
        ResultsStore(corrupt)
    with pytest.raises(ValueError, match="is a folder"):
        ResultsStore(tmp_path)


def test_new_store_uses_wal(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def _writer(path: str, worker: int, n: int, barrier) -> None:
    store = ResultsStore(path)
    barrier.wait()
    for i in range(n):
        store.add(run=f"w{worker}", model="m", method="wise-ft", alpha=i / n, dataset="d",
                  metric="top1", value=float(i), config={"worker": worker})


def test_two_concurrent_writer_processes_keep_every_row(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(path, w, 200, barrier)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    df = ResultsStore(path).to_frame()
    assert len(df) == 400
    assert df.groupby("run").size().to_dict() == {"w0": 200, "w1": 200}
    assert sorted(df[df.run == "w1"].value) == [float(i) for i in range(200)]
