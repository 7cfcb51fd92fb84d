"""Results store: one SQLite file per outputs folder, one row per result key, tidy frames out.

    from wiseft_lib.experiment.results import ResultsStore

    store = ResultsStore("outputs/mini/results.sqlite")
    store.add(run="e2e-seed0", model="wiseft-mini", method="wise-ft", alpha=0.5,
              dataset="mini-photo", metric="top1", value=81.2, config={"lr": 3e-5})
    df = store.to_frame(method="wise-ft")       # pandas DataFrame, one row per key

A row's key is ``(run, model, method, alpha, dataset, metric)``; adding a key again replaces
its value, config and timestamp (never a duplicate). ``alpha=None`` (e.g. a standard model,
not an interpolation) is a key value like any other. Alphas are keyed after rounding to 10
decimals, so ``0.1 + 0.05`` and ``0.15`` are the same key.

Several processes may write at once: the file is in WAL mode, every write is one
``BEGIN IMMEDIATE`` transaction, and "database is locked" is waited out (``timeout``
seconds). The store refuses files that are not its own (other files, other SQLite
databases) rather than adding tables to them; its files carry ``PRAGMA application_id``.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union

import pandas as pd

from wiseft_lib.core.files import disk_full_error, unwritable

if TYPE_CHECKING:  # pandas is imported lazily: writers in worker processes don't need it
    import pandas as pd

__all__ = ["ResultsStore", "KEY_COLUMNS", "COLUMNS"]

APPLICATION_ID = 0x57495346  # "WISF": marks a wiseft results database
SCHEMA_VERSION = 1
FORMAT = "wiseft.results/1"
SQLITE_HEADER = b"SQLite format 3\x00"
KEY_COLUMNS = ("run", "model", "method", "alpha", "dataset", "metric")
COLUMNS = KEY_COLUMNS + ("value", "config", "timestamp")
_TEXT_KEYS = ("run", "model", "method", "dataset", "metric")
_NO_ALPHA = "none"

_SCHEMA = (
    """CREATE TABLE results (
        run TEXT NOT NULL,
        model TEXT NOT NULL,
        method TEXT NOT NULL,
        alpha REAL,
        alpha_key TEXT NOT NULL,
        dataset TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL,
        config TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        UNIQUE (run, model, method, alpha_key, dataset, metric)
    )""",
    "CREATE TABLE wiseft_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"INSERT INTO wiseft_meta VALUES ('format', '{FORMAT}')",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

_UPSERT = """
INSERT INTO results (run, model, method, alpha, alpha_key, dataset, metric, value, config, timestamp)
VALUES (:run, :model, :method, :alpha, :alpha_key, :dataset, :metric, :value, :config, :timestamp)
ON CONFLICT (run, model, method, alpha_key, dataset, metric)
DO UPDATE SET alpha = excluded.alpha, value = excluded.value, config = excluded.config,
              timestamp = excluded.timestamp
"""

T = TypeVar("T")


def _alpha_key(alpha: Optional[float]) -> str:
    return _NO_ALPHA if alpha is None else repr(round(alpha, 10) + 0.0)


def _clean_alpha(alpha: Any) -> Optional[float]:
    if alpha is None:
        return None
    if isinstance(alpha, (bool, str)):
        raise ValueError(f"alpha must be a number or None, got {alpha!r}")
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number or None, got {alpha!r}") from None
    if math.isnan(a):
        return None  # pandas writes a missing alpha as NaN
    if math.isinf(a):
        raise ValueError(f"alpha must be finite or None, got {alpha!r}")
    return round(a, 10) + 0.0


def _clean_row(row: Mapping[str, Any], now: str) -> dict[str, Any]:
    extra = set(row) - set(COLUMNS) - {"alpha_key"}
    if extra:
        raise ValueError(f"unknown result field(s) {sorted(extra)}; fields are {list(COLUMNS)}")
    out: dict[str, Any] = {}
    for col in _TEXT_KEYS:
        v = row.get(col)
        if not isinstance(v, str) or not v:
            raise ValueError(f"result field {col!r} must be a non-empty string, got {v!r}")
        out[col] = v
    out["alpha"] = _clean_alpha(row.get("alpha"))
    out["alpha_key"] = _alpha_key(out["alpha"])
    value = row.get("value")
    if value is None:
        raise ValueError(f"result {out} has no value; pass value=<float>")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"result value must be a number, got {value!r}") from None
    out["value"] = None if math.isnan(v) else v  # SQLite stores NaN as NULL anyway
    config = row.get("config")
    if isinstance(config, str):
        try:
            json.loads(config)
        except json.JSONDecodeError:
            raise ValueError(f"config given as a string must be JSON text, got {config[:80]!r}") from None
        out["config"] = config
    else:
        out["config"] = json.dumps({} if config is None else config, sort_keys=True, default=str)
    out["timestamp"] = now
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _is_busy(err: sqlite3.OperationalError) -> bool:
    msg = str(err).lower()
    return "locked" in msg or "busy" in msg


class ResultsStore:
    """A results SQLite file; creates it (and its folder) if missing.

    ``timeout`` is how long, in seconds, a write waits for other writers before failing.
    """

    def __init__(self, path: Union[str, Path], *, timeout: float = 60.0):
        self.path = Path(path)
        self.timeout = float(timeout)
        self._open_or_create()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    # -- connections -----------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        finally:
            conn.close()

    def _retry(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, retrying while the database is locked, up to ``timeout`` seconds."""
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as err:
                if not _is_busy(err):
                    raise
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"results database {self.path} stayed locked for {self.timeout:.0f} s "
                        f"({err}); another process holds a long write. Retry, or pass a larger "
                        f"timeout to ResultsStore."
                    ) from err
                time.sleep(delay * (1.0 + random.random()))
                delay = min(delay * 2.0, 0.5)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction, with retries."""

        def attempt() -> T:
            with self._connect() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

        try:
            return self._retry(attempt)
        except sqlite3.OperationalError as err:
            if "disk is full" in str(err) or "disk I/O error" in str(err):
                raise disk_full_error(self.path, "the write was rolled back: the store keeps every row written "
                                                 "before") from None
            raise

    # -- creation and validation ---------------------------------------------------------

    def _not_ours(self, what: str) -> ValueError:
        return ValueError(
            f"{self.path} is not a wiseft results database: {what}. Refusing to modify it. "
            f"Pass a path to a new file (it will be created) or to an existing results file "
            f"written by wiseft_lib.experiment.results.ResultsStore."
        )

    def _open_or_create(self) -> None:
        if self.path.is_dir():
            raise ValueError(f"{self.path} is a folder; pass a file path such as {self.path / 'results.sqlite'}")
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as fh:
                head = fh.read(len(SQLITE_HEADER))
            if head != SQLITE_HEADER:
                raise self._not_ours(f"it is not a SQLite file (it starts with {head[:16]!r})")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise unwritable(self.path, err) from None

        def init(conn: sqlite3.Connection) -> None:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            objects = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")]
            if app_id == APPLICATION_ID:
                if version > SCHEMA_VERSION:
                    raise ValueError(
                        f"{self.path} is a results database of schema version {version}, newer "
                        f"than this wiseft ({SCHEMA_VERSION}); upgrade wiseft to read it"
                    )
                fmt = conn.execute("SELECT value FROM wiseft_meta WHERE key = 'format'").fetchone()
                if version != SCHEMA_VERSION or fmt is None or fmt[0] != FORMAT:
                    raise self._not_ours(f"its schema marker is unexpected (user_version={version}, "
                                         f"format={fmt and fmt[0]!r})")
                return
            if app_id != 0 or objects or version != 0:
                shown = ", ".join(objects[:8]) or "none"
                raise self._not_ours(
                    f"it is a SQLite database of another application (application_id={app_id}, "
                    f"user_version={version}, tables/indexes: {shown})")
            for stmt in _SCHEMA:  # one transaction: a crash leaves an empty file, never half a schema
                conn.execute(stmt)

        try:
            self._write(init)
            self._retry(self._enable_wal)
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) and _is_busy(err):
                raise
            raise self._not_ours(f"SQLite cannot read it ({err})") from err

    def _enable_wal(self) -> None:
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode = WAL")  # persistent; a no-op once set

    # -- writing -----------------------------------------------------------------------

    def add(self, *, run: str, model: str, method: str, alpha: Optional[float], dataset: str,
            metric: str, value: float, config: Any = None) -> None:
        """Insert one result, replacing any row with the same key."""
        self.add_many([dict(run=run, model=model, method=method, alpha=alpha, dataset=dataset,
                            metric=metric, value=value, config=config)])

    def add_many(self, rows: Union[Iterable[Mapping[str, Any]], "pd.DataFrame"]) -> int:
        """Insert many results (mappings, or a DataFrame's rows) in one transaction.

        Every row is validated before anything is written; returns the number of rows.
        """
        if hasattr(rows, "to_dict"):
            rows = rows.to_dict("records")  # type: ignore[union-attr]
        now = _now()
        clean = [_clean_row(r, now) for r in rows]
        if clean:
            self._write(lambda conn: conn.executemany(_UPSERT, clean))
        return len(clean)

    # -- reading -----------------------------------------------------------------------

    def _where(self, filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for col, want in filters.items():
            if col not in COLUMNS:
                raise ValueError(f"cannot filter on {col!r}; filter columns are {list(COLUMNS)}")
            target = "alpha_key" if col == "alpha" else col
            values = list(want) if isinstance(want, (list, tuple, set, frozenset)) else [want]
            if col == "alpha":
                values = [_alpha_key(_clean_alpha(v)) for v in values]
            nulls = [v for v in values if v is None]
            values = [v for v in values if v is not None]
            parts = []
            if values:
                parts.append(f"{target} IN ({', '.join('?' * len(values))})")
                params.extend(values)
            if nulls:
                parts.append(f"{target} IS NULL")
            clauses.append("(" + " OR ".join(parts or ["0"]) + ")")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def to_frame(self, **filters: Any) -> "pd.DataFrame":
        """Tidy DataFrame, one row per key, filtered by column equality.

        A filter value may be a list (any of). ``alpha=None`` selects rows without an alpha.
        Columns: run, model, method, alpha (NaN = none), dataset, metric, value, config (JSON
        text), timestamp (UTC ISO 8601).
        """

        where, params = self._where(filters)
        sql = (f"SELECT {', '.join(COLUMNS)} FROM results{where} "
               f"ORDER BY run, model, method, alpha IS NOT NULL, alpha, dataset, metric")

        def read() -> list[tuple]:
            with self._connect() as conn:
                return conn.execute(sql, params).fetchall()

        df = pd.DataFrame(self._retry(read), columns=list(COLUMNS))
        df["alpha"] = df["alpha"].astype(float)
        df["value"] = df["value"].astype(float)
        return df

    def __len__(self) -> int:
        def count() -> int:
            with self._connect() as conn:
                return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

        return self._retry(count)
