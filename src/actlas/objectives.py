"""Objectives: functions of a layer's activations, one score per image (higher is better)."""

from __future__ import annotations

import torch


def centre(activation: torch.Tensor) -> torch.Tensor:
    """The activation vector at the centre position: (B, C, H, W) -> (B, C)."""
    return activation[:, :, activation.shape[2] // 2, activation.shape[3] // 2]


def direction_cossim(h: torch.Tensor, direction: torch.Tensor, power: float = 2.0) -> torch.Tensor:
    """dot(h, v) * max(cos(h, v), 0.1) ** power for each row: h, direction (B, C) -> (B,).

    ``direction`` rows should have unit norm. The cosine term (Lucid's
    ``direction_neuron_cossim``) rewards pointing along v, not just growing large.
    """
    dot = (h * direction).sum(1)
    cos = dot / (h.norm(dim=1) * direction.norm(dim=1) + 1e-4)
    return dot * cos.clamp(min=0.1) ** power


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity (B, C), (B, C) -> (B,)."""
    return torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-8)
