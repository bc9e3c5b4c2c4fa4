"""layout: UMAP of one layer's activations -> ``LAYER/coords.npy``, ``whiten.npy``, ``layout.json``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import layout as layout_core
from .. import paths, store
from ..settings import Layout, Run
from .samples import check_stores


def layout(
    run_dir: str | Path, layer: str, *, n_neighbors: int = Layout.n_neighbors, min_dist: float = Layout.min_dist,
    metric: str = Layout.metric, pca: int = Layout.pca, whiten: bool = Layout.whiten,
    whitening_eps: float = Layout.whitening_eps, seed: int = Run.seed, backend: str = Layout.backend,
) -> Path:
    """Lay out one layer's activations on the plane (cuML on a GPU, else umap-learn).

    Writes ``coords.npy`` (n, 2) float32 in [0, 1], ``whiten.npy`` (C, C) float32 (the render
    whitening) and ``layout.json`` (parameters, backend and why, timings).
    """
    start = time.perf_counter()
    stores = paths.shard_stores(run_dir)
    check_stores(stores, layer)
    acts = store.read_dask(stores, f"{layer}/activation")
    mean, cov = layout_core.moments(acts)
    x = np.asarray(acts.compute(), dtype=np.float32)
    coords, info = layout_core.layout(
        x, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, pca_components=pca, whiten=whiten,
        seed=seed, backend=backend, layer=layer,
    )
    paths.save_npy(paths.whiten(run_dir, layer), layout_core.whitening(cov, whitening_eps))
    paths.save_npy(paths.coords(run_dir, layer), coords)
    info.update(
        samples=len(x), channels=x.shape[1], n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, pca=pca,
        whiten=whiten, whitening_eps=whitening_eps, seed=seed, total_seconds=round(time.perf_counter() - start, 2),
    )
    paths.write_json(paths.layout_info(run_dir, layer), info)
    return paths.coords(run_dir, layer)
