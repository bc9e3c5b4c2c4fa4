"""grid: coords on the unit square -> N x N cells with counts, directions and labels (``Cells``,
the record ``cells.npz`` holds: ``actlas.formats.cells``)."""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, DataError
from .formats.cells import Cells


def bin_coords(coords: np.ndarray, n: int) -> np.ndarray:
    """Cell (column i, row j) of each point, shape (n_samples, 2) int32.

    Cells are half-open, [k/n, (k+1)/n), except the last, which also holds 1.0, so every point in
    [0, 1]^2 falls in exactly one cell.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.size and (np.nanmin(coords) < 0 or np.nanmax(coords) > 1 or np.isnan(coords).any()):
        raise DataError("coords must lie in [0, 1]; normalise them first (actlas.layout.normalize_coords)")
    return np.minimum(np.floor(coords * n), n - 1).astype(np.int32)


def grid(
    coords: np.ndarray,
    activations: np.ndarray,
    attr_class: np.ndarray,
    attr_value: np.ndarray,
    n: int,
    *,
    min_count: int = 1,
    n_classes: int | None = None,
) -> Cells:
    """Bin samples into an n x n grid and summarise every cell holding at least ``min_count``.

    Parameters
    ----------
    coords : (n_samples, 2) float in [0, 1]; x is the column, y the row (from the top)
    activations : (n_samples, C)
    attr_class, attr_value : (n_samples, k) classes and their attribution values
    n : cells per side
    min_count : cells with fewer samples are dropped
    n_classes : length of the attribution vectors (default: max class + 1)

    Returns ``Cells`` (see there).
    """
    if n < 1:
        raise ConfigError(f"grid size must be at least 1, got {n} (grid.sizes)")
    if len(coords) != len(activations):
        raise DataError(f"grid got {len(coords)} coords but {len(activations)} activations: run layout again")
    need = max(min_count, 1)
    if len(coords) < need:
        raise DataError(
            f"no cell of the {n}x{n} grid holds {need} samples ({len(coords)} samples in all): the grid needs at "
            f"least {need} samples (grid.min_count) and a smaller grid (grid.sizes) cannot help: lower "
            "grid.min_count, or collect more images or positions (collect.positions)"
        )
    ij = bin_coords(coords, n)
    cell = ij[:, 1].astype(np.int64) * n + ij[:, 0]
    counts = np.bincount(cell, minlength=n * n)
    keep = np.flatnonzero(counts >= max(min_count, 1))
    if len(keep) == 0:
        raise DataError(
            f"no cell of the {n}x{n} grid holds {min_count} samples ({len(coords)} samples in all): "
            "use a smaller grid (grid.sizes), a lower min_count (grid.min_count), or collect more"
        )
    remap = np.full(n * n, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    member = remap[cell]
    order = np.argsort(member, kind="stable")
    order = order[member[order] >= 0]
    k = len(keep)
    count = counts[keep]
    offsets = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
    acts = np.asarray(activations, dtype=np.float32)
    sums = np.add.reduceat(acts[order], offsets[:-1], axis=0) if len(order) else np.zeros((0, acts.shape[1]))
    direction = (sums / count[:, None]).astype(np.float32)
    n_classes = int(n_classes or (int(attr_class.max()) + 1 if attr_class.size else 1))
    rows = member[:, None].repeat(attr_class.shape[1], 1)
    # A sample whose attribution is exactly 0 for every class says nothing about classes: it records none.
    valid = (rows >= 0) & (attr_class >= 0) & np.any(attr_value != 0, axis=1)[:, None]
    flat = rows[valid] * n_classes + attr_class[valid].astype(np.int64)
    attribution = np.bincount(flat, weights=attr_value[valid], minlength=k * n_classes).reshape(k, n_classes)
    attribution = (attribution / count[:, None]).astype(np.float32)
    # The label is the best class the cell's samples recorded: a class no sample recorded has 0 in
    # ``attribution``, and would win (as class 0) in a cell whose recorded attributions are all negative.
    recorded = np.bincount(flat, minlength=k * n_classes).reshape(k, n_classes) > 0
    label = np.where(recorded, attribution, -np.inf).argmax(1)
    label[~recorded.any(1)] = -1  # no sample of the cell recorded a class: no label, not class 0
    return Cells(
        ij=np.stack([keep % n, keep // n], axis=1).astype(np.int32),
        count=count.astype(np.int64),
        direction=direction,
        attribution=attribution,
        label=label.astype(np.int32),
        order=order.astype(np.int64),
        offsets=offsets,
        n=int(n),
        min_count=int(min_count),
    )


def attributed(attr_class: np.ndarray, attr_value: np.ndarray) -> bool:
    """Whether any sample recorded an attribution (``attr_class``, ``attr_value`` (n, k)): a model without a
    class head records none (classes -1); a layer whose sampled positions never reach the logits records only
    zeros (a transformer's last block: its head reads the class token alone)."""
    return bool(((attr_class >= 0) & (attr_value != 0)).any())


NEAREST_PHOTOS = 16  # a cell without attribution is labelled by the photos of its samples nearest its direction


def photo_labels(cells: Cells, activations: np.ndarray, labels: np.ndarray, k: int = NEAREST_PHOTOS) -> np.ndarray:
    """Each cell's label from its photos (a model without a class head has no attribution to label it):
    the most common label among the photos of the cell's ``k`` samples nearest its direction (cosine),
    counting labelled photos only; -1 where none of them is labelled (ties: the smaller class).

    activations : (n_samples, C); labels : (n_samples,) the label of each sample's photo (-1 unknown)
    Returns (K,) int32.
    """
    out = np.full(len(cells.count), -1, dtype=np.int32)
    for c in range(len(cells.count)):
        rows = cells.members(c)
        a = np.asarray(activations[rows], dtype=np.float32)
        d = cells.direction[c]
        sim = a @ d / (np.linalg.norm(a, axis=1) * np.linalg.norm(d) + 1e-8)
        near = labels[rows[np.argsort(-sim, kind="stable")[:k]]]
        near = near[near >= 0]
        if len(near):
            out[c] = int(np.bincount(near).argmax())
    return out
