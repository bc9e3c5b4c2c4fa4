"""How good a dictionary is, on rows it did not train on: reconstruction, sparsity, dead atoms, stability."""

from __future__ import annotations

import numpy as np

from .dictionary import Chunks, Dictionary


def evaluate(d: Dictionary, chunks: Chunks, *, encoding: str | None = None) -> dict:
    """Figures of ``d`` on a stream of (held-out) rows.

    Returns a JSON-able dict: ``r2`` the explained variance of the reconstruction, 1 - sum |x - x_hat|^2 /
    sum |x - mean(x)|^2 (the mean of these rows); ``l0`` the mean number of active atoms a row;
    ``dead`` the share of atoms active on no row; ``rows``; ``frequency`` (K,) each atom's share of
    active rows (a list). Streams: memory does not grow with the rows.
    """
    n, sse, total, sq, l0 = 0, 0.0, None, 0.0, 0
    fired = np.zeros(d.size, np.int64)
    for c in chunks():
        if len(c) == 0:
            continue
        x = np.asarray(c, np.float32)
        idx, val = d.encode_sparse(x, encoding=encoding)
        err = x - d.decode_sparse(idx, val)
        sse += float(np.einsum("ij,ij->", err, err, dtype=np.float64))
        x64 = x.astype(np.float64)
        total = x64.sum(0) if total is None else total + x64.sum(0)
        sq += float((x64 * x64).sum())
        active = val > 0
        l0 += int(active.sum())
        fired += np.bincount(idx[active], minlength=d.size)
        n += len(x)
    if n == 0:
        return {"r2": 0.0, "l0": 0.0, "dead": 1.0, "rows": 0, "frequency": [0.0] * d.size}
    mean = total / n
    sst = sq - n * float(mean @ mean)
    r2 = 1.0 - sse / sst if sst > 0 else 0.0
    return {
        "r2": float(r2),
        "l0": l0 / n,
        "dead": float((fired == 0).mean()),
        "rows": n,
        "frequency": (fired / n).tolist(),
    }


def match_atoms(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match the atoms of two dictionaries one to one, maximising the total cosine (Hungarian algorithm).

    ``a`` (K, C) and ``b`` (K', C) unit rows. Returns (rows of ``a`` (m,), their matches in ``b`` (m,),
    the matched cosines (m,)), m = min(K, K'). Cosines keep their sign: codes are non-negative, so an
    atom and its opposite are different concepts.
    """
    from scipy.optimize import linear_sum_assignment

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = a @ b.T
    rows, cols = linear_sum_assignment(cos, maximize=True)
    return rows, cols, cos[rows, cols]


def atom_stability(a: Dictionary | np.ndarray, b: Dictionary | np.ndarray) -> np.ndarray:
    """Each atom of ``a``'s cosine with its match in ``b`` (K,) float32 (:func:`match_atoms`; 0 for an atom
    left unmatched when ``b`` has fewer atoms): a per-concept trust score from a second seed."""
    a = a.atoms if isinstance(a, Dictionary) else a
    b = b.atoms if isinstance(b, Dictionary) else b
    rows, _, cos = match_atoms(a, b)
    out = np.zeros(len(a), np.float32)
    out[rows] = cos
    return out


def stability(a: Dictionary | np.ndarray, b: Dictionary | np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean matched cosine between the atoms of two dictionaries (1: the same atoms; see :func:`match_atoms`).

    ``weights`` (K,) weighs each atom of ``a`` (its frequency, say: how stable the concepts that fire
    often are); default: every atom alike.
    """
    a = a.atoms if isinstance(a, Dictionary) else a
    b = b.atoms if isinstance(b, Dictionary) else b
    rows, _, cos = match_atoms(a, b)
    if weights is None:
        return float(cos.mean())
    w = np.asarray(weights, np.float64)[rows]
    return float((w * cos).sum() / w.sum()) if w.sum() > 0 else 0.0
