"""The standard models' trained weights in the run cache, apart from their scores.

A standard model (:data:`wiseft_lib.mini.standard.STANDARD_ZOO`) is what its architecture, training data and seed
make it, whatever it is then scored on. Figures 1, 7-8-21 and Table 13 score the same models on different test
sets (1,000 or 5,000 images, test or val): with the weights kept under kind ``standard``, keyed by the model and
its training data only, each is trained once per cache and every later study only scores it.

    from wiseft_lib.experiment.runs import RunCache
    from wiseft_lib.experiment.standard_weights import trained_standard
    model = trained_standard("cnn8-e1", id_dataset="mini-photo", n_train=2000, seed=0, runs=RunCache(None))
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wiseft_lib.core.files import atomic_path
from wiseft_lib.data.folder import folder_fingerprint, is_folder_name
from wiseft_lib.experiment.runs import RunCache, run_key
from wiseft_lib.mini.standard import STANDARD_ZOO, build_standard, standard_training_data, train_zoo_model

__all__ = ["standard_identity", "trained_standard"]

WEIGHTS = "model.safetensors"


def standard_identity(name: str, id_dataset: str, n_train: Optional[int], seed: int) -> dict[str, Any]:
    """What a trained standard model is: its zoo entry, its training data (an image folder by its files'
    fingerprint too) and its seed."""
    if name not in STANDARD_ZOO:
        raise ValueError(f"unknown standard model {name!r}; known: {', '.join(STANDARD_ZOO)}")
    data: dict[str, Any] = {"dataset": id_dataset, "n_train": n_train, "seed": seed}
    if is_folder_name(id_dataset):
        data["folder_content"] = folder_fingerprint(id_dataset)
    return {"standard": name, "spec": STANDARD_ZOO[name], "train": data}


def trained_standard(name: str, *, id_dataset: str, n_train: Optional[int], seed: int, runs: RunCache,
                     data_root: Optional[str] = None, device: str | torch.device = "cpu",
                     data: Optional[tuple[torch.Tensor, torch.Tensor, int]] = None) -> nn.Module:
    """The standard model ``name`` trained on ``n_train`` images of ``id_dataset`` (None: all) with ``seed``, in
    eval mode on ``device``: read from ``runs`` or trained (on ``data``, the decoded training set, if given) and
    kept there."""
    identity = standard_identity(name, id_dataset, n_train, seed)
    key = run_key(identity)
    if not runs.has("standard", key):
        with runs.lock("standard", key):
            if not runs.has("standard", key):
                x, y, n_classes = data if data is not None else standard_training_data(id_dataset, n_train, seed,
                                                                                        data_root)
                model = train_zoo_model(name, x, y, num_classes=n_classes, seed=seed, device=device)
                work = runs.work_dir("standard", key)
                with atomic_path(work / WEIGHTS) as tmp:
                    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
                runs.commit("standard", key, work, {"identity": identity, "num_classes": n_classes,
                                                    "image_size": int(x.shape[-1])})
                return model
    record = runs.record("standard", key)
    spec = STANDARD_ZOO[name]
    model = build_standard(spec["arch"], spec["width"], num_classes=record["num_classes"],
                           image_size=record["image_size"])
    model.load_state_dict(load_file(str(runs.entry("standard", key) / WEIGHTS)))
    return model.to(device).eval()
