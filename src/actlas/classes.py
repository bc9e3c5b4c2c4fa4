"""classes: class activation atlases and two-class comparisons.

A **class atlas** keeps the samples that support one class (their attribution to it wins among
the classes stored for them: ``winner``; and/or the top-N by attribution to it: ``top``), lays
them out afresh (t-SNE by default, which the article found better for sparse class data, or
UMAP), bins them into a grid and renders every cell like the main atlas. Written to
``RUN/LAYER/class-<slug>/`` with the main atlas's files and ``atlas.json`` format.

A **comparison** of classes A and B puts the samples of either on a plane whose x axis is the
attribution to A minus the attribution to B (B on the left, A on the right) and whose y axis is
a 1-D layout of the activations. Written to ``RUN/LAYER/compare-<a>-<b>/``.

Attribution to a class not among a sample's stored classes (the top-k predicted of its image)
counts as 0.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, DataError
from .settings import FILTERS, METHODS

# --------------------------------------------------------------------------- pure pieces


def class_attribution(attr_class: np.ndarray, attr_value: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's attribution to class ``c``.

    attr_class, attr_value : (n, k) stored classes and their attribution values
    Returns (value (n,) float32, 0 where not stored; stored (n,) bool).
    """
    hit = attr_class == c
    stored = hit.any(1)
    value = np.where(hit, attr_value, 0.0).sum(1).astype(np.float32)
    return value, stored


def winners(attr_class: np.ndarray, attr_value: np.ndarray, c: int) -> np.ndarray:
    """(n,) bool: class ``c`` is stored for the sample, its attribution is positive and the largest stored.

    (A sample whose every stored attribution is negative supports no class: such cells would be
    labelled with an arbitrary class of zero mean attribution.)"""
    value, stored = class_attribution(attr_class, attr_value, c)
    best = np.where(attr_class >= 0, attr_value, -np.inf).max(1)
    return stored & (value >= best) & (value > 0)


def dedupe(rows: np.ndarray, keys: np.ndarray | None) -> np.ndarray:
    """Sorted unique rows, keeping one row per key (keys (n_total,), e.g. image and position)."""
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    if keys is None or not len(rows):
        return rows
    _, first = np.unique(keys[rows], return_index=True)
    return np.sort(rows[first])


def select_samples(
    attr_class: np.ndarray,
    attr_value: np.ndarray,
    c: int,
    *,
    filter: str = "winner",
    top: int = 2000,
    keys: np.ndarray | None = None,
) -> np.ndarray:
    """Rows of the samples a class atlas keeps, sorted, without duplicates.

    - ``winner``: samples whose attribution to ``c`` wins among their stored classes (the ``top``
      highest by attribution to ``c`` when there are more);
    - ``top``: the ``top`` samples with the highest attribution to ``c`` among those storing it;
    - ``both``: the union of the two.

    keys : (n,) optional identity of a sample (one row kept per key).
    """
    if filter not in FILTERS:
        raise ConfigError(f"unknown filter {filter!r}; use one of {', '.join(FILTERS)}")
    value, stored = class_attribution(attr_class, attr_value, c)
    parts = []
    if filter in ("winner", "both"):
        rows = np.flatnonzero(winners(attr_class, attr_value, c))
        parts.append(rows[np.argsort(-value[rows], kind="stable")[:top]])
    if filter in ("top", "both"):
        rows = np.flatnonzero(stored)
        parts.append(rows[np.argsort(-value[rows], kind="stable")[:top]])
    return dedupe(np.concatenate(parts), keys)


def embed(
    x: np.ndarray, n_components: int = 2, *, method: str = "tsne", seed: int = 0, perplexity: float = 30.0
) -> np.ndarray:
    """Lay out rows of x (n, C) -> (n, n_components) in [0, 1] per axis (t-SNE or UMAP).

    t-SNE runs on the first 50 principal components, with perplexity capped at (n - 1) / 3. A 1-D
    t-SNE gets stuck (points cannot pass each other on a line, so clusters interleave), so the 1-D
    layout is the principal axis of a 2-D t-SNE. Fewer than 4 samples get evenly spaced positions.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown layout method {method!r}; use one of {', '.join(METHODS)}")
    from .layout import normalize_coords

    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    if n < 1:
        raise DataError(
            "a class atlas or comparison needs at least 1 sample to lay out, got 0: try --filter top "
            "or a larger --top, or collect more images or positions (collect.positions)"
        )
    if n < 4:
        return np.repeat(np.linspace(0, 1, max(n, 1))[:n, None], n_components, 1).astype(np.float32)
    if method == "tsne":
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        if x.shape[1] > 50 and n > 50:
            x = PCA(50, random_state=seed).fit_transform(x)
        xy = TSNE(
            max(n_components, 2),
            perplexity=float(min(perplexity, (n - 1) / 3)),
            init="pca",
            random_state=seed,
            metric="cosine",
        ).fit_transform(x)
        if n_components == 1:
            xy = PCA(1, random_state=seed).fit_transform(xy)
    else:
        from .device import numba_cache_dir

        numba_cache_dir()
        import umap as umap_learn

        xy = umap_learn.UMAP(
            n_components=n_components,
            n_neighbors=int(min(15, n - 1)),
            min_dist=0.05,
            metric="cosine",
            random_state=seed,
        ).fit_transform(x)
    return normalize_coords(np.asarray(xy, dtype=np.float64), clip=0.0)


def comparison_coords(attr_a: np.ndarray, attr_b: np.ndarray, y: np.ndarray, *, clip: float = 99.0) -> np.ndarray:
    """Plane of a two-class comparison -> (n, 2) in [0, 1].

    x = 0.5 + 0.5 * (attr_a - attr_b) / s, with s the ``clip`` percentile of |attr_a - attr_b|
    (clipped), so 0.5 is "no preference", A is to the right and B to the left; y (n,) is
    rescaled to [0, 1].
    """
    d = np.asarray(attr_a, dtype=np.float64) - np.asarray(attr_b, dtype=np.float64)
    scale = max(float(np.percentile(np.abs(d), clip)) if len(d) else 1.0, 1e-12)
    x = np.clip(0.5 + 0.5 * d / scale, 0.0, 1.0)
    y = np.asarray(y, dtype=np.float64).ravel()
    span = y.max() - y.min() if len(y) else 0.0
    y = (y - y.min()) / span if span > 0 else np.full_like(y, 0.5)
    return np.stack([x, y], 1).astype(np.float32)
