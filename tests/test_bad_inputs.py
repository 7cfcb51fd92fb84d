"""A catalogue of bad inputs: what a user did -> the error (or warning) they get.

The table ``CASES`` below is documentation as much as a test: each row is one mistake a user can make
through the package's front doors (library calls, the ``wiseft`` command, params files, checkpoints,
datasets, the results store, the run cache), the one exception type it raises (or the warning it gives),
and a regex its message matches: the message names the problem *and* says what to do. For every row the
test also checks that

* no traceback-type error leaks out instead (AttributeError, IndexError, struct.error, a bare
  json.JSONDecodeError, safetensors' or pickle's errors, ...): ``error`` is the type the user gets;
* nothing is left half-written: the case's temporary folder holds exactly the same files, byte for
  byte, after the failed call as before it (except folders a case names in ``may_write``, e.g. a cache
  that is legitimately recomputed).

``wiseft ...`` rows run ``wiseft_lib.cli.main``; a clean failure there is exit status 2 and one
``wiseft COMMAND: error: ...`` line on stderr (``WiseftExit`` below carries both). Rows with ``needs`` are
fixes another file's owner still has to make: they are strict xfails (the row is the message wanted).

Read the table as a list with ``python tests/test_bad_inputs.py`` (markdown: input -> message); the tests
print nothing. Every row takes milliseconds (tiny models, tiny files).
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import pickle
import re
import sqlite3
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from wiseft_lib.params import ParamsError


class WiseftExit(Exception):
    """``wiseft ...`` exited with a non-zero status; the message is ``exit N: <stderr>``."""


class Logged:
    """Marker for ``error``: the call succeeds and logs a warning matching ``message``."""


@dataclass(frozen=True)
class Case:
    name: str  # the test id
    did: str  # what the user did
    error: type  # the exception raised; a Warning subclass: warned; Logged: logged at WARNING
    message: str  # regex (re.search) the message matches: what is wrong and what to do
    act: Callable[[Path], Callable[[], Any]]  # sets the mistake up in a temporary folder; returns the failing call
    needs: str = ""  # a fix still to make in another owner's file: the row is a strict xfail until then
    may_write: tuple[str, ...] = ()  # sub-folders the call may write into (caches)


# fmt: off
CASES: list[Case] = [
    # ------------------------------------------------------------------ checkpoints (ImageClassifier.load)
    Case("ckpt-corrupt", "ImageClassifier.load of a .safetensors file holding garbage bytes",
         ValueError, r"is not a readable safetensors file .*corrupt or truncated.*save the model again",
         lambda t: load_checkpoint(t, weights=lambda b: b"\x00garbage" * 16)),
    Case("ckpt-truncated", "ImageClassifier.load of a .safetensors file cut in half (an interrupted copy)",
         ValueError, r"is not a readable safetensors file .*corrupt or truncated.*copy both files again",
         lambda t: load_checkpoint(t, weights=lambda b: b[: len(b) // 2])),
    Case("ckpt-sidecar-not-json", "ImageClassifier.load where the .json sidecar is not JSON",
         ValueError, r"sidecar .*model\.json is not valid JSON .*save the model again",
         lambda t: load_checkpoint(t, sidecar=lambda m: '{"format": "wiseft.ImageClassifier/1", ')),
    Case("ckpt-sidecar-not-mapping", "ImageClassifier.load where the sidecar is a JSON list",
         ValueError, r"is not a wiseft ImageClassifier sidecar \(format='list'\).*save the model again",
         lambda t: load_checkpoint(t, sidecar=lambda m: "[1, 2]")),
    Case("ckpt-sidecar-no-model-name", "ImageClassifier.load where the sidecar lacks model_name",
         ValueError, r"lacks a 'model_name' \(got None\).*save the model again",
         lambda t: load_checkpoint(t, sidecar=lambda m: json.dumps({k: v for k, v in m.items() if k != "model_name"}))),
    Case("ckpt-sidecar-other-model", "ImageClassifier.load where the sidecar names another model than the weights",
         ValueError, r"does not match its sidecar model\.json \(model 'wiseft-mini'.*it lacks .*different models",
         lambda t: load_checkpoint(t, sidecar=lambda m: json.dumps({**m, "model_name": "wiseft-mini",
                                                                     "head_shape": [5, 128]}))),
    Case("ckpt-head-class-count", "ImageClassifier.load where the sidecar says 10 classes, the weights hold 5",
         ValueError, r"does not match its sidecar.*'classification_head.weight' is \(5, 32\), the sidecar's model "
                     r"needs \(10, 32\).*different models",
         lambda t: load_checkpoint(t, sidecar=lambda m: json.dumps({**m, "head_shape": [10, 32]}))),
    Case("ckpt-missing-key", "ImageClassifier.load of weights that lack a tensor (classification_head.bias)",
         ValueError, r"does not match its sidecar.*it lacks 'classification_head.bias'.*save the model again",
         lambda t: load_checkpoint(t, tensors=lambda sd: {k: v for k, v in sd.items()
                                                          if k != "classification_head.bias"})),
    Case("ckpt-nan-weights", "ImageClassifier.load of weights holding a NaN",
         ValueError, r"holds non-finite weights \(NaN or Inf\) in 'classification_head.weight'.*lower learning rate"
                     r".*earlier checkpoint",
         lambda t: load_checkpoint(t, tensors=lambda sd: poison(sd, float("nan")))),
    Case("ckpt-inf-weights", "ImageClassifier.load of weights holding an Inf",
         ValueError, r"holds non-finite weights \(NaN or Inf\).*use an earlier checkpoint",
         lambda t: load_checkpoint(t, tensors=lambda sd: poison(sd, float("inf")))),
    Case("ckpt-no-sidecar", "ImageClassifier.load of a .safetensors file whose .json sidecar is missing",
         FileNotFoundError, r"needs both model\.safetensors and model\.json; found \['model\.safetensors'\]; pass the "
                            r"\.safetensors file that ImageClassifier\.save",
         lambda t: load_checkpoint(t, sidecar=lambda m: None)),
    Case("cli-evaluate-missing-checkpoint", "wiseft evaluate --checkpoint runs/nope (a typo)",
         WiseftExit, r"exit 2: wiseft evaluate: error: checkpoint .*nope\.safetensors needs both .*found neither; pass "
                     r"the \.safetensors file",
         lambda t: wiseft("evaluate", "--checkpoint", t / "runs" / "nope", "--datasets", "mini-photo")),
    # ------------------------------------------------------------------ models
    Case("model-unknown-name", "create_model('ViT-B-99')",
         ValueError, r"unknown model name 'ViT-B-99'\. Close matches: .*ViT-B-32.*list_models\(\)",
         lambda t: call(create_model_, "ViT-B-99")),
    Case("model-unknown-tag", "create_model('wiseft-mini', 'fmnst') (a tag typo)",
         ValueError, r"unknown pretrained tag 'fmnst' for 'wiseft-mini'; known tags: fmnist,",
         lambda t: call(create_model_, "wiseft-mini", "fmnst")),
    # ------------------------------------------------------------------ interpolation
    Case("alpha-out-of-range", "interpolate_weights(theta_0, theta_1, alpha=1.5)",
         ValueError, r"alpha must lie in \[0, 1\] \(0 = zero-shot weights theta_0, 1 = fine-tuned weights theta_1\), "
                     r"got 1\.5",
         lambda t: interpolate(alpha=1.5)),
    Case("alpha-as-text", "interpolate_weights(theta_0, theta_1, alpha='half')",
         ValueError, r"alpha must be a number in \[0, 1\], got 'half'",
         lambda t: interpolate(alpha="half")),
    Case("cli-alpha-out-of-range", "wiseft interpolate ... --alpha 1.5 --output out/wiseft",
         WiseftExit, r"exit 2: wiseft interpolate: error: alpha must lie in \[0, 1\]",
         lambda t: cli_interpolate(t, "--alpha", "1.5")),
    Case("endpoints-other-architecture", "interpolate_weights of a CLIP classifier and a plain nn.Linear",
         ValueError, r"state dicts differ at key 'image_encoder\.class_embedding': present in theta_0 .*missing from "
                     r"theta_1\. Both endpoints must come from the same architecture",
         lambda t: interpolate(other=lambda: linear_state())),
    Case("cli-endpoints-class-count", "wiseft interpolate of a 5-class zero-shot and a 10-class fine-tuned model",
         WiseftExit, r"exit 2: wiseft interpolate: error: state dicts differ at key 'classification_head\.weight': "
                     r"theta_0 has shape \(5, 32\), theta_1 has shape \(10, 32\)\. Both endpoints must come from the "
                     r"same architecture and class count",
         lambda t: cli_interpolate(t, finetuned=dict(n_classes=10))),
    Case("cli-endpoints-other-model", "wiseft interpolate of a wiseft-test-tiny and a wiseft-mini checkpoint",
         WiseftExit, r"exit 2: wiseft interpolate: error: .*wiseft-test-tiny.*wiseft-mini.*"
                     r"(fine-tuned from|same model)",
         lambda t: cli_interpolate(t, finetuned="wiseft-mini")),
    Case("fisher-wrong-keys", "fisher_interpolate with Fishers of another model (key 'foo')",
         ValueError, r"Fisher key 'foo' is not a key of the state dicts being merged .*computed for another model\. "
                     r"Compute both Fishers with compute_fisher",
         lambda t: fisher_other_keys()),
    Case("fisher-file-corrupt", "load_fisher of a file that is not safetensors",
         ValueError, r"Fisher file .*f0\.safetensors is not a readable safetensors file .*save it again",
         lambda t: call(load_fisher_, write(t / "f0.safetensors", b"garbage bytes"))),
    Case("fisher-file-negative", "load_fisher of a safetensors file with negative values",
         ValueError, r"Fisher file .*'w' \(shape \(2,\) float32\) is not a diagonal Fisher \(floating, finite, >= 0\); "
                     r"compute it again",
         lambda t: call(load_fisher_, save_tensors(t / "f0.safetensors", w=[-1.0, 2.0]))),
    Case("cli-fisher-corrupt", "wiseft interpolate --fisher F0 F1 with files that are not safetensors",
         WiseftExit, r"exit 2: wiseft interpolate: error: Fisher file .* is not a readable safetensors file",
         lambda t: cli_interpolate(t, "--fisher", write(t / "f0.safetensors", b"garbage"),
                                   write(t / "f1.safetensors", b"garbage"))),
    # ------------------------------------------------------------------ outputs
    Case("cli-output-under-a-file", "wiseft interpolate ... --output notes.txt/wiseft (a path under a regular file)",
         WiseftExit, r"exit 2: wiseft interpolate: error: cannot write .*notes\.txt/wiseft\.safetensors: .*notes\.txt "
                     r"is a file, not a folder\. Choose an output path in a folder you can write to",
         lambda t: cli_interpolate(t, output=write(t / "notes.txt", b"x") / "wiseft")),
    Case("features-cache-under-a-file", "extract_features(..., cache_dir='notes.txt/cache')",
         ValueError, r"cannot write .*notes\.txt/cache/features-.*notes\.txt is a file, not a folder\. Choose",
         lambda t: features(cache_dir=write(t / "notes.txt", b"x") / "cache")),
    Case("params-output-dir-under-a-file", "a study with output_dir: notes.txt/out",
         ParamsError, r"parameter 'output_dir': cannot create .*notes\.txt/out \(Not a directory\); choose a folder "
                       r"you can write to",
         lambda t: (lambda p: p.output_path)(params(output_dir=str(write(t / "notes.txt", b"x") / "out")))),
    Case("results-under-a-file", "ResultsStore('notes.txt/results.sqlite')",
         ValueError, r"notes\.txt is a file, not a folder",
         lambda t: call(results_store_, write(t / "notes.txt", b"x") / "results.sqlite")),
    Case("runs-under-a-file", "RunCache('notes.txt/runs') computing a run",
         ValueError, r"notes\.txt is a file, not a folder",
         lambda t: (lambda r: lambda: r.work_dir("finetune", "k"))(run_cache_(write(t / "notes.txt", b"x") / "runs"))),
    # ------------------------------------------------------------------ params (files, --set, Python)
    Case("params-wrong-type", "n_test: many (text where an integer goes)",
         ParamsError, r"parameter 'n_test' must be an integer or null/None, got 'many' \(str\)",
         lambda t: lambda: params(n_test="many")),
    Case("params-bool-as-word", "smoke: yes-please",
         ParamsError, r"parameter 'smoke' must be true or false, got 'yes-please' \(str\)",
         lambda t: lambda: params(smoke="yes-please")),
    Case("params-unknown-key", "a params file with 'sedes: [0]' (a typo)",
         ParamsError, r"unknown parameter\(s\) in .*p\.yaml: 'sedes' \(did you mean 'seeds'\?\)\. Known: ",
         lambda t: from_yaml(t, "sedes: [0]\n")),
    Case("params-not-a-mapping", "a params file holding a YAML list",
         ParamsError, r"p\.yaml must hold a mapping of parameter names to values",
         lambda t: from_yaml(t, "- seeds\n- 0\n")),
    Case("params-bad-yaml", "a params file with a YAML syntax error ('seeds: [0')",
         ParamsError, r"p\.yaml is not valid YAML: .*expected ',' or ']'.*line 2",
         lambda t: from_yaml(t, "seeds: [0\n")),
    Case("params-python-tag", "a params file with '!!python/object/apply:os.system'",
         ParamsError, r"p\.yaml is not valid YAML: could not determine a constructor for the tag .*python/object/apply",
         lambda t: from_yaml(t, "seeds: !!python/object/apply:os.system ['true']\n")),
    Case("params-file-missing", "wiseft run fig1_id_vs_ood --params params/mini/fig1.yaml (no such file)",
         WiseftExit, r"exit 2: wiseft run: error: params file .*fig1\.yaml does not exist; the presets are under "
                     r"params/mini and params/paper",
         lambda t: wiseft("run", "fig1_id_vs_ood", "--params", t / "params" / "mini" / "fig1.yaml")),
    Case("set-list-as-text", "wiseft run fig1_id_vs_ood --set seeds=0,1",
         WiseftExit, r"exit 2: wiseft run: error: parameter 'seeds' must be a list, got the string '0,1'\..*"
                     r"--set 'seeds=\[0, 1, 2\]'",
         lambda t: wiseft("run", "fig1_id_vs_ood", "--set", "seeds=0,1")),
    Case("set-without-equals", "wiseft run fig1_id_vs_ood --set seeds",
         WiseftExit, r"exit 2: wiseft run: error: --set takes KEY=VALUE \(e\.g\. --set 'seeds=\[0, 1\]'\), got 'seeds'",
         lambda t: wiseft("run", "fig1_id_vs_ood", "--set", "seeds")),
    Case("params-negative-n-train", "n_train: -5",
         ParamsError, r"parameter 'n_train': must be a positive integer or None, got -5",
         lambda t: lambda: params(n_train=-5)),
    Case("params-unknown-recipe-field", "e2e: {epochz: 3} (a fine-tuning recipe typo)",
         ParamsError, r"parameter 'e2e': .*unexpected keyword argument 'epochz'; its keys are FinetuneConfig fields: "
                       r"epochs, ",
         lambda t: lambda: params(e2e={"epochz": 3})),
    Case("params-batch-size-0", "e2e: {batch_size: 0}",
         ParamsError, r"parameter 'e2e': batch_size must be >= 1; got 0",
         lambda t: lambda: params(e2e={"batch_size": 0})),
    Case("params-templates-without-braces", "templates: ['a photo'] (no {} for the class name)",
         ParamsError, r"parameter 'templates'.*'a photo'.*\{\}",
         lambda t: lambda: params(templates=["a photo"])),
    Case("params-e2e-checkpoint-missing", "e2e_checkpoint: runs/ft/finetuned.safetensors (no such file)",
         ParamsError, r"parameter 'e2e_checkpoint': .*finetuned\.safetensors does not exist; give the \.safetensors "
                       r"file written by wiseft finetune",
         lambda t: lambda: params(e2e_checkpoint=str(t / "runs" / "ft" / "finetuned.safetensors"))),
    Case("params-e2e-checkpoint-other-model", "e2e_checkpoint: a wiseft-test-tiny model in a wiseft-mini study",
         ValueError, r"e2e_checkpoint .*tiny\.safetensors does not fit this study: it is a 'wiseft-test-tiny' model, "
                     r"this study uses 'wiseft-mini'.*It must be fine-tuned from model='wiseft-mini'",
         lambda t: curve_with_checkpoint(t), may_write=("runs",)),
    Case("study-unknown", "wiseft run fig1_id_vs_od (a typo)",
         WiseftExit, r"exit 2: wiseft run: error: unknown study 'fig1_id_vs_od'\. Did you mean fig1_id_vs_ood\?",
         lambda t: wiseft("run", "fig1_id_vs_od")),
    # ------------------------------------------------------------------ zero-shot heads
    Case("templates-without-braces", "zeroshot_classifier(..., templates=['a photo of a cat'])",
         ValueError, r"template 'a photo of a cat' has no '\{\}' placeholder for the class name; write it with one, "
                     r"e\.g\. 'a photo of a \{\}\.'",
         lambda t: zeroshot(["cat"], ["a photo of a cat"])),
    Case("empty-class-list", "zeroshot_classifier(..., classnames=[])",
         ValueError, r"a zero-shot head needs at least one class name and one template",
         lambda t: zeroshot([], ["a photo of a {}."])),
    # ------------------------------------------------------------------ datasets
    Case("dataset-unknown", "get_dataset('flowers102') (not a registered dataset)",
         KeyError, r"unknown dataset 'flowers102'\..* Known datasets: cifar10, ",
         lambda t: call(get_dataset_, "flowers102")),
    Case("dataset-typo", "get_dataset('mini-photto')",
         KeyError, r"unknown dataset 'mini-photto'\. Did you mean: mini-photo",
         lambda t: call(get_dataset_, "mini-photto")),
    Case("dataset-unknown-split", "get_dataset('imagenet-r', split='train')",
         ValueError, r"dataset 'imagenet-r' has no split 'train'; available: test",
         lambda t: call(get_dataset_, "imagenet-r", root=str(t), split="train")),
    Case("dataset-wrong-layout", "get_dataset('imagenet-r', root=...) with 1 of the 200 class folders",
         FileNotFoundError, r"(?s)imagenet-r: .* lacks 199 of its 200 class folders.*Expected layout:.*"
                            r"200 WordNet-id folders.*Get it from: https://github\.com/hendrycks/imagenet-r",
         lambda t: imagenet_r(t, n_classes=1)),
    Case("dataset-corrupt-jpeg", "get_dataset('imagenet-r') with one corrupt JPEG among good ones",
         UserWarning, r"imagenet-r: skipped 1 unreadable image file\(s\), e\.g\. .*broken\.jpg",
         lambda t: imagenet_r(t, corrupt=1)),
    Case("fashion-mnist-truncated", "load_fashion_mnist('test', root=...) with a truncated t10k-images-idx3-ubyte",
         ValueError, r"t10k-images-idx3-ubyte is truncated: expected 7840000 values, found 4984; delete it and install "
                     r"the files again \(`wiseft data --ensure`",
         lambda t: fashion_mnist(t, "t10k-images-idx3-ubyte", lambda raw: raw[:5000], gz=False)),
    Case("fashion-mnist-truncated-gz", "load_fashion_mnist('test', root=...) with a cut t10k-labels-idx1-ubyte.gz",
         ValueError, r"t10k-labels-idx1-ubyte\.gz is truncated or not a gzip file .*delete it and install the files "
                     r"again",
         lambda t: fashion_mnist(t, "t10k-labels-idx1-ubyte", lambda raw: gzip.compress(raw)[:1000], gz=True)),
    Case("fashion-mnist-not-idx", "load_fashion_mnist('test', root=...) where a file is not an IDX file",
         ValueError, r"t10k-labels-idx1-ubyte is not an unsigned-byte IDX file \(magic 0x0\); delete it",
         lambda t: fashion_mnist(t, "t10k-labels-idx1-ubyte", lambda raw: b"\x00\x00", gz=False)),
    Case("kshot-k-too-large", "kshot_indices(labels, k=5) where class 1 has only 3 examples",
         UserWarning, r"k=5 examples per class, but 1 class\(es\) have fewer \(class 1: 3\); they keep all their "
                      r"examples, so the subset is not 5-shot for them\. Choose k <= 3",
         lambda t: kshot([0] * 10 + [1] * 3, k=5, expect=8)),
    Case("kshot-k-zero", "kshot_indices(labels, k=0)",
         ValueError, r"k must be a positive number of examples per class, got 0",
         lambda t: kshot([0, 1], k=0)),
    # ------------------------------------------------------------------ evaluation
    Case("metric-unknown", "a dataset bundle with metrics=('top5',) scored with score()",
         KeyError, r"unknown metric 'top5'; known: macro_f1, pm0, pm10, top1, worst_region_acc",
         lambda t: score_with(metrics=("top5",))),
    Case("evaluate-head-class-count", "evaluate a 10-class model on a 5-class dataset",
         ValueError, r"10\b.*\b5 class",
         lambda t: evaluate_wrong_head()),
    # ------------------------------------------------------------------ results store
    Case("results-not-sqlite", "ResultsStore('results.sqlite') where results.sqlite is a text file",
         ValueError, r"results\.sqlite is not a wiseft results database: it is not a SQLite file .*Refusing to modify "
                     r"it\. Pass a path to a new file",
         lambda t: call(results_store_, write(t / "results.sqlite", b"run,value\nx,1\n"))),
    Case("results-other-database", "ResultsStore of another application's SQLite database",
         ValueError, r"is not a wiseft results database: it is a SQLite database of another application .*tables/"
                     r"indexes: notes.*Refusing to modify it",
         lambda t: call(results_store_, other_sqlite(t / "results.sqlite"))),
    Case("results-unknown-filter", "ResultsStore.to_frame(datset='mini-photo') (a column typo)",
         ValueError, r"cannot filter on 'datset'; filter columns are \['run', 'model', 'method', 'alpha', 'dataset'",
         lambda t: (lambda s: lambda: s.to_frame(datset="mini-photo"))(results_store_(t / "r.sqlite"))),
    # ------------------------------------------------------------------ run cache and feature cache
    Case("features-cache-corrupt", "extract_features with a garbage file where its cache file goes",
         Logged, r"ignoring unreadable cache file .*features-.*\.safetensors \(header length .*\); recomputing",
         lambda t: features(cache_dir=t / "cache", garbage=True), may_write=("cache",)),
    Case("runs-scores-corrupt", "a run cache whose scores/<eval>.json is cut (a full disk, a copy)",
         UserWarning, r"(?i)ignor.*unreadable .*ev\.json.*recomput",
         lambda t: (lambda r: lambda: r.scores("finetune", "k", "ev"))(damaged_run(t, "scores/ev.json"))),
    Case("runs-entry-corrupt", "a run cache entry whose entry.json is cut",
         ValueError, r"entry .*entry\.json.* (damaged|unreadable).*delete",
         lambda t: (lambda r: lambda: r.record("finetune", "k"))(damaged_run(t, "entry.json"))),
    # ------------------------------------------------------------------ fine-tuning resume checkpoints
    Case("resume-state-corrupt", "finetune(..., resume=True) where the last train_state.pt holds garbage",
         ValueError, r"cannot resume from .*step_00000001: train_state\.pt cannot be read \(UnpicklingError: "
                     r"Unsupported operand.*\); it is damaged or was not written by wiseft: delete the folder .* to "
                     r"resume from the checkpoint before it",
         lambda t: resume(t, state=b"garbage")),
    Case("resume-state-foreign", "finetune(..., resume=True) where train_state.pt is another program's torch.save",
         ValueError, r"train_state\.pt is not a wiseft fine-tuning state file: delete the folder .* or start afresh",
         lambda t: resume(t, state={"format": "other"})),
    Case("resume-weights-other-model", "finetune(..., resume=True) where the checkpoint's model.safetensors has "
                                       "10 classes, the run 5",
         ValueError, r"cannot resume from .*: model\.safetensors does not load into this model \(RuntimeError: "
                     r"size mismatch for classification_head\.weight: .*\): delete the folder",
         lambda t: resume(t, state="valid", ckpt_classes=10)),
]
# fmt: on


# ---------------------------------------------------------------------------------------------- the test
LEAKS = (AttributeError, IndexError, struct.error, json.JSONDecodeError, UnicodeDecodeError, pickle.UnpicklingError,
         EOFError, zlib.error, sqlite3.Error, AssertionError)


def _snapshot(root: Path, skip: tuple[str, ...]) -> dict[str, str]:
    """Every file under ``root`` (but ``skip`` folders) -> content hash; folders -> 'dir'."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] in skip:
            continue
        out[str(rel)] = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason=f"needs {c.needs}")] if c.needs
                          else []) for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, caplog, tiny_registered):
    action = case.act(tmp_path)
    before = _snapshot(tmp_path, case.may_write)
    if isinstance(case.error, type) and issubclass(case.error, Warning):
        with pytest.warns(case.error, match="(?s)" + case.message):
            action()
    elif case.error is Logged:
        with caplog.at_level(logging.WARNING):
            action()
        assert any(re.search(case.message, r.getMessage(), re.S) for r in caplog.records), caplog.text
    else:
        with pytest.raises(Exception) as info:
            action()
        err = info.value
        assert not isinstance(err, LEAKS), f"a bare {type(err).__name__} leaked: {err}"
        assert isinstance(err, case.error), f"{type(err).__name__} instead of {case.error.__name__}: {err}"
        text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        assert re.search(case.message, str(text), re.S), f"message does not match:\n{text}"
    assert _snapshot(tmp_path, case.may_write) == before, "the failed call left files behind or changed some"


def test_the_catalogue_is_a_catalogue():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(CASES) >= 30
    assert all(c.did and c.message for c in CASES)


# ---------------------------------------------------------------------------------------------- helpers
# Imports the table's lambdas use (bound late: the table stays at the top of the file).
from helpers import TINY_NAME, AugmentedSet, tiny_classifier, tiny_clip, toy_tokenizer  # noqa: E402


def call(fn: Callable, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: fn(*args, **kwargs)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def create_model_(*args: Any) -> Any:
    from wiseft_lib.core.models import create_model

    return create_model(*args)


def get_dataset_(*args: Any, **kwargs: Any) -> Any:
    from wiseft_lib.data import get_dataset

    return get_dataset(*args, **kwargs)


def results_store_(path: Path) -> Any:
    from wiseft_lib.experiment.results import ResultsStore

    return ResultsStore(path)


def run_cache_(path: Path) -> Any:
    from wiseft_lib.experiment.runs import RunCache

    return RunCache(path)


def load_fisher_(path: Path) -> Any:
    from wiseft_lib.core.fisher import load_fisher

    return load_fisher(path)


def save_tensors(path: Path, **values: list) -> Path:
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.tensor(v) for k, v in values.items()}, str(path))
    return path


def wiseft(*argv: Any) -> Callable[[], None]:
    """``wiseft ARGV``; a non-zero exit raises :class:`WiseftExit` with the status and stderr."""
    from wiseft_lib.cli import main

    def run() -> None:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main([str(a) for a in argv])
        if status != 0:
            raise WiseftExit(f"exit {status}: {err.getvalue().strip()}")

    return run


# ------------------------------------------------------------ checkpoints
def load_checkpoint(tmp: Path, *, weights: Optional[Callable[[bytes], bytes]] = None,
                    sidecar: Optional[Callable[[dict], Optional[str]]] = None,
                    tensors: Optional[Callable[[dict], dict]] = None) -> Callable[[], Any]:
    """A tiny checkpoint ``tmp/ckpt/model.safetensors`` with its bytes, sidecar or tensors replaced."""
    from safetensors.torch import load_file, save_file

    from wiseft_lib.core.models import ImageClassifier

    path = tiny_classifier().save(tmp / "ckpt" / "model.safetensors")
    if tensors is not None:
        save_file(tensors(load_file(str(path))), str(path))
    if weights is not None:
        path.write_bytes(weights(path.read_bytes()))
    if sidecar is not None:
        side = path.with_suffix(".json")
        text = sidecar(json.loads(side.read_text()))
        side.unlink() if text is None else side.write_text(text)
    return lambda: ImageClassifier.load(path)


def poison(sd: dict, value: float) -> dict:
    w = sd["classification_head.weight"].clone()
    w[0, 0] = value
    return {**sd, "classification_head.weight": w}


def linear_state() -> dict:
    import torch

    return torch.nn.Linear(2, 3).state_dict()


def interpolate(alpha: Any = 0.5, other: Optional[Callable[[], dict]] = None) -> Callable[[], Any]:
    from wiseft_lib.core.interpolate import interpolate_weights

    theta_0 = tiny_classifier().state_dict()
    theta_1 = other() if other is not None else tiny_classifier(1).state_dict()
    return lambda: interpolate_weights(theta_0, theta_1, alpha)


def fisher_other_keys() -> Callable[[], Any]:
    import torch

    from wiseft_lib.core.fisher import fisher_interpolate

    theta = tiny_classifier().state_dict()
    f = {"foo": torch.ones(1)}
    return lambda: fisher_interpolate(theta, theta, 0.5, f, f)


def cli_interpolate(tmp: Path, *extra: Any, finetuned: Any = None, output: Optional[Path] = None) -> Callable[[], None]:
    """``wiseft interpolate`` of two tiny checkpoints (the fine-tuned one: ``tiny_classifier(**finetuned)``, or
    a wiseft-mini classifier for ``finetuned="wiseft-mini"``) into ``out/wiseft`` (or ``output``)."""
    zs = tiny_classifier().save(tmp / "zs" / "zeroshot.safetensors")
    if finetuned == "wiseft-mini":
        ft = mini_classifier().save(tmp / "ft" / "finetuned.safetensors")
    else:
        ft = tiny_classifier(1, **(finetuned or {})).save(tmp / "ft" / "finetuned.safetensors")
    out = output if output is not None else tmp / "out" / "wiseft"
    if output is None:
        out.parent.mkdir(parents=True)  # an empty output folder: it must stay empty
    return wiseft("interpolate", "--zeroshot", zs, "--finetuned", ft, *extra, "--output", out)


def mini_classifier() -> Any:
    import torch

    from wiseft_lib.core.models import ClassificationHead, ImageClassifier, create_architecture

    clip, _, _ = create_architecture("wiseft-mini")
    return ImageClassifier(clip.visual, ClassificationHead(torch.randn(10, 128)), {"model_name": "wiseft-mini"})


# ------------------------------------------------------------ params and studies
def params(**values: Any) -> Any:
    from wiseft_lib.studies.fig1_id_vs_ood import Fig1Params

    return Fig1Params.from_mapping(values)


def from_yaml(tmp: Path, text: str) -> Callable[[], Any]:
    from wiseft_lib.studies.fig1_id_vs_ood import Fig1Params

    path = write(tmp / "p.yaml", text.encode())
    return lambda: Fig1Params.from_yaml(path)


def curve_with_checkpoint(tmp: Path) -> Callable[[], Any]:
    """A wiseft-mini curve (mini-photo, Fashion-MNIST) given a wiseft-test-tiny model as its end-to-end end."""
    from wiseft_lib.data.fashion_mnist import FashionMNISTNotFound, find_fashion_mnist
    from wiseft_lib.experiment.config import CurveConfig
    from wiseft_lib.experiment.curve import wiseft_curve
    from wiseft_lib.experiment.runs import RunCache

    try:
        find_fashion_mnist()
    except FashionMNISTNotFound as err:
        pytest.skip(str(err))
    ckpt = tiny_classifier(n_classes=10).save(tmp / "ckpt" / "tiny.safetensors")
    cfg = CurveConfig(e2e_checkpoint=str(ckpt), n_test=20, ood_datasets=[], modes=["end-to-end"], alphas=[0.5])
    return lambda: wiseft_curve(cfg, 0, runs=RunCache(tmp / "runs"), progress=False)


# ------------------------------------------------------------ zero-shot heads, data, evaluation
def zeroshot(classnames: list, templates: list) -> Callable[[], Any]:
    import wiseft_lib.core.zeroshot as zs

    clip = tiny_clip()

    def run() -> Any:
        real = zs.get_tokenizer
        zs.get_tokenizer = lambda name: toy_tokenizer  # the tiny CLIP's vocabulary
        try:
            return zs.zeroshot_classifier(clip, TINY_NAME, classnames, templates)
        finally:
            zs.get_tokenizer = real

    return run


def imagenet_r(tmp: Path, n_classes: int = 200, corrupt: int = 0) -> Callable[[], Any]:
    """An ImageNet-R folder with ``n_classes`` of its class folders (two good JPEGs in the first), ``corrupt``
    broken JPEGs; the call loads it and checks the skipped count."""
    from PIL import Image

    from wiseft_lib.data import get_dataset
    from wiseft_lib.data.imagenet import subset_wnids

    wnids = subset_wnids("imagenet-r")[:n_classes]
    for w in wnids:
        (tmp / "imagenet-r" / w).mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (8, 8), (10 * i, 20, 30)).save(tmp / "imagenet-r" / wnids[0] / f"good{i}.jpg", "JPEG")
    for i in range(corrupt):
        good = (tmp / "imagenet-r" / wnids[0] / "good0.jpg").read_bytes()
        write(tmp / "imagenet-r" / wnids[-1] / ("broken.jpg" if i == 0 else f"broken{i}.jpg"), good[:40])

    def run() -> None:
        bundle = get_dataset("imagenet-r", root=str(tmp))
        assert bundle.skipped == corrupt and len(bundle) == 2, (bundle.skipped, len(bundle))

    return run


def fashion_mnist(tmp: Path, name: str, damage: Callable[[bytes], bytes], gz: bool) -> Callable[[], Any]:
    """A Fashion-MNIST folder (the installed files, copied) whose file ``name`` is damaged."""
    from wiseft_lib.data.fashion_mnist import FILES, FashionMNISTNotFound, find_fashion_mnist, load_fashion_mnist

    try:
        src = find_fashion_mnist()
    except FashionMNISTNotFound as err:
        pytest.skip(str(err))
    folder = tmp / "fashion-mnist"
    for f in FILES["train"] + FILES["test"]:
        plain, packed = src / f, src / f"{f}.gz"
        if f == name:
            raw = plain.read_bytes() if plain.exists() else gzip.decompress(packed.read_bytes())
            write(folder / (f"{f}.gz" if gz else f), damage(raw))
        elif f in FILES["train"]:  # only present: the test split is what is read
            write(folder / f"{f}.gz", b"")
        else:
            write(folder / f"{f}.gz", packed.read_bytes() if packed.exists() else gzip.compress(plain.read_bytes()))
    return lambda: load_fashion_mnist("test", root=folder)


def kshot(labels: list, k: int, expect: Optional[int] = None) -> Callable[[], Any]:
    import numpy as np

    from wiseft_lib.data.kshot import kshot_indices

    def run() -> None:
        idx = kshot_indices(np.asarray(labels), k, seed=0)
        assert expect is None or len(idx) == expect

    return run


def score_with(metrics: tuple) -> Callable[[], Any]:
    import torch

    from wiseft_lib.core.evaluate import score
    from wiseft_lib.data import DatasetBundle

    bundle = DatasetBundle("toy", AugmentedSet(n=4), ["a", "b", "c", "d", "e"], ["a photo of a {}."], metrics=metrics)
    return lambda: score(torch.randn(4, 5), torch.tensor([0, 1, 2, 3]), bundle)


def evaluate_wrong_head() -> Callable[[], Any]:
    from wiseft_lib.core.evaluate import evaluate
    from wiseft_lib.data import DatasetBundle

    model = tiny_classifier(n_classes=10)
    bundle = DatasetBundle("toy", AugmentedSet(n=8, n_classes=5, augment=False), [f"c{i}" for i in range(5)],
                           ["a photo of a {}."])
    return lambda: evaluate(model, bundle, progress=False)


def features(cache_dir: Path, garbage: bool = False) -> Callable[[], Any]:
    """``extract_features`` of the tiny image tower with ``cache_dir``; ``garbage``: its cache file is junk."""
    from wiseft_lib.core.features import extract_features, feature_cache_key

    encoder = tiny_classifier().image_encoder
    data = AugmentedSet(n=8, augment=False)
    parts = {"dataset": "toy", "split": "test"}
    if garbage:
        key = feature_cache_key(encoder, parts, kind="features", n=len(data), precision="fp32")
        write(cache_dir / f"features-{key}.safetensors", b"\xff" * 64)

    def run() -> None:
        values, _ = extract_features(encoder, data, cache_dir=cache_dir, cache_key_parts=parts, precision="fp32",
                                     progress=False)
        assert values.shape == (8, 32)

    return run


def other_sqlite(path: Path) -> Path:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
        conn.commit()
    return path


def damaged_run(tmp: Path, rel: str) -> Any:
    """A run cache with one finished ``finetune/k`` entry whose file ``rel`` is cut mid-JSON."""
    from wiseft_lib.experiment.runs import RunCache

    runs = RunCache(tmp / "runs")
    entry = runs.entry("finetune", "k")
    write(entry / "entry.json", json.dumps({"kind": "finetune", "key": "k"}).encode())
    write(entry / "scores" / "ev.json", json.dumps({"eval": {}, "scores": {"0.5": {"top1": 50.0}}}).encode())
    write(entry / rel, (entry / rel).read_bytes()[:9])
    return runs


def resume(tmp: Path, state: Any, ckpt_classes: int = 5) -> Callable[[], Any]:
    """``finetune(resume=True)`` of the tiny model into ``tmp/run``, whose last checkpoint holds ``state`` as
    train_state.pt (bytes; a dict saved with torch.save; "valid": a real one) and a ``ckpt_classes``-way model."""
    import torch

    from wiseft_lib.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(epochs=1, batch_size=8, lr=1e-3, warmup_steps=1, log_every=1)
    ckpt = tmp / "run" / "checkpoints" / "step_00000001"
    ckpt.mkdir(parents=True)
    if state == "valid":  # a real checkpoint: one step of this very run
        finetune(tiny_classifier(), AugmentedSet(n=16), FinetuneConfig(**{**cfg.to_dict(), "checkpoint_every": 1}),
                 output_dir=tmp / "real", progress=False)
        real = sorted((tmp / "real" / "checkpoints").glob("step_*"))[0]
        write(ckpt / "train_state.pt", (real / "train_state.pt").read_bytes())
        import shutil

        shutil.rmtree(tmp / "real")
    elif isinstance(state, bytes):
        write(ckpt / "train_state.pt", state)
    else:
        torch.save(state, ckpt / "train_state.pt")
    tiny_classifier(n_classes=ckpt_classes).save(ckpt / "model.safetensors")
    return lambda: finetune(tiny_classifier(), AugmentedSet(n=16), cfg, output_dir=tmp / "run", resume=True,
                            progress=False)


if __name__ == "__main__":  # the catalogue as a markdown table
    print("| # | what the user did | error | message (regex) |\n|---|---|---|---|")
    for i, c in enumerate(CASES, 1):
        kind = {Logged: "logged warning"}.get(c.error, c.error.__name__)
        todo = f" **(pending: {c.needs})**" if c.needs else ""
        print(f"| {i} | {c.did} | {kind} | `{c.message.replace('|', '¦')}`{todo} |")
