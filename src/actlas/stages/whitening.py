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
from ..data.samples import check_stores, model_stores
from ..formats.layout import write_whitening
from ..settings import Layout


def whitening(
    run_dir: str | Path, layer: str, *, whitening_eps: float = Layout.whitening_eps, model_name: str | None = None
) -> Path:
    """The render whitening of one layer -> ``whiten.npy``, (C, C) float32: ``actlas.layout.whitening``
    of the covariance of all its collected activations (read in chunks: memory stays bounded).

    ``model_name``: a layer of another model an alignment names, from its stores in ``RUN/models/NAME/``
    (written there: ``RUN/models/NAME/LAYER/whiten.npy``)."""
    stores = model_stores(run_dir, model_name)
    check_stores(stores, layer)
    mean, cov = layout_core.moments(store.read_dask(stores, f"{layer}/activation"))
    layout_core.check_spread(mean, float(np.trace(cov)), layer)
    out = paths.whiten(paths.model_root(run_dir, model_name), layer)
    return write_whitening(out, layout_core.whitening(cov, whitening_eps))
