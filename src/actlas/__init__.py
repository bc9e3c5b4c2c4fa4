"""actlas: Activation Atlases for any PyTorch image model.

The stages, each reading and writing a run directory (docs/run-directory.md), mirror the CLI and
the Snakemake rules::

    actlas.shards(images, run_dir, model)           # shard lists
    actlas.collect(shard, store, model, layers)     # activations + attribution -> Zarr
    actlas.layout(run_dir, layer)                   # UMAP -> coords.npy
    actlas.grid(run_dir, layer, n)                  # cells.npz
    actlas.render(run_dir, layer, n, model)         # icons
    actlas.atlas(run_dir, layer, n, model)          # atlas.png, atlas.json
    actlas.info(run_dir)                            # one dict describing a run

The array-level core lives in the modules of the same nouns (``actlas.grid.grid``,
``actlas.render.render``, ...), importable as ``from actlas.render import render``.
"""

__version__ = "0.1.0"

from .collect import collect
from .layers import capture, get_layer, list_layers
from .models import ModelSpec, load_model
from .run import atlas, grid, info, layout, manifest, render, shards
from .serve import export, serve, show

__all__ = [
    "ModelSpec", "atlas", "capture", "collect", "get_layer", "grid", "info", "layout", "list_layers",
    "load_model", "manifest", "render", "shards", "export", "serve", "show",
]
