"""The two ends of a WiSE-FT curve, made once and kept in the run cache.

:class:`Endpoints` holds what one (config, seed) needs, each piece built only when first asked
for: the model's transforms, the zero-shot classifier (cached: its key is the model, the weights,
the class names and the templates), the evaluation sets and their features. :func:`finetuned_run`
returns the fine-tuned end of one mode: a cached fine-tune (keyed by the zero-shot weights, the
training data, the recipe and the seed, computed and committed when missing) or a checkpoint made
elsewhere. Nothing here decides what to evaluate; :mod:`wiseft_lib.experiment.curve` does.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
from safetensors.torch import load_file, save_file
from torchvision import transforms as T

from wiseft_lib.core.device import is_distributed, is_writer, resolve_precision
from wiseft_lib.core.evaluate import preprocess_once
from wiseft_lib.core.features import extract_features
from wiseft_lib.core.files import atomic_write_text
from wiseft_lib.core.models import (
    PACKAGE_MODELS,
    RANDOM_INIT,
    ClassificationHead,
    ImageClassifier,
    create_architecture,
    create_model,
    package_weights_path,
    state_dict_hash,
    tag_overrides,
)
from wiseft_lib.core.probe import fit_logistic_probe
from wiseft_lib.core.zeroshot import zeroshot_classifier
from wiseft_lib.data import DatasetBundle, eval_split, get_dataset, list_datasets, subset_options
from wiseft_lib.data.folder import folder_fingerprint, is_folder_name
from wiseft_lib.data.kshot import kshot_bundle
from wiseft_lib.experiment.runs import RunCache, file_digest, run_key
from wiseft_lib.finetune import finetune
from wiseft_lib.finetune.lc_search import LinearSearch, search_linear_head

if TYPE_CHECKING:
    from wiseft_lib.experiment.config import CurveConfig

__all__ = ["Endpoints", "RunRef", "finetuned_run", "weights_identity", "eval_bundle_kwargs"]


# Decoded evaluation sets of this process, oldest first: (model, weights tag, data root, images) -> bundle.
# Small sets only (preprocess_eval); a study of many variants decodes each set once instead of once per run.
_DECODED: dict[str, DatasetBundle] = {}
_DECODED_MAX = 16


def eval_bundle_kwargs(name: str, n_test: Optional[int]) -> dict[str, Any]:
    """Loader arguments of an evaluation set: the mini sets take ``n_test``; real datasets are whole."""
    return {"n_test": n_test} if "n_test" in subset_options(name) else {}


def _is_folder(name: str) -> bool:
    return name not in list_datasets() and is_folder_name(name)


def _subsets_train(name: str) -> bool:
    """Whether the dataset's loader takes ``n_train`` and ``seed`` (the mini sets and image folders)."""
    return {"n_train", "seed"} <= subset_options(name)


def _with_folder_content(record: dict[str, Any], name: str, memo: dict[str, str]) -> dict[str, Any]:
    """An image folder is named by its path: its key also holds its files' fingerprint (walked once per
    ``memo``), so that changed images are never mistaken for cached ones (other datasets' records are unchanged)."""
    if not _is_folder(name):
        return record
    if name not in memo:
        memo[name] = folder_fingerprint(name)
    return {**record, "folder_content": memo[name]}


def weights_identity(model: str, pretrained: Optional[str], seed: int) -> dict[str, Any]:
    """What the zero-shot weights are: a file's hash, an open_clip tag, or a seeded random init."""
    if pretrained in (RANDOM_INIT, ""):
        return {"random_init_seed": seed}
    if model in PACKAGE_MODELS:
        tag = pretrained or next(iter(PACKAGE_MODELS[model]))
        if tag in PACKAGE_MODELS[model]:
            path = package_weights_path(model, tag)
            return {"tag": tag, "sha256": file_digest(path) if path.exists() else None}
    if pretrained and Path(pretrained).is_file():
        return {"file_sha256": file_digest(pretrained)}
    if pretrained is None:  # open_clip models without a tag start from random weights
        return {"random_init_seed": seed}
    if tag_overrides(model, pretrained).get("force_quick_gelu"):  # runs made before the model had QuickGELU (a
        return {"tag": pretrained, "activation": "quick_gelu"}  # GELU tower: wrong for these weights) are not reused
    return {"tag": pretrained}


class Endpoints:
    """Lazily built pieces of one curve (config + seed), shared by both fine-tuning modes."""

    def __init__(self, cfg: "CurveConfig", seed: int, runs: RunCache, progress: bool = True):
        self.cfg, self.seed, self.runs, self.progress = cfg, seed, runs, progress
        self.device = cfg.resolved_device()
        self._transforms = None
        self._zeroshot: Optional[ImageClassifier] = None
        self._zs_key: Optional[str] = None
        self._raw: dict[str, DatasetBundle] = {}
        self._bundles: dict[str, DatasetBundle] = {}
        self._features: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._folder_content: dict[str, str] = {}  # image folders (your own data): content fingerprints

    # ------------------------------------------------------------ transforms and data
    def transforms(self):
        """``(train_transform, eval_transform)`` of the model (no weights are loaded for this)."""
        if self._transforms is None:
            _, train_tf, eval_tf = create_architecture(self.cfg.model, self.cfg.pretrained)
            self._transforms = (train_tf, eval_tf)
        return self._transforms

    def eval_record(self, name: str) -> dict[str, Any]:
        """What identifies an evaluation set's images: name, split and (mini) size; an image folder's content."""
        record = {"dataset": name, "split": eval_split(name, self.cfg.eval_split),
                  "n_test": self.cfg.n_test if "n_test" in subset_options(name) else None}
        return _with_folder_content(record, name, self._folder_content)

    def eval_key(self, name: str, path: str) -> str:
        """Scores key of a set: its images, and how logits are computed (whole model or cached features)."""
        return run_key({"eval": self.eval_record(name), "path": path, "precision": self.eval_precision(path)})

    def eval_precision(self, path: str) -> str:
        """The resolved precision of evaluation (``path`` "model") or feature extraction ("features").

        ``auto`` is bf16 autocast for whole models on GPUs (bf16, else fp16, for features) and fp32 on the CPU.
        """
        if self.cfg.eval_precision != "auto":
            return resolve_precision(self.cfg.eval_precision, self.device)
        if path == "features":
            return resolve_precision("auto", self.device)
        return "bf16" if self.device.type == "cuda" else "fp32"

    def _raw_bundle(self, name: str) -> DatasetBundle:
        if name not in self._raw:
            self._raw[name] = get_dataset(name, root=self.cfg.data_root, split=eval_split(name, self.cfg.eval_split),
                                          transform=self.transforms()[1], **eval_bundle_kwargs(name, self.cfg.n_test))
        return self._raw[name]

    def scoring_bundle(self, name: str) -> DatasetBundle:
        """An evaluation set for scoring logits already computed (label space, metrics; nothing decoded)."""
        return self._raw_bundle(name)

    def eval_set_size(self, name: str) -> int:
        """Images an evaluation set scores (its files are indexed; nothing is decoded)."""
        return len(self._raw_bundle(name))

    def eval_bundle(self, name: str) -> DatasetBundle:
        """An evaluation set with the eval transform, decoded once if ``preprocess_eval`` (and then kept for
        the process: the next curve with the same model and images, e.g. another variant or seed, reuses it)."""
        if name not in self._bundles:
            bundle = self._raw_bundle(name)
            if self.cfg.preprocess_eval:
                key = json.dumps([self.cfg.model, self.cfg.pretrained, self.cfg.data_root, self.eval_record(name)],
                                 sort_keys=True, default=str)
                if key not in _DECODED:
                    _DECODED[key] = preprocess_once(bundle, num_workers=self.cfg.num_workers, progress=self.progress)
                    while len(_DECODED) > _DECODED_MAX:
                        _DECODED.pop(next(iter(_DECODED)))  # the oldest
                bundle = _DECODED[key]
            self._bundles[name] = bundle
        return self._bundles[name]

    def train_set(self, n_train: Optional[int], transform) -> DatasetBundle:
        kwargs = {"n_train": n_train, "seed": self.seed} if _subsets_train(self.cfg.id_dataset) else {}
        bundle = get_dataset(self.cfg.id_dataset, root=self.cfg.data_root, split="train", transform=transform,
                             **kwargs)
        if self.cfg.k_shot is not None:  # the seed draws the k examples of each class (data.kshot)

            bundle = kshot_bundle(bundle, self.cfg.k_shot, self.seed)
        return bundle

    def train_transform(self):
        """The end-to-end training transform: open_clip's, after RandAugment when ``augment="randaugment"``."""
        train_tf = self.transforms()[0]
        if self.cfg.augment == "randaugment":
            return T.Compose([T.RandAugment(num_ops=2, magnitude=9), train_tf])
        return train_tf

    def train_record(self, n_train: Optional[int], transform: str) -> dict[str, Any]:
        record = _with_folder_content({"dataset": self.cfg.id_dataset, "split": "train", "n_train": n_train,
                                       "seed": self.seed, "transform": transform}, self.cfg.id_dataset,
                                      self._folder_content)
        return record if self.cfg.k_shot is None else {**record, "k_shot": self.cfg.k_shot}

    # ------------------------------------------------------------ the zero-shot end
    def zeroshot_key(self) -> str:
        if self._zs_key is None:
            id_bundle = self._raw_bundle(self.cfg.id_dataset)
            self._zs_key = run_key({
                "model": self.cfg.model, "weights": weights_identity(self.cfg.model, self.cfg.pretrained, self.seed),
                "classnames": list(id_bundle.classnames), "templates": self.templates()})
        return self._zs_key

    def templates(self) -> list[str]:
        return list(self.cfg.templates or self._raw_bundle(self.cfg.id_dataset).templates)

    def zeroshot_hash(self) -> str:
        """Content hash of the zero-shot classifier's weights (what fine-tune keys build on)."""
        key = self.zeroshot_key()
        if not self.runs.has("zeroshot", key):
            self.zeroshot()
        return self.runs.record("zeroshot", key)["state_hash"]

    def zeroshot(self) -> ImageClassifier:
        """The zero-shot classifier on ``self.device`` (from the cache, else built and cached)."""
        if self._zeroshot is None:
            key = self.zeroshot_key()
            with self.runs.lock("zeroshot", key):
                if not self.runs.has("zeroshot", key):
                    self._build_zeroshot(key)
            self._zeroshot = ImageClassifier.load(self.runs.entry("zeroshot", key) / "model.safetensors",
                                                  device=self.device)
        return self._zeroshot

    def _build_zeroshot(self, key: str) -> None:
        torch.manual_seed(self.seed)  # only matters for random-init models
        clip_model, _, _ = create_model(self.cfg.model, self.cfg.pretrained, device=self.device)
        classnames = self._raw_bundle(self.cfg.id_dataset).classnames
        clf = zeroshot_classifier(clip_model, self.cfg.model, classnames, self.templates(), self.cfg.pretrained)
        del clip_model  # the classifier keeps only the image tower
        work = self.runs.work_dir("zeroshot", key)
        if is_writer():
            clf.save(work / "model.safetensors")
        self.runs.commit("zeroshot", key, work, {"state_hash": state_dict_hash(clf.state_dict()),
                                                 "model": self.cfg.model, "pretrained": self.cfg.pretrained})

    # ------------------------------------------------------------ features (linear mode)
    def features(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero-shot image features of an evaluation set (cached on disk under the run cache)."""
        if name not in self._features:
            self._features[name] = extract_features(
                self.zeroshot().image_encoder, self.eval_bundle(name).dataset, cache_dir=self.runs.root / "features",
                cache_key_parts={**self.eval_record(name), "zeroshot": self.zeroshot_key()},
                batch_size=self.cfg.eval_batch_size, device=self.device, num_workers=self.cfg.num_workers,
                precision=self.eval_precision("features"), progress=self.progress)
        return self._features[name]


    def train_feature_key(self) -> dict[str, Any]:
        """What identifies the linear classifier's training features: its images and the zero-shot model."""
        return {**self.train_record(self.cfg.n_train_linear, "eval"), "zeroshot": self.zeroshot_key()}

    def train_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero-shot image features of the linear classifier's training images (eval transform; cached on disk,
        the same file the linear fine-tune reads)."""

        train = self.train_set(self.cfg.n_train_linear, self.transforms()[1])
        return extract_features(self.zeroshot().image_encoder, train.dataset, cache_dir=self.runs.root / "features",
                                cache_key_parts=self.train_feature_key(), batch_size=self.cfg.eval_batch_size,
                                device=self.device, num_workers=self.cfg.num_workers,
                                precision=self.eval_precision("features"), progress=self.progress)


@dataclass(frozen=True)
class RunRef:
    """A fine-tuned end in the run cache: ``kind`` "finetune", "linear" (a head) or "external"."""

    kind: str
    key: str
    mode: str

    def load_model(self, ep: Endpoints) -> ImageClassifier:
        """The fine-tuned classifier (end-to-end mode)."""
        if self.kind == "external":
            return ImageClassifier.load(ep.runs.record(self.kind, self.key)["path"], device=ep.device)
        return ImageClassifier.load(ep.runs.entry(self.kind, self.key) / "finetuned.safetensors", device=ep.device)

    def load_head(self, ep: Endpoints) -> ClassificationHead:
        """The fine-tuned head (linear mode)."""
        if self.kind == "external":
            return self.load_model(ep).classification_head
        entry = ep.runs.entry(self.kind, self.key)
        t = load_file(str(entry / "head.safetensors"))
        return ClassificationHead(t["weight"], t["bias"], normalize=ep.runs.record(self.kind, self.key)["normalize"])


def finetuned_run(ep: Endpoints, mode: str) -> RunRef:
    """The fine-tuned end of ``mode``: a checkpoint from elsewhere, or a cached (else new) fine-tune."""
    checkpoint = ep.cfg.e2e_checkpoint if mode == "end-to-end" else ep.cfg.linear_checkpoint
    if checkpoint is not None:
        return _external_run(ep, mode, checkpoint)
    return _finetune_end_to_end(ep) if mode == "end-to-end" else _finetune_linear(ep)


def _finetune_end_to_end(ep: Endpoints) -> RunRef:
    ft_cfg = ep.cfg.finetune_config("end-to-end", ep.seed)
    parts = {"mode": "end-to-end", "zeroshot": ep.zeroshot_hash(),
             "train": ep.train_record(ep.cfg.n_train, "train" if ep.cfg.augment == "clip" else
                                      f"train+{ep.cfg.augment}"),  # the default keeps the keys made before
             "recipe": {**ft_cfg.recipe(), "precision": resolve_precision(ft_cfg.precision, ep.device)}}
    key = run_key(parts)
    with ep.runs.lock("finetune", key):
        if not ep.runs.has("finetune", key):
            start = time.time()
            work = ep.runs.work_dir("finetune", key)  # a killed fine-tune resumes from its checkpoints here
            train = ep.train_set(ep.cfg.n_train, ep.train_transform())
            finetune(ep.zeroshot(), train.dataset, ft_cfg, output_dir=work, resume=True, device=ep.device,
                     progress=ep.progress)
            processes = torch.distributed.get_world_size() if is_distributed() else 1
            ep.runs.commit("finetune", key, work, {"parts": parts, "seconds": round(time.time() - start, 1),
                                                   "processes": processes},
                           keep=["finetuned.safetensors", "finetuned.json", "log.jsonl"])
    return RunRef("finetune", key, "end-to-end")


def _linear_recipe(ep: Endpoints) -> dict[str, Any]:
    if ep.cfg.linear_method == "probe":
        return {"method": "probe", **ep.cfg.linear, "seed": ep.seed}
    if ep.cfg.linear_method == "search":
        return {"method": "search", **LinearSearch(**ep.cfg.linear).to_dict(), "seed": ep.seed}
    ft_cfg = ep.cfg.finetune_config("linear", ep.seed)
    return {"method": "adamw", **ft_cfg.recipe(), "precision": resolve_precision(ft_cfg.precision, ep.device)}


def _train_head(ep: Endpoints, work: Path) -> ClassificationHead:
    """The linear classifier of ``ep.cfg.linear_method``; a search also writes its trials into ``work``."""
    zs = ep.zeroshot()
    if ep.cfg.linear_method in ("probe", "search"):
        x, y = ep.train_features()
        if ep.cfg.linear_method == "probe":
            return fit_logistic_probe(x, y, seed=ep.seed, **ep.cfg.linear).to_head()

        found = search_linear_head(x, y, zs.classification_head, LinearSearch(**ep.cfg.linear), seed=ep.seed,
                                   device=ep.device, progress=ep.progress)
        if is_writer():
            atomic_write_text(work / "trials.csv", found.trials.to_csv(index=False))
        return found.head

    lc_cfg = ep.cfg.finetune_config("linear", ep.seed)
    train = ep.train_set(ep.cfg.n_train_linear, ep.transforms()[1])
    return finetune(zs, train.dataset, lc_cfg, device=ep.device, cache_dir=ep.runs.root / "features",
                    feature_key=ep.train_feature_key(), progress=ep.progress).classification_head


def _finetune_linear(ep: Endpoints) -> RunRef:
    parts = {"mode": "linear", "zeroshot": ep.zeroshot_hash(),
             "train": ep.train_record(ep.cfg.n_train_linear, "eval"), "recipe": _linear_recipe(ep)}
    key = run_key(parts)
    with ep.runs.lock("linear", key):
        if not ep.runs.has("linear", key):
            start = time.time()
            work = ep.runs.work_dir("linear", key)
            head = _train_head(ep, work)
            if is_writer():
                save_file({"weight": head.weight.detach().cpu().contiguous(),
                           "bias": head.bias.detach().cpu().contiguous()}, str(work / "head.safetensors"))
            ep.runs.commit("linear", key, work, {"parts": parts, "normalize": bool(head.normalize),
                                                 "seconds": round(time.time() - start, 1)})
    return RunRef("linear", key, "linear")


def _external_run(ep: Endpoints, mode: str, checkpoint: str) -> RunRef:
    """A checkpoint made elsewhere, checked against this curve's zero-shot model."""
    path = Path(checkpoint).with_suffix(".safetensors")
    key = run_key({"mode": mode, "checkpoint_sha256": file_digest(path), "zeroshot": ep.zeroshot_hash()})
    if not ep.runs.has("external", key):
        param = "e2e_checkpoint" if mode == "end-to-end" else "linear_checkpoint"
        try:
            model = ImageClassifier.load(path)
        except (ValueError, KeyError, OSError) as err:
            raise ValueError(f"{param} {path} cannot be loaded: {err}") from None
        _check_checkpoint(ep, mode, model, path)
        ep.runs.commit("external", key, ep.runs.work_dir("external", key), {"path": str(path.resolve()),
                                                                             "mode": mode})
    return RunRef("external", key, mode)


def _check_checkpoint(ep: Endpoints, mode: str, ft: ImageClassifier, path: Path) -> None:
    zs = ep.zeroshot()
    param = "e2e_checkpoint" if mode == "end-to-end" else "linear_checkpoint"
    problems = []
    if ft.meta.get("model_name") != ep.cfg.model:
        problems.append(f"it is a {ft.meta.get('model_name')!r} model, this study uses {ep.cfg.model!r}")
    if "classnames" in ft.meta and list(ft.meta["classnames"]) != list(zs.meta.get("classnames", [])):
        problems.append(f"its {len(ft.meta['classnames'])} class names differ from {ep.cfg.id_dataset}'s")
    if tuple(ft.classification_head.weight.shape) != tuple(zs.classification_head.weight.shape):
        problems.append(f"its head is {tuple(ft.classification_head.weight.shape)}, the zero-shot head "
                        f"{tuple(zs.classification_head.weight.shape)}")
    if mode == "linear" and not problems and (
            state_dict_hash(ft.image_encoder.state_dict()) != state_dict_hash(zs.image_encoder.state_dict())):
        problems.append("its image encoder differs from the zero-shot model's (a linear classifier keeps the "
                        "encoder frozen; check `pretrained`, or pass it as e2e_checkpoint)")
    if problems:
        raise ValueError(f"{param} {path} does not fit this study: {'; '.join(problems)}. It must be fine-tuned "
                         f"from model={ep.cfg.model!r}, pretrained={ep.cfg.pretrained!r} on {ep.cfg.id_dataset}.")
