"""Nothing the package loads can run code.

A pickle can call any function while it loads (``__reduce__``). Here one that runs ``touch SENTINEL``
(through ``os.system``) is disguised as every kind of file the package reads: checkpoints (safetensors, and
``.pt`` files where a loader accepts torch.save output), a fine-tuning resume state, Fisher files, feature
cache files, the run cache's JSON, params files (YAML with a ``!!python`` tag), results stores, the CIFAR
python-version batches (real pickles: read with a restricted unpickler). For each: the load refuses it (a
clear error) or ignores it (a "recomputing" warning), and the sentinel never appears. A control test proves
the payload is live. The results store's SQL is checked to use parameters only (names such as
``x'); DROP TABLE results; --`` round-trip), papermill's parameters cell to quote what it injects, and
a scan of the package's source finds no loader that could unpickle (``pickle.load``, ``torch.load`` without
``weights_only=True``, ``np.load(allow_pickle=True)``, ``yaml.load``, ``eval``/``exec``).
"""
from __future__ import annotations

import ast
import json
import os
import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TINY_NAME, AugmentedSet, tiny_classifier

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch, reading the payload


class _Touch:
    """Unpickling this runs ``touch PATH``."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch '{self.path}'",)


@pytest.fixture
def sentinel(tmp_path) -> Path:
    path = tmp_path / "SENTINEL"
    yield path
    assert not path.exists(), "loading a file ran the code in it"


def evil(sentinel: Path) -> bytes:
    """A pickle that creates ``sentinel`` when loaded (inside a dict, like a state file)."""
    return pickle.dumps({"format": "wiseft.finetune-state/1", "x": _Touch(sentinel)})


def evil_torch_save(sentinel: Path, path: Path) -> Path:
    """The same payload in torch.save's zip format."""
    torch.save({"format": "wiseft.finetune-state/1", "x": _Touch(sentinel)}, path)
    return path


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_the_payload_is_live(tmp_path):
    """Control: unpickling the payload with plain pickle does create the sentinel."""
    target = tmp_path / "LIVE"
    pickle.loads(evil(target))
    assert target.exists()


# ------------------------------------------------------------------ checkpoints
def test_a_pickle_as_checkpoint_weights_is_refused(tmp_path, sentinel, tiny_registered):
    from wiseft_lib.core.models import ImageClassifier

    path = tiny_classifier().save(tmp_path / "model.safetensors")
    for payload in (evil(sentinel), evil_torch_save(sentinel, tmp_path / "evil.pt").read_bytes()):
        path.write_bytes(payload)
        with pytest.raises(ValueError, match="is not a readable safetensors file"):
            ImageClassifier.load(path)


def test_a_sidecar_naming_a_pickle_as_pretrained_weights_never_reads_it(tmp_path, sentinel, tiny_registered):
    """The sidecar's ``pretrained`` only picks the architecture's settings: the file it names is not opened."""
    from wiseft_lib.core.models import ImageClassifier

    pt = write(tmp_path / "evil.pt", evil(sentinel))
    path = tiny_classifier().save(tmp_path / "model.safetensors")
    side = path.with_suffix(".json")
    side.write_text(json.dumps({**json.loads(side.read_text()), "pretrained": str(pt)}))
    assert ImageClassifier.load(path).meta["pretrained"] == str(pt)


@pytest.mark.parametrize("form", ["pickle", "torch.save"])
def test_a_pickle_as_pretrained_pt_weights_is_refused(tmp_path, sentinel, tiny_registered, form):
    """``create_model(name, pretrained=FILE.pt)``: open_clip reads .pt files with ``torch.load(weights_only=True)``."""
    from wiseft_lib.core.models import create_model

    pt = (write(tmp_path / "evil.pt", evil(sentinel)) if form == "pickle"
          else evil_torch_save(sentinel, tmp_path / "evil.pt"))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        create_model(TINY_NAME, str(pt))


def test_a_pickle_as_pretrained_safetensors_weights_is_refused(tmp_path, sentinel, tiny_registered):
    from safetensors import SafetensorError

    from wiseft_lib.core.models import create_model

    path = write(tmp_path / "evil.safetensors", evil(sentinel))
    with pytest.raises(SafetensorError):
        create_model(TINY_NAME, str(path))


# ------------------------------------------------------------------ fine-tuning resume state
def _resume(tmp_path: Path):
    from wiseft_lib.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(epochs=1, batch_size=8, lr=1e-3, warmup_steps=1)
    return lambda: finetune(tiny_classifier(), AugmentedSet(n=16), cfg, output_dir=tmp_path / "run", resume=True,
                            progress=False)


@pytest.mark.parametrize("form", ["pickle", "torch.save"])
def test_a_pickle_as_the_resume_state_is_refused(tmp_path, sentinel, form):
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000001"
    ckpt.mkdir(parents=True)
    tiny_classifier().save(ckpt / "model.safetensors")
    if form == "pickle":
        write(ckpt / "train_state.pt", evil(sentinel))
    else:
        evil_torch_save(sentinel, ckpt / "train_state.pt")
    with pytest.raises(ValueError, match=r"train_state\.pt cannot be read \(UnpicklingError: .*\); it is damaged"):
        _resume(tmp_path)()


def test_a_pickle_as_the_resume_weights_is_refused(tmp_path, sentinel):
    from wiseft_lib.finetune import FinetuneConfig, finetune

    finetune(tiny_classifier(), AugmentedSet(n=16), FinetuneConfig(epochs=1, batch_size=8, lr=1e-3, warmup_steps=1),
             output_dir=tmp_path / "run", progress=False)  # a real checkpoint (the end of the epoch)
    (ckpt,) = sorted((tmp_path / "run" / "checkpoints").glob("step_*"))
    write(ckpt / "model.safetensors", evil(sentinel))
    (tmp_path / "run" / "finetuned.safetensors").unlink()
    with pytest.raises(ValueError, match=r"model\.safetensors does not load into this model"):
        _resume(tmp_path)()


# ------------------------------------------------------------------ Fisher files
def test_a_pickle_as_a_fisher_file_is_refused(tmp_path, sentinel, tiny_registered):
    import contextlib
    import io

    from wiseft_lib.cli import main
    from wiseft_lib.core.fisher import load_fisher

    f = write(tmp_path / "fisher.safetensors", evil(sentinel))
    with pytest.raises(ValueError, match="Fisher file .* is not a readable safetensors file"):
        load_fisher(f)
    zs = tiny_classifier().save(tmp_path / "zs.safetensors")
    ft = tiny_classifier(1).save(tmp_path / "ft.safetensors")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # refused with a one-line message and exit status 2
        code = main(["interpolate", "--zeroshot", str(zs), "--finetuned", str(ft), "--fisher", str(f), str(f),
                     "--output", str(tmp_path / "out")])
    assert code == 2 and "is not a readable safetensors file" in err.getvalue()
    assert not (tmp_path / "out.safetensors").exists()


# ------------------------------------------------------------------ feature cache
def test_a_pickle_as_a_feature_cache_file_is_ignored_and_recomputed(tmp_path, sentinel, caplog):
    from wiseft_lib.core.features import extract_features, feature_cache_key

    encoder = tiny_classifier().image_encoder
    data = AugmentedSet(n=8, augment=False)
    parts = {"dataset": "toy", "split": "test"}
    key = feature_cache_key(encoder, parts, kind="features", n=len(data), precision="fp32")
    path = write(tmp_path / "cache" / f"features-{key}.safetensors", evil(sentinel))
    with caplog.at_level("WARNING"):
        values, labels = extract_features(encoder, data, cache_dir=tmp_path / "cache", cache_key_parts=parts,
                                          precision="fp32", progress=False)
    assert "ignoring unreadable cache file" in caplog.text and "recomputing" in caplog.text
    fresh, _ = extract_features(encoder, data, precision="fp32", progress=False)
    torch.testing.assert_close(values.clone(), fresh)
    assert path.read_bytes()[:8] != evil(sentinel)[:8]  # replaced by a real cache file


# ------------------------------------------------------------------ run cache JSON
def test_a_pickle_as_run_cache_json_is_refused(tmp_path, sentinel):
    from wiseft_lib.experiment.runs import RunCache, run_key

    runs = RunCache(tmp_path / "runs")
    entry = runs.entry("finetune", "k")
    write(entry / "entry.json", evil(sentinel))
    write(entry / "scores" / "ev.json", evil(sentinel))
    write(tmp_path / "runs" / "memo" / f"{run_key({'kind': 'memo', 'a': 1})}.json", evil(sentinel))
    with pytest.raises(ValueError):  # json refuses it (the catalogue asks for a clearer message)
        runs.record("finetune", "k")
    with pytest.warns(UserWarning, match="ignoring unreadable run-cache scores"):
        assert runs.scores("finetune", "k", "ev") == {}  # ignored: the scores are computed again
    with pytest.raises(ValueError):
        runs.memo_many("memo", [{"a": 1}], lambda missing: [0 for _ in missing])


# ------------------------------------------------------------------ params files
def test_a_python_tag_in_params_is_refused_by_safe_loading(tmp_path, sentinel):
    import contextlib
    import io

    from wiseft_lib.cli import main
    from wiseft_lib.params import ParamsError
    from wiseft_lib.studies.fig1_id_vs_ood import Fig1Params

    tag = f"!!python/object/apply:os.system [\"touch '{sentinel}'\"]"
    path = write(tmp_path / "p.yaml", f"smoke: {tag}\n".encode())
    with pytest.raises(ParamsError, match="not valid YAML: could not determine a constructor"):
        Fig1Params.from_yaml(path)
    with pytest.raises(ParamsError, match="is not a YAML value|not valid YAML|could not determine a constructor"):
        Fig1Params.from_yaml(None, [f"smoke={tag}"])
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["run", "fig1_id_vs_ood", "--params", str(path)]) == 2
    assert "could not determine a constructor" in err.getvalue()


def test_papermill_parameters_are_quoted_not_run(tmp_path, sentinel):
    """What a notebook study injects (``run_study`` -> papermill) is data: a value made to break out of its
    string literal stays a string."""
    from papermill.translators import translate_parameters

    from wiseft_lib.studies import STUDIES

    nasty = f"x\"); import os; os.system(\"touch '{sentinel}'\"); (\"\\'''\n"
    params = STUDIES["00_wiseft_tutorial"].params.from_mapping({"output_dir": nasty})
    cell = translate_parameters("python3", "python", params.to_dict(), "Parameters")
    namespace: dict = {}
    exec(compile(cell, "<parameters>", "exec"), namespace)  # what the kernel runs
    assert namespace["output_dir"] == nasty


# ------------------------------------------------------------------ results store
def test_a_pickle_as_a_results_store_is_refused_and_kept(tmp_path, sentinel):
    from wiseft_lib.experiment.results import ResultsStore

    path = write(tmp_path / "results.sqlite", evil(sentinel))
    with pytest.raises(ValueError, match="not a SQLite file"):
        ResultsStore(path)
    assert path.read_bytes() == evil(sentinel)


def test_results_sql_uses_parameters_only(tmp_path):
    from wiseft_lib.experiment.results import ResultsStore

    store = ResultsStore(tmp_path / "results.sqlite")
    nasty = "x'); DROP TABLE results; --"
    store.add(run=nasty, model="m\"; DELETE FROM results; --", method="wise-ft", alpha=0.5, dataset=nasty,
              metric="top1", value=1.0, config={"note": nasty})
    store.add(run="plain", model="m", method="wise-ft", alpha=0.5, dataset="d", metric="top1", value=2.0)
    assert len(store) == 2
    row = store.to_frame(dataset=nasty)
    assert row["run"].tolist() == [nasty] and row["model"].tolist() == ["m\"; DELETE FROM results; --"]
    assert json.loads(row["config"].iloc[0]) == {"note": nasty}
    assert store.to_frame(dataset="' OR '1'='1").empty  # a filter value is a value, not SQL
    assert len(store.to_frame(run=[nasty, "plain"])) == 2
    with pytest.raises(ValueError, match="cannot filter on"):  # column names are checked, never interpolated
        store.to_frame(**{"run = run OR 1=1 --": "x"})
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"results", "wiseft_meta"} <= tables


# ------------------------------------------------------------------ datasets stored as pickles (CIFAR)
def _cifar10(root: Path, batch: bytes, meta: bytes) -> None:
    folder = root / "cifar-10-batches-py"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write(folder / name, batch)
    write(folder / "batches.meta", meta)


def test_cifar_batches_load_with_the_restricted_unpickler(tmp_path):
    from wiseft_lib.data import get_dataset

    good = pickle.dumps({"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072), "labels": [1, 7]}, protocol=2)
    _cifar10(tmp_path, good, pickle.dumps({"label_names": [f"c_{i}" for i in range(10)]}))
    bundle = get_dataset("cifar10", root=str(tmp_path), split="train")
    assert len(bundle) == 10 and bundle.dataset.targets.tolist() == [1, 7] * 5 and bundle.classnames[0] == "c 0"


@pytest.mark.parametrize("where", ["batch", "meta"])
def test_a_pickle_as_a_cifar_file_is_refused(tmp_path, sentinel, where):
    from wiseft_lib.data import get_dataset

    good = pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 7]})
    meta = pickle.dumps({"label_names": [f"c{i}" for i in range(10)]})
    _cifar10(tmp_path, evil(sentinel) if where == "batch" else good, evil(sentinel) if where == "meta" else meta)
    with pytest.raises(ValueError, match=r"(?s)is not a readable data pickle \(it asks to load (posix|os)\.system, "
                                         r"which a data file never holds: refused.*download it again"):
        get_dataset("cifar10", root=str(tmp_path))


def test_a_pickle_in_a_cifar102_npy_is_refused(tmp_path, sentinel):
    from wiseft_lib.data import get_dataset

    (tmp_path / "CIFAR-10.2").mkdir()
    np.save(tmp_path / "CIFAR-10.2" / "cifar102_test.npy",  # the release's format: a pickled dict in a .npy
            np.array({"images": np.zeros((2, 32, 32, 3), np.uint8), "labels": _Touch(sentinel)}, dtype=object))
    with pytest.raises(ValueError, match=r"cifar102_test\.npy is not a readable data pickle \(it asks to load "
                                         r"(posix|os)\.system"):
        get_dataset("cifar10.2", root=str(tmp_path))


# ------------------------------------------------------------------ the source: no unsafe loader anywhere
def _unsafe_calls(source: str) -> list[str]:
    """Calls that can run code hidden in data: found by the syntax tree, not by text."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else None
        dotted = ""
        if isinstance(f, ast.Attribute):
            parts, cur = [f.attr], f.value
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                parts.append(cur.id)
            dotted = ".".join(reversed(parts))
        kw = {k.arg: k.value for k in node.keywords}
        if name in ("eval", "exec") or dotted in ("builtins.eval", "builtins.exec"):
            bad.append(f"line {node.lineno}: {name or dotted}()")
        elif dotted in ("pickle.load", "pickle.loads", "pickle.Unpickler", "marshal.loads", "marshal.load",
                        "shelve.open", "dill.load", "dill.loads", "joblib.load", "pd.read_pickle",
                        "pandas.read_pickle", "torch.jit.load", "yaml.load", "yaml.unsafe_load", "yaml.full_load"):
            bad.append(f"line {node.lineno}: {dotted}()")
        elif dotted == "torch.load" and not (isinstance(kw.get("weights_only"), ast.Constant)
                                             and kw["weights_only"].value is True):
            bad.append(f"line {node.lineno}: torch.load() without weights_only=True")
        elif dotted in ("np.load", "numpy.load") and not (
                isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False):
            bad.append(f"line {node.lineno}: {dotted}() without allow_pickle=False")
    return bad


def test_the_scan_finds_unsafe_loaders():
    found = _unsafe_calls("import pickle, torch, numpy as np, yaml\npickle.load(f)\ntorch.load(p)\n"
                          "torch.load(p, weights_only=True)\nnp.load(p, allow_pickle=True)\nyaml.load(t)\n"
                          "yaml.safe_load(t)\neval('1')\nmodel.eval()\n")
    assert len(found) == 5, found


def test_no_loader_in_the_package_can_unpickle():
    found = {str(p.relative_to(ROOT)): _unsafe_calls(p.read_text())
             for p in sorted((ROOT / "wiseft_lib").rglob("*.py"))}
    assert not {k: v for k, v in found.items() if v}, found
