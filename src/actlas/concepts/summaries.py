"""Per-concept and per-cell summaries: pure functions over codes, attributions, coords and directions.

Codes are (n, K) non-negative, dense or ``scipy.sparse`` (what :func:`encode_stream` returns: a
CSR array holding about k entries a row, so 1,000,000 rows at k = 16 take about 130 MB). No function
writes NaN: a concept active on no row gets label -1, exemplars -1 and centroid (-1, -1).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .dictionary import Chunks, Dictionary


def sparse_codes(idx: np.ndarray, val: np.ndarray, size: int) -> sp.csr_array:
    """CSR codes (n, size) from (idx (n, k), val (n, k)) as :meth:`Dictionary.encode_sparse` returns them."""
    n, width = idx.shape
    keep = val > 0
    rows = np.repeat(np.arange(n), width).reshape(n, width)[keep]
    return sp.csr_array((val[keep].astype(np.float32), (rows, idx[keep])), shape=(n, size))


def encode_stream(d: Dictionary, chunks: Chunks, *, encoding: str | None = None) -> sp.csr_array:
    """Codes (n, K) CSR float32 of every row of a stream, in stream order (memory: the codes only)."""
    parts = [sparse_codes(*d.encode_sparse(np.asarray(c), encoding=encoding), d.size) for c in chunks() if len(c)]
    if not parts:
        return sp.csr_array((0, d.size), dtype=np.float32)
    return sp.vstack(parts, format="csr")


def _csc(codes) -> sp.csc_array:
    c = sp.csc_array(codes, dtype=np.float32)
    if c.nnz and c.data.min() < 0:
        raise ValueError("codes must be non-negative")
    return c


def frequency(codes) -> np.ndarray:
    """Share of rows on which each concept is active, (K,) float64."""
    c = _csc(codes)
    active = np.diff(sp.csc_array(c > 0).indptr) if c.nnz else np.zeros(c.shape[1], np.int64)
    return active / max(c.shape[0], 1)


def top_rows(codes, n: int = 16, group: np.ndarray | None = None) -> np.ndarray:
    """Rows with each concept's highest codes, (K, n) int64, best first, -1 where fewer rows are active.

    ``group`` (n_rows,) int: keep at most one row per group (the image of each row), so a concept's
    exemplars are ``n`` different images. Ties go to the earlier row.
    """
    c = _csc(codes)
    out = np.full((c.shape[1], n), -1, np.int64)
    for j in range(c.shape[1]):
        lo, hi = c.indptr[j], c.indptr[j + 1]
        rows, vals = c.indices[lo:hi], c.data[lo:hi]
        keep = vals > 0
        rows, vals = rows[keep], vals[keep]
        order = np.lexsort((rows, -vals))
        rows = rows[order]
        if group is not None:
            _, first = np.unique(np.asarray(group)[rows], return_index=True)
            rows = rows[np.sort(first)]
        out[j, : min(n, len(rows))] = rows[:n]
    return out


def class_weights(
    codes, attr_class: np.ndarray, attr_value: np.ndarray, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each concept's attribution to the classes, weighted by its codes: (weights (K, n_classes) float32,
    label (K,) int32).

    ``weights[j, c] = sum_i z_ij a_ic / sum_i z_ij`` where ``a_ic`` is row i's recorded attribution to
    class c (``attr_class``/``attr_value`` (n, k): its top-k classes; unrecorded classes count 0,
    negative class ids are padding). ``label`` is the best class the concept's active rows recorded
    (as grid cells are labelled), -1 for a concept active on no row.
    """
    c = _csc(codes)
    attr_class = np.asarray(attr_class)
    attr_value = np.asarray(attr_value, np.float64)
    n_rows, width = attr_class.shape
    if n_rows != c.shape[0]:
        raise ValueError(f"{c.shape[0]} rows of codes but {n_rows} rows of attribution")
    valid = attr_class >= 0
    n_classes = int(n_classes or (int(attr_class.max()) + 1 if valid.any() else 1))
    rows = np.repeat(np.arange(n_rows), width).reshape(n_rows, width)[valid]
    a = sp.csr_array((attr_value[valid], (rows, attr_class[valid].astype(np.int64))), shape=(n_rows, n_classes))
    recorded = sp.csr_array(
        (np.ones(int(valid.sum())), (rows, attr_class[valid].astype(np.int64))), shape=(n_rows, n_classes)
    )
    zt = c.T.tocsr().astype(np.float64)
    mass = np.asarray(zt.sum(1)).ravel()
    weights = (zt @ a).toarray() / np.maximum(mass, 1e-30)[:, None]
    seen = ((sp.csr_array(zt > 0).astype(np.float64) @ recorded).toarray()) > 0
    label = np.where(seen, weights, -np.inf).argmax(1)
    label[~seen.any(1)] = -1
    return weights.astype(np.float32), label.astype(np.int32)


def placement(codes, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each concept's place on the atlas: (centroid (K, 2) float32, spread (K,) float32).

    The centroid is the code-weighted mean of its rows' ``coords`` (n, 2); the spread the code-weighted
    root mean squared distance to it. A concept active on no row gets centroid (-1, -1) and spread 0.
    """
    c = _csc(codes).astype(np.float64)
    coords = np.asarray(coords, np.float64)
    if len(coords) != c.shape[0]:
        raise ValueError(f"{c.shape[0]} rows of codes but {len(coords)} coords")
    zt = c.T.tocsr()
    mass = np.asarray(zt.sum(1)).ravel()
    live = mass > 0
    safe = np.where(live, mass, 1.0)
    centroid = (zt @ coords) / safe[:, None]
    second = (zt @ (coords * coords).sum(1)) / safe
    spread = np.sqrt(np.maximum(second - (centroid * centroid).sum(1), 0.0))
    centroid[~live] = -1.0
    spread[~live] = 0.0
    return centroid.astype(np.float32), spread.astype(np.float32)


def decompose(directions: np.ndarray, d: Dictionary, n_terms: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each direction (m, C) (an atlas cell's mean activation) as a few concepts with non-negative weights.

    The direction minus the dictionary's centre (the layer's mean activation for the autoencoders; 0
    for NMF) is decomposed by ``n_terms`` steps of non-negative OMP on the atoms (greedy, each step the
    atom most aligned with what is left), then exact non-negative least squares on the chosen atoms.
    Returns (concepts (m, n_terms) int64 sorted by weight, -1 for unused slots; weights (m, n_terms)
    float32; share (m,) float32: the share of the centred direction's squared norm they explain,
    1 - |r|^2 / |x - center|^2, 0 for a direction equal to the centre).
    """
    import torch
    from scipy.optimize import nnls

    from .dictionary import omp

    x = np.asarray(directions, np.float32) - d.center
    m = len(x)
    idx_out = np.full((m, n_terms), -1, np.int64)
    w_out = np.zeros((m, n_terms), np.float32)
    share = np.zeros(m, np.float32)
    if m == 0:
        return idx_out, w_out, share
    with torch.no_grad():
        idx, _ = omp(torch.from_numpy(x), torch.from_numpy(d.atoms), n_terms)
    idx = idx.numpy()
    for i in range(m):
        norm2 = float(x[i] @ x[i])
        if norm2 <= 0:
            continue
        sel = np.unique(idx[i])
        w, res = nnls(d.atoms[sel].T.astype(np.float64), x[i].astype(np.float64))
        keep = w > 0
        sel, w = sel[keep], w[keep]
        order = np.argsort(-w, kind="stable")
        idx_out[i, : len(sel)] = sel[order]
        w_out[i, : len(sel)] = w[order]
        share[i] = max(0.0, 1.0 - res * res / norm2)
    return idx_out, w_out, share


def exemplar_purity(rows: np.ndarray, row_pred: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The share of each group's exemplars whose prediction is the group's label (a concept's or a cell's).

    ``rows`` (K, n) int: each group's exemplar rows, -1 padding (as :func:`top_rows` returns them);
    ``row_pred`` (n_rows,) int: the top-1 prediction of each row's photo (-1 unknown); ``label`` (K,) int
    (-1: none). Returns (purity (K,) float32, counted (K,) int64: the exemplars it was measured on). A group
    without a label or without an exemplar of known prediction has purity 0 and counted 0 (never NaN).
    """
    rows = np.asarray(rows, np.int64)
    row_pred = np.asarray(row_pred, np.int64)
    label = np.asarray(label, np.int64)
    if rows.ndim != 2 or len(rows) != len(label):
        raise ValueError(f"rows must be (K, n) with K = {len(label)} labels, got shape {rows.shape}")
    pred = np.where(rows >= 0, row_pred[np.maximum(rows, 0)] if len(row_pred) else -1, -1)
    known = (pred >= 0) & (label[:, None] >= 0)
    counted = known.sum(1)
    hits = (known & (pred == label[:, None])).sum(1)
    purity = np.where(counted > 0, hits / np.maximum(counted, 1), 0.0)
    return purity.astype(np.float32), counted.astype(np.int64)
