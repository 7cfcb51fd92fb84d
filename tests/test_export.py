"""`wiseft export`: a WiSE-FT model as an open_clip checkpoint that open_clip loads unchanged (CPU, seconds)."""
import copy
import hashlib
import json

import open_clip
import pytest
import torch
from safetensors.torch import load_file

from wiseft_lib.cli import main
from wiseft_lib.core.interpolate import interpolate_weights
from wiseft_lib.core.models import ImageClassifier, create_model
from wiseft_lib.data.fashion_mnist import CLASSNAMES
from wiseft_lib.experiment.export import export_paths, export_wiseft, exported_logits, load_export, register_configs

from helpers import saved_export_endpoints, tiny_classifier

TEMPLATES = ["a photo of a {}.", "a sketch of a {}."]


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    """A zero-shot wiseft-mini classifier and a perturbed "fine-tuned" copy, saved as the CLI writes them."""
    ends = saved_export_endpoints(tmp_path_factory.mktemp("export"), TEMPLATES)
    return {**ends, "pretrained": create_model("wiseft-mini")[0]}


def wiseft_at(zs: ImageClassifier, ft: ImageClassifier, alpha: float) -> ImageClassifier:
    model = copy.deepcopy(ft)
    model.load_state_dict(interpolate_weights(zs.state_dict(), ft.state_dict(), alpha))
    return model.eval()


@pytest.mark.parametrize("given_zeroshot", [True, False])
def test_export_loads_in_open_clip_with_the_wiseft_logits_and_the_pretrained_text_tower(endpoints, tmp_path,
                                                                                          given_zeroshot):
    out = tmp_path / "exported" / "model.safetensors"
    result = export_wiseft(endpoints["ft_path"], out, alpha=0.5,
                           zeroshot=endpoints["zs_path"] if given_zeroshot else None)
    exported = tmp_path / "exported"
    assert result.paths() == [out, exported / "model.head.safetensors", exported / "model.json"]

    register_configs()  # wiseft-mini is the package's own open_clip config
    model, _, preprocess = open_clip.create_model_and_transforms("wiseft-mini", pretrained=str(out))
    model.eval()
    head = load_file(str(result.head))
    assert set(head) == {"weight", "bias"} and head["weight"].shape == (len(CLASSNAMES), 128)

    x = torch.randn(6, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = model.encode_image(x)
        logits = features / features.norm(dim=-1, keepdim=True) @ head["weight"].T + head["bias"]
        expected = wiseft_at(endpoints["zs"], endpoints["ft"], 0.5)(x)
    assert torch.allclose(logits, expected, atol=1e-6, rtol=0)
    assert torch.equal(exported_logits(model, head, x), expected)  # the same ops as ClassificationHead: bit for bit

    pretrained, loaded = endpoints["pretrained"].state_dict(), model.state_dict()
    assert set(loaded) == set(pretrained)
    text = [k for k in pretrained if not k.startswith("visual.")]
    assert "logit_scale" in text and "token_embedding.weight" in text
    assert all(torch.equal(loaded[k], pretrained[k]) for k in text), "the text tower is the pretrained one"
    assert not torch.equal(loaded["visual.conv1.weight"], pretrained["visual.conv1.weight"])  # interpolated

    meta = json.loads(result.sidecar.read_text())
    assert meta["format"] == "wiseft.OpenCLIPExport/1" and meta["alpha"] == 0.5
    assert meta["model_name"] == "wiseft-mini" and meta["pretrained"] == "fmnist"
    assert meta["classnames"] == CLASSNAMES and meta["templates"] == TEMPLATES
    digest = hashlib.sha256(endpoints["ft_path"].read_bytes()).hexdigest()
    assert meta["sources"]["finetuned"]["sha256"] == digest
    if given_zeroshot:
        assert meta["sources"]["zeroshot"]["sha256"] == hashlib.sha256(endpoints["zs_path"].read_bytes()).hexdigest()
    assert meta["open_clip_kwargs"]["image_mean"] == [0.5, 0.5, 0.5]

    # the package's loader passes the kwargs: the preprocessing is the package model's too
    model2, head2, meta2, preprocess2 = load_export(out)
    assert "Normalize(mean=(0.5, 0.5, 0.5)" in repr(preprocess2)
    with torch.no_grad():
        assert torch.equal(head2(model2.encode_image(x)), expected)


def test_alpha_one_exports_the_fine_tuned_image_tower_exactly(endpoints, tmp_path):
    result = export_wiseft(endpoints["ft_path"], tmp_path / "ft", alpha=1.0)
    assert result.model.name == "ft.safetensors"
    sd = load_file(str(result.model))
    ft = endpoints["ft"].image_encoder.state_dict()
    assert all(torch.equal(sd[f"visual.{k}"], v) for k, v in ft.items())
    head = load_file(str(result.head))
    assert torch.equal(head["weight"], endpoints["ft"].classification_head.weight.detach())


def test_cli_export_and_its_errors(endpoints, tmp_path, capsys, tiny_registered):
    out = tmp_path / "cli" / "m.safetensors"
    assert main(["export", "--finetuned", str(endpoints["ft_path"]), "--zeroshot", str(endpoints["zs_path"]),
                 "--alpha", "0.25", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "create_model_and_transforms('wiseft-mini'" in printed and str(out) in printed
    assert json.loads(out.with_suffix(".json").read_text())["alpha"] == 0.25

    def fails(args, message):
        assert main(["export", *args]) == 2
        assert message in capsys.readouterr().err

    fails(["--finetuned", str(endpoints["ft_path"]), "--alpha", "1.5", "--output", str(tmp_path / "a")],
          "alpha must lie in [0, 1]")
    tiny = tiny_classifier().save(tmp_path / "tiny.safetensors")  # another architecture
    fails(["--finetuned", str(tiny), "--model", "wiseft-mini", "--output", str(tmp_path / "b")],
          "is a 'wiseft-test-tiny' model")
    with pytest.raises(ValueError, match="--zeroshot .* is a 'wiseft-mini' model, --finetuned a 'wiseft-test-tiny'"):
        export_wiseft(tiny, tmp_path / "c", zeroshot=endpoints["zs_path"])
    fails(["--finetuned", str(endpoints["ft_path"]), "--pretrained", "fmnist-budget5", "--output", str(tmp_path / "d")],
          "was fine-tuned from pretrained=None, not 'fmnist-budget5'")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    fails(["--finetuned", str(endpoints["ft_path"]), "--output", str(blocker / "m.safetensors")],
          "cannot export to")
    assert not any(p.exists() for p in (tmp_path / "a.safetensors", tmp_path / "b.safetensors"))


def test_a_failed_write_leaves_no_partial_files(endpoints, tmp_path, monkeypatch):
    import wiseft_lib.experiment.export as export

    calls = {"n": 0}
    real = export.save_file

    def second_fails(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(export, "save_file", second_fails)
    with pytest.raises(ValueError, match="(?i)cannot write the export .*no space left on( the)? device"):
        export_wiseft(endpoints["ft_path"], tmp_path / "m.safetensors", alpha=0.5)
    assert list(tmp_path.iterdir()) == [], "neither the model nor a temporary file is left behind"
    assert all(not p.exists() for p in export_paths(tmp_path / "m"))
