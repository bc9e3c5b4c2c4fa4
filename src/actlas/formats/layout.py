"""A layer's layout files: ``coords.npy`` (n, 2) float32 in [0, 1], ``whiten.npy`` (C, C) float32 and
``layout.json`` (the layout's parameters, backend and timings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MissingError
from .atomic import PathLike, load_npy, read_json, save_npy, write_json


def write_coords(path: PathLike, coords: np.ndarray) -> Path:
    """``coords.npy``: one (x, y) in [0, 1] per sample, (n, 2) float32."""
    return save_npy(path, coords)


def read_coords(path: PathLike) -> np.ndarray:
    """``coords.npy`` (n, 2); ``MissingError`` naming the stage that makes it."""
    if not Path(path).exists():
        raise MissingError(f"{path} not found: run layout for its layer first (actlas layout, or the workflow)")
    return load_npy(path)


def write_whitening(path: PathLike, matrix: np.ndarray) -> Path:
    """``whiten.npy``: the render whitening of a layer, (C, C) float32."""
    return save_npy(path, matrix)


def read_whitening(path: PathLike) -> np.ndarray:
    """``whiten.npy`` (C, C); ``MissingError`` naming the stage that makes it."""
    if not Path(path).exists():
        raise MissingError(f"{path} not found: run whitening for its layer first (actlas whitening, or the workflow)")
    return load_npy(path)


@dataclass
class LayoutInfo:
    """``layout.json``: how a layer was laid out.

    ``backend`` (cuml or umap-learn) and ``reason`` (why), ``seconds`` of UMAP and ``total_seconds``
    of the stage, the samples and channels laid out, the layout parameters, and ``extra`` (the
    neighbour search umap-learn used: ``knn``, ``knn_seconds``).
    """

    backend: str
    reason: str
    seconds: float
    samples: int
    channels: int
    n_neighbors: int
    min_dist: float
    metric: str
    pca: int
    whiten: bool
    seed: int
    total_seconds: float
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        head = {"backend": self.backend, "reason": self.reason, "seconds": self.seconds, **self.extra}
        rest = {
            k: getattr(self, k)
            for k in (
                "samples",
                "channels",
                "n_neighbors",
                "min_dist",
                "metric",
                "pca",
                "whiten",
                "seed",
                "total_seconds",
            )
        }
        return {**head, **rest}

    @classmethod
    def from_json(cls, data: dict) -> LayoutInfo:
        names = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(**{k: data.get(k) for k in names}, extra={k: v for k, v in data.items() if k not in names})


def write_layout_info(path: PathLike, info: LayoutInfo) -> Path:
    return write_json(path, info.to_json())


def read_layout_info(path: PathLike) -> LayoutInfo:
    if not Path(path).exists():
        raise MissingError(f"{path} not found: run layout for its layer first (actlas layout, or the workflow)")
    return LayoutInfo.from_json(read_json(path))
