"""layout: UMAP of one layer's activations -> ``LAYER/coords.npy``, ``layout.json``.

The render whitening is its own stage (``actlas.stages.whitening``): a layer collected only for
its class atlases is never laid out, and a change of the UMAP settings reruns no class atlas.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import layout as layout_core
from .. import paths
from ..data import store
from ..data.samples import check_stores
from ..formats.layout import LayoutInfo, write_coords, write_layout_info
from ..formats.shards import shard_stores
from ..settings import Layout, Run


def layout(
    run_dir: str | Path,
    layer: str,
    *,
    n_neighbors: int = Layout.n_neighbors,
    min_dist: float = Layout.min_dist,
    metric: str = Layout.metric,
    pca: int = Layout.pca,
    whiten: bool = Layout.whiten,
    seed: int = Run.seed,
    backend: str = Layout.backend,
) -> Path:
    """Lay out one layer's activations on the plane (cuML on a GPU, else umap-learn).

    Writes ``coords.npy`` (n, 2) float32 in [0, 1] and ``layout.json`` (parameters, backend and
    why, timings). ``whiten`` whitens the activations before UMAP; the render whitening is ``whitening``'s.
    """
    start = time.perf_counter()
    stores = shard_stores(run_dir)
    check_stores(stores, layer)
    x = np.asarray(store.read_dask(stores, f"{layer}/activation").compute(), dtype=np.float32)
    coords, info = layout_core.layout(
        x,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        pca_components=pca,
        whiten=whiten,
        seed=seed,
        backend=backend,
        layer=layer,
    )
    write_coords(paths.coords(run_dir, layer), coords)
    record = LayoutInfo(
        backend=info.pop("backend"),
        reason=info.pop("reason"),
        seconds=info.pop("seconds"),
        samples=len(x),
        channels=x.shape[1],
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        pca=pca,
        whiten=whiten,
        seed=seed,
        total_seconds=round(time.perf_counter() - start, 2),
        extra=info,
    )
    write_layout_info(paths.layout_info(run_dir, layer), record)
    return paths.coords(run_dir, layer)
