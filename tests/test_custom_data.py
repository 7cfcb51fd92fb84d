"""Your own data: an image folder is a dataset by path; the custom_dataset study runs on it and exports the model."""
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from wiseft_lib.data import default_eval_split, eval_split, get_dataset
from wiseft_lib.data.common import DatasetNotFoundError, dataset_labels

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["blue_dots", "green_stripes", "red_square"]  # sorted: the label order


def draw(cls: str, i: int, size: int = 32, invert: bool = False) -> Image.Image:
    """A distinct colour and pattern per class, varied per image."""
    rng = np.random.default_rng(i)
    img = np.full((size, size, 3), 20 + 3 * (i % 20), dtype=np.uint8)
    channel = CLASSES.index(cls)
    if cls == "blue_dots":
        for _ in range(6):
            y, x = rng.integers(2, size - 4, 2)
            img[y:y + 3, x:x + 3, channel] = 230
    elif cls == "green_stripes":
        img[(np.arange(size) + i) % 6 < 3, :, channel] = 220
    else:
        a = 4 + i % 6
        img[a:a + 14, a:a + 14, channel] = 240
    return Image.fromarray(255 - img if invert else img)


def write_class_folders(base: Path, n: int, *, start: int = 0, invert: bool = False, corrupt: bool = False) -> None:
    for cls in CLASSES:
        (base / cls).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + n):
            draw(cls, i, invert=invert).save(base / cls / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
    if corrupt:
        (base / CLASSES[0] / "broken.png").write_bytes(b"this is not a PNG file")
        (base / CLASSES[0] / "notes.txt").write_text("not an image: ignored")


@pytest.fixture
def flat(tmp_path) -> Path:
    """3 classes x 12 images directly in the folder, plus one corrupt .png and a .txt."""
    write_class_folders(tmp_path / "flat", 12, corrupt=True)
    return tmp_path / "flat"


@pytest.fixture
def split_folders(tmp_path) -> tuple[Path, Path]:
    """train/ (12 per class, one corrupt file) + test/ (6 per class); a shift folder with test/ only (inverted)."""
    write_class_folders(tmp_path / "mine" / "train", 12, corrupt=True)
    write_class_folders(tmp_path / "mine" / "test", 6, start=100)
    write_class_folders(tmp_path / "mine_inverted" / "test", 6, start=100, invert=True)
    return tmp_path / "mine", tmp_path / "mine_inverted"


def test_a_flat_folder_is_a_dataset_by_path_with_a_seeded_val_holdout(flat):
    name = str(flat)
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        train = get_dataset(name, split="train")
    val, test = get_dataset(name, split="val"), get_dataset(name, split="test")
    assert train.classnames == ["blue dots", "green stripes", "red square"]  # folder names, _ -> space
    assert train.skipped == 1, "the corrupt file is counted, not fatal"
    assert "a photo of a {}." in train.templates and len(train.templates) > 1
    assert len(val) == 3 and len(train) == 36 - 3, "10% per class held out (at least one)"
    assert np.bincount(dataset_labels(val.dataset)).tolist() == [1, 1, 1]
    assert [s[0] for s in test.dataset.samples] == [s[0] for s in val.dataset.samples], "no test/: test = val"
    assert not {s[0] for s in train.dataset.samples} & {s[0] for s in val.dataset.samples}
    assert test.metadata["split_source"] == "the val images (no test/ folder)"
    image, label = train.dataset[0]
    assert isinstance(image, Image.Image) and image.size == (32, 32) and label == 0
    assert eval_split(name, "val") == "val" and default_eval_split(name) == "test"
    again = get_dataset(f"folder:{name}", split="val")  # the explicit form: the same images
    assert [s[0] for s in again.dataset.samples] == [s[0] for s in val.dataset.samples]
    subset = get_dataset(name, split="train", n_train=6, seed=1)
    assert np.bincount(dataset_labels(subset.dataset)).tolist() == [2, 2, 2]


def test_train_test_folders_classnames_file_and_a_test_only_shift_folder(split_folders):
    mine, shifted = split_folders
    (mine / "classnames.txt").write_text("dotted blue thing\nstriped green thing\nred square\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = get_dataset(str(mine), split="train")
    test = get_dataset(str(mine), split="test")
    assert train.classnames[0] == "dotted blue thing" and len(train) == 33 and train.skipped == 1
    assert len(test) == 18 and test.metadata["split_source"] == "test/" and test.skipped == 0
    shift = get_dataset(str(shifted), split="test")
    assert shift.classnames == ["blue dots", "green stripes", "red square"] and len(shift) == 18
    assert len(get_dataset(str(shifted), split="val")) == 18  # test-only: val is the test images
    with pytest.raises(DatasetNotFoundError, match="no train/ folder.*not trained on"):
        get_dataset(str(shifted), split="train")


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "does not exist"),
    (lambda d: (d.mkdir(), (d / "a.jpg").write_bytes(b"x")), "no class sub-folders in the folder"),
    (lambda d: (write_class_folders(d, 3), (d / "empty_class").mkdir()), "no readable images.*empty_class"),
    (lambda d: (write_class_folders(d / "train", 3), write_class_folders(d / "test", 1),
                (d / "test" / "zebra").mkdir()),
     "test/ has class folders that train/ lacks: zebra"),
    (lambda d: (write_class_folders(d, 3), (d / "classnames.txt").write_text("one\ntwo\n")),
     "lists 2 class names but there are 3 class folders"),
])
def test_bad_layouts_say_what_is_expected(tmp_path, make, message):
    folder = tmp_path / "data"
    make(folder)
    with pytest.raises(DatasetNotFoundError, match=message) as err:
        get_dataset(str(folder), split="train")
    assert "Expected layout" in str(err.value) and "train/" in str(err.value)


def test_names_that_are_not_paths_stay_registry_names():
    with pytest.raises(KeyError, match="unknown dataset 'mini-phot'.*or give the path of an image folder"):
        get_dataset("mini-phot")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        get_dataset("folder:no/such/folder")


def smoke_params(tmp_path, **kw):
    from wiseft_lib.studies.custom_dataset import CustomDatasetParams

    return CustomDatasetParams(**{"smoke": True, "model": "wiseft-mini", "output_dir": str(tmp_path / "out"),
                                  "demo_per_class": None, "device": "cpu", **kw})


def test_custom_dataset_study_smoke_writes_the_curve_and_an_export_open_clip_loads(split_folders, tmp_path):
    import open_clip
    from safetensors.torch import load_file

    from wiseft_lib.experiment.export import register_configs
    from wiseft_lib.studies.custom_dataset import run

    mine, shifted = split_folders
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run(smoke_params(tmp_path, id_dataset=str(mine), ood_datasets=[str(shifted)]), progress=False)
    out = tmp_path / "out"
    curve = pd.read_csv(out / "curve.csv")
    assert list(curve.columns) == ["seed", "mode", "alpha", "id_acc", "ood_avg", "mine_inverted"]
    assert len(curve) == 2 * 3 and curve[["id_acc", "ood_avg"]].stack().between(0, 100).all()
    data = pd.read_csv(out / "data.csv")
    assert data.set_index(["role", "split"]).loc[("ID", "train"), "skipped_unreadable"] == 1
    assert list(data["images"]) == [33, 3, 18, 18]
    for name in ("summary.md", "custom_dataset.png", "samples.png", "export_check.csv", "study.json"):
        assert (out / name).stat().st_size > 0, name
    check = result.export_check.iloc[0]
    assert check["max_abs_logit_diff"] <= 1e-6 and check["same_predictions"] and check["same_preprocessing"]

    exported = result.export.model
    assert exported.parent == out / "export" and exported.with_suffix(".head.safetensors").exists()
    register_configs()
    model, _, preprocess = open_clip.create_model_and_transforms("wiseft-mini", pretrained=str(exported),
                                                                 image_mean=(0.5,) * 3, image_std=(0.5,) * 3)
    head = load_file(str(result.export.head))
    meta = json.loads(result.export.sidecar.read_text())
    assert meta["classnames"] == ["blue dots", "green stripes", "red square"] and meta["alpha"] == 0.5
    images = torch.stack([preprocess(draw(c, 100)) for c in CLASSES])
    with torch.no_grad():
        f = model.eval().encode_image(images)
        logits = f / f.norm(dim=-1, keepdim=True) @ head["weight"].T + head["bias"]
    assert logits.shape == (3, 3) and torch.isfinite(logits).all()


def test_custom_dataset_study_without_shift_folders_plots_accuracy_along_alpha(flat, tmp_path):
    from wiseft_lib.studies.custom_dataset import run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run(smoke_params(tmp_path, id_dataset=str(flat), ood_datasets=[], modes=["linear"],
                                  export_alpha=0.0), progress=False)
    assert list(result.curve["alpha"]) == [0.0, 0.5, 1.0] and result.curve["ood_avg"].isna().all()
    assert any("best ID" in m for m in result.summary["method"])
    assert (tmp_path / "out" / "custom_dataset.png").exists()
    assert result.export.meta["mode"] == "linear" and result.export_check.iloc[0]["max_abs_logit_diff"] <= 1e-6


@pytest.mark.filterwarnings("ignore:.*unreadable image")
def test_a_shift_folder_of_other_classes_is_refused(split_folders, tmp_path):
    from wiseft_lib.studies.custom_dataset import run

    mine, _ = split_folders
    other = tmp_path / "other" / "test"
    for cls in ("cat", "dog", "fish"):
        (other / cls).mkdir(parents=True)
        draw("red_square", 1).save(other / cls / "1.png")
    with pytest.raises(ValueError, match="a shift must have the ID classes"):
        run(smoke_params(tmp_path, id_dataset=str(mine), ood_datasets=[str(other.parent)]), progress=False)


def test_demo_folders_are_written_only_where_allowed(tmp_path, fashion_mnist_root):
    from wiseft_lib.data.mini.demo_folder import DEMO_MARKER, write_demo_folder

    demo = write_demo_folder(tmp_path / "demo-sketch", 2, style="sketch", train=False)
    assert sorted(p.name for p in (demo / "test").iterdir())[:2] == ["ankle_boot", "bag"]
    shift = get_dataset(str(demo), split="test")
    assert len(shift) == 10 and "ankle boot" in shift.classnames
    stamp = (demo / DEMO_MARKER).stat().st_mtime_ns
    assert write_demo_folder(demo, 2, style="sketch", train=False) == demo
    assert (demo / DEMO_MARKER).stat().st_mtime_ns == stamp, "same settings: kept"
    (tmp_path / "yours").mkdir()
    with pytest.raises(FileExistsError, match="not a demo folder"):
        write_demo_folder(tmp_path / "yours", 2)


@pytest.mark.slow
def test_custom_dataset_notebook_smoke_on_its_mini_preset(tmp_path, fashion_mnist_root):
    """The notebook with params/mini/custom_dataset.yaml (smoke): demo folders written inside the output folder,
    every cell runs, the export is written."""
    import yaml

    papermill = pytest.importorskip("papermill")
    params = yaml.safe_load((ROOT / "params" / "mini" / "custom_dataset.yaml").read_text())
    params.update(smoke=True, output_dir=str(tmp_path / "custom_dataset"), runs_dir=str(tmp_path / "runs"),
                  id_dataset=str(tmp_path / "custom_dataset" / "demo" / "fashion"),
                  ood_datasets=[str(tmp_path / "custom_dataset" / "demo" / "fashion-viewpoint")], demo_per_class=10)
    papermill.execute_notebook(str(ROOT / "notebooks" / "custom_dataset.ipynb"), str(tmp_path / "executed.ipynb"),
                               parameters=params, kernel_name="python3", progress_bar=False, cwd=str(ROOT))
    out = tmp_path / "custom_dataset"
    for name in ("curve.csv", "summary.md", "custom_dataset.png", "data.csv", "export_check.csv"):
        assert (out / name).stat().st_size > 0, name
    assert list((out / "export").glob("*.head.safetensors"))
    from wiseft_lib.reproduce import figure_outputs

    shown = figure_outputs(tmp_path / "executed.ipynb")  # the figure cells show PNGs, not `<Figure ...>` text
    assert shown.with_image == shown.cells >= 1 and not shown.as_text, shown
    marker = out / "demo" / "fashion-viewpoint" / ".wiseft-demo.json"
    assert json.loads(marker.read_text())["style"] == "viewpoint"
