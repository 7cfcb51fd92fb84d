"""Model soups: the uniform mean, the greedy recipe (order, keep/reject, trace), errors, the published numbers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from wiseft_lib.core.soups import GreedySoup, greedy_soup, uniform_soup
from wiseft_lib.report.paper import SHIFTS, published


def _states(n: int, seed: int = 0, dtype=torch.float32) -> list[dict[str, torch.Tensor]]:
    """``n`` state dicts of a small net with a BatchNorm (float running stats + an int counter)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    out = []
    for i in range(n):
        sd = {k: (torch.randn_like(v) if v.is_floating_point() else v + i).to(
            dtype if v.is_floating_point() else v.dtype) for k, v in net.state_dict().items()}
        out.append(sd)
    return out


def _one(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor([value]), "n": torch.tensor(3)}


def test_uniform_soup_is_the_hand_mean_and_keeps_the_first_counter():
    states = _states(3)
    soup = uniform_soup(states)
    assert list(soup) == list(states[0])
    for k, v in soup.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, torch.stack([s[k] for s in states]).mean(0), rtol=0, atol=1e-6)
        else:  # num_batches_tracked: taken from the first ingredient, not averaged
            assert torch.equal(v, states[0][k])
    assert all(v.data_ptr() != states[0][k].data_ptr() for k, v in soup.items())  # new tensors
    one = uniform_soup(states[:1])
    assert all(torch.equal(one[k], v) for k, v in states[0].items())


@pytest.mark.parametrize("dtype,big", [(torch.float16, 2048.0), (torch.bfloat16, 256.0), (torch.float64, 2048.0)])
def test_uniform_soup_keeps_the_dtype_and_accumulates_wide(dtype, big):
    # summed in its own low precision, big + 1 rounds back to big and the mean comes out wrong
    values = [big, 1.0, 1.0, 1.0, 1.0]
    soup = uniform_soup([{"w": torch.full((8,), v, dtype=dtype)} for v in values])
    assert soup["w"].dtype == dtype
    expected = torch.tensor(sum(values) / len(values), dtype=torch.float64).to(dtype)
    assert torch.equal(soup["w"], expected.expand(8))


def test_uniform_soup_errors_name_the_key_and_the_ingredient():
    states = _states(3)
    with pytest.raises(ValueError, match="at least one"):
        uniform_soup([])
    bad = dict(states[2])
    bad["0.weight"] = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"'0\.weight'.*ingredient 2"):
        uniform_soup([states[0], states[1], bad])
    missing = {k: v for k, v in states[1].items() if k != "1.bias"}
    with pytest.raises(ValueError, match=r"'1\.bias'.*missing from ingredient 1"):
        uniform_soup([states[0], missing])
    extra = {**states[1], "2.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"'2\.weight'.*ingredient 1"):
        uniform_soup([states[0], extra])
    half = {k: v.half() if v.is_floating_point() else v for k, v in states[1].items()}
    with pytest.raises(ValueError, match=r"'0\.weight'.*ingredient 1 is torch.float16"):
        uniform_soup([states[0], half])


def test_greedy_soup_keeps_and_rejects_in_val_order():
    # ingredients are scalars; the val score prefers a soup mean near 1.1
    def acc(w: float) -> float:
        return -abs(w - 1.1)

    values = [3.0, 1.0, 0.8, 1.5, -5.0, 1.0]
    val = [acc(v) for v in values]  # ingredients 1 and 5 tie: the given order is kept
    calls = []

    def evaluate(sd):
        calls.append(sd["w"].item())
        return acc(sd["w"].item())

    soup = greedy_soup([_one(v) for v in values], val, evaluate, names=list("abcdef"))
    assert isinstance(soup, GreedySoup)
    # start 1 (mean 1.0); + 5: 1.0, equal score: kept; + 2: 0.933, worse: rejected; + 3: 1.167, better: kept;
    # + 0: 1.625 and + 4: -0.375, worse: rejected
    assert soup.kept == [1, 5, 3]
    tr = soup.trace
    assert list(tr.columns) == ["step", "index", "name", "val_score", "soup_val_score", "kept", "soup_size"]
    assert list(tr["step"]) == list(range(6))
    assert list(tr["index"]) == [1, 5, 2, 3, 0, 4]
    assert list(tr["name"]) == ["b", "f", "c", "d", "a", "e"]
    assert list(tr["kept"]) == [True, True, False, True, False, False]
    assert list(tr["soup_size"]) == [1, 2, 2, 3, 3, 3]
    assert list(tr["val_score"]) == [val[i] for i in (1, 5, 2, 3, 0, 4)]
    assert tr["soup_val_score"].iloc[0] == val[1]  # the best ingredient's own score, not re-evaluated
    np.testing.assert_allclose(calls, [1.0, 2.8 / 3, 3.5 / 3, 6.5 / 4, -1.5 / 4], rtol=1e-6)
    np.testing.assert_allclose(tr["soup_val_score"], [acc(c) for c in [1.0, *calls]])
    assert soup.state["w"].item() == pytest.approx(3.5 / 3) and soup.val_score == tr["soup_val_score"].iloc[3]
    assert torch.equal(soup.state["n"], torch.tensor(3))


def test_greedy_soup_score_never_drops_and_equals_the_uniform_soup_of_the_kept():
    states = _states(8, seed=3)
    target = uniform_soup(states[2:6])["0.weight"]

    def evaluate(sd):
        return -float((sd["0.weight"] - target).pow(2).sum())

    val = [evaluate(s) for s in states]
    soup = greedy_soup(states, val, evaluate)
    kept_scores = soup.trace.loc[soup.trace["kept"], "soup_val_score"].tolist()
    assert kept_scores == sorted(kept_scores) and soup.val_score == kept_scores[-1] >= max(val)
    assert soup.kept[0] == int(np.argmax(val)) and len(soup.kept) > 1
    rejected = soup.trace[~soup.trace["kept"]]
    running = soup.trace["soup_val_score"].where(soup.trace["kept"]).ffill()
    assert (rejected["soup_val_score"] < running.shift(1)[rejected.index]).all()
    ref = uniform_soup([states[i] for i in soup.kept])
    assert all(torch.equal(soup.state[k], v) for k, v in ref.items())  # the same arithmetic, bit for bit


def test_greedy_soup_identical_ingredients_and_strict_rule():
    same = [_one(2.0) for _ in range(3)]
    soup = greedy_soup(same, [0.5, 0.5, 0.5], lambda sd: 0.5)
    assert soup.kept == [0, 1, 2] and soup.state["w"].item() == 2.0  # ties are kept (the paper's >=)
    strict = greedy_soup(same, [0.5, 0.5, 0.5], lambda sd: 0.5, strict=True)
    assert strict.kept == [0]  # the reference code's >


def test_greedy_soup_argument_errors():
    states = [_one(1.0), _one(2.0)]
    with pytest.raises(ValueError, match="val_scores has 1 entries"):
        greedy_soup(states, [0.1], lambda sd: 0.0)
    with pytest.raises(ValueError, match="names has 1"):
        greedy_soup(states, [0.1, 0.2], lambda sd: 0.0, names=["a"])
    with pytest.raises(ValueError, match=r"val_scores\[1\] is nan"):
        greedy_soup(states, [0.1, float("nan")], lambda sd: 0.0)
    with pytest.raises(ValueError, match="at least one"):
        greedy_soup([], [], lambda sd: 0.0)


def test_published_model_soups_numbers():
    df = published("model_soups").set_index("method")
    cols = ["imagenet", "imagenet-v2", "imagenet-sketch", "imagenet-r", "objectnet", "imagenet-a"]
    assert df.loc["greedy soup", cols].tolist() == [81.03, 69.55, 47.77, 64.20, 44.90, 27.89]
    assert df.loc["uniform soup", cols].tolist() == [79.97, 68.51, 47.71, 66.54, 45.95, 29.17]
    assert np.allclose(df[SHIFTS].mean(axis=1), df["avg_shifts"], rtol=0, atol=1e-9)
    assert df["source"].str.startswith("https://github.com/mlfoundations/model-soups/").all()
    assert set(df["model"]) == {"CLIP ViT-B/32"} and df.attrs["description"]
