"""The dataset registry's entries: which loader arguments draw a subset (``subset_options``), which datasets are
embedded, image folders answered by a resolver, unknown names, and registration errors."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

import wiseft_lib.data.registry as registry
from wiseft_lib.data import get_dataset, is_embedded, list_datasets, register_dataset, subset_options
from wiseft_lib.data.registry import SUBSET_OPTIONS, DatasetBundle, DatasetEntry, register_resolver

PAPER_DATASETS = ("imagenet", "imagenet-v2", "imagenet-r", "imagenet-a", "imagenet-sketch", "objectnet", "cifar10",
                  "cifar100", "cifar10.1", "cifar10.2", "fmow", "iwildcam", "ytbb-robust", "imagenet-vid-robust",
                  "dtd", "food101", "sun397", "stanford-cars")


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Two class folders of three 8 px PNGs each, directly in the folder (no train/val/test)."""
    base = tmp_path / "my_images"
    for label, (cls, colour) in enumerate((("cat", (200, 40, 40)), ("dog", (40, 40, 200)))):
        (base / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), tuple(c + 10 * i for c in colour)).save(base / cls / f"{i}.png")
    return base


def test_every_mini_dataset_is_embedded_and_takes_n_test_n_train_and_seed():
    minis = [name for name in list_datasets() if name.startswith("mini-")]
    assert len(minis) >= 10 and "mini-photo" in minis and "mini-task-sketch" in minis
    for name in minis:
        assert is_embedded(name), name
        assert subset_options(name) == frozenset({"n_test", "n_train", "seed"}), name
        assert registry._REGISTRY[name].embedded and registry._REGISTRY[name].subset_options == SUBSET_OPTIONS


def test_no_paper_dataset_is_embedded_or_takes_subset_options():
    names = set(list_datasets())
    assert set(PAPER_DATASETS) <= names
    for name in names:
        if name.startswith("mini-"):
            continue
        assert not is_embedded(name), name
        assert subset_options(name) == frozenset(), name


@pytest.mark.parametrize("prefix", ["", "folder:"])
def test_an_image_folder_takes_n_train_and_seed_and_is_not_embedded(image_folder, prefix):
    name = prefix + str(image_folder)
    assert name not in list_datasets()  # answered by the folder resolver, not registered
    assert subset_options(name) == frozenset({"n_train", "seed"})
    assert "n_test" not in subset_options(name)
    assert not is_embedded(name)
    bundle = get_dataset(name, split="train")
    assert isinstance(bundle, DatasetBundle) and bundle.classnames == ["cat", "dog"]
    assert 0 < len(bundle) <= 6
    assert name not in list_datasets()  # resolving registers nothing


def test_an_unknown_name_has_no_options_and_get_dataset_lists_the_known_datasets():
    name = "no-such-dataset-7f3a"
    assert subset_options(name) == frozenset()
    assert isinstance(subset_options(name), frozenset)
    assert is_embedded(name) is False
    with pytest.raises(KeyError, match=r"unknown dataset 'no-such-dataset-7f3a'.*Known datasets: .*imagenet.*mini-photo"):
        get_dataset(name)
    assert name not in registry._REGISTRY


def test_register_dataset_records_subset_options_and_embedded():
    name = "test-registry-throwaway-ok"
    try:
        @register_dataset(name, description="throwaway", splits=("train", "test"), subset_options=("n_train", "seed"),
                          embedded=True)
        def load(root=None, split="test", transform=None, **kwargs):
            return DatasetBundle(name, list(range(kwargs.get("n_train", 3))), ["a"], ["{}"])

        entry = registry._REGISTRY[name]
        assert isinstance(entry, DatasetEntry)
        assert entry.subset_options == frozenset({"n_train", "seed"}) and entry.embedded
        assert subset_options(name) == frozenset({"n_train", "seed"}) and is_embedded(name)
        assert len(get_dataset(name, split="train", n_train=5)) == 5
    finally:
        registry._REGISTRY.pop(name, None)
    assert name not in list_datasets()


@pytest.mark.parametrize("options", [("n_val",), ("seed", "n_images")])
def test_register_dataset_with_an_unknown_subset_option_is_an_error(options):
    name = "test-registry-throwaway-bad"
    try:
        with pytest.raises(ValueError, match=r"test-registry-throwaway-bad: unknown subset options \['n_"):
            @register_dataset(name, description="throwaway", subset_options=options)
            def load(root=None, split="test", transform=None, **kwargs):  # pragma: no cover - never registered
                raise AssertionError

        assert name not in registry._REGISTRY
    finally:
        registry._REGISTRY.pop(name, None)


def test_a_resolver_answers_for_names_that_are_not_registered():
    entry = DatasetEntry("resolved:x", lambda **kw: None, "resolved", ("test",), subset_options=frozenset({"seed"}))

    def resolver(name):
        return entry if name.startswith("resolved:") else None

    register_resolver(resolver)
    try:
        assert subset_options("resolved:x") == frozenset({"seed"}) and not is_embedded("resolved:x")
        assert subset_options("other") == frozenset()
        assert "resolved:x" not in list_datasets()
    finally:
        registry._RESOLVERS.remove(resolver)
    assert subset_options("resolved:x") == frozenset()
