"""The workshop notebook's parameters (``notebooks/00_wiseft_tutorial.ipynb``).

The tutorial walks through the method with the public API step by step, so its logic stays in
the notebook; ``wiseft run 00_wiseft_tutorial`` executes the notebook itself.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from wiseft_lib.params import ParamsError, param
from wiseft_lib.studies.base import StudyParams, register_study

NAME = "00_wiseft_tutorial"
__all__ = ["TutorialParams"]


@dataclass
class TutorialParams(StudyParams):
    """A small, fast version of Figure 1 for a workshop: one model, one fine-tune, one sweep."""

    output_dir: str = param("outputs/mini/00_wiseft_tutorial", "where the figures and the curve go")
    model: str = param("wiseft-mini", "the zero-shot model (the package's small CLIP; any open_clip name works)")
    n_train: int = param(1000, "fine-tuning images (Fashion-MNIST photos)")
    n_test: int = param(500, "test images per evaluation set")
    epochs: int = param(6, "fine-tuning epochs")
    lr: float = param(5e-4, "fine-tuning learning rate (AdamW)")
    alphas: list[float] = param([round(0.1 * i, 1) for i in range(11)], "the mixing coefficients of the sweep")
    gallery_shift: str = param("mini-rendition", "the shift whose changed predictions the alpha slider shows")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not {0.0, 1.0} <= set(self.alphas):
            raise ParamsError("parameter 'alphas' must include 0 (the zero-shot model) and 1 (the fine-tuned one)")

    def smoke_version(self) -> "TutorialParams":
        return dataclasses.replace(self, n_train=200, n_test=100, epochs=1, alphas=[0.0, 0.5, 1.0])


STUDY = register_study("00_wiseft_tutorial",
                       "WiSE-FT step by step (workshop tutorial)",
                       TutorialParams, None)
