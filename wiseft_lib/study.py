"""The WiSE-FT curve: zero-shot -> fine-tuned, interpolated over alpha, scored ID and OOD.

One call per seed does the paper's core experiment for both fine-tuning modes: build the
zero-shot classifier, fine-tune it end-to-end and/or as a linear classifier, sweep alpha
with one working model (end-to-end) or on cached features (linear), and score every eval set.
Notebooks call it and plot; the CLI's ``wiseft sweep`` calls it too.

    from wiseft_lib.study import CurveConfig, wiseft_curve, curve_table
    tidy = wiseft_curve(CurveConfig(n_test=200, n_train=256, e2e={"epochs": 1}), seed=0)
    print(curve_table(tidy))
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd
import torch

from wiseft_lib.data import DatasetBundle, default_eval_split, get_dataset
from wiseft_lib.data.mini import MINI_ID, MINI_OOD

MODES = ("end-to-end", "linear")
ALPHAS_11 = tuple(round(0.1 * i, 2) for i in range(11))


@dataclass
class CurveConfig:
    """Everything one WiSE-FT curve depends on (the notebook's parameters, validated)."""

    model: str = "wiseft-mini"
    pretrained: Optional[str] = None
    data_root: Optional[str] = None
    id_dataset: str = MINI_ID
    ood_datasets: Sequence[str] = MINI_OOD
    templates: Optional[Sequence[str]] = None  # default: the ID dataset's templates
    modes: Sequence[str] = MODES
    alphas: Sequence[float] = ALPHAS_11
    n_train: Optional[int] = 2000  # end-to-end fine-tuning images (None: the whole train split)
    n_train_linear: Optional[int] = None  # linear-classifier training images
    n_test: Optional[int] = 1000  # test images per eval set, where the dataset supports it
    e2e: dict[str, Any] = field(default_factory=lambda: {
        "epochs": 10, "lr": 5e-4, "batch_size": 64, "weight_decay": 0.1, "warmup_steps": 30})
    # "adamw": the paper's LC trainer (AdamW on cached features, head initialised from the zero-shot head);
    # "probe": logistic regression with C chosen on held-out training data (the CLIP paper's LC baseline)
    linear_method: str = "adamw"
    linear: dict[str, Any] = field(default_factory=lambda: {
        "epochs": 30, "lr": 1e-2, "batch_size": 256, "weight_decay": 0.0, "warmup_steps": 50})
    eval_batch_size: int = 512
    num_workers: int = 0  # data-loading processes for evaluation and feature extraction
    preprocess_eval: bool = True  # decode+transform eval sets once (small eval sets only)
    device: str = "auto"
    cache_dir: Optional[str] = None
    progress: bool = True

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {list(self.modes)}")
        from wiseft_lib.interpolate import check_alpha

        self.alphas = [check_alpha(a) for a in self.alphas]
        if self.linear_method not in ("probe", "adamw"):
            raise ValueError(f"linear_method must be 'probe' or 'adamw', not {self.linear_method!r}")
        for n, v in (("n_train", self.n_train), ("n_test", self.n_test), ("n_train_linear", self.n_train_linear)):
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise ValueError(f"{n} must be a positive integer or None, got {v!r}")

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def _bundle(name: str, cfg: CurveConfig, split: str, transform, seed: int, n_train=None) -> DatasetBundle:
    kwargs: dict[str, Any] = {}
    if name.startswith("mini-"):
        kwargs = {"n_test": cfg.n_test} if split == "test" else {"n_train": n_train, "seed": seed}
    return get_dataset(name, root=cfg.data_root, split=split, transform=transform, **kwargs)


def wiseft_curve(cfg: CurveConfig, seed: int = 0, *, store=None, run: Optional[str] = None) -> pd.DataFrame:
    """Tidy results ``(seed, mode, alpha, dataset, metric, value)`` of one seed; also stored."""
    from wiseft_lib.evaluate import evaluate, evaluate_head, preprocess_once
    from wiseft_lib.features import extract_features
    from wiseft_lib.finetune import FinetuneConfig, finetune
    from wiseft_lib.interpolate import iter_alphas
    from wiseft_lib.models import create_model
    from wiseft_lib.zeroshot import zeroshot_classifier

    device = cfg.resolved_device()
    torch.manual_seed(seed)
    clip_model, train_tf, eval_tf = create_model(cfg.model, cfg.pretrained, device=device)
    eval_names = [cfg.id_dataset, *cfg.ood_datasets]
    evals = {n: _bundle(n, cfg, default_eval_split(n), eval_tf, seed) for n in eval_names}
    id_bundle = evals[cfg.id_dataset]
    templates = list(cfg.templates or id_bundle.templates)
    zs = zeroshot_classifier(clip_model, cfg.model, id_bundle.classnames, templates, cfg.pretrained)
    del clip_model  # the classifier keeps only the image tower; the text tower can be freed
    rows: list[dict[str, Any]] = []
    if cfg.preprocess_eval:  # decode + transform once; both modes' passes reuse the tensors
        evals = {n: preprocess_once(b, num_workers=cfg.num_workers, progress=cfg.progress)
                 for n, b in evals.items()}

    def add(mode: str, alpha: float, dataset: str, metrics: dict[str, float]) -> None:
        rows.extend({"seed": seed, "mode": mode, "alpha": alpha, "dataset": dataset, "metric": k,
                     "value": v} for k, v in metrics.items())

    if "end-to-end" in cfg.modes:
        train = _bundle(cfg.id_dataset, cfg, "train", train_tf, seed, cfg.n_train)
        ft_cfg = FinetuneConfig(mode="end-to-end", seed=seed, **cfg.e2e)
        ft = finetune(zs, train.dataset, ft_cfg, device=device, progress=cfg.progress)
        theta_0 = {k: v.clone() for k, v in zs.state_dict().items()}
        theta_1 = {k: v.clone() for k, v in ft.state_dict().items()}
        work = copy.deepcopy(ft)
        for alpha, model in iter_alphas(work, theta_0, theta_1, cfg.alphas, progress=cfg.progress):
            for name, bundle in evals.items():
                add("end-to-end", alpha, name, evaluate(model, bundle, batch_size=cfg.eval_batch_size,
                                                         num_workers=cfg.num_workers, progress=False))
        del work, ft

    if "linear" in cfg.modes:
        feats = {}
        for name, bundle in evals.items():
            key = {"dataset": name, "split": default_eval_split(name), "n_test": cfg.n_test, "model": cfg.model,
                   "pretrained": cfg.pretrained, "transform": repr(eval_tf)}
            feats[name] = extract_features(zs.image_encoder, bundle.dataset, cache_dir=cfg.cache_dir,
                                           cache_key_parts=key, batch_size=cfg.eval_batch_size,
                                           device=device, num_workers=cfg.num_workers, progress=cfg.progress)
        train_eval = _bundle(cfg.id_dataset, cfg, "train", eval_tf, seed, cfg.n_train_linear)
        key = {"dataset": cfg.id_dataset, "split": "train", "n_train": cfg.n_train_linear, "seed": seed,
               "model": cfg.model, "pretrained": cfg.pretrained, "transform": repr(eval_tf)}
        if cfg.linear_method == "probe":
            from wiseft_lib.probe import fit_logistic_probe

            x, y = extract_features(zs.image_encoder, train_eval.dataset, cache_dir=cfg.cache_dir,
                                    cache_key_parts=key, batch_size=cfg.eval_batch_size, device=device,
                                    num_workers=cfg.num_workers, progress=cfg.progress)
            lc_head = fit_logistic_probe(x, y, seed=seed, **cfg.linear).to_head().to(device)
        else:
            lc_cfg = FinetuneConfig(mode="linear", seed=seed, **cfg.linear)
            lc_head = finetune(zs, train_eval.dataset, lc_cfg, device=device, cache_dir=cfg.cache_dir,
                               feature_key=key, progress=cfg.progress).classification_head
        head = copy.deepcopy(zs.classification_head)
        theta_0 = {k: v.clone() for k, v in zs.classification_head.state_dict().items()}
        theta_1 = {k: v.detach().clone() for k, v in lc_head.state_dict().items()}
        for alpha, h in iter_alphas(head, theta_0, theta_1, cfg.alphas, progress=False):
            for name, bundle in evals.items():
                x, y = feats[name]
                add("linear", alpha, name, evaluate_head(h, x, y, bundle))

    tidy = pd.DataFrame(rows)
    if store is not None:
        config = {**dataclasses.asdict(cfg), "seed": seed}
        store.add_many({"run": run or f"seed{seed}", "model": cfg.model, "method": f"wiseft-{r['mode']}",
                        "alpha": r["alpha"], "dataset": r["dataset"], "metric": r["metric"],
                        "value": r["value"], "config": json.dumps(config, default=str)} for r in rows)
    return tidy


def curve_table(tidy: pd.DataFrame, id_dataset: str = MINI_ID, metric: str = "top1") -> pd.DataFrame:
    """One row per (seed, mode, alpha): ``id_acc``, ``ood_avg`` and one column per OOD set."""
    sub = tidy[tidy["metric"] == metric]
    wide = sub.pivot_table(index=["seed", "mode", "alpha"], columns="dataset", values="value").reset_index()
    ood = [d for d in pd.unique(sub["dataset"]) if d != id_dataset]  # in the order they were evaluated
    wide = wide.rename(columns={id_dataset: "id_acc"})
    wide["ood_avg"] = wide[ood].mean(axis=1)
    wide.columns.name = None
    return wide[["seed", "mode", "alpha", "id_acc", "ood_avg", *ood]].sort_values(["seed", "mode", "alpha"])


def summary_table(curve: pd.DataFrame) -> pd.DataFrame:
    """Zero-shot, fine-tuned, alpha=0.5 and best-alpha rows per mode, averaged over seeds."""
    mean = curve.groupby(["mode", "alpha"]).mean(numeric_only=True).drop(columns="seed").reset_index()
    out = []
    for mode, g in mean.groupby("mode"):
        g = g.set_index("alpha")
        out.append({"method": "zero-shot", **g.loc[0.0].to_dict()})
        out.append({"method": f"fine-tuned ({mode})", **g.loc[1.0].to_dict()})
        if 0.5 in g.index:
            out.append({"method": f"WiSE-FT {mode}, alpha=0.5", **g.loc[0.5].to_dict()})
        best = g["ood_avg"].idxmax()
        out.append({"method": f"WiSE-FT {mode}, best OOD alpha={best:g}", **g.loc[best].to_dict()})
    table = pd.DataFrame(out).drop_duplicates(subset=["method"]).drop(columns="mode").reset_index(drop=True)
    return table.round(2)


def write_outputs(curve: pd.DataFrame, output_dir: str | Path) -> dict[str, Path]:
    """curve.csv and summary tables in ``output_dir`` (atomic writes)."""
    from wiseft_lib._io import atomic_write_text
    from wiseft_lib.tables import write_table

    out = Path(output_dir)
    paths = {"curve": atomic_write_text(out / "curve.csv", curve.round(4).to_csv(index=False))}
    write_table(summary_table(curve), out / "summary")
    paths["summary"] = out / "summary.csv"
    return paths


def smoke_config(cfg: CurveConfig) -> CurveConfig:
    """A seconds-long version of ``cfg`` for tests: tiny data, one epoch, three alphas."""
    small = lambda n, k: k if n is None else min(n, k)  # noqa: E731
    return dataclasses.replace(
        cfg, n_train=small(cfg.n_train, 256), n_train_linear=small(cfg.n_train_linear, 1000),
        n_test=small(cfg.n_test, 200), alphas=[0.0, 0.5, 1.0],
        e2e={**cfg.e2e, "epochs": 1, "warmup_steps": 2},
        linear={**cfg.linear, "epochs": 1} if cfg.linear_method == "adamw" else cfg.linear,
    )


def zeroshot_scores(model: str = "wiseft-mini", pretrained: Optional[str] = None,
                    datasets: Sequence[str] = (MINI_ID, *MINI_OOD), n_test: Optional[int] = 1000,
                    data_root: Optional[str] = None, progress: bool = False) -> dict[str, float]:
    """Zero-shot top-1 (percent) of a model on each dataset, with the ID dataset's prompts."""
    return zeroshot_scores_many(model, [pretrained], datasets, n_test, data_root, progress)[0]


def zeroshot_scores_many(model: str, pretrained: Sequence[Optional[str]],
                         datasets: Sequence[str] = (MINI_ID, *MINI_OOD), n_test: Optional[int] = 1000,
                         data_root: Optional[str] = None, progress: bool = False) -> list[dict[str, float]]:
    """:func:`zeroshot_scores` for several weights of one model; the eval sets are decoded once."""
    from wiseft_lib.evaluate import evaluate, preprocess_once
    from wiseft_lib.models import create_model
    from wiseft_lib.zeroshot import zeroshot_classifier

    cfg = CurveConfig(model=model, data_root=data_root, n_test=n_test)
    bundles = None
    out = []
    for tag in pretrained:
        clip_model, _, eval_tf = create_model(model, tag)
        if bundles is None:  # the eval transform depends on the model config, not on the weights
            bundles = {n: preprocess_once(_bundle(n, cfg, default_eval_split(n), eval_tf, seed=0), progress=False)
                       for n in datasets}
        first = bundles[datasets[0]]
        clf = zeroshot_classifier(clip_model, model, first.classnames, first.templates, tag)
        scores = {n: evaluate(clf, b, batch_size=512, progress=progress)["top1"] for n, b in bundles.items()}
        scores["ood_avg"] = sum(scores[n] for n in datasets[1:]) / max(len(datasets) - 1, 1)
        out.append(scores)
    return out


def baseline_points(cfg: CurveConfig, standard_models: Sequence[str] = (), zeroshot_pretrained: Sequence[str] = (),
                    seed: int = 0, n_train_standard: Optional[int] = None) -> pd.DataFrame:
    """Figure 1's reference populations, one row per model (top-1, percent).

    ``group`` "standard": models trained from scratch on the ID photos only
    (:mod:`wiseft_lib.standard`), whose logit-space line is the effective-robustness baseline.
    ``group`` "zero-shot": ``cfg.model`` with ``cfg.pretrained`` and each of
    ``zeroshot_pretrained`` (other pretraining budgets), scored zero-shot: the zero-shot line.
    """
    from wiseft_lib.standard import standard_points

    frames = []
    if standard_models:
        frames.append(standard_points(standard_models, id_dataset=cfg.id_dataset, ood_datasets=cfg.ood_datasets,
                                      n_train=n_train_standard, n_test=cfg.n_test, seed=seed,
                                      data_root=cfg.data_root, device=cfg.resolved_device(),
                                      progress=cfg.progress))
    if zeroshot_pretrained:
        tags = [cfg.pretrained, *zeroshot_pretrained]
        scores = zeroshot_scores_many(cfg.model, tags, datasets=(cfg.id_dataset, *cfg.ood_datasets),
                                      n_test=cfg.n_test, data_root=cfg.data_root)
        frames.append(pd.DataFrame([
            {"group": "zero-shot", "model": f"{cfg.model}:{tag or 'default'}", "seed": seed,
             "id_acc": s[cfg.id_dataset], "ood_avg": s["ood_avg"], **{d: s[d] for d in cfg.ood_datasets}}
            for tag, s in zip(tags, scores)]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["group", "model", "seed", "id_acc", "ood_avg", *cfg.ood_datasets])


def effective_robustness(table: pd.DataFrame, baselines: pd.DataFrame, group: str = "standard") -> pd.DataFrame:
    """``table`` plus ``effective_robustness``: OOD accuracy above the ``group`` baseline's logit line (pp)."""
    from wiseft_lib.plots import fit_logit_line

    ref = baselines[baselines["group"] == group]
    line = fit_logit_line(ref["id_acc"], ref["ood_avg"])
    out = table.copy()
    out["effective_robustness"] = (out["ood_avg"] - line(out["id_acc"])).round(2)
    return out


# The paper's claims as checks on a curve (means over seeds), with the margins the embedded default aims for.
CLAIMS = (
    ("end-to-end", "fine-tuning gains ID accuracy: FT ID - ZS ID", "ft_id_gain", ">=", 8.0),
    ("end-to-end", "WiSE-FT beats both endpoints OOD: a=0.5 OOD - max(ZS, FT) OOD", "mid_ood_gain", ">=", 2.0),
    ("end-to-end", "WiSE-FT keeps the ID gain: a=0.5 ID - FT ID", "mid_id_vs_ft", ">=", -1.0),
    ("linear", "WiSE-FT beats both endpoints OOD: a=0.5 OOD - max(ZS, FT) OOD", "mid_ood_gain", ">", 0.0),
)


def claim_values(curve: pd.DataFrame, mode: str) -> dict[str, float]:
    """ID/OOD differences (pp) between alpha 0, 0.5 and 1 of one mode, averaged over seeds."""
    g = curve[curve["mode"] == mode].groupby("alpha")[["id_acc", "ood_avg"]].mean()
    missing = [a for a in (0.0, 0.5, 1.0) if a not in g.index]
    if missing:
        raise ValueError(f"the {mode} curve lacks alpha {missing}; the claims need alphas 0, 0.5 and 1")
    zs, mid, ft = g.loc[0.0], g.loc[0.5], g.loc[1.0]
    return {"ft_id_gain": ft["id_acc"] - zs["id_acc"],
            "mid_ood_gain": mid["ood_avg"] - max(zs["ood_avg"], ft["ood_avg"]),
            "mid_id_vs_ft": mid["id_acc"] - ft["id_acc"]}


def check_claims(curve: pd.DataFrame) -> pd.DataFrame:
    """One row per claim of :data:`CLAIMS` whose mode is in ``curve``: value (pp), bar, holds."""
    rows = []
    for mode, claim, key, op, bar in CLAIMS:
        if mode in set(curve["mode"]):
            value = claim_values(curve, mode)[key]
            holds = value >= bar if op == ">=" else value > bar
            rows.append({"mode": mode, "claim": claim, "value_pp": round(value, 2), "bar_pp": f"{op} {bar:g}",
                         "holds": bool(holds)})
    return pd.DataFrame(rows)
