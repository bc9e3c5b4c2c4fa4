"""grid: bin a layer's layout into an N x N grid -> ``LAYER/grid-N/cells.npz``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from .. import grid as grid_core
from .. import paths
from ..data.samples import load_samples
from ..errors import StoreError
from ..formats.cells import write_cells
from ..formats.layout import read_coords
from ..settings import Grid


def grid(run_dir: str | Path, layer: str, n: int, *, min_count: int = Grid.min_count) -> Path:
    """Bin the layout: per non-empty cell its count, mean activation (direction) and mean attribution
    (``actlas.grid.Cells``, written as ``cells.npz``). Without attribution (a model with ``head: none``)
    a cell's label is the most common label of its nearest photos (``actlas.grid.photo_labels``)."""
    samples = load_samples(run_dir, layer)
    coords = read_coords(paths.coords(run_dir, layer))
    if len(coords) != len(samples.activation):
        raise StoreError(
            f"{paths.coords(run_dir, layer)} has {len(coords)} rows but the shard stores hold "
            f"{len(samples.activation)} samples of {layer}: the layout is from another collect; run layout again"
        )
    attributed = grid_core.attributed(samples.attr_class, samples.attr_value)
    n_classes = int(max(samples.attr_class.max() + 1, samples.pred.max() + 1))
    if not attributed:
        unattributed_note(layer, samples)
        n_classes = int(max(samples.label.max() + 1, 1))
    cells = grid_core.grid(
        coords, samples.activation, samples.attr_class, samples.attr_value, n, min_count=min_count, n_classes=n_classes
    )
    if not attributed:  # labelled by the labels of the cells' nearest photos instead
        cells = dataclasses.replace(
            cells, label=grid_core.photo_labels(cells, samples.activation, samples.label[samples.image])
        )
    return write_cells(paths.cells(paths.grid_dir(run_dir, layer, n)), cells)


def unattributed_note(layer: str, samples) -> None:
    """Say why a layer of a model with a class head has no attribution labels (stderr, one line)."""
    if (samples.attr_class >= 0).any():
        print(
            f"actlas: {layer}: the attribution of every sampled position is 0 (its positions never reach the logits, "
            "as a transformer's last block whose head reads only the class token): cells are labelled by their "
            "photos' labels; pick an earlier layer for attribution labels",
            file=sys.stderr,
        )
