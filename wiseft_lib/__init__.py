"""wiseft: WiSE-FT (Wortsman et al., CVPR 2022) as a reproducible study package.

The front door: the names most users need, importable from here. The method in a few lines::

    import wiseft_lib as wf
    clip, train_tf, eval_tf = wf.create_model("wiseft-mini")                 # the embedded mini CLIP
    photos = wf.get_dataset("mini-photo", split="train", transform=train_tf, n_train=256)
    zeroshot = wf.zeroshot_classifier(clip, "wiseft-mini", photos.classnames, photos.templates)
    finetuned = wf.fine_tune(zeroshot, photos.dataset, wf.FinetuneConfig(epochs=1, batch_size=64, warmup_steps=1))
    wiseft = wf.interpolate_weights(zeroshot.state_dict(), finetuned.state_dict(), 0.5)
    zeroshot.load_state_dict(wiseft)                                         # now WiSE-FT, alpha 0.5
    print(wf.evaluate(zeroshot, wf.get_dataset("mini-sketch", transform=eval_tf, n_test=500)))

Names load on first use (so ``import wiseft_lib`` is instant and the study stack is needed only for
``run_study``). The package is laid out in layers, each importing only those below it (see the README,
"How the code is laid out"): ``core`` (models, zero-shot heads, interpolation, evaluation), ``data``,
``finetune``, ``mini`` (the embedded miniature's models), ``experiment`` (curves, the run cache, export),
``baselines``, ``analysis``, ``report`` and ``studies`` (one module per paper table or figure).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_FRONT_DOOR = {
    "create_model": "wiseft_lib.core.models",
    "ImageClassifier": "wiseft_lib.core.models",
    "ClassificationHead": "wiseft_lib.core.models",
    "list_models": "wiseft_lib.core.models",
    "zeroshot_classifier": "wiseft_lib.core.zeroshot",
    "interpolate_weights": "wiseft_lib.core.interpolate",
    "interpolate_in_place": "wiseft_lib.core.interpolate",
    "iter_alphas": "wiseft_lib.core.interpolate",
    "sweep_alphas": "wiseft_lib.core.interpolate",
    "compute_fisher": "wiseft_lib.core.fisher",
    "fisher_interpolate": "wiseft_lib.core.fisher",
    "ensemble_logits": "wiseft_lib.core.ensemble",
    "evaluate": "wiseft_lib.core.evaluate",
    "predict_logits": "wiseft_lib.core.evaluate",
    "score": "wiseft_lib.core.evaluate",
    "sweep_logits": "wiseft_lib.core.sweep",
    "extract_features": "wiseft_lib.core.features",
    "fit_logistic_probe": "wiseft_lib.core.probe",
    "get_dataset": "wiseft_lib.data",
    "list_datasets": "wiseft_lib.data",
    "fine_tune": "wiseft_lib.finetune",  # the engine's `finetune`: `wiseft_lib.finetune` is its subpackage's name
    "FinetuneConfig": "wiseft_lib.finetune",
    "CurveConfig": "wiseft_lib.experiment.config",
    "wiseft_curve": "wiseft_lib.experiment.curve",
    "RunCache": "wiseft_lib.experiment.runs",
    "export_wiseft": "wiseft_lib.experiment.export",
    "load_export": "wiseft_lib.experiment.export",
    "run_study": "wiseft_lib.studies",
}

_DEFINED_AS = {"fine_tune": "finetune"}  # front-door names that differ from the name in their module

__all__ = ["__version__", *_FRONT_DOOR]


def __getattr__(name: str) -> Any:
    if name not in _FRONT_DOOR:
        raise AttributeError(f"module 'wiseft_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(_FRONT_DOOR[name]), _DEFINED_AS.get(name, name))
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FRONT_DOOR))
