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

    python -m wiseft_lib.mini_clip --out wiseft_lib/weights/wiseft-mini-fmnist.safetensors   # ~20 min, 2 cores
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from open_clip.loss import ClipLoss
from open_clip.tokenizer import SimpleTokenizer
from safetensors.torch import save_file
from tqdm.auto import tqdm

from wiseft_lib._io import atomic_path, atomic_write_json
from wiseft_lib.data.fashion_mnist import CLASSNAMES, load_fashion_mnist
from wiseft_lib.data.mini import CAPTIONS, CONFUSABLE_GROUPS, RENDERERS, MINI_TEMPLATES, split_indices

ASSETS = Path(__file__).parent / "assets"
CONFIG_PATH = ASSETS / "wiseft-mini.json"
VOCAB_PATH = ASSETS / "wiseft-mini-vocab.json"
CONTEXT_LENGTH = 16
MEAN, STD = 0.5, 0.5  # must match wiseft_lib.models.PACKAGE_PREPROCESS


def caption_corpus() -> list[str]:
    """Every caption and zero-shot prompt the mini model is meant to read."""
    texts = {t.format(c) for ts in CAPTIONS.values() for t in ts for c in CLASSNAMES}
    texts |= {t.format(c) for t in MINI_TEMPLATES for c in CLASSNAMES}
    return sorted(texts)


def build_vocab() -> list[int]:
    """Sorted BPE token ids used by :func:`caption_corpus` (the frozen vocabulary)."""
    bpe = SimpleTokenizer()
    return sorted({i for text in caption_corpus() for i in bpe.encode(text)})


class MiniTokenizer:
    """open_clip BPE tokens remapped onto a compact vocabulary.

    Ids: 0 pad, 1 start, 2 unknown, 3.. the vocabulary, last id end-of-text.
    """

    PAD, SOT, UNK = 0, 1, 2

    def __init__(self, vocab: Optional[Sequence[int]] = None, context_length: int = CONTEXT_LENGTH):
        if vocab is None:
            vocab = json.loads(VOCAB_PATH.read_text())["bpe_ids"]
        self.bpe = SimpleTokenizer()
        self.context_length = context_length
        self.lookup = {bpe_id: 3 + i for i, bpe_id in enumerate(vocab)}
        self.eot = 3 + len(vocab)
        self.vocab_size = self.eot + 1

    def __call__(self, texts: Sequence[str] | str) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.lookup.get(i, self.UNK) for i in self.bpe.encode(text)]
            ids = [self.SOT] + ids[: self.context_length - 2] + [self.eot]
            out[row, : len(ids)] = torch.tensor(ids)
        return out


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


def pretrain_mini_clip(config: PretrainConfig = PretrainConfig(), out_path: Optional[str | Path] = None,
                       root: Optional[str] = None, device: str = "cpu", progress: bool = True):
    """Train ``wiseft-mini`` from scratch; returns ``(model, per-step losses)``.

    Weights (safetensors + JSON sidecar with the recipe) are written to ``out_path`` if given.
    """
    from wiseft_lib.models import create_model

    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    model, _, _ = create_model("wiseft-mini", pretrained="random", device=device)
    model.train()
    tokenizer = MiniTokenizer()
    captions = _caption_tokens(tokenizer)
    images, labels = load_fashion_mnist("train", root)
    pool = split_indices()["pretrain"][: config.n_pool]
    pool_x = torch.from_numpy(np.array(images[pool])).float().div(255).unsqueeze(1)
    pool_y = torch.from_numpy(labels[pool])
    if config.noise_mode not in ("random", "systematic"):
        raise ValueError(f"noise_mode must be 'random' or 'systematic', not {config.noise_mode!r}")
    fixed_names = systematic_names(pool_x, pool_y, config.caption_noise) if config.noise_mode == "systematic" else None
    styles = list(config.style_weights)
    weights = torch.tensor([config.style_weights[s] for s in styles])

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / config.warmup_steps)
                                              * 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
    loss_fn = ClipLoss()
    log = []
    t0 = time.time()
    bar = tqdm(range(config.steps), desc="pretrain wiseft-mini", disable=not progress)
    for step in bar:
        idx = torch.randint(len(pool), (config.batch_size,), generator=g)
        style_of = torch.multinomial(weights, config.batch_size, replacement=True, generator=g)
        x = torch.empty(config.batch_size, 3, 28, 28)
        y = pool_y[idx]
        text = torch.empty(config.batch_size, CONTEXT_LENGTH, dtype=torch.long)
        named = fixed_names[idx] if fixed_names is not None else _noisy_labels(y, config.caption_noise, g)
        for si, style in enumerate(styles):
            sel = torch.nonzero(style_of == si).flatten()
            if len(sel) == 0:
                continue
            x[sel] = RENDERERS[style](pool_x[idx[sel]], g)
            tmpl = torch.randint(captions[style].shape[0], (len(sel),), generator=g)
            text[sel] = captions[style][tmpl, named[sel]]
        x = (x - MEAN) / STD
        img_f = model.encode_image(x.to(device), normalize=True)
        # ~200 distinct captions exist, so encode each distinct one once per step (same loss, less work)
        uniq, inverse = torch.unique(text, dim=0, return_inverse=True)
        txt_f = model.encode_text(uniq.to(device), normalize=True)[inverse.to(device)]
        loss = loss_fn(img_f, txt_f, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
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
    from wiseft_lib import __version__

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


def main(argv: Optional[list[str]] = None) -> None:
    from wiseft_lib.models import package_weights_path

    p = argparse.ArgumentParser(description="Pretrain the wiseft-mini CLIP on captioned Fashion-MNIST.")
    p.add_argument("--steps", type=int, default=PretrainConfig.steps)
    p.add_argument("--batch-size", type=int, default=PretrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=PretrainConfig.lr)
    p.add_argument("--warmup-steps", type=int, default=PretrainConfig.warmup_steps)
    p.add_argument("--caption-noise", type=float, default=PretrainConfig.caption_noise)
    p.add_argument("--noise-mode", choices=("random", "systematic"), default=PretrainConfig.noise_mode)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-pool", type=int, default=None, help="use only the first N pretraining images")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=None, help="weights file (default: the package's fmnist weights path)")
    a = p.parse_args(argv)
    cfg = PretrainConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr, warmup_steps=a.warmup_steps,
                         caption_noise=a.caption_noise, noise_mode=a.noise_mode, seed=a.seed,
                         n_pool=a.n_pool)
    out = a.out or package_weights_path("wiseft-mini", "fmnist")
    pretrain_mini_clip(cfg, out_path=out, root=a.data_root)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
