"""Helpers the parameterized notebooks share: parameter checks, smoke settings, paths.

papermill only warns about a parameter the notebook does not declare; a typo would then
silently run the defaults. Every notebook therefore ends its ``parameters`` cell with
``_declared = set(globals())`` and calls :func:`reject_unknown_parameters` next.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable, Mapping

IGNORED = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def reject_unknown_parameters(namespace: Mapping[str, Any], declared: Iterable[str]) -> None:
    """Raise if papermill injected a name the parameters cell does not declare."""
    declared = set(declared)
    unknown = sorted(k for k in namespace if k not in declared and not k.startswith("_") and k not in IGNORED)
    if unknown:
        known = sorted(k for k in declared if not k.startswith("_") and k not in IGNORED)
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"unknown notebook parameter(s): {', '.join(hints)}. This notebook takes: {', '.join(known)}."
        )


def check_list_parameters(namespace: Mapping[str, Any], names: Iterable[str]) -> None:
    """Raise if a list parameter arrived as a string (``papermill -p seeds '[0, 1]'`` passes text)."""
    for name in names:
        value = namespace.get(name)
        if isinstance(value, str):
            raise ValueError(
                f"notebook parameter {name!r} must be a list, got the string {value!r}. papermill's -p passes "
                f"text; give lists with -y, e.g. -y '{name}: [0, 1, 2]', or in a -f params file."
            )


def output_path(output_dir: str | Path) -> Path:
    """The output folder, created; relative paths are taken from the project root if found."""
    path = Path(output_dir)
    if not path.is_absolute():
        here = Path.cwd()
        root = next((p for p in [here, *here.parents] if (p / "pyproject.toml").exists()), here)
        path = root / path
    path.mkdir(parents=True, exist_ok=True)
    return path
