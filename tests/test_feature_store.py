"""Feature caches at scale: memory-mapped reads, streamed writes, sharded DDP writes (CPU, < 40 s).

    .venv/bin/pytest tests/test_feature_store.py -q
"""
from __future__ import annotations

import json
import logging
import struct
import textwrap
from pathlib import Path
from typing import Optional

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_finetune import assert_same_weights, cfg  # noqa: E402

import wiseft_lib.finetune.data as fdata  # noqa: E402
from wiseft_lib.core.feature_file import open_cache, write_rows  # noqa: E402
from wiseft_lib.core.features import CACHE_STATS, _cache_file, _cache_metadata, extract_features, feature_cache_key  # noqa: E402
from wiseft_lib.finetune import finetune  # noqa: E402
from wiseft_lib.finetune.data import FeatureBatches  # noqa: E402

from helpers import AugmentedSet, gloo_ranks, threads, tiny_classifier  # noqa: E402

KEY = {"dataset": "synthetic", "split": "train", "preprocess": "identity", "pretrained": None}
linux_only = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps")


@pytest.fixture(autouse=True)
def _reset_stats():
    CACHE_STATS.reset()


def mapped_file(t: torch.Tensor) -> Optional[str]:
    """The file whose memory map holds ``t``'s data (None: ordinary memory), from /proc/self/maps."""
    addr = t.data_ptr()
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= addr < hi:
                return fields[5].strip() if len(fields) == 6 and fields[5].startswith("/") else None
    return None


def extract(clf, data, cache_dir, **kw):
    return extract_features(clf.image_encoder, data, cache_dir=cache_dir, cache_key_parts=KEY if cache_dir else None,
                            batch_size=4, progress=False, **kw)


def split_file(path: Path) -> tuple[dict, bytes]:
    """(parsed header, data section) of a safetensors file."""
    b = path.read_bytes()
    (h,) = struct.unpack("<Q", b[:8])
    return json.loads(b[8:8 + h]), b[8 + h:]


@linux_only
def test_hit_and_miss_return_memory_maps_equal_to_in_memory_features(tmp_path):
    clf, data = tiny_classifier(), AugmentedSet(n=13, augment=False)
    ref_v, ref_l = extract(clf, data, None)  # no cache: in memory
    miss_v, miss_l = extract(clf, data, tmp_path)
    hit_v, hit_l = extract(clf, data, tmp_path)
    assert (CACHE_STATS.hits, CACHE_STATS.misses) == (1, 2)
    (path,) = tmp_path.glob("features-*.safetensors")
    assert mapped_file(ref_v) is None
    for t in (miss_v, miss_l, hit_v, hit_l):
        assert mapped_file(t) == str(path.resolve())
    assert torch.equal(hit_v, ref_v) and torch.equal(miss_v, ref_v)
    assert torch.equal(hit_l, ref_l) and torch.equal(miss_l, ref_l)
    assert hit_v.dtype == torch.float32 and hit_l.dtype == torch.int64 and hit_v.is_contiguous()
    # what callers do with them
    assert hit_v.to("cpu").data_ptr() == hit_v.data_ptr()  # no copy
    j = torch.tensor([12, 0, 5])
    assert torch.equal(hit_v.index_select(0, j), ref_v[j]) and torch.equal(torch.cat([hit_v, hit_v])[13:], ref_v)
    assert (hit_v.numpy() == ref_v.numpy()).all() and (hit_l.numpy() == ref_l.numpy()).all()
    before = path.read_bytes()
    hit_v.mul_(0)  # copy-on-write: in-place edits stay in this process
    assert path.read_bytes() == before and torch.equal(extract(clf, data, tmp_path)[0], ref_v)


def test_files_written_by_save_file_are_read(tmp_path):
    clf, data = tiny_classifier(), AugmentedSet(n=7, augment=False)
    ref_v, ref_l = extract(clf, data, None)
    path = _cache_file(tmp_path, "features", feature_cache_key(clf.image_encoder, KEY, n=7, precision="fp32"))
    save_file({"values": ref_v + 1, "labels": ref_l}, str(path), metadata=_cache_metadata({"kind": "features"}))
    v, l = extract(clf, data, tmp_path)
    assert (CACHE_STATS.hits, CACHE_STATS.misses) == (1, 1)  # the +1 proves it came from the file
    assert torch.equal(v, ref_v + 1) and torch.equal(l, ref_l)


@pytest.mark.parametrize("damage", ["truncate", "wrong_dtype", "wrong_rows"])
def test_damaged_or_foreign_files_are_recomputed_with_a_warning(tmp_path, caplog, damage):
    clf, data = tiny_classifier(), AugmentedSet(n=9, augment=False)
    ref_v, ref_l = extract(clf, data, tmp_path)
    ref_v, ref_l = ref_v.clone(), ref_l.clone()
    (path,) = tmp_path.glob("features-*.safetensors")
    if damage == "truncate":  # header intact, data cut short
        b = path.read_bytes()
        path.write_bytes(b[: len(b) - 40])
    elif damage == "wrong_dtype":
        save_file({"values": ref_v.double(), "labels": ref_l}, str(path))
    else:
        save_file({"values": ref_v[:5], "labels": ref_l[:5]}, str(path))
    with caplog.at_level(logging.WARNING, logger="wiseft_lib.core.features"):
        v, l = extract(clf, data, tmp_path)
    assert CACHE_STATS.misses == 2 and "recomputing" in caplog.text
    assert torch.equal(v, ref_v) and torch.equal(l, ref_l)
    assert torch.equal(load_file(str(path))["values"], ref_v)  # rewritten whole


@pytest.mark.parametrize("n,d", [(37, 5), (0, 0), (3, 1)])
def test_streamed_file_equals_save_file(tmp_path, n, d):
    g = torch.Generator().manual_seed(n)
    values, labels = torch.randn(n, d, generator=g), torch.randint(0, 1000, (n,), generator=g)
    meta = _cache_metadata({"kind": "features", "n": n})
    blocks = [(values[i:i + 8], labels[i:i + 8]) for i in range(0, n, 8)]
    write_rows(tmp_path / "stream.safetensors", iter(blocks), n, meta)
    save_file({"values": values, "labels": labels}, str(tmp_path / "ref.safetensors"), metadata=meta)
    got, ref = load_file(str(tmp_path / "stream.safetensors")), load_file(str(tmp_path / "ref.safetensors"))
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    (h1, d1), (h2, d2) = split_file(tmp_path / "stream.safetensors"), split_file(tmp_path / "ref.safetensors")
    assert h1 == h2 and d1 == d2  # same header (up to key order) and byte-identical data section
    v, l = open_cache(tmp_path / "stream.safetensors")
    assert torch.equal(v, values) and torch.equal(l, labels)
    assert [p.name for p in tmp_path.iterdir()].count("stream.safetensors") == 1 and len(list(tmp_path.iterdir())) == 2


def test_streamed_write_rejects_a_wrong_row_count(tmp_path):
    with pytest.raises(RuntimeError, match="rows"):
        write_rows(tmp_path / "x.safetensors", iter([(torch.zeros(3, 2), torch.zeros(3))]), 4, {})
    assert not list(tmp_path.iterdir())  # nothing half-written is left


@linux_only
def test_feature_batches_keep_the_map_and_train_bit_identically(tmp_path, monkeypatch):
    clf, data = tiny_classifier(), AugmentedSet(n=40, augment=False)
    feats, labels = extract(clf, data, tmp_path)
    assert mapped_file(feats) is not None
    mem = (feats.clone(), labels.clone())
    monkeypatch.setattr(fdata, "DEVICE_FEATURE_BYTES", 0)  # as if the features were too big for the device
    fb, ref = (FeatureBatches(f, y, 8, 0, 0, 1, torch.device("cpu")) for f, y in ((feats, labels), mem))
    assert fb.features.data_ptr() == feats.data_ptr() and mapped_file(fb.features) is not None
    for (x1, y1), (x2, y2) in zip(fb.epoch(1, 0), ref.epoch(1, 0), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and mapped_file(x1) is None
    kw = dict(progress=False)
    a = finetune(clf, data, cfg(mode="linear", lr=1e-2), train_features=(feats, labels), **kw)
    b = finetune(clf, data, cfg(mode="linear", lr=1e-2), train_features=mem, **kw)
    assert_same_weights(a, b)


WORKER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {testdir!r})
    from safetensors.torch import save_file
    from helpers import AugmentedSet, tiny_classifier
    from test_feature_store import KEY, mapped_file
    from wiseft_lib.core.device import dist_info, setup_distributed, cleanup_distributed
    from wiseft_lib.core.features import extract_features
    setup_distributed(torch.device("cpu"))
    rank = dist_info()[0]
    enc = tiny_classifier().image_encoder
    for n in (41, 1):  # n=1: rank 0's shard is empty
        v, l = extract_features(enc, AugmentedSet(n=n, augment=False), cache_dir={cache!r}, cache_key_parts=KEY,
                                batch_size=4, progress=False)
        assert mapped_file(v) is not None and mapped_file(l) is not None
        save_file({{"values": v, "labels": l}}, {out!r} + f"/returned-{{n}}-rank{{rank}}.safetensors")
    cleanup_distributed()
""")


@pytest.mark.slow
@linux_only
def test_two_process_sharded_cache_equals_one_process(tmp_path):
    """2 gloo ranks stream contiguous shards; rank 0 joins them; both ranks map the result.

    Exact: file names (cache keys), headers (keys, dtypes, shapes, offsets, metadata), labels, and what the two
    ranks return (both map the one joined file). The feature rows are compared to a tolerance: the reference
    runs with one thread and the same batches of 4 as the ranks (they line up with the 20/21 split), but in
    another process, so the last bits of its floats are not part of the claim (rows in order, none lost)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(testdir=str(Path(__file__).parent), cache=str(tmp_path / "ddp"), out=str(tmp_path)))
    with gloo_ranks(script), threads(1):  # meanwhile the 1-process reference, one thread like each rank
        enc = tiny_classifier().image_encoder
        refs = {n: extract_features(enc, AugmentedSet(n=n, augment=False), cache_dir=tmp_path / "one",
                                    cache_key_parts=KEY, batch_size=4, progress=False) for n in (41, 1)}
    one = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == one and len(one) == 2  # same keys, no parts left
    joined = {}
    for name in one:
        (ddp_header, ddp_data), (one_header, one_data) = (split_file(tmp_path / d / name) for d in ("ddp", "one"))
        assert ddp_header == one_header and len(ddp_data) == len(one_data)  # same keys, dtypes, shapes, metadata
        ddp, single = load_file(str(tmp_path / "ddp" / name)), load_file(str(tmp_path / "one" / name))
        assert torch.equal(ddp["labels"], single["labels"])  # every row once, in dataset order
        # features from another process: equal up to float rounding (fp32 epsilon ~1.2e-7, plus a margin for
        # summation order); a shifted, padded or lost row differs by far more
        torch.testing.assert_close(ddp["values"], single["values"], rtol=1e-5, atol=1e-6)
        joined[len(single["labels"])] = ddp
    assert sorted(joined) == sorted(refs)
    for n, (v, l) in refs.items():
        assert torch.equal(joined[n]["labels"], l)
        torch.testing.assert_close(joined[n]["values"], v, rtol=1e-5, atol=1e-6)  # as above
        for rank in range(2):  # each rank returns the joined file's rows (its memory map): bit for bit
            got = load_file(str(tmp_path / f"returned-{n}-rank{rank}.safetensors"))
            assert torch.equal(got["values"], joined[n]["values"]) and torch.equal(got["labels"], l)
