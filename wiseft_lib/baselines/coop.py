"""CoOp (Zhou et al., IJCV 2022, "Learning to Prompt for Vision-Language Models") on open_clip's text tower.

CoOp keeps CLIP frozen and learns only a *context*: ``n_ctx`` word vectors shared by all classes that replace
the hand-written words of a prompt. The class prompt is ``[SOT] [V]_1 ... [V]_n_ctx {classname} . [EOT]``; its
text embedding (normalised) is the class weight, and the logits are ``exp(logit_scale) * cos(image, text)``,
so the learned prompts give a head of exactly the zero-shot head's form (:mod:`wiseft_lib.core.zeroshot`).

    from wiseft_lib.baselines.coop import CoOpConfig, train_coop
    from wiseft_lib.core.models import ImageClassifier
    result = train_coop(clip, classnames, train_features, train_labels, CoOpConfig(epochs=50),
                        tokenizer="wiseft-mini", seed=0)
    result.head                      # ClassificationHead: plugs into ImageClassifier / evaluate_head
    ImageClassifier.from_clip(clip, result.head, model_name="wiseft-mini", method="coop")

Faithful to CoOp: unified context (one ``ctx`` for all classes), class token at the end, context from
N(0, 0.02) or from the token embeddings of ``ctx_init`` (whose token count then sets ``n_ctx``), SGD
(lr 0.002, momentum 0.9, weight decay 5e-4), batch size 32, one warm-up epoch at a constant 1e-5 and then
Dassl's per-epoch cosine ``0.5 * lr * (1 + cos(pi * (epoch - warmup) / epochs))``, cross-entropy on
``exp(logit_scale) * cos``; the training loader drops its last incomplete batch (Dassl's). One deliberate
difference: the image tower is frozen, so its features are computed once and cached (no per-step
augmentation). Class-specific contexts and the "middle"/"front" class-token positions are not implemented.

The prompt embedding is fed through the text tower exactly as open_clip's ``CLIP.encode_text`` does
(``cast_dtype``, positional embedding, causal mask, ``ln_final``, ``text_global_pool`` with the model's
``text_pool_type``, the projection), so a context equal to the token embeddings of real words reproduces
``encode_text`` of that prompt (checked against open_clip 3.3.0 in ``tests/test_coop.py``).
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import pandas as pd
import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from torch import nn

from wiseft_lib.core.models import ClassificationHead, get_tokenizer
from wiseft_lib.progress import progress_bar

__all__ = ["CLASS_TOKEN_POSITIONS", "CoOpConfig", "PromptLearner", "CoOpResult", "coop_lr", "text_features",
           "coop_head", "train_coop"]

CLASS_TOKEN_POSITIONS = ("end",)
_POOL_TYPES = ("argmax", "eos")  # the pool types that locate the end-of-text token from the token ids

Tokenizer = Callable[[list[str]], torch.Tensor]


@dataclass
class CoOpConfig:
    """CoOp's settings; the defaults are the paper's ImageNet few-shot recipe (16 context tokens, 50 epochs)."""

    n_ctx: int = 16  # learned context tokens (ignored when ctx_init is given: its token count is used)
    ctx_init: Optional[str] = None  # e.g. "a photo of a": start from these words' token embeddings
    ctx_std: float = 0.02  # std of the random context initialisation (CoOp's N(0, 0.02))
    class_token_position: str = "end"
    epochs: int = 50
    lr: float = 0.002
    batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5  # constant learning rate during warm-up (Dassl's WARMUP_CONS_LR)

    def __post_init__(self) -> None:
        def integer(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")

        integer("n_ctx", 1)
        integer("epochs", 1)
        integer("batch_size", 1)
        integer("warmup_epochs", 0)
        if self.ctx_init is not None and (not isinstance(self.ctx_init, str) or not self.ctx_init.strip()):
            raise ValueError(f"ctx_init must be None or a non-empty string such as 'a photo of a', "
                             f"got {self.ctx_init!r}")
        if self.class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"class_token_position must be one of {list(CLASS_TOKEN_POSITIONS)} (CoOp's "
                             f"'middle' and 'front' are not implemented), got {self.class_token_position!r}")
        for name in ("lr", "ctx_std"):
            if not getattr(self, name) > 0 or not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "warmup_lr"):
            if not getattr(self, name) >= 0 or not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be < epochs ({self.epochs}): training "
                             f"would never leave the constant warm-up lr; lower warmup_epochs (0 turns it off)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def coop_lr(epoch: int, config: CoOpConfig) -> float:
    """Learning rate of 0-based ``epoch``: Dassl's constant warm-up then per-epoch cosine (as CoOp runs it)."""
    if epoch < config.warmup_epochs:
        return config.warmup_lr
    return 0.5 * config.lr * (1 + math.cos(math.pi * (epoch - config.warmup_epochs) / config.epochs))


# ----------------------------------------------------------------------------- the text tower
class _TextTower(NamedTuple):
    """The pieces of an open_clip text tower that ``encode_text`` uses, in the order it uses them."""

    token_embedding: nn.Embedding
    positional_embedding: torch.Tensor
    transformer: nn.Module
    attn_mask: Optional[torch.Tensor]
    ln_final: nn.Module
    text_projection: Any  # nn.Linear, a [width, embed_dim] parameter, or None
    pool_type: str
    eos_id: Optional[int]


def _text_tower(clip_model: nn.Module) -> _TextTower:
    """open_clip ``CLIP`` (text tower inlined) or ``CustomTextCLIP`` with a plain ``TextTransformer``."""
    if hasattr(clip_model, "token_embedding") and hasattr(clip_model, "transformer"):  # open_clip.CLIP
        m, pool, eos = clip_model, clip_model.text_pool_type, getattr(clip_model, "text_eos_id", None)
    else:
        m = getattr(clip_model, "text", None)
        if m is None or not hasattr(m, "token_embedding") or not hasattr(m, "transformer"):
            raise TypeError(f"CoOp needs an open_clip CLIP whose text tower is a TextTransformer (token_embedding, "
                            f"transformer, ln_final); {type(clip_model).__name__} has none (HF text towers are "
                            f"not supported)")
        if getattr(m, "cls_emb", None) is not None or getattr(m, "use_pad_mask", False):
            raise TypeError("CoOp does not support text towers with a class embedding (CoCa) or a padding mask")
        pool, eos = m.pool_type, getattr(m, "eos_id", None)
    if pool not in _POOL_TYPES:
        raise ValueError(f"CoOp supports text pooling {list(_POOL_TYPES)} (the end-of-text token), this model "
                         f"pools by {pool!r}")
    return _TextTower(m.token_embedding, m.positional_embedding, m.transformer, m.attn_mask, m.ln_final,
                      m.text_projection, pool, eos)


def _eot_index(ids: torch.Tensor, tower: _TextTower) -> torch.Tensor:
    """Per row, the position the tower pools at (where the end-of-text token is)."""
    if tower.pool_type == "argmax":
        return ids.argmax(dim=-1)
    hit = ids == tower.eos_id
    if not bool(hit.any(dim=-1).all()):
        raise ValueError(f"the tokenizer's output lacks the end-of-text id {tower.eos_id} this model pools at")
    return hit.int().argmax(dim=-1)


def _as_tokenizer(tokenizer: Union[str, Tokenizer]) -> Tokenizer:
    return get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer


def _tokenize(tokenizer: Tokenizer, texts: list[str], context_length: int) -> torch.Tensor:
    ids = torch.as_tensor(tokenizer(texts)).long().cpu()
    if ids.ndim != 2 or ids.shape[0] != len(texts):
        raise ValueError(f"the tokenizer must return [n_texts, context_length] ids, got shape {tuple(ids.shape)}")
    if ids.shape[1] != context_length:
        raise ValueError(f"the tokenizer's context length {ids.shape[1]} differs from the model's "
                         f"{context_length}: use the model's own tokenizer")
    return ids


# ----------------------------------------------------------------------------- prompts
def _context_from_words(tok: Tokenizer, tower: _TextTower, ctx_init: str, n_prefix: int) -> torch.Tensor:
    """The token embeddings of ``ctx_init``'s words (float32, CPU): the context CoOp starts from, one row a token."""
    emb = tower.token_embedding
    init_ids = _tokenize(tok, [ctx_init], tower.positional_embedding.shape[0])
    end = int(_eot_index(init_ids, tower)[0])
    words = init_ids[0, n_prefix:end]
    if len(words) == 0:
        raise ValueError(f"ctx_init {ctx_init!r} tokenizes to no tokens")
    unk = getattr(tok, "UNK", None)
    if unk is not None and bool((words == unk).any()):
        warnings.warn(f"ctx_init {ctx_init!r} has words outside the tokenizer's vocabulary (id {unk})",
                      stacklevel=3)  # the caller of PromptLearner(...), as when this was inline
    with torch.no_grad():
        return emb(words.to(emb.weight.device)).detach().float().cpu().clone()


def _class_name_tokens(tok: Tokenizer, tower: _TextTower, classnames: list[str], empty: torch.Tensor, n_ctx: int,
                       n_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The token ids of each ``"{classname}."`` and their end-of-text positions; raise if a name leaves no room
    for ``n_ctx`` context tokens or the start tokens differ from the empty prompt's (``empty``)."""
    length = tower.positional_embedding.shape[0]
    names = _tokenize(tok, [f"{c}." for c in classnames], length)
    ends = _eot_index(names, tower)
    for c, end in zip(classnames, ends.tolist()):
        if n_ctx + end + 1 > length:
            n_name = end - n_prefix
            raise ValueError(
                f"class {c!r} does not fit: its name and '.' take {n_name} tokens (or were cut off), "
                f"{n_prefix} start and 1 end token are added, and the context length is {length}, so "
                f"with n_ctx={n_ctx} at most {length - n_ctx - n_prefix - 1} name tokens fit; use a "
                f"shorter class name or a smaller n_ctx (at most {length - end - 1} for this class)")
    if not torch.equal(names[:, :n_prefix], empty[:, :n_prefix].expand(len(classnames), -1)):
        raise ValueError("the tokenizer's start tokens differ between prompts; cannot splice a context in")
    return names, ends


def _spliced_prompt_ids(tower: _TextTower, names: torch.Tensor, ends: torch.Tensor, n_ctx: int,
                        n_prefix: int) -> torch.Tensor:
    """The class prompts' ids with ``n_ctx`` placeholder ids spliced in after the start tokens."""
    length = tower.positional_embedding.shape[0]
    # Placeholder id: the smallest id the tokenizer emitted, unless that is the end-of-text id.
    end_id = names[0, ends[0]]
    candidates = names[names != end_id]
    fill = int(candidates.min()) if candidates.numel() else int(end_id) - 1
    placeholders = torch.full((len(names), n_ctx), fill, dtype=torch.long)
    ids = torch.cat([names[:, :n_prefix], placeholders, names[:, n_prefix:length - n_ctx]], dim=1)
    if not torch.equal(_eot_index(ids, tower), ends + n_ctx):
        raise ValueError("could not build prompts whose end-of-text token is where the model pools")
    return ids


class PromptLearner(nn.Module):
    """The learnable unified context ``ctx`` [n_ctx, width] and each class's frozen prompt pieces.

    Class ``c``'s prompt is spliced from the tokenisation of ``"{classname}."``: its start token(s)
    (``token_prefix``), ``n_ctx`` placeholder positions filled by ``ctx``, then its class-name, "." and
    end-of-text tokens and padding (``token_suffix``), all shifted right by ``n_ctx``. ``tokenized`` holds
    the spliced ids (placeholders get an id that cannot be pooled at), so the text tower pools exactly where
    it pools for the written prompt. No placeholder word is tokenized, so closed vocabularies
    (``MiniTokenizer``) work. With ``ctx_init`` the context starts as its words' token embeddings and
    ``n_ctx`` is their token count (``n_ctx`` is then ignored, as in CoOp); otherwise it is drawn from
    N(0, ``ctx_std``) with a generator seeded by ``seed``. ``tokenizer`` may be a model name for
    :func:`wiseft_lib.core.models.get_tokenizer`.
    """

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], tokenizer: Union[str, Tokenizer],
                 n_ctx: int = 16, ctx_init: Optional[str] = None, *, ctx_std: float = 0.02, seed: int = 0,
                 class_token_position: str = "end"):
        super().__init__()
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"class_token_position must be one of {list(CLASS_TOKEN_POSITIONS)}, "
                             f"got {class_token_position!r}")
        classnames = list(classnames)
        if not classnames:
            raise ValueError("CoOp needs at least one class name")
        tok = _as_tokenizer(tokenizer)
        tower = _text_tower(clip_model)
        emb = tower.token_embedding
        length, width = tower.positional_embedding.shape[0], emb.weight.shape[1]
        device = emb.weight.device

        # Start tokens: everything before end-of-text in the empty prompt (SOT for CLIP's tokenizers).
        empty = _tokenize(tok, [""], length)
        n_prefix = int(_eot_index(empty, tower)[0])

        if ctx_init is not None:
            ctx = _context_from_words(tok, tower, ctx_init, n_prefix)
            n_ctx = len(ctx)
        else:
            if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 1:
                raise ValueError(f"n_ctx must be an integer >= 1, got {n_ctx!r}")
            gen = torch.Generator().manual_seed(seed)
            ctx = torch.randn(n_ctx, width, generator=gen) * ctx_std  # nn.init.normal_(std=ctx_std), seeded
        names, ends = _class_name_tokens(tok, tower, classnames, empty, n_ctx, n_prefix)
        ids = _spliced_prompt_ids(tower, names, ends, n_ctx, n_prefix)

        with torch.no_grad():
            full = emb(ids.to(device))
        self.classnames = classnames
        self.n_ctx, self.n_prefix, self.context_length = n_ctx, n_prefix, length
        self.name_lens = (ends - n_prefix).tolist()  # class-name + "." tokens per class
        self.ctx = nn.Parameter(ctx.to(device))
        self.register_buffer("tokenized", ids.to(device), persistent=False)
        self.register_buffer("token_prefix", full[:, :n_prefix].detach().clone(), persistent=False)
        self.register_buffer("token_suffix", full[:, n_prefix + n_ctx:].detach().clone(), persistent=False)

    @classmethod
    def from_config(cls, clip_model: nn.Module, classnames: Sequence[str], tokenizer: Union[str, Tokenizer],
                    config: CoOpConfig, seed: int = 0) -> "PromptLearner":
        return cls(clip_model, classnames, tokenizer, config.n_ctx, config.ctx_init, ctx_std=config.ctx_std,
                   seed=seed, class_token_position=config.class_token_position)

    @property
    def n_classes(self) -> int:
        return len(self.classnames)

    def forward(self) -> torch.Tensor:
        """Token embeddings of every class prompt, ``[n_classes, context_length, width]`` (the ``ctx`` dtype
        cast to the token embedding's, as ``token_embedding(text)`` would give them)."""
        ctx = self.ctx.to(self.token_prefix.dtype).unsqueeze(0).expand(self.n_classes, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


def text_features(clip_model: nn.Module, prompt_learner: PromptLearner) -> torch.Tensor:
    """Normalised class text embeddings ``[n_classes, embed_dim]`` (float32), differentiable in ``ctx``.

    The same computation as open_clip's ``CLIP.encode_text`` with the prompt embeddings in place of
    ``token_embedding(text)``.
    """
    tower = _text_tower(clip_model)
    x = prompt_learner()
    if x.shape[1:] != tower.positional_embedding.shape:
        raise ValueError(f"the prompt learner's prompts are {tuple(x.shape[1:])} but this model takes "
                         f"{tuple(tower.positional_embedding.shape)}: build it from the same model")
    cast_dtype = tower.transformer.get_cast_dtype()
    x = x.to(cast_dtype)
    x = x + tower.positional_embedding.to(cast_dtype)
    x = tower.transformer(x, attn_mask=tower.attn_mask)  # the Transformer handles batch_first itself
    x = tower.ln_final(x)
    x = text_global_pool(x, prompt_learner.tokenized, tower.pool_type, eos_token_id=tower.eos_id)
    if isinstance(x, tuple):  # older open_clip returned (pooled, tokens)
        x = x[0]
    if tower.text_projection is not None:
        if isinstance(tower.text_projection, nn.Linear):
            x = tower.text_projection(x)
        else:
            x = x @ tower.text_projection
    return F.normalize(x.float(), dim=-1)


@torch.no_grad()
def coop_head(clip_model: nn.Module, prompt_learner: PromptLearner) -> ClassificationHead:
    """The learned prompts as a :class:`ClassificationHead` (normalising its input, weights = normalised text
    features times ``exp(logit_scale)``, zero bias): the zero-shot head's form, on CPU."""
    weights = text_features(clip_model, prompt_learner) * clip_model.logit_scale.exp().float()
    return ClassificationHead(weights.detach().cpu(), normalize=True)


# ----------------------------------------------------------------------------- training
class CoOpResult(NamedTuple):
    head: ClassificationHead  # the learned prompts' head (CPU)
    ctx: torch.Tensor  # the learned context [n_ctx, width] (CPU, float32)
    log: pd.DataFrame  # per epoch: epoch, lr, loss (mean over batches), acc (training batches, %)
    prompt_learner: PromptLearner  # trained, on CPU
    config: CoOpConfig


def train_coop(clip_model: nn.Module, classnames: Sequence[str], image_features: torch.Tensor,
               labels: torch.Tensor, config: Optional[CoOpConfig] = None, seed: int = 0,
               device: Union[str, torch.device, None] = None, progress: bool = True, *,
               tokenizer: Union[str, Tokenizer]) -> CoOpResult:
    """Learn CoOp's context on cached image features (the raw image-encoder outputs; normalised here).

    Only ``ctx`` trains: every CLIP parameter is frozen for the run (its ``requires_grad`` flags, training
    mode and device are restored afterwards, its values are untouched). ``tokenizer`` is the model's
    tokenizer or a model name for :func:`wiseft_lib.core.models.get_tokenizer`. The context initialisation and the
    batch order come from ``seed`` alone, so on CPU two calls give bit-identical results.
    """

    config = config or CoOpConfig()
    classnames = list(classnames)
    feats, y = _checked_features_and_labels(image_features, labels, len(classnames))
    with _frozen_clip_on(clip_model, device) as device:
        learner = PromptLearner.from_config(clip_model, classnames, tokenizer, config, seed=seed).to(device)
        with torch.no_grad():
            dim = text_features(clip_model, learner).shape[1]
        if feats.shape[1] != dim:
            raise ValueError(f"image features have dimension {feats.shape[1]} but the text tower embeds into "
                             f"{dim}: pass this model's image-encoder outputs")
        x = F.normalize(feats.to(device).float(), dim=-1)
        rows = _fit_context(clip_model, learner, x, y.to(device), config, seed, device, progress)
        head = coop_head(clip_model, learner)
    learner = learner.cpu()
    return CoOpResult(head, learner.ctx.detach().clone(), pd.DataFrame(rows), learner, config)


def _checked_features_and_labels(image_features: torch.Tensor, labels: torch.Tensor,
                                 n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The features (detached) and labels (flat, long); raise unless they pair up and the labels are class ids."""
    feats = torch.as_tensor(image_features).detach()
    y = torch.as_tensor(labels).detach().long().reshape(-1)
    if feats.ndim != 2 or len(feats) != len(y) or len(y) == 0:
        raise ValueError(f"need [n, dim] image features and n labels (n >= 1); got features "
                         f"{tuple(feats.shape)} and {len(y)} labels")
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ValueError(f"labels must be in [0, {n_classes}) for {n_classes} class names, got "
                         f"[{int(y.min())}, {int(y.max())}]")
    return feats, y


@contextlib.contextmanager
def _frozen_clip_on(clip_model: nn.Module, device: Union[str, torch.device, None]) -> Iterator[torch.device]:
    """CLIP frozen in eval mode on ``device`` (default: where it is) for the block, which gets the device; its
    ``requires_grad`` flags, training mode and device are restored afterwards, even on an error."""
    params = list(clip_model.parameters())
    home = params[0].device if params else torch.device("cpu")
    device = torch.device(device) if device is not None else home
    flags = [p.requires_grad for p in params]
    was_training = clip_model.training
    try:
        clip_model.requires_grad_(False)
        clip_model.to(device).eval()
        yield device
    finally:
        clip_model.to(home)
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        clip_model.train(was_training)


def _fit_context(clip_model: nn.Module, learner: PromptLearner, x: torch.Tensor, y: torch.Tensor,
                 config: CoOpConfig, seed: int, device: torch.device, progress: bool) -> list[dict[str, float]]:
    """SGD on ``learner.ctx`` over the normalised features ``x`` and labels ``y`` for ``config.epochs`` epochs
    (batch order seeded by ``seed``); per epoch: epoch, lr, mean loss and training accuracy (%)."""
    optimizer = torch.optim.SGD([learner.ctx], lr=coop_lr(0, config), momentum=config.momentum,
                                weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n, bs = len(y), config.batch_size
    n_batches = n // bs if n >= bs else 1  # Dassl drops the last incomplete batch when it can
    rows = []
    bar = progress_bar(range(config.epochs), desc="CoOp", unit="epoch", show=progress)
    for epoch in bar:
        lr = coop_lr(epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = torch.randperm(n, generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(n_batches):
            idx = order[b * bs:(b + 1) * bs].to(device)
            logits = clip_model.logit_scale.exp().float() * x[idx] @ text_features(clip_model, learner).T
            loss = F.cross_entropy(logits, y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
            seen += len(idx)
        rows.append({"epoch": epoch, "lr": lr, "loss": loss_sum / seen, "acc": 100.0 * correct / seen})
        bar.set_postfix(loss=f"{rows[-1]['loss']:.4f}", acc=f"{rows[-1]['acc']:.1f}")
    return rows
