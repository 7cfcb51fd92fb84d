"""The run cache: atomic entries, resumable work folders, scores per alpha, memoised values."""
import json

import pytest

from wiseft_lib.experiment.runs import RunCache, alpha_key, file_digest, run_key


def test_keys_hash_what_made_a_run():
    assert run_key({"lr": 1e-3, "seed": 0}) == run_key({"seed": 0, "lr": 1e-3})
    assert run_key({"lr": 1e-3, "seed": 0}) != run_key({"lr": 1e-3, "seed": 1})
    assert alpha_key(0.1 + 0.2) == alpha_key(0.3) and alpha_key(0) == alpha_key(0.0) == "0.0"


def test_an_entry_appears_complete_or_not_at_all(tmp_path):
    runs = RunCache(tmp_path)
    key = runs.key({"x": 1})
    work = runs.work_dir("finetune", key)
    (work / "model.safetensors").write_bytes(b"weights")
    (work / "checkpoints").mkdir()
    (work / "checkpoints" / "step_1").write_text("resume state")
    assert not runs.has("finetune", key)  # a killed computation leaves only its work folder
    assert runs.work_dir("finetune", key) == work and (work / "checkpoints" / "step_1").exists()
    entry = runs.commit("finetune", key, work, {"seconds": 3}, keep=["model.safetensors"])
    assert runs.has("finetune", key) and not work.exists()
    assert sorted(p.name for p in entry.iterdir()) == ["entry.json", "model.safetensors"]
    assert runs.record("finetune", key)["seconds"] == 3


def test_scores_are_added_one_alpha_at_a_time(tmp_path):
    runs = RunCache(tmp_path)
    assert runs.scores("finetune", "k", "e") == {}
    runs.add_scores("finetune", "k", "e", 0.5, {"top1": 81.25}, {"dataset": "mini-photo"})
    runs.add_scores("finetune", "k", "e", 1.0, {"top1": 80.0}, {"dataset": "mini-photo"})
    assert runs.scores("finetune", "k", "e") == {"0.5": {"top1": 81.25}, "1.0": {"top1": 80.0}}
    saved = json.loads((tmp_path / "finetune" / "k" / "scores" / "e.json").read_text())
    assert saved["eval"] == {"dataset": "mini-photo"}


def test_memo_computes_only_what_is_missing(tmp_path):
    runs, calls = RunCache(tmp_path), []

    def compute(missing):
        calls.append(missing)
        return [{"value": i * 10} for i in missing]

    assert runs.memo_many("reference", [{"m": 0}, {"m": 1}], compute) == [{"value": 0}, {"value": 10}]
    assert runs.memo_many("reference", [{"m": 1}, {"m": 2}], compute) == [{"value": 10}, {"value": 10}]
    assert calls == [[0, 1], [1]]  # {"m": 1} came from the cache; {"m": 2} was computed as index 1
    assert runs.memo_many("reference", [{"m": 0}], lambda missing: pytest.fail("cached")) == [{"value": 0}]


def test_throwaway_cache_and_file_digest(tmp_path):
    runs = RunCache(None)
    assert runs.root.is_dir()
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    first = file_digest(f)
    f.write_bytes(b"abcd")
    assert file_digest(f) != first  # the memo is keyed by size and modification time
