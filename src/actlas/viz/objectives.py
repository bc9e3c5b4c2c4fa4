"""Objectives: functions of a layer's activations, one score per image (higher is better)."""

from __future__ import annotations

import numpy as np
import torch


def centre(activation: torch.Tensor) -> torch.Tensor:
    """The activation vector at the centre position: (B, C, H, W) -> (B, C)."""
    return activation[:, :, activation.shape[2] // 2, activation.shape[3] // 2]


# Where an icon's activation is read: at the centre position (a main atlas's cell is a mean of single
# positions), or as the mean over every position, edges avoided (an aligned atlas's cell is a mean of photo
# means: BENCHMARKS.md, bench_align).
POOLS = ("centre", "mean")


def photo_mean(activation: torch.Tensor) -> torch.Tensor:
    """The mean over every position but the edge ones of a map of 5 or more positions a side: (B, C, H, W) ->
    (B, C). What collect keeps of each photo (``actlas.collect.photo_means``), so an icon's pooled activation
    is its photo mean, read the way a photo's is."""
    h, w = activation.shape[2], activation.shape[3]
    m = 1 if min(h, w) >= 5 else 0
    return activation[:, :, m : h - m, m : w - m].mean(dim=(2, 3))


def pooled(activation: torch.Tensor, pool: str = "centre") -> torch.Tensor:
    """The activation an icon is scored on, (B, C, H, W) -> (B, C): ``centre`` or ``mean`` (``POOLS``)."""
    return photo_mean(activation) if pool == "mean" else centre(activation)


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


def whiten_directions(directions: np.ndarray, matrix: np.ndarray | None = None) -> np.ndarray:
    """directions (K, C) -> unit whitened directions (K, C) float32: each row ``matrix @ d`` (the
    regularised inverse covariance, ``actlas.layout.whitening``; None: ``d`` itself), unit norm.

    Row by row, on purpose: a BLAS product's rounding depends on how many rows it is handed
    (OpenBLAS picks its kernel by shape; on the shared MobileNetV2's 96 channels most rows of a
    4-row product differed in their last bits from the same row alone), and the optimisation
    carries a last-bit difference into the icon. A cached icon must be the bytes of a fresh one,
    whichever cells shared its batch.
    """
    rows = np.asarray(directions, dtype=np.float32)
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        w = matrix @ row if matrix is not None else row
        out[i] = w / max(float(np.linalg.norm(w)), 1e-12)
    return out
