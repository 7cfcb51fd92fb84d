"""Independently trained classifiers, ensembled with the zero-shot model in output space (Table 13).

A model is named ``standard:NAME`` (the package's :data:`wiseft_lib.mini.standard.STANDARD_ZOO`, trained here on
the ID training split, seeded) or ``timm:NAME`` (a timm ImageNet classifier with its pretrained weights, e.g.
``timm:tf_efficientnet_b6.ns_jft_in1k``, the paper's NoisyStudent models; each sees the images through its own
timm transform). Its logits on each evaluation set, and the zero-shot model's, are computed once and kept in
the run cache, so an ensemble at any alpha costs an argmax.

    from wiseft_lib.baselines.other_models import other_model_logits
    logits, labels = other_model_logits("standard:cnn32-e4", "mini-photo", cfg, seed=0, runs=runs)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wiseft_lib.core.evaluate import predict_logits
from wiseft_lib.core.files import atomic_path
from wiseft_lib.data import get_dataset
from wiseft_lib.experiment.endpoints import eval_bundle_kwargs
from wiseft_lib.experiment.runs import RunCache, run_key
from wiseft_lib.experiment.standard_weights import trained_standard
from wiseft_lib.mini.standard import STANDARD_TRANSFORM, STANDARD_ZOO, standard_training_data, train_zoo_model

if TYPE_CHECKING:
    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.endpoints import Endpoints

__all__ = ["KINDS", "check_other_name", "build_other_model", "other_model_logits", "zeroshot_logits"]

KINDS = ("standard", "timm")


def check_other_name(name: str) -> None:
    """Raise ValueError unless ``name`` is ``standard:ZOO_NAME`` or ``timm:MODEL``."""

    kind, _, model = name.partition(":")
    if kind not in KINDS or not model:
        raise ValueError(f"model {name!r}: name it 'standard:NAME' (one of {', '.join(STANDARD_ZOO)}) or "
                         f"'timm:NAME' (a timm ImageNet classifier, e.g. timm:tf_efficientnet_b6.ns_jft_in1k)")
    if kind == "standard" and model not in STANDARD_ZOO:
        raise ValueError(f"model {name!r}: unknown standard model; known: {', '.join(STANDARD_ZOO)}")


def build_other_model(name: str, cfg: "CurveConfig", seed: int, *, pretrained: bool = True,
                      n_train: int | None = None, progress: bool = False, runs: RunCache | None = None
                      ) -> tuple[nn.Module, Callable[[Any], torch.Tensor]]:
    """``(model in eval mode on cfg's device, its eval transform)``; a standard model is trained on ``n_train`` ID
    training images (None: the whole split), or read from ``runs`` where it was trained before."""
    check_other_name(name)
    kind, _, model_name = name.partition(":")
    device = cfg.resolved_device()
    if kind == "timm":
        import timm  # optional: only for timm models

        try:
            model = timm.create_model(model_name, pretrained=pretrained)
        except RuntimeError as err:  # an unknown name
            raise ValueError(f"model {name!r}: timm cannot build it ({err})") from None
        data_cfg = timm.data.resolve_data_config({}, model=model)
        return model.to(device).eval(), timm.data.create_transform(**data_cfg)

    if runs is not None:  # the weights from the run cache (trained there once, whatever the test sets)
        model = trained_standard(model_name, id_dataset=cfg.id_dataset, n_train=n_train, seed=seed, runs=runs,
                                 data_root=cfg.data_root, device=device)
        return model, STANDARD_TRANSFORM
    x, y, n_classes = standard_training_data(cfg.id_dataset, n_train, seed, cfg.data_root)
    return train_zoo_model(model_name, x, y, num_classes=n_classes, seed=seed, device=device), STANDARD_TRANSFORM


def _cached(runs: RunCache, kind: str, key: str, record: dict[str, Any]):
    if not runs.has(kind, key):
        with runs.lock(kind, key):
            if not runs.has(kind, key):
                runs.commit(kind, key, runs.work_dir(kind, key), record)
    return runs.entry(kind, key)


def _load_or(path, compute: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    if path.is_file():
        t = load_file(str(path))
        return t["logits"], t["labels"]
    logits, labels = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"logits": logits.contiguous(), "labels": labels.contiguous()}, str(tmp))
    return logits, labels


def zeroshot_logits(ep: "Endpoints", dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The zero-shot classifier's ``(logits, labels)`` on an evaluation set, cached beside it."""

    ep.zeroshot()
    path = ep.runs.entry("zeroshot", ep.zeroshot_key()) / "logits" / f"{ep.eval_key(dataset, 'model')}.safetensors"
    return _load_or(path, lambda: predict_logits(ep.zeroshot(), ep.eval_bundle(dataset),
                                                 batch_size=ep.cfg.eval_batch_size, num_workers=ep.cfg.num_workers,
                                                 progress=False))


def other_model_logits(name: str, dataset: str, ep: "Endpoints", *, pretrained: bool = True,
                       n_train: int | None = None, models: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, labels)`` of model ``name`` on an evaluation set of ``ep``'s config, cached in the run cache
    (``models`` keeps a model built for one set for the next)."""

    cfg, seed = ep.cfg, ep.seed
    kind = name.partition(":")[0]
    identity = {"model": name, "pretrained": pretrained}
    if kind == "standard":  # trained here: its data and seed are part of what it is
        identity.update(train={"dataset": cfg.id_dataset, "n_train": n_train, "seed": seed})
    key = run_key(identity)
    entry = _cached(ep.runs, "other", key, {"identity": identity})
    path = entry / "logits" / f"{ep.eval_key(dataset, 'model')}.safetensors"

    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        store = models if models is not None else {}
        if name not in store:
            store[name] = build_other_model(name, cfg, seed, pretrained=pretrained, n_train=n_train, runs=ep.runs)
        model, transform = store[name]
        record = ep.eval_record(dataset)
        bundle = get_dataset(dataset, root=cfg.data_root, split=record["split"], transform=transform,
                             **eval_bundle_kwargs(dataset, cfg.n_test))
        return predict_logits(model, bundle, batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers,
                              device=ep.device, progress=False)

    return _load_or(path, compute)
