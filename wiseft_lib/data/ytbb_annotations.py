"""YTBB-Robust's reviewed annotations, selected by the rules of the official WiSE-FT evaluation.

The paper scores YTBB-Robust (pm0, pm10) from the authors' reviewed annotations, not from the
release's ``metadata/``. They ship with the official code (github.com/mlfoundations/wise-ft,
``src/datasets/ytbb-robust_metadata/``); copy these three files into
``<ytbb-robust folder>/wiseft-reviewed/``:

* ``anchor_labels.json``  ``{"labels": [name, ...], "annotations": [{"key", "labels"}, ...]}``;
  a row's ``labels`` index into ``labels``. An anchor is kept if it has "good" and neither
  "bad" nor "unsure"; its label names that are YTBB classes are added to its labels.
* ``pmk_labels.json``  the same format, keyed ``"<anchor key>,<neighbour key>"``. A pair is a
  valid neighbour if it has "similar" and none of :data:`PROBLEMATIC`; an anchor with any
  "bad-anchor" pair is dropped entirely.
* ``ytbb_robustness_test_anchors_full.csv``  ``ytid,time_ms,label``: each anchor's initial
  label, which indexes car as 22 and none as 23 (swapped to the package's order, where 22 is
  "none" and 23 "car").

Keys look like ``<youtube id>_<anchor ms>/frame-<index>.jpg`` (a longer path keeps its last
two parts). An anchor's pm-k neighbours are the frames at index offsets -k..k (not 0) whose
pair ``"<anchor key>,<neighbour key>"`` is valid, compared verbatim as the official code does.
Rows repeated under one key: the latest counts.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional, Sequence

REVIEWED_FOLDER = "wiseft-reviewed"
ANCHOR_FILE = "anchor_labels.json"
PAIR_FILE = "pmk_labels.json"
INITIAL_FILE = "ytbb_robustness_test_anchors_full.csv"
FILES = (ANCHOR_FILE, PAIR_FILE, INITIAL_FILE)
OFFICIAL_SOURCE = "https://github.com/mlfoundations/wise-ft/tree/master/src/datasets/ytbb-robust_metadata"
PROBLEMATIC = ("dissimilar", "problematic", "incorrect", "dont know", "deformation", "background-change",
               "occlusion-increased", "blur-increase", "bad-anchor")
ANCHOR_NAMES = ("good", "bad", "unsure")
PAIR_NAMES = ("similar", "correct", *PROBLEMATIC)
CSV_SWAP = {22: 23, 23: 22}  # the CSV's car / none -> the package's (and ytbb_class_index.json's) order


class ReviewedAnnotationError(ValueError):
    """A reviewed-annotation file is malformed; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class ReviewedAnchors:
    """The anchors the official evaluation scores: labels and valid neighbours per anchor key."""

    labels: dict[str, frozenset[int]]
    neighbours: dict[str, dict[int, str]]  # anchor key -> {index offset: neighbour key}


def _error(path: Path, problem: str) -> ReviewedAnnotationError:
    return ReviewedAnnotationError(
        f"{path}: {problem}. Replace it with an unmodified copy of {path.name} from {OFFICIAL_SOURCE} "
        f"(the raw file, not the GitHub page), or remove the {path.parent.name}/ folder to use the "
        f"release's metadata/ instead (not the paper's protocol)."
    )


def reviewed_folder(folder: Path, reviewed: Optional[Path] = None) -> Optional[Path]:
    """The folder holding the three reviewed files, or None when it does not exist.

    ``reviewed`` (if given) must exist; otherwise ``<folder>/wiseft-reviewed`` is used if present.
    A folder that exists but lacks a file is an error naming what is missing.
    """
    where = Path(reviewed).expanduser() if reviewed is not None else folder / REVIEWED_FOLDER
    if not where.is_dir():
        if reviewed is None:
            return None
        raise FileNotFoundError(f"reviewed YTBB-Robust annotations: {where} is not a folder; it must hold "
                                f"{', '.join(FILES)} from {OFFICIAL_SOURCE}")
    missing = [f for f in FILES if not (where / f).is_file()]
    if missing:
        raise FileNotFoundError(f"reviewed YTBB-Robust annotations in {where} are incomplete: missing "
                                f"{', '.join(missing)}; copy them from {OFFICIAL_SOURCE}")
    return where


# ------------------------------------------------------------------------------ keys


def frame_key(path: str) -> str:
    """``<parent>/<name>`` of a path: the key the official code compares frames by."""
    p = PurePosixPath(path)
    return f"{p.parent.name}/{p.name}"


def parse_frame_key(key: str) -> tuple[str, int, int]:
    """(video id, frame index, anchor ms) of ``<video>_<ms>/frame-<index>.jpg``."""
    parent, name = frame_key(key).split("/")
    video, sep, ms = parent.rpartition("_")
    index = name.split("-")[1].split(".")[0] if "-" in name else ""
    if not sep or not ms.isdigit() or not index.isdigit():
        raise ValueError(f"frame key {key!r} is not of the form <video>_<ms>/frame-<index>.jpg")
    return video, int(index), int(ms)


def neighbour_key(anchor_key: str, index: int) -> str:
    """Key of frame ``index`` in the anchor's folder."""
    video, _, ms = parse_frame_key(anchor_key)
    return f"{video}_{ms}/frame-{index}.jpg"


# ------------------------------------------------------------------------------ files


def _read_review(path: Path, required: Sequence[str]) -> dict[str, set[str]]:
    """Key -> label names of a reviewed-annotation JSON file (the latest row of a key counts)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise _error(path, f"cannot be read as JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) \
            or not isinstance(data.get("labels"), list):
        raise _error(path, 'expected an object with an "annotations" list and a "labels" list')
    names = data["labels"]
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise _error(path, '"labels" must be a list of distinct label names')
    absent = [n for n in required if n not in names]
    if absent:
        raise _error(path, f'"labels" lacks {absent}, which the official rules need')
    rows: dict[str, set[str]] = {}
    for i, row in enumerate(data["annotations"]):
        ids = row.get("labels") if isinstance(row, dict) else None
        if not isinstance(ids, list) or not isinstance(row.get("key"), str) or not all(
                isinstance(j, int) and not isinstance(j, bool) and 0 <= j < len(names) for j in ids):
            raise _error(path, f'annotation {i} ({str(row)[:120]}) needs a "key" string and "labels", a list '
                               f'of indices into "labels" (0..{len(names) - 1})')
        rows[row["key"]] = {names[j] for j in ids}
    return rows


def _good_anchors(path: Path) -> dict[str, set[str]]:
    """Anchor key -> label names, for anchors marked good and neither bad nor unsure."""
    good: dict[str, set[str]] = {}
    for key, names in _read_review(path, ANCHOR_NAMES).items():
        if "good" in names and not names & {"bad", "unsure"}:
            good[frame_key(key)] = names
    return good


def _split_pair(path: Path, key: str) -> tuple[str, str]:
    parts = key.split(",")
    if len(parts) != 2:
        raise _error(path, f'pair key {key!r} is not "<anchor key>,<neighbour key>"')
    return frame_key(parts[0]), frame_key(parts[1])


def _pair_review(path: Path) -> tuple[set[str], set[str]]:
    """(valid pair keys, verbatim; anchor keys flagged bad-anchor)."""
    rows = _read_review(path, PAIR_NAMES)
    anchor_of = {k: _split_pair(path, k)[0] for k in rows}
    bad_anchors = {anchor_of[k] for k, names in rows.items() if "bad-anchor" in names}
    valid = {k for k, names in rows.items()
             if "similar" in names and not names & set(PROBLEMATIC) and anchor_of[k] not in bad_anchors}
    return valid, bad_anchors


def _initial_labels(path: Path, n_classes: int) -> dict[str, int]:
    """``<ytid>_<time_ms>`` -> initial label in the package's class order (22/23 swapped)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise _error(path, f"cannot be read as CSV ({err})") from err
    if not rows or not {"ytid", "time_ms", "label"} <= set(rows[0]):
        raise _error(path, "expected a CSV with a header row ytid,time_ms,label and one row per anchor")
    out: dict[str, int] = {}
    for i, row in enumerate(rows):
        try:
            label = int(row["label"])
        except (TypeError, ValueError):
            raise _error(path, f"row {i + 2}: label {row['label']!r} is not an integer") from None
        if not 0 <= label < n_classes:
            raise _error(path, f"row {i + 2}: label {label} is outside 0..{n_classes - 1}")
        out[f"{row['ytid']}_{row['time_ms']}"] = CSV_SWAP.get(label, label)
    return out


# ------------------------------------------------------------------------------ selection


def _anchor_labels(folder: Path, anchors: dict[str, set[str]], classnames: Sequence[str]) -> dict[str, frozenset[int]]:
    """Each anchor's YTBB labels: reviewed class names (by name) united with its initial CSV label."""
    index = {name: i for i, name in enumerate(classnames)}
    initial = _initial_labels(folder / INITIAL_FILE, len(classnames))
    labels = {}
    for key, names in anchors.items():
        stem = key.split("/")[0]
        if stem not in initial:
            raise _error(folder / INITIAL_FILE, f"has no row for anchor {key} (ytid,time_ms = {stem!r}), "
                                                f"which {ANCHOR_FILE} keeps")
        labels[key] = frozenset({index[n] for n in names if n in index} | {initial[stem]})
    return labels


def _valid_neighbours(folder: Path, anchor: str, valid_pairs: set[str], k: int) -> dict[int, str]:
    try:
        _, index, _ = parse_frame_key(anchor)
    except ValueError as err:
        raise _error(folder / ANCHOR_FILE, str(err)) from None
    found = {}
    for offset in range(-k, k + 1):
        key = neighbour_key(anchor, index + offset)
        if offset != 0 and f"{anchor},{key}" in valid_pairs:
            found[offset] = key
    return found


def load_reviewed(folder: Path, classnames: Sequence[str], k: int = 10) -> ReviewedAnchors:
    """Anchors, labels and pm-k neighbours (offsets -k..k) from the three files in ``folder``."""
    anchors = _good_anchors(folder / ANCHOR_FILE)
    valid_pairs, bad_anchors = _pair_review(folder / PAIR_FILE)
    anchors = {key: names for key, names in anchors.items() if key not in bad_anchors}
    if not anchors:
        raise _error(folder / ANCHOR_FILE, "keeps no anchor (none is marked good without bad, unsure or a "
                                           "bad-anchor pair)")
    labels = _anchor_labels(folder, anchors, classnames)
    neighbours = {a: _valid_neighbours(folder, a, valid_pairs, k) for a in anchors}
    return ReviewedAnchors(labels=labels, neighbours=neighbours)
