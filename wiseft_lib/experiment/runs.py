"""The run cache: zero-shot heads, fine-tuned models and their scores, keyed by what made them.

A study asks the cache for the run it needs; a run made before, by this study or another one
(Table 1 after Figure 1), is reused instead of computed again. Keys are hashes of everything
that determines the result: model and weights, data and split, recipe, seed.

    from wiseft_lib.experiment.runs import RunCache
    runs = RunCache("outputs/mini/runs")
    key = runs.key({"model": "wiseft-mini", "recipe": {"lr": 5e-4}, "seed": 0})
    with runs.lock("finetune", key):
        if not runs.has("finetune", key):
            work = runs.work_dir("finetune", key)      # resumable scratch space (checkpoints)
            ...                                        # write the result files into ``work``
            runs.commit("finetune", key, work, record={"seed": 0})
    runs.entry("finetune", key)                        # the finished run's folder

Layout: ``ROOT/<kind>/<key>/`` holds a finished run's files plus ``entry.json`` (what made it).
A run appears there complete or not at all: it is computed in ``ROOT/<kind>/.<key>.partial/``
(where a killed fine-tune leaves checkpoints to resume from) and renamed into place. Scores are
JSON files under ``<entry>/scores/``, one per evaluation set, one value per alpha and metric,
updated atomically as each alpha finishes, so a killed sweep loses at most one alpha.
A lock file per run serialises processes that want the same run at the same time.

Under ``torchrun`` every rank runs the same study code: rank 0 decides what is cached (``has``,
``scores`` and ``memo_many`` broadcast its answer, so all ranks take the same branch and meet in
the same collectives), holds the locks, and alone writes (``commit``, ``add_scores``); ``commit``
waits for every rank before and after the move. The cache folder must be on a filesystem all ranks
see (one machine, or a shared folder for several).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

from wiseft_lib import __version__
from wiseft_lib.core import counters
from wiseft_lib.core.device import barrier_all, broadcast_from_rank0, is_writer
from wiseft_lib.core.files import atomic_write_json, unwritable

__all__ = ["RUN_FORMAT", "RunCache", "run_key", "file_digest", "alpha_key"]

RUN_FORMAT = "wiseft.run/1"  # bump when what a key means changes: old entries are then never reused

try:  # POSIX advisory locks; elsewhere runs are not shared between concurrent processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


def run_key(parts: Mapping[str, Any]) -> str:
    """Hash of the key parts (JSON with sorted keys; floats by repr)."""
    blob = json.dumps({"format": RUN_FORMAT, **parts}, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Union[str, Path]) -> str:
    """SHA-256 of a file's bytes (remembered per path, size and modification time)."""
    path = Path(path).resolve()
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _DIGESTS[memo] = h.hexdigest()
    return _DIGESTS[memo]


def alpha_key(alpha: float) -> str:
    return repr(round(float(alpha), 10) + 0.0)


class RunCache:
    """Finished runs under ``root``; ``root=None`` is a throwaway cache (a temporary folder)."""

    def __init__(self, root: Union[str, Path, None]):
        self._tmp = tempfile.TemporaryDirectory(prefix="wiseft-runs-") if root is None else None
        self.root = Path(self._tmp.name if self._tmp else root)

    def __repr__(self) -> str:
        return f"RunCache({str(self.root)!r})"

    key = staticmethod(run_key)

    # ------------------------------------------------------------ entries
    def entry(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return broadcast_from_rank0((self.entry(kind, key) / "entry.json").is_file())

    def record(self, kind: str, key: str) -> dict[str, Any]:
        """What ``commit`` recorded for a finished run."""
        path = self.entry(kind, key) / "entry.json"
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            record = err
        if not isinstance(record, dict):
            raise ValueError(f"run cache entry {path} is damaged (not a JSON record: {record}); delete the folder "
                             f"{path.parent} and the run is computed again")
        return record

    def work_dir(self, kind: str, key: str) -> Path:
        """Scratch folder for computing a run; what a killed computation left there is kept."""
        path = self.root / kind / f".{key}.partial"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise unwritable(path / "run", err) from None
        return path

    def commit(self, kind: str, key: str, work: Path, record: Mapping[str, Any], *,
               keep: Optional[Sequence[str]] = None) -> Path:
        """Move the finished ``work`` folder into place (only the ``keep`` files, if given)."""

        final = self.entry(kind, key)
        barrier_all()  # every rank has finished with ``work`` (e.g. a DDP fine-tune writing into it)
        if not is_writer():
            barrier_all()  # rank 0 moves it into place
            return final
        if keep is not None:
            for p in work.iterdir():
                if p.name not in keep:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        atomic_write_json(work / "entry.json", {"kind": kind, "key": key, "format": RUN_FORMAT,
                                                "library_version": __version__,
                                                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record})
        if final.exists():  # an unfinished leftover (no entry.json) or a concurrent twin: replace it
            shutil.rmtree(final)
        os.replace(work, final)
        counters.add("runs_computed")
        barrier_all()
        return final

    @contextlib.contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """Hold an exclusive lock on one run (other processes asking for it wait)."""
        if not is_writer():  # under torchrun rank 0 holds the lock for all ranks (which run in step with it)
            yield
            return
        path = self.root / ".locks" / f"{kind}-{key}.lock"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise unwritable(path, err) from None
        with open(path, "a") as fh:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    # ------------------------------------------------------------ scores
    def _scores_path(self, kind: str, key: str, eval_key: str) -> Path:
        return self.entry(kind, key) / "scores" / f"{eval_key}.json"

    def scores(self, kind: str, key: str, eval_key: str) -> dict[str, dict[str, float]]:
        """``{alpha_key: {metric: value}}`` of a run on one evaluation set (empty if none yet)."""
        return broadcast_from_rank0(self._read_scores(self._scores_path(kind, key, eval_key))["scores"])

    @staticmethod
    def _read_scores(path: Path) -> dict[str, Any]:
        """A scores file's content; a damaged one (cut by a full disk, a bad copy) is ignored with a warning."""
        if not path.is_file():
            return {"scores": {}}
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and isinstance(data.get("scores"), dict):
                return data
            why = "not a scores record"
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            why = str(err)
        warnings.warn(f"ignoring unreadable run-cache scores {path} ({why}); recomputing them", stacklevel=3)
        return {"scores": {}}

    def add_scores(self, kind: str, key: str, eval_key: str, alpha: float, metrics: Mapping[str, float],
                   eval_record: Mapping[str, Any]) -> None:
        """Record one alpha's metrics (read-modify-write under the run's lock, written atomically)."""
        if not is_writer():
            return
        path = self._scores_path(kind, key, eval_key)
        with self.lock(kind, f"{key}-scores"):
            data = self._read_scores(path)
            data.setdefault("eval", dict(eval_record))
            data["scores"][alpha_key(alpha)] = {k: float(v) for k, v in metrics.items()}
            atomic_write_json(path, data)
        counters.add("scores_added")

    # ------------------------------------------------------------ small JSON results
    def memo_many(self, kind: str, parts: Sequence[Mapping[str, Any]],
                  compute_missing: Callable[[list[int]], list[Any]]) -> list[Any]:
        """Values for several keys; ``compute_missing(indices)`` computes only those not cached."""
        keys = [run_key({"kind": kind, **p}) for p in parts]
        paths = [self.root / kind / f"{k}.json" for k in keys]
        missing = broadcast_from_rank0([i for i, p in enumerate(paths) if not p.is_file()])
        if missing:
            for i, value in zip(missing, compute_missing(missing)):
                if is_writer():
                    atomic_write_json(paths[i], {"parts": dict(parts[i]), "value": value})
        return broadcast_from_rank0([json.loads(p.read_text())["value"] for p in paths] if is_writer() else None)
