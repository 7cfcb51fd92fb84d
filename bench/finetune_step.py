"""Benchmark: the fine-tuning engine vs a bare PyTorch loop, and a cached LC alpha sweep vs one eval pass.

    .venv/bin/python bench/finetune_step.py            # CPU, small ViT, about a minute on an idle 2-core machine
    .venv/bin/python bench/finetune_step.py --device cuda --width 768 --layers 12 --image-size 224 --batch 128

1. Engine overhead: ``wiseft_lib.finetune.finetune`` (end-to-end, its whole loop: seeded data
   loading, schedule, AMP plumbing, grad clipping, step log with NaN check) against a bare loop
   over the same model, data, batch size and optimizer (AdamW from the same factory, same LR
   schedule formula, same clipping). Both run the same number of steps.

Each ratio is the median, over ``--rounds`` back-to-back pairs (order alternating), of the pair's
time ratio. On CPU it uses this process's CPU time with one thread (``--threads``), which other
jobs on a shared machine disturb far less than wall time; on GPUs, wall time.
2. LC alpha sweep: evaluating the 11 WiSE-FT LC models alpha = 0, 0.1, ..., 1 from one cached
   feature pass (``wiseft_lib.core.features``; heads interpolated and applied as
   ``normalize(f) @ W.T + b``) against one ordinary evaluation pass (images -> classifier).

The last two lines are ``ratio_engine_vs_bare: X`` (target <= 1.05) and
``ratio_lc_sweep_vs_one_pass: Y`` (target <= 1.2).
"""
from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import tempfile
import time

import open_clip
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from wiseft_lib.core.features import extract_features
from wiseft_lib.core.models import ClassificationHead, ImageClassifier
from wiseft_lib.finetune import FinetuneConfig, finetune, make_optimizer, warmup_cosine_lr


def build(args: argparse.Namespace, n_classes: int) -> ImageClassifier:
    torch.manual_seed(0)
    clip = open_clip.model.CLIP(
        embed_dim=args.width // 2,
        vision_cfg=dict(image_size=args.image_size, layers=args.layers, width=args.width, patch_size=args.patch,
                        head_width=64),
        text_cfg=dict(context_length=8, vocab_size=50, width=32, heads=2, layers=1))
    head = ClassificationHead(torch.randn(n_classes, args.width // 2) * 10)
    return ImageClassifier(clip.visual, head, {"model_name": "bench"})


def bare_loop(clf: ImageClassifier, ds: TensorDataset, config: FinetuneConfig, device: torch.device) -> None:
    """The textbook loop: same optimizer, schedule formula and clipping, nothing else."""
    model = copy.deepcopy(clf).float().to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, config, device)
    loader = DataLoader(ds, batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    total = config.epochs * len(loader)
    step = 0
    for _ in range(config.epochs):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            for g in opt.param_groups:
                g["lr"] = warmup_cosine_lr(step, config.lr, config.warmup_steps, total)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            step += 1
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one call of ``fn``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - w, time.process_time() - c


def clock(t: tuple[float, float], device: torch.device) -> float:
    """The ratios' clock: CPU time on CPU (less sensitive to other jobs on a shared machine),
    wall time on GPUs (where CPU time misses the device's work)."""
    return t[1] if device.type == "cpu" else t[0]


def paired(fa, fb, rounds: int, device: torch.device) -> tuple[list, list, float]:
    """Time ``fa`` and ``fb`` back to back ``rounds`` times (order alternating); return both
    timing lists and the median of the per-pair ratios (a load burst hits both of a pair)."""
    ta, tb, ratios = [], [], []
    for r in range(rounds):
        if r % 2:
            b_, a_ = timed(fb), timed(fa)
        else:
            a_, b_ = timed(fa), timed(fb)
        ta.append(a_)
        tb.append(b_)
        ratios.append(clock(a_, device) / clock(b_, device))
    return ta, tb, statistics.median(ratios)


def fastest(times: list[tuple[float, float]], device: torch.device) -> tuple[float, float]:
    return min(times, key=lambda t: clock(t, device))


def bench_engine(args: argparse.Namespace, device: torch.device):
    n_classes = 10
    clf = build(args, n_classes)
    g = torch.Generator().manual_seed(0)
    n = args.batch * args.steps
    ds = TensorDataset(torch.randn(n, 3, args.image_size, args.image_size, generator=g),
                       torch.randint(0, n_classes, (n,), generator=g))
    config = FinetuneConfig(epochs=1, batch_size=args.batch, lr=3e-5, warmup_steps=args.steps // 4,
                            precision="fp32", log_every=10)
    engine = lambda: finetune(clf, ds, config, device=device, progress=False)  # noqa: E731
    bare = lambda: bare_loop(clf, ds, config, device)  # noqa: E731
    engine(), bare()  # warm-up (allocator, kernels, thread pools)
    te, tb, ratio = paired(engine, bare, args.rounds, device)
    return fastest(te, device), fastest(tb, device), ratio


def bench_lc_sweep(args: argparse.Namespace, device: torch.device):
    n_classes = 10
    zs = build(args, n_classes).to(device).eval()
    ft_head = ClassificationHead(zs.classification_head.weight.detach().cpu() + torch.randn(n_classes, args.width // 2),
                                 torch.randn(n_classes)).to(device)
    g = torch.Generator().manual_seed(1)
    ds = TensorDataset(torch.randn(args.eval_n, 3, args.image_size, args.image_size, generator=g),
                       torch.randint(0, n_classes, (args.eval_n,), generator=g))
    alphas = [i / 10 for i in range(11)]

    def one_pass(model: torch.nn.Module) -> float:
        correct = 0
        with torch.no_grad():
            for x, y in DataLoader(ds, batch_size=args.eval_batch):
                correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
        return correct / len(ds)

    def sweep() -> list[float]:
        cache = tempfile.mkdtemp()
        try:  # a cold cache: the feature pass and the cache write are both counted
            f, y = extract_features(zs.image_encoder, ds, cache_dir=cache, batch_size=args.eval_batch,
                                    cache_key_parts={"dataset": "bench"}, device=device, precision="fp32",
                                    progress=False)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        f = F.normalize(f.to(device), dim=-1)
        y = y.to(device)
        w0, b0 = zs.classification_head.weight.detach(), zs.classification_head.bias.detach()
        w1, b1 = ft_head.weight.detach(), ft_head.bias.detach()
        accs = []
        for a in alphas:
            logits = f @ torch.lerp(w0, w1, a).T + torch.lerp(b0, b1, a)
            accs.append((logits.argmax(1) == y).float().mean().item())
        return accs

    def from_scratch() -> None:
        work = copy.deepcopy(zs)
        for a in alphas:
            with torch.no_grad():
                work.classification_head.weight.copy_(torch.lerp(zs.classification_head.weight, ft_head.weight, a))
                work.classification_head.bias.copy_(torch.lerp(zs.classification_head.bias, ft_head.bias, a))
            one_pass(work)

    # the sweep's alpha=0 model is the zero-shot model: check the cached path agrees with a full pass
    assert abs(sweep()[0] - one_pass(zs)) < 1e-9
    ts, t1, ratio = paired(sweep, lambda: one_pass(zs), args.rounds, device)
    return fastest(ts, device), fastest(t1, device), timed(from_scratch), ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eval-n", type=int, default=1024)
    p.add_argument("--eval-batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: no OpenMP spin-waiting, so CPU time is stable on a busy machine)")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device={device} threads={torch.get_num_threads()} ViT width={args.width} layers={args.layers} "
          f"image={args.image_size}/{args.patch} batch={args.batch} steps={args.steps} rounds={args.rounds}")

    te, tb, x = bench_engine(args, device)
    ts, t1, t11, y = bench_lc_sweep(args, device)
    k = 1 if device.type == "cpu" else 0  # which clock the ratios use (see clock())
    rows = [
        ("engine: finetune() loop", te, f"{te[k] / args.steps * 1e3:.1f} ms/step, {te[k] / tb[k]:.3f}x bare"),
        ("bare PyTorch loop", tb, f"{tb[k] / args.steps * 1e3:.1f} ms/step"),
        ("one eval pass (images -> logits)", t1, f"{args.eval_n} images"),
        ("LC sweep, 11 alphas, 1 cached feature pass", ts, f"{ts[k] / t1[k]:.3f}x one pass"),
        ("LC sweep, 11 alphas, from scratch", t11, f"{t11[k] / t1[k]:.2f}x one pass"),
    ]
    print(f"ratios: median over {args.rounds} back-to-back pairs of {'CPU' if k else 'wall'} time; "
          f"rows: the fastest round")
    print(f"{'what':<46}{'wall s':>9}{'CPU s':>9}  note")
    for name, (w, c), note in rows:
        print(f"{name:<46}{w:>9.3f}{c:>9.3f}  {note}")
    print(f"speed-up of the cached sweep over from-scratch: {t11[k] / ts[k]:.1f}x")
    print(f"ratio_engine_vs_bare: {x:.3f}")
    print(f"ratio_lc_sweep_vs_one_pass: {y:.3f}")


if __name__ == "__main__":
    main()
