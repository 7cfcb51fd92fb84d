"""YTBB-Robust scored by the official WiSE-FT evaluation's rules, on a synthetic reviewed-annotation fixture.

The fixture (written here: tiny JPEG frames, eight anchors) exercises every selection rule of
the official ``YtbbPmkDataset``: good / bad / unsure anchors, a "bad-anchor" pair, similar vs
dissimilar neighbours, a neighbour beyond +-10 frames, the CSV's car/none swap, a label added
by review, a full-path anchor key and a repeated row. The expected anchors, labels, neighbours
and pm0/pm10 are written out by hand from those rules and compared with the package's
loader and scoring path (``wiseft_lib.core.evaluate.score`` -> ``wiseft_lib.core.metrics.pm_k``).
"""
from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from wiseft_lib.core.evaluate import score
from wiseft_lib.data import get_dataset
from wiseft_lib.data.common import DatasetNotFoundError
from wiseft_lib.data.video import ytbb_classes
from wiseft_lib.data.ytbb_annotations import ReviewedAnnotationError, frame_key, parse_frame_key

from paper_fixture import img

NAMES, GROUPS = ytbb_classes()
C = {name: i for i, name in enumerate(NAMES)}
ANCHOR_LABELS = ["good", "unsure", "bad", *reversed(NAMES)]  # class names by name, not by position
PAIR_LABELS = ["similar", "dissimilar", "correct", "incorrect", "problematic", "dont know", "deformation",
               "background-change", "occlusion-increased", "blur-increase", "bad-anchor"]

A1, A2, A3 = "vidA_1000/frame-15.jpg", "vid_B_2000/frame-30.jpg", "vidC_3000/frame-45.jpg"
A4, A5, A6 = "vidD_4000/frame-60.jpg", "vidE_5000/frame-75.jpg", "vidF_6000/frame-90.jpg"
A7, A8, A9 = "vidG_7000/frame-105.jpg", "vidH_8000/frame-120.jpg", "vidI_9000/frame-5.jpg"
FULL_A8 = "/data/ytbb/robustness_test_anchors/" + A8  # the official file has keys like this


def _f(anchor: str, index: int) -> str:
    return f"{anchor.split('/')[0]}/frame-{index}.jpg"


ANCHOR_ROWS = [  # (key, label names), in file order
    (A1, ["good"]),
    (A2, ["good"]),
    (A3, ["good", "bird"]),  # review adds bird to the CSV's person
    (A4, ["good"]), (A4, ["good", "unsure"]),  # repeated key: the latest row counts -> dropped
    (A5, ["bad", "good"]),  # bad -> dropped
    (A6, ["good"]),  # dropped by a bad-anchor pair below
    (A7, ["good", "cat"]),
    (FULL_A8, ["good", "horse"]),  # full path: compared as its last two parts
    (A9, []),  # never marked good -> dropped (and it has no CSV row)
]
PAIR_ROWS = [
    (A1, 14, ["similar"]), (A1, 16, ["similar", "correct"]), (A1, 20, ["similar"]),  # valid (20: offset 5)
    (A1, 17, ["similar", "dissimilar"]), (A1, 12, ["similar", "blur-increase"]),  # problematic -> invalid
    (A1, 13, ["correct"]),  # not marked similar -> invalid
    (A1, 30, ["similar"]),  # valid but 15 frames away -> not a pm10 neighbour
    (A2, 29, ["similar"]), (A3, 44, ["similar"]),
    (A6, 91, ["similar", "bad-anchor"]), (A6, 89, ["similar"]),  # anchor A6 dropped entirely
    (A8, 121, ["similar"]),
]
FULL_PATH_PAIR = (f"/data/x/{A8},/data/x/{_f(A8, 119)}", ["similar"])  # matched verbatim: never a neighbour
CSV_ROWS = [("vidA", 1000, 19), ("vid_B", 2000, 22),  # 22 = car in the CSV -> 23 after the swap
            ("vidC", 3000, 0), ("vidD", 4000, 19), ("vidE", 5000, 19), ("vidF", 6000, 19),
            ("vidG", 7000, 23),  # 23 = none in the CSV -> 22
            ("vidH", 8000, 10)]

# What the official rules select, written out by hand.
EXPECTED_LABELS = {A1: {C["dog"]}, A2: {C["car"]}, A3: {C["person"], C["bird"]}, A7: {C["cat"], C["none"]},
                   A8: {C["horse"]}}
EXPECTED_NEIGHBOURS = {A1: {-1: _f(A1, 14), 1: _f(A1, 16), 5: _f(A1, 20)}, A2: {-1: _f(A2, 29)},
                       A3: {-1: _f(A3, 44)}, A7: {}, A8: {1: _f(A8, 121)}}
# The classifier's prediction per frame (None: every mapped ImageNet logit negative).
PREDICT = {A1: "dog", _f(A1, 14): "dog", _f(A1, 16): "dog", _f(A1, 20): "dog",
           _f(A1, 17): "cat", _f(A1, 12): "cat", _f(A1, 13): "cat", _f(A1, 30): "cat",
           A2: "car", _f(A2, 29): "dog",  # anchor right only with the swap; its neighbour wrong
           A3: "bird", _f(A3, 44): "person",  # bird counts only through the review's added label
           A4: "cat", A5: "cat", A6: "cat", _f(A6, 91): "cat", _f(A6, 89): "cat", A9: "cat",
           A7: None,  # all negative -> cow (0.0) under the official projection: wrong
           A8: "horse", _f(A8, 121): "horse", _f(A8, 119): "cat"}


def _annotations(rows, names) -> dict:
    return {"labels": names, "annotations": [{"key": k, "notes": "", "labels": [names.index(n) for n in ls]}
                                             for k, ls in rows]}


def write_ytbb_reviewed(root: Path) -> Path:
    """A YTBB-Robust folder with frames and the three reviewed files (no release metadata/)."""
    folder = root / "ytbb-robust"
    for key in PREDICT:
        img(folder / "ytbb_videos" / key)
    rev = folder / "wiseft-reviewed"
    rev.mkdir(parents=True)
    (rev / "anchor_labels.json").write_text(json.dumps(_annotations(ANCHOR_ROWS, ANCHOR_LABELS)))
    pairs = [(f"{a},{_f(a, i)}", ls) for a, i, ls in PAIR_ROWS] + [FULL_PATH_PAIR]
    (rev / "pmk_labels.json").write_text(json.dumps(_annotations(pairs, PAIR_LABELS)))
    with open(rev / "ytbb_robustness_test_anchors_full.csv", "w", newline="") as f:
        csv.writer(f).writerows([("ytid", "time_ms", "label"), *CSV_ROWS])
    return root


def _logits(bundle) -> torch.Tensor:
    """1000-way logits: 3.0 on the first ImageNet class of each frame's predicted class, -1.0 elsewhere."""
    logits = torch.full((len(bundle), 1000), -1.0)
    for i, (path, _) in enumerate(bundle.dataset.samples):
        name = PREDICT[frame_key(path)]
        if name is not None:
            logits[i, GROUPS[C[name]][0]] = 3.0
    return logits


def _official_pm(labels: dict, neighbours: dict) -> tuple[float, float]:
    """pm0, pm10 in percent, by the official create_pmk_score, on the hand-written selection."""
    def ok(frame, anchor):
        return PREDICT[frame] is not None and C[PREDICT[frame]] in labels[anchor]
    right = [a for a in labels if ok(a, a)]
    stable = [a for a in right if all(ok(n, a) for n in neighbours[a].values())]
    return 100 * len(right) / len(labels), 100 * len(stable) / len(labels)


@pytest.fixture
def ytbb_root(tmp_path) -> Path:
    return write_ytbb_reviewed(tmp_path)


def test_reviewed_selection_matches_the_official_rules(ytbb_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reviewed path does not warn
        b = get_dataset("ytbb-robust", root=ytbb_root)
    keys = [frame_key(p) for p, _ in b.dataset.samples]
    anchors = sorted(EXPECTED_LABELS)
    assert anchors == [A1, A3, A7, A8, A2]
    assert keys == [k for a in anchors for k in [a, *(EXPECTED_NEIGHBOURS[a][o] for o in
                                                       sorted(EXPECTED_NEIGHBOURS[a]))]]
    assert b.metadata["pm_anchor"].tolist() == [0, 0, 0, 0, 4, 4, 6, 7, 7, 9, 9]
    assert b.metadata["pm_offset"].tolist() == [0, 1, 1, 5, 0, 1, 0, 0, 1, 0, 1]
    anchor_of = [keys[i] for i in b.metadata["pm_anchor"]]
    got = [set(np.flatnonzero(row).tolist()) for row in b.metadata["correct_labels"]]
    assert got == [EXPECTED_LABELS[a] for a in anchor_of]  # every frame takes its anchor's labels
    assert b.dataset.targets.tolist() == [min(EXPECTED_LABELS[a]) for a in anchor_of]
    assert C["car"] == 23 and C["none"] == 22 and b.skipped == 0
    assert b.project_logits.never == [22] and b.metrics == ("pm0", "pm10")


def test_reviewed_pm0_pm10_equal_the_official_scores(ytbb_root):
    b = get_dataset("ytbb-robust", root=ytbb_root)
    pm0, pm10 = _official_pm(EXPECTED_LABELS, EXPECTED_NEIGHBOURS)
    # by hand: anchors A1 A2 A3 A8 right, A7 wrong (cow) -> pm0 4/5; A2's neighbour wrong -> pm10 3/5
    assert (pm0, pm10) == (80.0, 60.0)
    logits = _logits(b)
    assert score(logits, b.dataset.targets, b) == {"pm0": pytest.approx(pm0), "pm10": pytest.approx(pm10)}
    a7 = b.metadata["pm_anchor"].tolist().index(6)
    assert b.project_logits(logits)[a7].argmax().item() == C["cow"]  # all negative: an unmapped class wins


def test_anchor_without_valid_neighbours_scores_its_own_correctness(ytbb_root):
    b = get_dataset("ytbb-robust", root=ytbb_root)
    logits = _logits(b)
    a7 = b.metadata["pm_anchor"].tolist().index(6)
    logits[a7, GROUPS[C["cat"]][0]] = 3.0  # A7 (no neighbours) now right: counts in pm0 and pm10
    assert score(logits, b.dataset.targets, b) == {"pm0": 100.0, "pm10": pytest.approx(80.0)}


def test_explicit_reviewed_folder_and_missing_frames(ytbb_root, tmp_path):
    elsewhere = tmp_path / "my-annotations"
    shutil.move(ytbb_root / "ytbb-robust" / "wiseft-reviewed", elsewhere)
    b = get_dataset("ytbb-robust", root=ytbb_root, reviewed=elsewhere)
    assert len(b) == 11
    (ytbb_root / "ytbb-robust" / "ytbb_videos" / _f(A2, 29)).unlink()
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        b = get_dataset("ytbb-robust", root=ytbb_root, reviewed=elsewhere)
    assert len(b) == 10 and b.skipped == 1
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        get_dataset("ytbb-robust", root=ytbb_root, reviewed=tmp_path / "nowhere")


def test_fallback_to_release_metadata_warns(ytbb_root):
    folder = ytbb_root / "ytbb-robust"
    shutil.rmtree(folder / "wiseft-reviewed")
    with pytest.raises(DatasetNotFoundError, match="(?s)metadata/labels.json.*wiseft-reviewed"):
        get_dataset("ytbb-robust", root=ytbb_root)  # neither: the layout names both
    (folder / "metadata").mkdir()
    (folder / "metadata" / "labels.json").write_text(json.dumps({A1: [19], _f(A1, 14): [19]}))
    (folder / "metadata" / "pmsets.json").write_text(json.dumps({A1: [_f(A1, 14)]}))
    with pytest.warns(UserWarning, match="wiseft-reviewed.*will not follow the paper's protocol"):
        b = get_dataset("ytbb-robust", root=ytbb_root)
    assert b.metadata["pm_anchor"].tolist() == [0, 0] and b.project_logits.never == [22]


def _rewrite(folder: Path, name: str, text: str) -> None:
    (folder / "ytbb-robust" / "wiseft-reviewed" / name).write_text(text)


@pytest.mark.parametrize("name, text, message", [
    ("anchor_labels.json", "{not json", "cannot be read as JSON"),
    ("anchor_labels.json", json.dumps({"labels": ["good"], "annotations": []}), "lacks .*bad"),
    ("anchor_labels.json", json.dumps({"labels": ANCHOR_LABELS, "annotations": [{"key": A1, "labels": [99]}]}),
     "indices into"),
    ("pmk_labels.json", json.dumps(_annotations([("no-comma-here", ["similar"])], PAIR_LABELS)),
     "not \"<anchor key>,<neighbour key>\""),
    ("ytbb_robustness_test_anchors_full.csv", "ytid,time_ms,label\nvidA,1000,19\n", "has no row for anchor"),
    ("ytbb_robustness_test_anchors_full.csv", "id,label\n", "header row ytid,time_ms,label"),
    ("ytbb_robustness_test_anchors_full.csv", "ytid,time_ms,label\nvidA,1000,car\n", "not an integer"),
])
def test_malformed_annotation_files_say_what_is_wrong(ytbb_root, name, text, message):
    _rewrite(ytbb_root, name, text)
    with pytest.raises(ReviewedAnnotationError, match=message) as err:
        get_dataset("ytbb-robust", root=ytbb_root)
    assert name in str(err.value) and "github.com/mlfoundations/wise-ft" in str(err.value)


def test_incomplete_reviewed_folder(ytbb_root):
    (ytbb_root / "ytbb-robust" / "wiseft-reviewed" / "pmk_labels.json").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete: missing pmk_labels.json"):
        get_dataset("ytbb-robust", root=ytbb_root)


def test_frame_keys():
    assert frame_key(FULL_A8) == A8 and frame_key(A8) == A8
    assert parse_frame_key("A_weMKVolQM_82466/frame-2062.jpg") == ("A_weMKVolQM", 2062, 82466)
    with pytest.raises(ValueError, match="<video>_<ms>/frame-<index>.jpg"):
        parse_frame_key("novideo/frame-3.jpg")
