"""actlas.align: two or more atlases laid out so that the same region of each map holds what the same photos
activate. The maps are layers of one model, or layers of two models run over the same photos. All arrays in
and arrays out:

- ``actlas.align.matching``, matching: which sample of one map is which sample of the other
  (:func:`match`). Where two layers share a grid, collect drew the same positions for both
  (``actlas.collect.sample_positions`` depends only on the grid, the count, the seed and the
  photo's path), so samples match exactly by photo and position. Otherwise a sample's position is
  mapped to the centre of its cell in input coordinates and paired, photo by photo, one to one,
  with the nearest sampled position of the other layer (an optimal assignment: AlignedUMAP's
  relations are one to one). Photo means (:func:`photo_means`: one point per photo per map, on a
  1 x 1 grid) match by photo alone. Measured (benchmarks/bench_align.py, BENCHMARKS.md): photo
  means align best in every pair tried, at the least cost to each map's own layout, two layers of
  one grid matched exactly included; means over every position of a layer beat means over the
  drawn ones.
- ``actlas.align.layout``, the layout (:func:`aligned_layout`; its epoch in ``actlas.align.epoch``):
  umap-learn's aligned UMAP assembled from umap-learn's own pieces (fuzzy graph, spectral start,
  Procrustes, the aligned optimiser), so that it takes actlas' neighbour search (exact where
  faster, ``actlas.layout.exact_knn``) and ``min_dist``, which ``umap.AlignedUMAP.fit`` drops (it
  optimises with the a, b of min_dist 0.1).
- ``actlas.align.measures``, the measures (:func:`pair_distances`, :func:`cell_agreement`,
  :func:`trustworthiness`, :func:`measures`): how far matched samples land apart against shuffled
  pairs, the share of a cell's samples whose partners fall in the same or a neighbouring cell of
  the other map, and how well each aligned map keeps its own neighbourhoods.

cuML offers no aligned UMAP (``cuml.manifold`` holds UMAP, TSNE and spectral embedding), so the
aligned layout always runs umap-learn's optimiser on the CPU.
"""

from .layout import ALIGNMENT, PULLS, WINDOW, aligned_layout, overlap_weights, rigid_align
from .matching import METHODS, Matching, cell_centres, match, photo_ids, photo_means, relations
from .measures import cell_agreement, measures, pair_distances, trustworthiness

__all__ = [
    "ALIGNMENT",
    "METHODS",
    "PULLS",
    "WINDOW",
    "Matching",
    "aligned_layout",
    "cell_agreement",
    "cell_centres",
    "match",
    "measures",
    "overlap_weights",
    "pair_distances",
    "photo_ids",
    "photo_means",
    "relations",
    "rigid_align",
    "trustworthiness",
]
