"""Helpers shared by the test modules (``from helpers import tiny_classifier, AugmentedSet``): the tiny CLIP,
synthetic data sets, fault injection, thread pinning and two gloo ranks in subprocesses.

Importing this module first sets the test environment (headless plotting, CPU only, each xdist worker's share of
the cores) before torch is imported, in the pytest process (``conftest.py`` imports it first) and in the
subprocess scripts of the DDP and SIGKILL tests (which put this folder on ``sys.path`` and import it).
"""
import contextlib
import copy
import importlib
import os
import random
import sys

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # pytest -n N: each worker (and what it starts) gets its share of
    # the cores, so N workers do not oversubscribe them; an OMP_NUM_THREADS set by the caller is kept
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import open_clip  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from wiseft_lib.core.models import ClassificationHead, ImageClassifier  # noqa: E402

# A CLIP small enough to train in milliseconds: 16 px images, one layer per tower.
TINY_CFG = dict(embed_dim=32,
                vision_cfg=dict(image_size=16, layers=1, width=32, patch_size=8, head_width=16),
                text_cfg=dict(context_length=8, vocab_size=50, width=32, heads=2, layers=1))
TINY_NAME = "wiseft-test-tiny"


def tiny_clip(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.model.CLIP(**TINY_CFG).eval()


def tiny_classifier(seed: int = 0, n_classes: int = 5) -> ImageClassifier:
    """The tiny CLIP's image tower with a random head (logit-scale-sized weights)."""
    clip = tiny_clip(seed)
    head = ClassificationHead(torch.randn(n_classes, TINY_CFG["embed_dim"]) * 5)
    return ImageClassifier(clip.visual, head, {"model_name": TINY_NAME, "pretrained": None}).eval()


def toy_tokenizer(texts):
    """Word ids from a checksum of each word (vocabulary 40, context 8, end-of-text the largest id)."""
    out = torch.zeros(len(texts), 8, dtype=torch.long)
    for i, t in enumerate(texts):
        ids = [1] + [3 + (sum(map(ord, w)) % 30) for w in t.split()][:5] + [39]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


# ResNet CLIPs (open_clip's ModifiedResNet) have BatchNorm buffers: float running statistics, interpolated
# like weights, and an int64 num_batches_tracked counter that fine-tuning advances.
TINY_RN_CFG = dict(embed_dim=32,
                   vision_cfg=dict(image_size=32, layers=[1, 1, 1, 1], width=8, head_width=8),
                   text_cfg=dict(context_length=8, vocab_size=50, width=32, heads=2, layers=1))


def tiny_resnet_classifier(seed: int = 0, n_classes: int = 5) -> ImageClassifier:
    """A tiny ResNet CLIP's image tower (32 px images, BatchNorm) with a random head."""
    from open_clip.modified_resnet import ModifiedResNet

    torch.manual_seed(seed)
    clip = open_clip.model.CLIP(**TINY_RN_CFG)
    assert isinstance(clip.visual, ModifiedResNet)
    head = ClassificationHead(torch.randn(n_classes, TINY_RN_CFG["embed_dim"]) * 5)
    return ImageClassifier(clip.visual, head, {"model_name": "tiny-rn", "pretrained": None}).eval()


def train_steps(model: nn.Module, steps: int, seed: int, lr: float = 0.05) -> None:
    """A few SGD steps in train mode on 32 px noise: weights, running statistics and num_batches_tracked all
    change (``lr=0``: the running statistics and counters only)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        x = torch.randn(8, 3, 32, 32, generator=gen)
        y = torch.randint(0, 5, (8,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()


def clone_sd(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's state dict (sharing no memory with it)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def with_buffers(theta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``theta`` plus non-floating buffers: an int64 counter, int64 ids and a bool mask."""
    out = dict(theta)
    out["bn.num_batches_tracked"] = torch.tensor(7)
    out["pos_ids"] = torch.arange(4)
    out["mask"] = torch.tensor([True, False])
    return out


class AugmentedSet(Dataset):
    """Fixed 16 px images + labels with a random augmentation drawn from torch and `random`."""

    def __init__(self, n: int = 40, n_classes: int = 5, seed: int = 0, augment: bool = True):
        self.augment = augment
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, 16, 16, generator=g)
        self.y = torch.randint(0, n_classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        if not self.augment:
            return self.x[i], int(self.y[i])
        x = self.x[i] + 0.1 * torch.randn(3, 16, 16)
        if random.random() < 0.5:
            x = x.flip(-1)
        return x, int(self.y[i])


class DecodingDataset(Dataset):
    """Synthetic 'decode + transform' per item (label ``i % n_classes``); counts the items produced."""

    def __init__(self, n: int = 20, n_classes: int = 5):
        self.n, self.n_classes, self.calls = n, n_classes, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.calls += 1
        gen = torch.Generator().manual_seed(i)
        return torch.rand(3, 16, 16, generator=gen) * 2 - 1, i % self.n_classes


def patch_everywhere(monkeypatch, target: str, replacement) -> int:
    """Replace the function ``module.name`` in its module and in every ``wiseft_lib`` module that imported it by
    name (``from module import name`` binds it there: patching only its home would miss those calls).
    Returns how many modules were patched."""
    module, name = target.rsplit(".", 1)
    original = getattr(importlib.import_module(module), name)
    patched = 0
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("wiseft_lib") and vars(mod).get(name) is original:
            monkeypatch.setattr(mod, name, replacement)
            patched += 1
    assert patched, f"{target} is bound nowhere"
    return patched


def forbid(monkeypatch, *targets: str) -> None:
    """Make each ``module.function`` fail the test if it is called (proves a cached path computes nothing)."""
    for target in targets:
        patch_everywhere(monkeypatch, target, lambda *a, _target=target, **k: pytest.fail(f"{_target} ran again"))


class Killed(BaseException):
    """Raised by :func:`die_at_step`: a run interrupted mid-training."""


@contextlib.contextmanager
def die_at_step(n: int):
    """Inside the block, the ``n``-th ``Trainer.step`` raises :class:`Killed` (and the block expects it)."""
    from wiseft_lib.finetune import Trainer

    real, calls = Trainer.step, {"n": 0}

    def dying(self, x, y):
        calls["n"] += 1
        if calls["n"] == n:
            raise Killed
        return real(self, x, y)

    Trainer.step = dying
    try:
        with pytest.raises(Killed):
            yield
    finally:
        Trainer.step = real


# ---------------------------------------------------------------- two gloo ranks in subprocesses
@contextlib.contextmanager
def threads(n: int = 1):
    """Inside the block torch computes with ``n`` intra-op threads (restored on leaving). A reference computed in
    the test process inside ``threads(1)`` uses the same thread count, hence the same float summation order, as the
    ranks of :func:`gloo_ranks` and the ``OMP_NUM_THREADS=1`` subprocesses."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gloo_ranks(script, world: int = 2):
    """Start ``script`` as ``world`` ranks with torchrun's environment (RANK, WORLD_SIZE, MASTER_*; CPU, one
    thread each); the caller computes its 1-process reference inside the block, while they work (inside
    :func:`threads` ``(1)``, to sum floats as they do). On leaving,
    every rank must have exited 0 (their output is shown otherwise)."""
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    base.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
                WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(world)]
    try:
        yield procs
        logs = [p.communicate(timeout=120)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"rank {rank} exited {p.returncode}:\n{log[-3000:]}"


def resnet_endpoints_states():
    """(zero-shot model, theta_0, theta_1) of a tiny ResNet CLIP: "pre-training" advances its BatchNorm counters
    to 2, fine-tuning to 5 (float running statistics differ too)."""
    zs = tiny_resnet_classifier(0)
    train_steps(zs, 2, seed=1, lr=0.0)  # running stats and counters only
    ft = copy.deepcopy(zs)
    train_steps(ft, 3, seed=2)
    return zs, clone_sd(zs), clone_sd(ft)


def saved_export_endpoints(folder, templates: list[str]) -> dict:
    """A zero-shot wiseft-mini classifier and a perturbed "fine-tuned" copy, saved in ``folder`` as the CLI writes
    them (the export tests' endpoints): ``zs``, ``ft``, their paths and the pretrained CLIP (``clip``)."""
    from wiseft_lib.core.models import create_model
    from wiseft_lib.core.zeroshot import zeroshot_classifier
    from wiseft_lib.data.fashion_mnist import CLASSNAMES

    clip_model, _, _ = create_model("wiseft-mini")
    zs = zeroshot_classifier(clip_model, "wiseft-mini", CLASSNAMES, templates)
    ft = copy.deepcopy(zs)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return {"zs": zs, "ft": ft, "zs_path": zs.save(folder / "zeroshot.safetensors"),
            "ft_path": ft.save(folder / "finetuned.safetensors"), "clip": clip_model}
