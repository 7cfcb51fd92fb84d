"""``wiseft finetune`` / ``python -m wiseft_lib.finetune`` / ``torchrun -m wiseft_lib.finetune``: flags -> config -> run."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.data import Subset

from wiseft_lib.core.device import cleanup_distributed, dist_info, setup_distributed
from wiseft_lib.core.models import ImageClassifier, create_model
from wiseft_lib.core.zeroshot import zeroshot_classifier
from wiseft_lib.data import get_dataset
from wiseft_lib.data.common import dataset_labels
from wiseft_lib.data.kshot import kshot_indices
from wiseft_lib.finetune.config import MODES, FinetuneConfig
from wiseft_lib.finetune.engine import finetune

__all__ = ["add_finetune_arguments", "build_finetune_parser", "config_from_args", "run_finetune_from_args", "main"]

def add_finetune_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``wiseft finetune`` flags (model, data, output, every recipe value) to ``parser``."""
    d = FinetuneConfig()
    g = parser.add_argument_group("model and data")
    g.add_argument("--model", required=True, help="open_clip model name, e.g. ViT-B-16, or wiseft-mini")
    g.add_argument("--pretrained", default=None, help="pretrained tag (openai, ...) or weights file")
    g.add_argument("--train-dataset", required=True, help="dataset registry name (wiseft_lib.data.list_datasets())")
    g.add_argument("--train-split", default="train", help="split of the training dataset (default: train)")
    g.add_argument("--data-root", default=None, help="data folder (default: $WISEFT_DATA)")
    g.add_argument("--output-dir", required=True, help="checkpoints, log.jsonl, zeroshot/finetuned models")
    g.add_argument("--cache-dir", default=None, help="feature cache folder for linear mode (default: OUTPUT_DIR/cache)")
    g.add_argument("--k-shot", type=int, default=None, help="train on k examples per class (seeded by --seed)")
    g.add_argument("--n-train", type=int, default=None, help="dataset loader's n_train (e.g. the mini pool size)")
    g.add_argument("--device", default=None, help="torch device (default: cuda:LOCAL_RANK if available, else cpu)")
    r = parser.add_argument_group("recipe (defaults: the paper's)")
    r.add_argument("--mode", choices=MODES, default=d.mode)
    r.add_argument("--epochs", type=int, default=d.epochs)
    r.add_argument("--lr", type=float, default=d.lr)
    r.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch over all processes")
    r.add_argument("--weight-decay", type=float, default=d.weight_decay)
    r.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    r.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    r.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max grad norm; 0 disables")
    r.add_argument("--beta1", type=float, default=d.betas[0])
    r.add_argument("--beta2", type=float, default=d.betas[1])
    r.add_argument("--eps", type=float, default=d.eps)
    r.add_argument("--seed", type=int, default=d.seed)
    b = parser.add_argument_group("the paper's baselines (Figures 3, 13)")
    b.add_argument("--optimizer", choices=("adamw", "adam", "sgd"), default=d.optimizer,
                   help="adam: the paper's Adam without weight decay (set --weight-decay 0)")
    b.add_argument("--momentum", type=float, default=d.momentum, help="sgd only")
    b.add_argument("--l2-to-init", type=float, default=d.l2_to_init, help="lambda of lambda*||theta - theta_0||^2")
    b.add_argument("--distill", type=float, default=d.distill,
                   help="a of (1-a)*CE(labels) + a*CE(zero-shot predictions)")
    b.add_argument("--ema-decay", type=float, default=d.ema_decay, help="> 0: the result is the weights' EMA")
    b.add_argument("--ema-start", choices=("debiased", "zero-shot"), default=d.ema_start)
    b.add_argument("--stop-after-epochs", type=int, default=d.stop_after_epochs,
                   help="early stopping: end after this many epochs of the --epochs schedule")
    b.add_argument("--l1", type=float, default=d.l1, help="lambda of lambda*sum|theta| (linear classifiers)")
    b.add_argument("--head-init", choices=("zero-shot", "random"), default=d.head_init)
    e = parser.add_argument_group("engineering")
    e.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=d.precision)
    e.add_argument("--num-workers", type=int, default=d.num_workers)
    e.add_argument("--grad-accum-steps", type=int, default=d.grad_accum_steps)
    e.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps (epoch ends always)")
    e.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints)
    e.add_argument("--log-every", type=int, default=d.log_every)
    e.add_argument("--compile", action="store_true", help="torch.compile the model")
    e.add_argument("--grad-checkpointing", action="store_true", help="trade compute for memory (large models)")
    e.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def build_finetune_parser() -> argparse.ArgumentParser:
    return add_finetune_arguments(argparse.ArgumentParser(
        prog="wiseft finetune", description="Fine-tune a zero-shot CLIP classifier (end-to-end or linear)."))


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(
        mode=args.mode, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, label_smoothing=args.label_smoothing,
        grad_clip=args.grad_clip, betas=(args.beta1, args.beta2), eps=args.eps, seed=args.seed,
        precision=args.precision, num_workers=args.num_workers, checkpoint_every=args.checkpoint_every,
        compile=args.compile, grad_checkpointing=args.grad_checkpointing, log_every=args.log_every,
        grad_accum_steps=args.grad_accum_steps, keep_checkpoints=args.keep_checkpoints,
        optimizer=args.optimizer, momentum=args.momentum, l2_to_init=args.l2_to_init, distill=args.distill,
        ema_decay=args.ema_decay, ema_start=args.ema_start, stop_after_epochs=args.stop_after_epochs, l1=args.l1,
        head_init=args.head_init,
    )


def run_finetune_from_args(args: argparse.Namespace) -> ImageClassifier:
    """Build the zero-shot classifier from ``args`` and fine-tune it (what ``wiseft finetune`` runs).

    Writes ``OUTPUT_DIR/zeroshot.safetensors`` (the WiSE-FT alpha=0 endpoint) and
    ``OUTPUT_DIR/finetuned.safetensors`` (alpha=1), both loadable by ``ImageClassifier.load``.
    """

    config = config_from_args(args)
    rank, world, device = setup_distributed(torch.device(args.device) if args.device else None)
    out = Path(args.output_dir)
    clip_model, train_tf, eval_tf = create_model(args.model, args.pretrained, device=device)
    extra = {"n_train": args.n_train} if args.n_train else {}

    def load(transform):
        return get_dataset(args.train_dataset, root=args.data_root, split=args.train_split,
                           transform=transform, **extra)

    train = load(train_tf)
    train_ds = train.dataset
    feat_ds = load(eval_tf).dataset if config.mode == "linear" else None
    if args.k_shot:
        idx = kshot_indices(dataset_labels(train_ds), args.k_shot, args.seed).tolist()
        train_ds = Subset(train_ds, idx)
        feat_ds = Subset(feat_ds, idx) if feat_ds is not None else None
    classifier = zeroshot_classifier(clip_model, args.model, train.classnames, train.templates, args.pretrained)
    classifier.meta.update(train_dataset=args.train_dataset, train_split=args.train_split,
                           k_shot=args.k_shot, n_train=args.n_train)
    del clip_model
    if rank == 0 and not (out / "zeroshot.safetensors").exists():
        classifier.save(out / "zeroshot.safetensors")
    feature_key = {"dataset": args.train_dataset, "split": args.train_split, "data_root": str(args.data_root),
                   "pretrained": args.pretrained, "model": args.model, "preprocess": repr(eval_tf),
                   "n_train": args.n_train, "k_shot": args.k_shot, "k_shot_seed": args.seed if args.k_shot else None}
    try:
        return finetune(classifier, train_ds, config, output_dir=out, resume=args.resume, device=device,
                        feature_set=feat_ds, cache_dir=args.cache_dir or out / "cache", feature_key=feature_key,
                        progress=not args.no_progress)
    finally:
        cleanup_distributed()


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = build_finetune_parser().parse_args(argv)
    try:
        model = run_finetune_from_args(args)
    except (ValueError, FileNotFoundError, KeyError) as err:  # includes NaN loss and existing runs
        print(f"wiseft finetune: error: {err}", file=sys.stderr)
        return 2
    if dist_info()[0] == 0:
        print(f"fine-tuned model: {Path(args.output_dir) / 'finetuned.safetensors'} "
              f"({model.meta['finetune']['total_steps']} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
