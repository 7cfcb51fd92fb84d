"""What one WiSE-FT curve depends on: :class:`CurveConfig` (model, data, both fine-tuning recipes, alphas,
seeds' shared settings), checked when built. The curve itself is computed in :mod:`wiseft_lib.experiment.curve`;
:mod:`wiseft_lib.experiment.endpoints` builds its zero-shot and fine-tuned endpoints.

    from wiseft_lib.experiment.config import CurveConfig
    cfg = CurveConfig(n_train=256, alphas=[0, 0.5, 1])
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch

from wiseft_lib.core.device import PRECISIONS, default_device
from wiseft_lib.core.interpolate import check_alpha
from wiseft_lib.core.models import PACKAGE_MODELS, RANDOM_INIT
from wiseft_lib.data.mini import MINI_ID, MINI_OOD
from wiseft_lib.data.templates import check_template
from wiseft_lib.finetune import FinetuneConfig
from wiseft_lib.finetune.lc_search import LinearSearch
from wiseft_lib.params import Params, ParamsError, param

__all__ = ["MODES", "AUGMENTS", "LINEAR_METHODS", "ALPHAS_11", "COUNT_METRICS", "CurveConfig"]

MODES = ("end-to-end", "linear")
AUGMENTS = ("clip", "randaugment")
LINEAR_METHODS = ("adamw", "probe", "search")
ALPHAS_11 = [round(0.1 * i, 2) for i in range(11)]
COUNT_METRICS = ("n_images", "n_skipped")  # what every score also records: images scored, unreadable files skipped


def _check_templates(templates: list[str]) -> None:
    if not templates:
        raise ParamsError("parameter 'templates': is empty; give at least one template, e.g. ['a photo of a {}.'] "
                          "(or None: the ID dataset's own)")
    for template in templates:
        try:
            check_template(template)
        except ValueError as err:
            raise ParamsError(f"parameter 'templates': {err} (or None: the ID dataset's own)") from None


@dataclass
class CurveConfig(Params):
    """Everything one WiSE-FT curve depends on (checked when built; see :mod:`wiseft_lib.params`)."""

    # what a notebook's parameters cell shows of these: the setting (the mini, or a real model and data folder)
    NOTEBOOK_FIELDS: ClassVar[tuple[str, ...]] = ("model", "pretrained", "data_root")

    model: str = param("wiseft-mini", "any open_clip model name (e.g. ViT-B-16) or the package's wiseft-mini")
    pretrained: Optional[str] = param(None, "open_clip tag (openai), a weights file, 'random' (random weights), or "
                                            "None for a package model's shipped weights")
    data_root: Optional[str] = param(None, "data folder (default: $WISEFT_DATA, then the usual places)")
    id_dataset: str = param(MINI_ID, "the fine-tuning (ID) dataset; its classes and templates make the zero-shot head")
    ood_datasets: list[str] = param(list(MINI_OOD), "the distribution shifts, scored at every alpha")
    templates: Optional[list[str]] = param(None, "prompt templates for the zero-shot head (None: the ID dataset's)")
    modes: list[str] = param(list(MODES), "fine-tuning modes: end-to-end and/or linear (classifier)")
    alphas: list[float] = param(list(ALPHAS_11), "mixing coefficients (0: the zero-shot model, 1: the fine-tuned one)")
    eval_split: str = param("test", "'test' for reported numbers; 'val' while choosing recipes (held out from test)")
    n_train: Optional[int] = param(2000, "end-to-end fine-tuning images (None: the whole train split)")
    n_train_linear: Optional[int] = param(None, "linear-classifier training images (None: the whole train split)")
    k_shot: Optional[int] = param(None, "train on k examples per class of the training images (a seeded draw per "
                                        "seed: the paper's low-data runs), None: all of them")
    n_test: Optional[int] = param(1000, "images per evaluation set, mini sets only (None: the whole split, 5000)")
    e2e: dict[str, Any] = param({"epochs": 10, "lr": 5e-4, "batch_size": 64, "weight_decay": 0.1, "warmup_steps": 30},
                                "end-to-end recipe: FinetuneConfig fields (the rest keep the paper's defaults)")
    linear_method: str = param("adamw", "'adamw': the paper's LC trainer (from the zero-shot head); 'probe': "
                                        "logistic regression, C chosen on held-out training data; 'search': the "
                                        "paper's random search of LC recipes (wiseft_lib.finetune.lc_search)")
    linear: dict[str, Any] = param({"epochs": 30, "lr": 1e-2, "batch_size": 256, "weight_decay": 0.0,
                                    "warmup_steps": 50}, "linear-classifier recipe: FinetuneConfig fields, or probe "
                                                         "arguments")
    e2e_checkpoint: Optional[str] = param(None, "a fine-tuned end-to-end model (finetuned.safetensors of wiseft "
                                                "finetune / torchrun) used instead of fine-tuning here")
    linear_checkpoint: Optional[str] = param(None, "a linear-classifier model (wiseft finetune --mode linear) used "
                                                   "instead of training one here")
    augment: str = param("clip", "end-to-end training augmentation: 'clip' (open_clip's random resized crop) or "
                                 "'randaugment' (torchvision's RandAugment, 2 ops at magnitude 9, before it)")
    eval_precision: str = param("auto", "evaluation and feature-extraction precision: auto (fp32 on the CPU; bf16 "
                                        "autocast on GPUs), fp32, bf16 or fp16")
    eval_batch_size: int = param(256, "images per evaluation batch (256: faster than 512 on a 2-core CPU, "
                                      "measured in bench/)")
    num_workers: int = param(0, "data-loading processes for fine-tuning, evaluation and feature extraction (8+ on "
                                "a GPU machine; 0 on the mini, whose evaluation sets are decoded once)")
    preprocess_eval: bool = param(True, "decode and transform evaluation sets once (False for ImageNet-size sets)")
    device: str = param("auto", "auto (cuda if available), cpu, cuda, cuda:1, ...")

    def __post_init__(self) -> None:
        super().__post_init__()

        def bad(key: str, why: str) -> ParamsError:
            return ParamsError(f"parameter {key!r}: {why}")


        if self.pretrained is None and self.model not in PACKAGE_MODELS and not self.model.startswith(
                ("hf-hub:", "local-dir:")):
            raise bad("pretrained", f"{self.model!r} has no default weights: name them (an open_clip tag such as "
                                    f"'openai', a weights file), or {RANDOM_INIT!r} for random initialisation")
        if self.templates is not None:
            _check_templates(self.templates)
        if not self.modes or any(m not in MODES for m in self.modes):
            raise bad("modes", f"must be a non-empty subset of {list(MODES)}, got {self.modes}")
        if not self.alphas:
            raise bad("alphas", "give at least one alpha in [0, 1]")
        try:
            self.alphas = [check_alpha(a) for a in self.alphas]
        except ValueError as err:
            raise bad("alphas", str(err)) from None
        if self.linear_method not in LINEAR_METHODS:
            raise bad("linear_method", f"must be one of {list(LINEAR_METHODS)}, not {self.linear_method!r}")
        if self.linear_method == "search" and "linear" in self.modes:
            try:
                LinearSearch(**self.linear)
            except (TypeError, ValueError) as err:
                raise bad("linear", f"{err} (linear_method 'search' takes LinearSearch fields: regularizer, "
                                    f"n_configs, epochs, warmup_steps, holdout_fraction, head_init, ...)") from None

        if self.eval_precision not in PRECISIONS:
            raise bad("eval_precision", f"must be one of {list(PRECISIONS)}, not {self.eval_precision!r}")
        if self.augment not in AUGMENTS:
            raise bad("augment", f"must be one of {list(AUGMENTS)}, not {self.augment!r}")
        if self.eval_split not in ("test", "val"):
            raise bad("eval_split", f"must be 'test' (reported numbers) or 'val' (choosing recipes), "
                                    f"not {self.eval_split!r}")
        for key in ("n_train", "n_test", "n_train_linear", "k_shot"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise bad(key, f"must be a positive integer or None, got {getattr(self, key)}")
        for key in ("e2e_checkpoint", "linear_checkpoint"):
            path = getattr(self, key)
            if path is not None and not Path(path).with_suffix(".safetensors").is_file():
                raise bad(key, f"{path} does not exist; give the .safetensors file written by wiseft finetune "
                               f"(OUTPUT_DIR/finetuned.safetensors)")
        for mode in self.modes:  # the recipes must build now, not after an hour of evaluation
            if mode == "end-to-end" or self.linear_method == "adamw":
                self.finetune_config(mode, seed=0)

    def finetune_config(self, mode: str, seed: int):
        """The :class:`FinetuneConfig` of one mode (``e2e`` or ``linear`` on top of the paper's defaults)."""

        key = "e2e" if mode == "end-to-end" else "linear"
        recipe = getattr(self, key)
        try:
            # the loaders' workers follow the study's num_workers unless the recipe says otherwise (not in keys)
            return FinetuneConfig(mode=mode, seed=seed, **{"num_workers": self.num_workers, **recipe})
        except TypeError as err:  # an unknown field
            known = [f.name for f in dataclasses.fields(FinetuneConfig) if f.name not in ("mode", "seed")]
            raise ParamsError(f"parameter {key!r}: {err}; its keys are FinetuneConfig fields: "
                              f"{', '.join(known)}") from None
        except ParamsError as err:  # a field of the wrong type: name it as KEY.FIELD
            raise ParamsError(str(err).replace("FinetuneConfig: parameter '", f"parameter '{key}.", 1)) from None
        except ValueError as err:
            raise ParamsError(f"parameter {key!r}: {err}") from None

    def eval_names(self) -> list[str]:
        return [self.id_dataset, *self.ood_datasets]

    def as_curve(self, **changes: Any) -> "CurveConfig":
        """The curve fields alone (a study's params hold more) as a plain, checked CurveConfig, with ``changes``."""

        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(CurveConfig)}
        return CurveConfig(**{**base, **changes})

    def resolved_device(self) -> torch.device:
        """The device; under torchrun "auto" and "cuda" mean this rank's own GPU (cuda:LOCAL_RANK)."""

        if self.device == "auto":
            return default_device()
        device = torch.device(self.device)
        if device.type == "cuda" and device.index is None and torch.cuda.is_available():
            return default_device()
        return device

    def smoke_version(self):
        """A seconds-long version for tests: tiny data, one epoch, three alphas."""

        small = lambda n, k: k if n is None else min(n, k)  # noqa: E731
        return dataclasses.replace(
            self, n_train=small(self.n_train, 256), n_train_linear=small(self.n_train_linear, 1000),
            n_test=small(self.n_test, 200), alphas=[0.0, 0.5, 1.0],
            e2e={**self.e2e, "epochs": 1, "warmup_steps": 2},
            linear=({**self.linear, "epochs": 1, "warmup_steps": 2} if self.linear_method == "adamw" else
                    {**self.linear, "epochs": 1, "warmup_steps": 2, "n_configs": 2} if self.linear_method == "search"
                    else self.linear))
