"""The feature cache's file: a safetensors file read through memory maps and written as a stream of rows.

    from wiseft_lib.core.feature_file import open_cache, write_rows
    write_rows(path, iter([(values, labels)]), n, {"format": "wiseft.features/1"})
    values, labels = open_cache(path)        # memory-mapped: nothing is read until used

``labels`` (N,) int64 then ``values`` (N, D) float32, as ``safetensors.torch.save_file`` lays them out,
so ``load_file`` reads the files too. :func:`assemble` joins per-rank part files by chunked copies.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping, Optional

import numpy as np
import torch

from wiseft_lib.core.files import atomic_path

__all__ = ["Layout", "layout", "open_cache", "RowWriter", "write_rows", "assemble", "COPY_CHUNK_BYTES"]

COPY_CHUNK_BYTES = 64 * 2**20  # bounded buffer when assembling shard files
_MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit
_LABEL_BYTES, _VALUE_BYTES = 8, 4  # int64 labels, float32 values


# ---------------------------------------------------------------- reading: header parsing + memory maps
@dataclass(frozen=True)
class Layout:
    """Where a cache file's tensors lie: absolute byte offsets of labels and values."""

    n: int
    d: int
    labels_at: int
    values_at: int


def _read_header(path: Path) -> tuple[int, dict]:
    """``(data_start, header)`` of a safetensors file; ValueError if the header is malformed."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{size} bytes: too short for a safetensors file")
        (hlen,) = struct.unpack("<Q", head)
        if hlen > min(_MAX_HEADER_BYTES, size - 8):
            raise ValueError(f"header length {hlen} does not fit a {size}-byte file")
        header = json.loads(f.read(hlen))
    if not isinstance(header, dict):
        raise ValueError("the safetensors header is not a JSON object")
    return 8 + hlen, header


def _entry(header: dict, name: str, dtype: str, ndim: int) -> tuple[list[int], int, int]:
    """``(shape, begin, end)`` of tensor ``name``, checked for dtype, rank and byte size."""
    e = header.get(name)
    if not isinstance(e, dict):
        raise ValueError(f"no tensor {name!r} (found {sorted(k for k in header if k != '__metadata__')})")
    shape, offsets = e.get("shape"), e.get("data_offsets")
    if e.get("dtype") != dtype or not isinstance(shape, list) or len(shape) != ndim:
        raise ValueError(f"{name!r} is {e.get('dtype')} {shape}; expected {dtype} with {ndim} dimension(s)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(v, int) for v in offsets + shape)):
        raise ValueError(f"{name!r} has malformed shape {shape} or data_offsets {offsets}")
    begin, end = offsets
    item = _LABEL_BYTES if dtype == "I64" else _VALUE_BYTES
    if min(shape + offsets) < 0 or end - begin != math.prod(shape) * item:
        raise ValueError(f"{name!r}: data_offsets {offsets} do not hold {dtype} {shape}")
    return shape, begin, end


def layout(path: Path) -> Layout:
    """Validate a cache file (F32 values [n, D], I64 labels [n], offsets inside the file)."""
    start, header = _read_header(path)
    (n, d), vb, ve = _entry(header, "values", "F32", 2)
    (nl,), lb, le = _entry(header, "labels", "I64", 1)
    if nl != n:
        raise ValueError(f"values hold {n} rows but labels {nl}")
    size = path.stat().st_size
    if start + max(ve, le) > size:
        raise ValueError(f"data ends at byte {start + max(ve, le)} but the file has {size} (truncated?)")
    return Layout(n=n, d=d, labels_at=start + lb, values_at=start + vb)


def _map(path: Path, offset: int, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A CPU tensor over ``shape`` elements of ``path`` at ``offset`` (copy-on-write memory map)."""
    if math.prod(shape) == 0:  # mmap cannot map zero bytes
        return torch.from_numpy(np.empty(shape, dtype=dtype))
    return torch.from_numpy(np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape))


def open_cache(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, labels)`` of a cache file, memory-mapped (nothing is read until used)."""
    lay = layout(path)
    return (_map(path, lay.values_at, "<f4", (lay.n, lay.d)), _map(path, lay.labels_at, "<i8", (lay.n,)))


# ---------------------------------------------------------------- writing: a streaming safetensors writer
def _header_bytes(n: int, d: int, metadata: Mapping[str, str]) -> bytes:
    """The 8-byte length + JSON header (space-padded to 8 bytes) of a labels-then-values file."""
    lab, val = n * _LABEL_BYTES, n * d * _VALUE_BYTES
    header = {"__metadata__": dict(metadata),
              "labels": {"dtype": "I64", "shape": [n], "data_offsets": [0, lab]},
              "values": {"dtype": "F32", "shape": [n, d], "data_offsets": [lab, lab + val]}}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    return struct.pack("<Q", len(blob)) + blob


class RowWriter:
    """Write ``n`` rows of labels (int64) and values (float32, width ``d``) into a safetensors file.

    The header is written once ``d`` is known (the first rows, or :meth:`begin`), the file is
    sized to its final length, and each block of rows lands at its offsets, so memory holds one
    block. The layout is save_file's (labels, then values), so ``load_file`` reads the result.
    """

    def __init__(self, f: BinaryIO, n: int, metadata: Mapping[str, str]):
        self.f, self.n, self.metadata = f, n, metadata
        self.d: Optional[int] = None
        self.rows = 0
        self._start = 0

    def begin(self, d: int) -> None:
        head = _header_bytes(self.n, d, self.metadata)
        self.f.seek(0)
        self.f.write(head)
        self.f.truncate(len(head) + self.n * (_LABEL_BYTES + d * _VALUE_BYTES))
        self.d, self._start = d, len(head)

    def labels_at(self, row: int) -> int:
        return self._start + row * _LABEL_BYTES

    def values_at(self, row: int) -> int:
        return self._start + self.n * _LABEL_BYTES + row * self.d * _VALUE_BYTES

    def write_at(self, offset: int, data) -> None:
        self.f.seek(offset)
        self.f.write(data)

    def append(self, values: torch.Tensor, labels: torch.Tensor) -> None:
        """Write the next rows (any device; values become float32, labels int64)."""
        v = values.detach().to("cpu", torch.float32).contiguous()
        y = labels.detach().to("cpu", torch.int64).contiguous()
        if v.ndim != 2 or y.shape != (v.shape[0],):
            raise ValueError(f"expected values (B, D) and labels (B,); got {tuple(v.shape)} and {tuple(y.shape)}: "
                             f"the module must return one feature vector per image")
        if self.d is None:
            self.begin(v.shape[1])
        if v.shape[1] != self.d or self.rows + v.shape[0] > self.n:
            raise ValueError(f"rows {self.rows}+{v.shape[0]} of width {v.shape[1]} do not fit "
                             f"a ({self.n}, {self.d}) cache")
        self.write_at(self.labels_at(self.rows), y.numpy())
        self.write_at(self.values_at(self.rows), v.numpy())
        self.rows += v.shape[0]

    def finish(self) -> None:
        if self.d is None:  # no rows at all (n == 0): a valid empty file
            self.begin(0)
        if self.rows != self.n:
            raise RuntimeError(f"wrote {self.rows} rows of the {self.n} the cache file needs")
        self.f.flush()


def write_rows(path: Path, rows: Iterator[tuple[torch.Tensor, torch.Tensor]], n: int,
                metadata: Mapping[str, str]) -> None:
    """Stream ``(values, labels)`` blocks into the safetensors file ``path`` (atomically)."""
    try:
        with atomic_path(path) as tmp, open(tmp, "r+b") as f:
            w = RowWriter(f, n, metadata)
            for values, labels in rows:
                w.append(values, labels)
            w.finish()
    finally:
        if hasattr(rows, "close"):  # stop a half-consumed generator now (it restores the module's mode)
            rows.close()


def _copy_range(src: BinaryIO, src_at: int, dst: RowWriter, dst_at: int, nbytes: int) -> None:
    """Copy ``nbytes`` from ``src`` to ``dst`` through a buffer of at most ``COPY_CHUNK_BYTES``."""
    buf = memoryview(bytearray(min(nbytes, COPY_CHUNK_BYTES)))
    src.seek(src_at)
    done = 0
    while done < nbytes:
        k = src.readinto(buf[: min(len(buf), nbytes - done)])
        if not k:
            raise EOFError(f"{src.name} ended {nbytes - done} bytes early")
        dst.write_at(dst_at + done, buf[:k])
        done += k


def assemble(path: Path, parts: list[tuple[Path, int]], n: int, metadata: Mapping[str, str]) -> None:
    """Join shard files ``(part, rows)`` (in row order) into the cache file ``path`` by chunked copies."""
    missing = [str(p) for p, _ in parts if not p.exists()]
    if missing:
        raise FileNotFoundError(f"rank 0 cannot see the shard files {missing}: with several nodes, cache_dir "
                                f"must be on a filesystem every rank sees (or pass cache_dir=None)")
    layouts = [layout(p) for p, _ in parts]
    for (p, rows), lay in zip(parts, layouts):
        if lay.n != rows:
            raise ValueError(f"shard file {p} holds {lay.n} rows, expected {rows}")
    widths = {lay.d for lay in layouts if lay.n}
    if len(widths) > 1:
        raise ValueError(f"shard files disagree on the feature width: {sorted(widths)}")
    with atomic_path(path) as tmp, open(tmp, "r+b") as f:
        w = RowWriter(f, n, metadata)
        w.begin(widths.pop() if widths else 0)
        for (p, _), lay in zip(parts, layouts):
            with open(p, "rb") as src:
                _copy_range(src, lay.labels_at, w, w.labels_at(w.rows), lay.n * _LABEL_BYTES)
                _copy_range(src, lay.values_at, w, w.values_at(w.rows), lay.n * lay.d * _VALUE_BYTES)
            w.rows += lay.n
        w.finish()
