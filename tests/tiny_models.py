"""Tiny real models for tests: random weights under a fixed seed, 32-pixel inputs."""

from types import SimpleNamespace

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv -> relu -> maxpool -> conv -> relu -> global average -> linear (10 classes)."""

    def __init__(self, seed: int = 0, classes: int = 10):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def tiny_net() -> nn.Module:
    """The factory actlas loads as ``tiny_models:tiny_net``."""
    return TinyNet()


class DictNet(nn.Module):
    """TinyNet whose forward returns a dict, like a Hugging Face ModelOutput: {"features", "logits"}."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.net = TinyNet(seed)
        self.config = SimpleNamespace(id2label={i: f"class {i}" for i in range(10)})  # as Hugging Face models

    def forward(self, x):
        h = self.net.pool(self.net.features(x)).flatten(1)
        return {"features": h, "logits": self.net.fc(h)}


class TupleNet(TinyNet):
    """TinyNet whose forward returns (logits, pooled features)."""

    def forward(self, x):
        h = self.pool(self.features(x)).flatten(1)
        return self.fc(h), h


class ChannelsLastNet(nn.Module):
    """conv -> permute to (B, H, W, C) -> LayerNorm over channels (``norm``, a channels-last layer) -> head."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Conv2d(3, 12, 4, stride=4)  # 32 -> 8
        self.norm = nn.LayerNorm(12)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        h = self.norm(self.stem(x).permute(0, 2, 3, 1))  # (B, 8, 8, 12)
        return self.fc(h.mean((1, 2)))


def tiny_vit() -> nn.Module:
    """A tiny ViT (patch 8 on 32 px: a 4 x 4 grid, one CLS token, dim 16, 2 blocks)."""
    from actlas.models.archs import ViT

    torch.manual_seed(0)
    return ViT(image_size=32, patch=8, dim=16, depth=2, heads=2, num_classes=10)


def dict_net() -> nn.Module:
    return DictNet()


def tuple_net() -> nn.Module:
    return TupleNet()


def channels_last_net() -> nn.Module:
    return ChannelsLastNet()


def hf_vit() -> nn.Module:
    """A tiny Hugging Face ViTForImageClassification (random weights, 32 px, patch 8, 10 labels);
    its forward returns an ImageClassifierOutput. Needs ``transformers``."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    labels = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    config = ViTConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=8,
        num_labels=10,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    return ViTForImageClassification(config)
