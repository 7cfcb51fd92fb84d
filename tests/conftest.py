"""Shared test set-up for pytest: the environment (CPU only, few threads, headless plotting), the fixtures, and
the order the tests run in.

The plain helpers (the tiny CLIP, synthetic data, fault injection, gloo ranks) live in ``helpers.py``: test modules
import them from there (``from helpers import tiny_classifier, AugmentedSet``).
"""
import json
import os

# isort: off
# First: importing helpers sets MPLBACKEND, CUDA_VISIBLE_DEVICES and (under xdist) OMP_NUM_THREADS before torch is
# imported, here and in every subprocess script that imports helpers.
from helpers import TINY_CFG, TINY_NAME
import open_clip
import pytest
import torch
# isort: on


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
