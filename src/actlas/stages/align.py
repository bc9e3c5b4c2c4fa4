"""align: lay two or more maps out together -> ``RUN/aligned/NAME/coords.npz`` and ``align.json``.

A map is one layer of the run's model or of another model collected over the same shard lists
(``RUN/models/MODEL/``; ``actlas.alignments``). Each map's points are its photos: each photo's mean
activation over every position of the layer (collect's ``images/mean/LAYER``), matched across maps by
photo. The core (``actlas.align``) lays them out with aligned UMAP; this stage also lays each map out
alone, as its main atlas would be, to measure what aligning costs each map's own layout.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np

from .. import align as align_core
from .. import layout as layout_core
from .. import paths
from ..alignments import parse_map
from ..data.samples import load_photo_means
from ..errors import ConfigError
from ..formats.align import (
    AlignedCoords,
    AlignRecord,
    MapRecord,
    PairMeasure,
    TrustRecord,
    write_align_record,
    write_aligned_coords,
)
from ..settings import Alignment, Layout, Run

POINTS = "each photo's mean activation over every position of the layer (edges avoided), matched by photo"
TRUST_SAMPLE = 2000  # photos trustworthiness is measured on (sklearn's is O(n^2))
GRID = 10  # the grid of align.json's near-partner shares (each aligned atlas.json adds its own grid's)


def by_photo(photos_a: np.ndarray, photos_b: np.ndarray) -> align_core.Matching:
    """The rows of two maps that hold the same photo (photo means: one point a photo, on a 1 x 1 grid)."""
    zeros_a, zeros_b = np.zeros((len(photos_a), 2), np.int64), np.zeros((len(photos_b), 2), np.int64)
    return align_core.match(photos_a, zeros_a, (1, 1), photos_b, zeros_b, (1, 1))


def pair_measure(
    ids: tuple[str, str], a: np.ndarray, b: np.ndarray, m: align_core.Matching, n: int, seed: int
) -> PairMeasure:
    """The measures of maps A and B (coords (n_a, 2), (n_b, 2)) matched by ``m``, near partners on an n x n grid."""
    distance = align_core.pair_distances(a, b, m, seed=seed)
    cells = align_core.cell_agreement(a, b, m, n, seed=seed)
    return PairMeasure(
        maps=list(ids),
        matched=distance["matched"],
        shuffled=distance["shuffled"],
        ratio=distance["ratio"],
        pairs=distance["pairs"],
        near=cells["overall"],
        near_median=cells["median"],
        near_chance=cells["shuffled"],
        grid=int(n),
    )


def align(
    run_dir: str | Path,
    name: str,
    maps: list[str],
    *,
    alignment: float = Alignment.alignment,
    n_neighbors: int = Layout.n_neighbors,
    min_dist: float = Layout.min_dist,
    metric: str = Layout.metric,
    pca: int = Layout.pca,
    backend: str = Layout.backend,
    seed: int = Run.seed,
) -> Path:
    """Align the maps ``maps`` (``LAYER`` or ``LAYER@MODEL``, in order) of a run -> ``RUN/aligned/NAME/``.

    Writes ``coords.npz`` (per map its coords (n, 2) float32 in [0, 1], one point a photo, and the photos)
    and ``align.json``: the layout's record, per pair of maps the median distance between a photo's points
    against shuffled pairs and the share of photos whose partner lands in the same or a neighbouring cell
    (on a 10 x 10 grid), per map its trustworthiness aligned and laid out alone (the layout
    settings ``n_neighbors``, ``min_dist``, ``metric``, ``pca``, ``backend`` of the main atlas).
    """
    start = time.perf_counter()
    if len(maps) < 2:
        raise ConfigError(f"an alignment needs two or more maps, got {len(maps)}: pass --map twice or more")
    parsed = [parse_map(m) for m in maps]
    points = [load_photo_means(run_dir, layer, model_name=model) for layer, model in parsed]
    xs = [p.activation for p in points]
    photos = [p.image for p in points]
    matchings = [by_photo(a, b) for a, b in zip(photos, photos[1:])]
    for spec, m in zip(maps[1:], matchings):
        if len(m.a) < layout_core.MIN_SAMPLES:
            raise ConfigError(
                f"map {spec} shares {len(m.a)} photos with the map before it: run both over the same images"
            )
    coords, info = align_core.aligned_layout(
        xs,
        matchings,
        alignment=alignment,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        pca_components=pca,
        seed=seed,
    )
    alone = []
    for x in xs:
        xy, _ = layout_core.layout(
            x, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, pca_components=pca, seed=seed, backend=backend
        )
        alone.append(xy)
    trust = []
    for spec, x, xy, ref in zip(maps, xs, coords, alone):
        t_aligned = align_core.trustworthiness(x, xy, sample=TRUST_SAMPLE, metric=metric, seed=seed)
        t_alone = align_core.trustworthiness(x, ref, sample=TRUST_SAMPLE, metric=metric, seed=seed)
        trust.append(TrustRecord(spec, round(t_aligned, 4), round(t_alone, 4), round(t_aligned - t_alone, 4)))
    n = GRID
    pairs = []
    for i, j in itertools.combinations(range(len(maps)), 2):
        m = by_photo(photos[i], photos[j])
        measure = pair_measure((maps[i], maps[j]), coords[i], coords[j], m, n, seed)
        moved = align_core.rigid_align([alone[i], alone[j]], [m])
        joint = layout_core.normalize_coords(np.concatenate(moved))
        measure.unaligned_ratio = align_core.pair_distances(joint[: len(moved[0])], joint[len(moved[0]) :], m)["ratio"]
        pairs.append(measure)
    folder = paths.aligned_dir(run_dir, name)
    write_aligned_coords(paths.align_coords(run_dir, name), AlignedCoords(list(maps), coords, photos))
    record = AlignRecord(
        name=name,
        maps=[
            MapRecord(spec, layer, model, int(len(x)), int(x.shape[1]))
            for spec, (layer, model), x in zip(maps, parsed, xs)
        ],
        alignment=float(alignment),
        points=POINTS,
        layout={**info, "min_dist": min_dist, "metric": metric, "pca": pca, "seed": seed},
        pairs=pairs,
        trust=trust,
        seconds=round(time.perf_counter() - start, 2),
    )
    write_align_record(paths.align_json(run_dir, name), record)
    return folder
