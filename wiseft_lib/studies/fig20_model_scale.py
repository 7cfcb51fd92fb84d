"""Figure 20: WiSE-FT's gains across zero-shot models of different pretraining compute.

    wiseft run fig20_model_scale --params params/mini/fig20_model_scale.yaml
    papermill notebooks/fig20_model_scale.ipynb out.ipynb -f params/mini/fig20_model_scale.yaml

Each model (an open_clip name and tag, or the package's wiseft-mini with one of its shipped pretraining
budgets) gets the reference WiSE-FT curve. Its pretraining compute is ``3 x`` (forward FLOPs of one image-text
pair, counted by :func:`pretraining_flops` on the architecture) ``x`` the pairs seen in pretraining: read from
the weights' sidecar for package models, given in params otherwise (OpenAI's CLIP models: 32 epochs of 400M
pairs). Writes ``gains.*`` (per model and mode: zero-shot, fine-tuned, WiSE-FT 0.5 and oracle, and the gains
over fine-tuning ID and OOD), ``claims.*``, ``fig20_model_scale.png/.pdf``, ``results.sqlite``, ``study.json``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Optional

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from wiseft_lib.core.models import PACKAGE_MODELS, create_architecture, package_weights_path
from wiseft_lib.experiment.config import CurveConfig
from wiseft_lib.experiment.curve import curve_table, wiseft_curve
from wiseft_lib.experiment.results import ResultsStore
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.plots import attach_data, panel_grid, themed
from wiseft_lib.studies.base import StudyOutputs, StudyParams, StudyResult, UsesRuns, register_study

NAME = "fig20_model_scale"
__all__ = ["ScaleParams", "ScaleResult", "run", "pair_flops", "samples_seen", "scale_gains", "scale_claims"]

MINI_MODELS = {f"budget {b}%": {"model": "wiseft-mini", "pretrained": f"fmnist-budget{b}"} for b in (5, 12, 25)}
MINI_MODELS["budget 100%"] = {"model": "wiseft-mini", "pretrained": "fmnist"}


def check_models(models: dict[str, dict[str, Any]], extra: tuple[str, ...] = ()) -> None:
    """A ``models`` parameter: label -> {model, pretrained[, extra keys]}, at least one."""
    if not models:
        raise ParamsError("parameter 'models' must name at least one model")
    allowed = {"model", "pretrained", *extra}
    for label, spec in models.items():
        if not isinstance(spec, dict) or "model" not in spec or set(spec) - allowed:
            raise ParamsError(f"parameter 'models': entry {label!r} needs 'model' (and may have "
                              f"{', '.join(repr(k) for k in sorted(allowed - {'model'}))}), got {spec!r}")


def pair_flops(model: str, pretrained: Optional[str] = None) -> float:
    """Forward FLOPs of one image and one caption through the model's two towers (counted by
    ``torch.utils.flop_counter`` on the architecture; no weights are loaded)."""

    clip, _, _ = create_architecture(model, pretrained)
    size = clip.visual.image_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    tokens = torch.zeros(1, clip.context_length, dtype=torch.long)
    tokens[0, 0], tokens[0, 1] = 1, clip.vocab_size - 1  # a start and an end-of-text token
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        clip.encode_image(torch.zeros(1, 3, *size))
        clip.encode_text(tokens)
    return float(counter.get_total_flops())


def samples_seen(model: str, pretrained: Optional[str]) -> Optional[float]:
    """Image-text pairs seen in pretraining, from a package model's weights sidecar (steps x batch size)."""

    if model not in PACKAGE_MODELS:
        return None
    tag = pretrained or next(iter(PACKAGE_MODELS[model]))
    if tag not in PACKAGE_MODELS[model]:
        return None
    sidecar = package_weights_path(model, tag).with_suffix(".json")
    if not sidecar.exists():
        return None
    config = json.loads(sidecar.read_text())["pretrain_config"]
    return float(config["steps"] * config["batch_size"])


@dataclass
class ScaleParams(CurveConfig, UsesRuns, StudyParams):
    """Figure 20's parameters: the models (``model`` / ``pretrained`` are set per entry) and the reference recipe."""

    output_dir: str = param("outputs/mini/fig20_model_scale", "where results, tables and figures go")
    models: dict[str, dict[str, Any]] = param(dict(MINI_MODELS), "label -> {model, pretrained, samples_seen "
                                              "(pairs seen in pretraining; package models: from the weights)}")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_models(self.models, extra=("samples_seen",))
        for label, spec in self.models.items():
            seen = spec.get("samples_seen")
            if seen is not None and (isinstance(seen, bool) or not isinstance(seen, (int, float)) or seen <= 0):
                raise ParamsError(f"parameter 'models': entry {label!r} has samples_seen {seen!r}; give a positive "
                                  f"number (YAML reads 12.8e9 as text: write 1.28e+10)")

    def model_config(self, label: str) -> CurveConfig:
        return self.as_curve(model=self.models[label]["model"], pretrained=self.models[label].get("pretrained"))


@dataclass
class ScaleResult(StudyResult):
    params: ScaleParams
    curves: pd.DataFrame  # label, seed, mode, alpha: id_acc, ood_avg, each shift
    gains: pd.DataFrame
    claims: pd.DataFrame
    figure: Any


def scale_gains(curves: pd.DataFrame, compute: dict[str, Optional[float]]) -> pd.DataFrame:
    """Per model and mode (seed means): zero-shot, fine-tuned, WiSE-FT 0.5 and the oracle alpha (best mean OOD on
    these test sets), and the gains over the fine-tuned model ID and OOD."""
    mean = curves.groupby(["label", "mode", "alpha"], sort=False)[["id_acc", "ood_avg"]].mean().reset_index()
    rows = []
    for (label, mode), g in mean.groupby(["label", "mode"], sort=False):
        g = g.set_index("alpha")
        zs, ft, mid = g.loc[0.0], g.loc[1.0], g.loc[0.5]
        best = g["ood_avg"].idxmax()
        rows.append({"model": label, "mode": mode, "pretraining_flops": compute.get(label),
                     "zs_id": zs["id_acc"], "zs_ood": zs["ood_avg"], "ft_id": ft["id_acc"], "ft_ood": ft["ood_avg"],
                     "wiseft_0.5_id": mid["id_acc"], "wiseft_0.5_ood": mid["ood_avg"],
                     "gain_id_0.5": mid["id_acc"] - ft["id_acc"], "gain_ood_0.5": mid["ood_avg"] - ft["ood_avg"],
                     "oracle_alpha": best, "gain_ood_oracle": g.loc[best, "ood_avg"] - ft["ood_avg"]})
    return pd.DataFrame(rows)


def scale_claims(gains: pd.DataFrame) -> pd.DataFrame:
    """Per model and mode: WiSE-FT 0.5 is more robust than the fine-tuned model (the paper: for every CLIP model)."""
    return pd.DataFrame([{"claim": f"{r['model']} ({r['mode']}): WiSE-FT 0.5 OOD - fine-tuned OOD",
                          "value_pp": round(r["gain_ood_0.5"], 2), "bar_pp": "> 0", "holds": bool(r["gain_ood_0.5"] > 0)}
                         for _, r in gains.iterrows()])


@themed
def plot_scale(gains: pd.DataFrame, *, title: Optional[str] = None):
    """Gains of WiSE-FT 0.5 over fine-tuning (ID and OOD) and of the oracle (OOD) against pretraining compute."""

    fig, axes = panel_grid(3, 3, (3.6, 3.0))
    x_col = "pretraining_flops" if gains["pretraining_flops"].notna().all() else "zs_id"
    for ax, (col, name) in zip(axes, (("gain_id_0.5", "ID gain, alpha 0.5"), ("gain_ood_0.5", "OOD gain, alpha 0.5"),
                                      ("gain_ood_oracle", "OOD gain, oracle alpha"))):
        for i, (mode, g) in enumerate(gains.groupby("mode", sort=False)):
            g = g.sort_values(x_col)
            ax.plot(g[x_col], g[col], "-o", color=f"C{i}", markersize=4, label=mode)
            for _, r in g.iterrows():
                ax.annotate(str(r["model"]), (r[x_col], r[col]), fontsize=5, xytext=(2, 2), textcoords="offset points")
        ax.axhline(0, color="0.5", linewidth=0.7)
        if x_col == "pretraining_flops":
            ax.set_xscale("log")
        ax.set_xlabel("pretraining compute (FLOPs)" if x_col == "pretraining_flops" else "zero-shot ID accuracy (%)",
                      fontsize=8)
        ax.set_ylabel(f"{name}\nover fine-tuning (pp)", fontsize=8)
        ax.grid(True, linewidth=0.5, alpha=0.5)
    axes[0].legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    return attach_data(fig, gains)


def run(params: ScaleParams, *, progress: bool = True) -> ScaleResult:
    """The WiSE-FT curve of every model (cached); the gains against pretraining compute."""

    outputs = StudyOutputs(NAME, params)
    p, runs = outputs.params, outputs.runs
    if p.smoke:
        p = dataclasses.replace(p, models=dict(list(p.models.items())[:2]), seeds=p.seeds[:1])
    store = ResultsStore(outputs.out / "results.sqlite")
    frames, compute = [], {}
    for label, spec in p.models.items():
        cfg = p.model_config(label)
        seen = spec.get("samples_seen") or samples_seen(cfg.model, cfg.pretrained)
        compute[label] = 3.0 * pair_flops(cfg.model, cfg.pretrained) * seen if seen else None
        for seed in p.seeds:
            tidy = wiseft_curve(cfg, seed, runs=runs, store=store, study=f"{NAME}/{label}", progress=progress)
            frames.append(curve_table(tidy, id_dataset=cfg.id_dataset, ood_datasets=cfg.ood_datasets)
                          .assign(label=label))
    curves = pd.concat(frames, ignore_index=True)
    gains = scale_gains(curves, compute)
    claims = scale_claims(gains)
    outputs.table("gains", gains, floatfmt=".2f", caption=f"WiSE-FT gains per model ({p.eval_split} split, "
                                                          f"{len(p.seeds)} seed(s); oracle alpha: best mean OOD on "
                                                          f"these sets)")
    claims = outputs.claims(claims, p.n_test, floatfmt=".2f")
    figure = plot_scale(gains, title=f"WiSE-FT gains vs pretraining compute ({len(p.seeds)} seed(s))")
    outputs.figure("figure", figure, NAME)
    return ScaleResult(p, curves, gains, claims, figure, **outputs.finish())


STUDY = register_study("fig20_model_scale", "Figure 20: WiSE-FT's gains against pretraining compute",
                       ScaleParams, run,
                       covers=[("Figure 20", "mini: the four pretraining budgets")])
