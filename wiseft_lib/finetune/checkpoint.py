"""Step checkpoints: written atomically, found, checked against the config, and resumed bit for bit.

``OUTPUT_DIR/checkpoints/step_XXXXXXXX/`` holds ``model.safetensors`` + ``model.json`` (the
:meth:`ImageClassifier.save` format) and ``train_state.pt`` (plain tensors and dicts: optimizer,
scheduler, scaler, config, step, epoch, data position and every rank's RNG states; read with
``weights_only=True``). A folder only gets its ``step_*`` name once complete.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from wiseft_lib.core.device import barrier, gather_objects
from wiseft_lib.core.files import atomic_write_text, disk_full_error, is_disk_full
from wiseft_lib.core.models import ImageClassifier
from wiseft_lib.finetune.config import RESUMABLE_CHANGES, FinetuneConfig

__all__ = ["STATE_FORMAT", "latest_checkpoint", "trajectory", "save_checkpoint", "load_resume_state", "set_rng_state",
           "truncate_log", "checkpoint_root"]

STATE_FORMAT = "wiseft.finetune-state/1"


def rng_state() -> dict[str, Any]:
    """This process's torch, Python, NumPy (and CUDA) RNG states as plain tensors and numbers."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(_tuplify(state["python"]))
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["key"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def checkpoint_root(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def trajectory(output_dir: Union[str, Path]) -> list[tuple[int, Path]]:
    """``(step, model file)`` of every kept checkpoint, oldest first: the fine-tuning trajectory.

    Each ``model.safetensors`` loads with :meth:`ImageClassifier.load` and interpolates with the
    zero-shot model like the final one (the paper's early-stopping baseline, Figure 3). Keep them all
    with ``keep_checkpoints`` >= the number written and ``checkpoint_every`` = the spacing wanted.
    """
    root = checkpoint_root(Path(output_dir))
    done = sorted(p for p in root.glob("step_*") if p.is_dir() and (p / "model.safetensors").exists()
                  and (p / "train_state.pt").exists())
    return [(int(p.name.removeprefix("step_")), p / "model.safetensors") for p in done]


def latest_checkpoint(output_dir: Union[str, Path]) -> Optional[Path]:
    """The newest complete ``checkpoints/step_*`` folder under ``output_dir`` (or None)."""
    root = checkpoint_root(Path(output_dir))
    steps = sorted(p for p in root.glob("step_*") if p.is_dir() and (p / "train_state.pt").exists())
    return steps[-1] if steps else None


def save_checkpoint(output_dir: Path, model: ImageClassifier, state: dict[str, Any], step: int,
                    keep: int, rank: int, world: int) -> Path:
    """Write ``step_XXXXXXXX`` (rank 0; every rank's RNG gathered first); keep the newest ``keep``."""
    rngs = gather_objects(rng_state(), world)  # every rank's RNG, so each resumes its own
    root = checkpoint_root(output_dir)
    final = root / f"step_{step:08d}"
    if rank == 0:
        tmp = root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            model.save(tmp / "model.safetensors")
            torch.save({**state, "rng": rngs}, tmp / "train_state.pt")
        except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
            shutil.rmtree(tmp, ignore_errors=True)
            if is_disk_full(err) or "No space left" in str(err) or "file write failed" in str(err):
                previous = latest_checkpoint(output_dir)
                kept = f"the previous checkpoint {previous} is intact" if previous else "no checkpoint was written yet"
                raise disk_full_error(final, kept + " and resume=True continues from it") from None
            raise
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # the folder appears complete or not at all
        for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(world)
    return final


def _check_resumable(saved: Mapping[str, Any], config: FinetuneConfig, where: Path) -> None:
    now = config.to_dict()
    diffs = [f"{k}: checkpoint {saved.get(k)!r} vs now {now[k]!r}" for k in now
             if k not in RESUMABLE_CHANGES and k in saved and saved[k] != now[k]]
    if diffs:
        raise ValueError(
            f"cannot resume from {where}: the training config changed ({'; '.join(diffs)}). "
            f"Resume with the original settings, or start a new run in another output directory."
        )


def load_resume_state(ckpt: Path, work: ImageClassifier, cfg: FinetuneConfig, spe: int,
                      device: torch.device) -> dict[str, Any]:
    """Check a checkpoint fits this run, load its weights into ``work``; return its train state."""
    fix = (f"delete the folder {ckpt} to resume from the checkpoint before it, or start afresh in a new output "
           f"directory")
    try:  # weights_only: plain tensors and containers; a pickle asking for any other object is refused
        loaded = torch.load(ckpt / "train_state.pt", map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"cannot resume from {ckpt}: train_state.pt cannot be read ({_short(err)}); it is damaged "
                         f"or was not written by wiseft: {fix}") from None
    if not isinstance(loaded, dict) or loaded.get("format") != STATE_FORMAT:
        raise ValueError(f"{ckpt / 'train_state.pt'} is not a wiseft fine-tuning state file: {fix}")
    _check_resumable(loaded["config"], cfg, ckpt)
    if loaded["steps_per_epoch"] != spe:
        raise ValueError(
            f"cannot resume from {ckpt}: it has {loaded['steps_per_epoch']} steps per epoch, this run "
            f"{spe}; the training set size or batch size changed"
        )
    try:
        work.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(device)))
    except (SafetensorError, OSError, RuntimeError) as err:  # damaged, or the weights of another model
        raise ValueError(f"cannot resume from {ckpt}: model.safetensors does not load into this model "
                         f"({_short(err)}): {fix}") from None
    return loaded


def _short(err: BaseException) -> str:
    """The line of a loader's error that says what is wrong (torch's first lines advise an unsafe reload)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    detail = next((ln for ln in lines if ln.startswith(("Trying to load unsupported", "Unsupported"))), None)
    if detail is None and lines:  # load_state_dict: "Error(s) in loading state_dict for X:" then the first problem
        detail = lines[1] if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return f"{type(err).__name__}: {(detail or '')[:200]}"


def truncate_log(path: Path, step: int) -> None:
    """Drop rows after ``step`` (written by a run killed after its last checkpoint)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))
