"""Built-in architectures a card or a config may name without ``trust_code``: ``actlas:NAME``
(``actlas.models.sources.BUILTINS`` says each in a line; ``actlas layers --help`` and docs/models.md
list them).

- ``cifar_resnet``: the CIFAR ResNets of He et al. 2016, section 4.2, at any depth 6n + 2 (``depth``:
  20, 32, 44, 56, 110, ...), option-A shortcuts (no parameters); keys ``conv1``, ``bn1``,
  ``layerS.B.{conv1,bn1,conv2,bn2}``, ``linear``.
- ``cifar10_resnet20``: ``cifar_resnet`` at depth 20, the architecture of
  ``../shared/assets/models/cifar10_resnet20.safetensors``.
- ``vit``: a small vision transformer (patch embedding, CLS token, pre-norm blocks at
  ``blocks.N``, head), whose position embedding is interpolated to any input size, so icons can be
  rendered at a size other than the training size. Token outputs ``(B, 1 + h * w, dim)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError

# --------------------------------------------------------------------------- ResNet-20 (CIFAR)


class _ShortcutA(nn.Module):
    """Option A: subsample by 2 and zero-pad ``pad`` channels on each side (no parameters)."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm; ReLU after the sum with the shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.shortcut = _ShortcutA(planes // 4) if stride != 1 or in_planes != planes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-6n+2 for 32 x 32 inputs: (B, 3, 32, 32) -> logits (B, num_classes)."""

    def __init__(self, blocks: int = 3, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        planes, layers = 16, []
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            stage = []
            for b in range(blocks):
                stage.append(BasicBlock(planes, width, stride if b == 0 else 1))
                planes = width
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(self.pool(x).flatten(1))


def cifar_resnet(depth: int = 20, num_classes: int = 10) -> CifarResNet:
    """ResNet-``depth`` for 32 x 32 inputs: ``depth`` = 6n + 2 (n blocks per stage; 20: 0.27 M parameters)."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ModelError(f"actlas:cifar_resnet takes depth 6n + 2 (20, 32, 44, 56, 110, ...), not {depth!r}")
    return CifarResNet((depth - 2) // 6, num_classes)


def cifar10_resnet20(num_classes: int = 10) -> CifarResNet:
    """ResNet-20 (3 blocks per stage, 0.27 M parameters): ``cifar_resnet`` at depth 20."""
    return cifar_resnet(20, num_classes)


# --------------------------------------------------------------------------- a small ViT


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); (B, T, C) -> (B, T, C)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Vision transformer: (B, 3, H, W) -> logits (B, num_classes) from the CLS token.

    ``blocks.N`` output tokens (B, 1 + (H / patch) * (W / patch), dim): one CLS token, then the
    patch tokens in row-major order.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch: int = 4,
        dim: int = 96,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        num_classes: int = 10,
    ):
        super().__init__()
        self.patch = patch
        self.grid = image_size // patch
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + self.grid**2, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def _pos(self, h: int, w: int) -> torch.Tensor:
        if (h, w) == (self.grid, self.grid):
            return self.pos_embed
        cls, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        grid = grid.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (B, dim, h, w)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B, h * w, dim)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self._pos(h, w)
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def vit(**kwargs) -> ViT:
    """A small ViT; keyword arguments as ``ViT`` (image_size, patch, dim, depth, heads, mlp_ratio, num_classes)."""
    return ViT(**kwargs)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "cifar_resnet": cifar_resnet,
    "cifar10_resnet20": cifar10_resnet20,
    "vit": vit,
}
