"""The ``wiseft`` command.

    wiseft zeroshot --model wiseft-mini --dataset mini-photo --output runs/zs
    wiseft finetune --model wiseft-mini --train-dataset mini-photo --output-dir runs/ft --lr 5e-4 --batch-size 64
    wiseft interpolate --zeroshot runs/ft/zeroshot.safetensors --finetuned runs/ft/finetuned.safetensors \\
        --alpha 0.5 --output runs/wiseft-0.5
    wiseft evaluate --checkpoint runs/wiseft-0.5 --datasets mini-photo mini-sketch --n-test 1000
    wiseft export --finetuned runs/ft/finetuned.safetensors --alpha 0.5 --output exported/model.safetensors
    wiseft export --finetuned runs/ft/finetuned.safetensors --alpha 0.5 --hub-dir exported/hub --card-dataset my_images
    wiseft run fig1_id_vs_ood --params params/mini/fig1_id_vs_ood.yaml --set 'seeds=[0, 1, 2]'
    wiseft run --list
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from wiseft_lib.core.evaluate import evaluate
from wiseft_lib.core.fisher import fisher_interpolate, load_fisher
from wiseft_lib.core.interpolate import interpolate_weights
from wiseft_lib.core.models import ImageClassifier, create_architecture, create_model, list_models, list_pretrained
from wiseft_lib.core.zeroshot import zeroshot_classifier
from wiseft_lib.data import default_eval_split, describe_dataset, get_dataset, list_datasets
from wiseft_lib.data.fashion_mnist import ensure_fashion_mnist, find_fashion_mnist
from wiseft_lib.data.templates import get_templates
from wiseft_lib.experiment.endpoints import eval_bundle_kwargs
from wiseft_lib.experiment.export import ExportResult, export_wiseft
from wiseft_lib.experiment.hub import ModelCard, export_hub_folder
from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.finetune import add_finetune_arguments, run_finetune_from_args
from wiseft_lib.mini.pretrain import add_pretrain_arguments, run_from_args
from wiseft_lib.studies import STUDIES, run_study


def cmd_zeroshot(a: argparse.Namespace) -> int:
    clip_model, _, eval_tf = create_model(a.model, a.pretrained, device=a.device)
    bundle = get_dataset(a.dataset, root=a.data_root, split=default_eval_split(a.dataset), transform=eval_tf,
                         **eval_bundle_kwargs(a.dataset, a.n_test))
    templates = bundle.templates
    if a.templates:
        templates = get_templates(a.templates)
    clf = zeroshot_classifier(clip_model, a.model, bundle.classnames, templates, a.pretrained)
    path = clf.save(a.output)
    print(f"zero-shot classifier ({len(bundle.classnames)} classes, {len(templates)} templates): {path}")
    if a.evaluate:
        _print_scores(clf, [a.dataset], a, eval_tf)
    return 0


def _print_scores(model, datasets: Sequence[str], a: argparse.Namespace, transform, store=None, label=None):
    for name in datasets:
        bundle = get_dataset(name, root=a.data_root, split=default_eval_split(name), transform=transform,
                             **eval_bundle_kwargs(name, a.n_test))
        scores = evaluate(model, bundle, batch_size=a.batch_size)
        print(f"{name:24s} " + "  ".join(f"{k} {v:6.2f}" for k, v in scores.items()))
        if store is not None:
            store.add_many({"run": label, "model": model.meta.get("model_name", "?"), "method": "evaluate",
                            "alpha": model.meta.get("alpha"), "dataset": name, "metric": k, "value": v,
                            "config": json.dumps(model.meta, default=str)} for k, v in scores.items())


def cmd_evaluate(a: argparse.Namespace) -> int:
    clf = ImageClassifier.load(a.checkpoint, device=a.device)
    _, _, eval_tf = create_architecture(clf.meta["model_name"], clf.meta.get("pretrained"))  # the tag's preprocessing
    store = None
    if a.results:
        store = ResultsStore(a.results)
    _print_scores(clf, a.datasets, a, eval_tf, store, a.run or Path(a.checkpoint).stem)
    return 0


def cmd_interpolate(a: argparse.Namespace) -> int:
    zs, ft = ImageClassifier.load(a.zeroshot), ImageClassifier.load(a.finetuned)
    if zs.meta.get("model_name") != ft.meta.get("model_name"):
        raise ValueError(f"cannot interpolate a {zs.meta.get('model_name')} with a {ft.meta.get('model_name')}: "
                         f"WiSE-FT mixes a model with its own fine-tuned version, so both checkpoints must be "
                         f"fine-tuned from the same model (pass the zero-shot model the fine-tune started from)")
    if a.fisher:
        f0, f1 = (load_fisher(p) for p in a.fisher)
        theta = fisher_interpolate(zs.state_dict(), ft.state_dict(), a.alpha, f0, f1)
    else:
        theta = interpolate_weights(zs.state_dict(), ft.state_dict(), a.alpha)
    ft.load_state_dict(theta)
    ft.meta.update(alpha=a.alpha, zeroshot=str(a.zeroshot), finetuned=str(a.finetuned),
                   method="wiseft-fisher" if a.fisher else "wiseft")
    print(f"WiSE-FT alpha={a.alpha}: {ft.save(a.output)}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    if a.output is None and a.hub_dir is None:
        raise ValueError("nothing to write: give --output FILE.safetensors (the open_clip checkpoint, its head and "
                         "sidecar), --hub-dir DIR (an open_clip folder with a model card), or both")
    if a.card_dataset is not None and a.hub_dir is None:
        raise ValueError("--card-dataset names the fine-tuning data in the hub folder's model card: give --hub-dir too")
    kwargs = dict(alpha=a.alpha, model=a.model, pretrained=a.pretrained, zeroshot=a.zeroshot, device=a.device)
    if a.hub_dir is None:
        _print_export(export_wiseft(a.finetuned, a.output, **kwargs))
        return 0
    card = ModelCard(datasets=[a.card_dataset]) if a.card_dataset else None
    hub = export_hub_folder(a.finetuned, a.hub_dir, card=card, overwrite=a.overwrite, flat_output=a.output, **kwargs)
    if hub.flat is not None:
        _print_export(hub.flat)
    meta = hub.meta
    print(f"WiSE-FT alpha={meta['alpha']:g} ({meta['model_name']}, {meta['head_shape'][0]} classes) as an open_clip "
          f"hub folder with a model card:\n  {hub.folder}\n  (" + ", ".join(p.name for p in hub.files.values()) +
          f")\nload it: open_clip.create_model_and_transforms({'local-dir:' + str(hub.folder)!r})  # no kwargs, no "
          f"registered configs; the head: {hub.files['head']} (logits = {meta['logits']})")
    return 0


def _print_export(result: ExportResult) -> None:
    meta = result.meta
    kwargs = "".join(f", {k}={tuple(v) if isinstance(v, list) else v!r}" for k, v in meta["open_clip_kwargs"].items())
    print(f"WiSE-FT alpha={meta['alpha']:g} ({meta['model_name']}, {meta['head_shape'][0]} classes) as an open_clip "
          f"checkpoint:\n  {result.model}\n  {result.head}  (logits = {meta['logits']})\n  {result.sidecar}\n"
          f"load it: open_clip.create_model_and_transforms({meta['model_name']!r}, pretrained={str(result.model)!r}"
          f"{kwargs})" + ("  # after wiseft_lib.experiment.export.register_configs()" if meta["model_name"] == "wiseft-mini"
                          else ""))


def cmd_run(a: argparse.Namespace) -> int:
    if a.list or not a.study:
        for study in STUDIES.values():
            print(f"{study.name:24s} {study.title}")
        return 0 if a.list else 2
    result = run_study(a.study, a.params, a.set or [], progress=not a.no_progress,
                       notebook=getattr(a, "notebook", False))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: rank 0 speaks for all
        _print_result(result)
    return 0


def _print_result(result) -> None:
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        for name in ("summary", "table1", "table8", "gains", "effective_robustness", "zeroshot", "claims"):
            table = getattr(result, name, None)
            if isinstance(table, pd.DataFrame) and not table.empty:  # intervals and alphas: in the CSV
                shown = table[[c for c in table.columns if not c.endswith(("_lo", "_hi", "_alpha"))]]
                print(f"\n{name}:\n{shown.round(2).to_string(index=False)}")
    out = result.params.output_path() if hasattr(result, "params") else Path(result).parent
    print(f"\noutputs in {out}")


def cmd_sweep(a: argparse.Namespace) -> int:
    """``wiseft sweep``: the old name of ``wiseft run fig1_id_vs_ood``."""
    a.study, a.list = "fig1_id_vs_ood", False
    return cmd_run(a)


def cmd_finetune(a: argparse.Namespace) -> int:
    run_finetune_from_args(a)
    print(f"fine-tuned model: {Path(a.output_dir) / 'finetuned.safetensors'}")
    return 0


def cmd_pretrain_mini(a: argparse.Namespace) -> int:
    run_from_args(a)
    return 0


def cmd_data(a: argparse.Namespace) -> int:
    if a.list:
        for name in list_datasets():
            print(describe_dataset(name))
        return 0
    print(ensure_fashion_mnist(a.data_root) if a.ensure else find_fashion_mnist(a.data_root))
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    for name in list_models():
        tags = [t for m, t in list_pretrained(name)]
        print(f"{name:40s} {', '.join(tags)}")
    return 0


def _add_common_arguments(q: argparse.ArgumentParser) -> None:
    """The data, device and evaluation flags of the commands that score a model."""
    q.add_argument("--data-root", default=None, help="data folder (default: $WISEFT_DATA)")
    q.add_argument("--device", default="cpu")
    q.add_argument("--n-test", type=int, default=None, help="mini datasets: test images per set")
    q.add_argument("--batch-size", type=int, default=256)


def _add_study_arguments(q: argparse.ArgumentParser) -> None:
    """The params file, ``--set`` overrides and ``--no-progress`` of the commands that run a study."""
    q.add_argument("--params", default=None, metavar="FILE", help="a params file, e.g. params/mini/STUDY.yaml")
    q.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a parameter; the value is YAML: --set 'seeds=[0, 1]' --set n_test=500")
    q.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_model_commands(sub: argparse._SubParsersAction) -> None:
    """``zeroshot``, ``finetune``, ``interpolate`` and ``export``: the commands that build or write weights."""
    q = sub.add_parser("zeroshot", help="build a zero-shot classifier from prompt templates")
    q.add_argument("--model", required=True)
    q.add_argument("--pretrained", default=None)
    q.add_argument("--dataset", required=True, help="gives the class names and default templates")
    q.add_argument("--templates", default=None, help="template set name (default: the dataset's)")
    q.add_argument("--output", required=True, help="checkpoint path (.safetensors + .json)")
    q.add_argument("--evaluate", action="store_true", help="also score it on --dataset")
    _add_common_arguments(q)
    q.set_defaults(fn=cmd_zeroshot)

    q = sub.add_parser("finetune", help="fine-tune end-to-end or as a linear classifier (torchrun-ready)")
    add_finetune_arguments(q)
    q.set_defaults(fn=cmd_finetune)

    q = sub.add_parser("interpolate", help="WiSE-FT: interpolate zero-shot and fine-tuned weights")
    q.add_argument("--zeroshot", required=True)
    q.add_argument("--finetuned", required=True)
    q.add_argument("--alpha", type=float, default=0.5, help="mixing coefficient in [0, 1] (default 0.5)")
    q.add_argument("--fisher", nargs=2, metavar=("F_ZS", "F_FT"), help="Fisher-weighted: two Fisher files")
    q.add_argument("--output", required=True)
    q.set_defaults(fn=cmd_interpolate)

    q = sub.add_parser("export", help="write a WiSE-FT model as an open_clip checkpoint (+ head and JSON sidecar)")
    q.add_argument("--finetuned", required=True, help="fine-tuned checkpoint (finetuned.safetensors of wiseft finetune "
                                                      "or the run cache)")
    q.add_argument("--alpha", type=float, default=0.5, help="mixing coefficient in [0, 1] (default 0.5; 1: the "
                                                            "fine-tuned model itself)")
    q.add_argument("--output", default=None, help="the open_clip checkpoint to write (.safetensors); the head goes to "
                                                  "OUTPUT.head.safetensors, the metadata to OUTPUT.json (give --output, "
                                                  "--hub-dir or both)")
    q.add_argument("--hub-dir", default=None, help="also (or instead) write an open_clip hub folder with a model card: "
                                                   "open_clip.create_model_and_transforms('local-dir:HUB_DIR') loads it")
    q.add_argument("--card-dataset", default=None, help="the fine-tuning data's name for the model card (default: the "
                                                        "checkpoint's train_dataset)")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier hub folder at --hub-dir")
    q.add_argument("--model", default=None, help="model name (default: the checkpoint's; must agree with it)")
    q.add_argument("--pretrained", default=None, help="pretrained tag or weights file (default: the checkpoint's)")
    q.add_argument("--zeroshot", default=None, help="the zero-shot classifier (zeroshot.safetensors beside the "
                                                    "fine-tune; default: rebuilt from the pretrained CLIP)")
    q.add_argument("--device", default="cpu")
    q.set_defaults(fn=cmd_export)


def _add_evaluate_and_study_commands(sub: argparse._SubParsersAction) -> None:
    """``evaluate``, ``run`` (a study) and ``sweep`` (the WiSE-FT curve)."""
    q = sub.add_parser("evaluate", help="score a checkpoint on datasets")
    q.add_argument("--checkpoint", required=True)
    q.add_argument("--datasets", nargs="+", required=True)
    q.add_argument("--results", default=None, help="also write to this results store (SQLite)")
    q.add_argument("--run", default=None, help="run name in the results store")
    _add_common_arguments(q)
    q.set_defaults(fn=cmd_evaluate)

    q = sub.add_parser("run", help="run a study (what its notebook runs, same outputs): wiseft run --list")
    q.add_argument("study", nargs="?", help="study name (wiseft run --list)")
    q.add_argument("--list", action="store_true", help="list the studies")
    q.add_argument("--notebook", action="store_true",
                   help="execute the study's notebook (papermill) into output_dir instead of calling its run function")
    _add_study_arguments(q)
    q.set_defaults(fn=cmd_run)

    q = sub.add_parser("sweep", help="the WiSE-FT curve: another name for `wiseft run fig1_id_vs_ood`")
    _add_study_arguments(q)
    q.set_defaults(fn=cmd_sweep)


def _add_setup_commands(sub: argparse._SubParsersAction) -> None:
    """``pretrain-mini``, ``data`` and ``models``: pretraining, datasets and the model list."""
    q = sub.add_parser("pretrain-mini", help="pretrain the wiseft-mini CLIP (writes to an output folder)")
    add_pretrain_arguments(q)
    q.set_defaults(fn=cmd_pretrain_mini)

    q = sub.add_parser("data", help="locate / install Fashion-MNIST, or list datasets")
    q.add_argument("--ensure", action="store_true", help="apt-get (as root) or download if missing")
    q.add_argument("--list", action="store_true", help="list registered datasets")
    q.add_argument("--data-root", default=None)
    q.set_defaults(fn=cmd_data)

    q = sub.add_parser("models", help="list model names and pretrained tags")
    q.set_defaults(fn=cmd_models)


def build_parser() -> argparse.ArgumentParser:
    """The ``wiseft`` argument parser, one subcommand per task (each sets ``fn``, the function it runs)."""
    p = argparse.ArgumentParser(prog="wiseft", description="WiSE-FT: robust fine-tuning of zero-shot models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_model_commands(sub)
    _add_evaluate_and_study_commands(sub)
    _add_setup_commands(sub)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, KeyError) as err:  # ParamsError is a ValueError
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"wiseft {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
