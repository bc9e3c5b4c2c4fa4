"""A small finished run directory built with the tiny model (no shared assets): every stage's artifacts.

16 generated images in two shards, one layer (features.3), 2 positions per image (32 samples),
layout, a 3 x 3 grid, icons rendered at 16 pixels in 2 steps, the atlas and the manifest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

LAYER = "features.3"
MODEL = {"source": "tiny_models:tiny_net", "trust_code": True}


def make_images(folder: Path, n: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / ("n01440764" if i % 2 else "n01443537")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(sub / f"img{i:02d}.jpg")
    return folder


def make_tiny_run(root: Path, *, render: bool = True) -> Path:
    from actlas.data.images import list_images
    from actlas.settings import RenderParams
    from actlas.stages.atlas import atlas as atlas_stage
    from actlas.stages.collect import collect
    from actlas.stages.grid import grid as grid_stage
    from actlas.stages.layout import layout as layout_stage
    from actlas.stages.manifest import manifest as manifest_stage
    from actlas.stages.render import render as render_stage
    from actlas.stages.shards import split_rows, write_plan
    from actlas.stages.whitening import whitening as whitening_stage

    images = make_images(root / "images")
    run = root / "run"
    rows = list_images(images)
    lists = write_plan(run, split_rows(rows, 2))
    for lst in lists:
        collect(
            lst,
            run / "collect" / f"{lst.stem}.zarr",
            MODEL,
            [LAYER],
            positions=2,
            attr_top=2,
            batch_size=4,
            chunk=4,
            workers=0,
            progress=False,
            device="cpu",
        )
    layout_stage(run, LAYER, n_neighbors=5, backend="umap-learn")
    whitening_stage(run, LAYER)
    grid_stage(run, LAYER, 3, min_count=1)
    if render:
        params = RenderParams(size=16, min_positions=0, steps=2, batch_size=16, pad=2, jitter=1)
        render_stage(run, LAYER, 3, MODEL, params=params, device="cpu", progress=False)
        atlas_stage(run, LAYER, 3, MODEL, n_examples=1)
        manifest_stage(run, {"layers": [LAYER], "grid": {"sizes": [3]}})
    return run
