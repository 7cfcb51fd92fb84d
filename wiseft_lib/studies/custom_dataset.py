"""Your own data: WiSE-FT on an image folder, and the result exported as an open_clip checkpoint.

    wiseft run custom_dataset --params params/mini/custom_dataset.yaml                     # the Fashion-MNIST demo
    wiseft run custom_dataset --params params/mini/custom_dataset.yaml \\
        --set id_dataset=/data/my_images --set 'ood_datasets=[/data/my_images_at_night]'  # your folders
    papermill notebooks/custom_dataset.ipynb out.ipynb -f params/mini/custom_dataset.yaml   # the same, with prose

``id_dataset`` is a folder with one sub-folder per class (optional ``train/``, ``val/``, ``test/``; see
:mod:`wiseft_lib.data.folder` for the layout and the splits); ``ood_datasets`` are folders of the same classes
under a distribution shift (``[]``: none). :func:`run` builds the zero-shot model from the class names,
fine-tunes it (end-to-end and/or as a linear classifier), sweeps alpha, and writes ``data.csv`` (images per
set and split, unreadable files skipped), ``samples.png``, ``curve.csv``, ``summary.csv/.md/.tex``,
``custom_dataset.png/.pdf`` (ID vs. OOD accuracy, or ID accuracy vs. alpha without shift folders),
``export/`` (the WiSE-FT model at ``export_alpha`` as an open_clip checkpoint, its head and sidecar, and
``export/hub/``, the same model as an open_clip hub folder with a model card filled from these results; both
checked by loading them back through open_clip: ``export_check.csv``), ``results.sqlite`` and ``study.json``.

**Demo folders.** With ``demo_per_class`` set (the mini preset: 100), folders named in ``id_dataset`` /
``ood_datasets`` that do not exist yet are written from the embedded Fashion-MNIST data
(:func:`wiseft_lib.data.mini.demo_folder.write_demo_folder`): ``train/`` and ``test/`` in the photo style for the ID
folder; ``test/`` only for a shift folder, in the mini style its name mentions (``fashion-sketch``), else
``viewpoint`` (rotations, flips, clutter: where fine-tuning costs the mini most). Only paths under the project's
``outputs/`` folder or inside ``output_dir`` are ever written, so a mistyped path to your own data fails with
the expected layout instead of becoming a demo.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch

from wiseft_lib.analysis.shift_tables import count_interval
from wiseft_lib.core.interpolate import check_alpha, interpolate_weights
from wiseft_lib.core.models import RANDOM_INIT, ImageClassifier, create_model
from wiseft_lib.data import eval_split, get_dataset, list_datasets
from wiseft_lib.data.common import dataset_labels
from wiseft_lib.data.folder import folder_path, is_folder_name
from wiseft_lib.data.mini.demo_folder import DEMO_MARKER, demo_style, write_demo_folder
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import alphas_on_val, curve_table, summary_table, val_id_curve, wiseft_curve
from wiseft_lib.experiment.endpoints import Endpoints, finetuned_run
from wiseft_lib.experiment.export import build_export, exported_logits, load_export, write_export
from wiseft_lib.experiment.hub import CardResult, ModelCard, load_hub_folder, write_hub_folder
from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.experiment.runs import file_digest
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.plots import plot_id_vs_ood, plot_metric_curves, show_images
from wiseft_lib.studies.base import StudyOutputs, StudyParams, StudyResult, UsesRuns, register_study, resolve_path

NAME = "custom_dataset"
DEMO_ID = "outputs/mini/custom_dataset_demo/fashion"
DEMO_OOD = "outputs/mini/custom_dataset_demo/fashion-viewpoint"
__all__ = ["CustomDatasetParams", "CustomDatasetResult", "run", "DEMO_ID", "DEMO_OOD"]


@dataclass
class CustomDatasetParams(CurveConfig, UsesRuns, StudyParams):
    """WiSE-FT on your own image folders: the curve's parameters, the demo data and the export."""

    output_dir: str = param("outputs/mini/custom_dataset", "where results, tables, figures and the exported model go")
    id_dataset: str = param(DEMO_ID, "your image folder (one sub-folder per class; optional train/, val/, test/; "
                                     "relative paths from the project root), or any dataset name")
    ood_datasets: list[str] = param([DEMO_OOD], "folders of the same classes under a distribution shift, scored at "
                                                "every alpha ([]: none; the figure is then accuracy vs. alpha)")
    n_train: Optional[int] = param(None, "end-to-end fine-tuning images, a seeded class-balanced subset of the train "
                                         "split (None: all of them)")
    demo_per_class: Optional[int] = param(100, "write missing folders under outputs/ (or inside output_dir) as demo "
                                               "folders from the embedded Fashion-MNIST with this many training images "
                                               "per class (None: never)")
    export_alpha: Optional[float] = param(0.5, "export the WiSE-FT model at this alpha (first seed; end-to-end if "
                                               "fine-tuned, else linear) as an open_clip checkpoint (None: no export)")

    def __post_init__(self) -> None:
        super().__post_init__()

        if self.export_alpha is not None:
            try:
                self.export_alpha = check_alpha(self.export_alpha)
            except ValueError as err:
                raise ParamsError(f"parameter 'export_alpha': {err}") from None
        if self.demo_per_class is not None and self.demo_per_class < 1:
            raise ParamsError(f"parameter 'demo_per_class' must be a positive integer or None, "
                              f"got {self.demo_per_class}")


@dataclass
class CustomDatasetResult(StudyResult):
    """What :func:`run` computed and wrote (the notebook displays it)."""

    params: CustomDatasetParams
    data: pd.DataFrame  # one row per (dataset, split): images, unreadable files skipped, where the split comes from
    classnames: list[str]
    samples: Any  # matplotlib Figure: a few training images per class
    curve: pd.DataFrame  # one row per (seed, mode, alpha): id_acc, ood_avg, one column per shift folder (%)
    summary: pd.DataFrame  # zero-shot, fine-tuned, alpha=0.5 and oracle-alpha rows, mean over seeds
    figure: Any  # matplotlib Figure
    export: Any = None  # wiseft_lib.experiment.export.ExportResult, or None
    export_check: Optional[pd.DataFrame] = None  # the export (file, hub folder) loaded back through open_clip vs.
    # the package's model, one row each
    labels: dict[str, str] = field(default_factory=dict)  # dataset name -> short label (curve columns)
    hub: Any = None  # wiseft_lib.experiment.hub.HubExport: export/hub/, the open_clip folder with its model card


# ---------------------------------------------------------------- datasets
def _is_folder(name: str) -> bool:
    return name not in list_datasets() and is_folder_name(name)


def _resolve(name: str) -> str:
    """A folder dataset's path from the project root when relative (as ``output_dir`` is); names stay names."""
    if not _is_folder(name):
        return name

    return str(resolve_path(folder_path(name).expanduser()))


def resolved(params: CustomDatasetParams) -> CustomDatasetParams:
    """The parameters with every folder path made absolute (notebooks run from notebooks/, the CLI from anywhere)."""
    return dataclasses.replace(params, id_dataset=_resolve(params.id_dataset),
                               ood_datasets=[_resolve(n) for n in params.ood_datasets])


def _demo_allowed(path: Path, p: CustomDatasetParams) -> bool:
    roots = [resolve_path("outputs").resolve(), p.output_path().resolve()]
    return any(path.resolve().is_relative_to(r) for r in roots)


def ensure_demo_folders(p: CustomDatasetParams) -> list[Path]:
    """Write the missing demo folders (see the module docstring); returns those written."""

    if p.demo_per_class is None:
        return []
    written = []
    for i, name in enumerate([p.id_dataset, *p.ood_datasets]):
        if not _is_folder(name):
            continue
        path = Path(name)
        if path.exists() and not (path / DEMO_MARKER).exists():
            continue  # your own folder: never touched
        if not path.exists() and not _demo_allowed(path, p):
            continue  # the loader says it is missing and shows the layout
        is_id = i == 0
        write_demo_folder(path, p.demo_per_class, style="photo" if is_id else demo_style(path), train=is_id,
                          root=p.data_root)
        written.append(path)
    return written


def short_labels(names: list[str]) -> dict[str, str]:
    """Folder datasets by their folder name (the parent's too when two share one); other names unchanged."""
    labels = {n: (Path(n).name if _is_folder(n) else n) for n in names}
    if len(set(labels.values())) < len(labels):
        labels = {n: ("/".join(Path(n).parts[-2:]) if _is_folder(n) else n) for n in names}
    if len(set(labels.values())) < len(labels):
        labels = {n: n for n in names}
    return labels


def describe_data(p: CustomDatasetParams) -> tuple[pd.DataFrame, list[str]]:
    """Images per dataset and split (and files skipped as unreadable); checks the shift folders' classes."""

    rows, classnames = [], None
    for i, name in enumerate([p.id_dataset, *p.ood_datasets]):
        splits = ["train", "val", "test"] if i == 0 else [eval_split(name, p.eval_split)]
        for split in splits:
            bundle = get_dataset(name, root=p.data_root, split=split)
            if classnames is None:
                classnames = list(bundle.classnames)
            elif list(bundle.classnames) != classnames:
                raise ValueError(
                    f"shift folder {name} has the classes {bundle.classnames[:6]}..., the ID folder {p.id_dataset} "
                    f"{classnames[:6]}...: a shift must have the ID classes (same class folders). With your own "
                    f"id_dataset, set ood_datasets to your shift folders or [] (the mini preset's is the demo's).")
            rows.append({"dataset": name, "role": "ID" if i == 0 else "shift", "split": split,
                         "images": len(bundle), "skipped_unreadable": bundle.skipped,
                         "classes": len(bundle.classnames),
                         "source": bundle.metadata.get("split_source", split)})
    return pd.DataFrame(rows), classnames or []


def sample_figure(p: CustomDatasetParams, classnames: list[str], per_class: int = 4):
    """A grid of a few training images per class (at most 10 classes shown)."""

    bundle = get_dataset(p.id_dataset, root=p.data_root, split="train")
    labels = dataset_labels(bundle.dataset)
    images, titles = [], []
    for c in range(min(len(classnames), 10)):
        for j in np.flatnonzero(labels == c)[:per_class]:
            img = bundle.dataset[int(j)][0]
            images.append(np.asarray(img.convert("RGB").resize((64, 64))))
            titles.append(classnames[c])
    return show_images(images, titles, ncols=per_class * 2, title=f"{Path(p.id_dataset).name}: training images")


def no_shift_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Zero-shot, fine-tuned, alpha=0.5 and best-ID-alpha rows per mode (no shift folders), mean over seeds."""
    mean = curve.groupby(["mode", "alpha"]).mean(numeric_only=True).drop(columns="seed").reset_index()
    out = []
    for mode, g in mean.groupby("mode", sort=False):
        g = g.set_index("alpha")
        for alpha, label in ((0.0, "zero-shot"), (1.0, f"fine-tuned ({mode})"), (0.5, f"WiSE-FT {mode}, alpha=0.5")):
            if alpha in g.index:
                out.append({"method": label, "alpha": alpha, "id_acc": g.loc[alpha, "id_acc"]})
        best = g["id_acc"].idxmax()
        out.append({"method": f"WiSE-FT {mode}, oracle alpha={best:g} (best ID)", "alpha": best,
                    "id_acc": g.loc[best, "id_acc"]})
    return pd.DataFrame(out).drop_duplicates(subset=["method"]).reset_index(drop=True)


# ---------------------------------------------------------------- export
def _export_endpoints(p: CustomDatasetParams, runs, progress: bool):
    """``(endpoints, mode, run, zero-shot, fine-tuned, pretrained CLIP, sources)`` of the exported model (first seed;
    the classifiers copied to the CPU)."""

    seed = p.seeds[0]
    mode = "end-to-end" if "end-to-end" in p.modes else "linear"
    ep = Endpoints(p, seed, runs, progress)
    zs = ep.zeroshot()
    zs_file = runs.entry("zeroshot", ep.zeroshot_key()) / "model.safetensors"
    run = finetuned_run(ep, mode)  # cached by the curve: nothing is trained again
    if mode == "end-to-end":
        ft = run.load_model(ep)
        ft_file = Path(runs.record(run.kind, run.key)["path"]) if run.kind == "external" else \
            runs.entry(run.kind, run.key) / "finetuned.safetensors"
    else:
        ft = ImageClassifier(copy.deepcopy(zs.image_encoder), run.load_head(ep), dict(zs.meta))
        ft_file = Path(runs.record(run.kind, run.key)["path"]) if run.kind == "external" else \
            runs.entry(run.kind, run.key) / "head.safetensors"
    if p.pretrained == RANDOM_INIT:
        torch.manual_seed(seed)  # the zero-shot model's random init (Endpoints does the same)
    clip_model, _, _ = create_model(p.model, p.pretrained)
    sources = {"zeroshot": {"path": str(zs_file), "sha256": file_digest(zs_file)},
               "finetuned": {"path": str(ft_file), "sha256": file_digest(ft_file), "mode": mode,
                             "run": f"{run.kind}/{run.key}"},
               "pretrained": {"model": p.model, "tag": p.pretrained}}
    zs_cpu, ft_cpu = copy.deepcopy(zs).cpu().eval(), copy.deepcopy(ft).cpu().eval()
    return ep, mode, run, zs_cpu, ft_cpu, clip_model, sources


def card_info(p: CustomDatasetParams, tidy: Optional[pd.DataFrame], mode: str, run, labels: dict[str, str]
              ) -> ModelCard:
    """The model card's data: the ID folder, the recipe, and the accuracies of the exported model (first seed,
    ``mode``, ``export_alpha``: none if the curve did not score that alpha) with 95% Clopper-Pearson intervals."""

    results = []
    if tidy is not None:
        rows = tidy[(tidy["seed"] == p.seeds[0]) & (tidy["mode"] == mode) & np.isclose(tidy["alpha"], p.export_alpha)]
        wide = rows.pivot_table(index="dataset", columns="metric", values="value")
        for i, name in enumerate([p.id_dataset, *p.ood_datasets]):
            if name not in wide.index or pd.isna(wide.loc[name].get("top1", np.nan)):
                continue
            acc, n = float(wide.loc[name, "top1"]), wide.loc[name].get("n_images")
            results.append(CardResult(labels.get(name, name), acc, "ID" if i == 0 else "shift",
                                      eval_split(name, p.eval_split), count_interval(acc, n, 0.95),
                                      None if n is None or pd.isna(n) else int(n)))
    if run.kind == "external":
        recipe = {"mode": mode, "fine-tuned checkpoint": Path(p.e2e_checkpoint if mode == "end-to-end" else
                                                               p.linear_checkpoint or "").name}
    elif mode == "end-to-end":
        recipe = {"mode": mode, **p.e2e, "n_train": p.n_train, "k_shot": p.k_shot, "augment": p.augment}
    else:
        recipe = {"mode": mode, "method": p.linear_method, **p.linear, "n_train": p.n_train_linear, "k_shot": p.k_shot}
    recipe = {"seed": p.seeds[0], **{k: v for k, v in recipe.items() if v is not None}}
    return ModelCard(datasets=[labels.get(p.id_dataset, p.id_dataset)], recipe=recipe, results=results)


def export_model(p: CustomDatasetParams, runs, out: Path, *, tidy: Optional[pd.DataFrame] = None,
                 labels: Optional[dict[str, str]] = None, progress: bool = True):
    """Export the WiSE-FT model at ``p.export_alpha`` (first seed) as the flat open_clip files in ``export/`` and as
    the hub folder ``export/hub/`` (its card from ``tidy``, the curve's results), and check that both load back
    through open_clip with the package's logits: ``(flat files, hub folder, check)``."""

    ep, mode, run, zs, ft, clip_model, sources = _export_endpoints(p, runs, progress)
    tag = f"{p.export_alpha:g}".replace(".", "p")
    state = build_export(zs, ft, clip_model, p.export_alpha, sources=sources,
                         extra_meta={"dataset": p.id_dataset, "seed": p.seeds[0], "mode": mode})
    result = write_export(state, out / "export" / f"{p.model}-wiseft-{mode}-alpha{tag}.safetensors")
    card = card_info(p, tidy, mode, run, labels or short_labels([p.id_dataset, *p.ood_datasets]))
    hub = write_hub_folder(state, out / "export" / "hub", card=card, overwrite=True)

    # load both back as a user would, and compare with the package's interpolated classifier on test images
    eval_tf = ep.transforms()[1]
    raw = get_dataset(p.id_dataset, root=p.data_root, split=eval_split(p.id_dataset, p.eval_split)).dataset
    pil = [raw[i][0] for i in range(min(16, len(raw)))]
    x = torch.stack([eval_tf(img) for img in pil])
    reference = copy.deepcopy(ft)
    reference.load_state_dict(interpolate_weights(zs.state_dict(), ft.state_dict(), p.export_alpha))
    with torch.no_grad():
        ours = reference.eval()(x)
    rows = []
    for loaded, via, name in ((load_export(result.model), "pretrained=FILE", result.model.name),
                              (load_hub_folder(hub.folder), "local-dir:", f"{hub.folder.name}/")):
        model, head, meta, preprocess = loaded
        with torch.no_grad():
            theirs = exported_logits(model, head, x, normalize=meta["head_normalize"])
        rows.append({"alpha": p.export_alpha, "mode": mode, "images": len(x), "loaded_via": via,
                     "max_abs_logit_diff": float((ours - theirs).abs().max()),
                     "same_predictions": bool(torch.equal(ours.argmax(1), theirs.argmax(1))),
                     "same_preprocessing": all(torch.equal(preprocess(img), eval_tf(img)) for img in pil),
                     "file": name})
    return result, hub, pd.DataFrame(rows)


# ---------------------------------------------------------------- the study
def run(params: CustomDatasetParams, *, progress: bool = True) -> CustomDatasetResult:
    """Demo folders if asked, the WiSE-FT curve on the folders, tables, figure and the exported model."""

    outputs = StudyOutputs(NAME, params)
    p, runs = resolved(outputs.params), outputs.runs
    ensure_demo_folders(p)
    data, classnames = describe_data(p)
    outputs.csv("data", data)
    samples = sample_figure(p, classnames)
    outputs.figure("samples", samples, "samples", formats=("png",))

    store = ResultsStore(outputs.out / "results.sqlite")
    tidy = pd.concat([wiseft_curve(p, seed, runs=runs, store=store, study=NAME, progress=progress)
                      for seed in p.seeds])
    labels = short_labels([p.id_dataset, *p.ood_datasets])
    curve = curve_table(tidy, id_dataset=p.id_dataset, ood_datasets=p.ood_datasets)
    curve = curve.rename(columns={n: labels[n] for n in p.ood_datasets})
    outputs.csv("curve", curve.round(4))
    val = val_id_curve(p, p.seeds, runs=runs)  # the alpha to deploy, chosen on ID val (None: no val split)
    summary = summary_table(curve, alphas_on_val(val)) if p.ood_datasets else no_shift_summary(curve)
    outputs.table("summary", summary)

    id_label = labels[p.id_dataset]
    if p.ood_datasets:
        title = f"WiSE-FT, {p.model}: {id_label} vs. {', '.join(labels[n] for n in p.ood_datasets)} ({p.eval_split})"
        figure = plot_id_vs_ood(curve, title=title, xlabel=f"{id_label} accuracy (%)",
                                ylabel="Avg. accuracy on the shift folders (%)")
    else:
        panel = curve.assign(panel=f"{id_label} ({p.eval_split} split)")
        figure = plot_metric_curves(panel, x="alpha", y="id_acc", xlabel="alpha (0: zero-shot, 1: fine-tuned)",
                                    ylabels={panel["panel"].iloc[0]: "accuracy (%)"}, ncols=1,
                                    title=f"WiSE-FT, {p.model}: accuracy along alpha")
    outputs.figure("figure", figure, NAME)

    export, hub, check = None, None, None
    if p.export_alpha is not None:
        export, hub, check = export_model(p, runs, outputs.out, tidy=tidy, labels=labels, progress=progress)
        outputs.paths.update(export=export.model, hub=hub.folder)
        outputs.csv("export_check", check)
    return CustomDatasetResult(p, data, classnames, samples, curve, summary, figure, export, check, labels, hub,
                               **outputs.finish(datasets=labels))


STUDY = register_study("custom_dataset", "Your own data: WiSE-FT on an image folder, exported as an open_clip checkpoint",
                       CustomDatasetParams, run)
