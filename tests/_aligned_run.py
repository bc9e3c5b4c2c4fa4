"""A small finished run with aligned atlases, built in-process with the tests' tiny models (no shared assets).

16 generated images in two shards; tiny_net's features.1 and features.4 collected into the run (features.4
also laid out as a main 3 x 3 atlas), tiny_vit's blocks.1 into RUN/models/vit; two alignments ("layers":
features.1 and features.4; "cnn-vit": features.4 and blocks.1@vit), each map gridded 3 x 3, rendered at 16 px
in 2 steps and composed, then the manifest. About 30 s of CPU, most of it the layouts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

BLOCK = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "labels": [f"c{i}" for i in range(10)]}
NET = BLOCK | {"source": "tiny_models:tiny_net", "trust_code": True}
VIT = BLOCK | {"source": "tiny_models:tiny_vit", "trust_code": True}
ALIGNMENTS = {"layers": (["features.1", "features.4"], NET), "cnn-vit": (["features.4", "blocks.1@vit"], VIT)}
CONFIG_ITEMS = [
    {"atlases": ["features.1", "features.4"], "name": "layers"},
    {"atlases": ["features.4", {"layer": "blocks.1", "model": VIT, "name": "vit"}], "name": "cnn-vit"},
]


def make_aligned_run(root: Path) -> Path:
    """The aligned run under ``root``; the tests' own factories are trusted while it is built, and only then."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACTLAS_TRUST_CODE", "1")
        return _make_aligned_run(root)


def _make_aligned_run(root: Path) -> Path:
    from _tiny_run import make_images

    from actlas import settings
    from actlas.data.images import list_images
    from actlas.settings import RenderParams
    from actlas.stages.align import align
    from actlas.stages.align_atlas import align_atlas
    from actlas.stages.align_grid import align_grid
    from actlas.stages.align_render import align_render
    from actlas.stages.atlas import atlas
    from actlas.stages.collect import collect
    from actlas.stages.grid import grid
    from actlas.stages.layout import layout
    from actlas.stages.manifest import manifest
    from actlas.stages.render import render
    from actlas.stages.shards import split_rows, write_plan
    from actlas.stages.whitening import whitening

    run = root / "run"
    lists = write_plan(run, split_rows(list_images(make_images(root / "images")), 2))
    kw = {"positions": 2, "attr_top": 2, "batch_size": 8, "chunk": 8, "workers": 0, "progress": False, "device": "cpu"}
    for lst in lists:
        collect(lst, run / "collect" / f"{lst.stem}.zarr", NET, ["features.1", "features.4"], **kw)
        collect(lst, run / "models" / "vit" / "collect" / f"{lst.stem}.zarr", VIT, ["blocks.1"], **kw)
    params = RenderParams(size=16, min_positions=0, steps=2, batch_size=16, pad=2, jitter=1)
    whitening(run, "features.1")
    whitening(run, "features.4")
    whitening(run, "blocks.1", model_name="vit")
    layout(run, "features.4", n_neighbors=5, backend="umap-learn")
    grid(run, "features.4", 3, min_count=1)
    render(run, "features.4", 3, NET, cells_per_job=0, params=params, device="cpu", progress=False)
    atlas(run, "features.4", 3, NET, cells_per_job=0, n_examples=1)
    for name, (maps, other) in ALIGNMENTS.items():
        align(run, name, maps, n_neighbors=5, seed=0)
        for map_id in maps:
            model = other if "@" in map_id else NET
            align_grid(run, name, map_id, 3, min_count=1)
            align_render(run, name, map_id, 3, model, cells_per_job=0, params=params, device="cpu", progress=False)
            align_atlas(run, name, map_id, 3, model, cells_per_job=0, n_examples=1)
    config = settings.fill(
        {"model": NET, "images": ["x"], "layers": ["features.4"], "grid": {"sizes": [3]}, "alignments": CONFIG_ITEMS}
    )
    config["render"]["cells_per_job"] = 0
    manifest(run, config)
    return run
