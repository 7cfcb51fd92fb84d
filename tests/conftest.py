"""Shared test set-up: CPU only, few threads, headless plotting."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def fashion_mnist_root():
    from wiseft_lib.data.fashion_mnist import FashionMNISTNotFound, find_fashion_mnist

    try:
        return find_fashion_mnist()
    except FashionMNISTNotFound as err:  # `make test` installs it; a bare pytest may not have it
        pytest.skip(str(err))
