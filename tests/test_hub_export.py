"""`wiseft export --hub-dir`: a WiSE-FT model as an open_clip hub folder with a model card, which open_clip loads in a
fresh process from its path alone (`local-dir:`), with the package's logits bit for bit (CPU, seconds)."""
import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from wiseft_lib.cli import main
from wiseft_lib.core.models import ASSETS
from wiseft_lib.data.fashion_mnist import CLASSNAMES
from wiseft_lib.experiment.export import build_export, exported_logits, load_export
from wiseft_lib.experiment.hub import (
    CardResult,
    ModelCard,
    export_hub_folder,
    load_hub_folder,
    model_card,
    open_clip_config,
    write_hub_folder,
)

from helpers import saved_export_endpoints, tiny_classifier, tiny_clip

TEMPLATES = ["a photo of a {}.", "a sketch of a {}."]

# Run in a fresh interpreter: open_clip alone (no wiseft_lib, so no registered wiseft-mini config) loads the folder.
FRESH = """
import sys
import open_clip, torch
from PIL import Image
from safetensors.torch import load_file, save_file
folder, images, image_png, out = sys.argv[1:5]
assert "wiseft-mini" not in open_clip.list_models()
model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + folder)
model.eval()
head = load_file(folder + "/head.safetensors")
x = load_file(images)["x"]
with torch.no_grad():
    features = model.encode_image(x)
    features = features / features.norm(dim=-1, keepdim=True)
    logits = torch.nn.functional.linear(features, head["weight"], head["bias"])
save_file({"logits": logits, "pixels": preprocess(Image.open(image_png))}, out)
assert not any(m.startswith("wiseft_lib") for m in sys.modules)
"""


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    """A zero-shot wiseft-mini classifier and a perturbed "fine-tuned" copy, saved as the CLI writes them (as in
    test_export.py)."""
    return saved_export_endpoints(tmp_path_factory.mktemp("hub"), TEMPLATES)


def front_matter(readme) -> dict:
    text = readme.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_open_clip_loads_the_hub_folder_in_a_fresh_process_with_the_package_logits(endpoints, tmp_path):
    from safetensors.torch import load_file, save_file

    hub = export_hub_folder(endpoints["ft_path"], tmp_path / "hub", alpha=0.5, zeroshot=endpoints["zs_path"],
                            flat_output=tmp_path / "flat" / "model.safetensors")
    assert sorted(p.name for p in hub.folder.iterdir()) == ["README.md", "head.safetensors", "open_clip_config.json",
                                                            "open_clip_model.safetensors", "wiseft_export.json"]
    # the same head as model.head.safetensors: tensors and metadata (not bytes: safetensors writes its metadata
    # from a Rust HashMap, whose key order varies between writes)
    from safetensors import safe_open

    with safe_open(str(hub.files["head"]), "pt") as ours, safe_open(str(hub.flat.head), "pt") as flat:
        assert ours.metadata() == flat.metadata() and sorted(ours.keys()) == sorted(flat.keys())
        assert all(torch.equal(ours.get_tensor(k), flat.get_tensor(k)) for k in ours.keys())
    config = json.loads(hub.files["config"].read_text())
    assert config["model_cfg"] == json.loads((ASSETS / "wiseft-mini.json").read_text())
    assert config["preprocess_cfg"]["mean"] == [0.5] * 3 and config["preprocess_cfg"]["size"] == 28

    x = torch.randn(6, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    pixels = np.random.default_rng(0).integers(0, 256, (40, 36, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "image.png")
    done = subprocess.run([sys.executable, "-c", FRESH, str(hub.folder), str(tmp_path / "x.safetensors"),
                           str(tmp_path / "image.png"), str(tmp_path / "out.safetensors")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = load_file(str(tmp_path / "out.safetensors"))

    model, head, meta, preprocess = load_export(hub.flat.model)
    with torch.no_grad():
        flat_logits = exported_logits(model, head, x)
    assert torch.equal(fresh["logits"], flat_logits)
    assert (fresh["logits"] - flat_logits).abs().max().item() == 0.0
    assert torch.equal(fresh["pixels"], preprocess(Image.open(tmp_path / "image.png")))
    hub_model, hub_head, hub_meta, _ = load_hub_folder(hub.folder)
    with torch.no_grad():
        assert torch.equal(hub_head(hub_model.encode_image(x)), flat_logits)
    assert hub_meta["files"] == {"model": "open_clip_model.safetensors", "head": "head.safetensors"}
    assert hub_meta["classnames"] == CLASSNAMES and hub_meta["alpha"] == 0.5


def test_the_model_card_has_front_matter_usage_results_citation_and_licence(endpoints, tmp_path):
    state = build_export(endpoints["zs"], endpoints["ft"], endpoints["clip"], 0.3)
    card = ModelCard(datasets=["my-folder"], recipe={"mode": "end-to-end", "lr": 5e-4},
                     results=[CardResult("my-folder", 81.25, "ID", "test", (77.1, 84.9), 400),
                              CardResult("my-folder-night", 40.0, "shift", "test", None, 200)])
    hub = write_hub_folder(state, tmp_path / "card", card=card)
    fm = front_matter(hub.files["card"])
    assert fm["library_name"] == "open_clip" and fm["license"] == "mit"
    assert fm["base_model"] == "wiseft-mini (pretrained=fmnist)"
    assert {"clip", "wise-ft", "zero-shot-image-classification"} <= set(fm["tags"])
    assert fm["datasets"] == ["my-folder"] and fm["metrics"] == ["accuracy"]
    scores = [m["value"] for r in fm["model-index"][0]["results"] for m in r["metrics"]]
    assert scores == [81.25, 40.0] and fm["wiseft"]["alpha"] == 0.3
    body = hub.files["card"].read_text().split("---\n", 2)[2]
    for expected in ('open_clip.create_model_and_transforms("local-dir:card")', "torch.nn.functional.linear(",
                     "theta(alpha) = (1 - alpha) theta_zs + alpha theta_ft", "**alpha = 0.3**",
                     "| my-folder | ID | test | 81.25 | 77.1 - 84.9 | 400 |", "| lr | 0.0005 |",
                     "@inproceedings{wortsman2022robust", "2109.01903", "CVPR", "MIT licence"):
        assert expected in body, expected


def test_an_open_clip_tag_card_and_config(tmp_path):
    """No weights needed: the card of an OpenAI ViT-B-16 export says `other` and names the tag's source, and its config
    carries QuickGELU and the tag's normalisation."""
    meta = {"model_name": "ViT-B-16", "pretrained": "openai", "alpha": 0.5, "head_shape": [3, 512],
            "classnames": ["a", "b", "c"], "head_normalize": True}
    text = model_card(meta, ModelCard(), "hub")
    fm = yaml.safe_load(text.split("---\n")[1])
    assert fm["license"] == "other" and fm["base_model"] == "ViT-B-16 (pretrained=openai)" and "datasets" not in fm
    assert "huggingface.co/timm/vit_base_patch16_clip_224.openai" in text and "Results" not in text
    config = open_clip_config("ViT-B-16", {"force_quick_gelu": True, "image_mean": [0.48145466, 0.4578275, 0.40821073]})
    assert config["model_cfg"]["quick_gelu"] is True and config["preprocess_cfg"]["mean"][0] == 0.48145466


def test_a_custom_architecture_needs_no_registered_config_to_load(tiny_registered, tmp_path):
    zs = tiny_classifier(0, n_classes=3)
    ft = copy.deepcopy(zs)
    with torch.no_grad():
        for p in ft.parameters():
            p.mul_(1.01)
    hub = write_hub_folder(build_export(zs, ft, tiny_clip(0), 1.0), tmp_path / "tiny")
    assert json.loads(hub.files["config"].read_text())["model_cfg"]["vision_cfg"]["image_size"] == 16
    assert front_matter(hub.files["card"])["license"] == "other"  # no pretrained weights: no base licence


def test_a_non_empty_folder_is_refused_and_a_failed_write_leaves_nothing(endpoints, tmp_path, monkeypatch):
    import wiseft_lib.experiment.export as export

    state = build_export(endpoints["zs"], endpoints["ft"], endpoints["clip"], 0.5)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="exists and is not empty: give a new or empty folder, or pass overwrite=True"):
        write_hub_folder(state, mine)
    with pytest.raises(ValueError, match="not a wiseft hub folder"):
        write_hub_folder(state, mine, overwrite=True)  # overwrite replaces only an earlier hub folder
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    (tmp_path / "empty").mkdir()
    hub = write_hub_folder(state, tmp_path / "empty")  # an empty folder is fine
    replaced = write_hub_folder(build_export(endpoints["zs"], endpoints["ft"], endpoints["clip"], 0.75), hub.folder,
                                overwrite=True)
    assert json.loads(replaced.files["sidecar"].read_text())["alpha"] == 0.75

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "save_file", full_disk)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match="cannot write the hub folder .*no space left on the device; nothing was"):
        write_hub_folder(state, tmp_path / "new")
    with pytest.raises(ValueError, match="cannot write the hub folder .*; the earlier folder is kept"):
        write_hub_folder(state, hub.folder, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "no half-written folder, no temporary left"
    assert json.loads(replaced.files["sidecar"].read_text())["alpha"] == 0.75, "the earlier folder is kept"


def test_cli_export_hub_dir(endpoints, tmp_path, capsys):
    hub_dir = tmp_path / "cli-hub"
    assert main(["export", "--finetuned", str(endpoints["ft_path"]), "--zeroshot", str(endpoints["zs_path"]),
                 "--alpha", "0.25", "--hub-dir", str(hub_dir), "--card-dataset", "fashion-mnist"]) == 0
    printed = capsys.readouterr().out
    assert f"open_clip.create_model_and_transforms('local-dir:{hub_dir}')" in printed
    fm = front_matter(hub_dir / "README.md")
    assert fm["datasets"] == ["fashion-mnist"] and fm["wiseft"]["alpha"] == 0.25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli-hub"], "without --output: no flat files"

    out = tmp_path / "both" / "m.safetensors"
    assert main(["export", "--finetuned", str(endpoints["ft_path"]), "--alpha", "0.25", "--output", str(out),
                 "--hub-dir", str(tmp_path / "both" / "hub")]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["alpha"] == 0.25
    assert "pretrained=" in capsys.readouterr().out

    def fails(args, message):
        assert main(["export", "--finetuned", str(endpoints["ft_path"]), *args]) == 2
        assert message in capsys.readouterr().err

    fails([], "nothing to write: give --output FILE.safetensors")
    fails(["--output", str(tmp_path / "x"), "--card-dataset", "d"], "give --hub-dir too")
    fails(["--hub-dir", str(hub_dir)], "exists and is not empty")
    assert main(["export", "--finetuned", str(endpoints["ft_path"]), "--hub-dir", str(hub_dir), "--overwrite"]) == 0
    assert "datasets" not in front_matter(hub_dir / "README.md")  # the checkpoint records no train_dataset
