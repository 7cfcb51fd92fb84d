"""FLYP's fine-tuned end of a curve, made once per key and kept in the run cache (kind ``"flyp"``).

    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.endpoints import Endpoints
    from wiseft_lib.experiment.flyp_run import flyp_run
    from wiseft_lib.experiment.runs import RunCache

    ep = Endpoints(CurveConfig(n_train=256), 0, RunCache("outputs/runs"))
    ref = flyp_run(ep, {"epochs": 1})     # the curve's e2e recipe with one epoch; trained only the first time
    model = ref.load_model(ep)            # the FLYP classifier: an ImageClassifier, like the end-to-end end

The key holds what the end-to-end fine-tune's does (the zero-shot model's hash, the training images, the recipe
and its resolved precision) plus the templates that caption the images, under mode ``"flyp"``.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import torch

from wiseft_lib.core.device import is_writer, resolve_precision
from wiseft_lib.core.models import create_model, get_tokenizer
from wiseft_lib.experiment.endpoints import Endpoints, RunRef
from wiseft_lib.experiment.runs import run_key
from wiseft_lib.finetune.config import FinetuneConfig
from wiseft_lib.finetune.flyp import flyp_classifier, flyp_finetune

__all__ = ["flyp_run", "flyp_config"]


def flyp_config(ep: Endpoints, recipe: Optional[dict[str, Any]] = None) -> FinetuneConfig:
    """The curve's end-to-end recipe (``ep.cfg.e2e``, seeded by ``ep.seed``) with ``recipe``'s fields over it."""
    base = ep.cfg.finetune_config("end-to-end", ep.seed)
    if not recipe:
        return base
    known = {f.name for f in dataclasses.fields(FinetuneConfig)}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise ValueError(f"FLYP recipe keys {unknown} are not FinetuneConfig fields; its fields are: "
                         f"{', '.join(sorted(known))}")
    return FinetuneConfig(**{**base.to_dict(), **recipe})


def flyp_run(ep: Endpoints, recipe: Optional[dict[str, Any]] = None) -> RunRef:
    """The FLYP fine-tune of ``ep``'s model on its training images: from the run cache, else trained and committed.

    ``recipe=None`` is the curve's end-to-end recipe; a dict overrides its fields. Returns
    ``RunRef("flyp", key, "end-to-end")``, whose ``load_model(ep)`` is the FLYP classifier.
    """
    ft_cfg = flyp_config(ep, recipe)
    parts = {"mode": "flyp", "zeroshot": ep.zeroshot_hash(),
             "train": ep.train_record(ep.cfg.n_train, "train" if ep.cfg.augment == "clip" else
                                      f"train+{ep.cfg.augment}"),
             "recipe": {**ft_cfg.recipe(), "precision": resolve_precision(ft_cfg.precision, ep.device)},
             "templates": ep.templates()}
    key = run_key(parts)
    with ep.runs.lock("flyp", key):
        if not ep.runs.has("flyp", key):
            start = time.time()
            work = ep.runs.work_dir("flyp", key)
            torch.manual_seed(ep.seed)  # only matters for random-init models (as the zero-shot end's)
            clip_model, _, _ = create_model(ep.cfg.model, ep.cfg.pretrained, device=ep.device)
            classnames = list(ep.scoring_bundle(ep.cfg.id_dataset).classnames)
            templates = ep.templates()
            train = ep.train_set(ep.cfg.n_train, ep.train_transform())
            flyp_finetune(clip_model, get_tokenizer(ep.cfg.model), train.dataset, classnames, templates, ft_cfg,
                          device=ep.device, progress=ep.progress)
            clf = flyp_classifier(clip_model, ep.cfg.model, classnames, templates, ep.cfg.pretrained)
            clf.meta["finetune"] = {**ft_cfg.to_dict(), "method": "flyp",
                                    "resolved_precision": resolve_precision(ft_cfg.precision, ep.device)}
            del clip_model  # the classifier keeps the image tower; the text tower lives on in its head
            if is_writer():
                clf.save(work / "finetuned.safetensors")
            ep.runs.commit("flyp", key, work, {"parts": parts, "seconds": round(time.time() - start, 1),
                                               "processes": 1},
                           keep=["finetuned.safetensors", "finetuned.json"])
    return RunRef("flyp", key, "end-to-end")
