"""The ``wiseft-mini`` tokenizer: open_clip's BPE remapped onto the few dozen tokens the captions use.

End-of-text keeps the largest id, since open_clip's text tower pools at the arg-max token; the
token embedding therefore stays small. The vocabulary is frozen in ``assets/wiseft-mini-vocab.json``.

    from wiseft_lib.core.mini_tokenizer import MiniTokenizer
    MiniTokenizer()(["a sketch of a sneaker."]).shape   # torch.Size([1, 16])
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import torch
from open_clip.tokenizer import SimpleTokenizer

from wiseft_lib.data.fashion_mnist import CLASSNAMES
from wiseft_lib.data.mini import CAPTIONS, MINI_TEMPLATES

__all__ = ["MiniTokenizer", "caption_corpus", "build_vocab", "CONTEXT_LENGTH", "VOCAB_PATH"]

VOCAB_PATH = Path(__file__).resolve().parent.parent / "mini" / "assets" / "wiseft-mini-vocab.json"
CONTEXT_LENGTH = 16


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
