"""The formats of a run's files: one module per format, each with a typed reader and writer.

``atomic`` (every write is atomic), ``shards`` (shard lists, the shard index, skip lists),
``layout`` (``coords.npy``, ``whiten.npy``, ``layout.json``), ``cells`` (``cells.npz``), ``batches``
(render batches and cached icons), ``atlas`` (``atlas.json``), ``report`` (a patch experiment's
``report.json``) and ``manifest`` (``manifest.json``). File names come from ``actlas.paths``.

Nothing is imported here, so importing one of these modules imports no other.
"""
