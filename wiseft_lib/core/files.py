"""Atomic file writes: write to a temporary file in the same folder, then rename."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(err: BaseException) -> bool:
    """True for "no space left on device" and "disk quota exceeded"."""
    return isinstance(err, OSError) and err.errno in DISK_FULL


def disk_full_error(path: Union[str, Path], kept: str) -> OSError:
    """The error for a write that found the disk full: where, what was kept, what to do."""
    return OSError(errno.ENOSPC, f"no space left on the device while writing {path}: {kept}. Free space (or point "
                                 f"output_dir / runs_dir at a disk with room) and run again; finished work is reused")


class UnwritableOutputError(OSError, ValueError):
    """An output path cannot be created or written (a parent is a file, no permission, a read-only disk).

    A ValueError too, so front doors that report ValueErrors as one-line messages (the CLI) report it."""


_NOT_WRITABLE = {errno.EEXIST, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR}


def unwritable(path: Path, err: OSError) -> OSError:
    """What keeps ``path`` from being written, and what to do (other OS errors, e.g. a full disk, pass through)."""
    if err.errno not in _NOT_WRITABLE:
        return err
    blocker = next((p for p in [path.parent, *path.parent.parents] if p.is_file()), None)
    why = f"{blocker} is a file, not a folder" if blocker is not None else (err.strerror or str(err))
    return UnwritableOutputError(f"cannot write {path}: {why}. Choose an output path in a folder you can write to")


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise unwritable(path, err) from None
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp_path
        if tmp_path.exists():  # again: writers that recreate the file (safetensors' save_file) leave it 0600
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(path, f"{path.name} keeps its previous content") from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: Union[str, Path], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: Union[str, Path], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
