"""layout: activation vectors -> points on the unit square (UMAP; cuML on a GPU, umap-learn on CPU).

Also the statistics other stages need: the regularised whitening matrix used to whiten
directions before rendering. Both accept NumPy or Dask arrays, so statistics over stores
larger than memory stay out of core.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("actlas.layout")


def numba_cache_dir() -> Path:
    """A lasting folder for numba's on-disk cache, so umap-learn's JIT cost is paid once per machine."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "actlas" / "numba"
    path = Path(os.environ.setdefault("NUMBA_CACHE_DIR", str(default)))
    path.mkdir(parents=True, exist_ok=True)
    return path


def moments(x) -> tuple[np.ndarray, np.ndarray]:
    """Mean (C,) and covariance (C, C) of rows of ``x`` (n, C), NumPy or Dask, in float64.

    With Dask the work is chunked, so memory stays bounded by a few chunks.
    """
    n = x.shape[0]
    if hasattr(x, "dask"):
        import dask.array as da

        x64 = x.astype(np.float64)
        total, gram = da.compute(x64.sum(0), x64.T @ x64)
    else:
        x64 = np.asarray(x, dtype=np.float64)
        total, gram = x64.sum(0), x64.T @ x64
    mean = total / max(n, 1)
    cov = gram / max(n, 1) - np.outer(mean, mean)
    return mean, (cov + cov.T) / 2


def whitening(cov: np.ndarray, eps: float = 0.1) -> np.ndarray:
    """Regularised inverse covariance, shape (C, C): inv(cov + eps * mean(diag(cov)) * I).

    Dead channels (zero variance) and near-singular covariances stay finite: the ridge is a
    fraction of the average variance.
    """
    c = cov.shape[0]
    ridge = eps * max(float(np.trace(cov)) / c, 1e-12)
    return np.linalg.inv(cov + ridge * np.eye(c)).astype(np.float32)


def whiten_directions(directions: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """directions (K, C) -> whitened directions (K, C): rows of directions @ matrix, unit norm."""
    w = directions @ matrix.T
    return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)


def normalize_coords(xy: np.ndarray, clip: float = 0.5) -> np.ndarray:
    """Embedding (n, 2) -> [0, 1]^2 per axis, the outer ``clip`` percent of each side clipped."""
    lo = np.percentile(xy, clip, axis=0)
    hi = np.percentile(xy, 100 - clip, axis=0)
    return np.clip((xy - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)


def cuml_available() -> tuple[bool, str]:
    """Whether cuML's UMAP can run here, and why not."""
    try:
        import cuml  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means "not available"
        return False, f"cuML not importable ({type(err).__name__}: {err})"
    try:
        import torch

        if not torch.cuda.is_available():
            return False, "cuML installed but no CUDA device"
    except ImportError:
        pass
    return True, "cuML and a CUDA device are present"


def umap(
    x: np.ndarray,
    *,
    n_neighbors: int = 20,
    min_dist: float = 0.01,
    metric: str = "cosine",
    seed: int = 0,
    backend: str = "auto",
) -> tuple[np.ndarray, dict]:
    """UMAP of x (n, d) -> (embedding (n, 2) float32, info dict with backend, reason, seconds)."""
    start = time.perf_counter()
    use_cuml, reason = (False, "backend umap-learn asked for") if backend == "umap-learn" else cuml_available()
    if backend == "cuml" and not use_cuml:
        raise RuntimeError(f"backend cuml asked for, but {reason}; pip install cuml-cu12 on a GPU machine")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n_neighbors = int(min(n_neighbors, max(len(x) - 1, 2)))
    if use_cuml:
        from cuml.manifold import UMAP as CumlUMAP

        model = CumlUMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, random_state=seed)
        xy = np.asarray(model.fit_transform(x))
        name = "cuml"
    else:
        numba_cache_dir()
        import umap as umap_learn

        model = umap_learn.UMAP(
            n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, random_state=seed, n_components=2
        )
        xy = model.fit_transform(x)
        name = "umap-learn"
    info = {"backend": name, "reason": reason, "seconds": round(time.perf_counter() - start, 2)}
    log.info("layout with %s (%s) in %.1f s", name, reason, info["seconds"])
    return np.asarray(xy, dtype=np.float32), info


def pca(x, n_components: int, seed: int = 0) -> np.ndarray:
    """Project rows of x (n, C) onto their first ``n_components`` principal axes -> (n, n_components).

    With a Dask x the projection streams block by block: only the (n, n_components) result is held.
    """
    mean, cov = moments(x)
    values, vectors = np.linalg.eigh(cov)
    axes = vectors[:, ::-1][:, :n_components]
    if hasattr(x, "dask"):
        centred = x.astype(np.float32) - mean.astype(np.float32)
        return np.asarray((centred @ axes.astype(np.float32)).compute(), dtype=np.float32)
    return ((np.asarray(x, dtype=np.float32) - mean.astype(np.float32)) @ axes.astype(np.float32)).astype(np.float32)


def layout(
    x,
    *,
    n_neighbors: int = 20,
    min_dist: float = 0.01,
    metric: str = "cosine",
    pca_components: int = 0,
    whiten: bool = False,
    seed: int = 0,
    backend: str = "auto",
    clip: float = 0.5,
) -> tuple[np.ndarray, dict]:
    """Activations x (n, C) -> coords (n, 2) in [0, 1], and an info dict.

    Optional steps before UMAP: whitening (ZCA with the regularised covariance) and PCA to
    ``pca_components`` dimensions (0 = off).
    """
    info: dict = {}
    data = x
    if whiten:
        mean, cov = moments(data)
        vals, vecs = np.linalg.eigh(cov + 0.1 * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0]))
        zca = (vecs / np.sqrt(vals)) @ vecs.T
        data = (np.asarray(data, dtype=np.float32) - mean.astype(np.float32)) @ zca.astype(np.float32)
    if pca_components and pca_components < data.shape[1]:
        data = pca(data, pca_components, seed)
    xy, umap_info = umap(np.asarray(data), n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, seed=seed, backend=backend)
    info.update(umap_info)
    return normalize_coords(xy, clip), info
