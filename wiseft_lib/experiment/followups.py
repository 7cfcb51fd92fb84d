"""The methods that followed WiSE-FT, as ends of a curve kept in the run cache beside its fine-tune: LP-FT, model
soups (uniform and greedy) and WiSE-FT with one alpha per layer group. FLYP: :mod:`wiseft_lib.experiment.flyp_run`.

    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.endpoints import Endpoints
    from wiseft_lib.experiment.followups import lpft_run
    from wiseft_lib.experiment.runs import RunCache

    ep = Endpoints(CurveConfig(n_train=256, e2e={"epochs": 1}), 0, RunCache("outputs/runs"))
    lpft = lpft_run(ep)              # a logistic-regression probe's head, then end-to-end fine-tuning from it
    model = lpft.load_model(ep)      # an ImageClassifier, interpolated with the zero-shot model like any fine-tune

Every choice here looks at the ID set's *val* split only (``val_ep``: the same curve with ``eval_split="val"``):
the greedy soup's ingredient order and acceptance, and the per-group alphas.
"""
from __future__ import annotations

import copy
import time
from typing import Any, Mapping, Optional, Sequence

import pandas as pd
import torch

from wiseft_lib.core.device import is_writer, resolve_precision
from wiseft_lib.core.evaluate import predict_logits, score
from wiseft_lib.core.files import atomic_write_text
from wiseft_lib.core.layer_groups import (
    DEFAULT_GRID,
    GroupSearch,
    interpolate_groups_in_place,
    layer_groups,
    search_group_alphas,
)
from wiseft_lib.core.models import ImageClassifier
from wiseft_lib.core.soups import greedy_soup, uniform_soup
from wiseft_lib.experiment.endpoints import Endpoints, RunRef, finetuned_run
from wiseft_lib.experiment.runs import alpha_key, run_key
from wiseft_lib.finetune import finetune

__all__ = ["lpft_run", "soup_runs", "val_top1", "group_alpha_search", "group_alpha_curve"]


def lpft_run(ep: Endpoints, *, probe: Optional[Mapping[str, Any]] = None,
             e2e: Optional[Mapping[str, Any]] = None) -> RunRef:
    """LP-FT (Kumar et al. 2022): fit a logistic-regression probe on the frozen zero-shot features (C chosen on
    held-out training data; cached as a ``linear`` run), put its head on the zero-shot image tower, then fine-tune
    end to end with the curve's ``e2e`` recipe updated by ``e2e``. Cached under run kind ``lpft``."""
    probe_ep = Endpoints(ep.cfg.as_curve(modes=["linear"], linear_method="probe", linear=dict(probe or {})),
                         ep.seed, ep.runs, ep.progress)
    lp = finetuned_run(probe_ep, "linear")
    ft_cfg = ep.cfg.as_curve(e2e={**ep.cfg.e2e, **dict(e2e or {})}).finetune_config("end-to-end", ep.seed)
    transform = "train" if ep.cfg.augment == "clip" else f"train+{ep.cfg.augment}"
    parts = {"mode": "lp-ft", "zeroshot": ep.zeroshot_hash(), "probe": f"{lp.kind}/{lp.key}",
             "train": ep.train_record(ep.cfg.n_train, transform),
             "recipe": {**ft_cfg.recipe(), "precision": resolve_precision(ft_cfg.precision, ep.device)}}
    key = run_key(parts)
    with ep.runs.lock("lpft", key):
        if not ep.runs.has("lpft", key):
            start = time.time()
            work = ep.runs.work_dir("lpft", key)
            model = copy.deepcopy(ep.zeroshot())
            model.classification_head = lp.load_head(probe_ep).to(ep.device)
            model.meta["start"] = "linear probe (LP-FT)"
            train = ep.train_set(ep.cfg.n_train, ep.train_transform())
            finetune(model, train.dataset, ft_cfg, output_dir=work, resume=True, device=ep.device,
                     progress=ep.progress)
            ep.runs.commit("lpft", key, work, {"parts": parts, "seconds": round(time.time() - start, 1)},
                           keep=["finetuned.safetensors", "finetuned.json", "log.jsonl"])
    return RunRef("lpft", key, "end-to-end")


def val_top1(model: torch.nn.Module, val_ep: Endpoints) -> float:
    """Top-1 accuracy (%) of ``model`` on the ID set's val split (decoded once per process)."""
    name = val_ep.cfg.id_dataset
    bundle = val_ep.eval_bundle(name)
    logits, labels = predict_logits(model, bundle.dataset, batch_size=val_ep.cfg.eval_batch_size,
                                    device=val_ep.device, precision=val_ep.eval_precision("model"), progress=False)
    return float(score(logits, labels, val_ep.scoring_bundle(name))["top1"])


def _save_soup(ep: Endpoints, key: str, model: ImageClassifier, record: dict[str, Any],
               trace: Optional[pd.DataFrame] = None) -> RunRef:
    with ep.runs.lock("soup", key):
        if not ep.runs.has("soup", key):
            work = ep.runs.work_dir("soup", key)
            if is_writer():
                model.save(work / "finetuned.safetensors")
                if trace is not None:
                    atomic_write_text(work / "trace.csv", trace.to_csv(index=False))
            ep.runs.commit("soup", key, work, record)
    return RunRef("soup", key, "end-to-end")


def _uniform_only(ep: Endpoints, key: str, unique: Mapping[str, RunRef]) -> RunRef:
    if not ep.runs.has("soup", key):
        models = [r.load_model(ep) for r in unique.values()]
        soup = uniform_soup([m.state_dict() for m in models])
        models[0].load_state_dict(soup)
        _save_soup(ep, key, models[0], {"soup": "uniform", "ingredients": list(unique)})
    return RunRef("soup", key, "end-to-end")


def _distinct(ingredients: Mapping[str, RunRef]) -> dict[str, RunRef]:
    unique: dict[str, RunRef] = {}
    for name, ref in ingredients.items():
        if all(ref.key != r.key or ref.kind != r.kind for r in unique.values()):
            unique[name] = ref
    return unique


def soup_runs(ep: Endpoints, val_ep: Optional[Endpoints], ingredients: Mapping[str, RunRef]
              ) -> tuple[dict[str, RunRef], pd.DataFrame]:
    """The uniform and the greedy soup of ``ingredients`` (fine-tunes of ``ep``'s zero-shot model, by name; the
    same run under two names counts once), each cached as a run of kind ``soup``. The greedy soup adds the
    ingredients in order of val ID accuracy, each kept when the soup's val accuracy does not drop. Returns
    ``({"uniform soup": ref, "greedy soup": ref}, trace)``: per ingredient its val accuracy and whether the greedy
    soup kept it. Without ``val_ep`` (an ID set with no val split) only the uniform soup, which chooses nothing."""
    unique = _distinct(ingredients)
    names = list(unique)
    base = {"zeroshot": ep.zeroshot_hash(), "ingredients": sorted(f"{r.kind}/{r.key}" for r in unique.values())}
    keys = {"uniform soup": run_key({**base, "soup": "uniform"})}
    if val_ep is None:
        return {"uniform soup": _uniform_only(ep, keys["uniform soup"], unique)}, pd.DataFrame()
    keys["greedy soup"] = run_key({**base, "soup": "greedy", "val": val_ep.eval_key(val_ep.cfg.id_dataset, "model")})
    if all(ep.runs.has("soup", k) for k in keys.values()):
        trace = pd.read_csv(ep.runs.entry("soup", keys["greedy soup"]) / "trace.csv")
        return {label: RunRef("soup", k, "end-to-end") for label, k in keys.items()}, trace
    models = [unique[n].load_model(ep) for n in names]
    states = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in models]
    val_scores = [val_top1(m, val_ep) for m in models]
    work = models[0]
    del models

    def evaluate(state: dict[str, torch.Tensor]) -> float:
        work.load_state_dict(state)
        return val_top1(work, val_ep)

    greedy = greedy_soup(states, val_scores, evaluate, names=names)
    trace = greedy.trace.assign(seed=ep.seed)
    work.load_state_dict(uniform_soup(states))
    refs = {"uniform soup": _save_soup(ep, keys["uniform soup"], work, {"soup": "uniform", "ingredients": names})}
    work.load_state_dict(greedy.state)
    refs["greedy soup"] = _save_soup(ep, keys["greedy soup"], work,
                                     {"soup": "greedy", "ingredients": names, "val_score": greedy.val_score,
                                      "kept": [names[i] for i in greedy.kept]}, trace)
    return refs, trace


def group_alpha_search(ep: Endpoints, val_ep: Endpoints, run: RunRef, *, n_trials: int = 20,
                       grid: Sequence[float] = DEFAULT_GRID, seed: int = 0) -> GroupSearch:
    """One alpha per layer group of the image tower (embedding, early, middle, late blocks, head) between the
    zero-shot model and ``run``, chosen by :func:`~wiseft_lib.core.layer_groups.search_group_alphas` on the ID val
    split, the search seeded with ``seed``. Its uniform phase is the best single alpha chosen the same way. Cached
    (run kind ``group-alpha``: the choice and every assignment tried)."""
    parts = _group_parts(ep, val_ep, run, n_trials=n_trials, grid=grid, seed=seed)
    key = run_key(parts)
    with ep.runs.lock("group-alpha", key):
        if not ep.runs.has("group-alpha", key):
            found = _search(ep, val_ep, run, n_trials=n_trials, grid=grid, seed=seed)
            work = ep.runs.work_dir("group-alpha", key)
            if is_writer():
                atomic_write_text(work / "trials.csv", found.trials.to_csv(index=False))
            ep.runs.commit("group-alpha", key, work, {"parts": parts, "best": found.best,
                                                       "best_score": found.best_score,
                                                       "best_uniform": found.best_uniform,
                                                       "best_uniform_score": found.best_uniform_score})
    record = ep.runs.record("group-alpha", key)
    return GroupSearch(dict(record["best"]), record["best_score"], record["best_uniform"],
                       record["best_uniform_score"], pd.read_csv(ep.runs.entry("group-alpha", key) / "trials.csv"))


def _group_parts(ep: Endpoints, val_ep: Endpoints, run: RunRef, *, n_trials: int, grid: Sequence[float],
                 seed: int) -> dict[str, Any]:
    return {"run": f"{run.kind}/{run.key}", "zeroshot": ep.zeroshot_hash(), "grid": [float(a) for a in grid],
            "val": val_ep.eval_key(val_ep.cfg.id_dataset, "model"), "n_trials": n_trials, "seed": seed}


def group_alpha_curve(ep: Endpoints, val_ep: Endpoints, run: RunRef, label: str = "per-group alpha", *,
                      n_trials: int = 20, grid: Sequence[float] = DEFAULT_GRID,
                      seed: int = 0) -> tuple[GroupSearch, pd.DataFrame]:
    """:func:`group_alpha_search`, then its choice scored on every evaluation set of ``ep`` (cached with the
    search): tidy rows with ``mode=label`` and alpha 1 (the chosen model)."""
    search = group_alpha_search(ep, val_ep, run, n_trials=n_trials, grid=grid, seed=seed)
    key = run_key(_group_parts(ep, val_ep, run, n_trials=n_trials, grid=grid, seed=seed))
    missing = [n for n in ep.cfg.eval_names()
               if alpha_key(1.0) not in ep.runs.scores("group-alpha", key, ep.eval_key(n, "model"))]
    if missing:
        tuned, theta_0, theta_1, groups = _grouped_endpoints(ep, run)
        interpolate_groups_in_place(tuned, theta_0, theta_1, search.best, groups)
        for name in missing:
            bundle = ep.eval_bundle(name)
            logits, labels = predict_logits(tuned, bundle.dataset, batch_size=ep.cfg.eval_batch_size,
                                            device=ep.device, precision=ep.eval_precision("model"), progress=False)
            ep.runs.add_scores("group-alpha", key, ep.eval_key(name, "model"), 1.0,
                               {**score(logits, labels, ep.scoring_bundle(name)), "n_images": float(len(labels)),
                                "n_skipped": float(bundle.skipped)}, ep.eval_record(name))
    rows = [{"seed": ep.seed, "mode": label, "alpha": 1.0, "dataset": n, "metric": k, "value": v}
            for n in ep.cfg.eval_names()
            for k, v in ep.runs.scores("group-alpha", key, ep.eval_key(n, "model"))[alpha_key(1.0)].items()]
    return search, pd.DataFrame(rows)


def _grouped_endpoints(ep: Endpoints, run: RunRef) -> tuple[ImageClassifier, dict, dict, dict[str, str]]:
    """``run``'s model (the working copy), both endpoints' weights and the layer group of each key."""
    tuned = run.load_model(ep).to(ep.device)
    theta_0 = {k: v.detach().clone() for k, v in ep.zeroshot().state_dict().items()}
    theta_1 = {k: v.detach().clone() for k, v in tuned.state_dict().items()}
    return tuned, theta_0, theta_1, layer_groups(theta_0)


def _search(ep: Endpoints, val_ep: Endpoints, run: RunRef, *, n_trials: int, grid: Sequence[float],
            seed: int) -> GroupSearch:
    tuned, theta_0, theta_1, groups = _grouped_endpoints(ep, run)

    def val_score(alphas: dict[str, float]) -> float:
        interpolate_groups_in_place(tuned, theta_0, theta_1, alphas, groups)
        return val_top1(tuned, val_ep)

    return search_group_alphas(val_score, grid=grid, n_trials=n_trials, seed=seed)
