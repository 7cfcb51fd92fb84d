"""``wiseft-mini``: a small open_clip CLIP pretrained contrastively on captioned Fashion-MNIST.

The model is a plain open_clip ``CLIP`` built from ``assets/wiseft-mini.json`` (ViT 28 px,
patch 4; a 2-layer text transformer). Its tokenizer is open_clip's BPE tokenizer remapped onto
the few dozen tokens the captions use (end-of-text keeps the largest id, since the text tower
pools at the arg-max token), so the token embedding stays small.

Pretraining data: the pretraining pool of Fashion-MNIST train (see :mod:`wiseft_lib.data.mini`)
rendered on the fly in every style, with captions such as "a sketch of a sneaker.". 30% of
each confusable class (shirt vs T-shirt, sneaker vs sandal ...), a visually coherent subset, is
always captioned as its neighbour, as web text uses some words loosely. The zero-shot model inherits
that systematic confusion in every style, so it is good but not ID-optimal, and what fine-tuning
fixes on photos is knowledge that carries to the other styles: the mechanism behind WiSE-FT's gains.
(Independent random caption noise instead blurs the features and leaves nothing that transfers.)

    wiseft pretrain-mini --out outputs/mini/pretrain/wiseft-mini.safetensors   # ~20 min on 2 cores
    wiseft pretrain-mini --install-as fmnist     # replace the shipped weights (only when you mean it)
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from open_clip.loss import ClipLoss
from safetensors.torch import save_file

from wiseft_lib import __version__
from wiseft_lib.core import counters
from wiseft_lib.core.files import atomic_path, atomic_write_json
from wiseft_lib.core.mini_tokenizer import (  # noqa: F401  (caption_corpus, build_vocab: re-exported)
    CONTEXT_LENGTH,
    VOCAB_PATH,
    MiniTokenizer,
    build_vocab,
    caption_corpus,
)
from wiseft_lib.core.models import PACKAGE_MODELS, WEIGHTS, create_model
from wiseft_lib.data.fashion_mnist import CLASSNAMES, load_fashion_mnist
from wiseft_lib.data.mini import CAPTIONS, CONFUSABLE_GROUPS, RENDERERS, split_indices
from wiseft_lib.finetune.schedule import WarmupCosineSchedule
from wiseft_lib.progress import progress_bar

ASSETS = Path(__file__).parent / "assets"
CONFIG_PATH = ASSETS / "wiseft-mini.json"
MEAN, STD = 0.5, 0.5  # must match wiseft_lib.core.models.PACKAGE_PREPROCESS


def model_config(vocab_size: int, width: int = 128, layers: int = 4) -> dict:
    """The open_clip config dict of ``wiseft-mini``."""
    return {
        "embed_dim": width,
        "vision_cfg": {"image_size": 28, "layers": layers, "width": width, "patch_size": 4, "head_width": 32},
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": vocab_size, "width": 128,
                     "heads": 4, "layers": 2},
    }


def write_assets() -> None:
    """(Re)write the frozen vocabulary and the model config; run when captions change."""
    vocab = build_vocab()
    atomic_write_json(VOCAB_PATH, {"bpe_ids": vocab, "corpus_size": len(caption_corpus())})
    atomic_write_json(CONFIG_PATH, model_config(MiniTokenizer(vocab).vocab_size))


@dataclass
class PretrainConfig:
    steps: int = 3600
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 200
    caption_noise: float = 0.3  # share of captions naming a confusable class instead
    # "random": each caption independently names a confusable class with that probability (resampled every
    # step); "systematic": a fixed, visually coherent share of each class (one end of its first principal
    # component) is always captioned as the next class of its group, like a word web text uses loosely
    noise_mode: str = "systematic"
    style_weights: dict[str, float] = field(default_factory=lambda: {
        "photo": 0.25, "near": 0.1, "sketch": 0.15, "rendition": 0.2, "viewpoint": 0.15, "corruption": 0.15})
    seed: int = 0
    n_pool: Optional[int] = None  # use only the first n of the pretraining pool (tests)


def _caption_tokens(tokenizer: MiniTokenizer) -> dict[str, torch.Tensor]:
    """Per style: tokens [n_templates, n_classes, ctx] of every caption."""
    return {s: torch.stack([tokenizer([t.format(c) for c in CLASSNAMES]) for t in ts])
            for s, ts in CAPTIONS.items()}


def _noisy_labels(labels: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    out = labels.clone()
    flip = torch.rand(len(labels), generator=g) < p
    for group in CONFUSABLE_GROUPS:
        grp = torch.tensor(group)
        for i in torch.nonzero(flip & torch.isin(labels, grp)).flatten().tolist():
            others = grp[grp != labels[i]]
            out[i] = others[torch.randint(len(others), (1,), generator=g)].item()
    return out


def systematic_names(pool_x: torch.Tensor, pool_y: torch.Tensor, share: float) -> torch.Tensor:
    """Per-image caption class: ``share`` of each confusable class, the images at one end of the class's
    first principal component in pixel space, is named as the next class of its group.

    Deterministic given torch's global seed (pretraining sets it from ``PretrainConfig.seed``)."""
    named = pool_y.clone()
    flat = pool_x.flatten(1)
    for group in CONFUSABLE_GROUPS:
        for i, c in enumerate(group):
            idx = torch.nonzero(pool_y == c).flatten()
            x = flat[idx] - flat[idx].mean(0)
            # randomized PCA: draws from torch's global RNG, which pretraining seeds first, so the
            # subsets (and which end of the component is picked) are fixed by the pretraining seed
            _, _, v = torch.pca_lowrank(x, q=1, center=False)
            score = (x @ v[:, 0]).flatten()
            picked = idx[torch.argsort(score, descending=True)[: int(round(share * len(idx)))]]
            named[picked] = group[(i + 1) % len(group)]
    return named


class _CaptionedBatches:
    """Seeded batches of the pretraining pool: each image rendered in a random style, with a caption."""

    def __init__(self, config: PretrainConfig, root: Optional[str]):
        if config.noise_mode not in ("random", "systematic"):
            raise ValueError(f"noise_mode must be 'random' or 'systematic', not {config.noise_mode!r}")
        self.config = config
        self.g = torch.Generator().manual_seed(config.seed)
        self.captions = _caption_tokens(MiniTokenizer())
        images, labels = load_fashion_mnist("train", root)
        pool = split_indices()["pretrain"][: config.n_pool]
        self.pool_x = torch.from_numpy(np.array(images[pool])).float().div(255).unsqueeze(1)
        self.pool_y = torch.from_numpy(labels[pool])
        self.fixed_names = (systematic_names(self.pool_x, self.pool_y, config.caption_noise)
                            if config.noise_mode == "systematic" else None)
        self.styles = list(config.style_weights)
        self.weights = torch.tensor([config.style_weights[s] for s in self.styles])

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images [B, 3, 28, 28] and caption tokens [B, CONTEXT_LENGTH]."""
        cfg, g, n = self.config, self.g, self.config.batch_size
        idx = torch.randint(len(self.pool_y), (n,), generator=g)
        style_of = torch.multinomial(self.weights, n, replacement=True, generator=g)
        x = torch.empty(n, 3, 28, 28)
        text = torch.empty(n, CONTEXT_LENGTH, dtype=torch.long)
        y = self.pool_y[idx]
        named = self.fixed_names[idx] if self.fixed_names is not None else _noisy_labels(y, cfg.caption_noise, g)
        for si, style in enumerate(self.styles):
            sel = torch.nonzero(style_of == si).flatten()
            if len(sel) == 0:
                continue
            x[sel] = RENDERERS[style](self.pool_x[idx[sel]], g)
            tmpl = torch.randint(self.captions[style].shape[0], (len(sel),), generator=g)
            text[sel] = self.captions[style][tmpl, named[sel]]
        return (x - MEAN) / STD, text


def _contrastive_step(model, loss_fn: ClipLoss, x: torch.Tensor, text: torch.Tensor, device: str) -> torch.Tensor:
    img_f = model.encode_image(x.to(device), normalize=True)
    # ~200 distinct captions exist, so encode each distinct one once per step (same loss, less work)
    uniq, inverse = torch.unique(text, dim=0, return_inverse=True)
    txt_f = model.encode_text(uniq.to(device), normalize=True)[inverse.to(device)]
    return loss_fn(img_f, txt_f, model.logit_scale.exp())


def pretrain_mini_clip(config: PretrainConfig = PretrainConfig(), out_path: Optional[str | Path] = None,
                       root: Optional[str] = None, device: str = "cpu", progress: bool = True):
    """Train ``wiseft-mini`` from scratch; returns ``(model, per-step losses)``.

    Weights (safetensors + JSON sidecar with the recipe) are written to ``out_path`` if given.
    """
    torch.manual_seed(config.seed)
    model, _, _ = create_model("wiseft-mini", pretrained="random", device=device)
    model.train()
    batches = _CaptionedBatches(config, root)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    schedule = WarmupCosineSchedule(opt, config.lr, config.warmup_steps, config.steps, decay_during_warmup=True)
    loss_fn = ClipLoss()
    log: list[float] = []
    t0 = time.time()
    bar = progress_bar(range(config.steps), desc="pretrain wiseft-mini", unit="step", show=progress)
    for step in bar:
        schedule.set_step(step)
        loss = _contrastive_step(model, loss_fn, *batches.next(), device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        counters.add("pretrain_steps")
        counters.add("pretrain_images", config.batch_size)
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        log.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(log[-10:]):.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
    model.eval()
    if out_path is not None:
        save_pretrained(model, out_path, config, {"loss_last50": float(np.mean(log[-50:])),
                                                  "seconds": round(time.time() - t0, 1)})
    return model, log


def save_pretrained(model: torch.nn.Module, out_path: str | Path, config: PretrainConfig, stats: dict) -> Path:
    """Weights as safetensors (open_clip loads them) plus a JSON sidecar with the recipe."""

    out_path = Path(out_path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_path) as tmp:
        save_file(tensors, str(tmp))
    atomic_write_json(out_path.with_suffix(".json"), {
        "model_name": "wiseft-mini", "library_version": __version__,
        "pretrain_config": asdict(config), "stats": stats,
        "model_config": json.loads(CONFIG_PATH.read_text()),
    })
    return out_path


DEFAULT_OUT = "outputs/mini/pretrain/wiseft-mini-fmnist-seed{seed}.safetensors"


def add_pretrain_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``wiseft pretrain-mini`` flags (the recipe's defaults are the shipped weights')."""
    d = PretrainConfig()
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--caption-noise", type=float, default=d.caption_noise)
    p.add_argument("--noise-mode", choices=("random", "systematic"), default=d.noise_mode)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--n-pool", type=int, default=None, help="use only the first N pretraining images")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=None, help=f"weights file (default: {DEFAULT_OUT.format(seed='SEED')})")
    p.add_argument("--install-as", default=None, metavar="TAG",
                   help="write into the installed package as wiseft-mini tag TAG (e.g. fmnist), replacing the "
                        "weights it ships; only when you mean it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_from_args(a: argparse.Namespace) -> Path:
    """Pretrain with the flags of :func:`add_pretrain_arguments`; return the weights file written."""

    cfg = PretrainConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr, warmup_steps=a.warmup_steps,
                         caption_noise=a.caption_noise, noise_mode=a.noise_mode, seed=a.seed, n_pool=a.n_pool)
    if a.install_as is not None:
        tags = PACKAGE_MODELS["wiseft-mini"]
        if a.install_as not in tags:
            raise ValueError(f"--install-as must name a wiseft-mini tag ({', '.join(tags)}), got {a.install_as!r}")
        out = WEIGHTS / tags[a.install_as]
    else:
        out = Path(a.out or DEFAULT_OUT.format(seed=a.seed))
    pretrain_mini_clip(cfg, out_path=out, root=a.data_root, progress=not a.no_progress)
    print(f"wrote {out}")
    return out


def main(argv: Optional[list[str]] = None) -> None:
    p = add_pretrain_arguments(argparse.ArgumentParser(
        description="Pretrain the wiseft-mini CLIP on captioned Fashion-MNIST."))
    run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    main()
