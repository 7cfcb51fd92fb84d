"""The embedded default shows WiSE-FT's claims with the shipped weights (functional tier).

One seed of the Figure-1 recipe (the defaults of ``CurveConfig``, which the mini params file
repeats): fine-tuning raises ID accuracy, and the alpha=0.5 midpoint beats both endpoints out of
distribution, end-to-end and for the linear classifier. Thresholds are directions with margin, not
the exact numbers of the closing note, so the test is not flaky across machines.
"""
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from wiseft_lib.core.models import PACKAGE_MODELS, package_weights_path
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import curve_table, wiseft_curve
from wiseft_lib.mini.pretrain import PretrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_mini_params_file_is_the_library_recipe():
    params = yaml.safe_load((ROOT / "params/mini/fig1_id_vs_ood.yaml").read_text())
    default = CurveConfig()
    for key in ("n_train", "e2e", "linear_method", "linear", "n_train_linear", "eval_split"):
        if key in params:
            assert params[key] == getattr(default, key), key


def test_shipped_weights_were_pretrained_with_the_library_recipe():
    """Changing the pretraining default without re-shipping the weights (or the reverse) fails here."""
    recipe = dataclasses.asdict(PretrainConfig())
    params = yaml.safe_load((ROOT / "params/mini/pretrain_mini_clip.yaml").read_text())
    for key in ("steps", "batch_size", "lr", "warmup_steps", "caption_noise", "noise_mode", "n_pool"):
        assert params[key] == recipe[key], f"params/mini/pretrain_mini_clip.yaml {key}"
    for tag in PACKAGE_MODELS["wiseft-mini"]:
        shipped = json.loads(package_weights_path("wiseft-mini", tag).with_suffix(".json").read_text())
        shipped = shipped["pretrain_config"]
        differing = {k for k in recipe if k not in ("steps", "warmup_steps") and shipped.get(k) != recipe[k]}
        assert not differing, f"{tag}: shipped weights differ from PretrainConfig in {sorted(differing)}"
        if tag == "fmnist":
            assert (shipped["steps"], shipped["warmup_steps"]) == (recipe["steps"], recipe["warmup_steps"])


@pytest.mark.slow
def test_shipped_mini_shows_the_wiseft_effect(fashion_mnist_root):
    curve = curve_table(wiseft_curve(CurveConfig(alphas=[0.0, 0.5, 1.0], n_test=1000), seed=0, progress=False))
    at = {(r["mode"], r["alpha"]): r for _, r in curve.iterrows()}
    for mode in ("end-to-end", "linear"):
        zs, mid, ft = at[(mode, 0.0)], at[(mode, 0.5)], at[(mode, 1.0)]
        print(mode, [(round(r["id_acc"], 1), round(r["ood_avg"], 1)) for r in (zs, mid, ft)])
        assert mid["ood_avg"] > max(zs["ood_avg"], ft["ood_avg"]), mode
        assert ft["id_acc"] > zs["id_acc"], mode
    assert at[("end-to-end", 1.0)]["id_acc"] >= at[("end-to-end", 0.0)]["id_acc"] + 5
