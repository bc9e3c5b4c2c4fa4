"""grid: bin a layer's layout into an N x N grid -> ``LAYER/grid-N/cells.npz``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import grid as grid_core
from .. import paths, store
from ..settings import Grid
from .samples import load_samples


def grid(run_dir: str | Path, layer: str, n: int, *, min_count: int = Grid.min_count) -> Path:
    """Bin the layout: per non-empty cell its count, mean activation (direction) and mean attribution.

    ``cells.npz``: ij (K, 2), count (K,), direction (K, C), attribution (K, n_classes), label (K,),
    order/offsets (the samples of each cell), n, min_count.
    """
    samples = load_samples(run_dir, layer)
    coords = np.load(paths.coords(run_dir, layer))
    if len(coords) != len(samples.activation):
        raise store.StoreError(
            f"{paths.coords(run_dir, layer)} has {len(coords)} rows but the shard stores hold "
            f"{len(samples.activation)} samples of {layer}: the layout is from another collect; run layout again"
        )
    n_classes = int(max(samples.attr_class.max() + 1, samples.pred.max() + 1))
    cells = grid_core.grid(
        coords,
        samples.activation,
        samples.attr_class,
        samples.attr_value,
        n,
        min_count=min_count,
        n_classes=n_classes,
    )
    path = paths.cells(paths.grid_dir(run_dir, layer, n))
    paths.save_npz(path, **cells, n=np.int64(n), min_count=np.int64(min_count))
    return path
