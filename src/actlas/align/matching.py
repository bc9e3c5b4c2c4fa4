"""Matching samples across maps: by photo and position on a shared grid, through cell centres across grids,
by photo for photo means; umap-learn's relations between consecutive maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError

METHODS = ("auto", "position", "mapped")
WINDOW = 3  # each map is pulled towards the maps up to this many steps away in the list (AlignedUMAP's default)


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
