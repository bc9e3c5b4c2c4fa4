"""whitening: the render whitening of one layer -> ``LAYER/whiten.npy``.

Render, class atlases and comparisons whiten their directions with it. It is apart from layout so
that a layer collected only for its class atlases is never laid out (no UMAP), and a change of the
UMAP settings reruns no class atlas.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import layout as layout_core
from .. import paths
from ..data import store
from ..data.samples import check_stores
from ..formats.layout import write_whitening
from ..formats.shards import shard_stores
from ..settings import Layout


def whitening(run_dir: str | Path, layer: str, *, whitening_eps: float = Layout.whitening_eps) -> Path:
    """The render whitening of one layer -> ``whiten.npy``, (C, C) float32: ``actlas.layout.whitening``
    of the covariance of all its collected activations (read in chunks: memory stays bounded)."""
    stores = shard_stores(run_dir)
    check_stores(stores, layer)
    mean, cov = layout_core.moments(store.read_dask(stores, f"{layer}/activation"))
    layout_core.check_spread(mean, float(np.trace(cov)), layer)
    return write_whitening(paths.whiten(run_dir, layer), layout_core.whitening(cov, whitening_eps))
