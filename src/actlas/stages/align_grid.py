"""align_grid: bin one aligned map into an N x N grid -> ``RUN/aligned/NAME/MAP/grid-N/cells.npz``.

The aligned map's points are its photos (``actlas.data.samples.load_photo_means``) at the coords the align
stage gave them; the cells are a main atlas's (``actlas.grid``): count, mean activation, mean attribution.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .. import grid as grid_core
from .. import paths
from ..alignments import parse_map
from ..data.samples import load_photo_means
from ..errors import StoreError
from ..formats.align import read_aligned_coords
from ..formats.cells import write_cells
from ..settings import Grid
from .grid import unattributed_note


def align_grid(run_dir: str | Path, name: str, map_id: str, n: int, *, min_count: int = Grid.min_count) -> Path:
    """Bin map ``map_id`` (``LAYER`` or ``LAYER@MODEL``) of alignment ``name`` -> ``cells.npz`` (``Cells``)."""
    layer, model = parse_map(map_id)
    samples = load_photo_means(run_dir, layer, model_name=model)
    coords, photos = read_aligned_coords(paths.align_coords(run_dir, name)).of(map_id)
    if not np.array_equal(photos, samples.image):
        raise StoreError(
            f"{paths.align_coords(run_dir, name)} holds {len(photos)} photos of {map_id}, the shard stores "
            f"{len(samples.image)} other ones: the alignment is from another collect; run align again"
        )
    attributed = grid_core.attributed(samples.attr_class, samples.attr_value)
    top = max(samples.attr_class.max(), samples.pred.max()) if attributed else max(samples.label.max(), 0)
    n_classes = int(top + 1)
    cells = grid_core.grid(
        coords, samples.activation, samples.attr_class, samples.attr_value, n, min_count=min_count, n_classes=n_classes
    )
    if not attributed:  # labelled by the labels of the cells' nearest photos instead (see stages.grid)
        unattributed_note(map_id, samples)
        cells = dataclasses.replace(
            cells, label=grid_core.photo_labels(cells, samples.activation, samples.label[samples.image])
        )
    return write_cells(paths.cells(paths.aligned_grid_dir(run_dir, name, map_id, n)), cells)
