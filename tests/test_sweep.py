"""The decode-once alpha sweep (wiseft_lib.core.sweep) against a plain per-alpha evaluation.

    .venv/bin/pytest tests/test_sweep.py -q
"""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from wiseft_lib.core.device import gather_rows, shard_range  # noqa: E402
from wiseft_lib.core.evaluate import predict_logits  # noqa: E402
from wiseft_lib.core.interpolate import interpolate_weights  # noqa: E402
from wiseft_lib.core.sweep import sweep_logits  # noqa: E402

from helpers import AugmentedSet, tiny_classifier  # noqa: E402


class CountingSet(Dataset):
    """Counts how often each image is read (decoded)."""

    def __init__(self, n: int = 37):
        self.inner = AugmentedSet(n=n, augment=False)
        self.reads = 0

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        self.reads += 1
        return self.inner[i]


def endpoints():
    zero, tuned = tiny_classifier(seed=0), tiny_classifier(seed=1)
    return ({k: v.clone() for k, v in zero.state_dict().items()},
            {k: v.clone() for k, v in tuned.state_dict().items()}, tuned)


@pytest.mark.parametrize("chunk_images", [1, 8, 4096])
def test_sweep_equals_per_alpha_evaluation_and_decodes_once(chunk_images):
    theta_0, theta_1, work = endpoints()
    data = CountingSet()
    alphas = [0.0, 0.3, 0.5, 1.0]
    got = sweep_logits(work, theta_0, theta_1, alphas, data, batch_size=8, chunk_images=chunk_images,
                       progress=False)
    assert data.reads == len(data)  # one decode pass for all four alphas
    for alpha in alphas:
        ref = tiny_classifier()
        ref.load_state_dict(interpolate_weights(theta_0, theta_1, alpha))
        logits, labels = predict_logits(ref, data, batch_size=8, progress=False)
        assert torch.equal(got[alpha][0], logits), alpha  # same batches: bit for bit
        assert torch.equal(got[alpha][1], labels)
    assert data.reads == len(data) * (1 + len(alphas))


def test_sweep_restores_training_mode_and_checks_its_inputs():
    theta_0, theta_1, work = endpoints()
    work.train()
    sweep_logits(work, theta_0, theta_1, [0.5], AugmentedSet(n=5, augment=False), progress=False)
    assert work.training
    with pytest.raises(ValueError, match="alpha"):
        sweep_logits(work, theta_0, theta_1, [1.5], AugmentedSet(n=5), progress=False)
    with pytest.raises(ValueError, match="at least one alpha"):
        sweep_logits(work, theta_0, theta_1, [], AugmentedSet(n=5), progress=False)
    with pytest.raises(ValueError, match="empty"):
        sweep_logits(work, theta_0, theta_1, [0.5], AugmentedSet(n=0), progress=False)
    with pytest.raises(ValueError, match="shares memory"):
        sweep_logits(work, work.state_dict(), theta_1, [0.5], AugmentedSet(n=5), progress=False)


@pytest.mark.parametrize("n,world", [(41, 2), (10, 3), (2, 3), (0, 2)])
def test_shards_cover_every_row_once(n, world):
    rows = [i for r in range(world) for i in shard_range(n, r, world)]
    assert rows == list(range(n))
    sizes = [len(shard_range(n, r, world)) for r in range(world)]
    assert max(sizes) - min(sizes) <= 1


def test_gather_rows_is_the_identity_on_one_process():
    x = torch.randn(7, 3)
    assert torch.equal(gather_rows(x, 7, 1, torch.device("cpu")), x)


def test_evaluation_precision_is_a_parameter():
    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.endpoints import Endpoints
    from wiseft_lib.experiment.runs import RunCache
    from wiseft_lib.params import ParamsError

    data = AugmentedSet(n=9, augment=False)
    fp32, _ = predict_logits(tiny_classifier(), data, batch_size=4, progress=False)
    bf16, _ = predict_logits(tiny_classifier(), data, batch_size=4, precision="bf16", progress=False)
    assert not torch.equal(fp32, bf16) and torch.allclose(fp32, bf16, atol=0.5)  # bf16 autocast really ran
    ep = Endpoints(CurveConfig(device="cpu"), 0, RunCache(None), progress=False)
    assert (ep.eval_precision("model"), ep.eval_precision("features")) == ("fp32", "fp32")
    ep = Endpoints(CurveConfig(device="cpu", eval_precision="bf16"), 0, RunCache(None), progress=False)
    assert ep.eval_precision("model") == "bf16"
    assert ep.eval_key("mini-photo", "model") != Endpoints(CurveConfig(device="cpu"), 0, RunCache(None)).eval_key(
        "mini-photo", "model")  # scores at another precision are other scores
    with pytest.raises(ParamsError, match="eval_precision"):
        CurveConfig(eval_precision="fp8")
