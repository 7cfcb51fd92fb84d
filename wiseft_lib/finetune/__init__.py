"""Fine-tuning engine: end-to-end or linear-classifier ("LC (ours)"), the paper's recipe by default.

    from wiseft_lib.finetune import FinetuneConfig, finetune
    ft = finetune(zeroshot_classifier, train_set, FinetuneConfig(epochs=10), output_dir="runs/e2e")

    # the same from a shell, on one process, or on 8 GPUs with torchrun:
    python -m wiseft_lib.finetune --model ViT-B-16 --pretrained openai --train-dataset imagenet \\
        --data-root /data --output-dir runs/b16-e2e
    torchrun --nproc_per_node 8 -m wiseft_lib.finetune ...same flags... [--resume]

Recipe (paper, Settings): AdamW (0.9, 0.999, eps 1e-8) with weight decay 0.1 on every parameter
(as the official code), LR 3e-5 with 500 linear warm-up steps then cosine decay to zero over all
steps, grad-norm clip 1.0, 10 epochs, global batch 512, cross-entropy with optional label
smoothing. The head starts from the zero-shot head and image features are L2-normalised by it.

Engineering: bf16 autocast on GPUs that support it (fp16 + grad scaler otherwise), fp32 on
CPU; fused AdamW (GPU and CPU) where available; optional ``torch.compile`` and gradient checkpointing;
gradient accumulation; DDP under ``torchrun`` (NCCL on GPUs, gloo on CPUs) with rank-0-only
writes; ``batch_size`` is the *global* batch, so 1 process and N processes consume the same
global batches. Checkpoints (every ``checkpoint_every`` steps and at each epoch end) are
written atomically as ``checkpoints/step_XXXXXXXX/`` holding ``model.safetensors`` +
``model.json`` (the :meth:`ImageClassifier.save` format) and ``train_state.pt`` (plain tensors
and dicts: optimizer, scheduler, scaler, config, step, epoch, data position, RNG states; read
with ``weights_only=True``). Data augmentation is seeded per (seed, epoch, example), so a run
resumed mid-epoch replays exactly the batches and augmentations of the uninterrupted run.
Per-step loss / LR / images-per-second go to ``log.jsonl``; a NaN or inf loss stops the run
naming the step. The final model is ``finetuned.safetensors`` (+ ``.json``).
"""
from wiseft_lib.core.device import cleanup_distributed
from wiseft_lib.finetune.checkpoint import latest_checkpoint, trajectory
from wiseft_lib.finetune.cli import (
    add_finetune_arguments,
    build_finetune_parser,
    config_from_args,
    main,
    run_finetune_from_args,
)
from wiseft_lib.finetune.config import MODES, FinetuneConfig, NonFiniteLossError, RunExistsError
from wiseft_lib.finetune.engine import Trainer, finetune, make_optimizer
from wiseft_lib.finetune.schedule import WarmupCosineSchedule, warmup_cosine_lr

__all__ = [
    "MODES",
    "FinetuneConfig",
    "NonFiniteLossError",
    "RunExistsError",
    "Trainer",
    "finetune",
    "make_optimizer",
    "warmup_cosine_lr",
    "WarmupCosineSchedule",
    "latest_checkpoint",
    "trajectory",
    "cleanup_distributed",
    "add_finetune_arguments",
    "run_finetune_from_args",
    "build_finetune_parser",
    "config_from_args",
    "main",
]
