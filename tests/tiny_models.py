"""Tiny real models for tests: random weights under a fixed seed, 32-pixel inputs."""

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv -> relu -> maxpool -> conv -> relu -> global average -> linear (10 classes)."""

    def __init__(self, seed: int = 0, classes: int = 10):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def tiny_net() -> nn.Module:
    """The factory actlas loads as ``tiny_models:tiny_net``."""
    return TinyNet()
