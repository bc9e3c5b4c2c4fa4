"""The aligned layout: umap-learn's aligned UMAP from its own pieces, with actlas' neighbour search and min_dist."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from .matching import WINDOW, Matching, relations

log = logging.getLogger("actlas.align")

# Strength of the pull between matched samples (umap-learn's alignment_regularisation; its default is 0.01):
# 0.1 keeps every aligned map within 0.01 of its layout alone (trustworthiness) on the demo and CIFAR pairs,
# matched photos at 0.22-0.41 of the shuffled distance; 0.3 takes the demo to -0.017 (BENCHMARKS.md)
ALIGNMENT = 0.1
PULLS = ("overlap", "equal")


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

    Its epoch runs over one stacked array (``actlas.align.epoch``): the same updates and random
    draws, bit for bit equal to umap-learn's on a 3-map test (100 epochs), 6.5x faster there, and
    compiled once into numba's cache (``optimize_layout_aligned_euclidean`` compiles its epoch on
    every call, about 15 s on 2 cores).
    """
    from umap.umap_ import make_epochs_per_sample

    from .epoch import epoch

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

    from ..layout import exact_knn, use_exact_knn

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
    from ..device import numba_cache_dir
    from ..layout import check_samples, normalize_coords, pca

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
