"""Fine-tuning engine on a tiny CLIP and synthetic data (CPU, seconds).

    .venv/bin/pytest tests/test_finetune.py -q
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from wiseft_lib.core.models import ImageClassifier
from wiseft_lib.finetune import (
    FinetuneConfig,
    NonFiniteLossError,
    build_finetune_parser,
    config_from_args,
    finetune,
    latest_checkpoint,
    warmup_cosine_lr,
)

from helpers import AugmentedSet, die_at_step, tiny_classifier


def cfg(**kw) -> FinetuneConfig:
    base = dict(epochs=2, batch_size=8, lr=1e-3, warmup_steps=2, precision="fp32", log_every=3)
    base.update(kw)
    return FinetuneConfig(**base)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, atol: float = 0.0) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if atol == 0:
            assert torch.equal(sa[k], sb[k]), k
        else:
            torch.testing.assert_close(sa[k], sb[k], atol=atol, rtol=0, msg=k)


def assert_same_training(a: ImageClassifier, b: ImageClassifier, atol: float) -> None:
    """Weights equal within ``atol`` and equal logits, except attention *key* biases.

    The key bias has an analytically zero gradient (softmax is shift-invariant), so Adam turns
    its float-noise gradient into +-lr steps whose sign depends on summation order; it does not
    change any output. Different batch splits (accumulation, DDP) therefore differ only there.
    """
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        va, vb = sa[k].clone(), sb[k].clone()
        if k.endswith("attn.in_proj_bias"):
            w = va.shape[0] // 3
            va[w:2 * w] = vb[w:2 * w] = 0
        torch.testing.assert_close(va, vb, atol=atol, rtol=0, msg=lambda m: f"{k}: {m}")
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), atol=atol * 100, rtol=0)


def test_finetune_copies_input_trains_and_records_config(tmp_path):
    clf = tiny_classifier()
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    ft = finetune(clf, AugmentedSet(), cfg(), output_dir=tmp_path, progress=False)
    for k, v in clf.state_dict().items():
        assert torch.equal(v, before[k]), f"input classifier changed at {k}"
    assert any(not torch.equal(v, before[k]) for k, v in ft.state_dict().items())
    assert ft.meta["finetune"]["lr"] == 1e-3 and ft.meta["finetune"]["mode"] == "end-to-end"
    assert ft.meta["finetune"]["total_steps"] == 10 and not ft.training
    rows = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert all({"loss", "lr", "images_per_s"} <= r.keys() for r in rows)


def test_lr_schedule_matches_formula(tmp_path):
    base, warm, total = 1e-3, 3, 10
    assert warmup_cosine_lr(0, base, warm, total) == pytest.approx(base / warm)
    assert warmup_cosine_lr(warm - 1, base, warm, total) == pytest.approx(base)  # warm-up end
    assert warmup_cosine_lr(warm, base, warm, total) == pytest.approx(base)
    assert warmup_cosine_lr(total, base, warm, total) == pytest.approx(0.0, abs=1e-15)
    finetune(tiny_classifier(), AugmentedSet(), cfg(warmup_steps=warm), output_dir=tmp_path, progress=False)
    lrs = [json.loads(l)["lr"] for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(lrs) == total
    assert lrs[warm - 1] == pytest.approx(base)  # step `warm` (1-based) used the peak LR
    end = 0.5 * (1 + math.cos(math.pi * (total - 1 - warm) / (total - warm))) * base
    assert lrs[-1] == pytest.approx(end)


def test_pretraining_schedule_form_is_the_one_the_shipped_weights_used():
    """decay_during_warmup: the cosine runs from step 0 and the warm-up ramp multiplies it (mini pretraining)."""
    base, warm, total = 5e-4, 200, 3600
    for step in (0, 57, 199, 200, 1800, 3599):
        old = base * (min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
        assert warmup_cosine_lr(step, base, warm, total, decay_during_warmup=True) == old  # bit for bit
    assert warmup_cosine_lr(0, base, 0, total, decay_during_warmup=True) == base


def test_resume_mid_epoch_is_bitwise_identical(tmp_path):
    data, config = AugmentedSet(), cfg(epochs=2, checkpoint_every=3)  # 5 steps/epoch, 10 total
    full = finetune(tiny_classifier(), data, config, output_dir=tmp_path / "full", progress=False)

    with die_at_step(8):  # "killed" during step 8: mid-epoch 2, after the checkpoint at 6
        finetune(tiny_classifier(), data, config, output_dir=tmp_path / "cut", progress=False)
    assert latest_checkpoint(tmp_path / "cut").name == "step_00000006"
    resumed = finetune(tiny_classifier(), data, config, output_dir=tmp_path / "cut", resume=True, progress=False)
    assert_same_weights(full, resumed)  # bitwise
    steps = [json.loads(l)["step"] for l in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))  # the log is continuous, no duplicated rows


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {testdir!r})
    from helpers import tiny_classifier, AugmentedSet
    from test_finetune import cfg
    import wiseft_lib.finetune as ft
    real, n = ft.Trainer.step, [0]
    def step(self, x, y):
        n[0] += 1
        if n[0] == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, x, y)
    ft.Trainer.step = step
    ft.finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=2, checkpoint_every=3), output_dir={out!r}, progress=False)
""")


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    """A real SIGKILL mid-epoch (step 5 of 10, checkpoint at 3), then --resume."""
    out = tmp_path / "killed"
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(testdir=str(Path(__file__).parent), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert latest_checkpoint(out).name == "step_00000003"
    assert not (out / "finetuned.safetensors").exists()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same float summation order as the killed process
    try:
        config = cfg(epochs=2, checkpoint_every=3)
        resumed = finetune(tiny_classifier(), AugmentedSet(), config, output_dir=out, resume=True, progress=False)
        full = finetune(tiny_classifier(), AugmentedSet(), config, output_dir=tmp_path / "full", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert_same_weights(full, resumed, atol=1e-6)


def test_linear_mode_changes_only_the_head(tmp_path):
    clf = tiny_classifier()
    ft = finetune(clf, AugmentedSet(), cfg(mode="linear", lr=1e-2), progress=False, cache_dir=tmp_path,
                  feature_set=AugmentedSet(augment=False))
    for k, v in clf.image_encoder.state_dict().items():
        assert torch.equal(v, ft.image_encoder.state_dict()[k]), k
    assert not torch.equal(clf.classification_head.weight, ft.classification_head.weight)
    assert ft.meta["finetune"]["mode"] == "linear"
    assert list(tmp_path.glob("features-*.safetensors"))  # trained on cached features


def test_checkpoints_load_with_imageclassifier_and_open_clip(tmp_path, tiny_registered):
    ft = finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=1), output_dir=tmp_path, progress=False)
    loaded = ImageClassifier.load(tmp_path / "finetuned.safetensors")
    assert_same_weights(ft, loaded)
    assert loaded.meta["finetune"]["batch_size"] == 8
    step_dir = latest_checkpoint(tmp_path)
    assert_same_weights(ft, ImageClassifier.load(step_dir / "model.safetensors"))
    # the image tower loads into a plain open_clip model (keys image_encoder.* == visual.*)
    sd = load_file(str(tmp_path / "finetuned.safetensors"))
    clip = open_clip.create_model(tiny_registered, pretrained=None)
    clip.visual.load_state_dict({k[len("image_encoder."):]: v for k, v in sd.items() if k.startswith("image_encoder.")})
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(clip.encode_image(x), ft.encode(x))
    state = torch.load(step_dir / "train_state.pt", weights_only=True)  # plain tensors and dicts only
    assert {"optimizer", "scheduler", "scaler", "config", "step", "epoch", "rng"} <= state.keys()


class NaNAfter(Dataset):
    """Finite images for the first `good` fetches, then NaN (num_workers=0, so fetch order = step order)."""

    def __init__(self, good: int):
        self.inner, self.good, self.calls = AugmentedSet(), good, 0

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        self.calls += 1
        x, y = self.inner[i]
        return (x * float("nan") if self.calls > self.good else x), y


def test_nan_loss_stops_and_names_the_step(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"at step 3 .*Lower the learning rate"):
        finetune(tiny_classifier(), NaNAfter(good=16), cfg(log_every=100, checkpoint_every=100),
                 output_dir=tmp_path, progress=False)
    assert not (tmp_path / "finetuned.safetensors").exists()


def test_resume_guards(tmp_path):
    finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=1), output_dir=tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="resume"):
        finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=1), output_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="lr: checkpoint"):
        finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=1, lr=1e-4), output_dir=tmp_path, resume=True,
                 progress=False)
    fresh = finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=1), output_dir=tmp_path / "new", resume=True,
                     progress=False)  # --resume with nothing to resume starts from scratch
    assert fresh.meta["finetune"]["total_steps"] == 5


def test_grad_accumulation_matches_full_batch():
    a = finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=1), progress=False)
    b = finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=1, grad_accum_steps=2), progress=False)
    assert_same_training(a, b, atol=1e-6)


def test_grad_accumulation_matches_full_batch_with_the_l2_penalty_and_distillation():
    recipe = dict(epochs=1, l2_to_init=1.0, distill=0.5)
    a = finetune(tiny_classifier(), AugmentedSet(), cfg(**recipe), progress=False)
    b = finetune(tiny_classifier(), AugmentedSet(), cfg(grad_accum_steps=2, **recipe), progress=False)
    assert_same_training(a, b, atol=1e-6)


def test_grad_checkpointing_gives_the_same_model():
    a = finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=1), progress=False)
    b = finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=1, grad_checkpointing=True), progress=False)
    assert_same_weights(a, b, atol=1e-6)
    assert not b.image_encoder.transformer.grad_checkpointing  # switched off on the returned model


def test_cli_flags_build_the_config():
    args = build_finetune_parser().parse_args([
        "--model", "wiseft-mini", "--train-dataset", "mini-photo", "--output-dir", "o", "--mode", "linear",
        "--lr", "1e-4", "--weight-decay", "0", "--warmup-steps", "7", "--epochs", "3", "--batch-size", "64",
        "--label-smoothing", "0.1", "--precision", "bf16", "--seed", "4", "--resume", "--checkpoint-every", "50"])
    c = config_from_args(args)
    assert (c.mode, c.lr, c.weight_decay, c.warmup_steps, c.epochs, c.batch_size) == ("linear", 1e-4, 0, 7, 3, 64)
    assert (c.label_smoothing, c.precision, c.seed, c.checkpoint_every) == (0.1, "bf16", 4, 50) and args.resume
    d = config_from_args(build_finetune_parser().parse_args(
        ["--model", "m", "--train-dataset", "d", "--output-dir", "o"]))
    assert d == FinetuneConfig()  # CLI defaults are the paper's recipe
    assert (d.lr, d.weight_decay, d.warmup_steps, d.epochs, d.grad_clip, d.betas, d.eps) == \
        (3e-5, 0.1, 500, 10, 1.0, (0.9, 0.999), 1e-8)
