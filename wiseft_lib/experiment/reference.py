"""Figure 1's reference populations: standard models and zero-shot models of other pretraining budgets.

Models trained on the ID data alone lie near one line in logit-scaled (ID, OOD) accuracy space
(Taori et al. 2020): the *effective-robustness* baseline. Zero-shot models lie on a higher line.
Each reference model's scores are cached in the run cache, so a second study run trains nothing.

    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.reference import baseline_points
    print(baseline_points(CurveConfig(n_test=200), standard_models=["linear-e1"], zeroshot_pretrained=[]))
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Sequence

import pandas as pd
from torch import nn

from wiseft_lib.analysis.effective_robustness import fit_logit_line
from wiseft_lib.core.evaluate import evaluate, preprocess_once
from wiseft_lib.core.models import create_model
from wiseft_lib.core.zeroshot import zeroshot_classifier
from wiseft_lib.data import eval_split, get_dataset
from wiseft_lib.data.mini import MINI_ID, MINI_OOD
from wiseft_lib.experiment.endpoints import eval_bundle_kwargs, weights_identity
from wiseft_lib.experiment.runs import RunCache, run_key
from wiseft_lib.experiment.standard_weights import standard_identity, trained_standard
from wiseft_lib.mini.standard import STANDARD_ZOO, standard_points, standard_training_data

if TYPE_CHECKING:
    from wiseft_lib.experiment.config import CurveConfig

__all__ = ["zeroshot_scores", "zeroshot_scores_many", "cached_standard", "baseline_points", "effective_robustness"]


def zeroshot_scores(model: str = "wiseft-mini", pretrained: Optional[str] = None,
                    datasets: Sequence[str] = (MINI_ID, *MINI_OOD), n_test: Optional[int] = 1000,
                    data_root: Optional[str] = None, progress: bool = False, split: str = "test") -> dict[str, float]:
    """Zero-shot top-1 (percent) of a model on each dataset, with the first dataset's prompts."""
    return zeroshot_scores_many(model, [pretrained], datasets, n_test, data_root, progress, split)[0]


def zeroshot_scores_many(model: str, pretrained: Sequence[Optional[str]],
                         datasets: Sequence[str] = (MINI_ID, *MINI_OOD), n_test: Optional[int] = 1000,
                         data_root: Optional[str] = None, progress: bool = False,
                         split: str = "test") -> list[dict[str, float]]:
    """:func:`zeroshot_scores` for several weights of one model; the eval sets are decoded once.

    ``split`` is "test" (reported numbers) or "val" (held out from test, where recipes are chosen).
    """

    bundles = None
    out = []
    for tag in pretrained:
        clip_model, _, eval_tf = create_model(model, tag)
        if bundles is None:  # the eval transform depends on the model config, not on the weights
            bundles = {n: preprocess_once(get_dataset(n, root=data_root, split=eval_split(n, split), transform=eval_tf,
                                                      **eval_bundle_kwargs(n, n_test)), progress=False)
                       for n in datasets}
        first = bundles[datasets[0]]
        clf = zeroshot_classifier(clip_model, model, first.classnames, first.templates, tag)
        scores = {n: evaluate(clf, b, batch_size=512, progress=progress)["top1"] for n, b in bundles.items()}
        scores["ood_avg"] = sum(scores[n] for n in datasets[1:]) / max(len(datasets) - 1, 1)
        out.append(scores)
    return out


def _standard_rows(cfg: "CurveConfig", names: Sequence[str], seed: int, n_train: Optional[int], runs: RunCache,
                   progress: bool) -> list[dict]:
    unknown = [n for n in names if n not in STANDARD_ZOO]
    if unknown:
        raise ValueError(f"unknown standard models {unknown}; known: {', '.join(STANDARD_ZOO)}")
    evals = [{"dataset": n, "split": eval_split(n, cfg.eval_split), **eval_bundle_kwargs(n, cfg.n_test)}
             for n in cfg.eval_names()]
    parts = [{"standard": name, "spec": STANDARD_ZOO[name], "n_train": n_train, "seed": seed, "evals": evals}
             for name in names]

    def compute(missing: list[int]) -> list[dict]:
        table = standard_points([names[i] for i in missing], id_dataset=cfg.id_dataset,
                                ood_datasets=cfg.ood_datasets, n_train=n_train, n_test=cfg.n_test, seed=seed,
                                data_root=cfg.data_root, device=cfg.resolved_device(), progress=progress,
                                eval_split=cfg.eval_split, trained=cached_standard(cfg, n_train, seed, runs))
        return table.to_dict("records")

    return runs.memo_many("reference", parts, compute)


def cached_standard(cfg: "CurveConfig", n_train: Optional[int], seed: int, runs: RunCache) -> Callable[[str], nn.Module]:
    """``name -> trained standard model`` from the run cache (:mod:`~wiseft_lib.experiment.standard_weights`); the
    training set is decoded only if a model must be trained, and then once for all of them."""
    data: list = []

    def training_data() -> tuple:
        if not data:
            data.append(standard_training_data(cfg.id_dataset, n_train, seed, cfg.data_root))
        return data[0]

    def trained(name: str) -> nn.Module:
        key = run_key(standard_identity(name, cfg.id_dataset, n_train, seed))
        return trained_standard(name, id_dataset=cfg.id_dataset, n_train=n_train, seed=seed, runs=runs,
                                data_root=cfg.data_root, device=cfg.resolved_device(),
                                data=None if runs.has("standard", key) else training_data())

    return trained


def _zeroshot_rows(cfg: "CurveConfig", tags: Sequence[Optional[str]], seed: int, runs: RunCache) -> list[dict]:
    evals = [{"dataset": n, "split": eval_split(n, cfg.eval_split), **eval_bundle_kwargs(n, cfg.n_test)}
             for n in cfg.eval_names()]
    parts = [{"zeroshot": cfg.model, "weights": weights_identity(cfg.model, tag, seed), "evals": evals}
             for tag in tags]

    def compute(missing: list[int]) -> list[dict]:
        scores = zeroshot_scores_many(cfg.model, [tags[i] for i in missing], datasets=cfg.eval_names(),
                                      n_test=cfg.n_test, data_root=cfg.data_root, split=cfg.eval_split)
        return [{"group": "zero-shot", "model": f"{cfg.model}:{tags[i] or 'default'}", "seed": seed,
                 "id_acc": s[cfg.id_dataset], "ood_avg": s["ood_avg"], **{d: s[d] for d in cfg.ood_datasets}}
                for i, s in zip(missing, scores)]

    return runs.memo_many("reference", parts, compute)


def baseline_points(cfg: "CurveConfig", standard_models: Sequence[str] = (), zeroshot_pretrained: Sequence[str] = (),
                    seed: int = 0, n_train_standard: Optional[int] = None, *, runs: Optional[RunCache] = None,
                    progress: bool = True) -> pd.DataFrame:
    """Figure 1's reference populations, one row per model (top-1, percent).

    ``group`` "standard": models trained from scratch on the ID photos only
    (:mod:`wiseft_lib.mini.standard`), whose logit-space line is the effective-robustness baseline.
    ``group`` "zero-shot": ``cfg.model`` with ``cfg.pretrained`` and each of
    ``zeroshot_pretrained`` (other pretraining budgets), scored zero-shot: the zero-shot line.
    """
    runs = runs if runs is not None else RunCache(None)
    rows: list[dict] = []
    if standard_models:
        rows += _standard_rows(cfg, list(standard_models), seed, n_train_standard, runs, progress)
    if zeroshot_pretrained:
        rows += _zeroshot_rows(cfg, [cfg.pretrained, *zeroshot_pretrained], seed, runs)
    columns = ["group", "model", "seed", "id_acc", "ood_avg", *cfg.ood_datasets]
    return pd.DataFrame(rows, columns=columns)


def effective_robustness(table: pd.DataFrame, baselines: pd.DataFrame, group: str = "standard") -> pd.DataFrame:
    """``table`` plus ``effective_robustness``: OOD accuracy above the ``group`` baseline's logit line (pp)."""

    ref = baselines[baselines["group"] == group]
    line = fit_logit_line(ref["id_acc"], ref["ood_avg"])
    out = table.copy()
    out["effective_robustness"] = (out["ood_avg"] - line(out["id_acc"])).round(2)
    return out
