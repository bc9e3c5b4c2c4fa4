"""The model zoo's architectures, built with random weights and their real preprocessing metadata.

Nothing here downloads: torchvision's preprocessing and class names come from its weights enum's
metadata (``transforms()``, ``meta``), timm's from the model's ``pretrained_cfg``, and the
Hugging Face models are built from tiny configs with the preprocessing their hub checkpoints
declare (``preprocessor_config.json``), scaled to the tiny input.

Random weights are always seeded: a source that built a random network on every load would give
collect and render two different networks (actlas refuses a source without weights unless
``weights: random``, which is seeded). torchvision and timm models are saved once to a safetensors
file and loaded through their real sources (``torchvision:NAME`` or ``timm:NAME`` with
``weights: FILE``), which also covers loading a local weights file; Hugging Face models are built by
the factories below (``zoo_models:hf_*``, which need ``trust_code``; ``transformers:FOLDER`` is
covered by tests/test_sources.py).

Two things make a freshly initialised network unlike a trained one in ways that break an atlas, and
are undone here: BatchNorm's running statistics (mean 0, variance 1) let a deep network's
activations vanish in eval mode (``calibrate_batchnorm``), and torchvision zero-initialises a ViT's
classifier (every logit 0, every attribution 0).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
SYNSETS = ASSETS / "imagenet" / "synsets.txt"


def seeded(build, seed: int = 0) -> nn.Module:
    """``build()`` under ``torch.manual_seed(seed)``, in eval mode."""
    torch.manual_seed(seed)
    return build().eval()


def calibrate_batchnorm(model: nn.Module, size: int, seed: int = 0, n: int = 8) -> nn.Module:
    """Set every BatchNorm's running statistics to those of ``n`` standard-normal (already normalised) images
    of ``size`` px, in place; returns the model in eval mode.

    A freshly initialised network keeps running mean 0 and variance 1, so in eval mode a deep one can
    shrink its activations geometrically: a random torchvision efficientnet_b0 reaches 4e-11 at
    ``features.6``, below float16's range, where collect stores them (as 0). Calibrated, every layer
    keeps a unit scale, as a trained network's does.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: one batch sets the statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed)))
    for m in norms:
        m.momentum = 0.1
    return model.eval()


def save_weights(model: nn.Module, path: Path) -> Path:
    """Save ``model``'s state dict as safetensors (shared tensors cloned) -> ``path``."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


# --------------------------------------------------------------------------- torchvision


def torchvision_random(name: str, size: int = 224, **kwargs) -> nn.Module:
    """torchvision ``name`` with seeded random weights (no download), BatchNorm calibrated at ``size`` px.

    torchvision initialises a ViT's classifier to zeros (every logit 0, every attribution 0): here it is
    drawn like the other linear layers instead (normal, std 0.02).
    """
    import torchvision

    model = seeded(lambda: torchvision.models.get_model(name, weights=None, **kwargs))
    head = getattr(getattr(model, "heads", None), "head", None)
    if isinstance(head, nn.Linear) and not head.weight.any():
        with torch.no_grad():
            head.weight.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    return calibrate_batchnorm(model, size)


def torchvision_preprocessing(name: str) -> dict:
    """The model block's preprocessing and labels from torchvision's DEFAULT weights metadata (read, never
    downloaded): input_size, resize, mean, std, labels; synsets from the shared ImageNet list (torchvision
    gives class names in the standard ImageNet order, but no WordNet ids)."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    t = weights.transforms()
    return {
        "input_size": [t.crop_size[0]] * 2,
        "resize": t.resize_size[0],
        "mean": list(t.mean),
        "std": list(t.std),
        "labels": list(weights.meta["categories"]),
        "synsets": str(SYNSETS),
    }


# --------------------------------------------------------------------------- timm


def timm_random(name: str, **kwargs) -> nn.Module:
    """timm ``name`` with seeded random weights (``pretrained=False``: no download), BatchNorm calibrated at
    its pretrained config's input size."""
    import timm

    model = seeded(lambda: timm.create_model(name, pretrained=False, **kwargs))
    size = timm.data.resolve_model_data_config(model)["input_size"][1]
    return calibrate_batchnorm(model, size)


# --------------------------------------------------------------------------- Hugging Face transformers

HF_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# What the hub checkpoints' preprocessor_config.json declare, at 224 px (google/vit-base-patch16-224,
# facebook/dinov2-base, openai/clip-vit-base-patch32); scaled to a tiny model's input by ``hf_preprocessing``.
HF_PREPROCESSING = {
    "vit": {"resize": 224, "crop": 224, "mean": [0.5] * 3, "std": [0.5] * 3},  # resizes to 224 x 224, no crop
    "dinov2": {"resize": 256, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "clip": {
        "resize": 224,
        "crop": 224,
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
    },
}


def hf_preprocessing(family: str, image_size: int) -> dict:
    """Model-block preprocessing of a Hugging Face family at ``image_size`` (the 224 px recipe, scaled)."""
    p = HF_PREPROCESSING[family]
    return {
        "input_size": [image_size] * 2,
        "resize": round(p["resize"] * image_size / p["crop"]),
        "mean": p["mean"],
        "std": p["std"],
    }


def hf_vit() -> nn.Module:
    """A tiny ViTForImageClassification: 128 px, patch 16 (an 8 x 8 grid and a CLS token), width 32, 2 layers,
    10 labels in ``config.id2label``. Fixed input size (position embeddings are not interpolated by default)."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=128,
        patch_size=16,
        num_labels=len(HF_LABELS),
        id2label=dict(enumerate(HF_LABELS)),
        label2id={n: i for i, n in enumerate(HF_LABELS)},
    )
    return seeded(lambda: ViTForImageClassification(config))


def hf_dinov2() -> nn.Module:
    """A tiny Dinov2Model (no classifier: its forward gives last_hidden_state and pooler_output): 56 px,
    patch 14 (a 4 x 4 grid and a CLS token), width 32, 2 layers. Interpolates its position embeddings."""
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=56, patch_size=14
    )
    return seeded(lambda: Dinov2Model(config))


def hf_clip_vision() -> nn.Module:
    """A tiny CLIPVisionModel (CLIP's image tower, no classifier): 128 px, patch 16 (an 8 x 8 grid and a CLS
    token), width 32, 2 layers. Fixed input size unless called with interpolate_pos_encoding=True."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=128, patch_size=16
    )
    return seeded(lambda: CLIPVisionModel(config))


# --------------------------------------------------------------------------- small real networks for the findings


class ScaledNet(nn.Module):
    """TinyNet (tests/tiny_models.py) whose ``scaled`` layer multiplies its features by ``scale``, and whose
    head divides it out again: the same logits, activations at any magnitude (float16 holds 6e-8 to 65504)."""

    def __init__(self, scale: float):
        super().__init__()
        from tiny_models import TinyNet

        self.net = TinyNet()
        self.scale = scale
        self.scaled = nn.Identity()

    def forward(self, x):
        h = self.scaled(self.net.features(x) * self.scale) / self.scale
        return self.net.fc(self.net.pool(h).flatten(1))


def scaled_net(scale: float = 1e-9) -> nn.Module:
    return ScaledNet(scale).eval()


# --------------------------------------------------------------------------- a trained encoder without logits

ROOT = Path(__file__).resolve().parents[1]
VIT_CARD = ROOT / "config" / "models" / "cifar10_vit.json"


def cifar10_vit_encoder() -> nn.Module:
    """The CIFAR-10 ViT of ``config/models/cifar10_vit.json`` (trained here: 63.1% top-1 on cifar10-test) with its
    classifier removed: its forward gives the CLS token after the final norm, (B, 64), and no logits, as a
    self-supervised encoder would. Weights loaded here (the card's safetensors), then ``head`` becomes Identity."""
    import json

    from safetensors.torch import load_file

    from actlas.models.archs import vit

    card = json.loads(VIT_CARD.read_text())
    model = vit(**card["kwargs"])
    model.load_state_dict(load_file(str(VIT_CARD.parent / card["weights"])))
    model.head = nn.Identity()
    return model.eval()


CIFAR_PREPROCESSING = {
    "input_size": [32, 32],
    "resize": 0,
    "mean": [0.4914, 0.4822, 0.4465],
    "std": [0.247, 0.2435, 0.2616],
}
