"""Measures of an alignment: matched against shuffled distances, the per-cell share of near partners, and
trustworthiness of each aligned map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DataError
from .matching import Matching

NO_PAIRS = "no matched samples: the maps share no photo; run both over the same images (images, limit, seed)"


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
    from ..grid import bin_coords

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
