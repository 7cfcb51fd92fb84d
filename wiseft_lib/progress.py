"""Progress bars for long steps: tqdm (terminal or Jupyter, via tqdm.auto) with units and a time estimate, unless
the environment says no.

A function asked for a bar (its ``progress`` argument) shows one unless ``WISEFT_PROGRESS`` is ``0``. ``make
reproduce`` and ``wiseft run --notebook`` set it to ``0`` in the kernels papermill starts (bars would fill the
executed notebooks and the log with carriage returns) unless asked with ``--progress``. By hand:

    WISEFT_PROGRESS=0 papermill notebooks/fig1_id_vs_ood.ipynb out.ipynb --log-output   # no bars in the log
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterable, Iterator, Optional

from tqdm.auto import tqdm

__all__ = ["ENV", "show_progress", "progress_bar", "progress_env"]

ENV = "WISEFT_PROGRESS"
_OFF = ("0", "false", "no", "off")


def show_progress(requested: bool = True) -> bool:
    """``requested``, unless ``WISEFT_PROGRESS`` turns bars off (0, false, no, off)."""
    return bool(requested) and os.environ.get(ENV, "").strip().lower() not in _OFF


def progress_bar(iterable: Optional[Iterable] = None, *, show: bool = True, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, disabled unless ``show`` and :func:`show_progress` agree."""
    return tqdm(iterable, disable=not show_progress(show), **kwargs)


@contextlib.contextmanager
def progress_env(show: bool) -> Iterator[None]:
    """Set ``WISEFT_PROGRESS`` for what starts inside (e.g. papermill's kernels), then restore it."""
    before = os.environ.get(ENV)
    os.environ[ENV] = "1" if show else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
