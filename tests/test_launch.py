"""Figure 1's paper preset on the tiny real-architecture fixture: one process, torchrun with two (gloo, CPU),
and a one-process run that launches torchrun itself (``processes: 2``, as a notebook would) write the same
``curve.csv``.

    .venv/bin/pytest tests/test_launch.py -q
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from test_paper_presets import TINY

from wiseft_lib.params import ParamsError
from wiseft_lib.studies.fig1_id_vs_ood import Fig1Params
from wiseft_lib.studies.launch import processes_to_launch

from paper_fixture import write_paper_data

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["smoke=true", "model=wiseft-paper-tiny", "pretrained=random", "device=cpu", "num_workers=0",
            'templates=["a photo of a {}."]']


@pytest.fixture(scope="module")
def fixture_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("launch")
    (base / "configs").mkdir()
    (base / "configs" / "wiseft-paper-tiny.json").write_text(json.dumps(TINY))
    env = {**os.environ, "WISEFT_MODEL_CONFIGS": str(base / "configs"), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return base, write_paper_data(base / "data"), env


def wiseft_run(prefix: list[str], out: Path, data: Path, env: dict, *extra: str) -> Path:
    sets = [f"data_root={data}", f"output_dir={out / 'out'}", f"runs_dir={out / 'runs'}", *SETTINGS, *extra]
    cmd = [*prefix, "run", "fig1_id_vs_ood", "--params", str(ROOT / "params/paper/fig1_id_vs_ood.yaml"),
           "--no-progress", *[a for s in sets for a in ("--set", s)]]
    done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]
    return out


def finetuned(out: Path) -> tuple[dict, dict]:
    (entry,) = [p for p in (out / "runs" / "finetune").iterdir() if not p.name.startswith(".")]
    return json.loads((entry / "entry.json").read_text()), load_file(str(entry / "finetuned.safetensors"))


@pytest.mark.slow
def test_fig1_paper_preset_under_torchrun_writes_the_same_curve(fixture_env, tmp_path):
    base, data, env = fixture_env
    one = wiseft_run([sys.executable, "-m", "wiseft_lib.cli"], tmp_path / "one", data, env)
    two = wiseft_run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                      "-m", "wiseft_lib.cli"], tmp_path / "two", data, env)
    launched = wiseft_run([sys.executable, "-m", "wiseft_lib.cli"], tmp_path / "launched", data, env, "processes=2")

    # the fixture's corrupt ImageNet val file is counted, not silently dropped
    data = pd.read_csv(one / "out" / "data.csv").set_index("dataset")
    assert data.loc["imagenet", "skipped"] == 1 and data.loc["imagenet-v2", "skipped"] == 0
    pd.testing.assert_frame_equal(pd.read_csv(two / "out" / "data.csv").set_index("dataset"), data)
    curve = pd.read_csv(one / "out" / "curve.csv")
    assert len(curve) == 6 and set(curve["mode"]) == {"end-to-end", "linear"}
    one_image = 100.0 / data["images"].min()  # a near-tied prediction may flip (see assert_same_scores)
    for other in (two, launched):
        other_curve = pd.read_csv(other / "out" / "curve.csv")
        pd.testing.assert_frame_equal(other_curve[["seed", "mode", "alpha"]], curve[["seed", "mode", "alpha"]])
        pd.testing.assert_frame_equal(other_curve, curve, check_exact=False, rtol=0, atol=one_image)
        assert not list((other / "out").glob("wiseft-rank*")), "rank 1 wrote into the outputs"
    record_one, weights_one = finetuned(one)
    for other in (two, launched):
        record, weights = finetuned(other)
        assert (record_one["processes"], record["processes"]) == (1, 2)  # the fine-tune ran as DDP on 2 ranks
        assert record["parts"] == record_one["parts"]  # the same run (key) as the one-process fine-tune
        for key, value in weights_one.items():
            torch.testing.assert_close(weights[key], value, atol=1e-5, rtol=1e-4, msg=key)
    # every evaluation set was scored once per alpha, with each image counted once
    scores = sorted((two / "runs" / "finetune").glob("*/scores/*.json"))
    assert scores
    ones = {p.name: json.loads(p.read_text())["scores"] for p in sorted((one / "runs" / "finetune").glob("*/scores/*.json"))}
    for path in scores:
        assert_same_scores(json.loads(path.read_text())["scores"], ones[path.name], path.name)


def assert_same_scores(got: dict, expected: dict, name: str) -> None:
    """Same alphas, metrics and counts (n_images, n_skipped: every image once); accuracies within one image.

    The 2-rank fine-tune averages two half-batch gradients where one process sums one batch, so its weights agree to
    ~1e-6, not bit for bit (checked above), and a prediction whose two top logits are that close could flip: one
    image, 100 / n_images points. Anything more is a real difference (a lost, padded or double-counted row)."""
    assert sorted(got) == sorted(expected), name
    for alpha, metrics in expected.items():
        assert sorted(got[alpha]) == sorted(metrics), (name, alpha)
        one_image = 100.0 / metrics["n_images"]
        for metric, value in metrics.items():
            if metric.startswith("n_"):
                assert got[alpha][metric] == value, (name, alpha, metric)
            else:
                assert abs(got[alpha][metric] - value) <= one_image + 1e-9, (name, alpha, metric, got[alpha][metric])


def test_processes_parameter():
    assert processes_to_launch(3) == 3
    assert processes_to_launch(0) == max(torch.cuda.device_count(), 1)
    with pytest.raises(ParamsError, match="processes"):
        Fig1Params(processes=-1)
