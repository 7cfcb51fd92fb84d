"""Fingerprint a `reproduce` outputs folder: every CSV's bytes and every run-cache key, to compare two runs.

    python -m wiseft_lib.reproduce --preset mini --smoke --outputs /tmp/before   # on the old code
    python scripts/snapshot_outputs.py /tmp/before > before.json
    ...                                                                           # and the new code
    python scripts/snapshot_outputs.py /tmp/after > after.json
    python scripts/snapshot_outputs.py --compare before.json after.json

Used for issue 24's restructuring (behaviour unchanged: identical CSVs, identical run keys).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def snapshot(root: Path) -> dict:
    csvs = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.csv")) if "runs" not in p.relative_to(root).parts[:1]}
    keys = {}
    for entry in sorted((root / "runs").glob("*/*")):
        if entry.is_dir() and not entry.name.startswith("."):
            scores = sorted(p.name for p in (entry / "scores").glob("*.json")) if (entry / "scores").is_dir() else []
            keys[f"{entry.parent.name}/{entry.name}"] = scores
    return {"csv": csvs, "run_keys": keys}


def compare(a: dict, b: dict) -> int:
    bad = 0
    for part in ("csv", "run_keys"):
        same = [k for k in a[part] if k in b[part] and a[part][k] == b[part][k]]
        differ = [k for k in a[part] if k in b[part] and a[part][k] != b[part][k]]
        only_a = sorted(set(a[part]) - set(b[part]))
        only_b = sorted(set(b[part]) - set(a[part]))
        print(f"{part}: {len(same)} identical, {len(differ)} differing, {len(only_a)} only before, "
              f"{len(only_b)} only after")
        for k in differ + only_a + only_b:
            print("   ", k)
        bad += len(differ) + len(only_a) + len(only_b)
    return bad


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        load = lambda p: json.loads(Path(p).read_text())  # noqa: E731
        sys.exit(1 if compare(load(sys.argv[2]), load(sys.argv[3])) else 0)
    print(json.dumps(snapshot(Path(sys.argv[1])), indent=1, sort_keys=True))
