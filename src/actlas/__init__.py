"""actlas: Activation Atlases for any PyTorch image model.

The stages, each reading and writing a run directory (docs/run-directory.md), mirror the CLI and
the Snakemake rules; each lives in ``actlas.stages.<name>`` as the function ``<name>``::

    from actlas.stages.shards import shards        # shard lists
    from actlas.stages.collect import collect      # activations + attribution -> Zarr
    from actlas.stages.layout import layout        # UMAP -> coords.npy
    from actlas.stages.whitening import whitening  # whiten.npy, the render whitening
    from actlas.stages.grid import grid            # cells.npz
    from actlas.stages.render import render        # icons of a batch of cells
    from actlas.stages.atlas import atlas          # atlas.png, atlas.json
    actlas.info(run_dir)                           # one dict describing a run

The array-level core lives in the modules of the same nouns (``actlas.collect``, ``actlas.layout``,
``actlas.grid``, ``actlas.viz.render``, ``actlas.atlas``, ``actlas.classes``, ...), every default
in ``actlas.settings``; docs/architecture.md maps them all. Public here: ``ModelSpec``,
``load_model``, ``load_spec``, ``capture``, ``get_layer``, ``list_layers``, ``info``, ``export``,
``show``. Names here are imported on first use, so ``import actlas`` stays cheap and no stage's
code digest covers another's.
"""

__version__ = "0.1.0"

_LAZY = {
    "ModelSpec": "actlas.models.spec",
    "load_model": "actlas.models.load",
    "load_spec": "actlas.models.load",
    "capture": "actlas.nn.layers",
    "get_layer": "actlas.nn.layers",
    "list_layers": "actlas.nn.layers",
    "info": "actlas.stages.manifest",
    "export": "actlas.serve",
    "show": "actlas.serve",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'actlas' has no attribute {name!r}")
