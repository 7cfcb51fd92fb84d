"""The embedded mini study's data: Fashion-MNIST discovery, splits and deterministic shifts."""
import numpy as np
import pytest

from wiseft_lib.data import get_dataset, list_datasets
from wiseft_lib.data.fashion_mnist import CLASSNAMES, FashionMNISTNotFound, find_fashion_mnist, load_fashion_mnist
from wiseft_lib.data.mini import MINI_ID, MINI_OOD, STYLES, class_balanced_subset, render, split_indices
from wiseft_lib.data.mini import test_subset as mini_test_subset


def test_not_found_error_names_the_three_ways(tmp_path, monkeypatch):
    import wiseft_lib.data.fashion_mnist as fm

    monkeypatch.setenv("WISEFT_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("WISEFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    with pytest.raises(FashionMNISTNotFound) as err:
        find_fashion_mnist()
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "WISEFT_DATA" in msg and "--ensure" in msg


def test_explicit_folder_and_truncated_file(tmp_path, fashion_mnist_root):
    import gzip
    import shutil

    for f in fashion_mnist_root.iterdir():
        shutil.copy(f, tmp_path / f.name)
    images, labels = load_fashion_mnist("test", tmp_path)
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8 and set(labels) == set(range(10))
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in tmp_path.glob("*.gz"):
        shutil.copy(f, bad / f.name)
    with gzip.open(bad / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write((0x801).to_bytes(4, "big") + (10_000).to_bytes(4, "big") + bytes(10))
    from wiseft_lib.data.fashion_mnist import _load

    _load.cache_clear()
    with pytest.raises(ValueError, match="truncated"):
        load_fashion_mnist("test", bad)


def test_split_pools_are_disjoint_and_cover_train():
    s = split_indices()
    assert len(np.intersect1d(s["pretrain"], s["finetune"])) == 0
    assert len(s["pretrain"]) + len(s["finetune"]) == 60_000


def test_class_balanced_subset_is_seeded_and_balanced():
    labels = np.repeat(np.arange(10), 100)
    a, b, c = class_balanced_subset(labels, 200, 0), class_balanced_subset(labels, 200, 0), class_balanced_subset(labels, 200, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(labels[a], minlength=10).tolist() == [20] * 10
    assert len(class_balanced_subset(labels, 205, 0)) == 205


def test_renderings_are_deterministic_and_distinct(fashion_mnist_root):
    images, _ = load_fashion_mnist("test")
    x = images[:64]
    outs = {s: render(x, s, seed=3) for s in STYLES}
    for s, out in outs.items():
        assert out.shape == (64, 28, 28, 3) and out.dtype == np.uint8
        assert np.array_equal(out, render(x, s, seed=3)), f"{s} is not deterministic"
    assert not np.array_equal(outs["near"], render(x, "near", seed=4))
    photo = outs["photo"].astype(float)
    for s in STYLES[1:]:
        assert np.abs(outs[s].astype(float) - photo).mean() > 5, f"{s} barely changes the photo"
    with pytest.raises(ValueError, match="unknown style"):
        render(x, "watercolour", 0)


def test_registry_bundles(fashion_mnist_root):
    assert {MINI_ID, *MINI_OOD} <= set(list_datasets())
    test = get_dataset("mini-sketch", n_test=50)
    assert len(test) == 50 and test.classnames == CLASSNAMES and "a sketch of a {}." in test.templates
    img, label = test.dataset[0]
    assert img.size == (28, 28) and 0 <= label < 10
    train = get_dataset("mini-photo", split="train", n_train=100, seed=0)
    assert len(train) == 100
    assert len(mini_test_subset(50)) == 50
    with pytest.raises(ValueError, match="has no split 'train'"):
        get_dataset("mini-sketch", split="train")
    with pytest.raises(KeyError, match="mini-sketch"):
        get_dataset("mini-skech")


def test_test_images_split_into_val_for_choices_and_test_for_reports():
    import numpy as np

    val, test = mini_test_subset(None, "val"), mini_test_subset(None, "test")
    assert len(val) == len(test) == 5000 and not np.intersect1d(val, test).size
    assert np.union1d(val, test).size == 10_000
    # val is what n_test drew from before the split existed (every earlier choice looked at it)
    perm = np.random.default_rng(2022).permutation(10_000)
    assert np.array_equal(mini_test_subset(1000, "val"), np.sort(perm[:1000]))
    assert set(mini_test_subset(300, "test")) <= set(test)
    with pytest.raises(ValueError, match="n_test must be between 1 and 5000"):
        mini_test_subset(6000, "test")
    from wiseft_lib.data import eval_split

    assert eval_split("mini-sketch", "val") == "val" and eval_split("mini-sketch") == "test"
    with pytest.raises(ValueError, match="imagenet.*no validation split held out"):
        eval_split("imagenet", "val")
