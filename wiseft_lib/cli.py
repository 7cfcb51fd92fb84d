"""The ``wiseft`` command.

    wiseft zeroshot --model wiseft-mini --dataset mini-photo --output runs/zs
    wiseft finetune --model wiseft-mini --train-dataset mini-photo --output-dir runs/ft --lr 5e-4 --batch-size 64
    wiseft interpolate --zeroshot runs/ft/zeroshot.safetensors --finetuned runs/ft/finetuned.safetensors \\
        --alpha 0.5 --output runs/wiseft-0.5
    wiseft evaluate --checkpoint runs/wiseft-0.5 --datasets mini-photo mini-sketch --n-test 1000
    wiseft sweep --params params/mini/fig1_id_vs_ood.yaml
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence


def _dataset_kwargs(name: str, n_test: Optional[int]) -> dict:
    return {"n_test": n_test} if name.startswith("mini-") else {}


def cmd_zeroshot(a: argparse.Namespace) -> int:
    from wiseft_lib.data import default_eval_split, get_dataset
    from wiseft_lib.models import create_model
    from wiseft_lib.zeroshot import zeroshot_classifier

    clip_model, _, eval_tf = create_model(a.model, a.pretrained, device=a.device)
    bundle = get_dataset(a.dataset, root=a.data_root, split=default_eval_split(a.dataset), transform=eval_tf,
                         **_dataset_kwargs(a.dataset, a.n_test))
    templates = bundle.templates
    if a.templates:
        from wiseft_lib.data.templates import get_templates

        templates = get_templates(a.templates)
    clf = zeroshot_classifier(clip_model, a.model, bundle.classnames, templates, a.pretrained)
    path = clf.save(a.output)
    print(f"zero-shot classifier ({len(bundle.classnames)} classes, {len(templates)} templates): {path}")
    if a.evaluate:
        _print_scores(clf, [a.dataset], a, eval_tf)
    return 0


def _print_scores(model, datasets: Sequence[str], a: argparse.Namespace, transform, store=None, label=None):
    from wiseft_lib.data import default_eval_split, get_dataset
    from wiseft_lib.evaluate import evaluate

    for name in datasets:
        bundle = get_dataset(name, root=a.data_root, split=default_eval_split(name), transform=transform,
                             **_dataset_kwargs(name, a.n_test))
        scores = evaluate(model, bundle, batch_size=a.batch_size)
        print(f"{name:24s} " + "  ".join(f"{k} {v:6.2f}" for k, v in scores.items()))
        if store is not None:
            store.add_many({"run": label, "model": model.meta.get("model_name", "?"), "method": "evaluate",
                            "alpha": model.meta.get("alpha"), "dataset": name, "metric": k, "value": v,
                            "config": json.dumps(model.meta, default=str)} for k, v in scores.items())


def cmd_evaluate(a: argparse.Namespace) -> int:
    from wiseft_lib.models import ImageClassifier, create_model

    clf = ImageClassifier.load(a.checkpoint, device=a.device)
    _, _, eval_tf = create_model(clf.meta["model_name"], "random")
    store = None
    if a.results:
        from wiseft_lib.results import ResultsStore

        store = ResultsStore(a.results)
    _print_scores(clf, a.datasets, a, eval_tf, store, a.run or Path(a.checkpoint).stem)
    return 0


def cmd_interpolate(a: argparse.Namespace) -> int:
    from wiseft_lib.interpolate import fisher_interpolate, interpolate_weights
    from wiseft_lib.models import ImageClassifier

    zs, ft = ImageClassifier.load(a.zeroshot), ImageClassifier.load(a.finetuned)
    if zs.meta.get("model_name") != ft.meta.get("model_name"):
        raise ValueError(f"cannot interpolate a {zs.meta.get('model_name')} with a {ft.meta.get('model_name')}")
    if a.fisher:
        from safetensors.torch import load_file

        f0, f1 = (load_file(p) for p in a.fisher)
        theta = fisher_interpolate(zs.state_dict(), ft.state_dict(), a.alpha, f0, f1)
    else:
        theta = interpolate_weights(zs.state_dict(), ft.state_dict(), a.alpha)
    ft.load_state_dict(theta)
    ft.meta.update(alpha=a.alpha, zeroshot=str(a.zeroshot), finetuned=str(a.finetuned),
                   method="wiseft-fisher" if a.fisher else "wiseft")
    print(f"WiSE-FT alpha={a.alpha}: {ft.save(a.output)}")
    return 0


def cmd_sweep(a: argparse.Namespace) -> int:
    import yaml

    from wiseft_lib.notebook import output_path
    from wiseft_lib.plots import plot_id_vs_ood, save_figure
    from wiseft_lib.results import ResultsStore
    from wiseft_lib.study import CurveConfig, curve_table, smoke_config, wiseft_curve, write_outputs

    params = yaml.safe_load(Path(a.params).read_text()) if a.params else {}
    for kv in a.set or []:
        key, _, value = kv.partition("=")
        params[key] = yaml.safe_load(value)
    out = output_path(params.pop("output_dir", "outputs/sweep"))
    seeds = params.pop("seeds", [0])
    smoke = params.pop("smoke", False)
    fields = set(CurveConfig.__dataclass_fields__)
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(f"unknown sweep parameter(s) {unknown}; known: output_dir, seeds, smoke, "
                         f"{', '.join(sorted(fields))}")
    cfg = CurveConfig(**{"cache_dir": str(out / "cache"), **params})
    cfg = smoke_config(cfg) if smoke else cfg
    store = ResultsStore(out / "results.sqlite")
    import pandas as pd

    tidy = pd.concat([wiseft_curve(cfg, s, store=store, run=f"sweep/seed{s}") for s in seeds])
    curve = curve_table(tidy, id_dataset=cfg.id_dataset)
    write_outputs(curve, out)
    save_figure(plot_id_vs_ood(curve), out / "id_vs_ood")
    print(curve.round(2).to_string(index=False))
    print(f"outputs in {out}")
    return 0


def cmd_finetune(a: argparse.Namespace) -> int:
    from wiseft_lib.finetune import run_finetune_from_args

    run_finetune_from_args(a)
    print(f"fine-tuned model: {Path(a.output_dir) / 'finetuned.safetensors'}")
    return 0


def cmd_pretrain_mini(a: argparse.Namespace) -> int:
    from wiseft_lib.mini_clip import main as pretrain_main

    pretrain_main(a.rest)
    return 0


def cmd_data(a: argparse.Namespace) -> int:
    from wiseft_lib.data import describe_dataset, list_datasets
    from wiseft_lib.data.fashion_mnist import ensure_fashion_mnist, find_fashion_mnist

    if a.list:
        for name in list_datasets():
            print(describe_dataset(name))
        return 0
    print(ensure_fashion_mnist(a.data_root) if a.ensure else find_fashion_mnist(a.data_root))
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from wiseft_lib.models import list_models, list_pretrained

    for name in list_models():
        tags = [t for m, t in list_pretrained(name)]
        print(f"{name:40s} {', '.join(tags)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wiseft", description="WiSE-FT: robust fine-tuning of zero-shot models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data-root", default=None, help="data folder (default: $WISEFT_DATA)")
        q.add_argument("--device", default="cpu")
        q.add_argument("--n-test", type=int, default=None, help="mini datasets: test images per set")
        q.add_argument("--batch-size", type=int, default=256)

    q = sub.add_parser("zeroshot", help="build a zero-shot classifier from prompt templates")
    q.add_argument("--model", required=True)
    q.add_argument("--pretrained", default=None)
    q.add_argument("--dataset", required=True, help="gives the class names and default templates")
    q.add_argument("--templates", default=None, help="template set name (default: the dataset's)")
    q.add_argument("--output", required=True, help="checkpoint path (.safetensors + .json)")
    q.add_argument("--evaluate", action="store_true", help="also score it on --dataset")
    common(q)
    q.set_defaults(fn=cmd_zeroshot)

    from wiseft_lib.finetune import add_finetune_arguments

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

    q = sub.add_parser("evaluate", help="score a checkpoint on datasets")
    q.add_argument("--checkpoint", required=True)
    q.add_argument("--datasets", nargs="+", required=True)
    q.add_argument("--results", default=None, help="also write to this results store (SQLite)")
    q.add_argument("--run", default=None, help="run name in the results store")
    common(q)
    q.set_defaults(fn=cmd_evaluate)

    q = sub.add_parser("sweep", help="the whole WiSE-FT curve (a notebook's params file, no notebook)")
    q.add_argument("--params", default=None, help="a params/*.yaml file")
    q.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a parameter (YAML value)")
    q.set_defaults(fn=cmd_sweep)

    q = sub.add_parser("pretrain-mini", help="pretrain the wiseft-mini CLIP (flags: see --help after --)")
    q.add_argument("rest", nargs=argparse.REMAINDER)
    q.set_defaults(fn=cmd_pretrain_mini)

    q = sub.add_parser("data", help="locate / install Fashion-MNIST, or list datasets")
    q.add_argument("--ensure", action="store_true", help="apt-get (as root) or download if missing")
    q.add_argument("--list", action="store_true", help="list registered datasets")
    q.add_argument("--data-root", default=None)
    q.set_defaults(fn=cmd_data)

    q = sub.add_parser("models", help="list model names and pretrained tags")
    q.set_defaults(fn=cmd_models)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"wiseft {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
