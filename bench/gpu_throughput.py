"""GPU throughput: the package's fine-tuning engine and evaluation loop against bare PyTorch loops.

    .venv/bin/python bench/gpu_throughput.py                       # CUDA, open_clip ViT-B-16 at 224 px, random weights
    .venv/bin/python bench/gpu_throughput.py --batch 256 --steps 50
    .venv/bin/python bench/gpu_throughput.py --device cpu --tiny   # a tiny ViT on the CPU (a check: ~10 s)

Both comparisons run the same model, the same random images (a ``TensorDataset`` on the host, loaded
through a ``DataLoader`` with pinned memory on CUDA), the same batch size and the same number of images:

(a) training: ``wiseft_lib.finetune.finetune`` (end to end: copy of the model, optimizer set-up, seeded
    data loading, warm-up + cosine schedule, bf16 autocast, grad clipping, step log with NaN check)
    against the textbook loop (copy of the model, fused AdamW, the same schedule formula and clipping,
    bf16 autocast, cross-entropy) for ``--steps`` steps, after one short warm-up run of each.
(b) evaluation: ``wiseft_lib.core.evaluate.predict_logits`` over ``--eval-steps`` batches against
    ``with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16): model(x)`` over the same loader.

Each ratio is engine time / bare time (so ``bare images/s / engine images/s``): the median over
``--rounds`` back-to-back pairs (order alternating) of the pair's ratio; target <= 1.05 for both.
Wall time on GPUs, this process's CPU time on the CPU (stable on a shared machine). The
``*_model_only`` lines are the bare loop on one batch already on the device (no data loading): when
they are far above both loops, the run is bound by host-side data loading, not by the model.

The last lines are ``ratio_train_engine_vs_bare: X``, ``ratio_eval_engine_vs_bare: Y`` and
``all targets met: yes`` or ``all targets met: no (missed: ...)``.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from wiseft_lib.core.evaluate import predict_logits
from wiseft_lib.core.models import ClassificationHead, ImageClassifier
from wiseft_lib.finetune import FinetuneConfig, finetune, warmup_cosine_lr

TARGET = 1.05
N_CLASSES = 1000  # ImageNet's head
# A real open_clip architecture at a tiny size (the CPU check): registered like a user's own config.
TINY_NAME = "wiseft-bench-tiny"
TINY = {"embed_dim": 64,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


# ------------------------------------------------------------------------------------------ set-up
def build_classifier(name: str, image_size: int | None) -> ImageClassifier:
    """open_clip ``name`` with random weights (no download) and a random 1000-class head."""
    import open_clip

    from wiseft_lib.core.models import list_models

    list_models()  # registers the package's configs and $WISEFT_MODEL_CONFIGS
    torch.manual_seed(0)
    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "No pretrained weights loaded": random weights are the point
    try:
        kwargs = {"force_image_size": image_size} if image_size else {}
        clip = open_clip.create_model(name, pretrained=None, **kwargs)
    finally:
        quiet.setLevel(level)
    visual = clip.visual
    head = ClassificationHead(torch.randn(N_CLASSES, visual.output_dim) * 10)
    return ImageClassifier(visual, head, {"model_name": name, "pretrained": "random"})


def random_images(n: int, size: int, n_unique: int, seed: int) -> TensorDataset:
    """``n`` images (``n_unique`` distinct random ones, repeated: drawing gigabytes of noise is slow) and labels."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(min(n, n_unique), 3, size, size, generator=g)
    x = base.repeat((n + base.shape[0] - 1) // base.shape[0], 1, 1, 1)[:n].contiguous()
    return TensorDataset(x, torch.randint(0, N_CLASSES, (n,), generator=g))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call of ``fn``, device work included."""
    sync(device)
    w, c = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - w, time.process_time() - c


def clock(t: tuple[float, float], device: torch.device) -> float:
    """The clock the ratios use: wall time on GPUs, CPU time on the CPU."""
    return t[0] if device.type == "cuda" else t[1]


def paired(fa, fb, rounds: int, device: torch.device) -> tuple[float, float, float]:
    """Median seconds of ``fa`` and of ``fb`` over ``rounds`` back-to-back pairs (order alternating),
    and the median of the pairs' ratios ``fa / fb`` (a load burst hits both halves of a pair)."""
    ta, tb, ratios = [], [], []
    for r in range(rounds):
        if r % 2:
            b, a = timed(fb, device), timed(fa, device)
        else:
            a, b = timed(fa, device), timed(fb, device)
        ta.append(clock(a, device))
        tb.append(clock(b, device))
        ratios.append(ta[-1] / tb[-1])
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


# ------------------------------------------------------------------------------------------ training
def make_adamw(params, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    try:  # the fused kernel (CUDA; CPU since torch 2.4), as a careful hand-written loop would use
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def bare_train(clf: ImageClassifier, ds: TensorDataset, cfg: FinetuneConfig, device: torch.device) -> None:
    """The textbook loop: the same recipe (AdamW, schedule formula, clipping, autocast), nothing else."""
    model = copy.deepcopy(clf).float().to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_adamw(params, cfg.lr, cfg.weight_decay, device)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
    total = cfg.epochs * len(loader)
    bf16 = cfg.precision == "bf16"
    step = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        for g in opt.param_groups:
            g["lr"] = warmup_cosine_lr(step, cfg.lr, cfg.warmup_steps, total)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        step += 1
    loss.item()  # the engine checks its losses; the bare loop at least waits for the last one


def model_only_train(clf: ImageClassifier, batch: int, size: int, steps: int, bf16: bool,
                     device: torch.device) -> float:
    """Seconds for ``steps`` training steps on one batch already on the device (no data loading)."""
    model = copy.deepcopy(clf).float().to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_adamw(params, 3e-5, 0.1, device)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, N_CLASSES, (batch,), device=device)

    def run(n: int) -> None:
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x).float(), y)
            loss.backward()
            opt.step()

    run(2)
    return clock(timed(lambda: run(steps), device), device)


def bench_train(clf: ImageClassifier, args: argparse.Namespace, device: torch.device, precision: str) -> dict:
    n = args.batch * args.steps
    ds = random_images(n, args.image_size, 4 * args.batch, seed=0)
    cfg = FinetuneConfig(epochs=1, batch_size=args.batch, lr=3e-5, weight_decay=0.1,
                         warmup_steps=max(1, args.steps // 4), precision=precision, log_every=10,
                         num_workers=args.num_workers)
    warm_ds = TensorDataset(*ds[: args.batch * args.warmup])
    warm_cfg = FinetuneConfig(**{**cfg.to_dict(), "warmup_steps": 1})
    finetune(clf, warm_ds, warm_cfg, device=device, progress=False)  # kernels, allocator, cuDNN/cuBLAS choices
    bare_train(clf, warm_ds, warm_cfg, device)
    engine = lambda: finetune(clf, ds, cfg, device=device, progress=False)  # noqa: E731
    bare = lambda: bare_train(clf, ds, cfg, device)  # noqa: E731
    te, tb, ratio = paired(engine, bare, args.rounds, device)
    tm = model_only_train(clf, args.batch, args.image_size, args.steps, precision == "bf16", device)
    return {"engine": n / te, "bare": n / tb, "model_only": n / tm, "ratio": ratio}


# ------------------------------------------------------------------------------------------ evaluation
def bare_eval(model: torch.nn.Module, ds: TensorDataset, batch: int, workers: int, device: torch.device) -> None:
    loader = DataLoader(ds, batch_size=batch, shuffle=False, num_workers=workers, pin_memory=device.type == "cuda")
    outs = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for x, _ in loader:
            outs.append(model(x.to(device, non_blocking=True)))
    torch.cat(outs).float().cpu()


def bench_eval(clf: ImageClassifier, args: argparse.Namespace, device: torch.device) -> dict:
    model = copy.deepcopy(clf).float().to(device).eval()
    n = args.eval_batch * args.eval_steps
    ds = random_images(n, args.image_size, 2 * args.eval_batch, seed=1)
    warm = TensorDataset(*ds[: 2 * args.eval_batch])
    engine = lambda d=ds: predict_logits(model, d, batch_size=args.eval_batch, device=device,  # noqa: E731
                                         num_workers=args.num_workers, progress=False)
    bare = lambda d=ds: bare_eval(model, d, args.eval_batch, args.num_workers, device)  # noqa: E731
    engine(warm), bare(warm)
    te, tb, ratio = paired(engine, bare, args.rounds, device)
    x = torch.randn(args.eval_batch, 3, args.image_size, args.image_size, device=device)

    def model_only(k: int) -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            for _ in range(k):
                model(x)

    model_only(2)
    tm = clock(timed(lambda: model_only(args.eval_steps), device), device)
    return {"engine": n / te, "bare": n / tb, "model_only": n / tm, "ratio": ratio}


# ------------------------------------------------------------------------------------------ main
def describe(args: argparse.Namespace, device: torch.device, clf: ImageClassifier, precision: str) -> None:
    import open_clip

    import wiseft_lib

    print(f"machine: {socket.gethostname()} {platform.platform()} python {platform.python_version()} "
          f"cpus {os.cpu_count()}")
    print(f"torch {torch.__version__} (cuda {torch.version.cuda}) open_clip {open_clip.__version__} "
          f"wiseft_lib {wiseft_lib.__version__}")
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        print(f"device: {device} {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
              f"capability {p.major}.{p.minor}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    else:
        print(f"device: cpu, {torch.get_num_threads()} thread(s)")
    n_params = sum(p.numel() for p in clf.parameters())
    print(f"model: {args.model} (random weights) image {args.image_size} px, {n_params / 1e6:.1f} M parameters "
          f"(image tower + {N_CLASSES}-class head), precision {precision}")
    print(f"train: batch {args.batch} x {args.steps} steps ({args.batch * args.steps} images) after a "
          f"{args.warmup}-step warm-up; eval: batch {args.eval_batch} x {args.eval_steps} batches; "
          f"{args.rounds} round(s) of pairs; {args.num_workers} loader worker(s); clock: "
          f"{'wall' if device.type == 'cuda' else 'CPU'} time")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-16", help="open_clip model name (random weights; default ViT-B-16)")
    p.add_argument("--tiny", action="store_true",
                   help=f"a tiny open_clip ViT ({TINY_NAME}, registered here) with CPU-sized defaults: the check")
    p.add_argument("--image-size", type=int, default=None, help="pixels (default: the model's own, 224 for ViT-B-16)")
    p.add_argument("--batch", type=int, default=None, help="training batch (default 128; --tiny 32)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 30; --tiny 8)")
    p.add_argument("--warmup", type=int, default=3, help="steps of the untimed warm-up run of each loop")
    p.add_argument("--eval-batch", type=int, default=None, help="evaluation batch (default 256; --tiny 64)")
    p.add_argument("--eval-steps", type=int, default=None, help="evaluation batches (default 30; --tiny 8)")
    p.add_argument("--rounds", type=int, default=3, help="back-to-back pairs per comparison (median taken)")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers, both loops (default: 4 on "
                                                                 "CUDA, 0 on the CPU)")
    p.add_argument("--precision", choices=("bf16", "fp32"), default=None,
                   help="training precision (default: bf16 on CUDA, fp32 on the CPU)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--threads", type=int, default=1, help="CPU threads on the CPU (default 1)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device (use --device cpu --tiny for the CPU check)")
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    tiny = dict(batch=32, steps=8, eval_batch=64, eval_steps=8)
    full = dict(batch=128, steps=30, eval_batch=256, eval_steps=30)
    for key, value in (tiny if args.tiny else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.num_workers is None:
        args.num_workers = 4 if device.type == "cuda" else 0
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")

    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            import open_clip

            (Path(tmp) / f"{TINY_NAME}.json").write_text(json.dumps(TINY))
            open_clip.add_model_config(Path(tmp))
            args.model = TINY_NAME
        clf = build_classifier(args.model, args.image_size).to(device)  # copies are made on the device
    args.image_size = args.image_size or int(clf.image_encoder.image_size[0])
    describe(args, device, clf, precision)
    sys.stdout.flush()

    started = time.perf_counter()
    train = bench_train(clf, args, device, precision)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    evals = bench_eval(clf, args, device)
    print(f"(benchmark time {time.perf_counter() - started:.1f} s)")

    missed = []
    for what, r in (("train", train), ("eval", evals)):
        print(f"{what}_images_per_s_engine: {r['engine']:.1f}")
        print(f"{what}_images_per_s_bare: {r['bare']:.1f}")
        print(f"{what}_images_per_s_model_only: {r['model_only']:.1f}  (one batch on the device, no data loading)")
        ok = r["ratio"] <= TARGET
        print(f"ratio_{what}_engine_vs_bare: {r['ratio']:.3f}  (engine time / bare time; target <= {TARGET}: "
              f"{'met' if ok else 'MISSED'})")
        if not ok:
            missed.append(f"{what} {r['ratio']:.3f} > {TARGET}")
    print(f"all targets met: {'yes' if not missed else 'no (missed: ' + '; '.join(missed) + ')'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"train": train, "eval": evals, "target": TARGET,
                                               "model": args.model, "image_size": args.image_size,
                                               "batch": args.batch, "steps": args.steps,
                                               "device": str(device), "precision": precision}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
