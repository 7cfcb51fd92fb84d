"""The shipped ``wiseft-mini`` weights, reproduced: contrastive pretraining, then zero-shot scores.

    wiseft run pretrain_mini_clip --params params/mini/pretrain_mini_clip.yaml      # ~35 min on 2 cores
    wiseft run pretrain_mini_clip --set smoke=true                                 # seconds

Writes ``wiseft-mini-fmnist-seedS.safetensors`` (+ budgets), ``pretrain_loss.png/.pdf`` and
``zeroshot.csv/.md`` (the new weights beside the shipped ones) to ``output_dir``; never into the
installed package. Each pretraining run is kept in the run cache, so a rerun only re-scores.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from wiseft_lib.experiment.reference import zeroshot_scores_many
from wiseft_lib.mini.pretrain import PretrainConfig, pretrain_mini_clip
from wiseft_lib.params import ParamsError, param
from wiseft_lib.report.plots import attach_data, new_figure, themed
from wiseft_lib.studies.base import StudyOutputs, StudyParams, StudyResult, UsesRuns, register_study

NAME = "pretrain_mini_clip"
__all__ = ["PretrainParams", "PretrainResult", "run"]


@dataclass
class PretrainParams(UsesRuns, StudyParams):
    """The pretraining recipe (defaults: the shipped weights') and how the new weights are scored."""

    output_dir: str = param("outputs/mini/pretrain_mini_clip", "where weights, tables and figures go")
    steps: int = param(3600, "optimizer steps")
    batch_size: int = param(64, "image-caption pairs per step")
    lr: float = param(5e-4, "peak learning rate (AdamW)")
    warmup_steps: int = param(200, "linear warm-up steps")
    caption_noise: float = param(0.3, "share of each confusable class captioned as its neighbour")
    noise_mode: str = param("systematic", "'systematic': a fixed, visually coherent subset; 'random': resampled "
                                          "per caption")
    n_pool: Optional[int] = param(None, "pretraining images (None: the whole 40k pool)")
    budgets: list[float] = param([], "also pretrain with these fractions of `steps` (the shipped fmnist-budgetNN "
                                     "tags: Figure 1's zero-shot line)")
    n_test: int = param(2000, "images per evaluation set for the zero-shot scores")
    eval_split: str = param("test", "'test' for reported numbers; 'val' while choosing the recipe")
    data_root: Optional[str] = param(None, "Fashion-MNIST folder (default: $WISEFT_DATA, then the usual places)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.noise_mode not in ("systematic", "random"):
            raise ParamsError(f"parameter 'noise_mode' must be 'systematic' or 'random', not {self.noise_mode!r}")
        if any(not 0 < b <= 1 for b in self.budgets):
            raise ParamsError(f"parameter 'budgets' holds fractions of `steps` in (0, 1], got {self.budgets}")
        if self.eval_split not in ("test", "val"):
            raise ParamsError(f"parameter 'eval_split' must be 'test' or 'val', not {self.eval_split!r}")

    def smoke_version(self) -> "PretrainParams":
        return dataclasses.replace(self, steps=3, batch_size=64, n_pool=512, n_test=200, budgets=self.budgets[:1])

    def configs(self) -> dict[str, Any]:
        """``{file stem: PretrainConfig}``: one run per seed, then the budgets (first seed)."""

        common = dict(batch_size=self.batch_size, lr=self.lr, caption_noise=self.caption_noise,
                      noise_mode=self.noise_mode, n_pool=self.n_pool)
        out = {f"wiseft-mini-fmnist-seed{s}": PretrainConfig(steps=self.steps, warmup_steps=self.warmup_steps,
                                                             seed=s, **common) for s in self.seeds}
        for fraction in self.budgets:  # shorter runs of the same recipe, each with its own schedule
            n = max(1, round(fraction * self.steps))
            out[f"wiseft-mini-fmnist-budget{round(100 * fraction)}"] = PretrainConfig(
                steps=n, warmup_steps=min(self.warmup_steps, max(1, n // 10)), seed=self.seeds[0], **common)
        return out


@dataclass
class PretrainResult(StudyResult):
    params: PretrainParams
    zeroshot: pd.DataFrame  # zero-shot top-1 (%) of the shipped and the new weights, per evaluation set
    losses: dict[str, list[float]]
    figure: Any
    weights: dict[str, Path] = field(default_factory=dict)  # file stem -> the weights copied to output_dir


def _pretrained(config, runs, data_root: Optional[str], progress: bool) -> tuple[Path, list[float]]:
    """Weights of one pretraining run (cached) and its per-step losses."""

    parts = {"pretrain": asdict(config)}
    key = runs.key(parts)
    with runs.lock("pretrain", key):
        if not runs.has("pretrain", key):
            work = runs.work_dir("pretrain", key)
            _, losses = pretrain_mini_clip(config, out_path=work / "weights.safetensors", root=data_root,
                                           progress=progress)
            (work / "losses.json").write_text(json.dumps(losses))
            runs.commit("pretrain", key, work, {"parts": parts})
    entry = runs.entry("pretrain", key)
    return entry / "weights.safetensors", json.loads((entry / "losses.json").read_text())


@themed
def _loss_figure(losses: dict[str, list[float]]):
    fig = new_figure((6, 3.5))
    ax = fig.subplots()
    for name, values in losses.items():
        ax.plot(pd.Series(values).rolling(20, min_periods=1).mean(), label=name)
    ax.set(xlabel="step", ylabel="contrastive loss (20-step mean)", title="wiseft-mini pretraining")
    ax.legend()
    return attach_data(fig, pd.DataFrame([{"config": name, "step": step, "loss": value}
                                          for name, values in losses.items() for step, value in enumerate(values)]))


def run(params: PretrainParams, *, progress: bool = True) -> PretrainResult:
    """Pretrain (or reuse) each configuration, copy the weights to ``output_dir``, score them zero-shot."""

    outputs = StudyOutputs(NAME, params)
    p = outputs.params
    weights, losses = {}, {}
    for stem, config in p.configs().items():
        cached, losses[stem] = _pretrained(config, outputs.runs, p.data_root, progress)
        weights[stem] = outputs.out / f"{stem}.safetensors"
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(cached.with_suffix(suffix), weights[stem].with_suffix(suffix))
    figure = _loss_figure(losses)
    outputs.figure("figure", figure, "pretrain_loss")
    scores = zeroshot_scores_many("wiseft-mini", [None, *(str(w) for w in weights.values())], n_test=p.n_test,
                                  data_root=p.data_root, split=p.eval_split, progress=False)
    table = pd.DataFrame([{"weights": name, **s} for name, s in zip(["shipped", *weights], scores)]).round(1)
    outputs.table("zeroshot", table)
    return PretrainResult(p, table, losses, figure, weights, **outputs.finish())


STUDY = register_study("pretrain_mini_clip",
                       "The wiseft-mini CLIP's pretraining (the embedded default's zero-shot model)",
                       PretrainParams, run)
