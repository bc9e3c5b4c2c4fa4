"""align: two or more atlases laid out so that the same region of each map holds what the same photos activate.

The maps are layers of one model, or layers of two models run over the same photos. Three pieces,
all arrays in and arrays out:

- **matching** (:func:`match`): which sample of one map is which sample of the other. Where two
  layers share a grid, collect drew the same positions for both (``actlas.collect.sample_positions``
  depends only on the grid, the count, the seed and the photo's path), so samples match exactly by
  photo and position. Otherwise a sample's position is mapped to the centre of its cell in input
  coordinates and paired, photo by photo, one to one, with the nearest sampled position of the other
  layer (an optimal assignment: AlignedUMAP's relations are one to one). Photo means
  (:func:`photo_means`: one point per photo per map, on a 1 x 1 grid) match by photo alone. Measured
  (benchmarks/bench_align.py, BENCHMARKS.md): photo means align best in every pair tried, at the
  least cost to each map's own layout, including two layers of one grid matched exactly; means over
  every position of a layer beat means over the drawn ones.
- **layout** (:func:`aligned_layout`): umap-learn's aligned UMAP, assembled from umap-learn's own
  pieces (fuzzy graph, spectral start, Procrustes, the aligned optimiser) so that it takes actlas'
  neighbour search (exact where faster, ``actlas.layout.exact_knn``) and ``min_dist``, which
  ``umap.AlignedUMAP.fit`` drops (it optimises with the a, b of min_dist 0.1).
- **measures** (:func:`pair_distances`, :func:`cell_agreement`, :func:`trustworthiness`,
  :func:`measures`): how far matched samples land apart against shuffled pairs, the share of a
  cell's samples whose partners fall in the same or a neighbouring cell of the other map, and how
  well each aligned map keeps its own neighbourhoods.

cuML offers no aligned UMAP (``cuml.manifold`` holds UMAP, TSNE and spectral embedding), so the
aligned layout always runs umap-learn's optimiser on the CPU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .errors import ConfigError, DataError

log = logging.getLogger("actlas.align")

# Strength of the pull between matched samples (umap-learn's alignment_regularisation; its default is 0.01):
# 0.1 keeps every aligned map within 0.01 of its layout alone (trustworthiness) on the demo and CIFAR pairs,
# matched photos at 0.22-0.41 of the shuffled distance; 0.3 takes the demo to -0.017 (BENCHMARKS.md)
ALIGNMENT = 0.1
WINDOW = 3  # each map is pulled towards the maps up to this many steps away in the list (AlignedUMAP's default)
METHODS = ("auto", "position", "mapped")
PULLS = ("overlap", "equal")
NO_PAIRS = "no matched samples: the maps share no photo; run both over the same images (images, limit, seed)"


# --------------------------------------------------------------------------- matching


class Matching(NamedTuple):
    """One-to-one pairs of samples of two maps: rows ``a`` (m,) of map A, ``b`` (m,) of map B, int64;
    ``offset`` (m,) float32: distance between the pair's cell centres as a fraction of the input side
    (0 where the grids are shared)."""

    a: np.ndarray
    b: np.ndarray
    offset: np.ndarray

    def swap(self) -> Matching:
        """The same pairs seen from map B."""
        return Matching(self.b, self.a, self.offset)


def photo_ids(*paths: Sequence[str]) -> list[np.ndarray]:
    """One shared id per photo path across runs: per run, (n_images,) int64 (the union, numbered in first-seen order).

    Runs of two models over the same photos number their photos alike only while their image sets
    and skips agree; paths are what identify a photo.
    """
    ids: dict[str, int] = {}
    out = []
    for run_paths in paths:
        out.append(np.array([ids.setdefault(p, len(ids)) for p in run_paths], dtype=np.int64))
    return out


def cell_centres(position: np.ndarray, spatial: Sequence[int]) -> np.ndarray:
    """Positions (n, 2) (y, x) on a grid ``spatial`` (H, W) -> cell centres (n, 2) (y, x) in [0, 1] of the input."""
    h, w = int(spatial[0]), int(spatial[1])
    pos = np.asarray(position, dtype=np.float64).reshape(-1, 2)
    return (pos + 0.5) / np.array([h, w], dtype=np.float64)


def match(
    image_a: np.ndarray,
    position_a: np.ndarray,
    spatial_a: Sequence[int],
    image_b: np.ndarray,
    position_b: np.ndarray,
    spatial_b: Sequence[int],
    *,
    method: str = "auto",
) -> Matching:
    """Pair the samples of two maps one to one.

    Parameters
    ----------
    image_a, image_b : (n_a,), (n_b,) int photo ids, comparable across the maps (:func:`photo_ids`)
    position_a, position_b : (n_a, 2), (n_b, 2) int (y, x) on the grids ``spatial_a``, ``spatial_b`` (H, W)
    method : ``position`` (same photo and position; the grids must be equal), ``mapped`` (same photo,
        nearest cell centres in input coordinates, one to one per photo), ``auto`` (position where the
        grids are equal, else mapped)

    Returns a :class:`Matching` sorted by ``a``. Samples of a photo the other map lacks stay unmatched;
    with ``mapped``, a photo with n_a and n_b samples gives min(n_a, n_b) pairs.
    """
    if method not in METHODS:
        raise ConfigError(f"matching method {method!r} unknown: use one of {', '.join(METHODS)}")
    same = tuple(int(s) for s in spatial_a) == tuple(int(s) for s in spatial_b)
    if method == "position" and not same:
        raise ConfigError(
            f"cannot match by position across grids {tuple(spatial_a)} and {tuple(spatial_b)}: use method 'mapped'"
        )
    image_a, image_b = np.asarray(image_a, np.int64), np.asarray(image_b, np.int64)
    position_a = np.asarray(position_a, np.int64).reshape(-1, 2)
    position_b = np.asarray(position_b, np.int64).reshape(-1, 2)
    if same and method in ("auto", "position"):
        h, w = int(spatial_a[0]), int(spatial_a[1])
        key_a = (image_a * h + position_a[:, 0]) * w + position_a[:, 1]
        key_b = (image_b * h + position_b[:, 0]) * w + position_b[:, 1]
        _, ia, ib = np.intersect1d(key_a, key_b, assume_unique=False, return_indices=True)
        order = np.argsort(ia, kind="stable")
        return Matching(ia[order].astype(np.int64), ib[order].astype(np.int64), np.zeros(len(ia), np.float32))
    return _match_mapped(image_a, cell_centres(position_a, spatial_a), image_b, cell_centres(position_b, spatial_b))


def _match_mapped(image_a, centre_a, image_b, centre_b) -> Matching:
    """Per photo, the one-to-one assignment of samples minimising the summed distance of their cell centres."""
    from scipy.optimize import linear_sum_assignment

    order_a = np.argsort(image_a, kind="stable")
    order_b = np.argsort(image_b, kind="stable")
    photos_a, start_a, count_a = np.unique(image_a[order_a], return_index=True, return_counts=True)
    photos_b, start_b, count_b = np.unique(image_b[order_b], return_index=True, return_counts=True)
    common, ka, kb = np.intersect1d(photos_a, photos_b, assume_unique=True, return_indices=True)
    pairs_a, pairs_b = [], []
    single = (count_a[ka] == 1) & (count_b[kb] == 1)  # one sample each (one position a photo): no search
    pairs_a.append(order_a[start_a[ka[single]]])
    pairs_b.append(order_b[start_b[kb[single]]])
    for pa, pb in zip(ka[~single], kb[~single]):
        rows_a = order_a[start_a[pa] : start_a[pa] + count_a[pa]]
        rows_b = order_b[start_b[pb] : start_b[pb] + count_b[pb]]
        cost = np.linalg.norm(centre_a[rows_a][:, None, :] - centre_b[rows_b][None, :, :], axis=2)
        r, c = linear_sum_assignment(cost)
        pairs_a.append(rows_a[r])
        pairs_b.append(rows_b[c])
    a = np.concatenate(pairs_a).astype(np.int64) if pairs_a else np.zeros(0, np.int64)
    b = np.concatenate(pairs_b).astype(np.int64) if pairs_b else np.zeros(0, np.int64)
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    offset = np.linalg.norm(centre_a[a] - centre_b[b], axis=1).astype(np.float32)
    return Matching(a, b, offset)


def photo_means(activation: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each photo's mean activation over its samples: (means (p, C) float32, photos (p,) int64, sorted).

    One point per photo per map; as samples on a 1 x 1 grid they match by photo alone.
    """
    image = np.asarray(image, np.int64)
    photos, inverse, counts = np.unique(image, return_inverse=True, return_counts=True)
    sums = np.zeros((len(photos), activation.shape[1]), np.float64)
    np.add.at(sums, inverse, np.asarray(activation, np.float64))
    return (sums / counts[:, None]).astype(np.float32), photos


def relations(matchings: Sequence[Matching], sizes: Sequence[int], window: int = WINDOW) -> np.ndarray:
    """umap-learn's aligned relations: (n_maps, 2 * (window + 1) + 1, max(sizes)) int32.

    ``[i, W + d, k]`` (W = window + 1) is the row of map i + d matched to row k of map i, or -1,
    chaining the consecutive ``matchings`` (map i -> map i + 1), for 1 <= |d| <= window. umap-learn's
    optimiser reads offsets -W .. W - 1 only, so the slots run one further than ``window`` and both
    outermost ones stay empty: every map is pulled towards the maps up to ``window`` steps away on
    both sides (with umap-learn's own ``expand_relations`` at window 1, the first of two maps is
    pulled towards nothing). Rows up to the largest map are covered (``expand_relations`` sizes by
    the largest matched row, and the optimiser then reads past the end for the rest).
    """
    n_maps = len(sizes)
    if len(matchings) != n_maps - 1:
        raise ValueError(f"{n_maps} maps need {n_maps - 1} matchings (map i -> map i + 1), got {len(matchings)}")
    big = int(max(sizes))
    w = max(int(window), 1) + 1
    forward = np.full((n_maps, big + 1), -1, np.int64)  # one extra slot: -1 maps to -1
    backward = np.full((n_maps, big + 1), -1, np.int64)
    for i, m in enumerate(matchings):
        if len(m.a) and (m.a.max() >= sizes[i] or m.b.max() >= sizes[i + 1]):
            raise ValueError(f"matching {i} names rows past the maps' sizes {sizes[i]}, {sizes[i + 1]}")
        if len(np.unique(m.a)) != len(m.a) or len(np.unique(m.b)) != len(m.b):
            raise ValueError(f"matching {i} is not one to one: aligned UMAP relates each sample to at most one")
        forward[i, m.a] = m.b
        backward[i + 1, m.b] = m.a
    out = np.full((n_maps, 2 * w + 1, big), -1, np.int32)
    for i in range(n_maps):
        for step, table in ((1, forward), (-1, backward)):
            mapping = np.append(np.arange(big), -1)
            for d in range(1, w):
                if not 0 <= i + step * d < n_maps:
                    break
                mapping = table[i + step * (d - 1)][mapping]  # index -1 reads the last slot: -1
                out[i, w + step * d] = mapping[:big]
    return out


# --------------------------------------------------------------------------- layout


def _optimise(
    embeddings: list[np.ndarray],
    graphs: list,
    n_epochs: int,
    weights: np.ndarray,
    rel: np.ndarray,
    rng_state: np.ndarray,
    a: float,
    b: float,
    alignment: float,
) -> list[np.ndarray]:
    """umap-learn's ``optimize_layout_aligned_euclidean`` (gamma 1, negative sample rate 5, moving both ends of
    an edge) over the maps' starts (n_i, 2) float32 and fuzzy graphs -> the maps' embeddings.

    Its epoch runs over one stacked array (``actlas._align_epoch``): the same updates and random
    draws, bit for bit equal to umap-learn's on a 3-map test (100 epochs), 6.5x faster there, and
    compiled once into numba's cache (``optimize_layout_aligned_euclidean`` compiles its epoch on
    every call, about 15 s on 2 cores).
    """
    from umap.umap_ import make_epochs_per_sample

    from ._align_epoch import epoch

    coo = [g.tocoo() for g in graphs]
    heads = np.concatenate([c.row for c in coo]).astype(np.int32)
    tails = np.concatenate([c.col for c in coo]).astype(np.int32)
    epochs_per_sample = np.concatenate([make_epochs_per_sample(c.data, n_epochs) for c in coo]).astype(np.float64)
    n_edges = np.array([len(c.row) for c in coo], np.int64)
    edge_start = np.concatenate([[0], np.cumsum(n_edges)[:-1]]).astype(np.int64)
    start = np.concatenate([[0], np.cumsum([len(e) for e in embeddings])]).astype(np.int64)
    stacked = np.ascontiguousarray(np.concatenate(embeddings), np.float32)
    per_negative = epochs_per_sample.astype(np.float32) / 5.0  # float32 first, as umap-learn rounds
    next_negative = per_negative.copy()
    next_sample = epochs_per_sample.astype(np.float32)
    alpha = 1.0
    for n in range(n_epochs):
        epoch(
            stacked,
            start,
            heads,
            tails,
            edge_start,
            n_edges,
            epochs_per_sample,
            a,
            b,
            weights,
            rel,
            rng_state,
            alignment,
            alpha,
            per_negative,
            next_negative,
            next_sample,
            n,
        )
        alpha = 1.0 - n / n_epochs
    return np.split(stacked, start[1:-1])


def _graph(x: np.ndarray, n_neighbors: int, metric: str, seed: int) -> tuple:
    """UMAP's fuzzy neighbour graph of x (n, d) -> (csr graph (n, n), knn kind), neighbours as actlas' layout finds."""
    from umap.umap_ import fuzzy_simplicial_set, nearest_neighbors

    from .layout import exact_knn, use_exact_knn

    rng = np.random.RandomState(seed)
    if use_exact_knn(len(x), x.shape[1], metric) and len(x) > n_neighbors:
        indices, distances = exact_knn(x, n_neighbors, metric)
        kind = "exact"
    else:
        indices, distances, _ = nearest_neighbors(x, n_neighbors, metric, {}, False, rng, n_jobs=1)
        kind = "pynndescent"
    graph, _, _ = fuzzy_simplicial_set(x, n_neighbors, rng, metric, knn_indices=indices, knn_dists=distances)
    return graph.tocsr(), kind


def overlap_weights(graphs: Sequence, rel: np.ndarray) -> np.ndarray:
    """umap-learn's aligned pull weights, shape of ``rel`` float32: for row k of map i and its partner p in map
    i + d, the Jaccard overlap of k's neighbours mapped into map i + d and p's neighbours there (those with a
    partner in map i); 1.0 where both are empty, 0 where k has no partner.

    ``umap.aligned_umap.build_neighborhood_similarities`` in sparse matrix products: no numba
    compilation in every new process (it is not cached: a minute of a test on 2 busy cores).
    """
    from scipy import sparse

    out = np.zeros(rel.shape, np.float32)
    w = (rel.shape[1] - 1) // 2
    adjacency = [sparse.csr_matrix((np.ones(g.nnz, np.float32), g.indices, g.indptr), shape=g.shape) for g in graphs]
    for i, g_i in enumerate(adjacency):
        n_i = g_i.shape[0]
        for slot in range(rel.shape[1]):
            j = i + slot - w
            if slot == w or not 0 <= j < len(graphs):
                continue
            partner = rel[i, slot, :n_i].astype(np.int64)
            rows = np.flatnonzero(partner >= 0)
            if not len(rows):
                continue
            g_j = adjacency[j]
            to_j = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, partner[rows])), shape=(n_i, g_j.shape[0]))
            mine = (g_i[rows] @ to_j).tocsr()  # (r, n_j): k's neighbours, mapped
            mine.data[:] = 1.0
            theirs = g_j[partner[rows]].tocsr()  # (r, n_j): the partner's neighbours...
            theirs = theirs @ sparse.diags(np.asarray(to_j.sum(axis=0)).ravel().clip(0, 1))  # ...that have a partner
            theirs.eliminate_zeros()
            both = np.asarray(mine.multiply(theirs).sum(axis=1)).ravel()
            union = np.asarray(mine.sum(axis=1)).ravel() + np.asarray((theirs > 0).sum(axis=1)).ravel() - both
            out[i, slot, rows] = np.where(union > 0, both / np.maximum(union, 1), 1.0)
    return out


def rigid_align(embeddings: Sequence[np.ndarray], matchings: Sequence[Matching]) -> list[np.ndarray]:
    """Move, turn (or mirror) and scale each embedding (n_i, 2) onto the one before it through its matched pairs.

    Over the pairs of ``matchings[i - 1]``: the centroids meet, the turn is the least-squares one
    (Procrustes) and the scale makes the pairs' spread equal, a similarity transform that leaves
    each map's own layout unchanged; the first map stays. Aligned UMAP's pull keeps partners
    together only as far as it is strong: weakly pulled maps drift apart in place and scale, and
    one shared normalisation would put them in different parts of the square. (The least-squares
    scale would shrink a map the more its pairs disagree.)
    """
    out = [np.asarray(embeddings[0], np.float64)]
    for e, m in zip(embeddings[1:], matchings):
        e = np.asarray(e, np.float64)
        if len(m.a) < 3:
            out.append(e)
            continue
        source, target = e[m.b], out[-1][m.a]
        mu_s, mu_t = source.mean(0), target.mean(0)
        u, _, vt = np.linalg.svd((source - mu_s).T @ (target - mu_t))
        scale = np.sqrt(((target - mu_t) ** 2).sum() / max(float(((source - mu_s) ** 2).sum()), 1e-24))
        out.append((e - mu_s) @ (u @ vt) * scale + mu_t)
    return out


def aligned_layout(
    xs: Sequence[np.ndarray],
    matchings: Sequence[Matching],
    *,
    alignment: float = ALIGNMENT,
    pull: str = "overlap",
    window: int = WINDOW,
    n_neighbors: int = 20,
    min_dist: float = 0.01,
    metric: str = "cosine",
    pca_components: int = 0,
    n_epochs: int | None = None,
    seed: int = 0,
    clip: float = 0.5,
) -> tuple[list[np.ndarray], dict]:
    """Aligned UMAP of maps xs[i] (n_i, C_i) -> coords, one (n_i, 2) float32 in [0, 1] per map, and an info dict.

    ``matchings[i]`` pairs rows of map i with rows of map i + 1 (:func:`match`). ``alignment`` is the
    pull between matched samples (umap-learn's ``alignment_regularisation``; 0 lays every map out on
    its own, from a Procrustes-aligned start). ``pull`` weighs it per pair: ``overlap`` (umap-learn's) by
    the Jaccard overlap of the two samples' neighbourhoods mapped through the matching, so partners
    whose neighbours differ are hardly pulled; ``equal`` pulls every pair alike. The preprocessing is
    actlas' layout's: PCA to ``pca_components`` (0 = off), the neighbour graph on ``metric`` (exact kNN
    where faster), UMAP's epochs (500 up to 10,000 samples, else 200). Each map is then moved onto the
    one before it (:func:`rigid_align`) and all share one normalisation to the unit square (the outer
    ``clip`` percent of their union clipped), so equal coords mean the same place in every map.
    Deterministic for a seed.
    """
    from .device import numba_cache_dir
    from .layout import check_samples, normalize_coords, pca

    numba_cache_dir()  # before umap-learn loads numba, which reads its cache folder once
    from umap.spectral import spectral_layout
    from umap.umap_ import find_ab_params

    start = time.perf_counter()
    if len(xs) < 2:
        raise ConfigError(f"an alignment needs at least two maps, got {len(xs)}: list two or more atlases")
    if alignment < 0:
        raise ConfigError(
            f"alignment must be at least 0, got {alignment}: 0 lays each map out alone, 0.1 is the default"
        )
    if pull not in PULLS:
        raise ConfigError(f"pull {pull!r} unknown: use one of {', '.join(PULLS)}")
    data = []
    for x in xs:
        check_samples(len(x))
        x = np.ascontiguousarray(x, dtype=np.float32)
        if pca_components and pca_components < x.shape[1]:
            x = pca(x, pca_components, seed)
        data.append(x)
    sizes = [len(x) for x in data]
    window = max(1, min(int(window), len(xs) - 1))  # a longer window costs time in every update and adds nothing
    rel = relations(matchings, sizes, window)
    k = int(min(n_neighbors, max(min(sizes) - 1, 2)))
    graphs, knn = [], []
    for x in data:
        g, kind = _graph(x, k, metric, seed)
        graphs.append(g)
        knn.append(kind)
    graph_seconds = time.perf_counter() - start
    epochs = int(n_epochs or (500 if max(sizes) <= 10000 else 200))
    a, b = find_ab_params(1.0, min_dist)

    weights = overlap_weights(graphs, rel)
    matched_weight = [float(weights[i][rel[i] >= 0].mean()) if (rel[i] >= 0).any() else 0.0 for i in range(len(xs))]
    if pull == "equal":
        weights = (rel >= 0).astype(np.float32)

    rng = np.random.RandomState(seed)
    embeddings: list[np.ndarray] = []
    w = (rel.shape[1] - 1) // 2
    for i, (x, g) in enumerate(zip(data, graphs)):
        init = spectral_layout(x, g, 2, rng, metric=metric)
        init = (init * (10.0 / np.abs(init).max())).astype(np.float32, order="C")
        if i:  # rotate onto the previous map through the matched pairs
            back = rel[i, w - 1]
            right = np.flatnonzero(back >= 0)
            anchors = np.vstack([back[right], right]).astype(np.int64)
            u, _, v = np.linalg.svd(init[anchors[1]].T.astype(np.float64) @ embeddings[-1][anchors[0]])
            init = np.ascontiguousarray(init @ (u @ v), np.float32)  # umap-learn's procrustes_align, in numpy
        embeddings.append(init)
    seed_triplet = rng.randint(np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1, 3).astype(np.int64)
    optimise_start = time.perf_counter()
    out = _optimise(embeddings, graphs, epochs, weights, rel, seed_triplet, a, b, float(alignment))
    optimise_seconds = time.perf_counter() - optimise_start
    xy = [np.asarray(e, np.float64) for e in out]
    lonely = 0
    for e, g in zip(xy, graphs):  # a sample without neighbours gets no force: put it at the centre
        cut = (np.asarray(g.sum(axis=1)).ravel() == 0) | ~np.isfinite(e).all(1)
        lonely += int(cut.sum())
        e[cut] = np.median(e[~cut], axis=0) if (~cut).any() else 0.0
    xy = rigid_align(xy, matchings)
    joint = normalize_coords(np.concatenate(xy), clip)
    coords = np.split(joint, np.cumsum(sizes)[:-1])
    info = {
        "backend": "umap-learn (aligned)",
        "knn": knn,
        "n_neighbors": k,
        "n_epochs": epochs,
        "alignment": float(alignment),
        "pull": pull,
        "window": int(window),
        "samples": sizes,
        "matched": [int(len(m.a)) for m in matchings],
        "neighbourhood_overlap": [round(v, 4) for v in matched_weight],
        "unconnected": lonely,
        "graph_seconds": round(graph_seconds, 2),
        "optimise_seconds": round(optimise_seconds, 2),
        "seconds": round(time.perf_counter() - start, 2),
    }
    log.info("aligned layout of %d maps in %.1f s", len(xs), info["seconds"])
    return [np.ascontiguousarray(c, np.float32) for c in coords], info


# --------------------------------------------------------------------------- measures


def pair_distances(coords_a: np.ndarray, coords_b: np.ndarray, matching: Matching, *, seed: int = 0) -> dict:
    """Median distance between matched samples' coords (n_a, 2) and (n_b, 2), against the same pairs shuffled.

    Returns ``matched``, ``shuffled`` (medians, in the units of the coords) and ``ratio`` = matched /
    shuffled (0: partners land on each other; about 1: no better than chance), ``pairs``.
    """
    a, b = np.asarray(coords_a, np.float64)[matching.a], np.asarray(coords_b, np.float64)[matching.b]
    if len(a) == 0:
        raise DataError(
            "no matched samples: the maps share no photo; run both over the same images (images, limit, seed)"
        )
    shuffled = b[np.random.default_rng(seed).permutation(len(b))]
    matched_d = float(np.median(np.linalg.norm(a - b, axis=1)))
    shuffled_d = float(np.median(np.linalg.norm(a - shuffled, axis=1)))
    return {
        "matched": round(matched_d, 5),
        "shuffled": round(shuffled_d, 5),
        "ratio": round(matched_d / shuffled_d, 4) if shuffled_d > 0 else 1.0,
        "pairs": int(len(a)),
    }


def cell_agreement(
    coords_a: np.ndarray, coords_b: np.ndarray, matching: Matching, n: int, *, reach: int = 1, seed: int = 0
) -> dict:
    """Per cell of an n x n grid over map A: the share of its matched samples whose partner in map B falls in the
    same cell or one at most ``reach`` cells away (in both directions) of B's n x n grid.

    Coords are in [0, 1] (x, y), cells as ``actlas.grid.bin_coords``. Returns ``ij`` (K, 2) int32
    (column, row) of the cells of A holding matched samples, ``count`` (K,) their matched samples,
    ``share`` (K,) float32, ``overall`` (all pairs), ``median`` (over cells) and ``shuffled`` (overall
    with the partners shuffled: the chance level).
    """
    from .grid import bin_coords

    if len(matching.a) == 0:
        raise DataError(
            "no matched samples: the maps share no photo; run both over the same images (images, limit, seed)"
        )
    ca = bin_coords(np.asarray(coords_a)[matching.a], n).astype(np.int64)
    cb = bin_coords(np.asarray(coords_b)[matching.b], n).astype(np.int64)
    near = np.abs(ca - cb).max(axis=1) <= reach
    shuffled = cb[np.random.default_rng(seed).permutation(len(cb))]
    chance = float((np.abs(ca - shuffled).max(axis=1) <= reach).mean())
    cell = ca[:, 1] * n + ca[:, 0]
    count = np.bincount(cell, minlength=n * n)
    hits = np.bincount(cell, weights=near, minlength=n * n)
    keep = np.flatnonzero(count)
    share = (hits[keep] / count[keep]).astype(np.float32)
    return {
        "ij": np.stack([keep % n, keep // n], axis=1).astype(np.int32),
        "count": count[keep].astype(np.int64),
        "share": share,
        "overall": round(float(near.mean()), 4),
        "median": round(float(np.median(share)), 4),
        "shuffled": round(chance, 4),
    }


def trustworthiness(
    x: np.ndarray,
    coords: np.ndarray,
    *,
    sample: int = 2000,
    n_neighbors: int = 10,
    metric: str = "cosine",
    seed: int = 0,
) -> float:
    """sklearn's trustworthiness of coords (n, 2) as a layout of x (n, C), on ``sample`` rows drawn with ``seed``.

    1.0: every sample's ``n_neighbors`` nearest in the layout are among its nearest in x (by ``metric``).
    """
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    n = len(x)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    k = int(min(n_neighbors, max(len(rows) // 2 - 1, 1)))
    return float(
        sk_trustworthiness(
            np.asarray(x, np.float32)[rows], np.asarray(coords, np.float32)[rows], n_neighbors=k, metric=metric
        )
    )


def measures(
    coords: Sequence[np.ndarray], matchings: dict[tuple[int, int], Matching], n: int, *, reach: int = 1, seed: int = 0
) -> list[dict]:
    """The alignment's measures for each pair (i, j) of ``matchings``, JSON-ready: one dict a pair with ``maps``
    [i, j], ``distance`` (:func:`pair_distances`) and ``cells`` (:func:`cell_agreement` of map i over an
    n x n grid, without its per-cell arrays)."""
    out = []
    for (i, j), m in sorted(matchings.items()):
        cells = cell_agreement(coords[i], coords[j], m, n, reach=reach, seed=seed)
        out.append(
            {
                "maps": [int(i), int(j)],
                "distance": pair_distances(coords[i], coords[j], m, seed=seed),
                "cells": {k: cells[k] for k in ("overall", "median", "shuffled")}
                | {"grid": int(n), "reach": int(reach)},
            }
        )
    return out
