"""A WiSE-FT model as an open_clip hub folder with a model card, which ``open_clip`` loads by its path alone.

    from wiseft_lib.experiment.hub import ModelCard, export_hub_folder, load_hub_folder
    hub = export_hub_folder("runs/ft/finetuned.safetensors", "exported/hub", alpha=0.5,
                            card=ModelCard(datasets=["my_images"]))
    model, head, meta, preprocess = load_hub_folder(hub.folder)
    import open_clip  # anywhere, without wiseft_lib, kwargs or registered configs:
    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:exported/hub")

The folder (``wiseft export --hub-dir DIR``): ``open_clip_config.json`` (``model_cfg``, QuickGELU included, and
``preprocess_cfg``), ``open_clip_model.safetensors`` (the weights :mod:`~wiseft_lib.experiment.export` writes),
``head.safetensors``, ``wiseft_export.json`` (the sidecar) and ``README.md`` (the model card: YAML front matter,
loading, recipe, results, citation, licence). It is written in a temporary sibling folder and renamed into place.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import open_clip
import torch
import yaml
from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME
from open_clip.transform import PreprocessCfg
from safetensors.torch import load_file
from torch import nn

from wiseft_lib.core.files import atomic_path, atomic_write_json, atomic_write_text, is_disk_full
from wiseft_lib.core.interpolate import check_alpha
from wiseft_lib.core.models import PACKAGE_MODELS, RANDOM_INIT, ClassificationHead
from wiseft_lib.experiment import export
from wiseft_lib.experiment.export import ExportResult, ExportState

__all__ = ["FILES", "CardResult", "ModelCard", "HubExport", "export_hub_folder", "write_hub_folder",
           "check_hub_folder", "load_hub_folder", "open_clip_config", "model_card"]

FILES = {"config": HF_CONFIG_NAME, "model": HF_SAFE_WEIGHTS_NAME, "head": "head.safetensors",
         "sidecar": "wiseft_export.json", "card": "README.md"}
PACKAGE_LICENSE = "mit"  # pyproject.toml: license = "MIT" (the package's code and its own wiseft-mini weights)
RECIPE_KEYS = ("mode", "optimizer", "epochs", "lr", "batch_size", "weight_decay", "warmup_steps", "label_smoothing",
               "seed", "train_dataset", "train_split", "n_train", "k_shot")
_PREPROCESS = {"image_mean": "mean", "image_std": "std", "image_interpolation": "interpolation",
               "image_resize_mode": "resize_mode"}  # open_clip kwargs -> preprocess_cfg keys
PathLike = Union[str, Path]
BIBTEX = """@inproceedings{wortsman2022robust,
  title = {Robust fine-tuning of zero-shot models},
  author = {Wortsman, Mitchell and Ilharco, Gabriel and Kim, Jong Wook and Li, Mike and Kornblith, Simon and
            Roelofs, Rebecca and Gontijo-Lopes, Raphael and Hajishirzi, Hannaneh and Farhadi, Ali and
            Namkoong, Hongseok and Schmidt, Ludwig},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages = {7959--7971}, year = {2022}, eprint = {2109.01903}, archivePrefix = {arXiv}
}"""


@dataclass
class CardResult:
    """One accuracy for the model card (percent), with its 95% Clopper-Pearson interval when known."""

    dataset: str
    accuracy: float
    role: str = "ID"  # or "shift"
    split: str = "test"
    interval: Optional[tuple[float, float]] = None
    images: Optional[int] = None


@dataclass
class ModelCard:
    """What the card says beyond the export itself; ``None``: from the fine-tuned checkpoint's sidecar."""

    datasets: Optional[list[str]] = None  # the fine-tuning data
    recipe: Optional[dict[str, Any]] = None
    results: list[CardResult] = field(default_factory=list)
    title: Optional[str] = None


@dataclass
class HubExport:
    """The folder written, its files (by role), the sidecar's metadata and, if asked for, the flat files too."""

    folder: Path
    files: dict[str, Path]
    meta: dict[str, Any]
    flat: Optional[ExportResult] = None


def open_clip_config(model_name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``open_clip_config.json``: the model's open_clip config (QuickGELU set when ``kwargs`` force it) and the
    preprocessing of ``kwargs`` (the sidecar's ``open_clip_kwargs``) on open_clip's defaults."""
    export.register_configs()  # wiseft-mini: its config is written out, so the loader needs no registration
    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise ValueError(f"open_clip has no config for {model_name!r}: register it ($WISEFT_MODEL_CONFIGS) first")
    if kwargs.get("force_quick_gelu"):
        model_cfg["quick_gelu"] = True
    preprocess = {**asdict(PreprocessCfg()), "size": model_cfg["vision_cfg"].get("image_size", 224)}
    preprocess.update({dst: kwargs[src] for src, dst in _PREPROCESS.items() if kwargs.get(src) is not None})
    return json.loads(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}))  # tuples as lists


def check_hub_folder(folder: PathLike, overwrite: bool = False) -> Path:
    """Raise ``ValueError`` unless ``folder`` can become the hub folder: new, empty, or (``overwrite``) an earlier
    hub folder, replaced."""
    folder = Path(os.path.abspath(folder))
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cannot write the hub folder {folder}: it is a file; give a folder path")
    if folder.is_dir() and any(folder.iterdir()) and not (overwrite and (folder / FILES["sidecar"]).is_file()):
        raise ValueError(f"the hub folder {folder} exists and is not empty: give a new or empty folder, or pass "
                         f"overwrite=True (wiseft export --overwrite) to replace it" if not overwrite else
                         f"will not replace {folder}: it is not a wiseft hub folder (no {FILES['sidecar']}); "
                         f"give a new or empty folder")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot write the hub folder {folder}: cannot create {folder.parent} "
                         f"({err.strerror or err}); choose a folder you can write to") from None
    if not os.access(folder.parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the hub folder {folder}: {folder.parent} is not writable")
    return folder


def write_hub_folder(state: ExportState, folder: PathLike, *, card: Optional[ModelCard] = None,
                     overwrite: bool = False) -> HubExport:
    """Write an export (:func:`~wiseft_lib.experiment.export.build_export`) as an open_clip hub folder."""
    folder = check_hub_folder(folder, overwrite)
    meta = {**state.meta, "files": {"model": FILES["model"], "head": FILES["head"]}}
    config = open_clip_config(meta["model_name"], meta["open_clip_kwargs"])
    text = model_card(meta, _filled(card, state.finetuned_meta), folder.name)
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")  # renamed into place when complete
    try:
        tmp.mkdir()
        atomic_write_json(tmp / FILES["config"], config)
        with atomic_path(tmp / FILES["model"]) as model_tmp, atomic_path(tmp / FILES["head"]) as head_tmp:
            export.save_export_tensors(state, model_tmp, head_tmp)
        atomic_write_json(tmp / FILES["sidecar"], meta)
        atomic_write_text(tmp / FILES["card"], text)
        _swap_in(tmp, folder)
    except OSError as err:
        why = "no space left on the device" if is_disk_full(err) else (err.strerror or str(err))
        kept = "the earlier folder is kept" if folder.exists() else "nothing was written"
        raise ValueError(f"cannot write the hub folder {folder}: {why}; {kept}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return HubExport(folder, {role: folder / name for role, name in FILES.items()}, meta)


def _swap_in(tmp: Path, folder: Path) -> None:
    """Rename ``tmp`` to ``folder``; a non-empty ``folder`` is moved aside first, and back if the rename fails."""
    if not folder.exists() or not any(folder.iterdir()):
        os.replace(tmp, folder)  # an empty folder is replaced by the rename
        return
    old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(folder, old)
    try:
        os.rename(tmp, folder)
    except OSError:
        os.rename(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _filled(card: Optional[ModelCard], finetuned_meta: dict[str, Any]) -> ModelCard:
    """``card`` with its unset fields taken from the fine-tuned checkpoint's sidecar (data set, recipe)."""
    card = card or ModelCard()
    given = {**finetuned_meta.get("finetune", {}), **finetuned_meta}
    recipe = {k: given[k] for k in RECIPE_KEYS if given.get(k) is not None} if "finetune" in finetuned_meta else {}
    datasets = [finetuned_meta["train_dataset"]] if finetuned_meta.get("train_dataset") else []
    return ModelCard(card.datasets if card.datasets is not None else datasets,
                     card.recipe if card.recipe is not None else recipe, list(card.results), card.title)


def export_hub_folder(finetuned: PathLike, folder: PathLike, *, alpha: float = 0.5, model: Optional[str] = None,
                      pretrained: Optional[str] = None, zeroshot: Optional[PathLike] = None, seed: int = 0,
                      device: Union[str, torch.device] = "cpu", card: Optional[ModelCard] = None,
                      overwrite: bool = False, flat_output: Optional[PathLike] = None) -> HubExport:
    """:func:`~wiseft_lib.experiment.export.export_wiseft` (same arguments, same checks) as a hub folder, and also
    as the flat files at ``flat_output`` when given (one interpolation for both; every target checked first)."""
    alpha = check_alpha(alpha)
    check_hub_folder(folder, overwrite)
    if flat_output is not None:
        export.check_export_target(flat_output)
    zs, ft, clip_model, sources = export.load_wiseft_endpoints(finetuned, model=model, pretrained=pretrained,
                                                               zeroshot=zeroshot, seed=seed, device=device)
    state = export.build_export(zs, ft, clip_model, alpha, sources=sources)
    files = export.write_export(state, flat_output) if flat_output is not None else None
    hub = write_hub_folder(state, folder, card=card, overwrite=overwrite)
    hub.flat = files
    return hub


def load_hub_folder(folder: PathLike, device: Union[str, torch.device] = "cpu"
                    ) -> tuple[nn.Module, ClassificationHead, dict[str, Any], Callable]:
    """``(clip_model, head, meta, preprocess)`` of a hub folder (as :func:`~wiseft_lib.experiment.export.load_export`),
    the model through ``open_clip.create_model_and_transforms("local-dir:FOLDER")``."""
    folder = Path(folder)
    if not (folder / FILES["sidecar"]).is_file():
        raise FileNotFoundError(f"{folder} is not a wiseft hub folder: it has no {FILES['sidecar']}")
    meta = json.loads((folder / FILES["sidecar"]).read_text())
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}", device=device)
    model.eval()
    t = load_file(str(folder / FILES["head"]), device=str(device))
    head = ClassificationHead(t["weight"], t["bias"], normalize=meta.get("head_normalize", True)).to(device).eval()
    return model, head, meta, preprocess


# ---------------------------------------------------------------- the model card
def _base(meta: dict[str, Any]) -> tuple[str, str, str]:
    """``(base_model, license, the licence sentence)`` of the pretrained weights the model was fine-tuned from."""
    name, tag = meta["model_name"], meta.get("pretrained")
    shown = Path(tag).name if tag and Path(tag).exists() else tag
    base = f"{name} (pretrained={shown})"
    if tag in PACKAGE_MODELS.get(name, {}):
        return base, PACKAGE_LICENSE, (f"The base weights (`{name}`, tag `{tag}`) are the wiseft package's own, "
                                       f"under its MIT licence; so are these derived weights.")
    if tag in (None, "", RANDOM_INIT):
        return base, "other", "The base model was randomly initialised (no third-party weights): choose a licence."
    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    source = (f"https://huggingface.co/{cfg['hf_hub'].rstrip('/')}" if cfg.get("hf_hub") else cfg.get("url"))
    if source:
        return base, "other", (f"Derived from open_clip's `{name}` weights, tag `{tag}` (source: {source}): they "
                               f"keep that licence and its terms of use; check them before sharing these weights.")
    return base, "other", f"Derived from the weights file `{shown}`: they keep its licence (unknown to wiseft)."


def _front_matter(meta: dict[str, Any], card: ModelCard, title: str) -> dict[str, Any]:
    base, licence, _ = _base(meta)
    fm: dict[str, Any] = {"library_name": "open_clip", "license": licence, "base_model": base,
                          "tags": ["clip", "open_clip", "wise-ft", "weight-space-ensemble", "image-classification",
                                   "zero-shot-image-classification"]}
    if card.datasets:
        fm["datasets"] = list(card.datasets)
    if card.results:
        fm["metrics"] = ["accuracy"]
        fm["model-index"] = [{"name": title, "results": [
            {"task": {"type": "image-classification"}, "dataset": {"name": r.dataset, "type": r.dataset,
                                                                   "split": r.split},
             "metrics": [{"type": "accuracy", "value": round(float(r.accuracy), 2), "name": f"accuracy ({r.role})"}]}
            for r in card.results]}]
    fm["wiseft"] = {"alpha": float(meta["alpha"]), "model_name": meta["model_name"],
                    "pretrained": meta.get("pretrained"), "classes": int(meta["head_shape"][0]),
                    "format": export.EXPORT_FORMAT}
    return fm


def _usage(meta: dict[str, Any], name: str) -> list[str]:
    norm = ["    features = features / features.norm(dim=-1, keepdim=True)"] if meta.get("head_normalize", True) else []
    tokenizer = ('`wiseft_lib.core.models.get_tokenizer("wiseft-mini")`' if meta["model_name"] in PACKAGE_MODELS
                 else f'`open_clip.get_tokenizer("{meta["model_name"]}")`')
    return ["## How to load it", "", "```python", "import json", "", "import open_clip", "import torch",
            "from safetensors.torch import load_file", "",
            f'model, _, preprocess = open_clip.create_model_and_transforms("local-dir:{name}")  # the path of this '
            f"folder", "model.eval()", f'head = load_file("{name}/{FILES["head"]}")',
            f'classnames = json.load(open("{name}/{FILES["sidecar"]}"))["classnames"]', "with torch.no_grad():",
            "    features = model.encode_image(preprocess(image).unsqueeze(0))  # image: a PIL image", *norm,
            '    logits = torch.nn.functional.linear(features, head["weight"], head["bias"])',
            "print(classnames[logits.argmax().item()])", "```", "",
            f"These are the package's logits bit for bit (`wiseft_lib.experiment.export.exported_logits`; "
            f"`wiseft_lib.experiment.hub.load_hub_folder` does all of the above). The text tower is the pretrained "
            f"one: zero-shot classify other classes with the tokenizer {tokenizer}.", ""]


def model_card(meta: dict[str, Any], card: ModelCard, name: str) -> str:
    """``README.md`` of a hub folder named ``name``: YAML front matter, then the card (see the module docstring)."""
    alpha, classes = float(meta["alpha"]), list(meta.get("classnames", []))
    title = card.title or f"WiSE-FT {meta['model_name']}, alpha={alpha:g}"
    lines = ["---", yaml.safe_dump(_front_matter(meta, card, title), sort_keys=False).rstrip(), "---", "",
             f"# {title}", "",
             f"A weight-space ensemble (WiSE-FT) of the zero-shot and the fine-tuned CLIP `{_base(meta)[0]}`: "
             f"theta(alpha) = (1 - alpha) theta_zs + alpha theta_ft with "
             f"**alpha = {alpha:g}** for the image tower and the classification head (alpha 0: the zero-shot model, "
             f"1: the fine-tuned one); the text tower and logit scale are the pretrained ones.",
             "", f"Classes ({len(classes)}): " + ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else ""),
             "", *_usage(meta, name)]
    if card.recipe:
        lines += ["## Recipe", "", "| setting | value |", "|---|---|",
                  *[f"| {k} | {v} |" for k, v in card.recipe.items()], ""]
    if card.results:
        lines += [f"## Results (alpha = {alpha:g})", "", "| data | role | split | accuracy (%) | 95% interval (%) "
                  "| images |", "|---|---|---|---|---|---|"]
        for r in card.results:
            ci = f"{r.interval[0]:.1f} - {r.interval[1]:.1f}" if r.interval else "n/a"
            lines.append(f"| {r.dataset} | {r.role} | {r.split} | {r.accuracy:.2f} | {ci} | {r.images or 'n/a'} |")
        lines += ["", "Intervals: 95% Clopper-Pearson on the images scored (the sampling of the evaluation set; "
                  "seed-to-seed variation comes on top).", ""]
    lines += ["## Citation", "", "WiSE-FT: Wortsman et al., *Robust fine-tuning of zero-shot models*, CVPR 2022 "
              "(arXiv:2109.01903).", "", "```bibtex", BIBTEX, "```", "", "## Licence", "", _base(meta)[2],
              "The fine-tuning data's terms may apply as well.", ""]
    return "\n".join(lines)
