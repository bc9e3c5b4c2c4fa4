"""Every example block of docs/models.md loads, from the repository root."""

import re
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from actlas.models.block import ModelDefaultWarning
from actlas.models.load import load_model

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "models.md"
ASSETS = ROOT.parent / "shared" / "assets"


def _examples() -> dict[str, object]:
    text = DOC.read_text()
    found = re.findall(r"<!-- example: ([\w-]+) -->\s*```yaml\n(.*?)```", text, flags=re.S)
    return {name: yaml.safe_load(body)["model"] for name, body in found}


EXAMPLES = _examples()


def test_every_source_has_an_example():
    assert set(EXAMPLES) == {
        "card",
        "builtin-card",
        "builtin",
        "vit-card",
        "torchvision",
        "timm",
        "export",
        "factory",
        "huggingface",
    }


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_loads(name, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("ACTLAS_TRUST_CODE", raising=False)
    block = EXAMPLES[name]
    block = dict(block) if isinstance(block, dict) else {"source": block}
    if "../shared" in repr(block) and not ASSETS.exists():
        pytest.skip("shared assets not found")
    if name == "timm":
        pytest.importorskip("timm")
    if name in ("vit-card", "factory") and not (ROOT / "config" / "models" / "cifar10_vit.safetensors").exists():
        pytest.skip("the ViT weights are not trained yet: scripts/train_vit.py")
    if name == "export":  # the doc's export recipe, on the tiny model (the shared MobileNetV2: test_models)
        from tiny_models import TinyNet

        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.export.export(TinyNet().eval(), (torch.zeros(2, 3, 224, 224),), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(tmp_path / "mobilenet_v2.pt2"))
        block["source"] = f"export:{tmp_path / 'mobilenet_v2.pt2'}"
    if name == "huggingface":  # a stand-in with the same output form (transformers is not installed)
        block["source"] = "tiny_models:dict_net"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelDefaultWarning)  # every example declares what it needs
        model, spec = load_model(block)
    x = torch.rand(2, 3, *spec.input_size)
    with torch.no_grad():
        logits = model(spec.normalize(x))
    assert isinstance(logits, torch.Tensor) and logits.shape[0] == 2
    assert spec.categories, "every example has class names"
    assert set(spec.to_json()["model"]) >= {"source", "input_size", "mean", "std", "trust_code"}
