"""Model sources (issue 29): weights asked for, built-in architectures at any depth, ImageNet synsets,
fixed input sizes read from the model, and ``transformers:FOLDER``. Tiny real models, no network."""

import json
from pathlib import Path

import pytest
import torch

from actlas.errors import ModelError
from actlas.models.load import load_model
from actlas.models.sources import check_model, label_space

ROOT = Path(__file__).resolve().parents[1]
CIFAR = {
    "input_size": [32, 32],
    "resize": 0,
    "mean": 0.5,
    "std": 0.25,
    "labels": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


# --------------------------------------------------------------------------- weights asked for


def test_parse_time_check_refuses_a_source_without_weights_reading_only_data(tmp_path):
    with pytest.raises(ModelError, match="weights: random") as err:
        check_model("torchvision:resnet18")
    assert "torchvision:resnet18:DEFAULT" in _one_line(err)
    check_model({"source": "torchvision:resnet18", "weights": "random:3"})
    check_model("torchvision:resnet18:IMAGENET1K_V1")
    with pytest.raises(ModelError, match="IMAGENET1K_V1"):
        check_model("torchvision:resnet18:V9")
    with pytest.raises(ModelError, match="integer SEED"):
        check_model({"source": "torchvision:resnet18", "weights": "random:x"})
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"architecture": "actlas:cifar10_resnet20", **CIFAR}))
    with pytest.raises(ModelError, match="has no weights"):
        check_model(str(card))
    check_model({"source": str(card), "weights": "random"})


def test_random_seeds_differ_and_leave_the_callers_random_state_alone():
    block = {"source": "actlas:cifar_resnet", "kwargs": {"depth": 8}, **CIFAR}
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a, _ = load_model({**block, "weights": "random"})
    assert torch.equal(torch.rand(3), expected)
    b, _ = load_model({**block, "weights": "random:1"})
    x = torch.rand(2, 3, 32, 32)
    assert not torch.allclose(a(x), b(x))


@pytest.mark.slow  # a full-size ViT-B/16 or transformers
def test_random_weights_are_usable_zero_layers_redrawn_and_batchnorm_calibrated():
    model, spec = load_model({"source": "torchvision:vit_b_16", "weights": "random"})
    assert model.heads.head.weight.abs().sum() > 0  # torchvision zero-initialises it: every logit 0
    net, _ = load_model({"source": "actlas:cifar_resnet", "kwargs": {"depth": 8}, "weights": "random", **CIFAR})
    assert not torch.equal(net.bn1.running_var, torch.ones_like(net.bn1.running_var))  # set from a batch


# --------------------------------------------------------------------------- built-in architectures


def test_the_cifar_resnet_builtin_takes_its_depth_without_trust_code():
    model, spec = load_model({"source": "actlas:cifar_resnet", "kwargs": {"depth": 32}, "weights": "random", **CIFAR})
    names = dict(model.named_modules())
    assert "layer3.4" in names and "layer3.5" not in names  # 5 blocks a stage: 6 * 5 + 2 = 32
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ModelError, match=r"depth 6n \+ 2") as err:
        load_model({"source": "actlas:cifar_resnet", "kwargs": {"depth": 21}, "weights": "random"})
    _one_line(err)


def test_an_unknown_builtin_names_the_route_and_lists_them():
    with pytest.raises(ModelError, match=r"actlas:cifar_resnet with kwargs \{depth: 56\}") as err:
        check_model({"source": "actlas:cifar10_resnet56", "weights": "random"})
    assert "actlas:vit" in _one_line(err)


def test_kwargs_the_resnet20_card_does_not_take_fail_in_one_line_naming_the_route():
    card = str(ROOT / "config" / "models" / "cifar10_resnet20.json")
    with pytest.raises(ModelError, match="cifar_resnet with kwargs") as err:
        load_model({"source": card, "kwargs": {"blocks": 9}, "weights": "random"})
    assert "blocks" in _one_line(err)


# --------------------------------------------------------------------------- label spaces and input sizes


def test_imagenet_class_names_in_order_get_their_synsets():
    import torchvision

    from actlas.models.imagenet import imagenet1k_synsets

    synsets, categories = label_space("torchvision:resnet18:DEFAULT")
    assert len(categories) == 1000 and synsets == imagenet1k_synsets() and synsets[0] == "n01440764"
    names = list(torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"])
    assert label_space({"source": "tiny_models:tiny_net", "labels": names})[0] == synsets
    assert label_space({"source": "tiny_models:tiny_net", "labels": names[::-1]})[0] == ()


def test_timm_synsets_equal_actlas_copy():
    timm = pytest.importorskip("timm")
    from actlas.models.imagenet import imagenet1k_synsets

    assert tuple(timm.data.ImageNetInfo("imagenet-1k").label_names()) == imagenet1k_synsets()


@pytest.mark.slow  # a full-size ViT-B/16 or transformers
def test_a_declared_input_size_a_fixed_network_cannot_take_fails_in_one_line():
    with pytest.raises(ModelError, match=r"takes only 224 x 224 inputs") as err:
        load_model({"source": "torchvision:vit_b_16", "weights": "random", "input_size": [96, 96]})
    _one_line(err)
    _, spec = load_model({"source": "torchvision:vit_b_16", "weights": "random"})
    assert spec.fixed_size == (224, 224) and spec.input_size == (224, 224)
    _, spec = load_model({"source": "actlas:cifar_resnet", "kwargs": {"depth": 8}, "weights": "random", **CIFAR})
    assert spec.fixed_size is None


# --------------------------------------------------------------------------- Hugging Face transformers


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    """A tiny ViTForImageClassification saved with save_pretrained (config and weights): 32 px, 10 labels."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=8,
        num_labels=10,
        id2label=dict(enumerate(CIFAR["labels"])),
        label2id={n: i for i, n in enumerate(CIFAR["labels"])},
    )
    torch.manual_seed(7)  # not weights: random's seed 0, so the saved weights differ from its draw
    folder = tmp_path_factory.mktemp("hf") / "vit"
    transformers.ViTForImageClassification(config).eval().save_pretrained(str(folder))
    return folder


@pytest.mark.slow  # a full-size ViT-B/16 or transformers
def test_a_transformers_folder_loads_with_its_labels_and_fixed_size(hf_folder):
    source = f"transformers:{hf_folder}"
    assert label_space(source)[1] == tuple(CIFAR["labels"])  # read from config.json: no model built
    model, spec = load_model({"source": source, "mean": 0.5, "std": 0.5})
    assert spec.categories == tuple(CIFAR["labels"]) and spec.fixed_size == (32, 32)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    random, _ = load_model({"source": source, "weights": "random", "mean": 0.5, "std": 0.5})
    x = torch.rand(1, 3, 32, 32)
    assert not torch.allclose(model(x), random(x))  # the saved weights, not a fresh draw


# --------------------------------------------------------------------------- offline downloads


@pytest.mark.parametrize(
    "block",
    [
        {"source": "timm:test_vit", "kwargs": {"pretrained": True}},
        {"source": "transformers:google/vit-base-patch16-224"},
    ],
    ids=["timm", "transformers"],
)
def test_an_offline_hub_download_fails_in_one_line_naming_hf_download_and_the_cache(block, tmp_path, monkeypatch):
    """No network (HTTPS to a closed port, HF_HUB_OFFLINE) and an empty Hugging Face cache."""
    pytest.importorskip("timm" if block["source"].startswith("timm") else "transformers")
    for key in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(key, "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # both read once, at import
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="hf download") as err:
        load_model(block)
    assert str(tmp_path / "hf" / "hub") in _one_line(err)
