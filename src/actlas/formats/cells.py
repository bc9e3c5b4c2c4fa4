"""``cells.npz``: the non-empty cells of an atlas folder's grid (``Cells``; ``actlas.grid`` makes them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MissingError
from .atomic import PathLike, load_npz, save_npz


@dataclass
class Cells:
    """The non-empty cells of an N x N grid (K of them) and the samples of each.

    ``ij`` (K, 2) int32 (column, row), ``count`` (K,) int64, ``direction`` (K, C) float32 mean
    activation, ``attribution`` (K, n_classes) float32 mean attribution, ``label`` (K,) int32 its
    argmax over the classes the cell's samples recorded (-1: none recorded one), ``order`` (M,) int64
    sample rows grouped by cell and ``offsets`` (K + 1,) int64 into ``order``; ``n`` cells per side, ``min_count`` the
    fewest samples a kept cell holds.
    """

    ij: np.ndarray
    count: np.ndarray
    direction: np.ndarray
    attribution: np.ndarray
    label: np.ndarray
    order: np.ndarray
    offsets: np.ndarray
    n: int
    min_count: int

    def __len__(self) -> int:
        return len(self.count)

    def members(self, k: int) -> np.ndarray:
        """Sample rows of cell ``k``."""
        return self.order[self.offsets[k] : self.offsets[k + 1]]


# the arrays of cells.npz, in the order they are written
KEYS = ("ij", "count", "direction", "attribution", "label", "order", "offsets", "n", "min_count")


def write_cells(path: PathLike, cells: Cells) -> Path:
    """Write ``cells.npz``: the arrays of ``Cells`` and its ``n`` and ``min_count`` as int64 scalars."""
    arrays = {k: getattr(cells, k) for k in KEYS}
    arrays["n"], arrays["min_count"] = np.int64(cells.n), np.int64(cells.min_count)
    return save_npz(path, **arrays)


def read_cells(path: PathLike) -> Cells:
    """``cells.npz`` as ``Cells``; ``MissingError`` naming the stage that makes it."""
    if not Path(path).exists():
        raise MissingError(f"{path} not found: run grid (or the class atlas) for its folder first")
    data = load_npz(path)
    return Cells(
        **{k: data[k] for k in KEYS if k not in ("n", "min_count")}, n=int(data["n"]), min_count=int(data["min_count"])
    )


def read_directions(path: PathLike) -> np.ndarray:
    """The cells' directions alone, (K, C) float32 (what render needs)."""
    if not Path(path).exists():
        raise MissingError(f"{path} not found: run grid (or the class atlas) for its folder first")
    with np.load(path, allow_pickle=False) as f:
        return f["direction"]
