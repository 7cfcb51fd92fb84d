"""Counting the work a study does (core/counters), the bare rates and the profile that sets one against the other."""
import json
import time
from dataclasses import dataclass

import pytest

from wiseft_lib.core import counters
from wiseft_lib.core.rates import BareRates, compute_floor
from wiseft_lib.core.sweep import sweep_logits
from wiseft_lib.experiment.runs import RunCache
from wiseft_lib.reproduce import StudyRun, _work_since, profile_table
from wiseft_lib.studies.base import StudyOutputs, StudyParams

from helpers import AugmentedSet, tiny_classifier


def test_a_sweep_counts_each_image_once_per_alpha():
    model = tiny_classifier(0)
    theta = {k: v.clone() for k, v in model.state_dict().items()}
    before = counters.snapshot()
    sweep_logits(model, theta, {k: v + 0.01 for k, v in theta.items()}, [0.0, 0.5, 1.0], AugmentedSet(n=40),
                 batch_size=16, progress=False)
    assert counters.since(before) == {"eval_images": 3 * 40}


def test_the_run_cache_counts_what_it_computes_and_nothing_it_reads(tmp_path):
    runs = RunCache(tmp_path / "runs")
    before = counters.snapshot()
    key = runs.key({"run": 1})
    work = runs.work_dir("finetune", key)
    (work / "model.txt").write_text("weights")
    runs.commit("finetune", key, work, record={})
    runs.add_scores("finetune", key, "eval", 0.5, {"top1": 50.0}, {"dataset": "x"})
    assert counters.since(before) == {"runs_computed": 1, "scores_added": 1}
    assert runs.has("finetune", key) and runs.scores("finetune", key, "eval")
    assert counters.since(before) == {"runs_computed": 1, "scores_added": 1}  # reading adds nothing


@dataclass
class _Params(StudyParams):
    pass


def test_study_json_records_the_work_of_its_run_only(tmp_path):
    counters.add("eval_images", 7)  # before the study: not its work
    outputs = StudyOutputs("demo", _Params(output_dir=str(tmp_path / "demo")))
    counters.add("eval_images", 100)
    counters.add("e2e_train_images", 64)
    outputs.finish()
    record = json.loads((tmp_path / "demo" / "study.json").read_text())
    assert record["work"] == {"e2e_train_images": 64, "eval_images": 100}
    assert _work_since(tmp_path / "demo" / "study.json", time.time() - 60) == record["work"]
    assert _work_since(tmp_path / "demo" / "study.json", time.time() + 60) is None  # a leftover of an earlier run


def test_the_profile_sets_each_studys_wall_time_against_its_compute_floor(tmp_path):
    rates = BareRates(eval_images=1000.0, e2e_train_images=500.0, pretrain_images=250.0)
    work = {"eval_images": 8000, "feature_images": 2000, "e2e_train_images": 1000, "e2e_steps": 16}
    assert compute_floor(work, rates) == pytest.approx(10.0 + 2.0)
    runs = [StudyRun("a", "ok", 24.0, tmp_path, tmp_path / "a.ipynb", work=work),
            StudyRun("b", "ok", 3.0, tmp_path, tmp_path / "b.ipynb", work={}),
            StudyRun("c", "failed", 1.0, tmp_path, tmp_path / "c.ipynb")]
    assert [r.source for r in runs] == ["computed", "cache", "-"]
    table = profile_table(runs, rates).set_index("study")
    assert table.loc["a", "floor_s"] == 12.0 and table.loc["a", "wall_over_floor"] == 2.0
    assert table.loc["a", "e2e_steps"] == 16 and table["e2e_steps"].dtype.kind == "i"
    assert table.loc["b", "floor_s"] == 0.0 and table["wall_over_floor"].isna()["b"]  # nothing computed: no ratio
    assert table.loc["total", "wall_s"] == 28.0 and table.loc["total", "wall_over_floor"] == pytest.approx(28 / 12, 0.01)


def test_bare_rates_are_positive_and_ordered_as_the_work_is():
    from wiseft_lib.core.rates import bare_rates

    rates = bare_rates(seconds=0.2)
    assert rates.eval_images > rates.e2e_train_images > 0  # scoring needs no backward pass
    assert rates.pretrain_images > 0 and set(rates.to_dict()) == {"eval_images", "e2e_train_images", "pretrain_images"}
    slower = BareRates(rates.eval_images / 2, rates.e2e_train_images * 2, 1.0)
    assert rates.best(slower) == BareRates(rates.eval_images, rates.e2e_train_images * 2, rates.pretrain_images)
