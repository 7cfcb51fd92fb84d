"""Shared test set-up: CPU only, few threads, headless plotting; the tiny CLIP and synthetic data.

Test modules import the helpers directly (``from conftest import tiny_classifier, AugmentedSet``):
pytest puts this folder on ``sys.path``, and the subprocess scripts of the DDP and SIGKILL tests
add it themselves.
"""
import contextlib
import json
import os
import random

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # pytest -n N: each worker (and what it starts) gets its share of
    # the cores, so N workers do not oversubscribe them; an OMP_NUM_THREADS set by the caller is kept
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import open_clip  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
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


def forbid(monkeypatch, *targets: str) -> None:
    """Make each ``module.function`` fail the test if it is called (proves a cached path computes nothing)."""
    for target in targets:
        module, name = target.rsplit(".", 1)
        monkeypatch.setattr(f"{module}.{name}", lambda *a, **k: pytest.fail(f"{target} ran again"))


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


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_registered(tmp_path_factory) -> str:
    """Register the tiny config with open_clip so ImageClassifier.load can rebuild it."""
    d = tmp_path_factory.mktemp("cfg")
    (d / f"{TINY_NAME}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(d / f"{TINY_NAME}.json")
    return TINY_NAME


@pytest.fixture(scope="session")
def fashion_mnist_root():
    from wiseft_lib.data.fashion_mnist import FashionMNISTNotFound, find_fashion_mnist

    try:
        return find_fashion_mnist()
    except FashionMNISTNotFound as err:  # `make test` installs it; a bare pytest may not have it
        if os.environ.get("WISEFT_REQUIRE_DATA"):  # CI (.ci/run, make test): missing data fails, never skips
            pytest.fail(f"WISEFT_REQUIRE_DATA is set and Fashion-MNIST is missing: {err}", pytrace=False)
        pytest.skip(str(err))


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


# Seconds the longest tests took in CI (2 xdist workers, one thread each): a scheduling hint only (nothing asserts
# it); a test not named here counts 20 s if marked slow, else 0.5 s.
LONGEST_SECONDS = {
    "test_shipped_mini_shows_the_wiseft_effect": 145, "test_recipe_baseline_notebooks_smoke_on_their_mini_presets": 140,
    "test_beyond_imagenet_notebooks_smoke_on_their_mini_presets": 140,
    "test_table_and_figure_notebooks_smoke_on_their_mini_presets": 125,
    "test_baseline_notebooks_smoke_on_their_mini_presets": 110, "test_run_all_quick_reports_every_ratio": 60,
    "test_beyond_imagenet_paper_presets": 60, "test_table1_and_figures_1_6_7_8_10_21_paper_presets": 46,
    "test_baseline_figures_3_11_12_13_15_paper_presets": 45, "test_fig3_reuses_the_reference_fine_tune_and_chooses_on_val": 41,
    "test_fig1_paper_preset_under_torchrun_writes_the_same_curve": 36, "test_cli_and_notebook_write_identical_curves": 35,
    "test_fig1_smoke_writes_figure_curve_and_results": 34,
}


def _seconds(item) -> float:
    return LONGEST_SECONDS.get(item.originalname, 20.0 if item.get_closest_marker("slow") else 0.5)


def pytest_collection_modifyitems(config, items):
    """Order the tests so ``pytest -n N --dist worksteal`` starts balanced: that scheduler hands worker k the k-th
    contiguous N-th of the list and later lets an idle worker steal from the end of a busy one's queue. So the list
    is N equal-length queues, the long tests dealt longest first to the queue with the least work (each queue starts
    with its long tests; its quick ones, at its end, are what gets stolen). Without xdist: slow tests first."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    ranked = sorted(items, key=lambda item: -_seconds(item))  # stable: collection order among equals
    if workers < 2:
        items[:] = ranked
        return
    size = [len(items) // workers + (k < len(items) % workers) for k in range(workers)]
    queues: list[list] = [[] for _ in range(workers)]
    work = [0.0] * workers
    for item in ranked:
        open_queues = [k for k in range(workers) if len(queues[k]) < size[k]]
        k = min(open_queues, key=lambda q: (work[q], q))
        queues[k].append(item)
        work[k] += _seconds(item)
    items[:] = [item for queue in queues for item in queue]
