"""layout: activation vectors -> points on the unit square (UMAP; cuML on a GPU, umap-learn on CPU).

Also the statistics other stages need: the regularised whitening matrix used to whiten
directions before rendering. Both accept NumPy or Dask arrays, so statistics over stores
larger than memory stay out of core.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np

from .device import numba_cache_dir
from .errors import ConfigError, DataError, LayerError
from .settings import BACKENDS

log = logging.getLogger("actlas.layout")


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


def whitening(cov: np.ndarray, eps: float) -> np.ndarray:
    """Regularised inverse covariance, shape (C, C): inv(cov + eps * mean(diag(cov)) * I).

    The render whitening of a layer (``whiten.npy``) uses ``eps`` = ``layout.whitening_eps`` (settings).

    Dead channels (zero variance) and near-singular covariances stay finite: the ridge is a
    fraction of the average variance.
    """
    c = cov.shape[0]
    ridge = eps * max(float(np.trace(cov)) / c, 1e-12)
    return np.linalg.inv(cov + ridge * np.eye(c)).astype(np.float32)


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


# Exact k-nearest neighbours (a blocked matrix product in torch) replace pynndescent's approximate
# search when n * n * d stays under this many multiply-adds: about 30 s on 2 CPU cores. pynndescent
# compiles its search with numba in every new process (35 s on 2 cores, not served by numba's
# cache), so below this size the exact search is faster as well as exact (benchmarks/bench_layout.py:
# 3.1x at 10k x 96, 1.8x at 50k, 1.15x at 100k, about the break-even point).
EXACT_KNN_MAX_WORK = 1e12
EXACT_KNN_METRICS = ("cosine", "euclidean")


def exact_knn(
    x: np.ndarray, k: int, metric: str = "cosine", block_floats: int = 2**26
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row of x (n, d) among the rows, self first.

    Returns (indices (n, k) int64, distances (n, k) float32), the format of umap-learn's
    ``precomputed_knn``; cosine distance is 1 - cos, euclidean the L2 norm. Works in row blocks
    of at most ``block_floats`` similarities (256 MB), batched in torch.
    """
    import torch

    if metric not in EXACT_KNN_METRICS:
        raise ConfigError(f"exact_knn supports {EXACT_KNN_METRICS}, not {metric!r}")
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    n, k = len(xt), min(k, len(xt))
    if metric == "cosine":
        xt = torch.nn.functional.normalize(xt, dim=1)
    sq = (xt * xt).sum(1)
    block = max(1, min(n, block_floats // max(n, 1)))
    indices = np.empty((n, k), np.int64)
    distances = np.empty((n, k), np.float32)
    for lo in range(0, n, block):
        rows = torch.arange(lo, min(lo + block, n))
        score = xt[rows] @ xt.T  # (b, n): similarity, larger is nearer
        if metric == "euclidean":
            score = 2 * score - sq[None, :]  # -|a - b|^2 + |a|^2, ranked per row
        score[torch.arange(len(rows)), rows] = float("inf")  # self first, at distance 0
        value, index = score.topk(k, dim=1)
        if metric == "cosine":
            dist = (1 - value).clamp_min(0)
        else:
            dist = (sq[rows, None] - value).clamp_min(0).sqrt()
        dist[:, 0] = 0.0
        indices[lo : lo + len(rows)] = index.numpy()
        distances[lo : lo + len(rows)] = dist.numpy()
    return indices, distances


def use_exact_knn(n: int, d: int, metric: str) -> bool:
    """Whether :func:`exact_knn` is the faster neighbour search for n points in d dimensions."""
    return metric in EXACT_KNN_METRICS and float(n) * n * d <= EXACT_KNN_MAX_WORK


def umap(
    x: np.ndarray,
    *,
    n_neighbors: int = 20,
    min_dist: float = 0.01,
    metric: str = "cosine",
    seed: int = 0,
    backend: str = "auto",
) -> tuple[np.ndarray, dict]:
    """UMAP of x (n, d) -> (embedding (n, 2) float32, info dict with backend, reason, seconds).

    With umap-learn, the neighbour graph comes from :func:`exact_knn` where that is faster
    (:func:`use_exact_knn`), else from umap-learn's own pynndescent; ``info["knn"]`` says which.
    """
    start = time.perf_counter()
    if backend not in BACKENDS:
        raise ConfigError(f"unknown layout backend {backend!r}: use one of {', '.join(BACKENDS)}")
    use_cuml, reason = (False, "backend umap-learn asked for") if backend == "umap-learn" else cuml_available()
    if backend == "cuml" and not use_cuml:
        raise ConfigError(f"backend cuml asked for, but {reason}; pip install cuml-cu12 on a GPU machine")
    x = np.ascontiguousarray(x, dtype=np.float32)
    check_samples(len(x))
    n_neighbors = int(min(n_neighbors, max(len(x) - 1, 2)))
    knn_info: dict = {}  # umap-learn only: which neighbour search ran
    if use_cuml:
        from cuml.manifold import UMAP as CumlUMAP

        model = CumlUMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, random_state=seed)
        xy = np.asarray(model.fit_transform(x))
        name = "cuml"
    else:
        numba_cache_dir()
        import umap as umap_learn

        knn = (None, None, None)
        knn_info = {"knn": "pynndescent"}
        if use_exact_knn(len(x), x.shape[1], metric) and len(x) > n_neighbors:
            knn_start = time.perf_counter()
            knn = (*exact_knn(x, n_neighbors, metric), None)
            knn_info = {"knn": "exact", "knn_seconds": round(time.perf_counter() - knn_start, 2)}
        model = umap_learn.UMAP(
            n_neighbors=n_neighbors,
            min_dist=min_dist,
            metric=metric,
            random_state=seed,
            n_components=2,
            precomputed_knn=knn,
        )
        with warnings.catch_warnings():  # "no search index: transform() unavailable" (never used here)
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            warnings.filterwarnings("ignore", message=".*n_jobs value.*")
            xy = model.fit_transform(x)
        name = "umap-learn"
    info = {"backend": name, "reason": reason, "seconds": round(time.perf_counter() - start, 2), **knn_info}
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


# Ridge of the ZCA whitening before UMAP (``layout.whiten``), a fraction of the mean variance; the
# render whitening's is the setting ``layout.whitening_eps``.
ZCA_RIDGE = 0.1
MIN_SAMPLES = 4  # UMAP's spectral initialisation needs more samples than n_components + 1


def check_samples(n: int, layer: str = "") -> None:
    """Raise one ``DataError`` line when ``n`` samples are too few to lay out."""
    if n < MIN_SAMPLES:
        of = f" of {layer}" if layer else ""
        raise DataError(
            f"layout needs at least {MIN_SAMPLES} samples{of}, got {n}: collect more images (images, limit) "
            "or more positions per image (collect.positions; 0 takes every position)"
        )


# a layer whose total variance is under this share of its mean square is (nearly) constant: no map of it means anything
MIN_SPREAD = 1e-8


def check_spread(mean: np.ndarray, variance: float, layer: str = "") -> None:
    """Raise one ``LayerError`` line when a layer is (nearly) constant over its samples.

    mean (C,) and the total variance (the trace of the covariance) of the layer's activations.
    """
    square = float(np.square(np.asarray(mean, dtype=np.float64)).sum())
    if not variance > MIN_SPREAD * (variance + square) or variance < 1e-30:
        of = f"layer {layer!r}" if layer else "the layer"
        raise LayerError(
            f"{of} is (nearly) constant over its samples (total variance {variance:.3g}, mean square {square:.3g}): "
            "its atlas would be meaningless; choose another layer (actlas layers MODEL lists them)"
        )


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
    layer: str = "",
) -> tuple[np.ndarray, dict]:
    """Activations x (n, C) -> coords (n, 2) in [0, 1], and an info dict.

    Optional steps before UMAP: whitening (ZCA with the regularised covariance) and PCA to
    ``pca_components`` dimensions (0 = off). Fewer than ``MIN_SAMPLES`` rows raise ``DataError``
    (naming ``layer`` when given).
    """
    check_samples(int(x.shape[0]), layer)
    some = np.asarray(x[:: max(1, int(x.shape[0]) // 65536)], dtype=np.float64)  # a constant layer shows in any rows
    check_spread(some.mean(0), float(some.var(0).sum()), layer)
    info: dict = {}
    data = x
    if whiten:
        mean, cov = moments(data)
        vals, vecs = np.linalg.eigh(cov + ZCA_RIDGE * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0]))
        zca = (vecs / np.sqrt(vals)) @ vecs.T
        data = (np.asarray(data, dtype=np.float32) - mean.astype(np.float32)) @ zca.astype(np.float32)
    if pca_components and pca_components < data.shape[1]:
        data = pca(data, pca_components, seed)
    xy, umap_info = umap(
        np.asarray(data), n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, seed=seed, backend=backend
    )
    info.update(umap_info)
    return normalize_coords(xy, clip), info
