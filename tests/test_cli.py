"""The `wiseft` command end to end on the mini setting: zeroshot -> finetune -> interpolate -> evaluate."""
import subprocess
import sys

import pytest

from wiseft_lib.cli import main


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "wiseft_lib.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("zeroshot", "finetune", "interpolate", "evaluate", "sweep"):
        assert cmd in out.stdout


@pytest.mark.slow
def test_zeroshot_finetune_interpolate_evaluate(tmp_path, fashion_mnist_root, capsys):
    zs, ft = tmp_path / "zs.safetensors", tmp_path / "ft"
    assert main(["zeroshot", "--model", "wiseft-mini", "--dataset", "mini-photo", "--output", str(zs),
                 "--evaluate", "--n-test", "200"]) == 0
    assert main(["finetune", "--model", "wiseft-mini", "--train-dataset", "mini-photo", "--k-shot", "10",
                 "--output-dir", str(ft), "--epochs", "1", "--batch-size", "25", "--lr", "1e-4",
                 "--warmup-steps", "1", "--no-progress"]) == 0
    wise = tmp_path / "wise.safetensors"
    assert main(["interpolate", "--zeroshot", str(ft / "zeroshot.safetensors"),
                 "--finetuned", str(ft / "finetuned.safetensors"), "--alpha", "0.5", "--output", str(wise)]) == 0
    results = tmp_path / "results.sqlite"
    assert main(["evaluate", "--checkpoint", str(wise), "--datasets", "mini-photo", "mini-sketch",
                 "--n-test", "200", "--results", str(results)]) == 0
    from wiseft_lib.experiment.results import ResultsStore

    frame = ResultsStore(results).to_frame()
    assert set(frame["dataset"]) == {"mini-photo", "mini-sketch"}
    assert frame["value"].between(20, 100).all() and (frame["alpha"] == 0.5).all()
    # bad input: alpha out of range and an unknown model give clear errors, not tracebacks
    assert main(["interpolate", "--zeroshot", str(zs), "--finetuned", str(zs), "--alpha", "1.5",
                 "--output", str(tmp_path / "bad")]) == 2
    assert "alpha" in capsys.readouterr().err
    assert main(["zeroshot", "--model", "ViT-B-61", "--dataset", "mini-photo", "--output", str(tmp_path / "x")]) == 2
    assert "ViT-B-16" in capsys.readouterr().err


@pytest.mark.slow
def test_any_open_clip_model_name_goes_through_the_same_path(tmp_path, fashion_mnist_root, capsys):
    """A real open_clip architecture (random weights: no downloads here) builds a zero-shot head."""
    assert main(["zeroshot", "--model", "ViT-B-32", "--pretrained", "random", "--dataset", "mini-photo",
                 "--output", str(tmp_path / "b32"), "--evaluate", "--n-test", "16", "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "10 classes" in out and "mini-photo" in out
    from wiseft_lib.core.models import ImageClassifier

    clf = ImageClassifier.load(tmp_path / "b32.safetensors")
    assert clf.meta["model_name"] == "ViT-B-32" and tuple(clf.classification_head.weight.shape) == (10, 512)


def test_run_checks_parameters_before_running(tmp_path, capsys):
    out = f"output_dir={tmp_path}/fig1"
    assert main(["run", "fig1_id_vs_ood", "--set", out, "--set", "n_tset=5"]) == 2
    assert "unknown parameter(s) in --set: 'n_tset' (did you mean 'n_test'?)" in capsys.readouterr().err
    assert main(["run", "fig1_id_vs_ood", "--set", out, "--set", "seeds=0,1"]) == 2
    assert "'seeds' must be a list, got the string '0,1'" in capsys.readouterr().err
    assert main(["sweep", "--params", "params/mini/fig1_id_vs_ood.yaml", "--set", out, "--set", "alphas=[2]"]) == 2
    assert "alpha must lie in [0, 1]" in capsys.readouterr().err
    assert main(["run", "fig1_id_vs_odd"]) == 2
    assert "unknown study 'fig1_id_vs_odd'. Did you mean fig1_id_vs_ood?" in capsys.readouterr().err
    assert not (tmp_path / "fig1").exists(), "nothing is written before the parameters are checked"
    assert main(["run", "--list"]) == 0 and "pretrain_mini_clip" in capsys.readouterr().out


@pytest.mark.slow
def test_pretrain_mini_takes_its_flags_and_never_writes_into_the_package(tmp_path, fashion_mnist_root,
                                                                          monkeypatch):
    from wiseft_lib.core.models import WEIGHTS

    shipped = {p: p.stat().st_mtime_ns for p in WEIGHTS.iterdir()}
    monkeypatch.chdir(tmp_path)  # the default output folder is relative
    assert main(["pretrain-mini", "--steps", "2", "--n-pool", "256", "--batch-size", "16", "--warmup-steps", "1",
                 "--no-progress"]) == 0
    weights = tmp_path / "outputs/mini/pretrain/wiseft-mini-fmnist-seed0.safetensors"
    import json

    assert json.loads(weights.with_suffix(".json").read_text())["pretrain_config"]["steps"] == 2
    assert {p: p.stat().st_mtime_ns for p in WEIGHTS.iterdir()} == shipped
    assert main(["pretrain-mini", "--steps", "2", "--install-as", "fmnist-typo"]) == 2
