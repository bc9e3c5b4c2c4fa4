"""Transformation robustness: random pad, jitter, scale and rotation, a separate draw per image.

All random parameters are drawn up front (``draw``), one row per image and step, from a seed per
image, so an image gets the same perturbations whether it is rendered alone or in a batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def scales(scale: float = 0.1) -> list[float]:
    """The 11 scale factors a draw picks from, 1 - scale to 1 + scale (Lucid's, at 0.1: as float32,
    the very values of its ``1 + (i - 5) / 50``)."""
    return [1 + (i - 5) * scale / 5 for i in range(11)]


def angles(rotate: int = 10) -> list[int]:
    """The angles a draw picks from, degrees: -rotate..rotate, and 0 five times more (Lucid's, at 10)."""
    return list(range(-rotate, rotate + 1)) + 5 * [0]


def draw(
    seeds: list[int], steps: int, jitter: int = 8, jitter2: int = 4, scale: float = 0.1, rotate: int = 10
) -> np.ndarray:
    """Random transform parameters, shape (B, steps, 5): dx, dy (pixels), scale (within 1 +- ``scale``),
    angle (degrees, within +- ``rotate``), unused."""
    out = np.zeros((len(seeds), steps, 5), dtype=np.float32)
    for b, seed in enumerate(seeds):
        rng = np.random.default_rng([int(seed), 7])
        out[b, :, 0] = rng.integers(-jitter, jitter + 1, steps) + rng.integers(-jitter2, jitter2 + 1, steps)
        out[b, :, 1] = rng.integers(-jitter, jitter + 1, steps) + rng.integers(-jitter2, jitter2 + 1, steps)
        out[b, :, 2] = rng.choice(scales(scale), steps)
        out[b, :, 3] = rng.choice(angles(rotate), steps)
    return out


def pad(x: torch.Tensor, amount: int = 12, value: float = 0.5) -> torch.Tensor:
    """Constant padding on every side: (B, 3, H, W) -> (B, 3, H + 2a, W + 2a)."""
    return F.pad(x, (amount,) * 4, mode="constant", value=value)


def affine(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Per-image translate/scale/rotate of x (B, 3, H, W) with params (B, 5) from ``draw``; same size out."""
    b, _, h, w = x.shape
    dx, dy, scale, angle = params[:, 0], params[:, 1], params[:, 2], params[:, 3] * (math.pi / 180)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, 2 * dx / w], 1), torch.stack([sin, cos, 2 * dy / h], 1)], 1).to(
        x.dtype
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def standard(x: torch.Tensor, params: torch.Tensor, pad_amount: int = 12) -> torch.Tensor:
    """Lucid's standard robustness: pad, then jitter, scale, rotate and jitter again (one resample)."""
    return affine(pad(x, pad_amount), params)
