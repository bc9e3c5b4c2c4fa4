"""align_atlas: compose one aligned map's icons -> ``RUN/aligned/NAME/MAP/grid-N/`` atlas files.

The atlas stage's own ``atlas_folder`` (atlas PNGs, icons, examples, atlas.json), on the map's photos
(``actlas.data.samples.load_photo_means``: an example is a whole photo), with what an aligned atlas adds:
its alignment's record and measures at this grid size (``actlas.formats.atlas.AlignedMeta``) and, per cell
and per other map, the share of its photos that land in the same or a neighbouring cell there (``near``)
and the cells they land in (``partners``: what the viewer highlights).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import paths
from ..align import Matching, cell_agreement
from ..alignments import parse_map
from ..data.samples import load_photo_means
from ..formats.align import read_align_record, read_aligned_coords
from ..formats.atlas import AlignedMeta
from ..formats.cells import Cells, read_cells
from ..grid import bin_coords
from ..settings import Atlas, Render, Run
from .align import by_photo, pair_measure
from .atlas import atlas_folder

EXAMPLE_EXTENT = 1.0  # a point is a whole photo: its example is the photo as the network saw it


def partner_cells(coords_a: np.ndarray, coords_b: np.ndarray, m: Matching, cells: Cells) -> list[list[list[int]]]:
    """For each cell of ``cells`` (map A's n x n grid), where its matched photos fall in map B's n x n grid:
    [[i, j, photos], ...], most photos first (ties by row, then column)."""
    n = cells.n
    ca = bin_coords(coords_a[m.a], n).astype(np.int64)
    cb = bin_coords(coords_b[m.b], n).astype(np.int64)
    key = (ca[:, 1] * n + ca[:, 0]) * (n * n) + cb[:, 1] * n + cb[:, 0]
    keys, counts = np.unique(key, return_counts=True)
    by_cell: dict[int, list[list[int]]] = {}
    for k, c in zip(keys.tolist(), counts.tolist()):
        a, b = divmod(k, n * n)
        by_cell.setdefault(a, []).append([b % n, b // n, c])
    out = []
    for i, j in cells.ij.tolist():
        found = by_cell.get(j * n + i, [])
        out.append(sorted(found, key=lambda p: (-p[2], p[1], p[0])))
    return out


def align_atlas(
    run_dir: str | Path,
    name: str,
    map_id: str,
    n: int,
    model,
    *,
    cells_per_job: int = Render.cells_per_job,
    density: bool = Atlas.density,
    n_examples: int = Atlas.n_examples,
    min_cell: int = Atlas.min_cell,
    seed: int = Run.seed,
) -> Path:
    """Compose aligned map ``map_id`` (``LAYER`` or ``LAYER@MODEL``; ``model`` is that map's model) of alignment
    ``name`` at grid ``n`` into its atlas files; ``atlas.json`` carries the alignment's measures."""
    folder = paths.aligned_grid_dir(run_dir, name, map_id, n)
    layer, model_name = parse_map(map_id)
    samples = load_photo_means(run_dir, layer, model_name=model_name)
    aligned = read_aligned_coords(paths.align_coords(run_dir, name))
    record = read_align_record(paths.align_json(run_dir, name))
    cells = read_cells(paths.cells(folder))
    mine, my_photos = aligned.of(map_id)
    fields: list[dict] = [{"near": {}, "partners": {}} for _ in range(len(cells))]
    pairs = []
    for other in aligned.maps:
        if other == map_id:
            continue
        theirs, their_photos = aligned.of(other)
        m = by_photo(my_photos, their_photos)
        pairs.append(pair_measure((map_id, other), mine, theirs, m, n, seed))
        agreement = cell_agreement(mine, theirs, m, n, seed=seed)
        share = {(int(i), int(j)): float(s) for (i, j), s in zip(agreement["ij"], agreement["share"])}
        for c, found in enumerate(partner_cells(mine, theirs, m, cells)):
            i, j = (int(v) for v in cells.ij[c])
            if (i, j) in share:
                fields[c]["near"][other] = round(share[(i, j)], 4)
            fields[c]["partners"][other] = found
    (trust,) = [t for t in record.trust if t.map == map_id]
    meta = AlignedMeta(
        name=name,
        map=map_id,
        model=model_name,
        maps=list(aligned.maps),
        alignment=record.alignment,
        pairs=pairs,
        trust=trust,
    )
    atlas_folder(
        folder,
        run_dir,
        layer,
        model,
        cells_per_job=cells_per_job,
        density=density,
        n_examples=n_examples,
        example_extent=EXAMPLE_EXTENT,
        min_cell=min_cell,
        samples=samples,
        aligned=meta,
        cell_fields=fields,
    )
    return paths.atlas_png(folder)
